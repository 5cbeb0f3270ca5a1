/*
 * The epoll backend (Linux, Android).  Every registration is edge-triggered
 * (EPOLLET), the token travels in epoll_event.data.u64, and the waker is an
 * eventfd registered like any other source.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "backend.h"
#include "selfd.h"
#include "timeout.h"
#include "wakefd.h"

/* A waker: an eventfd (or pipe) registered in the set. */
struct epoll_waker {
    int fds[2];
};

#ifdef HAVE_EPOLL_PWAIT2
/* Set once epoll_pwait2 has failed with ENOSYS (kernels before 5.11). */
static atomic_bool no_pwait2;
#endif

#ifndef EPOLLEXCLUSIVE
#define EPOLLEXCLUSIVE (1u << 28) /* Linux 4.5; older headers lack it */
#endif

/* The epoll mask for an interest: always edge-triggered; EPOLLRDHUP so that
 * a peer's FIN shows as read-closed, but not beside EPOLLEXCLUSIVE, which
 * the kernel takes only with IN, OUT, ET and WAKEUP. */
static uint32_t epoll_mask(mio_interest_t interest)
{
    uint32_t mask = EPOLLET;
    if (interest & MIO_EXCLUSIVE)
        mask |= EPOLLEXCLUSIVE;
    if (interest & MIO_READABLE)
        mask |= interest & MIO_EXCLUSIVE ? EPOLLIN : EPOLLIN | EPOLLRDHUP;
    if (interest & MIO_WRITABLE)
        mask |= EPOLLOUT;
    if (interest & MIO_PRIORITY)
        mask |= EPOLLPRI;
    return mask;
}

/* mio's reading of an epoll event mask, as MIO__EV_* bits. */
static uint32_t epoll_flags(uint32_t e)
{
    static const struct mio__mask_bits bits = {EPOLLIN,  EPOLLPRI, EPOLLOUT,
                                               EPOLLERR, EPOLLHUP, EPOLLRDHUP};
    return mio__event_flags(e, &bits);
}

/* A close-on-exec epoll set. */
static int epoll_new(void **out)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    return mio__selfd_new(epfd < 0 ? -errno : epfd, out);
}

/* Whether the kernel grants an epoll set now (seccomp may refuse it). */
static int epoll_probe(void)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return -errno;
    close(epfd);
    return 0;
}

/* One epoll wait: nanosecond-exact with epoll_pwait2 where the kernel has
 * it, else epoll_wait with the timeout rounded up to whole milliseconds. */
static int epoll_wait_timeout(int epfd, struct epoll_event *ev, int cap,
                              const struct timespec *timeout)
{
#ifdef HAVE_EPOLL_PWAIT2
    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        int n = epoll_pwait2(epfd, ev, cap, timeout, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
#endif
    return epoll_wait(epfd, ev, cap, mio__timeout_ms(timeout));
}

/* One wait, the kernel's events translated into events->ev. */
static int epoll_select(void *sel, struct mio_events *events,
                        const struct timespec *timeout)
{
    const struct mio__selfd *s = sel;
    struct epoll_event *native = events->native;
    int cap = events->cap > (size_t)INT_MAX ? INT_MAX : (int)events->cap;
    int n = epoll_wait_timeout(s->fd, native, cap, timeout);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        events->ev[i].token = (mio_token_t)native[i].data.u64;
        events->ev[i].flags = epoll_flags(native[i].events);
    }
    events->len = (size_t)n;
    return 0;
}

/* epoll_ctl with the mask for `interest`; 0 or -errno. */
static int ctl(void *sel, int op, int fd, mio_token_t token, mio_interest_t interest)
{
    const struct mio__selfd *s = sel;
    struct epoll_event ev = {.events = epoll_mask(interest)};
    ev.data.u64 = (uint64_t)token;
    return epoll_ctl(s->fd, op, fd, &ev) < 0 ? -errno : 0;
}

/* EPOLL_CTL_ADD: -EEXIST when already there. */
static int epoll_register(void *sel, int fd, mio_token_t token, mio_interest_t interest)
{
    return ctl(sel, EPOLL_CTL_ADD, fd, token, interest);
}

/* EPOLL_CTL_DEL: -ENOENT when not there. */
static int epoll_deregister(void *sel, int fd)
{
    const struct mio__selfd *s = sel;
    /* A non-NULL event keeps kernels before 2.6.9 happy. */
    struct epoll_event ev = {0};
    return epoll_ctl(s->fd, EPOLL_CTL_DEL, fd, &ev) < 0 ? -errno : 0;
}

/* EPOLL_CTL_MOD: -ENOENT when not there.  The kernel modifies no
 * registration with EPOLLEXCLUSIVE, old or new (EINVAL): such a one is
 * deleted and added again, which reports what is ready now as MOD does
 * (an ADD that fails then leaves it deregistered, and says why). */
static int epoll_reregister(void *sel, int fd, mio_token_t token, mio_interest_t interest)
{
    int err = -EINVAL;
    if (!(interest & MIO_EXCLUSIVE))
        err = ctl(sel, EPOLL_CTL_MOD, fd, token, interest);
    if (err != -EINVAL)
        return err;
    err = epoll_deregister(sel, fd);
    return err < 0 ? err : ctl(sel, EPOLL_CTL_ADD, fd, token, interest);
}

/* epoll sees EAGAIN itself: nothing to do. */
static int epoll_rearm(void *sel, int fd, mio_interest_t interest)
{
    (void)sel;
    (void)fd;
    (void)interest;
    return 0;
}

/* The eventfd is never drained by the poll: each write is a new edge, and
 * wakes between two polls coalesce into one event. */
static int epoll_waker_init(void *waker, void *sel, mio_token_t token)
{
    struct epoll_waker *w = waker;
    int err = mio__wakefd_open(w->fds);
    if (err < 0)
        return err;
    err = ctl(sel, EPOLL_CTL_ADD, w->fds[0], token, MIO_READABLE);
    if (err < 0)
        mio__wakefd_close(w->fds);
    return err;
}

/* One write to the eventfd. */
static int epoll_waker_wake(void *waker)
{
    const struct epoll_waker *w = waker;
    return mio__wakefd_signal(w->fds);
}

/* Closing the eventfd removes it from the epoll set. */
static void epoll_waker_fini(void *waker)
{
    struct epoll_waker *w = waker;
    mio__wakefd_close(w->fds);
}

/* A clone is a dup of the epoll descriptor: same set, same registrations. */
const struct mio__backend mio__backend_epoll = {
    .name = "epoll",
    .native_event_size = sizeof(struct epoll_event),
    .supported_interest = MIO_READABLE | MIO_WRITABLE | MIO_PRIORITY,
    .close_deregisters = true,
    .probe = epoll_probe,
    .sel_new = epoll_new,
    .sel_clone = mio__selfd_clone,
    .sel_free = mio__selfd_free,
    .sel_select = epoll_select,
    .sel_register = epoll_register,
    .sel_reregister = epoll_reregister,
    .sel_deregister = epoll_deregister,
    .sel_rearm = epoll_rearm,
    .waker_size = sizeof(struct epoll_waker),
    .waker_init = epoll_waker_init,
    .waker_wake = epoll_waker_wake,
    .waker_fini = epoll_waker_fini,
};
