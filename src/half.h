/*
 * One direction of a connection: a half moves bytes one way, from the
 * socket it reads (its source) to the socket it writes (its destination).
 * A relay is two halves, client to upstream and upstream to client; echo
 * is one, whose source and destination are the client's socket.
 *
 * Bytes are read into the worker's scratch buffer and written on at once;
 * only what the destination cannot take yet is held, in a buffer allocated
 * for that moment and freed when it drains, so an idle half holds nothing.
 * A half that carries bulk data is spliced instead (pipe.h), where both
 * sockets allow it (endpoint_splices()): its bytes wait, if they must, in a
 * pipe.  While bytes are held, the source is not read (backpressure): a
 * slow reader never makes the daemon grow.
 *
 * half_move() moves a half as far as it can, and says why it stopped: the
 * source has nothing now, the destination takes nothing now, the source
 * ended and all it sent was delivered (then, for a relay, the FIN is passed
 * on with a shutdown of the destination's write side), or a socket failed.
 * It reads and writes only its own two sockets, and never moves the other
 * half: what the connection does next is the caller's (conn.c).
 */
#ifndef ECHOD_HALF_H
#define ECHOD_HALF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "endpoint.h"
#include "mio.h"

struct buf;
struct pipe;
struct pipe_pool;
struct worker;

struct half {
    union {
        struct buf *buf;   /* bytes read, not yet taken by the destination */
        struct pipe *pipe; /* or spliced into a pipe (in_pipe) */
    } held;                /* NULL: nothing held */
    bool in_pipe : 1;
    bool held_oob : 1; /* held.buf is one urgent byte, to write as such */
    bool readable : 1; /* the source may have bytes: read it when moved */
    bool writable : 1; /* the destination may take bytes: no write has
                          hit EAGAIN since it last said so */
    bool closing : 1;  /* an event told of the source's FIN or an error */
    bool urgent : 1;   /* an event told of urgent data on the source */
    bool bulk : 1;     /* the last read was large: splice the next one */
    bool eof : 1;      /* the source sent its FIN */
    bool done : 1;     /* ... and all before it was delivered */
};

/* What moving a half needs: its two sockets, the worker's means, what the
 * listener says, and where to count.  half_move() writes `err` and
 * `progress`. */
struct half_io {
    struct endpoint *src, *dst;
    struct worker *w;             /* its loop, scratch buffer and pipes */
    mio_interest_t read_interest; /* for re-arming the source */
    size_t cap;                   /* bytes read at once, and held at most */
    bool splice;                  /* bulk data through a pipe, where possible */
    bool short_reads;             /* a short read may end reading (priority
                                     events exist to tell of urgent data, and
                                     the source is no TLS session, whose read
                                     is one record) */
    bool pass_fin;                /* shut the destination at the source's end */
    uint64_t *got, *put;          /* bytes read, written (may be NULL) */
    int err;                      /* the errno of a failure */
    bool progress;                /* a byte moved (read or written) */
};

/* Why half_move() stopped. */
enum half_stop {
    HALF_WAIT_SRC,   /* the source has nothing now: its next readable event */
    HALF_WAIT_DST,   /* bytes held: the destination's next writable event */
    HALF_DONE,       /* the source ended, everything was delivered */
    HALF_SRC_FAILED, /* reading the source failed (or no memory): io->err */
    HALF_DST_FAILED, /* writing the destination failed: io->err */
};

/* Moves h as far as it can; see above. */
enum half_stop half_move(struct half *h, struct half_io *io);

/* Whether bytes wait in h for its destination. */
bool half_holds(const struct half *h);

/* Whether moving h would do anything: bytes to write, a source that may
 * have more, or an end to pass on.  An idle half waits for its source. */
static inline bool half_has_work(const struct half *h)
{
    return h->held.buf != NULL || h->readable || (h->eof && !h->done);
}

/* Holds p[0..n) for h's destination after what it holds, in a buffer of at
 * least `cap` bytes; 0 or -ENOMEM.  Not while bytes wait in a pipe. */
int half_hold(struct half *h, const uint8_t *p, size_t n, size_t cap);

/* Holds p[0..n) in front of what h holds (in a buffer); 0 or -ENOMEM. */
int half_hold_front(struct half *h, const uint8_t *p, size_t n);

/* What h holds in its buffer (NULL, *len 0 for none). */
const uint8_t *half_held(const struct half *h, size_t *len);

/* Drops the first n bytes h holds in its buffer. */
void half_drop_front(struct half *h, size_t n);

/* Frees what h holds: its buffer, its pipe back to the pool (closed if
 * bytes are left in it). */
void half_release(struct half *h, struct pipe_pool *pool);

#endif
