/*
 * Restarting without systemd: SIGUSR2 starts the daemon's binary again with
 * the listening sockets (and the stats and control sockets) inherited; the
 * old process hands over once the new one says it is ready, then drains.
 * Under a steady load of new connections and with long streams open, no
 * client is refused or reset and no byte is lost; the new process holds
 * nothing of the old one's but the sockets it was given.  A new process
 * that cannot start leaves the old one serving, and the old one says why.
 *
 * The test makes itself a subreaper: the new process, orphaned when the
 * old one exits, becomes its child, to be waited for
 * (echod_adopt_successors()).
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
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

#include "certs.h"
#include "harness.h"

#define BASE \
    "log = { target = \"stderr\"; level = \"debug\"; };\nshutdown_timeout = 8.0;\n"

/* The configuration's directory (for @DIR@ paths). */
static void conf_dir(struct echod *e, char *dir, size_t len)
{
    const char *c = echod_conf_path(e);
    snprintf(dir, len, "%.*s", (int)(strrchr(c, '/') - c), c);
}

/* The inodes of the sockets process pid holds (at most max). */
static size_t socket_inodes(pid_t pid, unsigned long *ino, size_t max)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
    DIR *dir = opendir(path);
    size_t n = 0;
    if (dir == NULL)
        return 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL && n < max) {
        char link[PATH_MAX + 64], target[128];
        snprintf(link, sizeof(link), "%s/%s", path, de->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (sscanf(target, "socket:[%lu]", &ino[n]) == 1)
            n++;
    }
    closedir(dir);
    return n;
}

/* How many of a's n inodes are in b's m. */
static size_t shared(const unsigned long *a, size_t n, const unsigned long *b, size_t m)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < m; k++)
            if (a[i] == b[k]) {
                count++;
                break;
            }
    return count;
}

/* Copies the built daemon to a fresh directory (into dir and prog), to
 * be removed from under the running daemon. */
static void program_copy(char *dir, size_t dlen, char *prog, size_t plen)
{
    assert_true(dlen >= 32 && plen > dlen + 16);
    char built[PATH_MAX];
    echod_program_path(built, sizeof(built));
    snprintf(dir, dlen, "/tmp/mio-upgrade.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(prog, plen, "%.*s/mio-echod", (int)(dlen - 1), dir);
    copy_file(built, prog);
    assert_int_equal(chmod(prog, 0755), 0);
}

/* GET /health on 127.0.0.1:port: the status line's code, or -1. */
static int health_code(int port)
{
    int fd = connect_to(port);
    if (fd < 0)
        return -1;
    const char *req = "GET /health HTTP/1.0\r\n\r\n";
    ssize_t w = write(fd, req, strlen(req));
    char buf[256] = "";
    size_t got = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (int i = 0; w > 0 && i < 50 && got < sizeof(buf) - 1 && poll(&p, 1, 3000) > 0;
         i++) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    int code = -1;
    return sscanf(buf, "HTTP/1.%*d %d", &code) == 1 ? code : -1;
}

/* The control socket answers "show listeners" with listener `name`. */
static void expect_control(const char *path, const char *name)
{
    static struct ctl_run r;
    char sock[PATH_MAX];
    snprintf(sock, sizeof(sock), "%s", path);
    char *args[] = {"-S", sock, "show", "listeners", NULL};
    ctl_run_argv(&r, NULL, (uid_t)-1, (gid_t)-1, args);
    if (r.status != 0 || strstr(r.out, name) == NULL)
        fail_msg("show listeners through %s: status %d, \"%s\" \"%s\"", path, r.status,
                 r.out, r.err);
}

/* ---- tests ---------------------------------------------------------------- */

/*
 * Two listeners (one with a TCP port and a Unix socket), the stats
 * listener and the control socket; churn on both TCP ports and four
 * streams.  SIGUSR2: the new process starts with every socket, says it is
 * ready, the old one hands over and drains its streams to the last byte.
 * Zero errors; the new process serves every socket (the Unix socket and
 * control files stay), holds no socket of the old one but those five, and
 * is in the pid file.
 */
static void test_upgrade_under_load(void **state)
{
    (void)state;
    int p1 = reserve_port(), p2 = reserve_port(), pm = reserve_port();
    char conf[1024];
    snprintf(conf, sizeof(conf),
             BASE "workers = 2;\npidfile = \"@DIR@/pid\";\n"
                  "stats = { listen = \"127.0.0.1:%d\"; };\n"
                  "control = { path = \"@DIR@/control.sock\"; };\n"
                  "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\", "
                  "\"unix:@DIR@/echo.sock\" ]; },\n"
                  "  { name = \"other\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             pm, p1, p2);
    struct echod *old = echod_start(conf);
    char dir[PATH_MAX], sock_path[PATH_MAX + 16], ctl_path[PATH_MAX + 16],
        pid_path[PATH_MAX + 16];
    conf_dir(old, dir, sizeof(dir));
    snprintf(sock_path, sizeof(sock_path), "%s/echo.sock", dir);
    snprintf(ctl_path, sizeof(ctl_path), "%s/control.sock", dir);
    snprintf(pid_path, sizeof(pid_path), "%s/pid", dir);
    assert_int_equal(echod_pidfile_pid(pid_path), echod_pid(old));
    expect_unix_echo(sock_path, "before the upgrade\n");
    assert_int_equal(health_code(pm), 200);

    struct load load;
    load_start(&load, p1, p2, 4321u);
    unsigned long old_ino[4096];
    size_t nold = socket_inodes(echod_pid(old), old_ino, 4096);
    load_mark(&load);

    int64_t t0 = ms_now();
    echod_signal(old, SIGUSR2);
    echod_must_log(old, "SIGUSR2: started a new process");
    if (echod_wait_log(old, "is ready; handing the sockets over", 10000) == NULL)
        fail_msg("the new process did not become ready within 10 s");
    print_message("the new process was ready %lld ms after SIGUSR2\n",
                  (long long)(ms_now() - t0));
    pid_t fresh = echod_successor(echod_pid(old), pid_path, 3000);
    assert_true(fresh > 0);
    echod_must_log(old, "upgrade: no longer accepting");

    /* The new process took every socket, and no other of the old one's:
     * no client connection leaked into it. */
    unsigned long new_ino[4096];
    size_t nnew = socket_inodes(fresh, new_ino, 4096);
    size_t common = shared(new_ino, nnew, old_ino, nold);
    print_message("the old process held %zu sockets, the new one %zu; %zu shared\n", nold,
                  nnew, common);
    assert_int_equal(common, 5); /* 3 listening, stats, control */

    load_streams_advance(&load);
    load_finish(&load, "SIGUSR2");
    echod_expect_exit_ok(old, 10000);

    /* Everything is the new process's now, the files included. */
    assert_int_equal(echod_pidfile_pid(pid_path), fresh);
    expect_unix_echo(sock_path, "after the upgrade\n");
    expect_control(ctl_path, "other");
    assert_int_equal(health_code(pm), 200);
    int fd = client4(p2);
    expect_echo(fd, "still here\n");
    close(fd);
    assert_int_equal(echod_stop_successor(fresh, 10000), 0);
    /* Its files go with it. */
    struct stat st;
    assert_true(lstat(sock_path, &st) < 0 && errno == ENOENT);
    assert_true(lstat(ctl_path, &st) < 0 && errno == ENOENT);
    assert_true(lstat(pid_path, &st) < 0 && errno == ENOENT);
}

/*
 * A configuration broken before SIGUSR2: the new process refuses it; the
 * old one says so, with the file and line, and goes on serving with its
 * pid file, control socket and Unix socket.  Fixed, a second SIGUSR2 goes
 * through.
 */
static void test_upgrade_fails_keeps_serving(void **state)
{
    (void)state;
    int p1 = reserve_port();
    char conf[1024];
    snprintf(conf, sizeof(conf),
             BASE "pidfile = \"@DIR@/pid\";\n"
                  "control = { path = \"@DIR@/control.sock\"; };\n"
                  "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\", "
                  "\"unix:@DIR@/echo.sock\" ]; } );\n",
             p1);
    struct echod *old = echod_start(conf);
    char dir[PATH_MAX], sock_path[PATH_MAX + 16], ctl_path[PATH_MAX + 16],
        pid_path[PATH_MAX + 16];
    conf_dir(old, dir, sizeof(dir));
    snprintf(sock_path, sizeof(sock_path), "%s/echo.sock", dir);
    snprintf(ctl_path, sizeof(ctl_path), "%s/control.sock", dir);
    snprintf(pid_path, sizeof(pid_path), "%s/pid", dir);
    int open_fd = client4(p1);
    expect_echo(open_fd, "open across\n");

    echod_rewrite_conf(old, BASE "listeners = ( { name = \"echo\"; listen = 7; } );\n");
    echod_signal(old, SIGUSR2);
    const char *line = echod_wait_log(old, "SIGUSR2: the new process", 10000);
    if (line == NULL)
        fail_msg("no word of the new process within 10 s");
    print_message("%s\n", line);
    assert_non_null(strstr(line, "failed: "));
    assert_non_null(strstr(line, "listeners.echo.listen"));
    assert_non_null(strstr(line, "exit status 1"));
    assert_non_null(strstr(line, "still serving"));
    assert_int_equal(echod_pidfile_pid(pid_path), echod_pid(old));
    expect_echo(open_fd, "still open\n");
    expect_unix_echo(sock_path, "still served\n");
    expect_control(ctl_path, "echo");
    int fd = client4(p1);
    expect_echo(fd, "new client\n");
    close(fd);

    /* Fixed: the next one goes through, the open connection finishing on
     * the old process. */
    char fixed[1024];
    snprintf(fixed, sizeof(fixed), "%s", conf);
    char *at;
    while ((at = strstr(fixed, "@DIR@")) != NULL) {
        char rest[1024];
        snprintf(rest, sizeof(rest), "%s", at + 5);
        snprintf(at, sizeof(fixed) - (size_t)(at - fixed), "%s%s", dir, rest);
    }
    echod_rewrite_conf(old, "%s", fixed);
    echod_signal(old, SIGUSR2);
    if (echod_wait_log(old, "is ready; handing the sockets over", 10000) == NULL)
        fail_msg("the fixed configuration's process did not become ready within 10 s");
    pid_t fresh = echod_successor(echod_pid(old), pid_path, 3000);
    assert_true(fresh > 0);
    expect_echo(open_fd, "last words\n");
    close(open_fd);
    echod_expect_exit_ok(old, 10000);
    expect_unix_echo(sock_path, "on the new one\n");
    assert_int_equal(echod_stop_successor(fresh, 10000), 0);
}

/* A binary that is gone: the old process says it cannot execute it and
 * goes on serving. */
static void test_upgrade_binary_gone(void **state)
{
    (void)state;
    char copy[64], prog[128];
    program_copy(copy, sizeof(copy), prog, sizeof(prog));
    int p1 = reserve_port();
    struct echod_opts o = {.program = prog};
    char conf[512];
    snprintf(conf, sizeof(conf),
             BASE
             "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             p1);
    struct echod *old = echod_start_opts(conf, &o);
    assert_int_equal(unlink(prog), 0);
    echod_signal(old, SIGUSR2);
    const char *line = echod_wait_log(old, "SIGUSR2: the new process", 10000);
    if (line == NULL)
        fail_msg("no word of the new process within 10 s");
    print_message("%s\n", line);
    assert_non_null(strstr(line, "cannot execute"));
    assert_non_null(strstr(line, "still serving"));
    int fd = client4(p1);
    expect_echo(fd, "still here\n");
    close(fd);
    echod_stop_ok(old);
    rmdir(copy);
}

/*
 * UDP: the old process stops reading the shared socket as it hands over,
 * while its flows live on.  Datagrams from new sources (a fresh socket
 * each) sent all along the upgrade are every one answered.  With the new
 * process stopped (SIGSTOP) after the handover, datagrams from new sources
 * wait in the socket for it rather than being read by the old process and
 * dropped as new sources of a draining daemon.  The flow open before the
 * upgrade goes on being answered.
 */
static void test_upgrade_udp(void **state)
{
    (void)state;
    int pu = reserve_port();
    char conf[512];
    snprintf(conf, sizeof(conf),
             /* shutdown_timeout 1 s: the new process's flow, idle for 60 s,
              * is closed soon after its SIGTERM at the end. */
             "log = { target = \"stderr\"; level = \"debug\"; };\n"
             "shutdown_timeout = 1.0;\npidfile = \"@DIR@/pid\";\n"
             "listeners = ( { name = \"udp\"; protocol = \"udp\"; "
             "listen = [ \"127.0.0.1:%d\" ]; idle_timeout = 60.0; } );\n",
             pu);
    struct echod *old = echod_start(conf);
    char dir[PATH_MAX], pid_path[PATH_MAX + 16];
    conf_dir(old, dir, sizeof(dir));
    snprintf(pid_path, sizeof(pid_path), "%s/pid", dir);
    int keep = udp_client4();
    udp_expect_echo(keep, "127.0.0.1", pu, "the old flow", 12, 3000);

    echod_signal(old, SIGUSR2);
    int asked = 0, answered = 0;
    int64_t ready_at = 0, t0 = ms_now();
    /* Until 1 s after the handover (10 s at most). */
    while (ms_now() - t0 < 10000 && (ready_at == 0 || ms_now() - ready_at < 1000)) {
        if (ready_at == 0 &&
            echod_log_line(old, "is ready; handing the sockets over", 0) != NULL)
            ready_at = ms_now();
        int fd = udp_client4();
        char msg[32], back[64];
        int len = snprintf(msg, sizeof(msg), "new source %d", asked);
        ssize_t n = udp_ask(fd, "127.0.0.1", pu, msg, (size_t)len, back, sizeof(back), 1,
                            1000);
        asked++;
        if (n == len && memcmp(back, msg, (size_t)len) == 0)
            answered++;
        close(fd);
        sleep_ms(5);
    }
    print_message("%d of %d new sources answered across the upgrade\n", answered, asked);
    assert_true(ready_at != 0);
    assert_int_equal(answered, asked);

    pid_t fresh = echod_successor(echod_pid(old), pid_path, 3000);
    assert_true(fresh > 0);
    assert_int_equal(kill(fresh, SIGSTOP), 0);
    enum { LATE = 20 };
    int late[LATE];
    for (int i = 0; i < LATE; i++) {
        late[i] = udp_client4();
        udp_send(late[i], "127.0.0.1", pu, "late", 4);
    }
    sleep_ms(300); /* the old process would have read them by now */
    assert_int_equal(kill(fresh, SIGCONT), 0);
    int got = 0;
    for (int i = 0; i < LATE; i++) {
        char back[16];
        if (udp_recv(late[i], back, sizeof(back), 3000, NULL) == 4)
            got++;
        close(late[i]);
    }
    print_message("%d of %d datagrams sent while the new process was stopped answered "
                  "once it went on\n",
                  got, LATE);
    assert_int_equal(got, LATE);
    udp_expect_echo(keep, "127.0.0.1", pu, "the old flow again", 18, 3000);
    close(keep);
    echod_signal(old, SIGTERM); /* its flow would idle for 60 s */
    echod_expect_exit_ok(old, 10000);
    assert_int_equal(echod_stop_successor(fresh, 10000), 0);
}

/* Under systemd (NOTIFY_SOCKET set), SIGUSR2 says to use systemctl
 * restart and changes nothing. */
static void test_upgrade_refused_under_systemd(void **state)
{
    (void)state;
    int p1 = reserve_port();
    assert_int_equal(setenv("NOTIFY_SOCKET", "/nonexistent/notify", 1), 0);
    struct echod *old = echod_startf(
        BASE "listeners = ( { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
        p1);
    unsetenv("NOTIFY_SOCKET");
    echod_signal(old, SIGUSR2);
    echod_must_log(old, "SIGUSR2: under systemd, \"systemctl restart\"");
    int fd = client4(p1);
    expect_echo(fd, "still here\n");
    close(fd);
    assert_int_equal(echod_count_log(old, "started a new process"), 0);
    echod_stop_ok(old);
}

static int setup_group(void **state)
{
    (void)state;
    if (echod_adopt_successors() < 0)
        return -1;
    return setup_sigpipe_and_pattern((size_t)4 << 20, 20261204);
}

int main(void)
{
    test_filter_from_env("UPGRADE_TEST");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_upgrade_under_load, teardown_all),
        cmocka_unit_test_teardown(test_upgrade_fails_keeps_serving, teardown_all),
        cmocka_unit_test_teardown(test_upgrade_binary_gone, teardown_all),
        cmocka_unit_test_teardown(test_upgrade_udp, teardown_all),
        cmocka_unit_test_teardown(test_upgrade_refused_under_systemd, teardown_all),
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_pattern);
}
