/*
 * floor-udp-relay: the least work a UDP relay by flow can do, as the floor
 * of the benchmark's UDP relays.
 *
 *   floor-udp-relay PORT UPSTREAM_PORT    127.0.0.1:PORT to 127.0.0.1:UPSTREAM_PORT
 *
 * One thread, one epoll instance, edge-triggered, no library.  A flow is
 * what one client address and port sends: its first datagram opens a
 * socket connected to the upstream, and the flow lives as long as the
 * process (no timeout, no limit but FLOWS).  The listening socket is read
 * with recvmmsg, BATCH datagrams at a time, and each run of one flow's
 * datagrams goes to its upstream socket with one sendmmsg.  An upstream
 * socket is read with recvmmsg too, and the replies of every flow made
 * readable by one epoll_wait are sent to their clients together, through
 * the listening socket, with one sendmmsg per BATCH.  Reading stops at a
 * short batch, without the recvmmsg that would fail with EAGAIN: with
 * EPOLLET the next datagram makes a new edge.  What a send refuses is
 * dropped, as UDP may.  Built with -DFLOOR_REPLY_PER_FLOW, each flow's
 * replies are sent as soon as they are read, in a sendmmsg of their own
 * (to measure what sending them together saves).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define DGRAM_MAX 65536
#define FLOWS 8192 /* a power of two */

struct flow {
    uint64_t key; /* the client's address and port; 0: a free slot */
    struct sockaddr_in client;
    int fd; /* connected to the upstream */
};

static struct flow flows[FLOWS];
static char inbuf[BATCH][DGRAM_MAX];  /* from clients */
static char outbuf[BATCH][DGRAM_MAX]; /* replies, until they are sent */
static int lfd, ep;
static struct sockaddr_in upstream;

/* The replies waiting to be sent to their clients. */
static struct mmsghdr out[BATCH];
static struct iovec outiov[BATCH];
static unsigned nout;

/* Sends n messages of mm on fd; what the socket refuses is dropped. */
static void send_all(int fd, struct mmsghdr *mm, unsigned n)
{
    unsigned done = 0;
    for (int tries = 0; done < n && tries < 4; tries++) {
        int m = sendmmsg(fd, mm + done, n - done, 0);
        if (m > 0)
            done += (unsigned)m;
        else if (m < 0 && errno != EINTR)
            done++;
    }
}

static void flush_replies(void)
{
    send_all(lfd, out, nout);
    nout = 0;
}

/* The flow of a client, opened at its first datagram; NULL when full. */
static struct flow *flow_of(const struct sockaddr_in *a)
{
    uint64_t key = (uint64_t)a->sin_addr.s_addr << 16 | a->sin_port | 1ull << 48;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    for (unsigned i = 0; i < FLOWS; i++) {
        struct flow *f = &flows[((h >> 40) + i) & (FLOWS - 1)];
        if (f->key == key)
            return f;
        if (f->key != 0)
            continue;
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = f};
        if (fd < 0 || connect(fd, (struct sockaddr *)&upstream, sizeof(upstream)) < 0 ||
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            if (fd >= 0)
                close(fd);
            return NULL;
        }
        f->key = key;
        f->client = *a;
        f->fd = fd;
        return f;
    }
    return NULL;
}

/* Reads the clients' datagrams and sends each run of one flow's on. */
static void read_clients(void)
{
    static struct mmsghdr mm[BATCH];
    static struct iovec iov[BATCH];
    static struct sockaddr_in from[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){inbuf[i], DGRAM_MAX};
            mm[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &from[i],
                                                 .msg_namelen = sizeof(from[i]),
                                                 .msg_iov = &iov[i],
                                                 .msg_iovlen = 1}};
        }
        int n = recvmmsg(lfd, mm, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        struct flow *run = NULL;
        int first = 0;
        for (int i = 0; i <= n; i++) {
            struct flow *f = i < n ? flow_of(&from[i]) : NULL;
            if (i < n)
                iov[i].iov_len = mm[i].msg_len;
            if (f == run && i < n)
                continue;
            if (run != NULL) {
                for (int k = first; k < i; k++) /* connected: no address */
                    mm[k].msg_hdr.msg_name = NULL, mm[k].msg_hdr.msg_namelen = 0;
                send_all(run->fd, mm + first, (unsigned)(i - first));
            }
            run = f;
            first = i;
        }
        if (n < BATCH)
            return;
    }
}

/* Reads a flow's replies into the batch of replies. */
static void read_replies(struct flow *f)
{
    for (;;) {
        if (nout == BATCH)
            flush_replies();
        unsigned room = BATCH - nout;
        for (unsigned i = nout; i < BATCH; i++) {
            outiov[i] = (struct iovec){outbuf[i], DGRAM_MAX};
            out[i] = (struct mmsghdr){
                .msg_hdr = {.msg_iov = &outiov[i], .msg_iovlen = 1}};
        }
        int n = recvmmsg(f->fd, out + nout, room, MSG_DONTWAIT, NULL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        for (unsigned i = nout; i < nout + (unsigned)n; i++) {
            outiov[i].iov_len = out[i].msg_len;
            out[i].msg_hdr.msg_name = &f->client;
            out[i].msg_hdr.msg_namelen = sizeof(f->client);
        }
        nout += (unsigned)n;
#ifdef FLOOR_REPLY_PER_FLOW
        flush_replies();
#endif
        if ((unsigned)n < room)
            return;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: floor-udp-relay PORT UPSTREAM_PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    upstream = a;
    upstream.sin_port = htons((uint16_t)atoi(argv[2]));
    lfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("floor-udp-relay: bind");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
        perror("floor-udp-relay: epoll");
        return 1;
    }
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("floor-udp-relay: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL)
                read_clients();
            else
                read_replies(evs[i].data.ptr);
        }
        if (nout > 0)
            flush_replies();
    }
}
