/* Restarting without systemd: the binary upgrade on SIGUSR2. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* pipe2 */
#endif
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "generation.h"
#include "log.h"
#include "loop.h"
#include "service.h"
#include "upgrade.h"

extern char **environ;

/* How this binary is started again (upgrade_init()). */
static struct {
    char *exe;
    char *config_path;
    bool foreground, verbose;
} self;

/* In a new process: the pipe to the old one, until ready or failed. */
static int child_fd = -1;

/* Inherited sockets that are no listener's, until claimed. */
static struct passed_sock *spare;
static size_t nspare;

int upgrade_init(const char *argv0, const char *config_path, bool foreground,
                 bool verbose)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (n > 0) {
        path[n] = '\0';
        self.exe = strdup(path);
    } else {
        /* No /proc: argv0, made absolute while the directory is ours. */
        self.exe = strchr(argv0, '/') != NULL ? realpath(argv0, NULL) : strdup(argv0);
    }
    self.config_path = strdup(config_path);
    self.foreground = foreground;
    self.verbose = verbose;
    return self.exe != NULL && self.config_path != NULL ? 0 : -ENOMEM;
}

void upgrade_free(void)
{
    free(self.exe);
    free(self.config_path);
    self.exe = self.config_path = NULL;
    upgrade_close_unclaimed();
}

bool upgrade_child_take(void)
{
    const char *v = getenv(UPGRADE_FD_ENV);
    if (v == NULL)
        return false;
    char *end;
    long fd = strtol(v, &end, 10);
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): before any thread exists. */
    unsetenv(UPGRADE_FD_ENV);
    if (*end != '\0' || fd < 3 || fd > INT_MAX || fcntl((int)fd, F_GETFD) < 0)
        return false;
    child_fd = (int)fd;
    (void)fcntl(child_fd, F_SETFD, FD_CLOEXEC); /* not for our own children */
    return true;
}

/* Writes one line to the old process and closes the pipe. */
static void child_say(const char *line)
{
    if (child_fd < 0)
        return;
    size_t len = strlen(line), off = 0;
    while (off < len) {
        ssize_t n = write(child_fd, line + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(child_fd);
    child_fd = -1;
}

void upgrade_child_ready(void)
{
    child_say("ready\n");
}

void upgrade_child_failed(const char *why)
{
    char line[600];
    snprintf(line, sizeof(line), "error %s\n", why != NULL && why[0] ? why : "unknown");
    child_say(line);
}

void upgrade_adopt(struct daemon *d)
{
    size_t kept = 0;
    for (size_t i = 0; i < d->npassed; i++) {
        struct passed_sock *p = &d->passed[i];
        if (p->name[0] != '@') {
            d->passed[kept++] = *p;
            continue;
        }
        struct passed_sock *more = realloc(spare, (nspare + 1) * sizeof(*more));
        if (more == NULL) {
            close(p->fd);
            continue;
        }
        spare = more;
        spare[nspare++] = *p;
    }
    d->npassed = kept;
}

int upgrade_inherited(const char *name)
{
    for (size_t i = 0; i < nspare; i++)
        if (spare[i].fd >= 0 && strcmp(spare[i].name, name) == 0) {
            int fd = spare[i].fd;
            spare[i].fd = -1;
            return fd;
        }
    return -1;
}

void upgrade_close_unclaimed(void)
{
    for (size_t i = 0; i < nspare; i++)
        if (spare[i].fd >= 0)
            close(spare[i].fd);
    free(spare);
    spare = NULL;
    nspare = 0;
}

/* ---- the old process ----------------------------------------------------- */

/* What the forked child needs, all made before fork(): after it only
 * async-signal-safe calls run. */
struct spawn {
    int *fds; /* to become 3, 4, ... in the new process */
    int *tmp; /* their copies above that range */
    size_t nfds;
    int pipe_w;
    char *argv[6];
    char **envp;   /* this environment's entries, then the four below */
    char *env[4];  /* LISTEN_FDS, LISTEN_FDNAMES, UPGRADE_FD_ENV, LISTEN_PID */
    char *pid_env; /* env[3]: "LISTEN_PID=" and room for the child's pid */
};

/* Appends fd under name to the spawn's list and LISTEN_FDNAMES. */
static int add_fd(struct spawn *s, char **names, size_t *names_len, int fd,
                  const char *prefix, const char *name)
{
    size_t add = strlen(prefix) + strlen(name) + 2;
    char *grown = realloc(*names, *names_len + add);
    int *fds = realloc(s->fds, (s->nfds + 1) * sizeof(*fds));
    if (grown != NULL)
        *names = grown;
    if (fds != NULL)
        s->fds = fds;
    if (grown == NULL || fds == NULL)
        return -ENOMEM;
    *names_len += (size_t)snprintf(*names + *names_len, add, "%s%s%s",
                                   s->nfds > 0 ? ":" : "", prefix, name);
    s->fds[s->nfds++] = fd;
    return 0;
}

/* Whether the environment entry e is one the new process gets anew. */
static bool replaced(const char *e)
{
    static const char *const keys[] = {"LISTEN_FDS=", "LISTEN_FDNAMES=", "LISTEN_PID=",
                                       UPGRADE_FD_ENV "="};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strncmp(e, keys[i], strlen(keys[i])) == 0)
            return true;
    return false;
}

/* Prints an environment entry into a new string (NULL when out of memory). */
static char *entry(const char *key, const char *value)
{
    size_t n = strlen(key) + strlen(value) + 2;
    char *e = malloc(n);
    if (e != NULL)
        snprintf(e, n, "%s=%s", key, value);
    return e;
}

/* This environment without the entries replaced(), plus the new ones. */
static int make_env(struct spawn *s, const char *names)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    s->envp = calloc(n + 5, sizeof(*s->envp));
    if (s->envp == NULL)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!replaced(environ[i]))
            s->envp[k++] = environ[i];
    char fds[32], fd[32], pid[32];
    snprintf(fds, sizeof(fds), "%zu", s->nfds);
    snprintf(fd, sizeof(fd), "%zu", 3 + s->nfds);
    memset(pid, ' ', sizeof(pid) - 1); /* room, overwritten in the child */
    pid[sizeof(pid) - 1] = '\0';
    s->env[0] = entry("LISTEN_FDS", fds);
    s->env[1] = entry("LISTEN_FDNAMES", names);
    s->env[2] = entry(UPGRADE_FD_ENV, fd);
    s->env[3] = s->pid_env = entry("LISTEN_PID", pid);
    for (size_t i = 0; i < 4; i++) {
        if (s->env[i] == NULL)
            return -ENOMEM;
        s->envp[k++] = s->env[i];
    }
    return 0;
}

/* Frees what make_env() and add_fd() made. */
static void spawn_free(struct spawn *s)
{
    for (size_t i = 0; i < 4; i++)
        free(s->env[i]);
    free(s->envp);
    free(s->fds);
    free(s->tmp);
}

/* Writes v in decimal at p (async-signal-safe); returns the end. */
static char *put_number(char *p, unsigned long v)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (n > 0)
        *p++ = digits[--n];
    *p = '\0';
    return p;
}

/* Tells the old process, from the forked child, that exec failed (errno e)
 * and exits. */
static _Noreturn void child_exec_failed(int fd, int e)
{
    char line[40] = "exec ", *end = put_number(line + 5, (unsigned long)e);
    *end++ = '\n';
    ssize_t w = write(fd, line, (size_t)(end - line));
    (void)w;
    _exit(127);
}

/* The forked child: the sockets to 3, 4, ..., the pipe after them, the
 * signal mask cleared, then the binary.  Async-signal-safe calls only. */
static _Noreturn void child_exec(const struct spawn *s)
{
    int first_free = 3 + (int)s->nfds + 1;
    int w = fcntl(s->pipe_w, F_DUPFD_CLOEXEC, first_free);
    if (w < 0)
        _exit(127);
    for (size_t i = 0; i < s->nfds; i++)
        if ((s->tmp[i] = fcntl(s->fds[i], F_DUPFD_CLOEXEC, first_free)) < 0)
            child_exec_failed(w, errno);
    for (size_t i = 0; i < s->nfds; i++)
        if (dup2(s->tmp[i], 3 + (int)i) < 0) /* without FD_CLOEXEC */
            child_exec_failed(w, errno);
    if (dup2(w, 3 + (int)s->nfds) < 0)
        child_exec_failed(w, errno);
    put_number(s->pid_env + strlen("LISTEN_PID="), (unsigned long)getpid());
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    execve(s->argv[0], s->argv, s->envp);
    child_exec_failed(w, errno);
}

/* Lists d's listening sockets for the new process: a listener's own under
 * the fd store's name (the new process then owns them), one a .socket unit
 * passed under the listener's name; then the stats and control sockets. */
static int list_sockets(struct daemon *d, struct spawn *s, char **names, int metrics_fd,
                        int control_fd)
{
    size_t len = 0;
    int e = 0;
    struct generation *g = atomic_load(&d->gen);
    for (size_t i = 0; e == 0 && i < g->nlisteners; i++) {
        const struct listener *l = &g->listeners[i];
        for (size_t k = 0; e == 0 && k < l->nsocks; k++)
            if (l->socks[k].fd >= 0)
                e = add_fd(s, names, &len, l->socks[k].fd,
                           l->socks[k].passed ? "" : SERVICE_STORE_PREFIX, l->cfg->name);
    }
    if (e == 0 && metrics_fd >= 0)
        e = add_fd(s, names, &len, metrics_fd, "", UPGRADE_METRICS_NAME);
    if (e == 0 && control_fd >= 0)
        e = add_fd(s, names, &len, control_fd, "", UPGRADE_CONTROL_NAME);
    if (e == 0 && s->nfds == 0)
        e = -ENOENT;
    return e;
}

int upgrade_start(struct daemon *d, struct upgrade *u, int metrics_fd, int control_fd,
                  char *why, size_t len)
{
    if (!service_has_systemd()) {
        snprintf(why, len,
                 "this build reads inherited sockets with libsystemd, "
                 "which it was built without");
        return -ENOTSUP;
    }
    if (self.exe == NULL) {
        snprintf(why, len, "the path of this binary is unknown");
        return -ENOENT;
    }
    struct spawn s = {.pipe_w = -1};
    char *names = NULL;
    int p[2] = {-1, -1};
    const char *step = "list the sockets to hand over";
    int e = list_sockets(d, &s, &names, metrics_fd, control_fd);
    if (e == 0) {
        s.tmp = calloc(s.nfds, sizeof(*s.tmp));
        e = s.tmp != NULL ? make_env(&s, names) : -ENOMEM;
    }
    if (e == 0 && pipe2(p, O_CLOEXEC) < 0) {
        step = "make a pipe";
        e = -errno;
    }
    if (e == 0) {
        int n = 0;
        s.argv[n++] = self.exe;
        s.argv[n++] = "-c";
        s.argv[n++] = self.config_path;
        if (self.foreground)
            s.argv[n++] = "-f";
        if (self.verbose)
            s.argv[n++] = "-v";
        s.argv[n] = NULL;
        s.pipe_w = p[1];
        loop_forking();
        pid_t pid = fork();
        if (pid == 0)
            child_exec(&s);
        if (pid < 0) {
            step = "fork";
            e = -errno;
            loop_forked();
        }
        *u = (struct upgrade){.pid = pid, .fd = p[0]};
    }
    if (p[1] >= 0)
        close(p[1]);
    free(names);
    spawn_free(&s);
    if (e < 0) {
        if (p[0] >= 0)
            close(p[0]);
        u->pid = 0;
        snprintf(why, len, "cannot %s: %s", step, log_strerror(-e));
        return e;
    }
    (void)fcntl(p[0], F_SETFL, O_NONBLOCK);
    u->deadline = loop_clock_ms() + UPGRADE_READY_TIMEOUT_MS;
    return 0;
}

/* Waits for the new process (gone, or about to be: its pipe closed) and
 * says how it ended, after what it wrote, in why. */
static void reap(struct upgrade *u, char *why, size_t len)
{
    int status = 0;
    pid_t r;
    while ((r = waitpid(u->pid, &status, 0)) < 0 && errno == EINTR)
        ;
    u->said[u->len] = '\0';
    char how[64] = "";
    if (r == u->pid && WIFEXITED(status))
        snprintf(how, sizeof(how), "exit status %d", WEXITSTATUS(status));
    else if (r == u->pid && WIFSIGNALED(status))
        snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(status));
    char *nl = strchr(u->said, '\n');
    if (nl != NULL)
        *nl = '\0';
    if (strncmp(u->said, "exec ", 5) == 0)
        snprintf(why, len, "cannot execute %s: %s", self.exe,
                 log_strerror((int)strtol(u->said + 5, NULL, 10)));
    else if (strncmp(u->said, "error ", 6) == 0)
        snprintf(why, len, "%s (%s)", u->said + 6, how);
    else
        snprintf(why, len, "it ended before it was ready (%s)", how);
    close(u->fd);
    u->fd = -1;
    u->pid = 0;
    loop_forked(); /* it is gone */
}

int upgrade_poll(struct upgrade *u, char *why, size_t len)
{
    if (u->pid <= 0)
        return -1;
    for (;;) {
        char scratch[256]; /* what does not fit in said is read and dropped */
        bool room = u->len < sizeof(u->said) - 1;
        ssize_t n = room ? read(u->fd, u->said + u->len, sizeof(u->said) - 1 - u->len)
                         : read(u->fd, scratch, sizeof(scratch));
        if (n > 0) {
            u->len += room ? (size_t)n : 0;
            if (u->len >= 6 && memcmp(u->said, "ready\n", 6) == 0) {
                loop_forked(); /* it has exec'd */
                close(u->fd);
                *u = (struct upgrade){.fd = -1};
                return 1;
            }
            continue;
        }
        if (n == 0) {
            reap(u, why, len);
            return -1;
        }
        if (errno != EINTR)
            break; /* EAGAIN: not yet */
    }
    if (loop_clock_ms() < u->deadline)
        return 0;
    kill(u->pid, SIGKILL);
    reap(u, why, len);
    snprintf(why, len, "not ready within %d s: killed", UPGRADE_READY_TIMEOUT_MS / 1000);
    return -1;
}
