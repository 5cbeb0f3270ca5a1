/*
 * The contract between the front of libmio (poll.c, events.c) and its
 * backends (backend-epoll.c, backend-kqueue.c, backend-poll.c,
 * backend-io_uring.c).  A library holds every backend its system has; each
 * backend file defines one const struct mio__backend of static functions,
 * and a poll, its registry, the
 * registry's clones and its wakers each hold a pointer to the table of the
 * backend the poll was made with.  backends.c lists the tables and chooses
 * among them.
 *
 * The front has validated the arguments (fd >= 0, interest non-empty, known
 * and in the table's supported_interest, events capacity > 0, timeout well
 * formed) before it calls.  Every function returns 0 or a negative errno;
 * select fills the events of events.h.  A selector is the backend's own
 * object, seen by the front only as the void * that sel_new or sel_clone
 * made; a waker's state is waker_size bytes that the front allocates zeroed
 * (aligned for any type) and the backend fills in waker_init.
 *
 * Backends may differ where the kernel does: kqueue takes a second register
 * as a reregistration and a deregister of an unknown fd as success, where
 * epoll and poll(2) answer -EEXIST and -ENOENT.  A waker may outlive its
 * poll, so it must hold what it needs (a dup, a reference), never borrow
 * the selector it was created with.  Registrations may come from any thread
 * while one thread is inside select, and waker_wake from a signal handler.
 */
#ifndef MIO_BACKEND_H
#define MIO_BACKEND_H

#include <stdbool.h>

#include "events.h"
#include "mio.h"

struct mio__backend {
    /* What mio_poll_new_with(), MIO_BACKEND and mio_poll_backend() call it. */
    const char *name;
    /* Taken only when asked for by name, never by the default order. */
    bool on_request;
    /* Bytes of one kernel event in events->native (0: no scratch array). */
    size_t native_event_size;
    /* The interest bits it can deliver; others are -EOPNOTSUPP. */
    mio_interest_t supported_interest;
    /* Closing a descriptor ends its registration in the kernel (epoll:
     * with the file's last reference; kqueue: always), and the backend
     * keeps nothing of it: mio_registry_close() need not deregister. */
    bool close_deregisters;

    /* 0 when sel_new can work on this system now, else the error sel_new
     * would meet (-ENOSYS, -EPERM, ...); NULL when it always can.  Used to
     * name the default backend without keeping a selector. */
    int (*probe)(void);
    /* A new selector, close-on-exec where it is a descriptor. */
    int (*sel_new)(void **out);
    /* A second handle whose registrations reach the same kernel object. */
    int (*sel_clone)(void *sel, void **out);
    /* Drops this handle; the object lives on while a clone or waker holds
     * it.  NULL is allowed. */
    void (*sel_free)(void *sel);
    /* Fills events->ev[0 .. cap) and sets events->len, which is 0 on entry;
     * events->native holds at least cap * native_event_size bytes.  NULL
     * timeout blocks. */
    int (*sel_select)(void *sel, struct mio_events *events,
                      const struct timespec *timeout);
    int (*sel_register)(void *sel, int fd, mio_token_t token, mio_interest_t interest);
    int (*sel_reregister)(void *sel, int fd, mio_token_t token, mio_interest_t interest);
    int (*sel_deregister)(void *sel, int fd);
    /* The caller met EAGAIN in these directions (mio_registry_rearm). */
    int (*sel_rearm)(void *sel, int fd, mio_interest_t interest);

    /* Bytes of a waker's state. */
    size_t waker_size;
    int (*waker_init)(void *waker, void *sel, mio_token_t token);
    /* Async-signal-safe and thread-safe. */
    int (*waker_wake)(void *waker);
    void (*waker_fini)(void *waker);
};

/* The tables, each defined by its backend file. */
extern const struct mio__backend mio__backend_epoll;
extern const struct mio__backend mio__backend_kqueue;
extern const struct mio__backend mio__backend_poll;
extern const struct mio__backend mio__backend_io_uring;

/* backends.c: the backend of this library called `name`, or NULL. */
const struct mio__backend *mio__backend_find(const char *name);
/* The i-th backend of the default order (the configured default, then
 * epoll, kqueue, poll), among those the library has, less those taken on
 * request only (io_uring); NULL past the end. */
const struct mio__backend *mio__backend_at(size_t i);
/* True for the errors that say a backend cannot be had here, after which
 * mio_poll_new() tries the next one: -ENOSYS, -EPERM, -EACCES. */
bool mio__backend_unavailable(int err);
/* The largest native_event_size of the library's backends, so that one
 * events buffer serves a poll of any backend. */
size_t mio__backend_native_size_max(void);

#endif /* MIO_BACKEND_H */
