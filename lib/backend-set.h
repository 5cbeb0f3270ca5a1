/*
 * Which backends a build of libmio holds: MIO_WITH_EPOLL, MIO_WITH_KQUEUE,
 * MIO_WITH_POLL and MIO_WITH_IO_URING.  A build may name some with -D (the
 * poll(2)-only test library, the kqueue backend over a shim); when it names
 * none, every backend configure found and poll(2), which is always there.
 * MIO_DEFAULT_BACKEND is what configure --with-poller chose ("": none).
 * lib/backends.c and the tests that check its list derive it from here.
 */
#ifndef MIO_BACKEND_SET_H
#define MIO_BACKEND_SET_H

#if !defined(MIO_WITH_EPOLL) && !defined(MIO_WITH_KQUEUE) && !defined(MIO_WITH_POLL) && \
    !defined(MIO_WITH_IO_URING)
#ifdef HAVE_LIBURING
#define MIO_WITH_IO_URING 1
#endif
#ifdef HAVE_EPOLL_CREATE1
#define MIO_WITH_EPOLL 1
#endif
#ifdef HAVE_KQUEUE
#define MIO_WITH_KQUEUE 1
#endif
#define MIO_WITH_POLL 1
#endif

#ifndef MIO_DEFAULT_BACKEND
#define MIO_DEFAULT_BACKEND "" /* no preference: the order of the list */
#endif

#endif
