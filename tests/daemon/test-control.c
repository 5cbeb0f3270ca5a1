/*
 * The control socket against the real daemon (control.h, mio-echodctl(8)):
 * each test starts mio-echod with `control = { path = ...; }`, real
 * upstreams and real clients, and speaks to the socket through a plain
 * client (ctl.h) or through the built mio-echodctl.  Checked: every
 * command's answer column by column (and show stats against GET /metrics),
 * every error as exactly one "error: " line on a connection that goes on,
 * the lines refused and the connection closed after them; draining,
 * disabling, enabling and weighting upstreams with verified streams open
 * (the issue's "done when"), by address and by host name; what reloads
 * keep and forget; reload and kill connection; who may connect (mode,
 * another uid, user =) and the uid in the log; clients that never read or
 * are too many; the socket file's life (made, replaced, refused, removed).
 * The tests of another uid and of user = need root and are skipped
 * otherwise, saying so.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control-line.h"
#include "harness.h"

/* The pattern's period (the streams'). */
#define PLEN ((size_t)1 << 20)
/* How fast a stream of these tests goes: enough to see it flow. */
#define STREAM_RATE_HERE (2 * MIB)
/* How long a state the daemon reaches on its own may take to show. */
#define SETTLE_MS 3000
/* Who the tests of another uid are. */
#define OTHER_USER "nobody"

/* What every daemon of these tests has: two workers, a log the test reads. */
#define BASE                    \
    "workers = 2;\n"            \
    "shutdown_timeout = 2.0;\n" \
    "log = { target = \"stderr\"; level = \"info\"; access = true; };\n"
#define STATS "stats = { listen = \"127.0.0.1:0\"; };\n"

/* The listeners of the configurations (elements of `listeners = ( ... )`):
 * an echo listener "echo", a relay "relay" to one upstream (its port a %d
 * of the format), a UDP echo listener "dgram". */
#define ECHO_L "  { name = \"echo\"; listen = [ \"127.0.0.1:0\" ]; mode = \"echo\"; }"
#define RELAY_L                                                               \
    "  { name = \"relay\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n" \
    "    upstreams = ( \"127.0.0.1:%d\" ); }"
#define DGRAM_L                                                    \
    "  { name = \"dgram\"; protocol = \"udp\"; mode = \"echo\";\n" \
    "    listen = [ \"127.0.0.1:0\" ]; }"
/* An echo listener alone; a relay to one upstream alone. */
#define ONLY_ECHO "listeners = (\n" ECHO_L " );\n"
#define RELAY_TO_ONE "listeners = (\n" RELAY_L " );\n"

/* The header lines of the answers that list things. */
#define LISTENERS_HEADER "# listener protocol mode open accepted addresses"
#define UPSTREAMS_HEADER                                                        \
    "# listener upstream address weight backup state active connects failures " \
    "last_check why"
#define CONNECTIONS_HEADER "# id listener client upstream age in out"
/* The answer to a connection over the limit. */
#define BUSY "error: too many control connections (16 open); try again later"

/* The columns of show upstreams and show connections. */
enum {
    U_LISTENER,
    U_UPSTREAM,
    U_ADDRESS,
    U_WEIGHT,
    U_BACKUP,
    U_STATE,
    U_ACTIVE,
    U_CONNECTS,
    U_FAILURES,
    U_LAST_CHECK,
    U_WHY,
    U_COLUMNS
};
enum { C_ID, C_LISTENER, C_CLIENT, C_UPSTREAM, C_AGE, C_IN, C_OUT, C_COLUMNS };
enum { L_NAME, L_PROTOCOL, L_MODE, L_OPEN, L_ACCEPTED, L_ADDRESSES, L_COLUMNS };

/* Sends a string literal, without its NUL. */
#define SEND_LITERAL(fd, text) send_all((fd), (text), sizeof(text) - 1)

/* The control socket of the daemon started last by start(). */
static char sock[PATH_MAX + 64];

/* The text of errno value err, for messages. */
static const char *errtext(int err)
{
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): only the main thread calls it. */
    return strerror(err);
}

/* ---- the daemon ------------------------------------------------------------- */

/* The directory of daemon e's configuration, into buf. */
static void dir_of(struct echod *e, char *buf, size_t len)
{
    snprintf(buf, len, "%s", echod_conf_path(e));
    char *slash = strrchr(buf, '/');
    CHECK(slash != NULL);
    *slash = '\0';
}

/* A configuration into conf: BASE, a control socket of `mode` at `path`,
 * and the rest formatted from fmt. */
__attribute__((format(printf, 5, 0))) static void vconf(char *conf, size_t len,
                                                        const char *path,
                                                        const char *mode, const char *fmt,
                                                        va_list ap)
{
    char rest[6144];
    xvsnprintf(rest, sizeof(rest), fmt, ap);
    int n = snprintf(conf, len, "%scontrol = { path = \"%s\"; mode = %s; };\n%s", BASE,
                     path, mode, rest);
    CHECK(n > 0 && (size_t)n < len);
}

/* Starts a daemon with BASE, a control socket of `mode` at `where` in the
 * directory of its configuration (its path into sock) and the rest
 * formatted from fmt. */
__attribute__((format(printf, 3, 0))) static struct echod *
vstart(const char *mode, const char *where, const char *fmt, va_list ap)
{
    char path[PATH_MAX], conf[8192];
    snprintf(path, sizeof(path), "@DIR@/%s", where);
    vconf(conf, sizeof(conf), path, mode, fmt, ap);
    struct echod *e = echod_start(conf);
    char dir[PATH_MAX];
    dir_of(e, dir, sizeof(dir));
    snprintf(sock, sizeof(sock), "%s/%s", dir, where);
    echod_must_log(e, "control: listening on %s", sock);
    return e;
}

/* vstart() at "control.sock". */
__attribute__((format(printf, 2, 3))) static struct echod *
start_mode(const char *mode, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct echod *e = vstart(mode, "control.sock", fmt, ap);
    va_end(ap);
    return e;
}

/* vstart() at `where`, mode 0600. */
__attribute__((format(printf, 2, 3))) static struct echod *
start_where(const char *where, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct echod *e = vstart("0600", where, fmt, ap);
    va_end(ap);
    return e;
}

/* start_mode() with mode 0600, the default. */
#define start(...) start_mode("0600", __VA_ARGS__)

/* An upstream that echoes. */
static struct upsrv *echo_up(void)
{
    return up_start(&(struct up_conf){.mode = UP_ECHO});
}

/* Its address as the daemon writes it, into buf. */
static const char *addr_of(const struct upsrv *u, char *buf, size_t len)
{
    snprintf(buf, len, "127.0.0.1:%d", u->srv.port);
    return buf;
}

/* The connections an upstream has accepted so far. */
static int accepted(struct upsrv *u)
{
    return atomic_load(&u->srv.accepted);
}

/* One short exchange on a new connection to port: `text` there and back. */
static void echo_once(int port, const char *text)
{
    int fd = client4(port);
    expect_echo(fd, text);
    close(fd);
}

/* ---- answers ---------------------------------------------------------------- */

/* An answer over its own connection to sock (malloc'd). */
static char *ask(const char *line)
{
    return ctl_ask_path(sock, line);
}

/* Fails unless asking `line` is answered exactly `want` (its empty line
 * left out). */
static void expect_answer(const char *line, const char *want)
{
    char *got = ask(line);
    char full[4096];
    snprintf(full, sizeof(full), "%s\n", want);
    if (strcmp(got, full) != 0)
        test_fail("\"%s\" answered [%s], expected [%s]", line, got, full);
    free(got);
}

/* An answer that lists things, split into its rows' columns. */
#define MAX_ROWS 1024
#define MAX_COLS 11
struct table {
    char *buf; /* the answer, cut into the columns */
    int nrows;
    char *col[MAX_ROWS][MAX_COLS];
};

/*
 * Splits `answer` (taken: freed with the table): its first line must be
 * `header`, then come rows of exactly ncols columns, each separated by one
 * space, none empty (with `rest`, the last column is the rest of its line,
 * spaces and all), none starting with "#", then the empty line.
 */
static struct table *table_parse(char *answer, const char *header, int ncols, bool rest)
{
    CHECK(ncols <= MAX_COLS);
    size_t len = strlen(answer);
    if (len < 2 || strcmp(answer + len - 2, "\n\n") != 0 ||
        strncmp(answer, header, strlen(header)) != 0 || answer[strlen(header)] != '\n')
        test_fail("not an answer headed [%s] and ended by an empty line: [%s]", header,
                  answer);
    struct table *t = xmalloc(sizeof(*t));
    memset(t, 0, sizeof(*t));
    t->buf = answer;
    answer[len - 1] = '\0';
    for (char *line = answer + strlen(header) + 1; *line != '\0';) {
        char *nl = strchr(line, '\n');
        CHECK(nl != NULL && t->nrows < MAX_ROWS);
        *nl = '\0';
        char copy[1024];
        snprintf(copy, sizeof(copy), "%s", line);
        if (line[0] == '#')
            test_fail("a second comment line in an answer: [%s]", copy);
        int c = 0;
        for (char *p = line;;) {
            if (*p == '\0' || *p == ' ')
                test_fail("an empty column in [%s]", copy);
            t->col[t->nrows][c++] = p;
            if (c == ncols && rest)
                break;
            char *sp = strchr(p, ' ');
            if (sp == NULL)
                break;
            if (c == ncols)
                test_fail("more than %d columns in [%s]", ncols, copy);
            *sp = '\0';
            p = sp + 1;
        }
        if (c != ncols)
            test_fail("%d columns, not %d, in [%s]", c, ncols, copy);
        t->nrows++;
        line = nl + 1;
    }
    return t;
}

static void table_free(struct table *t)
{
    if (t != NULL) {
        free(t->buf);
        free(t);
    }
}

/* Expects t to have n rows, and frees it. */
static void expect_rows(struct table *t, int n)
{
    assert_int_equal(t->nrows, n);
    table_free(t);
}

/* The first row of t whose column `col` is `value`, or NULL. */
static char **row_with(struct table *t, int col, const char *value)
{
    for (int i = 0; i < t->nrows; i++)
        if (strcmp(t->col[i][col], value) == 0)
            return t->col[i];
    return NULL;
}

/* row_with(), failing the test when there is none. */
static char **row_must(struct table *t, int col, const char *value)
{
    char **row = row_with(t, col, value);
    if (row == NULL)
        test_fail("no row with \"%s\" in column %d (of %d rows)", value, col, t->nrows);
    return row;
}

/* How many rows of t have `value` in column `col`. */
static int rows_with(struct table *t, int col, const char *value)
{
    int n = 0;
    for (int i = 0; i < t->nrows; i++)
        n += strcmp(t->col[i][col], value) == 0;
    return n;
}

/* A column that must be a decimal number. */
static long long num(const char *text)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0)
        test_fail("\"%s\" is not a number", text);
    return v;
}

/* An age column: seconds with one decimal, below `max`. */
static void expect_age(const char *text, int max)
{
    const char *dot = strchr(text, '.');
    if (dot == NULL || dot == text || strlen(dot) != 2 || dot[1] < '0' || dot[1] > '9' ||
        strspn(text, "0123456789") != (size_t)(dot - text) ||
        strtol(text, NULL, 10) >= max)
        test_fail("\"%s\" is not seconds with one decimal below %d", text, max);
}

/* show upstreams [which] over the socket, split. */
static struct table *upstreams(const char *which)
{
    char line[256];
    snprintf(line, sizeof(line), "show upstreams%s%s", which[0] ? " " : "", which);
    return table_parse(ask(line), UPSTREAMS_HEADER, U_COLUMNS, true);
}

/* show connections [which] over the socket, split. */
static struct table *connections(const char *which)
{
    char line[256];
    snprintf(line, sizeof(line), "show connections%s%s", which[0] ? " " : "", which);
    return table_parse(ask(line), CONNECTIONS_HEADER, C_COLUMNS, false);
}

/* show listeners over the socket, split. */
static struct table *listeners(void)
{
    return table_parse(ask("show listeners"), LISTENERS_HEADER, L_COLUMNS, false);
}

/* What a run of mio-echodctl printed on standard output, as an answer
 * split (the empty line it leaves out put back). */
static struct table *table_of_run(const struct ctl_run *r, const char *header, int ncols,
                                  bool rest)
{
    size_t len = strlen(r->out);
    char *answer = xmalloc(len + 2);
    memcpy(answer, r->out, len);
    memcpy(answer + len, "\n", 2);
    return table_parse(answer, header, ncols, rest);
}

/* mio-echodctl -S sock with the arguments given. */
#define CTL(r, ...) ctl_run((r), "-S", sock, __VA_ARGS__, NULL)

/* "mio-echodctl -S sock show upstreams LISTENER", split. */
static struct table *upstreams_by_ctl(const char *listener)
{
    struct ctl_run r;
    CTL(&r, "show", "upstreams", listener);
    ctl_expect(&r, 0, NULL, "");
    return table_of_run(&r, UPSTREAMS_HEADER, U_COLUMNS, true);
}

/* Fails unless the row of upstream address `address` of listener in
 * show upstreams has `state`, weight and why (NULL: any). */
static void expect_upstream(const char *listener, const char *address, const char *state,
                            int weight, const char *why)
{
    struct table *t = upstreams(listener);
    char **row = row_must(t, U_ADDRESS, address);
    assert_string_equal(row[U_LISTENER], listener);
    assert_string_equal(row[U_STATE], state);
    assert_int_equal(num(row[U_WEIGHT]), weight);
    if (why != NULL)
        assert_string_equal(row[U_WHY], why);
    table_free(t);
}

/* Waits up to ms (through mio-echodctl, as an operator watches) for the
 * row of `address` to show `state` and `active` connections. */
static void wait_upstream_by_ctl(const char *listener, const char *address,
                                 const char *state, long long active, int ms)
{
    int64_t until = ms_now() + ms;
    char last[512] = "";
    for (int i = 0; i < 1000; i++) {
        struct table *t = upstreams_by_ctl(listener);
        char **row = row_must(t, U_ADDRESS, address);
        bool there = strcmp(row[U_STATE], state) == 0 && num(row[U_ACTIVE]) == active;
        snprintf(last, sizeof(last), "state %s, active %s", row[U_STATE], row[U_ACTIVE]);
        table_free(t);
        if (there)
            return;
        if (ms_now() >= until)
            break;
        sleep_ms(20);
    }
    test_fail("upstream %s of %s: %s after %d ms, expected %s, active %lld", address,
              listener, last, ms, state, active);
}

/* Expects run r of mio-echodctl to have steered upstream `address` of
 * the relay: exit 0, "ok: listener relay: upstream ADDRESS DONE" and
 * nothing on standard error; and the daemon to have logged it, uid 0. */
static void expect_steered(struct echod *e, const struct ctl_run *r, const char *address,
                           const char *done)
{
    char want[256];
    snprintf(want, sizeof(want), "ok: listener relay: upstream %s %s\n", address, done);
    ctl_expect(r, 0, want, "");
    echod_must_log(e, "notice: control: uid 0: listener relay: upstream %s %s", address,
                   done);
}

/* ---- show ------------------------------------------------------------------- */

/* A sample line's value in body, as a number; false when absent. */
static bool sample_value(const char *body, const char *key, double *v)
{
    const char *at = metrics_find(body, key);
    if (at == NULL)
        return false;
    *v = strtod(at, NULL);
    return true;
}

/*
 * show stats is what GET /metrics answers without its # lines: the same
 * samples, in the same order, each value between those of a scrape just
 * before and one just after.
 */
static void expect_stats_as_metrics(struct echod *e)
{
    char *before = metrics_scrape(e, 3000);
    char *stats = ask("show stats");
    char *after = metrics_scrape(e, 3000);
    size_t len = strlen(stats);
    if (len < 2 || strcmp(stats + len - 2, "\n\n") != 0 || stats[0] == '\n')
        test_fail("show stats: not lines ended by an empty line: [%s]", stats);
    int nstats = 0, nmetrics = 0;
    for (char *line = stats; *line != '\n';) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        char *sp = strrchr(line, ' ');
        if (line[0] == '#' || sp == NULL || sp == line)
            test_fail("show stats: not a sample line: [%s]", line);
        *sp = '\0';
        char *end;
        double v = strtod(sp + 1, &end), lo, hi;
        if (*end != '\0' || end == sp + 1)
            test_fail("show stats: %s: not a number: %s", line, sp + 1);
        if (!sample_value(before, line, &lo) || !sample_value(after, line, &hi))
            test_fail("show stats has %s, GET /metrics does not", line);
        if (v < (lo < hi ? lo : hi) || v > (lo < hi ? hi : lo))
            test_fail("show stats: %s %s; GET /metrics: %g then %g", line, sp + 1, lo,
                      hi);
        nstats++;
        line = nl + 1;
    }
    for (const char *p = after; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        if (*p != '#' && *p != '\n')
            nmetrics++;
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    assert_int_equal(nstats, nmetrics);
    CHECK(nstats > 10);
    free(before);
    free(stats);
    free(after);
}

/* Expects the row of `client` in show connections t to be of `listener`
 * and `upstream`, with `bytes` in and out, younger than 10 s; its id. */
static long long expect_connection(struct table *t, const char *client,
                                   const char *listener, const char *upstream, int bytes)
{
    char **row = row_must(t, C_CLIENT, client);
    assert_string_equal(row[C_LISTENER], listener);
    assert_string_equal(row[C_UPSTREAM], upstream);
    assert_int_equal(num(row[C_IN]), bytes);
    assert_int_equal(num(row[C_OUT]), bytes);
    expect_age(row[C_AGE], 10);
    return num(row[C_ID]);
}

/* Expects the row of listener `name` in show listeners t to say
 * `protocol` and `mode`, one connection open and one accepted, on
 * 127.0.0.1:port. */
static void expect_listener(struct table *t, const char *name, const char *protocol,
                            const char *mode, int port)
{
    char **row = row_must(t, L_NAME, name);
    assert_string_equal(row[L_PROTOCOL], protocol);
    assert_string_equal(row[L_MODE], mode);
    assert_int_equal(num(row[L_OPEN]), 1);
    assert_int_equal(num(row[L_ACCEPTED]), 1);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    assert_string_equal(row[L_ADDRESSES], want);
}

/* Every show command, its columns read: listeners (TCP and UDP, echo and
 * proxy), upstreams (weights, a backup, the one with the held connection),
 * connections (an echo, a relayed and a UDP client with their exact bytes
 * and the upstream), stats against /metrics, help. */
static void show_answers_by_columns(void **state)
{
    (void)state;
    struct upsrv *a = echo_up(), *b = echo_up(), *c = echo_up();
    struct echod *e = start(
        STATS
        "listeners = (\n" ECHO_L ",\n"
        "  { name = \"relay\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "    upstreams = ( \"127.0.0.1:%d\",\n"
        "                  { address = \"127.0.0.1:%d\"; weight = 2; },\n"
        "                  { address = \"127.0.0.1:%d\"; backup = true; } ); },\n" DGRAM_L
        " );\n",
        a->srv.port, b->srv.port, c->srv.port);
    int ep = echod_port(e, "echo", 0), rp = echod_port(e, "relay", 0),
        up = echod_port(e, "dgram", 0);
    char A[32], B[32], C[32];
    addr_of(a, A, sizeof(A));
    addr_of(b, B, sizeof(B));
    addr_of(c, C, sizeof(C));

    /* Nothing open yet. */
    expect_rows(connections(""), 0);

    int efd = client4(ep);
    SEND_LITERAL(efd, "hello");
    char buf[16];
    recv_exact(efd, buf, 5);
    int rfd = client4(rp);
    SEND_LITERAL(rfd, "relayed");
    recv_exact(rfd, buf, 7);
    int ufd = udp_client4();
    udp_expect_echo(ufd, "127.0.0.1", up, "dgram", 5, 3000);
    char uaddr[UDP_ADDRSTRLEN];
    udp_local(ufd, uaddr, sizeof(uaddr));
    /* Weights 1 and 2: smooth round-robin sends the first client to B. */
    CHECK_EQ(accepted(a), 0);
    CHECK_EQ(accepted(b), 1);
    CHECK_EQ(accepted(c), 0);

    /* show connections: the three, each with its bytes (counted as they
     * move: asked again until they are all there). */
    char eaddr[64], raddr[64];
    snprintf(eaddr, sizeof(eaddr), "127.0.0.1:%d", local_port(efd));
    snprintf(raddr, sizeof(raddr), "127.0.0.1:%d", local_port(rfd));
    int64_t until = ms_now() + SETTLE_MS;
    struct table *t = NULL;
    for (int i = 0; i < 1000; i++) {
        t = connections("");
        char **er = row_with(t, C_CLIENT, eaddr), **rr = row_with(t, C_CLIENT, raddr),
             **ur = row_with(t, C_CLIENT, uaddr);
        if (t->nrows == 3 && er != NULL && rr != NULL && ur != NULL &&
            num(er[C_OUT]) == 5 && num(rr[C_OUT]) == 7 && num(ur[C_OUT]) == 5)
            break;
        if (ms_now() >= until)
            test_fail("show connections: not the three connections with their bytes");
        table_free(t);
        sleep_ms(10);
    }
    long long ids[3] = {expect_connection(t, eaddr, "echo", "-", 5),
                        expect_connection(t, raddr, "relay", B, 7),
                        expect_connection(t, uaddr, "dgram", "-", 5)};
    CHECK(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    table_free(t);
    /* Of one listener: only its own. */
    t = connections("relay");
    assert_int_equal(t->nrows, 1);
    assert_string_equal(t->col[0][C_CLIENT], raddr);
    assert_int_equal(num(t->col[0][C_ID]), ids[1]);
    table_free(t);
    t = connections("echo");
    assert_int_equal(t->nrows, 1);
    assert_string_equal(t->col[0][C_CLIENT], eaddr);
    table_free(t);

    /* show listeners. */
    t = listeners();
    assert_int_equal(t->nrows, 3);
    expect_listener(t, "echo", "tcp", "echo", ep);
    expect_listener(t, "relay", "tcp", "proxy", rp);
    expect_listener(t, "dgram", "udp", "echo", up);
    table_free(t);

    /* show upstreams: all of them, then the relay's (the same), then the
     * echo listener's (none). */
    char *all = ask("show upstreams"), *relay = ask("show upstreams relay");
    assert_string_equal(all, relay);
    free(all);
    t = table_parse(relay, UPSTREAMS_HEADER, U_COLUMNS, true);
    assert_int_equal(t->nrows, 3);
    static const struct {
        int weight;
        const char *backup;
        int active;
    } expected[3] = {{1, "no", 0}, {2, "no", 1}, {1, "yes", 0}};
    const char *addrs[3] = {A, B, C};
    for (int i = 0; i < 3; i++) {
        char **row = t->col[i]; /* in the configuration's order */
        assert_string_equal(row[U_LISTENER], "relay");
        assert_string_equal(row[U_UPSTREAM], addrs[i]);
        assert_string_equal(row[U_ADDRESS], addrs[i]);
        assert_int_equal(num(row[U_WEIGHT]), expected[i].weight);
        assert_string_equal(row[U_BACKUP], expected[i].backup);
        assert_string_equal(row[U_STATE], "up");
        assert_int_equal(num(row[U_ACTIVE]), expected[i].active);
        assert_int_equal(num(row[U_CONNECTS]), expected[i].active);
        assert_int_equal(num(row[U_FAILURES]), 0);
        assert_string_equal(row[U_LAST_CHECK], "-");
        assert_string_equal(row[U_WHY], "-");
    }
    table_free(t);
    expect_answer("show upstreams echo", UPSTREAMS_HEADER "\n");

    /* show stats: /metrics' samples and numbers. */
    expect_stats_as_metrics(e);

    /* help. */
    expect_answer("help", "show listeners\n"
                          "show upstreams [LISTENER]\n"
                          "show connections [LISTENER]\n"
                          "show stats\n"
                          "disable upstream LISTENER ADDRESS\n"
                          "enable upstream LISTENER ADDRESS\n"
                          "drain upstream LISTENER ADDRESS\n"
                          "set weight LISTENER ADDRESS 1..256\n"
                          "reload\n"
                          "drain\n"
                          "kill connection ID\n"
                          "help\n");

    /* Through mio-echodctl: the same answer, without its empty line. */
    struct ctl_run r;
    CTL(&r, "show", "listeners");
    char *direct = ask("show listeners");
    direct[strlen(direct) - 1] = '\0';
    ctl_expect(&r, 0, direct, "");
    free(direct);

    close(efd);
    close(rfd);
    echod_stop_ok(e);
}

/* ---- errors ------------------------------------------------------------------- */

/* Every error is one "error: " line and the connection goes on: unknown
 * commands, missing and extra words, unknown listeners and addresses, an
 * echo listener steered, weights out of range, an unknown connection;
 * blank lines get no answer.  Nothing was changed by them. */
static void errors_are_one_line_and_the_connection_goes_on(void **state)
{
    (void)state;
    struct upsrv *a = echo_up();
    struct echod *e = start("listeners = (\n" ECHO_L ",\n" RELAY_L " );\n", a->srv.port);
    char A[32];
    addr_of(a, A, sizeof(A));
    struct {
        char line[128];
        char error[256];
    } cases[] = {
        {"frobnicate", "unknown command \"frobnicate\"; \"help\" lists them"},
        {"show", "unknown command \"show\"; \"help\" lists them"},
        {"show everything", "unknown command \"show everything\"; \"help\" lists them"},
        {"SHOW listeners", "unknown command \"SHOW listeners\"; \"help\" lists them"},
        {"show listeners now", "expected \"show listeners\""},
        {"show upstreams relay now", "expected \"show upstreams [LISTENER]\""},
        {"show connections relay now", "expected \"show connections [LISTENER]\""},
        {"show stats now", "expected \"show stats\""},
        {"reload now", "expected \"reload\""},
        {"help me", "expected \"help\""},
        {"drain now", "expected \"drain\""},
        {"drain upstream", "expected \"drain upstream LISTENER ADDRESS\""},
        {"drain upstream relay", "expected \"drain upstream LISTENER ADDRESS\""},
        {"disable upstream relay", "expected \"disable upstream LISTENER ADDRESS\""},
        {"enable upstream relay", "expected \"enable upstream LISTENER ADDRESS\""},
        {"set weight relay", "expected \"set weight LISTENER ADDRESS N\""},
        {"set weight nosuch 127.0.0.1:1 2", "no listener nosuch (see show listeners)"},
        {"drain upstream nosuch 127.0.0.1:1", "no listener nosuch (see show listeners)"},
        {"show upstreams nosuch", "no listener nosuch (see show listeners)"},
        {"show connections nosuch", "no listener nosuch (see show listeners)"},
        {"kill connection", "expected \"kill connection ID\", ID a number from show "
                            "connections"},
        {"kill connection x", "expected \"kill connection ID\", ID a number from show "
                              "connections"},
        {"kill connection -1", "expected \"kill connection ID\", ID a number from show "
                               "connections"},
        {"kill connection 99999999999999999999999", "expected \"kill connection ID\", ID "
                                                    "a number from show connections"},
        {"kill connection 1 2", "expected \"kill connection ID\", ID a number from show "
                                "connections"},
        {"kill connection 424242", "no open connection 424242"},
        {"drain upstream relay 10.9.9.9:1",
         "listener relay has no upstream 10.9.9.9:1 (see show upstreams relay)"},
        {"disable upstream relay localhost",
         "listener relay has no upstream localhost (see show upstreams relay)"},
    };
    /* The commands naming A: before it, after it, and the error. */
    struct {
        char before[64], after[64];
        char error[256];
    } formatted[] = {
        {"drain upstream relay", " extra",
         "expected \"drain upstream LISTENER ADDRESS\""},
        {"drain upstream echo", "",
         "listener echo is an echo listener: it has no upstreams"},
        {"enable upstream echo", "",
         "listener echo is an echo listener: it has no upstreams"},
        {"set weight echo", " 2",
         "listener echo is an echo listener: it has no upstreams"},
        {"set weight relay", " 0",
         "weight: expected 1 to 256, got 0 (drain upstream takes it out)"},
        {"set weight relay", " 257", "weight: expected 1 to 256, got \"257\""},
        {"set weight relay", " x", "weight: expected 1 to 256, got \"x\""},
        {"set weight relay", " -1", "weight: expected 1 to 256, got \"-1\""},
        {"set weight relay", " +2", "weight: expected 1 to 256, got \"+2\""},
        {"set weight relay", " 2.5", "weight: expected 1 to 256, got \"2.5\""},
        {"set weight relay", " 99999999999999999999999",
         "weight: expected 1 to 256, got \"99999999999999999999999\""},
        {"set weight relay", " 2 3", "expected \"set weight LISTENER ADDRESS N\""},
    };
    int fd = ctl_connect(sock);
    char want[512];
    for (size_t i = 0; i < ARRAY_LEN(cases) + ARRAY_LEN(formatted); i++) {
        char line[256];
        const char *error;
        if (i < ARRAY_LEN(cases)) {
            snprintf(line, sizeof(line), "%s", cases[i].line);
            error = cases[i].error;
        } else {
            size_t k = i - ARRAY_LEN(cases);
            snprintf(line, sizeof(line), "%s %s%s", formatted[k].before, A,
                     formatted[k].after);
            error = formatted[k].error;
        }
        char *got = ask(line); /* on a connection of its own */
        snprintf(want, sizeof(want), "error: %s\n\n", error);
        if (strcmp(got, want) != 0)
            test_fail("\"%s\" answered [%s], expected [%s]", line, got, want);
        free(got);
        got = ctl_ask(fd, line); /* on one connection, one after the other */
        assert_string_equal(got, want);
        free(got);
    }
    /* Blank lines get no answer; CR LF ends a line too; commands sent at
     * once are answered in order. */
    SEND_LITERAL(fd, "\n   \n\t\nhelp\r\nshow upstreams relay\nfrobnicate\n");
    char *got = ctl_read_answer(fd, 5000);
    CHECK(strncmp(got, "show listeners\n", 15) == 0);
    free(got);
    got = ctl_read_answer(fd, 5000);
    CHECK(strncmp(got, UPSTREAMS_HEADER "\n", strlen(UPSTREAMS_HEADER) + 1) == 0);
    free(got);
    got = ctl_read_answer(fd, 5000);
    assert_string_equal(got,
                        "error: unknown command \"frobnicate\"; \"help\" lists them\n\n");
    free(got);
    close(fd);

    /* Nothing changed, nothing logged as done. */
    expect_upstream("relay", A, "up", 1, "-");
    assert_int_equal(echod_count_log(e, "control: uid"), 0);

    /* Through mio-echodctl: exit 1, the error line on standard error. */
    struct ctl_run r;
    CTL(&r, "frobnicate");
    ctl_expect(
        &r, 1, "",
        "mio-echodctl: error: unknown command \"frobnicate\"; \"help\" lists them\n");
    CTL(&r, "set", "weight", "relay", A, "257");
    ctl_expect(&r, 1, "",
               "mio-echodctl: error: weight: expected 1 to 256, got \"257\"\n");
    CTL(&r, "kill", "connection", "424242");
    ctl_expect(&r, 1, "", "mio-echodctl: error: no open connection 424242\n");
    CTL(&r, "show", "upstreams", "nosuch");
    ctl_expect(&r, 1, "",
               "mio-echodctl: error: no listener nosuch (see show listeners)\n");
    echod_stop_ok(e);
}

/* Sends `len` bytes of `bytes` on a new connection and expects exactly
 * "error: WHY" and its empty line, then the end of the connection. */
static void expect_refused(const void *bytes, size_t len, const char *why)
{
    int fd = ctl_connect(sock);
    send_all(fd, bytes, len);
    char *got = ctl_read_answer(fd, 5000);
    char want[256];
    snprintf(want, sizeof(want), "error: %s\n\n", why);
    assert_string_equal(got, want);
    free(got);
    enum end how = wait_end(fd, 3000, NULL);
    if (how == END_NONE)
        test_fail("the connection went on after \"%s\"", why);
    close(fd);
}

/* expect_refused() of a string literal. */
#define EXPECT_REFUSED(text, why) expect_refused((text), sizeof(text) - 1, (why))

/* A line the reader refuses is answered with its error, then the
 * connection is closed: 1025 bytes, more than 8 words, a control byte, a
 * byte from 0x80, a lone CR.  1024 bytes and 8 words are read. */
static void refused_lines_close_the_connection(void **state)
{
    (void)state;
    struct echod *e = start(ONLY_ECHO);
    static char line[CONTROL_LINE_MAX + 2];
    memset(line, 'x', sizeof(line));
    line[CONTROL_LINE_MAX + 1] = '\n';
    expect_refused(line, sizeof(line), "command line longer than 1024 bytes");
    EXPECT_REFUSED("show\x01listeners\n", "control character in a command line");
    EXPECT_REFUSED("show \x7f\n", "control character in a command line");
    EXPECT_REFUSED("show caf\xc3\xa9\n", "non-ASCII byte in a command line");
    EXPECT_REFUSED("help\rx\n", "CR not followed by LF in a command line");
    EXPECT_REFUSED("1 2 3 4 5 6 7 8 9\n", "more than 8 words in a command line");
    /* After a good command, the refusal still answers it first. */
    int fd = ctl_connect(sock);
    SEND_LITERAL(fd, "help\nhelp\x02\nhelp\n");
    char *got = ctl_read_answer(fd, 5000);
    CHECK(strncmp(got, "show listeners\n", 15) == 0);
    free(got);
    got = ctl_read_answer(fd, 5000);
    assert_string_equal(got, "error: control character in a command line\n\n");
    free(got);
    CHECK(wait_end(fd, 3000, NULL) != END_NONE);
    close(fd);

    /* The longest line and the most words are read (and are unknown). */
    fd = ctl_connect(sock);
    line[CONTROL_LINE_MAX] = '\n';
    send_all(fd, line, CONTROL_LINE_MAX + 1);
    got = ctl_read_answer(fd, 5000);
    CHECK(strncmp(got, "error: unknown command \"xxx", 27) == 0);
    free(got);
    free(ctl_ask(fd, "1 2 3 4 5 6 7 8"));
    got = ctl_ask(fd, "help");
    CHECK(strncmp(got, "show listeners\n", 15) == 0);
    free(got);
    close(fd);
    echod_stop_ok(e);
}

/* ---- steering: the issue's "done when" ----------------------------------------- */

/* The listeners of the steering tests: a relay on 127.0.0.1:%d (0: any),
 * round-robin over %s (the inside of a libconfig list). */
#define RELAY_OF_ROUND_ROBIN                                             \
    "listeners = ( { name = \"relay\"; listen = [ \"127.0.0.1:%d\" ];\n" \
    "  mode = \"proxy\"; balance = \"round-robin\"; retries = 1;\n"      \
    "  upstreams = ( %s ); } );\n"

/* The relay of the steering tests, round-robin over `ups` (the inside of a
 * libconfig list), on 127.0.0.1:port (0: any). */
static struct echod *start_relay(int port, const char *ups)
{
    return start(RELAY_OF_ROUND_ROBIN, port, ups);
}

/* The steering tests' relay, round-robin over two echoing upstreams. */
struct pair {
    struct upsrv *a, *b;
    char A[32], B[32]; /* their addresses */
    char both[128];    /* the two as the relay's upstreams */
    struct echod *e;
    int port; /* the relay's */
};

/* Starts upstreams a and b, then start_relay() to both on port (0: any). */
static void pair_start(struct pair *p, int port)
{
    p->a = echo_up();
    p->b = echo_up();
    addr_of(p->a, p->A, sizeof(p->A));
    addr_of(p->b, p->B, sizeof(p->B));
    snprintf(p->both, sizeof(p->both), "\"%s\", \"%s\"", p->A, p->B);
    p->e = start_relay(port, p->both);
    p->port = echod_port(p->e, "relay", 0);
}

/* Sends n short exchanges through port; how many each of a and b took. */
static void spread(int port, int n, struct upsrv *a, struct upsrv *b, int *to_a,
                   int *to_b)
{
    int a0 = accepted(a), b0 = accepted(b);
    for (int i = 0; i < n; i++)
        echo_once(port, "x");
    *to_a = accepted(a) - a0;
    *to_b = accepted(b) - b0;
    CHECK_EQ(*to_a + *to_b, n);
}

/*
 * Through the real mio-echodctl, with verified streams open on both
 * upstreams: drain A (its streams flow on byte-exact and finish; new
 * clients all go to B; show upstreams says draining, and its active
 * column falls to 0 as they close), enable it (it takes clients again),
 * disable it (none again), enable it.  Every step is logged with uid 0.
 */
static void drain_watch_enable_through_mio_echodctl(void **state)
{
    (void)state;
    struct pair p;
    pair_start(&p, 0);

    /* Four streams: round-robin puts two on each; show connections says
     * which. */
    enum { N = 4 };
    struct stream *s[N];
    for (int i = 0; i < N; i++)
        s[i] = stream_start_rate(p.port, (uint64_t)i * 100003, false, STREAM_RATE_HERE);
    for (int i = 0; i < N; i++)
        CHECK(stream_advances(s[i], 64 * KIB, SETTLE_MS));
    struct ctl_run r;
    CTL(&r, "show", "connections", "relay");
    ctl_expect(&r, 0, NULL, "");
    struct table *t = table_of_run(&r, CONNECTIONS_HEADER, C_COLUMNS, false);
    assert_int_equal(t->nrows, N);
    bool on_a[N];
    int na = 0;
    for (int i = 0; i < N; i++) {
        char client[64];
        snprintf(client, sizeof(client), "127.0.0.1:%d", s[i]->cport);
        char **row = row_must(t, C_CLIENT, client);
        on_a[i] = strcmp(row[C_UPSTREAM], p.A) == 0;
        CHECK(on_a[i] || strcmp(row[C_UPSTREAM], p.B) == 0);
        na += on_a[i];
    }
    table_free(t);
    assert_int_equal(na, N / 2);

    /* Drain A. */
    CTL(&r, "drain", "upstream", "relay", p.A);
    expect_steered(p.e, &r, p.A, "draining");
    t = upstreams_by_ctl("relay");
    assert_int_equal(t->nrows, 2);
    char **row = row_must(t, U_ADDRESS, p.A);
    assert_string_equal(row[U_STATE], "draining");
    assert_int_equal(num(row[U_ACTIVE]), na);
    assert_string_equal(row[U_WHY], "draining by uid 0");
    row = row_must(t, U_ADDRESS, p.B);
    assert_string_equal(row[U_STATE], "up");
    assert_int_equal(num(row[U_ACTIVE]), N - na);
    assert_string_equal(row[U_WHY], "-");
    table_free(t);

    /* New clients all go to B. */
    int to_a, to_b;
    spread(p.port, 20, p.a, p.b, &to_a, &to_b);
    assert_int_equal(to_a, 0);

    /* A's streams flow on, then finish one by one, byte-exact; its active
     * column falls with them, to 0. */
    for (int i = 0; i < N; i++)
        if (on_a[i])
            CHECK(stream_advances(s[i], 256 * KIB, SETTLE_MS));
    int left = na;
    for (int i = 0; i < N; i++) {
        if (!on_a[i])
            continue;
        CHECK(stream_finish(s[i]) >= 256 * KIB);
        s[i] = NULL;
        wait_upstream_by_ctl("relay", p.A, "draining", --left, SETTLE_MS);
    }
    for (int i = 0; i < N; i++)
        if (s[i] != NULL)
            stream_check(s[i]);

    /* Enable A: it takes new clients again, in turn with B. */
    CTL(&r, "enable", "upstream", "relay", p.A);
    expect_steered(p.e, &r, p.A, "enabled");
    expect_upstream("relay", p.A, "up", 1, "-");
    spread(p.port, 10, p.a, p.b, &to_a, &to_b);
    assert_int_equal(to_a, 5);

    /* Disable A: no new client either. */
    CTL(&r, "disable", "upstream", "relay", p.A);
    expect_steered(p.e, &r, p.A, "disabled");
    expect_upstream("relay", p.A, "disabled", 1, "disabled by uid 0");
    spread(p.port, 10, p.a, p.b, &to_a, &to_b);
    assert_int_equal(to_a, 0);
    /* Enabled again, and again: said and done each time. */
    for (int i = 0; i < 2; i++) {
        CTL(&r, "enable", "upstream", "relay", p.A);
        expect_steered(p.e, &r, p.A, "enabled");
    }
    spread(p.port, 10, p.a, p.b, &to_a, &to_b);
    assert_int_equal(to_a, 5);

    /* B's streams never stopped. */
    for (int i = 0; i < N; i++)
        if (s[i] != NULL)
            CHECK(stream_finish(s[i]) >= 256 * KIB);
    echod_stop_ok(p.e);
}

/* set weight: 3 to 1 over 400 connections, within 3%; back to 1 to 1. */
static void set_weight_shapes_the_distribution(void **state)
{
    (void)state;
    struct pair p;
    pair_start(&p, 0);

    struct ctl_run r;
    CTL(&r, "set", "weight", "relay", p.A, "3");
    expect_steered(p.e, &r, p.A, "weight set to 3");
    expect_upstream("relay", p.A, "up", 3, "-");
    expect_upstream("relay", p.B, "up", 1, "-");
    int to_a, to_b;
    spread(p.port, 400, p.a, p.b, &to_a, &to_b);
    if (to_a < 300 - 12 || to_a > 300 + 12)
        test_fail("weights 3 and 1: %d and %d of 400 connections", to_a, to_b);

    /* The bounds: 1 and 256 are taken. */
    CTL(&r, "set", "weight", "relay", p.A, "1");
    ctl_expect(&r, 0, NULL, "");
    CTL(&r, "set", "weight", "relay", p.B, "256");
    ctl_expect(&r, 0, NULL, "");
    expect_upstream("relay", p.B, "up", 256, "-");
    CTL(&r, "set", "weight", "relay", p.B, "1");
    ctl_expect(&r, 0, NULL, "");
    spread(p.port, 100, p.a, p.b, &to_a, &to_b);
    if (to_a < 50 - 3 || to_a > 50 + 3)
        test_fail("weights 1 and 1: %d and %d of 100 connections", to_a, to_b);
    echod_stop_ok(p.e);
}

/* An upstream written as a host name ("localhost:P": 127.0.0.1, and ::1
 * where the hosts file says so) is steered by that name, all its
 * addresses at once: drained, weighted, enabled. */
static void a_name_is_steered_with_all_its_addresses(void **state)
{
    (void)state;
    struct upsrv *a = echo_up(), *b = echo_up();
    char name[64], B[32], ups[160], want[256];
    snprintf(name, sizeof(name), "localhost:%d", a->srv.port);
    addr_of(b, B, sizeof(B));
    snprintf(ups, sizeof(ups), "\"%s\", \"%s\"", name, B);
    struct echod *e = start_relay(0, ups);
    int port = echod_port(e, "relay", 0);

    struct table *t = upstreams("relay");
    int n = rows_with(t, U_UPSTREAM, name);
    CHECK(n >= 1 && n <= 2);
    char v4[64];
    snprintf(v4, sizeof(v4), "127.0.0.1:%d", a->srv.port);
    CHECK(row_with(t, U_ADDRESS, v4) != NULL);
    table_free(t);

    struct ctl_run r;
    if (n == 1)
        snprintf(want, sizeof(want), "ok: listener relay: upstream %s draining\n", v4);
    else
        snprintf(want, sizeof(want),
                 "ok: listener relay: upstream %s (%d addresses) draining\n", name, n);
    CTL(&r, "drain", "upstream", "relay", name);
    ctl_expect(&r, 0, want, "");
    t = upstreams("relay");
    for (int i = 0; i < t->nrows; i++)
        if (strcmp(t->col[i][U_UPSTREAM], name) == 0)
            assert_string_equal(t->col[i][U_STATE], "draining");
    assert_string_equal(row_must(t, U_ADDRESS, B)[U_STATE], "up");
    table_free(t);
    int to_a, to_b;
    spread(port, 20, a, b, &to_a, &to_b);
    assert_int_equal(to_a, 0);

    CTL(&r, "set", "weight", "relay", name, "4");
    ctl_expect(&r, 0, NULL, "");
    CTL(&r, "enable", "upstream", "relay", name);
    ctl_expect(&r, 0, NULL, "");
    t = upstreams("relay");
    for (int i = 0; i < t->nrows; i++)
        if (strcmp(t->col[i][U_UPSTREAM], name) == 0) {
            assert_string_equal(t->col[i][U_STATE], "up");
            assert_int_equal(num(t->col[i][U_WEIGHT]), 4);
        }
    assert_int_equal(num(row_must(t, U_ADDRESS, B)[U_WEIGHT]), 1);
    table_free(t);
    spread(port, 50, a, b, &to_a, &to_b);
    if (n == 1)
        /* 4 to 1; smooth round-robin's running scores, from before the
         * weight changed, may shift one pick. */
        assert_in_range(to_a, 39, 41);
    else
        CHECK(to_a > to_b); /* [::1] refuses: its clients move to 127.0.0.1 or B */

    /* One of the name's addresses can be steered by itself too. */
    CTL(&r, "disable", "upstream", "relay", v4);
    expect_steered(e, &r, v4, "disabled");
    expect_upstream("relay", v4, "disabled", 4, "disabled by uid 0");
    echod_stop_ok(e);
}

/* ---- reloads ---------------------------------------------------------------- */

/* Rewrites daemon e's configuration: BASE, the control socket where it
 * is (mode 0600), and the rest formatted from fmt. */
__attribute__((format(printf, 2, 3))) static void rewrite(struct echod *e,
                                                          const char *fmt, ...)
{
    char conf[8192];
    va_list ap;
    va_start(ap, fmt);
    vconf(conf, sizeof(conf), sock, "0600", fmt, ap);
    va_end(ap);
    echod_rewrite_conf(e, "%s", conf);
}

/* Rewrites daemon e's configuration: the relay of start_relay() on port,
 * to `ups`, and the control socket where it is. */
static void rewrite_relay(struct echod *e, int port, const char *ups)
{
    rewrite(e, RELAY_OF_ROUND_ROBIN, port, ups);
}

/* What operators set stays over reloads (SIGHUP and the reload command)
 * while the address stays in the configuration; once a reload removes
 * it, a later one that brings it back finds it enabled with the
 * configuration's weight. */
static void steering_is_kept_while_the_address_stays(void **state)
{
    (void)state;
    struct pair p;
    pair_start(&p, reserve_port());
    char only_b[64];
    snprintf(only_b, sizeof(only_b), "\"%s\"", p.B);

    char line[128];
    snprintf(line, sizeof(line), "drain upstream relay %s", p.A);
    free(ask(line));
    snprintf(line, sizeof(line), "set weight relay %s 7", p.A);
    free(ask(line));
    snprintf(line, sizeof(line), "set weight relay %s 5", p.B);
    free(ask(line));
    expect_upstream("relay", p.A, "draining", 7, "draining by uid 0");
    expect_upstream("relay", p.B, "up", 5, "-");

    /* SIGHUP, then the command: kept. */
    echod_reload_ok(p.e, 5000);
    expect_upstream("relay", p.A, "draining", 7, "draining by uid 0");
    expect_upstream("relay", p.B, "up", 5, "-");
    struct ctl_run r;
    CTL(&r, "reload");
    ctl_expect(&r, 0, "ok: reloaded: 1 listener\n", "");
    echod_must_log(p.e, "notice: control: uid 0: reload");
    expect_upstream("relay", p.A, "draining", 7, "draining by uid 0");
    expect_upstream("relay", p.B, "up", 5, "-");
    int to_a, to_b;
    spread(p.port, 6, p.a, p.b, &to_a, &to_b);
    assert_int_equal(to_a, 0);

    /* A leaves the configuration; B, which stays, keeps its weight. */
    rewrite_relay(p.e, p.port, only_b);
    CTL(&r, "reload");
    ctl_expect(&r, 0, "ok: reloaded: 1 listener\n", "");
    struct table *t = upstreams("relay");
    assert_int_equal(t->nrows, 1);
    assert_string_equal(t->col[0][U_ADDRESS], p.B);
    assert_int_equal(num(t->col[0][U_WEIGHT]), 5);
    table_free(t);
    snprintf(line, sizeof(line), "enable upstream relay %s", p.A);
    char want[256];
    snprintf(want, sizeof(want),
             "error: listener relay has no upstream %s (see show upstreams relay)\n",
             p.A);
    expect_answer(line, want);

    /* A comes back as new: enabled, weight 1. */
    rewrite_relay(p.e, p.port, p.both);
    echod_reload_ok(p.e, 5000);
    expect_upstream("relay", p.A, "up", 1, "-");
    expect_upstream("relay", p.B, "up", 5, "-");
    spread(p.port, 60, p.a, p.b, &to_a, &to_b);
    /* 1 to 5, give or take the one pick B's score carried over. */
    assert_in_range(to_a, 9, 11);
    echod_stop_ok(p.e);
}

/* reload answers how it went: a broken file, exit 1 and the error with
 * its file and line, the old configuration serving on; a good one, "ok:
 * reloaded: N listeners".  Two clients asking at once both get it. */
static void reload_answers_its_outcome(void **state)
{
    (void)state;
    int ep = reserve_port(), ep2 = reserve_port();
    struct echod *e = start(
        "listeners = (\n"
        "  { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; mode = \"echo\"; },\n"
        "  { name = \"echo2\"; listen = [ \"127.0.0.1:%d\" ]; mode = \"echo\"; } );\n",
        ep, ep2);
    /* Line 5 is wrong. */
    rewrite(e,
            "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; mode = "
            "\"ekko\"; } );\n",
            ep);
    struct ctl_run r;
    CTL(&r, "reload");
    char want[PATH_MAX + 128];
    snprintf(want, sizeof(want),
             "mio-echodctl: error: reload failed: %s:5: ", echod_conf_path(e));
    ctl_expect(&r, 1, "", NULL);
    if (strncmp(r.err, want, strlen(want)) != 0 || strchr(r.err, '\n')[1] != '\0')
        test_fail("reload of a broken file: [%s], expected one line starting [%s]", r.err,
                  want);
    echod_must_log(e, "reload failed");
    echo_once(ep, "still here");
    echo_once(ep2, "and here");
    expect_rows(listeners(), 2);

    /* A good one, with one listener more. */
    int ep3 = reserve_port();
    rewrite(
        e,
        "listeners = (\n"
        "  { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; mode = \"echo\"; },\n"
        "  { name = \"echo2\"; listen = [ \"127.0.0.1:%d\" ]; mode = \"echo\"; },\n"
        "  { name = \"echo3\"; listen = [ \"127.0.0.1:%d\" ]; mode = \"echo\"; } );\n",
        ep, ep2, ep3);
    CTL(&r, "reload");
    ctl_expect(&r, 0, "ok: reloaded: 3 listeners\n", "");
    echo_once(ep3, "new");

    /* Two at once: one reload may serve both; each gets the answer. */
    int c1 = ctl_connect(sock), c2 = ctl_connect(sock);
    SEND_LITERAL(c1, "reload\n");
    SEND_LITERAL(c2, "reload\n");
    char *g1 = ctl_read_answer(c1, 10000), *g2 = ctl_read_answer(c2, 10000);
    assert_string_equal(g1, "ok: reloaded: 3 listeners\n\n");
    assert_string_equal(g2, "ok: reloaded: 3 listeners\n\n");
    free(g1);
    free(g2);
    close(c1);
    close(c2);
    echod_stop_ok(e);
}

/* ---- kill connection ------------------------------------------------------------- */

/* kill connection ID resets the client's connection (a relayed one, a UDP
 * flow), logged reason=killed; a second kill finds none. */
static void kill_connection_resets_it(void **state)
{
    (void)state;
    struct upsrv *a = echo_up();
    struct echod *e = start("listeners = (\n" RELAY_L ",\n" DGRAM_L " );\n", a->srv.port);
    int rp = echod_port(e, "relay", 0), up = echod_port(e, "dgram", 0);
    int fd = client4(rp), other = client4(rp);
    expect_echo(fd, "doomed");
    expect_echo(other, "spared");
    char client[64];
    snprintf(client, sizeof(client), "127.0.0.1:%d", local_port(fd));
    struct table *t = connections("relay");
    assert_int_equal(t->nrows, 2);
    char id[32];
    snprintf(id, sizeof(id), "%s", row_must(t, C_CLIENT, client)[C_ID]);
    table_free(t);

    struct ctl_run r;
    char want[128];
    snprintf(want, sizeof(want), "ok: connection %s closed\n", id);
    CTL(&r, "kill", "connection", id);
    ctl_expect(&r, 0, want, "");
    CHECK(peer_reset_within(fd, SETTLE_MS));
    const char *line = echod_must_log(e, "access listener=relay client=%s ", client);
    expect_access_reason(line, "killed");
    close(fd);
    snprintf(want, sizeof(want), "mio-echodctl: error: no open connection %s\n", id);
    CTL(&r, "kill", "connection", id);
    ctl_expect(&r, 1, "", want);
    /* The other one goes on. */
    expect_echo(other, "still");
    expect_rows(connections(""), 1);
    close(other);

    /* A UDP flow. */
    int ufd = udp_client4();
    udp_expect_echo(ufd, "127.0.0.1", up, "ping", 4, 3000);
    char uaddr[UDP_ADDRSTRLEN];
    udp_local(ufd, uaddr, sizeof(uaddr));
    t = connections("dgram");
    assert_int_equal(t->nrows, 1);
    snprintf(id, sizeof(id), "%s", row_must(t, C_CLIENT, uaddr)[C_ID]);
    table_free(t);
    snprintf(want, sizeof(want), "ok: connection %s closed\n", id);
    CTL(&r, "kill", "connection", id);
    ctl_expect(&r, 0, want, "");
    line = echod_must_log(e, "access listener=dgram client=%s ", uaddr);
    expect_access_reason(line, "killed");
    expect_rows(connections("dgram"), 0);
    echod_stop_ok(e);
}

/* ---- permissions ------------------------------------------------------------- */

/* Whether a process of uid:gid may connect to the socket at path: 0, or
 * its connect's errno. */
static int connect_as(uid_t uid, gid_t gid, const char *path)
{
    struct sockaddr_un sun = unix_addr(path);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* Only async-signal-safe calls in the child of a threaded program. */
        if (ctl_become(uid, gid) != 0)
            _exit(254);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            _exit(253);
        _exit(connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ? 0 : errno);
    }
    int status = 0;
    pid_t got = 0;
    int64_t until = ms_now() + 5000;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && ms_now() < until)
        sleep_ms(2);
    if (got != pid) {
        kill(pid, SIGKILL);
        (void)waitpid(pid, &status, 0);
        test_fail("a connect as uid %u did not end", (unsigned)uid);
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) < 253);
    return WEXITSTATUS(status);
}

/* The socket file at path is a socket of uid:gid and mode. */
static void expect_socket_file(const char *path, uid_t uid, gid_t gid, mode_t mode)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        test_fail("lstat %s: %s", path, errtext(errno));
    CHECK(S_ISSOCK(st.st_mode));
    if ((st.st_mode & 07777) != mode || st.st_uid != uid || st.st_gid != gid)
        test_fail("%s: mode %04o, %u:%u; expected %04o, %u:%u", path,
                  (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
                  (unsigned)st.st_gid, (unsigned)mode, (unsigned)uid, (unsigned)gid);
}

/* A daemon for the tests of another uid: the relay to one upstream (on
 * port up), its control socket of `mode`, run as OTHER_USER when
 * `as_other`; its directory open to others (0755: only the socket's own
 * mode keeps them out), and mio-echodctl copied there for them (into
 * prog). */
static struct echod *start_for_other(const char *mode, bool as_other, int up, char *prog,
                                     size_t len)
{
    struct echod *e = as_other
                          ? start_mode(mode, "user = \"" OTHER_USER "\";\n" RELAY_TO_ONE,
                                       up)
                          : start_mode(mode, RELAY_TO_ONE, up);
    char dir[PATH_MAX];
    dir_of(e, dir, sizeof(dir));
    CHECK(chmod(dir, 0755) == 0);
    ctl_program_copy(dir, prog, len);
    return e;
}

/* Mode 0600 keeps another uid out (EACCES; mio-echodctl exits 2 saying
 * so); 0666 lets it in, and what it steers is logged with its uid; with
 * user = "nobody" the socket is nobody's, and nobody may use it at 0600. */
static void permissions_mode_and_owner(void **state)
{
    (void)state;
    uid_t uid;
    gid_t gid;
    if (geteuid() != 0) {
        print_message("skipped: needs root to connect as another user (running as "
                      "uid %u)\n",
                      (unsigned)geteuid());
        skip();
        return;
    }
    if (!ctl_user_ids(OTHER_USER, &uid, &gid)) {
        print_message("skipped: no user \"%s\" here\n", OTHER_USER);
        skip();
        return;
    }
    struct upsrv *a = echo_up();
    char A[32], dir[PATH_MAX], prog[PATH_MAX + 16], want[2 * PATH_MAX];
    addr_of(a, A, sizeof(A));

    /* 0600, root's: nobody is refused. */
    struct echod *e = start_for_other("0600", false, a->srv.port, prog, sizeof(prog));
    expect_socket_file(sock, 0, getegid(), 0600);
    assert_int_equal(connect_as(uid, gid, sock), EACCES);
    struct ctl_run r;
    char *show[] = {"-S", sock, "show", "listeners", NULL};
    ctl_run_argv(&r, prog, uid, gid, show);
    snprintf(want, sizeof(want),
             "mio-echodctl: cannot connect to %s: Permission denied (is the daemon's "
             "control socket enabled, and may this user open it?)\n",
             sock);
    ctl_expect(&r, 2, "", want);
    echod_stop_ok(e);

    /* 0666: nobody may, and what it does is logged as its own. */
    e = start_for_other("0666", false, a->srv.port, prog, sizeof(prog));
    expect_socket_file(sock, 0, getegid(), 0666);
    assert_int_equal(connect_as(uid, gid, sock), 0);
    char *drain[] = {"-S", sock, "drain", "upstream", "relay", A, NULL};
    ctl_run_argv(&r, prog, uid, gid, drain);
    snprintf(want, sizeof(want), "ok: listener relay: upstream %s draining\n", A);
    ctl_expect(&r, 0, want, "");
    echod_must_log(e, "notice: control: uid %u: listener relay: upstream %s draining",
                   (unsigned)uid, A);
    snprintf(want, sizeof(want), "draining by uid %u", (unsigned)uid);
    expect_upstream("relay", A, "draining", 1, want);
    echod_stop_ok(e);

    /* user = "nobody": the socket is given to it, mode 0600 as asked;
     * nobody may use it, root still may.  The daemon, nobody by then,
     * cannot remove it at exit from root's directory: it says so. */
    e = start_for_other("0600", true, a->srv.port, prog, sizeof(prog));
    expect_socket_file(sock, uid, gid, 0600);
    assert_int_equal(connect_as(uid, gid, sock), 0);
    ctl_run_argv(&r, prog, uid, gid, show);
    ctl_expect(&r, 0, NULL, "");
    CHECK(strncmp(r.out, LISTENERS_HEADER "\n", strlen(LISTENERS_HEADER) + 1) == 0);
    free(ask("help"));
    echod_stop_ok(e);
    echod_must_log(e,
                   "notice: control: cannot remove %s: Permission denied (the next "
                   "start replaces it)",
                   sock);
    struct stat st;
    CHECK(lstat(sock, &st) == 0);

    /* The directory it makes is given to nobody too: the socket goes at
     * exit. */
    e = start_where("run/control.sock", "user = \"" OTHER_USER "\";\n" RELAY_TO_ONE,
                    a->srv.port);
    dir_of(e, dir, sizeof(dir));
    CHECK(chmod(dir, 0755) == 0);
    char made[PATH_MAX + 16];
    snprintf(made, sizeof(made), "%s/run", dir);
    CHECK(lstat(made, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(st.st_uid == uid && st.st_gid == gid && (st.st_mode & 07777) == 0755);
    expect_socket_file(sock, uid, gid, 0600);
    free(ask("help"));
    echod_stop_ok(e);
    CHECK(lstat(sock, &st) != 0 && errno == ENOENT);
    assert_int_equal(echod_count_log(e, "cannot remove"), 0);
}

/* ---- clients that do not read, and too many ---------------------------------- */

/* A client that sends command after command and never reads its answers
 * holds its own connection only: echo, relay and another control client
 * are served meanwhile. */
static void a_client_that_never_reads_stops_nothing(void **state)
{
    (void)state;
    struct upsrv *a = echo_up();
    struct echod *e = start("listeners = (\n" ECHO_L ",\n" RELAY_L " );\n", a->srv.port);
    int ep = echod_port(e, "echo", 0), rp = echod_port(e, "relay", 0);

    /* "show stats" until neither the daemon nor the kernel takes more. */
    int greedy = ctl_connect(sock);
    set_nonblocking(greedy);
    static const char one[] = "show stats\n";
    static char burst[100 * (sizeof(one) - 1)];
    for (size_t i = 0; i + sizeof(one) - 1 <= sizeof(burst); i += sizeof(one) - 1)
        memcpy(burst + i, one, sizeof(one) - 1);
    size_t sent = 0;
    int64_t until = ms_now() + 5000;
    for (int i = 0; i < 100000 && ms_now() < until; i++) {
        ssize_t n = send(greedy, burst, sizeof(burst), MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        CHECK(n < 0 && (errno == EAGAIN || errno == EINTR));
        struct pollfd pfd = {.fd = greedy, .events = POLLOUT};
        if (poll(&pfd, 1, 300) == 0)
            break; /* stalled: it reads no more */
    }
    if (sent / 11 < 1000)
        test_fail("only %zu commands sent before the connection stalled", sent / 11);

    /* Everything else is served, again and again. */
    for (int round = 0; round < 5; round++) {
        echo_once(ep, "echo meanwhile");
        echo_once(rp, "x");
        expect_rows(listeners(), 2);
        struct ctl_run r;
        CTL(&r, "show", "upstreams", "relay");
        ctl_expect(&r, 0, NULL, "");
        sleep_ms(20);
    }
    /* It goes; the daemon forgets it. */
    close(greedy);
    free(ask("help"));
    echod_stop_ok(e);
}

/* Asks `line` on a new connection; NULL when the daemon answers that it
 * has too many. */
static char *try_ask(const char *line)
{
    int fd = ctl_connect(sock);
    char msg[256];
    int n = snprintf(msg, sizeof(msg), "%s\n", line);
    /* The daemon may have closed it already: its answer is read anyway. */
    (void)send(fd, msg, (size_t)n, MSG_NOSIGNAL);
    char *answer = ctl_read_answer(fd, 5000);
    close(fd);
    if (strcmp(answer, BUSY "\n\n") == 0) {
        free(answer);
        return NULL;
    }
    return answer;
}

/* 16 clients are served; a 17th is told why and closed at once (logged),
 * and mio-echodctl says so; once one of the 16 goes, a new one is
 * served. */
static void the_seventeenth_client_is_closed(void **state)
{
    (void)state;
    struct echod *e = start(ONLY_ECHO);
    int fds[16];
    for (size_t i = 0; i < ARRAY_LEN(fds); i++) {
        fds[i] = ctl_connect(sock);
        track_fd(fds[i]);
        free(ctl_ask(fds[i], "help"));
    }
    int extra = ctl_connect(sock);
    char *got = ctl_read_answer(extra, SETTLE_MS);
    assert_string_equal(got, BUSY "\n\n");
    free(got);
    CHECK(wait_end(extra, SETTLE_MS, NULL) == END_EOF);
    close(extra);
    echod_must_log(e, "warning: control: 16 clients already; closing a new one (uid 0)");
    /* mio-echodctl's command may be unread when the daemon closes: the
     * answer is read all the same. */
    struct ctl_run r;
    for (int i = 0; i < 5; i++) {
        CTL(&r, "help");
        ctl_expect(&r, 1, "", "mio-echodctl: " BUSY "\n");
    }
    for (size_t i = 0; i < ARRAY_LEN(fds); i++) {
        got = ctl_ask(fds[i], "show listeners");
        CHECK(strncmp(got, LISTENERS_HEADER "\n", strlen(LISTENERS_HEADER) + 1) == 0);
        free(got);
    }
    close_tracked(fds[0]);
    got = NULL;
    for (int i = 0; i < 100 && (got = try_ask("help")) == NULL; i++)
        sleep_ms(20);
    CHECK(got != NULL && strncmp(got, "show listeners\n", 15) == 0);
    free(got);
    echod_stop_ok(e);
}

/* ---- the socket file --------------------------------------------------------- */

/* Runs "mio-echod -f -c" on a configuration with the control socket at
 * path (and an echo listener) to its end: its exit status, its output in
 * out. */
static int run_daemon(const char *path, char *out, size_t len)
{
    char conf[PATH_MAX + 1024];
    snprintf(conf, sizeof(conf), BASE "control = { path = \"%s\"; };\n" ONLY_ECHO, path);
    return echod_run(out, len, "-f", "-c", write_conf(conf), NULL);
}

/* The socket file: a missing directory is made; a stale socket is
 * replaced; a second daemon on the same path is refused, the first keeps
 * its socket; at exit it is removed; a file that is not a socket stops
 * the start, named. */
static void the_socket_file_from_start_to_exit(void **state)
{
    (void)state;
    char conf[PATH_MAX + 1024], dir[PATH_MAX], path[PATH_MAX + 64], out[8192];
    struct stat st;

    /* A missing directory: made, 0755.  The socket is removed at exit. */
    snprintf(conf, sizeof(conf),
             BASE "control = { path = \"@DIR@/run/control.sock\"; };\n" ONLY_ECHO);
    struct echod *e = echod_start(conf);
    dir_of(e, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/run", dir);
    CHECK(lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0755);
    snprintf(sock, sizeof(sock), "%s/run/control.sock", dir);
    free(ask("help"));
    echod_stop_ok(e);
    CHECK(lstat(sock, &st) != 0 && errno == ENOENT);
    /* Two levels missing: one only is made. */
    snprintf(path, sizeof(path), "%s/a/b/control.sock", dir);
    CHECK(run_daemon(path, out, sizeof(out)) != 0);
    snprintf(conf, sizeof(conf),
             "control: cannot make the directory of %s: No such file or directory", path);
    if (strstr(out, conf) == NULL)
        test_fail("no \"%s\" in: %s", conf, out);

    /* A stale socket (bound, then its process gone): replaced. */
    const char *dir2 = test_tmpdir();
    snprintf(sock, sizeof(sock), "%s/control.sock", dir2);
    struct sockaddr_un sun = unix_addr(sock);
    int stale = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(stale >= 0 && bind(stale, (struct sockaddr *)&sun, sizeof(sun)) == 0);
    close(stale);
    CHECK(ctl_connect_to(sock) < 0 && errno == ECONNREFUSED);
    snprintf(conf, sizeof(conf),
             BASE "control = { path = \"@DIR@/control.sock\"; };\n" ONLY_ECHO);
    e = echod_start_opts(conf, &(struct echod_opts){.dir = dir2});
    free(ask("help"));
    CHECK(lstat(sock, &st) == 0);
    ino_t ino = st.st_ino;

    /* A second daemon there: refused, saying why; the first goes on. */
    int status = run_daemon(sock, out, sizeof(out));
    snprintf(conf, sizeof(conf), "control: %s: another daemon answers there", sock);
    if (status == 0 || strstr(out, conf) == NULL)
        test_fail("second daemon: exit %d, expected \"%s\" in: %s", status, conf, out);
    CHECK(lstat(sock, &st) == 0 && st.st_ino == ino);
    free(ask("help"));
    echod_stop_ok(e);
    CHECK(lstat(sock, &st) != 0 && errno == ENOENT);

    /* A regular file: the start fails, naming it; the file is left. */
    int f = open(sock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    CHECK(f >= 0 && write(f, "mine\n", 5) == 5);
    close(f);
    status = run_daemon(sock, out, sizeof(out));
    snprintf(conf, sizeof(conf),
             "control: cannot replace the non-socket file %s: File exists", sock);
    if (status == 0 || strstr(out, conf) == NULL)
        test_fail("a file in the way: exit %d, expected \"%s\" in: %s", status, conf,
                  out);
    CHECK(lstat(sock, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 5);
}

static int setup_group(void **state)
{
    (void)state;
    return setup_sigpipe_and_pattern(PLEN, 20261203);
}

#define TEST(f) cmocka_unit_test_teardown(f, teardown_all)

int main(void)
{
    /* CONTROL_TEST=glob runs only the tests it matches. */
    test_filter_from_env("CONTROL_TEST");
    const struct CMUnitTest tests[] = {
        TEST(show_answers_by_columns),
        TEST(errors_are_one_line_and_the_connection_goes_on),
        TEST(refused_lines_close_the_connection),
        TEST(drain_watch_enable_through_mio_echodctl),
        TEST(set_weight_shapes_the_distribution),
        TEST(a_name_is_steered_with_all_its_addresses),
        TEST(steering_is_kept_while_the_address_stays),
        TEST(reload_answers_its_outcome),
        TEST(kill_connection_resets_it),
        TEST(permissions_mode_and_owner),
        TEST(a_client_that_never_reads_stops_nothing),
        TEST(the_seventeenth_client_is_closed),
        TEST(the_socket_file_from_start_to_exit),
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_pattern);
}
