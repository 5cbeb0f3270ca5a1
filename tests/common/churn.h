/*
 * Churn: many short connections at once.  A churn client keeps `slots`
 * connections going, each to one of `ports` in turn: connect, send a
 * message of 0 to 4000 bytes (its own slice of the pattern), half-close,
 * receive it back byte for byte, then the peer's FIN; then the slot starts
 * again, at `rate` connections a second at most, until `ms` have passed
 * or it is told to stop.  Then it lets the open ones finish (`grace_ms`
 * at most).  It never fails the test: it counts, and keeps the first error.
 */
#ifndef TESTS_COMMON_CHURN_H
#define TESTS_COMMON_CHURN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define CHURN_PORTS 4

struct churn {
    /* Set before it runs: */
    const int *ports;
    size_t nports;
    int slots, ms; /* ms 0: until told to stop */
    unsigned rate; /* connections started per second at most (0: no cap) */
    uint32_t seed;
    int stall_ms;                /* a connection without progress this long is an
                                  * error (0: 5 s) */
    int grace_ms;                /* for the open ones after the end (0: 10 s) */
    const atomic_bool *stop_too; /* stops when this is set (or NULL) */
    atomic_ullong *total;        /* every verified byte is added here */
    void (*on_error)(struct churn *ch, const char *msg); /* each error */
    pthread_t thread;
    atomic_bool stop; /* start no more */
    /* Counted by it: connections done, their bytes (each way), errors;
     * by index in ports (the last counts the ones beyond). */
    atomic_ullong done, bytes, errors;
    atomic_ullong port_done[CHURN_PORTS], port_bytes[CHURN_PORTS];
    char err[256]; /* the first error, written by it */
};

/* Runs the churn client in this thread. */
void *churn_run(void *ch);

/* Starts churn_run() in a thread; churn_stop() stops it and joins. */
void churn_start(struct churn *ch);
void churn_stop(struct churn *ch);

/* Runs `nthreads` churn clients together for ms; the sums go into *sum. */
void churn_for(const int *ports, size_t nports, int nthreads, int slots, unsigned rate,
               int ms, uint32_t seed, struct churn *sum);

#endif
