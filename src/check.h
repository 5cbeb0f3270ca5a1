/*
 * Active health checks of the relays' upstream addresses (a relay's
 * `health_check` group), on the admin thread's loop (admin.h), never on a
 * worker's.
 *
 * A timer looks at the daemon's current generation when the next check is
 * due (and at least every CHECK_RESCAN_MS, to follow reloads): each
 * upstream address of each relay with an interval gets a check when its
 * check_due_ms has come and none of its own runs, unless an operator
 * disabled it or it leads back to the daemon (upstream_find_loops()).  At
 * most CHECKS_MAX run at a time; the others wait for one to end.
 *
 * A TCP (or Unix socket) check connects, writes `send`, and reads until the
 * answer starts with `expect` (connected is enough without one); a UDP one
 * sends `send` as one datagram on a connected socket and takes the first
 * answer.  Each check holds a reference to its upstream_addr and a copy of
 * the settings it needs, so that a reload may free its generation while it
 * runs.  Its result goes into the address's check fields (upstream.h):
 * `fall` failures in a row set `down`, `rise` passes in a row clear it,
 * and each change is logged once.  A relay whose checks are turned off (a
 * reload with interval 0) has its addresses' `down` cleared.
 */
#ifndef ECHOD_CHECK_H
#define ECHOD_CHECK_H

#include "daemon.h"
#include "loop.h"

/* Checks running at once, at most. */
#define CHECKS_MAX 64

/* The longest the checker waits before it looks at the current generation
 * again: a reload's new addresses are checked within it. */
#define CHECK_RESCAN_MS 1000

/* Starts checking d's relays on `loop` (the admin thread's, before it
 * starts).  0 or -errno. */
int check_start(struct daemon *d, struct loop *loop);

/* Ends the checks that run and frees what they hold, once the admin
 * thread has stopped; a no-op when check_start() did not start. */
void check_stop(void);

#endif
