/*
 * Listeners and their generations.  A generation is one loaded
 * configuration with its listeners and their sockets; a reload opens the
 * next one, which takes over the sockets of addresses that stay.
 */
#ifndef ECHOD_LISTENER_H
#define ECHOD_LISTENER_H

#include <stdbool.h>
#include <sys/types.h>

#include "daemon.h"

/*
 * Opens the generation for cfg.  Each listen address takes over the socket
 * of an equal address in `old` (no rebind, nothing queued is lost), or a
 * socket systemd passed for that listener, or is bound anew, and each new
 * address is logged.  Listener state (open connections, per-source counts,
 * counters) carries over by name.  On success it owns cfg; NULL (logged)
 * when an address cannot be bound, and then old is as it was and cfg is
 * the caller's.
 */
struct generation *generation_open(struct daemon *d, struct config *cfg,
                                   struct generation *old);

/* Closes the sockets g still owns (those not handed on to a newer
 * generation), removing the files of its Unix sockets; for a generation
 * that no worker watches any more.  Sockets systemd passed are only given
 * back to d->passed (closed at exit). */
void generation_close_sockets(struct daemon *d, struct generation *g);

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

/* Drops a reference; the last one frees the generation (not its sockets). */
void generation_unref(struct generation *g);

#endif
