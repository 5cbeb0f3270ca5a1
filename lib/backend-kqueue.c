/*
 * The kqueue backend (FreeBSD, macOS, NetBSD, OpenBSD, DragonFly).  A
 * registration is one kevent per direction (EVFILT_READ, EVFILT_WRITE),
 * always EV_CLEAR so that it is edge-triggered, and the token travels in
 * udata.  Every change is submitted with EV_RECEIPT, so the kernel answers
 * each one in place with EV_ERROR and its errno in `data` (0 when it was
 * applied) instead of failing the whole call at the first bad change.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/time.h>
#include <sys/event.h>
#include <unistd.h>

#include "backend.h"
#include "fd.h"
#include "selfd.h"
#include "wakefd.h"

#ifdef EVFILT_USER
/* An EVFILT_USER event on a dup of the poll's kqueue. */
struct kqueue_waker {
    int kq;
    uintptr_t ident;
    mio_token_t token;
};
#else
/* A wake fd (eventfd or pipe) registered for reading. */
struct kqueue_waker {
    int fds[2];
};
#endif

/* udata is void * on most systems but intptr_t on NetBSD before 10, where
 * configure defines KEVENT_UDATA_INTPTR.  The way back to a token is the
 * same cast for both. */
#ifdef KEVENT_UDATA_INTPTR
#define MIO__UDATA(token) ((intptr_t)(token))
#else
#define MIO__UDATA(token) ((void *)(token))
#endif
#define MIO__TOKEN(udata) ((mio_token_t)(udata))

#define MIO__ADD_FLAGS (EV_ADD | EV_CLEAR | EV_RECEIPT)
#define MIO__DELETE_FLAGS (EV_DELETE | EV_RECEIPT)

/* Errors each call accepts as success (lists end with 0).  EPIPE: macOS
 * 10.10 and 10.11 refuse to add a pipe whose other end is closed, yet go on
 * to report its hang-up (mio #582).  ENOENT: the filter being deleted was
 * not there, which is what a delete wants anyway. */
static const int ignore_none[] = {0};
static const int ignore_on_register[] = {EPIPE, 0};
static const int ignore_on_reregister[] = {ENOENT, EPIPE, 0};
static const int ignore_on_deregister[] = {ENOENT, 0};

/* Fills `changes` for `fd`: EV_ADD for the directions in `add`, EV_DELETE
 * for those in `del`; returns how many it wrote (0 to 2). */
static int fill_changes(struct kevent changes[2], int fd, mio_token_t token,
                        mio_interest_t add, mio_interest_t del)
{
    static const struct {
        mio_interest_t interest;
        int filter;
    } dirs[] = {{MIO_READABLE, EVFILT_READ}, {MIO_WRITABLE, EVFILT_WRITE}};
    int n = 0;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (add & dirs[i].interest) {
            EV_SET(&changes[n], fd, dirs[i].filter, MIO__ADD_FLAGS, 0, 0,
                   MIO__UDATA(token));
            n++;
        } else if (del & dirs[i].interest) {
            EV_SET(&changes[n], fd, dirs[i].filter, MIO__DELETE_FLAGS, 0, 0,
                   MIO__UDATA(token));
            n++;
        }
    }
    return n;
}

/*
 * Submits `n` changes carrying EV_RECEIPT and returns the first per-change
 * error that is not in `ignored`.  The receipts are written over `changes`
 * (one per change, in order, with no room left for pending events, so the
 * call never waits).  FreeBSD's kevent(2) promises that when the call fails
 * with EINTR every change was applied; the receipts were not written then,
 * so there is nothing left to check.
 */
static int submit_changes(int kq, struct kevent *changes, int n, const int *ignored)
{
    if (n == 0)
        return 0;
    int got = kevent(kq, changes, n, changes, n, NULL);
    if (got < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < got && i < n; i++) { /* got <= n: kevent's nevents */
        if (!(changes[i].flags & EV_ERROR) || changes[i].data == 0)
            continue;
        int err = (int)changes[i].data;
        const int *ign = ignored;
        while (*ign != 0 && *ign != err)
            ign++;
        if (*ign == 0)
            return -err;
    }
    return 0;
}

/* mio's reading of one kevent, as MIO__EV_* bits.  kqueue reports one event
 * per filter, so a socket ready both ways gives two events, one token. */
static uint32_t kevent_flags(const struct kevent *kev)
{
    uint32_t f = 0;
    switch (kev->filter) {
    case EVFILT_READ:
        f |= MIO__EV_READABLE;
        if (kev->flags & EV_EOF)
            f |= MIO__EV_READ_CLOSED;
        break;
    case EVFILT_WRITE:
        f |= MIO__EV_WRITABLE;
        if (kev->flags & EV_EOF)
            f |= MIO__EV_WRITE_CLOSED;
        break;
#ifdef EVFILT_USER
    case EVFILT_USER: /* the waker */
        f |= MIO__EV_READABLE;
        break;
#endif
#ifdef EVFILT_AIO
    case EVFILT_AIO:
        f |= MIO__EV_AIO;
        break;
#endif
#ifdef EVFILT_LIO
    case EVFILT_LIO:
        f |= MIO__EV_LIO;
        break;
#endif
    default:
        break;
    }
    /* With EV_EOF, fflags holds the socket error (ECONNRESET, ...). */
    if ((kev->flags & EV_ERROR) || ((kev->flags & EV_EOF) && kev->fflags != 0))
        f |= MIO__EV_ERROR;
    return f;
}

/* A new kqueue made close-on-exec (kqueue() has no flag for it), or -errno. */
static int kqueue_cloexec(void)
{
    int kq = kqueue();
    if (kq < 0)
        return -errno;
    int err = mio__fd_set_cloexec(kq);
    if (err < 0) {
        close(kq);
        return err;
    }
    return kq;
}

/* A close-on-exec kqueue. */
static int kqueue_new(void **out)
{
    return mio__selfd_new(kqueue_cloexec(), out);
}

/* Whether the kernel grants a kqueue now (a sandbox may refuse it). */
static int kqueue_probe(void)
{
    int kq = kqueue_cloexec();
    if (kq < 0)
        return kq;
    close(kq);
    return 0;
}

/* Waits with the exact timespec (kqueue needs no rounding); EINTR is
 * returned, not retried. */
static int kqueue_select(void *sel, struct mio_events *events,
                         const struct timespec *timeout)
{
    const struct mio__selfd *s = sel;
    struct kevent *native = events->native;
    int cap = events->cap > (size_t)INT_MAX ? INT_MAX : (int)events->cap;
    int n = kevent(s->fd, NULL, 0, native, cap, timeout);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        events->ev[i].token = MIO__TOKEN(native[i].udata);
        events->ev[i].flags = kevent_flags(&native[i]);
    }
    events->len = (size_t)n;
    return 0;
}

/* Adds one filter per direction.  Adding a filter that is already there
 * updates it, so registering twice is a reregistration, as in mio. */
static int kqueue_register(void *sel, int fd, mio_token_t token, mio_interest_t interest)
{
    const struct mio__selfd *s = sel;
    struct kevent changes[2];
    int n = fill_changes(changes, fd, token, interest, 0);
    return submit_changes(s->fd, changes, n, ignore_on_register);
}

/* kqueue cannot say which filters an fd has, so every direction not wanted
 * is deleted, and ENOENT for one that was not there is success. */
static int kqueue_reregister(void *sel, int fd, mio_token_t token,
                             mio_interest_t interest)
{
    const struct mio__selfd *s = sel;
    struct kevent changes[2];
    int n = fill_changes(changes, fd, token, interest, MIO_READABLE | MIO_WRITABLE);
    return submit_changes(s->fd, changes, n, ignore_on_reregister);
}

/* Deletes both filters.  Unlike epoll, deregistering an fd that was never
 * registered returns 0: both deletes fail with ENOENT, which is ignored. */
static int kqueue_deregister(void *sel, int fd)
{
    const struct mio__selfd *s = sel;
    struct kevent changes[2];
    int n = fill_changes(changes, fd, 0, 0, MIO_READABLE | MIO_WRITABLE);
    return submit_changes(s->fd, changes, n, ignore_on_deregister);
}

/* kqueue sees EAGAIN itself: nothing to do. */
static int kqueue_rearm(void *sel, int fd, mio_interest_t interest)
{
    (void)sel;
    (void)fd;
    (void)interest;
    return 0;
}

#ifdef EVFILT_USER

/* Idents of EVFILT_USER events are a namespace of their own; a counter
 * gives every waker its own, so a poll may have several. */
static atomic_uintptr_t next_waker_ident = 1;

/* Registers an EVFILT_USER event on a dup of the kqueue, so that the waker
 * keeps the queue alive and may outlive the poll. */
static int kqueue_waker_init(void *waker, void *sel, mio_token_t token)
{
    struct kqueue_waker *w = waker;
    const struct mio__selfd *s = sel;
    w->kq = mio__fd_dup_cloexec(s->fd);
    if (w->kq < 0)
        return w->kq;
    w->ident = atomic_fetch_add_explicit(&next_waker_ident, 1, memory_order_relaxed);
    w->token = token;
    struct kevent kev;
    EV_SET(&kev, w->ident, EVFILT_USER, MIO__ADD_FLAGS, 0, 0, MIO__UDATA(token));
    int err = submit_changes(w->kq, &kev, 1, ignore_none);
    if (err < 0)
        close(w->kq);
    return err;
}

/* Triggers the event: one system call, async-signal-safe.  EV_CLEAR makes
 * triggers before the next poll coalesce into one event.  The token goes
 * along again because FreeBSD stores the udata of every change to an
 * existing event, a trigger included. */
static int kqueue_waker_wake(void *waker)
{
    const struct kqueue_waker *w = waker;
    struct kevent kev;
    EV_SET(&kev, w->ident, EVFILT_USER, EV_RECEIPT, NOTE_TRIGGER, 0,
           MIO__UDATA(w->token));
    return submit_changes(w->kq, &kev, 1, ignore_none);
}

/* Deletes the event (it would otherwise stay in the queue for the life of
 * the poll) and drops the waker's hold on the queue. */
static void kqueue_waker_fini(void *waker)
{
    struct kqueue_waker *w = waker;
    struct kevent kev;
    EV_SET(&kev, w->ident, EVFILT_USER, MIO__DELETE_FLAGS, 0, 0, MIO__UDATA(0));
    (void)submit_changes(w->kq, &kev, 1, ignore_none);
    close(w->kq);
}

#else /* !EVFILT_USER: OpenBSD, NetBSD before 10 */

/* Registers a wake fd for reading; the registration holds no reference to
 * the queue, so the waker may outlive the poll (its wakes then go nowhere). */
static int kqueue_waker_init(void *waker, void *sel, mio_token_t token)
{
    struct kqueue_waker *w = waker;
    const struct mio__selfd *s = sel;
    int err = mio__wakefd_open(w->fds);
    if (err < 0)
        return err;
    struct kevent kev;
    EV_SET(&kev, w->fds[0], EVFILT_READ, MIO__ADD_FLAGS, 0, 0, MIO__UDATA(token));
    err = submit_changes(s->fd, &kev, 1, ignore_none);
    if (err < 0)
        mio__wakefd_close(w->fds);
    return err;
}

/* The fd is never drained by the poll: with EV_CLEAR each write is a new
 * edge.  A full pipe (EAGAIN) is drained and written again inside
 * mio__wakefd_signal, which is async-signal-safe. */
static int kqueue_waker_wake(void *waker)
{
    const struct kqueue_waker *w = waker;
    return mio__wakefd_signal(w->fds);
}

/* Closing the read end removes its event from the queue. */
static void kqueue_waker_fini(void *waker)
{
    struct kqueue_waker *w = waker;
    mio__wakefd_close(w->fds);
}

#endif /* EVFILT_USER */

/* AIO and LIO add no change: they name the token that aio requests carry in
 * their SIGEV_KEVENT sigevent, so the kernel reports them as EVFILT_AIO or
 * EVFILT_LIO events.  A clone is a dup of the kqueue descriptor: same
 * queue, same registrations; freeing one closes that handle only, the queue
 * living on while a clone or waker holds it. */
const struct mio__backend mio__backend_kqueue = {
    .name = "kqueue",
    .native_event_size = sizeof(struct kevent),
    .supported_interest = MIO_READABLE | MIO_WRITABLE | MIO_AIO | MIO_LIO,
    .close_deregisters = true,
    .probe = kqueue_probe,
    .sel_new = kqueue_new,
    .sel_clone = mio__selfd_clone,
    .sel_free = mio__selfd_free,
    .sel_select = kqueue_select,
    .sel_register = kqueue_register,
    .sel_reregister = kqueue_reregister,
    .sel_deregister = kqueue_deregister,
    .sel_rearm = kqueue_rearm,
    .waker_size = sizeof(struct kqueue_waker),
    .waker_init = kqueue_waker_init,
    .waker_wake = kqueue_waker_wake,
    .waker_fini = kqueue_waker_fini,
};
