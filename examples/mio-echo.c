/*
 * mio-echo: mio's listener loop in C, an RFC 862 echo server on libmio.
 *
 *   mio-echo [PORT]      listen on 127.0.0.1:PORT (default 7007; 0 = any)
 *
 * The listener is registered with token 0 and MIO_READABLE; every other
 * token is a pointer to its connection.  Each connection echoes through one
 * bounded buffer: it reads only once what it read is written back, so a
 * client that does not read cannot make the server grow.  After the
 * client's FIN it sends back what is left, then closes.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mio.h"

#define LISTENER ((mio_token_t)0)

struct conn {
    int fd;
    size_t len, off; /* buf[off..len) is still to be written back */
    char buf[16384];
};

/* Echoes until the socket would block; returns false when it is done. */
static bool serve(mio_registry_t *reg, struct conn *c)
{
    for (;;) {
        while (c->off < c->len) {
            ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
            if (n < 0)
                return errno == EAGAIN &&
                       mio_registry_rearm(reg, c->fd, MIO_WRITABLE) == 0;
            c->off += (size_t)n;
        }
        ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);
        if (n <= 0)
            return n < 0 && errno == EAGAIN &&
                   mio_registry_rearm(reg, c->fd, MIO_READABLE) == 0;
        c->off = 0;
        c->len = (size_t)n;
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 7007;
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int lfd = mio_tcp_listen((struct sockaddr *)&addr, sizeof(addr), 0, 0);
    mio_poll_t *poll;
    mio_events_t *events = mio_events_new(128);
    if (lfd < 0 || events == NULL || mio_poll_new(&poll) < 0) {
        fprintf(stderr, "mio-echo: %s\n", strerror(lfd < 0 ? -lfd : ENOMEM));
        return 1;
    }
    mio_registry_t *reg = mio_poll_registry(poll);
    if (mio_registry_register(reg, lfd, LISTENER, MIO_READABLE) < 0)
        return 1;
    struct sockaddr_storage bound;
    socklen_t len = sizeof(bound);
    mio_socket_local_addr(lfd, &bound, &len);
    printf("mio-echo: listening on 127.0.0.1:%d (%s)\n",
           ntohs(((struct sockaddr_in *)&bound)->sin_port), mio_backend_name());
    fflush(stdout);

    for (;;) {
        int err = mio_poll_poll(poll, events, NULL);
        if (err == -EINTR)
            continue;
        if (err < 0) {
            fprintf(stderr, "mio-echo: poll: %s\n", strerror(-err));
            return 1;
        }
        for (size_t i = 0; i < mio_events_len(events); i++) {
            mio_token_t token = mio_event_token(mio_events_get(events, i));
            if (token != LISTENER) {
                struct conn *c = (struct conn *)token;
                if (!serve(reg, c)) {
                    mio_registry_deregister(reg, c->fd);
                    close(c->fd);
                    free(c);
                }
                continue;
            }
            int fd; /* the listener is readable: accept until EAGAIN */
            while ((fd = mio_tcp_accept(lfd, NULL, NULL)) >= 0) {
                struct conn *c = calloc(1, sizeof(*c));
                if (c != NULL)
                    c->fd = fd;
                if (c == NULL || mio_registry_register(reg, fd, (mio_token_t)c,
                                                       MIO_READABLE | MIO_WRITABLE) < 0) {
                    close(fd);
                    free(c);
                }
            }
            /* A daemon must also outlive EMFILE here (see mio-echod). */
            if (fd == -EAGAIN)
                mio_registry_rearm(reg, lfd, MIO_READABLE);
        }
    }
}
