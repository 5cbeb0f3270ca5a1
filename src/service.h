/*
 * systemd integration: readiness and status through the notify protocol
 * (sd_notify), and listening sockets passed by socket activation, matched
 * to listeners by their FileDescriptorName= (LISTEN_FDNAMES).  Built
 * without libsystemd, notifications are not sent and no socket is taken.
 */
#ifndef ECHOD_SERVICE_H
#define ECHOD_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"

/* Sends one notification ("READY=1\nSTATUS=...") when systemd asked for
 * them (NOTIFY_SOCKET); does nothing otherwise. */
void service_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Whether a service manager takes notifications (NOTIFY_SOCKET): systemd,
 * whose fd store then holds what the daemon stores. */
bool service_notifies(void);

/* Whether systemd supervises this process (notify socket or sockets
 * passed): then it must not go to the background. */
bool service_supervised(void);

/* A socket systemd passed, with its name. */
struct passed_sock {
    int fd;
    char name[256];
    addr_t addr; /* as bound */
    bool udp;    /* a datagram socket (ListenDatagram=), else a listening stream */
    bool taken;
    bool stored; /* from the file-descriptor store (named SERVICE_STORE_PREFIX
                    and the listener's name; name holds the listener's):
                    the daemon's own, unlike a .socket unit's */
};

/* What the daemon puts before a listener's name in FDNAME= when it stores
 * that listener's sockets, so that on the next start it tells the sockets
 * it stored from those of a .socket unit (named by FileDescriptorName=). */
#define SERVICE_STORE_PREFIX "stored/"

/* Puts n listening sockets of listener `name` in systemd's file-descriptor
 * store (FDSTORE=1, FDNAME=stored/name), which hands them back to the next
 * start of the service.  1 when sent, 0 when there is no notify socket (not
 * under systemd, or built without libsystemd), or -errno. */
int service_store(const char *name, const int *fds, size_t n);

/* Removes every socket stored under listener `name` from the store
 * (FDSTOREREMOVE=1); 1, 0 or -errno as service_store(). */
int service_store_remove(const char *name);

/* Takes the sockets systemd passed (once, at start: the environment
 * variables are unset), made non-blocking and close-on-exec.  0, or -errno
 * (-ENOTSOCK: one is neither a listening stream socket nor a datagram
 * socket); when one socket is at
 * fault, *bad is a copy of it, else bad->fd is -1. */
int service_take_sockets(struct passed_sock **out, size_t *n, struct passed_sock *bad);

/* Whether this build can take sockets from systemd. */
bool service_has_systemd(void);

#endif
