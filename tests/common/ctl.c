/*
 * The daemon's control side as a test meets it (see ctl.h): runs of
 * mio-echodctl, and a plain client of the control socket.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* pipe2, close_range, setresuid */
#endif

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
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
#include <unistd.h>

#include "base.h"
#include "ctl.h"
#include "net.h"
#include "run.h"

/* The text of errno value err, for the main thread's messages. */
static const char *errtext(int err)
{
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): only the main thread calls it. */
    return strerror(err);
}

void ctl_program_path(char *buf, size_t len)
{
    const char *top = getenv("top_builddir");
    if (top != NULL && top[0] != '\0')
        snprintf(buf, len, "%s/src/mio-echodctl", top);
    else
        snprintf(buf, len, "src/mio-echodctl");
}

void ctl_program_copy(const char *dir, char *copy, size_t len)
{
    char prog[PATH_MAX];
    ctl_program_path(prog, sizeof(prog));
    snprintf(copy, len, "%s/mio-echodctl", dir);
    int in = open(prog, O_RDONLY | O_CLOEXEC);
    int out = open(copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (in < 0 || out < 0)
        test_fail("cannot copy %s to %s: %s", prog, copy, errtext(errno));
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        CHECK(write(out, buf, (size_t)n) == n);
    CHECK(n == 0);
    close(in);
    CHECK(close(out) == 0 && chmod(copy, 0755) == 0);
}

int ctl_become(uid_t uid, gid_t gid)
{
    if (setgroups(1, &gid) != 0 || setresgid(gid, gid, gid) != 0 ||
        setresuid(uid, uid, uid) != 0)
        return -1;
    return 0;
}

bool ctl_user_ids(const char *name, uid_t *uid, gid_t *gid)
{
    struct passwd pwbuf, *pw = NULL;
    char strings[4096];
    if (getpwnam_r(name, &pwbuf, strings, sizeof(strings), &pw) != 0 || pw == NULL)
        return false;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return true;
}

/* Appends what fd has to buf (of size cap, NUL-terminated); false at EOF. */
static bool drain_into(int fd, char *buf, size_t cap, size_t *used)
{
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof(tmp));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0)
        return false;
    size_t take = (size_t)n;
    if (take > cap - 1 - *used)
        take = cap - 1 - *used;
    memcpy(buf + *used, tmp, take);
    *used += take;
    buf[*used] = '\0';
    return true;
}

void ctl_run_argv(struct ctl_run *r, const char *program, uid_t as_uid, gid_t as_gid,
                  char *const args[])
{
    char prog[PATH_MAX];
    if (program != NULL)
        snprintf(prog, sizeof(prog), "%s", program);
    else
        ctl_program_path(prog, sizeof(prog));
    char *argv[32];
    int argc = 0;
    argv[argc++] = prog;
    for (int i = 0; args[i] != NULL && argc < 31; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;

    int out[2], err[2];
    CHECK(pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0);
    char **envp = echod_environment(NULL, 0);
    pid_t parent = getpid();
    int64_t t0 = ms_now();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
            _exit(126);
        if (as_uid != (uid_t)-1 && ctl_become(as_uid, as_gid) != 0)
            _exit(125);
        signal(SIGPIPE, SIG_DFL);
        if (close_range(3, ~0U, 0) < 0)
            _exit(126);
        execve(argv[0], argv, envp);
        _exit(127);
    }
    free(envp);
    close(out[1]);
    close(err[1]);
    size_t nout = 0, nerr = 0;
    r->out[0] = r->err[0] = '\0';
    bool out_open = true, err_open = true;
    int64_t until = t0 + CTL_RUN_MS;
    while ((out_open || err_open) && ms_now() < until) {
        struct pollfd pfd[2] = {{.fd = out_open ? out[0] : -1, .events = POLLIN},
                                {.fd = err_open ? err[0] : -1, .events = POLLIN}};
        int left = (int)(until - ms_now());
        if (poll(pfd, 2, left > 0 ? left : 0) <= 0)
            continue;
        if (out_open && pfd[0].revents != 0)
            out_open = drain_into(out[0], r->out, sizeof(r->out), &nout);
        if (err_open && pfd[1].revents != 0)
            err_open = drain_into(err[0], r->err, sizeof(r->err), &nerr);
    }
    close(out[0]);
    close(err[0]);
    int status = 0;
    pid_t got = 0;
    while (ms_now() < until + 1000 && (got = waitpid(pid, &status, WNOHANG)) == 0)
        sleep_ms(5);
    if (got != pid) {
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            continue;
        r->status = -1;
    } else {
        r->status = exit_code(status);
    }
    r->ms = ms_now() - t0;
}

void ctl_run(struct ctl_run *r, const char *arg, ...)
{
    char *args[32];
    int n = 0;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a != NULL && n < 31; a = va_arg(ap, const char *))
        args[n++] = (char *)a;
    va_end(ap);
    args[n] = NULL;
    ctl_run_argv(r, NULL, (uid_t)-1, (gid_t)-1, args);
}

void ctl_expect(const struct ctl_run *r, int status, const char *out, const char *err)
{
    if (r->status != status || (out != NULL && strcmp(r->out, out) != 0) ||
        (err != NULL && strcmp(r->err, err) != 0))
        test_fail("mio-echodctl: exit %d (expected %d)\nstdout: [%s]\n(expected [%s])\n"
                  "stderr: [%s]\n(expected [%s])",
                  r->status, status, r->out, out != NULL ? out : "*", r->err,
                  err != NULL ? err : "*");
}

void ctl_expect_err_has(const struct ctl_run *r, const char *needle)
{
    if (strstr(r->err, needle) == NULL)
        test_fail("mio-echodctl: stderr [%s] does not say [%s]", r->err, needle);
}

/* ---- a plain client of the control socket ---------------------------------- */

int ctl_connect_to(const char *path)
{
    struct sockaddr_un sun = unix_addr(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    set_timeouts(fd); /* a full backlog makes connect wait: bounded too */
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

int ctl_connect(const char *path)
{
    int fd = ctl_connect_to(path);
    if (fd < 0)
        test_fail("cannot connect to %s: %s", path, errtext(errno));
    return fd;
}

char *ctl_read_answer(int fd, int ms)
{
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    int64_t until = ms_now() + ms;
    /* Bounded: one byte a round, and the answers are far below this. */
    for (int i = 0; i < 64 * 1024 * 1024; i++) {
        int left = (int)(until - ms_now());
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = left > 0 ? poll(&pfd, 1, left) : 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            buf[len] = '\0';
            test_fail("no whole answer within %d ms; so far: [%s]", ms, buf);
        }
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            buf[len] = '\0';
            test_fail("the control connection ended (%s) before the answer's empty "
                      "line; so far: [%s]",
                      n == 0 ? "EOF" : errtext(errno), buf);
        }
        if (len + 2 > cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        buf[len++] = c;
        if (c == '\n' && (len == 1 || buf[len - 2] == '\n')) {
            buf[len] = '\0';
            return buf;
        }
    }
    test_fail("an answer without end");
}

char *ctl_ask(int fd, const char *line)
{
    size_t len = strlen(line);
    char *msg = xmalloc(len + 2);
    snprintf(msg, len + 2, "%s\n", line);
    send_all(fd, msg, len + 1);
    free(msg);
    return ctl_read_answer(fd, 5000);
}

char *ctl_ask_path(const char *path, const char *line)
{
    int fd = ctl_connect(path);
    char *answer = ctl_ask(fd, line);
    close(fd);
    return answer;
}
