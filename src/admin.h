/*
 * The admin thread: one loop, apart from the workers', for what serves
 * operators and watches upstreams: the metrics listener (metrics.h), the
 * control socket (control.h) and the active health checks (check.h).
 * None of them ever runs on a worker's loop, so a slow client or a slow
 * check cannot delay a relayed byte.
 */
#ifndef ECHOD_ADMIN_H
#define ECHOD_ADMIN_H

#include "daemon.h"
#include "loop.h"

/* Makes the admin loop (not the thread yet), for the parts to set up on,
 * on libmio's backend named `backend` (NULL: mio_poll_new()'s); 0 or
 * -errno. */
int admin_init(const char *backend);

/* The admin loop, once admin_init() made it. */
struct loop *admin_loop(void);

/* Starts the thread; the caller's signal mask must block the daemon's
 * signals.  0 or -errno. */
int admin_start(void);

/* Stops the thread (a no-op when it does not run): the parts may then
 * close what they own, on the loop, from the calling thread. */
void admin_stop(void);

/* Frees the loop, once the parts have closed what they own. */
void admin_free(void);

#endif
