/* The worker threads: one poll each, dispatching by token. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "accept.h"
#include "conn.h"
#include "generation.h"
#include "udp.h"
#include "worker.h"

/* Registers or deregisters every stream listening socket of the worker's
 * generation in its poll (the UDP ones are its ports', udp.h). */
static void watch_listeners(struct worker *w, bool on)
{
    struct generation *g = w->gen;
    for (size_t i = 0; i < g->nlisteners; i++)
        for (size_t k = 0; k < g->listeners[i].nsocks; k++) {
            struct listen_sock *ls = &g->listeners[i].socks[k];
            if (ls->udp)
                continue;
            if (on)
                (void)loop_watch(&w->loop, ls->fd, &ls->h, ACCEPT_INTEREST);
            else
                loop_unwatch(&w->loop, ls->fd);
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
                     "%zu bytes",
                     w->id, need, w->scratch_len);
        }
    }
    w->pipes.max = pipe_budget(w->d->nworkers); /* the limit may have moved */
    bool on = w->accepting;
    if (on)
        watch_listeners(w, false);
    w->gen = g;
    if (on)
        watch_listeners(w, true);
    if (udp_sync(w) < 0)
        log_warn("worker %u: no memory for a UDP socket of the new configuration", w->id);
    /* `watching` is set only after the batch in progress: events later in
     * it may still point into the old generation's sockets, which must
     * stay alive until then (see run()). */
}

static void on_wake(struct handler *h, struct loop *l, const mio_event_t *ev);
static void resume_accepting(struct timer *t);

/* After each batch: the UDP replies gathered go out together. */
static void after_batch(struct loop *l)
{
    udp_flush(container_of(l, struct worker, loop));
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
    w->rl_tls.burst = 10;
    w->wake.on_event = on_wake;
    w->accept_timer.fire = resume_accepting;
    w->gen = atomic_load(&d->gen);
    atomic_store(&w->watching, w->gen);
    w->scratch_len = largest_buffer(w->gen);
    w->scratch = malloc(w->scratch_len);
    if (w->scratch == NULL)
        return -ENOMEM;
    int err = loop_init(&w->loop, 256, &w->wake, config_poller_backend(w->gen->cfg));
    if (err < 0)
        return err;
    w->loop.after = after_batch;
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->pipes.max = pipe_budget(d->nworkers);
    watch_listeners(w, true);
    return udp_sync(w);
}

void worker_destroy(struct worker *w)
{
    while (w->conns != NULL)
        conn_abort(w->conns, "shutdown");
    udp_free(w);
    loop_timer_cancel(&w->loop, &w->accept_timer);
    loop_due(&w->loop); /* frees them */
    loop_free(&w->loop);
    pipe_pool_free(&w->pipes);
    free(w->scratch);
    if (w->spare_fd >= 0)
        close(w->spare_fd);
}

void worker_wake(struct worker *w)
{
    loop_wake(&w->loop);
}

bool worker_wait_all(struct daemon *d,
                     bool (*ok)(const struct worker *w, const void *arg), const void *arg,
                     int ms)
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
    (void)loop_timer_set(&w->loop, &w->accept_timer, w->loop.now_ms + ms);
}

/* The end of a pause in accepting. */
static void resume_accepting(struct timer *t)
{
    struct worker *w = container_of(t, struct worker, accept_timer);
    if (!atomic_load(&w->d->stopping) && !w->accepting)
        watch_listeners(w, true);
}

/* Looks at the daemon's state: a new generation, stopping, closing. */
static void look(struct worker *w)
{
    struct daemon *d = w->d;
    if (!atomic_load(&d->stopping))
        switch_generation(w);
    if (atomic_load(&d->stopping) && !atomic_load(&w->quiet)) {
        if (w->accepting)
            watch_listeners(w, false);
        loop_timer_cancel(&w->loop, &w->accept_timer);
        udp_stop(w);
        atomic_store(&w->quiet, true);
    }
    if (atomic_load(&d->closing)) {
        while (w->conns != NULL)
            conn_abort(w->conns, "shutdown");
        udp_close_flows(w, "shutdown");
    }
}

/* The waker's event: another thread changed the daemon's state. */
static void on_wake(struct handler *h, struct loop *l, const mio_event_t *ev)
{
    (void)h;
    (void)ev;
    look(container_of(l, struct worker, loop));
}

/* The worker's loop: until stopping and no connection is left. */
static void *run(void *arg)
{
    struct worker *w = arg;
    struct daemon *d = w->d;
    for (;;) {
        loop_due(&w->loop);
        if (atomic_load(&d->stopping)) {
            look(w); /* the wake may have come before this loop ran */
            if (w->nconns == 0 && w->nflows == 0)
                break;
        }
        int err = loop_wait(&w->loop);
        if (err < 0) {
            log_err("worker %u: poll: %s", w->id, log_strerror(-err));
            break;
        }
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
    int e = pthread_create(&w->thread, NULL, run, w);
    if (e != 0)
        return -e;
    char name[16]; /* the kernel's limit, with the NUL */
    snprintf(name, sizeof(name), "mio-echod w%u", w->id);
    (void)pthread_setname_np(w->thread, name); /* top -H, ps -L show it */
    return 0;
}
