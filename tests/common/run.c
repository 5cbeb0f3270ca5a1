/*
 * Running mio-echod as a process (see run.h): its path, its environment,
 * fork and exec, and a run to completion.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* pipe2, close_range */
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "echod.h"
#include "files.h"
#include "run.h"

/* How long echod_run() lets the program run. */
#define RUN_MS 5000

extern char **environ;

/* The daemon under test, relative to $top_builddir. */
static const char *program = "src/mio-echod";

void echod_set_program(const char *path)
{
    program = path;
}

void echod_program_path(char *buf, size_t len)
{
    const char *top = getenv("top_builddir");
    if (top != NULL && top[0] != '\0')
        snprintf(buf, len, "%s/%s", top, program);
    else
        snprintf(buf, len, "%s", program);
}

char **echod_environment(const char *drop, size_t spare)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **env = xmalloc((n + spare + 1) * sizeof(*env));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "JOURNAL_STREAM=", 15) != 0 &&
            (drop == NULL || strncmp(environ[i], drop, strlen(drop)) != 0))
            env[k++] = environ[i];
    while (k < n + spare + 1)
        env[k++] = NULL;
    return env;
}

void echod_child_setup(pid_t parent, int outfd)
{
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127); /* the test program is already gone */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0 && null != STDIN_FILENO) {
        dup2(null, STDIN_FILENO);
        close(null);
    }
    dup2(outfd, STDOUT_FILENO);
    dup2(outfd, STDERR_FILENO);
}

/* Only async-signal-safe calls after fork(). */
pid_t echod_spawn(char *const argv[], char *const envp[], int outfd, rlim_t nofile)
{
    return echod_spawn_fds(argv, envp, outfd, nofile, NULL, 0, NULL);
}

/* Writes v in decimal at buf (async-signal-safe, for after fork()). */
static void put_uint(char *buf, unsigned long v)
{
    char tmp[24];
    int n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n > 0)
        *buf++ = tmp[--n];
    *buf = '\0';
}

pid_t echod_spawn_fds(char *const argv[], char *const envp[], int outfd, rlim_t nofile,
                      const int *fds, size_t n, char *listen_pid)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        test_fail("fork: %s", strerror(errno));
    if (pid > 0)
        return pid;
    echod_child_setup(parent, outfd);
    /* ^C at a terminal stops the test program, which stops the daemon. */
    signal(SIGINT, SIG_IGN);
    struct rlimit rl;
    if (nofile > 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = nofile;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            _exit(126);
    }
    /* The passed sockets to 3, 4, ...: first out of the way of those
     * numbers (above every one of them), then down, without close-on-exec. */
    int high = 3 + (int)n + 1;
    for (size_t i = 0; i < n; i++)
        if (fds[i] > high)
            high = fds[i] + 1;
    int moved[64];
    for (size_t i = 0; i < n && i < 64; i++)
        if ((moved[i] = fcntl(fds[i], F_DUPFD, high)) < 0)
            _exit(126);
    for (size_t i = 0; i < n && i < 64; i++)
        if (dup2(moved[i], 3 + (int)i) < 0)
            _exit(126);
    if (listen_pid != NULL)
        put_uint(listen_pid + strlen("LISTEN_PID="), (unsigned long)getpid());
    unsigned first = 3 + (unsigned)n;
    /* No test socket may live on in the daemon (a listener kept open
     * there would accept what the test means to be refused). */
    if (close_range(first, ~0u, 0) < 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = first; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
            close((int)fd);
    }
    execve(argv[0], argv, envp);
    _exit(127);
}

int exit_code(int status)
{
    if (status < 0)
        return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

int echod_run(char *out, size_t outlen, const char *arg, ...)
{
    char prog[PATH_MAX];
    echod_program_path(prog, sizeof(prog));
    char *argv[64];
    int argc = 0;
    argv[argc++] = prog;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a != NULL && argc < 63; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    char **envp = echod_environment(NULL, 0);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        free(envp);
        test_fail("pipe: %s", strerror(errno));
    }
    pid_t pid = echod_spawn(argv, envp, p[1], 0);
    free(envp);
    close(p[1]);

    size_t used = 0;
    if (outlen > 0)
        out[0] = '\0';
    int64_t until = ms_now() + RUN_MS;
    bool eof = false;
    for (int i = 0; i < 100000 && !eof; i++) {
        int64_t left = until - ms_now();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        char buf[4096];
        ssize_t n = read(p[0], buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            eof = true;
            break;
        }
        /* Read to the end, keeping what fits (with its NUL). */
        size_t take = (size_t)n;
        if (outlen == 0)
            take = 0;
        else if (used + take > outlen - 1)
            take = outlen - 1 - used;
        if (take > 0) {
            memcpy(out + used, buf, take);
            used += take;
            out[used] = '\0';
        }
    }
    close(p[0]);
    int status = 0;
    pid_t r = 0;
    /* The output ended: it has exited or is about to. */
    for (int i = 0; i < 1000 && eof; i++) {
        r = waitpid(pid, &status, WNOHANG);
        if (r != 0)
            break;
        sleep_ms(1);
    }
    if (r != pid) {
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            continue;
        return -1;
    }
    return exit_code(status);
}

void expect_conf_error(const char *what, const char *conf, int line, const char *says)
{
    char out[4096];
    const char *path = write_conf(conf);
    int rc = echod_run(out, sizeof(out), "-t", "-c", path, (char *)NULL);
    if (rc != 1)
        test_fail("%s: exit %d, expected 1 (%s)", what, rc, out);
    char where[PATH_MAX + 32];
    snprintf(where, sizeof(where), "%s:%d: ", path, line);
    if (strstr(out, where) == NULL || strstr(out, says) == NULL)
        test_fail("%s: expected \"%s...%s\", got \"%s\"", what, where, says, out);
}

void expect_conf_errors(const struct conf_error *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect_conf_error(cases[i].what, cases[i].conf, cases[i].line, cases[i].says);
}
