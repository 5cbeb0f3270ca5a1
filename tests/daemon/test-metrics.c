/*
 * The metrics listener (stats = { listen = ...; }), end to end on the real
 * daemon over loopback: GET /metrics in the Prometheus text format with
 * the right values after real traffic, HEAD, a request in pieces, every
 * refused request with its status and the connection closed, the
 * 2048-byte request line and 8192-byte head bounds, the 5 s deadline, the
 * 64-connection limit (the oldest idle connection makes room), the
 * lingering close (a whole answer, no reset, for a client that sent junk
 * after its head; bounded in time), stats.allow and stats.deny, 100
 * clients at once, reloads, the per-upstream families after relayed
 * traffic (TCP and UDP) and as the control socket steers them, "show
 * stats", the histograms (connect time, connection and flow duration),
 * promtool's reading of the whole (when installed), that mio-echod(8)
 * documents every family, and the stats configuration errors.  Each test
 * starts its own daemon on ephemeral ports.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "certs.h"
#include "harness.h"

/* Every daemon here logs to stderr, where the harness reads it. */
#define BASE "log = { target = \"stderr\"; };\nshutdown_timeout = 2.0;\n"
#define STATS "stats = { listen = \"127.0.0.1:0\"; };\n"
#define ONE_LISTENER "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; } );\n"

/* How long a test waits for something that should happen at once. */
#define WAIT_MS 3000
/* The daemon's limits, as the tests know them. */
#define DEADLINE_MS 5000
#define MAX_CONNECTIONS 64
#define HEAD_MAX 8192
#define LINE_MAX_LEN 2048

#define GET_METRICS "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

/* ---- helpers ----------------------------------------------------------- */

/* Waits until `count` log lines contain needle. */
static void must_log_n(struct echod *e, const char *needle, int count)
{
    int64_t until = ms_now() + WAIT_MS;
    while (echod_count_log(e, needle) < count) {
        if (ms_now() >= until)
            fail_msg("%d log lines contain \"%s\" after %d ms; expected %d",
                     echod_count_log(e, needle), needle, WAIT_MS, count);
        sleep_ms(5);
    }
}

/* Sends what it can of buf: the daemon may close before taking it all.
 * Returns the bytes sent. */
static size_t send_some(int fd, const char *buf, size_t len)
{
    size_t done = 0;
    int64_t until = ms_now() + WAIT_MS;
    while (done < len && ms_now() < until) {
        ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            (void)poll(&p, 1, 50);
        } else {
            break;
        }
    }
    return done;
}

/* What came back on a connection, up to its end. */
struct reply {
    int status;      /* 0: closed without an answer */
    char head[4096]; /* status line and header lines, NUL-terminated */
    char *body;      /* NUL-terminated, freed by reply_free() */
    size_t body_len;
    bool reset;       /* it ended with a reset rather than a FIN */
    int64_t ended_ms; /* when it ended, ms_now() */
};

static void reply_free(struct reply *r)
{
    free(r->body);
    r->body = NULL;
}

/* The most read_reply() takes: an exposition of a few hundred listeners
 * fits. */
#define REPLY_MAX (4 * 1024 * 1024)

/* Reads fd to its end (EOF or reset, within `ms`), at most `chunk` bytes at
 * a time with a pause of `pause_ms` after each read when chunk is not 0,
 * and splits the answer into r. */
static void read_reply_paced(int fd, int ms, size_t chunk, int pause_ms, struct reply *r)
{
    size_t cap = 65536;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    memset(r, 0, sizeof(*r));
    int64_t until = ms_now() + ms;
    size_t len = 0;
    for (;;) {
        int left = (int)(until - ms_now());
        if (left <= 0)
            fail_msg("the connection did not end within %d ms (%zu bytes so far)", ms,
                     len);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            continue; /* the deadline ends the loop */
        if (len == cap) {
            if (cap >= REPLY_MAX)
                fail_msg("an answer longer than %d bytes", REPLY_MAX);
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        size_t want = cap - len;
        if (chunk > 0 && want > chunk)
            want = chunk;
        ssize_t n = recv(fd, buf + len, want, MSG_DONTWAIT);
        if (n > 0) {
            len += (size_t)n;
            if (chunk > 0)
                sleep_ms(pause_ms);
            continue;
        }
        if (n == 0)
            break;
        if (errno == ECONNRESET) {
            r->reset = true;
            break;
        }
        if (errno != EAGAIN && errno != EINTR)
            fail_msg("recv: %s", strerror(errno));
    }
    r->ended_ms = ms_now();
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (len == 0) {
        r->body = buf;
        return;
    }
    if (end == NULL || (size_t)(end - buf) >= sizeof(r->head))
        fail_msg("no complete answer head in %zu bytes: \"%.200s\"", len, buf);
    memcpy(r->head, buf, (size_t)(end - buf) + 2);
    r->head[(end - buf) + 2] = '\0';
    if (sscanf(buf, "HTTP/1.1 %d ", &r->status) != 1)
        fail_msg("not an HTTP/1.1 status line: \"%.80s\"", buf);
    r->body_len = len - (size_t)(end + 4 - buf);
    memmove(buf, end + 4, r->body_len + 1);
    r->body = buf;
}

/* Reads fd to its end (EOF or reset, within `ms`) and splits the answer
 * into r. */
static void read_reply(int fd, int ms, struct reply *r)
{
    read_reply_paced(fd, ms, 0, 0, r);
}

/* Sends req[0..len) on a new connection and reads the answer to its end. */
static void exchange(int port, const char *req, size_t len, struct reply *r)
{
    int fd = client4(port);
    (void)send_some(fd, req, len);
    read_reply(fd, WAIT_MS, r);
    close(fd);
}

/* The value of header `name` in r, or NULL; names match in any case. */
static const char *header(const struct reply *r, const char *name)
{
    static char value[512];
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n, *e = strstr(v, "\r\n");
            while (*v == ' ')
                v++;
            snprintf(value, sizeof(value), "%.*s", (int)(e - v), v);
            return value;
        }
    }
    return NULL;
}

/* Checks what every answer has: the status, "Connection: close", a Date,
 * a Content-Length equal to the body sent (or, for HEAD, to
 * `head_length`), and the connection closed after it. */
static void expect_answer(const struct reply *r, int status, bool head_only,
                          size_t head_length)
{
    if (r->status != status)
        fail_msg("status %d, expected %d: \"%s\"", r->status, status, r->head);
    const char *v = header(r, "Connection");
    if (v == NULL || strcmp(v, "close") != 0)
        fail_msg("no \"Connection: close\" in \"%s\"", r->head);
    if (header(r, "Date") == NULL || strlen(header(r, "Date")) != 29)
        fail_msg("no Date (IMF-fixdate) in \"%s\"", r->head);
    v = header(r, "Content-Length");
    assert_non_null(v);
    size_t length = strtoul(v, NULL, 10);
    if (head_only) {
        assert_int_equal(r->body_len, 0);
        assert_int_equal(length, head_length);
    } else {
        assert_int_equal(length, r->body_len);
    }
}

/* Scrapes GET /metrics and expects a complete 200; r has the body. */
static void scrape(int port, struct reply *r)
{
    exchange(port, GET_METRICS, strlen(GET_METRICS), r);
    expect_answer(r, 200, false, 0);
    const char *type = header(r, "Content-Type");
    if (type == NULL || strcmp(type, "text/plain; version=0.0.4") != 0)
        fail_msg("Content-Type \"%s\"", type ? type : "(none)");
    assert_false(r->reset);
}

/* The value of the one sample written exactly `key` (its name and
 * labels) in an exposition; fails when it is absent or there twice. */
__attribute__((format(printf, 2, 3))) static unsigned long long
sample(const char *body, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char key[256];
    xvsnprintf(key, sizeof(key), fmt, ap);
    va_end(ap);
    const char *value = metrics_find(body, key);
    if (value == NULL)
        fail_msg("no sample %s in:\n%s", key, body);
    if (metrics_find(value, key) != NULL)
        fail_msg("sample %s is there twice", key);
    char *end;
    unsigned long long v = strtoull(value, &end, 10);
    if (end == value || *end != '\n')
        fail_msg("sample %s: value \"%.20s\" is not an integer", key, value);
    return v;
}

/* The families of the exposition, in order, with their types. */
static const struct {
    const char *name, *type;
    bool optional; /* only when a listener has TLS, or one is UDP, or a relay */
} families[] = {
    {"mio_echod_connections_open", "gauge", false},
    {"mio_echod_connections_total", "counter", false},
    {"mio_echod_bytes_received_total", "counter", false},
    {"mio_echod_bytes_sent_total", "counter", false},
    {"mio_echod_udp_flows_open", "gauge", true},
    {"mio_echod_udp_flows_total", "counter", true},
    {"mio_echod_udp_datagrams_received_total", "counter", true},
    {"mio_echod_udp_datagrams_sent_total", "counter", true},
    {"mio_echod_refused_total", "counter", false},
    {"mio_echod_udp_dropped_total", "counter", true},
    {"mio_echod_upstream_failures_total", "counter", false},
    {"mio_echod_upstream_state", "gauge", true},
    {"mio_echod_upstream_connections_open", "gauge", true},
    {"mio_echod_upstream_connects_total", "counter", true},
    {"mio_echod_upstream_connect_failures_total", "counter", true},
    {"mio_echod_upstream_check_failures_total", "counter", true},
    {"mio_echod_upstream_bytes_sent_total", "counter", true},
    {"mio_echod_upstream_bytes_received_total", "counter", true},
    {"mio_echod_upstream_connect_seconds", "histogram", true},
    {"mio_echod_connection_duration_seconds", "histogram", false},
    {"mio_echod_tls_handshakes_total", "counter", true},
    {"mio_echod_tls_handshake_failures_total", "counter", true},
    {"mio_echod_reloads_total", "counter", false},
    {"mio_echod_reload_failures_total", "counter", false},
    {"mio_echod_daemon_connections_open", "gauge", false},
    {"mio_echod_draining", "gauge", false},
    {"mio_echod_workers", "gauge", false},
    {"mio_echod_build_info", "gauge", false},
};
#define NFAMILIES (sizeof(families) / sizeof(families[0]))

/* The reasons of mio_echod_refused_total, as daemon.h names them. */
static const char *const reasons[] = {
    "acl",
    "max_connections",
    "listener_max_connections",
    "max_per_source",
    "bad_proxy_header",
    "out_of_fds",
};

/*
 * Checks the text format, version 0.0.4: LF-terminated lines, no blank
 * one; each family in order, its "# HELP name text" then "# TYPE name
 * type" once, then its samples together, each "name{labels} value" or
 * "name value" with label values quoted, a histogram's named
 * name_bucket, name_sum or name_count; values integers, but a _sum's
 * decimal.  Then the histograms add up (metrics_check_histograms()): there
 * is one for each listener at least.
 */
static void check_format(const char *body)
{
    if (body[0] == '\0' || body[strlen(body) - 1] != '\n')
        fail_msg("the exposition does not end with a newline");
    if (strchr(body, '\r') != NULL)
        fail_msg("a CR in the exposition");
    size_t fam = 0, samples = 0;
    bool typed = false;
    for (const char *line = body; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        char text[512];
        snprintf(text, sizeof(text), "%.*s", (int)(nl - line), line);
        line = nl + 1;
        if (text[0] == '\0')
            fail_msg("a blank line in the exposition");
        char want[128];
        if (strncmp(text, "# HELP ", 7) == 0) {
            if (fam > 0 && samples == 0)
                fail_msg("family %s has no sample", families[fam - 1].name);
            if (fam == NFAMILIES)
                fail_msg("an unexpected family: \"%s\"", text);
            /* The TLS families are there with a TLS listener only. */
            for (; families[fam].optional && fam + 1 < NFAMILIES; fam++) {
                snprintf(want, sizeof(want), "# HELP %s ", families[fam].name);
                if (strncmp(text, want, strlen(want)) == 0)
                    break;
            }
            snprintf(want, sizeof(want), "# HELP %s ", families[fam].name);
            if (strncmp(text, want, strlen(want)) != 0 || strlen(text) <= strlen(want))
                fail_msg("expected the HELP of %s, got \"%s\"", families[fam].name, text);
            fam++;
            samples = 0;
            typed = false;
            continue;
        }
        if (fam == 0)
            fail_msg("\"%s\" before any HELP", text);
        if (strncmp(text, "# TYPE ", 7) == 0) {
            snprintf(want, sizeof(want), "# TYPE %s %s", families[fam - 1].name,
                     families[fam - 1].type);
            if (strcmp(text, want) != 0 || typed || samples > 0)
                fail_msg("expected \"%s\" once, after the HELP; got \"%s\"", want, text);
            typed = true;
            continue;
        }
        if (text[0] == '#' || !typed)
            fail_msg("\"%s\" where a TYPE or sample of %s was expected", text,
                     families[fam - 1].name);
        size_t n = strlen(families[fam - 1].name);
        bool histogram = strcmp(families[fam - 1].type, "histogram") == 0;
        static const char *const parts[] = {"_bucket", "_sum", "_count"};
        const char *part = "";
        for (size_t k = 0; histogram && k < 3; k++)
            if (strncmp(text + n, parts[k], strlen(parts[k])) == 0)
                part = parts[k];
        n += strlen(part);
        if (strncmp(text, families[fam - 1].name, n - strlen(part)) != 0 ||
            (histogram && part[0] == '\0') || (text[n] != '{' && text[n] != ' '))
            fail_msg("sample \"%s\" among those of %s", text, families[fam - 1].name);
        const char *p = text + n;
        if (*p == '{') {
            /* name="value" pairs, comma-separated, values with \\ \" \n escapes. */
            for (p++;;) {
                size_t k = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
                if (k == 0 || p[k] != '=' || p[k + 1] != '"')
                    fail_msg("malformed labels in \"%s\"", text);
                for (p += k + 2; *p != '"'; p++) {
                    if (*p == '\0' || (*p == '\\' && strchr("\\\"n", p[1]) == NULL))
                        fail_msg("malformed label value in \"%s\"", text);
                    if (*p == '\\')
                        p++;
                }
                p++;
                if (*p == '}')
                    break;
                if (*p != ',')
                    fail_msg("malformed labels in \"%s\"", text);
                p++;
            }
            p++;
        }
        size_t digits = *p == ' ' ? strspn(p + 1, "0123456789") : 0;
        if (strcmp(part, "_sum") == 0 && digits > 0 && p[1 + digits] == '.')
            digits += 1 + strspn(p + 2 + digits, "0123456789");
        if (digits == 0 || digits != strlen(p + 1) || p[digits] == '.')
            fail_msg("malformed value in \"%s\"", text);
        samples++;
    }
    if (fam != NFAMILIES || samples == 0)
        fail_msg("%zu families of %zu in the exposition", fam, (size_t)NFAMILIES);
    if (metrics_check_histograms(body) < 1)
        fail_msg("no histogram in the exposition");
}

/* The version and backend "mio-echod -V" reports. */
static void version_and_backend(char version[64], char backend[32])
{
    char out[512];
    assert_int_equal(echod_run(out, sizeof(out), "-V", (char *)NULL), 0);
    if (sscanf(out, "mio-echod %63s (libmio, %31[a-z_] backend)", version, backend) != 2)
        fail_msg("mio-echod -V said \"%s\"", out);
}

/* A TCP socket bound to 127.0.0.1 but not listening: connects to its
 * port are refused, and the port stays taken while it is open. */
static int dead_port(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- the exposition ------------------------------------------------------ */

/*
 * After three echo connections (5, 7 and 11 bytes) and one held open, a
 * client refused by allow/deny, a relay whose only upstream refuses, and a
 * relay that takes 3 bytes from its client and gives it 10: every family,
 * in the format, with the values those make, for every listener and every
 * refusal reason.
 */
static void test_values_after_traffic(void **state)
{
    (void)state;
    int dead, live;
    int dfd = dead_port(&dead), lfd = listen_loopback(16, &live);
    char conf[1024];
    snprintf(
        conf, sizeof(conf),
        BASE
        "workers = 2;\n"
        "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:0\" ]; },\n"
        " { name = \"acl\"; listen = [ \"127.0.0.1:0\" ]; allow = [ \"127.0.0.2/32\" ]; },\n"
        " { name = \"relay\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "   upstreams = [ \"127.0.0.1:%d\" ]; retries = 0; },\n"
        " { name = \"live\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "   upstreams = [ \"127.0.0.1:%d\" ]; } );\n" STATS,
        dead, live);
    struct echod *e = echod_start(conf);
    int mport = echod_metrics_port(e);
    int pecho = echod_port(e, "echo", 0), pacl = echod_port(e, "acl", 0);
    int prelay = echod_port(e, "relay", 0), plive = echod_port(e, "live", 0);

    /* Nothing yet: all zero. */
    struct reply r;
    scrape(mport, &r);
    check_format(r.body);
    assert_int_equal(sample(r.body, "mio_echod_connections_total{listener=\"echo\"}"), 0);
    reply_free(&r);

    static const char *const msgs[] = {"five\n", "seven!\n", "eleven ...\n"};
    for (int i = 0; i < 3; i++) {
        int fd = client4(pecho);
        expect_echo(fd, msgs[i]);
        finish(fd);
    }
    must_log_n(e, "access listener=echo ", 3);
    int held = client4(pecho);
    expect_echo(held, "held\n");

    int fd = connect_from("127.0.0.1", pacl);
    echod_must_log(e, "listener acl: refused 127.0.0.1:");
    assert_true(peer_closed_within(fd, WAIT_MS));
    close(fd);

    fd = client4(prelay);
    echod_must_log(e, "access listener=relay ");
    assert_true(peer_reset_within(fd, WAIT_MS)); /* no upstream: an abort */
    close(fd);

    /* 3 bytes in, 10 out: the two byte counters are not one. */
    fd = client4(plive);
    int ufd = upstream_accept(lfd);
    char got[16];
    send_all(fd, "abc", 3);
    recv_exact(ufd, got, 3);
    send_all(ufd, "0123456789", 10);
    recv_exact(fd, got, 10);
    close(ufd);
    assert_true(peer_closed_within(fd, WAIT_MS));
    close(fd);
    echod_must_log(e, "access listener=live ");

    scrape(mport, &r);
    check_format(r.body);
    const char *b = r.body;
    assert_int_equal(sample(b, "mio_echod_connections_open{listener=\"echo\"}"), 1);
    assert_int_equal(sample(b, "mio_echod_connections_open{listener=\"acl\"}"), 0);
    assert_int_equal(sample(b, "mio_echod_connections_open{listener=\"relay\"}"), 0);
    assert_int_equal(sample(b, "mio_echod_connections_total{listener=\"echo\"}"), 4);
    assert_int_equal(sample(b, "mio_echod_connections_total{listener=\"acl\"}"), 0);
    assert_int_equal(sample(b, "mio_echod_connections_total{listener=\"relay\"}"), 1);
    /* Bytes of closed connections only: not the 5 of the one held open. */
    assert_int_equal(sample(b, "mio_echod_bytes_received_total{listener=\"echo\"}"), 23);
    assert_int_equal(sample(b, "mio_echod_bytes_sent_total{listener=\"echo\"}"), 23);
    assert_int_equal(sample(b, "mio_echod_bytes_received_total{listener=\"relay\"}"), 0);
    assert_int_equal(sample(b, "mio_echod_bytes_sent_total{listener=\"acl\"}"), 0);
    assert_int_equal(sample(b, "mio_echod_bytes_received_total{listener=\"live\"}"), 3);
    assert_int_equal(sample(b, "mio_echod_bytes_sent_total{listener=\"live\"}"), 10);
    assert_int_equal(sample(b, "mio_echod_connections_total{listener=\"live\"}"), 1);
    assert_int_equal(sample(b, "mio_echod_upstream_failures_total{listener=\"live\"}"),
                     0);
    static const char *const names[] = {"echo", "acl", "relay", "live"};
    for (size_t l = 0; l < 4; l++)
        for (size_t k = 0; k < sizeof(reasons) / sizeof(reasons[0]); k++)
            assert_int_equal(
                sample(b, "mio_echod_refused_total{listener=\"%s\",reason=\"%s\"}",
                       names[l], reasons[k]),
                l == 1 && k == 0 ? 1 : 0);
    assert_int_equal(sample(b, "mio_echod_upstream_failures_total{listener=\"relay\"}"),
                     1);
    assert_int_equal(sample(b, "mio_echod_upstream_failures_total{listener=\"echo\"}"),
                     0);
    assert_int_equal(sample(b, "mio_echod_reloads_total"), 0);
    assert_int_equal(sample(b, "mio_echod_reload_failures_total"), 0);
    assert_int_equal(sample(b, "mio_echod_daemon_connections_open"), 1);
    assert_int_equal(sample(b, "mio_echod_workers"), 2);
    char version[64], backend[32];
    version_and_backend(version, backend);
    assert_int_equal(sample(b, "mio_echod_build_info{version=\"%s\",backend=\"%s\"}",
                            version, backend),
                     1);
    reply_free(&r);

    /* The held connection ends: its bytes are counted, nothing is open. */
    finish(held);
    must_log_n(e, "access listener=echo ", 4);
    scrape(mport, &r);
    assert_int_equal(sample(r.body, "mio_echod_bytes_received_total{listener=\"echo\"}"),
                     28);
    assert_int_equal(sample(r.body, "mio_echod_connections_open{listener=\"echo\"}"), 0);
    assert_int_equal(sample(r.body, "mio_echod_daemon_connections_open"), 0);
    reply_free(&r);
    close(dfd);
    close(lfd);
    echod_stop_ok(e);
}

/* HEAD gives GET's head, Content-Length included, and no body; so does an
 * HTTP/1.0 GET without Host, with the body. */
static void test_head_and_http10(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE "workers = 1;\n" ONE_LISTENER STATS);
    int port = echod_metrics_port(e);
    struct reply get, head, old;
    scrape(port, &get);
    const char *req = "HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
    exchange(port, req, strlen(req), &head);
    expect_answer(&head, 200, true, get.body_len);
    assert_false(head.reset);
    assert_string_equal(header(&head, "Content-Type"), "text/plain; version=0.0.4");

    req = "GET /metrics HTTP/1.0\r\n\r\n";
    exchange(port, req, strlen(req), &old);
    expect_answer(&old, 200, false, 0);
    assert_string_equal(old.body, get.body);

    /* HEAD of what is not served: its 404 head alone. */
    struct reply missing;
    req = "HEAD /other HTTP/1.1\r\nHost: x\r\n\r\n";
    exchange(port, req, strlen(req), &missing);
    assert_int_equal(missing.status, 404);
    assert_int_equal(missing.body_len, 0);
    reply_free(&get);
    reply_free(&head);
    reply_free(&old);
    reply_free(&missing);
    echod_stop_ok(e);
}

/* A request that comes in pieces, with pauses between them (a byte at a
 * time at first), is answered as soon as it is complete. */
static void test_request_in_pieces(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE "workers = 1;\n" ONE_LISTENER STATS);
    int port = echod_metrics_port(e);
    static const char *const pieces[] = {
        "G", "E", "T", " /met", "rics HTTP/1.1\r", "\nHost: 127.0.0.1\r\n", "\r", "\n",
    };
    int fd = client4(port);
    int64_t t0 = ms_now();
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        sleep_ms(50);
        send_all(fd, pieces[i], strlen(pieces[i]));
    }
    struct reply r;
    read_reply(fd, WAIT_MS, &r);
    close(fd);
    expect_answer(&r, 200, false, 0);
    if (r.ended_ms - t0 > 2000)
        fail_msg("answered %lld ms after the first byte", (long long)(r.ended_ms - t0));
    reply_free(&r);
    echod_stop_ok(e);
}

/* Each bad request gets its status with a text body saying why and
 * "Connection: close", then the connection ends; the listener serves on. */
static void test_bad_requests(void **state)
{
    (void)state;
    static const struct {
        const char *what, *req;
        int status;
        const char *says;
    } cases[] = {
        {"POST", "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405, "only GET and HEAD"},
        {"DELETE over HTTP/1.0", "DELETE /metrics HTTP/1.0\r\n\r\n", 405,
         "only GET and HEAD"},
        {"a lowercase method", "get /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405,
         "only GET"},
        {"another target", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404,
         "only /metrics and /health"},
        {"a query", "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", 404,
         "only /metrics and /health"},
        {"HTTP/1.1 without Host", "GET /metrics HTTP/1.1\r\n\r\n", 400, "without a Host"},
        {"two Hosts", "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400,
         "more than one Host"},
        {"HTTP/2.0", "GET /metrics HTTP/2.0\r\n\r\n", 505, "HTTP/1.0 and HTTP/1.1"},
        {"HTTP/1.2", "GET /metrics HTTP/1.2\r\nHost: x\r\n\r\n", 505,
         "HTTP/1.0 and HTTP/1.1"},
        {"a malformed version", "GET /metrics HTTP/1.1x\r\nHost: x\r\n\r\n", 400,
         "version"},
        {"bare LF", "GET /metrics HTTP/1.1\nHost: x\n\n", 400, "bare LF"},
        {"bare LF in a header", "GET /metrics HTTP/1.1\r\nHost: x\n\r\n", 400, "bare LF"},
        {"two spaces", "GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400, "empty target"},
        {"a blank before the colon", "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400,
         "colon"},
        {"obs-fold", "GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400,
         "obs-fold"},
        {"a body", "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
         400, "Content-Length"},
        {"a chunked body",
         "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         "0\r\n\r\n",
         400, "Transfer-Encoding"},
        {"a control byte", "GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: \x01\r\n\r\n", 400,
         "control"},
        {"not HTTP at all", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400,
         "method"},
    };
    struct echod *e = echod_start(BASE "workers = 1;\n" ONE_LISTENER STATS);
    int port = echod_metrics_port(e);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct reply r;
        exchange(port, cases[i].req, strlen(cases[i].req), &r);
        if (r.status != cases[i].status || strstr(r.body, cases[i].says) == NULL)
            fail_msg("%s: %d \"%s\", expected %d \"...%s...\"", cases[i].what, r.status,
                     r.body, cases[i].status, cases[i].says);
        expect_answer(&r, cases[i].status, false, 0);
        assert_string_equal(header(&r, "Content-Type"), "text/plain; charset=utf-8");
        if (cases[i].status == 405)
            assert_string_equal(header(&r, "Allow"), "GET, HEAD");
        reply_free(&r);
    }
    struct reply r;
    scrape(port, &r);
    reply_free(&r);
    echod_stop_ok(e);
}

/* A request line of 2048 bytes is read (404 for its long target), one of
 * 2049 is 414. */
static void test_request_line_bound(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE "workers = 1;\n" ONE_LISTENER STATS);
    int port = echod_metrics_port(e);
    char req[LINE_MAX_LEN + 64];
    size_t fixed = strlen("GET /metrics? HTTP/1.1");
    for (int extra = 0; extra <= 1; extra++) {
        int n = snprintf(req, sizeof(req), "GET /metrics?");
        memset(req + n, 'q', LINE_MAX_LEN - fixed + (size_t)extra);
        snprintf(req + n + LINE_MAX_LEN - fixed + extra,
                 sizeof(req) - (size_t)n - (LINE_MAX_LEN - fixed + (size_t)extra),
                 " HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_int_equal(strstr(req, "\r\n") - req, LINE_MAX_LEN + extra);
        struct reply r;
        exchange(port, req, strlen(req), &r);
        expect_answer(&r, extra ? 414 : 404, false, 0);
        reply_free(&r);
    }
    echod_stop_ok(e);
}

/* A head of `len` bytes, the last four "\r\n\r\n", padded in an X-Pad
 * header; into buf. */
static void padded_head(char *buf, size_t len)
{
    const char *start = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ";
    size_t n = strlen(start);
    assert_true(len > n + 4);
    memcpy(buf, start, n);
    memset(buf + n, 'p', len - n - 4);
    memcpy(buf + len - 4, "\r\n\r\n", 4);
}

/*
 * A head of exactly 8192 bytes is served.  One of 8193 gets 431 as soon as
 * the 8193rd byte comes, without waiting for the end of the head; so does a
 * client sending 256 KiB of header.  Each answer arrives whole and ends
 * with a FIN, not a reset: what came past the bound is read and thrown
 * away while the answer is taken (a lingering close).
 */
static void test_head_bound(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE "workers = 1;\n" ONE_LISTENER STATS);
    int port = echod_metrics_port(e);
    size_t big = 256 * 1024;
    char *req = malloc(big);
    assert_non_null(req);

    struct reply r;
    padded_head(req, HEAD_MAX);
    exchange(port, req, HEAD_MAX, &r);
    expect_answer(&r, 200, false, 0);
    assert_false(r.reset);
    reply_free(&r);

    padded_head(req, HEAD_MAX + 1);
    int fd = client4(port);
    assert_int_equal(send_some(fd, req, HEAD_MAX + 1), HEAD_MAX + 1);
    read_reply(fd, WAIT_MS, &r);
    close(fd);
    expect_answer(&r, 431, false, 0);
    assert_non_null(strstr(r.body, "longer than 8192"));
    assert_false(r.reset);
    reply_free(&r);

    memset(req, 'p', big);
    memcpy(req, "GET /metrics HTTP/1.1\r\nX-Pad: ", 30);
    fd = client4(port);
    size_t sent = send_some(fd, req, big);
    read_reply(fd, WAIT_MS, &r);
    close(fd);
    expect_answer(&r, 431, false, 0);
    if (r.reset)
        fail_msg("the answer ended with a reset after %zu bytes sent", sent);
    reply_free(&r);
    free(req);
    echod_stop_ok(e);
}

/* ---- time and connection limits ------------------------------------------ */

/* Reads until the daemon closes, expecting no byte: the time it took from
 * `since`, in ms. */
static int64_t closed_silently(int fd, int64_t since)
{
    struct reply r;
    read_reply(fd, DEADLINE_MS + 3000, &r);
    if (r.status != 0 || r.body_len != 0 || r.body[0] != '\0')
        fail_msg("an answer where none was due: \"%s\"", r.head);
    reply_free(&r);
    return r.ended_ms - since;
}

/* A client that sends nothing, and one that sends half a head, are closed
 * without an answer after the 5 s deadline; meanwhile others are served. */
static void test_deadline(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE "workers = 1;\n" ONE_LISTENER STATS);
    int port = echod_metrics_port(e);
    int64_t t0 = ms_now();
    int silent = client4(port), partial = client4(port);
    send_all(partial, "GET /metrics HTTP/1.1\r\nHo", 25);
    sleep_ms(500);
    struct reply r;
    scrape(port, &r);
    reply_free(&r);
    int64_t s = closed_silently(silent, t0), p = closed_silently(partial, t0);
    close(silent);
    close(partial);
    if (s < DEADLINE_MS - 100 || s > DEADLINE_MS + 1500 || p < DEADLINE_MS - 100 ||
        p > DEADLINE_MS + 1500)
        fail_msg("closed after %lld and %lld ms; the deadline is %d ms", (long long)s,
                 (long long)p, DEADLINE_MS);
    echod_stop_ok(e);
}

/* True when the daemon has not closed fd within ms: no EOF, no reset, no
 * byte. */
static bool still_open(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc = poll(&p, 1, ms);
    return rc == 0;
}

/*
 * 64 idle connections (each accepted before the next connects) do not lock
 * scrapes out: a scrape past the limit is answered, and the oldest idle
 * connection is closed for it, without a byte, and only that one.  Then 64 connections
 * that sent their request and took their answer but do not close: a scrape is answered
 * again, one of them is closed for it, and each still has its whole answer.
 */
static void test_connection_limit(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE "workers = 1;\n" ONE_LISTENER STATS);
    int port = echod_metrics_port(e);
    int base = echod_fd_count(e);
    int fds[MAX_CONNECTIONS];
    for (int i = 0; i < MAX_CONNECTIONS; i++) {
        fds[i] = client4(port);
        if (!echod_wait_fd_count(e, base + i + 1, WAIT_MS))
            fail_msg("connection %d was not accepted", i + 1);
    }
    struct reply r;
    exchange(port, GET_METRICS, strlen(GET_METRICS), &r);
    if (r.status == 0)
        fail_msg("a scrape past %d idle connections: closed without an answer",
                 MAX_CONNECTIONS);
    expect_answer(&r, 200, false, 0);
    reply_free(&r);
    int64_t took = closed_silently(fds[0], ms_now());
    if (took > 1000)
        fail_msg("the oldest idle connection was closed after %lld ms, not at once",
                 (long long)took);
    for (int i = 1; i < MAX_CONNECTIONS; i++)
        if (!still_open(fds[i], i == 1 ? 100 : 0))
            fail_msg("idle connection %d was closed too", i + 1);
    for (int i = 0; i < MAX_CONNECTIONS; i++)
        close(fds[i]);
    if (!echod_wait_fd_count(e, base, WAIT_MS))
        fail_msg("%d descriptors open, expected %d", echod_fd_count(e), base);

    /* Answered, with the answer's FIN read, and left open. */
    struct reply answers[MAX_CONNECTIONS];
    for (int i = 0; i < MAX_CONNECTIONS; i++) {
        fds[i] = client4(port);
        send_all(fds[i], GET_METRICS, strlen(GET_METRICS));
        read_reply(fds[i], WAIT_MS, &answers[i]);
        expect_answer(&answers[i], 200, false, 0);
        assert_false(answers[i].reset);
    }
    if (!echod_wait_fd_count(e, base + MAX_CONNECTIONS, WAIT_MS))
        fail_msg("%d descriptors open, expected %d: the answered connections linger",
                 echod_fd_count(e), base + MAX_CONNECTIONS);
    scrape(port, &r);
    reply_free(&r);
    if (!echod_wait_fd_count(e, base + MAX_CONNECTIONS - 1, WAIT_MS))
        fail_msg("%d descriptors open, expected %d", echod_fd_count(e),
                 base + MAX_CONNECTIONS - 1);
    for (int i = 0; i < MAX_CONNECTIONS; i++) {
        reply_free(&answers[i]);
        close(fds[i]);
    }
    echod_stop_ok(e);
}

/* 100 clients connect and send their request, all before any reads its
 * answer: each gets the whole exposition, the same one. */
static void test_hundred_clients(void **state)
{
    (void)state;
    enum { N = 100 };
    struct echod *e = echod_start(BASE "workers = 2;\n" ONE_LISTENER STATS);
    int port = echod_metrics_port(e);
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = client4(port);
        send_all(fds[i], GET_METRICS, strlen(GET_METRICS));
    }
    struct reply first;
    for (int i = 0; i < N; i++) {
        struct reply r;
        read_reply(fds[i], WAIT_MS, &r);
        close(fds[i]);
        if (r.status != 200)
            fail_msg("client %d of %d: status %d", i + 1, N, r.status);
        expect_answer(&r, 200, false, 0);
        if (i == 0) {
            check_format(r.body);
            first = r;
            continue;
        }
        assert_string_equal(r.body, first.body);
        reply_free(&r);
    }
    reply_free(&first);
    echod_stop_ok(e);
}

/*
 * The case: an exposition of several hundred kB (280 listeners with
 * long names: 330 kB), asked for by a client that sends 16 KiB of junk after its
 * request head and then reads slowly.  It gets the whole answer, byte for
 * byte the exposition a plain scrape gets, and a FIN: no reset, although
 * the daemon finished writing with the junk unread.
 */
static void test_whole_answer_after_junk(void **state)
{
    (void)state;
    enum { LISTENERS = 280, JUNK = 16384 };
    size_t cap = 128 * 1024, len = 0;
    char *conf = malloc(cap);
    assert_non_null(conf);
    len += (size_t)snprintf(conf + len, cap - len,
                            BASE "workers = 1;\n" STATS "listeners = (\n");
    for (int i = 0; i < LISTENERS; i++)
        len += (size_t)snprintf(
            conf + len, cap - len,
            "  { name = \"listener-%03d-with-a-name-long-enough-to-fill-the-page\"; "
            "listen = [ \"127.0.0.1:0\" ]; }%s\n",
            i, i + 1 < LISTENERS ? "," : "");
    assert_true(len + 8 < cap);
    snprintf(conf + len, cap - len, ");\n");
    struct echod *e = echod_start(conf);
    free(conf);
    int port = echod_metrics_port(e);

    struct reply plain, r;
    scrape(port, &plain);
    if (plain.body_len < 300000)
        fail_msg("the exposition is %zu bytes; the test wants several hundred kB",
                 plain.body_len);

    char *req = malloc(strlen(GET_METRICS) + JUNK);
    assert_non_null(req);
    memcpy(req, GET_METRICS, strlen(GET_METRICS));
    memset(req + strlen(GET_METRICS), 'j', JUNK);
    int fd = client4(port);
    send_all(fd, req, strlen(GET_METRICS) + JUNK);
    free(req);
    sleep_ms(200); /* the daemon writes what it can meanwhile */
    read_reply_paced(fd, WAIT_MS, 8192, 2, &r);
    close(fd);
    if (r.reset)
        fail_msg("reset after %zu bytes of the body, of %zu", r.body_len, plain.body_len);
    expect_answer(&r, 200, false, 0);
    assert_int_equal(r.body_len, plain.body_len);
    if (memcmp(r.body, plain.body, plain.body_len) != 0)
        fail_msg("the answer is not the exposition");
    reply_free(&r);
    reply_free(&plain);
    echod_stop_ok(e);
}

/*
 * The lingering close is bounded in time: a client that sends junk without
 * end after its request head, and one that reads its answer but never
 * closes, each get the whole answer and are closed at the deadline; the
 * first with a reset, once the daemon has stopped reading (past 1 MiB).
 */
static void test_linger_bounds(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE "workers = 1;\n" ONE_LISTENER STATS);
    int port = echod_metrics_port(e);
    int base = echod_fd_count(e);
    struct reply r;
    int64_t t0 = ms_now();
    int quiet = client4(port);
    send_all(quiet, GET_METRICS, strlen(GET_METRICS));
    read_reply(quiet, WAIT_MS, &r);
    expect_answer(&r, 200, false, 0);
    assert_false(r.reset);
    reply_free(&r);

    int fd = client4(port);
    set_nonblocking(fd);
    send_all(fd, GET_METRICS, strlen(GET_METRICS));
    static char junk[65536], got[65536];
    memset(junk, 'j', sizeof(junk));
    size_t sent = 0, received = 0;
    bool fin = false, ended = false;
    int64_t until = ms_now() + DEADLINE_MS + 3000;
    while (!ended && ms_now() < until) {
        /* After the daemon's FIN, only sending: a reset ends it. */
        struct pollfd p = {.fd = fd, .events = (short)((fin ? 0 : POLLIN) | POLLOUT)};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t n = fin ? -1 : recv(fd, got, sizeof(got), MSG_DONTWAIT);
        if (n > 0)
            received += (size_t)n;
        else if (n == 0)
            fin = true;
        else if (!fin && errno != EAGAIN && errno != EINTR)
            ended = true;
        n = send(fd, junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n;
        else if (errno == EPIPE || errno == ECONNRESET)
            ended = true;
    }
    int64_t took = ms_now() - t0;
    close(fd);
    if (!ended)
        fail_msg("still open after %lld ms, %zu bytes sent", (long long)took, sent);
    if (took < DEADLINE_MS - 100 || took > DEADLINE_MS + 1500)
        fail_msg("ended after %lld ms (%zu bytes sent); the deadline is %d ms",
                 (long long)took, sent, DEADLINE_MS);
    if (sent < (size_t)1 << 20)
        fail_msg("only %zu bytes of junk were taken", sent);
    if (!fin || received < strlen("HTTP/1.1 200 OK\r\n"))
        fail_msg("%zu bytes of the answer and %s before the reset", received,
                 fin ? "a FIN" : "no FIN");
    /* The quiet one went at the same deadline. */
    if (!echod_wait_fd_count(e, base, 1000))
        fail_msg("%d descriptors open, expected %d", echod_fd_count(e), base);
    close(quiet);
    echod_stop_ok(e);
}

/* Sends a scrape from address src and reads the answer. */
static void scrape_from(const char *src, int port, struct reply *r)
{
    int fd = connect_from(src, port);
    send_all(fd, GET_METRICS, strlen(GET_METRICS));
    read_reply(fd, WAIT_MS, r);
    close(fd);
}

/* A client from src is closed at once, without a byte. */
static void refused_from(const char *src, int port)
{
    int fd = connect_from(src, port);
    int64_t took = closed_silently(fd, ms_now());
    close(fd);
    if (took > 1000)
        fail_msg("a client from %s was closed after %lld ms, not at once", src,
                 (long long)took);
}

/* Scrapes from src and expects the exposition. */
static void admitted_from(const char *src, int port)
{
    struct reply r;
    scrape_from(src, port, &r);
    if (r.status != 200)
        fail_msg("a scrape from %s: status %d", src, r.status);
    expect_answer(&r, 200, false, 0);
    reply_free(&r);
}

/*
 * stats.allow and stats.deny: deny wins over allow, a non-empty allow
 * admits only its ranges, an empty one everybody; a refused client is
 * closed at once and logged.  A reload changes them for the next clients;
 * one that drops the stats group keeps those the listener started with.
 * (Loopback answers for all of 127.0.0.0/8.)
 */
static void test_allow_deny(void **state)
{
    (void)state;
#define STATS_ACL(acl) "stats = { listen = \"127.0.0.1:0\"; " acl " };\n"
    struct echod *e = echod_start(BASE "workers = 1;\n" ONE_LISTENER STATS_ACL(
        "allow = [ \"127.0.0.0/8\" ]; deny = [ \"127.0.0.1\" ];"));
    int port = echod_metrics_port(e);
    refused_from("127.0.0.1", port);
    echod_must_log(e, "metrics: refused 127.0.0.1:");
    admitted_from("127.0.0.2", port);

    const char *path = echod_conf_path(e);
    conf_rewrite(path, "%s",
                 BASE "workers = 1;\n" ONE_LISTENER STATS_ACL(
                     "allow = [ \"127.0.0.2/32\" ];"));
    echod_signal(e, SIGHUP);
    must_log_n(e, "reloaded ", 1);
    refused_from("127.0.0.1", port);
    refused_from("127.0.0.3", port);
    admitted_from("127.0.0.2", port);

    conf_rewrite(path, "%s",
                 BASE
                 "workers = 1;\n" ONE_LISTENER STATS_ACL("deny = [ \"127.0.0.3\" ];"));
    echod_signal(e, SIGHUP);
    must_log_n(e, "reloaded ", 2);
    admitted_from("127.0.0.1", port);
    refused_from("127.0.0.3", port);

    conf_rewrite(path, "%s", BASE "workers = 1;\n" ONE_LISTENER);
    echod_signal(e, SIGHUP);
    must_log_n(e, "reloaded ", 3);
    refused_from("127.0.0.1", port);
    admitted_from("127.0.0.2", port);
#undef STATS_ACL
    echod_stop_ok(e);
}

/* ---- reloads ----------------------------------------------------------------- */

/*
 * Scrapes follow reloads: a listener added appears, the reload counters
 * count, a failed reload is counted and changes nothing else, and the
 * metrics listener stays where it was (a changed stats address is only
 * warned about).  Scrapes meanwhile, many and during reloads, are all
 * answered.
 */
static void test_reloads(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE "workers = 2;\n" ONE_LISTENER STATS);
    int port = echod_metrics_port(e);
    echod_signal(e, SIGHUP);
    const char *line = echod_must_log(e, "reloaded ");
    char path[1024];
    const char *p = strstr(line, "reloaded ") + strlen("reloaded ");
    snprintf(path, sizeof(path), "%.*s", (int)(strstr(p, ": ") - p), p);

    struct reply r;
    scrape(port, &r);
    assert_int_equal(sample(r.body, "mio_echod_reloads_total"), 1);
    reply_free(&r);

    conf_rewrite(path, "%s",
                 BASE "workers = 2;\n"
                      "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; },\n"
                      "  { name = \"b\"; listen = [ \"127.0.0.1:0\" ]; } );\n"
                      "stats = { listen = \"127.0.0.2:0\"; };\n");
    echod_signal(e, SIGHUP);
    must_log_n(e, "reloaded ", 2);
    echod_must_log(e, "reload: stats changed: it takes effect at the next restart");
    int fd = client4(echod_port(e, "b", 0));
    expect_echo(fd, "to b\n");
    finish(fd);
    echod_must_log(e, "access listener=b ");
    scrape(port, &r);
    check_format(r.body);
    assert_int_equal(sample(r.body, "mio_echod_reloads_total"), 2);
    assert_int_equal(sample(r.body, "mio_echod_connections_total{listener=\"b\"}"), 1);
    assert_int_equal(sample(r.body, "mio_echod_bytes_sent_total{listener=\"b\"}"), 5);
    assert_int_equal(sample(r.body, "mio_echod_connections_total{listener=\"a\"}"), 0);
    reply_free(&r);

    conf_rewrite(
        path, "%s",
        "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; } ) oops\n");
    echod_signal(e, SIGHUP);
    echod_must_log(e, "reload failed: ");
    scrape(port, &r);
    assert_int_equal(sample(r.body, "mio_echod_reload_failures_total"), 1);
    assert_int_equal(sample(r.body, "mio_echod_reloads_total"), 2);
    assert_int_equal(sample(r.body, "mio_echod_connections_total{listener=\"b\"}"), 1);
    reply_free(&r);

    /* Reloads back and forth between one listener and two, scraped
     * meanwhile. */
    static const char *const confs[] = {
        BASE "workers = 2;\n" ONE_LISTENER STATS,
        BASE "workers = 2;\n"
             "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; },\n"
             "  { name = \"c\"; listen = [ \"127.0.0.1:0\" ]; } );\n" STATS,
    };
    for (int i = 0; i < 20; i++) {
        conf_rewrite(path, "%s", confs[(i + 1) % 2]);
        echod_signal(e, SIGHUP);
        for (int k = 0; k < 3; k++) {
            scrape(port, &r);
            reply_free(&r);
        }
        must_log_n(e, "reloaded ", 3 + i);
    }
    scrape(port, &r);
    assert_int_equal(sample(r.body, "mio_echod_reloads_total"), 22);
    assert_null(strstr(r.body, "listener=\"c\""));
    reply_free(&r);
    echod_stop_ok(e);
}

/*
 * What mio_echod_connections_total counts, as its HELP and the page say: a
 * client refused at accept is not in it, one refused over its PROXY header
 * is, and in mio_echod_refused_total too.
 */
static void test_counted_over_proxy_header(void **state)
{
    (void)state;
    struct echod *e = echod_start(
        BASE "workers = 1;\n"
             "listeners = ( { name = \"p\"; listen = [ \"127.0.0.1:0\" ];\n"
             "  accept_proxy = true; deny = [ \"127.0.0.3\" ]; } );\n" STATS);
    int mport = echod_metrics_port(e), port = echod_port(e, "p", 0);
    int fd = connect_from("127.0.0.3", port);
    echod_must_log(e, "listener p: refused 127.0.0.3:");
    assert_true(peer_closed_within(fd, WAIT_MS));
    close(fd);
    fd = client4(port);
    send_all(fd, "HELLO, not a PROXY header\r\n", 27);
    echod_must_log(e, "listener p: refused 127.0.0.1:");
    assert_true(peer_closed_within(fd, WAIT_MS));
    close(fd);
    echod_must_log(e, "access listener=p ");

    struct reply r;
    scrape(mport, &r);
    assert_int_equal(sample(r.body, "mio_echod_connections_total{listener=\"p\"}"), 1);
    assert_int_equal(sample(r.body,
                            "mio_echod_refused_total{listener=\"p\",reason=\"acl\"}"),
                     1);
    assert_int_equal(
        sample(r.body,
               "mio_echod_refused_total{listener=\"p\",reason=\"bad_proxy_header\"}"),
        1);
    const char *help = strstr(r.body, "# HELP mio_echod_connections_total ");
    assert_non_null(help);
    char line[512];
    snprintf(line, sizeof(line), "%.*s", (int)(strchr(help, '\n') - help), help);
    if (strstr(line, "including those refused later over their PROXY header") == NULL ||
        strstr(line, "clients refused at accept are not counted") == NULL)
        fail_msg("the HELP of mio_echod_connections_total: \"%s\"", line);
    reply_free(&r);
    echod_stop_ok(e);
}

/* ---- per upstream, and histograms ---------------------------------------------- */

/* Relays one connection through the listener on `port`: sends len bytes
 * (4096 at most), half-closes and reads to the end; the bytes that came
 * back. */
static size_t relay_once(int port, size_t len)
{
    char buf[4096];
    assert_true(len <= sizeof(buf));
    memset(buf, 'x', len);
    int fd = client4(port);
    send_all(fd, buf, len);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    size_t got = 0;
    enum end how = wait_end(fd, WAIT_MS, &got);
    close(fd);
    if (how != END_EOF)
        fail_msg("a relayed connection ended with %s after %zu bytes", end_name(how),
                 got);
    return got;
}

/* The counters of one upstream address of one listener. */
struct upcount {
    unsigned long long connects, failures, sent, received, open;
};

/* The samples of upstream 127.0.0.1:port of listener l in body. */
static struct upcount upcount(const char *body, const char *l, int port)
{
#define UP_SAMPLE(family)                                                              \
    sample(body,                                                                       \
           "mio_echod_upstream_" family "{listener=\"%s\",upstream=\"127.0.0.1:%d\"}", \
           l, port)
    struct upcount c = {
        .connects = UP_SAMPLE("connects_total"),
        .failures = UP_SAMPLE("connect_failures_total"),
        .sent = UP_SAMPLE("bytes_sent_total"),
        .received = UP_SAMPLE("bytes_received_total"),
        .open = UP_SAMPLE("connections_open"),
    };
    assert_int_equal(UP_SAMPLE("check_failures_total"), 0);
#undef UP_SAMPLE
    return c;
}

/* Expects upstream 127.0.0.1:port of listener l to be in state `want`
 * alone: its sample of that state 1, those of the other three 0. */
static void expect_state(const char *body, const char *l, int port, const char *want)
{
    static const char *const states[] = {"up", "down", "draining", "disabled"};
    for (size_t i = 0; i < 4; i++) {
        unsigned long long v = sample(body,
                                      "mio_echod_upstream_state{listener=\"%s\",upstream="
                                      "\"127.0.0.1:%d\",state=\"%s\"}",
                                      l, port, states[i]);
        if (v != (strcmp(states[i], want) == 0))
            fail_msg("upstream 127.0.0.1:%d of %s: state %s is %llu, expected it %s",
                     port, l, states[i], v, want);
    }
}

/*
 * The per-upstream families after real relayed traffic, one worker so
 * that round-robin alternates.  Six connections of six sizes through "rr"
 * to two upstreams (a sends 10 bytes first, then echoes; b echoes) go 3 and
 * 3, and after each one exactly its upstream's connects and bytes each way
 * went up, by its bytes to the byte; a connection held open is in its
 * upstream's connections_open.  Three connections through "refuse", whose
 * one upstream refuses (fail_timeout 0: never marked), are 3 connects and 3
 * failures.  "fo" names a refusing upstream first, with fail_timeout 60 s:
 * one failure marks it down, and its 4 clients all go to b, which is
 * counted apart from rr's b.  A reload keeps all of it.
 */
static void test_upstream_counters(void **state)
{
    (void)state;
    assert_true(pattern_init(4096, 14)); /* what a sends first */
    struct upsrv *a = up_start(
        &(struct up_conf){.mode = UP_BANNER, .nbytes = 10, .name = "a"});
    struct upsrv *b = up_start(&(struct up_conf){.mode = UP_ECHO, .name = "b"});
    int pa = a->srv.port, pb = b->srv.port;
    int dead = refusing_port(), dead2 = refusing_port();
    struct echod *e = echod_startf(
        BASE
        "workers = 1;\n"
        "listeners = ( { name = \"rr\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "   upstreams = [ \"127.0.0.1:%d\", \"127.0.0.1:%d\" ]; },\n"
        " { name = \"refuse\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "   upstreams = [ \"127.0.0.1:%d\" ]; retries = 0; fail_timeout = 0.0; },\n"
        " { name = \"fo\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "   upstreams = [ \"127.0.0.1:%d\", \"127.0.0.1:%d\" ]; retries = 1;\n"
        "   fail_timeout = 60.0; } );\n" STATS,
        pa, pb, dead, dead2, pb);
    int mport = echod_metrics_port(e), prr = echod_port(e, "rr", 0);
    struct reply r;
    scrape(mport, &r);
    check_format(r.body);
    struct upcount ca = upcount(r.body, "rr", pa), cb = upcount(r.body, "rr", pb);
    assert_int_equal(ca.connects + cb.connects + ca.sent + cb.received, 0);
    expect_state(r.body, "rr", pa, "up");
    reply_free(&r);

    int na = 0, nb = 0;
    for (int i = 0; i < 6; i++) {
        size_t len = 1 + 7 * (size_t)i;
        size_t got = relay_once(prr, len);
        must_log_n(e, "access listener=rr ", i + 1);
        scrape(mport, &r);
        struct upcount xa = upcount(r.body, "rr", pa), xb = upcount(r.body, "rr", pb);
        bool to_a = xa.connects == ca.connects + 1;
        struct upcount *was = to_a ? &ca : &cb, *now = to_a ? &xa : &xb;
        struct upcount *other_was = to_a ? &cb : &ca, *other = to_a ? &xb : &xa;
        if (now->connects != was->connects + 1 || other->connects != other_was->connects)
            fail_msg("connection %d: connects went from %llu and %llu to %llu and %llu",
                     i, ca.connects, cb.connects, xa.connects, xb.connects);
        assert_int_equal(got, len + (to_a ? 10 : 0));
        assert_int_equal(now->sent, was->sent + len);
        assert_int_equal(now->received, was->received + got);
        assert_int_equal(other->sent, other_was->sent);
        assert_int_equal(other->received, other_was->received);
        assert_int_equal(xa.failures + xb.failures + xa.open + xb.open, 0);
        ca = xa;
        cb = xb;
        na += to_a;
        nb += !to_a;
        reply_free(&r);
    }
    assert_int_equal(na, 3);
    assert_int_equal(nb, 3);
    assert_int_equal(ca.sent + cb.sent, 1 + 8 + 15 + 22 + 29 + 36);

    /* One held open: in its upstream's gauge until it ends. */
    int held = client4(prr);
    send_all(held, "h", 1);
    char c;
    recv_exact(held, &c, 1); /* the upstream is there */
    scrape(mport, &r);
    struct upcount ha = upcount(r.body, "rr", pa), hb = upcount(r.body, "rr", pb);
    assert_int_equal(ha.open + hb.open, 1);
    assert_int_equal(ha.open, ha.connects - ca.connects);
    reply_free(&r);
    assert_int_equal(shutdown(held, SHUT_WR), 0);
    assert_int_equal(wait_end(held, WAIT_MS, NULL), END_EOF);
    close(held);
    must_log_n(e, "access listener=rr ", 7);

    int pref = echod_port(e, "refuse", 0);
    for (int i = 0; i < 3; i++) {
        int fd = client4(pref);
        assert_int_not_equal(wait_end(fd, WAIT_MS, NULL), END_NONE);
        close(fd);
    }
    must_log_n(e, "access listener=refuse ", 3);
    int pfo = echod_port(e, "fo", 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(relay_once(pfo, 5), 5);
    must_log_n(e, "access listener=fo ", 4);

    for (int round = 0; round < 2; round++) {
        scrape(mport, &r);
        check_format(r.body);
        const char *body = r.body;
        struct upcount x = upcount(body, "refuse", dead);
        assert_int_equal(x.connects, 3);
        assert_int_equal(x.failures, 3);
        assert_int_equal(x.sent + x.received + x.open, 0);
        expect_state(body, "refuse", dead, "up"); /* fail_timeout 0: never marked */
        assert_int_equal(sample(body,
                                "mio_echod_upstream_failures_total{listener=\"refuse\"}"),
                         3);
        x = upcount(body, "fo", dead2);
        assert_int_equal(x.connects, 1);
        assert_int_equal(x.failures, 1);
        expect_state(body, "fo", dead2, "down");
        x = upcount(body, "fo", pb);
        assert_int_equal(x.connects, 4);
        assert_int_equal(x.sent, 20);
        assert_int_equal(x.received, 20);
        assert_int_equal(x.failures + x.open, 0);
        expect_state(body, "fo", pb, "up");
        /* rr's counts: b's are its own, not fo's too. */
        x = upcount(body, "rr", pb);
        assert_int_equal(x.connects, hb.connects);
        assert_int_equal(x.open, 0);
        x = upcount(body, "rr", pa);
        assert_int_equal(x.connects, ha.connects);
        assert_int_equal(x.sent + upcount(body, "rr", pb).sent, ca.sent + cb.sent + 1);
        reply_free(&r);
        if (round == 0) {
            /* The same configuration again: the addresses stay, and so
             * do their counts and marks. */
            echod_signal(e, SIGHUP);
            echod_must_log(e, "reloaded ");
        }
    }
    echod_stop_ok(e);
    up_stop(a);
    up_stop(b);
    pattern_free();
}

/* Sends `command` to the control socket at path and returns its whole
 * answer (malloc'd), which ends with an empty line. */
static char *control(const char *path, const char *command)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(a.sun_path));
    memcpy(a.sun_path, path, strlen(path));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        fail_msg("connect %s: %s", path, strerror(errno));
    set_timeouts(fd);
    send_all(fd, command, strlen(command));
    send_all(fd, "\n", 1);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    for (int i = 0; i < 10000; i++) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                fail_msg("control %s: recv: %s", command, strerror(errno));
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    if (len < 2 || strcmp(buf + len - 2, "\n\n") != 0)
        fail_msg("control %s: the answer \"%s\" does not end with an empty line", command,
                 buf);
    return buf;
}

/*
 * What operators set on the control socket shows in mio_echod_upstream_state
 * (drain, disable, enable, each answered "ok"); and "show stats" is the
 * exposition without its comment lines, in the format's sample syntax.
 */
static void test_state_from_control_socket(void **state)
{
    (void)state;
    struct upsrv *b = up_start(&(struct up_conf){.mode = UP_ECHO, .name = "b"});
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/control.sock", test_tmpdir());
    struct echod *e = echod_startf(
        BASE
        "workers = 1;\n"
        "listeners = ( { name = \"r\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "   upstreams = [ \"127.0.0.1:%d\" ]; } );\n"
        "control = { path = \"%s\"; };\n" STATS,
        b->srv.port, path);
    int mport = echod_metrics_port(e);
    static const struct {
        const char *verb, *state;
    } steps[] = {{"drain", "draining"}, {"disable", "disabled"}, {"enable", "up"}};
    struct reply r;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "%s upstream r 127.0.0.1:%d", steps[i].verb,
                 b->srv.port);
        char *answer = control(path, cmd);
        if (strncmp(answer, "ok", 2) != 0)
            fail_msg("%s: \"%s\"", cmd, answer);
        free(answer);
        scrape(mport, &r);
        expect_state(r.body, "r", b->srv.port, steps[i].state);
        reply_free(&r);
    }

    assert_int_equal(relay_once(echod_port(e, "r", 0), 3), 3);
    echod_must_log(e, "access listener=r ");
    char *stats = control(path, "show stats");
    stats[strlen(stats) - 1] = '\0'; /* the empty line that ends an answer */
    scrape(mport, &r);
    size_t n = 0;
    for (const char *line = r.body; *line != '\0'; line += strcspn(line, "\n") + 1)
        n += line[0] != '#';
    size_t lines = 0;
    for (const char *line = stats; *line != '\0'; line += strcspn(line, "\n") + 1) {
        if (line[0] == '#' || strchr(line, ' ') == NULL)
            fail_msg("show stats: \"%.*s\" is not a sample", (int)strcspn(line, "\n"),
                     line);
        lines++;
    }
    assert_int_equal(lines, n);
    assert_int_equal(sample(stats,
                            "mio_echod_upstream_bytes_sent_total{listener=\"r\","
                            "upstream=\"127.0.0.1:%d\"}",
                            b->srv.port),
                     3);
    assert_int_equal(sample(stats,
                            "mio_echod_upstream_connect_seconds_count{listener=\"r\"}"),
                     1);
    reply_free(&r);
    free(stats);
    echod_stop_ok(e);
    up_stop(b);
}

/* The value of histogram sample `key` (formatted), a number. */
__attribute__((format(printf, 2, 3))) static double hvalue(const char *body,
                                                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char key[256];
    xvsnprintf(key, sizeof(key), fmt, ap);
    va_end(ap);
    double v = metrics_value(body, key);
    if (isnan(v))
        fail_msg("no sample %s in:\n%s", key, body);
    return v;
}

#define DURATION "mio_echod_connection_duration_seconds"
#define CONNECT "mio_echod_upstream_connect_seconds"

/*
 * The histograms: an echo connection held 0.3 s lands in the duration
 * bucket le="0.5" and not in le="0.1", its _sum between 0.299 and 0.5;
 * five relayed connections are five connects in the relay's connect-time
 * histogram (each well under 5 s on loopback) and five durations; an
 * echo listener has no connect-time histogram; every histogram adds up
 * (check_format).
 */
static void test_histograms(void **state)
{
    (void)state;
    struct upsrv *b = up_start(&(struct up_conf){.mode = UP_ECHO, .name = "b"});
    struct echod *e =
        echod_startf(BASE
                     "workers = 2;\n"
                     "listeners = ( { name = \"e\"; listen = [ \"127.0.0.1:0\" ]; },\n"
                     " { name = \"r\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
                     "   upstreams = [ \"127.0.0.1:%d\" ]; } );\n" STATS,
                     b->srv.port);
    int mport = echod_metrics_port(e);
    struct reply r;
    scrape(mport, &r);
    check_format(r.body);
    assert_true(hvalue(r.body, DURATION "_count{listener=\"e\"}") == 0);
    assert_true(hvalue(r.body, DURATION "_sum{listener=\"e\"}") == 0);
    assert_true(hvalue(r.body, CONNECT "_bucket{listener=\"r\",le=\"+Inf\"}") == 0);
    assert_null(metrics_find(r.body, CONNECT "_count{listener=\"e\"}"));
    reply_free(&r);

    int fd = client4(echod_port(e, "e", 0));
    expect_echo(fd, "held\n");
    sleep_ms(300);
    finish(fd);
    echod_must_log(e, "access listener=e ");
    int pr = echod_port(e, "r", 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(relay_once(pr, 100), 100);
    must_log_n(e, "access listener=r ", 5);

    scrape(mport, &r);
    check_format(r.body);
    const char *body = r.body;
    assert_true(hvalue(body, DURATION "_bucket{listener=\"e\",le=\"0.01\"}") == 0);
    assert_true(hvalue(body, DURATION "_bucket{listener=\"e\",le=\"0.1\"}") == 0);
    assert_true(hvalue(body, DURATION "_bucket{listener=\"e\",le=\"0.5\"}") == 1);
    assert_true(hvalue(body, DURATION "_bucket{listener=\"e\",le=\"3600\"}") == 1);
    assert_true(hvalue(body, DURATION "_bucket{listener=\"e\",le=\"+Inf\"}") == 1);
    assert_true(hvalue(body, DURATION "_count{listener=\"e\"}") == 1);
    double held = hvalue(body, DURATION "_sum{listener=\"e\"}");
    if (held < 0.299 || held >= 0.5)
        fail_msg("a connection held 0.3 s lasted %.6f s", held);
    assert_true(hvalue(body, DURATION "_count{listener=\"r\"}") == 5);
    assert_true(hvalue(body, CONNECT "_count{listener=\"r\"}") == 5);
    assert_true(hvalue(body, CONNECT "_bucket{listener=\"r\",le=\"5\"}") == 5);
    double connects = hvalue(body, CONNECT "_sum{listener=\"r\"}");
    if (connects <= 0 || connects >= 5)
        fail_msg("5 connects on loopback took %.6f s in all", connects);
    assert_null(metrics_find(body, CONNECT "_count{listener=\"e\"}"));
    reply_free(&r);
    echod_stop_ok(e);
    up_stop(b);
}

/*
 * A UDP relay: one flow, a 7-byte datagram answered, ended by its
 * idle_timeout of 0.2 s, is one connect of its upstream with 7 bytes each
 * way, and one duration of 0.2 s and more (le="0.5") in its listener's
 * histogram; a UDP relay has no connect-time histogram.  (A TCP echo
 * listener beside it, for the families every exposition has.)
 */
static void test_udp_upstream_and_flow(void **state)
{
    (void)state;
    struct udpup *u = udpup_start(&(struct udpup_conf){0});
    struct echod *e = echod_startf(
        BASE "workers = 1;\n"
             "listeners = ( { name = \"u\"; protocol = \"udp\"; mode = \"proxy\";\n"
             "   listen = [ \"127.0.0.1:0\" ]; upstreams = [ \"127.0.0.1:%d\" ];\n"
             "   idle_timeout = 0.2; },\n"
             " { name = \"e\"; listen = [ \"127.0.0.1:0\" ]; } );\n" STATS,
        u->port);
    int fd = udp_client4();
    udp_expect_echo(fd, "127.0.0.1", echod_port(e, "u", 0), "seven!\n", 7, WAIT_MS);
    echod_must_log(e, "access listener=u ");
    struct reply r;
    scrape(echod_metrics_port(e), &r);
    check_format(r.body);
    struct upcount x = upcount(r.body, "u", u->port);
    assert_int_equal(x.connects, 1);
    assert_int_equal(x.sent, 7);
    assert_int_equal(x.received, 7);
    assert_int_equal(x.failures + x.open, 0);
    expect_state(r.body, "u", u->port, "up");
    assert_true(hvalue(r.body, DURATION "_bucket{listener=\"u\",le=\"0.1\"}") == 0);
    assert_true(hvalue(r.body, DURATION "_bucket{listener=\"u\",le=\"0.5\"}") == 1);
    assert_true(hvalue(r.body, DURATION "_count{listener=\"u\"}") == 1);
    assert_true(hvalue(r.body, DURATION "_sum{listener=\"u\"}") >= 0.2);
    assert_null(metrics_find(r.body, CONNECT "_count{listener=\"u\"}"));
    reply_free(&r);
    close(fd);
    echod_stop_ok(e);
    udpup_free(u);
}

/* The size of tls_listener()'s text. */
#define TLS_LISTENER_MAX (2 * PATH_MAX + 128)

/* ", { name = \"t\"; ... tls = {...}; }", a TLS listener to add to a
 * listeners list, into buf; "" where the build has no TLS or there are no
 * certificates. */
static void tls_listener(char *buf, size_t len)
{
    buf[0] = '\0';
#ifdef HAVE_TLS
    const struct certs *certs = certs_get();
    if (certs != NULL)
        snprintf(buf, len,
                 ", { name = \"t\"; listen = [ \"127.0.0.1:0\" ];"
                 " tls = { certificate = \"%s\"; key = \"%s\"; }; }",
                 certs->server.cert, certs->server.key);
#else
    (void)len;
#endif
}

/*
 * Prometheus's own reader and lint (promtool check metrics, from Debian's
 * prometheus package, which ./quickstart check installs) take the whole
 * exposition of a daemon with every kind of listener (echo, TCP relay to
 * a live and a refusing upstream, UDP relay, TLS where the build has it)
 * after traffic, without a word.  Skipped when promtool is not installed.
 */
static void test_promtool(void **state)
{
    (void)state;
    struct upsrv *b = up_start(&(struct up_conf){.mode = UP_ECHO, .name = "b"});
    struct udpup *u = udpup_start(&(struct udpup_conf){0});
    int dead = refusing_port();
    char tls[TLS_LISTENER_MAX];
    tls_listener(tls, sizeof(tls));
    struct echod *e = echod_startf(
        BASE
        "workers = 2;\n"
        "listeners = ( { name = \"e\"; listen = [ \"127.0.0.1:0\" ]; },\n"
        " { name = \"r\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "   upstreams = [ \"127.0.0.1:%d\", \"127.0.0.1:%d\" ]; },\n"
        " { name = \"u\"; protocol = \"udp\"; mode = \"proxy\";\n"
        "   listen = [ \"127.0.0.1:0\" ]; upstreams = [ \"127.0.0.1:%d\" ]; }%s );\n" STATS,
        b->srv.port, dead, u->port, tls);
    int fd = client4(echod_port(e, "e", 0));
    expect_echo(fd, "hello\n");
    finish(fd);
    for (int i = 0; i < 4; i++)
        assert_int_equal(relay_once(echod_port(e, "r", 0), 10), 10);
    int ufd = udp_client4();
    udp_expect_echo(ufd, "127.0.0.1", echod_port(e, "u", 0), "udp\n", 4, WAIT_MS);
    must_log_n(e, "access listener=r ", 4);
    struct reply r;
    scrape(echod_metrics_port(e), &r);
    check_format(r.body);
    bool ran = metrics_promtool(r.body);
    reply_free(&r);
    close(ufd);
    echod_stop_ok(e);
    up_stop(b);
    udpup_free(u);
    if (!ran) {
        print_message(
            "    skipped: promtool is not installed (Debian package prometheus; "
            "./quickstart check installs it)\n");
        skip();
    }
}

/* ---- the man page ------------------------------------------------------------ */

/* The whole of file path, NUL-terminated (freed by the caller). */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot read %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* Whether text has a line that starts with `start` and goes on with a
 * space or ends there. */
static bool has_line(const char *text, const char *start)
{
    size_t n = strlen(start);
    for (const char *p = text; (p = strstr(p, start)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && (p[n] == ' ' || p[n] == '\n'))
            return true;
    return false;
}

/*
 * Every family the exposition writes is in METRICS of mio-echod(8)
 * (man/mio-echod.8.in) as an entry ".It Li NAME Pq TYPE" whose text has
 * its HELP as a line of its own and names each of its labels (".Li
 * LABEL"); each reason of mio_echod_refused_total has an ".It Li REASON"
 * there; and every family the page lists is one the exposition writes.  So
 * a metric cannot be added, or its HELP changed, without the page.
 */
static void test_metrics_documented(void **state)
{
    (void)state;
    const char *top = getenv("top_srcdir");
    char path[4096];
    snprintf(path, sizeof(path), "%s/man/mio-echod.8.in",
             top != NULL && top[0] != '\0' ? top : ".");
    char *page = read_file(path);
    char *section = strstr(page, "\n.Sh METRICS\n");
    if (section == NULL)
        fail_msg("%s has no METRICS section", path);
    char *end = strstr(section + 1, "\n.Sh ");
    if (end != NULL)
        end[1] = '\0';

    /* A TLS listener, for the TLS families, where the build has TLS. */
    char tls[TLS_LISTENER_MAX];
    tls_listener(tls, sizeof(tls));
    size_t want_families = NFAMILIES;
    for (size_t i = 0; tls[0] == '\0' && i < NFAMILIES; i++)
        want_families -= families[i].optional &&
                         strstr(families[i].name, "_tls_") != NULL;
    struct echod *e = echod_startf(BASE "workers = 1;\n"
                                        "listeners = ( { name = \"a\"; listen = [ "
                                        "\"127.0.0.1:0\" ]; accept_proxy = true; },"
                                        " { name = \"u\"; protocol = \"udp\"; listen = [ "
                                        "\"127.0.0.1:0\" ]; },"
                                        " { name = \"r\"; listen = [ \"127.0.0.1:0\" ];"
                                        " mode = \"proxy\"; upstreams = [ "
                                        "\"127.0.0.1:9\" ]; }%s );\n" STATS,
                                   tls);
    struct reply r;
    scrape(echod_metrics_port(e), &r);
    echod_stop_ok(e);

    char *entry = NULL, family[128] = "", help[512] = "";
    size_t nfamilies = 0;
    for (char *line = r.body; *line != '\0';) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        char want[700], type[32];
        if (sscanf(line, "# HELP %127s", family) == 1) {
            snprintf(help, sizeof(help), "%s",
                     line + strlen("# HELP ") + strlen(family) + 1);
        } else if (sscanf(line, "# TYPE %*s %31s", type) == 1) {
            snprintf(want, sizeof(want), "\n.It Li %s Pq %s\n", family, type);
            entry = strstr(section, want);
            if (entry == NULL)
                fail_msg("%s: no \"%.*s\" in METRICS", path, (int)strlen(want) - 2,
                         want + 1);
            nfamilies++;
            /* The entry ends at the next family's. */
            char *next = strstr(entry + strlen(want) - 1, "\n.It Li mio_echod_");
            size_t len = next != NULL ? (size_t)(next - entry) + 1 : strlen(entry);
            entry = strndup(entry, len);
            assert_non_null(entry);
            snprintf(want, sizeof(want), "\n%s\n", help);
            if (strstr(entry, want) == NULL)
                fail_msg("%s: the entry of %s does not have its HELP as a line: \"%s\"",
                         path, family, help);
        } else if (line[0] != '#' && strchr(line, '{') != NULL) {
            /* Each label of the sample, and the reason values. */
            for (char *p = strchr(line, '{') + 1; *p != '}' && *p != '\0';) {
                char *eq = strchr(p, '='), *q = eq + 2;
                snprintf(want, sizeof(want), ".Li %.*s", (int)(eq - p), p);
                if (!has_line(entry, want))
                    fail_msg("%s: the entry of %s does not name its label %s", path,
                             family, want + 4);
                while (*q != '"')
                    q += *q == '\\' ? 2 : 1;
                if (strcmp(family, "mio_echod_refused_total") == 0 &&
                    strncmp(p, "reason=", 7) == 0) {
                    snprintf(want, sizeof(want), ".It Li %.*s", (int)(q - eq - 2),
                             eq + 2);
                    if (!has_line(entry, want))
                        fail_msg("%s: reason %s of %s is not described", path, want + 7,
                                 family);
                }
                p = q + 1;
                if (*p == ',')
                    p++;
            }
        }
        if (strncmp(line, "# TYPE ", 7) != 0 && line[0] == '#' && entry != NULL) {
            free(entry);
            entry = NULL;
        }
        *nl = '\n';
        line = nl + 1;
    }
    free(entry);
    if (nfamilies != want_families)
        fail_msg("%zu families in the exposition, the test knows %zu", nfamilies,
                 (size_t)NFAMILIES);

    /* And nothing documented that is not written. */
    size_t listed = 0;
    for (char *p = section; (p = strstr(p, "\n.It Li mio_echod_")) != NULL; p++) {
        char name[128];
        assert_int_equal(sscanf(p + strlen("\n.It Li "), "%127s", name), 1);
        char want[160];
        snprintf(want, sizeof(want), "# TYPE %s ", name);
        if (strstr(r.body, want) == NULL)
            fail_msg("%s documents %s, which the exposition does not write", path, name);
        listed++;
    }
    assert_int_equal(listed, nfamilies);
    reply_free(&r);
    free(page);
}

/* ---- configuration ------------------------------------------------------------- */

/* "mio-echod -t" accepts the forms of stats.listen; a daemon without a
 * stats group serves no metrics. */
static void test_config_ok(void **state)
{
    (void)state;
    static const char *const addrs[] = {
        "127.0.0.1:9107", "[::1]:9107",  "0.0.0.0:9107",
        "[::]:9107",      "127.0.0.1:0", "127.0.0.1:7100",
    };
    char conf[512], out[4096];
    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        snprintf(
            conf, sizeof(conf),
            "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:7101\", \"[::1]:7100\" ]; } );\n"
            "stats = { listen = \"%s\"; };\n",
            addrs[i]);
        const char *path = write_conf(conf);
        int rc = echod_run(out, sizeof(out), "-t", "-c", path, (char *)NULL);
        if (rc != 0 || strstr(out, "configuration OK") == NULL)
            fail_msg("stats.listen = \"%s\": exit %d: %s", addrs[i], rc, out);
    }

    struct echod *e = echod_start(BASE "workers = 1;\n" ONE_LISTENER);
    int fd = client4(echod_port(e, "a", 0));
    expect_echo(fd, "served\n");
    finish(fd);
    echod_must_log(e, "access listener=a ");
    assert_int_equal(echod_count_log(e, "metrics:"), 0);
    echod_stop_ok(e);
}

/* Each mistake in the stats group makes "mio-echod -t" exit 1 with a
 * message at FILE:LINE of the mistake saying what is wrong. */
static void test_config_errors(void **state)
{
    (void)state;
#define L1 "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:7100\" ]; } );\n"
    static const struct conf_error cases[] = {
        {"not a group", L1 "stats = \"127.0.0.1:9107\";\n", 2,
         "stats: expected a group { listen = \"127.0.0.1:9107\"; }, got \"127.0.0.1:9107\""},
        {"a typo of stats", L1 "stat = { listen = \"127.0.0.1:9107\"; };\n", 2,
         "stat: unknown setting (did you mean \"stats\"?)"},
        {"an unknown key",
         L1 "stats = {\n  listen = \"127.0.0.1:9107\";\n  port = 9107;\n};\n", 4,
         "stats.port: unknown setting (known: listen, allow, deny)"},
        {"a typo of listen", L1 "stats = { lisen = \"127.0.0.1:9107\"; };\n", 2,
         "stats.lisen: unknown setting (did you mean \"listen\"?)"},
        {"no listen", L1 "\nstats = { };\n", 3,
         "stats.listen: missing; expected one address"},
        {"a list", L1 "stats = {\n  listen = [ \"127.0.0.1:9107\" ];\n};\n", 3,
         "stats.listen: expected one address as a string like \"127.0.0.1:9107\", got an array"},
        {"a number", L1 "stats = { listen = 9107; };\n", 2,
         "stats.listen: expected one address as a string like \"127.0.0.1:9107\", got 9107"},
        {"*", L1 "stats = { listen = \"*:9107\"; };\n", 2,
         "stats.listen: \"*:9107\": \"*\" is not allowed here"},
        {"a Unix socket",
         L1 "stats = { listen = \"unix:/run/mio-echod/metrics.sock\"; };\n", 2,
         "stats.listen: \"unix:/run/mio-echod/metrics.sock\": a Unix socket is not allowed here"},
        {"a bad port", L1 "stats = { listen = \"127.0.0.1:70000\"; };\n", 2,
         "stats.listen: invalid address \"127.0.0.1:70000\": port \"70000\" out of range"},
        {"no port", L1 "stats = { listen = \"127.0.0.1\"; };\n", 2,
         "stats.listen: invalid address \"127.0.0.1\""},
        {"a host name", L1 "stats = { listen = \"localhost:9107\"; };\n", 2,
         "stats.listen: invalid address \"localhost:9107\": listen addresses must be numeric"},
        {"a listener's address", L1 "stats = { listen = \"127.0.0.1:7100\"; };\n", 2,
         "stats.listen: 127.0.0.1:7100 is already used by listener \"a\" (line 1)"},
        {"a listener's wildcard",
         "listeners = ( { name = \"a\"; listen = [ \"*:7100\" ]; } );\n"
         "stats = { listen = \"[::1]:7100\"; };\n",
         2, "stats.listen: [::1]:7100 overlaps *:7100 of listener \"a\" (line 1)"},
        {"a bad allow",
         L1 "stats = { listen = \"127.0.0.1:9107\";\n  allow = [ \"10.0.0.1/8\" ]; };\n",
         3, "stats.allow.[0]: invalid CIDR \"10.0.0.1/8\": host bits set"},
        {"a deny not a list",
         L1 "stats = { listen = \"127.0.0.1:9107\"; deny = \"10.0.0.0/8\"; };\n", 2,
         "stats.deny: expected a list of strings, got \"10.0.0.0/8\""},
        {"written before the listeners",
         "stats = { listen = \"127.0.0.1:7100\"; };\n"
         "listeners = ( { name = \"a\";\n  listen = [ \"0.0.0.0:7100\" ]; } );\n",
         1,
         "stats.listen: 127.0.0.1:7100 overlaps 0.0.0.0:7100 of listener \"a\" (line 3)"},
    };
#undef L1
    expect_conf_errors(cases, ARRAY_LEN(cases));
}

/* A stats address another socket holds: the daemon does not start; it
 * exits 3 saying which address it cannot listen on. */
static void test_address_in_use(void **state)
{
    (void)state;
    int port;
    int fd = listen_loopback(4, &port);
    char conf[512], out[4096], want[128];
    snprintf(conf, sizeof(conf),
             BASE "workers = 2;\n" ONE_LISTENER
                  "stats = { listen = \"127.0.0.1:%d\"; };\n",
             port);
    const char *path = write_conf(conf);
    int rc = echod_run(out, sizeof(out), "-f", "-c", path, (char *)NULL);
    close(fd);
    if (rc != 3)
        fail_msg("exit %d, expected 3 (%s)", rc, out);
    snprintf(want, sizeof(want),
             "metrics: cannot listen on 127.0.0.1:%d: Address already in use", port);
    if (strstr(out, want) == NULL || strstr(out, " started: ") != NULL)
        fail_msg("expected \"%s\" and no start, got \"%s\"", want, out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_after_traffic),
        cmocka_unit_test(test_head_and_http10),
        cmocka_unit_test(test_request_in_pieces),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_request_line_bound),
        cmocka_unit_test(test_head_bound),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_hundred_clients),
        cmocka_unit_test(test_whole_answer_after_junk),
        cmocka_unit_test(test_linger_bounds),
        cmocka_unit_test(test_allow_deny),
        cmocka_unit_test(test_reloads),
        cmocka_unit_test(test_counted_over_proxy_header),
        cmocka_unit_test_teardown(test_upstream_counters, teardown_all),
        cmocka_unit_test_teardown(test_state_from_control_socket, teardown_all),
        cmocka_unit_test_teardown(test_histograms, teardown_all),
        cmocka_unit_test_teardown(test_udp_upstream_and_flow, teardown_all),
        cmocka_unit_test_teardown(test_promtool, teardown_all),
        cmocka_unit_test(test_metrics_documented),
        cmocka_unit_test(test_config_ok),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_address_in_use),
    };
    /* METRICS_TEST=glob runs only the tests it matches. */
    test_filter_from_env("METRICS_TEST");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
