/*
 * floor-echo: the least work a TCP echo server can do, as the floor of the
 * benchmark.  One thread, one epoll instance, edge-triggered, no library.
 *
 *   floor-echo PORT      listen on 127.0.0.1:PORT
 *
 * Each connection is registered once, for input and output, and never
 * modified.  Bytes are read into one shared buffer and sent back at once;
 * only what the socket does not take is kept, in a buffer of that
 * connection allocated for the moment, and while something is kept the
 * connection is not read (backpressure: a client that does not read cannot
 * make the server grow).  A read shorter than the buffer ends the reading,
 * without the recv that would fail with EAGAIN: with EPOLLET the next byte
 * makes a new edge anyway (built with -DFLOOR_READ_TO_EAGAIN it reads on
 * until EAGAIN instead, to measure what that recv costs).  After the
 * client's FIN, what is kept is sent, then the connection is closed.  Per
 * connection: 16 bytes and the socket.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

struct pending {
    size_t off, len;
    char data[];
};

struct conn {
    int fd;
    int eof;             /* the client's FIN was read */
    struct pending *out; /* bytes the socket did not take */
};

static char scratch[BUF];

static void conn_close(struct conn *c)
{
    close(c->fd); /* also leaves the epoll set */
    free(c->out);
    free(c);
}

/* Sends p[0..n); keeps what does not go.  -1 on a dead connection. */
static int send_all(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t m = send(c->fd, p, n, MSG_NOSIGNAL);
        if (m > 0) {
            p += m;
            n -= (size_t)m;
            continue;
        }
        if (m < 0 && errno == EINTR)
            continue;
        if (m < 0 && errno == EAGAIN) {
            c->out = malloc(sizeof(struct pending) + n);
            if (c->out == NULL)
                return -1;
            c->out->off = 0;
            c->out->len = n;
            memcpy(c->out->data, p, n);
            return 0;
        }
        return -1;
    }
    return 0;
}

/* Writes what is kept; 1 when it all went, 0 when some is left, -1. */
static int flush(struct conn *c)
{
    struct pending *o = c->out;
    while (o->off < o->len) {
        ssize_t m = send(c->fd, o->data + o->off, o->len - o->off, MSG_NOSIGNAL);
        if (m > 0) {
            o->off += (size_t)m;
            continue;
        }
        if (m < 0 && errno == EINTR)
            continue;
        return m < 0 && errno == EAGAIN ? 0 : -1;
    }
    free(o);
    c->out = NULL;
    return 1;
}

/* Reads and echoes until drained, blocked or ended; -1: close it.  With
 * `to_eof` (the event carried the FIN) it reads on to the end. */
static int pump(struct conn *c, int to_eof)
{
    while (c->out == NULL && !c->eof) {
        ssize_t n = recv(c->fd, scratch, BUF, 0);
        if (n > 0) {
            if (send_all(c, scratch, (size_t)n) < 0)
                return -1;
#ifdef FLOOR_READ_TO_EAGAIN /* the variant that reads until EAGAIN, to compare */
            (void)to_eof;
#else
            if (n < BUF && !to_eof)
                return 0;
#endif
            continue;
        }
        if (n == 0) {
            c->eof = 1;
            break;
        }
        if (errno == EINTR)
            continue;
        return errno == EAGAIN ? 0 : -1;
    }
    return c->eof && c->out == NULL ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: floor-echo PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, SOMAXCONN) < 0) {
        perror("floor-echo: listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
        perror("floor-echo: epoll");
        return 1;
    }
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("floor-echo: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) { /* the listener: accept until EAGAIN */
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                            continue;
                        if (errno != EAGAIN)
                            perror("floor-echo: accept");
                        break; /* EMFILE and the like: the next edge retries */
                    }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    c = calloc(1, sizeof(*c));
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP |
                                                        EPOLLET,
                                              .data.ptr = c};
                    if (c == NULL ||
                        (c->fd = fd, epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0)) {
                        close(fd);
                        free(c);
                    }
                }
                continue;
            }
            uint32_t e = evs[i].events;
            int fin = (e & (EPOLLRDHUP | EPOLLHUP)) != 0;
            int r = 0;
            if (e & EPOLLERR)
                r = -1;
            if (r == 0 && (e & EPOLLOUT) && c->out != NULL) {
                r = flush(c);
                if (r == 1) /* drained: read again what waited meanwhile */
                    r = pump(c, 1);
            } else if (r == 0 && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) {
                r = pump(c, fin);
            }
            if (r < 0)
                conn_close(c);
        }
    }
}
