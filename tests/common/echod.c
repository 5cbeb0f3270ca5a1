/*
 * The daemon under test (see echod.h): runs the built mio-echod in the
 * foreground with a generated configuration, captures its stderr into a
 * growing buffer (read by a thread, so the daemon never blocks on a full
 * pipe), and answers questions about its log, its descriptors and its
 * memory with bounded waits.
 *
 * Nothing is left behind: each daemon is started with PR_SET_PDEATHSIG
 * (run.c), so it dies with the test program even when that is killed; an
 * atexit() handler kills a daemon a failed test left running (files.c
 * removes the temporary directories).
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
#include <limits.h>
#include <pthread.h>
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

/* How long echod_start() waits for the "started" line by default. */
#define START_MS 5000
/* How long echod_must_log() and echod_counters_now() wait. */
#define WAIT_MS 3000

struct echod {
    pid_t pid;
    bool exited; /* reaped: status is valid */
    bool killed; /* we had to SIGKILL it */
    int status;  /* as from waitpid */
    int errfd;   /* the read end of its stderr */
    FILE *copy;  /* the log's copy (echod_opts.log_path), or NULL */
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
static bool atexit_done;

/* The processes daemons started on SIGUSR2 that echod_successor() found
 * and that are not known to be gone (0: a free slot). */
static pid_t successors[16];

/* ---- clean-up at exit ------------------------------------------------- */

static void reap(struct echod *e, int options);
static bool reader_finish(struct echod *e, int ms);

static void cleanup_at_exit(void)
{
    for (size_t i = 0; i < ARRAY_LEN(successors); i++)
        if (successors[i] > 0 && kill(successors[i], 0) == 0) {
            fprintf(stderr, "test library: killing mio-echod (pid %d) left running\n",
                    (int)successors[i]);
            kill(successors[i], SIGKILL);
            (void)waitpid(successors[i], NULL, 0);
        }
    for (struct echod *e = daemons; e != NULL; e = e->next) {
        if (!e->exited) {
            reap(e, WNOHANG);
            if (!e->exited) {
                fprintf(stderr, "test library: killing mio-echod (pid %d) left running\n",
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
        if (e->copy != NULL)
            fclose(e->copy);
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        free(e);
    }
}

static void register_cleanup(void)
{
    if (atexit_done)
        return;
    atexit_done = true;
    atexit(cleanup_at_exit);
}

/* ---- starting and watching the daemon ---------------------------------- */

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
        if (e->copy != NULL) {
            fwrite(buf, 1, (size_t)n, e->copy);
            fflush(e->copy);
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
    fprintf(stderr, "---- mio-echod log (pid %d) ----\n%s---- end of log ----\n",
            (int)e->pid, e->log != NULL ? e->log : "");
    pthread_mutex_unlock(&e->mu);
}

/* Fails the test unless the start line names the backend MIO_BACKEND asks
 * for (tests/on-backend.sh sets it), when conf leaves the poller to it: a
 * run on a backend proves it ran there. */
static void check_backend(struct echod *e, const char *conf)
{
    const char *want = getenv("MIO_BACKEND");
    if (want == NULL || want[0] == '\0' || strstr(conf, "poller") != NULL)
        return;
    char needle[64];
    snprintf(needle, sizeof(needle), ", %s backend", want);
    pthread_mutex_lock(&e->mu);
    size_t len;
    const char *line = find_line(e, " started: ", 0, &len);
    bool ok = line != NULL && memmem(line, len, needle, strlen(needle)) != NULL;
    pthread_mutex_unlock(&e->mu);
    if (!ok) {
        print_log(e);
        test_fail("MIO_BACKEND=%s, but the start line does not name it", want);
    }
}

struct echod *echod_start_opts(const char *conf, const struct echod_opts *opts)
{
    static const struct echod_opts defaults;
    if (opts == NULL)
        opts = &defaults;
    int start_ms = opts->start_ms > 0 ? opts->start_ms : START_MS;
    register_cleanup();
    struct echod *e = calloc(1, sizeof(*e));
    if (e == NULL)
        test_fail("out of memory");
    e->errfd = -1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->cv, &ca);
    pthread_condattr_destroy(&ca);
    e->exited = true; /* nothing to wait for or kill until it runs */

    const char *dir = opts->dir != NULL ? opts->dir : test_tmpdir();
    conf_write_in(dir, conf, e->conf, sizeof(e->conf));
    if (opts->log_path != NULL && (e->copy = fopen(opts->log_path, "we")) == NULL)
        test_fail("cannot create %s: %s", opts->log_path, strerror(errno));

    char prog[PATH_MAX];
    if (opts->program != NULL)
        snprintf(prog, sizeof(prog), "%s", opts->program);
    else
        echod_program_path(prog, sizeof(prog));
    if (access(prog, X_OK) != 0)
        test_fail("cannot run %s: %s (is top_builddir set?)", prog, strerror(errno));
    char *argv[] = {prog, (char *)"-f", (char *)"-c", e->conf, NULL};
    char **envp = echod_environment(opts->npass > 0 ? "LISTEN_" : NULL, 3);
    /* Written by the child (LISTEN_PID); one daemon is started at a time. */
    static char listen_fds[32], listen_pid[48], listen_names[4096];
    if (opts->npass > 0) {
        size_t k = 0;
        while (envp[k] != NULL)
            k++;
        snprintf(listen_fds, sizeof(listen_fds), "LISTEN_FDS=%zu", opts->npass);
        snprintf(listen_pid, sizeof(listen_pid), "LISTEN_PID=");
        snprintf(listen_names, sizeof(listen_names), "LISTEN_FDNAMES=%s",
                 opts->fdnames != NULL ? opts->fdnames : "");
        envp[k++] = listen_fds;
        envp[k++] = listen_pid;
        envp[k++] = listen_names;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        free(envp);
        test_fail("pipe: %s", strerror(errno));
    }
    e->pid = echod_spawn_fds(argv, envp, p[1], (rlim_t)opts->nofile, opts->pass_fds,
                             opts->npass, opts->npass > 0 ? listen_pid : NULL);
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
        test_fail("pthread_create: %s", strerror(err));
    }
    e->reader_running = true;

    /* Wait for "started", or for the end of its stderr (it exited). */
    struct timespec until = deadline_ts(start_ms);
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
    if (started) {
        check_backend(e, conf);
        return e;
    }
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
        test_fail("mio-echod exited before it started (status 0x%x)", e->status);
    test_fail("mio-echod did not start within %d ms", start_ms);
}

struct echod *echod_start(const char *conf)
{
    return echod_start_opts(conf, NULL);
}

struct echod *echod_startv(const char *fmt, va_list ap)
{
    char conf[8192];
    xvsnprintf(conf, sizeof(conf), fmt, ap);
    return echod_start(conf);
}

struct echod *echod_startf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct echod *e = echod_startv(fmt, ap);
    va_end(ap);
    return e;
}

struct echod *echod_start_nofile(const char *conf, long nofile)
{
    struct echod_opts opts = {.nofile = nofile};
    return echod_start_opts(conf, &opts);
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
        test_fail("no port for address %d of listener %s in the log", n, name);
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
    pthread_mutex_lock(&e->mu);
    const char *found = NULL;
    size_t len = 0;
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
    pthread_mutex_lock(&e->mu);
    size_t len = 0;
    const char *found = find_line(e, needle, n, &len);
    const char *copy = found != NULL ? keep_copy(e, found, len) : NULL;
    pthread_mutex_unlock(&e->mu);
    return copy;
}

int echod_count_log(struct echod *e, const char *needle)
{
    pthread_mutex_lock(&e->mu);
    int count = 0;
    size_t len;
    while (find_line(e, needle, count, &len) != NULL)
        count++;
    pthread_mutex_unlock(&e->mu);
    return count;
}

bool echod_wait_count(struct echod *e, const char *needle, int n, int ms)
{
    struct timespec until = deadline_ts(ms < 0 ? 0 : ms);
    pthread_mutex_lock(&e->mu);
    bool reached = false;
    size_t len;
    for (int i = 0; i < 1000000; i++) {
        reached = n <= 0 || find_line(e, needle, n - 1, &len) != NULL;
        if (reached || e->eof ||
            pthread_cond_timedwait(&e->cv, &e->mu, &until) == ETIMEDOUT)
            break;
    }
    if (!reached)
        reached = find_line(e, needle, n - 1, &len) != NULL;
    pthread_mutex_unlock(&e->mu);
    return reached;
}

void echod_signal(struct echod *e, int sig)
{
    reap(e, WNOHANG);
    if (!e->exited)
        kill(e->pid, sig);
}

bool echod_alive(struct echod *e)
{
    reap(e, WNOHANG);
    return !e->exited;
}

int echod_status(struct echod *e)
{
    return e->status;
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

void echod_expect_exit_ok(struct echod *e, int ms)
{
    for (int i = 0; i < ms / 20 && echod_alive(e); i++)
        sleep_ms(20);
    if (echod_alive(e))
        test_fail("mio-echod (pid %d) did not exit within %d ms", (int)e->pid, ms);
    CHECK_EQ(exit_code(echod_status(e)), 0);
}

void echod_stop_all(int ms)
{
    for (size_t i = 0; i < ARRAY_LEN(successors); i++)
        if (successors[i] > 0)
            (void)echod_stop_successor(successors[i], ms);
    for (struct echod *e = daemons; e != NULL; e = e->next)
        (void)echod_stop(e, ms);
}

/* ---- SIGUSR2: the process that takes over ---------------------------- */

int echod_adopt_successors(void)
{
    return prctl(PR_SET_CHILD_SUBREAPER, 1);
}

pid_t echod_pidfile_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f != NULL) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t)pid;
}

pid_t echod_successor(pid_t old, const char *pidfile, int ms)
{
    for (int i = 0; i <= ms / 20; i++) {
        pid_t p = echod_pidfile_pid(pidfile);
        if (p > 0 && p != old) {
            register_cleanup();
            for (size_t k = 0; k < ARRAY_LEN(successors); k++)
                if (successors[k] == p || successors[k] == 0) {
                    successors[k] = p;
                    break;
                }
            return p;
        }
        sleep_ms(20);
    }
    return 0;
}

int echod_stop_successor(pid_t pid, int ms)
{
    kill(pid, SIGTERM);
    int status = 0, code = -1;
    for (int i = 0; i <= ms / 20; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            code = r == pid ? exit_code(status) : -1;
            break;
        }
        sleep_ms(20);
    }
    if (code < 0 && waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        (void)waitpid(pid, &status, 0);
    }
    for (size_t k = 0; k < ARRAY_LEN(successors); k++)
        if (successors[k] == pid)
            successors[k] = 0;
    return code;
}

const char *echod_conf_path(struct echod *e)
{
    return e->conf;
}

void echod_rewrite_conf(struct echod *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conf_vrewrite(e->conf, fmt, ap);
    va_end(ap);
}

void echod_reload_ok(struct echod *e, int ms)
{
    char ok[PATH_MAX + 32];
    snprintf(ok, sizeof(ok), "notice: reloaded %s", e->conf);
    int n = echod_count_log(e, ok), bad = echod_count_log(e, "reload failed");
    echod_signal(e, SIGHUP);
    if (!echod_wait_count(e, ok, n + 1, ms)) {
        const char *why = echod_wait_log(e, "reload failed", 0);
        test_fail("no \"%s\" line within %d ms after SIGHUP (%s)", ok, ms,
                  why != NULL ? why : "is reloading implemented?");
    }
    CHECK_EQ(echod_count_log(e, "reload failed"), bad);
}

pid_t echod_pid(struct echod *e)
{
    return e->pid;
}

long echod_rss_kib(struct echod *e)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)e->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    char line[256];
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

/* ---- the daemon: checks that fail the test ------------------------------- */

const char *echod_must_log(struct echod *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char needle[1024];
    vsnprintf(needle, sizeof(needle), fmt, ap);
    va_end(ap);
    const char *line = echod_wait_log(e, needle, WAIT_MS);
    if (line == NULL)
        test_fail("no log line containing \"%s\" within %d ms", needle, WAIT_MS);
    return line;
}

void echod_stop_ok(struct echod *e)
{
    CHECK_EQ(echod_stop(e, 5000), 0);
}

/* Waits up to ms for the daemon's count of descriptors of `kind` (as
 * count_fds()) to be want. */
static bool wait_fds(struct echod *e, const char *kind, int want, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 10000; i++) {
        if (count_fds(e, kind) == want)
            return true;
        if (ms_now() >= until)
            return false;
        sleep_ms(2);
    }
    return false;
}

bool echod_wait_fd_count(struct echod *e, int want, int ms)
{
    return wait_fds(e, "", want, ms);
}

bool echod_wait_pipe_count(struct echod *e, int want, int ms)
{
    return wait_fds(e, "pipe:", want, ms);
}

long long log_field(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    return p != NULL ? strtoll(p + strlen(key), NULL, 10) : -1;
}

void expect_access_reason(const char *line, const char *reason)
{
    char r[64];
    snprintf(r, sizeof(r), " reason=%s", reason);
    const char *at = strstr(line, r);
    if (at == NULL || at[strlen(r)] != '\0')
        test_fail("access line without \"%s\" at its end: %s", r, line);
}

bool echod_counters_within(struct echod *e, const char *listener, int ms,
                           struct echod_counters *c, const char **line)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "listener %s: open=", listener);
    int before = echod_count_log(e, needle);
    echod_signal(e, SIGUSR1);
    if (!echod_wait_count(e, needle, before + 1, ms))
        return false;
    const char *l = echod_log_line(e, needle, before);
    *c = (struct echod_counters){log_field(l, " open="), log_field(l, " accepted="),
                                 log_field(l, " refused="), log_field(l, " in="),
                                 log_field(l, " out=")};
    if (line != NULL)
        *line = l;
    return true;
}

struct echod_counters echod_counters_now(struct echod *e, const char *listener)
{
    struct echod_counters c;
    if (!echod_counters_within(e, listener, WAIT_MS, &c, NULL))
        test_fail("no \"listener %s: open=\" line after SIGUSR1", listener);
    return c;
}

struct echod_counters echod_counters_settled(struct echod *e, const char *listener)
{
    struct echod_counters c = echod_counters_now(e, listener);
    for (int i = 0; i < 40 && c.open != 0; i++) {
        sleep_ms(50);
        c = echod_counters_now(e, listener);
    }
    return c;
}

int echod_metrics_port(struct echod *e)
{
    const char *line = echod_must_log(e, "metrics: listening on 127.0.0.1:");
    int port = atoi(strstr(line, "127.0.0.1:") + strlen("127.0.0.1:"));
    if (port <= 0 || port > 65535)
        test_fail("no port in \"%s\"", line);
    return port;
}
