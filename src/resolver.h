/*
 * Re-resolution of upstream host names (a relay's `resolve`), on a thread
 * of its own: getaddrinfo blocks, and never on a worker's loop.  Each
 * name is resolved every `resolve` seconds (the shortest of the relays
 * that name it); when its addresses change (the same ones in another
 * order are no change), the new ones are kept here, logged, and the main
 * thread is asked (RESOLVER_SIGNAL) to open the configuration again with
 * them: an address that appears becomes an upstream, one that is gone
 * gets no new client while its connections finish in the generation they
 * began in.  A failed resolution keeps the last addresses and is logged
 * once, until one succeeds again.
 */
#ifndef ECHOD_RESOLVER_H
#define ECHOD_RESOLVER_H

#include <signal.h>
#include <stddef.h>

#include "addr.h"
#include "daemon.h"

/* What the resolver raises for the main thread when addresses changed. */
#define RESOLVER_SIGNAL SIGRTMIN

/* Starts the thread (it sleeps while no relay has resolve > 0); the
 * caller's signal mask must block the daemon's signals.  0 or -errno. */
int resolver_start(struct daemon *d);

/* Stops the thread; a no-op when it was not started. */
void resolver_stop(void);

/* Says a reload loaded the configuration anew (its names resolved at
 * load): what was kept is dropped, and the schedule made again. */
void resolver_reloaded(void);

/* The addresses name `text` (an upstream as written) resolved to last,
 * into out[0..max); how many, 0 when the resolver has none of its own
 * (the configuration's stand).  Any thread. */
size_t resolver_lookup(const char *text, addr_t *out, size_t max);

#endif
