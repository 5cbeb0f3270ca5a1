/*
 * mio-echod's privilege drop, end to end on the real daemon.  Started as
 * root with user = "nobody", it binds first (a Unix socket in a directory
 * only root may write, a TCP port below 1024) and then becomes nobody:
 * real, effective, saved and filesystem uid and gid, no supplementary
 * group but nobody's own, no capability left, in every thread, as
 * /proc/PID/task/TID/status shows.  It still serves, writes its pid file
 * (after the drop: into a directory nobody may write) and removes it at
 * exit.  An unknown user is a configuration error (exit 1, at -t too); a
 * switch of users without root stops it with exit status 3 and a message
 * that says why; without root, the current user itself is accepted.  A
 * reload reads the file as the user: -t warns when that user cannot read
 * it (and says when it cannot tell, without root), and so does the daemon
 * once it has dropped privileges.  Messages name the file as given with
 * -c, a relative path too.
 *
 * The drop needs root: those tests are skipped otherwise (the ones
 * without root run in a child that first becomes nobody, or directly when
 * the test does not run as root).
 *
 * Built twice, like test-admission: for src/mio-echod and for its poll(2)
 * twin.  By hand, from the source directory with a build in build/:
 *
 *   gcc -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes \
 *       -Wmissing-prototypes -Wformat=2 -Werror -I lib -I tests/daemon \
 *       -DECHOD_PROGRAM='"src/mio-echod"' tests/daemon/test-privileges.c \
 *       tests/daemon/harness.c -lcmocka -lpthread -o /tmp/t-priv
 *   top_builddir=build top_srcdir=. /tmp/t-priv
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
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

#include "certs.h"
#include "harness.h"

/* Every daemon here logs to stderr, where the harness reads it, and gives
 * connections still open at SIGTERM little time. */
#define BASE "log = { target = \"stderr\"; };\nshutdown_timeout = 2.0;\n"

/* How long a test waits for something that should happen at once. */
#define WAIT_MS 5000

/* The user the daemon becomes. */
#define USER "nobody"

/* ---- state: a directory the user may write, a child run as the user ------ */

static char shared[PATH_MAX]; /* "" when there is none */
static pid_t child = -1;      /* a daemon started by run_as() */
static int child_out = -1;    /* its stdout and stderr */

/* Removes the shared directory with what is in it (one level), and kills
 * a child still running: after each test, and at exit. */
static void clean_up(void)
{
    if (child > 0) {
        kill(child, SIGKILL);
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
            continue;
        child = -1;
    }
    if (child_out >= 0) {
        close(child_out);
        child_out = -1;
    }
    if (shared[0] == '\0')
        return;
    DIR *d = opendir(shared);
    if (d != NULL) {
        struct dirent *de;
        char path[PATH_MAX + 256];
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", shared, de->d_name);
            (void)unlink(path);
        }
        closedir(d);
    }
    (void)rmdir(shared);
    shared[0] = '\0';
}

static int teardown(void **state)
{
    (void)state;
    clean_up();
    return 0;
}

/* ---- helpers -------------------------------------------------------------- */

/* Skips the test unless it runs as root. */
static void need_root(void)
{
    if (geteuid() != 0) {
        print_message("skipped: needs root (running as uid %u)\n", (unsigned)geteuid());
        skip();
    }
}

/* The uid and primary gid of USER; skips the test when there is none. */
static void user_ids(uid_t *uid, gid_t *gid)
{
    struct passwd *pw = getpwnam(USER);
    if (pw == NULL) {
        print_message("skipped: no user \"%s\" here\n", USER);
        skip();
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
}

/* Creates the shared directory under /tmp, owned by uid:gid, mode 0755:
 * the daemon writes its pid file there after the drop. */
static const char *make_shared_dir(uid_t uid, gid_t gid)
{
    snprintf(shared, sizeof(shared), "/tmp/mio-echod-priv.XXXXXX");
    if (mkdtemp(shared) == NULL) {
        shared[0] = '\0';
        fail_msg("mkdtemp: %s", strerror(errno));
    }
    if (chown(shared, uid, gid) != 0 || chmod(shared, 0755) != 0)
        fail_msg("chown/chmod %s: %s", shared, strerror(errno));
    return shared;
}

/* Writes text to dir/name, readable by everyone; returns a static path. */
static const char *write_file(const char *dir, const char *name, const char *text)
{
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fail_msg("cannot create %s: %s", path, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0 || chmod(path, 0644) != 0)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    return path;
}

/* For a test run as root only: skips it otherwise, or when there is no
 * USER; USER's ids into *uid and *gid, and the shared directory made for
 * them. */
static const char *nobodys_dir(uid_t *uid, gid_t *gid)
{
    need_root();
    user_ids(uid, gid);
    return make_shared_dir(*uid, *gid);
}

/* The configuration file for a daemon run_as() starts: as root, text in
 * USER's shared directory (*uid and *gid USER's ids); otherwise where
 * write_conf() puts it (the ids left as they are). */
static const char *conf_as_nobody(const char *text, uid_t *uid, gid_t *gid)
{
    if (geteuid() != 0)
        return write_conf(text);
    user_ids(uid, gid);
    return write_file(make_shared_dir(*uid, *gid), "mio-echod.conf", text);
}

/* Becomes uid:gid with no other group: for a forked child only. */
static int become(uid_t uid, gid_t gid)
{
    if (setgroups(1, &gid) != 0 || setresgid(gid, gid, gid) != 0 ||
        setresuid(uid, uid, uid) != 0)
        return -1;
    return 0;
}

/* Parses "Name:\tN N N N" into ids[0..3]; false when the line is another. */
static bool parse_ids(const char *line, const char *name, unsigned long ids[4])
{
    size_t n = strlen(name);
    if (strncmp(line, name, n) != 0)
        return false;
    if (sscanf(line + n, "%lu %lu %lu %lu", &ids[0], &ids[1], &ids[2], &ids[3]) != 4)
        fail_msg("cannot parse \"%s\"", line);
    return true;
}

/*
 * Checks one thread's credentials in /proc/PID/task/TID/status: every uid
 * and gid (real, effective, saved, filesystem) is uid/gid, the only group
 * is gid, and no capability is left (permitted, effective, ambient).
 */
static void check_status(const char *path, uid_t uid, gid_t gid)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot read %s: %s", path, strerror(errno));
    char line[4096];
    int seen = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long ids[4];
        if (parse_ids(line, "Uid:", ids) || parse_ids(line, "Gid:", ids)) {
            unsigned long want = line[0] == 'U' ? (unsigned long)uid : (unsigned long)gid;
            for (int i = 0; i < 4; i++)
                if (ids[i] != want)
                    fail_msg("%s: %.*s: field %d is %lu, expected %lu", path,
                             (int)strcspn(line, "\n"), line, i + 1, ids[i], want);
            seen++;
        } else if (strncmp(line, "Groups:", 7) == 0) {
            char *p = line + 7, *end;
            int groups = 0;
            for (;;) {
                unsigned long g = strtoul(p, &end, 10);
                if (end == p)
                    break;
                if (g != (unsigned long)gid)
                    fail_msg("%s: supplementary group %lu left: %s", path, g, line);
                groups++;
                p = end;
            }
            if (groups != 1)
                fail_msg("%s: %d supplementary groups, expected only %u: %s", path,
                         groups, (unsigned)gid, line);
            seen++;
        } else if (strncmp(line, "CapPrm:", 7) == 0 || strncmp(line, "CapEff:", 7) == 0 ||
                   strncmp(line, "CapAmb:", 7) == 0) {
            if (strtoull(line + 7, NULL, 16) != 0)
                fail_msg("%s: capabilities left: %s", path, line);
            seen++;
        }
    }
    fclose(f);
    if (seen != 6)
        fail_msg("%s: %d of the Uid/Gid/Groups/CapPrm/CapEff/CapAmb lines", path, seen);
}

/* Checks every thread of pid (main thread and workers); returns their count. */
static int check_dropped(pid_t pid, uid_t uid, gid_t gid)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (d == NULL)
        fail_msg("cannot list %s: %s", dir, strerror(errno));
    int threads = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[sizeof(dir) + sizeof(de->d_name) + 8];
        snprintf(path, sizeof(path), "%s/%s/status", dir, de->d_name);
        check_status(path, uid, gid);
        threads++;
    }
    closedir(d);
    return threads;
}

/* The path of listener `name`'s Unix socket, from its "listening on" line. */
static void unix_path(struct echod *e, const char *name, char *path, size_t len)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "listener %s: listening on unix:", name);
    const char *line = echod_wait_log(e, needle, WAIT_MS);
    if (line == NULL)
        fail_msg("no \"%s\" line in the log", needle);
    const char *p = strstr(line, needle) + strlen(needle);
    size_t n = strcspn(p, " ");
    assert_true(n < len);
    memcpy(path, p, n);
    path[n] = '\0';
}

/* The pid in the pid file at path, checked to belong to uid; -1 when the
 * file is missing. */
static long read_pidfile(const char *path, uid_t uid)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT)
            return -1;
        fail_msg("cannot read %s: %s", path, strerror(errno));
    }
    struct stat st;
    assert_int_equal(fstat(fileno(f), &st), 0);
    long pid = -1;
    char nl = 0;
    int n = fscanf(f, "%ld%c", &pid, &nl);
    fclose(f);
    if (n != 2 || nl != '\n')
        fail_msg("%s does not hold a pid and a newline", path);
    if (st.st_uid != uid)
        fail_msg("%s belongs to uid %u, expected %u (written after the drop)", path,
                 (unsigned)st.st_uid, (unsigned)uid);
    return pid;
}

/* A port below 1024 on 127.0.0.1 that nobody holds now: bound and let go
 * (a tiny race with other programs is accepted); -1 when 1000-1023 are
 * all taken.  The search starts at a place drawn from our pid, so that the
 * twin built for the poll(2) daemon, run at the same time by make -j,
 * seldom tries the same port first. */
static int free_low_port(void)
{
    int first = (int)(getpid() % 24);
    for (int i = 0; i < 24; i++) {
        int port = 1000 + (first + i) % 24;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int r = bind(fd, (struct sockaddr *)&a, sizeof(a));
        close(fd);
        if (r == 0)
            return port;
    }
    return -1;
}

/* Whether uid:gid is refused port (EACCES): tried in a forked child. */
static bool port_is_privileged(int port, uid_t uid, gid_t gid)
{
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        if (become(uid, gid) != 0)
            _exit(3);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (fd < 0)
            _exit(4);
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            _exit(1);
        _exit(errno == EACCES ? 0 : 2);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        continue;
    if (!WIFEXITED(status) || WEXITSTATUS(status) > 2)
        fail_msg("the child that tries port %d as uid %u failed (status 0x%x)", port,
                 (unsigned)uid, status);
    return WEXITSTATUS(status) == 0;
}

/*
 * Starts "mio-echod OPT -c conf" (OPT "-f" or "-t") as uid:gid (from root)
 * or as ourselves (uid == (uid_t)-1), its stdout and stderr into
 * child_out; the child dies with us.  Only async-signal-safe calls after
 * fork().
 */
static void run_program_as(const char *program, uid_t uid, gid_t gid, const char *opt,
                           const char *conf)
{
    char prog[PATH_MAX];
    snprintf(prog, sizeof(prog), "%s", program);
    char *argv[] = {prog, (char *)opt, (char *)"-c", (char *)conf, NULL};
    char **envp = echod_environment(NULL, 0);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        if (uid != (uid_t)-1 && become(uid, gid) != 0)
            _exit(126);
        /* After the switch: a change of credentials clears the
         * parent-death signal. */
        echod_child_setup(parent, p[1]);
        execve(prog, argv, envp);
        _exit(127);
    }
    free(envp);
    close(p[1]);
    child = pid;
    child_out = p[0];
}

/* run_program_as() of the built daemon. */
static void run_as(uid_t uid, gid_t gid, const char *opt, const char *conf)
{
    char prog[PATH_MAX];
    echod_program_path(prog, sizeof(prog));
    run_program_as(prog, uid, gid, opt, conf);
}

/* Reads the child's output into out (NUL-terminated) until it contains
 * needle (true; NULL: until it ends), or it ends or WAIT_MS pass. */
static bool read_child_until(char *out, size_t len, const char *needle)
{
    size_t used = strlen(out);
    int64_t until = ms_now() + WAIT_MS;
    while (needle == NULL || strstr(out, needle) == NULL) {
        int64_t left = until - ms_now();
        if (left <= 0)
            return false;
        struct pollfd pfd = {.fd = child_out, .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        if (used + 1 >= len)
            return false;
        ssize_t m = read(child_out, out + used, len - 1 - used);
        if (m < 0 && errno == EINTR)
            continue;
        if (m <= 0)
            return needle == NULL && m == 0;
        used += (size_t)m;
        out[used] = '\0';
    }
    return true;
}

/* Waits (WAIT_MS at most) for the child's exit; its status as echod_stop()
 * gives it, -1 when it had to be killed. */
static int wait_child(void)
{
    int status = 0;
    int64_t until = ms_now() + WAIT_MS;
    for (;;) {
        pid_t r = waitpid(child, &status, WNOHANG);
        if (r == child)
            break;
        if (r < 0 && errno != EINTR)
            fail_msg("waitpid: %s", strerror(errno));
        if (ms_now() >= until) {
            kill(child, SIGKILL);
            while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
                continue;
            child = -1;
            return -1;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    child = -1;
    return exit_code(status);
}

/* Waits for `want` in the child's output, read into out; fails the test
 * with what it said when it does not come. */
static void child_must_say(char *out, size_t len, const char *want)
{
    if (!read_child_until(out, len, want))
        fail_msg("expected \"%s\", got \"%s\"", want, out);
}

/* SIGTERM to the child, which must exit 0; its output is closed. */
static void child_stop_ok(void)
{
    assert_int_equal(kill(child, SIGTERM), 0);
    assert_int_equal(wait_child(), 0);
    close(child_out);
    child_out = -1;
}

/* Skips the test when the child could not run the program as the user (a
 * build tree the user may not enter): exit 127 with no output. */
static void skip_unless_ran(int rc, const char *out)
{
    if ((rc == 127 || rc == 126) && out[0] == '\0') {
        char prog[PATH_MAX];
        echod_program_path(prog, sizeof(prog));
        print_message("skipped: %s cannot run %s\n", USER, prog);
        skip();
    }
}

/* ---- tests ------------------------------------------------------------- */

/*
 * As root with user = "nobody": the daemon listens on TCP and on a Unix
 * socket in the harness's directory, which only root may write (so it was
 * bound before the drop), then every one of its threads is nobody through
 * and through, with no capability; it serves both addresses; the socket
 * file is nobody's; the pid file holds its pid, belongs to nobody, and is
 * gone after a clean exit, while the socket file, in root's directory,
 * stays with a warning.
 */
static void test_drops_to_user(void **state)
{
    (void)state;
    uid_t uid;
    gid_t gid;
    const char *dir = nobodys_dir(&uid, &gid);
    char conf[PATH_MAX + 1024], pidfile[PATH_MAX + 16];
    snprintf(pidfile, sizeof(pidfile), "%s/echod.pid", dir);
    snprintf(conf, sizeof(conf),
             BASE "workers = 2;\n"
                  "user = \"" USER "\";\n"
                  "pidfile = \"%s\";\n"
                  "listeners = ( { name = \"t\";\n"
                  "  listen = [ \"127.0.0.1:0\", \"unix:@DIR@/echo.sock\" ]; } );\n",
             pidfile);
    struct echod *e = echod_start(conf);
    pid_t pid = echod_pid(e);

    /* The socket's directory: root's alone. */
    char sock[PATH_MAX];
    unix_path(e, "t", sock, sizeof(sock));
    char sockdir[PATH_MAX];
    snprintf(sockdir, sizeof(sockdir), "%.*s", (int)(strrchr(sock, '/') - sock), sock);
    struct stat st;
    assert_int_equal(stat(sockdir, &st), 0);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* The socket file itself was given to the user before the switch. */
    assert_int_equal(stat(sock, &st), 0);
    assert_int_equal(st.st_uid, uid);
    assert_int_equal(st.st_gid, gid);

    int threads = check_dropped(pid, uid, gid);
    if (threads < 3)
        fail_msg("%d threads, expected the main thread and 2 workers", threads);

    int fd = client4(echod_port(e, "t", 0));
    expect_echo(fd, "served over TCP by " USER "\n");
    close(fd);
    fd = client_unix(sock);
    expect_echo(fd, "served over a Unix socket by " USER "\n");
    close(fd);

    assert_int_equal(read_pidfile(pidfile, uid), (long)pid);
    assert_int_equal(echod_stop(e, WAIT_MS), 0);
    assert_int_equal(read_pidfile(pidfile, uid), -1);
    /* Its directory is root's: the file stays, and the log says so. */
    assert_int_equal(echod_count_log(e, "cannot remove the socket file of unix:"), 1);
    assert_int_equal(access(sock, F_OK), 0);
}

/*
 * A port below 1024, which nobody may not bind (checked first: skipped
 * where unprivileged ports start lower, see ip_unprivileged_port_start):
 * the daemon binds it as root, then drops, and serves it.
 */
static void test_privileged_port_bound_before_drop(void **state)
{
    (void)state;
    need_root();
    uid_t uid;
    gid_t gid;
    user_ids(&uid, &gid);
    int port = free_low_port();
    if (port < 0) {
        print_message("skipped: ports 1000-1023 of 127.0.0.1 are all taken\n");
        skip();
    }
    if (!port_is_privileged(port, uid, gid)) {
        print_message("skipped: %s may bind port %d here\n", USER, port);
        skip();
    }
    char conf[512];
    snprintf(conf, sizeof(conf),
             BASE "workers = 1;\n"
                  "user = \"" USER "\";\n"
                  "listeners = ( { name = \"low\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             port);
    struct echod *e = echod_start(conf);
    assert_int_equal(echod_port(e, "low", 0), port);
    check_dropped(echod_pid(e), uid, gid);
    int fd = client4(port);
    expect_echo(fd, "a privileged port, served by " USER "\n");
    close(fd);
    assert_int_equal(echod_stop(e, WAIT_MS), 0);
}

/* user = "no-such-user-xyz": a configuration error (exit 1) naming the
 * line and the user, at start and with -t alike.  With or without root. */
static void test_unknown_user(void **state)
{
    (void)state;
    char out[4096], want[PATH_MAX + 128];
    const char *path = write_conf(
        BASE "workers = 1;\n"
             "user = \"no-such-user-xyz\";\n"
             "listeners = ( { name = \"t\"; listen = [ \"127.0.0.1:0\" ]; } );\n");
    snprintf(want, sizeof(want),
             "mio-echod: %s:4: user: no such user "
             "\"no-such-user-xyz\"\n",
             path);
    for (int i = 0; i < 2; i++) {
        int rc = echod_run(out, sizeof(out), i == 0 ? "-f" : "-t", "-c", path,
                           (char *)NULL);
        if (rc != 1)
            fail_msg("%s: exit %d, expected 1 (%s)", i == 0 ? "-f" : "-t", rc, out);
        if (strcmp(out, want) != 0)
            fail_msg("expected \"%s\", got \"%s\"", want, out);
    }
}

/*
 * Without root, a user other than the current one: exit 3, "switching
 * users needs root".  The daemon is asked to become root: as root it runs
 * in a child that first becomes nobody; otherwise it runs as we do.
 */
static void test_switch_without_root(void **state)
{
    (void)state;
    char out[8192] = "";
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    const char *conf_text = BASE
        "workers = 1;\n"
        "user = \"root\";\n"
        "listeners = ( { name = \"t\"; listen = [ \"127.0.0.1:0\" ]; } );\n";
    const char *conf = conf_as_nobody(conf_text, &uid, &gid);
    run_as(uid, gid, "-f", conf);
    (void)read_child_until(out, sizeof(out), NULL);
    int rc = wait_child();
    skip_unless_ran(rc, out);
    if (rc != 3)
        fail_msg("exit %d, expected 3 (%s)", rc, out);
    char want[128];
    snprintf(want, sizeof(want),
             "user \"root\": switching users needs root "
             "(running as uid %u)",
             (unsigned)(uid == (uid_t)-1 ? geteuid() : uid));
    if (strstr(out, want) == NULL)
        fail_msg("expected \"%s\", got \"%s\"", want, out);
}

/* Without root, user = the current user: nothing to switch; it starts,
 * serves and stops cleanly.  Run as nobody from root. */
static void test_same_user_without_root(void **state)
{
    (void)state;
    uid_t uid;
    gid_t gid;
    const char *dir = nobodys_dir(&uid, &gid);
    char conf_text[PATH_MAX + 1024], pidfile[PATH_MAX + 16];
    snprintf(pidfile, sizeof(pidfile), "%s/echod.pid", dir);
    snprintf(conf_text, sizeof(conf_text),
             BASE "workers = 1;\n"
                  "user = \"" USER "\";\n"
                  "pidfile = \"%s\";\n"
                  "listeners = ( { name = \"t\"; listen = [ \"127.0.0.1:0\" ]; } );\n",
             pidfile);
    char conf[PATH_MAX + 64];
    snprintf(conf, sizeof(conf), "%s", write_file(dir, "mio-echod.conf", conf_text));
    run_as(uid, gid, "-f", conf);
    pid_t pid = child;
    char out[8192] = "";
    if (!read_child_until(out, sizeof(out), " started: ")) {
        int rc = wait_child();
        skip_unless_ran(rc, out);
        fail_msg("did not start (exit %d): %s", rc, out);
    }
    check_dropped(pid, uid, gid);
    assert_int_equal(read_pidfile(pidfile, uid), (long)pid);
    /* "listener t: listening on 127.0.0.1:PORT (...)", before "started" */
    const char *at = strstr(out, "listener t: listening on 127.0.0.1:");
    assert_non_null(at);
    int port = atoi(at + strlen("listener t: listening on 127.0.0.1:"));
    int fd = client4(port);
    expect_echo(fd, "served by " USER ", who started it\n");
    close(fd);
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(wait_child(), 0);
    assert_int_equal(read_pidfile(pidfile, uid), -1);
}

/* Writes text to dir/name with `mode`, owned by root; a static path. */
static const char *write_file_mode(const char *dir, const char *name, const char *text,
                                   mode_t mode)
{
    const char *path = write_file(dir, name, text);
    if (chmod(path, mode) != 0)
        fail_msg("chmod %s: %s", path, strerror(errno));
    return path;
}

/*
 * -t as root with user = "nobody" and a file only root may read: a
 * warning that every reload will fail, on stderr, and exit 0 (the file is
 * valid); none once nobody may read it.  Checked by a child that becomes
 * nobody: the file's directory is nobody's, so only the file's mode says.
 */
static void test_check_warns_unreadable(void **state)
{
    (void)state;
    uid_t uid;
    gid_t gid;
    const char *dir = nobodys_dir(&uid, &gid);
    char conf[PATH_MAX + 64], out[4096], want[PATH_MAX + 256];
    snprintf(conf, sizeof(conf), "%s",
             write_file_mode(
                 dir, "root-only.conf",
                 BASE
                 "user = \"" USER "\";\n"
                 "listeners = ( { name = \"t\"; listen = [ \"127.0.0.1:0\" ]; } );\n",
                 0600));
    int rc = echod_run(out, sizeof(out), "-t", "-c", conf, (char *)NULL);
    if (rc != 0)
        fail_msg("exit %d, expected 0: %s", rc, out);
    snprintf(want, sizeof(want),
             "mio-echod: warning: reload will fail: %s is not "
             "readable by user \"" USER "\": Permission denied\n",
             conf);
    if (strstr(out, want) == NULL)
        fail_msg("expected \"%s\", got \"%s\"", want, out);
    snprintf(want, sizeof(want), "mio-echod: %s: configuration OK\n", conf);
    if (strstr(out, want) == NULL)
        fail_msg("expected \"%s\", got \"%s\"", want, out);

    assert_int_equal(chmod(conf, 0644), 0);
    rc = echod_run(out, sizeof(out), "-t", "-c", conf, (char *)NULL);
    if (rc != 0 || strcmp(out, want) != 0)
        fail_msg("exit %d, expected 0 and only \"%s\", got \"%s\"", rc, want, out);
}

/*
 * -t with user = "root" by someone else than root: it cannot check that
 * root may read the file, and says so (exit 0).  Run as nobody from root;
 * as ourselves otherwise.
 */
static void test_check_cannot_check_without_root(void **state)
{
    (void)state;
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    const char *conf_text = BASE
        "user = \"root\";\n"
        "listeners = ( { name = \"t\"; listen = [ \"127.0.0.1:0\" ]; } );\n";
    const char *conf = conf_as_nobody(conf_text, &uid, &gid);
    char out[8192] = "", want[PATH_MAX + 256];
    run_as(uid, gid, "-t", conf);
    (void)read_child_until(out, sizeof(out), NULL);
    int rc = wait_child();
    skip_unless_ran(rc, out);
    if (rc != 0)
        fail_msg("exit %d, expected 0 (%s)", rc, out);
    snprintf(want, sizeof(want),
             "mio-echod: warning: cannot check that user "
             "\"root\" may read %s (that needs root); a reload reads it as that "
             "user\n",
             conf);
    if (strstr(out, want) == NULL || strstr(out, "configuration OK") == NULL)
        fail_msg("expected \"%s\" and OK, got \"%s\"", want, out);
}

/*
 * Started as root with user = "nobody": once it is nobody, the daemon
 * tries the file, and warns that every reload will fail when nobody may
 * not read it, which a SIGHUP then shows; with a file nobody may read,
 * no warning, and the reload works.
 */
static void test_daemon_warns_unreadable(void **state)
{
    (void)state;
    uid_t uid;
    gid_t gid;
    const char *dir = nobodys_dir(&uid, &gid);
    for (int readable = 0; readable < 2; readable++) {
        char conf[PATH_MAX + 64];
        snprintf(conf, sizeof(conf), "%s",
                 write_file_mode(
                     dir, "mio-echod.conf",
                     BASE
                     "workers = 1;\n"
                     "user = \"" USER "\";\n"
                     "listeners = ( { name = \"t\"; listen = [ \"127.0.0.1:0\" ]; } );\n",
                     readable ? 0644 : 0600));
        run_as((uid_t)-1, (gid_t)-1, "-f", conf);
        char out[16384] = "";
        if (!read_child_until(out, sizeof(out), " started: "))
            fail_msg("did not start (exit %d): %s", wait_child(), out);
        char want[PATH_MAX + 256];
        snprintf(want, sizeof(want),
                 "warning: reload will fail: %s is not readable "
                 "by user \"" USER "\": Permission denied\n",
                 conf);
        if ((strstr(out, want) != NULL) == (readable != 0))
            fail_msg("%s: expected %s\"%s\", got \"%s\"",
                     readable ? "readable" : "root only", readable ? "no " : "", want,
                     out);
        assert_int_equal(kill(child, SIGHUP), 0);
        snprintf(want, sizeof(want),
                 readable ? "notice: reloaded %s: 1 listener"
                          : "reload failed: %s: cannot read: Permission denied",
                 conf);
        child_must_say(out, sizeof(out), want);
        child_stop_ok();
    }
}

#ifdef HAVE_TLS
/*
 * A TLS key only root may read, with user = "nobody": the daemon starts
 * (it reads keys before it drops privileges) and warns that a reload will
 * fail, -t warns the same, and SIGHUP fails naming the key and the user,
 * keeping the running configuration; once nobody may read the key, the
 * reload goes through.
 */
static void test_tls_key_root_only(void **state)
{
    (void)state;
    uid_t uid;
    gid_t gid;
    const char *dir = nobodys_dir(&uid, &gid);
    const struct certs *cs = certs_get();
    if (cs == NULL) {
        print_message("skipped: %s\n", certs_unavailable());
        skip();
    }
    char cert[PATH_MAX], key[PATH_MAX];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    copy_file(cs->server.cert, cert);
    copy_file(cs->server.key, key);
    assert_int_equal(chmod(cert, 0644), 0);
    assert_int_equal(chmod(key, 0600), 0); /* root's, as copied */
    char text[3 * PATH_MAX];
    snprintf(text, sizeof(text),
             BASE "workers = 1;\n"
                  "user = \"" USER "\";\n"
                  "listeners = ( { name = \"t\"; listen = [ \"127.0.0.1:0\" ];\n"
                  "  tls = { certificate = \"%s\"; key = \"%s\"; }; } );\n",
             cert, key);
    const char *conf = write_file_mode(dir, "mio-echod.conf", text, 0644);
    char out[16384] = "", want[PATH_MAX + 256];
    run_as((uid_t)-1, (gid_t)-1, "-t", conf);
    (void)read_child_until(out, sizeof(out), NULL);
    assert_int_equal(wait_child(), 0);
    snprintf(want, sizeof(want),
             "warning: reload will fail: %s is not readable by user \"" USER
             "\": Permission denied",
             key);
    if (strstr(out, want) == NULL)
        fail_msg("-t: expected \"%s\", got \"%s\"", want, out);
    close(child_out);
    child_out = -1;

    out[0] = '\0';
    run_as((uid_t)-1, (gid_t)-1, "-f", conf);
    if (!read_child_until(out, sizeof(out), " started: "))
        fail_msg("did not start (exit %d): %s", wait_child(), out);
    if (strstr(out, want) == NULL)
        fail_msg("start: expected \"%s\", got \"%s\"", want, out);
    assert_int_equal(kill(child, SIGHUP), 0);
    snprintf(want, sizeof(want),
             ": listeners.t.tls.key: cannot read %s as user " USER
             " (uid %u): Permission denied; still running the previous configuration",
             key, (unsigned)uid);
    child_must_say(out, sizeof(out), want);
    snprintf(want, sizeof(want), "error: reload failed: %s:", conf);
    assert_non_null(strstr(out, want));
    assert_int_equal(chown(key, uid, gid), 0);
    assert_int_equal(kill(child, SIGHUP), 0);
    snprintf(want, sizeof(want), "notice: reloaded %s: 1 listener", conf);
    child_must_say(out, sizeof(out), want);
    child_stop_ok();
}
#endif

/*
 * Messages name the file as given with -c, here a relative path: -t,
 * a configuration error, and a reload of a daemon in the foreground.
 * (The daemon reads it by its absolute path all the same.)
 */
static void test_file_named_as_given(void **state)
{
    (void)state;
    char cwd[PATH_MAX], rel[2 * PATH_MAX], out[8192] = "", want[2 * PATH_MAX + 64];
    const char *conf = write_conf(
        BASE "workers = 1;\n"
             "listeners = ( { name = \"t\"; listen = [ \"127.0.0.1:0\" ]; } );\n");
    /* From here to / and down to conf. */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    rel[0] = '\0';
    for (const char *p = cwd; *p != '\0'; p++)
        if (*p == '/' && p[1] != '\0')
            strcat(rel, "../");
    strcat(rel, conf + 1);
    int rc = echod_run(out, sizeof(out), "-t", "-c", rel, (char *)NULL);
    snprintf(want, sizeof(want), "mio-echod: %s: configuration OK\n", rel);
    if (rc != 0 || strcmp(out, want) != 0)
        fail_msg("exit %d, expected 0 and \"%s\", got \"%s\"", rc, want, out);

    run_as((uid_t)-1, (gid_t)-1, "-f", rel);
    out[0] = '\0';
    if (!read_child_until(out, sizeof(out), " started: "))
        fail_msg("did not start (exit %d): %s", wait_child(), out);
    assert_int_equal(kill(child, SIGHUP), 0);
    snprintf(want, sizeof(want), "notice: reloaded %s: 1 listener", rel);
    child_must_say(out, sizeof(out), want);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs(BASE "workers = 1;\nlisteners = ( );\n", f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(kill(child, SIGHUP), 0);
    snprintf(want, sizeof(want), "reload failed: %s:4: listeners: no listeners", rel);
    child_must_say(out, sizeof(out), want);
    assert_int_equal(kill(child, SIGTERM), 0);
    assert_int_equal(wait_child(), 0);

    rc = echod_run(out, sizeof(out), "-t", "-c", rel, (char *)NULL);
    snprintf(want, sizeof(want),
             "mio-echod: %s:4: listeners: no listeners: "
             "nothing to serve\n",
             rel);
    if (rc != 1 || strcmp(out, want) != 0)
        fail_msg("exit %d, expected 1 and \"%s\", got \"%s\"", rc, want, out);
}

/*
 * SIGUSR2 as root with user = "nobody": the new process is started as
 * nobody (the old one is nobody by then) from a binary nobody may run, reads the file
 * nobody may read, takes the socket it was handed, replaces the pid file in nobody's
 * directory, and serves as nobody through and through; the old one hands
 * over and exits 0, and the new one's exit removes the pid file.
 */
static void test_upgrade_as_user(void **state)
{
    (void)state;
    uid_t uid;
    gid_t gid;
    const char *dir = nobodys_dir(&uid, &gid);
    assert_int_equal(echod_adopt_successors(), 0);
    int port = reserve_port();
    char pidfile[PATH_MAX + 16], text[2 * PATH_MAX];
    snprintf(pidfile, sizeof(pidfile), "%s/echod.pid", dir);
    snprintf(text, sizeof(text),
             BASE "workers = 1;\n"
                  "user = \"" USER "\";\n"
                  "pidfile = \"%s\";\n"
                  "listeners = ( { name = \"t\"; listen = [ \"127.0.0.1:%d\" ]; } );\n",
             pidfile, port);
    const char *conf = write_file_mode(dir, "mio-echod.conf", text, 0644);
    /* A copy nobody may run: the build tree may be in a directory of
     * root's alone (a clone in mktemp's 0700 one). */
    char built[PATH_MAX], prog[PATH_MAX + 16];
    echod_program_path(built, sizeof(built));
    snprintf(prog, sizeof(prog), "%s/mio-echod", dir);
    copy_file(built, prog);
    assert_int_equal(chmod(prog, 0755), 0);
    run_program_as(prog, (uid_t)-1, (gid_t)-1, "-f", conf);
    char out[32768] = "";
    if (!read_child_until(out, sizeof(out), " started: "))
        fail_msg("did not start (exit %d): %s", wait_child(), out);
    pid_t old = child;
    assert_int_equal(kill(old, SIGUSR2), 0);
    child_must_say(out, sizeof(out), "is ready; handing the sockets over");
    pid_t fresh = echod_successor(old, pidfile, WAIT_MS);
    assert_true(fresh > 0);
    int threads = check_dropped(fresh, uid, gid);
    if (threads < 2)
        fail_msg("%d threads in the new process, expected the main thread and a worker",
                 threads);
    int fd = client4(port);
    expect_echo(fd, "served by the new process, as " USER "\n");
    close(fd);
    assert_int_equal(wait_child(), 0); /* the old one, drained */
    assert_int_equal(read_pidfile(pidfile, uid), (long)fresh);
    assert_int_equal(echod_stop_successor(fresh, WAIT_MS), 0);
    assert_int_equal(read_pidfile(pidfile, uid), -1);
}

int main(void)
{
    atexit(clean_up);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_drops_to_user, teardown),
        cmocka_unit_test_teardown(test_privileged_port_bound_before_drop, teardown),
        cmocka_unit_test_teardown(test_unknown_user, teardown),
        cmocka_unit_test_teardown(test_switch_without_root, teardown),
        cmocka_unit_test_teardown(test_same_user_without_root, teardown),
        cmocka_unit_test_teardown(test_check_warns_unreadable, teardown),
        cmocka_unit_test_teardown(test_check_cannot_check_without_root, teardown),
        cmocka_unit_test_teardown(test_daemon_warns_unreadable, teardown),
#ifdef HAVE_TLS
        cmocka_unit_test_teardown(test_tls_key_root_only, teardown),
#endif
        cmocka_unit_test_teardown(test_file_named_as_given, teardown),
        cmocka_unit_test_teardown(test_upgrade_as_user, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
