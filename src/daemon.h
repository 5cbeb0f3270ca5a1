/*
 * The running daemon's shared state: the listeners with their sockets and
 * counters, the upstreams with their health, and the workers.  Workers
 * share it read-mostly; what they change is atomic or behind its own lock.
 */
#ifndef ECHOD_DAEMON_H
#define ECHOD_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "addr.h"
#include "config.h"
#include "persource.h"
#include "service.h"

/* What a token points at: the first member of each registered thing. */
enum endpoint_kind { EP_LISTENER = 1, EP_CLIENT, EP_UPSTREAM };

/*
 * One address of an upstream, with its load and passive health: the
 * server's, so one object per address, shared by every listener that names
 * it and carried over a reload to the next generation while a listener
 * there names it.  The last listener that holds it frees it.
 */
struct upstream_addr {
    atomic_int refs; /* the listeners (of every generation) holding it */
    addr_t addr;
    char name[ADDR_STRLEN];
    atomic_uint active;             /* connections relayed to it now */
    _Atomic int64_t failed_until_ms; /* skipped until then after a failure */
};

/* One upstream of a proxy listener as the configuration names it: the unit
 * the balance modes choose among, with every address its name resolved to
 * (its connect candidates, in order). */
struct upstream {
    const char *text; /* as written in the file (the config's string) */
    struct upstream_addr **addrs;
    size_t naddrs;
    /* Per address: the listening socket of this generation it reaches when
     * that leads back to this listener (a loop, never connected), or NULL. */
    const struct listen_sock **loop_at;
};

/* One bound address of a listener, shared by every worker's poll. */
struct listen_sock {
    uint8_t kind; /* EP_LISTENER: first, the token points here */
    int fd;
    addr_t addr; /* as bound: the real port when 0 was asked */
    char name[ADDR_STRLEN];
    bool passed; /* from systemd: it owns the socket (and its file) */
    bool moved;  /* a reload handed the socket on to the next generation */
    bool reused; /* taken over from the previous generation */
    bool shares_port; /* SO_REUSEPORT set by a reload that moved its address */
    dev_t unix_dev;   /* the socket file it made, removed only if still it */
    ino_t unix_ino;
    struct listener *listener;
};

/* Why a client was refused, for the counters. */
enum refusal {
    REFUSED_ACL,             /* allow/deny */
    REFUSED_MAX_CONNECTIONS, /* the daemon's max_connections */
    REFUSED_LISTENER_MAX,    /* the listener's max_connections */
    REFUSED_PER_SOURCE,      /* max_per_source */
    REFUSED_PROXY_HEADER,    /* a bad PROXY header */
    REFUSED_NO_FD,           /* out of file descriptors */
    REFUSED_N
};

/* The names of the reasons, as metrics labels: "acl", "max_connections"... */
extern const char *const refusal_names[REFUSED_N];

/* What a listener keeps across reloads, found again by its name: its open
 * connections, per-source counts and counters. */
struct listener_state {
    atomic_int refs; /* the generations that have the listener */
    char name[72];
    atomic_uint active; /* open connections, for max_connections */
    struct persource persource;
    atomic_ullong accepted, bytes_in, bytes_out;
    atomic_ullong refused[REFUSED_N];
    atomic_ullong upstream_failures; /* connects refused or timed out */
    atomic_uint rr; /* round-robin cursor over its upstreams */
};

struct generation;

struct listener {
    const struct listener_config *cfg;
    struct generation *gen;
    struct listener_state *st;
    struct listen_sock *socks;
    size_t nsocks;
    struct upstream *upstreams;
    size_t nupstreams;
};

/*
 * One loaded configuration with its listeners.  A reload makes a new
 * generation; connections keep a reference to the one they were accepted
 * in, so that changed settings apply to new connections only, and the old
 * generation is freed when its last connection ends.
 */
struct generation {
    atomic_int refs; /* the daemon while it is current, and each connection */
    struct config *cfg;
    struct listener *listeners;
    size_t nlisteners;
};

struct worker;

struct daemon {
    const char *config_path; /* absolute: the daemon leaves its directory */
    const char *config_name; /* as given with -c, for messages */
    atomic_ullong reloads, reload_failures;
    bool verbose; /* -v: debug logging whatever the file says */
    _Atomic(struct generation *) gen; /* the current one */
    pthread_mutex_t gen_mu; /* taking a reference to gen, against its swap */
    atomic_uint active; /* open connections, whole daemon */
    struct worker *workers;
    unsigned nworkers;
    atomic_bool stopping; /* stop accepting; drain */
    atomic_bool closing;  /* close whatever is left, now */
    /* Held around every accept and around shedding a client with a spare
     * descriptor, so that no worker's accept takes the slot another worker
     * just freed to shed with. */
    pthread_mutex_t accept_mu;
    struct passed_sock *passed; /* sockets systemd passed */
    size_t npassed;
};

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t monotonic_ms(void);

#endif
