/*
 * The contract between the front of libmio (poll.c, events.c) and the one
 * backend a build links in (backend-epoll.c, backend-kqueue.c or
 * backend-poll.c).  Each backend defines struct mio__sel and struct
 * mio_waker privately and every mio__sel_* and mio__waker_* function below;
 * the front has validated the arguments (fd >= 0, interest non-empty, known
 * and supported, events capacity > 0, timeout well formed) before it calls.
 * Every function returns 0 or a negative errno.
 *
 * Backends may differ where the kernel does: kqueue takes a second register
 * as a reregistration and a deregister of an unknown fd as success, where
 * epoll and poll(2) answer -EEXIST and -ENOENT.  A waker may outlive its
 * poll, so it must hold what it needs (a dup, a reference), never borrow
 * the mio__sel pointer it was created with.
 */
#ifndef MIO_BACKEND_H
#define MIO_BACKEND_H

#include "mio.h"

/* Readiness bits of a normalized event, computed by the backend when it
 * copies the kernel's events out. */
enum {
    MIO__EV_READABLE = 1u << 0,
    MIO__EV_WRITABLE = 1u << 1,
    MIO__EV_ERROR = 1u << 2,
    MIO__EV_READ_CLOSED = 1u << 3,
    MIO__EV_WRITE_CLOSED = 1u << 4,
    MIO__EV_PRIORITY = 1u << 5,
    MIO__EV_AIO = 1u << 6,
    MIO__EV_LIO = 1u << 7,
};

struct mio_event {
    mio_token_t token;
    uint32_t flags;
};

struct mio_events {
    struct mio_event *ev;
    size_t len;
    size_t cap;
    void *native; /* cap * mio__native_event_size bytes for the kernel */
};

struct mio__sel;

struct mio_registry {
    struct mio__sel *sel;
    bool is_clone; /* false for the registry embedded in a mio_poll */
};

struct mio_poll {
    struct mio_registry reg;
};

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

int mio__waker_new(struct mio__sel *sel, mio_token_t token,
                   struct mio_waker **out);
int mio__waker_wake(struct mio_waker *waker);
void mio__waker_free(struct mio_waker *waker);

/* ---- helpers shared by the backends (time.c, wakefd.c) ---------------- */

/* Milliseconds for poll(2)/epoll_wait(2): -1 for NULL, rounded up so that a
 * sub-millisecond timeout never becomes a busy loop, saturated at INT_MAX. */
int mio__timeout_ms(const struct timespec *ts);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t mio__now_ns(void);

/* A wake-up channel: an eventfd (fds[0] == fds[1]) where the system has one,
 * else a pipe; both ends non-blocking and close-on-exec. */
int mio__wakefd_open(int fds[2]);
/* Makes fds[0] readable; async-signal-safe.  A full channel (EAGAIN) is
 * drained and written again, so that an edge-triggered reader sees a new
 * edge: callers need not retry. */
int mio__wakefd_signal(const int fds[2]);
/* Reads fds[0] empty; async-signal-safe. */
void mio__wakefd_drain(const int fds[2]);
void mio__wakefd_close(int fds[2]);

/* fcntl helpers: 0 or -errno. */
int mio__set_cloexec(int fd);
int mio__set_nonblock(int fd);

#endif /* MIO_BACKEND_H */
