/*
 * UDP listeners in the workers.  Each UDP listening socket is served by
 * one worker (its descriptor modulo the number of workers, which a reload
 * does not change), so that every datagram of a flow meets the flow's
 * state in one thread without a lock; the sockets of several addresses
 * spread over the workers.  The worker's port (struct udp_port) is that
 * socket's handler and keeps its flows across reloads: a reload that keeps
 * the address keeps the descriptor, and the port finds its new generation's
 * listen_sock.
 *
 * A readable socket is read in batches (recvmmsg), each datagram checked
 * (truncated, PROXY header), given to its flow (or to a new one admission
 * lets in), then echoed back (sendmmsg, from the address it came to) or
 * relayed through the flow's upstream socket.  A bounded number of batches
 * per event: the rest is read after the other handlers had their turn.
 */
#ifndef ECHOD_UDP_H
#define ECHOD_UDP_H

#include <stdbool.h>
#include <stdint.h>

#include "admission.h"
#include "flow.h"
#include "loop.h"

struct dgram;
struct listen_sock;
struct worker;

/* Why a datagram from a client was dropped: a refusal of its new flow
 * (enum refusal's values and names), or one of these. */
enum udp_drop {
    UDP_DROP_TRUNCATED = REFUSED_N, /* longer than the buffer (MSG_TRUNC) */
    UDP_DROP_SEND_ERROR,            /* the kernel would not send it on */
    UDP_DROP_SHUTDOWN,              /* a new source while the daemon stops */
    UDP_DROP_NO_UPSTREAM,           /* a relay's flow could not get a socket */
    UDP_DROP_LOOP_PORT,             /* from port 0 or a port of a UDP service that
                                       answers anything (echo, chargen...) */
    UDP_DROP_N
};

/* The name of a reason, as a metrics label: refusal_names[] for a
 * refusal, else "truncated", "send_error"... */
const char *udp_drop_name(enum udp_drop why);

/* A UDP listening socket as the worker that serves it knows it. */
struct udp_port {
    struct handler h;  /* the socket's token */
    struct timer more; /* reads on after a batch cut short by the budget */
    struct worker *w;
    int fd;
    bool wildcard;          /* bound to 0.0.0.0 or [::]: replies name their source */
    bool watched;           /* in the worker's poll */
    bool draining;          /* stopping: its flows go on, new sources are dropped */
    struct listen_sock *ls; /* its socket in the worker's generation */
    struct flow_table flows;
    struct udp_port *next; /* the worker's ports */
    struct deferred later;
};

/* Makes the worker's ports agree with its generation: a port for each UDP
 * socket it serves (kept by descriptor across a reload), and the ports of
 * addresses that are gone closed with their flows.  0 or -ENOMEM. */
int udp_sync(struct worker *w);

/* The daemon stops: ports without flows stop reading; the others drain,
 * reading only the datagrams of their flows (none when the sockets were
 * handed over to a new process, which reads them all). */
void udp_stop(struct worker *w);

/* Ends every flow of the worker with `reason` (shutdown_timeout). */
void udp_close_flows(struct worker *w, const char *reason);

/* Frees the worker's ports (its flows closed first). */
void udp_free(struct worker *w);

/* Sends n replies to clients of port (each to its peer, from its local
 * address on a wildcard socket), counting each that went in its flow
 * (dgram.owner) and the rest as dropped. */
void udp_reply(struct udp_port *port, const struct dgram *ds, size_t n);

/* Sends the replies gathered in w->dgrams->d[0..nqueued) (each to its
 * flow's client, through its port), every run of one port's together. */
void udp_flush(struct worker *w);

/* A flow of port ended: a draining port with no flow left stops. */
void udp_flow_gone(struct udp_port *port);

/* Counts n datagrams of port's listener dropped for `why`. */
void udp_dropped(struct udp_port *port, enum udp_drop why, unsigned long long n);

#endif
