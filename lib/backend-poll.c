/*
 * The portable poll(2) backend, for systems with neither epoll nor kqueue
 * and for testing the daemon on a second backend.
 *
 * poll(2) is level-triggered; edge triggering is emulated as mio does: the
 * readiness reported for a descriptor is masked from its poll set until the
 * caller says, through mio_registry_rearm() after EAGAIN, that it has been
 * consumed.  A descriptor that reports POLLERR or POLLHUP is left out of the
 * set until it is re-armed or re-registered, since poll(2) reports those
 * conditions whatever it is asked and would otherwise return at once forever.
 *
 * Registrations live in the table of fdtable.h, by descriptor, and the set
 * is the list of the registered descriptors beside it, in no order: a
 * deregister moves the last one into the place it leaves.  Both are
 * guarded by the table's mutex.  The polling thread copies the set into a
 * private snapshot and polls that with the mutex released, so other
 * threads may register while it blocks: each change made during a poll
 * writes a notify descriptor that sits in slot 0 of the snapshot, and the
 * poll starts again with the time that is left (mio restarts the full
 * timeout).  An event is only delivered when the descriptor is still
 * registered under the same generation as when the snapshot was taken, so
 * nothing is reported after a deregister.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "array.h"
#include "backend.h"
#include "fdtable.h"
#include "timeout.h"
#include "wakefd.h"

#ifndef POLLRDHUP
#define POLLRDHUP 0 /* Linux only: without it a FIN shows as readable */
#endif

#define READ_BITS (POLLIN | POLLRDHUP)
#define ARMABLE (POLLIN | POLLRDHUP | POLLOUT | POLLPRI)

/* One registered descriptor, the table's entry for it. */
struct entry {
    struct mio__fdreg reg; /* the token and the generation */
    size_t pos;            /* its place in sel->fds */
    short interest;        /* the poll bits of the registered interest */
    short armed;           /* the subset not reported since the last re-arm */
    bool parked;           /* reported ERR/HUP/NVAL: out of the set until re-armed */
};

/* Guarded by tab.lock, but for the snapshot, which the polling thread has
 * to itself. */
struct poll_sel {
    struct mio__fdtable tab; /* first (fdtable.h): the registrations, the lock */
    int notify[2];           /* wakes a poll in progress */
    bool polling;            /* a thread is inside poll(2) now */
    int *fds;                /* the set: the registered descriptors, unordered */
    size_t n, fds_cap;
    struct poll_waker *wakers;
    /* The polling thread's own copy of the set, slot 0 being notify[0]. */
    struct pollfd *snap;
    uint32_t *snap_gen;
    size_t snap_cap, snap_gen_cap;
};

/* A waker: a flag the poll collects, and a write to the notify fd. */
struct poll_waker {
    struct poll_sel *sel;
    mio_token_t token;
    atomic_bool pending;
    struct poll_waker *next;
};

/* The poll bits for an interest. */
static short poll_bits(mio_interest_t interest)
{
    short bits = 0;
    if (interest & MIO_READABLE)
        bits |= READ_BITS;
    if (interest & MIO_WRITABLE)
        bits |= POLLOUT;
    if (interest & MIO_PRIORITY)
        bits |= POLLPRI;
    return bits;
}

/* mio's reading of poll(2) revents, as MIO__EV_* bits. */
static uint32_t poll_flags(short r)
{
    uint32_t f = 0;
    if (r & (POLLIN | POLLPRI))
        f |= MIO__EV_READABLE;
    if (r & POLLOUT)
        f |= MIO__EV_WRITABLE;
    if (r & POLLERR)
        f |= MIO__EV_ERROR;
    if (r & (POLLHUP | POLLRDHUP))
        f |= MIO__EV_READ_CLOSED;
    f |= mio__event_write_closed((unsigned short)r, POLLOUT, POLLERR, POLLHUP);
    if (r & POLLPRI)
        f |= MIO__EV_PRIORITY;
    return f;
}

/* Interrupts a poll in progress so that it sees a change; lock held. */
static void changed(struct poll_sel *sel)
{
    if (sel->polling)
        (void)mio__wakefd_signal(sel->notify);
}

/* A table with its lock and notify fd; always available. */
static int poll_new(void **out)
{
    struct poll_sel *sel = calloc(1, sizeof(*sel));
    if (sel == NULL)
        return -ENOMEM;
    int err = mio__fdtable_init(&sel->tab, sizeof(struct entry));
    if (err == 0 && (err = mio__wakefd_open(sel->notify)) < 0)
        mio__fdtable_fini(&sel->tab);
    if (err < 0) {
        free(sel);
        return err;
    }
    *out = sel;
    return 0;
}

/* Drops a reference; the last one frees the table. */
static void poll_free(void *handle)
{
    struct poll_sel *sel = handle;
    if (!mio__fdtable_release(sel))
        return;
    mio__wakefd_close(sel->notify);
    mio__fdtable_fini(&sel->tab);
    free(sel->fds);
    free(sel->snap);
    free(sel->snap_gen);
    free(sel);
}

/* A new entry, at the end of the set; -EBADF for a closed fd, -EEXIST when
 * already there. */
static int poll_register(void *handle, int fd, mio_token_t token, mio_interest_t interest)
{
    struct poll_sel *sel = handle;
    if (fcntl(fd, F_GETFD) < 0)
        return -errno;
    pthread_mutex_lock(&sel->tab.lock);
    int err = mio__fdtable_add(&sel->tab, fd, token);
    if (err == 0) {
        struct entry *e = mio__fdtable_get(&sel->tab, fd);
        err = mio__array_grow(&sel->fds, &sel->fds_cap, sel->n + 1, sizeof(*sel->fds));
        if (err < 0) {
            mio__fdtable_remove(&sel->tab, &e->reg);
        } else {
            e->pos = sel->n;
            sel->fds[sel->n++] = fd;
            e->interest = poll_bits(interest);
            e->armed = e->interest;
            changed(sel);
        }
    }
    pthread_mutex_unlock(&sel->tab.lock);
    return err;
}

/* A new token, interest and generation, all re-armed; -ENOENT when not
 * there. */
static int poll_reregister(void *handle, int fd, mio_token_t token,
                           mio_interest_t interest)
{
    struct poll_sel *sel = handle;
    int err = 0;
    pthread_mutex_lock(&sel->tab.lock);
    struct entry *e = mio__fdtable_get(&sel->tab, fd);
    if (e == NULL) {
        err = -ENOENT;
    } else {
        mio__fdtable_renew(&sel->tab, &e->reg, token);
        e->interest = poll_bits(interest);
        e->armed = e->interest;
        e->parked = false;
        changed(sel);
    }
    pthread_mutex_unlock(&sel->tab.lock);
    return err;
}

/* Removes the entry, the last of the set taking its place there; -ENOENT
 * when not there. */
static int poll_deregister(void *handle, int fd)
{
    struct poll_sel *sel = handle;
    int err = 0;
    pthread_mutex_lock(&sel->tab.lock);
    struct entry *e = mio__fdtable_get(&sel->tab, fd);
    if (e == NULL) {
        err = -ENOENT;
    } else {
        int last = sel->fds[--sel->n];
        if (last != fd) {
            struct entry *moved = mio__fdtable_get(&sel->tab, last);
            moved->pos = e->pos;
            sel->fds[e->pos] = last;
        }
        mio__fdtable_remove(&sel->tab, &e->reg);
        changed(sel);
    }
    pthread_mutex_unlock(&sel->tab.lock);
    return err;
}

/* Unmasks the directions the caller consumed, and takes the entry back
 * into the set if it was parked; -ENOENT when not there. */
static int poll_rearm(void *handle, int fd, mio_interest_t interest)
{
    struct poll_sel *sel = handle;
    int err = 0;
    pthread_mutex_lock(&sel->tab.lock);
    struct entry *e = mio__fdtable_get(&sel->tab, fd);
    if (e == NULL) {
        err = -ENOENT;
    } else {
        short bits = (short)(poll_bits(interest) & e->interest);
        if ((e->armed & bits) != bits || e->parked) {
            e->armed = (short)(e->armed | bits);
            e->parked = false;
            changed(sel);
        }
    }
    pthread_mutex_unlock(&sel->tab.lock);
    return err;
}

/* Copies the set into the snapshot, notify first; lock held.  Returns the
 * number of pollfds, or -ENOMEM. */
static int snapshot(struct poll_sel *sel)
{
    if (mio__array_grow(&sel->snap, &sel->snap_cap, sel->n + 1, sizeof(*sel->snap)) < 0 ||
        mio__array_grow(&sel->snap_gen, &sel->snap_gen_cap, sel->n + 1,
                        sizeof(*sel->snap_gen)) < 0)
        return -ENOMEM;
    sel->snap[0] = (struct pollfd){.fd = sel->notify[0], .events = POLLIN};
    for (size_t i = 0; i < sel->n; i++) {
        int fd = sel->fds[i];
        const struct entry *e = mio__fdtable_get(&sel->tab, fd);
        sel->snap[i + 1] = (struct pollfd){.fd = e->parked ? -1 : fd, .events = e->armed};
        sel->snap_gen[i + 1] = e->reg.gen;
    }
    return (int)(sel->n + 1);
}

/* Moves wakes that are pending into events; lock held. */
static void collect_wakes(struct poll_sel *sel, struct mio_events *events)
{
    for (struct poll_waker *w = sel->wakers; w && events->len < events->cap; w = w->next)
        if (atomic_exchange(&w->pending, false))
            events->ev[events->len++] = (struct mio_event){w->token, MIO__EV_READABLE};
}

/* Turns the snapshot's revents into events and masks what was reported;
 * lock held. */
static void collect_ready(struct poll_sel *sel, int nfds, struct mio_events *events)
{
    for (int i = 1; i < nfds && events->len < events->cap; i++) {
        short r = sel->snap[i].revents;
        struct entry *e = r ? mio__fdtable_get(&sel->tab, sel->snap[i].fd) : NULL;
        if (e == NULL || e->reg.gen != sel->snap_gen[i])
            continue; /* deregistered or changed while we polled */
        if (r & (POLLERR | POLLHUP | POLLNVAL))
            e->parked = true;
        if (r & POLLNVAL)
            continue; /* closed without a deregister: nothing to say */
        e->armed = (short)(e->armed & ~(r & ARMABLE));
        events->ev[events->len++] = (struct mio_event){e->reg.token, poll_flags(r)};
    }
}

/* One poll(2) call with a timeout in nanoseconds (-1 blocks). */
static int poll_ns(struct pollfd *fds, int nfds, int64_t ns)
{
#ifdef HAVE_PPOLL
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    return ppoll(fds, (nfds_t)nfds, ns < 0 ? NULL : &ts, NULL);
#else
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    return poll(fds, (nfds_t)nfds, mio__timeout_ms(ns < 0 ? NULL : &ts));
#endif
}

/* Polls the snapshot until something is ready for the caller, the time
 * is up, or poll(2) fails. */
static int poll_select(void *handle, struct mio_events *events,
                       const struct timespec *timeout)
{
    struct poll_sel *sel = handle;
    int64_t deadline = -1;
    if (timeout != NULL) {
        int64_t ns = (int64_t)timeout->tv_nsec;
        /* Saturate instead of overflowing: a century is forever enough. */
        ns += timeout->tv_sec > 3153600000 ? INT64_MAX / 2
                                           : (int64_t)timeout->tv_sec * 1000000000;
        deadline = mio__now_ns() + ns;
    }
    int err = 0;
    pthread_mutex_lock(&sel->tab.lock);
    for (;;) {
        collect_wakes(sel, events);
        int nfds = snapshot(sel);
        if (nfds < 0) {
            err = nfds;
            break;
        }
        int64_t wait = -1;
        if (events->len > 0)
            wait = 0;
        else if (deadline >= 0) {
            wait = deadline - mio__now_ns();
            if (wait < 0)
                wait = 0;
        }
        sel->polling = true;
        pthread_mutex_unlock(&sel->tab.lock);
        int r = poll_ns(sel->snap, nfds, wait);
        int saved = errno;
        pthread_mutex_lock(&sel->tab.lock);
        sel->polling = false;
        if (r < 0) {
            if (events->len == 0)
                err = -saved;
            break;
        }
        if (sel->snap[0].revents)
            mio__wakefd_drain(sel->notify);
        collect_ready(sel, nfds, events);
        collect_wakes(sel, events);
        if (events->len > 0 || wait == 0)
            break;
        /* Only a change from another thread woke us: poll again, with
         * the time that is left rather than the whole timeout. */
    }
    pthread_mutex_unlock(&sel->tab.lock);
    return err;
}

/* Joins the list of wakers that a poll collects; holds a reference on the
 * table. */
static int poll_waker_init(void *waker, void *handle, mio_token_t token)
{
    struct poll_waker *w = waker;
    struct poll_sel *sel = handle;
    mio__fdtable_hold(&sel->tab);
    w->sel = sel;
    w->token = token;
    atomic_init(&w->pending, false);
    pthread_mutex_lock(&sel->tab.lock);
    w->next = sel->wakers;
    sel->wakers = w;
    pthread_mutex_unlock(&sel->tab.lock);
    return 0;
}

/* Lock-free so that it is async-signal-safe: a flag and a write. */
static int poll_waker_wake(void *waker)
{
    struct poll_waker *w = waker;
    atomic_store(&w->pending, true);
    return mio__wakefd_signal(w->sel->notify);
}

/* Leaves the list and drops the reference on the table. */
static void poll_waker_fini(void *waker)
{
    struct poll_waker *w = waker;
    struct poll_sel *sel = w->sel;
    pthread_mutex_lock(&sel->tab.lock);
    for (struct poll_waker **p = &sel->wakers; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    pthread_mutex_unlock(&sel->tab.lock);
    poll_free(sel);
}

const struct mio__backend mio__backend_poll = {
    .name = "poll",
    .native_event_size = 0,
    .supported_interest = MIO_READABLE | MIO_WRITABLE | MIO_PRIORITY,
    .probe = NULL,
    .sel_new = poll_new,
    .sel_clone = mio__fdtable_clone,
    .sel_free = poll_free,
    .sel_select = poll_select,
    .sel_register = poll_register,
    .sel_reregister = poll_reregister,
    .sel_deregister = poll_deregister,
    .sel_rearm = poll_rearm,
    .waker_size = sizeof(struct poll_waker),
    .waker_init = poll_waker_init,
    .waker_wake = poll_waker_wake,
    .waker_fini = poll_waker_fini,
};
