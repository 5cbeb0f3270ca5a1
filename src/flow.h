/*
 * A UDP flow: what a client address:port sends to a UDP listener, from its
 * first datagram until it has been idle for idle_timeout (or has had its
 * `responses`).  Echo and relay alike have flows: they are what
 * max_connections, max_per_source and the access log count.  A relay's
 * flow has its own upstream socket, connected, so that the upstream's
 * replies come back to it without a lookup and an ICMP error the upstream
 * sends reaches it (and no other flow).
 *
 * The flows of a UDP socket are in its table (struct flow_table), found
 * by the client's address (and the source a PROXY header declares, with
 * accept_proxy) through a keyed hash (SipHash), so that the
 * cost of a lookup does not grow with their number nor with a sender's
 * choice of source ports.
 */
#ifndef ECHOD_FLOW_H
#define ECHOD_FLOW_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "admission.h"
#include "loop.h"
#include "upstream.h"

struct dgram;
struct listener;
struct udp_port;

/* The longest PROXY v2 header sent before each datagram (v6 addresses). */
#define FLOW_PROXY_MAX 64

struct flow {
    struct handler h;     /* the upstream socket's token (relay) */
    struct timer timer;   /* the idle deadline, moved lazily (see flow.c) */
    struct timer interim; /* the next interim access line (log.interval) */
    struct flow *hnext;   /* the next in its bucket */
    uint64_t hash;
    struct udp_port *port;
    struct listener *l; /* of the generation it began in: holds a reference */
    struct ticket ticket;
    addr_t client; /* the datagrams' source: the key */
    addr_t peer;   /* the client as a PROXY header declared it, else client */
    addr_t local;  /* the address it sent to: replies come from it */
    int ifindex;
    int ufd; /* the connected upstream socket; -1 for echo */
    struct upstream_addr *up;
    struct upstream_choice choice;
    uint8_t proxy[FLOW_PROXY_MAX]; /* send_proxy v2: the header of each datagram */
    uint8_t proxy_len;
    bool dead;
    bool more;        /* replies left unread: its timer brings it back */
    unsigned replies; /* datagrams from the upstream taken for the client */
    uint64_t id;      /* the daemon's number for it, as a connection's */
    int64_t start_ms, last_ms;
    uint64_t in, out;               /* bytes from and to the client */
    uint64_t dgrams_in, dgrams_out; /* datagrams from and to the client */
    struct deferred later;
};

/* A UDP socket's flows by client address. */
struct flow_table {
    struct flow **buckets;
    size_t nbuckets; /* a power of two */
    size_t n;
    uint64_t key[2]; /* SipHash key, random */
};

/* An empty table; 0 or -ENOMEM. */
int flow_table_init(struct flow_table *t);

/* Frees the table (not its flows, which must be gone). */
void flow_table_free(struct flow_table *t);

/* The flow of client in t, or NULL; *hash is its hash, for flow_open().
 * With peer (the source a PROXY header declared), the flow of that source
 * through client: a proxy may send the datagrams of many clients from one
 * port, and each is a flow of its own. */
struct flow *flow_find(const struct flow_table *t, const addr_t *client,
                       const addr_t *peer, uint64_t *hash);

/*
 * Opens the flow of the datagram d (its source, the address it came to)
 * on port, admitted with *ticket (which the flow gives back at its end),
 * from the client `peer` (a PROXY header's, or d's source).  A relay's
 * flow chooses its upstream and connects its socket.  The flow or NULL
 * (then the ticket is given back and *err says why: -EHOSTUNREACH for no
 * upstream address left, or the error of the socket).
 */
struct flow *flow_open(struct udp_port *port, struct listener *l, const struct dgram *d,
                       uint64_t hash, const addr_t *peer, const struct ticket *ticket,
                       int *err);

/* Relays n client datagrams (payloads; from a relay's flow) to its
 * upstream; the ones that could not go are counted as dropped. */
void flow_forward(struct flow *f, struct dgram *ds, size_t n);

/* Notes activity now (a datagram either way): the idle deadline moves. */
void flow_touch(struct flow *f, int64_t now_ms);

/* Ends the flow: its access line with `reason`, its counts, its ticket,
 * its upstream socket; freed after the batch of events. */
void flow_close(struct flow *f, const char *reason);

#endif
