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

#include "addr.h"
#include "config.h"
#include "persource.h"
#include "service.h"

/* What a token points at: the first member of each registered thing. */
enum endpoint_kind { EP_LISTENER = 1, EP_CLIENT, EP_UPSTREAM };

/* One upstream of a proxy listener, with its passive health. */
struct upstream {
    addr_t addr;
    char name[ADDR_STRLEN];
    atomic_uint active;             /* connections relayed to it now */
    _Atomic int64_t failed_until_ms; /* skipped until then after a failure */
};

/* One bound address of a listener, shared by every worker's poll. */
struct listen_sock {
    uint8_t kind; /* EP_LISTENER: first, the token points here */
    int fd;
    addr_t addr; /* as bound: the real port when 0 was asked */
    char name[ADDR_STRLEN];
    bool passed; /* from systemd: it owns the socket (and its file) */
    struct listener *listener;
};

struct listener {
    const struct listener_config *cfg;
    struct listen_sock *socks;
    size_t nsocks;
    struct upstream *upstreams;
    size_t nupstreams;
    atomic_uint rr;          /* round-robin cursor */
    atomic_uint active;      /* open connections, for max_connections */
    struct persource persource;
    atomic_ullong accepted, refused, bytes_in, bytes_out;
};

struct worker;

struct daemon {
    struct config *cfg;
    struct listener *listeners;
    size_t nlisteners;
    atomic_uint active; /* open connections, whole daemon */
    struct worker *workers;
    unsigned nworkers;
    atomic_bool stopping; /* stop accepting; drain */
    atomic_bool closing;  /* close whatever is left, now */
    struct passed_sock *passed; /* sockets systemd passed */
    size_t npassed;
};

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t monotonic_ms(void);

#endif
