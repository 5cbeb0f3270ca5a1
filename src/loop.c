/* The event loop: poll, handlers, timers, deferred frees. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"

int64_t loop_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t loop_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int loop_init(struct loop *l, size_t batch, struct handler *wake, const char *backend)
{
    *l = (struct loop){.now_ms = loop_clock_ms()};
    int e = pthread_mutex_init(&l->tasks_mu, NULL);
    if (e != 0)
        return -e;
    l->events = mio_events_new(batch);
    if (l->events == NULL)
        return -ENOMEM;
    int err = backend != NULL ? mio_poll_new_with(&l->poll, backend)
                              : mio_poll_new(&l->poll);
    if (err < 0)
        return err;
    l->reg = mio_poll_registry(l->poll);
    return mio_waker_new(l->reg, (mio_token_t)wake, &l->waker);
}

void loop_free(struct loop *l)
{
    timer_heap_free(&l->timers);
    mio_waker_free(l->waker);
    mio_poll_free(l->poll);
    mio_events_free(l->events);
    pthread_mutex_destroy(&l->tasks_mu);
    *l = (struct loop){0};
}

int loop_watch(struct loop *l, int fd, struct handler *h, mio_interest_t interest)
{
    return mio_registry_register(l->reg, fd, (mio_token_t)h, interest);
}

void loop_unwatch(struct loop *l, int fd)
{
    (void)mio_registry_deregister(l->reg, fd);
}

/*
 * A process forked and not yet exec'd holds a copy of every descriptor, so
 * a socket closed meanwhile is not the file's last reference, and epoll
 * would keep it registered, its events naming a freed handler.  Between
 * loop_forking() and loop_forked(), closes deregister first; the lock makes
 * a close and a fork() exclusive.
 */
static pthread_rwlock_t fork_lock = PTHREAD_RWLOCK_INITIALIZER;
static bool forking;

void loop_close(struct loop *l, int fd)
{
    pthread_rwlock_rdlock(&fork_lock);
    if (forking) {
        (void)mio_registry_deregister(l->reg, fd);
        close(fd);
    } else {
        (void)mio_registry_close(l->reg, fd);
    }
    pthread_rwlock_unlock(&fork_lock);
}

void loop_forking(void)
{
    pthread_rwlock_wrlock(&fork_lock);
    forking = true;
    pthread_rwlock_unlock(&fork_lock);
}

void loop_forked(void)
{
    pthread_rwlock_wrlock(&fork_lock);
    forking = false;
    pthread_rwlock_unlock(&fork_lock);
}

void loop_rearm(struct loop *l, int fd, mio_interest_t interest)
{
    (void)mio_registry_rearm(l->reg, fd, interest);
}

void loop_wake(struct loop *l)
{
    (void)mio_waker_wake(l->waker);
}

void loop_post(struct loop *l, struct loop_task *t,
               void (*run)(struct loop_task *t, struct loop *l))
{
    t->run = run;
    t->next = NULL;
    pthread_mutex_lock(&l->tasks_mu);
    if (l->tasks_last != NULL)
        l->tasks_last->next = t;
    else
        l->tasks = t;
    l->tasks_last = t;
    atomic_store(&l->posted, true);
    pthread_mutex_unlock(&l->tasks_mu);
    loop_wake(l);
}

/* Runs the tasks other threads posted, those posted meanwhile included. */
static void run_tasks(struct loop *l)
{
    while (atomic_load_explicit(&l->posted, memory_order_acquire)) {
        pthread_mutex_lock(&l->tasks_mu);
        struct loop_task *t = l->tasks;
        l->tasks = l->tasks_last = NULL;
        atomic_store(&l->posted, false);
        pthread_mutex_unlock(&l->tasks_mu);
        if (t == NULL)
            return;
        while (t != NULL) {
            struct loop_task *next = t->next;
            t->run(t, l);
            t = next;
        }
    }
}

int loop_timer_set(struct loop *l, struct timer *t, int64_t deadline_ms)
{
    return timer_set(&l->timers, t, deadline_ms);
}

void loop_timer_cancel(struct loop *l, struct timer *t)
{
    timer_cancel(&l->timers, t);
}

void loop_defer(struct loop *l, struct deferred *d, void (*release)(struct deferred *d))
{
    d->release = release;
    d->next = l->later;
    l->later = d;
}

/* Releases what was deferred. */
static void release_deferred(struct loop *l)
{
    while (l->later != NULL) {
        struct deferred *d = l->later;
        l->later = d->next;
        d->release(d);
    }
}

void loop_due(struct loop *l)
{
    l->now_ms = loop_clock_ms();
    struct timer *t;
    while ((t = timer_peek(&l->timers)) != NULL && t->deadline_ms <= l->now_ms) {
        timer_cancel(&l->timers, t);
        t->fire(t);
    }
    if (l->after != NULL)
        l->after(l);
    release_deferred(l);
}

int loop_wait(struct loop *l)
{
    struct timespec ts, *timeout = NULL;
    struct timer *next = timer_peek(&l->timers);
    if (next != NULL) {
        int64_t ms = next->deadline_ms - l->now_ms;
        if (ms < 0)
            ms = 0;
        ts.tv_sec = (time_t)(ms / 1000);
        ts.tv_nsec = (long)(ms % 1000) * 1000000;
        timeout = &ts;
    }
    int err = mio_poll_poll(l->poll, l->events, timeout);
    if (err < 0 && err != -EINTR)
        return err;
    l->now_ms = loop_clock_ms();
    for (size_t i = 0; i < mio_events_len(l->events); i++) {
        const mio_event_t *ev = mio_events_get(l->events, i);
        struct handler *h = (struct handler *)mio_event_token(ev);
        h->on_event(h, l, ev);
    }
    run_tasks(l);
    if (l->after != NULL)
        l->after(l);
    release_deferred(l);
    return 0;
}
