/*
 * mio-echodctl on its own, without a daemon: the built program is run
 * against a fake control socket in a temporary directory, a thread that
 * records what each connection sends and answers a canned answer (or
 * nothing, or half of one).  Checked: the line it sends (its arguments
 * joined by single spaces, one LF, then its half-close), what it prints
 * and where (the answer on standard output without its empty line; an
 * "error: " answer on standard error), its exit statuses (0, 1, 2), the
 * messages when it cannot ask (no socket, nothing listening, permission
 * denied as another uid, a timeout, an answer cut short), and the
 * commands it refuses before connecting.
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
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control-line.h"
#include "harness.h"

/* The default socket, as the man page says it. */
#define DEFAULT_PATH "/run/mio-echod/control.sock"
/* Who runs the program in the permission test. */
#define OTHER_USER "nobody"

/* The text of errno value err, for the main thread's messages. */
static const char *errtext(int err)
{
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): the server's thread never calls it. */
    return strerror(err);
}

/* ---- the fake control socket ------------------------------------------- */

/* What the fake server does with a connection, once it has read the
 * command up to the client's half-close. */
enum fake_mode {
    FAKE_ANSWER, /* writes the answer, then closes */
    FAKE_SILENT, /* answers nothing, and keeps the connection until stopped */
};

/* A fake control socket, served by a thread. */
struct fake {
    char path[PATH_MAX];
    int lfd;
    enum fake_mode mode;
    const char *answer; /* written as is, then the connection is closed */
    size_t answer_len;
    bool bytewise; /* the answer one byte a write */
    pthread_t thread;
    atomic_bool stop;
    /* What the last connection sent, and whether it half-closed; the count
     * of connections.  Read once the thread is stopped. */
    char got[4 * 1024];
    size_t ngot;
    bool got_eof;
    int connections;
};

static struct fake *running; /* stopped by the teardown */

/* Reads what a connection sends until its EOF, at most 5 s. */
static void fake_read_command(struct fake *f, int fd)
{
    f->ngot = 0;
    f->got_eof = false;
    int64_t until = ms_now() + 5000;
    while (!atomic_load(&f->stop) && ms_now() < until) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        ssize_t n = read(fd, f->got + f->ngot, sizeof(f->got) - 1 - f->ngot);
        if (n == 0) {
            f->got_eof = true;
            break;
        }
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            break;
        }
        f->ngot += (size_t)n;
        if (f->ngot == sizeof(f->got) - 1)
            break;
    }
    f->got[f->ngot] = '\0';
}

/* Writes the answer, all of it or one byte a write. */
static void fake_write_answer(struct fake *f, int fd)
{
    size_t off = 0;
    while (off < f->answer_len) {
        size_t n = f->bytewise ? 1 : f->answer_len - off;
        ssize_t w = send(fd, f->answer + off, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        off += (size_t)w;
        if (f->bytewise)
            usleep(1000);
    }
}

/* The server's thread: one connection at a time until stopped. */
static void *fake_serve(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd pfd = {.fd = f->lfd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        f->connections++;
        fake_read_command(f, fd);
        if (f->mode == FAKE_ANSWER) {
            fake_write_answer(f, fd);
        } else {
            /* Silent: hold the connection until stopped (10 s at most). */
            int64_t until = ms_now() + 10000;
            while (!atomic_load(&f->stop) && ms_now() < until)
                sleep_ms(20);
        }
        close(fd);
    }
    return NULL;
}

/* Binds a Unix stream socket at path; listens unless `listen_too` is
 * false (a socket file nobody listens on).  Returns the descriptor. */
static int bind_unix(const char *path, bool listen_too)
{
    struct sockaddr_un sun = unix_addr(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
        fail_msg("bind %s: %s", path, errtext(errno));
    if (listen_too && listen(fd, 8) != 0)
        fail_msg("listen %s: %s", path, errtext(errno));
    return fd;
}

/* Starts a fake control socket in a fresh directory, answering `answer`
 * (a C string) in `mode`, one byte a write when `bytewise` (set before
 * its thread starts, which reads it). */
static struct fake *fake_start_as(enum fake_mode mode, const char *answer, bool bytewise)
{
    struct fake *f = xmalloc(sizeof(*f));
    memset(f, 0, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "%s/control.sock", test_tmpdir());
    f->mode = mode;
    f->bytewise = bytewise;
    f->answer = answer != NULL ? answer : "";
    f->answer_len = strlen(f->answer);
    atomic_init(&f->stop, false);
    f->lfd = bind_unix(f->path, true);
    if (pthread_create(&f->thread, NULL, fake_serve, f) != 0)
        fail_msg("pthread_create failed");
    running = f;
    return f;
}

/* fake_start_as(), the answer written at once. */
static struct fake *fake_start(enum fake_mode mode, const char *answer)
{
    return fake_start_as(mode, answer, false);
}

/* Stops the server's thread; its record can be read then. */
static void fake_stop(struct fake *f)
{
    if (f == NULL || f->lfd < 0)
        return;
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    close(f->lfd);
    f->lfd = -1;
}

/* Stops and frees the fake of the test, if any. */
static void fake_done(void)
{
    if (running != NULL) {
        fake_stop(running);
        free(running);
        running = NULL;
    }
}

static int teardown(void **state)
{
    (void)state;
    fake_done();
    return 0;
}

/* ---- answers --------------------------------------------------------------- */

#define LISTENERS                                        \
    "# listener protocol mode open accepted addresses\n" \
    "relay tcp proxy 2 1031 127.0.0.1:7000,[::1]:7000\n"

/* A run of mio-echodctl against a fake that answers, and what it must
 * do. */
struct ask {
    const char *answer;   /* the fake's, written at once unless bytewise */
    const char *args[12]; /* after "-S PATH", up to the first NULL */
    int status;
    const char *out, *err;  /* exactly (NULL: anything) */
    const char *sent;       /* what the fake got, exactly (NULL: anything) */
    const char *err_has[2]; /* also in standard error (NULL: nothing) */
    bool bytewise;
};

/* Does `a` in r, against a fake of its own (the test's fake before it is
 * freed), stopped once the run is over; returns the fake, to look at. */
static struct fake *expect_ask(const struct ask *a, struct ctl_run *r)
{
    fake_done();
    struct fake *f = fake_start_as(FAKE_ANSWER, a->answer, a->bytewise);
    char *args[ARRAY_LEN(a->args) + 3] = {"-S", f->path};
    size_t n = 2;
    for (size_t i = 0; i < ARRAY_LEN(a->args) && a->args[i] != NULL; i++)
        args[n++] = (char *)a->args[i];
    args[n] = NULL;
    ctl_run_argv(r, NULL, (uid_t)-1, (gid_t)-1, args);
    fake_stop(f);
    ctl_expect(r, a->status, a->out, a->err);
    for (size_t i = 0; i < ARRAY_LEN(a->err_has) && a->err_has[i] != NULL; i++)
        ctl_expect_err_has(r, a->err_has[i]);
    if (a->sent != NULL)
        assert_string_equal(f->got, a->sent);
    return f;
}

/* expect_ask() of each of the n asks. */
static void expect_asks(const struct ask *asks, size_t n)
{
    struct ctl_run r;
    for (size_t i = 0; i < n; i++)
        expect_ask(&asks[i], &r);
}

/* The answer goes to standard output without its empty line; the command
 * went as one line, and then the write side was shut down. */
static void answer_printed(void **state)
{
    (void)state;
    static const struct ask a = {.answer = LISTENERS "\n",
                                 .args = {"show", "listeners"},
                                 .out = LISTENERS,
                                 .err = "",
                                 .sent = "show listeners\n"};
    struct ctl_run r;
    struct fake *f = expect_ask(&a, &r);
    assert_true(f->got_eof);
    assert_int_equal(f->connections, 1);
}

/* The same, the answer one byte a write: it is put together. */
static void answer_in_pieces(void **state)
{
    (void)state;
    static const struct ask asks[] = {
        {.answer = LISTENERS "\n",
         .args = {"show", "listeners"},
         .out = LISTENERS,
         .err = "",
         .bytewise = true},
        {.answer = "error: unknown listener \"x\"\n\n",
         .args = {"show", "upstreams", "x"},
         .status = 1,
         .out = "",
         .err = "mio-echodctl: error: unknown listener \"x\"\n",
         .bytewise = true},
    };
    expect_asks(asks, ARRAY_LEN(asks));
}

/* An empty answer is success, printing nothing; an "ok:" line is printed. */
static void empty_and_ok_answers(void **state)
{
    (void)state;
    static const struct ask asks[] = {
        {.answer = "\n", .args = {"show", "connections"}, .out = "", .err = ""},
        {.answer = "ok: upstream 10.0.0.1:6379 of relay draining\n\n",
         .args = {"drain", "upstream", "relay", "10.0.0.1:6379"},
         .out = "ok: upstream 10.0.0.1:6379 of relay draining\n",
         .err = "",
         .sent = "drain upstream relay 10.0.0.1:6379\n"},
    };
    expect_asks(asks, ARRAY_LEN(asks));
}

/* Bytes after the answer's empty line are not printed. */
static void after_the_end(void **state)
{
    (void)state;
    static const struct ask a = {.answer = "ok: reloaded: 2 listeners\n\nmore\n\n",
                                 .args = {"reload"},
                                 .out = "ok: reloaded: 2 listeners\n",
                                 .err = ""};
    expect_asks(&a, 1);
}

/* An "error: " answer: status 1, on standard error, prefixed; an answer
 * that only looks like one is printed as it is. */
static void error_answer(void **state)
{
    (void)state;
    static const struct ask asks[] = {
        {.answer = "error: reload failed: /etc/mio-echod.conf:7: workers: expected 1 to "
                   "256, got 0\n\n",
         .args = {"reload"},
         .status = 1,
         .out = "",
         .err = "mio-echodctl: error: reload failed: /etc/mio-echod.conf:7: workers: "
                "expected 1 to 256, got 0\n"},
        {.answer = "error:no space\nerrors: 0\n\n",
         .args = {"show", "stats"},
         .out = "error:no space\nerrors: 0\n",
         .err = ""},
        {.answer = "error\n\n", .args = {"help"}, .out = "error\n", .err = ""},
    };
    expect_asks(asks, ARRAY_LEN(asks));
}

/* The arguments are joined by single spaces; arguments after the command
 * are the command's, even those starting with "-". */
static void words_joined(void **state)
{
    (void)state;
    static const struct ask asks[] = {
        {.answer = "error: weight: expected 1 to 256\n\n",
         .args = {"-T", "5", "set", "weight", "relay", "10.0.0.1:6379", "-1"},
         .status = 1,
         .out = "",
         .err = "mio-echodctl: error: weight: expected 1 to 256\n",
         .sent = "set weight relay 10.0.0.1:6379 -1\n"},
        {.answer = "\n",
         .args = {"show upstreams\trelay"},
         .out = "",
         .err = "",
         .sent = "show upstreams\trelay\n"},
    };
    expect_asks(asks, ARRAY_LEN(asks));
}

/* ---- cannot ask ------------------------------------------------------------- */

/* An answer cut before its empty line: what came is printed, status 2. */
static void answer_cut(void **state)
{
    (void)state;
    static const struct ask asks[] = {
        {.answer = "# id listener client upstream age in out\n17 r",
         .args = {"show", "connections"},
         .status = 2,
         .out = "# id listener client upstream age in out\n17 r\n",
         .err_has = {"mio-echodctl: the answer from ", "ended without its empty line"}},
        {.answer = "ok: done\n",
         .args = {"reload"},
         .status = 2,
         .out = "ok: done\n",
         .err_has = {"ended without its empty line"}},
        {.answer = "erro", .args = {"reload"}, .status = 2, .out = "erro\n"},
    };
    expect_asks(asks, ARRAY_LEN(asks));

    static const struct ask none = {.answer = "",
                                    .args = {"reload"},
                                    .status = 2,
                                    .out = ""};
    struct ctl_run r;
    struct fake *f = expect_ask(&none, &r);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof(want),
             "mio-echodctl: %s closed the connection without answering\n", f->path);
    ctl_expect(&r, 2, "", want);
}

/* A daemon that never answers: status 2 after -T, saying so. */
static void timeout(void **state)
{
    (void)state;
    struct ctl_run r;
    struct fake *f = fake_start(FAKE_SILENT, NULL);
    ctl_run(&r, "-S", f->path, "-T", "1", "reload", NULL);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof(want), "mio-echodctl: no answer from %s within 1 s\n", f->path);
    ctl_expect(&r, 2, "", want);
    if (r.ms < 900 || r.ms > 4000)
        fail_msg("gave up after %lld ms, expected about 1000", (long long)r.ms);
    fake_done();

    f = fake_start(FAKE_SILENT, NULL);
    ctl_run(&r, "-S", f->path, "-T", "0.3", "show", "stats", NULL);
    ctl_expect(&r, 2, "", NULL);
    ctl_expect_err_has(&r, "within 0.3 s");
    if (r.ms < 250 || r.ms > 3000)
        fail_msg("gave up after %lld ms, expected about 300", (long long)r.ms);
}

/* No socket at the path: status 2, naming it and why. */
static void missing_socket(void **state)
{
    (void)state;
    struct ctl_run r;
    char path[PATH_MAX], want[2 * PATH_MAX];
    snprintf(path, sizeof(path), "%s/none.sock", test_tmpdir());
    ctl_run(&r, "-S", path, "show", "listeners", NULL);
    snprintf(
        want, sizeof(want),
        "mio-echodctl: cannot connect to %s: No such file or directory (is the daemon "
        "running, with its control socket enabled?)\n",
        path);
    ctl_expect(&r, 2, "", want);

    /* Without -S: the default path, named. */
    if (access(DEFAULT_PATH, F_OK) != 0 && errno == ENOENT) {
        ctl_run(&r, "show", "listeners", NULL);
        ctl_expect(&r, 2, "", NULL);
        ctl_expect_err_has(&r, "cannot connect to " DEFAULT_PATH
                               ": No such file or directory");
    } else {
        print_message("note: " DEFAULT_PATH
                      " exists here: the default path is not tried\n");
    }
}

/* A socket file nobody listens on. */
static void refused(void **state)
{
    (void)state;
    struct ctl_run r;
    char path[PATH_MAX], want[2 * PATH_MAX];
    snprintf(path, sizeof(path), "%s/stale.sock", test_tmpdir());
    close(bind_unix(path, false));
    ctl_run(&r, "-S", path, "show", "listeners", NULL);
    snprintf(want, sizeof(want),
             "mio-echodctl: cannot connect to %s: Connection refused (is the daemon "
             "running? nothing listens on this socket)\n",
             path);
    ctl_expect(&r, 2, "", want);
}

/* Mode 0600 on root's socket keeps another user out: status 2 and the
 * message; mode 0666 lets the same user in. */
static void permission_denied(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("skipped: needs root to run mio-echodctl as another user "
                      "(running as uid %u; a mode 0000 socket does not stop root)\n",
                      (unsigned)geteuid());
        skip();
        return;
    }
    uid_t uid;
    gid_t gid;
    if (!ctl_user_ids(OTHER_USER, &uid, &gid)) {
        print_message("skipped: no user \"%s\" here\n", OTHER_USER);
        skip();
        return;
    }
    struct fake *f = fake_start(FAKE_ANSWER, "ok: fine\n\n");
    char dir[PATH_MAX], prog[PATH_MAX + 16], want[2 * PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", f->path);
    *strrchr(dir, '/') = '\0';
    CHECK(chmod(dir, 0755) == 0);
    ctl_program_copy(dir, prog, sizeof(prog));
    CHECK(chmod(f->path, 0600) == 0);

    struct ctl_run r;
    char *args[] = {"-S", f->path, "show", "listeners", NULL};
    ctl_run_argv(&r, prog, uid, gid, args);
    snprintf(want, sizeof(want),
             "mio-echodctl: cannot connect to %s: Permission denied (is the daemon's "
             "control socket enabled, and may this user open it?)\n",
             f->path);
    ctl_expect(&r, 2, "", want);

    CHECK(chmod(f->path, 0666) == 0);
    ctl_run_argv(&r, prog, uid, gid, args);
    fake_stop(f);
    ctl_expect(&r, 0, "ok: fine\n", "");
    assert_int_equal(f->connections, 1);
}

/* ---- refused before connecting ---------------------------------------------- */

/* A command the daemon would refuse is refused here, without a
 * connection: control and non-ASCII bytes, a line of more than 1024
 * bytes, more than 8 words, a blank command. */
static void refused_before_connecting(void **state)
{
    (void)state;
    struct ctl_run r;
    struct fake *f = fake_start(FAKE_ANSWER, "ok: sent\n\n");
    ctl_run(&r, "-S", f->path, "show", "listeners\nreload", NULL);
    ctl_expect(&r, 2, "",
               "mio-echodctl: argument 2 has a control byte 0x0a: a command "
               "is printable ASCII, spaces and tabs only\n");
    ctl_run(&r, "-S", f->path, "show\r", NULL);
    ctl_expect(&r, 2, "", NULL);
    ctl_expect_err_has(&r, "argument 1 has a control byte 0x0d");
    ctl_run(&r, "-S", f->path, "show", "upstreams", "caf\xc3\xa9", NULL);
    ctl_expect(&r, 2, "", NULL);
    ctl_expect_err_has(&r, "argument 3 has a non-ASCII byte 0xc3");
    ctl_run(&r, "-S", f->path, "kill", "connection", "\x7f", NULL);
    ctl_expect(&r, 2, "", NULL);
    ctl_expect_err_has(&r, "control byte 0x7f");

    /* 1024 bytes go; 1025 do not. */
    static char word[CONTROL_LINE_MAX + 1];
    memset(word, 'x', sizeof(word) - 1);
    word[CONTROL_LINE_MAX - 5] = '\0'; /* "show " + 1019 = 1024 */
    ctl_run(&r, "-S", f->path, "show", word, NULL);
    ctl_expect(&r, 0, "ok: sent\n", "");
    word[CONTROL_LINE_MAX - 5] = 'x';
    word[CONTROL_LINE_MAX - 4] = '\0';
    ctl_run(&r, "-S", f->path, "show", word, NULL);
    ctl_expect(&r, 2, "",
               "mio-echodctl: the command is 1025 bytes long: the daemon reads at most "
               "1024\n");

    /* 8 words go; 9 do not. */
    ctl_run(&r, "-S", f->path, "1", "2", "3", "4", "5", "6", "7", "8", NULL);
    ctl_expect(&r, 0, "ok: sent\n", "");
    ctl_run(&r, "-S", f->path, "1", "2", "3", "4", "5", "6", "7", "8 9", NULL);
    ctl_expect(&r, 2, "",
               "mio-echodctl: the daemon would refuse this command: more than 8 words "
               "in a command line\n");

    /* Blank. */
    ctl_run(&r, "-S", f->path, "", NULL);
    ctl_expect(&r, 2, "", NULL);
    ctl_expect_err_has(&r, "the command is blank");
    ctl_run(&r, "-S", f->path, " ", "\t", NULL);
    ctl_expect(&r, 2, "", NULL);
    ctl_expect_err_has(&r, "the command is blank");

    fake_stop(f);
    assert_int_equal(f->connections, 2); /* the 1024 bytes and the 8 words */
}

/* ---- usage ------------------------------------------------------------------ */

static void usage(void **state)
{
    (void)state;
    struct ctl_run r;
    ctl_run(&r, NULL);
    ctl_expect(&r, 2, "", NULL);
    ctl_expect_err_has(&r, "mio-echodctl: no command given");
    ctl_expect_err_has(&r,
                       "usage: mio-echodctl [-S path] [-T seconds] command [args...]");
    ctl_run(&r, "-x", "help", NULL);
    ctl_expect(&r, 2, "", NULL);
    ctl_expect_err_has(&r, "usage: mio-echodctl");
    ctl_run(&r, "-S", NULL);
    ctl_expect(&r, 2, "", NULL);
    static const char *const bad_timeouts[] = {"0", "-1",  "abc", "1s",
                                               "",  "nan", "inf", "86401"};
    for (size_t i = 0; i < ARRAY_LEN(bad_timeouts); i++) {
        ctl_run(&r, "-T", bad_timeouts[i], "help", NULL);
        ctl_expect(&r, 2, "", NULL);
        ctl_expect_err_has(&r, "mio-echodctl: -T: expected a number of seconds above 0");
    }
    ctl_run(&r, "-S", "", "help", NULL);
    ctl_expect(&r, 2, "", "mio-echodctl: -S: empty path\n");
    char longpath[200];
    memset(longpath, 'p', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    ctl_run(&r, "-S", longpath, "help", NULL);
    ctl_expect(&r, 2, "", NULL);
    ctl_expect_err_has(&r, "mio-echodctl: -S: a socket path is at most 107 bytes");

    ctl_run(&r, "-h", NULL);
    ctl_expect(&r, 0, NULL, "");
    static const char *const in_help[] = {
        "usage: mio-echodctl [-S path] [-T seconds] command [args...]",
        /* NOLINTNEXTLINE(bugprone-suspicious-missing-comma): one string */
        "(default " DEFAULT_PATH ")",
        "show listeners",
        "show upstreams [LISTENER]",
        "show connections [LISTENER]",
        "show stats",
        "disable upstream LISTENER ADDRESS",
        "enable upstream LISTENER ADDRESS",
        "drain upstream LISTENER ADDRESS",
        "set weight LISTENER ADDRESS N",
        "reload",
        "drain",
        "kill connection ID",
        "help",
    };
    for (size_t i = 0; i < ARRAY_LEN(in_help); i++)
        if (strstr(r.out, in_help[i]) == NULL)
            fail_msg("-h does not say \"%s\": %s", in_help[i], r.out);

    ctl_run(&r, "-V", NULL);
    ctl_expect(&r, 0, "mio-echodctl " PACKAGE_VERSION "\n", "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(answer_printed, teardown),
        cmocka_unit_test_teardown(answer_in_pieces, teardown),
        cmocka_unit_test_teardown(empty_and_ok_answers, teardown),
        cmocka_unit_test_teardown(after_the_end, teardown),
        cmocka_unit_test_teardown(error_answer, teardown),
        cmocka_unit_test_teardown(words_joined, teardown),
        cmocka_unit_test_teardown(answer_cut, teardown),
        cmocka_unit_test_teardown(timeout, teardown),
        cmocka_unit_test_teardown(missing_socket, teardown),
        cmocka_unit_test_teardown(refused, teardown),
        cmocka_unit_test_teardown(permission_denied, teardown),
        cmocka_unit_test_teardown(refused_before_connecting, teardown),
        cmocka_unit_test_teardown(usage, teardown),
    };
    test_filter_from_env("ECHODCTL_TEST");
    return cmocka_run_group_tests(tests, setup_ignore_sigpipe, NULL);
}
