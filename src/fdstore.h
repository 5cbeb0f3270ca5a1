/*
 * systemd's file-descriptor store (FileDescriptorStoreMax= in the unit):
 * the daemon keeps every listening socket it owns there, named after its
 * listener, so that "systemctl restart" hands them to the next process
 * (LISTEN_FDS/LISTEN_FDNAMES, matched like a .socket unit's) and clients
 * that connect meanwhile wait in the kernel's queue instead of being
 * refused.  Sockets systemd passed from a .socket unit are never stored:
 * it has them already.
 */
#ifndef ECHOD_FDSTORE_H
#define ECHOD_FDSTORE_H

#include <stdbool.h>

#include "config.h"
#include "daemon.h"

struct generation;

/* A socket in the store: the listener it is stored under, and the daemon's
 * own descriptor for it (open for as long as the entry exists). */
struct stored_sock {
    char name[256]; /* as passed_sock's */
    int fd;
};

/* At start, after service_take_sockets(): what the store holds is the
 * sockets it passed back.  0 or -ENOMEM. */
int fdstore_init(struct daemon *d);

/*
 * Makes the store hold the sockets g owns, each under its listener's name:
 * called once g is opened, at start and after a reload, before the
 * sockets g did not take over are closed.  FDNAME= names a group, so a
 * listener that lost a socket (or a socket that moved to another listener)
 * has its whole group removed (FDSTOREREMOVE=1) and its remaining sockets
 * stored again; sockets passed back that no listener wants any more are
 * closed.  Failures are logged: a socket not stored is only lost at the
 * next restart.  Does nothing without a notify socket.
 */
void fdstore_sync(struct daemon *d, const struct generation *g);

/* Whether the store holds the socket fd: then its Unix socket file stays
 * when the daemon closes it, for the process that gets it next. */
bool fdstore_holds(const struct daemon *d, int fd);

/* Forgets the store at exit (systemd keeps it). */
void fdstore_free(struct daemon *d);

#endif
