/*
 * The metrics listener (the stats group): a thread with its own poll that
 * answers GET /metrics with the daemon's counters in the Prometheus text
 * format, version 0.0.4, and HEAD with the same head.  A client that
 * stats.allow/deny refuse is closed as soon as it is accepted.  Each
 * connection gets one answer ("Connection: close"), then a lingering
 * close: the write side is shut down after the answer, and what the client
 * sends is read and thrown away (METRICS_DISCARD_MAX bytes at most) until
 * it closes.  A request head must arrive, and the answer be taken and the
 * connection closed, within METRICS_DEADLINE_MS each.  At most
 * METRICS_MAX_CONNECTIONS are open at a time: one more closes the oldest
 * connection without a complete request head, else the oldest whose answer
 * is all queued, else it is closed itself.
 */
#ifndef ECHOD_METRICS_H
#define ECHOD_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon.h"
#include "loop.h"

#define METRICS_MAX_CONNECTIONS 64
#define METRICS_DEADLINE_MS 5000
#define METRICS_DISCARD_MAX ((size_t)1024 * 1024)

/*
 * Binds the stats address of d's current configuration and serves it on
 * `loop` (the admin thread's, before it starts); does nothing when the
 * configuration has no stats group.  0, or -errno with *bound saying
 * whether the address was bound (then it could not be watched) or not
 * (metrics_address() names it).
 */
int metrics_start(struct daemon *d, struct loop *loop, bool *bound);

/*
 * The exposition of d's counters (exposition.h): a NUL-terminated text
 * (malloc'd) of *len bytes, with each family's "# HELP" and "# TYPE" lines
 * when `comments`, else its samples only; NULL when out of memory.  Any
 * thread may call it (the metrics listener's, the control socket's).
 */
char *metrics_render(struct daemon *d, bool comments, size_t *len);

/* The address metrics are served on (as bound, once it is). */
const char *metrics_address(void);

/* The listening socket, for an upgrade to hand over (-1: none). */
int metrics_listen_fd(void);

/* Stops accepting: a new process serves the socket now (upgrade.h).  From
 * any thread; done on the admin thread. */
void metrics_handover(void);

/* Closes the listener and its connections, once the admin thread has
 * stopped; a no-op when metrics_start() started nothing. */
void metrics_stop(void);

#endif
