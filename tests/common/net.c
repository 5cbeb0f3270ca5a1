/*
 * Loopback sockets for the tests (see net.h): clients, test listeners and
 * ports, each wait bounded.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* accept4 */
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "base.h"
#include "net.h"

/* How long send_all() and recv_exact() wait without progress. */
#define IO_MS 5000
/* How long finish() and upstream_accept() wait. */
#define WAIT_MS 3000

/* ---- clients ------------------------------------------------------------ */

static int connect_addr(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int r;
    do
        r = connect(fd, sa, len);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

int connect_to(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return connect_addr((struct sockaddr *)&a, sizeof(a));
}

int connect_to6(int port)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6,
                             .sin6_port = htons((uint16_t)port),
                             .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    return connect_addr((struct sockaddr *)&a, sizeof(a));
}

/* Waits up to ms for `events` on fd: true when ready. */
static bool wait_fd(int fd, short events, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 1000; i++) {
        int64_t left = until - ms_now();
        if (left < 0)
            left = 0;
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, (int)left);
        if (r > 0)
            return true;
        if (r == 0 || errno != EINTR)
            return false;
    }
    return false;
}

void send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t done = 0;
    /* Each round either sends or waits up to IO_MS: bounded by len. */
    while (done < len) {
        ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_fd(fd, POLLOUT, IO_MS))
                test_fail("send_all: no progress in %d ms after %zu of %zu bytes", IO_MS,
                          done, len);
            continue;
        }
        test_fail("send_all: %s after %zu of %zu bytes", strerror(errno), done, len);
    }
}

void recv_exact(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = recv(fd, p + done, len - done, MSG_DONTWAIT);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n == 0)
            test_fail("recv_exact: EOF after %zu of %zu bytes", done, len);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!wait_fd(fd, POLLIN, IO_MS))
                test_fail("recv_exact: nothing in %d ms after %zu of %zu bytes", IO_MS,
                          done, len);
            continue;
        }
        test_fail("recv_exact: %s after %zu of %zu bytes", strerror(errno), done, len);
    }
}

/* How the peer ended the connection within ms: 1 an end of file, 2 a reset
 * (ECONNRESET), 0 anything else first (data, another error, the time out).
 * A reset is taken from recv, so no byte is read before it. */
static int peer_end_within(int fd, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 1000; i++) {
        int64_t left = until - ms_now();
        if (left < 0)
            left = 0;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n >= 0)
            return n == 0 ? 1 : 0;
        if (errno == ECONNRESET)
            return 2;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return 0;
        if (left == 0)
            return 0;
    }
    return 0;
}

bool peer_closed_within(int fd, int ms)
{
    return peer_end_within(fd, ms) == 1;
}

bool peer_reset_within(int fd, int ms)
{
    return peer_end_within(fd, ms) == 2;
}

/* ---- loopback clients that fail the test ---------------------------------- */

void set_timeouts(int fd)
{
    struct timeval tv = {5, 0};
    CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
}

int client4(int port)
{
    int fd = connect_to(port);
    if (fd < 0)
        test_fail("connect to 127.0.0.1:%d: %s", port, strerror(errno));
    return fd;
}

int client6(int port)
{
    int fd = connect_to6(port);
    if (fd < 0)
        test_fail("connect to [::1]:%d: %s", port, strerror(errno));
    return fd;
}

int connect_from(const char *src, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    CHECK_EQ(inet_pton(AF_INET, src, &a.sin_addr), 1);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        test_fail("bind %s: %s", src, strerror(errno));
    set_timeouts(fd);
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        test_fail("connect from %s to port %d: %s", src, port, strerror(errno));
    return fd;
}

int local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    CHECK_EQ(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    CHECK(fl >= 0);
    CHECK_EQ(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

struct sockaddr_un unix_addr(const char *path)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    size_t len = strlen(path);
    CHECK(len < sizeof(sun.sun_path));
    memcpy(sun.sun_path, path, len + 1);
    return sun;
}

int client_unix(const char *path)
{
    struct sockaddr_un a = unix_addr(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    set_timeouts(fd);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        test_fail("connect to %s: %s", path, strerror(errno));
    return fd;
}

void expect_unix_echo(const char *path, const char *text)
{
    int fd = client_unix(path);
    expect_echo(fd, text);
    close(fd);
}

void expect_echo(int fd, const char *msg)
{
    char buf[512];
    size_t n = strlen(msg);
    CHECK(n <= sizeof(buf));
    send_all(fd, msg, n);
    recv_exact(fd, buf, n);
    CHECK(memcmp(buf, msg, n) == 0);
}

void finish(int fd)
{
    CHECK_EQ(shutdown(fd, SHUT_WR), 0);
    CHECK(peer_closed_within(fd, WAIT_MS));
    close(fd);
}

/* ---- test upstreams and ports --------------------------------------------- */

static int *tracked;
static size_t ntracked, captracked;

void track_fd(int fd)
{
    if (ntracked == captracked) {
        captracked = captracked ? 2 * captracked : 64;
        tracked = xrealloc(tracked, captracked * sizeof(*tracked));
    }
    tracked[ntracked++] = fd;
}

void close_tracked(int fd)
{
    for (size_t i = 0; i < ntracked; i++)
        if (tracked[i] == fd) {
            tracked[i] = tracked[--ntracked];
            break;
        }
    close(fd);
}

void close_all_tracked(void)
{
    for (size_t i = 0; i < ntracked; i++)
        close(tracked[i]);
    ntracked = 0;
}

/* A TCP socket bound to 127.0.0.1:0, not listening. */
static int bound_loopback(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

int listen_loopback(int backlog, int *port)
{
    int fd = bound_loopback();
    CHECK_EQ(listen(fd, backlog), 0);
    *port = local_port(fd);
    return fd;
}

int listen_at(const char *ip, int port, int backlog, int *bound)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1)
        test_fail("listen_at: \"%s\" is not an IPv4 address", ip);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int err = errno;
        close(fd);
        test_fail("cannot listen on %s:%d: %s", ip, port, strerror(err));
    }
    CHECK_EQ(listen(fd, backlog), 0);
    *bound = local_port(fd);
    return fd;
}

int upstream_accept(int lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    int r = -1;
    for (int i = 0; i < 100 && r < 0; i++)
        if ((r = poll(&p, 1, WAIT_MS)) < 0 && errno != EINTR)
            break;
    if (r != 1)
        test_fail("the daemon did not connect to the upstream within %d ms", WAIT_MS);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    CHECK(fd >= 0);
    set_timeouts(fd);
    return fd;
}

/* The first port of the kernel's ephemeral range (32768 when it cannot
 * be read). */
static int ephemeral_low(void)
{
    int lo = 32768, hi = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%d %d", &lo, &hi) != 2)
            lo = 32768;
        fclose(f);
    }
    return lo;
}

/* Whether nothing holds port on any IPv4 address for `type` (a bind
 * without SO_REUSEADDR succeeds). */
static bool port_free(int port, int type)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/*
 * A port below the ephemeral range: one the kernel picked for a test's
 * socket of port 0 is also the kind that any client's connect or unbound
 * send draws from, and parallel tests took such ports between the
 * reservation and the daemon's bind.  Chosen at random (processes run in
 * parallel) among the ports free for TCP and UDP alike.
 */
int reserve_port(void)
{
    static unsigned seed;
    if (seed == 0)
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)ms_now();
    int hi = ephemeral_low(), lo = hi > 12000 ? 10000 : 1024;
    for (int i = 0; i < 500 && hi - lo >= 1000; i++) {
        int port = lo + (int)(rand_r(&seed) % (unsigned)(hi - lo));
        if (port_free(port, SOCK_STREAM) && port_free(port, SOCK_DGRAM))
            return port;
    }
    int fd = bound_loopback(); /* a narrow range: the kernel's choice */
    int port = local_port(fd);
    close(fd);
    return port;
}

int refusing_port(void)
{
    int fd = bound_loopback();
    track_fd(fd);
    int port = local_port(fd);
    /* It does refuse. */
    int c = connect_to(port);
    CHECK_EQ(c, -1);
    CHECK_EQ(errno, ECONNREFUSED);
    return port;
}

int silent_port(void)
{
    int port;
    int lfd = listen_loopback(0, &port);
    track_fd(lfd);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* Connect until one hangs (its SYN dropped): then the queue is full. */
    for (int i = 0; i < 8; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        CHECK(fd >= 0);
        track_fd(fd);
        int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
        CHECK(r == 0 || errno == EINPROGRESS);
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (r < 0 && poll(&pfd, 1, 50) == 0)
            return port;
    }
    test_fail("could not fill the accept queue of a backlog-0 listener");
}

int connect_start(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

int connect_within(int port, int ms)
{
    int fd = connect_start(port);
    if (fd < 0)
        return -1;
    if (!wait_fd(fd, POLLOUT, ms)) {
        close(fd);
        errno = ETIMEDOUT;
        return -1;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    (void)getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

int accept_within(int lfd, int ms)
{
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 1000; i++) {
        int64_t left = until - ms_now();
        if (left < 0)
            break;
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
    }
    test_fail("no connection to accept within %d ms", ms);
}

void close_reset(int fd)
{
    struct linger lg = {1, 0};
    CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}

const char *end_name(enum end how)
{
    return how == END_EOF ? "EOF" : how == END_RESET ? "reset" : "nothing";
}

enum end wait_end(int fd, int ms, size_t *drained)
{
    static uint8_t sink[64 * 1024];
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 100000; i++) {
        int64_t left = until - ms_now();
        if (left < 0)
            return END_NONE;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return END_NONE;
        ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n > 0) {
            if (drained != NULL)
                *drained += (size_t)n;
            continue;
        }
        if (n == 0)
            return END_EOF;
        if (errno == EAGAIN || errno == EINTR)
            continue;
        return errno == ECONNRESET || errno == EPIPE ? END_RESET : END_NONE;
    }
    return END_NONE;
}
