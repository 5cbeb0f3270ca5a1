/*
 * A client connection: echoed back (RFC 862), or relayed to an upstream.
 *
 * Each direction has at most buffer_size bytes in flight inside the daemon.
 * Bytes are read into the worker's scratch buffer and written on at once;
 * only what the other side could not take is kept, in a buffer allocated
 * for that moment and freed when it drains, so an idle connection holds no
 * buffer.  A direction that carries bulk data is spliced instead (pipe.h):
 * its bytes wait, if they must, in a pipe rather than a buffer.  While a
 * direction has bytes kept, its source is not read (backpressure): a slow
 * reader never makes the daemon grow.
 *
 * A FIN is passed on, never turned into a close: an echo connection sends
 * back everything it received and then closes; a relay shuts the other
 * side's write half and goes on relaying the other way until both are done.
 */
#ifndef ECHOD_CONN_H
#define ECHOD_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"
#include "mio.h"
#include "timer.h"

struct worker;
struct buf;
struct pipe;

/* One socket of a connection; a token points at it. */
struct side {
    uint8_t kind; /* EP_CLIENT or EP_UPSTREAM: first, for the token */
    bool eof : 1;         /* the peer sent its FIN */
    bool shut : 1;        /* we sent ours */
    bool read_paused : 1; /* not read to EAGAIN: may hold data (backpressure) */
    bool closing : 1;     /* an event reported a FIN or an error: read to EOF */
    bool bulk : 1;        /* its last read was large: splice the next one */
    bool urgent : 1;      /* urgent data reported: copy to EAGAIN (conn.c) */
    bool out_oob : 1;     /* `out` is one urgent byte, to send as such */
    int fd;
    struct buf *out;   /* bytes waiting to be written to this socket */
    struct pipe *pipe; /* or in a pipe, when they were spliced */
    struct conn *conn;
};

enum conn_state { CONN_PROXY_HEADER, CONN_CONNECTING, CONN_OPEN };

struct conn {
    struct side client, upstream;
    struct timer timer; /* idle, connect or PROXY header deadline */
    enum conn_state state;
    bool dead;
    uint8_t srclen;     /* bytes of srckey; 0: not counted per source */
    uint8_t srckey[16];
    unsigned attempts;  /* upstreams tried (retries + 1 at most) */
    unsigned cursor;    /* where the next upstream pick starts */
    const struct upstream *target; /* the upstream of this attempt */
    uint16_t tried;     /* its addresses tried in this attempt (bit i: i) */
    bool all_failed;    /* it had no address unmarked: try them all */
    struct worker *w;
    struct listener *l;
    struct listen_sock *ls;
    struct upstream_addr *up; /* the address connecting or connected to */
    struct buf *hdr;    /* the PROXY header being read */
    addr_t *proxy_dst;  /* the destination a PROXY header declared */
    int64_t start_ms, last_ms;
    uint64_t in, out;   /* bytes from and to the client */
    addr_t peer;        /* the client (as a PROXY header declared it) */
    struct conn *prev, *next;
};

/* Takes an accepted client that passed the limits; counts are already
 * taken on the daemon and the listener (and per source when srclen). */
void conn_open(struct worker *w, struct listen_sock *ls, int fd,
               const addr_t *peer, const uint8_t *srckey, size_t srclen);

/* Makes fd read TCP urgent data in line (SO_OOBINLINE), as every socket of
 * a connection does; a TCP listening socket passes it on to those it
 * accepts.  See conn.c for how urgent data is relayed. */
void conn_urgent_inline(int fd);

/* Handles readiness of one side. */
void conn_ready(struct side *s, const mio_event_t *ev);

/* Handles the connection's timer. */
void conn_timer(struct conn *c);

/* Ends the connection, logging one access line with `reason`; the memory
 * is freed after the current batch of events.  Each socket is closed with a
 * FIN, as when both peers were done. */
void conn_close(struct conn *c, const char *reason);

/* Ends the connection as conn_close() does, but aborts it: each TCP socket
 * is closed with a reset (SO_LINGER 0), so that a peer never takes what it
 * received for a whole answer (an error, a reset from the other peer, a
 * timeout, shutdown). */
void conn_abort(struct conn *c, const char *reason);

/* Frees connections closed during the batch, and the worker's pooled
 * pipes once it has no connection left. */
void conn_reap(struct worker *w);

#endif
