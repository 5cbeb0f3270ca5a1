/* UDP sockets: binding, the address a datagram came to, batched I/O. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dgram.h"
#include "mio.h"

/* Room for the one control message a datagram carries: its pktinfo. */
#define CONTROL_LEN CMSG_SPACE(sizeof(struct in6_pktinfo))

int dgram_bind(const addr_t *a, unsigned flags)
{
    int fd = socket(a->u.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int on = 1;
    if ((flags & MIO_LISTEN_V6ONLY) &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0)
        goto fail;
    if ((flags & MIO_LISTEN_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0)
        goto fail;
    if (bind(fd, &a->u.sa, a->len) < 0)
        goto fail;
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

int dgram_prepare(int fd, int family)
{
    int on = 1;
    int rc = family == AF_INET6
                 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on))
                 : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on));
    if (rc < 0)
        return -errno;
    /* Asked for, not forced: the kernel caps it at net.core.rmem_max. */
    int size = DGRAM_RCVBUF, now = 0;
    socklen_t len = sizeof(now);
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &now, &len) == 0 && now < 2 * size)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    return 0;
}

int dgram_batch_init(struct dgram_batch *b)
{
    memset(b, 0, sizeof(*b));
    b->bufs = malloc((size_t)DGRAM_BATCH * DGRAM_MAX);
    return b->bufs != NULL ? 0 : -ENOMEM;
}

void dgram_batch_free(struct dgram_batch *b)
{
    free(b->bufs);
    b->bufs = NULL;
}

/* Fills d->local (and ifindex) from the pktinfo among msg's control
 * messages; local.len stays 0 without one. */
static void take_local(struct dgram *d, const struct msghdr *msg, int port_family)
{
    d->local.len = 0;
    d->ifindex = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL;
         c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
            port_family == AF_INET) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            addr_set_ip(&d->local, AF_INET, &pi.ipi_addr, 0);
            d->ifindex = pi.ipi_ifindex;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            addr_set_ip(&d->local, AF_INET6, &pi.ipi6_addr, 0);
            d->ifindex = (int)pi.ipi6_ifindex;
        }
    }
}

int dgram_recv(int fd, struct dgram_batch *b, size_t first, size_t max)
{
    if (first >= DGRAM_BATCH)
        return -ENOBUFS;
    if (max > DGRAM_BATCH - first)
        max = DGRAM_BATCH - first;
    struct dgram *ds = b->d + first;
    uint8_t *bufs = b->bufs + first * DGRAM_MAX;
    struct iovec iov[DGRAM_BATCH];
    _Alignas(struct cmsghdr) uint8_t control[DGRAM_BATCH][CONTROL_LEN];
#ifdef HAVE_RECVMMSG
    struct mmsghdr msgs[DGRAM_BATCH];
    for (size_t i = 0; i < max; i++) {
        iov[i] = (struct iovec){bufs + i * DGRAM_MAX, DGRAM_MAX};
        msgs[i].msg_hdr = (struct msghdr){
            .msg_name = &ds[i].peer.u.ss,
            .msg_namelen = sizeof(ds[i].peer.u),
            .msg_iov = &iov[i],
            .msg_iovlen = 1,
            .msg_control = control[i],
            .msg_controllen = sizeof(control[i]),
        };
    }
    int n = recvmmsg(fd, msgs, (unsigned)max, MSG_DONTWAIT, NULL);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        struct dgram *d = &ds[i];
        d->data = bufs + (size_t)i * DGRAM_MAX;
        d->len = msgs[i].msg_len;
        d->peer.len = msgs[i].msg_hdr.msg_namelen;
        d->truncated = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        take_local(d, &msgs[i].msg_hdr, d->peer.u.sa.sa_family);
    }
    return n;
#else
    size_t n = 0;
    for (; n < max; n++) {
        struct dgram *d = &ds[n];
        iov[n] = (struct iovec){bufs + n * DGRAM_MAX, DGRAM_MAX};
        struct msghdr msg = {
            .msg_name = &d->peer.u.ss,
            .msg_namelen = sizeof(d->peer.u),
            .msg_iov = &iov[n],
            .msg_iovlen = 1,
            .msg_control = control[n],
            .msg_controllen = sizeof(control[n]),
        };
        ssize_t got = recvmsg(fd, &msg, MSG_DONTWAIT);
        if (got < 0) {
            if (n > 0)
                break;
            return -errno;
        }
        d->data = bufs + n * DGRAM_MAX;
        d->len = (size_t)got;
        d->peer.len = msg.msg_namelen;
        d->truncated = (msg.msg_flags & MSG_TRUNC) != 0;
        take_local(d, &msg, d->peer.u.sa.sa_family);
    }
    return (int)n;
#endif
}

/* Writes into control the pktinfo that sends from d->local; its length
 * (0: none to send). */
static size_t put_local(const struct dgram *d, uint8_t *control, size_t room)
{
    memset(control, 0, room);
    struct msghdr msg = {.msg_control = control, .msg_controllen = room};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (d->local.len == 0 || c == NULL)
        return 0;
    if (d->local.u.sa.sa_family == AF_INET) {
        struct in_pktinfo pi = {.ipi_spec_dst = d->local.u.in.sin_addr};
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        return CMSG_SPACE(sizeof(pi));
    }
    struct in6_pktinfo pi = {.ipi6_addr = d->local.u.in6.sin6_addr,
                             .ipi6_ifindex = (unsigned)d->ifindex};
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(pi));
    memcpy(CMSG_DATA(c), &pi, sizeof(pi));
    return CMSG_SPACE(sizeof(pi));
}

/* The header of one datagram to send, its control message in control. */
static struct msghdr message(const struct dgram *d, struct iovec *iov, uint8_t *control,
                             enum dgram_to to)
{
    *iov = (struct iovec){d->data, d->len};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 1};
    if (to != DGRAM_CONNECTED) {
        m.msg_name = (void *)&d->peer.u.ss;
        m.msg_namelen = d->peer.len;
    }
    size_t clen = to == DGRAM_TO_PEER_FROM_LOCAL ? put_local(d, control, CONTROL_LEN) : 0;
    if (clen > 0) {
        m.msg_control = control;
        m.msg_controllen = clen;
    }
    return m;
}

size_t dgram_send(int fd, const struct dgram *ds, size_t n, enum dgram_to to, int *err)
{
    struct iovec iov[DGRAM_BATCH];
    _Alignas(struct cmsghdr) uint8_t control[DGRAM_BATCH][CONTROL_LEN];
    size_t sent = 0;
    *err = 0;
    while (sent < n) {
        size_t k = n - sent < DGRAM_BATCH ? n - sent : DGRAM_BATCH;
#ifdef HAVE_SENDMMSG
        struct mmsghdr msgs[DGRAM_BATCH];
        for (size_t i = 0; i < k; i++)
            msgs[i] = (struct mmsghdr){
                .msg_hdr = message(&ds[sent + i], &iov[i], control[i], to)};
        int got = sendmmsg(fd, msgs, (unsigned)k, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (got < 0) {
            *err = -errno;
            return sent;
        }
        sent += (size_t)got;
#else
        for (size_t i = 0; i < k; i++) {
            struct msghdr m = message(&ds[sent], &iov[i], control[i], to);
            if (sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
                *err = -errno;
                return sent;
            }
            sent++;
        }
#endif
    }
    return sent;
}

int dgram_send2(int fd, const void *a, size_t alen, const void *b, size_t blen)
{
    struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    return sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? -errno : 0;
}
