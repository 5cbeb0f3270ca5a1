/*
 * Accepting on the listening sockets, in the workers, where allow/deny and
 * the limits are applied before any byte is read.
 */
#ifndef ECHOD_ACCEPT_H
#define ECHOD_ACCEPT_H

#include <stdbool.h>

#include "conn.h"
#include "daemon.h"

struct worker;

/* Accepts every pending client of ls (the socket was readable). */
void listener_accept(struct worker *w, struct listen_sock *ls);

/* Admits the source a PROXY header declared: the listener's allow/deny and
 * max_per_source apply to it, as to a direct client.  Counts it per source
 * in c, in place of the connecting peer counted at accept.  False (logged,
 * rate-limited) when refused. */
bool listener_admit_source(struct worker *w, struct listener *l,
                           const addr_t *src, struct conn *c);

/* Counts a refused client and logs why (with `detail`, may be NULL), at
 * most a few lines a second per worker; a line after a quiet spell says how
 * many were not logged. */
void listener_refused(struct worker *w, struct listener *l, const addr_t *src,
                      enum refusal why, const char *detail);

#endif
