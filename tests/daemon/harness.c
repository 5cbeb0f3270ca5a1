/*
 * The integration tests' harness (see harness.h): runs the built mio-echod
 * in the foreground with a generated configuration, captures its stderr
 * into a growing buffer (read by a thread, so the daemon never blocks on a
 * full pipe), and gives loopback clients and test upstreams with bounded
 * waits.
 *
 * Nothing is left behind: each daemon is started with PR_SET_PDEATHSIG, so
 * it dies with the test program even when that is killed; an atexit()
 * handler kills a daemon a failed test left running, and removes the
 * temporary directories.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* pipe2, close_range, memmem */
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#ifndef ECHOD_PROGRAM
#define ECHOD_PROGRAM "src/mio-echod"
#endif

/* How long echod_start() waits for the "started" line. */
#define START_MS 5000
/* How long echod_run() lets the program run. */
#define RUN_MS 5000
/* How long send_all() and recv_exact() wait without progress. */
#define IO_MS 5000
/* How long echod_must_log(), finish() and upstream_accept() wait. */
#define WAIT_MS 3000

extern char **environ;

struct echod {
    pid_t pid;
    bool exited;   /* reaped: status is valid */
    bool killed;   /* we had to SIGKILL it */
    int status;    /* as from waitpid */
    int errfd;     /* the read end of its stderr */
    pthread_t reader;
    bool reader_running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *log; /* everything it wrote, NUL-terminated */
    size_t len, cap;
    bool eof;
    char **copies; /* lines handed out by echod_wait_log() */
    size_t ncopies, capcopies;
    char conf[PATH_MAX];
    struct echod *next;
};

static struct echod *daemons;
static char **tmpdirs;
static size_t ntmpdirs, captmpdirs;
static char **paths; /* returned by write_conf() */
static size_t npaths, cappaths;
static bool atexit_done;

int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        continue;
}

/* An absolute CLOCK_MONOTONIC time `ms` from now, for the condvar. */
static struct timespec deadline_ts(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "harness: out of memory\n");
        abort();
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL) {
        fprintf(stderr, "harness: out of memory\n");
        abort();
    }
    return p;
}

/* ---- clean-up at exit ------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    (void)remove(path);
    return 0;
}

static void reap(struct echod *e, int options);
static bool reader_finish(struct echod *e, int ms);

static void cleanup_at_exit(void)
{
    for (struct echod *e = daemons; e != NULL; e = e->next) {
        if (!e->exited) {
            reap(e, WNOHANG);
            if (!e->exited) {
                fprintf(stderr, "harness: killing mio-echod (pid %d) left running\n",
                        (int)e->pid);
                kill(e->pid, SIGKILL);
                reap(e, 0);
            }
        }
    }
    while (daemons != NULL) {
        struct echod *e = daemons;
        daemons = e->next;
        /* The pipe ends when the daemon is gone, and the thread with it;
         * should something else hold the pipe, leave the thread be. */
        if (!reader_finish(e, 1000))
            continue;
        for (size_t i = 0; i < e->ncopies; i++)
            free(e->copies[i]);
        free(e->copies);
        free(e->log);
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        free(e);
    }
    for (size_t i = 0; i < ntmpdirs; i++) {
        (void)nftw(tmpdirs[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(tmpdirs[i]);
    }
    free(tmpdirs);
    tmpdirs = NULL;
    ntmpdirs = captmpdirs = 0;
    for (size_t i = 0; i < npaths; i++)
        free(paths[i]);
    free(paths);
    paths = NULL;
    npaths = cappaths = 0;
}

static void register_cleanup(void)
{
    if (atexit_done)
        return;
    atexit_done = true;
    atexit(cleanup_at_exit);
}

/* A fresh temporary directory, removed at exit; the path stays valid. */
static const char *make_tmpdir(void)
{
    register_cleanup();
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    size_t len = strlen(base) + 32;
    char *path = xmalloc(len);
    snprintf(path, len, "%s/mio-echod-test.XXXXXX", base);
    if (mkdtemp(path) == NULL) {
        int err = errno;
        free(path);
        fail_msg("mkdtemp in %s: %s", base, strerror(err));
    }
    if (ntmpdirs == captmpdirs) {
        captmpdirs = captmpdirs ? 2 * captmpdirs : 16;
        tmpdirs = xrealloc(tmpdirs, captmpdirs * sizeof(*tmpdirs));
    }
    tmpdirs[ntmpdirs++] = path;
    return path;
}

/* Writes conf into dir/mio-echod.conf with "@DIR@" replaced by dir. */
static void write_conf_in(const char *dir, const char *conf, char *path, size_t pathlen)
{
    snprintf(path, pathlen, "%s/mio-echod.conf", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fail_msg("cannot create %s: %s", path, strerror(errno));
    for (const char *p = conf; *p != '\0';) {
        const char *at = strstr(p, "@DIR@");
        if (at == NULL) {
            fputs(p, f);
            break;
        }
        fwrite(p, 1, (size_t)(at - p), f);
        fputs(dir, f);
        p = at + 5;
    }
    if (fclose(f) != 0)
        fail_msg("cannot write %s: %s", path, strerror(errno));
}

const char *write_conf(const char *conf)
{
    const char *dir = make_tmpdir();
    char path[PATH_MAX];
    write_conf_in(dir, conf, path, sizeof(path));
    if (npaths == cappaths) {
        cappaths = cappaths ? 2 * cappaths : 16;
        paths = xrealloc(paths, cappaths * sizeof(*paths));
    }
    char *copy = xmalloc(strlen(path) + 1);
    strcpy(copy, path);
    paths[npaths++] = copy; /* the file goes with its directory */
    return copy;
}

/* ---- starting and watching the daemon ---------------------------------- */

void echod_program_path(char *buf, size_t len)
{
    const char *top = getenv("top_builddir");
    if (top != NULL && top[0] != '\0')
        snprintf(buf, len, "%s/%s", top, ECHOD_PROGRAM);
    else
        snprintf(buf, len, "%s", ECHOD_PROGRAM);
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

/*
 * Forks and execs argv with stdout and stderr into outfd and no other
 * descriptor open; the child dies with us.  Returns the pid (fails the test
 * when fork fails).  Only async-signal-safe calls after fork().
 */
static pid_t spawn(char *const argv[], char *const envp[], int outfd, rlim_t nofile)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid > 0)
        return pid;
    echod_child_setup(parent, outfd);
    struct rlimit rl;
    if (nofile > 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = nofile;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            _exit(126);
    }
    /* No test socket may live on in the daemon (a listener kept open
     * there would accept what the test means to be refused). */
    if (close_range(3, ~0u, 0) < 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
            close((int)fd);
    }
    execve(argv[0], argv, envp);
    _exit(127);
}

/* Appends the daemon's stderr to its log until the pipe ends. */
static void *read_log(void *arg)
{
    struct echod *e = arg;
    bool tee = getenv("ECHOD_LOG") != NULL && getenv("ECHOD_LOG")[0] != '\0';
    char buf[65536];
    for (;;) {
        ssize_t n = read(e->errfd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        pthread_mutex_lock(&e->mu);
        if (n <= 0) {
            e->eof = true;
            pthread_cond_broadcast(&e->cv);
            pthread_mutex_unlock(&e->mu);
            return NULL;
        }
        if (e->len + (size_t)n + 1 > e->cap) {
            size_t cap = e->cap ? e->cap : 65536;
            while (e->len + (size_t)n + 1 > cap)
                cap *= 2;
            e->log = xrealloc(e->log, cap);
            e->cap = cap;
        }
        memcpy(e->log + e->len, buf, (size_t)n);
        e->len += (size_t)n;
        e->log[e->len] = '\0';
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        if (tee) {
            ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
            (void)w;
        }
    }
}

/* Waits up to ms for the end of the daemon's stderr, then joins the
 * reader and closes the pipe; false when it did not end in time. */
static bool reader_finish(struct echod *e, int ms)
{
    if (!e->reader_running)
        return true;
    struct timespec until = deadline_ts(ms);
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < 100000 && !e->eof; i++)
        if (pthread_cond_timedwait(&e->cv, &e->mu, &until) == ETIMEDOUT)
            break;
    bool eof = e->eof;
    pthread_mutex_unlock(&e->mu);
    if (!eof)
        return false;
    pthread_join(e->reader, NULL);
    e->reader_running = false;
    close(e->errfd);
    e->errfd = -1;
    return true;
}

/* Reaps the daemon if it has exited (options: WNOHANG or 0). */
static void reap(struct echod *e, int options)
{
    if (e->exited || e->pid <= 0)
        return;
    int status;
    pid_t r;
    do
        r = waitpid(e->pid, &status, options);
    while (r < 0 && errno == EINTR);
    if (r == e->pid) {
        e->exited = true;
        e->status = status;
    } else if (r < 0) {
        e->exited = true; /* not our child any more: nothing to wait for */
        e->status = -1;
    }
}

/*
 * Finds the `n`-th (from 0) complete line of the log containing needle;
 * with e->mu held.  Returns its start and length, or NULL.  A partial last
 * line counts once the pipe has ended.
 */
static const char *find_line(struct echod *e, const char *needle, int n, size_t *linelen)
{
    if (e->log == NULL)
        return NULL; /* nothing read yet (and NULL + 0 is undefined) */
    size_t nlen = strlen(needle);
    const char *p = e->log, *end = e->log + e->len;
    while (p != NULL && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL && !e->eof)
            return NULL;
        const char *stop = nl != NULL ? nl : end;
        if (memmem(p, (size_t)(stop - p), needle, nlen) != NULL && n-- == 0) {
            *linelen = (size_t)(stop - p);
            return p;
        }
        p = nl != NULL ? nl + 1 : NULL;
    }
    return NULL;
}

/* Prints the log so far, for a failing test. */
static void print_log(struct echod *e)
{
    pthread_mutex_lock(&e->mu);
    print_error("---- mio-echod log (pid %d) ----\n%s---- end of log ----\n",
                (int)e->pid, e->log != NULL ? e->log : "");
    pthread_mutex_unlock(&e->mu);
}

/* The soft RLIMIT_NOFILE of the next daemon echod_start() spawns; 0 keeps
 * the test's own. */
static rlim_t next_nofile;

struct echod *echod_start_nofile(const char *conf, long nofile)
{
    next_nofile = (rlim_t)nofile;
    return echod_start(conf);
}

struct echod *echod_start(const char *conf)
{
    rlim_t nofile = next_nofile;
    next_nofile = 0;
    register_cleanup();
    struct echod *e = calloc(1, sizeof(*e));
    if (e == NULL)
        fail_msg("out of memory");
    e->errfd = -1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->cv, &ca);
    pthread_condattr_destroy(&ca);
    e->exited = true; /* nothing to wait for or kill until it runs */

    const char *dir = make_tmpdir();
    write_conf_in(dir, conf, e->conf, sizeof(e->conf));

    char prog[PATH_MAX];
    echod_program_path(prog, sizeof(prog));
    if (access(prog, X_OK) != 0)
        fail_msg("cannot run %s: %s (is top_builddir set?)", prog, strerror(errno));
    char *argv[] = {prog, (char *)"-f", (char *)"-c", e->conf, NULL};
    char **envp = echod_environment(NULL, 0);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        free(envp);
        fail_msg("pipe: %s", strerror(errno));
    }
    e->pid = spawn(argv, envp, p[1], nofile);
    e->exited = false;
    e->next = daemons;
    daemons = e;
    free(envp);
    close(p[1]);
    e->errfd = p[0];
    int err = pthread_create(&e->reader, NULL, read_log, e);
    if (err != 0) {
        kill(e->pid, SIGKILL);
        reap(e, 0);
        fail_msg("pthread_create: %s", strerror(err));
    }
    e->reader_running = true;

    /* Wait for "started", or for the end of its stderr (it exited). */
    struct timespec until = deadline_ts(START_MS);
    bool started = false, ended = false;
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < 100000; i++) {
        size_t len;
        if (find_line(e, " started: ", 0, &len) != NULL) {
            started = true;
            break;
        }
        if (e->eof) {
            ended = true;
            break;
        }
        if (pthread_cond_timedwait(&e->cv, &e->mu, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&e->mu);
    if (started)
        return e;
    if (ended) {
        /* Its stderr closed: it is exiting; wait a little for the status. */
        for (int i = 0; i < 500 && !e->exited; i++) {
            reap(e, WNOHANG);
            if (!e->exited)
                sleep_ms(2);
        }
    }
    if (!e->exited) {
        kill(e->pid, SIGKILL);
        e->killed = true;
        reap(e, 0);
    }
    print_log(e);
    if (ended)
        fail_msg("mio-echod exited before it started (status 0x%x)", e->status);
    fail_msg("mio-echod did not start within %d ms", START_MS);
    return NULL;
}

int echod_port(struct echod *e, const char *name, int n)
{
    char needle[256];
    snprintf(needle, sizeof(needle), "listener %s: listening on ", name);
    int port = -1;
    pthread_mutex_lock(&e->mu);
    size_t len;
    const char *line = find_line(e, needle, n, &len);
    if (line != NULL) {
        /* "...listening on ADDR (mode)": the port follows ADDR's last ':'. */
        char buf[512];
        snprintf(buf, sizeof(buf), "%.*s", (int)len, line);
        char *addr = strstr(buf, needle) + strlen(needle);
        char *sp = strchr(addr, ' ');
        if (sp != NULL)
            *sp = '\0';
        char *colon = strrchr(addr, ':');
        if (colon != NULL)
            port = atoi(colon + 1);
    }
    pthread_mutex_unlock(&e->mu);
    if (port <= 0 || port > 65535) {
        print_log(e);
        fail_msg("no port for address %d of listener %s in the log", n, name);
    }
    return port;
}

/* Keeps a copy of a line of the log for the test, freed at the end; lock
 * held. */
static const char *keep_copy(struct echod *e, const char *line, size_t len)
{
    char *copy = xmalloc(len + 1);
    memcpy(copy, line, len);
    copy[len] = '\0';
    if (e->ncopies == e->capcopies) {
        e->capcopies = e->capcopies ? 2 * e->capcopies : 64;
        e->copies = xrealloc(e->copies, e->capcopies * sizeof(*e->copies));
    }
    e->copies[e->ncopies++] = copy;
    return copy;
}

const char *echod_wait_log(struct echod *e, const char *needle, int ms)
{
    struct timespec until = deadline_ts(ms < 0 ? 0 : ms);
    const char *found = NULL;
    size_t len = 0;
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < 1000000; i++) {
        found = find_line(e, needle, 0, &len);
        if (found != NULL || e->eof)
            break;
        if (pthread_cond_timedwait(&e->cv, &e->mu, &until) == ETIMEDOUT) {
            found = find_line(e, needle, 0, &len);
            break;
        }
    }
    const char *copy = found != NULL ? keep_copy(e, found, len) : NULL;
    pthread_mutex_unlock(&e->mu);
    return copy;
}

const char *echod_log_line(struct echod *e, const char *needle, int n)
{
    size_t len = 0;
    pthread_mutex_lock(&e->mu);
    const char *found = find_line(e, needle, n, &len);
    const char *copy = found != NULL ? keep_copy(e, found, len) : NULL;
    pthread_mutex_unlock(&e->mu);
    return copy;
}

int echod_count_log(struct echod *e, const char *needle)
{
    int count = 0;
    size_t len;
    pthread_mutex_lock(&e->mu);
    while (find_line(e, needle, count, &len) != NULL)
        count++;
    pthread_mutex_unlock(&e->mu);
    return count;
}

void echod_signal(struct echod *e, int sig)
{
    reap(e, WNOHANG);
    if (!e->exited)
        kill(e->pid, sig);
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

int echod_stop(struct echod *e, int ms)
{
    reap(e, WNOHANG);
    if (!e->exited) {
        kill(e->pid, SIGTERM);
        int64_t until = ms_now() + (ms < 0 ? 0 : ms);
        /* Bounded: at most ms / 1 + 1 rounds of 1 ms. */
        for (int i = 0; i <= ms && !e->exited; i++) {
            reap(e, WNOHANG);
            if (e->exited || ms_now() >= until)
                break;
            sleep_ms(1);
        }
        if (!e->exited) {
            kill(e->pid, SIGKILL);
            e->killed = true;
            reap(e, 0);
        }
    }
    (void)reader_finish(e, 2000); /* its last lines */
    return e->killed ? -1 : exit_code(e->status);
}

const char *echod_conf_path(struct echod *e)
{
    return e->conf;
}

pid_t echod_pid(struct echod *e)
{
    return e->pid;
}

long echod_rss_kib(struct echod *e)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)e->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

/* The daemon's descriptors whose /proc link starts with `kind` ("" for
 * every one); -1 when they cannot be read. */
static int count_fds(struct echod *e, const char *kind)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)e->pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char link[PATH_MAX], target[256];
        snprintf(link, sizeof(link), "%s/%s", path, de->d_name);
        ssize_t len = kind[0] == '\0' ? 0 : readlink(link, target, sizeof(target) - 1);
        if (len < 0)
            continue; /* closed meanwhile */
        target[len] = '\0';
        if (strncmp(target, kind, strlen(kind)) == 0)
            n++;
    }
    closedir(d);
    return n;
}

int echod_fd_count(struct echod *e)
{
    return count_fds(e, "");
}

int echod_pipe_count(struct echod *e)
{
    return count_fds(e, "pipe:");
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
        fail_msg("pipe: %s", strerror(errno));
    }
    pid_t pid = spawn(argv, envp, p[1], 0);
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
    char out[4096], where[PATH_MAX + 32];
    const char *path = write_conf(conf);
    int rc = echod_run(out, sizeof(out), "-t", "-c", path, (char *)NULL);
    if (rc != 1)
        fail_msg("%s: exit %d, expected 1 (%s)", what, rc, out);
    snprintf(where, sizeof(where), "%s:%d: ", path, line);
    if (strstr(out, where) == NULL || strstr(out, says) == NULL)
        fail_msg("%s: expected \"%s...%s\", got \"%s\"", what, where, says, out);
}

/* ---- clients ------------------------------------------------------------ */

static int connect_addr(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int r;
    do
        r = connect(fd, sa, len);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

int connect_to(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return connect_addr((struct sockaddr *)&a, sizeof(a));
}

int connect_to6(int port)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                             .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    return connect_addr((struct sockaddr *)&a, sizeof(a));
}

/* Waits up to ms for `events` on fd: true when ready. */
static bool wait_fd(int fd, short events, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 1000; i++) {
        int64_t left = until - ms_now();
        if (left < 0)
            left = 0;
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, (int)left);
        if (r > 0)
            return true;
        if (r == 0 || errno != EINTR)
            return false;
    }
    return false;
}

void send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t done = 0;
    /* Each round either sends or waits up to IO_MS: bounded by len. */
    while (done < len) {
        ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_fd(fd, POLLOUT, IO_MS))
                fail_msg("send_all: no progress in %d ms after %zu of %zu bytes",
                         IO_MS, done, len);
            continue;
        }
        fail_msg("send_all: %s after %zu of %zu bytes", strerror(errno), done, len);
    }
}

void recv_exact(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = recv(fd, p + done, len - done, MSG_DONTWAIT);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n == 0)
            fail_msg("recv_exact: EOF after %zu of %zu bytes", done, len);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!wait_fd(fd, POLLIN, IO_MS))
                fail_msg("recv_exact: nothing in %d ms after %zu of %zu bytes",
                         IO_MS, done, len);
            continue;
        }
        fail_msg("recv_exact: %s after %zu of %zu bytes", strerror(errno), done, len);
    }
}

/* How the peer ended the connection within ms: 1 an end of file, 2 a reset
 * (ECONNRESET), 0 anything else first (data, another error, the time out).
 * A reset is taken from recv, so no byte is read before it. */
static int peer_end_within(int fd, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 1000; i++) {
        int64_t left = until - ms_now();
        if (left < 0)
            left = 0;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n >= 0)
            return n == 0 ? 1 : 0;
        if (errno == ECONNRESET)
            return 2;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return 0;
        if (left == 0)
            return 0;
    }
    return 0;
}

bool peer_closed_within(int fd, int ms)
{
    return peer_end_within(fd, ms) == 1;
}

bool peer_reset_within(int fd, int ms)
{
    return peer_end_within(fd, ms) == 2;
}

void fill_random(uint8_t *buf, size_t len, uint32_t seed)
{
    /* splitmix64: any seed, 0 included, gives a full-period stream. */
    uint64_t x = 0x9e3779b97f4a7c15ull * ((uint64_t)seed + 1);
    size_t i = 0;
    while (i < len) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        for (int k = 0; k < 8 && i < len; k++, i++)
            buf[i] = (uint8_t)(z >> (8 * k));
    }
}

/* ---- the daemon: checks that fail the test ------------------------------- */

const char *echod_must_log(struct echod *e, const char *fmt, ...)
{
    char needle[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(needle, sizeof(needle), fmt, ap);
    va_end(ap);
    const char *line = echod_wait_log(e, needle, WAIT_MS);
    if (line == NULL)
        fail_msg("no log line containing \"%s\" within %d ms", needle, WAIT_MS);
    return line;
}

void echod_stop_ok(struct echod *e)
{
    assert_int_equal(echod_stop(e, 5000), 0);
}

bool echod_wait_fd_count(struct echod *e, int want, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 10000; i++) {
        if (echod_fd_count(e) == want)
            return true;
        if (ms_now() >= until)
            return false;
        sleep_ms(2);
    }
    return false;
}

/* ---- loopback clients that fail the test ---------------------------------- */

void set_timeouts(int fd)
{
    struct timeval tv = {5, 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
}

int client4(int port)
{
    int fd = connect_to(port);
    if (fd < 0)
        fail_msg("connect to 127.0.0.1:%d: %s", port, strerror(errno));
    return fd;
}

int client6(int port)
{
    int fd = connect_to6(port);
    if (fd < 0)
        fail_msg("connect to [::1]:%d: %s", port, strerror(errno));
    return fd;
}

int connect_from(const char *src, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        fail_msg("bind %s: %s", src, strerror(errno));
    set_timeouts(fd);
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        fail_msg("connect from %s to port %d: %s", src, port, strerror(errno));
    return fd;
}

int local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

void expect_echo(int fd, const char *msg)
{
    char buf[512];
    size_t n = strlen(msg);
    assert_true(n <= sizeof(buf));
    send_all(fd, msg, n);
    recv_exact(fd, buf, n);
    assert_memory_equal(buf, msg, n);
}

void finish(int fd)
{
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    assert_true(peer_closed_within(fd, WAIT_MS));
    close(fd);
}

/* ---- test upstreams and ports --------------------------------------------- */

static int *tracked;
static size_t ntracked, captracked;

void track_fd(int fd)
{
    if (ntracked == captracked) {
        captracked = captracked ? 2 * captracked : 64;
        tracked = realloc(tracked, captracked * sizeof(*tracked));
        assert_non_null(tracked);
    }
    tracked[ntracked++] = fd;
}

void close_tracked(int fd)
{
    for (size_t i = 0; i < ntracked; i++)
        if (tracked[i] == fd) {
            tracked[i] = tracked[--ntracked];
            break;
        }
    close(fd);
}

void close_all_tracked(void)
{
    for (size_t i = 0; i < ntracked; i++)
        close(tracked[i]);
    ntracked = 0;
}

/* A TCP socket bound to 127.0.0.1:0, not listening. */
static int bound_loopback(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

int listen_loopback(int backlog, int *port)
{
    int fd = bound_loopback();
    assert_int_equal(listen(fd, backlog), 0);
    *port = local_port(fd);
    return fd;
}

int upstream_accept(int lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    int r = -1;
    for (int i = 0; i < 100 && r < 0; i++)
        if ((r = poll(&p, 1, WAIT_MS)) < 0 && errno != EINTR)
            break;
    if (r != 1)
        fail_msg("the daemon did not connect to the upstream within %d ms", WAIT_MS);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    set_timeouts(fd);
    return fd;
}

int reserve_port(void)
{
    int fd = bound_loopback();
    int port = local_port(fd);
    close(fd);
    return port;
}

int refusing_port(void)
{
    int fd = bound_loopback();
    track_fd(fd);
    int port = local_port(fd);
    /* It does refuse. */
    int c = connect_to(port);
    assert_int_equal(c, -1);
    assert_int_equal(errno, ECONNREFUSED);
    return port;
}

int silent_port(void)
{
    int port;
    int lfd = listen_loopback(0, &port);
    track_fd(lfd);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* Connect until one hangs (its SYN dropped): then the queue is full. */
    for (int i = 0; i < 8; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(fd >= 0);
        track_fd(fd);
        int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
        assert_true(r == 0 || errno == EINPROGRESS);
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (r < 0 && poll(&pfd, 1, 50) == 0)
            return port;
    }
    fail_msg("could not fill the accept queue of a backlog-0 listener");
    return -1;
}

/* ---- test servers ---------------------------------------------------------- */

/* Frees connection i of a test server's table (the last one moves in). */
static void tserver_drop(struct tserver *s, void **conns, int *fds, size_t *n,
                         size_t i)
{
    s->conn_free(s, conns[i]);
    close(fds[i]);
    atomic_fetch_sub(&s->open, 1);
    --*n;
    conns[i] = conns[*n];
    fds[i] = fds[*n];
}

/* The test server's thread. */
static void *tserver_run(void *arg)
{
    struct tserver *s = arg;
    void **conns = calloc(s->max, sizeof(*conns));
    int *fds = calloc(s->max, sizeof(*fds));
    struct pollfd *pfd = calloc(s->max + 1, sizeof(*pfd));
    size_t n = 0;
    if (conns == NULL || fds == NULL || pfd == NULL) {
        atomic_fetch_add(&s->errors, 1);
        atomic_store(&s->stop, true);
    }
    /* Bounded: it polls 10 ms at a time until told to stop. */
    while (!atomic_load(&s->stop)) {
        for (size_t i = 0; i < n; i++)
            pfd[i] = (struct pollfd){.fd = fds[i], .events = s->conn_events(s, conns[i])};
        pfd[n] = (struct pollfd){.fd = s->lfd, .events = n < s->max ? POLLIN : 0};
        size_t polled = n;
        if (poll(pfd, polled + 1, 10) <= 0)
            continue;
        for (size_t i = polled; i-- > 0;)
            if (pfd[i].revents != 0 && s->conn_service(s, conns[i]))
                tserver_drop(s, conns, fds, &n, i);
        if ((pfd[polled].revents & POLLIN) == 0)
            continue;
        for (int k = 0; k < 256 && n < s->max; k++) {
            int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                break;
            void *c = s->conn_open(s, fd);
            if (c == NULL) {
                close(fd);
                atomic_fetch_add(&s->errors, 1);
                continue;
            }
            atomic_fetch_add(&s->accepted, 1);
            atomic_fetch_add(&s->open, 1);
            conns[n] = c;
            fds[n++] = fd;
            if (s->conn_service(s, c))
                tserver_drop(s, conns, fds, &n, n - 1);
        }
    }
    while (n > 0)
        tserver_drop(s, conns, fds, &n, n - 1);
    free(conns);
    free(fds);
    free(pfd);
    return NULL;
}

void tserver_start(struct tserver *s, int backlog)
{
    assert_true(s->max > 0 && s->conn_open != NULL && s->conn_events != NULL &&
                s->conn_service != NULL && s->conn_free != NULL);
    s->lfd = listen_loopback(backlog, &s->port);
    set_nonblocking(s->lfd);
    assert_int_equal(pthread_create(&s->thread, NULL, tserver_run, s), 0);
}

void tserver_stop(struct tserver *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->lfd);
}
