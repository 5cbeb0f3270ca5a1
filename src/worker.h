/*
 * A worker: one thread running its own loop (loop.h), serving connections
 * from every listener.  The listening sockets are shared: each worker
 * registers them in its own poll and accepts when they are readable
 * (accept.h).
 */
#ifndef ECHOD_WORKER_H
#define ECHOD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"
#include "log.h"
#include "loop.h"
#include "pipe.h"

struct conn;
struct dgram_batch;
struct generation;
struct udp_port;

struct worker {
    struct daemon *d;
    unsigned id;
    pthread_t thread;
    struct loop loop;
    struct handler wake;       /* the waker's: looks at the daemon's state */
    struct timer accept_timer; /* resumes accepting after a pause */
    uint8_t *scratch;          /* one read buffer, the largest buffer_size */
    size_t scratch_len;
    int spare_fd;           /* given up to shed a client on EMFILE */
    struct pipe_pool pipes; /* empty pipes for spliced reads */
    bool accepting;
    bool no_priority;   /* the backend has no MIO_PRIORITY (kqueue) */
    struct conn *conns; /* every open connection, for shutdown */
    unsigned nconns;
    struct udp_port *ports;     /* the UDP sockets it serves (udp.h) */
    unsigned nflows;            /* their open flows */
    struct dgram_batch *dgrams; /* one batch of datagrams, once it has a port */
    size_t nqueued; /* dgrams->d[0..nqueued): replies gathered (udp_flush()) */
    struct ratelimit rl_refused, rl_fd, rl_upstream, rl_tls;
    struct generation *gen;                /* whose listening sockets it watches */
    _Atomic(struct generation *) watching; /* gen, for the reloading thread */
    atomic_bool quiet; /* stopping: the listeners are out of its poll */
    atomic_bool done;  /* the thread has returned */
};

/* Sets up the worker's poll and registers the listeners; 0 or -errno. */
int worker_init(struct worker *w, struct daemon *d, unsigned id);

/* Runs the worker in a new thread. */
int worker_start(struct worker *w);

/* Makes the worker look at d->stopping, d->closing and d->gen (after a
 * reload it moves to the new generation's listening sockets and sets
 * `watching` to it). */
void worker_wake(struct worker *w);

/* Frees what worker_init made; the thread must have returned. */
void worker_destroy(struct worker *w);

/* Waits up to `ms` milliseconds (0: looks once) until every worker has
 * `ok(w, arg)` or has returned (ok NULL: has returned); true when they
 * all have. */
bool worker_wait_all(struct daemon *d,
                     bool (*ok)(const struct worker *w, const void *arg), const void *arg,
                     int ms);

/* Stops watching the listeners for a while (EMFILE without a spare, or an
 * accept error that may pass). */
void worker_pause_accepting(struct worker *w, int64_t ms);

#endif
