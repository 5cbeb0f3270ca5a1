/*
 * The event loop every thread of the daemon runs: the workers and the
 * metrics listener.  One mio poll and its waker, one timer heap, one list
 * of things to free after the batch of events that may still name them.
 *
 * Every registered descriptor's token points at a struct handler, which
 * knows how to take its event: a listening socket accepts, a connection's
 * socket moves its bytes, the waker looks at the daemon's state.  Every
 * timer carries the function that takes its deadline.  The owner of a
 * handler or a timer embeds it and finds itself again with container_of().
 *
 * A loop is run by one thread: loop_due() runs the timers that are due and
 * frees what was deferred, loop_wait() polls until the next timer and
 * dispatches the events, the owner doing what is its own in between (a
 * worker looks whether it may stop).  Only loop_wake() may be called from
 * another thread (or a signal handler).
 */
#ifndef ECHOD_LOOP_H
#define ECHOD_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "mio.h"
#include "timer.h"

/* The struct that contains the member `m` that p points at. */
#define container_of(p, type, m) ((type *)(void *)((char *)(p)-offsetof(type, m)))

struct loop;

/* What a token points at: the function that takes the event, in the loop
 * that polled it (a listening socket is in every worker's loop). */
struct handler {
    void (*on_event)(struct handler *h, struct loop *l, const mio_event_t *ev);
};

/* Something to free once the batch of events in progress is over, and
 * the function that frees it. */
struct deferred {
    struct deferred *next;
    void (*release)(struct deferred *d);
};

/* Work another thread hands to a loop's thread (loop_post()): run there,
 * in the order posted, after the batch of events in progress.  The poster
 * owns it; run() may free it. */
struct loop_task {
    struct loop_task *next;
    void (*run)(struct loop_task *t, struct loop *l);
};

struct loop {
    mio_poll_t *poll;
    mio_registry_t *reg;
    mio_events_t *events;
    mio_waker_t *waker;
    struct timer_heap timers;
    int64_t now_ms;         /* CLOCK_MONOTONIC, taken after each poll */
    struct deferred *later; /* freed after the batch, each by its release */
    /* NULL, or what the owner does once a batch of events (or of due
     * timers) is dispatched, before the deferred are released: a worker
     * sends the UDP replies its handlers gathered. */
    void (*after)(struct loop *l);
    atomic_bool posted;       /* tasks may be there: a look without the lock */
    pthread_mutex_t tasks_mu; /* guards the posted tasks */
    struct loop_task *tasks, *tasks_last;
};

/*
 * Makes a loop for events in batches of `batch`, whose waker's event goes
 * to `wake`, on libmio's backend named `backend` (NULL: mio_poll_new()'s
 * choice).  0 or -errno (then loop_free() frees what was made).
 */
int loop_init(struct loop *l, size_t batch, struct handler *wake, const char *backend);

/* Frees the loop (not what its handlers belong to). */
void loop_free(struct loop *l);

/* Registers fd for `interest`, its events going to h; 0 or -errno. */
int loop_watch(struct loop *l, int fd, struct handler *h, mio_interest_t interest);

/* Deregisters fd (before it is closed). */
void loop_unwatch(struct loop *l, int fd);

/* Deregisters and closes fd, which no other descriptor shares (never one
 * handed over or stored: on epoll only the close is made, and a shared
 * file would stay registered).  Thread-safe. */
void loop_close(struct loop *l, int fd);

/* Around a fork() while loops run: from loop_forking() until
 * loop_forked() (the child has exec'd, or is gone), loop_close()
 * deregisters before it closes, the child holding copies of every
 * descriptor. */
void loop_forking(void);
void loop_forked(void);

/* Says that an operation on fd failed with EAGAIN (or a stream read came
 * back short), so that the next readiness is reported (mio_registry_rearm). */
void loop_rearm(struct loop *l, int fd, mio_interest_t interest);

/* Wakes the loop's thread: its waker's handler runs.  Any thread. */
void loop_wake(struct loop *l);

/* Hands t to l's thread, which runs t->run(t, l) once the batch of events
 * in progress (or the poll) is over; any thread (not a signal handler). */
void loop_post(struct loop *l, struct loop_task *t,
               void (*run)(struct loop_task *t, struct loop *l));

/* Schedules t for deadline_ms (milliseconds of CLOCK_MONOTONIC), or moves
 * it there; t->fire runs once it is due.  0 or -ENOMEM. */
int loop_timer_set(struct loop *l, struct timer *t, int64_t deadline_ms);

/* Unschedules t (a no-op when it is not scheduled). */
void loop_timer_cancel(struct loop *l, struct timer *t);

/* Hands d to the loop, for release(d) once the events of the batch in
 * progress, which may still name it, are dispatched. */
void loop_defer(struct loop *l, struct deferred *d, void (*release)(struct deferred *d));

/* Takes the time, runs the timers that are due, and releases what was
 * deferred. */
void loop_due(struct loop *l);

/* Polls until the next timer (or for ever), dispatches the events to their
 * handlers, then releases what was deferred.  0, or a negative errno from
 * the poll (not -EINTR, which returns 0). */
int loop_wait(struct loop *l);

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t loop_clock_ms(void);

/* Microseconds of CLOCK_MONOTONIC, for what the loop's now_ms is too
 * coarse to time (an upstream's connect). */
int64_t loop_clock_us(void);

#endif
