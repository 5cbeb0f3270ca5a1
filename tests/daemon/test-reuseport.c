/*
 * Several instances on one port (issue 15): listeners with reuse_port =
 * true, end to end on real daemons over loopback.
 *
 *   two instances on one TCP port both get clients (each one's access
 *   lines); one stopped with SIGTERM while a client loop keeps going: no
 *   connection refused, none lost once its listener is closed (those that
 *   landed in its queue before are counted and printed: the documented
 *   trade-off), then started again and serving; two UDP echo instances on
 *   one port both answer flows; without reuse_port the second instance
 *   fails, naming the listener; a reload keeps SO_REUSEPORT on the socket
 *   it keeps, also a reload that fails after sharing a moved address; a
 *   reload turning it on sets it, one turning it off warns; the
 *   configuration errors.
 *
 * The daemons' sockets are looked at with pidfd_getfd(2) (our children:
 * ptrace allows it); where the kernel refuses, that check is skipped,
 * saying so.  Every instance listens on a port from reserve_port(), which
 * every instance must find again.  REUSE_TEST=glob runs only the tests it
 * matches.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"

/* How long a test waits for what should happen at once. */
#define WAIT_MS (SANITIZED ? 6000 : 3000)

/* An echo listener "r" on 127.0.0.1:PORT (TCP, or UDP with a short
 * idle_timeout so that flows end and log soon), reuse_port as given;
 * two workers, access lines on stderr; drains for up to 2 s. */
#define CONF_FMT                                                          \
    "workers = 2;\n"                                                      \
    "shutdown_timeout = 2.0;\n"                                           \
    "log = { target = \"stderr\"; level = \"info\"; access = true; };\n"  \
    "listeners = ( { name = \"r\"; protocol = \"%s\"; mode = \"echo\";\n" \
    "  listen = [ \"127.0.0.1:%d\" ]; reuse_port = %s;%s } );\n"

#define ACCESS ": access listener=r "

static struct echod *start(const char *proto, int port, bool reuse)
{
    return echod_startf(CONF_FMT, proto, port, reuse ? "true" : "false",
                        strcmp(proto, "udp") == 0 ? " idle_timeout = 0.3;" : "");
}

/* ---- the daemon's sockets -----------------------------------------------------------
 */

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

/* SO_REUSEPORT of the daemon's socket of `type` (a listening one for TCP)
 * bound to 127.0.0.1:port: 1 or 0; -1 when the kernel does not let us look
 * (then the reason is printed once). */
static int daemon_reuseport(struct echod *e, int type, int port)
{
    static bool told;
    pid_t pid = echod_pid(e);
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0) {
        if (!told)
            print_message("    (pidfd_open: %m: socket options not checked)\n");
        told = true;
        return -1;
    }
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int found = -1;
    bool denied = false;
    struct dirent *de;
    while (found < 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        int fd = (int)syscall(SYS_pidfd_getfd, pfd, (int)strtol(de->d_name, NULL, 10), 0);
        if (fd < 0) {
            if (errno == EPERM || errno == ENOSYS) {
                if (!told)
                    print_message("    (pidfd_getfd: %m: socket options not checked)\n");
                told = true;
                denied = true;
                break;
            }
            continue;
        }
        int t = 0, listening = 0, reuse = 0;
        socklen_t len = sizeof(t);
        struct sockaddr_in sin = {0};
        socklen_t slen = sizeof(sin);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &len) == 0 && t == type &&
            getsockname(fd, (struct sockaddr *)&sin, &slen) == 0 &&
            sin.sin_family == AF_INET && ntohs(sin.sin_port) == port) {
            len = sizeof(listening);
            (void)getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
            len = sizeof(reuse);
            if ((type != SOCK_STREAM || listening) &&
                getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &reuse, &len) == 0)
                found = reuse != 0;
        }
        close(fd);
    }
    closedir(d);
    close(pfd);
    if (found < 0 && !denied)
        fail_msg("the daemon has no %s socket on 127.0.0.1:%d",
                 type == SOCK_STREAM ? "listening TCP" : "UDP", port);
    return found;
}

/* Expects the daemon's socket to have SO_REUSEPORT `want` (when we may look). */
static void expect_reuseport(struct echod *e, int type, int port, bool want,
                             const char *when)
{
    int got = daemon_reuseport(e, type, port);
    if (got >= 0 && got != (int)want)
        fail_msg("%s: SO_REUSEPORT is %d on the daemon's socket, expected %d", when, got,
                 want);
}

/* ---- clients --------------------------------------------------------------------------
 */

enum outcome { ECHOED, REFUSED, LOST };

/* One client: connects to 127.0.0.1:port, sends a line, expects it back,
 * closes.  LOST: connected, but reset, closed or silent (1 s) before the
 * answer. */
static enum outcome try_echo(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {1, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        if (errno == ECONNREFUSED) {
            close(fd);
            return REFUSED;
        }
        fail_msg("connect: %m");
    }
    static const char msg[] = "reuse\n";
    char buf[sizeof(msg)];
    size_t got = 0;
    enum outcome r = LOST;
    if (send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL) == (ssize_t)sizeof(msg) - 1) {
        while (got < sizeof(msg) - 1) {
            ssize_t n = recv(fd, buf + got, sizeof(msg) - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (got == sizeof(msg) - 1 && memcmp(buf, msg, got) == 0)
            r = ECHOED;
    }
    close(fd);
    return r;
}

/* n clients one after the other, each of which must be echoed. */
static void echo_clients(int port, int n)
{
    for (int i = 0; i < n; i++) {
        enum outcome r = try_echo(port);
        if (r != ECHOED)
            fail_msg("client %d of %d on port %d: %s", i + 1, n, port,
                     r == REFUSED ? "refused" : "lost");
    }
}

/* Waits for the two daemons' access lines to add up to at least total;
 * expects each to have some. */
static void expect_both_served(struct echod *a, struct echod *b, int total,
                               const char *when)
{
    int na = 0, nb = 0;
    for (int64_t end = ms_now() + WAIT_MS; ms_now() < end; sleep_ms(20)) {
        na = echod_count_log(a, ACCESS);
        nb = echod_count_log(b, ACCESS);
        if (na + nb >= total)
            break;
    }
    print_message("    %s: %d clients on one, %d on the other\n", when, na, nb);
    if (na + nb < total)
        fail_msg("%s: %d access lines in all, expected %d", when, na + nb, total);
    if (na == 0 || nb == 0)
        fail_msg("%s: one instance got no client (%d and %d)", when, na, nb);
}

/* ---- TCP ------------------------------------------------------------------------------
 */

/* Two instances share a port, both get clients; one stopped with SIGTERM
 * (while it drains connections it holds) leaves the port to the other
 * without a refusal; started again, it gets clients again. */
static void two_tcp_instances_share_a_port_and_restart(void **state)
{
    (void)state;
    int port = reserve_port();
    struct echod *a = start("tcp", port, true);
    struct echod *b = start("tcp", port, true);
    expect_reuseport(a, SOCK_STREAM, port, true, "first instance");
    expect_reuseport(b, SOCK_STREAM, port, true, "second instance");
    echo_clients(port, 200);
    expect_both_served(a, b, 200, "both running");

    /* Idle clients, some of them (almost surely) on a, keep it draining
     * after SIGTERM, its listener closed. */
    int idle[16];
    for (size_t i = 0; i < ARRAY_LEN(idle); i++) {
        idle[i] = connect_to(port);
        assert_true(idle[i] >= 0);
        track_fd(idle[i]);
    }
    for (size_t i = 0; i < ARRAY_LEN(idle); i++)
        expect_echo(idle[i], "idle\n");

    echod_signal(a, SIGTERM);
    int refused = 0, lost_before = 0, lost_after = 0, after = 0, total = 0;
    bool closed = false, exited = false;
    int64_t end = ms_now() + 10000;
    /* Until a has exited and 100 more clients were served, bounded; the
     * idle clients are closed once 200 went to the port after a's listener
     * was closed.  (Should the loop end first, teardown closes them.) */
    while (ms_now() < end && total < 20000 && !(exited && after >= 100)) {
        if (!closed)
            closed = echod_count_log(a, "no longer accepting") > 0;
        enum outcome r = try_echo(port);
        total++;
        if (r == REFUSED)
            refused++;
        else if (r == LOST && closed)
            lost_after++;
        else if (r == LOST)
            lost_before++;
        if (closed)
            after++;
        if (after == 200) /* a's drain then ends: it exits */
            for (size_t i = 0; i < ARRAY_LEN(idle); i++)
                close_tracked(idle[i]);
        if (!exited)
            exited = !echod_alive(a);
    }
    print_message(
        "    SIGTERM to one: %d clients, %d refused, %d lost in the closing "
        "queue (before \"no longer accepting\"), %d lost after it, %d after it in "
        "all\n",
        total, refused, lost_before, lost_after, after);
    assert_true(exited);
    assert_int_equal(echod_status(a), 0);
    assert_int_equal(refused, 0);
    assert_int_equal(lost_after, 0);

    /* Started again, it takes its share. */
    struct echod *c = start("tcp", port, true);
    int before_b = echod_count_log(b, ACCESS);
    echo_clients(port, 200);
    int na = 0, nb = 0;
    for (int64_t until = ms_now() + WAIT_MS; ms_now() < until; sleep_ms(20)) {
        na = echod_count_log(c, ACCESS);
        nb = echod_count_log(b, ACCESS) - before_b;
        if (na + nb >= 200)
            break;
    }
    print_message("    started again: %d clients on it, %d on the other\n", na, nb);
    assert_true(na > 0 && nb > 0);
    echod_stop_ok(c);
    echod_stop_ok(b);
}

/* Without reuse_port on either side, the second instance fails at start
 * saying which listener and address; so does a mix of the two. */
static void without_reuse_port_the_second_fails(void **state)
{
    (void)state;
    static const struct {
        bool first, second;
        const char *hint;
    } cases[] = {
        {false, false, "instances that all set reuse_port = true share a port"},
        {true, false, "instances that all set reuse_port = true share a port"},
        {false, true, "without reuse_port or as another user"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int port = reserve_port();
        struct echod *a = start("tcp", port, cases[i].first);
        char conf[1024], out[4096], want[128];
        snprintf(conf, sizeof(conf), CONF_FMT, "tcp", port,
                 cases[i].second ? "true" : "false", "");
        const char *path = write_conf(conf);
        int rc = echod_run(out, sizeof(out), "-f", "-c", path, (char *)NULL);
        snprintf(want, sizeof(want),
                 "listener r: cannot listen on 127.0.0.1:%d: Address already in use",
                 port);
        if (rc == 0 || strstr(out, want) == NULL || strstr(out, cases[i].hint) == NULL)
            fail_msg(
                "reuse_port %d then %d: exit %d, expected \"%s\" and \"%s\"; got: %s",
                cases[i].first, cases[i].second, rc, want, cases[i].hint, out);
        print_message("    reuse_port %d then %d: exit %d: %s", cases[i].first,
                      cases[i].second, rc, strstr(out, want));
        /* The first one still serves. */
        echo_clients(port, 3);
        echod_stop_ok(a);
    }
}

/* A reload that keeps the socket keeps SO_REUSEPORT: a third instance can
 * still join, and all three serve. */
static void reload_keeps_reuse_port(void **state)
{
    (void)state;
    int port = reserve_port();
    struct echod *a = start("tcp", port, true);
    echod_rewrite_conf(a, CONF_FMT, "tcp", port, "true", " idle_timeout = 60.0;");
    echod_reload_ok(a, WAIT_MS);
    expect_reuseport(a, SOCK_STREAM, port, true, "after a reload");
    struct echod *b = start("tcp", port, true);
    echo_clients(port, 200);
    expect_both_served(a, b, 200, "after the first's reload");
    echod_stop_ok(b);
    echod_stop_ok(a);
}

/* A reload that moves 127.0.0.1:P to 0.0.0.0:P shares the port for the
 * while (generation.c); when that reload then fails, the old socket must
 * keep the SO_REUSEPORT its reuse_port gave it. */
static void failed_reload_leaves_reuse_port_set(void **state)
{
    (void)state;
    int port = reserve_port();
    struct echod *a = start("tcp", port, true);
    int held = reserve_port();
    int blocker = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(blocker >= 0);
    track_fd(blocker);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)held)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(blocker, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(blocker, 1), 0);
    echod_rewrite_conf(
        a,
        "workers = 2;\nlog = { target = \"stderr\"; level = \"info\"; access = true; };\n"
        "listeners = ( { name = \"r\"; mode = \"echo\"; listen = [ \"0.0.0.0:%d\" ];\n"
        "  reuse_port = true; },\n"
        "  { name = \"held\"; mode = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        port, held);
    int failed = echod_count_log(a, "reload failed");
    echod_signal(a, SIGHUP);
    assert_true(echod_wait_count(a, "reload failed", failed + 1, WAIT_MS));
    expect_reuseport(a, SOCK_STREAM, port, true, "after a failed reload");
    close_tracked(blocker);
    struct echod *b = start("tcp", port, true);
    echo_clients(port, 200);
    expect_both_served(a, b, 200, "after the first's failed reload");
    echod_stop_ok(b);
    echod_stop_ok(a);
}

/* A reload turning reuse_port on sets SO_REUSEPORT on the kept socket:
 * another instance can then join.  Turning it off warns and keeps it. */
static void reload_turning_reuse_port_on_and_off(void **state)
{
    (void)state;
    int port = reserve_port();
    struct echod *a = start("tcp", port, false);
    expect_reuseport(a, SOCK_STREAM, port, false, "reuse_port = false");
    echod_rewrite_conf(a, CONF_FMT, "tcp", port, "true", "");
    echod_reload_ok(a, WAIT_MS);
    assert_non_null(echod_wait_log(a, "now shares its port (reuse_port)", WAIT_MS));
    expect_reuseport(a, SOCK_STREAM, port, true, "reuse_port turned on");
    struct echod *b = start("tcp", port, true);
    echo_clients(port, 200);
    expect_both_served(a, b, 200, "turned on by a reload");
    echod_stop_ok(b);

    echod_rewrite_conf(a, CONF_FMT, "tcp", port, "false", "");
    echod_reload_ok(a, WAIT_MS);
    assert_non_null(
        echod_wait_log(a, "reuse_port = false takes effect when 127.0.0.1:", WAIT_MS));
    expect_reuseport(a, SOCK_STREAM, port, true, "reuse_port turned off by a reload");
    echo_clients(port, 3);
    echod_stop_ok(a);
}

/* ---- UDP ------------------------------------------------------------------------------
 */

/* Two UDP echo instances on one port: flows from many client ports are
 * all answered, by both between them (the kernel's 4-tuple hash). */
static void two_udp_instances_share_a_port(void **state)
{
    (void)state;
    int port = reserve_port();
    struct echod *a = start("udp", port, true);
    struct echod *b = start("udp", port, true);
    expect_reuseport(a, SOCK_DGRAM, port, true, "first udp instance");
    expect_reuseport(b, SOCK_DGRAM, port, true, "second udp instance");
    enum { FLOWS = 64 };
    /* Every client socket stays open until the end: one closed could give
     * its source port to the next, which would then be the same flow. */
    int fds[FLOWS];
    for (int i = 0; i < FLOWS; i++) {
        fds[i] = udp_client4();
        char msg[32];
        int n = snprintf(msg, sizeof(msg), "flow %d", i);
        udp_expect_echo(fds[i], "127.0.0.1", port, msg, (size_t)n, WAIT_MS);
    }
    /* Each flow's access line comes at its idle_timeout. */
    expect_both_served(a, b, FLOWS, "udp");
    for (int i = 0; i < FLOWS; i++)
        close_tracked(fds[i]);
    echod_stop_ok(b);
    echod_stop_ok(a);
}

/* ---- the configuration ----------------------------------------------------------------
 */

/* reuse_port must be a boolean, and is refused with a unix: address. */
static void config_errors_name_the_setting(void **state)
{
    (void)state;
    static const struct {
        const char *what, *conf, *also;
    } cases[] = {
        {"a string",
         "listeners = ( { name = \"r\"; listen = [ \"127.0.0.1:0\" ];\n"
         "  reuse_port = \"yes\"; } );\n",
         "expected true or false"},
        {"a unix: address",
         "listeners = ( { name = \"r\"; listen = [ \"127.0.0.1:0\", "
         "\"unix:/tmp/mio-echod-reuse-test.sock\" ];\n"
         "  reuse_port = true; } );\n",
         "Unix socket"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char out[4096], where[PATH_MAX + 32];
        const char *path = write_conf(cases[i].conf);
        int rc = echod_run(out, sizeof(out), "-t", "-c", path, (char *)NULL);
        snprintf(where, sizeof(where), "%s:2: listeners.r.reuse_port", path);
        if (rc != 1 || strstr(out, where) == NULL || strstr(out, cases[i].also) == NULL)
            fail_msg("%s: exit %d, expected 1 with \"%s\" and \"%s\"; got \"%s\"",
                     cases[i].what, rc, where, cases[i].also, out);
        print_message("    %s: %s", cases[i].what, strstr(out, where));
    }
    char out[4096];
    const char *path = write_conf("listeners = ( { name = \"r\"; listen = [ \"*:0\" ];\n"
                                  "  reuse_port = true; },\n"
                                  "  { name = \"u\"; protocol = \"udp\"; listen = [ "
                                  "\"127.0.0.1:0\" ]; reuse_port = true; } );\n");
    int rc = echod_run(out, sizeof(out), "-t", "-c", path, (char *)NULL);
    if (rc != 0)
        fail_msg("tcp and udp with reuse_port: exit %d: %s", rc, out);
}

/* ---- main ------------------------------------------------------------------------- */

#define TEST(f) cmocka_unit_test_teardown(f, teardown_all)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(two_tcp_instances_share_a_port_and_restart),
        TEST(without_reuse_port_the_second_fails),
        TEST(reload_keeps_reuse_port),
        TEST(failed_reload_leaves_reuse_port_set),
        TEST(reload_turning_reuse_port_on_and_off),
        TEST(two_udp_instances_share_a_port),
        TEST(config_errors_name_the_setting),
    };
    test_filter_from_env("REUSE_TEST");
    return cmocka_run_group_tests(tests, setup_ignore_sigpipe, NULL);
}
