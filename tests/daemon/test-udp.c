/*
 * UDP in mio-echod (issue 13), end to end on the real daemon over
 * loopback, with the UDP clients and test upstreams of tests/common/udp.c:
 *
 *   the helpers themselves, without the daemon;
 *   echo: datagrams of 0 to 65507 bytes back whole on IPv4 and IPv6, each
 *   answered from the address it was sent to (a listener on 0.0.0.0);
 *   relay: the same sizes through a relay; 200 flows at once over two
 *   upstreams, each answer to its own client; flows: the end after
 *   idle_timeout or after `responses` answers, with its access line and
 *   the metrics; limits: max_connections, max_per_source and allow/deny
 *   drop new sources, counted by reason; PROXY v2 per datagram both ways;
 *   failover when an upstream answers ICMP port unreachable; reloads with
 *   a flow open (kept; its listener removed) and a SIGTERM with a flow
 *   open; a TCP and a UDP listener on one port; the configuration errors.
 *
 * Every test starts its own daemon on ephemeral ports (echod_port()
 * reads "listener NAME: listening on ADDR (udp echo)" as for TCP), except
 * where a reload must find the port again (reserve_port()).
 * UDP_TEST=glob runs only the tests it matches.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* How long a test waits for what should happen at once (sanitized
 * daemons are slower). */
#define WAIT_MS (SANITIZED ? 6000 : 3000)
/* How long a client waits for an answer that should come. */
#define ANSWER_MS (SANITIZED ? 3000 : 1000)
/* How long a client waits to be sure no answer comes. */
#define QUIET_MS 200

/* Every daemon here: two workers, the log on stderr with access lines,
 * the metrics listener; a short shutdown_timeout, so that the flows a
 * test leaves open do not hold its stop long. */
#define BASE                                                             \
    "workers = 2;\n"                                                     \
    "shutdown_timeout = 0.2;\n"                                          \
    "log = { target = \"stderr\"; level = \"info\"; access = true; };\n" \
    "stats = { listen = \"127.0.0.1:0\"; };\n"

/* ---- metrics ------------------------------------------------------------------ */

/* Waits up to WAIT_MS for the sample written by the format to be in
 * [lo, hi] (metrics_wait_between(), showing the UDP samples); returns it. */
#define metric_between(e, lo, hi, ...) \
    metrics_wait_between(e, WAIT_MS, "mio_echod_udp", lo, hi, __VA_ARGS__)
#define expect_metric(e, want, ...) ((void)metric_between(e, want, want, __VA_ARGS__))

/* The samples of a listener. */
#define FLOWS_OPEN "mio_echod_udp_flows_open{listener=\"%s\"}"
#define FLOWS_TOTAL "mio_echod_udp_flows_total{listener=\"%s\"}"
#define DGRAMS_IN "mio_echod_udp_datagrams_received_total{listener=\"%s\"}"
#define DGRAMS_OUT "mio_echod_udp_datagrams_sent_total{listener=\"%s\"}"
#define DROPPED "mio_echod_udp_dropped_total{listener=\"%s\",reason=\"%s\"}"
#define BYTES_IN "mio_echod_bytes_received_total{listener=\"%s\"}"
#define BYTES_OUT "mio_echod_bytes_sent_total{listener=\"%s\"}"
#define UP_FAILURES "mio_echod_upstream_failures_total{listener=\"%s\"}"

/* ---- the log ------------------------------------------------------------------ */

/*
 * Waits for the access line of listener's flow from `client` ("ADDR:PORT"),
 * the n-th one (from 0) of that client, and checks that it holds each of
 * the fragments after `reason` (NULL-terminated) and ends with
 * " reason=REASON".  Returns the line.
 */
static const char *expect_flow_end(struct echod *e, const char *listener,
                                   const char *client, int n, const char *reason, ...)
{
    char needle[160];
    snprintf(needle, sizeof(needle), "access listener=%s client=%s ", listener, client);
    if (!echod_wait_count(e, needle, n + 1, WAIT_MS))
        fail_msg("no access line %d \"%s...\" within %d ms (%d so far)", n + 1, needle,
                 WAIT_MS, echod_count_log(e, needle));
    const char *line = echod_log_line(e, needle, n);
    assert_non_null(line);
    va_list ap;
    va_start(ap, reason);
    for (const char *part = va_arg(ap, const char *); part != NULL;
         part = va_arg(ap, const char *))
        if (strstr(line, part) == NULL) {
            va_end(ap);
            fail_msg("access line without \"%s\": %s", part, line);
        }
    va_end(ap);
    expect_access_reason(line, reason);
    return line;
}

/* The duration= of an access line, in ms. */
static long long duration_ms(const char *line)
{
    const char *d = strstr(line, " duration=");
    if (d == NULL)
        fail_msg("no duration= in: %s", line);
    return (long long)(strtod(d + 10, NULL) * 1000.0 + 0.5);
}

/* "127.0.0.1:P" of a client socket. */
static void me(int fd, char *buf, size_t len)
{
    udp_local(fd, buf, len);
}

/* ---- configurations ------------------------------------------------------------ */

/* A daemon with the listeners given (the inside of "listeners = ( ... )"). */
__attribute__((format(printf, 1, 2))) static struct echod *start(const char *fmt, ...)
{
    char listeners[8192];
    va_list ap;
    va_start(ap, fmt);
    xvsnprintf(listeners, sizeof(listeners), fmt, ap);
    va_end(ap);
    return echod_startf(BASE "listeners = ( %s );\n", listeners);
}

/* ---- the test library --------------------------------------------------------- */

/* The UDP helpers against each other, without the daemon: a plain echo
 * upstream returns 65507 bytes whole from its own address; a tagged one
 * answers `replies` times; a proxy_v2 one records what a header made by
 * udp_proxy_v2() declares and answers the payload alone, and drops a
 * datagram without a header; distinct sources are counted; a stopped one
 * makes the kernel answer ICMP port unreachable (what failover tests
 * rely on); reserve_port() gives a port free for TCP and UDP. */
static void udp_test_library_checks_itself(void **state)
{
    (void)state;
    struct udpup *plain = udpup_start(NULL);
    uint8_t *big = xmalloc(UDP_MAX_V4);
    fill_random(big, UDP_MAX_V4, 7);
    int fd = udp_client4();
    udp_expect_echo(fd, "127.0.0.1", plain->port, big, UDP_MAX_V4, ANSWER_MS);
    udp_expect_echo(fd, "127.0.0.1", plain->port, "", 0, ANSWER_MS);
    free(big);

    struct udpup *twice = udpup_start(&(struct udpup_conf){.tag = "T:", .replies = 2});
    char back[256];
    udp_send(fd, "127.0.0.1", twice->port, "x", 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(udp_recv(fd, back, sizeof(back), ANSWER_MS, NULL), 3);
        assert_memory_equal(back, "T:x", 3);
    }
    assert_true(udp_silent(fd, 50));

    struct udpup *pp = udpup_start(
        &(struct udpup_conf){.tag = "P:", .proxy_v2 = true, .v6 = true});
    uint8_t dgram[128];
    size_t h = udp_proxy_v2(dgram, "192.0.2.1", 1234, "192.0.2.2", 53);
    assert_int_equal(h, 28);
    assert_int_equal(dgram[13], 0x12);
    memcpy(dgram + h, "payload", 7);
    int fd6 = udp_client6();
    udp_send(fd6, "::1", pp->port, dgram, h + 7);
    assert_int_equal(udp_recv(fd6, back, sizeof(back), ANSWER_MS, NULL), 9);
    assert_memory_equal(back, "P:payload", 9);
    struct udpup_last last;
    udpup_last(pp, &last);
    assert_string_equal(last.src, "192.0.2.1:1234");
    assert_string_equal(last.dst, "192.0.2.2:53");
    assert_int_equal(last.ver_cmd, 0x21);
    assert_int_equal(last.fam, 0x12);
    assert_int_equal(last.len, 7);
    char peer[UDP_ADDRSTRLEN];
    me(fd6, peer, sizeof(peer));
    assert_string_equal(last.peer, peer);
    h = udp_proxy_v2(dgram, "2001:db8::1", 1, "2001:db8::2", 2);
    assert_int_equal(h, 52);
    udp_send(fd6, "::1", pp->port, dgram, h);
    assert_int_equal(udp_recv(fd6, back, sizeof(back), ANSWER_MS, NULL), 2);
    udpup_last(pp, &last);
    assert_string_equal(last.src, "[2001:db8::1]:1");
    assert_int_equal(last.fam, 0x22);
    udp_send(fd6, "::1", pp->port, "no header", 9);
    assert_true(udp_silent(fd6, 100));
    assert_int_equal(atomic_load(&pp->bad_headers), 1);
    int other = udp_client6();
    udp_send(other, "::1", pp->port, dgram, h);
    assert_int_equal(udp_recv(other, back, sizeof(back), ANSWER_MS, NULL), 2);
    assert_int_equal(atomic_load(&pp->peers), 2);
    assert_int_equal(atomic_load(&pp->datagrams), 4);

    /* Stopped: a connected socket hears the ICMP port unreachable. */
    int port = twice->port;
    udpup_stop(twice);
    int c = udp_client4();
    struct sockaddr_storage ss;
    socklen_t sl = udp_sockaddr("127.0.0.1", port, &ss);
    assert_int_equal(connect(c, (struct sockaddr *)&ss, sl), 0);
    assert_int_equal(send(c, "x", 1, 0), 1);
    sleep_ms(50);
    errno = 0;
    assert_int_equal(recv(c, back, sizeof(back), MSG_DONTWAIT), -1);
    assert_int_equal(errno, ECONNREFUSED);

    /* A port for TCP and UDP at once. */
    port = reserve_port();
    int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sl = udp_sockaddr("127.0.0.1", port, &ss);
    assert_int_equal(bind(t, (struct sockaddr *)&ss, sl), 0);
    close(t);
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(u, (struct sockaddr *)&ss, sl), 0);
    close(u);
    assert_int_equal(atomic_load(&plain->errors) + atomic_load(&pp->errors), 0);
}

/* ---- echo ------------------------------------------------------------------------- */

/* Datagrams of 0, 1, 1472 (a full Ethernet frame), 9000 (a jumbo one) and
 * 65507 bytes (IPv4's largest) come back whole and from the address they
 * were sent to, on IPv4 and IPv6; each is counted. */
static void echo_is_byte_exact_up_to_65507_bytes(void **state)
{
    (void)state;
    struct echod *e = start("{ name = \"u\"; protocol = \"udp\"; mode = \"echo\";\n"
                            "  listen = [ \"127.0.0.1:0\", \"[::1]:0\" ]; }");
    int p4 = echod_port(e, "u", 0), p6 = echod_port(e, "u", 1);
    echod_must_log(e, "listener u: listening on 127.0.0.1:%d (udp echo)", p4);
    echod_must_log(e, "listener u: listening on [::1]:%d (udp echo)", p6);
    static const size_t sizes[] = {0, 1, 1472, 9000, UDP_MAX_V4};
    uint8_t *buf = xmalloc(UDP_MAX_V4);
    int c4 = udp_client4(), c6 = udp_client6();
    size_t bytes = 0;
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        fill_random(buf, sizes[i], (uint32_t)(100 + i));
        udp_expect_echo(c4, "127.0.0.1", p4, buf, sizes[i], ANSWER_MS);
        fill_random(buf, sizes[i], (uint32_t)(200 + i));
        udp_expect_echo(c6, "::1", p6, buf, sizes[i], ANSWER_MS);
        bytes += 2 * sizes[i];
    }
    free(buf);
    expect_metric(e, 10, DGRAMS_IN, "u");
    expect_metric(e, 10, DGRAMS_OUT, "u");
    expect_metric(e, 2, FLOWS_OPEN, "u");
    expect_metric(e, 2, FLOWS_TOTAL, "u");
    /* Bytes are counted when a flow ends: at the stop. */
    echod_stop_ok(e);
    char a4[UDP_ADDRSTRLEN], a6[UDP_ADDRSTRLEN], io[96];
    me(c4, a4, sizeof(a4));
    me(c6, a6, sizeof(a6));
    snprintf(io, sizeof(io), " in=%zu out=%zu ", bytes / 2, bytes / 2);
    expect_flow_end(e, "u", a4, 0, "shutdown", " upstream=- ", io,
                    " datagrams_in=5 datagrams_out=5 ", NULL);
    expect_flow_end(e, "u", a6, 0, "shutdown", " upstream=- ", io,
                    " datagrams_in=5 datagrams_out=5 ", NULL);
}

/* A listener on 0.0.0.0 answers each datagram from the address it was
 * sent to (IP_PKTINFO): 127.0.0.2 for a datagram to 127.0.0.2, 127.0.0.1
 * for one to 127.0.0.1, whatever the client's own address. */
static void echo_answers_from_the_address_it_was_sent_to(void **state)
{
    (void)state;
    struct echod *e = start("{ name = \"any\"; protocol = \"udp\"; mode = \"echo\";\n"
                            "  listen = [ \"0.0.0.0:0\" ]; }");
    int port = echod_port(e, "any", 0);
    static const struct {
        const char *from, *to;
    } cases[] = {
        {"127.0.0.2", "127.0.0.2"}, {"127.0.0.1", "127.0.0.1"},
        {"127.0.0.1", "127.0.0.2"}, {"127.0.0.3", "127.0.0.1"},
        {"127.0.0.2", "127.0.0.4"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int fd = udp_client(cases[i].from);
        char msg[64];
        int n = snprintf(msg, sizeof(msg), "from %s to %s", cases[i].from, cases[i].to);
        udp_expect_echo(fd, cases[i].to, port, msg, (size_t)n, ANSWER_MS);
        /* The flow's second datagram too. */
        udp_expect_echo(fd, cases[i].to, port, "again", 5, ANSWER_MS);
    }
    echod_stop_ok(e);
}

/* ---- relay ------------------------------------------------------------------------ */

#define FLOWS 200
/* How many times a client sends its datagram at most, and how long it
 * waits for the answer each time. */
#define FLOW_TRIES 10
#define FLOW_WAIT_MS (SANITIZED ? 1500 : 300)

/* Client i's datagram of `round`: "cNNN.R" then bytes of its own. */
static size_t flow_msg(int i, int round, uint8_t *msg)
{
    size_t len = 8 + (size_t)(i * 37 + round * 101) % 1400;
    fill_random(msg, len, (uint32_t)(i * 2 + round));
    snprintf((char *)msg, 8, "c%03d.%d", i, round);
    return len;
}

/*
 * One round of the relay test: each client sends its datagram, and every
 * answer is checked (tag, payload, source) as it comes, all clients
 * polled at once.  A burst of 200 datagrams may overflow a socket's
 * receive buffer (the kernel drops, as UDP allows), so a client with no
 * answer after FLOW_WAIT_MS sends again, FLOW_TRIES times at most; an
 * answer to an earlier round is skipped.  tags[i] gets (round 0) or must
 * match (later) the upstream that answered.  Returns the datagrams sent
 * again.
 */
static int flow_round(int round, const int *fds, char *tags, int port, int *na, int *nb)
{
    static bool done[FLOWS];
    static struct pollfd pfd[FLOWS];
    static int idx[FLOWS];
    uint8_t *msg = xmalloc(2048), *back = xmalloc(4096);
    char want[UDP_ADDRSTRLEN];
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    int left = FLOWS, resent = 0;
    *na = *nb = 0;
    memset(done, 0, sizeof(done));
    for (int attempt = 0; attempt < FLOW_TRIES && left > 0; attempt++) {
        for (int i = 0; i < FLOWS; i++)
            if (!done[i]) {
                udp_send(fds[i], "127.0.0.1", port, msg, flow_msg(i, round, msg));
                resent += attempt > 0;
            }
        int64_t until = ms_now() + FLOW_WAIT_MS;
        for (int spin = 0; spin < 100000 && left > 0 && ms_now() < until; spin++) {
            nfds_t n = 0;
            for (int i = 0; i < FLOWS; i++)
                if (!done[i]) {
                    pfd[n] = (struct pollfd){.fd = fds[i], .events = POLLIN};
                    idx[n++] = i;
                }
            int64_t wait = until - ms_now();
            if (poll(pfd, n, wait > 0 ? (int)wait : 0) <= 0)
                continue;
            for (nfds_t k = 0; k < n; k++) {
                if (pfd[k].revents == 0)
                    continue;
                int i = idx[k];
                struct sockaddr_storage from;
                ssize_t got = udp_recv(fds[i], back, 4096, 0, &from);
                if (got < 0)
                    continue;
                size_t len = flow_msg(i, round, msg);
                if (got >= 8 && memcmp(back + 2, msg, 5) == 0 && back[7] != msg[5])
                    continue; /* an answer to an earlier round */
                char src[UDP_ADDRSTRLEN];
                udp_format(&from, src, sizeof(src));
                if (strcmp(src, want) != 0)
                    fail_msg("client %d: the answer came from %s, not %s", i, src, want);
                if ((size_t)got != len + 2 || back[1] != ':' ||
                    (back[0] != 'A' && back[0] != 'B') || memcmp(back + 2, msg, len) != 0)
                    fail_msg("round %d: client %d sent %zu bytes (\"%.7s...\"), got %zd: "
                             "\"%.12s...\"",
                             round, i, len, (char *)msg, got, (char *)back);
                if (round == 0)
                    tags[i] = (char)back[0];
                else if (tags[i] != (char)back[0])
                    fail_msg("client %d: first answered by %c, then by %c", i, tags[i],
                             back[0]);
                *(back[0] == 'A' ? na : nb) += 1;
                done[i] = true;
                left--;
            }
        }
    }
    free(msg);
    free(back);
    if (left > 0)
        fail_msg("round %d: %d clients got no answer in %d tries (%d of A's, %d of B's)",
                 round, left, FLOW_TRIES, *na, *nb);
    return resent;
}

/* 200 clients at once through a relay to two upstreams: each answer
 * reaches the client it belongs to, byte for byte, from the listener's
 * address; each flow has an upstream socket of its own, and keeps its
 * upstream for its next datagram. */
static void relay_many_flows_each_answer_to_its_client(void **state)
{
    (void)state;
    struct udpup *a = udpup_start(&(struct udpup_conf){.tag = "A:"});
    struct udpup *b = udpup_start(&(struct udpup_conf){.tag = "B:"});
    struct echod *e = start("{ name = \"r\"; protocol = \"udp\"; mode = \"proxy\";\n"
                            "  listen = [ \"127.0.0.1:0\" ];\n"
                            "  upstreams = [ \"127.0.0.1:%d\", \"127.0.0.1:%d\" ];\n"
                            "  balance = \"round-robin\"; idle_timeout = 30.0; }",
                            a->port, b->port);
    int port = echod_port(e, "r", 0);
    echod_must_log(e, "listener r: listening on 127.0.0.1:%d (udp proxy)", port);
    static int fds[FLOWS];
    static char tags[FLOWS];
    for (int i = 0; i < FLOWS; i++)
        fds[i] = udp_client4();
    int resent = 0;
    for (int round = 0; round < 2; round++) {
        int na, nb;
        int r = flow_round(round, fds, tags, port, &na, &nb);
        print_message("    round %d: %d flows to A, %d to B; %d datagrams sent again\n",
                      round, na, nb, r);
        if (na < FLOWS / 4 || nb < FLOWS / 4)
            fail_msg("round-robin: %d flows to A, %d to B", na, nb);
        resent += r;
    }
    /* One upstream socket per flow, each seen by one upstream. */
    assert_int_equal(atomic_load(&a->peers) + atomic_load(&b->peers), FLOWS);
    int up = atomic_load(&a->datagrams) + atomic_load(&b->datagrams);
    assert_true(up >= 2 * FLOWS && up <= 2 * FLOWS + resent);
    expect_metric(e, FLOWS, FLOWS_OPEN, "r");
    expect_metric(e, FLOWS, FLOWS_TOTAL, "r");
    metric_between(e, 2 * FLOWS, 2 * FLOWS + resent, DGRAMS_IN, "r");
    metric_between(e, 2 * FLOWS, 2 * FLOWS + resent, DGRAMS_OUT, "r");
    echod_stop_ok(e);
}

/* Through a relay too, datagrams of 0 to 65507 bytes reach the upstream
 * and come back whole, from IPv4 and IPv6 clients; none is counted
 * truncated. */
static void relay_is_byte_exact_up_to_65507_bytes(void **state)
{
    (void)state;
    struct udpup *up = udpup_start(NULL); /* a plain echo */
    struct echod *e = start("{ name = \"r\"; protocol = \"udp\"; mode = \"proxy\";\n"
                            "  listen = [ \"127.0.0.1:0\", \"[::1]:0\" ];\n"
                            "  upstreams = [ \"127.0.0.1:%d\" ]; }",
                            up->port);
    int p4 = echod_port(e, "r", 0), p6 = echod_port(e, "r", 1);
    static const size_t sizes[] = {0, 1, 1472, 9000, UDP_MAX_V4};
    uint8_t *buf = xmalloc(UDP_MAX_V4);
    int c4 = udp_client4(), c6 = udp_client6();
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        fill_random(buf, sizes[i], (uint32_t)(300 + i));
        udp_expect_echo(c4, "127.0.0.1", p4, buf, sizes[i], ANSWER_MS);
        fill_random(buf, sizes[i], (uint32_t)(400 + i));
        udp_expect_echo(c6, "::1", p6, buf, sizes[i], ANSWER_MS);
    }
    free(buf);
    assert_int_equal(atomic_load(&up->datagrams), 10);
    assert_int_equal(atomic_load(&up->peers), 2);
    expect_metric(e, 10, DGRAMS_OUT, "r");
    expect_metric(e, 0, DROPPED, "r", "truncated");
    expect_metric(e, 0, DROPPED, "r", "send_error");
    echod_stop_ok(e);
}

/* ---- flows ------------------------------------------------------------------------- */

/* A flow with no datagram either way for idle_timeout ends: one access
 * line with its bytes, datagrams and reason=idle; the metrics count it
 * out; the client's next datagram starts a new flow. */
static void flow_ends_after_idle_timeout(void **state)
{
    (void)state;
    struct echod *e = start("{ name = \"u\"; protocol = \"udp\"; mode = \"echo\";\n"
                            "  listen = [ \"127.0.0.1:0\" ]; idle_timeout = 0.5; }");
    int port = echod_port(e, "u", 0);
    int fd = udp_client4();
    char client[UDP_ADDRSTRLEN];
    me(fd, client, sizeof(client));
    udp_expect_echo(fd, "127.0.0.1", port, "ten bytes!", 10, ANSWER_MS);
    udp_expect_echo(fd, "127.0.0.1", port, "twenty bytes, twenty", 20, ANSWER_MS);
    int64_t last = ms_now();
    expect_metric(e, 1, FLOWS_OPEN, "u");
    const char *line = expect_flow_end(e, "u", client, 0, "idle",
                                       " upstream=- in=30 out=30 ",
                                       " datagrams_in=2 datagrams_out=2 ", NULL);
    int64_t ended = ms_now() - last;
    long long d = duration_ms(line);
    /* The fields in the issue's order, nothing between them. */
    char head[128];
    snprintf(head, sizeof(head),
             "access listener=u client=%s upstream=- in=30 out=30 duration=", client);
    const char *at = strstr(line, head);
    if (at == NULL)
        fail_msg("not \"%s...\": %s", head, line);
    at += strlen(head);
    size_t secs = strspn(at, "0123456789");
    if (secs == 0 || at[secs] != '.' || strspn(at + secs + 1, "0123456789") != 3 ||
        strcmp(at + secs + 4, " datagrams_in=2 datagrams_out=2 reason=idle") != 0)
        fail_msg("not \"duration=S.mmm datagrams_in=2 datagrams_out=2 reason=idle\": %s",
                 line);
    print_message("    duration=%lld ms; the line %lld ms after the last datagram\n", d,
                  (long long)ended);
    if (d < 480)
        fail_msg("the flow ended before its idle_timeout: %s", line);
    if (ended < 450)
        fail_msg("the access line came %lld ms after the last datagram",
                 (long long)ended);
    expect_metric(e, 0, FLOWS_OPEN, "u");
    expect_metric(e, 1, FLOWS_TOTAL, "u");
    expect_metric(e, 2, DGRAMS_IN, "u");
    expect_metric(e, 2, DGRAMS_OUT, "u");
    expect_metric(e, 30, BYTES_IN, "u");
    expect_metric(e, 30, BYTES_OUT, "u");
    /* Again: a new flow. */
    udp_expect_echo(fd, "127.0.0.1", port, "back", 4, ANSWER_MS);
    expect_metric(e, 2, FLOWS_TOTAL, "u");
    expect_flow_end(e, "u", client, 1, "idle", " in=4 out=4 ",
                    " datagrams_in=1 datagrams_out=1 ", NULL);
    expect_metric(e, 0, FLOWS_OPEN, "u");
    echod_stop_ok(e);
}

/* responses = 1 (DNS): the flow ends at its first answer (reason=responses,
 * long before idle_timeout); a second answer from the upstream is not
 * passed on; the client's next datagram is a new flow. */
static void responses_one_ends_the_flow_at_its_answer(void **state)
{
    (void)state;
    struct udpup *a = udpup_start(&(struct udpup_conf){.tag = "A:", .replies = 2});
    struct echod *e = start("{ name = \"dns\"; protocol = \"udp\"; mode = \"proxy\";\n"
                            "  listen = [ \"127.0.0.1:0\" ];\n"
                            "  upstreams = [ \"127.0.0.1:%d\" ];\n"
                            "  idle_timeout = 10.0; responses = 1; }",
                            a->port);
    int port = echod_port(e, "dns", 0);
    int fd = udp_client4();
    char client[UDP_ADDRSTRLEN], up[UDP_ADDRSTRLEN + 16];
    me(fd, client, sizeof(client));
    snprintf(up, sizeof(up), " upstream=127.0.0.1:%d ", a->port);
    char back[64];
    int64_t t0 = ms_now();
    udp_send(fd, "127.0.0.1", port, "query 1", 7);
    ssize_t n = udp_recv(fd, back, sizeof(back), ANSWER_MS, NULL);
    assert_int_equal(n, 9);
    assert_memory_equal(back, "A:query 1", 9);
    const char *line = expect_flow_end(e, "dns", client, 0, "responses", up,
                                       " in=7 out=9 ", " datagrams_in=1 datagrams_out=1 ",
                                       NULL);
    print_message("    ended %lld ms after the query: %s\n", (long long)(ms_now() - t0),
                  line);
    assert_true(duration_ms(line) < 5000);
    /* The upstream's second answer is not passed on. */
    assert_true(udp_silent(fd, QUIET_MS));
    assert_int_equal(atomic_load(&a->answered), 2);
    expect_metric(e, 0, FLOWS_OPEN, "dns");
    /* The next query: a new flow, ended the same way. */
    udp_send(fd, "127.0.0.1", port, "query 2", 7);
    n = udp_recv(fd, back, sizeof(back), ANSWER_MS, NULL);
    assert_int_equal(n, 9);
    assert_memory_equal(back, "A:query 2", 9);
    expect_flow_end(e, "dns", client, 1, "responses", up,
                    " datagrams_in=1 datagrams_out=1 ", NULL);
    expect_metric(e, 2, FLOWS_TOTAL, "dns");
    expect_metric(e, 2, DGRAMS_OUT, "dns");
    echod_stop_ok(e);
}

/* Counts the datagrams that come to fd within ms of silence, each checked
 * to be `want` (len bytes). */
static int count_answers(int fd, const char *want, size_t len, int ms)
{
    char back[64];
    int n = 0;
    for (int i = 0; i < 100000; i++) {
        ssize_t got = udp_recv(fd, back, sizeof(back), ms, NULL);
        if (got < 0)
            break;
        if ((size_t)got != len || memcmp(back, want, len) != 0)
            fail_msg("answer %d: \"%.*s\", expected \"%s\"", n, (int)got, back, want);
        n++;
    }
    return n;
}

/* A client socket with room for a few hundred answers waiting. */
static int roomy_client(void)
{
    int fd = udp_client4();
    int size = 1 << 20;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    return fd;
}

/*
 * 200 replies waiting on a flow's upstream socket at once (sent while the
 * daemon is stopped with SIGSTOP): more than a flow reads in one turn (4
 * batches of 32), so the flow must come back for the rest by itself (an
 * edge-triggered poll reports nothing new for them); and 200 datagrams
 * waiting on an echo listener's socket, the same way.  Every one is
 * answered, to its client.
 */
static void a_backlog_is_read_to_the_end(void **state)
{
    (void)state;
    enum { BACKLOG = 200 };
    int up = udp_client4(); /* the upstream: this test */
    struct echod *e =
        start("{ name = \"r\"; protocol = \"udp\"; mode = \"proxy\";\n"
              "  listen = [ \"127.0.0.1:0\" ];\n"
              "  upstreams = [ \"127.0.0.1:%d\" ]; idle_timeout = 10.0; },\n"
              "{ name = \"u\"; protocol = \"udp\"; listen = [ \"127.0.0.1:0\" ];"
              " idle_timeout = 10.0; }",
              local_port(up));
    int port = echod_port(e, "r", 0), echo = echod_port(e, "u", 0);
    int fd = roomy_client();
    udp_send(fd, "127.0.0.1", port, "one", 3);
    char got[64];
    struct sockaddr_storage flow;
    assert_int_equal(udp_recv(up, got, sizeof(got), ANSWER_MS, &flow), 3);
    kill(echod_pid(e), SIGSTOP);
    for (int i = 0; i < BACKLOG; i++)
        assert_int_equal(sendto(up, "A:one", 5, 0, (struct sockaddr *)&flow,
                                sizeof(struct sockaddr_in)),
                         5);
    kill(echod_pid(e), SIGCONT);
    assert_int_equal(count_answers(fd, "A:one", 5, ANSWER_MS), BACKLOG);
    expect_metric(e, BACKLOG, DGRAMS_OUT, "r");

    kill(echod_pid(e), SIGSTOP);
    for (int i = 0; i < BACKLOG; i++)
        udp_send(fd, "127.0.0.1", echo, "ping", 4);
    kill(echod_pid(e), SIGCONT);
    assert_int_equal(count_answers(fd, "ping", 4, ANSWER_MS), BACKLOG);
    expect_metric(e, BACKLOG, DGRAMS_OUT, "u");
    close(up);
    echod_stop_ok(e);
}

/* An upstream that answers one datagram 200 times, to two clients at once:
 * the replies of both flows, gathered in batches of events, go out
 * together, each to its own client, every one of them. */
static void many_replies_all_reach_their_client(void **state)
{
    (void)state;
    enum { ANSWERS = 200 };
    struct udpup *a = udpup_start(&(struct udpup_conf){.tag = "A:", .replies = ANSWERS});
    struct echod *e = start("{ name = \"r\"; protocol = \"udp\"; mode = \"proxy\";\n"
                            "  listen = [ \"127.0.0.1:0\" ];\n"
                            "  upstreams = [ \"127.0.0.1:%d\" ]; idle_timeout = 10.0; }",
                            a->port);
    int port = echod_port(e, "r", 0);
    int c1 = roomy_client(), c2 = roomy_client();
    udp_send(c1, "127.0.0.1", port, "one", 3);
    udp_send(c2, "127.0.0.1", port, "two", 3);
    assert_int_equal(count_answers(c1, "A:one", 5, ANSWER_MS), ANSWERS);
    assert_int_equal(count_answers(c2, "A:two", 5, QUIET_MS), ANSWERS);
    expect_metric(e, 2 * ANSWERS, DGRAMS_OUT, "r");
    assert_int_equal(atomic_load(&a->answered), 2 * ANSWERS);
    echod_stop_ok(e);
}

/*
 * Out of descriptors (RLIMIT_NOFILE): a relay's new source that cannot get
 * an upstream socket is dropped and counted as out_of_fds, the flows open
 * go on, and once they end their descriptors serve new sources again.
 */
static void out_of_descriptors_drops_new_sources_only(void **state)
{
    (void)state;
    enum { LIMIT = 64, CLIENTS = 80 };
    struct udpup *a = udpup_start(&(struct udpup_conf){.tag = "A:"});
    char conf[1024];
    snprintf(conf, sizeof(conf),
             BASE "listeners = ( { name = \"r\"; protocol = \"udp\"; mode = \"proxy\";\n"
                  "  listen = [ \"127.0.0.1:0\" ];\n"
                  "  upstreams = [ \"127.0.0.1:%d\" ]; idle_timeout = 2.0; } );\n",
             a->port);
    struct echod *e = echod_start_nofile(conf, LIMIT);
    int port = echod_port(e, "r", 0);
    int fds[CLIENTS], answered = 0;
    char back[64];
    /* All sources at once, well within idle_timeout: no flow ends meanwhile
     * to give its descriptor to another. */
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = udp_client4();
        udp_send(fds[i], "127.0.0.1", port, "x", 1);
    }
    for (int i = 0; i < CLIENTS; i++)
        answered += udp_recv(fds[i], back, sizeof(back), i == 0 ? ANSWER_MS : 30, NULL) ==
                    3;
    print_message("    %d of %d sources answered under %d descriptors\n", answered,
                  CLIENTS, LIMIT);
    assert_true(answered >= 10 && answered < CLIENTS);
    metric_between(e, 1, CLIENTS, DROPPED, "r", "out_of_fds");
    /* The first flow goes on. */
    udp_send(fds[0], "127.0.0.1", port, "again", 5);
    assert_int_equal(udp_recv(fds[0], back, sizeof(back), ANSWER_MS, NULL), 7);
    assert_memory_equal(back, "A:again", 7);
    /* Once the flows are idle, their descriptors serve a new source. */
    expect_metric(e, 0, FLOWS_OPEN, "r");
    int late = udp_client4();
    assert_true(udp_ask(late, "127.0.0.1", port, "late", 4, back, sizeof(back), 3,
                        ANSWER_MS) == 6);
    close(late);
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);
    echod_stop_ok(e);
}

/* A datagram from port 7 (another host's echo service, forged) is never
 * answered, so that two echo services cannot bounce it for ever; counted
 * as loop_port.  The same client from another port is served. */
static void loop_ports_are_never_answered(void **state)
{
    (void)state;
    struct echod *e = start("{ name = \"u\"; protocol = \"udp\"; "
                            "listen = [ \"127.0.0.1:0\" ]; idle_timeout = 10.0; }");
    int port = echod_port(e, "u", 0);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(7),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        echod_stop_ok(e);
        print_message("skipped: cannot bind 127.0.0.1:7 (%s)\n", strerror(errno));
        skip();
    }
    udp_send(fd, "127.0.0.1", port, "bounce", 6);
    assert_true(udp_silent(fd, QUIET_MS));
    expect_metric(e, 1, DROPPED, "u", "loop_port");
    expect_metric(e, 0, FLOWS_TOTAL, "u");
    close(fd);
    int ok = udp_client4();
    udp_expect_echo(ok, "127.0.0.1", port, "fine", 4, ANSWER_MS);
    close(ok);
    echod_stop_ok(e);
}

/* responses = 5 with an upstream that answers 20 times: the client gets
 * exactly 5, the access line says so, the flow ends at once. */
static void responses_counts_replies_gathered(void **state)
{
    (void)state;
    struct udpup *a = udpup_start(&(struct udpup_conf){.tag = "A:", .replies = 20});
    struct echod *e = start("{ name = \"r\"; protocol = \"udp\"; mode = \"proxy\";\n"
                            "  listen = [ \"127.0.0.1:0\" ];\n"
                            "  upstreams = [ \"127.0.0.1:%d\" ];\n"
                            "  idle_timeout = 10.0; responses = 5; }",
                            a->port);
    int port = echod_port(e, "r", 0);
    int fd = roomy_client();
    char client[UDP_ADDRSTRLEN];
    me(fd, client, sizeof(client));
    udp_send(fd, "127.0.0.1", port, "q", 1);
    assert_int_equal(count_answers(fd, "A:q", 3, ANSWER_MS), 5);
    expect_flow_end(e, "r", client, 0, "responses", " in=1 out=15 ",
                    " datagrams_in=1 datagrams_out=5 ", NULL);
    expect_metric(e, 5, DGRAMS_OUT, "r");
    echod_stop_ok(e);
}

/* ---- limits --------------------------------------------------------------------- */

/* A listener's max_connections = 3: a fourth source is dropped silently
 * and counted (listener_max) while the three flows keep working; once
 * they end, the fourth gets in. */
static void max_connections_drops_a_new_source(void **state)
{
    (void)state;
    struct echod *e = start("{ name = \"u\"; protocol = \"udp\"; mode = \"echo\";\n"
                            "  listen = [ \"127.0.0.1:0\" ];\n"
                            "  idle_timeout = 1.0; max_connections = 3; }");
    int port = echod_port(e, "u", 0);
    int fd[4];
    for (int i = 0; i < 4; i++)
        fd[i] = udp_client4();
    for (int i = 0; i < 3; i++)
        udp_expect_echo(fd[i], "127.0.0.1", port, "in", 2, ANSWER_MS);
    udp_send(fd[3], "127.0.0.1", port, "fourth", 6);
    assert_true(udp_silent(fd[3], QUIET_MS));
    expect_metric(e, 1, DROPPED, "u", "listener_max_connections");
    expect_metric(e, 3, FLOWS_OPEN, "u");
    for (int i = 0; i < 3; i++)
        udp_expect_echo(fd[i], "127.0.0.1", port, "still in", 8, ANSWER_MS);
    udp_send(fd[3], "127.0.0.1", port, "fourth again", 12);
    assert_true(udp_silent(fd[3], QUIET_MS));
    expect_metric(e, 2, DROPPED, "u", "listener_max_connections");
    /* The three end (idle); then the fourth is let in. */
    for (int i = 0; i < 3; i++) {
        char client[UDP_ADDRSTRLEN];
        me(fd[i], client, sizeof(client));
        expect_flow_end(e, "u", client, 0, "idle", " datagrams_in=2 datagrams_out=2 ",
                        NULL);
    }
    expect_metric(e, 0, FLOWS_OPEN, "u");
    udp_expect_echo(fd[3], "127.0.0.1", port, "now", 3, ANSWER_MS);
    expect_metric(e, 4, FLOWS_TOTAL, "u");
    expect_metric(e, 2, DROPPED, "u", "listener_max_connections");
    echod_stop_ok(e);
}

/* max_per_source = 2: a third flow from 127.0.0.1 is dropped and counted
 * (max_per_source); one from 127.0.0.2 is not; the daemon-wide
 * max_connections = 3 then drops a fourth flow (max_connections). */
static void max_per_source_and_daemon_max_drop_new_flows(void **state)
{
    (void)state;
    struct echod *e = echod_startf(BASE
                                   "max_connections = 3;\n"
                                   "listeners = ( { name = \"u\"; protocol = \"udp\";\n"
                                   "  mode = \"echo\"; listen = [ \"0.0.0.0:0\" ];\n"
                                   "  idle_timeout = 5.0; max_per_source = 2; } );\n");
    int port = echod_port(e, "u", 0);
    int a1 = udp_client("127.0.0.1"), a2 = udp_client("127.0.0.1");
    int a3 = udp_client("127.0.0.1"), b1 = udp_client("127.0.0.2");
    int c1 = udp_client("127.0.0.3");
    udp_expect_echo(a1, "127.0.0.1", port, "a1", 2, ANSWER_MS);
    udp_expect_echo(a2, "127.0.0.1", port, "a2", 2, ANSWER_MS);
    udp_send(a3, "127.0.0.1", port, "a3", 2);
    assert_true(udp_silent(a3, QUIET_MS));
    expect_metric(e, 1, DROPPED, "u", "max_per_source");
    udp_expect_echo(b1, "127.0.0.1", port, "b1", 2, ANSWER_MS);
    udp_send(c1, "127.0.0.1", port, "c1", 2);
    assert_true(udp_silent(c1, QUIET_MS));
    expect_metric(e, 1, DROPPED, "u", "max_connections");
    expect_metric(e, 3, FLOWS_OPEN, "u");
    udp_expect_echo(a1, "127.0.0.1", port, "a1 again", 8, ANSWER_MS);
    echod_stop_ok(e);
}

/* deny = 127.0.0.3/32: a client at 127.0.0.3 gets nothing (counted: acl),
 * one at 127.0.0.1 is served; allow = 127.0.0.2/32 on another listener
 * lets 127.0.0.2 in and no one else. */
static void allow_and_deny_drop_sources_silently(void **state)
{
    (void)state;
    struct echod *e = start(
        "{ name = \"d\"; protocol = \"udp\"; mode = \"echo\";\n"
        "  listen = [ \"127.0.0.1:0\" ]; deny = [ \"127.0.0.3/32\" ]; },\n"
        "{ name = \"a\"; protocol = \"udp\"; mode = \"echo\";\n"
        "  listen = [ \"127.0.0.1:0\" ]; allow = [ \"127.0.0.2/32\" ]; }");
    int pd = echod_port(e, "d", 0), pa = echod_port(e, "a", 0);
    int denied = udp_client("127.0.0.3"), other = udp_client("127.0.0.1");
    int allowed = udp_client("127.0.0.2");
    udp_send(denied, "127.0.0.1", pd, "denied", 6);
    assert_true(udp_silent(denied, QUIET_MS));
    udp_send(denied, "127.0.0.1", pd, "denied again", 12);
    assert_true(udp_silent(denied, QUIET_MS));
    udp_expect_echo(other, "127.0.0.1", pd, "fine", 4, ANSWER_MS);
    expect_metric(e, 2, DROPPED, "d", "acl");
    expect_metric(e, 1, FLOWS_TOTAL, "d");
    udp_expect_echo(allowed, "127.0.0.1", pa, "allowed", 7, ANSWER_MS);
    udp_send(other, "127.0.0.1", pa, "not allowed", 11);
    assert_true(udp_silent(other, QUIET_MS));
    expect_metric(e, 1, DROPPED, "a", "acl");
    expect_metric(e, 1, FLOWS_TOTAL, "a");
    echod_stop_ok(e);
}

/* ---- PROXY protocol v2 ------------------------------------------------------------ */

/* send_proxy = "v2": each datagram reaches the upstream after a v2 header
 * (PROXY, DGRAM: byte 13 0x12 for IPv4, 0x22 for IPv6) declaring the
 * client and the listener's address; the answer reaches the client
 * without one. */
static void send_proxy_v2_prefixes_each_datagram(void **state)
{
    (void)state;
    struct udpup *a = udpup_start(&(struct udpup_conf){.tag = "A:", .proxy_v2 = true});
    struct echod *e = start("{ name = \"r\"; protocol = \"udp\"; mode = \"proxy\";\n"
                            "  listen = [ \"127.0.0.1:0\", \"[::1]:0\" ];\n"
                            "  upstreams = [ \"127.0.0.1:%d\" ]; send_proxy = \"v2\"; }",
                            a->port);
    int p4 = echod_port(e, "r", 0), p6 = echod_port(e, "r", 1);
    struct {
        int fd, port;
        const char *ip;
        uint8_t fam;
    } cases[] = {
        {udp_client4(), p4, "127.0.0.1", 0x12},
        {udp_client6(), p6, "::1", 0x22},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char client[UDP_ADDRSTRLEN], listener[UDP_ADDRSTRLEN];
        me(cases[i].fd, client, sizeof(client));
        struct sockaddr_storage ss;
        (void)udp_sockaddr(cases[i].ip, cases[i].port, &ss);
        udp_format(&ss, listener, sizeof(listener));
        for (int k = 0; k < 2; k++) {
            int before = atomic_load(&a->datagrams);
            char back[64];
            udp_send(cases[i].fd, cases[i].ip, cases[i].port, "hello v2", 8);
            ssize_t n = udp_recv(cases[i].fd, back, sizeof(back), ANSWER_MS, NULL);
            if (n < 0)
                fail_msg("%s: no answer (the upstream took %d datagrams, %d without a "
                         "valid header)",
                         client, atomic_load(&a->datagrams) - before,
                         atomic_load(&a->bad_headers));
            assert_int_equal(n, 10);
            assert_memory_equal(back, "A:hello v2", 10);
            struct udpup_last last;
            udpup_last(a, &last);
            assert_int_equal(last.ver_cmd, 0x21);
            assert_int_equal(last.fam, cases[i].fam);
            assert_string_equal(last.src, client);
            assert_string_equal(last.dst, listener);
            assert_int_equal(last.len, 8);
        }
    }
    assert_int_equal(atomic_load(&a->bad_headers), 0);
    assert_int_equal(atomic_load(&a->datagrams), 4);
    echod_stop_ok(e);
}

/* accept_proxy = true on an echo listener: each datagram starts with a v2
 * header; the payload alone comes back, to the real sender; a datagram
 * without a header is dropped and counted (proxy_header). */
static void accept_proxy_echo_answers_the_payload_only(void **state)
{
    (void)state;
    struct echod *e = start("{ name = \"u\"; protocol = \"udp\"; mode = \"echo\";\n"
                            "  listen = [ \"127.0.0.1:0\" ]; accept_proxy = true; }");
    int port = echod_port(e, "u", 0);
    int fd = udp_client4();
    uint8_t dgram[128];
    size_t h = udp_proxy_v2(dgram, "192.0.2.1", 5555, "192.0.2.2", 7);
    memcpy(dgram + h, "payload one", 11);
    udp_send(fd, "127.0.0.1", port, dgram, h + 11);
    char back[128];
    struct sockaddr_storage from;
    ssize_t n = udp_recv(fd, back, sizeof(back), ANSWER_MS, &from);
    if (n < 0)
        fail_msg("no answer to a v2 header and 11 bytes");
    if (n != 11 || memcmp(back, "payload one", 11) != 0)
        fail_msg("%zd bytes came back, not the 11 of the payload alone", n);
    /* IPv6 declared. */
    h = udp_proxy_v2(dgram, "2001:db8::1", 5556, "2001:db8::2", 7);
    memcpy(dgram + h, "payload two", 11);
    udp_send(fd, "127.0.0.1", port, dgram, h + 11);
    n = udp_recv(fd, back, sizeof(back), ANSWER_MS, NULL);
    assert_int_equal(n, 11);
    assert_memory_equal(back, "payload two", 11);
    /* No header: dropped. */
    int bare = udp_client4();
    udp_send(bare, "127.0.0.1", port, "no header at all", 16);
    assert_true(udp_silent(bare, QUIET_MS));
    expect_metric(e, 1, DROPPED, "u", "bad_proxy_header");
    echod_stop_ok(e);
}

/* accept_proxy = true on a relay: the header is taken off before the
 * upstream (or replaced by the daemon's own with send_proxy = "v2",
 * which declares the client the header declared), and the access line
 * names the declared client; each source declared is a flow of its own,
 * even from one socket. */
static void accept_proxy_relay_logs_the_declared_client(void **state)
{
    (void)state;
    struct udpup *a = udpup_start(&(struct udpup_conf){.tag = "A:"});
    struct udpup *v = udpup_start(&(struct udpup_conf){.tag = "V:", .proxy_v2 = true});
    struct echod *e =
        start("{ name = \"r\"; protocol = \"udp\"; mode = \"proxy\";\n"
              "  listen = [ \"127.0.0.1:0\" ]; upstreams = [ \"127.0.0.1:%d\" ];\n"
              "  accept_proxy = true; idle_timeout = 0.5; },\n"
              "{ name = \"rv\"; protocol = \"udp\"; mode = \"proxy\";\n"
              "  listen = [ \"127.0.0.1:0\" ]; upstreams = [ \"127.0.0.1:%d\" ];\n"
              "  accept_proxy = true; send_proxy = \"v2\"; idle_timeout = 0.5; }",
              a->port, v->port);
    int pr = echod_port(e, "r", 0), prv = echod_port(e, "rv", 0);
    int fd = udp_client4();
    uint8_t dgram[128];
    size_t h = udp_proxy_v2(dgram, "198.51.100.7", 4444, "192.0.2.2", 53);
    memcpy(dgram + h, "q", 1);
    char back[128];
    udp_send(fd, "127.0.0.1", pr, dgram, h + 1);
    ssize_t n = udp_recv(fd, back, sizeof(back), ANSWER_MS, NULL);
    if (n < 0)
        fail_msg("relay: no answer");
    if (n != 3 || memcmp(back, "A:q", 3) != 0)
        fail_msg("relay: %zd bytes came back (\"%.20s\"), not \"A:q\": the header went "
                 "to the upstream?",
                 n, back);
    /* Another source declared from the same socket: a flow of its own,
     * with its own upstream socket. */
    h = udp_proxy_v2(dgram, "198.51.100.8", 4444, "192.0.2.2", 53);
    memcpy(dgram + h, "zz", 2);
    udp_send(fd, "127.0.0.1", pr, dgram, h + 2);
    n = udp_recv(fd, back, sizeof(back), ANSWER_MS, NULL);
    if (n != 4 || memcmp(back, "A:zz", 4) != 0)
        fail_msg("relay, a second declared source: %zd bytes came back, not \"A:zz\"", n);
    assert_int_equal(atomic_load(&a->peers), 2);
    char up[64];
    snprintf(up, sizeof(up), " upstream=127.0.0.1:%d ", a->port);
    expect_flow_end(e, "r", "198.51.100.7:4444", 0, "idle", up, " in=1 out=3 ",
                    " datagrams_in=1 datagrams_out=1 ", NULL);
    expect_flow_end(e, "r", "198.51.100.8:4444", 0, "idle", up, " in=2 out=4 ",
                    " datagrams_in=1 datagrams_out=1 ", NULL);

    int fd2 = udp_client4();
    h = udp_proxy_v2(dgram, "203.0.113.9", 4445, "192.0.2.2", 53);
    memcpy(dgram + h, "qq", 2);
    udp_send(fd2, "127.0.0.1", prv, dgram, h + 2);
    n = udp_recv(fd2, back, sizeof(back), ANSWER_MS, NULL);
    if (n != 4 || memcmp(back, "V:qq", 4) != 0)
        fail_msg("relay with send_proxy: %zd bytes came back, not \"V:qq\" (%d without a "
                 "valid header at the upstream)",
                 n, atomic_load(&v->bad_headers));
    struct udpup_last last;
    udpup_last(v, &last);
    assert_string_equal(last.src, "203.0.113.9:4445");
    assert_int_equal(last.len, 2);
    snprintf(up, sizeof(up), " upstream=127.0.0.1:%d ", v->port);
    expect_flow_end(e, "rv", "203.0.113.9:4445", 0, "idle", up, NULL);
    echod_stop_ok(e);
}

/* ---- failover -----------------------------------------------------------------------
 */

/* An upstream that stops (its port then answers ICMP port unreachable) is
 * marked failed and the flow moves to the other one: within a few client
 * retries the answer comes from it; the failure is counted; a new flow
 * goes to the other one at once (fail_timeout). */
static void upstream_down_fails_over_to_the_other(void **state)
{
    (void)state;
    struct udpup *up[2] = {udpup_start(&(struct udpup_conf){.tag = "A:"}),
                           udpup_start(&(struct udpup_conf){.tag = "B:"})};
    struct echod *e = start("{ name = \"r\"; protocol = \"udp\"; mode = \"proxy\";\n"
                            "  listen = [ \"127.0.0.1:0\" ];\n"
                            "  upstreams = [ \"127.0.0.1:%d\", \"127.0.0.1:%d\" ];\n"
                            "  idle_timeout = 10.0; fail_timeout = 10.0; }",
                            up[0]->port, up[1]->port);
    int port = echod_port(e, "r", 0);
    int fd = udp_client4();
    char back[64];
    ssize_t n = udp_ask(fd, "127.0.0.1", port, "one", 3, back, sizeof(back), 1,
                        ANSWER_MS);
    assert_int_equal(n, 5);
    int x = back[0] == 'A' ? 0 : 1, y = 1 - x;
    print_message("    the flow went to %c; stopping it\n", back[0]);
    udpup_stop(up[x]);
    expect_metric(e, 0, UP_FAILURES, "r");
    /* The next datagram meets ICMP; the flow moves; a retry gets through. */
    int64_t t0 = ms_now();
    n = udp_ask(fd, "127.0.0.1", port, "two", 3, back, sizeof(back), 5,
                SANITIZED ? 1000 : 200);
    if (n < 0)
        fail_msg("no answer in 5 tries after %c stopped (%c took %d datagrams)", "AB"[x],
                 "AB"[y], atomic_load(&up[y]->datagrams));
    print_message("    answered by %c after %lld ms\n", back[0],
                  (long long)(ms_now() - t0));
    assert_int_equal(n, 5);
    assert_int_equal(back[0], "AB"[y]);
    assert_memory_equal(back + 1, ":two", 4);
    metric_between(e, 1, 1000, UP_FAILURES, "r");
    /* A new flow goes to the one left, first time. */
    int fd2 = udp_client4();
    n = udp_ask(fd2, "127.0.0.1", port, "three", 5, back, sizeof(back), 1, ANSWER_MS);
    assert_int_equal(n, 7);
    assert_memory_equal(back, y == 0 ? "A:three" : "B:three", 7);
    echod_stop_ok(e);
}

/* ---- reload and stop ----------------------------------------------------------------
 */

/* SIGHUP with a flow open (the upstreams listed the other way round in
 * the new file): the port stays, the flow keeps its upstream, and a new
 * client is served. */
static void reload_keeps_the_port_and_the_flows(void **state)
{
    (void)state;
    struct udpup *up[2] = {udpup_start(&(struct udpup_conf){.tag = "A:"}),
                           udpup_start(&(struct udpup_conf){.tag = "B:"})};
    int port = reserve_port();
    static const char fmt[] = BASE
        "listeners = ( { name = \"r\"; protocol = \"udp\"; mode = \"proxy\";\n"
        "  listen = [ \"127.0.0.1:%d\" ];\n"
        "  upstreams = [ \"127.0.0.1:%d\", \"127.0.0.1:%d\" ];\n"
        "  idle_timeout = 10.0; } );\n";
    struct echod *e = echod_startf(fmt, port, up[0]->port, up[1]->port);
    assert_int_equal(echod_port(e, "r", 0), port);
    int fd = udp_client4();
    char back[64];
    ssize_t n = udp_ask(fd, "127.0.0.1", port, "before", 6, back, sizeof(back), 1,
                        ANSWER_MS);
    assert_int_equal(n, 8);
    char tag = back[0];
    int x = tag == 'A' ? 0 : 1;
    echod_rewrite_conf(e, fmt, port, up[1]->port, up[0]->port);
    echod_reload_ok(e, WAIT_MS);
    for (int i = 0; i < 3; i++) {
        n = udp_ask(fd, "127.0.0.1", port, "after", 5, back, sizeof(back), 1, ANSWER_MS);
        if (n < 0)
            fail_msg("the flow got no answer after the reload");
        assert_int_equal(n, 7);
        if (back[0] != tag)
            fail_msg("the flow went to %c before the reload, to %c after", tag, back[0]);
    }
    assert_int_equal(atomic_load(&up[x]->peers), 1);
    int fd2 = udp_client4();
    n = udp_ask(fd2, "127.0.0.1", port, "new", 3, back, sizeof(back), 1, ANSWER_MS);
    assert_int_equal(n, 5);
    expect_metric(e, 2, FLOWS_OPEN, "r");
    /* The first flow is still the one it was: one access line at the end. */
    char client[UDP_ADDRSTRLEN];
    me(fd, client, sizeof(client));
    echod_stop_ok(e);
    expect_flow_end(e, "r", client, 0, "shutdown", " datagrams_in=4 datagrams_out=4 ",
                    NULL);
    char needle[UDP_ADDRSTRLEN + 16];
    snprintf(needle, sizeof(needle), " client=%s ", client);
    assert_int_equal(echod_count_log(e, needle), 1);
}

/* A reload that removes a UDP listener ends its flows at once (reason
 * "listener-removed", as mio-echod(8) writes it: a field without a
 * blank) and closes its socket; the listener that stays
 * keeps its flow. */
static void reload_removing_a_listener_ends_its_flows(void **state)
{
    (void)state;
    int pk = reserve_port(), pg = reserve_port();
    for (int i = 0; i < 100 && pg == pk; i++)
        pg = reserve_port();
    static const char keep[] = "{ name = \"keep\"; protocol = \"udp\"; mode = \"echo\";\n"
                               "  listen = [ \"127.0.0.1:%d\" ]; idle_timeout = 10.0; }";
    static const char gone[] =
        ",\n{ name = \"gone\"; protocol = \"udp\"; mode = \"echo\";\n"
        "  listen = [ \"127.0.0.1:%d\" ]; idle_timeout = 10.0; }";
    char both[1024], one[512];
    snprintf(one, sizeof(one), keep, pk);
    snprintf(both, sizeof(both), "%s", one);
    snprintf(both + strlen(both), sizeof(both) - strlen(both), gone, pg);
    struct echod *e = start("%s", both);
    int fk = udp_client4(), fg = udp_client4();
    char ck[UDP_ADDRSTRLEN], cg[UDP_ADDRSTRLEN];
    me(fk, ck, sizeof(ck));
    me(fg, cg, sizeof(cg));
    udp_expect_echo(fk, "127.0.0.1", pk, "kept", 4, ANSWER_MS);
    udp_expect_echo(fg, "127.0.0.1", pg, "removed", 7, ANSWER_MS);
    echod_rewrite_conf(e, BASE "listeners = ( %s );\n", one);
    echod_reload_ok(e, WAIT_MS);
    expect_flow_end(e, "gone", cg, 0, "listener-removed", " in=7 out=7 ",
                    " datagrams_in=1 datagrams_out=1 ", NULL);
    udp_send(fg, "127.0.0.1", pg, "anyone?", 7);
    assert_true(udp_silent(fg, QUIET_MS));
    udp_expect_echo(fk, "127.0.0.1", pk, "still kept", 10, ANSWER_MS);
    char needle[UDP_ADDRSTRLEN + 16];
    snprintf(needle, sizeof(needle), " client=%s ", ck);
    assert_int_equal(echod_count_log(e, needle), 0);
    expect_metric(e, 1, FLOWS_OPEN, "keep");
    echod_stop_ok(e);
}

/* SIGTERM with a flow open: new sources are dropped, the flow is still
 * relayed until it has been idle for idle_timeout, then the daemon exits
 * 0 by itself (before shutdown_timeout). */
static void sigterm_drains_a_flow_until_idle(void **state)
{
    (void)state;
    struct udpup *a = udpup_start(&(struct udpup_conf){.tag = "A:"});
    struct echod *e = echod_startf(
        "workers = 2;\nshutdown_timeout = 8.0;\n"
        "log = { target = \"stderr\"; level = \"info\"; access = true; };\n"
        "stats = { listen = \"127.0.0.1:0\"; };\n"
        "listeners = ( { name = \"r\"; protocol = \"udp\"; mode = \"proxy\";\n"
        "  listen = [ \"127.0.0.1:0\" ]; upstreams = [ \"127.0.0.1:%d\" ];\n"
        "  idle_timeout = 1.0; } );\n",
        a->port);
    int port = echod_port(e, "r", 0);
    int fd = udp_client4();
    char client[UDP_ADDRSTRLEN];
    me(fd, client, sizeof(client));
    char back[64];
    assert_int_equal(udp_ask(fd, "127.0.0.1", port, "first", 5, back, sizeof(back), 1,
                             ANSWER_MS),
                     7);
    echod_signal(e, SIGTERM);
    sleep_ms(100);
    int64_t last = 0;
    for (int i = 0; i < 5; i++) {
        char msg[16];
        int len = snprintf(msg, sizeof(msg), "drain %d", i);
        ssize_t n = udp_ask(fd, "127.0.0.1", port, msg, (size_t)len, back, sizeof(back),
                            1, ANSWER_MS);
        if (n < 0)
            fail_msg("datagram %d of the open flow after SIGTERM: no answer", i);
        last = ms_now();
        assert_int_equal(n, len + 2);
        assert_memory_equal(back + 2, msg, (size_t)len);
        sleep_ms(150);
    }
    int fresh = udp_client4();
    udp_send(fresh, "127.0.0.1", port, "new", 3);
    assert_true(udp_silent(fresh, QUIET_MS));
    expect_metric(e, 1, DROPPED, "r", "shutdown");
    assert_true(echod_alive(e));
    int64_t until = ms_now() + WAIT_MS + 1000;
    for (int i = 0; i < 100000 && echod_alive(e) && ms_now() < until; i++)
        sleep_ms(5);
    int64_t after = ms_now() - last;
    if (echod_alive(e))
        fail_msg(
            "still running %lld ms after the flow's last datagram (idle_timeout 1 s)",
            (long long)after);
    print_message("    exited %lld ms after the last datagram\n", (long long)after);
    assert_int_equal(echod_stop(e, 1000), 0);
    assert_true(after >= 900);
    expect_flow_end(e, "r", client, 0, "idle", " datagrams_in=6 datagrams_out=6 ", NULL);
    assert_int_equal(atomic_load(&a->datagrams), 6);
}

/* ---- TCP and UDP on one port ------------------------------------------------------- */

/* A TCP echo listener and a UDP echo listener on the same port: both
 * work, each with its own protocol. */
static void tcp_and_udp_listeners_share_a_port(void **state)
{
    (void)state;
    int port = reserve_port();
    struct echod *e = start("{ name = \"t\"; protocol = \"tcp\"; mode = \"echo\";\n"
                            "  listen = [ \"127.0.0.1:%d\" ]; },\n"
                            "{ name = \"u\"; protocol = \"udp\"; mode = \"echo\";\n"
                            "  listen = [ \"127.0.0.1:%d\" ]; }",
                            port, port);
    assert_int_equal(echod_port(e, "t", 0), port);
    assert_int_equal(echod_port(e, "u", 0), port);
    int t = client4(port);
    expect_echo(t, "over TCP");
    int u = udp_client4();
    udp_expect_echo(u, "127.0.0.1", port, "over UDP", 8, ANSWER_MS);
    expect_echo(t, "TCP again");
    finish(t);
    close(t);
    expect_metric(e, 1, FLOWS_TOTAL, "u");
    echod_stop_ok(e);
}

/* ---- configuration --------------------------------------------------------------- */

/* "mio-echod -t -c FILE" on conf exits 1 with "FILE:LINE: ", `setting`,
 * and, unless NULL, `also` (what the message must say besides). */
static void expect_refused(const char *what, const char *conf, int line,
                           const char *setting, const char *also)
{
    char out[4096];
    const char *path = write_conf(conf);
    int rc = echod_run(out, sizeof(out), "-t", "-c", path, (char *)NULL);
    char where[PATH_MAX + 32];
    snprintf(where, sizeof(where), "%s:%d: ", path, line);
    /* The setting and the reason after "FILE:LINE: " (the file's name
     * could hold anything). */
    const char *msg = strstr(out, where);
    if (rc != 1 || msg == NULL || strstr(msg + strlen(where), setting) == NULL ||
        (also != NULL && strstr(msg + strlen(where), also) == NULL))
        fail_msg("%s: exit %d, expected 1 with \"%s...%s\"%s%s%s; got \"%s\"", what, rc,
                 where, setting, also != NULL ? " and \"" : "", also != NULL ? also : "",
                 also != NULL ? "\"" : "", out);
    print_message("    %s: %s", what, msg);
}

/* A UDP listener's file: the setting on line 5. */
#define UDP_CONF(setting)                                    \
    "listeners = ( { name = \"u\"; protocol = \"udp\";\n"    \
    "  mode = \"proxy\"; upstreams = [ \"127.0.0.1:9\" ];\n" \
    "  listen = [ \"127.0.0.1:0\" ];\n"                      \
    "  # the setting:\n" setting "\n"                        \
    "} );\n"

/* What a UDP listener refuses, each with file:line: setting and why; and
 * what a TCP listener refuses of UDP's. */
static void config_errors_name_the_setting(void **state)
{
    (void)state;
    static const struct {
        const char *what, *conf;
        int line;
        const char *setting, *also;
    } cases[] = {
        {"a unix: address on udp",
         "listeners = ( { name = \"u\"; protocol = \"udp\"; mode = \"echo\";\n"
         "  listen = [ \"unix:/tmp/mio-echod-udp-test.sock\" ]; } );\n",
         2, "listeners.u.listen", "udp"},
        {"tls on udp",
         UDP_CONF("  tls = { certificate = \"/c.pem\"; key = \"/c.key\"; };"), 5,
         "listeners.u.tls", "udp"},
        {"splice on udp", UDP_CONF("  splice = true;"), 5, "listeners.u.splice", "udp"},
        {"connect_timeout on udp", UDP_CONF("  connect_timeout = 1.0;"), 5,
         "listeners.u.connect_timeout", "udp"},
        {"retries on udp", UDP_CONF("  retries = 2;"), 5, "listeners.u.retries", "udp"},
        {"proxy_timeout on udp", UDP_CONF("  proxy_timeout = 1.0;"), 5,
         "listeners.u.proxy_timeout", "udp"},
        {"buffer_size on udp", UDP_CONF("  buffer_size = 65536;"), 5,
         "listeners.u.buffer_size", "udp"},
        {"upstream_tls on udp", UDP_CONF("  upstream_tls = { verify = false; };"), 5,
         "listeners.u.upstream_tls", "udp"},
        {"sni_routes on udp",
         UDP_CONF("  sni_routes = ( { names = [ \"a.example\" ]; upstreams = [ "
                  "\"127.0.0.1:9\" ]; } );"),
         5, "listeners.u.sni_routes", "udp"},
        {"idle_timeout = 0 on udp", UDP_CONF("  idle_timeout = 0;"), 5,
         "listeners.u.idle_timeout", NULL},
        {"send_proxy v1 on udp", UDP_CONF("  send_proxy = \"v1\";"), 5,
         "listeners.u.send_proxy", NULL},
        {"an unknown protocol",
         "listeners = ( { name = \"u\";\n  protocol = \"sctp\";\n"
         "  listen = [ \"127.0.0.1:0\" ]; } );\n",
         2, "listeners.u.protocol", "udp"},
        {"responses on tcp",
         "listeners = ( { name = \"t\"; mode = \"proxy\";\n"
         "  upstreams = [ \"127.0.0.1:9\" ]; listen = [ \"127.0.0.1:0\" ];\n"
         "  responses = 1; } );\n",
         3, "listeners.t.responses", "udp"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        expect_refused(cases[i].what, cases[i].conf, cases[i].line, cases[i].setting,
                       cases[i].also);

    /* The issue's own example is accepted. */
    char out[4096];
    const char *path = write_conf(
        "listeners = (\n"
        "{ name = \"udp-echo\"; protocol = \"udp\"; listen = [ \"127.0.0.1:0\", "
        "\"[::1]:0\" ]; mode = \"echo\"; },\n"
        "{ name = \"dns\"; protocol = \"udp\"; listen = [ \"127.0.0.1:0\" ]; "
        "mode = \"proxy\";\n"
        "  upstreams = [ \"127.0.0.1:5300\", \"127.0.0.1:5301\" ]; balance = "
        "\"source-hash\";\n"
        "  idle_timeout = 30.0; max_connections = 10000; responses = 0;\n"
        "  send_proxy = \"none\"; accept_proxy = false; fail_timeout = 10.0; }\n"
        ");\n");
    int rc = echod_run(out, sizeof(out), "-t", "-c", path, (char *)NULL);
    if (rc != 0)
        fail_msg("the issue's example: exit %d: %s", rc, out);
}

/* ---- main ------------------------------------------------------------------------- */

#define TEST(f) cmocka_unit_test_teardown(f, teardown_all)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(udp_test_library_checks_itself),
        TEST(echo_is_byte_exact_up_to_65507_bytes),
        TEST(echo_answers_from_the_address_it_was_sent_to),
        TEST(relay_is_byte_exact_up_to_65507_bytes),
        TEST(relay_many_flows_each_answer_to_its_client),
        TEST(flow_ends_after_idle_timeout),
        TEST(responses_one_ends_the_flow_at_its_answer),
        TEST(a_backlog_is_read_to_the_end),
        TEST(many_replies_all_reach_their_client),
        TEST(responses_counts_replies_gathered),
        TEST(loop_ports_are_never_answered),
        TEST(out_of_descriptors_drops_new_sources_only),
        TEST(max_connections_drops_a_new_source),
        TEST(max_per_source_and_daemon_max_drop_new_flows),
        TEST(allow_and_deny_drop_sources_silently),
        TEST(send_proxy_v2_prefixes_each_datagram),
        TEST(accept_proxy_echo_answers_the_payload_only),
        TEST(accept_proxy_relay_logs_the_declared_client),
        TEST(upstream_down_fails_over_to_the_other),
        TEST(reload_keeps_the_port_and_the_flows),
        TEST(reload_removing_a_listener_ends_its_flows),
        TEST(sigterm_drains_a_flow_until_idle),
        TEST(tcp_and_udp_listeners_share_a_port),
        TEST(config_errors_name_the_setting),
    };
    test_filter_from_env("UDP_TEST");
    return cmocka_run_group_tests(tests, setup_ignore_sigpipe, NULL);
}
