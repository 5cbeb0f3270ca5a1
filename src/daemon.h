/*
 * The running daemon's shared state: its current generation of listeners
 * (listener.h), its workers (worker.h), its counters and what systemd
 * passed.  Workers share it read-mostly; what they change is atomic or
 * behind its own lock.
 */
#ifndef ECHOD_DAEMON_H
#define ECHOD_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "service.h"

struct generation;
struct stored_sock;
struct worker;

struct daemon {
    const char *config_path; /* absolute: the daemon leaves its directory */
    const char *config_name; /* as given with -c, for messages */
    const char *pidfile;     /* absolute, or NULL (none) */
    atomic_ullong reloads, reload_failures;
    bool verbose;                     /* -v: debug logging whatever the file says */
    _Atomic(struct generation *) gen; /* the current one */
    pthread_mutex_t gen_mu;           /* taking a reference to gen, against its swap */
    atomic_uint active;               /* open connections, whole daemon */
    struct worker *workers;
    unsigned nworkers;
    /* Draining: /health answers 503 from the start of a drain (SIGTERM,
     * SIGINT or the control socket's drain), while the daemon may still
     * accept for drain_delay; stopping follows. */
    atomic_bool draining;
    /* The control socket's drain was asked for (once: CONTROL_DRAIN_SIGNAL
     * follows). */
    atomic_bool drain_asked;
    atomic_bool stopping; /* stop accepting; drain */
    /* A new process serves the listening sockets (SIGUSR2, upgrade.h):
     * their Unix socket files are its own. */
    atomic_bool handed_over;
    atomic_bool closing; /* close whatever is left, now */
    /* Held around every accept and around shedding a client with a spare
     * descriptor, so that no worker's accept takes the slot another worker
     * just freed to shed with. */
    pthread_mutex_t accept_mu;
    struct passed_sock *passed; /* sockets systemd passed */
    size_t npassed;
    struct stored_sock *stored; /* what systemd's fd store holds (fdstore.h) */
    size_t nstored;
    atomic_ullong next_conn_id; /* the id of the next connection (from 1) */
    atomic_ullong reload_asked; /* reloads the control socket asked for */
};

#endif
