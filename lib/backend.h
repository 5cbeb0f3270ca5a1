/*
 * The contract between the front of libmio (poll.c, events.c) and the one
 * backend a build links in (backend-epoll.c, backend-kqueue.c or
 * backend-poll.c).  Each backend defines struct mio__sel (epoll and kqueue
 * share selfd.h's), struct mio_waker, and every constant and function below;
 * the front has validated the arguments (fd >= 0, interest non-empty, known
 * and supported, events capacity > 0, timeout well formed) before it calls.
 * Every function returns 0 or a negative errno; the backend fills the events
 * of events.h.
 *
 * Backends may differ where the kernel does: kqueue takes a second register
 * as a reregistration and a deregister of an unknown fd as success, where
 * epoll and poll(2) answer -EEXIST and -ENOENT.  A waker may outlive its
 * poll, so it must hold what it needs (a dup, a reference), never borrow
 * the mio__sel pointer it was created with.
 */
#ifndef MIO_BACKEND_H
#define MIO_BACKEND_H

#include "events.h"
#include "mio.h"

struct mio__sel;

/* What the backend is called, how large one kernel event is (0 when the
 * backend needs no scratch array), and which interest bits it can deliver. */
extern const char mio__backend_name[];
extern const size_t mio__native_event_size;
extern const mio_interest_t mio__supported_interest;

int mio__sel_new(struct mio__sel **out);
/* A second handle whose registrations reach the same kernel object. */
int mio__sel_clone(struct mio__sel *sel, struct mio__sel **out);
void mio__sel_free(struct mio__sel *sel);
/* Fills events->ev[0 .. cap) and sets events->len; events->len is 0 on
 * entry.  NULL timeout blocks. */
int mio__sel_select(struct mio__sel *sel, struct mio_events *events,
                    const struct timespec *timeout);
int mio__sel_register(struct mio__sel *sel, int fd, mio_token_t token,
                      mio_interest_t interest);
int mio__sel_reregister(struct mio__sel *sel, int fd, mio_token_t token,
                        mio_interest_t interest);
int mio__sel_deregister(struct mio__sel *sel, int fd);
int mio__sel_rearm(struct mio__sel *sel, int fd, mio_interest_t interest);

/* The front allocates a waker of mio__waker_size zeroed bytes, has the
 * backend set it up, and frees it after mio__waker_fini. */
extern const size_t mio__waker_size;
int mio__waker_init(struct mio_waker *waker, struct mio__sel *sel, mio_token_t token);
int mio__waker_wake(struct mio_waker *waker);
void mio__waker_fini(struct mio_waker *waker);

#endif /* MIO_BACKEND_H */
