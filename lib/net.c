/*
 * Non-blocking sockets and pipes: every descriptor made here is non-blocking
 * and close-on-exec, atomically where the system allows it (SOCK_NONBLOCK,
 * accept4, pipe2), else with fcntl right after creation.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* accept4, pipe2 */
#endif

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "fd.h"
#include "mio.h"

#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
#define NET_ATOMIC_FLAGS 1
#else
#define NET_ATOMIC_FLAGS 0
#endif

/*
 * Set once accept4()/pipe2() failed with ENOSYS: the libc has them but the
 * kernel refuses them (x86 Android's seccomp policy blocks accept4, mio
 * #1445), so later calls go straight to the fallback.  Relaxed ordering is
 * enough: a thread that misses the store only pays one more ENOSYS.
 */
#ifdef HAVE_ACCEPT4
static atomic_bool accept4_enosys;
#endif
#ifdef HAVE_PIPE2
static atomic_bool pipe2_enosys;
#endif

/* Closes `fd` and returns `err`, for the error paths. */
static int net_fail(int fd, int err)
{
    close(fd);
    return err;
}

/* Makes a fresh descriptor non-blocking and close-on-exec (the fallback when
 * it could not be created so); 0 or -errno. */
static int net_set_flags(int fd)
{
    int err = mio__fd_set_cloexec(fd);
    return err != 0 ? err : mio__fd_set_nonblock(fd);
}

/* Sets SO_NOSIGPIPE where the platform has it; 0 or -errno. */
static int net_nosigpipe(int fd)
{
#ifdef SO_NOSIGPIPE
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof(on)) < 0)
        return -errno;
#else
    (void)fd;
#endif
    return 0;
}

/* Sets an int socket option to `value`; 0 or -errno. */
static int net_setopt(int fd, int level, int name, int value)
{
    if (setsockopt(fd, level, name, &value, sizeof(value)) < 0)
        return -errno;
    return 0;
}

/* The address family of `addr`, or -EINVAL when addrlen cannot hold it. */
static int net_family(const struct sockaddr *addr, socklen_t addrlen)
{
    assert(addr != NULL);
    if (addrlen < offsetof(struct sockaddr, sa_family) + sizeof(addr->sa_family))
        return -EINVAL;
    return addr->sa_family;
}

/* A new non-blocking, close-on-exec socket of `domain` and `type`; the
 * descriptor or -errno. */
static int net_socket(int domain, int type)
{
#if NET_ATOMIC_FLAGS
    int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int err = 0;
#else
    int fd = socket(domain, type, 0);
    if (fd < 0)
        return -errno;
    int err = net_set_flags(fd);
#endif
    if (err == 0)
        err = net_nosigpipe(fd);
    return err != 0 ? net_fail(fd, err) : fd;
}

/* A new socket of `type` in the family of `addr`; the descriptor or
 * -errno. */
static int net_socket_for(const struct sockaddr *addr, socklen_t addrlen, int type)
{
    int family = net_family(addr, addrlen);
    return family < 0 ? family : net_socket(family, type);
}

/* Hands the pair `p` out through fds[], or closes it and returns `err`. */
static int net_pair_out(const int p[2], int fds[2], int err)
{
    if (err != 0) {
        close(p[1]);
        return net_fail(p[0], err);
    }
    fds[0] = p[0];
    fds[1] = p[1];
    return 0;
}

/* Fills *sun with `path`; -EINVAL when empty, -ENAMETOOLONG when it does
 * not fit sun_path with its NUL. */
static int net_unix_addr(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
    assert(path != NULL);
    size_t n = strlen(path);
    if (n == 0)
        return -EINVAL;
    if (n >= sizeof(sun->sun_path))
        return -ENAMETOOLONG;
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n + 1);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

/* A new Unix stream socket, and in *sun the address of `path`; the
 * descriptor or -errno. */
static int net_unix_socket(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
    int err = net_unix_addr(path, sun, len);
    return err != 0 ? err : net_socket(AF_UNIX, SOCK_STREAM);
}

/* Binds `fd` to `addr` and listens; closes `fd` and returns -errno on
 * failure, else returns `fd`. */
static int net_bind_listen(int fd, const struct sockaddr *addr, socklen_t addrlen,
                           int backlog)
{
    if (bind(fd, addr, addrlen) < 0 || listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0)
        return net_fail(fd, -errno);
    return fd;
}

/*
 * Starts a connect on a non-blocking socket; closes `fd` and returns -errno
 * on failure, else returns `fd`.  EINPROGRESS is the normal answer; EINTR
 * also means the connect goes on asynchronously (POSIX), so both succeed.
 * A Unix stream socket whose listener's backlog is full fails with EAGAIN.
 */
static int net_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    if (connect(fd, addr, addrlen) < 0 && errno != EINPROGRESS && errno != EINTR)
        return net_fail(fd, -errno);
    return fd;
}

/* A listening TCP socket with SO_REUSEADDR and the MIO_LISTEN_* options. */
int mio_tcp_listen(const struct sockaddr *addr, socklen_t addrlen, int backlog,
                   unsigned flags)
{
    int family = net_family(addr, addrlen);
    if (family < 0)
        return family;
    if ((flags & ~(unsigned)(MIO_LISTEN_V6ONLY | MIO_LISTEN_REUSEPORT)) != 0)
        return -EINVAL;
#ifndef SO_REUSEPORT
    if (flags & MIO_LISTEN_REUSEPORT)
        return -EOPNOTSUPP;
#endif
    int fd = net_socket(family, SOCK_STREAM);
    if (fd < 0)
        return fd;
    int err = net_setopt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (err == 0 && (flags & MIO_LISTEN_V6ONLY) && family == AF_INET6)
        err = net_setopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
#ifdef SO_REUSEPORT
    if (err == 0 && (flags & MIO_LISTEN_REUSEPORT))
        err = net_setopt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
#endif
    if (err != 0)
        return net_fail(fd, err);
    return net_bind_listen(fd, addr, addrlen, backlog);
}

/*
 * Accepts one connection.  accept4() makes the descriptor non-blocking and
 * close-on-exec atomically; where it is missing, or the kernel answers
 * ENOSYS, accept() + fcntl leaves a window in which a concurrent fork+exec
 * can inherit it.  EINTR is retried; ECONNABORTED (the peer reset before we
 * accepted) is returned for the caller to accept again.  *addrlen, when
 * given, receives the length of the peer address.
 */
int mio_tcp_accept(int listen_fd, struct sockaddr_storage *addr, socklen_t *addrlen)
{
    struct sockaddr_storage tmp;
    /* cppcheck-suppress uninitvar ; only tmp's address is taken here, and
     * accept() writes it before anything reads it. */
    struct sockaddr *sa = (struct sockaddr *)(addr != NULL ? addr : &tmp);
    socklen_t len;
    int fd, err;
    for (;;) {
        len = sizeof(tmp);
#ifdef HAVE_ACCEPT4
        if (!atomic_load_explicit(&accept4_enosys, memory_order_relaxed)) {
            fd = accept4(listen_fd, sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                err = 0;
                break;
            }
            if (errno == EINTR)
                continue;
            if (errno != ENOSYS)
                return -errno;
            atomic_store_explicit(&accept4_enosys, true, memory_order_relaxed);
            len = sizeof(tmp);
        }
#endif
        fd = accept(listen_fd, sa, &len);
        if (fd >= 0) {
            err = net_set_flags(fd);
            break;
        }
        if (errno != EINTR)
            return -errno;
    }
    if (err == 0)
        err = net_nosigpipe(fd);
    if (err != 0)
        return net_fail(fd, err);
    if (addrlen != NULL)
        *addrlen = len;
    return fd;
}

/* Starts a non-blocking TCP connect to `addr`. */
int mio_tcp_connect(const struct sockaddr *addr, socklen_t addrlen)
{
    int fd = net_socket_for(addr, addrlen, SOCK_STREAM);
    if (fd < 0)
        return fd;
    return net_connect(fd, addr, addrlen);
}

/* Sets TCP_NODELAY on or off. */
int mio_tcp_set_nodelay(int fd, bool on)
{
    return net_setopt(fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
}

/* Reads and clears SO_ERROR; a failing getsockopt is returned the same way
 * (-EBADF, -ENOTSOCK). */
int mio_socket_take_error(int fd)
{
    int value = 0;
    socklen_t len = sizeof(value);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &len) < 0)
        return -errno;
    return -value;
}

/* shutdown(2); the kernel rejects a bad `how` with -EINVAL. */
int mio_socket_shutdown(int fd, int how)
{
    if (shutdown(fd, how) < 0)
        return -errno;
    return 0;
}

/* getsockname(2) into *addr; *addrlen, when given, receives its length. */
int mio_socket_local_addr(int fd, struct sockaddr_storage *addr, socklen_t *addrlen)
{
    assert(addr != NULL);
    socklen_t len = sizeof(*addr);
    if (getsockname(fd, (struct sockaddr *)addr, &len) < 0)
        return -errno;
    if (addrlen != NULL)
        *addrlen = len;
    return 0;
}

/* A UDP socket bound to `addr`. */
int mio_udp_bind(const struct sockaddr *addr, socklen_t addrlen)
{
    int fd = net_socket_for(addr, addrlen, SOCK_DGRAM);
    if (fd < 0)
        return fd;
    if (bind(fd, addr, addrlen) < 0)
        return net_fail(fd, -errno);
    return fd;
}

/* Sets the default peer of a UDP socket. */
int mio_udp_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    assert(addr != NULL);
    if (connect(fd, addr, addrlen) < 0)
        return -errno;
    return 0;
}

/* A listening Unix stream socket at `path` (backlog <= 0 means SOMAXCONN);
 * an existing file is not unlinked. */
int mio_unix_listen(const char *path, int backlog)
{
    struct sockaddr_un sun;
    socklen_t len;
    int fd = net_unix_socket(path, &sun, &len);
    if (fd < 0)
        return fd;
    return net_bind_listen(fd, (struct sockaddr *)&sun, len, backlog);
}

/* Starts a connect to the Unix stream socket at `path`. */
int mio_unix_connect(const char *path)
{
    struct sockaddr_un sun;
    socklen_t len;
    int fd = net_unix_socket(path, &sun, &len);
    if (fd < 0)
        return fd;
    return net_connect(fd, (struct sockaddr *)&sun, len);
}

/* A connected pair of Unix stream sockets; fds[] is written only on
 * success. */
int mio_unix_pair(int fds[2])
{
    assert(fds != NULL);
    int sv[2];
#if NET_ATOMIC_FLAGS
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    int err = 0;
#else
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return -errno;
    int err = net_set_flags(sv[0]);
    if (err == 0)
        err = net_set_flags(sv[1]);
#endif
    if (err == 0)
        err = net_nosigpipe(sv[0]);
    if (err == 0)
        err = net_nosigpipe(sv[1]);
    return net_pair_out(sv, fds, err);
}

/* A non-blocking, close-on-exec pipe: pipe2() where it exists and the
 * kernel takes it, else pipe() + fcntl.  fds[] is written only on
 * success. */
int mio_pipe(int fds[2])
{
    assert(fds != NULL);
    int p[2];
#ifdef HAVE_PIPE2
    if (!atomic_load_explicit(&pipe2_enosys, memory_order_relaxed)) {
        if (pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0)
            return net_pair_out(p, fds, 0);
        if (errno != ENOSYS)
            return -errno;
        atomic_store_explicit(&pipe2_enosys, true, memory_order_relaxed);
    }
#endif
    if (pipe(p) < 0)
        return -errno;
    int err = net_set_flags(p[0]);
    if (err == 0)
        err = net_set_flags(p[1]);
    return net_pair_out(p, fds, err);
}
