/*
 * Programs a test starts other than through echod_start(): the daemon
 * under socket activation or in the background, systemd-socket-activate,
 * real clients and servers (iperf3, dig, dnsmasq).  Each runs with stdin
 * from /dev/null and its stdout and stderr appended to a file of its own,
 * dies with the test program, and is stopped, each by its own pid, by
 * proc_stop_all().  Every wait is bounded.
 */
#ifndef TESTS_COMMON_PROC_H
#define TESTS_COMMON_PROC_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A program the test started; owned by the library (proc_stop_all()
 * frees it). */
struct proc {
    pid_t pid;
    bool exited; /* reaped: status is its wait status (-1: lost) */
    int status;
    char name[32];      /* argv[0]'s last component, for messages */
    char log[PATH_MAX]; /* the file its stdout and stderr go to */
};

/* The path of installed program `name` (into buf): the first place of
 * $PATH, /usr/local/sbin, /usr/sbin, /sbin, /usr/bin and /bin where it is
 * executable; NULL when it is nowhere. */
const char *proc_find_program(const char *name, char *buf, size_t len);

/* Runs argv (argv[0] a path) with no descriptor but 0, 1 and 2 open and
 * our environment without JOURNAL_STREAM and LISTEN_*; fails the test
 * when it cannot (at most 8 at a time). */
struct proc *proc_start(char *const argv[]);

/*
 * proc_start() in directory cwd (NULL: ours); with passfd >= 0, the child
 * gets that socket as descriptor 3 the way systemd passes one
 * (LISTEN_FDS=1, LISTEN_PID, LISTEN_FDNAMES=fdname), while we keep our
 * copy open, as systemd does.
 */
struct proc *proc_start_in(char *const argv[], const char *cwd, int passfd,
                           const char *fdname);

/* Reaps p if it has exited (options: WNOHANG or 0). */
void proc_reap(struct proc *p, int options);

/* The output so far (malloc'd, NUL-terminated). */
char *proc_output(struct proc *p);

/* How many times needle occurs in the output. */
int proc_count(struct proc *p, const char *needle);

/* Whether needle is in the output. */
bool proc_has(struct proc *p, const char *needle);

/* Prints the output on stderr, for a failing test. */
void proc_print(struct proc *p);

/* Fails the test, printing the output, when needle is not in it. */
void proc_expect(struct proc *p, const char *needle);

/* Waits up to ms for one of the needles (NULL-terminated) in the output;
 * returns its index, or -1 (timeout, or, unless `after_exit` (a daemon in
 * the background writes on), the program exited without it). */
int proc_wait_output(struct proc *p, int ms, const char *const needles[],
                     bool after_exit);

/* proc_wait_output() until the program exits. */
int proc_wait_any(struct proc *p, int ms, const char *const needles[]);

/* Waits up to ms for needle in the output; false when it does not come,
 * or the program exits without it. */
bool proc_wait_for(struct proc *p, const char *needle, int ms);

/* Waits up to ms for the exit: its code (128 + signal), or -1. */
int proc_wait_exit(struct proc *p, int ms);

/* SIGTERM, then waits up to ms for the exit code; SIGKILL after that
 * (-1 then). */
int proc_stop(struct proc *p, int ms);

/* proc_stop() on every program still running, ms each, and frees them
 * all (a test's teardown; at exit). */
void proc_stop_all(int ms);

#endif
