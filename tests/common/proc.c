/*
 * Programs a test starts, their output in a file (see proc.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* close_range */
#endif

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "files.h"
#include "proc.h"
#include "run.h"

/* The programs started and not yet freed by proc_stop_all(). */
static struct proc *procs[8];

void proc_reap(struct proc *p, int options)
{
    if (p->exited)
        return;
    int status;
    pid_t r;
    do
        r = waitpid(p->pid, &status, options);
    while (r < 0 && errno == EINTR);
    if (r == p->pid || r < 0) {
        p->exited = true;
        p->status = r < 0 ? -1 : status;
    }
}

/* Writes v in decimal into buf (async-signal-safe, for after fork()). */
static void format_uint(char *buf, unsigned long v)
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

const char *proc_find_program(const char *name, char *buf, size_t len)
{
    const char *env = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof(dirs), "%s:/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin",
             env != NULL ? env : "");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d != NULL;
         d = strtok_r(NULL, ":", &save)) {
        snprintf(buf, len, "%s/%s", d, name);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    return NULL;
}

struct proc *proc_start(char *const argv[])
{
    return proc_start_in(argv, NULL, -1, NULL);
}

struct proc *proc_start_in(char *const argv[], const char *cwd, int passfd,
                           const char *fdname)
{
    size_t slot = 0;
    while (slot < ARRAY_LEN(procs) && procs[slot] != NULL)
        slot++;
    if (slot == ARRAY_LEN(procs))
        test_fail("more than %zu programs started at once", ARRAY_LEN(procs));
    struct proc *p = xmalloc(sizeof(*p));
    memset(p, 0, sizeof(*p));
    const char *base = strrchr(argv[0], '/');
    snprintf(p->name, sizeof(p->name), "%s", base != NULL ? base + 1 : argv[0]);
    snprintf(p->log, sizeof(p->log), "%s/%s.out", test_tmpdir(), p->name);
    int out = open(p->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (out < 0) {
        int err = errno;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s", p->log);
        free(p);
        test_fail("cannot create %s: %s", path, strerror(err));
    }
    /* The environment without JOURNAL_STREAM, as the harness does, nor
     * our own LISTEN_ variables. */
    char **envp = echod_environment("LISTEN_", 3);
    size_t k = 0;
    while (envp[k] != NULL)
        k++;
    /* LISTEN_PID is the child's own: filled in after fork(). */
    static char listen_fds[] = "LISTEN_FDS=1", listen_pid[48], listen_names[300];
    strcpy(listen_pid, "LISTEN_PID=");
    snprintf(listen_names, sizeof(listen_names), "LISTEN_FDNAMES=%s",
             fdname != NULL ? fdname : "");
    if (passfd >= 0) {
        envp[k++] = listen_fds;
        envp[k++] = listen_pid;
        envp[k++] = listen_names;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(out);
        free(envp);
        free(p);
        test_fail("fork: %s", strerror(err));
    }
    if (pid == 0) {
        echod_child_setup(parent, out);
        if (cwd != NULL && chdir(cwd) < 0)
            _exit(127);
        unsigned first = 3;
        if (passfd >= 0) {
            if (passfd != 3)
                dup2(passfd, 3); /* without close-on-exec */
            else
                fcntl(3, F_SETFD, 0);
            format_uint(listen_pid + strlen("LISTEN_PID="), (unsigned long)getpid());
            first = 4;
        }
        /* No other test socket may live on in the child. */
        if (close_range(first, ~0u, 0) < 0)
            for (int fd = (int)first; fd < 1024; fd++)
                close(fd);
        execve(argv[0], argv, envp);
        _exit(127);
    }
    close(out);
    free(envp);
    p->pid = pid;
    procs[slot] = p;
    return p;
}

char *proc_output(struct proc *p)
{
    FILE *f = fopen(p->log, "r");
    char *text = read_all(f, 256 * MIB); /* "" without the file */
    if (f != NULL)
        fclose(f);
    return text;
}

int proc_count(struct proc *p, const char *needle)
{
    char *text = proc_output(p);
    int n = 0;
    for (const char *t = strstr(text, needle); t != NULL; t = strstr(t + 1, needle))
        n++;
    free(text);
    return n;
}

bool proc_has(struct proc *p, const char *needle)
{
    char *text = proc_output(p);
    bool has = strstr(text, needle) != NULL;
    free(text);
    return has;
}

void proc_print(struct proc *p)
{
    char *text = proc_output(p);
    size_t len = strlen(text);
    fprintf(stderr, "---- output of %s (pid %d) ----\n%s%s---- end of output ----\n",
            p->name, (int)p->pid, text, len > 0 && text[len - 1] != '\n' ? "\n" : "");
    free(text);
}

void proc_expect(struct proc *p, const char *needle)
{
    if (proc_has(p, needle))
        return;
    proc_print(p);
    test_fail("no \"%s\" in the output of %s", needle, p->name);
}

int proc_wait_output(struct proc *p, int ms, const char *const needles[], bool after_exit)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 100000; i++) {
        bool gone = p->exited && !after_exit;
        char *text = proc_output(p);
        for (int k = 0; needles[k] != NULL; k++)
            if (strstr(text, needles[k]) != NULL) {
                free(text);
                return k;
            }
        free(text);
        if (gone || ms_now() >= until)
            return -1;
        proc_reap(p, WNOHANG);
        sleep_ms(10);
    }
    return -1;
}

int proc_wait_any(struct proc *p, int ms, const char *const needles[])
{
    return proc_wait_output(p, ms, needles, false);
}

bool proc_wait_for(struct proc *p, const char *needle, int ms)
{
    const char *const needles[] = {needle, NULL};
    return proc_wait_any(p, ms, needles) == 0;
}

int proc_wait_exit(struct proc *p, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 100000 && !p->exited; i++) {
        proc_reap(p, WNOHANG);
        if (p->exited || ms_now() >= until)
            break;
        sleep_ms(5);
    }
    return p->exited ? exit_code(p->status) : -1;
}

int proc_stop(struct proc *p, int ms)
{
    proc_reap(p, WNOHANG);
    if (!p->exited)
        kill(p->pid, SIGTERM);
    int code = proc_wait_exit(p, ms);
    if (!p->exited) {
        kill(p->pid, SIGKILL);
        proc_reap(p, 0);
        return -1;
    }
    return code;
}

void proc_stop_all(int ms)
{
    for (size_t i = 0; i < ARRAY_LEN(procs); i++) {
        if (procs[i] == NULL)
            continue;
        proc_stop(procs[i], ms);
        free(procs[i]);
        procs[i] = NULL;
    }
}
