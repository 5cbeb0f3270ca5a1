/*
 * Who mio-echod lets in, end to end on the real daemon over loopback:
 * allow/deny lists, the daemon's, a listener's and a source's connection
 * limits, PROXY protocol headers taken from clients and sent to upstreams,
 * backpressure against peers that never read, and the configuration
 * errors "mio-echod -t" reports.  Each test starts its own daemon with its
 * own configuration on ephemeral ports.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* Every daemon here logs to stderr, where the harness reads it, and gives
 * connections still open at SIGTERM little time. */
#define BASE "log = { target = \"stderr\"; };\nshutdown_timeout = 2.0;\n"

/* How long a test waits for something that should happen at once. */
#define WAIT_MS 3000

/* ---- helpers ----------------------------------------------------------- */

/* Whether ::1 can be bound here: the IPv6 tests are skipped otherwise. */
static bool have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/*
 * The daemon closed the connection without sending a byte: a probe sent
 * now (it may be reset already) is never echoed, and the connection ends
 * (EOF, or a reset since the daemon did not read what it got) within 3 s.
 */
static void expect_refused(int fd)
{
    (void)send(fd, "probe\n", 6, MSG_NOSIGNAL);
    int64_t deadline = ms_now() + WAIT_MS;
    for (;;) {
        int left = (int)(deadline - ms_now());
        if (left <= 0)
            fail_msg("a refused connection was still open after %d ms", WAIT_MS);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        assert_true(r >= 0);
        if (r == 0)
            continue; /* the deadline ends the loop */
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
            break;
        if (n > 0)
            fail_msg("a refused client got a byte back (0x%02x)", (unsigned char)c);
        if (errno != EAGAIN && errno != EINTR)
            fail_msg("recv on a refused connection: %s", strerror(errno));
    }
    close(fd);
}

/* expect_refused() for fd, and the daemon's line for it: "listener
 * LISTENER: refused FROM:PORT: REASON", PORT being fd's own. */
static void expect_refused_logged(struct echod *e, int fd, const char *listener,
                                  const char *from, const char *reason)
{
    int port = local_port(fd);
    expect_refused(fd);
    echod_must_log(e, "listener %s: refused %s:%d: %s", listener, from, port, reason);
}

/* Waits for the access line that starts with the formatted text (e.g.
 * "access listener=a client=127.0.0.1:4242 ") and checks that it ends
 * with reason=REASON. */
__attribute__((format(printf, 3, 4))) static void
expect_access(struct echod *e, const char *reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char needle[512];
    vsnprintf(needle, sizeof(needle), fmt, ap);
    va_end(ap);
    const char *line = echod_wait_log(e, needle, WAIT_MS);
    if (line == NULL) {
        const char *any = echod_wait_log(e, " access ", 0);
        fail_msg("no access line containing \"%s\" within %d ms (the first one: \"%s\")",
                 needle, WAIT_MS, any != NULL ? any : "none");
    }
    const char *r = strstr(line, " reason=");
    size_t n = strlen(reason);
    if (r == NULL || strncmp(r + 8, reason, n) != 0 ||
        (r[8 + n] != '\0' && r[8 + n] != '\n'))
        fail_msg("access line \"%s\": expected reason=%s", line, reason);
}

/* finish() for fd, a client from 127.0.0.1 of `listener`, and its access
 * line with reason=done. */
static void finish_done(struct echod *e, int fd, const char *listener)
{
    int port = local_port(fd);
    finish(fd);
    expect_access(e, "done", "access listener=%s client=127.0.0.1:%d ", listener, port);
}

/* Receives exactly len bytes and compares them with want. */
static void expect_bytes(int fd, const void *want, size_t len)
{
    uint8_t got[1024];
    assert_true(len <= sizeof(got));
    recv_exact(fd, got, len);
    assert_memory_equal(got, want, len);
}

/* ---- PROXY protocol headers, written out by hand ----------------------- */

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A v2 PROXY header for TCP into out: over IPv4 (28 bytes) or, with
 * family AF_INET6, over IPv6 (52 bytes); returns its length. */
static size_t v2_tcp(uint8_t *out, int family, const char *src, const char *dst,
                     uint16_t sport, uint16_t dport)
{
    size_t alen = family == AF_INET6 ? 16 : 4; /* one address */
    memcpy(out, v2_sig, 12);
    out[12] = 0x21;                             /* version 2, PROXY */
    out[13] = family == AF_INET6 ? 0x21 : 0x11; /* AF_INET6 or AF_INET, STREAM */
    out[14] = 0;
    out[15] = (uint8_t)(2 * alen + 4);
    assert_int_equal(inet_pton(family, src, out + 16), 1);
    assert_int_equal(inet_pton(family, dst, out + 16 + alen), 1);
    uint8_t *ports = out + 16 + 2 * alen;
    ports[0] = (uint8_t)(sport >> 8);
    ports[1] = (uint8_t)sport;
    ports[2] = (uint8_t)(dport >> 8);
    ports[3] = (uint8_t)dport;
    return 16 + 2 * alen + 4;
}

/* v2_tcp() over IPv4. */
static size_t v2_tcp4(uint8_t *out, const char *src, const char *dst, uint16_t sport,
                      uint16_t dport)
{
    return v2_tcp(out, AF_INET, src, dst, sport, dport);
}

/* A v2 LOCAL header without addresses (16 bytes) into out. */
static size_t v2_local(uint8_t *out)
{
    memcpy(out, v2_sig, 12);
    out[12] = 0x20; /* version 2, LOCAL */
    out[13] = 0x00;
    out[14] = 0;
    out[15] = 0;
    return 16;
}

/* Connects to port and sends hdr and payload in one send; returns the
 * client, its own port in *cport. */
static int proxied_send(int port, const void *hdr, size_t hlen, const char *payload,
                        int *cport)
{
    uint8_t buf[2048];
    size_t plen = strlen(payload);
    assert_true(hlen + plen <= sizeof(buf));
    memcpy(buf, hdr, hlen);
    memcpy(buf + hlen, payload, plen);
    int fd = client4(port);
    *cport = local_port(fd);
    send_all(fd, buf, hlen + plen);
    return fd;
}

/* proxied_send(), then expects the payload alone echoed back, then the
 * daemon's FIN after a half-close; returns the client's port. */
static int proxied_echo(int port, const void *hdr, size_t hlen, const char *payload)
{
    int cport;
    int fd = proxied_send(port, hdr, hlen, payload, &cport);
    expect_bytes(fd, payload, strlen(payload));
    finish(fd);
    return cport;
}

/* proxied_send(), then expects the connection closed without a byte back;
 * returns the client's port. */
static int proxied_refused(int port, const void *hdr, size_t hlen, const char *payload)
{
    int cport;
    int fd = proxied_send(port, hdr, hlen, payload, &cport);
    expect_refused(fd);
    return cport;
}

/* ---- allow and deny ---------------------------------------------------- */

/* allow = one host: only that source is served; the other is closed
 * without an echo and the refusal is logged with its address. */
static void test_allow_lets_only_listed_source(void **state)
{
    (void)state;
    struct echod *e = echod_start(
        BASE "workers = 1;\n"
             "listeners = ( { name = \"acl\"; listen = [ \"127.0.0.1:0\" ];\n"
             "  allow = [ \"127.0.0.2/32\" ]; } );\n");
    int port = echod_port(e, "acl", 0);

    int two = connect_from("127.0.0.2", port);
    expect_echo(two, "from .2, allowed\n");

    int one = connect_from("127.0.0.1", port);
    expect_refused_logged(e, one, "acl", "127.0.0.1", "denied by allow/deny");

    expect_echo(two, "still served\n");
    finish(two);
    echod_stop_ok(e);
}

/* deny wins over allow: a source in both lists is refused, and so is one
 * in deny only; another listener without lists serves the same source. */
static void test_deny_wins_over_allow(void **state)
{
    (void)state;
    struct echod *e = echod_start(
        BASE "workers = 1;\n"
             "listeners = ( { name = \"acl\"; listen = [ \"127.0.0.1:0\" ];\n"
             "  allow = [ \"127.0.0.1\" ]; deny = [ \"127.0.0.0/8\" ]; },\n"
             " { name = \"open\"; listen = [ \"127.0.0.1:0\" ]; } );\n");
    int port = echod_port(e, "acl", 0);

    int one = connect_from("127.0.0.1", port);
    int p1 = local_port(one);
    expect_refused(one);
    int two = connect_from("127.0.0.2", port);
    int p2 = local_port(two);
    expect_refused(two);
    echod_must_log(e, "listener acl: refused 127.0.0.1:%d: denied by allow/deny", p1);
    echod_must_log(e, "listener acl: refused 127.0.0.2:%d: denied by allow/deny", p2);

    int fd = connect_from("127.0.0.1", echod_port(e, "open", 0));
    expect_echo(fd, "the open listener serves 127.0.0.1\n");
    finish(fd);
    echod_stop_ok(e);
}

/* deny = [ "::1/128" ] refuses an IPv6 client; a listener without it
 * serves the same client. */
static void test_deny_ipv6(void **state)
{
    (void)state;
    if (!have_ipv6_loopback())
        skip();
    struct echod *e = echod_start(
        BASE "workers = 1;\n"
             "listeners = ( { name = \"v6\"; listen = [ \"[::1]:0\" ];\n"
             "  deny = [ \"::1/128\" ]; },\n"
             " { name = \"open6\"; listen = [ \"[::1]:0\" ]; } );\n");

    int fd = client6(echod_port(e, "v6", 0));
    expect_refused_logged(e, fd, "v6", "[::1]", "denied by allow/deny");

    fd = client6(echod_port(e, "open6", 0));
    expect_echo(fd, "served over IPv6\n");
    finish(fd);
    echod_stop_ok(e);
}

/* A range matches its own family only: on a listener bound to both
 * 127.0.0.1 and ::1, allow = [ "::1/128" ] serves the v6 client and
 * refuses the v4 one, and allow = [ "127.0.0.0/8" ] the other way round. */
static void test_acl_ranges_match_their_family(void **state)
{
    (void)state;
    if (!have_ipv6_loopback())
        skip();
    struct echod *e = echod_start(
        BASE
        "workers = 1;\n"
        "listeners = ( { name = \"only6\"; listen = [ \"127.0.0.1:0\", \"[::1]:0\" ];\n"
        "  allow = [ \"::1/128\" ]; },\n"
        " { name = \"only4\"; listen = [ \"127.0.0.1:0\", \"[::1]:0\" ];\n"
        "  allow = [ \"127.0.0.0/8\" ]; } );\n");

    int fd = client6(echod_port(e, "only6", 1));
    expect_echo(fd, "v6 client, v6 range\n");
    finish(fd);
    fd = client4(echod_port(e, "only6", 0));
    expect_refused_logged(e, fd, "only6", "127.0.0.1", "denied by allow/deny");

    fd = client4(echod_port(e, "only4", 0));
    expect_echo(fd, "v4 client, v4 range\n");
    finish(fd);
    fd = client6(echod_port(e, "only4", 1));
    expect_refused_logged(e, fd, "only4", "[::1]", "denied by allow/deny");
    echod_stop_ok(e);
}

/* ---- connection limits ------------------------------------------------- */

/* max_connections = 3 for the whole daemon: three clients held open (on
 * two listeners) are served, a fourth on either listener is closed at once
 * and logged, and once one of the three has gone a new client is served. */
static void test_max_connections_global(void **state)
{
    (void)state;
    struct echod *e = echod_start(
        BASE "workers = 1;\nmax_connections = 3;\n"
             "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; },\n"
             " { name = \"b\"; listen = [ \"127.0.0.1:0\" ]; } );\n");
    int pa = echod_port(e, "a", 0), pb = echod_port(e, "b", 0);

    int held[3] = {client4(pa), client4(pa), client4(pb)};
    for (int i = 0; i < 3; i++)
        expect_echo(held[i], "held open\n");

    int fd = client4(pa);
    expect_refused_logged(e, fd, "a", "127.0.0.1", "max_connections reached");
    fd = client4(pb);
    expect_refused_logged(e, fd, "b", "127.0.0.1", "max_connections reached");

    finish_done(e, held[0], "a");
    fd = client4(pb);
    expect_echo(fd, "a slot came free\n");
    for (int i = 1; i < 3; i++)
        expect_echo(held[i], "the others are still served\n");
    finish(fd);
    finish(held[1]);
    finish(held[2]);
    echod_stop_ok(e);
}

/* A listener's max_connections = 2 refuses its third client while another
 * listener of the same daemon serves three at once; a slot freed on the
 * first is taken again. */
static void test_max_connections_listener(void **state)
{
    (void)state;
    struct echod *e = echod_start(
        BASE
        "workers = 2;\n"
        "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; max_connections = 2; },\n"
        " { name = \"b\"; listen = [ \"127.0.0.1:0\" ]; } );\n");
    int pa = echod_port(e, "a", 0), pb = echod_port(e, "b", 0);

    int a[2] = {client4(pa), client4(pa)};
    for (int i = 0; i < 2; i++)
        expect_echo(a[i], "on a\n");
    int fd = client4(pa);
    expect_refused_logged(e, fd, "a", "127.0.0.1", "listener max_connections reached");

    int b[3] = {client4(pb), client4(pb), client4(pb)};
    for (int i = 0; i < 3; i++)
        expect_echo(b[i], "on b, unaffected\n");

    finish_done(e, a[0], "a");
    fd = client4(pa);
    expect_echo(fd, "a slot came free on a\n");
    finish(fd);
    finish(a[1]);
    for (int i = 0; i < 3; i++)
        finish(b[i]);
    echod_stop_ok(e);
}

/* max_per_source = 2: a third client from 127.0.0.1 is refused while one
 * from 127.0.0.2 is served; after one of the two leaves, 127.0.0.1 is
 * served again. */
static void test_max_per_source(void **state)
{
    (void)state;
    struct echod *e = echod_start(
        BASE
        "workers = 2;\n"
        "listeners = ( { name = \"ps\"; listen = [ \"127.0.0.1:0\" ]; max_per_source = 2; } );\n");
    int port = echod_port(e, "ps", 0);

    int one[2] = {connect_from("127.0.0.1", port), connect_from("127.0.0.1", port)};
    for (int i = 0; i < 2; i++)
        expect_echo(one[i], "from .1\n");
    int fd = connect_from("127.0.0.1", port);
    expect_refused_logged(e, fd, "ps", "127.0.0.1", "max_per_source reached");

    int two = connect_from("127.0.0.2", port);
    expect_echo(two, "from .2, another source\n");

    finish_done(e, one[0], "ps");
    fd = connect_from("127.0.0.1", port);
    expect_echo(fd, "from .1 again\n");
    finish(fd);
    finish(one[1]);
    finish(two);
    echod_stop_ok(e);
}

/* ---- PROXY protocol from clients --------------------------------------- */

#define PP_ECHO(extra)                                                                              \
    BASE                                                                                            \
        "workers = 1;\n"                                                                            \
        "listeners = ( { name = \"pp\"; listen = [ \"127.0.0.1:0\" ]; accept_proxy = true;\n" extra \
        " } );\n"

/* A v1 header and the payload in one send: the payload alone comes back,
 * and the access line names the declared client and counts the payload
 * only. */
static void test_proxy_v1_one_send(void **state)
{
    (void)state;
    struct echod *e = echod_start(PP_ECHO(""));
    int port = echod_port(e, "pp", 0);
    const char *hdr = "PROXY TCP4 192.0.2.1 192.0.2.2 5555 7007\r\n";
    const char *payload = "hello through a proxy\n";
    proxied_echo(port, hdr, strlen(hdr), payload);
    expect_access(e, "done",
                  "access listener=pp client=192.0.2.1:5555 upstream=- in=%zu out=%zu ",
                  strlen(payload), strlen(payload));

    /* Header, payload and FIN at once: all of the payload still comes
     * back before the daemon's FIN. */
    int fd = client4(port);
    const char *all = "PROXY TCP4 192.0.2.1 192.0.2.2 5570 7007\r\nand a FIN\n";
    send_all(fd, all, strlen(all));
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    expect_bytes(fd, "and a FIN\n", 10);
    assert_true(peer_closed_within(fd, WAIT_MS));
    close(fd);
    expect_access(e, "done",
                  "access listener=pp client=192.0.2.1:5570 upstream=- in=10 out=10 ");
    echod_stop_ok(e);
}

/* The length bounds: a v1 line of exactly 107 bytes (the specification's
 * longest) is accepted and one of 108 refused; a v2 header of exactly 1024
 * bytes (PROXY_MAX_HEADER, TLVs included) is accepted and one of 1025
 * refused.  The payload after an accepted one comes back alone. */
static void test_proxy_length_bounds(void **state)
{
    (void)state;
    struct echod *e = echod_start(PP_ECHO(""));
    int port = echod_port(e, "pp", 0);
    static uint8_t hdr[1100];

    for (size_t len = 107; len <= 108; len++) {
        memset(hdr, 'x', len);
        memcpy(hdr, "PROXY UNKNOWN ", 14);
        memcpy(hdr + len - 2, "\r\n", 2);
        if (len == 107) {
            proxied_echo(port, hdr, len, "after 107 bytes\n");
        } else {
            int cport = proxied_refused(port, hdr, len, "");
            echod_must_log(e, "listener pp: refused 127.0.0.1:%d: bad PROXY header",
                           cport);
        }
    }
    for (size_t total = 1024; total <= 1025; total++) {
        size_t n = v2_tcp4(hdr, "192.0.2.1", "192.0.2.2", (uint16_t)(5570 + total), 7007);
        size_t tlv = total - n - 3; /* one NOOP TLV fills the rest */
        memset(hdr + n, 0, total - n);
        hdr[n] = 0x04;
        hdr[n + 1] = (uint8_t)(tlv >> 8);
        hdr[n + 2] = (uint8_t)tlv;
        hdr[14] = (uint8_t)((total - 16) >> 8);
        hdr[15] = (uint8_t)(total - 16);
        if (total == 1024) {
            proxied_echo(port, hdr, total, "after 1024 bytes\n");
            expect_access(
                e, "done",
                "access listener=pp client=192.0.2.1:6594 upstream=- in=17 out=17 ");
        } else {
            int cport = proxied_refused(port, hdr, total, "");
            echod_must_log(e, "listener pp: refused 127.0.0.1:%d: bad PROXY header",
                           cport);
        }
    }
    echod_stop_ok(e);
}

/* The same header cut into pieces sent with pauses (inside the keyword,
 * an address and the CRLF), the payload in two sends after it. */
static void test_proxy_v1_split(void **state)
{
    (void)state;
    struct echod *e = echod_start(PP_ECHO(""));
    int fd = client4(echod_port(e, "pp", 0));
    static const char *const pieces[] = {"PRO", "XY TCP4 192.0.2", ".1 192.0.2.2 5556 70",
                                         "07\r", "\nfirst "};
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        send_all(fd, pieces[i], strlen(pieces[i]));
        sleep_ms(30);
    }
    send_all(fd, "second\n", 7);
    expect_bytes(fd, "first second\n", 13);
    finish(fd);
    expect_access(e, "done",
                  "access listener=pp client=192.0.2.1:5556 upstream=- in=13 out=13 ");
    echod_stop_ok(e);
}

/* v2 binary headers: TCP over IPv4 (also cut in three sends) and over
 * IPv6 give the declared client; the payload alone is echoed. */
static void test_proxy_v2_tcp(void **state)
{
    (void)state;
    struct echod *e = echod_start(PP_ECHO(""));
    int port = echod_port(e, "pp", 0);
    uint8_t hdr[64];

    size_t n = v2_tcp4(hdr, "192.0.2.1", "192.0.2.2", 5557, 7007);
    proxied_echo(port, hdr, n, "v2 over IPv4\n");
    expect_access(e, "done",
                  "access listener=pp client=192.0.2.1:5557 upstream=- in=13 out=13 ");

    n = v2_tcp4(hdr, "198.51.100.4", "192.0.2.2", 5558, 7007);
    int fd = client4(port);
    send_all(fd, hdr, 7); /* inside the signature */
    sleep_ms(30);
    send_all(fd, hdr + 7, 12); /* inside the address block */
    sleep_ms(30);
    send_all(fd, hdr + 19, n - 19);
    sleep_ms(30);
    expect_echo(fd, "v2 in pieces\n");
    finish(fd);
    expect_access(e, "done",
                  "access listener=pp client=198.51.100.4:5558 upstream=- in=13 out=13 ");

    n = v2_tcp(hdr, AF_INET6, "2001:db8::1", "2001:db8::2", 5559, 7007);
    proxied_echo(port, hdr, n, "v2 over IPv6\n");
    expect_access(
        e, "done",
        "access listener=pp client=[2001:db8::1]:5559 upstream=- in=13 out=13 ");
    echod_stop_ok(e);
}

/* v2 LOCAL (the proxy's own health check), with and without an address
 * block, and v1 UNKNOWN: the connection is served as the peer's own, and
 * TLVs after a v2 address block are skipped, not echoed. */
static void test_proxy_local_and_tlvs(void **state)
{
    (void)state;
    struct echod *e = echod_start(PP_ECHO(""));
    int port = echod_port(e, "pp", 0);
    uint8_t hdr[64];

    /* LOCAL, no addresses. */
    v2_local(hdr);
    int cport = proxied_echo(port, hdr, 16, "local\n");
    expect_access(e, "done",
                  "access listener=pp client=127.0.0.1:%d upstream=- in=6 out=6 ", cport);

    /* LOCAL with an address block, which is ignored. */
    v2_tcp4(hdr, "192.0.2.1", "192.0.2.2", 5560, 7007);
    hdr[12] = 0x20;
    cport = proxied_echo(port, hdr, 28, "local, block\n");
    expect_access(e, "done",
                  "access listener=pp client=127.0.0.1:%d upstream=- in=13 out=13 ",
                  cport);

    /* v1 UNKNOWN. */
    cport = proxied_echo(port, "PROXY UNKNOWN\r\n", 15, "unknown\n");
    expect_access(e, "done",
                  "access listener=pp client=127.0.0.1:%d upstream=- in=8 out=8 ", cport);

    /* A PROXY header with a 7-byte NOOP TLV after the addresses. */
    size_t n = v2_tcp4(hdr, "192.0.2.1", "192.0.2.2", 5561, 7007);
    hdr[15] = 12 + 7;
    memcpy(hdr + n,
           "\x04\x00\x04"
           "tlv!",
           7);
    proxied_echo(port, hdr, n + 7, "after the TLV\n");
    expect_access(e, "done",
                  "access listener=pp client=192.0.2.1:5561 upstream=- in=14 out=14 ");
    echod_stop_ok(e);
}

/* Malformed headers are refused at once: no echo, the connection closed,
 * "bad PROXY header" in the log and reason=bad-proxy-header. */
static void test_proxy_malformed(void **state)
{
    (void)state;
    struct echod *e = echod_start(PP_ECHO(""));
    int port = echod_port(e, "pp", 0);
    char longline[160];
    uint8_t v2[64];

    memset(longline, 'x', sizeof(longline));
    memcpy(longline, "PROXY UNKNOWN ", 14); /* no CRLF within 107 bytes */
    v2_tcp4(v2, "192.0.2.1", "192.0.2.2", 5562, 7007);
    v2[14] = 0x04; /* the length says 1036 bytes follow: past the bound */
    v2[15] = 0x0c;
#define TEXT(s)          \
    {                    \
        s, sizeof(s) - 1 \
    }
    struct {
        const void *bytes;
        size_t len;
    } cases[] = {
        TEXT("GET / HTTP/1.0\r\n\r\n"),
        TEXT("PROXY TCP4 bad\r\n"),
        TEXT("PROXY TCP4 192.0.2.1 192.0.2.2 5555 70000\r\n"),
        TEXT("PROXY TCP5 192.0.2.1 192.0.2.2 5555 7007\r\n"),
        {longline, sizeof(longline)},
        {v2, 28},
    };
#undef TEXT
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fd = client4(port);
        int cport = local_port(fd);
        send_all(fd, cases[i].bytes, cases[i].len);
        expect_refused(fd);
        echod_must_log(e, "listener pp: refused 127.0.0.1:%d: bad PROXY header", cport);
        expect_access(e, "bad-proxy-header", "access listener=pp client=127.0.0.1:%d ",
                      cport);
    }
    /* The listener still serves a well-formed one. */
    const char *hdr = "PROXY TCP4 192.0.2.1 192.0.2.2 5563 7007\r\n";
    proxied_echo(port, hdr, strlen(hdr), "well-formed\n");
    echod_stop_ok(e);
}

/* A header that never completes does not hold the connection forever:
 * the idle timeout closes it. */
static void test_proxy_header_stalled(void **state)
{
    (void)state;
    struct echod *e = echod_start(PP_ECHO("idle_timeout = 0.2;"));
    int fd = client4(echod_port(e, "pp", 0));
    int cport = local_port(fd);
    send_all(fd, "PROXY TCP4 192.0.2.1 ", 21);
    assert_true(peer_reset_within(fd, WAIT_MS)); /* an idle timeout aborts */
    close(fd);
    expect_access(e, "idle-timeout", "access listener=pp client=127.0.0.1:%d ", cport);
    echod_stop_ok(e);
}

/* deny applies to the declared source: 192.0.2.0/24 refuses a header
 * declaring 192.0.2.1 (and its v4-mapped IPv6 form, as addr.h documents)
 * while another declared source is served from the same peer. */
static void test_proxy_source_denied(void **state)
{
    (void)state;
    struct echod *e = echod_start(PP_ECHO("deny = [ \"192.0.2.0/24\" ];"));
    int port = echod_port(e, "pp", 0);

    const char *hdr = "PROXY TCP4 192.0.2.1 192.0.2.2 5564 7007\r\n";
    proxied_refused(port, hdr, strlen(hdr), "denied\n");
    echod_must_log(
        e, "listener pp: refused 192.0.2.1:5564: denied by allow/deny (PROXY source)");
    expect_access(e, "refused-after-proxy-header", "access listener=pp client=");

    hdr = "PROXY TCP6 ::ffff:192.0.2.9 ::1 5565 7007\r\n";
    proxied_refused(port, hdr, strlen(hdr), "denied too\n");
    echod_must_log(
        e,
        "listener pp: refused [::ffff:192.0.2.9]:5565: denied by allow/deny (PROXY source)");

    hdr = "PROXY TCP4 198.51.100.7 192.0.2.2 5566 7007\r\n";
    proxied_echo(port, hdr, strlen(hdr), "not denied\n");
    expect_access(e, "done",
                  "access listener=pp client=198.51.100.7:5566 upstream=- in=11 out=11 ");
    echod_stop_ok(e);
}

/* The access line of a connection refused after its header names the
 * client the header declared, as every other access line of an
 * accept_proxy listener does. */
static void test_proxy_refusal_access_line_names_declared_client(void **state)
{
    (void)state;
    struct echod *e = echod_start(PP_ECHO("deny = [ \"192.0.2.0/24\" ];"));
    const char *hdr = "PROXY TCP4 192.0.2.1 192.0.2.2 5567 7007\r\n";
    proxied_refused(echod_port(e, "pp", 0), hdr, strlen(hdr), "denied\n");
    expect_access(e, "refused-after-proxy-header",
                  "access listener=pp client=192.0.2.1:5567 upstream=- ");
    echod_stop_ok(e);
}

/* allow is checked twice: against the connecting peer at accept (a peer
 * outside it is refused whatever it declares) and against the declared
 * source. */
static void test_proxy_allow_checked_twice(void **state)
{
    (void)state;
    struct echod *e = echod_start(
        PP_ECHO("allow = [ \"127.0.0.1/32\", \"198.51.100.0/24\" ];"));
    int port = echod_port(e, "pp", 0);
    const char *ok = "PROXY TCP4 198.51.100.1 192.0.2.2 5568 7007\r\n";

    int fd = connect_from("127.0.0.2", port);
    int cport = local_port(fd);
    send_all(fd, ok, strlen(ok));
    expect_refused(fd);
    echod_must_log(e, "listener pp: refused 127.0.0.2:%d: denied by allow/deny", cport);

    proxied_echo(port, ok, strlen(ok), "allowed source\n");
    expect_access(e, "done", "access listener=pp client=198.51.100.1:5568 ");

    const char *bad = "PROXY TCP4 203.0.113.5 192.0.2.2 5569 7007\r\n";
    proxied_refused(port, bad, strlen(bad), "not in allow\n");
    echod_must_log(
        e, "listener pp: refused 203.0.113.5:5569: denied by allow/deny (PROXY source)");
    echod_stop_ok(e);
}

/* max_per_source counts the declared source, not the peer: two
 * connections declaring 192.0.2.1 are served, a third (also in its
 * v4-mapped form) is refused, one declaring 192.0.2.2 is served from the
 * same peer, and a freed slot is taken again. */
static void test_proxy_max_per_source(void **state)
{
    (void)state;
    struct echod *e = echod_start(PP_ECHO("max_per_source = 2;"));
    int port = echod_port(e, "pp", 0);
    char hdr[128];
    int held[3];

    for (int i = 0; i < 2; i++) {
        held[i] = client4(port);
        int n = snprintf(hdr, sizeof(hdr), "PROXY TCP4 192.0.2.1 192.0.2.2 %d 7007\r\n",
                         6000 + i);
        send_all(held[i], hdr, (size_t)n);
        expect_echo(held[i], "declared 192.0.2.1\n");
    }
    const char *third = "PROXY TCP4 192.0.2.1 192.0.2.2 6002 7007\r\n";
    proxied_refused(port, third, strlen(third), "third\n");
    echod_must_log(e, "listener pp: refused 192.0.2.1:6002: max_per_source reached");
    expect_access(e, "refused-after-proxy-header", "access listener=pp client=");
    const char *mapped = "PROXY TCP6 ::ffff:192.0.2.1 ::1 6003 7007\r\n";
    proxied_refused(port, mapped, strlen(mapped), "mapped\n");
    echod_must_log(
        e, "listener pp: refused [::ffff:192.0.2.1]:6003: max_per_source reached");

    held[2] = client4(port);
    const char *other = "PROXY TCP4 192.0.2.2 192.0.2.2 6004 7007\r\n";
    send_all(held[2], other, strlen(other));
    expect_echo(held[2], "declared 192.0.2.2, third from this peer\n");

    finish(held[0]);
    expect_access(e, "done", "access listener=pp client=192.0.2.1:6000 ");
    const char *again = "PROXY TCP4 192.0.2.1 192.0.2.2 6005 7007\r\n";
    proxied_echo(port, again, strlen(again), "a slot came free\n");
    finish(held[1]);
    finish(held[2]);
    echod_stop_ok(e);
}

/* ---- PROXY protocol to upstreams --------------------------------------- */

/* A client of the relay on port (IPv6 with v6) sends len bytes of msg;
 * the relay's connection to the test upstream listening on lfd is
 * accepted into *ufd.  Returns the client, its own port in *cport. */
static int relay_client(int port, bool v6, const void *msg, size_t len, int lfd, int *ufd,
                        int *cport)
{
    int fd = v6 ? client6(port) : client4(port);
    *cport = local_port(fd);
    send_all(fd, msg, len);
    *ufd = upstream_accept(lfd);
    return fd;
}

/* The upstream's first bytes must be the send_proxy header of `version`
 * (1 or 2) for the loopback client from cport to the listener on port,
 * over IPv4 or (v6) IPv6. */
static void expect_header_for(int ufd, int version, bool v6, int cport, int port)
{
    if (version == 1) {
        char want[128];
        int n = snprintf(want, sizeof(want), "PROXY TCP%c %s %s %d %d\r\n",
                         v6 ? '6' : '4', v6 ? "::1" : "127.0.0.1",
                         v6 ? "::1" : "127.0.0.1", cport, port);
        expect_bytes(ufd, want, (size_t)n);
    } else {
        uint8_t want[52];
        const char *lo = v6 ? "::1" : "127.0.0.1";
        size_t n = v2_tcp(want, v6 ? AF_INET6 : AF_INET, lo, lo, (uint16_t)cport,
                          (uint16_t)port);
        expect_bytes(ufd, want, n);
    }
}

/* The end of a relayed connection: the client half-closes (unless it has),
 * the upstream sees the FIN, answers `reply` (unless NULL) and closes;
 * the client gets the reply, then EOF. */
static void relay_end(int fd, int ufd, bool half_closed, const char *reply)
{
    if (!half_closed)
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
    assert_true(peer_closed_within(ufd, WAIT_MS));
    if (reply != NULL)
        send_all(ufd, reply, strlen(reply));
    close(ufd);
    if (reply != NULL)
        expect_bytes(fd, reply, strlen(reply));
    assert_true(peer_closed_within(fd, WAIT_MS));
    close(fd);
}

/*
 * One relayed connection: the client sends `payload` (after `client_hdr`,
 * if any), and its FIN at once when `early_fin`; the upstream must receive
 * exactly want[0..wlen) and then the payload, and EOF after the client's
 * half-close; its reply reaches the client, then EOF.
 */
static void relay_expect_header(int port, int ufd_listen, const void *client_hdr,
                                size_t chlen, const void *want, size_t wlen,
                                const char *payload, bool early_fin)
{
    uint8_t buf[1024];
    size_t plen = strlen(payload);
    int fd = client4(port);
    memcpy(buf, client_hdr, chlen);
    memcpy(buf + chlen, payload, plen);
    send_all(fd, buf, chlen + plen);
    if (early_fin)
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
    int ufd = upstream_accept(ufd_listen);
    expect_bytes(ufd, want, wlen);
    expect_bytes(ufd, payload, plen);
    relay_end(fd, ufd, early_fin, "reply\n");
}

/* Two relays, listening on `listen`, to a test upstream (listening on
 * *lfd, on port *up): "v1" and "v2", named for their send_proxy, each with
 * the settings `extra`. */
static struct echod *start_v1_v2_relays(const char *listen, const char *extra, int *lfd,
                                        int *up)
{
    *lfd = listen_loopback(16, up);
    return echod_startf(
        BASE
        "workers = 1;\nlisteners = (\n"
        "  { name = \"v1\"; listen = [ \"%s\" ]; mode = \"proxy\";\n"
        "    upstreams = [ \"127.0.0.1:%d\" ]; retries = 0; send_proxy = \"v1\"; %s },\n"
        "  { name = \"v2\"; listen = [ \"%s\" ]; mode = \"proxy\";\n"
        "    upstreams = [ \"127.0.0.1:%d\" ]; retries = 0; send_proxy = \"v2\"; %s }\n"
        ");\n",
        listen, *up, extra, listen, *up, extra);
}

/* send_proxy = "v1" and "v2": the upstream reads first exactly the header
 * for the client's and the listener's addresses, then the payload. */
static void test_send_proxy(void **state)
{
    (void)state;
    int lfd, up;
    struct echod *e = start_v1_v2_relays("127.0.0.1:0", "", &lfd, &up);

    int port = echod_port(e, "v1", 0), cport, ufd;
    int fd = relay_client(port, false, "payload one\n", 12, lfd, &ufd, &cport);
    expect_header_for(ufd, 1, false, cport, port);
    expect_bytes(ufd, "payload one\n", 12);
    relay_end(fd, ufd, false, "reply\n");
    expect_access(
        e, "done",
        "access listener=v1 client=127.0.0.1:%d upstream=127.0.0.1:%d in=12 out=6 ",
        cport, up);

    port = echod_port(e, "v2", 0);
    fd = relay_client(port, false, "payload two\n", 12, lfd, &ufd, &cport);
    expect_header_for(ufd, 2, false, cport, port);
    expect_bytes(ufd, "payload two\n", 12);
    relay_end(fd, ufd, false, NULL);
    close(lfd);
    echod_stop_ok(e);
}

/* With accept_proxy, a connection counts against its peer's max_per_source
 * until its header is complete, and the whole header must come within
 * proxy_timeout however it trickles in: of 20 connections from one address
 * that trickle a header (a byte every 250 ms, under idle_timeout = 1),
 * 2 are let in and closed at proxy_timeout (1.5 s); the others are refused
 * at once. */
static void test_proxy_header_deadline_and_peer_count(void **state)
{
    (void)state;
    struct echod *e = echod_start(PP_ECHO("idle_timeout = 1.0; max_per_source = 2;\n"
                                          "proxy_timeout = 1.5;"));
    int port = echod_port(e, "pp", 0);
    enum { N = 20 };
    int fds[N];
    bool open_[N];
    int64_t t0 = ms_now();
    for (int i = 0; i < N; i++) {
        fds[i] = client4(port);
        open_[i] = true;
    }
    const char *hdr = "PROXY TCP4 192.0.2.1 192.0.2.2 5555 7007\r\n";
    int64_t closed_at[N];
    int refused = 0, trickled_out = 0;
    for (int tick = 0; tick < 20 && ms_now() - t0 < 4000; tick++) {
        for (int i = 0; i < N; i++) {
            if (!open_[i])
                continue;
            char c;
            ssize_t n = recv(fds[i], &c, 1, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN)) {
                open_[i] = false;
                closed_at[i] = ms_now() - t0;
                if (closed_at[i] < 1000)
                    refused++;
                else
                    trickled_out++;
                continue;
            }
            assert_true(n < 0); /* nothing is ever echoed */
            (void)send(fds[i], hdr + tick, 1, MSG_NOSIGNAL);
        }
        sleep_ms(250);
    }
    for (int i = 0; i < N; i++)
        close(fds[i]);
    print_message("    %d refused at once, %d closed at proxy_timeout\n", refused,
                  trickled_out);
    assert_int_equal(refused, N - 2);
    assert_int_equal(trickled_out, 2);
    for (int i = 0; i < N; i++)
        if (closed_at[i] >= 1000)
            assert_true(closed_at[i] >= 1500 - 2 && closed_at[i] < 3000);
    echod_must_log(e, "listener pp: refused 127.0.0.1:");
    echod_must_log(e, "max_per_source reached");
    echod_must_log(e, "bad PROXY header: not complete within 1.500 s");
    expect_access(e, "proxy-header-timeout", "access listener=pp client=127.0.0.1:");
    echod_stop_ok(e);
}

/* accept_proxy with send_proxy at the smallest buffer_size (1024): a v2
 * LOCAL header and 992 bytes in one write reach the upstream behind the
 * outgoing header, whole, with v1 and with v2. */
static void test_proxy_in_and_out_at_the_smallest_buffer(void **state)
{
    (void)state;
    int lfd, up;
    struct echod *e = start_v1_v2_relays("127.0.0.1:0",
                                         "accept_proxy = true; buffer_size = 1024;", &lfd,
                                         &up);
    uint8_t msg[16 + 992], payload[992];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)('a' + i % 26);
    memcpy(msg + v2_local(msg), payload, sizeof(payload));
    for (int v = 1; v <= 2; v++) {
        int port = echod_port(e, v == 1 ? "v1" : "v2", 0), cport, ufd;
        int fd = relay_client(port, false, msg, sizeof(msg), lfd, &ufd, &cport);
        expect_header_for(ufd, v, false, cport, port);
        expect_bytes(ufd, payload, sizeof(payload));
        relay_end(fd, ufd, false, NULL);
        expect_access(
            e, "done",
            "access listener=v%d client=127.0.0.1:%d upstream=127.0.0.1:%d in=992 out=0 ",
            v, cport, up);
    }
    close(lfd);
    echod_stop_ok(e);
}

/* accept_proxy with send_proxy: the addresses a client's header declares
 * are passed on, translated between versions; after a LOCAL header the
 * connection's own addresses are sent. */
static void test_proxy_passed_on(void **state)
{
    (void)state;
    int lfd, up;
    struct echod *e = start_v1_v2_relays("127.0.0.1:0", "accept_proxy = true;", &lfd,
                                         &up);
    int p1 = echod_port(e, "v1", 0), p2 = echod_port(e, "v2", 0);
    uint8_t hdr[64], want[64];

    const char *v1 = "PROXY TCP4 192.0.2.1 192.0.2.2 5555 7007\r\n";
    relay_expect_header(p1, lfd, v1, strlen(v1), v1, strlen(v1), "v1 to v1\n", false);
    expect_access(
        e, "done",
        "access listener=v1 client=192.0.2.1:5555 upstream=127.0.0.1:%d in=9 out=6 ", up);

    size_t n = v2_tcp(hdr, AF_INET6, "2001:db8::1", "2001:db8::2", 5556, 7007);
    const char *v1_6 = "PROXY TCP6 2001:db8::1 2001:db8::2 5556 7007\r\n";
    relay_expect_header(p1, lfd, hdr, n, v1_6, strlen(v1_6), "v2 to v1\n", true);

    size_t wn = v2_tcp4(want, "192.0.2.1", "192.0.2.2", 5557, 7007);
    const char *v1b = "PROXY TCP4 192.0.2.1 192.0.2.2 5557 7007\r\n";
    relay_expect_header(p2, lfd, v1b, strlen(v1b), want, wn, "v1 to v2\n", true);

    /* LOCAL: the upstream learns the real client and listener. */
    v2_local(hdr);
    memcpy(hdr + 16, "local\n", 6);
    int cport, ufd;
    int fd = relay_client(p1, false, hdr, 22, lfd, &ufd, &cport);
    expect_header_for(ufd, 1, false, cport, p1);
    expect_bytes(ufd, "local\n", 6);
    close(fd);
    close(ufd);
    close(lfd);
    echod_stop_ok(e);
}

/* send_proxy for an IPv6 client on an IPv6 listener: "PROXY TCP6" with
 * both addresses, and the 52-byte v2 form. */
static void test_send_proxy_ipv6(void **state)
{
    (void)state;
    if (!have_ipv6_loopback())
        skip();
    int lfd, up;
    struct echod *e = start_v1_v2_relays("[::1]:0", "", &lfd, &up);
    for (int v = 1; v <= 2; v++) {
        int port = echod_port(e, v == 1 ? "v1" : "v2", 0), cport, ufd;
        int fd = relay_client(port, true, "six\n", 4, lfd, &ufd, &cport);
        expect_header_for(ufd, v, true, cport, port);
        expect_bytes(ufd, "six\n", 4);
        close(fd);
        close(ufd);
    }
    close(lfd);
    echod_stop_ok(e);
}

/* The address of listener `name`'s Unix socket, from its listening line. */
static struct sockaddr_un unix_listen_addr(struct echod *e, const char *name)
{
    const char *line = echod_must_log(e, "listener %s: listening on unix:", name);
    const char *path = strstr(line, "listening on unix:") + strlen("listening on unix:");
    const char *end = strstr(path, " (");
    assert_non_null(end);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    assert_true((size_t)(end - path) < sizeof(a.sun_path));
    memcpy(a.sun_path, path, (size_t)(end - path));
    return a;
}

/* Unix-socket clients have no address: allow/deny do not apply to them
 * (file permissions guard the socket), while the same listener's TCP
 * address refuses everyone. */
static void test_acl_not_applied_to_unix_clients(void **state)
{
    (void)state;
    struct echod *e = echod_start(
        BASE
        "workers = 1;\n"
        "listeners = ( { name = \"u\"; listen = [ \"127.0.0.1:0\", \"unix:@DIR@/echo.sock\" ];\n"
        "  deny = [ \"0.0.0.0/0\", \"::/0\" ]; } );\n");
    int fd = client4(echod_port(e, "u", 0));
    expect_refused_logged(e, fd, "u", "127.0.0.1", "denied by allow/deny");

    struct sockaddr_un a = unix_listen_addr(e, "u");
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    set_timeouts(fd);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        fail_msg("connect to %s: %s", a.sun_path, strerror(errno));
    expect_echo(fd, "over a Unix socket\n");
    finish(fd);
    echod_stop_ok(e);
}

/* No line of the log starts with `text` after the "mio-echod: LEVEL: "
 * prefix, and none holds a byte below 0x20 (an ESC, a newline). */
static void expect_no_forged_line(struct echod *e, const char *text)
{
    for (int n = 0;; n++) {
        const char *line = echod_log_line(e, "", n);
        if (line == NULL)
            break;
        const char *body = strstr(line, ": ");
        body = body != NULL ? strstr(body + 2, ": ") : NULL;
        if (body != NULL && strncmp(body + 2, text, strlen(text)) == 0)
            fail_msg("a forged line: %s", line);
        for (const char *c = line; *c != '\0'; c++)
            if ((unsigned char)*c < 0x20)
                fail_msg("a control byte 0x%02x in: %s", (unsigned char)*c, line);
    }
}

/* Addresses that did not come from the configuration are escaped in the
 * log: a Unix client bound to a path with a newline, a space and an ESC,
 * and a PROXY v2 header declaring such a path, cannot write a line of
 * their own, a field of their own, or reach a terminal. */
static void test_log_lines_cannot_be_forged(void **state)
{
    (void)state;
    struct echod *e = echod_start(
        BASE
        "workers = 1;\n"
        "listeners = ( { name = \"u\"; listen = [ \"unix:@DIR@/echo.sock\" ]; },\n"
        "  { name = \"pp\"; listen = [ \"127.0.0.1:0\" ]; accept_proxy = true; } );\n");
    struct sockaddr_un a = unix_listen_addr(e, "u");
    char dir[] = "/tmp/mio-forge-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct sockaddr_un me = {.sun_family = AF_UNIX};
    snprintf(me.sun_path, sizeof(me.sun_path),
             "%s/x\nmio-echod: notice: forged\x1b[2J upstream=evil", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    set_timeouts(fd);
    assert_int_equal(bind(fd, (struct sockaddr *)&me, sizeof(me)), 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        fail_msg("connect to %s: %s", a.sun_path, strerror(errno));
    expect_echo(fd, "from a bound path\n");
    finish(fd);
    char want[256];
    snprintf(want, sizeof(want),
             "access listener=u client=unix:%s/x\\x0amio-echod:\\x20notice:"
             "\\x20forged\\x1b[2J\\x20upstream=evil upstream=- in=18 out=18 ",
             dir);
    expect_access(e, "done", "%s", want);
    unlink(me.sun_path);
    rmdir(dir);

    /* A PROXY v2 header declaring Unix paths (AF_UNIX, STREAM). */
    uint8_t hdr[16 + 216 + 8];
    memset(hdr, 0, sizeof(hdr));
    memcpy(hdr, v2_sig, 12);
    hdr[12] = 0x21;
    hdr[13] = 0x31;
    hdr[14] = 0;
    hdr[15] = 216;
    memcpy(hdr + 16, "/p\nmio-echod: error: forged too", 31);
    memcpy(hdr + 16 + 108, "/dst", 4);
    memcpy(hdr + 16 + 216, "proxied\n", 8);
    fd = client4(echod_port(e, "pp", 0));
    send_all(fd, hdr, sizeof(hdr));
    char back[8];
    recv_exact(fd, back, sizeof(back));
    assert_memory_equal(back, "proxied\n", 8);
    finish(fd);
    expect_access(e, "done",
                  "access listener=pp client=unix:/p\\x0amio-echod:\\x20error:"
                  "\\x20forged\\x20too upstream=- in=8 out=8 ");
    expect_no_forged_line(e, "forged");
    echod_stop_ok(e);
}

/* Without -f, errors before the daemon has started also go to standard
 * error, whether or not syslog listens: a port in use, a missing pid file
 * directory (exit 3 both). */
static void test_startup_errors_reach_stderr_without_f(void **state)
{
    (void)state;
    int port;
    int lfd = listen_loopback(16, &port);
    char conf[512], out[4096], want[128];
    snprintf(conf, sizeof(conf),
             "workers = 1;\n"
             "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             port);
    int rc = echod_run(out, sizeof(out), "-c", write_conf(conf), (char *)NULL);
    close(lfd);
    snprintf(want, sizeof(want),
             "mio-echod: error: listener a: cannot listen on 127.0.0.1:%d: "
             "Address already in use",
             port);
    if (rc != 3 || strstr(out, want) == NULL)
        fail_msg("exit %d, expected 3 and \"%s\": \"%s\"", rc, want, out);

    const char *text =
        "workers = 1;\npidfile = \"/nonexistent/mio-echod/echod.pid\";\n"
        "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; } );\n";
    rc = echod_run(out, sizeof(out), "-c", write_conf(text), (char *)NULL);
    if (rc != 3 ||
        strstr(out, "mio-echod: error: pidfile \"/nonexistent/mio-echod/echod.pid\": "
                    "No such file or directory") == NULL)
        fail_msg("exit %d, expected 3 and the pid file's error: \"%s\"", rc, out);
}

/* How many clients a refusal line accounts for: itself and the "(N more
 * refused, not logged)" it carries. */
static int accounted_by(const char *line)
{
    const char *more = strstr(line, " more refused, not logged)");
    if (more == NULL)
        return 1;
    while (more > line && more[-1] >= '0' && more[-1] <= '9')
        more--;
    return 1 + atoi(more);
}

/*
 * Refusal lines are rate-limited, and every refusal is still accounted
 * for: the lines logged, each with the "(N more refused, not logged)" it
 * carries, add up to the clients refused; the first line after the
 * limit's second says how many went unlogged.  With `bad_header`, a
 * malformed PROXY header (its line is rate-limited too) is refused and
 * logged in between.
 */
static void refusal_accounting(bool bad_header)
{
    enum { BURST = 25, MAX = BURST + 20 };
    struct echod *e = echod_start(
        BASE "workers = 1;\n"
             "listeners = ( { name = \"rl\"; listen = [ \"127.0.0.1:0\" ];\n"
             "  deny = [ \"127.0.0.2\" ]; accept_proxy = true; } );\n");
    int port = echod_port(e, "rl", 0);
    int denied[MAX], ndenied = 0;
    int64_t first = ms_now();
    for (int i = 0; i < BURST; i++) {
        int fd = connect_from("127.0.0.2", port);
        denied[ndenied++] = local_port(fd);
        expect_refused(fd);
    }
    /* Once the limit's second is over (it starts at the daemon's first
     * refusal, a little after `first`), one more of each kind is logged:
     * refuse them, 100 ms apart, until it is. */
    int64_t wait = first + 1000 - ms_now();
    if (wait > 0)
        sleep_ms((int)wait);
    int bad[MAX], nbad = 0;
    for (bool logged = !bad_header; !logged;) {
        if (nbad == MAX)
            fail_msg("no bad PROXY header line within %d tries", MAX);
        int fd = client4(port);
        bad[nbad++] = local_port(fd);
        send_all(fd, "GET / HTTP/1.0\r\n\r\n", 18);
        expect_refused(fd);
        char needle[96];
        snprintf(needle, sizeof(needle), "refused 127.0.0.1:%d: bad PROXY header",
                 bad[nbad - 1]);
        logged = echod_wait_log(e, needle, 100) != NULL;
    }
    for (bool logged = false; !logged;) {
        if (ndenied == MAX)
            fail_msg("no refusal line within %d tries", MAX - BURST);
        int fd = connect_from("127.0.0.2", port);
        denied[ndenied++] = local_port(fd);
        expect_refused(fd);
        char needle[96];
        snprintf(needle, sizeof(needle), "refused 127.0.0.2:%d: ", denied[ndenied - 1]);
        logged = echod_wait_log(e, needle, 100) != NULL;
    }

    /* One worker writes the lines in order: all are in by now. */
    /* Every refusal line counts itself and the ones it says went unlogged
     * (lines are read in order, not by client port: a port may recur). */
    int lines = echod_count_log(e, "listener rl: refused "), accounted = 0;
    for (int i = 0; i < lines; i++)
        accounted += accounted_by(echod_log_line(e, "listener rl: refused ", i));
    print_message("%d refusals, %d lines, %d accounted for\n", ndenied + nbad, lines,
                  accounted);
    assert_true(lines < ndenied + nbad);
    if (accounted != ndenied + nbad)
        fail_msg("%d clients were refused, but the log's lines and their \"N more "
                 "refused\" account for %d",
                 ndenied + nbad, accounted);
    echod_stop_ok(e);
}

static void test_refusal_log_rate_limited(void **state)
{
    (void)state;
    refusal_accounting(false);
}

static void test_refusal_log_accounting_across_bad_header(void **state)
{
    (void)state;
    refusal_accounting(true);
}

/* ---- peers that never read --------------------------------------------- */

/* The stream every slow-reader test sends: a random block repeated with a
 * prime period, so that a lost, doubled or reordered chunk shows. */
#define PERIOD 65521u

/*
 * Sends the pattern stream on fd until its sends stall (the daemon stopped
 * reading it: backpressure; 2 s at most), then half-closes; the daemon's
 * RSS must have grown by less than 2 MiB meanwhile.  Returns the bytes
 * sent; `what` names the case in the figures printed.
 */
static uint64_t send_until_backpressure(struct echod *e, int fd, const char *what)
{
    long rss0 = echod_rss_kib(e);
    assert_true(rss0 > 0);
    uint64_t sent = 0;
    bool stalled = send_until_stalled(fd, 0, &sent, 2000);
    long rss1 = echod_rss_kib(e);
    print_message("%s: %llu bytes sent before the sends stalled; RSS %ld -> %ld KiB\n",
                  what, (unsigned long long)sent, rss0, rss1);
    if (!stalled)
        fail_msg("the client's sends never stalled (%llu bytes taken)",
                 (unsigned long long)sent);
    assert_true(rss1 - rss0 < 2048);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    return sent;
}

/* Receives exactly `total` bytes of the pattern stream, then EOF. */
static void recv_pattern(int fd, uint64_t total)
{
    static uint8_t buf[PERIOD]; /* so that buf fits pattern from any offset */
    uint64_t got = 0;
    int64_t deadline = ms_now() + 10000;
    while (got < total) {
        if (ms_now() > deadline)
            fail_msg("only %llu of %llu bytes in 10 s", (unsigned long long)got,
                     (unsigned long long)total);
        size_t want = total - got < sizeof(buf) ? (size_t)(total - got) : sizeof(buf);
        ssize_t n = recv(fd, buf, want, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail_msg("the stream ended after %llu of %llu bytes (%s)",
                     (unsigned long long)got, (unsigned long long)total,
                     n == 0 ? "EOF" : strerror(errno));
        if (memcmp(buf, pat(got), (size_t)n) != 0)
            fail_msg("the stream differs within bytes %llu-%llu", (unsigned long long)got,
                     (unsigned long long)got + (unsigned long long)n);
        got += (uint64_t)n;
    }
    assert_true(peer_closed_within(fd, WAIT_MS));
}

/* An echo client that sends and never reads: the daemon stops reading it
 * (the client's sends block) instead of buffering, its memory stays flat,
 * and every byte comes back in order once the client reads. */
static void test_slow_reader_echo(void **state)
{
    (void)state;
    assert_true(pattern_init(PERIOD, 7));
    struct echod *e = echod_start(
        BASE
        "workers = 1;\n"
        "listeners = ( { name = \"e\"; listen = [ \"127.0.0.1:0\" ]; buffer_size = 16384; } );\n");
    int fd = client4(echod_port(e, "e", 0));
    expect_echo(fd, "warm up\n");
    uint64_t sent = send_until_backpressure(e, fd, "echo");
    recv_pattern(fd, sent);
    close(fd);
    echod_stop_ok(e);
}

/* The same through a relay whose upstream never reads: the client's sends
 * block, the daemon's memory stays flat, and once the upstream reads it
 * gets the whole stream in order. */
static void test_slow_reader_relay(void **state)
{
    (void)state;
    assert_true(pattern_init(PERIOD, 7));
    int up;
    int lfd = listen_loopback(16, &up);
    char conf[1024];
    snprintf(
        conf, sizeof(conf),
        BASE
        "workers = 1;\n"
        "listeners = ( { name = \"r\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "  buffer_size = 16384; upstreams = [ \"127.0.0.1:%d\" ]; retries = 0; } );\n",
        up);
    struct echod *e = echod_start(conf);
    int fd = client4(echod_port(e, "r", 0));
    int ufd = upstream_accept(lfd);
    send_all(fd, "warm up\n", 8);
    expect_bytes(ufd, "warm up\n", 8);
    uint64_t sent = send_until_backpressure(e, fd, "relay");
    recv_pattern(ufd, sent);
    close(ufd);
    assert_true(peer_closed_within(fd, WAIT_MS));
    close(fd);
    close(lfd);
    echod_stop_ok(e);
}

/* ---- configuration errors ---------------------------------------------- */

/* The README's way to try the daemon without nc, on a fresh Debian where
 * there is none: its bash line (the port made ours) gets "hello" back; and
 * the README says which package gives nc. */
static void test_readme_try_it_works(void **state)
{
    (void)state;
    const char *top = getenv("top_srcdir");
    char path[4096], line[512] = "", cmd[1024];
    snprintf(path, sizeof(path), "%s/README.md", top != NULL ? top : ".");
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot read %s: %s", path, strerror(errno));
    bool names_package = false;
    char buf[512];
    while (fgets(buf, sizeof(buf), f) != NULL) {
        if (strncmp(buf, "bash -c 'exec 3<>/dev/tcp/127.0.0.1/7007;", 41) == 0)
            snprintf(line, sizeof(line), "%s", buf);
        names_package |= strstr(buf, "netcat-openbsd") != NULL;
    }
    fclose(f);
    assert_true(names_package);
    if (line[0] == '\0')
        fail_msg("%s shows no \"bash -c 'exec 3<>/dev/tcp/127.0.0.1/7007; ...'\" line",
                 path);
    struct echod *e = echod_start(
        BASE "workers = 1;\n"
             "listeners = ( { name = \"e\"; listen = [ \"127.0.0.1:0\" ]; } );\n");
    char *at = strstr(line, "/7007;");
    assert_non_null(at);
    *at = '\0';
    line[strcspn(at + 1, "\n") + (size_t)(at + 1 - line)] = '\0';
    snprintf(cmd, sizeof(cmd), "timeout 5 %s/%d;%s", line, echod_port(e, "e", 0), at + 6);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char got[64] = "";
    if (fgets(got, sizeof(got), p) == NULL)
        got[0] = '\0';
    int rc = pclose(p);
    if (rc != 0 || strcmp(got, "hello\n") != 0)
        fail_msg("%s: exit %d, printed \"%s\"", cmd, rc, got);
    echod_stop_ok(e);
}

/* "mio-echod -t" accepts a valid file using most settings, and the shipped
 * conf/mio-echod.conf. */
static void test_config_check_ok(void **state)
{
    (void)state;
    char out[4096];
    const char *path = write_conf(
        "workers = 2;\nmax_connections = 100;\nshutdown_timeout = 1.5;\n"
        "log = { target = \"stderr\"; level = \"debug\"; access = false; };\n"
        "listeners = (\n"
        "  { name = \"e\"; listen = [ \"127.0.0.1:0\", \"[::1]:0\" ]; buffer_size = 4096;\n"
        "    idle_timeout = 30; max_connections = 10; max_per_source = 2;\n"
        "    allow = [ \"127.0.0.0/8\", \"::1\" ]; deny = [ \"127.0.0.9\" ]; accept_proxy = true; },\n"
        "  { name = \"r\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "    upstreams = [ \"127.0.0.1:9\", \"[::1]:9\" ]; balance = \"source-hash\";\n"
        "    connect_timeout = 0.5; retries = 1; fail_timeout = 2; send_proxy = \"v2\"; }\n"
        ");\n");
    assert_int_equal(echod_run(out, sizeof(out), "-t", "-c", path, (char *)NULL), 0);
    if (strstr(out, "configuration OK") == NULL)
        fail_msg("mio-echod -t said \"%s\"", out);

    const char *top = getenv("top_srcdir");
    char shipped[4096];
    snprintf(shipped, sizeof(shipped), "%s/conf/mio-echod.conf", top != NULL ? top : ".");
    assert_int_equal(echod_run(out, sizeof(out), "-t", "-c", shipped, (char *)NULL), 0);
    if (strstr(out, "configuration OK") == NULL)
        fail_msg("mio-echod -t %s said \"%s\"", shipped, out);
}

/* Each mistake makes "mio-echod -t" exit 1 with a message that starts at
 * FILE:LINE of the mistake and says what is wrong. */
static void test_config_errors(void **state)
{
    (void)state;
    static const struct conf_error cases[] = {
        {"syntax error",
         "workers = 1;\nmax_connections = = 3;\n"
         "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; } );\n",
         2, "syntax error"},
        {"unknown key",
         "workers = 1;\nlisteners = ( { name = \"a\";\n"
         "  listen = [ \"127.0.0.1:0\" ];\n  max_conections = 3; } );\n",
         4, "max_conections: unknown setting"},
        {"unknown top-level key",
         "workers = 1;\n\nlisten = [ \"127.0.0.1:0\" ];\n"
         "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; } );\n",
         3, "listen: unknown setting"},
        {"wrong type",
         "workers = 1;\nlisteners = ( { name = \"a\";\n"
         "  listen = [ \"127.0.0.1:0\" ];\n  max_connections = \"3\"; } );\n",
         4, "max_connections: expected an integer"},
        {"wrong type for a list",
         "listeners = ( { name = \"a\";\n  listen = \"127.0.0.1:0\"; } );\n", 2,
         "listen: expected a list of strings"},
        {"out-of-range number",
         "\nworkers = 300;\nlisteners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; } );\n",
         2, "workers: 300 out of range"},
        {"out-of-range buffer_size",
         "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ];\n"
         "  buffer_size = 100; } );\n",
         2, "buffer_size: 100 out of range"},
        {"proxy_timeout without accept_proxy",
         "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ];\n"
         "  proxy_timeout = 2.0; } );\n",
         2, "proxy_timeout: only with accept_proxy = true"},
        {"bad address",
         "workers = 1;\nlisteners = ( { name = \"a\";\n"
         "  listen = [ \"127.0.0.1:70000\" ]; } );\n",
         3, "invalid address \"127.0.0.1:70000\""},
        {"bad upstream address",
         "listeners = ( { name = \"r\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
         "  upstreams = [ \"127.0.0.1\" ]; } );\n",
         2, "invalid address \"127.0.0.1\""},
        {"bad CIDR (host bits)",
         "workers = 1;\nlisteners = ( { name = \"a\";\n"
         "  listen = [ \"127.0.0.1:0\" ];\n  deny = [ \"10.0.0.1/8\" ]; } );\n",
         4, "invalid CIDR \"10.0.0.1/8\""},
        {"bad CIDR (prefix)",
         "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ];\n"
         "  allow = [ \"192.0.2.0/33\" ]; } );\n",
         2, "invalid CIDR \"192.0.2.0/33\""},
        {"bad CIDR (v4-mapped range)",
         "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ];\n"
         "  deny = [ \"::ffff:127.0.0.1/128\" ]; } );\n",
         2, "invalid CIDR \"::ffff:127.0.0.1/128\""},
        {"duplicate listener name",
         "workers = 1;\nlisteners = ( { name = \"a\"; listen = [ \"127.0.0.1:7100\" ]; },\n"
         "  { name = \"a\"; listen = [ \"127.0.0.1:7101\" ]; } );\n",
         3, "duplicate listener name \"a\""},
        {"two listeners on one address",
         "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:7100\" ]; },\n"
         "  { name = \"b\"; listen = [ \"127.0.0.1:7100\" ]; } );\n",
         2, "already used by listener \"a\""},
        {"a wildcard overlapping an address",
         "listeners = ( { name = \"a\"; listen = [ \"*:7100\" ]; },\n"
         "  { name = \"b\";\n    listen = [ \"127.0.0.1:7100\" ]; } );\n",
         3, "overlaps *:7100 of listener \"a\""},
        {"a proxy listener without upstreams",
         "workers = 1;\nlisteners = ( { name = \"r\";\n"
         "  mode = \"proxy\"; listen = [ \"127.0.0.1:0\" ]; } );\n",
         2, "has no upstreams"},
        {"a proxy setting on an echo listener",
         "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ];\n"
         "  send_proxy = \"v1\"; } );\n",
         2, "only for mode = \"proxy\""},
        {"a wrong choice",
         "listeners = ( { name = \"r\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
         "  upstreams = [ \"127.0.0.1:9\" ];\n  send_proxy = \"v3\"; } );\n",
         3, "send_proxy: expected none, v1 or v2"},
    };
    expect_conf_errors(cases, ARRAY_LEN(cases));

    /* A file that cannot be read is named, without a line. */
    char out[4096];
    int rc = echod_run(out, sizeof(out), "-t", "-c", "/nonexistent/mio-echod.conf",
                       (char *)NULL);
    assert_int_equal(rc, 1);
    if (strstr(out, "/nonexistent/mio-echod.conf: cannot read") == NULL)
        fail_msg("a missing file: \"%s\"", out);
}

/* Usage mistakes exit 2 with the usage text. */
static void test_usage_errors(void **state)
{
    (void)state;
    char out[4096];
    assert_int_equal(echod_run(out, sizeof(out), "-Z", (char *)NULL), 2);
    if (strstr(out, "usage: mio-echod") == NULL)
        fail_msg("-Z: \"%s\"", out);
    const char *path = write_conf(
        "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; } );\n");
    assert_int_equal(echod_run(out, sizeof(out), "-t", "-c", path, "extra", (char *)NULL),
                     2);
    if (strstr(out, "unexpected argument \"extra\"") == NULL)
        fail_msg("an extra argument: \"%s\"", out);
}

/* A listen address another socket holds: the daemon does not start; it
 * exits 3 saying which address it cannot listen on. */
static void test_address_in_use(void **state)
{
    (void)state;
    int port;
    int lfd = listen_loopback(16, &port);
    char conf[512], out[4096], want[128];
    snprintf(conf, sizeof(conf),
             BASE "workers = 1;\n"
                  "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             port);
    const char *path = write_conf(conf);
    int rc = echod_run(out, sizeof(out), "-f", "-c", path, (char *)NULL);
    close(lfd);
    if (rc != 3)
        fail_msg("exit %d, expected 3 (%s)", rc, out);
    snprintf(want, sizeof(want), "listener a: cannot listen on 127.0.0.1:%d", port);
    if (strstr(out, want) == NULL)
        fail_msg("expected \"%s\", got \"%s\"", want, out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allow_lets_only_listed_source),
        cmocka_unit_test(test_deny_wins_over_allow),
        cmocka_unit_test(test_deny_ipv6),
        cmocka_unit_test(test_acl_ranges_match_their_family),
        cmocka_unit_test(test_max_connections_global),
        cmocka_unit_test(test_max_connections_listener),
        cmocka_unit_test(test_max_per_source),
        cmocka_unit_test(test_proxy_v1_one_send),
        cmocka_unit_test(test_proxy_v1_split),
        cmocka_unit_test(test_proxy_length_bounds),
        cmocka_unit_test(test_proxy_v2_tcp),
        cmocka_unit_test(test_proxy_local_and_tlvs),
        cmocka_unit_test(test_proxy_malformed),
        cmocka_unit_test(test_proxy_header_stalled),
        cmocka_unit_test(test_proxy_source_denied),
        cmocka_unit_test(test_proxy_refusal_access_line_names_declared_client),
        cmocka_unit_test(test_proxy_allow_checked_twice),
        cmocka_unit_test(test_proxy_max_per_source),
        cmocka_unit_test(test_send_proxy),
        cmocka_unit_test(test_proxy_passed_on),
        cmocka_unit_test(test_send_proxy_ipv6),
        cmocka_unit_test(test_proxy_header_deadline_and_peer_count),
        cmocka_unit_test(test_proxy_in_and_out_at_the_smallest_buffer),
        cmocka_unit_test(test_acl_not_applied_to_unix_clients),
        cmocka_unit_test(test_log_lines_cannot_be_forged),
        cmocka_unit_test(test_startup_errors_reach_stderr_without_f),
        cmocka_unit_test(test_refusal_log_rate_limited),
        cmocka_unit_test(test_refusal_log_accounting_across_bad_header),
        cmocka_unit_test(test_slow_reader_echo),
        cmocka_unit_test(test_slow_reader_relay),
        cmocka_unit_test(test_readme_try_it_works),
        cmocka_unit_test(test_config_check_ok),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_address_in_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
