/*
 * Datagrams: a UDP listening socket made ready for serving (the address
 * each datagram came to is reported, so that a wildcard socket answers
 * from it), and batched reads and writes (recvmmsg/sendmmsg where the
 * system has them, one datagram a call elsewhere).
 */
#ifndef ECHOD_DGRAM_H
#define ECHOD_DGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* Datagrams read or written per system call. */
#define DGRAM_BATCH 32

/* The largest UDP payload (IPv6 without jumbograms): a buffer this big
 * never truncates a datagram. */
#define DGRAM_MAX 65527

/* One datagram of a batch. */
struct dgram {
    uint8_t *data;
    size_t len;
    addr_t peer;    /* where it came from, or goes to */
    addr_t local;   /* the address it came to, or is sent from; len 0: none */
    int ifindex;    /* the interface it came in on (IPv6 link-local replies) */
    bool truncated; /* longer than its buffer: the rest was lost (MSG_TRUNC) */
    void *owner;    /* the caller's: whose datagram it is */
};

/* Buffers for one batch of reads: DGRAM_BATCH of DGRAM_MAX bytes (their
 * pages are touched only as far as datagrams fill them). */
struct dgram_batch {
    struct dgram d[DGRAM_BATCH];
    uint8_t *bufs;
};

/* A UDP socket bound to a, non-blocking and close-on-exec; flags are
 * mio_tcp_listen()'s (MIO_LISTEN_V6ONLY, MIO_LISTEN_REUSEPORT).  The fd or
 * -errno. */
int dgram_bind(const addr_t *a, unsigned flags);

/* The receive buffer asked for a UDP listening socket: the kernel's
 * default (208 KiB on Linux) holds some 120 datagrams of 700 bytes, which
 * a burst from a few hundred clients overflows before the worker's turn
 * comes.  The kernel caps it at net.core.rmem_max (and doubles it). */
#define DGRAM_RCVBUF (4 * 1024 * 1024)

/* Asks the kernel of a bound UDP socket of `family` to report the address
 * each datagram came to (IP_PKTINFO, IPV6_RECVPKTINFO), and for a receive
 * buffer of DGRAM_RCVBUF bytes (where it is not larger already: one from
 * systemd with ReceiveBuffer=).  0 or -errno. */
int dgram_prepare(int fd, int family);

/* Allocates b's buffers; 0 or -ENOMEM. */
int dgram_batch_init(struct dgram_batch *b);

void dgram_batch_free(struct dgram_batch *b);

/*
 * Reads up to `max` datagrams from fd into b->d[first..first + n) (first +
 * max at most DGRAM_BATCH) and returns n (at least 1), or -errno: -EAGAIN
 * when none is waiting;
 * on a connected socket an ICMP error an earlier datagram met (Linux:
 * -ECONNREFUSED for port unreachable).  Each has its source and, where
 * the socket reports it, the address it came to.
 */
int dgram_recv(int fd, struct dgram_batch *b, size_t first, size_t max);

/* How dgram_send() addresses its datagrams. */
enum dgram_to {
    DGRAM_TO_PEER,            /* each to its peer */
    DGRAM_TO_PEER_FROM_LOCAL, /* each to its peer, from its local address (a
                                 wildcard socket: pktinfo) */
    DGRAM_CONNECTED           /* to the socket's peer: their own are ignored */
};

/*
 * Sends ds[0..n) on fd, addressed as `to` says.  Returns how many went (in
 * order) before one failed, with *err its -errno (0 when all went).  The
 * caller decides about the one that failed and the rest.
 */
size_t dgram_send(int fd, const struct dgram *ds, size_t n, enum dgram_to to, int *err);

/* Sends one datagram of two parts (a PROXY header, then the payload) on a
 * connected socket; 0 or -errno. */
int dgram_send2(int fd, const void *a, size_t alen, const void *b, size_t blen);

#endif
