/*
 * mio-echod serving, checked byte for byte over loopback with the real
 * daemon: echo of many sizes over many concurrent connections, half-close
 * (echo and relay, both ways), relaying to upstreams written here, each
 * balance mode, retries and passive health (refused and silent
 * upstreams), the idle timeout, and the SIGTERM drain.
 *
 * Each test starts its own daemon with its own configuration; ports are
 * ephemeral (the daemon's listening line tells them).  The test upstreams
 * are threads with their own poll(2) loop; they never call cmocka (their
 * findings are counters the test checks).
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* accept4 */
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* Every test's bytes are slices of this one random pattern: each
 * connection a different slice, so crossed streams cannot go unseen. */
#define PATTERN_LEN ((size_t)12 << 20)
static const uint8_t *pattern; /* pat(0) of pattern.h */

/* The log's "access" line is written just after the daemon closes the
 * connection, so a client may see the close first: wait a little. */
#define LOG_MS 3000

/* ---- configurations ----------------------------------------------------- */

/* The daemon part every configuration starts with. */
#define DAEMON_CONF(workers, shutdown)   \
    "workers = " workers ";\n"           \
    "shutdown_timeout = " shutdown ";\n" \
    "log = { target = \"stderr\"; level = \"info\"; access = true; };\n"

/* One echo listener "echo" on 127.0.0.1:0. */
static struct echod *start_echo(const char *idle_timeout, const char *shutdown_timeout)
{
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "workers = 2;\n"
             "shutdown_timeout = %s;\n"
             "log = { target = \"stderr\"; level = \"info\"; access = true; };\n"
             "listeners = ( {\n"
             "    name = \"echo\";\n"
             "    listen = [ \"127.0.0.1:0\" ];\n"
             "    mode = \"echo\";\n"
             "    idle_timeout = %s;\n"
             "} );\n",
             shutdown_timeout, idle_timeout);
    return echod_start(conf);
}

/* `"127.0.0.1:P1", "127.0.0.1:P2"` for a list of ports. */
static void upstream_list(char *buf, size_t len, const int *ports, size_t n)
{
    buf[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s\"127.0.0.1:%d\"",
                                 i > 0 ? ", " : "", ports[i]);
}

/* A proxy listener's group, named `name`. */
static void relay_group(char *buf, size_t len, const char *name, const int *ports,
                        size_t n, const char *balance, const char *connect_timeout,
                        int retries, const char *fail_timeout)
{
    char ups[512];
    upstream_list(ups, sizeof(ups), ports, n);
    snprintf(buf, len,
             "{\n"
             "    name = \"%s\";\n"
             "    listen = [ \"127.0.0.1:0\" ];\n"
             "    mode = \"proxy\";\n"
             "    upstreams = [ %s ];\n"
             "    balance = \"%s\";\n"
             "    connect_timeout = %s;\n"
             "    retries = %d;\n"
             "    fail_timeout = %s;\n"
             "}",
             name, ups, balance, connect_timeout, retries, fail_timeout);
}

/* One proxy listener "relay". */
static struct echod *start_relay(const int *ports, size_t n, const char *balance,
                                 const char *connect_timeout, int retries,
                                 const char *fail_timeout)
{
    char group[1024];
    relay_group(group, sizeof(group), "relay", ports, n, balance, connect_timeout,
                retries, fail_timeout);
    char conf[2048];
    snprintf(conf, sizeof(conf), "%slisteners = ( %s );\n", DAEMON_CONF("2", "5.0"),
             group);
    return echod_start(conf);
}

/* ---- test upstreams ------------------------------------------------------- */

/* Starts an upstream on 127.0.0.1:0 sending pattern[off .. off + nbytes)
 * as its mode says (upstream.h). */
static struct upsrv *start_upstream(enum up_mode mode, size_t nbytes, size_t off)
{
    assert_true(off + nbytes <= PATTERN_LEN);
    return up_start(&(struct up_conf){.mode = mode, .nbytes = nbytes, .off = off});
}

/* ---- concurrent clients driven by poll(2) ------------------------------ */

/* A slice of the pattern. */
struct slice {
    size_t off, len;
};

struct client {
    int fd, port;       /* port: the client's own, as the access line shows it */
    struct slice tx;    /* what it sends */
    struct slice rx[2]; /* what it must receive, in this order */
    size_t wait_first;  /* bytes to receive before sending any */
    size_t sent, got;
    bool shut, eof;
};

static size_t rx_total(const struct client *c)
{
    return c->rx[0].len + c->rx[1].len;
}

/* Whether p[0..n) is what c must receive at position c->got. */
static bool rx_matches(const struct client *c, const uint8_t *p, size_t n)
{
    size_t pos = c->got;
    if (pos + n > rx_total(c))
        return false;
    for (int s = 0; s < 2 && n > 0; s++) {
        if (pos >= c->rx[s].len) {
            pos -= c->rx[s].len;
            continue;
        }
        size_t take = c->rx[s].len - pos < n ? c->rx[s].len - pos : n;
        if (memcmp(p, pattern + c->rx[s].off + pos, take) != 0)
            return false;
        p += take;
        n -= take;
        pos = 0;
    }
    return n == 0;
}

static void client_connect(struct client *c, int port)
{
    c->fd = connect_to(port);
    assert_true(c->fd >= 0);
    c->port = local_port(c->fd);
    set_nonblocking(c->fd);
}

/* Sends what c may send now; half-closes once everything is sent. */
static void client_send(struct client *c)
{
    for (int i = 0; i < 16 && c->sent < c->tx.len && c->got >= c->wait_first; i++) {
        size_t want = c->tx.len - c->sent;
        if (want > 256 * 1024)
            want = 256 * 1024;
        ssize_t n = send(c->fd, pattern + c->tx.off + c->sent, want,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n <= 0)
            fail_msg("client %d: send after %zu of %zu bytes: %s", c->port, c->sent,
                     c->tx.len, strerror(errno));
        c->sent += (size_t)n;
    }
    if (c->sent == c->tx.len && c->got >= c->wait_first && !c->shut) {
        assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
        c->shut = true;
    }
}

/* Receives what is there, checking each byte; notes the EOF. */
static void client_recv(struct client *c, uint8_t *scratch, size_t cap)
{
    for (int i = 0; i < 16 && !c->eof; i++) {
        ssize_t n = recv(c->fd, scratch, cap, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n < 0)
            fail_msg("client %d: recv after %zu of %zu bytes: %s", c->port, c->got,
                     rx_total(c), strerror(errno));
        if (n == 0) {
            if (c->got != rx_total(c) || c->sent != c->tx.len)
                fail_msg("client %d: EOF after receiving %zu of %zu bytes (sent %zu "
                         "of %zu)",
                         c->port, c->got, rx_total(c), c->sent, c->tx.len);
            c->eof = true;
            close(c->fd);
            c->fd = -1;
            return;
        }
        if (!rx_matches(c, scratch, (size_t)n))
            fail_msg("client %d: bytes %zu..%zu differ from what was expected "
                     "(%zu expected in all)",
                     c->port, c->got, c->got + (size_t)n, rx_total(c));
        c->got += (size_t)n;
    }
}

/*
 * Runs the clients at once until each has sent everything, half-closed,
 * received everything and then the daemon's FIN; fails the test after
 * limit_ms.
 */
static void run_clients(struct client *cl, size_t n, int limit_ms)
{
    struct pollfd *pfd = calloc(n, sizeof(*pfd));
    size_t *idx = calloc(n, sizeof(*idx));
    size_t cap = 256 * 1024;
    uint8_t *scratch = malloc(cap);
    assert_true(pfd != NULL && idx != NULL && scratch != NULL);
    int64_t until = ms_now() + limit_ms;
    for (size_t i = 0; i < n; i++)
        client_send(&cl[i]);
    for (long round = 0;; round++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (cl[i].eof)
                continue;
            bool out = cl[i].sent < cl[i].tx.len && cl[i].got >= cl[i].wait_first;
            pfd[k] = (struct pollfd){.fd = cl[i].fd,
                                     .events = (short)(POLLIN | (out ? POLLOUT : 0))};
            idx[k++] = i;
        }
        if (k == 0)
            break;
        if (ms_now() >= until || round > 10000000) {
            size_t left = 0, first = 0;
            for (size_t i = 0; i < n; i++)
                if (!cl[i].eof && left++ == 0)
                    first = i;
            fail_msg("%zu of %zu clients not done after %d ms; e.g. client %d: sent %zu "
                     "of %zu, received %zu of %zu",
                     left, n, limit_ms, cl[first].port, cl[first].sent, cl[first].tx.len,
                     cl[first].got, rx_total(&cl[first]));
        }
        int r = poll(pfd, k, 100);
        if (r < 0 && errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
        for (size_t j = 0; r > 0 && j < k; j++) {
            struct client *c = &cl[idx[j]];
            if (pfd[j].revents & (POLLOUT | POLLERR | POLLHUP))
                client_send(c);
            if (pfd[j].revents & (POLLIN | POLLERR | POLLHUP)) {
                client_recv(c, scratch, cap);
                if (!c->eof)
                    client_send(c); /* wait_first may be met now */
            }
        }
    }
    free(scratch);
    free(idx);
    free(pfd);
}

/* The access line of the client from 127.0.0.1:port, which must say
 * `expect` (e.g. "in=5 out=5"), and end with reason=`reason`.  Linux lets
 * connect() reuse a local port for another destination, so two clients to
 * two listeners may share a port: the line that says `expect` is taken. */
static const char *check_access(struct echod *e, const char *src, int port,
                                const char *expect, const char *reason)
{
    char client[64];
    snprintf(client, sizeof(client), " client=%s:%d ", src, port);
    const char *line = echod_wait_log(e, client, LOG_MS);
    if (line == NULL)
        fail_msg("no access line for client %s:%d", src, port);
    for (int n = 1; expect != NULL && strstr(line, expect) == NULL; n++) {
        const char *other = echod_log_line(e, client, n);
        if (other == NULL)
            break;
        if (strstr(other, expect) != NULL)
            line = other;
    }
    if (strstr(line, ": access listener=") == NULL)
        fail_msg("not an access line: %s", line);
    if (expect != NULL && strstr(line, expect) == NULL)
        fail_msg("access line without \"%s\": %s", expect, line);
    expect_access_reason(line, reason);
    return line;
}

/* ---- echo ------------------------------------------------------------------ */

/* 200 clients at once, of sizes around the buffer size and far past it,
 * each writing while it reads its echo, then half-closing: every byte comes
 * back, then the daemon's FIN; the access lines count every byte. */
static void echo_many_sizes_over_200_concurrent_connections(void **state)
{
    (void)state;
    static const size_t sizes[] = {1,     2,      1000,    16383,  16384,
                                   16385, 100000, 1 * MIB, 4 * MIB};
    enum { N = 200 };
    struct echod *e = start_echo("30.0", "5.0");
    int port = echod_port(e, "echo", 0);
    int idle = echod_fd_count(e);
    struct client *cl = calloc(N, sizeof(*cl));
    assert_non_null(cl);
    for (size_t i = 0; i < N; i++) {
        size_t size = sizes[i % ARRAY_LEN(sizes)];
        size_t off = (i * 65537) % (PATTERN_LEN - size);
        cl[i].tx = (struct slice){off, size};
        cl[i].rx[0] = cl[i].tx;
        client_connect(&cl[i], port);
    }
    int64_t t0 = ms_now();
    run_clients(cl, N, 15000);
    int64_t t1 = ms_now();
    for (size_t i = 0; i < N; i++) {
        char expect[64];
        snprintf(expect, sizeof(expect), " upstream=- in=%zu out=%zu ", cl[i].tx.len,
                 cl[i].tx.len);
        check_access(e, "127.0.0.1", cl[i].port, expect, "done");
    }
    size_t total = 0;
    for (size_t i = 0; i < N; i++)
        total += cl[i].tx.len;
    print_message("    %d clients, %zu MiB each way, in %lld ms\n", N, total >> 20,
                  (long long)(t1 - t0));
    free(cl);
    assert_true(echod_wait_fd_count(e, idle, 2000)); /* every socket let go */
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* A client that sends, half-closes, and only then reads gets every byte
 * back and then a FIN (not a reset), and the daemon lets go of the socket
 * (no CLOSE_WAIT left: its descriptor count is back where it was). */
static void echo_half_close_returns_everything_then_eof(void **state)
{
    (void)state;
    struct echod *e = start_echo("30.0", "5.0");
    int port = echod_port(e, "echo", 0);
    int idle = echod_fd_count(e);
    assert_true(idle > 0);

    const size_t size = 65536 + 7;
    int fd = connect_to(port);
    assert_true(fd >= 0);
    int cport = local_port(fd);
    send_all(fd, pattern + 333, size);
    /* The connection holds one descriptor in the daemon. */
    assert_true(echod_wait_fd_count(e, idle + 1, 2000));
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    uint8_t *back = malloc(size);
    assert_non_null(back);
    recv_exact(fd, back, size);
    assert_memory_equal(back, pattern + 333, size);
    free(back);
    assert_true(peer_closed_within(fd, 2000));
    char expect[64];
    snprintf(expect, sizeof(expect), " in=%zu out=%zu ", size, size);
    check_access(e, "127.0.0.1", cport, expect, "done");
    assert_true(echod_wait_fd_count(e, idle, 2000));
    close(fd);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* ---- relay ------------------------------------------------------------------ */

/* Relayed both ways byte for byte, up to 4 MiB, at once: to an upstream
 * that echoes, and to one that speaks first (a 4 MiB banner, read by the
 * client before it sends anything) and then echoes. */
static void relay_is_byte_exact_both_ways(void **state)
{
    (void)state;
    const size_t banner = 4 * MIB;
    struct upsrv *echo = start_upstream(UP_ECHO, 0, 0);
    struct upsrv *talker = start_upstream(UP_BANNER, banner, 5 * MIB);
    char g1[1024], g2[1024], conf[4096];
    relay_group(g1, sizeof(g1), "to-echo", &echo->srv.port, 1, "round-robin", "3.0", 0,
                "1.0");
    relay_group(g2, sizeof(g2), "to-talker", &talker->srv.port, 1, "round-robin", "3.0",
                0, "1.0");
    snprintf(conf, sizeof(conf), "%slisteners = ( %s, %s );\n", DAEMON_CONF("2", "5.0"),
             g1, g2);
    struct echod *e = echod_start(conf);
    int p_echo = echod_port(e, "to-echo", 0), p_talker = echod_port(e, "to-talker", 0);
    int idle = echod_fd_count(e);

    static const size_t sizes[] = {1, 16385, 100000, 1 * MIB, 4 * MIB};
    enum { N = 2 * ARRAY_LEN(sizes) };
    struct client cl[N];
    memset(cl, 0, sizeof(cl));
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        struct client *a = &cl[2 * i], *b = &cl[2 * i + 1];
        a->tx = (struct slice){i * 100003, sizes[i]};
        a->rx[0] = a->tx;
        client_connect(a, p_echo);
        b->tx = (struct slice){i * 100019 + 7, sizes[i]};
        b->rx[0] = (struct slice){5 * MIB, banner};
        b->rx[1] = b->tx;
        b->wait_first = 1; /* the upstream speaks first */
        client_connect(b, p_talker);
    }
    run_clients(cl, N, 15000);
    for (size_t i = 0; i < N; i++) {
        struct upsrv *u = i % 2 ? talker : echo;
        char expect[128];
        snprintf(expect, sizeof(expect), " upstream=127.0.0.1:%d in=%zu out=%zu ",
                 u->srv.port, cl[i].tx.len, rx_total(&cl[i]));
        check_access(e, "127.0.0.1", cl[i].port, expect, "done");
    }
    assert_int_equal(atomic_load(&echo->srv.accepted), (int)ARRAY_LEN(sizes));
    assert_int_equal(atomic_load(&talker->srv.accepted), (int)ARRAY_LEN(sizes));
    assert_int_equal(up_failures(echo) + up_failures(talker), 0);
    assert_true(echod_wait_fd_count(e, idle, 2000)); /* both sockets of each closed */
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* The client's FIN reaches the upstream (it reads 0) while the upstream can
 * still send: what it sends after the FIN reaches the client, then its
 * close comes through as the client's EOF. */
static void relay_client_half_close_reaches_upstream(void **state)
{
    (void)state;
    const size_t ask = 50000, reply = 300000;
    struct upsrv *u = start_upstream(UP_REPLY_EOF, reply, 7 * MIB);
    struct echod *e = start_relay(&u->srv.port, 1, "round-robin", "3.0", 0, "1.0");
    int port = echod_port(e, "relay", 0);
    int idle = echod_fd_count(e);

    int fd = connect_to(port);
    assert_true(fd >= 0);
    int cport = local_port(fd);
    send_all(fd, pattern, ask);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    uint8_t *back = malloc(reply);
    assert_non_null(back);
    recv_exact(fd, back, reply); /* only sent once the upstream read the FIN */
    assert_memory_equal(back, pattern + 7 * MIB, reply);
    free(back);
    assert_true(peer_closed_within(fd, 2000));
    close(fd);

    assert_int_equal(atomic_load(&u->eofs), 1);
    assert_int_equal((int)atomic_load(&u->last_rx), (int)ask);
    assert_int_equal(atomic_load(&u->mismatches), 0);
    assert_int_equal(up_failures(u), 0);
    char expect[64];
    snprintf(expect, sizeof(expect), " in=%zu out=%zu ", ask, reply);
    check_access(e, "127.0.0.1", cport, expect, "done");
    assert_true(echod_wait_fd_count(e, idle, 2000));
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* The other way round: the upstream sends, shuts its write side, and the
 * client gets its bytes and an EOF, yet goes on sending (1 MiB) and the
 * upstream receives all of it, then the client's FIN. */
static void relay_upstream_half_close_reaches_client(void **state)
{
    (void)state;
    const size_t banner = 20000, more = 1 * MIB;
    struct upsrv *u = start_upstream(UP_SHUT_FIRST, banner, 9 * MIB);
    struct echod *e = start_relay(&u->srv.port, 1, "round-robin", "3.0", 0, "1.0");
    int port = echod_port(e, "relay", 0);
    int idle = echod_fd_count(e);

    int fd = connect_to(port);
    assert_true(fd >= 0);
    int cport = local_port(fd);
    uint8_t *got = malloc(banner);
    assert_non_null(got);
    recv_exact(fd, got, banner);
    assert_memory_equal(got, pattern + 9 * MIB, banner);
    free(got);
    assert_true(peer_closed_within(fd, 2000)); /* the upstream's FIN */
    send_all(fd, pattern, more);               /* still relayed */
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    assert_true(wait_counter(&u->eofs, 1, 3000));
    assert_int_equal((int)atomic_load(&u->last_rx), (int)more);
    assert_int_equal(atomic_load(&u->mismatches), 0);
    assert_int_equal(up_failures(u), 0);
    char expect[64];
    snprintf(expect, sizeof(expect), " in=%zu out=%zu ", more, banner);
    check_access(e, "127.0.0.1", cport, expect, "done");
    assert_true(echod_wait_fd_count(e, idle, 2000));
    close(fd);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* ---- splice ----------------------------------------------------------------- */

/* A client connected to `port` with a small receive buffer, so that the
 * daemon soon has bytes it cannot give it. */
static int connect_small_window(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int size = 32768;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    set_timeouts(fd);
    return fd;
}

/*
 * Bulk data is spliced, and only where splice is on.  An upstream that
 * speaks first (8 MiB) to a client that does not read yet leaves the relay
 * with bytes the client cannot take: in one pipe (two descriptors) on the
 * listener with splice on, in a buffer on the one with it off.  Every byte
 * arrives either way, and the echo after it too; once the connection is
 * closed, the worker has no pipe left open.
 */
static void relay_holds_bulk_bytes_in_a_pipe_only_when_spliced(void **state)
{
    (void)state;
#ifndef HAVE_SPLICE
    skip(); /* no splice(2) on this system */
#endif
    const size_t banner = 8 * MIB, more = 300000;
    struct upsrv *u = start_upstream(UP_BANNER, banner, 3 * MIB);
    char g1[1024], g2[1024], conf[4096];
    relay_group(g1, sizeof(g1), "spliced", &u->srv.port, 1, "round-robin", "3.0", 0,
                "1.0");
    relay_group(g2, sizeof(g2), "copied", &u->srv.port, 1, "round-robin", "3.0", 0,
                "1.0");
    g2[strlen(g2) - 1] = '\0'; /* the closing brace */
    snprintf(conf, sizeof(conf), "%slisteners = ( %s, %s    splice = false;\n} );\n",
             DAEMON_CONF("1", "5.0"), g1, g2);
    struct echod *e = echod_start(conf);
    const int pipes = echod_pipe_count(e), idle = echod_fd_count(e);
    assert_true(pipes >= 0);
    uint8_t *got = malloc(banner);
    assert_non_null(got);

    for (int spliced = 1; spliced >= 0; spliced--) {
        int fd = connect_small_window(echod_port(e, spliced ? "spliced" : "copied", 0));
        int cport = local_port(fd);
        if (spliced) {
            assert_true(echod_wait_pipe_count(e, pipes + 2, 3000));
        } else {
            sleep_ms(300); /* stalled as long, never through a pipe */
            assert_int_equal(echod_pipe_count(e), pipes);
        }
        recv_exact(fd, got, banner);
        assert_memory_equal(got, pattern + 3 * MIB, banner);
        send_all(fd, pattern + 5 * MIB, more);
        recv_exact(fd, got, more);
        assert_memory_equal(got, pattern + 5 * MIB, more);
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
        assert_true(peer_closed_within(fd, 3000));
        close(fd);
        char expect[64];
        snprintf(expect, sizeof(expect), " in=%zu out=%zu ", more, banner + more);
        check_access(e, "127.0.0.1", cport, expect, "done");
        assert_true(echod_wait_pipe_count(e, pipes, 2000));
        assert_true(echod_wait_fd_count(e, idle, 2000));
    }
    free(got);
    assert_int_equal(atomic_load(&u->mismatches), 0);
    assert_int_equal(up_failures(u), 0);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/*
 * Pipes stay within their share of the descriptor limit: under
 * RLIMIT_NOFILE = 160 and one worker, 160 / 8 = 20 descriptors, 10 pipes.
 * 30 relayed connections whose upstream speaks first (8 MiB) to a client
 * that stops reading each block one direction: 10 of them in a pipe, the
 * rest in a buffer, and every byte still arrives.  The limit raised to 320
 * (prlimit) and a reload: 20 pipes for the next 30.
 */
static void relay_pipes_stay_within_their_share_of_descriptors(void **state)
{
    (void)state;
#ifndef HAVE_SPLICE
    skip(); /* no splice(2) on this system */
#endif
    enum { N = 30, LIMIT = 160, PIPES = LIMIT / 16 };
    /* On io_uring, whether a blocked connection holds its bytes in a pipe
     * or in a buffer depends on the size of its last read, which depends
     * on when the poll completions come: fewer than 30 end up wanting a
     * pipe, so the share is checked as a ceiling there, not reached. */
    const char *backend = getenv("MIO_BACKEND");
    bool uring = backend != NULL && strcmp(backend, "io_uring") == 0;
    const size_t banner = 8 * MIB; /* more than the relay's send buffer */
    struct upsrv *u = start_upstream(UP_BANNER, banner, 3 * MIB);
    char conf[2048];
    /* A fixed port: the reload must find the same address. */
    snprintf(
        conf, sizeof(conf),
        DAEMON_CONF(
            "1",
            "5.0") "listeners = ( { name = \"relay\"; listen = [ \"127.0.0.1:%d\" ];\n"
                   "  mode = \"proxy\"; upstreams = [ \"127.0.0.1:%d\" ]; retries = 0; } );\n",
        reserve_port(), u->srv.port);
    struct echod *e = echod_start_nofile(conf, LIMIT);
    const int pipes = echod_pipe_count(e);
    int port = echod_port(e, "relay", 0);

    /* Each client reads the first 256 KiB (the relay splices by then),
     * then stops. */
    const size_t first = 256 * 1024;
    uint8_t *got = malloc(banner);
    assert_non_null(got);
    for (int round = 1; round <= 2; round++) {
        int fds[N];
        for (int i = 0; i < N; i++) {
            fds[i] = connect_small_window(port);
            track_fd(fds[i]);
            recv_exact(fds[i], got, first);
        }
        int cap = pipes + 2 * round * PIPES;
        if (!uring) {
            if (!echod_wait_pipe_count(e, cap, 5000))
                fail_msg("round %d: %d pipe descriptors, expected %d", round,
                         echod_pipe_count(e), cap);
        }
        sleep_ms(200); /* the others are blocked too by now, without a pipe */
        int now = echod_pipe_count(e);
        if (uring ? now > cap || now <= pipes : now != cap)
            fail_msg("round %d: %d pipe descriptors, expected %s%d", round, now,
                     uring ? "at most " : "", cap);
        for (int i = 0; i < N; i++) {
            recv_exact(fds[i], got + first, banner - first);
            assert_memory_equal(got, pattern + 3 * MIB, banner);
            assert_int_equal(shutdown(fds[i], SHUT_WR), 0);
        }
        for (int i = 0; i < N; i++) {
            assert_true(peer_closed_within(fds[i], 3000));
            close_tracked(fds[i]);
        }
        assert_true(echod_wait_pipe_count(e, pipes, 3000));
        if (round == 2)
            break;
        struct rlimit rl = {2 * LIMIT, 2 * LIMIT};
        if (prlimit(echod_pid(e), RLIMIT_NOFILE, &rl, NULL) < 0)
            fail_msg("prlimit: %s", strerror(errno));
        int reloads = echod_count_log(e, "notice: reloaded ");
        echod_signal(e, SIGHUP);
        for (int i = 0; i < 300 && echod_count_log(e, "notice: reloaded ") == reloads;
             i++)
            sleep_ms(10);
        assert_int_equal(echod_count_log(e, "notice: reloaded "), reloads + 1);
    }
    free(got);
    assert_int_equal(atomic_load(&u->srv.accepted), 2 * N);
    assert_int_equal(up_failures(u), 0);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* Echo with splice = true (off by default): 3 MiB at once, the client
 * reading only after its half-close, comes back byte for byte. */
static void echo_with_splice_returns_every_byte(void **state)
{
    (void)state;
#ifndef HAVE_SPLICE
    skip(); /* no splice(2) on this system */
#endif
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "%slisteners = ( { name = \"echo\"; listen = [ \"127.0.0.1:0\" ];\n"
             "    splice = true; } );\n",
             DAEMON_CONF("1", "5.0"));
    struct echod *e = echod_start(conf);
    const int pipes = echod_pipe_count(e);
    const size_t size = 3 * MIB + 11;
    int fd = connect_small_window(echod_port(e, "echo", 0));
    int cport = local_port(fd);
    send_all(fd, pattern + 77, size);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    uint8_t *back = malloc(size);
    assert_non_null(back);
    recv_exact(fd, back, size);
    assert_memory_equal(back, pattern + 77, size);
    free(back);
    assert_true(peer_closed_within(fd, 3000));
    close(fd);
    char expect[64];
    snprintf(expect, sizeof(expect), " in=%zu out=%zu ", size, size);
    check_access(e, "127.0.0.1", cport, expect, "done");
    assert_true(echod_wait_pipe_count(e, pipes, 2000));
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* ---- balance modes ------------------------------------------------------- */

/*
 * One short relayed exchange from `src`: 3 bytes there and back, a
 * half-close, the daemon's FIN, and its access line (so the daemon has
 * counted the connection out before the next one).  Returns the index in
 * ups[] of the upstream that served it.
 */
static int exchange(struct echod *e, int port, const char *src, struct upsrv **ups,
                    size_t nups)
{
    int before[8];
    assert_true(nups <= ARRAY_LEN(before));
    for (size_t i = 0; i < nups; i++)
        before[i] = atomic_load(&ups[i]->srv.accepted);
    int fd = connect_from(src, port);
    int cport = local_port(fd);
    send_all(fd, "abc", 3);
    char back[3];
    recv_exact(fd, back, 3);
    assert_memory_equal(back, "abc", 3);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    assert_true(peer_closed_within(fd, 3000));
    close(fd);
    check_access(e, src, cport, " in=3 out=3 ", "done");
    int served = -1;
    for (size_t i = 0; i < nups; i++) {
        int d = atomic_load(&ups[i]->srv.accepted) - before[i];
        assert_true(d == 0 || d == 1);
        if (d == 1) {
            assert_int_equal(served, -1);
            served = (int)i;
        }
    }
    assert_true(served >= 0);
    return served;
}

/* Three echoing upstreams into ups[] and a relay over them balanced by
 * `balance` (connect_timeout 3.0, retries 2, fail_timeout 10.0). */
static struct echod *start_balanced(struct upsrv **ups, size_t n, const char *balance)
{
    int ports[8];
    assert_true(n <= ARRAY_LEN(ports));
    for (size_t i = 0; i < n; i++) {
        ups[i] = start_upstream(UP_ECHO, 0, 0);
        ports[i] = ups[i]->srv.port;
    }
    return start_relay(ports, n, balance, "3.0", 2, "10.0");
}

/* Round-robin: 30 connections one after the other, 10 to each of 3. */
static void balance_round_robin_spreads_evenly(void **state)
{
    (void)state;
    struct upsrv *ups[3];
    struct echod *e = start_balanced(ups, 3, "round-robin");
    int port = echod_port(e, "relay", 0);
    int count[3] = {0, 0, 0};
    int last = -1;
    for (int i = 0; i < 30; i++) {
        int s = exchange(e, port, "127.0.0.1", ups, 3);
        if (last >= 0)
            assert_int_equal(s, (last + 1) % 3); /* in turn */
        last = s;
        count[s]++;
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(count[i], 10);
        assert_int_equal(atomic_load(&ups[i]->srv.accepted), 10);
    }
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* A relayed connection kept open; *served tells which upstream has it. */
static int hold(int port, struct upsrv **ups, size_t nups, int *served)
{
    int before[8];
    for (size_t i = 0; i < nups; i++)
        before[i] = atomic_load(&ups[i]->srv.accepted);
    int fd = connect_to(port);
    assert_true(fd >= 0);
    send_all(fd, "h", 1);
    char c;
    recv_exact(fd, &c, 1);
    *served = -1;
    for (size_t i = 0; i < nups; i++)
        if (atomic_load(&ups[i]->srv.accepted) != before[i])
            *served = (int)i;
    assert_true(*served >= 0);
    return fd;
}

/* Least-connections: with one connection held open on X, new short ones go
 * to the other two, never X; with another held on Y, they all go to Z. */
static void balance_least_connections_avoids_busy_upstreams(void **state)
{
    (void)state;
    struct upsrv *ups[3];
    struct echod *e = start_balanced(ups, 3, "least-connections");
    int port = echod_port(e, "relay", 0);
    int x, y;
    int hx = hold(port, ups, 3, &x);
    int count[3] = {0, 0, 0};
    for (int i = 0; i < 12; i++)
        count[exchange(e, port, "127.0.0.1", ups, 3)]++;
    assert_int_equal(count[x], 0);
    for (int i = 0; i < 3; i++)
        if (i != x)
            assert_true(count[i] > 0); /* ties are shared */
    int hy = hold(port, ups, 3, &y);
    assert_true(y != x);
    int z = 3 - x - y;
    for (int i = 0; i < 9; i++)
        assert_int_equal(exchange(e, port, "127.0.0.1", ups, 3), z);
    close(hx);
    close(hy);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* Source-hash: each client address always goes to the same upstream (two
 * in a row, and again in later rounds, in between other addresses), and
 * different addresses spread over them.  Twenty addresses over three
 * upstreams, so that no turn-taking can pass for it, and all twenty on one
 * upstream (the hash depends on the upstreams' ports, new each run) has a
 * chance of 3 in 3^20. */
static void balance_source_hash_is_stable_per_source(void **state)
{
    (void)state;
    struct upsrv *ups[3];
    struct echod *e = start_balanced(ups, 3, "source-hash");
    int port = echod_port(e, "relay", 0);
    enum { SOURCES = 20 };
    char srcs[SOURCES][24];
    for (int s = 0; s < SOURCES; s++)
        snprintf(srcs[s], sizeof(srcs[s]), "127.0.2.%d", s + 1);
    int first[SOURCES];
    bool used[3] = {false, false, false};
    for (int round = 0; round < 3; round++)
        for (size_t s = 0; s < SOURCES; s++)
            for (int again = 0; again < 2; again++) {
                int u = exchange(e, port, srcs[s], ups, 3);
                if (round == 0 && again == 0)
                    first[s] = u;
                else
                    assert_int_equal(u, first[s]);
                used[u] = true;
            }
    assert_true((used[0] + used[1] + used[2]) >= 2);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* ---- retries and passive health ----------------------------------------- */

/* An upstream that refuses is logged and the next one serves the client,
 * byte for byte. */
static void retry_next_upstream_when_one_refuses(void **state)
{
    (void)state;
    int bad = refusing_port();
    struct upsrv *good = start_upstream(UP_ECHO, 0, 0);
    int ports[2] = {bad, good->srv.port};
    struct echod *e = start_relay(ports, 2, "round-robin", "3.0", 2, "10.0");
    int port = echod_port(e, "relay", 0);

    /* The client sends everything and its FIN at once: both wait in the
     * daemon through the failed attempt. */
    const size_t size = 100000;
    int fd = connect_to(port);
    assert_true(fd >= 0);
    int cport = local_port(fd);
    send_all(fd, pattern + 11, size);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    uint8_t *back = malloc(size);
    assert_non_null(back);
    recv_exact(fd, back, size);
    assert_memory_equal(back, pattern + 11, size);
    free(back);
    assert_true(peer_closed_within(fd, 3000));
    close(fd);

    char needle[128];
    snprintf(needle, sizeof(needle), "upstream 127.0.0.1:%d failed: ", bad);
    const char *line = echod_wait_log(e, needle, LOG_MS);
    assert_non_null(line);
    assert_non_null(strstr(line, "refused"));
    char expect[128];
    snprintf(expect, sizeof(expect), " upstream=127.0.0.1:%d in=%zu out=%zu ",
             good->srv.port, size, size);
    check_access(e, "127.0.0.1", cport, expect, "done");
    assert_int_equal(atomic_load(&good->srv.accepted), 1);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* With every upstream refusing and retries = 1: two attempts, then the
 * client gets a reset (not an end of file, which would look like an empty
 * answer), and the log says why. */
static void no_upstream_when_every_upstream_refuses(void **state)
{
    (void)state;
    int ports[2] = {refusing_port(), refusing_port()};
    struct echod *e = start_relay(ports, 2, "round-robin", "3.0", 1, "10.0");
    int port = echod_port(e, "relay", 0);
    int fd = connect_to(port);
    assert_true(fd >= 0);
    int cport = local_port(fd);
    assert_true(peer_reset_within(fd, 3000));
    close(fd);
    echod_must_log(e, "no upstream reached for 127.0.0.1:%d after 2 attempts", cport);
    for (int i = 0; i < 2; i++) {
        echod_must_log(e, "upstream 127.0.0.1:%d failed: ", ports[i]);
    }
    check_access(e, "127.0.0.1", cport, " upstream=- in=0 out=0 ", "no-upstream");
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* After a refusal the upstream is skipped for fail_timeout (one "failed"
 * line however many clients come), and tried again after it. */
static void failed_upstream_skipped_for_fail_timeout(void **state)
{
    (void)state;
    int bad = refusing_port();
    struct upsrv *good = start_upstream(UP_ECHO, 0, 0);
    struct upsrv *ups[1] = {good};
    int ports[2] = {bad, good->srv.port};
    struct echod *e = start_relay(ports, 2, "round-robin", "3.0", 2, "1.0");
    int port = echod_port(e, "relay", 0);
    char needle[128];
    snprintf(needle, sizeof(needle), "upstream 127.0.0.1:%d failed: ", bad);

    int64_t t0 = ms_now();
    for (int i = 0; i < 6; i++)
        assert_int_equal(exchange(e, port, "127.0.0.1", ups, 1), 0);
    int64_t t1 = ms_now();
    if (t1 - t0 >= 900)
        fail_msg("6 exchanges took %lld ms: too slow to test a 1 s fail_timeout",
                 (long long)(t1 - t0));
    assert_int_equal(echod_count_log(e, needle), 1);
    const char *line = echod_wait_log(e, needle, 0);
    assert_non_null(strstr(line, "skipped for 1.000 s"));

    /* Past fail_timeout it is tried again (and fails again); round-robin
     * puts it first for one of two clients. */
    int64_t wait = t0 + 1000 + 50 - ms_now();
    sleep_ms(wait > 0 ? (int)wait : 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(exchange(e, port, "127.0.0.1", ups, 1), 0);
    assert_int_equal(echod_count_log(e, needle), 2);
    assert_int_equal(atomic_load(&good->srv.accepted), 8);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* An upstream that never answers is given up after connect_timeout (0.3 s)
 * and the next one serves; with none left the client gets an EOF after
 * each attempt's timeout. */
static void connect_timeout_moves_on(void **state)
{
    (void)state;
    int silent = silent_port();
    struct upsrv *good = start_upstream(UP_ECHO, 0, 0);
    int ports[2] = {silent, good->srv.port};
    char g1[1024], g2[1024], conf[4096];
    relay_group(g1, sizeof(g1), "relay", ports, 2, "round-robin", "0.3", 2, "10.0");
    relay_group(g2, sizeof(g2), "dead", &silent, 1, "round-robin", "0.3", 1, "10.0");
    snprintf(conf, sizeof(conf), "%slisteners = ( %s, %s );\n", DAEMON_CONF("2", "5.0"),
             g1, g2);
    struct echod *e = echod_start(conf);
    int p_relay = echod_port(e, "relay", 0), p_dead = echod_port(e, "dead", 0);

    int64_t t0 = ms_now();
    int a = connect_to(p_relay);
    int b = connect_to(p_dead);
    assert_true(a >= 0 && b >= 0);
    int pa = local_port(a), pb = local_port(b);
    /* Bytes and FIN wait in the daemon through the attempt that hangs. */
    send_all(a, "ping", 4);
    assert_int_equal(shutdown(a, SHUT_WR), 0);
    char back[4];
    recv_exact(a, back, 4);
    int64_t ta = ms_now() - t0;
    assert_memory_equal(back, "ping", 4);
    assert_true(peer_closed_within(a, 3000));
    assert_true(peer_reset_within(b, 3000)); /* given up: an abort */
    int64_t tb = ms_now() - t0;
    print_message("    served after %lld ms, given up after %lld ms\n", (long long)ta,
                  (long long)tb);
    /* Both clocks count whole milliseconds: allow for the truncation. */
    assert_true(ta >= 300 - 2 && ta < 3000);
    assert_true(tb >= 2 * 300 - 2 && tb < 3000); /* retries = 1: two attempts */
    close(a);
    close(b);

    echod_must_log(e, "listener relay: upstream 127.0.0.1:%d failed: connect timeout",
                   silent);
    char expect[128];
    snprintf(expect, sizeof(expect), " upstream=127.0.0.1:%d in=4 out=4 ",
             good->srv.port);
    check_access(e, "127.0.0.1", pa, expect, "done");
    echod_must_log(e, "listener dead: upstream 127.0.0.1:%d failed: connect timeout",
                   silent);
    echod_must_log(e,
                   "listener dead: no upstream reached for 127.0.0.1:%d after 2 attempts",
                   pb);
    check_access(e, "127.0.0.1", pb, " upstream=- in=0 out=0 ", "no-upstream");
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* ---- idle timeout ------------------------------------------------------- */

/* idle_timeout = 0.3: a silent client is aborted (a reset) after 0.3 s (not
 * much later), while one sending a byte every 100 ms for 1 s stays served. */
static void idle_timeout_closes_only_silent_clients(void **state)
{
    (void)state;
    struct echod *e = start_echo("0.3", "5.0");
    int port = echod_port(e, "echo", 0);
    int64_t t0 = ms_now();
    int silent = connect_to(port);
    int busy = connect_to(port);
    assert_true(silent >= 0 && busy >= 0);
    int ps = local_port(silent), pb = local_port(busy);

    int64_t closed_at = -1;
    for (int tick = 1; tick <= 10; tick++) {
        /* Until the next tick, watch for the silent client's close. */
        int64_t next = t0 + 100 * tick;
        for (int i = 0; i < 100; i++) {
            int64_t wait = next - ms_now();
            if (wait <= 0)
                break;
            if (closed_at >= 0) {
                sleep_ms((int)wait);
                continue;
            }
            struct pollfd pfd = {.fd = silent, .events = POLLIN};
            if (poll(&pfd, 1, (int)wait) <= 0)
                continue;
            char c;
            ssize_t n = recv(silent, &c, 1, MSG_DONTWAIT);
            assert_int_equal(n, -1); /* a reset: no data, no FIN */
            assert_int_equal(errno, ECONNRESET);
            closed_at = ms_now() - t0;
        }
        char c = (char)('a' + tick);
        send_all(busy, &c, 1);
        char back;
        recv_exact(busy, &back, 1);
        assert_int_equal(back, c);
    }
    if (closed_at < 0) {
        assert_true(peer_reset_within(silent, 2000));
        closed_at = ms_now() - t0;
    }
    print_message("    silent client closed after %lld ms\n", (long long)closed_at);
    assert_true(closed_at >= 300 - 2 && closed_at < 3000);
    close(silent);
    const char *line = check_access(e, "127.0.0.1", ps, " in=0 out=0 ", "idle-timeout");
    const char *d = strstr(line, " duration=");
    assert_non_null(d);
    double secs = strtod(d + 10, NULL);
    assert_true(secs >= 0.3 && secs < 3.0);

    /* The busy one lived through 1 s and still works. */
    assert_int_equal(echod_count_log(e, " reason=idle-timeout"), 1);
    send_all(busy, "end", 3);
    char back[3];
    recv_exact(busy, back, 3);
    assert_int_equal(shutdown(busy, SHUT_WR), 0);
    assert_true(peer_closed_within(busy, 2000));
    close(busy);
    check_access(e, "127.0.0.1", pb, " in=13 out=13 ", "done");
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* ---- SIGTERM ------------------------------------------------------------------ */

enum knock { REFUSED, RESET, CLOSED, SERVED, NO_ANSWER };

/* What becomes of a new connection to port that sends one byte. */
static enum knock knock(int port)
{
    int fd = connect_to(port);
    if (fd < 0) {
        assert_int_equal(errno, ECONNREFUSED);
        return REFUSED;
    }
    (void)send(fd, "x", 1, MSG_NOSIGNAL);
    enum knock k = NO_ANSWER;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 2000) == 1) {
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
        k = n == 1 ? SERVED : n == 0 ? CLOSED : errno == ECONNRESET ? RESET : NO_ANSWER;
    }
    if (k == SERVED) {
        /* Let the daemon end it, so that it does not wait for it. */
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
        assert_true(peer_closed_within(fd, 2000));
    }
    close(fd);
    return k;
}

/* After SIGTERM an open connection goes on (bytes sent after the signal
 * are echoed), new ones are turned away, and the daemon exits 0 as soon as
 * the last connection ends, well before shutdown_timeout (10 s). */
static void sigterm_drains_open_connections(void **state)
{
    (void)state;
    struct echod *e = start_echo("30.0", "10.0");
    int port = echod_port(e, "echo", 0);
    int fd = connect_to(port);
    assert_true(fd >= 0);
    int cport = local_port(fd);
    uint8_t *back = malloc(200000);
    assert_non_null(back);
    send_all(fd, pattern, 1000);
    recv_exact(fd, back, 1000);
    assert_memory_equal(back, pattern, 1000);

    echod_signal(e, SIGTERM);
    assert_non_null(
        echod_wait_log(e, "SIGTERM: no longer accepting; draining 1 connections", 2000));
    /* New connections are turned away (refused, or reset when queued in
     * the listener before it closed).  The signal is logged before the
     * workers hear of it: one may still take a client in that moment, and
     * serve it; not for long. */
    enum knock k = SERVED;
    int served = 0;
    int64_t until = ms_now() + 1000;
    for (int i = 0; i < 100 && k == SERVED && ms_now() < until; i++) {
        k = knock(port);
        if (k == SERVED) {
            served++;
            sleep_ms(10);
        }
    }
    print_message("    turned away (%s) after %d served\n",
                  k == REFUSED  ? "refused"
                  : k == RESET  ? "reset"
                  : k == CLOSED ? "closed"
                  : k == SERVED ? "served"
                                : "no answer",
                  served);
    assert_true(k == REFUSED || k == RESET || k == CLOSED);

    send_all(fd, pattern + 1000, 199000);
    recv_exact(fd, back + 1000, 199000);
    assert_memory_equal(back, pattern, 200000);
    free(back);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    assert_true(peer_closed_within(fd, 2000));
    int64_t t0 = ms_now();
    close(fd);
    check_access(e, "127.0.0.1", cport, " in=200000 out=200000 ", "done");
    /* It stops by itself: no second signal. */
    assert_non_null(echod_wait_log(e, "mio-echod: notice: stopped", 2000));
    print_message("    stopped %lld ms after the last connection ended\n",
                  (long long)(ms_now() - t0));
    assert_int_equal(echod_stop(e, 2000), 0);
    assert_int_equal(echod_count_log(e, "shutdown_timeout: closing"), 0);
}

/* With shutdown_timeout = 0.5 an idle client is aborted (a reset) 0.5 s
 * after SIGTERM (reason=shutdown) and the daemon exits 0. */
static void sigterm_closes_idle_connections_after_shutdown_timeout(void **state)
{
    (void)state;
    struct echod *e = start_echo("30.0", "0.5");
    int port = echod_port(e, "echo", 0);
    int fd = connect_to(port);
    assert_true(fd >= 0);
    int cport = local_port(fd);
    send_all(fd, "hi", 2); /* served: the daemon has accepted it */
    char back[2];
    recv_exact(fd, back, 2);

    int64_t t0 = ms_now();
    echod_signal(e, SIGTERM);
    assert_true(peer_reset_within(fd, 3000));
    int64_t closed = ms_now() - t0;
    assert_non_null(echod_wait_log(e, "mio-echod: notice: stopped", 2000));
    int64_t stopped = ms_now() - t0;
    print_message("    closed after %lld ms, stopped after %lld ms\n", (long long)closed,
                  (long long)stopped);
    assert_true(closed >= 500 - 2);
    assert_true(stopped < 1500);
    close(fd);
    check_access(e, "127.0.0.1", cport, " in=2 out=2 ", "shutdown");
    assert_int_equal(echod_stop(e, 2000), 0);
}

/* ---- urgent data ------------------------------------------------------------ */

/*
 * TCP urgent data (send(MSG_OOB), as telnet's Synch and FTP's ABOR use it):
 * a stream of URG_TOTAL bytes of the pattern whose byte URG_MARK is sent as
 * urgent, and a FIN.  Every byte must come through in order, the urgent one
 * as urgent data at the same place, through echo, a copying relay and a
 * splicing relay, both ways.  The receiving sockets read urgent data in
 * line (SO_OOBINLINE), so a recv stops at the mark and SIOCATMARK says
 * when the next byte is the urgent one.
 */
#define URG_MARK ((size_t)1000000)
#define URG_TOTAL (URG_MARK + 1 + 100000)

/* What an urgent sender does: bytes from the pattern at `off`. */
struct urg_send {
    int fd;
    size_t off, total, mark;
    const char *failed; /* NULL, or what went wrong */
};

/* Sends [0, mark), the byte at mark as urgent, the rest, then a FIN. */
static void *urg_sender(void *arg)
{
    struct urg_send *u = arg;
    const uint8_t *p = pattern + u->off;
    size_t done = 0;
    while (done < u->total && u->failed == NULL) {
        size_t n = done < u->mark    ? u->mark - done
                   : done == u->mark ? 1
                                     : u->total - done;
        ssize_t m = send(u->fd, p + done, n,
                         MSG_NOSIGNAL | (done == u->mark ? MSG_OOB : 0));
        if (m > 0)
            done += (size_t)m;
        else if (m < 0 && errno != EINTR)
            u->failed = "send";
    }
    if (u->failed == NULL && shutdown(u->fd, SHUT_WR) < 0)
        u->failed = "shutdown";
    return NULL;
}

/* Starts urg_sender() on fd in a thread. */
static pthread_t urg_start(struct urg_send *u, int fd, size_t off, size_t total,
                           size_t mark)
{
    *u = (struct urg_send){.fd = fd, .off = off, .total = total, .mark = mark};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, urg_sender, u), 0);
    return t;
}

/* Joins the sender and fails the test when it failed. */
static void urg_join(pthread_t t, const struct urg_send *u)
{
    pthread_join(t, NULL);
    if (u->failed != NULL)
        fail_msg("urgent sender: %s failed", u->failed);
}

/*
 * Receives `total` bytes of the pattern at `off` on fd (SO_OOBINLINE set),
 * then the end of file, checking every byte and that the urgent mark sits
 * at `mark`: reads up to the byte before it, waits for the urgent data to
 * be announced (POLLPRI), then reads on, asking SIOCATMARK before each
 * read.
 */
static void urg_receive(int fd, size_t off, size_t total, size_t mark)
{
    uint8_t *buf = malloc(total + 1);
    assert_non_null(buf);
    recv_exact(fd, buf, mark - 1);
    struct pollfd pfd = {.fd = fd, .events = POLLPRI};
    int r;
    while ((r = poll(&pfd, 1, 3000)) < 0 && errno == EINTR)
        ;
    if (r != 1 || !(pfd.revents & POLLPRI))
        fail_msg("no urgent data announced after %zu bytes", mark - 1);
    size_t done = mark - 1, marked_at = SIZE_MAX;
    for (int i = 0; i < 100000 && done < total; i++) {
        int at = 0;
        assert_int_equal(ioctl(fd, SIOCATMARK, &at), 0);
        if (at && marked_at == SIZE_MAX)
            marked_at = done;
        ssize_t n = recv(fd, buf + done, total - done, 0);
        if (n <= 0)
            fail_msg("recv after %zu of %zu bytes: %s", done, total,
                     n == 0 ? "end of file" : strerror(errno));
        done += (size_t)n;
    }
    assert_int_equal(done, total);
    assert_memory_equal(buf, pattern + off, total);
    assert_int_equal(marked_at, mark);
    assert_true(peer_closed_within(fd, 3000));
    free(buf);
}

/* Reads urgent data in line on fd (and on what it accepts). */
static void oob_inline(int fd)
{
    int on = 1;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &on, sizeof(on)), 0);
}

/* An echo connection sends the urgent byte back as urgent, in its place,
 * and every byte after it: the stream does not stop at the mark. */
static void echo_sends_urgent_data_back_in_place(void **state)
{
    (void)state;
    struct echod *e = start_echo("30.0", "5.0");
    int fd = client4(echod_port(e, "echo", 0));
    int cport = local_port(fd);
    oob_inline(fd);
    struct urg_send u;
    pthread_t t = urg_start(&u, fd, 0, URG_TOTAL, URG_MARK);
    urg_receive(fd, 0, URG_TOTAL, URG_MARK);
    urg_join(t, &u);
    close(fd);
    char expect[64];
    snprintf(expect, sizeof(expect), " in=%zu out=%zu ", URG_TOTAL, URG_TOTAL);
    check_access(e, "127.0.0.1", cport, expect, "done");
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* A relay (splice on or off) passes urgent data on as urgent data, both
 * ways, and every byte after it, then both FINs: reason=done. */
static void relay_urgent_data(bool splice)
{
    int up;
    int lfd = listen_loopback(16, &up);
    track_fd(lfd);
    oob_inline(lfd);
    char conf[1024];
    snprintf(
        conf, sizeof(conf),
        DAEMON_CONF(
            "2",
            "5.0") "listeners = ( { name = \"relay\"; listen = [ \"127.0.0.1:0\" ];\n"
                   "  mode = \"proxy\"; upstreams = [ \"127.0.0.1:%d\" ];\n"
                   "  splice = %s; } );\n",
        up, splice ? "true" : "false");
    struct echod *e = echod_start(conf);
    int fd = client4(echod_port(e, "relay", 0));
    int cport = local_port(fd);
    oob_inline(fd);
    int ufd = upstream_accept(lfd);
    track_fd(ufd);

    struct urg_send u;
    pthread_t t = urg_start(&u, fd, 0, URG_TOTAL, URG_MARK);
    urg_receive(ufd, 0, URG_TOTAL, URG_MARK);
    urg_join(t, &u);

    /* The other way: the upstream's answer, urgent byte and all. */
    const size_t back = 310000, mark = 300000, off = 2 * MIB;
    t = urg_start(&u, ufd, off, back, mark);
    urg_receive(fd, off, back, mark);
    urg_join(t, &u);
    close(fd);
    char expect[64];
    snprintf(expect, sizeof(expect), " in=%zu out=%zu ", URG_TOTAL, back);
    check_access(e, "127.0.0.1", cport, expect, "done");
    assert_int_equal(echod_stop(e, 3000), 0);
}

static void relay_passes_urgent_data_on_spliced(void **state)
{
    (void)state;
    relay_urgent_data(true);
}

static void relay_passes_urgent_data_on_copied(void **state)
{
    (void)state;
    relay_urgent_data(false);
}

/* ---- aborts ----------------------------------------------------------------- */

/* An upstream that sends part of its answer and resets: the client gets
 * that part, then a reset, not an end of file that would make a truncated
 * answer look whole.  A client that resets: the upstream gets a reset. */
static void relay_passes_a_reset_on_as_a_reset(void **state)
{
    (void)state;
    int up;
    int lfd = listen_loopback(16, &up);
    track_fd(lfd);
    int ports[1] = {up};
    struct echod *e = start_relay(ports, 1, "round-robin", "3.0", 0, "10.0");
    int port = echod_port(e, "relay", 0);

    int fd = client4(port);
    int cport = local_port(fd);
    int ufd = upstream_accept(lfd);
    send_all(ufd, pattern, 5000);
    uint8_t got[5000];
    recv_exact(fd, got, sizeof(got));
    assert_memory_equal(got, pattern, sizeof(got));
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(ufd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(ufd);
    assert_true(peer_reset_within(fd, 3000));
    close(fd);
    check_access(e, "127.0.0.1", cport, " in=0 out=5000 ", "upstream-reset");

    fd = client4(port);
    cport = local_port(fd);
    ufd = upstream_accept(lfd);
    send_all(fd, pattern, 700);
    recv_exact(ufd, got, 700);
    assert_memory_equal(got, pattern, 700);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
    assert_true(peer_reset_within(ufd, 3000));
    close(ufd);
    check_access(e, "127.0.0.1", cport, " in=700 out=0 ", "client-reset");
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* A client that resets while its upstream connect hangs is let go at once
 * (reason=client-reset), not after connect_timeout; one that only
 * half-closes is kept (it may wait for the upstream to speak first). */
static void client_reset_while_connecting_ends_it_at_once(void **state)
{
    (void)state;
    int ports[1] = {silent_port()};
    struct echod *e = start_relay(ports, 1, "round-robin", "2.0", 0, "10.0");
    int port = echod_port(e, "relay", 0);
    int fd = client4(port);
    int cport = local_port(fd);
    sleep_ms(100); /* accepted: the connect is pending */
    int64_t t0 = ms_now();
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
    char expect[64];
    snprintf(expect, sizeof(expect), " upstream=127.0.0.1:%d in=0 out=0 ", ports[0]);
    check_access(e, "127.0.0.1", cport, expect, "client-reset");
    int64_t after = ms_now() - t0;
    print_message("    let go %lld ms after the reset\n", (long long)after);
    assert_true(after < 1500);

    fd = client4(port);
    cport = local_port(fd);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    sleep_ms(300);
    assert_null(echod_log_line(e, "client=127.0.0.1:", 1));
    assert_true(peer_reset_within(fd, 4000)); /* connect_timeout: no-upstream */
    close(fd);
    check_access(e, "127.0.0.1", cport, " upstream=- in=0 out=0 ", "no-upstream");
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* ---- upstream state over reloads, and what is chosen ------------------- */

/* A relay "relay" on 127.0.0.1:lport (a fixed port, so that a reload of
 * the same file keeps it) over the given upstream ports. */
static struct echod *start_relay_at(int lport, const int *ports, size_t n,
                                    const char *balance, int retries,
                                    const char *fail_timeout)
{
    char ups[512];
    upstream_list(ups, sizeof(ups), ports, n);
    char conf[2048];
    snprintf(conf, sizeof(conf),
             "%slisteners = ( {\n"
             "    name = \"relay\";\n"
             "    listen = [ \"127.0.0.1:%d\" ];\n"
             "    mode = \"proxy\";\n"
             "    upstreams = [ %s ];\n"
             "    balance = \"%s\";\n"
             "    retries = %d;\n"
             "    fail_timeout = %s;\n"
             "} );\n",
             DAEMON_CONF("2", "5.0"), lport, ups, balance, retries, fail_timeout);
    return echod_start(conf);
}

/*
 * Least-connections remembers open connections over a reload: with A
 * holding 5 and B none, a SIGHUP of the same file, then 4 short clients
 * one after the other all go to B (the old code forgot the 5 and gave
 * them 2 and 2).
 */
static void least_connections_counts_survive_reload(void **state)
{
    (void)state;
    struct upsrv *ups[2] = {start_upstream(UP_ECHO, 0, 0), start_upstream(UP_ECHO, 0, 0)};
    int ports[2] = {ups[0]->srv.port, ups[1]->srv.port};
    /* Port 0: a reload keeps the socket the kernel gave it, and no other
     * program can take the port between a reservation and the bind. */
    struct echod *e = start_relay_at(0, ports, 2, "least-connections", 2, "10.0");
    int lport = echod_port(e, "relay", 0);

    /* Ten held: least-connections puts them 5 and 5; B's five are closed. */
    int fds[10], served[10], held[2] = {0, 0};
    for (int i = 0; i < 10; i++) {
        fds[i] = hold(lport, ups, 2, &served[i]);
        held[served[i]]++;
    }
    assert_int_equal(held[0], 5);
    assert_int_equal(held[1], 5);
    int a = served[0], b = 1 - a;
    for (int i = 0; i < 10; i++)
        if (served[i] == b)
            close(fds[i]);
    char b_line[64];
    snprintf(b_line, sizeof(b_line), " upstream=127.0.0.1:%d ", ports[b]);
    assert_true(echod_wait_count(e, b_line, 5, LOG_MS));

    echod_reload_ok(e, 5000);
    int count[2] = {0, 0};
    for (int i = 0; i < 4; i++)
        count[exchange(e, lport, "127.0.0.1", ups, 2)]++;
    print_message("    after the reload: %d to the upstream holding 5, %d to the "
                  "idle one\n",
                  count[a], count[b]);
    assert_int_equal(count[b], 4);
    assert_int_equal(count[a], 0);
    for (int i = 0; i < 10; i++)
        if (served[i] == a)
            close(fds[i]);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/*
 * A failed mark survives a reload: the refusing upstream, marked failed
 * before the SIGHUP for 30 s, is not tried after it (one "failed" line
 * however many clients come); and round-robin goes on in turn over a
 * reload rather than starting again from the first upstream.
 */
static void failed_marks_and_turns_survive_reload(void **state)
{
    (void)state;
    int bad = refusing_port();
    struct upsrv *good = start_upstream(UP_ECHO, 0, 0);
    struct upsrv *ups1[1] = {good};
    int ports[2] = {bad, good->srv.port};
    struct echod *e = start_relay_at(0, ports, 2, "round-robin", 1, "30.0");
    int lport = echod_port(e, "relay", 0);
    char needle[128];
    snprintf(needle, sizeof(needle), "upstream 127.0.0.1:%d failed: ", bad);
    /* The first client tries the first upstream, which refuses. */
    assert_int_equal(exchange(e, lport, "127.0.0.1", ups1, 1), 0);
    assert_int_equal(echod_count_log(e, needle), 1);
    echod_reload_ok(e, 5000);
    for (int i = 0; i < 4; i++)
        assert_int_equal(exchange(e, lport, "127.0.0.1", ups1, 1), 0);
    assert_int_equal(echod_count_log(e, needle), 1);
    assert_int_equal(echod_stop(e, 3000), 0);

    /* Round-robin over three: 0, 1, reload, then 2 and 0. */
    struct upsrv *ups[3];
    int p3[3];
    for (int i = 0; i < 3; i++) {
        ups[i] = start_upstream(UP_ECHO, 0, 0);
        p3[i] = ups[i]->srv.port;
    }
    e = start_relay_at(0, p3, 3, "round-robin", 2, "10.0");
    lport = echod_port(e, "relay", 0);
    int first = exchange(e, lport, "127.0.0.1", ups, 3);
    assert_int_equal(exchange(e, lport, "127.0.0.1", ups, 3), (first + 1) % 3);
    echod_reload_ok(e, 5000);
    assert_int_equal(exchange(e, lport, "127.0.0.1", ups, 3), (first + 2) % 3);
    assert_int_equal(exchange(e, lport, "127.0.0.1", ups, 3), first);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* A relay "relay" on 127.0.0.1:0 over the upstream list `ups` (the inside
 * of ( ): libconfig's [ ] takes scalars only, a list of strings and groups
 * is written in parentheses), balanced by `balance`. */
static struct echod *start_weighted(const char *ups, const char *balance)
{
    char conf[2048];
    snprintf(conf, sizeof(conf),
             "%slisteners = ( { name = \"relay\"; listen = [ \"127.0.0.1:0\" ];\n"
             "    mode = \"proxy\"; upstreams = ( %s );\n"
             "    balance = \"%s\"; retries = 2; fail_timeout = 30.0; } );\n",
             DAEMON_CONF("2", "5.0"), ups, balance);
    return echod_start(conf);
}

/* Weights 3 and 1: round-robin gives 300 and 100 of 400 clients, in a
 * spread order (smooth weighted round-robin: never 3 in a row to the
 * heavy one here... A A B A A A B A: at most 3). */
static void weights_share_round_robin(void **state)
{
    (void)state;
    struct upsrv *a = start_upstream(UP_ECHO, 0, 0), *b = start_upstream(UP_ECHO, 0, 0);
    struct upsrv *ups[2] = {a, b};
    char list[256];
    snprintf(list, sizeof(list),
             "{ address = \"127.0.0.1:%d\"; weight = 3; }, \"127.0.0.1:%d\"", a->srv.port,
             b->srv.port);
    struct echod *e = start_weighted(list, "round-robin");
    int port = echod_port(e, "relay", 0);
    int got[2] = {0}, run = 0, longest = 0;
    for (int i = 0; i < 400; i++) {
        int k = exchange(e, port, "127.0.0.1", ups, 2);
        got[k]++;
        run = k == 0 ? run + 1 : 0;
        longest = run > longest ? run : longest;
    }
    print_message("    weights 3 and 1: %d and %d of 400, at most %d in a row\n", got[0],
                  got[1], longest);
    assert_int_equal(got[0], 300);
    assert_int_equal(got[1], 100);
    assert_true(longest <= 3);
    echod_stop_ok(e);
}

/* A backup gets no client while a primary is up; with the only primary
 * refusing, every client is served by the backup, none fails. */
static void backup_serves_only_when_no_primary_is_up(void **state)
{
    (void)state;
    struct upsrv *a = start_upstream(UP_ECHO, 0, 0), *b = start_upstream(UP_ECHO, 0, 0);
    struct upsrv *ups[2] = {a, b};
    char list[256];
    snprintf(list, sizeof(list),
             "\"127.0.0.1:%d\", { address = \"127.0.0.1:%d\"; backup = true; }",
             a->srv.port, b->srv.port);
    struct echod *e = start_weighted(list, "least-connections");
    int port = echod_port(e, "relay", 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(exchange(e, port, "127.0.0.1", ups, 2), 0);
    echod_stop_ok(e);

    struct upsrv *only[1] = {b};
    snprintf(list, sizeof(list),
             "\"127.0.0.1:%d\", { address = \"127.0.0.1:%d\"; backup = true; }",
             refusing_port(), b->srv.port);
    e = start_weighted(list, "round-robin");
    port = echod_port(e, "relay", 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(exchange(e, port, "127.0.0.1", only, 1), 0);
    echod_stop_ok(e);
}

/*
 * source-hash is consistent: 4 upstreams, 120 sources (127.0.1.x); a
 * reload that removes one moves only the sources that were on it, where a
 * modulo hash would move about three quarters of them.
 */
static void source_hash_moves_only_the_removed_share(void **state)
{
    (void)state;
    enum { N = 4, SOURCES = 120 };
    struct upsrv *ups[N];
    char list[512] = "";
    for (int i = 0; i < N; i++) {
        ups[i] = start_upstream(UP_ECHO, 0, 0);
        size_t used = strlen(list);
        snprintf(list + used, sizeof(list) - used, "%s\"127.0.0.1:%d\"", i ? ", " : "",
                 ups[i]->srv.port);
    }
    struct echod *e = start_weighted(list, "source-hash");
    int port = echod_port(e, "relay", 0);
    int before[SOURCES];
    char src[32];
    for (int s = 0; s < SOURCES; s++) {
        snprintf(src, sizeof(src), "127.0.1.%d", s + 1);
        before[s] = exchange(e, port, src, ups, N);
    }
    /* Without the third upstream. */
    list[0] = '\0';
    for (int i = 0; i < N; i++) {
        size_t used = strlen(list);
        if (i != 2)
            snprintf(list + used, sizeof(list) - used, "%s\"127.0.0.1:%d\"",
                     used ? ", " : "", ups[i]->srv.port);
    }
    echod_rewrite_conf(
        e,
        "%slisteners = ( { name = \"relay\"; listen = [ \"127.0.0.1:%d\" ];\n"
        "    mode = \"proxy\"; upstreams = [ %s ];\n"
        "    balance = \"source-hash\"; retries = 2; fail_timeout = 30.0; } );\n",
        DAEMON_CONF("2", "5.0"), port, list);
    echod_reload_ok(e, 5000);
    int moved = 0, on_removed = 0;
    for (int s = 0; s < SOURCES; s++) {
        snprintf(src, sizeof(src), "127.0.1.%d", s + 1);
        int now = exchange(e, port, src, ups, N);
        on_removed += before[s] == 2;
        moved += now != before[s];
        if (before[s] != 2)
            assert_int_equal(now, before[s]);
    }
    print_message(
        "    removing 1 of %d upstreams moved %d of %d sources (%d were on it)\n", N,
        moved, SOURCES, on_removed);
    assert_int_equal(moved, on_removed);
    assert_true(on_removed > 0);
    echod_stop_ok(e);
}

/*
 * Round-robin with the middle one of three upstreams refusing: its share
 * is spread over the other two, 150 and 150 of 300 clients (the old code
 * gave it all to the one after it: 100 and 200).  The one client whose
 * turn found B not yet marked goes on to C: hence the 2 of slack.
 */
static void round_robin_spreads_a_failed_share(void **state)
{
    (void)state;
    struct upsrv *a = start_upstream(UP_ECHO, 0, 0), *c = start_upstream(UP_ECHO, 0, 0);
    struct upsrv *ups[2] = {a, c};
    int ports[3] = {a->srv.port, refusing_port(), c->srv.port};
    struct echod *e = start_relay(ports, 3, "round-robin", "3.0", 2, "60.0");
    int port = echod_port(e, "relay", 0);
    int count[2] = {0, 0};
    for (int i = 0; i < 300; i++)
        count[exchange(e, port, "127.0.0.1", ups, 2)]++;
    print_message("    A %d, C %d\n", count[0], count[1]);
    assert_true(count[0] >= 148 && count[0] <= 152);
    assert_true(count[1] >= 148 && count[1] <= 152);
    assert_int_equal(count[0] + count[1], 300);
    assert_int_equal(atomic_load(&a->srv.accepted) + atomic_load(&c->srv.accepted), 300);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* The addresses "localhost" resolves to (for TCP), in order, into out. */
static size_t localhost_addrs(struct sockaddr_storage *out, size_t max, int port)
{
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res;
    assert_int_equal(getaddrinfo("localhost", service, &hints, &res), 0);
    size_t n = 0;
    for (struct addrinfo *r = res; r != NULL && n < max; r = r->ai_next) {
        if (r->ai_addrlen > sizeof(out[0]))
            continue;
        memset(&out[n], 0, sizeof(out[n]));
        memcpy(&out[n], r->ai_addr, r->ai_addrlen);
        n++;
    }
    freeaddrinfo(res);
    return n;
}

/* Whether sa is 127.0.0.1. */
static bool is_v4_loopback(const struct sockaddr_storage *sa)
{
    return sa->ss_family == AF_INET &&
           ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
}

/*
 * upstreams = [ "localhost:P" ] with the server on 127.0.0.1 only and
 * retries = 0: relayed byte for byte, whatever localhost resolves to
 * first.  On Debian's stock hosts file that is [::1], which the old code
 * took as the only address: the client got "no-upstream".  Every other
 * address of localhost is held bound (not listening) on port P here, so
 * that it refuses; the "failed" line names the name and the address.
 */
static void relay_to_a_name_tries_each_of_its_addresses(void **state)
{
    (void)state;
    struct upsrv *u = start_upstream(UP_ECHO, 0, 0);
    int p = u->srv.port;
    struct sockaddr_storage addrs[16];
    size_t n = localhost_addrs(addrs, 16, p), before = 0;
    bool seen_server = false;
    for (size_t i = 0; i < n; i++) {
        if (is_v4_loopback(&addrs[i])) {
            seen_server = true;
            continue;
        }
        before += !seen_server;
        int fd = socket(addrs[i].ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        track_fd(fd);
        int one = 1;
        if (addrs[i].ss_family == AF_INET6)
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        (void)bind(fd, (struct sockaddr *)&addrs[i],
                   addrs[i].ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                  : sizeof(struct sockaddr_in));
    }
    if (!seen_server)
        skip(); /* localhost is not 127.0.0.1 here: nothing to relay to */
    print_message("    localhost: %zu address%s, %zu before 127.0.0.1%s\n", n,
                  n == 1 ? "" : "es", before,
                  before == 0 ? " (the old code passed here too)" : "");
    char conf[2048];
    snprintf(conf, sizeof(conf),
             "%slisteners = ( {\n"
             "    name = \"relay\";\n"
             "    listen = [ \"127.0.0.1:0\" ];\n"
             "    mode = \"proxy\";\n"
             "    upstreams = [ \"localhost:%d\" ];\n"
             "    retries = 0;\n"
             "} );\n",
             DAEMON_CONF("2", "5.0"), p);
    struct echod *e = echod_start(conf);
    int port = echod_port(e, "relay", 0);
    const size_t size = 200000;
    uint8_t *back = malloc(size);
    assert_non_null(back);
    for (int round = 0; round < 2; round++) {
        int fd = client4(port);
        int cport = local_port(fd);
        send_all(fd, pattern + 1000 * (size_t)round, size);
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
        recv_exact(fd, back, size);
        assert_memory_equal(back, pattern + 1000 * (size_t)round, size);
        assert_true(peer_closed_within(fd, 3000));
        close(fd);
        char expect[128];
        snprintf(expect, sizeof(expect), " upstream=127.0.0.1:%d in=%zu out=%zu ", p,
                 size, size);
        check_access(e, "127.0.0.1", cport, expect, "done");
    }
    free(back);
    /* Each address before the server's refused once, then was skipped. */
    char needle[64];
    snprintf(needle, sizeof(needle), "upstream localhost:%d (", p);
    assert_int_equal(echod_count_log(e, needle), (int)before);
    assert_int_equal(atomic_load(&u->srv.accepted), 2);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* An address of this host's interfaces that is not loopback, into text
 * ("192.0.2.2" or "[2001:db8::2]"); false when it has none. */
static bool host_address(char *text, size_t len)
{
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) < 0)
        return false;
    bool found = false;
    for (int pass = 0; pass < 2 && !found; pass++)
        for (struct ifaddrs *i = ifs; i != NULL && !found; i = i->ifa_next) {
            if (i->ifa_addr == NULL || (i->ifa_flags & IFF_LOOPBACK) != 0 ||
                (i->ifa_flags & IFF_UP) == 0)
                continue;
            char ip[INET6_ADDRSTRLEN];
            if (pass == 0 && i->ifa_addr->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)i->ifa_addr;
                inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
                snprintf(text, len, "%s", ip);
                found = true;
            } else if (pass == 1 && i->ifa_addr->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)i->ifa_addr;
                if (IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr))
                    continue;
                inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
                snprintf(text, len, "[%s]", ip);
                found = true;
            }
        }
    freeifaddrs(ifs);
    return found;
}

/*
 * A relay listening on *:P whose upstream is this host's own address on
 * port P (an interface address, not loopback, which the configuration
 * check cannot know for the daemon's own): the daemon does not connect to
 * itself, it says why and gives the client up.  The old code connected to
 * itself until max_connections (20 here) ran out.  A relay to the daemon's
 * own echo listener the same way is a chain, not a loop: it is relayed.
 */
static void relay_never_connects_to_its_own_listener(void **state)
{
    (void)state;
    char host[INET6_ADDRSTRLEN + 2];
    if (!host_address(host, sizeof(host))) {
        print_message("    this machine has no address but loopback: nothing to test\n");
        skip();
    }
    int p = reserve_port(), q = reserve_port();
    for (int i = 0; i < 100 && q == p; i++)
        q = reserve_port();
    char conf[2048];
    snprintf(conf, sizeof(conf),
             "%smax_connections = 20;\n"
             "listeners = ( {\n"
             "    name = \"loop\";\n"
             "    listen = [ \"*:%d\" ];\n"
             "    mode = \"proxy\";\n"
             "    upstreams = [ \"%s:%d\" ];\n"
             "    retries = 1;\n"
             "    connect_timeout = 1.0;\n"
             "}, {\n"
             "    name = \"echo\";\n"
             "    listen = [ \"*:%d\" ];\n"
             "    mode = \"echo\";\n"
             "}, {\n"
             "    name = \"chain\";\n"
             "    listen = [ \"127.0.0.1:0\" ];\n"
             "    mode = \"proxy\";\n"
             "    upstreams = [ \"%s:%d\" ];\n"
             "    retries = 0;\n"
             "} );\n",
             DAEMON_CONF("2", "5.0"), p, host, p, q, host, q);
    struct echod *e = echod_start(conf);
    int fd = client4(p);
    int cport = local_port(fd);
    assert_true(peer_reset_within(fd, 3000)); /* no upstream: an abort */
    close(fd);
    echod_must_log(e,
                   "listener loop: upstream %s:%d is this daemon's own listening "
                   "address ",
                   host, p);
    echod_must_log(e, ": not connecting (a loop)");
    check_access(e, "127.0.0.1", cport, " upstream=- in=0 out=0 ", "no-upstream");

    int chain = client4(echod_port(e, "chain", 0));
    cport = local_port(chain);
    expect_echo(chain, "through the chain and back");
    finish(chain);
    char expect[128];
    snprintf(expect, sizeof(expect), " upstream=%s:%d in=26 out=26 ", host, q);
    check_access(e, "127.0.0.1", cport, expect, "done");
    /* Nothing else was accepted by "loop", and the chain was never taken
     * for a loop. */
    sleep_ms(100);
    assert_int_equal(echod_count_log(e, "access listener=loop "), 1);
    assert_int_equal(echod_count_log(e, "listener chain: upstream"), 0);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/*
 * fail_timeout = 0 marks nothing, and the warning says so rather than
 * "skipped for 0.000 s"; upstream warnings the rate limit drops (10 a
 * second per worker) are counted in the next one written, like refusals:
 * every warning is either logged or counted.
 */
static void upstream_warnings_say_what_happens_and_what_was_dropped(void **state)
{
    (void)state;
    int bad = refusing_port();
    char conf[2048];
    snprintf(conf, sizeof(conf),
             "%slisteners = ( {\n"
             "    name = \"relay\";\n"
             "    listen = [ \"127.0.0.1:0\" ];\n"
             "    mode = \"proxy\";\n"
             "    upstreams = [ \"127.0.0.1:%d\" ];\n"
             "    retries = 0;\n"
             "    fail_timeout = 0;\n"
             "} );\n",
             DAEMON_CONF("1", "5.0"), bad);
    struct echod *e = echod_start(conf);
    int port = echod_port(e, "relay", 0);
    /* 13 clients, two warnings each ("failed", "no upstream reached"):
     * 12 at once, then one more a second later, in a new window. */
    const int clients = 13;
    int64_t t0 = ms_now(), burst = 0;
    for (int i = 0; i < clients; i++) {
        if (i == clients - 1) {
            burst = ms_now() - t0;
            int64_t wait = t0 + 1100 - ms_now();
            sleep_ms(wait > 0 ? (int)wait : 0);
        }
        int fd = client4(port);
        assert_true(peer_reset_within(fd, 3000)); /* no upstream: an abort */
        close(fd);
    }
    assert_true(echod_wait_count(e, "access listener=relay ", clients, LOG_MS));
    char failed[128];
    snprintf(failed, sizeof(failed), "upstream 127.0.0.1:%d failed: ", bad);
    const char *line = echod_must_log(e, "%s", failed);
    if (strstr(line, "not skipped (fail_timeout is 0)") == NULL)
        fail_msg("the warning does not say fail_timeout = 0 skips nothing: %s", line);
    assert_int_equal(echod_count_log(e, "skipped for 0.000 s"), 0);
    int logged = echod_count_log(e, failed) +
                 echod_count_log(e, "listener relay: no upstream reached for ");
    int dropped = 0;
    const char *note = " more upstream warnings, not logged)";
    for (int i = 0; (line = echod_log_line(e, note, i)) != NULL; i++) {
        const char *open = strrchr(line, '(');
        assert_non_null(open);
        dropped += atoi(open + 1);
    }
    print_message("    %d upstream warnings logged, %d counted as not logged\n", logged,
                  dropped);
    if (dropped == 0)
        fail_msg("no \"N more upstream warnings\" note (the first %d clients took "
                 "%lld ms)",
                 clients - 1, (long long)burst);
    assert_int_equal(logged + dropped, 2 * clients);
    assert_int_equal(echod_stop(e, 3000), 0);
}

static int setup_group(void **state)
{
    (void)state;
    if (setup_sigpipe_and_pattern(PATTERN_LEN, 20240601) != 0)
        return -1;
    pattern = pat(0);
    return 0;
}

static int teardown_group(void **state)
{
    (void)state;
    pattern_free();
    pattern = NULL;
    return 0;
}

#define TEST(f) cmocka_unit_test_teardown(f, teardown_all)

int main(void)
{
    /* ECHO_RELAY_TEST=glob runs only the tests it matches. */
    test_filter_from_env("ECHO_RELAY_TEST");
    const struct CMUnitTest tests[] = {
        TEST(echo_many_sizes_over_200_concurrent_connections),
        TEST(echo_half_close_returns_everything_then_eof),
        TEST(relay_is_byte_exact_both_ways),
        TEST(relay_client_half_close_reaches_upstream),
        TEST(relay_upstream_half_close_reaches_client),
        TEST(relay_holds_bulk_bytes_in_a_pipe_only_when_spliced),
        TEST(relay_pipes_stay_within_their_share_of_descriptors),
        TEST(echo_with_splice_returns_every_byte),
        TEST(balance_round_robin_spreads_evenly),
        TEST(balance_least_connections_avoids_busy_upstreams),
        TEST(balance_source_hash_is_stable_per_source),
        TEST(retry_next_upstream_when_one_refuses),
        TEST(no_upstream_when_every_upstream_refuses),
        TEST(failed_upstream_skipped_for_fail_timeout),
        TEST(connect_timeout_moves_on),
        TEST(idle_timeout_closes_only_silent_clients),
        TEST(sigterm_drains_open_connections),
        TEST(sigterm_closes_idle_connections_after_shutdown_timeout),
        TEST(echo_sends_urgent_data_back_in_place),
        TEST(relay_passes_urgent_data_on_spliced),
        TEST(relay_passes_urgent_data_on_copied),
        TEST(relay_passes_a_reset_on_as_a_reset),
        TEST(client_reset_while_connecting_ends_it_at_once),
        TEST(least_connections_counts_survive_reload),
        TEST(failed_marks_and_turns_survive_reload),
        TEST(round_robin_spreads_a_failed_share),
        TEST(weights_share_round_robin),
        TEST(backup_serves_only_when_no_primary_is_up),
        TEST(source_hash_moves_only_the_removed_share),
        TEST(relay_to_a_name_tries_each_of_its_addresses),
        TEST(relay_never_connects_to_its_own_listener),
        TEST(upstream_warnings_say_what_happens_and_what_was_dropped),
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
