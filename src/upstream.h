/*
 * Choosing an upstream for a relayed connection (round-robin,
 * least-connections, source-hash) and its passive health: an upstream that
 * refused or timed out is skipped for fail_timeout.
 */
#ifndef ECHOD_UPSTREAM_H
#define ECHOD_UPSTREAM_H

#include "conn.h"
#include "daemon.h"

struct worker;

/*
 * The upstream for the next connect attempt of c.  The first attempt
 * starts where the balance mode says; each retry goes on from there to the
 * next healthy upstream.  When every upstream is marked failed they are
 * tried anyway, in the same order, rather than refusing the client.
 */
struct upstream *upstream_pick(struct listener *l, struct conn *c, int64_t now_ms);

/* Marks an upstream failed for the listener's fail_timeout and logs why
 * (rate-limited). */
void upstream_failed(struct worker *w, struct listener *l, struct upstream *up,
                     int err);

/* Clears an upstream's failure after a connect succeeded. */
void upstream_succeeded(struct upstream *up);

#endif
