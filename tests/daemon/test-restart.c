/*
 * A restart through systemd's file-descriptor store, with the test as
 * systemd: it owns the notify socket (NOTIFY_SOCKET), keeps the sockets the
 * daemon stores there (FDSTORE=1 with FDNAME=, received with SCM_RIGHTS),
 * drops those it removes (FDSTOREREMOVE=1), and restarts the daemon: SIGTERM
 * to the old one and at once a new one with the stored sockets as
 * LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, as "systemctl restart" does.  Under
 * a steady load of new connections and with long streams open, no client
 * is refused or reset and no byte is lost.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

#define BASE \
    "log = { target = \"stderr\"; level = \"debug\"; };\nshutdown_timeout = 8.0;\n"

/* How long a test waits for something that should happen at once. */
#define WAIT_MS 3000

/* ---- the fake systemd: notify socket and fd store ------------------------ */

#define STORE_MAX 64

/* What the store holds: each socket under its FDNAME. */
struct store {
    char name[STORE_MAX][256];
    int fd[STORE_MAX];
    size_t n;
};

static int notify_fd = -1;
static char notify_path[PATH_MAX];

/* Creates the notify socket in a fresh directory and sets NOTIFY_SOCKET. */
static void notify_open(void)
{
    const char *conf = write_conf("# a directory for the notify socket\n");
    snprintf(notify_path, sizeof(notify_path), "%.*s/notify",
             (int)(strrchr(conf, '/') - conf), conf);
    struct sockaddr_un a = unix_addr(notify_path);
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(notify_fd >= 0);
    assert_int_equal(bind(notify_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(setenv("NOTIFY_SOCKET", notify_path, 1), 0);
}

static void notify_close(void)
{
    if (notify_fd >= 0) {
        close(notify_fd);
        unlink(notify_path);
        notify_fd = -1;
    }
    unsetenv("NOTIFY_SOCKET");
}

static void store_clear(struct store *st)
{
    for (size_t i = 0; i < st->n; i++)
        close(st->fd[i]);
    st->n = 0;
}

/* The value of line "KEY=" in msg (up to the newline) into buf, or false. */
static bool field(const char *msg, const char *key, char *buf, size_t len)
{
    size_t k = strlen(key);
    for (const char *p = msg; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t l = nl != NULL ? (size_t)(nl - p) : strlen(p);
        if (l >= k && strncmp(p, key, k) == 0) {
            snprintf(buf, len, "%.*s", (int)(l - k), p + k);
            return true;
        }
        p = nl != NULL ? nl + 1 : NULL;
    }
    return false;
}

/* What the store was told, counted. */
struct told {
    int stored, removed; /* FDSTORE=1 and FDSTOREREMOVE=1 messages */
    char last[1024];     /* the last message */
};

/*
 * Takes the daemon's notifications for up to ms, as systemd would, until one
 * has the line `until` (e.g. "READY=1"): FDSTORE=1 adds its descriptors to
 * the store under FDNAME=, FDSTOREREMOVE=1 closes those of that name.
 * False when `until` did not come.
 */
static bool notify_take(struct store *st, const char *until, int ms, struct told *t)
{
    int64_t end = ms_now() + ms;
    for (int i = 0; i < 10000; i++) {
        int64_t left = end - ms_now();
        struct pollfd p = {.fd = notify_fd, .events = POLLIN};
        int r = poll(&p, 1, left < 0 ? 0 : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        char msg[1024];
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int) * STORE_MAX)];
        } ctl;
        struct iovec iov = {.iov_base = msg, .iov_len = sizeof(msg) - 1};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = ctl.buf,
                            .msg_controllen = sizeof(ctl.buf)};
        ssize_t n = recvmsg(notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        assert_true(n >= 0);
        msg[n] = '\0';
        snprintf(t->last, sizeof(t->last), "%s", msg);
        int fds[STORE_MAX];
        size_t nfds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                for (size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++)
                    memcpy(&fds[nfds++], CMSG_DATA(c) + k * sizeof(int), sizeof(int));
        char name[256] = "stored", v[8];
        (void)field(msg, "FDNAME=", name, sizeof(name));
        if (field(msg, "FDSTORE=", v, sizeof(v)) && strcmp(v, "1") == 0) {
            t->stored++;
            for (size_t k = 0; k < nfds; k++) {
                assert_true(st->n < STORE_MAX);
                snprintf(st->name[st->n], sizeof(st->name[0]), "%s", name);
                st->fd[st->n++] = fds[k];
            }
        } else {
            for (size_t k = 0; k < nfds; k++)
                close(fds[k]);
        }
        if (field(msg, "FDSTOREREMOVE=", v, sizeof(v)) && strcmp(v, "1") == 0) {
            t->removed++;
            size_t kept = 0;
            for (size_t k = 0; k < st->n; k++) {
                if (strcmp(st->name[k], name) == 0) {
                    close(st->fd[k]);
                    continue;
                }
                if (kept != k)
                    memcpy(st->name[kept], st->name[k], sizeof(st->name[0]));
                st->fd[kept++] = st->fd[k];
            }
            st->n = kept;
        }
        char line[64];
        snprintf(line, sizeof(line), "%s", until);
        char *eq = strchr(line, '=');
        if (eq != NULL) {
            eq[1] = '\0';
            if (field(msg, line, v, sizeof(v)) && strcmp(v, strchr(until, '=') + 1) == 0)
                return true;
        }
    }
    return false;
}

/* Waits (5 s at most) for READY=1 from a daemon `who` (for the failure
 * message), counting what it stored and removed into *t, reset first. */
static void expect_ready(struct store *st, struct told *t, const char *who)
{
    memset(t, 0, sizeof(*t));
    if (!notify_take(st, "READY=1", 5000, t))
        fail_msg("no READY=1 from %s within 5 s; last \"%s\"", who, t->last);
}

/* The port of a stored TCP socket (0 for another kind). */
static int stored_port(int fd)
{
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || ss.ss_family != AF_INET)
        return 0;
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* How many sockets the store holds under name, and whether one of them is
 * bound to port (port 0: any). */
static int stored_count(const struct store *st, const char *name, int port, bool *has)
{
    int n = 0;
    *has = port == 0;
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->name[i], name) == 0) {
            n++;
            if (port != 0 && stored_port(st->fd[i]) == port)
                *has = true;
        }
    return n;
}

/* "systemctl restart" for the daemon: SIGTERM to the old one and at once
 * a new one, with the configuration it has, given the store's sockets. */
static struct echod *restart(struct echod *old, const struct store *st, const char *conf)
{
    char names[4096] = "";
    for (size_t i = 0; i < st->n; i++)
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                 i > 0 ? ":" : "", st->name[i]);
    /* In the same directory, for the same Unix socket paths (@DIR@). */
    char dir[PATH_MAX];
    const char *c = echod_conf_path(old);
    snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(c, '/') - c), c);
    echod_signal(old, SIGTERM);
    struct echod_opts o = {.dir = dir,
                           .pass_fds = st->fd,
                           .npass = st->n,
                           .fdnames = names};
    return echod_start_opts(conf, &o);
}

/* ---- tests ---------------------------------------------------------------- */

/*
 * At start every listening socket is stored, one FDSTORE=1 per listener
 * with all its sockets (two for "echo", its TCP port and its Unix socket),
 * before READY=1.  Under churn on both TCP listeners and with four long
 * streams open, the test restarts the daemon with the store: the new one
 * takes every socket from it (and stores nothing again, the store has
 * them), serves the clients that came meanwhile, and the old one drains
 * its streams to the last byte: zero errors, zero refused, zero lost.
 */
static void test_restart_under_load(void **state)
{
    (void)state;
    notify_open();
    struct store st = {0};
    struct told t = {0};
    int p1 = reserve_port(), p2 = reserve_port();
    char conf[1024];
    snprintf(conf, sizeof(conf),
             BASE "workers = 2;\n"
                  "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\", "
                  "\"unix:@DIR@/echo.sock\" ]; },\n"
                  "  { name = \"other\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             p1, p2);
    struct echod *old = echod_start(conf);
    expect_ready(&st, &t, "the daemon");
    bool has;
    assert_int_equal(stored_count(&st, "stored/echo", p1, &has), 2);
    assert_true(has);
    assert_int_equal(stored_count(&st, "stored/other", p2, &has), 1);
    assert_true(has);
    assert_int_equal(t.stored, 2);
    assert_int_equal(t.removed, 0);
    char sock_path[PATH_MAX];
    const char *c = echod_conf_path(old);
    snprintf(sock_path, sizeof(sock_path), "%.*s/echo.sock", (int)(strrchr(c, '/') - c),
             c);
    expect_unix_echo(sock_path, "before the restart\n");

    struct load load;
    load_start(&load, p1, p2, 1234u);
    load_mark(&load);

    int64_t t0 = ms_now();
    struct echod *fresh = restart(old, &st, conf);
    print_message("the new daemon started %lld ms after SIGTERM to the old one\n",
                  (long long)(ms_now() - t0));
    echod_must_log(fresh, "listening on 127.0.0.1:%d (echo, socket from the fd store)",
                   p1);
    echod_must_log(fresh, "listening on 127.0.0.1:%d (echo, socket from the fd store)",
                   p2);
    echod_must_log(fresh, "listening on unix:%s (echo, socket from the fd store)",
                   sock_path);
    expect_ready(&st, &t, "the new daemon");
    /* The old one's STOPPING=1 and the new one's READY=1: nothing stored
     * again, nothing removed. */
    assert_int_equal(t.stored, 0);
    assert_int_equal(t.removed, 0);
    assert_int_equal(st.n, 3);

    /* The streams, on the old daemon, go on while it drains; the churn
     * goes on to the new one. */
    load_streams_advance(&load);
    load_finish(&load, "the restart began");
    echod_expect_exit_ok(old, 10000);
    /* The new daemon took clients on both listeners. */
    assert_true(echod_counters_now(fresh, "echo").accepted > 0);
    assert_true(echod_counters_now(fresh, "other").accepted > 0);
    /* The Unix socket's file stayed: the new daemon serves it. */
    expect_unix_echo(sock_path, "after the restart\n");
    echod_stop_ok(fresh);
    store_clear(&st);
    notify_close();
}

/*
 * A reload that drops one address of a listener and a whole listener, and
 * adds a listener: FDNAME= names a group, so "echo" is removed and its
 * remaining socket stored again; "other" is removed; "third" is stored.
 * The dropped ports are closed for good (refused).  A restart with a
 * configuration that no longer has "third" closes its stored socket and
 * removes it from the store, and starts.
 */
static void test_reload_updates_the_store(void **state)
{
    (void)state;
    notify_open();
    struct store st = {0};
    struct told t = {0};
    int p1 = reserve_port(), p2 = reserve_port(), p3 = reserve_port(),
        p4 = reserve_port();
    char conf[1024];
    snprintf(conf, sizeof(conf),
             BASE "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\", "
                  "\"127.0.0.1:%d\" ]; },\n"
                  "  { name = \"other\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             p1, p2, p3);
    struct echod *e = echod_start(conf);
    expect_ready(&st, &t, "the daemon");
    assert_int_equal(st.n, 3);

    snprintf(conf, sizeof(conf),
             BASE "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; },\n"
                  "  { name = \"third\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             p1, p4);
    echod_rewrite_conf(e, "%s", conf);
    echod_signal(e, SIGHUP);
    memset(&t, 0, sizeof(t));
    /* RELOADING=1, the store's messages, then READY=1. */
    if (!notify_take(&st, "RELOADING=1", 5000, &t) ||
        !notify_take(&st, "READY=1", 5000, &t))
        fail_msg("no RELOADING=1 and READY=1 within 5 s; last \"%s\"", t.last);
    echod_must_log(e, "reloaded");
    assert_int_equal(t.removed, 2); /* echo and other */
    assert_int_equal(t.stored, 2);  /* echo again, and third */
    bool has;
    assert_int_equal(stored_count(&st, "stored/echo", p1, &has), 1);
    assert_true(has);
    assert_int_equal(stored_count(&st, "stored/third", p4, &has), 1);
    assert_true(has);
    assert_int_equal(stored_count(&st, "stored/other", 0, &has), 0);
    assert_int_equal(st.n, 2);
    /* Gone from the store and from the daemon: refused. */
    expect_connect_refused(p2, WAIT_MS);
    expect_connect_refused(p3, WAIT_MS);
    int a = client4(p1), b = client4(p4);
    expect_echo(a, "kept\n");
    expect_echo(b, "added\n");
    finish(a);
    finish(b);

    /* Restart without "third": its stored socket is closed and removed. */
    snprintf(conf, sizeof(conf),
             BASE
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             p1);
    struct echod *fresh = restart(e, &st, conf);
    echod_expect_exit_ok(e, 5000);
    echod_must_log(fresh,
                   "fd store: closing the stored socket of listener third on "
                   "127.0.0.1:%d",
                   p4);
    expect_ready(&st, &t, "the new daemon");
    assert_int_equal(t.removed, 1);
    assert_int_equal(t.stored, 0);
    assert_int_equal(stored_count(&st, "stored/echo", p1, &has), 1);
    assert_int_equal(st.n, 1);
    expect_connect_refused(p4, WAIT_MS);
    a = client4(p1);
    expect_echo(a, "served by the new one\n");
    finish(a);
    echod_stop_ok(fresh);
    store_clear(&st);
    notify_close();
}

/* A listener renamed by a reload keeps its socket, which moves from the
 * old name's group to the new one's: a restart must find it by its new
 * name. */
static void test_reload_renamed_listener(void **state)
{
    (void)state;
    notify_open();
    struct store st = {0};
    struct told t = {0};
    int p1 = reserve_port();
    char conf[512];
    snprintf(conf, sizeof(conf),
             BASE
             "listeners = ( { name = \"before\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             p1);
    struct echod *e = echod_start(conf);
    expect_ready(&st, &t, "the daemon");
    snprintf(conf, sizeof(conf),
             BASE
             "listeners = ( { name = \"after\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             p1);
    echod_rewrite_conf(e, "%s", conf);
    echod_signal(e, SIGHUP);
    memset(&t, 0, sizeof(t));
    if (!notify_take(&st, "RELOADING=1", 5000, &t) ||
        !notify_take(&st, "READY=1", 5000, &t))
        fail_msg("no RELOADING=1 and READY=1 within 5 s; last \"%s\"", t.last);
    bool has;
    assert_int_equal(stored_count(&st, "stored/after", p1, &has), 1);
    assert_true(has);
    assert_int_equal(st.n, 1);
    struct echod *fresh = restart(e, &st, conf);
    echod_must_log(fresh, "listening on 127.0.0.1:%d (echo, socket from the fd store)",
                   p1);
    int a = client4(p1);
    expect_echo(a, "renamed\n");
    finish(a);
    echod_expect_exit_ok(e, 5000);
    echod_stop_ok(fresh);
    store_clear(&st);
    notify_close();
}

/*
 * reuse_port across restarts from the store, which do not bind the socket
 * anew.  Turned on in the configuration a restart starts with, it is set
 * on the stored socket, as a reload would, and another daemon joins the
 * port.  A socket bound shared is said to be ("port shared") when taken
 * back, and a reload then finds nothing to change.
 */
static void test_restart_reuse_port(void **state)
{
    (void)state;
    notify_open();
    struct store st = {0};
    struct told t = {0};
    int p = reserve_port();
    char unshared[512], shared[512];
    snprintf(unshared, sizeof(unshared),
             BASE
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             p);
    snprintf(shared, sizeof(shared),
             BASE "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ];\n"
                  "  reuse_port = true; } );\n",
             p);
    struct echod *e = echod_start(unshared);
    expect_ready(&st, &t, "the daemon");

    struct echod *fresh = restart(e, &st, shared);
    echod_expect_exit_ok(e, 5000);
    echod_must_log(fresh, "listener echo: 127.0.0.1:%d now shares its port (reuse_port)",
                   p);
    echod_must_log(
        fresh, "listening on 127.0.0.1:%d (echo, socket from the fd store, port shared)",
        p);
    expect_ready(&st, &t, "the restarted daemon");
    /* Another daemon, not under the fake systemd, joins the port. */
    assert_int_equal(unsetenv("NOTIFY_SOCKET"), 0);
    struct echod *other = echod_start(shared);
    assert_int_equal(setenv("NOTIFY_SOCKET", notify_path, 1), 0);
    echod_must_log(other, "listening on 127.0.0.1:%d (echo, port shared)", p);

    struct echod *third = restart(fresh, &st, shared);
    echod_expect_exit_ok(fresh, 5000);
    echod_must_log(
        third, "listening on 127.0.0.1:%d (echo, socket from the fd store, port shared)",
        p);
    expect_ready(&st, &t, "the third daemon");
    echod_reload_ok(third, WAIT_MS);
    assert_int_equal(echod_count_log(third, "now shares its port"), 0);
    int a = client4(p);
    expect_echo(a, "shared\n");
    finish(a);
    echod_stop_ok(other);
    echod_stop_ok(third);
    store_clear(&st);
    notify_close();
}

static int setup_group(void **state)
{
    if (setup_ignore_sigpipe(state) != 0 || !pattern_init((size_t)4 << 20, 20261203))
        return -1;
    return 0;
}

static int teardown_group(void **state)
{
    (void)state;
    pattern_free();
    return 0;
}

static int fresh_state(void **state)
{
    notify_close();
    return teardown_all(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_restart_under_load, fresh_state),
        cmocka_unit_test_teardown(test_reload_updates_the_store, fresh_state),
        cmocka_unit_test_teardown(test_reload_renamed_listener, fresh_state),
        cmocka_unit_test_teardown(test_restart_reuse_port, fresh_state),
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
