/*
 * Non-blocking sockets (lib/net.c) on real loopback sockets, observed through
 * the poll API: the behaviours mio's own tests pin.  Whenever a test drains a
 * descriptor to EAGAIN and expects a later event, it calls
 * mio_registry_rearm() as portable code must (the poll(2) backend needs it).
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "helpers.h"

#define WAIT_MS 2000
#define QUIET_MS 100

enum { T_LISTEN = 1, T_CLIENT, T_SERVER, T_OTHER };

struct ctx {
    mio_poll_t *poll;
    mio_registry_t *reg;
    mio_events_t *events;
    int fds_before;
};

/* A poll and an events buffer per test; teardown checks that the test
 * closed every descriptor it (and the library) opened. */
static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->fds_before = open_fd_count();
    if (mio_poll_new(&c->poll) != 0)
        return -1;
    c->reg = mio_poll_registry(c->poll);
    c->events = mio_events_new(16);
    if (c->events == NULL)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    mio_events_free(c->events);
    mio_poll_free(c->poll);
    int leaked = open_fd_count() - c->fds_before;
    free(c);
    if (leaked != 0)
        fprintf(stderr, "leaked %d descriptor(s)\n", leaked);
    return leaked == 0 ? 0 : -1;
}

/* Fails unless every bit of `want` is in `bits`. */
static void assert_has(unsigned bits, unsigned want)
{
    assert_int_equal(bits & want, want);
}

/* 127.0.0.1:port. */
static socklen_t lo4(struct sockaddr_storage *ss, uint16_t port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof(*sin);
}

/* in6addr_any or ::1, port `port`. */
static socklen_t any6(struct sockaddr_storage *ss, uint16_t port, bool lo)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    sin6->sin6_addr = lo ? in6addr_loopback : in6addr_any;
    return sizeof(*sin6);
}

/* The port `fd` is bound to, read back through mio_socket_local_addr. */
static uint16_t local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    assert_int_equal(mio_socket_local_addr(fd, &ss, &len), 0);
    if (ss.ss_family == AF_INET6) {
        assert_int_equal(len, sizeof(struct sockaddr_in6));
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* A listener on 127.0.0.1 port 0, its port in *port. */
static int listen4(uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len = lo4(&ss, 0);
    int fd = mio_tcp_listen((struct sockaddr *)&ss, len, 0, 0);
    assert_true(fd >= 0);
    *port = local_port(fd);
    assert_true(*port != 0);
    return fd;
}

/* Accepts on a registered listener `lfd` (token T_LISTEN): waits for its
 * readable event and accepts, re-arming on EAGAIN. */
static int accept_ready(struct ctx *c, int lfd)
{
    int64_t end = now_ms() + WAIT_MS;
    int fd;
    for (;;) {
        fd = mio_tcp_accept(lfd, NULL, NULL);
        if (fd != -EAGAIN)
            break;
        assert_int_equal(mio_registry_rearm(c->reg, lfd, MIO_READABLE), 0);
        assert_true(now_ms() < end);
        assert_has(wait_for_token(c->poll, c->events, T_LISTEN, WAIT_MS), EV_R);
    }
    assert_true(fd >= 0);
    return fd;
}

/* A connected loopback TCP pair made with mio_tcp_listen/connect/accept. */
static void pair_via_mio(struct ctx *c, int *client, int *server)
{
    struct sockaddr_storage ss;
    uint16_t port;
    int lfd = listen4(&port);
    socklen_t len = lo4(&ss, port);
    assert_int_equal(mio_registry_register(c->reg, lfd, T_LISTEN, MIO_READABLE), 0);
    *client = mio_tcp_connect((struct sockaddr *)&ss, len);
    assert_true(*client >= 0);
    *server = accept_ready(c, lfd);
    assert_int_equal(mio_registry_deregister(c->reg, lfd), 0);
    close(lfd);
}

/* Sends `s` on a socket, all of it. */
static void send_str(int fd, const char *s)
{
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Reads exactly `s` from `fd` (registered with `token`), waiting for it. */
static void expect_str(struct ctx *c, int fd, mio_token_t token, const char *s)
{
    char buf[64];
    size_t want = strlen(s), got = 0;
    while (got < want) {
        ssize_t n = read(fd, buf + got, want - got);
        if (n < 0 && errno == EAGAIN) {
            assert_int_equal(mio_registry_rearm(c->reg, fd, MIO_READABLE), 0);
            assert_has(wait_for_token(c->poll, c->events, token, WAIT_MS), EV_R);
            continue;
        }
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(buf, s, want);
}

/* Reads `fd` once more, expecting EAGAIN, and re-arms it for reading. */
static void drain_rearm(struct ctx *c, int fd)
{
    char buf[16];
    assert_int_equal(read(fd, buf, sizeof(buf)), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(mio_registry_rearm(c->reg, fd, MIO_READABLE), 0);
}

/* A fresh directory under TMPDIR for Unix sockets. */
static void make_tmpdir(char *dir, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, size, "%s/mio-net-XXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
}

/* Every kind of descriptor the library makes is O_NONBLOCK|FD_CLOEXEC. */
static void test_flags(void **state)
{
    struct ctx *c = *state;
    uint16_t port;
    int lfd = listen4(&port);
    assert_nb_cloexec(lfd);
    close(lfd);

    int client, server;
    pair_via_mio(c, &client, &server);
    assert_nb_cloexec(client);
    assert_nb_cloexec(server);
    close(client);
    close(server);

    struct sockaddr_storage ss;
    int u = mio_udp_bind((struct sockaddr *)&ss, lo4(&ss, 0));
    assert_nb_cloexec(u);
    close(u);

    char dir[128];
    make_tmpdir(dir, sizeof(dir));
    char path[160];
    snprintf(path, sizeof(path), "%s/s", dir);
    int ul = mio_unix_listen(path, 0);
    assert_nb_cloexec(ul);
    int uc = mio_unix_connect(path);
    assert_nb_cloexec(uc);
    assert_int_equal(mio_registry_register(c->reg, ul, T_LISTEN, MIO_READABLE), 0);
    int us = accept_ready(c, ul);
    assert_nb_cloexec(us);
    assert_int_equal(mio_registry_deregister(c->reg, ul), 0);
    close(us);
    close(uc);
    close(ul);
    unlink(path);
    rmdir(dir);

    int p[2];
    assert_int_equal(mio_unix_pair(p), 0);
    assert_nb_cloexec(p[0]);
    assert_nb_cloexec(p[1]);
    close(p[0]);
    close(p[1]);

    assert_int_equal(mio_pipe(p), 0);
    assert_nb_cloexec(p[0]);
    assert_nb_cloexec(p[1]);
    close(p[0]);
    close(p[1]);
}

/* Accept with nothing pending is -EAGAIN; after a re-arm the next
 * connection raises a new readable event; the peer address comes back. */
static void test_accept_eagain(void **state)
{
    struct ctx *c = *state;
    struct sockaddr_storage ss;
    uint16_t port;
    int lfd = listen4(&port);
    socklen_t len = lo4(&ss, port);
    assert_int_equal(mio_tcp_accept(lfd, NULL, NULL), -EAGAIN);
    assert_int_equal(mio_registry_register(c->reg, lfd, T_LISTEN, MIO_READABLE), 0);
    int c1 = mio_tcp_connect((struct sockaddr *)&ss, len);
    assert_true(c1 >= 0);
    assert_has(wait_for_token(c->poll, c->events, T_LISTEN, WAIT_MS), EV_R);
    struct sockaddr_storage peer;
    socklen_t plen = 0;
    int s1 = mio_tcp_accept(lfd, &peer, &plen);
    assert_true(s1 >= 0);
    assert_int_equal(plen, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(((struct sockaddr_in *)&peer)->sin_port), local_port(c1));
    assert_int_equal(mio_tcp_accept(lfd, NULL, NULL), -EAGAIN);
    assert_int_equal(mio_registry_rearm(c->reg, lfd, MIO_READABLE), 0);
    expect_no_event(c->poll, c->events, T_LISTEN, QUIET_MS);

    int c2 = mio_tcp_connect((struct sockaddr *)&ss, len);
    assert_true(c2 >= 0);
    assert_has(wait_for_token(c->poll, c->events, T_LISTEN, WAIT_MS), EV_R);
    int s2 = mio_tcp_accept(lfd, NULL, NULL);
    assert_true(s2 >= 0);
    assert_int_equal(mio_tcp_accept(lfd, NULL, NULL), -EAGAIN);

    assert_int_equal(mio_registry_deregister(c->reg, lfd), 0);
    close(s2);
    close(c2);
    close(s1);
    close(c1);
    close(lfd);
}

/* A second TCP listener or UDP socket on a bound port is -EADDRINUSE, and
 * the failed call leaks no descriptor (the teardown counts them). */
static void test_bind_twice(void **state)
{
    uint16_t port;
    int lfd = listen4(&port);
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len = lo4(&ss, port);
    assert_int_equal(mio_tcp_listen((struct sockaddr *)&ss, len, 0, 0), -EADDRINUSE);
    close(lfd);

    int u = mio_udp_bind((struct sockaddr *)&ss, lo4(&ss, 0));
    assert_true(u >= 0);
    len = lo4(&ss, local_port(u));
    assert_int_equal(mio_udp_bind((struct sockaddr *)&ss, len), -EADDRINUSE);
    close(u);
}

/* SO_REUSEADDR: the port of a listener whose accepted connection was
 * closed first (TIME_WAIT) can be listened on again at once; a plain
 * socket without the option is refused, which shows the test bites. */
static void test_reuseaddr(void **state)
{
    struct ctx *c = *state;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    /* The kernel keeps no TIME_WAIT once net.ipv4.tcp_max_tw_buckets are
     * taken (other tests' churn): then a plain bind succeeds and proves
     * nothing, and a fresh port is tried. */
    bool time_wait = false;
    for (int attempt = 0; attempt < 5 && !time_wait; attempt++) {
        uint16_t port;
        int lfd = listen4(&port);
        len = lo4(&ss, port);
        assert_int_equal(mio_registry_register(c->reg, lfd, T_LISTEN, MIO_READABLE), 0);
        int client = mio_tcp_connect((struct sockaddr *)&ss, len);
        assert_true(client >= 0);
        int server = accept_ready(c, lfd);
        assert_int_equal(mio_registry_deregister(c->reg, lfd), 0);
        close(lfd);
        close(server); /* active close: TIME_WAIT stays on `port` */
        assert_int_equal(mio_registry_register(c->reg, client, T_CLIENT, MIO_READABLE),
                         0);
        assert_has(wait_for_token(c->poll, c->events, T_CLIENT, WAIT_MS), EV_RC);
        assert_int_equal(mio_registry_deregister(c->reg, client), 0);
        close(client);

        int raw = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(raw >= 0);
        int rc = bind(raw, (struct sockaddr *)&ss, len);
        int err = errno;
        close(raw);
        if (rc == 0)
            continue;
        assert_int_equal(err, EADDRINUSE);
        time_wait = true;
    }
    if (!time_wait) {
        print_message("skipped: the kernel kept no TIME_WAIT in 5 tries "
                      "(net.ipv4.tcp_max_tw_buckets full?)\n");
        skip();
    }
    int lfd = mio_tcp_listen((struct sockaddr *)&ss, len, 0, 0);
    assert_true(lfd >= 0);
    close(lfd);
}

/* Two MIO_LISTEN_REUSEPORT listeners share a port; a third listener
 * without the flag is still refused. */
static void test_reuseport(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len = lo4(&ss, 0);
    (void)state;
#ifndef SO_REUSEPORT
    assert_int_equal(mio_tcp_listen((struct sockaddr *)&ss, len, 0, MIO_LISTEN_REUSEPORT),
                     -EOPNOTSUPP);
    skip();
#endif
    int l1 = mio_tcp_listen((struct sockaddr *)&ss, len, 0, MIO_LISTEN_REUSEPORT);
    assert_true(l1 >= 0);
    len = lo4(&ss, local_port(l1));
    int l2 = mio_tcp_listen((struct sockaddr *)&ss, len, 0, MIO_LISTEN_REUSEPORT);
    assert_true(l2 >= 0);
    assert_int_equal(local_port(l2), local_port(l1));
    assert_int_equal(mio_tcp_listen((struct sockaddr *)&ss, len, 0, 0), -EADDRINUSE);
    close(l2);
    close(l1);
}

/* A backlog of 0 means SOMAXCONN: several connects complete at once with
 * none accepted (with a real backlog of 0 Linux would queue one and drop
 * the other SYNs for a second). */
static void test_default_backlog(void **state)
{
    struct ctx *c = *state;
    struct sockaddr_storage ss;
    uint16_t port;
    int lfd = listen4(&port);
    int64_t end = now_ms() + 500;
    socklen_t len = lo4(&ss, port);
    int fds[4], i;
    for (i = 0; i < 4; i++) {
        fds[i] = mio_tcp_connect((struct sockaddr *)&ss, len);
        assert_true(fds[i] >= 0);
        assert_int_equal(mio_registry_register(c->reg, fds[i], (mio_token_t)(100 + i),
                                               MIO_WRITABLE),
                         0);
    }
    int done = 0;
    struct timespec ts = {0, 50 * 1000 * 1000};
    while (done != 0xf && now_ms() < end) {
        assert_int_equal(mio_poll_poll(c->poll, c->events, &ts), 0);
        for (int n = 0; n < (int)mio_events_len(c->events); n++) {
            const mio_event_t *ev = mio_events_get(c->events, (size_t)n);
            i = (int)mio_event_token(ev) - 100;
            assert_true(i >= 0 && i < 4);
            assert_true(mio_event_is_writable(ev));
            assert_int_equal(mio_socket_take_error(fds[i]), 0);
            done |= 1 << i;
        }
    }
    assert_int_equal(done, 0xf);
    for (i = 0; i < 4; i++) {
        assert_int_equal(mio_registry_deregister(c->reg, fds[i]), 0);
        close(fds[i]);
    }
    close(lfd);
}

/* Unknown flags and a short address are -EINVAL; MIO_LISTEN_V6ONLY is
 * ignored on AF_INET. */
static void test_listen_args(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len = lo4(&ss, 0);
    (void)state;
    assert_int_equal(mio_tcp_listen((struct sockaddr *)&ss, len, 0, 0x80), -EINVAL);
    assert_int_equal(mio_tcp_listen((struct sockaddr *)&ss, 1, 0, 0), -EINVAL);
    int fd = mio_tcp_listen((struct sockaddr *)&ss, len, -1, MIO_LISTEN_V6ONLY);
    assert_true(fd >= 0);
    close(fd);
}

/* True when this host can bind ::1. */
static bool have_ipv6_loopback(void)
{
    struct sockaddr_storage ss;
    socklen_t len = any6(&ss, 0, true);
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    bool ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
    close(fd);
    return ok;
}

/* [::]:p with MIO_LISTEN_V6ONLY leaves 127.0.0.1:p to a v4 listener, and
 * connections reach the listener of their family. */
static void test_v6only(void **state)
{
    struct ctx *c = *state;
    if (!have_ipv6_loopback())
        skip();
    struct sockaddr_storage ss;
    socklen_t len;
    int l6 = -1, l4 = -1;
    uint16_t port = 0;
    /* The port the kernel gives the v6 socket may be taken on 127.0.0.1
     * by another program (tests run in parallel): then another port. */
    for (int tries = 0; l4 < 0 && tries < 20; tries++) {
        if (l6 >= 0)
            close(l6);
        len = any6(&ss, 0, false);
        l6 = mio_tcp_listen((struct sockaddr *)&ss, len, 0, MIO_LISTEN_V6ONLY);
        assert_true(l6 >= 0);
        int on = 0;
        socklen_t olen = sizeof(on);
        assert_int_equal(getsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &on, &olen), 0);
        assert_int_equal(on, 1);
        port = local_port(l6);
        len = lo4(&ss, port);
        l4 = mio_tcp_listen((struct sockaddr *)&ss, len, 0, 0);
        assert_true(l4 >= 0 || l4 == -EADDRINUSE);
    }
    assert_true(l4 >= 0);

    int c4 = mio_tcp_connect((struct sockaddr *)&ss, len);
    assert_true(c4 >= 0);
    len = any6(&ss, port, true);
    int c6 = mio_tcp_connect((struct sockaddr *)&ss, len);
    assert_true(c6 >= 0);

    assert_int_equal(mio_registry_register(c->reg, l4, T_LISTEN, MIO_READABLE), 0);
    int s4 = accept_ready(c, l4);
    assert_int_equal(mio_registry_deregister(c->reg, l4), 0);
    assert_int_equal(mio_registry_register(c->reg, l6, T_LISTEN, MIO_READABLE), 0);
    int s6 = accept_ready(c, l6);
    assert_int_equal(mio_registry_deregister(c->reg, l6), 0);
    assert_int_equal(mio_tcp_accept(l4, NULL, NULL), -EAGAIN);
    assert_int_equal(mio_tcp_accept(l6, NULL, NULL), -EAGAIN);

    close(s6);
    close(s4);
    close(c6);
    close(c4);
    close(l4);
    close(l6);
}

/* The peer's close makes the socket readable and read-closed; read() is 0. */
static void test_peer_close(void **state)
{
    struct ctx *c = *state;
    int client, server;
    pair_via_mio(c, &client, &server);
    assert_int_equal(mio_registry_register(c->reg, server, T_SERVER, MIO_READABLE), 0);
    expect_no_event(c->poll, c->events, T_SERVER, QUIET_MS);
    close(client);
    assert_has(wait_for_token(c->poll, c->events, T_SERVER, WAIT_MS), EV_R | EV_RC);
    char buf[8];
    assert_int_equal(read(server, buf, sizeof(buf)), 0);
    assert_int_equal(mio_registry_deregister(c->reg, server), 0);
    close(server);
}

/* shutdown(SHUT_WR) by the peer gives read-closed; the other direction
 * still carries data. */
static void test_peer_shutdown_write(void **state)
{
    struct ctx *c = *state;
    int client, server;
    pair_via_mio(c, &client, &server);
    assert_int_equal(mio_registry_register(c->reg, server, T_SERVER, MIO_READABLE), 0);
    assert_int_equal(mio_registry_register(c->reg, client, T_CLIENT, MIO_READABLE), 0);
    assert_int_equal(mio_socket_shutdown(client, SHUT_WR), 0);
    assert_has(wait_for_token(c->poll, c->events, T_SERVER, WAIT_MS), EV_RC);
    char buf[8];
    assert_int_equal(read(server, buf, sizeof(buf)), 0);

    send_str(server, "pong");
    expect_str(c, client, T_CLIENT, "pong");
    assert_int_equal(mio_socket_shutdown(client, 42), -EINVAL);

    assert_int_equal(mio_registry_deregister(c->reg, client), 0);
    assert_int_equal(mio_registry_deregister(c->reg, server), 0);
    close(client);
    close(server);
}

/* A connect to a closed port is writable or error, and write-closed;
 * take_error reports -ECONNREFUSED once, then 0. */
static void test_connect_refused(void **state)
{
    struct ctx *c = *state;
    uint16_t port;
    close(listen4(&port));
    struct sockaddr_storage ss;
    socklen_t len = lo4(&ss, port);
    int fd = mio_tcp_connect((struct sockaddr *)&ss, len);
    if (fd == -ECONNREFUSED)
        return; /* refused synchronously: allowed, nothing to poll */
    assert_true(fd >= 0);
    assert_int_equal(mio_registry_register(c->reg, fd, T_CLIENT, MIO_WRITABLE), 0);
    unsigned bits = wait_for_token(c->poll, c->events, T_CLIENT, WAIT_MS);
    assert_true(bits & (EV_W | EV_E));
    assert_has(bits, EV_WC);
    assert_int_equal(mio_socket_take_error(fd), -ECONNREFUSED);
    assert_int_equal(mio_socket_take_error(fd), 0);
    assert_int_equal(mio_registry_deregister(c->reg, fd), 0);
    close(fd);
}

/* A successful connect becomes writable with no pending error. */
static void test_connect_ok(void **state)
{
    struct ctx *c = *state;
    struct sockaddr_storage ss;
    uint16_t port;
    int lfd = listen4(&port);
    int fd = mio_tcp_connect((struct sockaddr *)&ss, lo4(&ss, port));
    assert_true(fd >= 0);
    assert_int_equal(mio_registry_register(c->reg, fd, T_CLIENT, MIO_WRITABLE), 0);
    assert_has(wait_for_token(c->poll, c->events, T_CLIENT, WAIT_MS), EV_W);
    assert_int_equal(mio_socket_take_error(fd), 0);
    assert_int_equal(mio_registry_register(c->reg, lfd, T_LISTEN, MIO_READABLE), 0);
    int server = accept_ready(c, lfd);
    assert_int_equal(mio_registry_deregister(c->reg, lfd), 0);
    assert_int_equal(mio_registry_deregister(c->reg, fd), 0);
    assert_int_equal(mio_socket_take_error(-1), -EBADF);
    close(server);
    close(fd);
    close(lfd);
}

/* A reset (SO_LINGER {1, 0} then close) makes the peer readable and its
 * read() fails with ECONNRESET. */
static void test_reset(void **state)
{
    struct ctx *c = *state;
    int client, server;
    pair_via_mio(c, &client, &server);
    assert_int_equal(mio_registry_register(c->reg, server, T_SERVER, MIO_READABLE), 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(client, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(client);
    assert_has(wait_for_token(c->poll, c->events, T_SERVER, WAIT_MS), EV_R);
    char buf[8];
    assert_int_equal(read(server, buf, sizeof(buf)), -1);
    assert_int_equal(errno, ECONNRESET);
    assert_int_equal(mio_registry_deregister(c->reg, server), 0);
    close(server);
}

/* A connected pair, the server's end registered READABLE|PRIORITY; skips
 * where the backend has no MIO_PRIORITY (kqueue). */
static void priority_pair(struct ctx *c, int *client, int *server)
{
    pair_via_mio(c, client, server);
    int err = mio_registry_register(c->reg, *server, T_SERVER,
                                    MIO_READABLE | MIO_PRIORITY);
    if (err == -EOPNOTSUPP) {
        close(*client);
        close(*server);
        skip();
    }
    assert_int_equal(err, 0);
}

/* Out-of-band data is READABLE|PRIORITY under MIO_READABLE|MIO_PRIORITY
 * (epoll and poll(2); kqueue refuses the interest). */
static void test_oob_priority(void **state)
{
    struct ctx *c = *state;
    int client, server;
    priority_pair(c, &client, &server);
    assert_int_equal(send(client, "!", 1, MSG_OOB | MSG_NOSIGNAL), 1);
    assert_has(wait_for_token(c->poll, c->events, T_SERVER, WAIT_MS), EV_R | EV_P);
    char byte = 0;
    assert_int_equal(recv(server, &byte, 1, MSG_OOB), 1);
    assert_int_equal(byte, '!');
    assert_int_equal(mio_registry_deregister(c->reg, server), 0);
    close(client);
    close(server);
}

/*
 * Plain data arriving on a socket registered with MIO_PRIORITY is READABLE
 * without PRIORITY: only urgent data is.  io_uring's poll reported the
 * wake-up's key, which for any TCP data holds POLLPRI, so every message
 * looked urgent there (a server then checks the urgent mark and reads
 * twice per message).
 */
static void test_plain_data_is_not_priority(void **state)
{
    struct ctx *c = *state;
    int client, server;
    priority_pair(c, &client, &server);
    expect_no_event(c->poll, c->events, T_SERVER, 20); /* armed, idle */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(send(client, "data", 4, MSG_NOSIGNAL), 4);
        unsigned bits = wait_for_token(c->poll, c->events, T_SERVER, WAIT_MS);
        assert_has(bits, EV_R);
        if (bits & EV_P)
            fail_msg("message %d: PRIORITY without urgent data", i);
        char buf[8];
        assert_int_equal(recv(server, buf, sizeof(buf), 0), 4);
        assert_int_equal(recv(server, buf, sizeof(buf), 0), -1);
        assert_int_equal(errno, EAGAIN);
        assert_int_equal(mio_registry_rearm(c->reg, server, MIO_READABLE | MIO_PRIORITY),
                         0);
    }
    assert_int_equal(mio_registry_deregister(c->reg, server), 0);
    close(client);
    close(server);
}

/* In one poll of many readable sources registered READABLE|PRIORITY, only
 * those with urgent data report PRIORITY (io_uring checks each source's
 * wake-up, which says POLLPRI for any TCP data, against the socket). */
static void test_priority_told_per_source_in_one_poll(void **state)
{
    struct ctx *c = *state;
    enum { N = 8, T_FIRST = 100 };
    int client[N], server[N];
    for (int i = 0; i < N; i++) {
        priority_pair(c, &client[i], &server[i]);
        assert_int_equal(mio_registry_reregister(c->reg, server[i], T_FIRST + i,
                                                 MIO_READABLE | MIO_PRIORITY),
                         0);
    }
    expect_no_event(c->poll, c->events, MIO_TOKEN_ANY, 20); /* armed, idle */
    for (int i = 0; i < N; i++) {
        send_str(client[i], "data");
        if (i % 2)
            assert_int_equal(send(client[i], "!", 1, MSG_OOB | MSG_NOSIGNAL), 1);
    }
    nanosleep(&(struct timespec){0, 50000000}, NULL); /* all have come */
    unsigned bits[N] = {0};
    int seen = 0;
    for (int64_t end = now_ms() + WAIT_MS; seen < N && now_ms() < end;) {
        struct timespec ts = {0, 100000000};
        assert_int_equal(mio_poll_poll(c->poll, c->events, &ts), 0);
        for (size_t k = 0; k < mio_events_len(c->events); k++) {
            const mio_event_t *ev = mio_events_get(c->events, k);
            mio_token_t t = mio_event_token(ev);
            assert_true(t >= T_FIRST && t < T_FIRST + N);
            if (bits[t - T_FIRST] == 0)
                seen++;
            bits[t - T_FIRST] |= event_bits(ev);
        }
    }
    assert_int_equal(seen, N);
    for (int i = 0; i < N; i++) {
        assert_has(bits[i], EV_R);
        if (!(bits[i] & EV_P) != !(i % 2))
            fail_msg("source %d: PRIORITY is %s", i, bits[i] & EV_P ? "set" : "missing");
        assert_int_equal(mio_registry_deregister(c->reg, server[i]), 0);
        close(client[i]);
        close(server[i]);
    }
}

/* A socket registered with MIO_PRIORITY alone says nothing of plain data
 * and reports urgent data. */
static void test_priority_alone_ignores_plain_data(void **state)
{
    struct ctx *c = *state;
    int client, server;
    priority_pair(c, &client, &server);
    assert_int_equal(mio_registry_reregister(c->reg, server, T_SERVER, MIO_PRIORITY), 0);
    send_str(client, "data");
    expect_no_event(c->poll, c->events, T_SERVER, QUIET_MS);
    assert_int_equal(send(client, "!", 1, MSG_OOB | MSG_NOSIGNAL), 1);
    assert_has(wait_for_token(c->poll, c->events, T_SERVER, WAIT_MS), EV_P);
    assert_int_equal(mio_registry_deregister(c->reg, server), 0);
    close(client);
    close(server);
}

/* Closing a pipe's writer gives exactly one read-closed event. */
static void test_pipe_writer_closed(void **state)
{
    struct ctx *c = *state;
    int p[2];
    assert_int_equal(mio_pipe(p), 0);
    assert_int_equal(mio_registry_register(c->reg, p[0], T_OTHER, MIO_READABLE), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_has(wait_for_token(c->poll, c->events, T_OTHER, WAIT_MS), EV_R);
    char buf[8];
    assert_int_equal(read(p[0], buf, sizeof(buf)), 1);
    drain_rearm(c, p[0]);

    close(p[1]);
    assert_has(wait_for_token(c->poll, c->events, T_OTHER, WAIT_MS), EV_RC);
    expect_no_event(c->poll, c->events, T_OTHER, QUIET_MS);
    assert_int_equal(read(p[0], buf, sizeof(buf)), 0);
    assert_int_equal(mio_registry_deregister(c->reg, p[0]), 0);
    close(p[0]);
}

/* UDP bind + connect + send/recv, with a readable event for each datagram
 * once the socket was drained to EAGAIN and re-armed. */
static void test_udp(void **state)
{
    struct ctx *c = *state;
    struct sockaddr_storage ss;
    int a = mio_udp_bind((struct sockaddr *)&ss, lo4(&ss, 0));
    int b = mio_udp_bind((struct sockaddr *)&ss, lo4(&ss, 0));
    assert_true(a >= 0 && b >= 0);
    socklen_t len = lo4(&ss, local_port(b));
    assert_int_equal(mio_udp_connect(a, (struct sockaddr *)&ss, len), 0);
    len = lo4(&ss, local_port(a));
    assert_int_equal(mio_udp_connect(b, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(mio_registry_register(c->reg, b, T_OTHER, MIO_READABLE), 0);
    char buf[16];
    for (int i = 0; i < 2; i++) {
        send_str(a, i == 0 ? "ping" : "again");
        assert_has(wait_for_token(c->poll, c->events, T_OTHER, WAIT_MS), EV_R);
        assert_int_equal(recv(b, buf, sizeof(buf), 0), i == 0 ? 4 : 5);
        assert_memory_equal(buf, i == 0 ? "ping" : "again", i == 0 ? 4 : 5);
        assert_int_equal(recv(b, buf, sizeof(buf), 0), -1);
        assert_int_equal(errno, EAGAIN);
        assert_int_equal(mio_registry_rearm(c->reg, b, MIO_READABLE), 0);
        expect_no_event(c->poll, c->events, T_OTHER, QUIET_MS);
    }
    assert_int_equal(mio_registry_deregister(c->reg, b), 0);
    close(a);
    close(b);
}

/* Unix stream listen/connect/accept in a private directory, bytes both
 * ways; the path is not unlinked for us, so a second listen is refused. */
static void test_unix_stream(void **state)
{
    struct ctx *c = *state;
    char dir[128];
    make_tmpdir(dir, sizeof(dir));
    char path[160];
    snprintf(path, sizeof(path), "%s/echo.sock", dir);
    assert_int_equal(mio_unix_connect(path), -ENOENT);
    int l = mio_unix_listen(path, 0);
    assert_true(l >= 0);
    assert_int_equal(mio_unix_listen(path, 0), -EADDRINUSE);
    assert_int_equal(mio_registry_register(c->reg, l, T_LISTEN, MIO_READABLE), 0);
    int cl = mio_unix_connect(path);
    assert_true(cl >= 0);
    int sv = accept_ready(c, l);
    assert_int_equal(mio_registry_register(c->reg, sv, T_SERVER, MIO_READABLE), 0);
    assert_int_equal(mio_registry_register(c->reg, cl, T_CLIENT, MIO_READABLE), 0);
    send_str(cl, "hello");
    expect_str(c, sv, T_SERVER, "hello");
    send_str(sv, "world");
    expect_str(c, cl, T_CLIENT, "world");

    assert_int_equal(mio_registry_deregister(c->reg, cl), 0);
    assert_int_equal(mio_registry_deregister(c->reg, sv), 0);
    assert_int_equal(mio_registry_deregister(c->reg, l), 0);
    close(sv);
    close(cl);
    close(l);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* A path that does not fit sun_path with its NUL is -ENAMETOOLONG (a
 * 200-char one and one char over the limit); one that fits is tried;
 * an empty path is -EINVAL. */
static void test_unix_path_limits(void **state)
{
    struct sockaddr_un sun;
    (void)state;
    char path[201];
    memset(path, 'a', 200);
    path[0] = '/';
    path[200] = '\0';
    assert_int_equal(mio_unix_listen(path, 0), -ENAMETOOLONG);
    assert_int_equal(mio_unix_connect(path), -ENAMETOOLONG);
    size_t max = sizeof(sun.sun_path) - 1;
    path[max + 1] = '\0';
    assert_int_equal(mio_unix_listen(path, 0), -ENAMETOOLONG);
    assert_int_equal(mio_unix_connect(path), -ENAMETOOLONG);
    path[max] = '\0'; /* fits: /aaa... does not exist */
    assert_int_equal(mio_unix_connect(path), -ENOENT);
    assert_int_equal(mio_unix_listen("", 0), -EINVAL);
    assert_int_equal(mio_unix_connect(""), -EINVAL);
}

/* A Unix socket pair carries bytes both ways through the poll. */
static void test_unix_pair(void **state)
{
    struct ctx *c = *state;
    int p[2];
    assert_int_equal(mio_unix_pair(p), 0);
    assert_int_equal(mio_registry_register(c->reg, p[0], T_CLIENT, MIO_READABLE), 0);
    assert_int_equal(mio_registry_register(c->reg, p[1], T_SERVER, MIO_READABLE), 0);
    send_str(p[0], "abc");
    expect_str(c, p[1], T_SERVER, "abc");
    send_str(p[1], "def");
    expect_str(c, p[0], T_CLIENT, "def");
    drain_rearm(c, p[0]);
    close(p[1]);
    assert_has(wait_for_token(c->poll, c->events, T_CLIENT, WAIT_MS), EV_RC);
    assert_int_equal(mio_registry_deregister(c->reg, p[0]), 0);
    close(p[0]);
}

/* mio_socket_local_addr returns the port bound for port 0. */
static void test_local_addr(void **state)
{
    struct sockaddr_storage ss;
    uint16_t port;
    int lfd = listen4(&port);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in raw;
    (void)state;
    socklen_t rawlen = sizeof(raw);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&raw, &rawlen), 0);
    socklen_t len = 0;
    assert_int_equal(mio_socket_local_addr(lfd, &ss, &len), 0);
    assert_int_equal(len, sizeof(*sin));
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
    assert_int_equal(ntohs(sin->sin_port), port);
    assert_int_equal(sin->sin_port, raw.sin_port);
    assert_true(port != 0);
    assert_int_equal(mio_socket_local_addr(lfd, &ss, NULL), 0);
    close(lfd);
    assert_int_equal(mio_socket_local_addr(lfd, &ss, &len), -EBADF);
}

/* TCP_NODELAY on and off, read back with getsockopt. */
static void test_nodelay(void **state)
{
    struct ctx *c = *state;
    int client, server, on = -1;
    pair_via_mio(c, &client, &server);
    assert_int_equal(mio_tcp_set_nodelay(client, true), 0);
    socklen_t len = sizeof(on);
    assert_int_equal(getsockopt(client, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    assert_true(on != 0);
    assert_int_equal(mio_tcp_set_nodelay(client, false), 0);
    len = sizeof(on);
    assert_int_equal(getsockopt(client, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    assert_int_equal(on, 0);
    close(client);
    close(server);
    assert_int_equal(mio_tcp_set_nodelay(client, true), -EBADF);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_flags),
        T(test_accept_eagain),
        T(test_bind_twice),
        T(test_reuseaddr),
        T(test_reuseport),
        T(test_default_backlog),
        T(test_listen_args),
        T(test_v6only),
        T(test_peer_close),
        T(test_peer_shutdown_write),
        T(test_connect_refused),
        T(test_connect_ok),
        T(test_reset),
        T(test_oob_priority),
        T(test_plain_data_is_not_priority),
        T(test_priority_told_per_source_in_one_poll),
        T(test_priority_alone_ignores_plain_data),
        T(test_pipe_writer_closed),
        T(test_udp),
        T(test_unix_stream),
        T(test_unix_path_limits),
        T(test_unix_pair),
        T(test_local_addr),
        T(test_nodelay),
    };
    signal(SIGPIPE, SIG_IGN);
    print_message("backend: %s\n", mio_backend_name());
    return cmocka_run_group_tests(tests, NULL, NULL);
}
