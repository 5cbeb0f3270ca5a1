/*
 * The daemon under test: starts the built mio-echod (by default the one
 * the test program names with echod_set_program(), under $top_builddir) in
 * the foreground with a generated configuration, reads its log, signals
 * and stops it; runs it to completion for its command-line behaviour.
 * Every wait is bounded.
 *
 * Nothing is left behind: each daemon dies with the test program
 * (PR_SET_PDEATHSIG), and at exit a daemon still running is killed and the
 * temporary directories are removed.
 */
#ifndef TESTS_COMMON_ECHOD_H
#define TESTS_COMMON_ECHOD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct echod;

/* How a daemon is started; a zeroed struct (or NULL) is the default. */
struct echod_opts {
    const char *program;  /* the binary; NULL: echod_program_path() */
    const char *dir;      /* where its configuration is written (kept); NULL:
                           * a fresh temporary directory, removed at exit */
    const char *log_path; /* a file that gets a copy of the log, or NULL */
    long nofile;          /* its soft RLIMIT_NOFILE; 0: ours */
    int start_ms;         /* how long to wait for "started"; 0: 5 s */
    /* Sockets passed as systemd does (descriptors 3.., LISTEN_FDS,
     * LISTEN_PID, LISTEN_FDNAMES=fdnames); we keep our copies. */
    const int *pass_fds;
    size_t npass; /* at most 64 */
    const char *fdnames;
};

/*
 * Writes `conf` (a libconfig text; every "@DIR@" in it is replaced by the
 * configuration's directory, for Unix sockets and pid files) and runs
 * "mio-echod -f -c FILE" with stderr captured.  Waits for the "started"
 * line; fails the test if the daemon exits first or does not start in
 * time (with its log printed).  A `log = {...}` group is not added: tests
 * that parse the log write target = "stderr".
 */
struct echod *echod_start_opts(const char *conf, const struct echod_opts *opts);
struct echod *echod_start(const char *conf);

/* echod_start() with the configuration formatted from fmt. */
__attribute__((format(printf, 1, 2))) struct echod *echod_startf(const char *fmt, ...);
__attribute__((format(printf, 1, 0))) struct echod *echod_startv(const char *fmt,
                                                                 va_list ap);

/* echod_start() with the daemon's soft RLIMIT_NOFILE set to `nofile`. */
struct echod *echod_start_nofile(const char *conf, long nofile);

/* The port of the n-th address (from 0) of listener `name`, read from its
 * "listener NAME: listening on ADDR" line; fails the test without one. */
int echod_port(struct echod *e, const char *name, int n);

/* The port of the metrics listener (stats.listen on 127.0.0.1, port 0),
 * read from its "metrics: listening on" line; fails the test without one. */
int echod_metrics_port(struct echod *e);
/* Waits up to `ms` for a log line (from the start of the log) containing
 * `needle`; returns a copy owned by the library, or NULL. */
const char *echod_wait_log(struct echod *e, const char *needle, int ms);

/* The n-th (from 0) log line so far containing `needle`, or NULL. */
const char *echod_log_line(struct echod *e, const char *needle, int n);

/* How many log lines so far contain `needle`. */
int echod_count_log(struct echod *e, const char *needle);

/* Waits up to ms until at least n log lines contain needle. */
bool echod_wait_count(struct echod *e, const char *needle, int n, int ms);

/* Waits 3 s at most for a log line containing the formatted needle, and
 * returns it (as echod_wait_log()); fails the test when none comes. */
__attribute__((format(printf, 2, 3))) const char *echod_must_log(struct echod *e,
                                                                 const char *fmt, ...);

/* Sends `sig` to the daemon (unless it has exited). */
void echod_signal(struct echod *e, int sig);

/* True while the daemon has not exited; its wait status once it has. */
bool echod_alive(struct echod *e);
int echod_status(struct echod *e);

/* SIGTERM, then waits up to `ms` for the exit; returns the exit status
 * (or 128 + signal), -1 when it did not exit in time (then it is killed). */
int echod_stop(struct echod *e, int ms);

/* Stops the daemon (5 s at most) and expects a clean exit (status 0). */
void echod_stop_ok(struct echod *e);

/* Waits up to ms for a daemon told to stop (or that handed over) to exit
 * on its own; fails the test unless it does, with status 0. */
void echod_expect_exit_ok(struct echod *e, int ms);

/* Stops every daemon still running, each within ms (a test's teardown). */
void echod_stop_all(int ms);

/* ---- SIGUSR2: the process a daemon starts to take over from it ---- */

/* Makes this test program a subreaper (prctl), so that the process a
 * daemon started on SIGUSR2, orphaned when that daemon exits, becomes our
 * child; for a group setup.  0, or -1 (errno set). */
int echod_adopt_successors(void);

/* The pid in the pid file at path, or 0. */
pid_t echod_pidfile_pid(const char *path);

/* Waits up to ms for the pid file at path to name a process other than
 * `old`: returns that pid, stopped with the test's daemons from then on
 * (echod_stop_all(), and at exit), or 0. */
pid_t echod_successor(pid_t old, const char *pidfile, int ms);

/* SIGTERM to a successor (our child: echod_adopt_successors()), then its
 * exit code within ms; -1, after SIGKILL, when it does not exit. */
int echod_stop_successor(pid_t pid, int ms);

/* The configuration file the daemon was started with ("-c FILE"). */
const char *echod_conf_path(struct echod *e);

/* conf_rewrite() (files.h) of the file the daemon was started with. */
__attribute__((format(printf, 2, 3))) void echod_rewrite_conf(struct echod *e,
                                                              const char *fmt, ...);

/* SIGHUP, then waits up to ms for one more "notice: reloaded FILE" line;
 * fails the test when it does not come, or "reload failed" does. */
void echod_reload_ok(struct echod *e, int ms);

/* The daemon's pid, resident memory in KiB, and open descriptors. */
pid_t echod_pid(struct echod *e);
long echod_rss_kib(struct echod *e);
int echod_fd_count(struct echod *e);

/* The daemon's open pipe descriptors (both ends count). */
int echod_pipe_count(struct echod *e);

/* Waits up to ms for the daemon's descriptor count (or pipe descriptor
 * count) to be `want`. */
bool echod_wait_fd_count(struct echod *e, int want, int ms);
bool echod_wait_pipe_count(struct echod *e, int want, int ms);

/* A listener's counters, from the line SIGUSR1 makes it log. */
struct echod_counters {
    long long open, accepted, refused, in, out;
};

/* SIGUSR1, then waits up to ms for listener's new "listener NAME: open="
 * line: its counters in *c and the line in *line (owned by the library).
 * False when none came. */
bool echod_counters_within(struct echod *e, const char *listener, int ms,
                           struct echod_counters *c, const char **line);

/* echod_counters_within() with 3 s, failing the test when no line comes. */
struct echod_counters echod_counters_now(struct echod *e, const char *listener);

/*
 * The counters once no connection is open: asked again (every 50 ms, 2 s
 * at most) while open= is not 0.  The daemon closes a connection's
 * sockets before it counts the connection out, so a client that has seen
 * its EOF may still find it counted open, and its bytes missing, for a
 * moment.
 */
struct echod_counters echod_counters_settled(struct echod *e, const char *listener);

/* A number after `key` in line (e.g. " in="), or -1. */
long long log_field(const char *line, const char *key);

/* Fails the test unless the access line ends with " reason=REASON". */
void expect_access_reason(const char *line, const char *reason);

#endif
