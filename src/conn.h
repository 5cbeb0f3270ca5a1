/*
 * A client connection, from its accept to its close: echoed back (RFC 862)
 * or relayed to an upstream.
 *
 * A connection is its two sockets (endpoint.h), the halves that move bytes
 * between them (half.h: one for echo, two for a relay), the ticket of what
 * admission took for it (admission.h), and its life: the PROXY header it
 * may start with, the connect to an upstream and its retries (upstream.h),
 * the idle timeout, and its end.
 *
 * A FIN is passed on, never turned into a close: an echo connection sends
 * back everything it received and then closes; a relay shuts the other
 * side's write half and goes on relaying the other way until both are
 * done.  An abort is passed on as an abort: conn_abort() resets the TCP
 * sockets it still has, so that a peer never takes a truncated answer for
 * a whole one.
 */
#ifndef ECHOD_CONN_H
#define ECHOD_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "admission.h"
#include "endpoint.h"
#include "half.h"
#include "loop.h"
#include "upstream.h"

struct listen_sock;
struct listener;
struct worker;

/* A connection's life: the PROXY header, the ClientHello read for
 * sni_routes or the client's TLS handshake, the connect to an upstream and
 * the TLS handshake with it, then the relay. */
enum conn_state {
    CONN_PROXY_HEADER,
    CONN_HELLO,
    CONN_HANDSHAKE,
    CONN_CONNECTING,
    CONN_UPSTREAM_HANDSHAKE,
    CONN_OPEN
};

struct conn {
    struct endpoint client, upstream;
    /* Relay: [0] client to upstream, [1] upstream to client.  Echo: [0]
     * client to client. */
    struct half halves[2];
    struct timer timer;            /* idle, connect or PROXY header deadline */
    struct timer interim;          /* the next interim access line (log.interval) */
    struct ticket ticket;          /* what admission took */
    uint8_t state;                 /* enum conn_state */
    bool dead;                     /* closed: freed after the batch of events */
    bool tls_up;                   /* the client's TLS handshake is done */
    struct upstream_choice choice; /* its upstream, over the attempts */
    char *sni;                     /* the server name its ClientHello asked for */
    struct worker *w;
    struct listener *l;
    struct listen_sock *ls;
    struct upstream_addr *up; /* the address connecting or connected to */
    addr_t *proxy_dst;        /* the destination a PROXY header declared */
    uint64_t id;              /* the daemon's number for it (mio-echodctl) */
    int64_t start_ms, last_ms;
    int64_t connect_us;       /* when its last connect started (loop_clock_us) */
    uint64_t in, out;         /* bytes from and to the client */
    struct addr_small peer;   /* the client (as a PROXY header declared it) */
    struct conn *prev, *next; /* the worker's open connections */
    struct deferred later;    /* freed after the batch that closed it */
};

/* Takes an accepted client that admission let in with *ticket (it now
 * belongs to the connection, which gives it back at its end). */
void conn_open(struct worker *w, struct listen_sock *ls, int fd, const addr_t *peer,
               const struct ticket *ticket);

/* Ends the connection, logging one access line with `reason`; each socket
 * is closed with a FIN, as when both peers were done.  The memory goes
 * after the batch of events in progress (conn_release()). */
void conn_close(struct conn *c, const char *reason);

/* Ends the connection as conn_close() does, but aborts it: each TCP socket
 * is closed with a reset (SO_LINGER 0), so that a peer never takes what it
 * received for a whole answer (an error, a reset from the other peer, a
 * timeout, shutdown). */
void conn_abort(struct conn *c, const char *reason);

/* Frees a connection closed in the last batch (the worker loop's release). */
void conn_release(struct deferred *d);

#endif
