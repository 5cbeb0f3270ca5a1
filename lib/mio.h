/*
 * libmio: a C port of the poll core of the Rust crate mio.
 *
 * A mio_poll_t waits for readiness on file descriptors registered through
 * its mio_registry_t, each with a token (the caller's name for it) and an
 * interest.  Readiness is edge-triggered on every backend: an event is
 * delivered when a source becomes ready, and is not delivered again until
 * the caller has consumed that readiness, that is until a read, write,
 * accept or connect on the descriptor has failed with EAGAIN.  A read from
 * a stream socket that returned fewer bytes than asked for has consumed it
 * too: the receive queue was empty, and new bytes bring a new event, so the
 * caller may stop there and save the read that would fail (tokio does the
 * same).  Not when the event reported read-closed or an error: that edge is
 * spent, so read on to EOF or the error.  Nor when it reported priority:
 * a read stops short at TCP's urgent mark (and at a Unix socket's
 * out-of-band byte) with bytes still queued behind it, and no new event
 * comes for them, so a caller that may receive urgent data registers
 * MIO_PRIORITY and, after an event that reports it, reads on to EAGAIN.
 * kqueue has no priority events: there, such a caller always reads on.
 *
 * Every call returns 0 (or a non-negative value) on success and a negative
 * errno on failure, like libuv.  Passing NULL where an object is required is
 * a programming error and asserts.  The library never logs, exits or aborts
 * on its own.
 *
 * Portability contract: epoll and kqueue see EAGAIN themselves; the poll(2)
 * backend cannot, so portable code calls mio_registry_rearm() after an
 * operation on a registered descriptor fails with EAGAIN, or after such a
 * short read (poll(2) then reports at once what came meanwhile).  On epoll and
 * kqueue that call does nothing and costs no system call.
 */
#ifndef MIO_H
#define MIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The caller's name for a registered source; pointer-sized like kqueue's
 * udata, so a pointer or an index fits on 32- and 64-bit targets. */
typedef uintptr_t mio_token_t;

/* What a registration waits for: a non-empty OR of the MIO_* bits below. */
typedef uint8_t mio_interest_t;

#define MIO_READABLE ((mio_interest_t)0x01)
#define MIO_WRITABLE ((mio_interest_t)0x02)
#define MIO_AIO ((mio_interest_t)0x04)      /* kqueue EVFILT_AIO only */
#define MIO_LIO ((mio_interest_t)0x08)      /* kqueue EVFILT_LIO only */
#define MIO_PRIORITY ((mio_interest_t)0x10) /* epoll and poll(2) only */

/*
 * Not in Rust's mio: a hint for a source that several polls watch, each in
 * its own thread (a listening socket shared by workers).  A readiness change
 * then wakes one of the polls waiting in the kernel rather than all of them
 * (epoll: EPOLLEXCLUSIVE, Linux 4.5); a poll that is not waiting at that
 * moment may still get the event too, so a caller must still expect EAGAIN.
 * Only beside MIO_READABLE and/or MIO_WRITABLE (-EINVAL otherwise).  On
 * epoll a registration with it reports read-closed only on a hang-up of
 * both directions (the kernel refuses EPOLLRDHUP beside it), which a
 * listening socket never has anyway.  kqueue, poll(2) and io_uring accept
 * it and wake every poll, as without it (io_uring's exclusive poll would
 * hand every event to the first ring, busy or not).
 */
#define MIO_EXCLUSIVE ((mio_interest_t)0x20)

typedef struct mio_poll mio_poll_t;
typedef struct mio_registry mio_registry_t;
typedef struct mio_events mio_events_t;
typedef struct mio_event mio_event_t;
typedef struct mio_waker mio_waker_t;

/* ---- Poll ------------------------------------------------------------ */

/*
 * Creates a poll instance (close-on-exec selector) on the first backend of
 * the default order that this system grants: the one chosen by configure
 * --with-poller, then epoll, kqueue, poll(2), among those the library was
 * built with.  A backend refused for good (-ENOSYS, -EPERM, -EACCES: an old
 * kernel, seccomp, a sysctl) gives way to the next; other errors (-EMFILE,
 * -ENOMEM) are returned.  When the environment variable MIO_BACKEND names a
 * backend, mio_poll_new() behaves as mio_poll_new_with() with that name,
 * without falling back: -ENOSYS when the library lacks it.  An empty
 * MIO_BACKEND counts as unset; a set-user-ID program ignores it.
 */
int mio_poll_new(mio_poll_t **out);

/*
 * Creates a poll instance on the backend named `backend` ("epoll",
 * "kqueue", "poll", "io_uring"), whatever MIO_BACKEND says.  -ENOSYS when
 * this library has no such backend, else the backend's own error when the
 * system refuses it (-EPERM, -ENOSYS, ...).  io_uring (Linux 5.13 and
 * later, built where configure finds liburing) is taken only this way or
 * through MIO_BACKEND, never by mio_poll_new() on its own; it is -ENOSYS on
 * an older kernel and -EPERM where kernel.io_uring_disabled or a seccomp
 * filter refuses it.
 */
int mio_poll_new_with(mio_poll_t **out, const char *backend);

/* The name of the backend `poll` runs on. */
const char *mio_poll_backend(const mio_poll_t *poll);

/* Frees a poll instance; registered descriptors are not closed. */
void mio_poll_free(mio_poll_t *poll);

/* The registry of the poll: valid until mio_poll_free(). */
mio_registry_t *mio_poll_registry(mio_poll_t *poll);

/*
 * Waits for events.  `events` is cleared, then filled with at most its
 * capacity; readiness that did not fit is reported by the next call.
 * `timeout` NULL blocks; {0, 0} returns at once; otherwise the call returns
 * after at least that long with no events (rounded up to the backend's
 * resolution, never down to a busy loop).  Returns 0, or -EINTR when a
 * signal interrupted the wait (it is not retried: the caller decides),
 * -EINVAL for a capacity of 0 or a malformed timespec.  Only one thread
 * polls a given mio_poll_t at a time.
 */
int mio_poll_poll(mio_poll_t *poll, mio_events_t *events, const struct timespec *timeout);

/* The name of the backend mio_poll_new() would take now: "epoll", "kqueue"
 * or "poll" (each candidate is probed with a selector made and closed), the
 * name MIO_BACKEND gives ("io_uring" among them), or
 * "none" when it would fail for want of one (MIO_BACKEND names a backend
 * this library lacks).  mio_poll_backend() names the backend of a poll. */
const char *mio_backend_name(void);

/* ---- Registry -------------------------------------------------------- */

/*
 * Registers `fd` with `token` and `interest`.  Usable from any thread, also
 * while another thread blocks in mio_poll_poll().  Errors: -EINVAL for an
 * empty interest or unknown bits, -EOPNOTSUPP for interest this backend
 * cannot deliver (MIO_PRIORITY on kqueue, MIO_AIO/MIO_LIO off kqueue),
 * -EBADF for a bad descriptor, -EEXIST when already registered (epoll,
 * io_uring and poll(2); kqueue accepts it as a reregistration), -EPERM for
 * descriptors the kernel cannot poll (regular files and directories on
 * epoll and io_uring).
 */
int mio_registry_register(mio_registry_t *reg, int fd, mio_token_t token,
                          mio_interest_t interest);

/* Replaces both token and interest of a registered fd; -ENOENT if it was
 * not registered (epoll, io_uring and poll(2)). */
int mio_registry_reregister(mio_registry_t *reg, int fd, mio_token_t token,
                            mio_interest_t interest);

/* Stops events for `fd`.  Events already returned in a batch may still name
 * its token.  -ENOENT if it was not registered (epoll, io_uring and
 * poll(2)).  Deregister before close(): epoll and kqueue forget a closed
 * descriptor by themselves, the poll(2) backend cannot, and a descriptor
 * number reused by the next accept would then be refused with -EEXIST; on
 * io_uring the pending poll even keeps the socket open until deregister. */
int mio_registry_deregister(mio_registry_t *reg, int fd);

/*
 * Deregisters `fd` and closes it (always, whatever is returned), in one
 * step where the backend allows: epoll and kqueue forget a descriptor when
 * it is closed, so there only close() is made, a system call less than
 * deregister then close.  On epoll that holds only if no other descriptor
 * refers to the same open file (dup(), fork(), SCM_RIGHTS): epoll keeps a
 * registration while the file lives, and its events would go on naming the
 * token; call mio_registry_deregister() and close() for such a descriptor.
 * Returns what deregister would on poll(2) and io_uring (-ENOENT for an fd
 * not registered); 0 on epoll and kqueue, which make no call to check.
 */
int mio_registry_close(mio_registry_t *reg, int fd);

/*
 * Tells the registry that an operation on `fd` in the directions of
 * `interest` failed with EAGAIN (or a stream read came back short), so the
 * next readiness must be reported.
 * A no-op without a system call on epoll, kqueue and io_uring, which see
 * EAGAIN themselves; the poll(2) backend masks readiness it has reported
 * until this call (mio does the same inside its I/O wrappers).  -ENOENT if `fd` is not
 * registered on the poll(2) backend.
 */
int mio_registry_rearm(mio_registry_t *reg, int fd, mio_interest_t interest);

/* A second handle on the same poll, for another thread or owner; freed with
 * mio_registry_free().  It stays valid after the poll is freed. */
int mio_registry_try_clone(mio_registry_t *reg, mio_registry_t **out);

/* Frees a registry made by mio_registry_try_clone(). */
void mio_registry_free(mio_registry_t *reg);

/* ---- Events ---------------------------------------------------------- */

/* A buffer for up to `capacity` events; NULL when out of memory.  A
 * capacity of 0 is allowed but mio_poll_poll() refuses it with -EINVAL. */
mio_events_t *mio_events_new(size_t capacity);
void mio_events_free(mio_events_t *events);
size_t mio_events_capacity(const mio_events_t *events);
size_t mio_events_len(const mio_events_t *events);
bool mio_events_is_empty(const mio_events_t *events);
void mio_events_clear(mio_events_t *events);

/* The i-th event of the last poll; i < mio_events_len() or it asserts. */
const mio_event_t *mio_events_get(const mio_events_t *events, size_t i);

mio_token_t mio_event_token(const mio_event_t *ev);
bool mio_event_is_readable(const mio_event_t *ev);
bool mio_event_is_writable(const mio_event_t *ev);
bool mio_event_is_error(const mio_event_t *ev);
/* The peer will send no more (FIN received, or the pipe's writer closed). */
bool mio_event_is_read_closed(const mio_event_t *ev);
/* Writing can no longer succeed (peer gone, reset, or refused connect). */
bool mio_event_is_write_closed(const mio_event_t *ev);
bool mio_event_is_priority(const mio_event_t *ev);
bool mio_event_is_aio(const mio_event_t *ev);
bool mio_event_is_lio(const mio_event_t *ev);

/* ---- Waker ----------------------------------------------------------- */

/*
 * A waker makes the poll return a readable event with `token`, from any
 * thread or from a signal handler.  Wakes before the next poll coalesce into
 * one event.  The waker keeps what it needs alive, so it may outlive the
 * poll (its wakes then go nowhere).
 */
int mio_waker_new(mio_registry_t *reg, mio_token_t token, mio_waker_t **out);

/* Wakes the poll; async-signal-safe and thread-safe. */
int mio_waker_wake(mio_waker_t *waker);
void mio_waker_free(mio_waker_t *waker);

/* ---- Non-blocking sockets -------------------------------------------- */
/*
 * Every descriptor returned is non-blocking and close-on-exec.  Functions
 * that create a descriptor return it (>= 0) or a negative errno; fds[] and
 * other outputs are written only on success, and address lengths are
 * outputs only.  An address too short for its family is -EINVAL.  Linux
 * delivers SIGPIPE on writes to a closed socket: send with MSG_NOSIGNAL or
 * ignore SIGPIPE; where the platform has SO_NOSIGPIPE it is set.
 */

/* Flags for mio_tcp_listen(). */
#define MIO_LISTEN_V6ONLY 0x01    /* IPV6_V6ONLY: [::] does not take v4 */
#define MIO_LISTEN_REUSEPORT 0x02 /* SO_REUSEPORT: several listeners, one port */

/* A listening TCP socket on `addr` (SO_REUSEADDR set); backlog <= 0 means
 * SOMAXCONN.  Unknown flags are -EINVAL; MIO_LISTEN_REUSEPORT where the
 * system has no SO_REUSEPORT is -EOPNOTSUPP. */
int mio_tcp_listen(const struct sockaddr *addr, socklen_t addrlen, int backlog,
                   unsigned flags);

/* Accepts one connection from a TCP or Unix stream listener; -EAGAIN when
 * none is pending.  `addr` and `addrlen` may be NULL. */
int mio_tcp_accept(int listen_fd, struct sockaddr_storage *addr, socklen_t *addrlen);

/* Starts a non-blocking connect; the socket is returned at once and becomes
 * writable when the connect is done: then mio_socket_take_error() tells
 * whether it succeeded. */
int mio_tcp_connect(const struct sockaddr *addr, socklen_t addrlen);

/* Sets TCP_NODELAY on or off. */
int mio_tcp_set_nodelay(int fd, bool on);

/* The pending socket error (SO_ERROR) as a negative errno and clears it; 0
 * when there is none. */
int mio_socket_take_error(int fd);

/* shutdown(2) with SHUT_RD, SHUT_WR or SHUT_RDWR. */
int mio_socket_shutdown(int fd, int how);

/* The local address of a socket, e.g. to learn the port bound for port 0. */
int mio_socket_local_addr(int fd, struct sockaddr_storage *addr, socklen_t *addrlen);

/* A UDP socket bound to `addr`. */
int mio_udp_bind(const struct sockaddr *addr, socklen_t addrlen);

/* Sets the default peer of a UDP socket. */
int mio_udp_connect(int fd, const struct sockaddr *addr, socklen_t addrlen);

/* A listening Unix stream socket at `path` (backlog <= 0: SOMAXCONN);
 * -ENAMETOOLONG when the path does not fit sun_path, -EINVAL when it is
 * empty, -EADDRINUSE when it exists. */
int mio_unix_listen(const char *path, int backlog);

/* Starts a connect to the Unix stream socket at `path`. */
int mio_unix_connect(const char *path);

/* A connected pair of Unix stream sockets. */
int mio_unix_pair(int fds[2]);

/* A pipe: fds[0] reads, fds[1] writes. */
int mio_pipe(int fds[2]);

#ifdef __cplusplus
}
#endif

#endif /* MIO_H */
