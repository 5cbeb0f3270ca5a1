/*
 * Draining behind a balancer (issue 15), against the real daemon: GET and
 * HEAD /health on the stats listener answer 200 ok while serving and 503
 * draining from the moment a drain starts; with drain_delay the daemon
 * keeps accepting and serving new clients for that long after SIGTERM (or
 * the control socket's drain), then refuses them while its open
 * connections drain; with drain_delay 0 it refuses at once, as before.  A
 * SIGTERM during the delay stops accepting at once, one more closes every
 * connection.  stats.allow/deny apply to /health; the 404 text names both
 * paths; bad drain_delay values are refused naming file:line.  Every wait
 * is bounded.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define BASE                    \
    "workers = 2;\n"            \
    "shutdown_timeout = 2.0;\n" \
    "log = { target = \"stderr\"; level = \"info\"; access = true; };\n"
#define STATS "stats = { listen = \"127.0.0.1:0\"; };\n"
#define ECHO "listeners = ( { name = \"e\"; listen = [ \"127.0.0.1:0\" ]; } );\n"
#define CONTROL "control = { path = \"@DIR@/control.sock\"; };\n"

/* How long a state the daemon reaches on its own may take to show. */
#define SETTLE_MS 3000

/* An HTTP answer: its status, the body (NUL-ended) and its length. */
struct answer {
    int status;
    char head[2048];
    char body[2048];
    size_t body_len;
};

/* Sends `req` to 127.0.0.1:port from `src` (NULL: any) and reads the
 * answer to its end (5 s at most, the sockets' timeouts). */
static void http(const char *src, int port, const char *req, struct answer *a)
{
    int fd = src != NULL ? connect_from(src, port) : client4(port);
    send_all(fd, req, strlen(req));
    char buf[4096];
    size_t len = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail_msg("reading the answer to %.30s: %s", req, strerror(errno));
        if (n == 0 || len + (size_t)n >= sizeof(buf) - 1) {
            len += (size_t)(n > 0 ? n : 0);
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    memset(a, 0, sizeof(*a));
    char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL || sscanf(buf, "HTTP/1.1 %d ", &a->status) != 1)
        fail_msg("not an HTTP answer to %.30s: [%s]", req, buf);
    snprintf(a->head, sizeof(a->head), "%.*s", (int)(end - buf), buf);
    a->body_len = len - (size_t)(end + 4 - buf);
    snprintf(a->body, sizeof(a->body), "%s", end + 4);
}

/* Fails unless GET /health answers `status` with `body`, and HEAD the
 * same status, head and no body. */
static void expect_health(int port, int status, const char *body)
{
    struct answer get, head;
    http(NULL, port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &get);
    if (get.status != status || strcmp(get.body, body) != 0)
        fail_msg("GET /health: %d [%s], expected %d [%s]", get.status, get.body, status,
                 body);
    if (strstr(get.head, "\r\nContent-Type: text/plain; charset=utf-8") == NULL)
        fail_msg("GET /health: not text/plain: [%s]", get.head);
    char length[64];
    snprintf(length, sizeof(length), "\r\nContent-Length: %zu", strlen(body));
    if (strstr(get.head, length) == NULL)
        fail_msg("GET /health: no \"%s\" in [%s]", length + 2, get.head);
    http(NULL, port, "HEAD /health HTTP/1.0\r\n\r\n", &head);
    if (head.status != status || head.body_len != 0 || strstr(head.head, length) == NULL)
        fail_msg("HEAD /health: %d, %zu bytes of body, head [%s]; expected %d, none",
                 head.status, head.body_len, head.head, status);
}

/* The value of mio_echod_draining now. */
static long long draining_gauge(struct echod *e)
{
    char *body = metrics_scrape(e, SETTLE_MS);
    long long v = metrics_sample(body, "mio_echod_draining");
    free(body);
    return v;
}

/* A new client of port, echoed: the daemon accepts and serves. */
static int served_client(int port)
{
    int fd = connect_to(port);
    if (fd < 0)
        fail_msg("a new client was not accepted: %s", strerror(errno));
    track_fd(fd);
    expect_echo(fd, "while draining");
    return fd;
}

/* Waits (up to SETTLE_MS) until a new client of port is refused. */
static void refused_within(int port)
{
    int64_t t0 = ms_now();
    for (;;) {
        int fd = connect_to(port);
        if (fd < 0 && errno == ECONNREFUSED)
            return;
        if (fd >= 0)
            close(fd);
        if (ms_now() - t0 > SETTLE_MS)
            fail_msg("new clients still accepted %d ms after accepting stopped",
                     SETTLE_MS);
        sleep_ms(20);
    }
}

/* Waits up to ms for the daemon to exit; its exit status. */
static int exited_within(struct echod *e, int ms)
{
    int64_t t0 = ms_now();
    while (echod_alive(e)) {
        if (ms_now() - t0 > ms)
            fail_msg("the daemon did not exit within %d ms", ms);
        sleep_ms(20);
    }
    return exit_code(echod_status(e));
}

/*
 * drain_delay = 1.0: /health says 200 ok, then 503 draining from SIGTERM
 * on (and mio_echod_draining 1); a client that connects during the delay
 * is accepted and served; once the delay is over new clients are refused
 * while both open connections still echo; once they close the daemon exits
 * 0 well before shutdown_timeout, which counts from then.
 */
static void delay_keeps_accepting(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE "drain_delay = 1.0;\n" ECHO STATS);
    int port = echod_port(e, "e", 0), mport = echod_metrics_port(e);
    expect_health(mport, 200, "ok\n");
    assert_int_equal(draining_gauge(e), 0);
    int before = served_client(port);

    int64_t t0 = ms_now();
    echod_signal(e, SIGTERM);
    echod_must_log(e, "SIGTERM: draining: still accepting for 1000 ms (drain_delay)");
    int during = served_client(port);
    int64_t accepted_at = ms_now() - t0;
    if (accepted_at >= 1000)
        fail_msg("the test was too slow: the client came %lld ms after SIGTERM",
                 (long long)accepted_at);
    expect_health(mport, 503, "draining\n");
    assert_int_equal(draining_gauge(e), 1);
    assert_int_equal(echod_count_log(e, "no longer accepting"), 0);

    assert_non_null(echod_wait_log(
        e,
        "drain_delay over: no longer accepting; draining 2 connections for up to 2000 ms",
        SETTLE_MS));
    int64_t stopped_at = ms_now() - t0;
    if (stopped_at < 900)
        fail_msg("accepting stopped %lld ms after SIGTERM, before drain_delay",
                 (long long)stopped_at);
    refused_within(port);
    expect_health(mport, 503, "draining\n");
    expect_echo(before, "still served");
    expect_echo(during, "still served");
    close_tracked(before);
    close_tracked(during);
    assert_int_equal(exited_within(e, SETTLE_MS), 0);
    assert_int_equal(echod_count_log(e, "shutdown_timeout: closing"), 0);
    print_message(
        "a client accepted %lld ms after SIGTERM, accepting stopped after %lld ms\n",
        (long long)accepted_at, (long long)stopped_at);
}

/* drain_delay 0 (the default): /health answers 503 and new clients are
 * refused at once after SIGTERM; the open connection drains. */
static void no_delay_refuses_at_once(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE ECHO STATS);
    int port = echod_port(e, "e", 0), mport = echod_metrics_port(e);
    expect_health(mport, 200, "ok\n");
    int open = served_client(port);
    echod_signal(e, SIGTERM);
    echod_must_log(e, "SIGTERM: no longer accepting; draining 1 connections");
    refused_within(port);
    expect_health(mport, 503, "draining\n");
    assert_int_equal(draining_gauge(e), 1);
    assert_int_equal(echod_count_log(e, "still accepting"), 0);
    expect_echo(open, "still served");
    close_tracked(open);
    assert_int_equal(exited_within(e, SETTLE_MS), 0);
}

/* A SIGTERM during drain_delay stops accepting at once; one more closes
 * every connection; a SIGHUP from the start of the drain is not served. */
static void second_and_third_sigterm(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE "drain_delay = 60;\n" ECHO STATS);
    int port = echod_port(e, "e", 0), mport = echod_metrics_port(e);
    echod_signal(e, SIGTERM);
    echod_must_log(e, "SIGTERM: draining: still accepting for 60000 ms");
    int open = served_client(port);
    echod_signal(e, SIGHUP);
    echod_must_log(e, "SIGHUP: draining, not reloading");
    int64_t t0 = ms_now();
    echod_signal(e, SIGTERM);
    echod_must_log(e, "SIGTERM: no longer accepting; draining 1 connections");
    refused_within(port);
    if (ms_now() - t0 > 2000)
        fail_msg("the second SIGTERM took %lld ms to stop accepting",
                 (long long)(ms_now() - t0));
    expect_health(mport, 503, "draining\n");
    expect_echo(open, "still served");
    echod_signal(e, SIGTERM);
    echod_must_log(e, "SIGTERM while stopping: closing every connection now");
    enum end how = wait_end(open, SETTLE_MS, NULL);
    if (how != END_EOF && how != END_RESET)
        fail_msg("the open connection was not closed: %s", end_name(how));
    close_tracked(open);
    assert_int_equal(exited_within(e, SETTLE_MS), 0);
}

/*
 * The control socket's drain starts the same drain: it answers what will
 * happen, is logged with the uid, /health answers 503 at once; new clients
 * are served during the delay and refused after it; asked again it is an
 * error (already draining, then already stopping), and it never hastens
 * the drain.  With drain_delay 0, through mio-echodctl, accepting stops at
 * once.
 */
static void drain_command(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE "drain_delay = 1.0;\n" ECHO STATS CONTROL);
    int port = echod_port(e, "e", 0), mport = echod_metrics_port(e);
    char sock[4096];
    snprintf(sock, sizeof(sock), "%s", echod_conf_path(e));
    strcpy(strrchr(sock, '/') + 1, "control.sock");
    int open = served_client(port);
    expect_health(mport, 200, "ok\n");

    int64_t t0 = ms_now();
    char *got = ctl_ask_path(sock, "drain");
    assert_string_equal(got,
                        "ok: draining: accepting for 1 s more, then 1 connections get "
                        "up to 2 s\n\n");
    free(got);
    int during = served_client(port);
    if (ms_now() - t0 >= 1000)
        fail_msg("the test was too slow: the client came %lld ms after drain",
                 (long long)(ms_now() - t0));
    echod_must_log(e, "control: uid %u: drain", (unsigned)getuid());
    echod_must_log(e, "drain: draining: still accepting for 1000 ms");
    expect_health(mport, 503, "draining\n");
    got = ctl_ask_path(sock, "drain");
    assert_string_equal(got, "error: already draining\n\n");
    free(got);
    got = ctl_ask_path(sock, "reload");
    assert_string_equal(
        got, "error: reload failed: the daemon is draining: not reloading\n\n");
    free(got);
    echod_must_log(e, "drain_delay over: no longer accepting; draining 2 connections");
    refused_within(port);
    got = ctl_ask_path(sock, "drain");
    assert_string_equal(got, "error: already stopping: no longer accepting\n\n");
    free(got);
    expect_echo(open, "still served");
    expect_echo(during, "still served");
    close_tracked(open);
    close_tracked(during);
    assert_int_equal(exited_within(e, SETTLE_MS), 0);
    assert_int_equal(echod_count_log(e, "closing every connection"), 0);

    e = echod_start(BASE ECHO STATS CONTROL);
    port = echod_port(e, "e", 0);
    mport = echod_metrics_port(e);
    snprintf(sock, sizeof(sock), "%s", echod_conf_path(e));
    strcpy(strrchr(sock, '/') + 1, "control.sock");
    struct ctl_run r;
    ctl_run(&r, "-S", sock, "drain", NULL);
    ctl_expect(&r, 0, "ok: draining: no longer accepting; 0 connections get up to 2 s\n",
               "");
    echod_must_log(e, "drain: no longer accepting; draining 0 connections");
    assert_int_equal(exited_within(e, SETTLE_MS), 0);
}

/* stats.allow/deny apply to /health as to /metrics; other targets get a
 * 404 naming both paths; other methods 405. */
static void health_access_and_errors(void **state)
{
    (void)state;
    struct echod *e = echod_start(BASE ECHO "stats = { listen = \"127.0.0.1:0\"; "
                                            "allow = [ \"127.0.0.0/8\" ]; "
                                            "deny = [ \"127.0.0.1\" ]; };\n");
    int mport = echod_metrics_port(e);
    int fd = connect_from("127.0.0.1", mport);
    enum end how = wait_end(fd, SETTLE_MS, NULL);
    close(fd);
    if (how != END_EOF && how != END_RESET)
        fail_msg("a denied client was not closed: %s", end_name(how));
    echod_must_log(e, "metrics: refused 127.0.0.1:");

    struct answer a;
    http("127.0.0.2", mport, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &a);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "ok\n");
    static const char *const not_found[] = {
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /health?full=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(not_found) / sizeof(not_found[0]); i++) {
        http("127.0.0.2", mport, not_found[i], &a);
        if (a.status != 404 ||
            strcmp(a.body,
                   "404 Not Found: only /metrics and /health are served here\n") != 0)
            fail_msg("%.20s: %d [%s]", not_found[i], a.status, a.body);
    }
    http("127.0.0.2", mport, "POST /health HTTP/1.1\r\nHost: x\r\n\r\n", &a);
    assert_int_equal(a.status, 405);
    echod_stop_ok(e);
}

/* A bad drain_delay is refused by -t (and at start), naming file:line. */
static void config_errors(void **state)
{
    (void)state;
    static const struct {
        const char *value, *says;
    } cases[] = {
        {"-1.0", "drain_delay: -1.0 out of range 0-3600 seconds"},
        {"3601", "drain_delay: 3601 out of range 0-3600 seconds"},
        {"\"5s\"", "drain_delay: expected a number of seconds, got \"5s\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char conf[512], out[4096], want[600];
        snprintf(conf, sizeof(conf), "workers = 1;\ndrain_delay = %s;\n" ECHO,
                 cases[i].value);
        const char *path = write_conf(conf);
        int status = echod_run(out, sizeof(out), "-t", "-c", path, NULL);
        snprintf(want, sizeof(want), "%s:2: %s", path, cases[i].says);
        if (status != 1 || strstr(out, want) == NULL)
            fail_msg("drain_delay = %s: exit %d, [%s]; expected 1 and \"%s\"",
                     cases[i].value, status, out, want);
    }
    char out[4096];
    const char *path = write_conf("drain_delay = 2.5;\n" ECHO);
    assert_int_equal(echod_run(out, sizeof(out), "-t", "-c", path, NULL), 0);
}

#define TEST(f) cmocka_unit_test_teardown(f, teardown_all)

int main(void)
{
    /* DRAIN_TEST=glob runs only the tests it matches. */
    test_filter_from_env("DRAIN_TEST");
    const struct CMUnitTest tests[] = {
        TEST(delay_keeps_accepting),    TEST(no_delay_refuses_at_once),
        TEST(second_and_third_sigterm), TEST(drain_command),
        TEST(health_access_and_errors), TEST(config_errors),
    };
    return cmocka_run_group_tests(tests, setup_ignore_sigpipe, NULL);
}
