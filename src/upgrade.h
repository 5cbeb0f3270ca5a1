/*
 * Restarting without systemd (SIGUSR2): the running daemon starts its own
 * binary again, by the same path, with every listening socket (and the
 * stats and control sockets) inherited and named in the environment, as
 * systemd passes them (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID), and a pipe
 * (UPGRADE_FD_ENV) on which the new process says "ready" once it serves,
 * or why it could not start.  Only then does the old one hand over and
 * drain; a new process that fails leaves it serving.
 */
#ifndef ECHOD_UPGRADE_H
#define ECHOD_UPGRADE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct daemon;

/* The environment variable naming the new process's end of the pipe. */
#define UPGRADE_FD_ENV "MIO_ECHOD_UPGRADE_FD"

/* The names the stats and control sockets are passed under ('@' is not
 * allowed in a listener's name). */
#define UPGRADE_METRICS_NAME "@metrics"
#define UPGRADE_CONTROL_NAME "@control"

/* How long the new process has to report ready before it is killed. */
#define UPGRADE_READY_TIMEOUT_MS 60000

/* An upgrade under way, in the old process. */
struct upgrade {
    pid_t pid;        /* the new process; 0 when none */
    int fd;           /* the pipe's read end */
    int64_t deadline; /* loop_clock_ms() by which it must be ready */
    char said[1024];  /* what it wrote so far */
    size_t len;
};

/* Remembers how to start this binary again: its path (from /proc/self/exe
 * where there is one, else argv0), the configuration's absolute path, -f
 * and -v.  0 or -errno. */
int upgrade_init(const char *argv0, const char *config_path, bool foreground,
                 bool verbose);

/* Frees what upgrade_init() kept. */
void upgrade_free(void);

/* In a process started by an upgrade: takes the pipe named by
 * UPGRADE_FD_ENV (and unsets it).  Whether this process was so started. */
bool upgrade_child_take(void);

/* Tells the old process that this one serves. */
void upgrade_child_ready(void);

/* Tells the old process why this one could not start (once; no-op when not
 * started by an upgrade). */
void upgrade_child_failed(const char *why);

/* Takes the stats and control sockets out of what was passed (they are no
 * listener's), to be claimed by upgrade_inherited(). */
void upgrade_adopt(struct daemon *d);

/* The socket passed under `name` (UPGRADE_METRICS_NAME...), now the
 * caller's, or -1. */
int upgrade_inherited(const char *name);

/* Closes the inherited sockets nobody claimed (the address changed). */
void upgrade_close_unclaimed(void);

/* Starts the new process with d's sockets.  0, with u filled, or -errno
 * with the reason in why. */
int upgrade_start(struct daemon *d, struct upgrade *u, int metrics_fd, int control_fd,
                  char *why, size_t len);

/* Looks at an upgrade under way: 1 when the new process is ready, 0 while
 * it starts, -1 when it failed (exited, could not be executed, or was not
 * ready in time and was killed), with the reason in why.  u->pid is 0 once
 * it is over either way. */
int upgrade_poll(struct upgrade *u, char *why, size_t len);

#endif
