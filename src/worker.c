/* The worker threads: one poll each, dispatching by token. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "accept.h"
#include "conn.h"
#include "worker.h"

/* The waker's token: no endpoint lives at address 0. */
#define WAKE_TOKEN ((mio_token_t)0)

int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Registers or deregisters every listening socket of the worker's
 * generation in its poll. */
static void watch_listeners(struct worker *w, bool on)
{
    struct generation *g = w->gen;
    for (size_t i = 0; i < g->nlisteners; i++)
        for (size_t k = 0; k < g->listeners[i].nsocks; k++) {
            struct listen_sock *ls = &g->listeners[i].socks[k];
            if (on)
                (void)mio_registry_register(w->reg, ls->fd, (mio_token_t)ls,
                                            MIO_READABLE);
            else
                (void)mio_registry_deregister(w->reg, ls->fd);
        }
    w->accepting = on;
}

/* The largest buffer_size of a generation's listeners. */
static size_t largest_buffer(const struct generation *g)
{
    size_t max = 0;
    for (size_t i = 0; i < g->nlisteners; i++)
        if (g->listeners[i].cfg->buffer_size > max)
            max = g->listeners[i].cfg->buffer_size;
    return max;
}

/* Moves from the listening sockets of the worker's generation to those of
 * the daemon's current one, after a reload.  A socket that stays is taken
 * out of the poll and put back under its new token; a client queued on it
 * meanwhile is reported when it is put back. */
static void switch_generation(struct worker *w)
{
    struct generation *g = atomic_load(&w->d->gen);
    if (g == w->gen)
        return;
    size_t need = largest_buffer(g);
    if (need > w->scratch_len) {
        uint8_t *p = realloc(w->scratch, need);
        if (p != NULL) {
            w->scratch = p;
            w->scratch_len = need;
        } else {
            log_warn("worker %u: no memory for a %zu-byte buffer: reads stay at "
                     "%zu bytes", w->id, need, w->scratch_len);
        }
    }
    w->pipes.max = pipe_budget(w->d->nworkers); /* the limit may have moved */
    bool on = w->accepting;
    if (on)
        watch_listeners(w, false);
    w->gen = g;
    if (on)
        watch_listeners(w, true);
    /* `watching` is set only after the batch in progress: events later in
     * it may still point into the old generation's sockets, which must
     * stay alive until then (see run()). */
}

int worker_init(struct worker *w, struct daemon *d, unsigned id)
{
    memset(w, 0, sizeof(*w));
    w->d = d;
    w->id = id;
    w->spare_fd = -1;
    w->rl_refused.burst = 10;
    w->rl_fd.burst = 2;
    w->rl_upstream.burst = 10;
    w->now_ms = monotonic_ms();
    w->gen = atomic_load(&d->gen);
    atomic_store(&w->watching, w->gen);
    w->scratch_len = largest_buffer(w->gen);
    w->scratch = malloc(w->scratch_len);
    w->events = mio_events_new(256);
    if (w->scratch == NULL || w->events == NULL)
        return -ENOMEM;
    int err = mio_poll_new(&w->poll);
    if (err < 0)
        return err;
    w->reg = mio_poll_registry(w->poll);
    err = mio_waker_new(w->reg, WAKE_TOKEN, &w->waker);
    if (err < 0)
        return err;
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->pipes.max = pipe_budget(d->nworkers);
    watch_listeners(w, true);
    return 0;
}

void worker_destroy(struct worker *w)
{
    while (w->conns != NULL)
        conn_abort(w->conns, "shutdown");
    conn_reap(w);
    timer_heap_free(&w->timers);
    mio_waker_free(w->waker);
    mio_poll_free(w->poll);
    mio_events_free(w->events);
    pipe_pool_free(&w->pipes);
    free(w->scratch);
    if (w->spare_fd >= 0)
        close(w->spare_fd);
}

void worker_wake(struct worker *w)
{
    (void)mio_waker_wake(w->waker);
}

bool workers_wait(struct daemon *d, bool (*ok)(const struct worker *w, const void *arg),
                  const void *arg, int ms)
{
    for (int waited = 0;; waited++) {
        bool all = true;
        for (unsigned i = 0; i < d->nworkers && all; i++)
            all = atomic_load(&d->workers[i].done) ||
                  (ok != NULL && ok(&d->workers[i], arg));
        if (all || waited >= ms)
            return all;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
}

void worker_pause_accepting(struct worker *w, int64_t ms)
{
    if (w->accepting)
        watch_listeners(w, false);
    (void)timer_set(&w->timers, &w->accept_timer, w->now_ms + ms);
}

/* Runs the timers that are due. */
static void run_timers(struct worker *w)
{
    struct timer *t;
    while ((t = timer_peek(&w->timers)) != NULL && t->deadline_ms <= w->now_ms) {
        timer_cancel(&w->timers, t);
        if (t == &w->accept_timer) {
            if (!atomic_load(&w->d->stopping) && !w->accepting)
                watch_listeners(w, true);
            continue;
        }
        conn_timer((struct conn *)((char *)t - offsetof(struct conn, timer)));
    }
    conn_reap(w);
}

/* Looks at the daemon's state after a wake-up. */
static void on_wake(struct worker *w)
{
    struct daemon *d = w->d;
    if (!atomic_load(&d->stopping))
        switch_generation(w);
    if (atomic_load(&d->stopping) && !atomic_load(&w->quiet)) {
        if (w->accepting)
            watch_listeners(w, false);
        timer_cancel(&w->timers, &w->accept_timer);
        atomic_store(&w->quiet, true);
    }
    if (atomic_load(&d->closing))
        while (w->conns != NULL)
            conn_abort(w->conns, "shutdown");
}

/* Handles one event by what its token points at. */
static void dispatch(struct worker *w, const mio_event_t *ev)
{
    mio_token_t token = mio_event_token(ev);
    if (token == WAKE_TOKEN) {
        on_wake(w);
        return;
    }
    uint8_t kind = *(const uint8_t *)token;
    if (kind == EP_LISTENER) {
        struct listen_sock *ls = (struct listen_sock *)token;
        /* A socket of the generation this batch moved away from: its new
         * registration reports the same clients. */
        if (w->accepting && ls->listener->gen == w->gen)
            listener_accept(w, ls);
        return;
    }
    conn_ready((struct side *)token, ev);
}

/* The worker's loop: until stopping and no connection is left. */
static void *run(void *arg)
{
    struct worker *w = arg;
    struct daemon *d = w->d;
    for (;;) {
        w->now_ms = monotonic_ms();
        run_timers(w);
        if (atomic_load(&d->stopping)) {
            on_wake(w); /* the wake may have come before this loop ran */
            if (w->nconns == 0)
                break;
        }
        struct timespec ts, *timeout = NULL;
        struct timer *next = timer_peek(&w->timers);
        if (next != NULL) {
            int64_t ms = next->deadline_ms - w->now_ms;
            if (ms < 0)
                ms = 0;
            ts.tv_sec = (time_t)(ms / 1000);
            ts.tv_nsec = (long)(ms % 1000) * 1000000;
            timeout = &ts;
        }
        int err = mio_poll_poll(w->poll, w->events, timeout);
        if (err < 0 && err != -EINTR) {
            log_err("worker %u: poll: %s", w->id, log_strerror(-err));
            break;
        }
        w->now_ms = monotonic_ms();
        for (size_t i = 0; i < mio_events_len(w->events); i++)
            dispatch(w, mio_events_get(w->events, i));
        conn_reap(w);
        /* After a reload, the old generation may be freed once every
         * worker says so: only now is no token of it left in a batch. */
        if (atomic_load_explicit(&w->watching, memory_order_relaxed) != w->gen)
            atomic_store(&w->watching, w->gen);
    }
    atomic_store(&w->done, true);
    return NULL;
}

int worker_start(struct worker *w)
{
    return -pthread_create(&w->thread, NULL, run, w);
}
