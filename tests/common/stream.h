/*
 * Streams: long connections carrying the pattern (pattern.h), checked
 * byte for byte.  A stream sends the pattern from `base` and checks that
 * every byte comes back in order, with at most 256 KiB in flight and at
 * most `rate` bytes a second, until it is told to finish (or its time is
 * up): then it half-closes, receives the rest and expects the peer's FIN.
 * With `may_be_cut`, an end from the peer before that is noted, not an
 * error (what came must still be right).  stream_pump() never fails the
 * test: it leaves ok, cut and a message.
 */
#ifndef TESTS_COMMON_STREAM_H
#define TESTS_COMMON_STREAM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct stream {
    /* Set before it runs: */
    int fd, cport; /* a connected socket (non-blocking), its port */
    uint64_t base;
    uint64_t rate; /* bytes per second at most (0: no cap) */
    int stall_ms;  /* an error after this long without progress */
    bool may_be_cut;
    int64_t finish_at;             /* ms_now() at which to finish (0: none) */
    int64_t give_up_at;            /* an error when not done by then (0: none) */
    const atomic_bool *finish_too; /* finish when this is set (or NULL) */
    atomic_ullong *total;          /* every verified byte is added here (or NULL) */
    /* Told while it runs: */
    atomic_bool finish; /* half-close, drain, expect EOF */
    atomic_bool quit;   /* give up now */
    /* Told by it: */
    atomic_ullong sent, verified;
    atomic_bool done; /* it has returned */
    /* Written before `done`: */
    bool ok;        /* ended as expected */
    bool cut;       /* ended by the peer (may_be_cut) */
    int64_t end_ms; /* when it ended */
    char err[256];
    pthread_t thread; /* stream_start()'s */
};

/* Runs the stream in this thread until it ends. */
void stream_pump(struct stream *s);

/* A stream in a thread of its own on a new connection to 127.0.0.1:port
 * (fails the test when it cannot connect), at most 32 MiB a second, an
 * error after 5 s without progress.  stream_abort_all() stops it unless
 * stream_finish() or stream_forget() did. */
struct stream *stream_start(int port, uint64_t base, bool may_be_cut);

/* stream_start() at most `rate` bytes a second (0: no cap). */
struct stream *stream_start_rate(int port, uint64_t base, bool may_be_cut, uint64_t rate);

/* Waits up to ms for the stream to have `bytes` more verified than now;
 * false when it did not (or it ended). */
bool stream_advances(struct stream *s, uint64_t bytes, int ms);

/* Fails the test when the stream has ended with an error. */
void stream_check(struct stream *s);

/* Asks the stream to finish and waits (bounded) for it; fails unless
 * every byte came back and then the FIN.  Returns the bytes sent (and
 * verified) and frees the stream. */
uint64_t stream_finish(struct stream *s);

/* Joins the stream's thread (it must have ended) and frees it. */
void stream_forget(struct stream *s);

/* Stops every stream at once (a test's teardown). */
void stream_abort_all(void);

#endif
