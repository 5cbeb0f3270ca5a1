/*
 * A stand-in for the BSD <sys/event.h>, so that lib/backend-kqueue.c builds
 * on Linux against the fake kernel in tests/lib/test-kqueue.c.  Only what
 * the backend uses, with FreeBSD's values; FreeBSD's struct kevent also has
 * ext[4], which the backend never touches.
 *
 * KQUEUE_SHIM_NO_EVFILT_USER leaves EVFILT_USER undefined, like OpenBSD,
 * to build the backend's wake-fd fallback.  KEVENT_UDATA_INTPTR makes udata
 * an intptr_t, like NetBSD before 10.
 */
#ifndef KQUEUE_SHIM_SYS_EVENT_H
#define KQUEUE_SHIM_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_AIO (-3)
#define EVFILT_LIO (-10)
#ifndef KQUEUE_SHIM_NO_EVFILT_USER
#define EVFILT_USER (-11)
#endif

/* actions */
#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_ENABLE 0x0004
#define EV_DISABLE 0x0008
/* flags */
#define EV_ONESHOT 0x0010
#define EV_CLEAR 0x0020
#define EV_RECEIPT 0x0040
/* returned values */
#define EV_ERROR 0x4000
#define EV_EOF 0x8000

/* fflags of EVFILT_USER */
#define NOTE_TRIGGER 0x01000000

#ifdef KEVENT_UDATA_INTPTR
typedef intptr_t kevent_udata_t;
#else
typedef void *kevent_udata_t;
#endif

struct kevent {
    uintptr_t ident;      /* fd, or the EVFILT_USER id */
    short filter;         /* EVFILT_* */
    unsigned short flags; /* EV_* */
    unsigned int fflags;  /* filter flags (NOTE_*) */
    int64_t data;         /* filter data, or the errno with EV_ERROR */
    kevent_udata_t udata; /* the caller's, returned as is */
};

/* Evaluates kevp once, as FreeBSD's does. */
#define EV_SET(kevp, a, b, c, d, e, f)        \
    do {                                      \
        struct kevent *ev_set_kevp_ = (kevp); \
        ev_set_kevp_->ident = (a);            \
        ev_set_kevp_->filter = (b);           \
        ev_set_kevp_->flags = (c);            \
        ev_set_kevp_->fflags = (d);           \
        ev_set_kevp_->data = (e);             \
        ev_set_kevp_->udata = (f);            \
    } while (0)

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges,
           struct kevent *eventlist, int nevents, const struct timespec *timeout);

#endif /* KQUEUE_SHIM_SYS_EVENT_H */
