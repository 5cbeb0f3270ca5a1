/*
 * The log's formats and interim lines (log.format, log.interval), on the
 * real daemon over loopback:
 *
 *   JSON: the access lines of a TCP echo connection, a relay connection
 *   (spliced) and a UDP flow, and the daemon's other lines, each parsed by
 *   Python's json module (tests/common/json-fields.py) and its fields
 *   compared byte for byte with the traffic; a reload that changes the
 *   format;
 *   interim lines: a connection (echo, relay) or flow kept open over
 *   several intervals writes interim lines with its bytes so far, growing,
 *   then its last line with the totals; none with interval 0;
 *   the configuration errors.
 *
 * The JSON of a server name with a quote, a control byte and a byte that
 * is not UTF-8 is checked in test-tls.c, which has a TLS client.
 * Tests that need python3 are skipped without it.  LOG_TEST=glob runs only
 * the tests it matches.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "json.h"

/* How long a test waits for what should happen at once. */
#define WAIT_MS 3000

/* The bytes the tests send: slices of the pattern (pattern.h). */
#define PATTERN_LEN ((size_t)1 << 20)

/* Every daemon here: two workers, the log on stderr with access lines. */
#define DAEMON(format, interval)                                                       \
    "workers = 2;\n"                                                                   \
    "shutdown_timeout = 2.0;\n"                                                        \
    "log = { target = \"stderr\"; level = \"info\"; access = true; format = \"" format \
    "\"; interval = " interval "; };\n"

/* An echo listener "echo" on 127.0.0.1:0, TCP. */
#define ECHO "{ name = \"echo\"; listen = [ \"127.0.0.1:0\" ]; }"
/* A daemon of the echo listener alone. */
#define ECHO_DAEMON(format, interval) \
    DAEMON(format, interval) "listeners = ( " ECHO " );\n"
/* A daemon of a relay "relay" to one upstream: a format, of the relay's
 * other settings (%s, each ended by a blank) and the upstream's port. */
#define RELAY_DAEMON(format, interval)                                                   \
    DAEMON(format, interval)                                                             \
    "listeners = ( { name = \"relay\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\"; " \
    "%supstreams = [ \"127.0.0.1:%d\" ]; } );\n"
/* A daemon of a UDP echo listener "u" idle after `idle` seconds. */
#define UDP_DAEMON(format, interval, idle)                                             \
    DAEMON(format, interval)                                                           \
    "listeners = ( { name = \"u\"; protocol = \"udp\"; listen = [ \"127.0.0.1:0\" ]; " \
    "idle_timeout = " idle "; } );\n"

/* What the fields of every access line start with. */
#define ACCESS "level=s:info\ttype=s:access\t"

/* Skips the test (saying so) when json is NULL: no python3. */
#define NEED_PYTHON(json)                                         \
    do {                                                          \
        if ((json) == NULL) {                                     \
            print_message("    skipped: python3 is not there\n"); \
            skip();                                               \
        }                                                         \
    } while (0)

/* Expects the JSON fields of log line `line` to be exactly those
 * formatted from fmt (json_expect_fields()); skips the test without
 * python3. */
__attribute__((format(printf, 2, 3))) static void expect_fields(const char *line,
                                                                const char *fmt, ...)
{
    char *out = json_fields(&line, 1);
    NEED_PYTHON(out);
    char want[1024];
    va_list ap;
    va_start(ap, fmt);
    xvsnprintf(want, sizeof(want), fmt, ap);
    va_end(ap);
    json_expect_fields(out, want);
    free(out);
}

/* The text access line of echo client port cport with `bytes` each way,
 * up to its duration (waiting for `count` such lines). */
static const char *text_line(struct echod *e, int cport, int bytes, int count)
{
    char needle[160];
    snprintf(needle, sizeof(needle),
             "mio-echod: info: access listener=echo client=127.0.0.1:%d upstream=- in=%d "
             "out=%d duration=",
             cport, bytes, bytes);
    if (!echod_wait_count(e, needle, count, WAIT_MS))
        fail_msg("not %d lines with \"%s\" within %d ms", count, needle, WAIT_MS);
    return echod_log_line(e, needle, count - 1);
}

/* The n-th (from 0) log line of TCP client port cport, or of UDP client
 * cport, waiting up to WAIT_MS for it. */
static const char *client_line(struct echod *e, int cport, int n)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "\"client\":\"127.0.0.1:%d\"", cport);
    if (!echod_wait_count(e, needle, n + 1, WAIT_MS))
        fail_msg("no line %d with %s in the log", n, needle);
    return echod_log_line(e, needle, n);
}

/* Sends pattern bytes [from, to) on fd and reads them back (an echo, or a
 * relay to an echoing upstream). */
static void echo_slice(int fd, size_t from, size_t to)
{
    uint8_t *buf = xmalloc(to - from);
    send_all(fd, pat(from), to - from);
    recv_exact(fd, buf, to - from);
    assert_memory_equal(buf, pat(from), to - from);
    free(buf);
}

/* ---- JSON ------------------------------------------------------------------- */

/* Every line of an echo daemon is one JSON object: its messages
 * {"level","message"}, and the access line of a connection with the bytes
 * it moved. */
static void json_lines_of_a_tcp_echo_connection(void **state)
{
    (void)state;
    struct echod *e = echod_start(ECHO_DAEMON("json", "0"));
    int fd = client4(echod_port(e, "echo", 0));
    int cport = local_port(fd);
    echo_slice(fd, 0, 5000);
    echo_slice(fd, 5000, 5017);
    finish(fd);
    expect_fields(client_line(e, cport, 0),
                  ACCESS
                  "listener=s:echo\tclient=s:127.0.0.1:%d\tupstream=null\tin=i:5017\t"
                  "out=i:5017\tduration=f:*\ttls=null\tsni=null\treason=s:done",
                  cport);
    echod_stop_ok(e);

    /* Every line, from "listening on" to "stopped", is an object. */
    const char *lines[64];
    size_t n = 0;
    while (n < ARRAY_LEN(lines) && (lines[n] = echod_log_line(e, "", (int)n)) != NULL)
        n++;
    assert_true(n >= 5 && n < ARRAY_LEN(lines));
    char *out = json_fields(lines, n);
    char listening[128];
    snprintf(listening, sizeof(listening),
             "level=s:info\tmessage=s:listener echo: listening on 127.0.0.1:%d (echo)",
             echod_port(e, "echo", 0));
    json_expect_fields(json_fields_line(out, 0), listening);
    json_expect_fields(json_fields_line(out, 1), "level=s:notice\tmessage=s:mio-echod *");
    json_expect_fields(json_fields_line(out, n - 1), "level=s:notice\tmessage=s:stopped");
    assert_null(json_fields_line(out, n));
    free(out);
}

/* A relay's line names its upstream and counts both directions (spliced,
 * the relay's default). */
static void json_line_of_a_relay_connection(void **state)
{
    (void)state;
    struct upsrv *up = up_start(&(struct up_conf){.mode = UP_ECHO});
    struct echod *e = echod_startf(RELAY_DAEMON("json", "0"), "", up->srv.port);
    int fd = client4(echod_port(e, "relay", 0));
    int cport = local_port(fd);
    echo_slice(fd, 0, 300000);
    finish(fd);
    expect_fields(client_line(e, cport, 0),
                  ACCESS
                  "listener=s:relay\tclient=s:127.0.0.1:%d\tupstream=s:127.0.0.1:%d\t"
                  "in=i:300000\tout=i:300000\tduration=f:*\ttls=null\tsni=null\t"
                  "reason=s:done",
                  cport, up->srv.port);
    echod_stop_ok(e);
}

/* A UDP flow's line has its bytes and datagrams each way. */
static void json_line_of_a_udp_flow(void **state)
{
    (void)state;
    struct echod *e = echod_start(UDP_DAEMON("json", "0", "0.3"));
    int port = echod_port(e, "u", 0);
    int fd = udp_client4();
    int cport = local_port(fd);
    static const size_t sizes[] = {5, 1200, 0, 7};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++)
        udp_expect_echo(fd, "127.0.0.1", port, pat(i * 2000), sizes[i], WAIT_MS);
    expect_fields(client_line(e, cport, 0), /* once idle */
                  ACCESS "listener=s:u\tclient=s:127.0.0.1:%d\tupstream=null\tin=i:1212\t"
                         "out=i:1212\tduration=f:*\tdatagrams_in=i:4\tdatagrams_out=i:4\t"
                         "reason=s:idle",
                  cport);
    echod_stop_ok(e);
}

/* A reload that changes log.format changes every line after it, those of
 * connections accepted before too. */
static void reload_changes_the_format(void **state)
{
    (void)state;
    struct echod *e = echod_start(ECHO_DAEMON("text", "0"));
    int port = echod_port(e, "echo", 0);
    int before = client4(port);
    expect_echo(before, "x");
    echod_rewrite_conf(e, ECHO_DAEMON("json", "0"));
    const char *done = "{\"level\":\"notice\",\"message\":\"reloaded ";
    echod_signal(e, SIGHUP);
    if (!echod_wait_count(e, done, 1, WAIT_MS))
        fail_msg("no JSON \"reloaded\" line after SIGHUP");
    int cport = local_port(before);
    finish(before);
    expect_fields(client_line(e, cport, 0),
                  ACCESS "listener=s:echo\tclient=s:127.0.0.1:%d\tupstream=null\tin=i:1\t"
                         "out=i:1\tduration=f:*\ttls=null\tsni=null\treason=s:done",
                  cport);
    /* And back: text again, as before. */
    echod_rewrite_conf(e, ECHO_DAEMON("text", "0"));
    echod_reload_ok(e, WAIT_MS);
    int fd = client4(port);
    cport = local_port(fd);
    expect_echo(fd, "yz");
    finish(fd);
    text_line(e, cport, 2, 1);
    echod_stop_ok(e);
}

/* ---- interim lines -------------------------------------------------------------- */

/*
 * Waits for an interim line of client port cport (upstream: its JSON value)
 * that counts exactly `bytes` each way, and returns it.  Lines written
 * while the bytes moved count fewer: the one after them counts all.
 */
static const char *interim_with(struct echod *e, int cport, const char *upstream,
                                size_t bytes)
{
    char needle[160];
    snprintf(needle, sizeof(needle),
             "\"client\":\"127.0.0.1:%d\",\"upstream\":%s,\"in\":%zu,\"out\":%zu,", cport,
             upstream, bytes, bytes);
    if (!echod_wait_count(e, needle, 1, WAIT_MS))
        fail_msg("no line with %s within %d ms", needle, WAIT_MS);
    const char *line = echod_log_line(e, needle, 0);
    if (strstr(line, "\"reason\":\"interim\"") == NULL)
        fail_msg("not an interim line: %s", line);
    return line;
}

/* The first line of client port cport that is not an interim one: its
 * last (waiting for it). */
static const char *last_line(struct echod *e, int cport)
{
    for (int i = 0; i < 200; i++) {
        const char *line = client_line(e, cport, i);
        if (strstr(line, "\"reason\":\"interim\"") == NULL)
            return line;
    }
    fail_msg("no last line for client port %d", cport);
    return NULL;
}

/*
 * Checks every line of client port cport, parsed: interim lines first,
 * their durations and counts never going back, then one last
 * line; at least `min_interim` interim lines.
 */
static void expect_lines_in_order(struct echod *e, int cport, int min_interim)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "\"client\":\"127.0.0.1:%d\"", cport);
    const char *lines[200];
    int n = echod_count_log(e, needle);
    assert_true(n >= min_interim + 1 && n <= (int)ARRAY_LEN(lines));
    for (int i = 0; i < n; i++)
        lines[i] = echod_log_line(e, needle, i);
    char *out = json_fields(lines, (size_t)n);
    long long last_in = -1, last_out = -1;
    double last_duration = -1;
    for (int i = 0; i < n; i++) {
        const char *f = json_fields_line(out, (size_t)i);
        long long in = atoll(strstr(f, "\tin=i:") + 6);
        long long o = atoll(strstr(f, "\tout=i:") + 7);
        double duration = atof(strstr(f, "\tduration=f:") + 12);
        if (in < last_in || o < last_out || duration < last_duration)
            fail_msg("line %d goes back: %s", i, f);
        last_in = in;
        last_out = o;
        last_duration = duration;
        bool interim = strstr(f, "\treason=s:interim") != NULL;
        if (interim != (i < n - 1))
            fail_msg("line %d of %d %s interim: %s", i, n, interim ? "is" : "is not", f);
    }
    free(out);
}

/*
 * Drives a TCP connection fd (client port cport) through three rounds:
 * each sends and reads back a slice, then waits for an interim line that
 * counts every byte so far both ways.  Then the last line, with the
 * totals.  `head` is what each line's fields start with up to "upstream"
 * (included), `upstream` its JSON value, `tail` what follows the duration
 * up to the reason.
 */
static void interim_rounds(struct echod *e, int fd, int cport, const char *head,
                           const char *upstream, const char *tail)
{
    static const size_t ends[] = {100, 70000, 250000};
    size_t sent = 0;
    for (size_t r = 0; r < ARRAY_LEN(ends); r++) {
        echo_slice(fd, sent, ends[r]);
        sent = ends[r];
        expect_fields(interim_with(e, cport, upstream, sent),
                      "%s\tin=i:%zu\tout=i:%zu\tduration=f:*\t%s\treason=s:interim", head,
                      sent, sent, tail);
    }
    finish(fd);
    expect_fields(last_line(e, cport),
                  "%s\tin=i:%zu\tout=i:%zu\tduration=f:*\t%s\treason=s:done", head, sent,
                  sent, tail);
    expect_lines_in_order(e, cport, 3);
}

/* An echo connection open for several intervals: interim lines with the
 * bytes so far, then its last line. */
static void interim_lines_of_an_echo_connection(void **state)
{
    (void)state;
    struct echod *e = echod_start(ECHO_DAEMON("json", "0.2"));
    int fd = client4(echod_port(e, "echo", 0));
    int cport = local_port(fd);
    char head[256];
    snprintf(head, sizeof(head),
             ACCESS "listener=s:echo\tclient=s:127.0.0.1:%d\tupstream=null", cport);
    interim_rounds(e, fd, cport, head, "null", "tls=null\tsni=null");
    echod_stop_ok(e);
}

/* The same through a relay, spliced and copied: both directions counted
 * as the bytes move, whichever way they move. */
static void interim_lines_of_a_relay_connection(void **state)
{
    (void)state;
    for (int splice = 0; splice < 2; splice++) {
        struct upsrv *up = up_start(&(struct up_conf){.mode = UP_ECHO});
        struct echod *e = echod_startf(RELAY_DAEMON("json", "0.2"),
                                       splice ? "splice = true; " : "splice = false; ",
                                       up->srv.port);
        int fd = client4(echod_port(e, "relay", 0));
        int cport = local_port(fd);
        char head[256];
        snprintf(head, sizeof(head),
                 ACCESS
                 "listener=s:relay\tclient=s:127.0.0.1:%d\tupstream=s:127.0.0.1:%d",
                 cport, up->srv.port);
        char upstream[32];
        snprintf(upstream, sizeof(upstream), "\"127.0.0.1:%d\"", up->srv.port);
        interim_rounds(e, fd, cport, head, upstream, "tls=null\tsni=null");
        echod_stop_ok(e);
        up_stop(up);
    }
}

/* A UDP flow open for several intervals: interim lines with its bytes and
 * datagrams so far, then its last line once idle. */
static void interim_lines_of_a_udp_flow(void **state)
{
    (void)state;
    struct echod *e = echod_start(UDP_DAEMON("json", "0.2", "1.5"));
    int port = echod_port(e, "u", 0);
    int fd = udp_client4();
    int cport = local_port(fd);
    static const size_t sizes[] = {10, 1000, 30000};
    size_t bytes = 0;
    for (size_t r = 0; r < ARRAY_LEN(sizes); r++) {
        udp_expect_echo(fd, "127.0.0.1", port, pat(r * 40000), sizes[r], WAIT_MS);
        bytes += sizes[r];
        expect_fields(interim_with(e, cport, "null", bytes),
                      ACCESS
                      "listener=s:u\tclient=s:127.0.0.1:%d\tupstream=null\tin=i:%zu\t"
                      "out=i:%zu\tduration=f:*\tdatagrams_in=i:%zu\t"
                      "datagrams_out=i:%zu\treason=s:interim",
                      cport, bytes, bytes, r + 1, r + 1);
    }
    /* Idle: more interim lines, then the last one. */
    expect_fields(last_line(e, cport),
                  ACCESS "listener=s:u\tclient=s:127.0.0.1:%d\tupstream=null\tin=i:%zu\t"
                         "out=i:%zu\tduration=f:*\tdatagrams_in=i:3\tdatagrams_out=i:3\t"
                         "reason=s:idle",
                  cport, bytes, bytes);
    expect_lines_in_order(e, cport, 3);
    echod_stop_ok(e);
}

/* Text lines get interim lines too; interval 0 writes none; a connection
 * that ends before its first interval writes only its last line. */
static void interim_lines_in_text_and_none_by_default(void **state)
{
    (void)state;
    struct echod *e = echod_start(ECHO_DAEMON("text", "0.1"));
    int port = echod_port(e, "echo", 0);
    int fd = client4(port);
    int cport = local_port(fd);
    expect_echo(fd, "abc");
    expect_access_reason(text_line(e, cport, 3, 2), "interim");
    finish(fd);
    int quick = client4(port);
    int qport = local_port(quick);
    finish(quick);
    char needle[64];
    snprintf(needle, sizeof(needle), "client=127.0.0.1:%d ", qport);
    expect_access_reason(echod_must_log(e, "%s", needle), "done");
    sleep_ms(300);
    CHECK_EQ(echod_count_log(e, needle), 1);
    echod_stop_ok(e);

    e = echod_start(ECHO_DAEMON("text", "0"));
    fd = client4(echod_port(e, "echo", 0));
    expect_echo(fd, "abc");
    sleep_ms(500);
    CHECK_EQ(echod_count_log(e, "reason=interim"), 0);
    finish(fd);
    echod_must_log(e, "reason=done");
    echod_stop_ok(e);
}

/* ---- configuration errors ----------------------------------------------------- */

static void config_errors(void **state)
{
    (void)state;
    expect_conf_error("format",
                      "log = {\n  format = \"yaml\";\n};\nlisteners = ( " ECHO " );\n", 2,
                      "log.format: expected text or json, got \"yaml\"");
    expect_conf_error("format type",
                      "log = { format = 1; };\nlisteners = ( " ECHO " );\n", 1,
                      "log.format: expected text or json, got 1");
    expect_conf_error(
        "negative interval",
        "log = {\n  access = true;\n  interval = -1;\n};\nlisteners = ( " ECHO " );\n", 3,
        "log.interval: -1 out of range 0-86400 seconds");
    expect_conf_error("interval too long",
                      "log = { interval = 90000; };\nlisteners = ( " ECHO " );\n", 1,
                      "log.interval: 90000 out of range 0-86400 seconds");
    expect_conf_error("interval type",
                      "log = { interval = \"1s\"; };\nlisteners = ( " ECHO " );\n", 1,
                      "log.interval: expected a number of seconds, got \"1s\"");
}

static int setup_group(void **state)
{
    (void)state;
    return setup_sigpipe_and_pattern(PATTERN_LEN, 20261203);
}

#define TEST(f) cmocka_unit_test_teardown(f, teardown_all)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(json_lines_of_a_tcp_echo_connection),
        TEST(json_line_of_a_relay_connection),
        TEST(json_line_of_a_udp_flow),
        TEST(reload_changes_the_format),
        TEST(interim_lines_of_an_echo_connection),
        TEST(interim_lines_of_a_relay_connection),
        TEST(interim_lines_of_a_udp_flow),
        TEST(interim_lines_in_text_and_none_by_default),
        TEST(config_errors),
    };
    test_filter_from_env("LOG_TEST");
    return cmocka_run_group_tests(tests, setup_group, teardown_pattern);
}
