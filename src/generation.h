/*
 * Listeners and their generations.  A generation is one loaded
 * configuration with its listeners and their sockets; a reload opens the
 * next one, which takes over the sockets of addresses that stay.
 */
#ifndef ECHOD_GENERATION_H
#define ECHOD_GENERATION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "addr.h"
#include "admission.h"
#include "config.h"
#include "daemon.h"
#include "histogram.h"
#include "loop.h"
#include "persource.h"
#include "tls.h"
#include "udp.h"
#include "upstream.h"

/* One bound address of a listener: a TCP or Unix one shared by every
 * worker's poll; a UDP one served by one worker (udp.h). */
struct listen_sock {
    struct handler h; /* its token: accept (accept.c); unused for UDP */
    int fd;
    bool udp;    /* a datagram socket */
    addr_t addr; /* as bound: the real port when 0 was asked */
    char name[ADDR_STRLEN];
    bool passed;      /* from systemd: it owns the socket (and its file) */
    bool restored;    /* the daemon's own, handed back by systemd's fd store */
    bool moved;       /* a reload handed the socket on to the next generation */
    bool reused;      /* taken over from the previous generation */
    bool shares_port; /* SO_REUSEPORT set by a reload that moved its address */
    bool reuse_port;  /* SO_REUSEPORT for the listener's reuse_port: for good */
    dev_t unix_dev;   /* the socket file it made, removed only if still it */
    ino_t unix_ino;
    struct listener *listener;
};

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
    atomic_ullong tls_handshakes[TLS_SIDE_N];
    atomic_ullong tls_failures[TLS_SIDE_N][TLS_FAIL_N];
    atomic_uint rr; /* round-robin cursor over its upstreams */
    /* UDP: datagrams from and to clients, and those dropped, by reason */
    atomic_ullong dgrams_in, dgrams_out;
    atomic_ullong udp_dropped[UDP_DROP_N];
    /* The time relays' upstreams took to be ready (connect, and TLS
     * handshake with upstream_tls), and the life of every connection (UDP:
     * flow), from its accept to its end. */
    struct histogram connect_time, duration;
};

struct generation;

/* A listener of one generation: its settings, sockets and upstreams. */
struct listener {
    const struct listener_config *cfg;
    struct generation *gen;
    struct listener_state *st;
    struct listen_sock *socks;
    size_t nsocks;
    struct upstream *upstreams; /* its own, then each sni_route's */
    size_t nupstreams;
    struct upstream_pool *pools; /* [0] its own upstreams, [1 + i] route i's */
    size_t npools;
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
    bool resolved; /* upstream names have the resolver's addresses */
    /* The generations alive (generation_each()), newest first. */
    struct generation *older, *newer;
    bool live; /* in that list */
};

/* Why a generation could not be opened, for the caller's message
 * (generation_error_text()). */
struct generation_error {
    int err;                /* -errno: what failed (-ENOMEM: memory) */
    const char *listener;   /* the listener whose address failed, or NULL */
    addr_t addr;            /* that address; or that of passed */
    const char *in_the_way; /* at a Unix path: what is there (not a socket) */
    const char *passed;     /* the name of a socket systemd passed that
                               matches no listen address, or NULL */
    bool reuse_port;        /* the listener's reuse_port, for the message */
};

/*
 * Opens the generation for cfg (with the addresses the resolver has for
 * the upstream names of relays with `resolve`, when `resolved`).  Each listen address
 * takes over the socket of an equal address in `old` (no rebind, nothing queued is lost),
 * or a socket systemd passed for that listener, or is bound anew, and each new address is
 * logged.  Listener state (open connections, per-source counts, counters) carries over by
 * name.  On success it owns cfg; NULL with *e saying why when an address cannot be bound,
 * and then old is as it was and cfg is the caller's.  e's strings live as long as cfg and
 * d do.
 */
struct generation *generation_open(struct daemon *d, struct config *cfg,
                                   struct generation *old, bool resolved,
                                   struct generation_error *e);

/* The one-line message for e, e.g. "listener echo: cannot listen on
 * 127.0.0.1:7007: Address already in use". */
void generation_error_text(const struct generation_error *e, char *buf, size_t len);

/* Closes the sockets g still owns (those not handed on to a newer
 * generation), removing the files of its Unix sockets; for a generation
 * that no worker watches any more.  Sockets systemd passed are only given
 * back to d->passed (closed at exit).  UDP sockets only when `udp`: when
 * the daemon stops, flows still drain through theirs. */
void generation_close_sockets(struct daemon *d, struct generation *g, bool udp);

/* Gives the Unix socket files `g` made to the user the daemon is about to
 * become, so that they are that user's, like those a reload makes later;
 * a failure is logged, not fatal. */
void generation_give_sockets(struct generation *g, uid_t uid, gid_t gid);

void generation_ref(struct generation *g);

/* A reference to the daemon's current generation, for a thread other than
 * the one that reloads; drop it with generation_unref(). */
struct generation *generation_current(struct daemon *d);

/* Makes g the daemon's current generation (the reloading thread). */
void generation_publish(struct daemon *d, struct generation *g);

/* Calls each(g, arg) for every generation alive: the current one and the
 * older ones connections still hold, newest first; none is freed while it
 * runs (each() must not drop a reference). */
void generation_each(void (*each)(const struct generation *g, void *arg), void *arg);

/* Drops a reference; the last one frees the generation (not its sockets). */
void generation_unref(struct generation *g);

#endif
