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
};

/* Takes the sockets systemd passed (once, at start: the environment
 * variables are unset), made non-blocking and close-on-exec.  0, or -errno
 * (-ENOTSOCK: one is neither a listening stream socket nor a datagram
 * socket); when one socket is at
 * fault, *bad is a copy of it, else bad->fd is -1. */
int service_take_sockets(struct passed_sock **out, size_t *n, struct passed_sock *bad);

/* Whether this build can take sockets from systemd. */
bool service_has_systemd(void);

#endif
