/*
 * UDP for the tests (see udp.h): clients, PROXY v2 headers for datagrams,
 * test upstreams.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "net.h"
#include "udp.h"

/* The PROXY protocol v2 signature. */
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Buffers of the test sockets: room for a few of the largest datagrams. */
#define UDP_SOCKBUF (1 << 20)

/* ---- clients ---------------------------------------------------------------- */

socklen_t udp_sockaddr(const char *ip, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        return sizeof(*in);
    }
    if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        return sizeof(*in6);
    }
    test_fail("not an IPv4 or IPv6 literal: \"%s\"", ip);
}

/* A UDP socket of ss's family bound to ss, with big buffers; -1 (errno
 * set) when it cannot. */
static int udp_bound(const struct sockaddr_storage *ss, socklen_t len)
{
    int fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int size = UDP_SOCKBUF;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    if (bind(fd, (const struct sockaddr *)ss, len) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

int udp_client(const char *src)
{
    struct sockaddr_storage ss;
    socklen_t len = udp_sockaddr(src, 0, &ss);
    int fd = udp_bound(&ss, len);
    if (fd < 0)
        test_fail("a UDP socket on %s: %s", src, strerror(errno));
    track_fd(fd);
    return fd;
}

int udp_client4(void)
{
    return udp_client("127.0.0.1");
}

int udp_client6(void)
{
    return udp_client("::1");
}

void udp_send(int fd, const char *ip, int port, const void *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = udp_sockaddr(ip, port, &ss);
    ssize_t n = -1;
    /* Bounded: EINTR, or a connected socket's pending ICMP error, again. */
    for (int i = 0; i < 10; i++) {
        n = sendto(fd, buf, len, 0, (struct sockaddr *)&ss, sl);
        if (n >= 0 || (errno != EINTR && errno != ECONNREFUSED))
            break;
    }
    if (n < 0 || (size_t)n != len)
        test_fail("sendto %s:%d, %zu bytes: %s", ip, port, len,
                  n < 0 ? strerror(errno) : "cut short");
}

ssize_t udp_recv(int fd, void *buf, size_t cap, int ms, struct sockaddr_storage *from)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 10000; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        ssize_t n = recvfrom(fd, buf, cap, MSG_DONTWAIT | MSG_TRUNC,
                             (struct sockaddr *)&ss, &sl);
        if (n >= 0) {
            if (from != NULL)
                *from = ss;
            return n;
        }
        if (errno != EAGAIN && errno != EINTR && errno != ECONNREFUSED)
            test_fail("recvfrom: %s", strerror(errno));
        int64_t left = until - ms_now();
        if (left <= 0)
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        (void)poll(&pfd, 1, (int)left);
    }
    return -1;
}

bool udp_silent(int fd, int ms)
{
    char b[16];
    return udp_recv(fd, b, sizeof(b), ms, NULL) < 0;
}

void udp_drain(int fd)
{
    char b[16];
    for (int i = 0; i < 10000 && udp_recv(fd, b, sizeof(b), 0, NULL) >= 0; i++)
        continue;
}

void udp_format(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%d", ip, ntohs(in->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%d", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(buf, len, "(family %d)", ss->ss_family);
    }
}

void udp_local(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    CHECK_EQ(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    udp_format(&ss, buf, len);
}

void udp_expect_echo(int fd, const char *ip, int port, const void *buf, size_t len,
                     int ms)
{
    uint8_t *back = xmalloc(len + 1);
    struct sockaddr_storage from, want;
    (void)udp_sockaddr(ip, port, &want);
    char wanted[UDP_ADDRSTRLEN], got[UDP_ADDRSTRLEN], me[UDP_ADDRSTRLEN];
    udp_format(&want, wanted, sizeof(wanted));
    udp_local(fd, me, sizeof(me));
    udp_send(fd, ip, port, buf, len);
    ssize_t n = udp_recv(fd, back, len + 1, ms, &from);
    if (n < 0) {
        free(back);
        test_fail("%s to %s: no answer to %zu bytes within %d ms", me, wanted, len, ms);
    }
    udp_format(&from, got, sizeof(got));
    bool same = (size_t)n == len && memcmp(back, buf, len) == 0;
    free(back);
    if (!same)
        test_fail("%s to %s: %zu bytes sent, %zd came back, not the same", me, wanted,
                  len, n);
    if (strcmp(got, wanted) != 0)
        test_fail("%s to %s: the echo came from %s", me, wanted, got);
}

ssize_t udp_ask(int fd, const char *ip, int port, const void *buf, size_t len,
                void *reply, size_t cap, int tries, int ms)
{
    for (int i = 0; i < tries; i++) {
        udp_send(fd, ip, port, buf, len);
        ssize_t n = udp_recv(fd, reply, cap, ms, NULL);
        if (n >= 0)
            return n;
    }
    return -1;
}

/* ---- PROXY protocol v2 ------------------------------------------------------------ */

size_t udp_proxy_v2(uint8_t *buf, const char *src, int sport, const char *dst, int dport)
{
    struct sockaddr_storage s, d;
    (void)udp_sockaddr(src, sport, &s);
    (void)udp_sockaddr(dst, dport, &d);
    CHECK_EQ(s.ss_family, d.ss_family);
    memcpy(buf, v2_sig, sizeof(v2_sig));
    buf[12] = 0x21; /* version 2, PROXY */
    size_t alen;
    uint8_t *p = buf + 16;
    if (s.ss_family == AF_INET) {
        buf[13] = 0x12; /* AF_INET, DGRAM */
        alen = 12;
        memcpy(p, &((struct sockaddr_in *)&s)->sin_addr, 4);
        memcpy(p + 4, &((struct sockaddr_in *)&d)->sin_addr, 4);
        p += 8;
    } else {
        buf[13] = 0x22; /* AF_INET6, DGRAM */
        alen = 36;
        memcpy(p, &((struct sockaddr_in6 *)&s)->sin6_addr, 16);
        memcpy(p + 16, &((struct sockaddr_in6 *)&d)->sin6_addr, 16);
        p += 32;
    }
    p[0] = (uint8_t)(sport >> 8);
    p[1] = (uint8_t)sport;
    p[2] = (uint8_t)(dport >> 8);
    p[3] = (uint8_t)dport;
    buf[14] = 0;
    buf[15] = (uint8_t)alen;
    return 16 + alen;
}

/* ---- test upstreams ------------------------------------------------------------ */

/* Every upstream started and not freed, for udp_stop_all(). */
static struct udpup *ups[32];

/* The declared addresses of a v2 header at buf[0..len) into u's record;
 * returns the header's length, 0 when there is no valid one. */
static size_t up_parse_v2(struct udpup *u, const uint8_t *buf, size_t len)
{
    if (len < 16 || memcmp(buf, v2_sig, sizeof(v2_sig)) != 0 || (buf[12] & 0xF0) != 0x20)
        return 0;
    size_t hlen = 16 + ((size_t)buf[14] << 8 | buf[15]);
    if (hlen > len)
        return 0;
    u->last_ver_cmd = buf[12];
    u->last_fam = buf[13];
    u->last_src[0] = u->last_dst[0] = '\0';
    struct sockaddr_storage s = {0}, d = {0};
    const uint8_t *p = buf + 16;
    if ((buf[13] >> 4) == 1 && hlen >= 16 + 12) {
        struct sockaddr_in *si = (struct sockaddr_in *)&s, *di = (struct sockaddr_in *)&d;
        si->sin_family = di->sin_family = AF_INET;
        memcpy(&si->sin_addr, p, 4);
        memcpy(&di->sin_addr, p + 4, 4);
        memcpy(&si->sin_port, p + 8, 2);
        memcpy(&di->sin_port, p + 10, 2);
    } else if ((buf[13] >> 4) == 2 && hlen >= 16 + 36) {
        struct sockaddr_in6 *si = (struct sockaddr_in6 *)&s,
                            *di = (struct sockaddr_in6 *)&d;
        si->sin6_family = di->sin6_family = AF_INET6;
        memcpy(&si->sin6_addr, p, 16);
        memcpy(&di->sin6_addr, p + 16, 16);
        memcpy(&si->sin6_port, p + 32, 2);
        memcpy(&di->sin6_port, p + 34, 2);
    }
    if (s.ss_family != 0) {
        udp_format(&s, u->last_src, sizeof(u->last_src));
        udp_format(&d, u->last_dst, sizeof(u->last_dst));
    }
    return hlen;
}

static bool same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/* Counts from as a peer unless it was seen; lock held. */
static void up_note_peer(struct udpup *u, const struct sockaddr_storage *from)
{
    int n = atomic_load(&u->peers);
    for (int i = 0; i < n && i < UDPUP_PEERS; i++)
        if (same_peer(&u->seen[i], from))
            return;
    if (n < UDPUP_PEERS)
        u->seen[n] = *from;
    atomic_store(&u->peers, n + 1);
}

/* Takes one datagram of len bytes (in[0..len)) from `from` and answers it;
 * out has room for the tag and 64 KiB. */
static void up_serve(struct udpup *u, const uint8_t *in, size_t len,
                     const struct sockaddr_storage *from, socklen_t fromlen, uint8_t *out)
{
    atomic_fetch_add(&u->datagrams, 1);
    pthread_mutex_lock(&u->mu);
    up_note_peer(u, from);
    udp_format(from, u->last_peer, sizeof(u->last_peer));
    size_t hlen = 0;
    if (u->conf.proxy_v2) {
        hlen = up_parse_v2(u, in, len);
        if (hlen == 0) {
            pthread_mutex_unlock(&u->mu);
            atomic_fetch_add(&u->bad_headers, 1);
            return;
        }
    }
    u->last_len = len - hlen;
    pthread_mutex_unlock(&u->mu);
    size_t tlen = strlen(u->tag);
    memcpy(out, u->tag, tlen);
    memcpy(out + tlen, in + hlen, len - hlen);
    int replies = u->conf.replies == 0 ? 1 : u->conf.replies < 0 ? 0 : u->conf.replies;
    for (int r = 0; r < replies; r++) {
        ssize_t n = sendto(u->fd, out, tlen + len - hlen, MSG_DONTWAIT,
                           (const struct sockaddr *)from, fromlen);
        if (n < 0)
            atomic_fetch_add(&u->errors, 1);
        else
            atomic_fetch_add(&u->answered, 1);
    }
}

/* The upstream's thread: polls 10 ms at a time until told to stop. */
static void *up_run(void *arg)
{
    struct udpup *u = arg;
    size_t cap = 65536 + 64;
    uint8_t *in = malloc(cap), *out = malloc(cap + sizeof(u->tag));
    if (in == NULL || out == NULL) {
        atomic_fetch_add(&u->errors, 1);
        atomic_store(&u->stop, true);
    }
    while (!atomic_load(&u->stop)) {
        struct pollfd pfd = {.fd = u->fd, .events = POLLIN};
        if (poll(&pfd, 1, 10) <= 0)
            continue;
        for (int k = 0; k < 256; k++) {
            struct sockaddr_storage from;
            socklen_t fl = sizeof(from);
            ssize_t n = recvfrom(u->fd, in, cap, MSG_DONTWAIT, (struct sockaddr *)&from,
                                 &fl);
            if (n < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNREFUSED)
                    atomic_fetch_add(&u->errors, 1);
                break;
            }
            up_serve(u, in, (size_t)n, &from, fl, out);
        }
    }
    free(in);
    free(out);
    return NULL;
}

struct udpup *udpup_start(const struct udpup_conf *conf)
{
    size_t slot = 0;
    while (slot < ARRAY_LEN(ups) && ups[slot] != NULL)
        slot++;
    CHECK(slot < ARRAY_LEN(ups));
    struct udpup *u = xmalloc(sizeof(*u));
    memset(u, 0, sizeof(*u));
    if (conf != NULL)
        u->conf = *conf;
    snprintf(u->tag, sizeof(u->tag), "%s", u->conf.tag != NULL ? u->conf.tag : "");
    u->conf.tag = u->tag;
    pthread_mutex_init(&u->mu, NULL);
    struct sockaddr_storage ss;
    const char *ip = u->conf.ip != NULL ? u->conf.ip : u->conf.v6 ? "::1" : "127.0.0.1";
    socklen_t sl = udp_sockaddr(ip, u->conf.port, &ss);
    u->fd = udp_bound(&ss, sl);
    if (u->fd < 0) {
        int err = errno;
        free(u);
        test_fail("a UDP upstream: %s", strerror(err));
    }
    u->port = local_port(u->fd);
    if (pthread_create(&u->thread, NULL, up_run, u) != 0) {
        close(u->fd);
        free(u);
        test_fail("a UDP upstream's thread: cannot start it");
    }
    ups[slot] = u;
    return u;
}

void udpup_stop(struct udpup *u)
{
    if (atomic_exchange(&u->stopped, true))
        return;
    atomic_store(&u->stop, true);
    pthread_join(u->thread, NULL);
    close(u->fd);
    u->fd = -1;
}

void udpup_free(struct udpup *u)
{
    if (u == NULL)
        return;
    udpup_stop(u);
    for (size_t i = 0; i < ARRAY_LEN(ups); i++)
        if (ups[i] == u)
            ups[i] = NULL;
    pthread_mutex_destroy(&u->mu);
    free(u);
}

void udpup_last(struct udpup *u, struct udpup_last *out)
{
    pthread_mutex_lock(&u->mu);
    memcpy(out->peer, u->last_peer, sizeof(out->peer));
    memcpy(out->src, u->last_src, sizeof(out->src));
    memcpy(out->dst, u->last_dst, sizeof(out->dst));
    out->ver_cmd = u->last_ver_cmd;
    out->fam = u->last_fam;
    out->len = u->last_len;
    pthread_mutex_unlock(&u->mu);
}

bool udpup_wait(struct udpup *u, int n, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 100000; i++) {
        if (atomic_load(&u->datagrams) >= n)
            return true;
        if (ms_now() >= until)
            return false;
        sleep_ms(1);
    }
    return false;
}

void udp_stop_all(void)
{
    for (size_t i = 0; i < ARRAY_LEN(ups); i++)
        if (ups[i] != NULL)
            udpup_free(ups[i]);
}
