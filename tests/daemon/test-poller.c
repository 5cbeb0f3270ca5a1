/*
 * The poller setting (issue 16), against the real daemon: each backend
 * this system grants (epoll, poll, io_uring) serves a byte-exact stream and
 * is named by the start line and by mio_echod_build_info; an explicit
 * poller wins over MIO_BACKEND, which only "auto" obeys; a reload that
 * changes it warns that it takes a restart and keeps serving; -V names the
 * default and the usable ones; a poller this system cannot give is refused
 * by -t naming file:line and what is usable: kqueue on Linux, an unknown
 * name, and io_uring refused by a seccomp filter as a container runtime
 * refuses it.  Not run again per backend: it chooses its own.  Every wait
 * is bounded.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "mio.h"

#define LOG "log = { target = \"stderr\"; level = \"info\"; access = false; };\n"
#define STATS "stats = { listen = \"127.0.0.1:0\"; };\n"
#define ECHO "listeners = ( { name = \"e\"; listen = [ \"127.0.0.1:0\" ]; } );\n"

/* Whether this library and kernel give a poll on `backend`; prints why
 * not. */
static bool granted(const char *backend)
{
    mio_poll_t *poll = NULL;
    int err = mio_poll_new_with(&poll, backend);
    if (err == 0) {
        mio_poll_free(poll);
        return true;
    }
    print_message("%s: not granted here: %s\n", backend, strerror(-err));
    return false;
}

/* Starts the daemon with `poller` (NULL: none set), checks the start line
 * and build_info name `want`, and that a 256 KiB stream comes back byte
 * for byte. */
static struct echod *serve_on(const char *poller, const char *want)
{
    char conf[1024], line[64], info[128];
    snprintf(conf, sizeof(conf), "workers = 2;\n%s%s%s" LOG STATS ECHO,
             poller != NULL ? "poller = \"" : "", poller != NULL ? poller : "",
             poller != NULL ? "\";\n" : "");
    struct echod *e = echod_start(conf);
    snprintf(line, sizeof(line), "started: 2 workers, %s backend", want);
    if (echod_log_line(e, line, 0) == NULL)
        fail_msg("poller %s: no \"%s\" in the log", poller ? poller : "unset", line);
    char *body = metrics_scrape(e, 5000);
    snprintf(info, sizeof(info), "mio_echod_build_info{version=\"%s\",backend=\"%s\"} 1",
             PACKAGE_VERSION, want);
    bool named = strstr(body, info) != NULL;
    free(body);
    if (!named)
        fail_msg("poller %s: no %s in /metrics", poller ? poller : "unset", info);
    struct stream *s = stream_start(echod_port(e, "e", 0), 0, false);
    if (!stream_advances(s, 256 * 1024, 5000))
        fail_msg("poller %s: a stream did not advance 256 KiB in 5 s", want);
    assert_true(stream_finish(s) >= 256 * 1024);
    return e;
}

/* Each backend this system grants serves, and says so. */
static void each_backend_serves(void **state)
{
    (void)state;
    static const char *const pollers[] = {"epoll", "poll", "io_uring"};
    for (size_t i = 0; i < sizeof(pollers) / sizeof(pollers[0]); i++) {
        if (!granted(pollers[i]))
            continue;
        echod_stop_ok(serve_on(pollers[i], pollers[i]));
    }
}

/* auto takes MIO_BACKEND; an explicit poller does not. */
static void explicit_wins_over_environment(void **state)
{
    (void)state;
    setenv("MIO_BACKEND", "poll", 1);
    struct echod *e = serve_on("auto", "poll");
    echod_stop_ok(e);
    e = serve_on("epoll", "epoll");
    echod_stop_ok(e);
    unsetenv("MIO_BACKEND");
    echod_stop_ok(serve_on(NULL, "epoll"));
}

/* A reload changing the poller warns that it takes a restart, and the
 * daemon keeps serving on the one it has. */
static void reload_keeps_the_poller(void **state)
{
    (void)state;
    struct echod *e = serve_on("poll", "poll");
    echod_rewrite_conf(e, "workers = 2;\npoller = \"epoll\";\n" LOG STATS ECHO);
    echod_reload_ok(e, 5000);
    echod_must_log(e, "reload: poller changed: it takes effect at the next restart");
    int fd = client4(echod_port(e, "e", 0));
    expect_echo(fd, "still here\n");
    close(fd);
    char *body = metrics_scrape(e, 5000);
    bool same = strstr(body, "backend=\"poll\"") != NULL;
    free(body);
    assert_true(same);
    echod_stop_ok(e);
}

/* -V names the default and the usable pollers. */
static void version_names_pollers(void **state)
{
    (void)state;
    char out[4096];
    assert_int_equal(echod_run(out, sizeof(out), "-V", (char *)NULL), 0);
    const char *want =
        granted("io_uring")
            ? "pollers: epoll, poll, io_uring usable here; poller = \"auto\" "
              "takes epoll\n"
            : "pollers: epoll, poll usable here; poller = \"auto\" takes "
              "epoll\n";
    if (strstr(out, "mio-echod " PACKAGE_VERSION " (libmio, epoll backend)\n") == NULL ||
        strstr(out, want) == NULL)
        fail_msg("-V said [%s], expected \"%s\"", out, want);
}

/* Pollers this system lacks, and names it does not know, are refused. */
static void config_errors(void **state)
{
    (void)state;
    char usable[64];
    snprintf(usable, sizeof(usable), "usable here: epoll, poll%s",
             granted("io_uring") ? ", io_uring" : "");
    char kqueue[200];
    snprintf(
        kqueue, sizeof(kqueue),
        "poller: this system has no kqueue (not built in, or the kernel lacks it); %s",
        usable);
    const struct conf_error cases[] = {
        {"kqueue on Linux", "workers = 1;\npoller = \"kqueue\";\n" ECHO, 2, kqueue},
        {"unknown name", "poller = \"select\";\n" ECHO, 1,
         "poller: expected auto, epoll, kqueue, poll or io_uring, got \"select\""},
        {"not a string", "poller = 1;\n" ECHO, 1,
         "poller: expected auto, epoll, kqueue, poll or io_uring, got 1"},
    };
    expect_conf_errors(cases, sizeof(cases) / sizeof(cases[0]));
}

#ifdef __NR_io_uring_setup
/* In the child: io_uring_setup fails with EPERM from now on, as under a
 * container runtime's seccomp profile; false when seccomp is not here. */
static bool refuse_io_uring(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

/* io_uring refused by seccomp: -t says so, at the setting's line, and
 * what is usable instead; the daemon does not start. */
static void io_uring_refused_by_seccomp(void **state)
{
    (void)state;
    if (!granted("io_uring"))
        skip();
    const char *path = write_conf("workers = 1;\npoller = \"io_uring\";\n" ECHO);
    char prog[4096];
    echod_program_path(prog, sizeof(prog));
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        echod_child_setup(getppid(), p[1]);
        if (!refuse_io_uring())
            _exit(77);
        execl(prog, prog, "-t", "-c", path, (char *)NULL);
        _exit(126);
    }
    close(p[1]);
    char out[4096];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(out) - 1 &&
           (n = read(p[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        print_message("skipped: no seccomp here\n");
        skip();
    }
    char want[400];
    snprintf(want, sizeof(want),
             "%s:2: poller: the system refuses io_uring: Operation not permitted (sysctl "
             "kernel.io_uring_disabled, or a seccomp filter); usable here: epoll, poll\n",
             path);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 1 || strstr(out, want) == NULL)
        fail_msg("status 0x%x, [%s]; expected 1 and \"%s\"", status, out, want);
}
#endif

#define TEST(f) cmocka_unit_test_teardown(f, teardown_all)

/* SIGPIPE ignored; the pattern the streams send. */
static int setup_group(void **state)
{
    (void)state;
    return setup_sigpipe_and_pattern((size_t)1 << 20, 20261204);
}

int main(void)
{
    /* POLLER_TEST=glob runs only the tests it matches. */
    test_filter_from_env("POLLER_TEST");
    /* The test chooses its backends; one from the environment would only
     * confuse the runs of "auto". */
    unsetenv("MIO_BACKEND");
    const struct CMUnitTest tests[] = {
        TEST(each_backend_serves),
        TEST(explicit_wins_over_environment),
        TEST(reload_keeps_the_poller),
        TEST(version_names_pollers),
        TEST(config_errors),
#ifdef __NR_io_uring_setup
        TEST(io_uring_refused_by_seccomp),
#endif
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_pattern);
}
