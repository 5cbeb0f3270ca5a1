/*
 * Test upstreams: a test server (tserver.h) that echoes, or sends a slice
 * of the pattern (pattern.h) and reads what it is sent, checking it.  Its
 * thread never fails the test: it counts, and the test checks the counts.
 */
#ifndef TESTS_COMMON_UPSTREAM_H
#define TESTS_COMMON_UPSTREAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "tserver.h"

enum up_mode {
    UP_ECHO,       /* sends back what it receives; closes after the FIN */
    UP_BANNER,     /* sends nbytes first (it speaks first), then echoes */
    UP_REPLY_EOF,  /* reads (checked) until the FIN, then sends nbytes, closes */
    UP_SHUT_FIRST, /* sends nbytes, shuts its write side, reads (checked) to
                    * the FIN, then closes */
    UP_SEND_CLOSE, /* sends nbytes and closes (reads nothing) */
};

struct upsrv;

/* What an upstream does, and its limits; zeroes are the defaults. */
struct up_conf {
    enum up_mode mode;
    size_t nbytes;        /* it sends the pattern from off + k * stride ... */
    uint64_t off, stride; /* ... on its k-th connection (from 0) */
    size_t max;           /* connections at once (0: 64) */
    int backlog;          /* its listening socket's (0: 64) */
    const char *name;     /* for on_error */
    const char *ip;       /* where it listens (IPv4); NULL: 127.0.0.1 */
    int port;             /* on which port; 0: one the kernel picks */
    /* Called by the server's thread on each socket error (a reset too),
     * with what failed ("send", "recv", "shutdown") and the errno. */
    void (*on_error)(const struct upsrv *u, const char *what, int err);
};

struct upsrv {
    struct tserver srv; /* the thread and its counters; srv.errors counts
                         * socket errors other than resets */
    struct up_conf conf;
    atomic_int resets;     /* connections ended by a reset (ECONNRESET or
                            * EPIPE: the daemon gave up on them) */
    atomic_int eofs;       /* FINs received */
    atomic_int mismatches; /* reads that were not the pattern */
    atomic_ullong last_rx; /* bytes of the last connection that got a FIN */
};

/* Starts an upstream on 127.0.0.1:0 (or conf's ip:port; the port in
 * srv.port); up_stop_all() stops it if up_stop() does not. */
struct upsrv *up_start(const struct up_conf *conf);

/* Stops the upstream and frees it. */
void up_stop(struct upsrv *u);

/* Stops every upstream still running (a test's teardown). */
void up_stop_all(void);

/* Its socket errors, resets included. */
int up_failures(struct upsrv *u);

#endif
