/*
 * The control socket: a Unix stream socket on the admin thread (admin.h)
 * taking one command a line, as mio-echodctl(8) sends them, and answering
 * each with lines of text and one empty line; a failed command's answer
 * is one line "error: ...".  The commands and their answers are in
 * mio-echodctl(8).
 *
 * A connection's commands are answered in order, one at a time: while an
 * answer is not all taken, or a command waits for the workers or for a
 * reload, its next command is not read, so a client that does not read
 * holds only its own buffers, never a worker.  At most
 * CONTROL_MAX_CONNECTIONS are open; one idle for CONTROL_IDLE_MS, or that
 * does not take its answer within it, is closed.
 */
#ifndef ECHOD_CONTROL_H
#define ECHOD_CONTROL_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "config.h"
#include "daemon.h"
#include "loop.h"

#define CONTROL_MAX_CONNECTIONS 16
/* The signal the drain command sends the daemon's main thread, which
 * starts a drain as SIGTERM does but never escalates one begun. */
#define CONTROL_DRAIN_SIGNAL (SIGRTMIN + 1)
#define CONTROL_IDLE_MS 30000

/*
 * Makes the socket cfg->control_path names (nothing when NULL or ""):
 * a stale socket file there is replaced, a missing directory made (one
 * level, mode 0755), and the socket (and a directory made) given to
 * uid:gid when `give` (before the daemon becomes that user), with
 * cfg->control_mode applied.  0, or
 * -errno with *what saying which step failed ("bind", "chmod", ...), or
 * -EADDRINUSE when a daemon answers there.
 */
int control_open(const struct config *cfg, uid_t uid, gid_t gid, bool give,
                 const char **what);

/* Serves the socket control_open() made on `loop` (the admin thread's,
 * before it starts); 0 or -errno. */
int control_start(struct daemon *d, struct loop *loop);

/* Says, from the thread that reloads, how the reload that served the
 * first `asked` reload commands went (ok, and its outcome or error), so
 * that their clients get the answer. */
void control_reloaded(unsigned long long asked, bool ok, const char *outcome);

/* Closes the socket and its connections and removes the socket file
 * (a notice when it cannot), once the admin thread has stopped. */
void control_stop(void);

/* The listening socket, for an upgrade to hand over (-1: none). */
int control_listen_fd(void);

/* Stops accepting: a new process serves the socket, whose file stays
 * (upgrade.h).  From any thread; done on the admin thread. */
void control_handover(void);

#endif
