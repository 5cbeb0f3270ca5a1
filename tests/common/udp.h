/*
 * UDP for the tests: client sockets on loopback (IPv4 or IPv6, bound to a
 * chosen source such as 127.0.0.2), sends, receives bounded in time that
 * give the datagram and the address it came from, PROXY v2 headers for
 * datagrams, and test upstreams: a thread per upstream answering each
 * datagram with its tag and the payload.  Every wait is bounded; the
 * functions that fail the test say so, the upstreams' threads never do
 * (they count).
 */
#ifndef TESTS_COMMON_UDP_H
#define TESTS_COMMON_UDP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* The largest UDP payload over IPv4 (65535 - 20 - 8). */
#define UDP_MAX_V4 65507
/* An address as the daemon's log writes it: "127.0.0.1:P", "[::1]:P". */
#define UDP_ADDRSTRLEN 64

/* ---- clients ---------------------------------------------------------------- */

/*
 * A UDP socket bound to src:0 (an IPv4 or IPv6 literal: "127.0.0.2",
 * "::1"), with 1 MiB buffers each way so that a few 64 KiB datagrams wait
 * without loss.  Tracked (net.h): a test's teardown closes it.  Fails the
 * test when it cannot.
 */
int udp_client(const char *src);

/* udp_client("127.0.0.1") and udp_client("::1"). */
int udp_client4(void);
int udp_client6(void);

/* ip:port (an IPv4 or IPv6 literal) into *ss; fails the test on a bad
 * literal. */
socklen_t udp_sockaddr(const char *ip, int port, struct sockaddr_storage *ss);

/* Sends one datagram of len bytes (0 too) to ip:port; fails the test
 * unless all of it went. */
void udp_send(int fd, const char *ip, int port, const void *buf, size_t len);

/*
 * Waits up to ms for a datagram on fd.  Returns its whole length (more
 * than cap when it was cut: MSG_TRUNC), or -1 when none came in time;
 * where it came from in *from when from is not NULL.  Errors a connected
 * socket reports (ICMP) are skipped.
 */
ssize_t udp_recv(int fd, void *buf, size_t cap, int ms, struct sockaddr_storage *from);

/* True when no datagram comes within ms (one that does is consumed). */
bool udp_silent(int fd, int ms);

/* Drops whatever datagrams are queued on fd now. */
void udp_drain(int fd);

/* An address as the log writes it ("127.0.0.1:P", "[::1]:P"). */
void udp_format(const struct sockaddr_storage *ss, char *buf, size_t len);

/* The address fd is bound to, formatted (udp_format()). */
void udp_local(int fd, char *buf, size_t len);

/*
 * Sends buf to ip:port and expects exactly it back within ms, from
 * ip:port itself (the address it was sent to); fails the test, saying
 * what came instead, otherwise.
 */
void udp_expect_echo(int fd, const char *ip, int port, const void *buf, size_t len,
                     int ms);

/*
 * Sends buf to ip:port up to `tries` times, waiting ms after each for an
 * answer; returns the answer's length (into reply, cap bytes at most) or
 * -1 when none came.
 */
ssize_t udp_ask(int fd, const char *ip, int port, const void *buf, size_t len,
                void *reply, size_t cap, int tries, int ms);

/* ---- PROXY protocol v2 for datagrams -------------------------------------------- */

/*
 * Writes a v2 PROXY header (command PROXY, transport DGRAM: byte 13 is
 * 0x12 for IPv4, 0x22 for IPv6) declaring src:sport to dst:dport (both
 * literals of one family) into buf (52 bytes at least); returns its
 * length (28 or 52).
 */
size_t udp_proxy_v2(uint8_t *buf, const char *src, int sport, const char *dst, int dport);

/* ---- test upstreams ------------------------------------------------------------ */

/* What an upstream does; zeroes are the defaults. */
struct udpup_conf {
    const char *tag; /* prefixed to each answer ("A:"); NULL or "": a plain echo */
    bool proxy_v2;   /* each datagram starts with a v2 header: parsed, recorded,
                      * stripped (one without a valid one counts in bad_headers
                      * and is not answered) */
    int replies;     /* answers per datagram (0: 1; negative: none) */
    bool v6;         /* on [::1]:0 instead of 127.0.0.1:0 */
    const char *ip;  /* on this address instead (a literal: "127.0.0.11") */
    int port;        /* on this port instead of 0 */
};

/* The most distinct sources an upstream tells apart (udpup.peers). */
#define UDPUP_PEERS 1024

struct udpup {
    struct udpup_conf conf;
    char tag[32];
    int fd, port;
    pthread_t thread;
    atomic_bool stop, stopped;
    atomic_int datagrams;   /* received */
    atomic_int answered;    /* answers sent */
    atomic_int bad_headers; /* proxy_v2: datagrams without a valid header */
    atomic_int errors;      /* socket errors */
    atomic_int peers;       /* distinct source addresses seen */
    /* Under mu: what the last datagram said. */
    pthread_mutex_t mu;
    char last_peer[UDP_ADDRSTRLEN]; /* where it came from (the daemon's socket) */
    char last_src[UDP_ADDRSTRLEN];  /* proxy_v2: the source its header declared */
    char last_dst[UDP_ADDRSTRLEN];  /* proxy_v2: the destination it declared */
    uint8_t last_ver_cmd, last_fam; /* proxy_v2: bytes 12 and 13 of the header */
    size_t last_len;                /* the payload's length (header stripped) */
    struct sockaddr_storage seen[UDPUP_PEERS];
};

/* Starts an upstream on 127.0.0.1:0 (or [::1]:0, or conf's ip and port)
 * in a thread of its own; udp_stop_all() stops it unless udpup_stop()
 * did. */
struct udpup *udpup_start(const struct udpup_conf *conf);

/* Stops its thread and closes its socket (datagrams to its port are then
 * answered with ICMP port unreachable); the counters stay readable until
 * udpup_free() (or udp_stop_all()). */
void udpup_stop(struct udpup *u);

/* Stops it if needed and frees it. */
void udpup_free(struct udpup *u);

/* What the last datagram said, copied under the lock. */
struct udpup_last {
    char peer[UDP_ADDRSTRLEN], src[UDP_ADDRSTRLEN], dst[UDP_ADDRSTRLEN];
    uint8_t ver_cmd, fam;
    size_t len;
};
void udpup_last(struct udpup *u, struct udpup_last *out);

/* Waits up to ms for u->datagrams to be at least n. */
bool udpup_wait(struct udpup *u, int n, int ms);

/* Stops and frees every upstream still there (a test's teardown). */
void udp_stop_all(void);

#endif
