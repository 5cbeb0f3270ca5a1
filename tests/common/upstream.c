/*
 * Test upstreams (see upstream.h): the callbacks of a test server.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base.h"
#include "pattern.h"
#include "upstream.h"

/* What one recv() takes; what one send() of the pattern offers. */
#define UP_BUF (64 * KIB)
#define UP_CHUNK (256 * KIB)

struct uconn {
    int fd;
    bool rd_eof, wr_shut;
    uint64_t base;       /* its pattern: from here */
    size_t txoff, txlen; /* pattern bytes sent, and to send */
    uint8_t *ebuf;       /* echo: received, not yet sent back */
    size_t elen, eoff;
    size_t rx; /* bytes received */
};

/* Every upstream running, for up_stop_all(). */
static struct upsrv *running[16];
static size_t nrunning;

static bool echoes(const struct upsrv *u)
{
    return u->conf.mode == UP_ECHO || u->conf.mode == UP_BANNER;
}

/* A failed send, recv or shutdown: counts it; false (the connection is
 * over). */
static bool uc_failed(struct upsrv *u, const char *what)
{
    int err = errno;
    if (err == ECONNRESET || err == EPIPE)
        atomic_fetch_add(&u->resets, 1);
    else
        atomic_fetch_add(&u->srv.errors, 1);
    if (u->conf.on_error != NULL)
        u->conf.on_error(u, what, err);
    return false;
}

/* Sends what is queued; false on a socket error. */
static bool uc_write(struct upsrv *u, struct uconn *c, bool *progress)
{
    while (c->txoff < c->txlen) {
        size_t want = c->txlen - c->txoff < UP_CHUNK ? c->txlen - c->txoff : UP_CHUNK;
        ssize_t n = send(c->fd, pat(c->base + c->txoff), want,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->txoff += (size_t)n;
            *progress = true;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return true;
        return uc_failed(u, "send");
    }
    while (c->eoff < c->elen) {
        ssize_t n = send(c->fd, c->ebuf + c->eoff, c->elen - c->eoff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->eoff += (size_t)n;
            *progress = true;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return true;
        return uc_failed(u, "send");
    }
    c->eoff = c->elen = 0;
    return true;
}

/* Reads what it may now (echo: while nothing waits to go back); false on
 * a socket error. */
static bool uc_read(struct upsrv *u, struct uconn *c, bool *progress)
{
    bool echo = echoes(u);
    while (!c->rd_eof && (!echo || c->elen == 0) && u->conf.mode != UP_SEND_CLOSE) {
        ssize_t n = recv(c->fd, c->ebuf, UP_BUF, MSG_DONTWAIT);
        if (n > 0) {
            *progress = true;
            if (echo) {
                c->elen = (size_t)n;
                c->eoff = 0;
            } else if (c->rx + (size_t)n > pattern_period() ||
                       memcmp(c->ebuf, pat(c->rx), (size_t)n) != 0) {
                atomic_fetch_add(&u->mismatches, 1);
            }
            c->rx += (size_t)n;
            continue;
        }
        if (n == 0) {
            *progress = true;
            c->rd_eof = true;
            atomic_store(&u->last_rx, c->rx);
            atomic_fetch_add(&u->eofs, 1);
            if (u->conf.mode == UP_REPLY_EOF) {
                c->txoff = 0;
                c->txlen = u->conf.nbytes;
            }
            return true;
        }
        if (errno == EAGAIN || errno == EINTR)
            return true;
        return uc_failed(u, "recv");
    }
    return true;
}

/* Moves one connection on; true when it is over (closed). */
static bool uc_service(struct tserver *s, void *conn)
{
    struct upsrv *u = (struct upsrv *)s;
    struct uconn *c = conn;
    enum up_mode mode = u->conf.mode;
    for (int round = 0; round < 64; round++) {
        bool progress = false;
        if (!uc_write(u, c, &progress) || !uc_read(u, c, &progress))
            return true;
        bool sent = c->txoff == c->txlen && c->elen == 0;
        if (mode == UP_SEND_CLOSE && sent)
            return true;
        if (mode == UP_SHUT_FIRST && sent && !c->wr_shut) {
            c->wr_shut = true;
            if (shutdown(c->fd, SHUT_WR) < 0)
                (void)uc_failed(u, "shutdown");
        }
        if (c->rd_eof && sent && (mode != UP_REPLY_EOF || c->txlen == u->conf.nbytes))
            return true;
        if (!progress)
            break;
    }
    return false;
}

static short uc_events(struct tserver *s, void *conn)
{
    const struct upsrv *u = (struct upsrv *)s;
    const struct uconn *c = conn;
    short ev = 0;
    if (!c->rd_eof && (!echoes(u) || c->elen == 0) && u->conf.mode != UP_SEND_CLOSE)
        ev |= POLLIN;
    if (c->txoff < c->txlen || c->eoff < c->elen)
        ev |= POLLOUT;
    return ev;
}

/* A new connection; a speaking mode queues its bytes at once. */
static void *uc_open(struct tserver *s, int fd)
{
    const struct upsrv *u = (struct upsrv *)s;
    struct uconn *c = calloc(1, sizeof(*c));
    uint8_t *ebuf = malloc(UP_BUF);
    if (c == NULL || ebuf == NULL) {
        free(c);
        free(ebuf);
        return NULL;
    }
    c->fd = fd;
    c->ebuf = ebuf;
    c->base = u->conf.off + (uint64_t)atomic_load(&s->accepted) * u->conf.stride;
    enum up_mode mode = u->conf.mode;
    if (mode == UP_BANNER || mode == UP_SHUT_FIRST || mode == UP_SEND_CLOSE)
        c->txlen = u->conf.nbytes;
    return c;
}

static void uc_free(struct tserver *s, void *conn)
{
    (void)s;
    struct uconn *c = conn;
    free(c->ebuf);
    free(c);
}

struct upsrv *up_start(const struct up_conf *conf)
{
    CHECK(nrunning < ARRAY_LEN(running));
    struct upsrv *u = calloc(1, sizeof(*u));
    CHECK(u != NULL);
    u->conf = *conf;
    u->srv = (struct tserver){.max = conf->max > 0 ? conf->max : 64,
                              .conn_open = uc_open,
                              .conn_events = uc_events,
                              .conn_service = uc_service,
                              .conn_free = uc_free,
                              .ip = conf->ip,
                              .port = conf->port};
    tserver_start(&u->srv, conf->backlog > 0 ? conf->backlog : 64);
    running[nrunning++] = u;
    return u;
}

void up_stop(struct upsrv *u)
{
    tserver_stop(&u->srv);
    for (size_t i = 0; i < nrunning; i++)
        if (running[i] == u) {
            running[i] = running[--nrunning];
            break;
        }
    free(u);
}

void up_stop_all(void)
{
    while (nrunning > 0)
        up_stop(running[nrunning - 1]);
}

int up_failures(struct upsrv *u)
{
    return atomic_load(&u->srv.errors) + atomic_load(&u->resets);
}
