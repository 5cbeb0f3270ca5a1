/*
 * Active health checks (issue 14), end to end on the real daemon over
 * loopback, against upstreams written here:
 *
 *   an upstream that dies is marked down by checks before a client is sent
 *   there: zero failed clients with checks, where passive health alone
 *   (the same scenario without them) fails some;
 *   fall and rise: results in a row, each change logged once;
 *   send and expect: the right answer up, a wrong one, a closed connection
 *   and silence (the timeout) down, and a wrong one put right up again;
 *   backups: they serve once every primary is down by checks, and new
 *   clients go back to a primary that comes up;
 *   UDP: send/expect against an echo and a non-echo upstream, any answer
 *   without expect, and a closed port down by ICMP;
 *   a reload keeps an address's state; checks turned off clear it;
 *   the configuration errors (-t).
 *
 * The test upstreams are test servers (tserver.h) whose connections do
 * what a mode says (echo, answer +PONG or -ERR, a FIN, nothing), the
 * modes of their first connections set in advance, so that a sequence of
 * check results is exact.  HEALTH_TEST=glob runs only the tests it
 * matches.
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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* How long a test waits for what should happen soon (sanitized daemons
 * are slower). */
#define WAIT_MS (SANITIZED ? 6000 : 3000)

/* The interval and timeout of most checks here: short, so that the tests
 * are quick; longer under sanitizers, where a check that should pass
 * could take longer. */
#define QUICK \
    (SANITIZED ? "interval = 0.5; timeout = 0.5;" : "interval = 0.2; timeout = 0.2;")

/* Every daemon here: two workers, the log on stderr. */
#define BASE                    \
    "workers = 2;\n"            \
    "shutdown_timeout = 0.2;\n" \
    "log = { target = \"stderr\"; level = \"info\"; };\n"

/* ---- test upstreams ------------------------------------------------------------- */

/* What a connection of a test upstream does. */
enum hmode {
    H_ECHO,   /* sends back what it receives */
    H_PONG,   /* answers "+PONG\r\n" to the first bytes it receives */
    H_WRONG,  /* answers "-ERR\r\n" instead */
    H_FIN,    /* shuts its write side at once (a FIN), reads to the end */
    H_SILENT, /* reads and never answers */
};

#define SCRIPT_MAX 32

struct hsrv {
    struct tserver srv;
    atomic_int mode;               /* of the connections after the script */
    enum hmode script[SCRIPT_MAX]; /* the modes of the first connections */
    int nscript;
    atomic_int served;      /* connections that sent a byte */
    atomic_int pongs, errs; /* answers sent */
};

struct hconn {
    struct hsrv *h;
    int fd;
    enum hmode mode;
    bool answered, eof, counted;
    char out[4096];
    size_t len, off;
};

/* The test upstreams running (teardown stops them). */
static struct hsrv *servers[16];

/* A connection accepted: its mode, from the script or the server's. */
static void *h_open(struct tserver *s, int fd)
{
    struct hsrv *h = (struct hsrv *)s;
    struct hconn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    int k = atomic_load(&s->accepted); /* this one's number: counted after */
    c->h = h;
    c->fd = fd;
    c->mode = k < h->nscript ? h->script[k] : (enum hmode)atomic_load(&h->mode);
    if (c->mode == H_FIN)
        (void)shutdown(fd, SHUT_WR);
    return c;
}

/* What a connection waits for: input while it has room, output while it
 * has some. */
static short h_events(struct tserver *s, void *conn)
{
    (void)s;
    struct hconn *c = conn;
    return (short)((c->eof || c->len == sizeof(c->out) ? 0 : POLLIN) |
                   (c->off < c->len ? POLLOUT : 0));
}

/* Queues bytes to send. */
static void h_queue(struct hconn *c, const char *b, size_t n)
{
    if (n > sizeof(c->out) - c->len)
        n = sizeof(c->out) - c->len;
    memcpy(c->out + c->len, b, n);
    c->len += n;
}

/* Reads what came and answers as the mode says; true when the
 * connection is over. */
static bool h_service(struct tserver *s, void *conn)
{
    (void)s;
    struct hconn *c = conn;
    while (!c->eof && c->len < sizeof(c->out)) {
        char buf[2048];
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0) {
            c->eof = true;
        } else if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            return true; /* a reset: over */
        } else {
            if (!c->counted)
                atomic_fetch_add(&c->h->served, 1);
            c->counted = true;
            if (c->mode == H_ECHO) {
                h_queue(c, buf, (size_t)n);
            } else if ((c->mode == H_PONG || c->mode == H_WRONG) && !c->answered) {
                c->answered = true;
                atomic_fetch_add(c->mode == H_PONG ? &c->h->pongs : &c->h->errs, 1);
                h_queue(c, c->mode == H_PONG ? "+PONG\r\n" : "-ERR\r\n",
                        c->mode == H_PONG ? 7 : 6);
            }
        }
    }
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->out + c->off, c->len - c->off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
            return errno != EAGAIN && errno != EINTR;
        c->off += (size_t)n;
    }
    c->off = c->len = 0;
    return c->eof;
}

/* Frees a connection (the server closes its socket). */
static void h_free(struct tserver *s, void *conn)
{
    (void)s;
    free(conn);
}

/* Starts a test upstream on 127.0.0.1:port (0: any) whose first
 * connections take the modes of script[0..n), the others `mode`. */
static struct hsrv *hsrv_script(int port, enum hmode mode, const enum hmode *script,
                                int n)
{
    struct hsrv *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    assert_true(n <= SCRIPT_MAX);
    atomic_init(&h->mode, (int)mode);
    for (int i = 0; i < n; i++)
        h->script[i] = script[i];
    h->nscript = n;
    h->srv.max = 64;
    h->srv.conn_open = h_open;
    h->srv.conn_events = h_events;
    h->srv.conn_service = h_service;
    h->srv.conn_free = h_free;
    size_t i = 0;
    while (i < ARRAY_LEN(servers) && servers[i] != NULL)
        i++;
    assert_true(i < ARRAY_LEN(servers));
    servers[i] = h;
    tserver_start_on(&h->srv, 64, port);
    return h;
}

/* A test upstream whose connections all take `mode`. */
static struct hsrv *hsrv_start(int port, enum hmode mode)
{
    return hsrv_script(port, mode, NULL, 0);
}

/* Stops a test upstream (its port then refuses) and frees it. */
static void hsrv_stop(struct hsrv *h)
{
    for (size_t i = 0; i < ARRAY_LEN(servers); i++)
        if (servers[i] == h)
            servers[i] = NULL;
    tserver_stop(&h->srv);
    free(h);
}

/* A test's teardown: the test upstreams, then the harness's. */
static int teardown(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(servers); i++)
        if (servers[i] != NULL)
            hsrv_stop(servers[i]);
    return teardown_all(state);
}

/* ---- clients and the log ------------------------------------------------------- */

/* Whether a client of the relay on port gets its bytes back (through an
 * echo upstream). */
static bool client_ok(int port)
{
    int fd = connect_to(port);
    if (fd < 0)
        return false;
    track_fd(fd);
    static const char msg[] = "hello, upstream";
    bool ok = send(fd, msg, sizeof(msg), MSG_NOSIGNAL) == (ssize_t)sizeof(msg);
    char back[sizeof(msg)];
    size_t got = 0;
    while (ok && got < sizeof(back)) {
        ssize_t n = recv(fd, back + got, sizeof(back) - got, 0);
        ok = n > 0;
        got += ok ? (size_t)n : 0;
    }
    ok = ok && memcmp(back, msg, sizeof(msg)) == 0;
    close_tracked(fd);
    return ok;
}

/* How many of n clients in a row fail. */
static int failed_clients(int port, int n)
{
    int failed = 0;
    for (int i = 0; i < n; i++)
        failed += !client_ok(port);
    return failed;
}

/* Waits WAIT_MS for a log line with the formatted needle; fails the test
 * without one.  Returns it. */
__attribute__((format(printf, 2, 3))) static const char *must_log(struct echod *e,
                                                                  const char *fmt, ...)
{
    char needle[512];
    va_list ap;
    va_start(ap, fmt);
    xvsnprintf(needle, sizeof(needle), fmt, ap);
    va_end(ap);
    const char *line = echod_wait_log(e, needle, WAIT_MS);
    if (line == NULL)
        fail_msg("no log line \"%s\" within %d ms", needle, WAIT_MS);
    print_message("    %s\n", line);
    return line;
}

/* How many log lines so far say that upstream 127.0.0.1:port is `state`
 * ("up" or "down"). */
static int count_changes(struct echod *e, int port, const char *state)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "upstream 127.0.0.1:%d is %s", port, state);
    return echod_count_log(e, needle);
}

/* Waits up to ms for the counter to reach at least want. */
static bool wait_at_least(atomic_int *counter, int want, int ms)
{
    int64_t until = ms_now() + ms;
    while (atomic_load(counter) < want && ms_now() < until)
        sleep_ms(5);
    return atomic_load(counter) >= want;
}

/* ---- an upstream that dies ------------------------------------------------------- */

/*
 * Two echo upstreams behind a relay that never retries; a few clients
 * pass; one upstream dies; then (with checks: once the log says it is
 * down; without: after as long) 20 clients.  Returns how many failed.
 */
static int clients_failed_after_a_death(bool checks)
{
    struct hsrv *a = hsrv_start(0, H_ECHO), *b = hsrv_start(0, H_ECHO);
    struct echod *e =
        echod_startf(BASE "listeners = ( { name = \"relay\"; mode = \"proxy\";\n"
                          "  listen = [ \"127.0.0.1:0\" ];\n"
                          "  upstreams = [ \"127.0.0.1:%d\", \"127.0.0.1:%d\" ];\n"
                          "  retries = 0; fail_timeout = 10.0;\n"
                          "  %s%s%s } );\n",
                     a->srv.port, b->srv.port, checks ? "health_check = { " : "",
                     checks ? QUICK : "", checks ? " rise = 1; fall = 1; };" : "");
    int port = echod_port(e, "relay", 0);
    assert_int_equal(failed_clients(port, 4), 0);
    int dead = a->srv.port;
    hsrv_stop(a);
    if (checks)
        must_log(e,
                 "listener relay: upstream 127.0.0.1:%d is down: check: connection "
                 "refused (1 in a row)",
                 dead);
    else
        sleep_ms(500);
    int failed = failed_clients(port, 20);
    print_message("    %s checks: %d of 20 clients failed\n", checks ? "with" : "without",
                  failed);
    echod_stop_ok(e);
    hsrv_stop(b);
    return failed;
}

/* The headline: checks find the dead upstream before any client
 * does; passive health alone (fail_timeout) learns it from a client. */
static void a_dead_upstream_is_down_before_a_client_goes_there(void **state)
{
    (void)state;
    assert_int_equal(clients_failed_after_a_death(true), 0);
    assert_true(clients_failed_after_a_death(false) > 0);
}

/* ---- fall and rise ------------------------------------------------------------------
 */

/* fall = 3, rise = 2 against a scripted upstream: two failures then a pass
 * leave it up; three failures put it down; a pass then a failure leave it
 * down; two passes put it up.  Each change logged once, with its count. */
static void fall_and_rise_count_results_in_a_row(void **state)
{
    (void)state;
    static const enum hmode script[] = {
        H_WRONG, H_WRONG, H_PONG,          /* 2 in a row: still up */
        H_WRONG, H_WRONG, H_WRONG,         /* 3: down */
        H_PONG,  H_WRONG, H_PONG,  H_PONG, /* 1, then 2 in a row: up */
    };
    struct hsrv *h = hsrv_script(0, H_PONG, script, (int)ARRAY_LEN(script));
    struct echod *e = echod_startf(
        BASE "listeners = ( { name = \"relay\"; mode = \"proxy\";\n"
             "  listen = [ \"127.0.0.1:0\" ];\n"
             "  upstreams = [ \"127.0.0.1:%d\" ];\n"
             "  health_check = { %s rise = 2; fall = 3;\n"
             "                   send = \"PING\\r\\n\"; expect = \"+PONG\"; }; } );\n",
        h->srv.port, QUICK);
    /* The script, and two checks more. */
    int want = (int)ARRAY_LEN(script) + 2;
    if (!wait_at_least(&h->srv.accepted, want, 10 * WAIT_MS))
        fail_msg("%d checks within %d ms, expected %d", atomic_load(&h->srv.accepted),
                 10 * WAIT_MS, want);
    must_log(e,
             "listener relay: upstream 127.0.0.1:%d is down: check: answer did not "
             "start with \"+PONG\" (3 in a row)",
             h->srv.port);
    must_log(e, "listener relay: upstream 127.0.0.1:%d is up: check passed (2 in a row)",
             h->srv.port);
    assert_int_equal(count_changes(e, h->srv.port, "down"), 1);
    assert_int_equal(count_changes(e, h->srv.port, "up"), 1);
    /* Down came first. */
    const char *down = echod_log_line(e, "is down", 0),
               *up = echod_log_line(e, "is up", 0);
    assert_non_null(down);
    assert_non_null(up);
    for (int i = 0;; i++) {
        const char *line = echod_log_line(e, "upstream 127.0.0.1:", i);
        assert_non_null(line);
        if (strstr(line, "is up") != NULL)
            fail_msg("up before down: %s", line);
        if (strstr(line, "is down") != NULL)
            break;
    }
    echod_stop_ok(e);
    hsrv_stop(h);
}

/* ---- send and expect ------------------------------------------------------------------
 */

/* send_and_expect_decide()'s timeout, which the log line names. */
#define SILENT_TIMEOUT (SANITIZED ? "0.4" : "0.25")

/* Four upstreams of one relay: one answers +PONG (up), one -ERR, one
 * closes (a FIN) and one never answers (down, each with its reason); then
 * the wrong one answers right and is up again. */
static void send_and_expect_decide(void **state)
{
    (void)state;
    struct hsrv *right = hsrv_start(0, H_PONG), *wrong = hsrv_start(0, H_WRONG),
                *fin = hsrv_start(0, H_FIN), *silent = hsrv_start(0, H_SILENT);
    struct echod *e = echod_startf(
        BASE "listeners = ( { name = \"relay\"; mode = \"proxy\";\n"
             "  listen = [ \"127.0.0.1:0\" ];\n"
             "  upstreams = [ \"127.0.0.1:%d\", \"127.0.0.1:%d\", \"127.0.0.1:%d\",\n"
             "                \"127.0.0.1:%d\" ];\n"
             "  health_check = { interval = %s; timeout = %s; rise = 1; fall = 1;\n"
             "                   send = \"PING\\r\\n\"; expect = \"+PONG\"; }; } );\n",
        right->srv.port, wrong->srv.port, fin->srv.port, silent->srv.port,
        SANITIZED ? "0.5" : "0.3", SILENT_TIMEOUT);
    must_log(e,
             "upstream 127.0.0.1:%d is down: check: answer did not start with "
             "\"+PONG\" (1 in a row)",
             wrong->srv.port);
    must_log(
        e, "upstream 127.0.0.1:%d is down: check: closed before the answer (1 in a row)",
        fin->srv.port);
    must_log(e,
             "upstream 127.0.0.1:%d is down: check: timeout after %s s waiting for "
             "the answer (1 in a row)",
             silent->srv.port, SILENT_TIMEOUT);
    /* The right one answered every check, and stays up. */
    int before = atomic_load(&right->pongs);
    if (!wait_at_least(&right->pongs, before + 2, WAIT_MS))
        fail_msg("the right upstream answered %d checks", atomic_load(&right->pongs));
    assert_int_equal(count_changes(e, right->srv.port, "down"), 0);
    assert_true(atomic_load(&right->srv.errors) == 0);
    /* Put right, the wrong one comes up. */
    atomic_store(&wrong->mode, H_PONG);
    must_log(e, "listener relay: upstream 127.0.0.1:%d is up: check passed (1 in a row)",
             wrong->srv.port);
    echod_stop_ok(e);
    hsrv_stop(right);
    hsrv_stop(wrong);
    hsrv_stop(fin);
    hsrv_stop(silent);
}

/* ---- backups -------------------------------------------------------------------------
 */

/* Two primaries and a backup, checked: clients go to the primaries; both
 * down by checks, the backup takes every client; a primary back up, new
 * clients go to it again. */
static void backups_serve_while_every_primary_is_down(void **state)
{
    (void)state;
    int pa = reserve_port(), pb = reserve_port();
    struct hsrv *a = hsrv_start(pa, H_ECHO), *b = hsrv_start(pb, H_ECHO),
                *c = hsrv_start(0, H_ECHO);
    struct echod *e =
        echod_startf(BASE
                     "listeners = ( { name = \"relay\"; mode = \"proxy\";\n"
                     "  listen = [ \"127.0.0.1:0\" ];\n"
                     "  upstreams = ( \"127.0.0.1:%d\", \"127.0.0.1:%d\",\n"
                     "                { address = \"127.0.0.1:%d\"; backup = true; } );\n"
                     "  retries = 0;\n"
                     "  health_check = { %s rise = 1; fall = 1; }; } );\n",
                     pa, pb, c->srv.port, QUICK);
    int port = echod_port(e, "relay", 0);
    assert_int_equal(failed_clients(port, 6), 0);
    assert_int_equal(atomic_load(&c->served), 0);
    assert_int_equal(atomic_load(&a->served) + atomic_load(&b->served), 6);

    hsrv_stop(a);
    hsrv_stop(b);
    must_log(e, "upstream 127.0.0.1:%d is down", pa);
    must_log(e, "upstream 127.0.0.1:%d is down", pb);
    assert_int_equal(failed_clients(port, 6), 0);
    assert_int_equal(atomic_load(&c->served), 6);

    a = hsrv_start(pa, H_ECHO);
    must_log(e, "listener relay: upstream 127.0.0.1:%d is up: check passed", pa);
    assert_int_equal(failed_clients(port, 6), 0);
    assert_int_equal(atomic_load(&a->served), 6);
    assert_int_equal(atomic_load(&c->served), 6);
    echod_stop_ok(e);
    hsrv_stop(a);
    hsrv_stop(c);
}

/* ---- UDP
 * ------------------------------------------------------------------------------- */

/* A UDP relay sending "ping" and expecting it back: the echo upstream is
 * up, the one that prefixes its answers down; a relay without expect
 * takes that answer; the echo upstream stopped is down by ICMP at once. */
static void udp_checks_send_expect_and_icmp(void **state)
{
    (void)state;
    struct udpup *echo = udpup_start(&(struct udpup_conf){0}),
                 *tagged = udpup_start(&(struct udpup_conf){.tag = "X:"});
    struct echod *e =
        echod_startf(BASE "listeners = (\n"
                          "{ name = \"u\"; protocol = \"udp\"; mode = \"proxy\";\n"
                          "  listen = [ \"127.0.0.1:0\" ];\n"
                          "  upstreams = [ \"127.0.0.1:%d\", \"127.0.0.1:%d\" ];\n"
                          "  health_check = { %s rise = 1; fall = 1;\n"
                          "                   send = \"ping\"; expect = \"ping\"; }; },\n"
                          "{ name = \"any\"; protocol = \"udp\"; mode = \"proxy\";\n"
                          "  listen = [ \"127.0.0.1:0\" ];\n"
                          "  upstreams = [ \"127.0.0.1:%d\" ];\n"
                          "  health_check = { %s rise = 1; fall = 1;\n"
                          "                   send = \"ping\"; }; } );\n",
                     echo->port, tagged->port, QUICK, tagged->port, QUICK);
    must_log(e,
             "listener u: upstream 127.0.0.1:%d is down: check: answer did not start "
             "with \"ping\" (1 in a row)",
             tagged->port);
    /* Both listeners' checks got answers: several each. */
    assert_true(udpup_wait(echo, 3, WAIT_MS));
    assert_true(udpup_wait(tagged, 6, WAIT_MS));
    assert_int_equal(count_changes(e, echo->port, "down"), 0);
    assert_int_equal(echod_count_log(e, "listener any: upstream"), 0);
    int port = echod_port(e, "u", 0);
    /* A client goes to the echo upstream, the only one up. */
    int fd = udp_client4();
    char back[64];
    for (int i = 0; i < 4; i++) {
        ssize_t n = udp_ask(fd, "127.0.0.1", port, "hello", 5, back, sizeof(back), 3,
                            SANITIZED ? 1000 : 300);
        assert_int_equal(n, 5);
        assert_memory_equal(back, "hello", 5);
    }
    udpup_stop(echo);
    must_log(e,
             "listener u: upstream 127.0.0.1:%d is down: check: port unreachable "
             "(ICMP) (1 in a row)",
             echo->port);
    echod_stop_ok(e);
}

/* ---- reloads
 * --------------------------------------------------------------------------- */

/* An address down by checks stays down over a reload that keeps it, even
 * with a fall and an interval that would take long to find it again; a
 * reload that turns the checks off puts it up. */
static void reload_keeps_an_address_down(void **state)
{
    (void)state;
    struct hsrv *a = hsrv_start(0, H_ECHO), *b = hsrv_start(0, H_ECHO);
    int pa = a->srv.port, pb = b->srv.port;
    int port = reserve_port();
    static const char fmt[] = BASE
        "listeners = ( { name = \"relay\"; mode = \"proxy\";\n"
        "  listen = [ \"127.0.0.1:%d\" ];\n"
        "  upstreams = [ \"127.0.0.1:%d\", \"127.0.0.1:%d\" ];\n"
        "  retries = 0; fail_timeout = 0;\n"
        "  %s } );\n";
    char checks[128];
    snprintf(checks, sizeof(checks), "health_check = { %s rise = 1; fall = 1; };", QUICK);
    struct echod *e = echod_startf(fmt, port, pa, pb, checks);
    hsrv_stop(a);
    must_log(e, "upstream 127.0.0.1:%d is down: check: connection refused", pa);
    /* If the state went with the old generation, the address would be up
     * for 5 checks 30 s apart, and clients sent there would fail
     * (retries = 0, fail_timeout = 0: nothing else skips it). */
    echod_rewrite_conf(
        e, fmt, port, pa, pb,
        "health_check = { interval = 30.0; timeout = 1.0; rise = 5; fall = 5; };");
    echod_reload_ok(e, WAIT_MS);
    assert_int_equal(failed_clients(port, 20), 0);
    assert_int_equal(count_changes(e, pa, "down"), 1);
    assert_int_equal(count_changes(e, pa, "up"), 0);

    echod_rewrite_conf(e, fmt, port, pa, pb, "");
    echod_reload_ok(e, WAIT_MS);
    must_log(e, "listener relay: upstream 127.0.0.1:%d is up: health checks are off", pa);
    assert_true(failed_clients(port, 4) > 0); /* nothing keeps clients away now */
    echod_stop_ok(e);
    hsrv_stop(b);
}

/* ---- configuration
 * ---------------------------------------------------------------------- */

/* "mio-echod -t" on conf exits 1 with "FILE:LINE: SETTING: ...ALSO". */
static void expect_refused(const char *conf, int line, const char *setting,
                           const char *also)
{
    char out[4096];
    const char *path = write_conf(conf);
    int rc = echod_run(out, sizeof(out), "-t", "-c", path, (char *)NULL);
    char where[PATH_MAX + 32];
    snprintf(where, sizeof(where), "%s:%d: %s: ", path, line, setting);
    const char *msg = strstr(out, where);
    if (rc != 1 || msg == NULL || strstr(msg, also) == NULL)
        fail_msg("exit %d, expected 1 with \"%s...%s\"; got \"%s\"", rc, where, also,
                 out);
    print_message("    %s", msg);
}

/* A relay (TCP unless udp) with the health_check group on line 4. */
#define RELAY(proto, check)                                                       \
    "listeners = ( { name = \"r\"; mode = \"proxy\"; protocol = \"" proto "\";\n" \
    "  listen = [ \"127.0.0.1:0\" ];\n"                                           \
    "  upstreams = [ \"127.0.0.1:9\" ];\n"                                        \
    "  health_check = " check ";\n"                                               \
    "} );\n"

static void config_errors_name_the_setting(void **state)
{
    (void)state;
    expect_refused(RELAY("udp", "{ interval = 1.0; expect = \"pong\"; }"), 4,
                   "listeners.r.health_check.send", "empty, but a UDP relay's check");
    expect_refused(RELAY("tcp", "{ interval = 1.0;\n"
                                "    timeout = 2.0; }"),
                   5, "listeners.r.health_check.timeout",
                   "2.0 s is longer than interval (1.0 s)");
    expect_refused(RELAY("udp", "{ interval = 0.5; send = \"ping\"; timeout = 0.75; }"),
                   4, "listeners.r.health_check.timeout",
                   "0.75 s is longer than interval (0.5 s)");
    expect_refused(RELAY("tcp", "{ interval = 1.0; rise = 0; }"), 4,
                   "listeners.r.health_check.rise", "");
    expect_refused("listeners = ( { name = \"e\"; mode = \"echo\";\n"
                   "  listen = [ \"127.0.0.1:0\" ];\n"
                   "  health_check = { interval = 1.0; }; } );\n",
                   3, "listeners.e.health_check", "only for mode = \"proxy\"");
    /* Accepted: no checks without an interval; a timeout not written is
     * cut to a short interval; UDP with a datagram to send. */
    static const char *const ok[] = {
        RELAY("udp", "{ interval = 0.0; }"),
        RELAY("tcp", "{ interval = 0.5; }"),
        RELAY("udp", "{ interval = 2.0; send = \"ping\"; }"),
        RELAY(
            "tcp",
            "{ interval = 2.0; timeout = 2.0; send = \"PING\\r\\n\"; expect = \"+PONG\"; }"),
    };
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        char out[4096];
        int rc = echod_run(out, sizeof(out), "-t", "-c", write_conf(ok[i]), (char *)NULL);
        if (rc != 0)
            fail_msg("refused: %s\n%s", ok[i], out);
    }
}

/* ---- main
 * ------------------------------------------------------------------------------- */

#define TEST(f) cmocka_unit_test_teardown(f, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(a_dead_upstream_is_down_before_a_client_goes_there),
        TEST(fall_and_rise_count_results_in_a_row),
        TEST(send_and_expect_decide),
        TEST(backups_serve_while_every_primary_is_down),
        TEST(udp_checks_send_expect_and_icmp),
        TEST(reload_keeps_an_address_down),
        TEST(config_errors_name_the_setting),
    };
    test_filter_from_env("HEALTH_TEST");
    return cmocka_run_group_tests(tests, setup_ignore_sigpipe, NULL);
}
