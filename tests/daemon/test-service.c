/*
 * mio-echod as a systemd service, end to end on the real daemon: the
 * notify protocol (READY=1, STATUS=, STOPPING=1, RELOADING=1) read from a
 * Unix datagram socket named by NOTIFY_SOCKET; socket activation through
 * systemd-socket-activate(1) (sockets matched to listeners by name and
 * address); and SIGHUP reloads, which must keep established connections
 * and the sockets of listeners that stay, open and close the listeners
 * that come and go, apply changed settings to new connections only, and
 * keep the old configuration when the new file is broken.
 *
 * Built twice, like test-admission: for src/mio-echod and for its poll(2)
 * twin.  By hand, from the source directory with a build in build/:
 *
 *   gcc -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes \
 *       -Wmissing-prototypes -Wformat=2 -Werror -I lib -I tests/daemon \
 *       -DECHOD_PROGRAM='"src/mio-echod"' tests/daemon/test-service.c \
 *       tests/daemon/harness.c -lcmocka -lpthread -o /tmp/t-svc
 *   top_builddir=build top_srcdir=. /tmp/t-svc
 *
 * The reload tests use ports reserved by binding 127.0.0.1:0 and closing
 * the socket (a tiny race with other programs is accepted): a listener
 * that stays keeps its socket, so its address must not be re-resolved.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* Every daemon here logs to stderr and gives connections still open at
 * SIGTERM little time. */
#define BASE "log = { target = \"stderr\"; };\nshutdown_timeout = 2.0;\n"

/* How long a test waits for something that should happen at once. */
#define WAIT_MS 3000

/* ---- small helpers ------------------------------------------------------ */

static int64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Whether the daemon under test was built with libsystemd.  Known at build
 * time under automake (autoconf.h); assumed when built by hand. */
static bool built_with_libsystemd(void)
{
#if defined(HAVE_CONFIG_H) && !defined(HAVE_LIBSYSTEMD)
    return false;
#else
    return true;
#endif
}

/* n different reserved ports. */
static void reserve_ports(int *ports, int n)
{
    for (int i = 0; i < n; i++) {
        bool again;
        int tries = 0;
        do {
            ports[i] = reserve_port();
            again = false;
            for (int k = 0; k < i; k++)
                again |= ports[k] == ports[i];
        } while (again && ++tries < 100);
        assert_false(again);
    }
}

/* Sends len pseudo-random bytes and expects them back, byte-exact. */
static void expect_echo_bytes(int fd, size_t len, uint32_t seed)
{
    uint8_t *out = malloc(len), *in = malloc(len);
    assert_non_null(out);
    assert_non_null(in);
    fill_random(out, len, seed);
    send_all(fd, out, len);
    recv_exact(fd, in, len);
    bool same = memcmp(out, in, len) == 0;
    free(out);
    free(in);
    assert_true(same);
}

/* The inode of the socket listening on 127.0.0.1:port, from /proc/net/tcp
 * (0 when there is none): the same inode before and after a reload means
 * the very same socket, not a new one bound to the same port. */
static unsigned long listen_inode(int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (f == NULL)
        return 0;
    char line[512], want[32];
    snprintf(want, sizeof(want), "0100007F:%04X", port);
    unsigned long inode = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char local[64], remote[64], st[8];
        unsigned long ino;
        /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*s %63s %63s %7s %*s %*s %*s %*s %*s %lu", local, remote, st,
                   &ino) == 4 &&
            strcmp(local, want) == 0 && strcmp(st, "0A") == 0) {
            inode = ino;
            break;
        }
    }
    fclose(f);
    return inode;
}

/* ---- the notify socket ------------------------------------------------- */

/* The datagram socket NOTIFY_SOCKET names while a test runs. */
static int notify_fd = -1;
static char notify_path[PATH_MAX];

static void notify_close(void)
{
    if (notify_fd >= 0) {
        close(notify_fd);
        notify_fd = -1;
        unlink(notify_path);
    }
    unsetenv("NOTIFY_SOCKET");
}

/* Creates the socket in a fresh directory (one of the harness's, removed
 * at exit) and sets NOTIFY_SOCKET for the next echod_start(). */
static void notify_open(void)
{
    notify_close();
    const char *conf = write_conf("# a directory for the notify socket\n");
    snprintf(notify_path, sizeof(notify_path), "%.*s/notify",
             (int)(strrchr(conf, '/') - conf), conf);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    assert_true(strlen(notify_path) < sizeof(a.sun_path));
    strcpy(a.sun_path, notify_path);
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(notify_fd >= 0);
    assert_int_equal(bind(notify_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(setenv("NOTIFY_SOCKET", notify_path, 1), 0);
}

/* Starts the daemon with NOTIFY_SOCKET set, and unsets it again; its
 * configuration formatted from fmt. */
__attribute__((format(printf, 1, 0))) static struct echod *
start_notifiedv(const char *fmt, va_list ap)
{
    notify_open();
    struct echod *e = echod_startv(fmt, ap);
    unsetenv("NOTIFY_SOCKET");
    return e;
}

__attribute__((format(printf, 1, 2))) static struct echod *start_notified(const char *fmt,
                                                                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct echod *e = start_notifiedv(fmt, ap);
    va_end(ap);
    return e;
}

/* The next notification (one datagram), within ms: false when none. */
static bool notify_recv(char *buf, size_t len, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 1000; i++) {
        int64_t left = until - ms_now();
        struct pollfd p = {.fd = notify_fd, .events = POLLIN};
        int r = poll(&p, 1, left < 0 ? 0 : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t n = recv(notify_fd, buf, len - 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        assert_true(n >= 0);
        buf[n] = '\0';
        return true;
    }
    return false;
}

/* Whether the notification has the line `line` exactly (e.g.
 * "READY=1"), or one starting with it when line ends with '='. */
static bool has_line(const char *msg, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = msg; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        if (line[n - 1] == '=' ? len >= n && strncmp(p, line, n) == 0
                               : len == n && strncmp(p, line, n) == 0)
            return true;
        p = nl != NULL ? nl + 1 : NULL;
    }
    return false;
}

/* Whether a notification is a STATUS= alone, or the daemon keeping its
 * listening sockets in the fd store (test-restart.c tests those). */
static bool status_or_store(const char *msg)
{
    return (strncmp(msg, "STATUS=", 7) == 0 && strchr(msg, '\n') == NULL) ||
           has_line(msg, "FDSTORE=1") || has_line(msg, "FDSTOREREMOVE=1");
}

/* Waits for the notification that has `line`; every one before it must
 * be a STATUS= alone or an fd store's (anything else is out of order).  Returns it in
 * buf. */
static void notify_expect(const char *line, char *buf, size_t len, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 1000; i++) {
        int64_t left = until - ms_now();
        if (!notify_recv(buf, len, left < 0 ? 0 : (int)left))
            fail_msg("no notification with %s within %d ms%s", line, ms,
                     built_with_libsystemd() ? "" : " (built without libsystemd)");
        if (has_line(buf, line))
            return;
        if (!status_or_store(buf))
            fail_msg("notification \"%s\" came before the one with %s", buf, line);
    }
    fail_msg("too many notifications before %s", line);
}

/* Starts the daemon with the configuration formatted from fmt: with a
 * notify socket, waiting for its READY=1, when it is built with
 * libsystemd; plainly otherwise. */
__attribute__((format(printf, 1, 2))) static struct echod *start_ready(const char *fmt,
                                                                       ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool notified = built_with_libsystemd();
    struct echod *e = notified ? start_notifiedv(fmt, ap) : echod_startv(fmt, ap);
    va_end(ap);
    if (notified) {
        char msg[1024];
        notify_expect("READY=1", msg, sizeof(msg), 5000);
    }
    return e;
}

/* No notification but STATUS= ones for ms. */
static void notify_expect_quiet(int ms)
{
    char buf[1024];
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 1000; i++) {
        int64_t left = until - ms_now();
        if (left <= 0 || !notify_recv(buf, sizeof(buf), (int)left))
            return;
        if (!status_or_store(buf))
            fail_msg("unexpected notification \"%s\"", buf);
    }
}

/* ---- what a failed test leaves running ---------------------------------- */

/* A daemon that went to the background (not our child), by its pid. */
static pid_t stray_pid;

/* Whether pid is a mio-echod still running (not a zombie, not a reused
 * pid). */
static bool pid_is_echod(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[512];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')');
    return strstr(buf, "mio-echod") != NULL && close_paren != NULL &&
           close_paren[1] == ' ' && close_paren[2] != 'Z' && close_paren[2] != 'X';
}

/* Kills whatever a failed test left running; at exit and before a test. */
static void procs_cleanup(void)
{
    if (stray_pid > 0) {
        if (pid_is_echod(stray_pid))
            kill(stray_pid, SIGKILL);
        stray_pid = 0;
    }
    proc_stop_all(0);
}

/* ---- socket activation ---------------------------------------------------- */

/* systemd-socket-activate's path, or NULL when it is not installed. */
static const char *socket_activate_path(void)
{
    static char path[PATH_MAX];
    return proc_find_program("systemd-socket-activate", path, sizeof(path));
}

/* The daemon under test, as an absolute path (a child may run in another
 * directory). */
static const char *daemon_path(void)
{
    static char path[PATH_MAX];
    char rel[PATH_MAX];
    echod_program_path(rel, sizeof(rel));
    if (realpath(rel, path) == NULL)
        fail_msg("cannot find %s: %s (is top_builddir set?)", rel, strerror(errno));
    return path;
}

/*
 * Runs "systemd-socket-activate -l 127.0.0.1:PORT... --fdname=NAMES
 * mio-echod -f -c CONF" and makes the first connection (to the first
 * port), which makes it exec the daemon.  Returns the process and that
 * connection in *first.  Skips when systemd-socket-activate is missing.
 */
static struct proc *activate(const char *conf, const int *ports, int nports,
                             const char *names, int *first)
{
    const char *sa = socket_activate_path();
    if (sa == NULL) {
        print_message("skipped: systemd-socket-activate is not installed\n");
        skip();
    }
    const char *path = write_conf(conf);
    char listen[4][32], fdname[300];
    char *argv[16];
    int argc = 0;
    argv[argc++] = (char *)sa;
    for (int i = 0; i < nports && i < 4; i++) {
        snprintf(listen[i], sizeof(listen[i]), "--listen=127.0.0.1:%d", ports[i]);
        argv[argc++] = listen[i];
    }
    snprintf(fdname, sizeof(fdname), "--fdname=%s", names);
    argv[argc++] = fdname;
    /* It starts the daemon with a fresh environment: pass the backend on. */
    if (getenv("MIO_BACKEND") != NULL)
        argv[argc++] = (char *)"--setenv=MIO_BACKEND";
    argv[argc++] = (char *)daemon_path();
    argv[argc++] = (char *)"-f";
    argv[argc++] = (char *)"-c";
    argv[argc++] = (char *)path;
    argv[argc] = NULL;
    struct proc *p = proc_start(argv);

    /* It listens at once; connect as soon as it does. */
    int fd = -1;
    int64_t until = ms_now() + WAIT_MS;
    for (int i = 0; i < 10000 && fd < 0; i++) {
        fd = connect_to(ports[0]);
        if (fd >= 0)
            break;
        proc_reap(p, WNOHANG);
        if (p->exited || ms_now() >= until) {
            proc_print(p);
            fail_msg("cannot connect to systemd-socket-activate on 127.0.0.1:%d: %s",
                     ports[0], strerror(errno));
        }
        sleep_ms(10);
    }
    *first = fd;
    return p;
}

/* After activate(): waits for the daemon to start, or to fail because it
 * bound the addresses itself (no libsystemd): then skips. */
static void activated_started(struct proc *p, int first)
{
    static const char *const needles[] = {" started: ", "cannot listen on", NULL};
    int which = proc_wait_any(p, 5000, needles);
    if (which == 0)
        return;
    if (which == 1 && !proc_has(p, "socket from systemd")) {
        close(first);
        proc_stop(p, 2000);
        print_message("skipped: the daemon bound the address systemd-socket-activate "
                      "holds instead of taking the socket: built without libsystemd?\n");
        skip();
    }
    proc_print(p);
    fail_msg("the socket-activated daemon did not start");
}

/* ---- notify ------------------------------------------------------------ */

/*
 * READY=1 (with STATUS=) is the first notification but the fd store's, and when it comes
 * every listener is bound and served; STOPPING=1 comes on SIGTERM at once,
 * while a connection is still draining, with nothing but STATUS= between,
 * and new clients are refused from then on; READY=1 is not sent again.
 */
static void test_notify_ready_and_stopping(void **state)
{
    (void)state;
    if (!built_with_libsystemd())
        skip();
    int64_t t0 = ms_now();
    struct echod *e = start_notified(
        BASE
        "workers = 2;\n"
        "listeners = ( { name = \"one\"; listen = [ \"127.0.0.1:0\" ]; },\n"
        "  { name = \"two\"; listen = [ \"127.0.0.1:0\", \"unix:@DIR@/two.sock\" ]; } );\n");
    char msg[1024];
    /* Only the fd store's come before it (test-restart.c). */
    notify_expect("READY=1", msg, sizeof(msg), 5000);
    if (!has_line(msg, "STATUS="))
        fail_msg("the first notification is \"%s\", not READY=1 with STATUS=", msg);
    print_message("READY after %lld ms: \"%s\"\n", (long long)(ms_now() - t0), msg);
    /* Listening, with workers running, when READY=1 comes. */
    int a = client4(echod_port(e, "one", 0));
    int b = client4(echod_port(e, "two", 0));
    echod_must_log(e, "listener two: listening on unix:");
    expect_echo(a, "ready means served\n");
    expect_echo(b, "on every listener\n");
    finish(a);

    int port = echod_port(e, "one", 0);
    int64_t t1 = ms_now();
    echod_signal(e, SIGTERM);
    notify_expect("STOPPING=1", msg, sizeof(msg), 2000);
    int64_t took = ms_now() - t1;
    print_message("STOPPING=1 %lld ms after SIGTERM\n", (long long)took);
    /* Sent once the listeners are closed: a new client is refused. */
    expect_connect_refused(port, 0);
    /* Sent on the signal, not after the drain: b is still open. */
    expect_echo(b, "still draining\n");
    finish(b);
    echod_stop_ok(e);
    /* Nothing but STATUS= after STOPPING=1: no second READY=1. */
    notify_expect_quiet(50);
    notify_close();
}

/* STATUS= every 5 s counts the connections open and served. */
static void test_notify_status_counts(void **state)
{
    (void)state;
    if (!built_with_libsystemd())
        skip();
    struct echod *e = start_notified(
        BASE "workers = 1;\n"
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:0\" ]; } );\n");
    char msg[1024];
    notify_expect("READY=1", msg, sizeof(msg), 5000);
    int port = echod_port(e, "echo", 0);
    int done = client4(port);
    expect_echo(done, "served, then closed\n");
    finish(done);
    int open = client4(port);
    expect_echo(open, "kept open\n");
    /* The first STATUS= after READY=1 comes within about 5 s. */
    if (!notify_recv(msg, sizeof(msg), 7000))
        fail_msg("no STATUS= within 7 s of READY=1");
    if (strcmp(msg, "STATUS=1 connections open, 2 served") != 0)
        fail_msg("expected \"STATUS=1 connections open, 2 served\", got \"%s\"", msg);
    finish(open);
    echod_stop_ok(e);
    notify_close();
}

/* ---- socket activation -------------------------------------------------- */

/* One socket named "echo" for the listener "echo" on its address: the
 * daemon takes it (logged), serves the connection that woke it up and
 * others, byte-exact, and stops cleanly on SIGTERM. */
static void test_socket_activation_echo(void **state)
{
    (void)state;
    int port = reserve_port();
    char conf[512];
    snprintf(conf, sizeof(conf),
             BASE
             "workers = 2;\n"
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             port);
    int first;
    struct proc *p = activate(conf, &port, 1, "echo", &first);
    activated_started(p, first);
    char line[128];
    snprintf(line, sizeof(line),
             "listener echo: listening on 127.0.0.1:%d (echo, socket "
             "from systemd)",
             port);
    proc_expect(p, line);
    expect_echo_bytes(first, 200000, 1);
    finish(first);
    int fd = client4(port);
    expect_echo_bytes(fd, 70000, 2);
    finish(fd);
    int code = proc_stop(p, 5000);
    if (code != 0)
        proc_print(p);
    assert_int_equal(code, 0);
    assert_true(proc_has(p, "mio-echod: notice: stopped"));
}

/* Two sockets, named "a" and "b", for the listeners "a" and "b"; a third
 * listener with no socket passed binds its own address. */
static void test_socket_activation_two_names(void **state)
{
    (void)state;
    int ports[2];
    reserve_ports(ports, 2);
    char conf[1024];
    snprintf(conf, sizeof(conf),
             BASE "workers = 1;\n"
                  "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:%d\" ]; },\n"
                  "  { name = \"b\"; listen = [ \"127.0.0.1:%d\" ]; },\n"
                  "  { name = \"c\"; listen = [ \"127.0.0.1:0\" ]; } );\n",
             ports[0], ports[1]);
    int first;
    struct proc *p = activate(conf, ports, 2, "a:b", &first);
    activated_started(p, first);
    for (int i = 0; i < 2; i++) {
        char line[128];
        snprintf(line, sizeof(line),
                 "listener %c: listening on 127.0.0.1:%d (echo, socket "
                 "from systemd)",
                 'a' + i, ports[i]);
        proc_expect(p, line);
    }
    /* c's line has its real port, and no "socket from systemd". */
    char *text = proc_output(p);
    const char *c = strstr(text, "listener c: listening on 127.0.0.1:");
    int cport = c != NULL ? atoi(c + strlen("listener c: listening on 127.0.0.1:")) : 0;
    bool plain = c != NULL && strncmp(strchr(c, ' ') != NULL ? strstr(c, " (") : "",
                                      " (echo)", 7) == 0;
    free(text);
    if (cport <= 0 || !plain) {
        proc_print(p);
        fail_msg("listener c did not bind its own address");
    }
    expect_echo(first, "to a, through systemd's socket\n");
    int b = client4(ports[1]);
    expect_echo_bytes(b, 100000, 3);
    int fc = client4(cport);
    expect_echo(fc, "to c, bound by the daemon\n");
    finish(first);
    finish(b);
    finish(fc);
    assert_int_equal(proc_stop(p, 5000), 0);
}

/*
 * A passed socket that matches no listener is an error (exit 3, the
 * socket named with its address), whether its name matches no listener,
 * or names one that does not listen on its address (names swapped).
 */
static void test_socket_activation_unmatched(void **state)
{
    (void)state;
    int ports[2];
    reserve_ports(ports, 2);
    static const struct {
        const char *what, *names;
        int nports;
        const char *conf;
        const char *name; /* in the message; %d: the port */
    } cases[] = {
        {"a name no listener has", "nosuch", 1,
         "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:0\" ]; } );\n",
         "nosuch"},
        {"the right name on another address", "echo", 1,
         "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:0\" ]; } );\n", "echo"},
        {"names swapped", "b:a", 2,
         "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:%1$d\" ]; },\n"
         "  { name = \"b\"; listen = [ \"127.0.0.1:%2$d\" ]; } );\n",
         "b"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[512], conf[1024];
        /* -Wformat-nonliteral: the bodies are ours; %1$d/%2$d or none. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#pragma GCC diagnostic ignored "-Wformat-extra-args"
        snprintf(body, sizeof(body), cases[i].conf, ports[0], ports[1]);
#pragma GCC diagnostic pop
        snprintf(conf, sizeof(conf), BASE "workers = 1;\n%s", body);
        int first;
        struct proc *p = activate(conf, ports, cases[i].nports, cases[i].names, &first);
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "socket passed by systemd as \"%s\" (127.0.0.1:%d) "
                 "matches no listen address of a listener named \"%s\"",
                 cases[i].name, ports[0], cases[i].name);
        int code = proc_wait_exit(p, 5000);
        close(first);
        if (code == -1) {
            bool started = proc_has(p, " started: ");
            proc_stop(p, 2000);
            if (started && !proc_has(p, "socket from systemd")) {
                print_message("skipped: the daemon ignored the passed socket: built "
                              "without libsystemd?\n");
                skip();
            }
            proc_print(p);
            fail_msg("%s: the daemon did not exit", cases[i].what);
        }
        /* With the names swapped too, the unmatched socket is named
         * before any listener binds (and fails on the address it holds). */
        assert_false(proc_has(p, "Address already in use"));
        if (code != 3 || !proc_has(p, msg)) {
            proc_print(p);
            fail_msg("%s: exit %d, expected 3 and \"%s\"", cases[i].what, code, msg);
        }
        /* Never adopted under another name. */
        assert_false(proc_has(p, "socket from systemd)"));
        assert_false(proc_has(p, " started: "));
        procs_cleanup();
    }
}

/* ---- reload ------------------------------------------------------------ */

/*
 * A client connected before the reloads streams 1 MiB through eight of
 * them (each changing buffer_size and idle_timeout), with data in flight
 * at every SIGHUP, and gets every byte back in order; new clients are
 * served after each reload; the listener keeps its very socket.
 */
static void test_reload_keeps_streaming_connection(void **state)
{
    (void)state;
    int port = reserve_port();
    static const char *const conf = BASE
        "workers = 2;\n"
        "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ];\n"
        "  buffer_size = %d; idle_timeout = %d.0; } );\n";
    char text[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(text, sizeof(text), conf, port, 16384, 300);
    struct echod *e = echod_start(text);
    unsigned long inode = listen_inode(port);
    assert_true(inode != 0);

    enum { CHUNK = 32768, CHUNKS = 32 };
    uint8_t *out = malloc((size_t)CHUNK * CHUNKS), *in = malloc(CHUNK);
    assert_non_null(out);
    assert_non_null(in);
    fill_random(out, (size_t)CHUNK * CHUNKS, 42);
    int fd = client4(port);
    send_all(fd, out, CHUNK);
    int reloads = 0;
    for (int k = 0; k < CHUNKS; k++) {
        /* Chunk k+1 goes out while chunk k is still coming back. */
        if (k + 1 < CHUNKS)
            send_all(fd, out + (size_t)(k + 1) * CHUNK, CHUNK);
        if (k % 4 == 1) {
            echod_rewrite_conf(e, conf, port, reloads % 2 == 0 ? 1024 : 65536,
                               reloads % 2 == 0 ? 200 : 300);
            echod_reload_ok(e, WAIT_MS);
            reloads++;
            int other = client4(port);
            expect_echo(other, "a new client after the reload\n");
            finish(other);
        }
        recv_exact(fd, in, CHUNK);
        if (memcmp(in, out + (size_t)k * CHUNK, CHUNK) != 0)
            fail_msg("chunk %d (of %d KiB) came back different", k, CHUNK / 1024);
    }
#pragma GCC diagnostic pop
    free(out);
    free(in);
    finish(fd);
    assert_int_equal(reloads, 8);
    if (listen_inode(port) != inode)
        fail_msg("127.0.0.1:%d is another socket after the reloads (rebound)", port);
    assert_int_equal(echod_count_log(e, "listener echo: listening on"), 1);
    echod_stop_ok(e);
}

/*
 * A file broken on SIGHUP (a syntax error, then a value out of range):
 * "reload failed: FILE:LINE: ..." is logged at error level, READY=1 comes
 * back with STATUS=reload failed..., the old listener still serves its
 * open and new clients, and the new file's extra listener is not opened.
 * The file mended, the next SIGHUP applies it.
 */
static void test_reload_broken_file(void **state)
{
    (void)state;
    int ports[2];
    reserve_ports(ports, 2);
    struct echod *e = start_ready(
        BASE "workers = 2;\n"
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        ports[0]);
    char msg[1024];
    const char *path = echod_conf_path(e);
    int old = client4(ports[0]);
    expect_echo(old, "before the broken reloads\n");

    static const struct {
        const char *what;
        int line;
        const char *says;
    } cases[] = {
        {"syntax error", 5, "syntax error"},
        {"out of range", 5, "listeners.extra.buffer_size: 100 out of range"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* Lines 1-2: BASE; 3: workers; 4-5: listeners. */
        if (i == 0)
            echod_rewrite_conf(
                e,
                BASE
                "workers = 2;\n"
                "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; },\n"
                "  { name = \"extra\"; listen = [ \"127.0.0.1:%d\" ]; } ) );\n",
                ports[0], ports[1]);
        else
            echod_rewrite_conf(
                e,
                BASE
                "workers = 2;\n"
                "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; },\n"
                "  { name = \"extra\"; listen = [ \"127.0.0.1:%d\" ]; "
                "buffer_size = 100; } );\n",
                ports[0], ports[1]);
        int n = echod_count_log(e, "reload failed");
        echod_signal(e, SIGHUP);
        /* At error level, with the file, the line and what is wrong. */
        char needle[PATH_MAX + 128];
        snprintf(needle, sizeof(needle), "mio-echod: error: reload failed: %s:%d: %s",
                 path, cases[i].line, cases[i].says);
        if (!echod_wait_count(e, "reload failed", n + 1, WAIT_MS)) {
            const char *any = echod_wait_log(e, "reload", 0);
            fail_msg("%s: no \"reload failed\" line within %d ms (%s)", cases[i].what,
                     WAIT_MS, any != NULL ? any : "no reload line at all");
        }
        const char *line = echod_wait_log(e, needle, 0);
        if (line == NULL)
            fail_msg("%s: no \"%s\" line", cases[i].what, needle);
        assert_int_equal(echod_count_log(e, "reload failed"), n + 1);
        if (notify_fd >= 0) {
            notify_expect("RELOADING=1", msg, sizeof(msg), WAIT_MS);
            notify_expect("READY=1", msg, sizeof(msg), WAIT_MS);
            char status[PATH_MAX + 64];
            snprintf(status, sizeof(status), "\nSTATUS=reload failed: %s:%d: ", path,
                     cases[i].line);
            if (strstr(msg, status) == NULL)
                fail_msg("%s: READY=1 without \"%s...\": \"%s\"", cases[i].what,
                         status + 1, msg);
        }
        expect_echo(old, "the old connection still served\n");
        int fd = client4(ports[0]);
        expect_echo(fd, "the old listener still serves\n");
        finish(fd);
        expect_connect_refused(ports[1], 0);
    }
    assert_int_equal(echod_count_log(e, "listener extra: listening"), 0);

    /* Mended: the reload applies. */
    echod_rewrite_conf(
        e,
        BASE "workers = 2;\n"
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; },\n"
             "  { name = \"extra\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        ports[0], ports[1]);
    echod_reload_ok(e, WAIT_MS);
    echod_must_log(e, "listener extra: listening on 127.0.0.1:%d", ports[1]);
    int fd = client4(ports[1]);
    expect_echo(fd, "the mended file's listener\n");
    finish(fd);
    expect_echo(old, "and the old connection, still\n");
    finish(old);
    echod_stop_ok(e);
    notify_close();
}

/*
 * A listener added by a reload serves on its port; one removed is closed
 * (connections refused) while the connection it had open is served to its
 * end; the listener that stays keeps its socket (the same inode).
 */
static void test_reload_adds_and_removes_listeners(void **state)
{
    (void)state;
    int ports[3];
    reserve_ports(ports, 3);
    int keep = ports[0], gone = ports[1], added = ports[2];
    struct echod *e = echod_startf(
        BASE "workers = 2;\n"
             "listeners = ( { name = \"keep\"; listen = [ \"127.0.0.1:%d\" ]; },\n"
             "  { name = \"gone\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        keep, gone);
    unsigned long inode = listen_inode(keep);
    assert_true(inode != 0);
    int on_gone = client4(gone);
    int on_gone_port = local_port(on_gone);
    expect_echo(on_gone, "opened before the reload\n");
    expect_connect_refused(added, 0);

    echod_rewrite_conf(
        e,
        BASE "workers = 2;\n"
             "listeners = ( { name = \"keep\"; listen = [ \"127.0.0.1:%d\" ]; },\n"
             "  { name = \"added\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        keep, added);
    echod_reload_ok(e, WAIT_MS);
    echod_must_log(e, "listener added: listening on 127.0.0.1:%d (echo)", added);
    int fd = client4(added);
    expect_echo_bytes(fd, 100000, 7);
    finish(fd);
    expect_connect_refused(gone, 1000);
    fd = client4(keep);
    expect_echo(fd, "the listener that stays\n");
    finish(fd);
    if (listen_inode(keep) != inode)
        fail_msg("127.0.0.1:%d is another socket after the reload (rebound)", keep);

    /* The removed listener's connection is served to its end. */
    expect_echo_bytes(on_gone, 100000, 8);
    finish(on_gone);
    echod_must_log(e, "access listener=gone client=127.0.0.1:%d ", on_gone_port);
    echod_stop_ok(e);
}

/*
 * A changed idle_timeout (300 s to 0.3 s) applies to new connections
 * only: a new one is closed after about 0.3 s of silence; the one opened
 * before keeps 300 s, across the reload and after traffic re-arms its
 * timer under the new configuration.
 */
static void test_reload_idle_timeout_new_connections_only(void **state)
{
    (void)state;
    int port = reserve_port();
    struct echod *e =
        echod_startf(BASE
                     "workers = 2;\n"
                     "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ];\n"
                     "  idle_timeout = 300.0; } );\n",
                     port);
    int old = client4(port);
    expect_echo(old, "idle_timeout 300\n");
    echod_rewrite_conf(e,
                       BASE
                       "workers = 2;\n"
                       "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ];\n"
                       "  idle_timeout = 0.3; } );\n",
                       port);
    echod_reload_ok(e, WAIT_MS);
    int64_t t0 = ms_now();
    int fresh = client4(port);
    int fresh_port = local_port(fresh);
    expect_echo(fresh, "idle_timeout 0.3\n");
    int64_t t1 = ms_now();
    if (!peer_reset_within(fresh, 2000)) /* an idle timeout aborts */
        fail_msg("a connection opened after the reload was not closed by the new "
                 "idle_timeout of 0.3 s");
    int64_t idle = ms_now() - t1;
    print_message("new connection closed after %lld ms of silence\n", (long long)idle);
    assert_true(idle >= 250);
    close(fresh);
    echod_must_log(e, "access listener=echo client=127.0.0.1:%d ", fresh_port);
    assert_non_null(strstr(echod_must_log(e, "client=127.0.0.1:%d ", fresh_port),
                           "reason=idle-timeout"));
    /* The old one: silent since before the reload, longer than 0.3 s. */
    while (ms_now() - t0 < 600)
        sleep_ms(20);
    expect_echo(old, "still open after 0.6 s of silence\n");
    /* Traffic after the reload re-arms its timer: still the old 300 s. */
    sleep_ms(700);
    expect_echo(old, "and after 0.7 s more\n");
    finish(old);
    echod_stop_ok(e);
}

/* Changed allow/deny apply to new connections only: after denying
 * 127.0.0.1, the client connected before is served on, a new one is
 * refused. */
static void test_reload_acl_new_connections_only(void **state)
{
    (void)state;
    int port = reserve_port();
    struct echod *e = echod_startf(
        BASE "workers = 1;\n"
             "listeners = ( { name = \"acl\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        port);
    int old = client4(port);
    expect_echo(old, "let in\n");
    echod_rewrite_conf(e,
                       BASE
                       "workers = 1;\n"
                       "listeners = ( { name = \"acl\"; listen = [ \"127.0.0.1:%d\" ];\n"
                       "  deny = [ \"127.0.0.1\" ]; } );\n",
                       port);
    echod_reload_ok(e, WAIT_MS);
    int fd = client4(port);
    int cport = local_port(fd);
    (void)send(fd, "probe\n", 6, MSG_NOSIGNAL);
    char c;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    if (n > 0)
        fail_msg("a client denied by the reloaded file got an echo");
    close(fd);
    echod_must_log(e, "listener acl: refused 127.0.0.1:%d: denied by allow/deny", cport);
    expect_echo(old, "let in before the reload, served on\n");
    finish(old);
    echod_stop_ok(e);
}

/*
 * The notifications of a reload: RELOADING=1 with MONOTONIC_USEC= (the
 * time of the signal, on CLOCK_MONOTONIC), then READY=1, with nothing but
 * STATUS= in between; twice in a row.
 */
static void test_reload_notify(void **state)
{
    (void)state;
    if (!built_with_libsystemd())
        skip();
    int port = reserve_port();
    struct echod *e = start_notified(
        BASE "workers = 1;\n"
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        port);
    char msg[1024];
    notify_expect("READY=1", msg, sizeof(msg), 5000);
    for (int round = 0; round < 2; round++) {
        int64_t before = monotonic_us();
        echod_signal(e, SIGHUP);
        notify_expect("RELOADING=1", msg, sizeof(msg), WAIT_MS);
        int64_t after = monotonic_us();
        const char *usec = strstr(msg, "MONOTONIC_USEC=");
        if (usec == NULL || (usec != msg && usec[-1] != '\n'))
            fail_msg("RELOADING=1 without MONOTONIC_USEC= in the same message: \"%s\"",
                     msg);
        int64_t t = strtoll(usec + 15, NULL, 10);
        if (t < before || t > after)
            fail_msg("MONOTONIC_USEC=%" PRId64 " is not between the SIGHUP (%" PRId64
                     ") and its notification (%" PRId64 ")",
                     t, before, after);
        notify_expect("READY=1", msg, sizeof(msg), WAIT_MS);
        if (has_line(msg, "RELOADING=1"))
            fail_msg("READY=1 and RELOADING=1 in one message: \"%s\"", msg);
        int fd = client4(port);
        expect_echo(fd, "served after the reload\n");
        finish(fd);
    }
    /* The log is read by another thread: it may lag the notifications. */
    assert_true(echod_wait_count(e, "notice: reloaded ", 2, WAIT_MS));
    echod_stop_ok(e);
    assert_int_equal(echod_count_log(e, "notice: reloaded "), 2);
    notify_close();
}

/* A SIGHUP during shutdown is ignored: no RELOADING=1, nothing reloaded,
 * the new file's listener not opened, and the daemon drains and exits 0. */
static void test_reload_ignored_during_shutdown(void **state)
{
    (void)state;
    int ports[2];
    reserve_ports(ports, 2);
    struct echod *e = start_ready(
        BASE "workers = 1;\n"
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        ports[0]);
    char msg[1024];
    int fd = client4(ports[0]);
    expect_echo(fd, "draining\n");
    echod_signal(e, SIGTERM);
    echod_must_log(e, "SIGTERM: no longer accepting");
    if (notify_fd >= 0)
        notify_expect("STOPPING=1", msg, sizeof(msg), WAIT_MS);
    echod_rewrite_conf(
        e,
        BASE "workers = 1;\n"
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; },\n"
             "  { name = \"new\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        ports[0], ports[1]);
    echod_signal(e, SIGHUP);
    sleep_ms(300);
    if (notify_fd >= 0)
        notify_expect_quiet(50);
    assert_int_equal(echod_count_log(e, "reloaded"), 0);
    assert_int_equal(echod_count_log(e, "listener new:"), 0);
    expect_connect_refused(ports[1], 0);
    expect_echo(fd, "still draining after the SIGHUP\n");
    finish(fd);
    echod_stop_ok(e);
    assert_int_equal(echod_count_log(e, "reloaded"), 0);
    notify_close();
}

/*
 * A reload whose new listener cannot bind (its port is held) fails and
 * rolls back: "reload failed" logged, READY=1 with the reason, the old
 * listener keeps its very socket and serves old and new clients, and no
 * "listening on" line is written for what the failed reload bound and
 * closed again, nor again for the socket kept.  Once the
 * port is free, a reload that adds that listener and removes the old one
 * applies: the old port is refused (the rollback left it closable), the
 * connection opened on it is served to its end.
 */
static void test_reload_port_taken_rolls_back(void **state)
{
    (void)state;
    int ports[3];
    reserve_ports(ports, 3);
    struct echod *e = start_ready(
        BASE "workers = 2;\n"
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        ports[0]);
    char msg[1024];
    unsigned long inode = listen_inode(ports[0]);
    assert_true(inode != 0);
    int old = client4(ports[0]);
    expect_echo(old, "before the failed reload\n");

    /* Someone else holds the new listener's port. */
    int blocker = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(blocker >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)ports[1]),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(blocker, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(blocker, 4), 0);
    echod_rewrite_conf(
        e,
        BASE "workers = 2;\n"
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; },\n"
             "  { name = \"fresh\"; listen = [ \"127.0.0.1:%d\" ]; },\n"
             "  { name = \"extra\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        ports[0], ports[2], ports[1]);
    echod_signal(e, SIGHUP);
    if (!echod_wait_count(e, "error: reload failed: ", 1, WAIT_MS))
        fail_msg("no \"reload failed\" line within %d ms", WAIT_MS);
    echod_must_log(e, "listener extra: cannot listen on 127.0.0.1:%d", ports[1]);
    assert_int_equal(echod_count_log(e, "reloaded "), 0);
    /* Nothing said to listen that does not: not the socket bound and closed
     * again, nor, again, the one kept. */
    assert_int_equal(echod_count_log(e, "listener fresh: listening on"), 0);
    assert_int_equal(echod_count_log(e, "listener echo: listening on"), 1);
    if (notify_fd >= 0) {
        notify_expect("RELOADING=1", msg, sizeof(msg), WAIT_MS);
        notify_expect("READY=1", msg, sizeof(msg), WAIT_MS);
        if (strstr(msg, "\nSTATUS=reload failed") == NULL)
            fail_msg("READY=1 without STATUS=reload failed: \"%s\"", msg);
    }
    expect_echo(old, "the old connection, after the failed reload\n");
    int fd = client4(ports[0]);
    expect_echo(fd, "the old listener, after the failed reload\n");
    finish(fd);
    if (listen_inode(ports[0]) != inode)
        fail_msg("127.0.0.1:%d is another socket after the failed reload", ports[0]);
    close(blocker);

    echod_rewrite_conf(
        e,
        BASE "workers = 2;\n"
             "listeners = ( { name = \"extra\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        ports[1]);
    echod_reload_ok(e, WAIT_MS);
    assert_int_equal(echod_count_log(e, "listener extra: listening on"), 1);
    fd = client4(ports[1]);
    expect_echo(fd, "extra, once its port is free\n");
    finish(fd);
    expect_connect_refused(ports[0], 1000);
    expect_echo(old, "the removed listener's connection, served on\n");
    finish(old);
    echod_stop_ok(e);
    notify_close();
}

/*
 * Runs the daemon (argv) with fd passed as systemd passes a socket named
 * `name` and waits for "listener NAME: listening on 127.0.0.1:PORT (KIND,
 * socket from systemd)"; fails the test when it does not come.  NULL, said
 * and stopped, when the daemon bound the address itself instead (built
 * without libsystemd): the caller closes its sockets and skips.
 */
static struct proc *start_passed(char *const argv[], int fd, const char *name, int port,
                                 const char *kind)
{
    struct proc *p = proc_start_in(argv, NULL, fd, name);
    static const char *const up[] = {" started: ", "cannot listen on", NULL};
    int which = proc_wait_any(p, 5000, up);
    if (which == 1 && !proc_has(p, "socket from systemd")) {
        proc_stop(p, 2000);
        print_message("skipped: the daemon did not take the passed socket: built "
                      "without libsystemd?\n");
        return NULL;
    }
    char line[160];
    snprintf(line, sizeof(line),
             "listener %s: listening on 127.0.0.1:%d (%s, socket from systemd)", name,
             port, kind);
    if (which != 0 || !proc_has(p, line)) {
        proc_print(p);
        fail_msg("the daemon did not start on the passed socket: no \"%s\"", line);
    }
    return p;
}

/* A datagram socket passed for a UDP listener (ListenDatagram=): the
 * daemon takes it, asks it for the address each datagram came to, and
 * echoes through it; a passed stream socket does not match a UDP listener
 * on the same address, nor the reverse. */
static void test_socket_activation_udp(void **state)
{
    (void)state;
    /* A port free for UDP and TCP alike: the stream socket of the second
     * half is bound first and held (listening only then), so that no
     * other program's connection can take the port meanwhile. */
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ufd = -1, lfd = -1, port = 0;
    for (int i = 0; i < 100 && ufd < 0; i++) {
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(lfd >= 0);
        int one = 1;
        (void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        a.sin_port = 0;
        assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
        port = local_port(lfd);
        ufd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(ufd >= 0);
        a.sin_port = htons((uint16_t)port);
        if (bind(ufd, (struct sockaddr *)&a, sizeof(a)) < 0) {
            close(ufd);
            close(lfd);
            ufd = -1;
        }
    }
    assert_true(ufd >= 0);
    char text[512];
    snprintf(text, sizeof(text),
             BASE "workers = 2;\n"
                  "listeners = ( { name = \"u\"; protocol = \"udp\"; "
                  "listen = [ \"127.0.0.1:%d\" ]; } );\n",
             port);
    const char *path = write_conf(text);
    char *argv[] = {(char *)daemon_path(), (char *)"-f", (char *)"-c", (char *)path,
                    NULL};
    struct proc *p = start_passed(argv, ufd, "u", port, "udp echo");
    if (p == NULL) {
        close(ufd);
        close(lfd);
        skip();
    }
    int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    set_timeouts(c);
    a.sin_port = htons((uint16_t)port);
    static const char msg[] = "a datagram through the passed socket";
    assert_int_equal(sendto(c, msg, sizeof(msg), 0, (struct sockaddr *)&a, sizeof(a)),
                     (ssize_t)sizeof(msg));
    char back[128];
    assert_int_equal(recv(c, back, sizeof(back), 0), (ssize_t)sizeof(msg));
    assert_memory_equal(back, msg, sizeof(msg));
    close(c);
    assert_int_equal(proc_stop(p, 5000), 0);
    close(ufd);

    /* The same address as a stream socket for a UDP listener: unmatched. */
    assert_int_equal(listen(lfd, 4), 0);
    p = proc_start_in(argv, NULL, lfd, "u");
    assert_int_not_equal(proc_wait_exit(p, 5000), 0);
    char line[128];
    snprintf(line, sizeof(line),
             "socket passed by systemd as \"u\" (127.0.0.1:%d) matches no listen "
             "address",
             port);
    proc_expect(p, line);
    close(lfd);
}

/*
 * Under systemd the service manager keeps its copy of a socket it passed.
 * A reload that keeps the listener keeps the passed socket; a reload that
 * removes the listener and a later one that brings it back must serve it
 * again: the daemon cannot bind the address systemd still holds, so it has
 * to take the passed socket again.  (systemd-socket-activate execs the
 * daemon and keeps no copy, so this test passes the socket itself.)
 */
static void test_reload_passed_socket_readded(void **state)
{
    (void)state;
    int ports[2];
    reserve_ports(ports, 2);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)ports[0]),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    static const char *const both = BASE
        "workers = 1;\n"
        "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; },\n"
        "  { name = \"other\"; listen = [ \"127.0.0.1:%d\" ]; } );\n";
    char text[1024];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(text, sizeof(text), both, ports[0], ports[1]);
    const char *path = write_conf(text);
    char *argv[] = {(char *)daemon_path(), (char *)"-f", (char *)"-c", (char *)path,
                    NULL};
    struct proc *p = start_passed(argv, lfd, "echo", ports[0], "echo");
    if (p == NULL) {
        close(lfd);
        skip();
    }
    int fd = client4(ports[0]);
    expect_echo(fd, "through the passed socket\n");
    finish(fd);

    /* Three reloads: unchanged, without "echo", with "echo" again. */
    for (int round = 1; round <= 3; round++) {
        if (round == 2)
            conf_rewrite(
                path,
                BASE
                "workers = 1;\n"
                "listeners = ( { name = \"other\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
                ports[1]);
        else
            conf_rewrite(path, both, ports[0], ports[1]);
        kill(p->pid, SIGHUP);
        static const char *const done[] = {"reload failed", NULL};
        int64_t until = ms_now() + WAIT_MS;
        while (proc_count(p, "notice: reloaded ") < round && ms_now() < until &&
               proc_wait_any(p, 0, done) < 0)
            sleep_ms(10);
        if (proc_count(p, "notice: reloaded ") < round) {
            proc_print(p);
            fail_msg("reload %d (%s) did not apply", round,
                     round == 1   ? "unchanged"
                     : round == 2 ? "without the listener"
                                  : "with the listener again");
        }
        fd = client4(ports[1]);
        expect_echo(fd, "the other listener\n");
        finish(fd);
        if (round != 2) {
            fd = client4(ports[0]);
            expect_echo(fd, "the passed socket's listener\n");
            finish(fd);
        }
    }
#pragma GCC diagnostic pop
    assert_int_equal(proc_stop(p, 5000), 0);
    close(lfd);
}

/*
 * A daemon in the background (no -f) started with a relative -c path
 * reloads the same file, and removes its control socket, also written
 * relative, at exit: going to the background changes the directory to
 * "/", so the paths must have been made absolute first.
 */
static void test_reload_daemonized_relative_path(void **state)
{
    (void)state;
    int port = reserve_port();
    char text[1024];
    snprintf(text, sizeof(text),
             BASE
             "workers = 1;\npidfile = \"@DIR@/echod.pid\";\n"
             "control = { path = \"control.sock\"; };\n"
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             port);
    const char *path = write_conf(text);
    char dir[PATH_MAX], pidfile[PATH_MAX + 16], sock[PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(path, '/') - path), path);
    snprintf(pidfile, sizeof(pidfile), "%s/echod.pid", dir);
    snprintf(sock, sizeof(sock), "%s/control.sock", dir);
    char *argv[] = {(char *)daemon_path(), (char *)"-c", (char *)"mio-echod.conf", NULL};
    struct proc *p = proc_start_in(argv, dir, -1, NULL);
    int code = proc_wait_exit(p, 5000);
    if (code != 0) {
        proc_print(p);
        fail_msg("mio-echod (in the background) exited %d at the start", code);
    }
    FILE *f = fopen(pidfile, "r");
    if (f == NULL)
        fail_msg("no pid file %s: %s", pidfile, strerror(errno));
    long pid = 0;
    assert_int_equal(fscanf(f, "%ld", &pid), 1);
    fclose(f);
    assert_true(pid > 1);
    stray_pid = (pid_t)pid;
    assert_true(pid_is_echod(stray_pid));

    int fd = client4(port);
    expect_echo(fd, "served in the background\n");
    kill(stray_pid, SIGHUP);
    static const char *const done[] = {"notice: reloaded ", "reload failed", NULL};
    int which = proc_wait_output(p, WAIT_MS, done, true);
    if (which != 0) {
        proc_print(p);
        kill(stray_pid, SIGKILL);
        stray_pid = 0;
        fail_msg("a daemon started with \"-c mio-echod.conf\" in the background did "
                 "not reload it");
    }
    expect_echo(fd, "and after the reload\n");
    finish(fd);
    char *answer = ctl_ask_path(sock, "show listeners");
    assert_true(strncmp(answer, "# listener ", 11) == 0);
    free(answer);
    kill(stray_pid, SIGTERM);
    int64_t until = ms_now() + 5000;
    while (pid_is_echod(stray_pid) && ms_now() < until)
        sleep_ms(10);
    assert_false(pid_is_echod(stray_pid));
    stray_pid = 0;
    assert_int_equal(access(pidfile, F_OK), -1);
    assert_int_equal(access(sock, F_OK), -1);
}

/* ---- main --------------------------------------------------------------- */

/* Before each test: nothing left from a failed one. */
static int fresh(void **state)
{
    (void)state;
    notify_close();
    procs_cleanup();
    return 0;
}

/* ---- journald ---------------------------------------------------------------- */

/* Under journald (JOURNAL_STREAM set) log lines carry "<N>" syslog-level
 * prefixes instead of the program name, so that the journal keeps their
 * levels: info is <6>, notice <5>, error <3>. */
static void test_journald_level_prefixes(void **state)
{
    (void)state;
    int port = reserve_port();
    char text[512];
    snprintf(text, sizeof(text),
             "workers = 1;\nlisteners = ( { name = \"echo\"; "
             "listen = [ \"127.0.0.1:%d\" ]; } );\n",
             port);
    const char *conf = write_conf(text);
    char *argv[] = {(char *)"/usr/bin/env",
                    (char *)"JOURNAL_STREAM=8:4242",
                    (char *)daemon_path(),
                    (char *)"-f",
                    (char *)"-c",
                    (char *)conf,
                    NULL};
    struct proc *p = proc_start(argv);
    static const char *const started[] = {"\n<5>mio-echod ", NULL};
    if (proc_wait_any(p, WAIT_MS, started) != 0) {
        proc_print(p);
        fail_msg("no \"<5>mio-echod ... started\" line under JOURNAL_STREAM");
    }
    int fd = client4(port);
    expect_echo(fd, "journal\n");
    finish(fd);
    static const char *const access_line[] = {"<6>access listener=echo ", NULL};
    if (proc_wait_any(p, WAIT_MS, access_line) != 0) {
        proc_print(p);
        fail_msg("no \"<6>access\" line under JOURNAL_STREAM");
    }
    char *out = proc_output(p);
    assert_true(strncmp(out, "<6>listener echo: listening on ", 31) == 0);
    assert_null(strstr(out, "mio-echod: info:"));
    free(out);
    assert_int_equal(proc_stop(p, WAIT_MS), 0);
}

/*
 * With LISTEN_FDS set (sockets from systemd) and neither NOTIFY_SOCKET nor
 * -f, the daemon stays in the foreground as mio-echod(8) says: systemd
 * supervises the process it started, not a child it forked.
 */
static void test_listen_fds_keeps_the_foreground(void **state)
{
    (void)state;
    int port;
    reserve_ports(&port, 1);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    char text[512];
    snprintf(text, sizeof(text),
             "log = { target = \"stderr\"; };\nworkers = 1;\n"
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             port);
    const char *path = write_conf(text);
    char *argv[] = {(char *)daemon_path(), (char *)"-c", (char *)path, NULL};
    assert_null(getenv("NOTIFY_SOCKET"));
    struct proc *p = proc_start_in(argv, NULL, lfd, "echo");
    static const char *const up[] = {" started: ", NULL};
    if (proc_wait_any(p, 5000, up) != 0) {
        proc_print(p);
        fail_msg("the daemon did not start");
    }
    if (!proc_has(p, "socket from systemd")) {
        proc_stop(p, 2000);
        close(lfd);
        print_message("skipped: the daemon did not take the passed socket: built "
                      "without libsystemd?\n");
        skip();
    }
    int code = proc_wait_exit(p, 500);
    if (code != -1)
        fail_msg("the process systemd started exited (%d): it went to the background",
                 code);
    int fd = client4(port);
    expect_echo(fd, "served by the process systemd started\n");
    finish(fd);
    assert_int_equal(proc_stop(p, 5000), 0);
    close(lfd);
}

/* ---- Unix socket paths and overlapping addresses ------------------------ */

/* Whether path holds exactly `text`. */
static bool file_holds(const char *path, const char *text)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    return n == (ssize_t)strlen(text) && memcmp(buf, text, (size_t)n) == 0;
}

/*
 * A unix: listen address replaces only a stale socket.  A regular file, a
 * symbolic link, a FIFO or a directory there is refused by -t, at start
 * and by a reload, named for what it is, and left as it was; a stale
 * socket is replaced; a file put in the socket's place while the daemon
 * runs is not removed at exit.
 */
static void test_unix_path_never_replaces_other_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/mio-unixpath-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char file[64], link_path[64], fifo[64], sub[64], stale[64], out[4096];
    snprintf(file, sizeof(file), "%s/important.txt", dir);
    snprintf(link_path, sizeof(link_path), "%s/link", dir);
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    snprintf(sub, sizeof(sub), "%s/dir", dir);
    snprintf(stale, sizeof(stale), "%s/stale.sock", dir);
    conf_rewrite(file, "important\n");
    assert_int_equal(symlink(file, link_path), 0);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    static const char *const what[] = {"a regular file", "a symbolic link", "a FIFO",
                                       "a directory"};
    const char *paths[] = {file, link_path, fifo, sub};
    for (size_t i = 0; i < 4; i++) {
        char conf[512];
        snprintf(conf, sizeof(conf),
                 BASE "workers = 1;\nlisteners = ( { name = \"u\";\n"
                      "  listen = [ \"unix:%s\" ]; } );\n",
                 paths[i]);
        const char *path = write_conf(conf);
        char want[256];
        snprintf(want, sizeof(want),
                 ":5: listeners.u.listen.[0]: \"unix:%s\": %s is %s, "
                 "not a socket",
                 paths[i], paths[i], what[i]);
        for (int check = 1; check >= 0; check--) {
            int rc = echod_run(out, sizeof(out), check ? "-t" : "-f", "-c", path,
                               (char *)NULL);
            if (rc != 1 || strstr(out, want) == NULL)
                fail_msg("%s %s: exit %d, expected 1 and \"%s\": %s",
                         check ? "-t" : "start", what[i], rc, want, out);
        }
    }
    struct stat st;
    assert_true(file_holds(file, "important\n"));
    assert_int_equal(lstat(link_path, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(lstat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    /* A stale socket (bound, never listening, its file left) is replaced;
     * a reload that adds the regular file is refused. */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, stale, strlen(stale) + 1);
    assert_int_equal(bind(s, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(s);
    char conf[512];
    snprintf(conf, sizeof(conf),
             BASE "workers = 1;\nlisteners = ( { name = \"u\";\n"
                  "  listen = [ \"unix:%s\" ]; } );\n",
             stale);
    struct echod *e = echod_start(conf);
    echod_must_log(e, "listener u: listening on unix:%s", stale);
    echod_rewrite_conf(e,
                       BASE "workers = 1;\nlisteners = ( { name = \"u\";\n"
                            "  listen = [ \"unix:%s\", \"unix:%s\" ]; } );\n",
                       stale, file);
    echod_signal(e, SIGHUP);
    echod_must_log(e, "reload failed: ");
    echod_must_log(e, "%s is a regular file, not a socket", file);
    assert_true(file_holds(file, "important\n"));

    /* The socket's file replaced by a regular file: left at exit. */
    assert_int_equal(unlink(stale), 0);
    conf_rewrite(stale, "not the daemon's\n");
    echod_stop_ok(e);
    assert_true(file_holds(stale, "not the daemon's\n"));
    echod_must_log(e, "not removing unix:%s: it is no longer the socket the daemon made",
                   stale);
    unlink(stale);
    unlink(link_path);
    unlink(fifo);
    unlink(file);
    rmdir(sub);
    rmdir(dir);
}

/*
 * A reload that widens 127.0.0.1:P to *:P, and one that narrows it back,
 * apply (the new socket binds beside the old one, which then closes): the
 * connection opened before goes on, and new ones are served on the new
 * address.
 */
static void test_reload_widens_and_narrows_an_address(void **state)
{
    (void)state;
    /* A port free on both families' wildcards, which *:P binds: taken by
     * a dual-stack [::]:0 socket and let go. */
    int s6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), off = 0;
    assert_true(s6 >= 0);
    assert_int_equal(setsockopt(s6, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)), 0);
    struct sockaddr_in6 any = {.sin6_family = AF_INET6};
    socklen_t len = sizeof(any);
    assert_int_equal(bind(s6, (struct sockaddr *)&any, sizeof(any)), 0);
    assert_int_equal(getsockname(s6, (struct sockaddr *)&any, &len), 0);
    close(s6);
    int port = ntohs(any.sin6_port);
    struct echod *e = echod_startf(
        BASE "workers = 2;\n"
             "listeners = ( { name = \"e\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        port);
    int before = client4(port);
    expect_echo(before, "opened on 127.0.0.1\n");

    echod_rewrite_conf(
        e,
        BASE "workers = 2;\nlisteners = ( { name = \"e\"; listen = [ \"*:%d\" ]; } );\n",
        port);
    echod_reload_ok(e, WAIT_MS);
    int fd = client4(port);
    expect_echo(fd, "served on 0.0.0.0\n");
    finish(fd);
    fd = connect_to6(port);
    if (fd >= 0) {
        expect_echo(fd, "and on [::]\n");
        finish(fd);
    }

    echod_rewrite_conf(
        e,
        BASE
        "workers = 2;\nlisteners = ( { name = \"e\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        port);
    echod_reload_ok(e, WAIT_MS);
    fd = client4(port);
    expect_echo(fd, "served on 127.0.0.1 again\n");
    finish(fd);
    expect_echo(before, "the first connection, still\n");
    finish(before);
    echod_stop_ok(e);
}

int main(void)
{
    atexit(procs_cleanup);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_journald_level_prefixes, fresh),
        cmocka_unit_test_setup(test_notify_ready_and_stopping, fresh),
        cmocka_unit_test_setup(test_notify_status_counts, fresh),
        cmocka_unit_test_setup(test_socket_activation_echo, fresh),
        cmocka_unit_test_setup(test_socket_activation_two_names, fresh),
        cmocka_unit_test_setup(test_socket_activation_unmatched, fresh),
        cmocka_unit_test_setup(test_reload_keeps_streaming_connection, fresh),
        cmocka_unit_test_setup(test_reload_broken_file, fresh),
        cmocka_unit_test_setup(test_reload_adds_and_removes_listeners, fresh),
        cmocka_unit_test_setup(test_reload_idle_timeout_new_connections_only, fresh),
        cmocka_unit_test_setup(test_reload_acl_new_connections_only, fresh),
        cmocka_unit_test_setup(test_reload_notify, fresh),
        cmocka_unit_test_setup(test_reload_ignored_during_shutdown, fresh),
        cmocka_unit_test_setup(test_reload_port_taken_rolls_back, fresh),
        cmocka_unit_test_setup(test_reload_passed_socket_readded, fresh),
        cmocka_unit_test_setup(test_socket_activation_udp, fresh),
        cmocka_unit_test_setup(test_reload_daemonized_relative_path, fresh),
        cmocka_unit_test_setup(test_listen_fds_keeps_the_foreground, fresh),
        cmocka_unit_test_setup(test_unix_path_never_replaces_other_files, fresh),
        cmocka_unit_test_setup(test_reload_widens_and_narrows_an_address, fresh),
    };
    return cmocka_run_group_tests(tests, NULL, fresh);
}
