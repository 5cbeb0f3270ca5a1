/*
 * floor-udp-echo: the least work a UDP echo server can do, as the floor of
 * the benchmark's UDP group (and the echo upstream behind its UDP relays).
 *
 *   floor-udp-echo PORT      bind 127.0.0.1:PORT
 *
 * One thread, one blocking socket, no poll: recvmmsg takes up to BATCH
 * datagrams (MSG_WAITFORONE: it blocks for the first only), and sendmmsg
 * sends each back whole to where it came from, from the same buffers.  Two
 * system calls per batch.  A datagram longer than a buffer cannot be
 * received (MSG_TRUNC): the buffers take the largest UDP payload.  What
 * sendmmsg refuses (a full send buffer, an ICMP error of an earlier
 * datagram) is dropped, as UDP may.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define DGRAM_MAX 65536

static char buf[BATCH][DGRAM_MAX];

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: floor-udp-echo PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int size = 4 << 20;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("floor-udp-echo: bind");
        return 1;
    }
    /* Room for the windows of many flows (the kernel caps it at rmem_max). */
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    static struct mmsghdr mm[BATCH];
    static struct iovec iov[BATCH];
    static struct sockaddr_storage from[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){buf[i], DGRAM_MAX};
            mm[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &from[i],
                                                 .msg_namelen = sizeof(from[i]),
                                                 .msg_iov = &iov[i],
                                                 .msg_iovlen = 1}};
        }
        int n = recvmmsg(fd, mm, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR || errno == ECONNREFUSED)
                continue;
            perror("floor-udp-echo: recvmmsg");
            return 1;
        }
        for (int i = 0; i < n; i++) /* each back whole, with its length */
            iov[i].iov_len = mm[i].msg_len;
        int done = 0;
        for (int tries = 0; done < n && tries < 4; tries++) {
            int m = sendmmsg(fd, mm + done, (unsigned)(n - done), 0);
            if (m > 0)
                done += m;
            else if (m < 0 && errno != EINTR)
                done++; /* this one is dropped; the rest go on */
        }
    }
}
