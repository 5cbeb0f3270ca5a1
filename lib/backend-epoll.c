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

#include "backend.h"
#include "selfd.h"
#include "timeout.h"
#include "wakefd.h"

struct mio_waker {
    int fds[2];
};

const char mio__backend_name[] = "epoll";
const size_t mio__native_event_size = sizeof(struct epoll_event);
const mio_interest_t mio__supported_interest = MIO_READABLE | MIO_WRITABLE | MIO_PRIORITY;
const size_t mio__waker_size = sizeof(struct mio_waker);

#ifdef HAVE_EPOLL_PWAIT2
/* Set once epoll_pwait2 has failed with ENOSYS (kernels before 5.11). */
static atomic_bool no_pwait2;
#endif

/* The epoll mask for an interest: always edge-triggered; EPOLLRDHUP so that
 * a peer's FIN shows as read-closed. */
static uint32_t epoll_mask(mio_interest_t interest)
{
    uint32_t mask = EPOLLET;
    if (interest & MIO_READABLE)
        mask |= EPOLLIN | EPOLLRDHUP;
    if (interest & MIO_WRITABLE)
        mask |= EPOLLOUT;
    if (interest & MIO_PRIORITY)
        mask |= EPOLLPRI;
    return mask;
}

/* mio's reading of an epoll event mask, as MIO__EV_* bits. */
static uint32_t epoll_flags(uint32_t e)
{
    uint32_t f = 0;
    if (e & (EPOLLIN | EPOLLPRI))
        f |= MIO__EV_READABLE;
    if (e & EPOLLOUT)
        f |= MIO__EV_WRITABLE;
    if (e & EPOLLERR)
        f |= MIO__EV_ERROR;
    if ((e & EPOLLHUP) || ((e & EPOLLIN) && (e & EPOLLRDHUP)))
        f |= MIO__EV_READ_CLOSED;
    f |= mio__event_write_closed(e, EPOLLOUT, EPOLLERR, EPOLLHUP);
    if (e & EPOLLPRI)
        f |= MIO__EV_PRIORITY;
    return f;
}

/* A close-on-exec epoll set. */
int mio__sel_new(struct mio__sel **out)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    return mio__selfd_new(epfd < 0 ? -errno : epfd, out);
}

/* A dup of the epoll descriptor: same set, same registrations. */
int mio__sel_clone(struct mio__sel *sel, struct mio__sel **out)
{
    return mio__selfd_clone(sel, out);
}

void mio__sel_free(struct mio__sel *sel)
{
    mio__selfd_free(sel);
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

int mio__sel_select(struct mio__sel *sel, struct mio_events *events,
                    const struct timespec *timeout)
{
    struct epoll_event *native = events->native;
    int cap = events->cap > (size_t)INT_MAX ? INT_MAX : (int)events->cap;
    int n = epoll_wait_timeout(sel->fd, native, cap, timeout);
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
static int ctl(struct mio__sel *sel, int op, int fd, mio_token_t token,
               mio_interest_t interest)
{
    struct epoll_event ev = {.events = epoll_mask(interest)};
    ev.data.u64 = (uint64_t)token;
    return epoll_ctl(sel->fd, op, fd, &ev) < 0 ? -errno : 0;
}

int mio__sel_register(struct mio__sel *sel, int fd, mio_token_t token,
                      mio_interest_t interest)
{
    return ctl(sel, EPOLL_CTL_ADD, fd, token, interest);
}

int mio__sel_reregister(struct mio__sel *sel, int fd, mio_token_t token,
                        mio_interest_t interest)
{
    return ctl(sel, EPOLL_CTL_MOD, fd, token, interest);
}

int mio__sel_deregister(struct mio__sel *sel, int fd)
{
    /* A non-NULL event keeps kernels before 2.6.9 happy. */
    struct epoll_event ev = {0};
    return epoll_ctl(sel->fd, EPOLL_CTL_DEL, fd, &ev) < 0 ? -errno : 0;
}

/* epoll sees EAGAIN itself: nothing to do. */
int mio__sel_rearm(struct mio__sel *sel, int fd, mio_interest_t interest)
{
    (void)sel;
    (void)fd;
    (void)interest;
    return 0;
}

/* The eventfd is never drained by the poll: each write is a new edge, and
 * wakes between two polls coalesce into one event. */
int mio__waker_init(struct mio_waker *waker, struct mio__sel *sel, mio_token_t token)
{
    int err = mio__wakefd_open(waker->fds);
    if (err < 0)
        return err;
    err = ctl(sel, EPOLL_CTL_ADD, waker->fds[0], token, MIO_READABLE);
    if (err < 0)
        mio__wakefd_close(waker->fds);
    return err;
}

int mio__waker_wake(struct mio_waker *waker)
{
    return mio__wakefd_signal(waker->fds);
}

/* Closing the eventfd removes it from the epoll set. */
void mio__waker_fini(struct mio_waker *waker)
{
    mio__wakefd_close(waker->fds);
}
