/*
 * One socket of a connection, the client's or the upstream's, as its
 * halves (half.h) read and write it, and as a handler on the worker's loop.
 *
 * Reading, writing and shutting the write side go through here, so that a
 * layer in between (a TLS session) plugs in here and nowhere else; splice
 * asks endpoint_splices() whether the kernel may move the bytes itself.
 *
 * TCP urgent data (send(MSG_OOB): telnet's Synch, FTP's ABOR).  Every
 * socket reads it in line (SO_OOBINLINE: a TCP listening socket passes it
 * on to the sockets it accepts; the others get it set), so no byte is
 * skipped.  But a read stops short at the urgent mark with more bytes
 * queued behind it, and splice(2) stops there for good: EAGAIN, then 0 once
 * the FIN has come.  So a socket whose event reports priority is read in
 * urgent mode until a read says EAGAIN (half.c): by copy, past short reads,
 * the byte at the mark alone, written on as urgent data, so that the
 * receiver finds the mark where the sender put it.  A destination that
 * cannot take urgent data (a Unix socket before Linux 5.15) gets that byte
 * in line.
 *
 * A TLS socket (e->tls) is read and written through its session (tls.h):
 * never spliced, never short of a byte after a short read (a read returns
 * one record, and what the session decrypted waits in it), and a read or
 * a write that says EAGAIN may wait for the other readiness.
 */
#ifndef ECHOD_ENDPOINT_H
#define ECHOD_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "loop.h"

struct tls_session;

struct endpoint {
    struct handler h;        /* its token: the connection's (conn.c) */
    int fd;                  /* -1 when there is none (yet, or any more) */
    bool upstream;           /* the upstream's socket, else the client's */
    struct tls_session *tls; /* its TLS session, or NULL */
};

/* Makes fd read TCP urgent data in line (SO_OOBINLINE), as every socket of
 * a connection does; a TCP listening socket passes it on to those it
 * accepts. */
void endpoint_urgent_inline(int fd);

/* Whether the next byte to read from e is the one at the urgent mark. */
bool endpoint_at_urgent_mark(const struct endpoint *e);

/* One read of up to cap bytes from e: as recv(2) (-1 and errno). */
ssize_t endpoint_read(struct endpoint *e, void *buf, size_t cap);

/* One write of p[0..n) to e, as urgent data when `oob` and e can take it
 * (in line otherwise): as send(2), never raising SIGPIPE. */
ssize_t endpoint_write(struct endpoint *e, const void *p, size_t n, bool oob);

/* Shuts e's write side (the FIN); 0 or -errno (not connected is 0). */
int endpoint_shutdown(struct endpoint *e);

/* Whether splice(2) may move e's bytes: a plain kernel socket. */
bool endpoint_splices(const struct endpoint *e);

/* Whether a read of e that came back short has emptied what there is to
 * read, so that the next bytes bring an event (not with TLS). */
bool endpoint_short_read_drains(const struct endpoint *e);

/* What to wait for after a call on e said EAGAIN: `plain` (what a plain
 * socket's read or write waits for), or for a TLS socket what its session
 * needs, which may be the other readiness. */
mio_interest_t endpoint_wait(const struct endpoint *e, mio_interest_t plain);

/* Ends e's TLS session, sending close_notify when `graceful` and it was
 * not sent yet (best effort: the socket is closed next); nothing for a
 * plain socket. */
void endpoint_end_tls(struct endpoint *e, bool graceful);

/* Makes closing e send a reset instead of a FIN (a Unix socket has no
 * reset: its peer just sees the end). */
void endpoint_reset_on_close(struct endpoint *e);

#endif
