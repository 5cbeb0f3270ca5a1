/* Client connections: echo and relay, with backpressure and half-close. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "accept.h"
#include "listener.h"
#include "pipe.h"
#include "proxy.h"
#include "upstream.h"
#include "worker.h"

/* Bytes kept for a socket that could not take them yet. */
struct buf {
    size_t off, len, cap;
    uint8_t data[];
};

#define IS_ECHO(c) ((c)->l->cfg->mode == MODE_ECHO)

static void start_connect(struct conn *c);
static bool pump(struct conn *c, struct side *from, struct side *to);

/* The other socket of a relay; the client itself for echo. */
static struct side *peer_side(struct side *s)
{
    struct conn *c = s->conn;
    if (IS_ECHO(c))
        return &c->client;
    return s == &c->client ? &c->upstream : &c->client;
}

/* A reason naming the side and the error, e.g. "client-reset". */
static const char *error_reason(const struct side *s, int err)
{
    bool client = s->kind == EP_CLIENT;
    switch (err) {
    case ECONNRESET:
    case EPIPE:
        return client ? "client-reset" : "upstream-reset";
    case ETIMEDOUT:
        return client ? "client-timeout" : "upstream-timeout";
    case ENOMEM:
    case ENOBUFS:
        return "out-of-memory";
    default:
        return client ? "client-error" : "upstream-error";
    }
}

/* When the PROXY header must be complete: proxy_timeout after the accept. */
static int64_t header_deadline(const struct conn *c)
{
    return c->start_ms + c->l->cfg->proxy_timeout_ms;
}

/* Sets the connection's timer to its idle deadline (or none), and while
 * the PROXY header is read, to the header's deadline if that comes first. */
static void arm_idle(struct conn *c)
{
    int64_t idle = c->l->cfg->idle_timeout_ms;
    int64_t at = idle > 0 ? c->last_ms + idle : INT64_MAX;
    if (c->state == CONN_PROXY_HEADER && header_deadline(c) < at)
        at = header_deadline(c);
    if (at != INT64_MAX)
        (void)timer_set(&c->w->timers, &c->timer, at);
    else
        timer_cancel(&c->w->timers, &c->timer);
}

/*
 * TCP urgent data (send(MSG_OOB): telnet's Synch, FTP's ABOR).  Every socket
 * reads it in line (SO_OOBINLINE: a TCP listening socket passes it on to the
 * sockets it accepts; the others get it set), so no byte is skipped.  But a
 * read stops short at the urgent mark with more bytes queued behind it, and
 * splice(2) stops there for good: EAGAIN, then 0 once the FIN has come.  So
 * a socket whose event reports priority is in urgent mode until a read says
 * EAGAIN: it is read by copy, past short reads, and the byte at the mark is
 * read alone and sent on as urgent data, so that the receiver finds the mark
 * where the sender put it.  A destination that cannot take urgent data (a
 * Unix socket before Linux 5.15) gets that byte in line.
 */

void conn_urgent_inline(int fd)
{
    int on = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &on, sizeof(on));
}

/* Whether the next byte to read from fd is the one at the urgent mark. */
static bool at_urgent_mark(int fd)
{
    int mark = 0;
    return ioctl(fd, SIOCATMARK, &mark) == 0 && mark == 1;
}

/* What reading a socket waits for: readable, and priority, which tells of
 * urgent data (kqueue has no such event: see pump()). */
static mio_interest_t read_interest(const struct worker *w)
{
    return w->no_priority ? MIO_READABLE : MIO_READABLE | MIO_PRIORITY;
}

/* Registers one side's socket for both directions, edge-triggered. */
static bool watch(struct conn *c, struct side *s)
{
    struct worker *w = c->w;
    int err = mio_registry_register(w->reg, s->fd, (mio_token_t)s,
                                    read_interest(w) | MIO_WRITABLE);
    if (err == -EOPNOTSUPP && !w->no_priority) {
        w->no_priority = true;
        err = mio_registry_register(w->reg, s->fd, (mio_token_t)s,
                                    read_interest(w) | MIO_WRITABLE);
    }
    if (err < 0) {
        log_err("listener %s: cannot watch a socket: %s", c->l->cfg->name,
                log_strerror(-err));
        return false;
    }
    return true;
}

/* Deregisters and closes one side's socket. */
static void unwatch(struct conn *c, struct side *s)
{
    if (s->fd < 0)
        return;
    (void)mio_registry_deregister(c->w->reg, s->fd);
    close(s->fd);
    s->fd = -1;
}

void conn_open(struct worker *w, struct listen_sock *ls, int fd,
               const addr_t *peer, const uint8_t *srckey, size_t srclen)
{
    struct listener *l = ls->listener;
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        log_err("listener %s: out of memory for a connection", l->cfg->name);
        atomic_fetch_sub(&w->d->active, 1);
        atomic_fetch_sub(&l->st->active, 1);
        if (srclen > 0)
            persource_release(&l->st->persource, srckey, srclen);
        return;
    }
    c->w = w;
    c->l = l;
    c->ls = ls;
    c->peer = *peer;
    c->client = (struct side){.kind = EP_CLIENT, .fd = fd, .conn = c};
    c->upstream = (struct side){.kind = EP_UPSTREAM, .fd = -1, .conn = c};
    c->srclen = (uint8_t)srclen;
    memcpy(c->srckey, srckey, srclen);
    c->start_ms = c->last_ms = w->now_ms;
    generation_ref(l->gen); /* its settings stay while it lives */
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    atomic_fetch_add(&l->st->accepted, 1);

    if (peer->u.sa.sa_family != AF_UNIX)
        (void)mio_tcp_set_nodelay(fd, true);
    else
        conn_urgent_inline(fd); /* not passed on by a Unix listening socket */
    if (!watch(c, &c->client)) {
        conn_abort(c, "out-of-memory");
        return;
    }
    if (l->cfg->accept_proxy) {
        c->state = CONN_PROXY_HEADER;
        arm_idle(c);
        /* The header may be there already: its edge came before we watched. */
        c->client.read_paused = true;
        conn_ready(&c->client, NULL);
    } else if (IS_ECHO(c)) {
        c->state = CONN_OPEN;
        arm_idle(c);
    } else {
        c->client.read_paused = true; /* read once the upstream is there */
        start_connect(c);
    }
}

/* Makes close(fd) send a reset instead of a FIN (a Unix socket has no
 * reset: its peer just sees the end). */
static void reset_on_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* Ends the connection: conn_close() or, when `abort`, conn_abort(). */
static void end(struct conn *c, const char *reason, bool abort)
{
    if (c->dead)
        return;
    struct worker *w = c->w;
    struct listener *l = c->l;
    c->dead = true;
    timer_cancel(&w->timers, &c->timer);
    /* Counts first, sockets after: a client that sees its close and comes
     * straight back must find its slot free, and the counters current. */
    if (c->up != NULL)
        atomic_fetch_sub(&c->up->active, 1);
    if (c->srclen > 0)
        persource_release(&l->st->persource, c->srckey, c->srclen);
    atomic_fetch_add(&l->st->bytes_in, c->in);
    atomic_fetch_add(&l->st->bytes_out, c->out);
    atomic_fetch_sub(&l->st->active, 1);
    atomic_fetch_sub(&w->d->active, 1);
    if (abort) {
        reset_on_close(c->client.fd);
        reset_on_close(c->upstream.fd);
    }
    unwatch(c, &c->client);
    unwatch(c, &c->upstream);
    if (c->client.pipe != NULL)
        pipe_put(&w->pipes, c->client.pipe);
    if (c->upstream.pipe != NULL)
        pipe_put(&w->pipes, c->upstream.pipe);
    c->client.pipe = c->upstream.pipe = NULL;
    if (w->spare_fd < 0) /* lost at the descriptor limit: take it back */
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (l->gen->cfg->log_access && log_enabled(LOG_INFO)) {
        char client[ADDR_STRLEN];
        addr_format(&c->peer, client, sizeof(client));
        int64_t ms = w->now_ms - c->start_ms;
        log_info("access listener=%s client=%s upstream=%s in=%llu out=%llu "
                 "duration=%lld.%03lld reason=%s",
                 l->cfg->name, client, c->up ? c->up->name : "-",
                 (unsigned long long)c->in, (unsigned long long)c->out,
                 (long long)(ms / 1000), (long long)(ms % 1000), reason);
    }
    /* Off the open list, onto the dead list: events later in this batch
     * may still carry tokens that point into it. */
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    w->nconns--;
    c->next = w->dead;
    w->dead = c;
}

void conn_close(struct conn *c, const char *reason)
{
    end(c, reason, false);
}

void conn_abort(struct conn *c, const char *reason)
{
    end(c, reason, true);
}

void conn_reap(struct worker *w)
{
    while (w->dead != NULL) {
        struct conn *c = w->dead;
        w->dead = c->next;
        free(c->client.out);
        free(c->upstream.out);
        free(c->hdr);
        free(c->proxy_dst);
        generation_unref(c->l->gen);
        free(c);
    }
    /* A worker without connections keeps no pipes open. */
    if (w->nconns == 0 && w->pipes.nfree > 0)
        pipe_pool_free(&w->pipes);
}

/* Keeps bytes for `to` that it could not take; false when out of memory.
 * The buffer holds buffer_size bytes, or more when what waits for the
 * upstream before its first write needs it: an outgoing PROXY header in
 * front of the bytes that came with the client's own header. */
static bool keep(struct conn *c, struct side *to, const uint8_t *p, size_t n)
{
    struct buf *b = to->out;
    if (b != NULL && b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    size_t len = b != NULL ? b->len : 0;
    if (b == NULL || len + n > b->cap) {
        size_t cap = c->l->cfg->buffer_size;
        if (cap < len + n)
            cap = len + n;
        struct buf *grown = realloc(b, sizeof(struct buf) + cap);
        if (grown == NULL)
            return false;
        grown->off = 0;
        grown->len = len;
        grown->cap = cap;
        to->out = b = grown;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return true;
}

/* One send(2) of p[0..n) to `to`, as urgent data when `oob` and the socket
 * can take it (in line otherwise). */
static ssize_t send_to(const struct side *to, const uint8_t *p, size_t n, bool oob)
{
    if (oob) {
        ssize_t m = send(to->fd, p, n, MSG_NOSIGNAL | MSG_OOB);
        if (m >= 0 || errno != EOPNOTSUPP)
            return m;
    }
    return send(to->fd, p, n, MSG_NOSIGNAL);
}

/* Writes p[0..n) to `to` (as urgent data when `oob`), keeping what it
 * cannot take now.  Returns 0 when everything went, 1 when some is kept
 * (EAGAIN, re-armed), -errno. */
static int deliver(struct conn *c, struct side *to, const uint8_t *p, size_t n,
                   bool oob)
{
    size_t done = 0;
    while (done < n) {
        ssize_t m = send_to(to, p + done, n - done, oob);
        if (m >= 0) {
            done += (size_t)m;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        if (!keep(c, to, p + done, n - done))
            return -ENOMEM;
        to->out_oob = oob;
        (void)mio_registry_rearm(c->w->reg, to->fd, MIO_WRITABLE);
        return 1;
    }
    return 0;
}

/* True while bytes wait inside the daemon for `to`. */
static bool pending(const struct side *to)
{
    return to->out != NULL || to->pipe != NULL;
}

/* Counts n bytes of kept data written to `to`. */
static void wrote(struct conn *c, const struct side *to, size_t n)
{
    if (to->kind == EP_CLIENT)
        c->out += n;
    c->last_ms = c->w->now_ms;
}

/* Writes the bytes a pipe holds for `to`.  1: all written (the pipe went
 * back to the pool), 0: still some (re-armed), -errno. */
static int flush_pipe(struct conn *c, struct side *to)
{
    ssize_t m = pipe_drain(to->pipe, to->fd);
    if (m > 0) {
        wrote(c, to, (size_t)m);
    } else if (m != -EAGAIN) {
        return (int)m;
    }
    if (to->pipe->len > 0) {
        (void)mio_registry_rearm(c->w->reg, to->fd, MIO_WRITABLE);
        return 0;
    }
    pipe_put(&c->w->pipes, to->pipe);
    to->pipe = NULL;
    return 1;
}

/* Writes what is kept for `to`.  1: all written (buffer freed), 0: still
 * some (re-armed), -errno. */
static int flush(struct conn *c, struct side *to)
{
    if (to->pipe != NULL)
        return flush_pipe(c, to);
    struct buf *b = to->out;
    while (b != NULL && b->off < b->len) {
        ssize_t m = send_to(to, b->data + b->off, b->len - b->off, to->out_oob);
        if (m >= 0) {
            b->off += (size_t)m;
            wrote(c, to, (size_t)m);
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        (void)mio_registry_rearm(c->w->reg, to->fd, MIO_WRITABLE);
        return 0;
    }
    free(b);
    to->out = NULL;
    to->out_oob = false;
    return 1;
}

/* Passes a FIN from `from` on to `to` once nothing is kept for it, and ends
 * the connection when both ways are done.  False when it was closed. */
static bool pass_fin(struct conn *c, struct side *from, struct side *to)
{
    if (!from->eof || pending(to))
        return true;
    if (IS_ECHO(c)) {
        conn_close(c, "done"); /* everything received was sent back */
        return false;
    }
    if (!to->shut) {
        to->shut = true;
        if (shutdown(to->fd, SHUT_WR) < 0 && errno != ENOTCONN) {
            conn_abort(c, error_reason(to, errno));
            return false;
        }
    }
    if (c->client.eof && c->upstream.eof && !pending(&c->client) &&
        !pending(&c->upstream)) {
        conn_close(c, "done");
        return false;
    }
    return true;
}

/* One read of up to `cap` bytes from `from` into the worker's scratch
 * buffer, written on to `to` (what it cannot take is kept); with `oob`, the
 * one byte at the urgent mark, sent on as urgent data.  Returns the bytes
 * read, 0 at end of file, or -errno with *culprit the side at fault. */
static ssize_t move_copy(struct conn *c, struct side *from, struct side *to,
                         size_t cap, bool oob, struct side **culprit)
{
    struct worker *w = c->w;
    ssize_t n = recv(from->fd, w->scratch, oob ? 1 : cap, 0);
    if (n <= 0) {
        *culprit = from;
        return n == 0 ? 0 : -errno;
    }
    /* A full read: more is likely coming, through a pipe if allowed. */
    if (!oob)
        from->bulk = (size_t)n == cap && c->l->cfg->splice;
    int r = deliver(c, to, w->scratch, (size_t)n, oob);
    if (r < 0) {
        *culprit = r == -ENOMEM ? from : to;
        return r;
    }
    /* r == 1 only after keep() set to->out: deliver() returns 0, 1 or
     * -errno, and the analyzer does not know that errno > 0. */
    if (to->kind == EP_CLIENT)
        /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): above */
        c->out += (size_t)n - (r == 1 ? to->out->len - to->out->off : 0);
    return n;
}

/* The fewest bytes a spliced read must bring for the next one to be
 * spliced too: below it, two splices cost more than a copy. */
#define SPLICE_MIN 4096

/* One read of up to `cap` bytes from `from` into a pipe, written on to `to`
 * from the pipe; what `to` cannot take stays in the pipe.  Copies instead
 * (and says so in *copied) when no pipe can be had or the socket cannot
 * splice.  Returns as move_copy(). */
static ssize_t move_splice(struct conn *c, struct side *from, struct side *to,
                           size_t cap, struct side **culprit, bool *copied)
{
    struct pipe *p = pipe_get(&c->w->pipes);
    if (p == NULL) {
        from->bulk = false;
        *copied = true;
        return move_copy(c, from, to, cap, false, culprit);
    }
    ssize_t n = pipe_fill(p, from->fd, cap);
    if (n <= 0) {
        pipe_put(&c->w->pipes, p);
        if (n == -EINVAL) { /* not a socket splice(2) knows */
            from->bulk = false;
            *copied = true;
            return move_copy(c, from, to, cap, false, culprit);
        }
        *culprit = from;
        return n;
    }
    from->bulk = n >= SPLICE_MIN || (size_t)n == cap;
    to->pipe = p;
    int r = flush_pipe(c, to);
    if (r < 0) {
        *culprit = to;
        return r;
    }
    return n;
}

/* Moves bytes from `from` to `to` until `from` is empty (EAGAIN, or a short
 * read), `to` cannot take more, or `from` ends.  False when the connection
 * was closed. */
static bool pump(struct conn *c, struct side *from, struct side *to)
{
    struct worker *w = c->w;
    size_t cap = c->l->cfg->buffer_size;
    if (cap > w->scratch_len)
        cap = w->scratch_len; /* a reload raised it and the worker could not */
    /* Once spliced, read by splice until the next event: a splice that came
     * back short may have stopped at an urgent mark whose byte came only
     * after the event, and a recv there would read it in line. */
    bool splicing = false;
    while (!from->eof) {
        if (pending(to)) {
            from->read_paused = true; /* backpressure: resumed by flush */
            return true;
        }
        struct side *culprit = from;
        bool spliced = (from->bulk || splicing) && !from->urgent, copied = false;
        bool oob = from->urgent && at_urgent_mark(from->fd);
        ssize_t n = spliced ? move_splice(c, from, to, cap, &culprit, &copied)
                            : move_copy(c, from, to, cap, oob, &culprit);
        spliced = spliced && !copied;
        splicing = spliced;
        if (n > 0) {
            c->last_ms = w->now_ms;
            if (from->kind == EP_CLIENT)
                c->in += (size_t)n;
            /* A short recv emptied the receive queue: new bytes bring a
             * new edge, so the recv that would say EAGAIN is saved.  Not
             * after a FIN or an error was reported (that edge is spent),
             * nor in urgent mode (a recv stops short at the mark), nor
             * where no event tells of urgent data, nor after a splice,
             * which also stops short when the pipe runs out of slots. */
            if (!spliced && (size_t)n < cap && !from->closing && !from->urgent &&
                !w->no_priority && !pending(to)) {
                from->read_paused = false;
                (void)mio_registry_rearm(w->reg, from->fd, read_interest(w));
                return true;
            }
            continue;
        }
        if (n == 0 && spliced) {
            /* splice(2) also says 0 at an urgent mark once the FIN has
             * come: a recv tells which. */
            from->urgent = true;
            continue;
        }
        if (n == 0) {
            from->eof = true;
            from->read_paused = false;
            return pass_fin(c, from, to);
        }
        if (n == -EINTR)
            continue;
        if (n == -EAGAIN) {
            from->read_paused = false;
            from->urgent = false; /* past the mark: the next one is an event */
            (void)mio_registry_rearm(w->reg, from->fd, read_interest(w));
            return true;
        }
        conn_abort(c, error_reason(culprit, (int)-n));
        return false;
    }
    return true;
}

/* `to` can take bytes again: write what is kept, pass a pending FIN, and
 * resume reading its source.  False when the connection was closed. */
static bool drain(struct conn *c, struct side *to)
{
    struct side *from = peer_side(to);
    if (pending(to)) {
        int r = flush(c, to);
        if (r < 0) {
            conn_abort(c, error_reason(to, -r));
            return false;
        }
        if (r == 0)
            return true;
    }
    if (!pass_fin(c, from, to))
        return false;
    if (from->read_paused)
        return pump(c, from, to);
    return true;
}

/* Reads the client's PROXY header.  The bytes after it, read in the same
 * recv, are kept to go first to the upstream (or back, for echo). */
static void read_proxy_header(struct conn *c)
{
    struct side *s = &c->client;
    if (c->hdr == NULL) {
        c->hdr = malloc(sizeof(struct buf) + PROXY_MAX_HEADER);
        if (c->hdr == NULL) {
            conn_abort(c, "out-of-memory");
            return;
        }
        c->hdr->off = c->hdr->len = 0;
        c->hdr->cap = PROXY_MAX_HEADER;
    }
    struct buf *h = c->hdr;
    struct proxy_info info;
    const char *why = "incomplete";
    int hlen = 0;
    while (hlen == 0) {
        if (h->len == h->cap) {
            why = "PROXY header too long";
            hlen = -1;
            break;
        }
        ssize_t n = recv(s->fd, h->data + h->len, h->cap - h->len, 0);
        if (n == 0) {
            conn_close(c, "client-closed-before-proxy-header");
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                (void)mio_registry_rearm(c->w->reg, s->fd, read_interest(c->w));
                s->read_paused = false;
                return;
            }
            conn_abort(c, error_reason(s, errno));
            return;
        }
        h->len += (size_t)n;
        c->in += (size_t)n;
        c->last_ms = c->w->now_ms;
        hlen = proxy_parse(h->data, h->len, &info, &why);
    }
    if (hlen < 0) {
        listener_refused(c->w, c->l, &c->peer, REFUSED_PROXY_HEADER, why);
        conn_close(c, "bad-proxy-header");
        return;
    }
    c->in -= (size_t)hlen; /* the header is not payload */
    struct listener *l = c->l;
    if (!info.local) {
        /* From now on the client is who the header says, in the access
         * line too, even when it is refused. */
        c->peer = info.src;
        if (!listener_admit_source(c->w, l, &info.src, c)) {
            conn_close(c, "refused-after-proxy-header");
            return;
        }
        c->proxy_dst = malloc(sizeof(addr_t));
        if (c->proxy_dst != NULL)
            *c->proxy_dst = info.dst;
    }
    size_t rest = h->len - (size_t)hlen;
    struct side *to = IS_ECHO(c) ? &c->client : &c->upstream;
    if (rest > 0 && !keep(c, to, h->data + hlen, rest)) {
        conn_abort(c, "out-of-memory");
        return;
    }
    free(c->hdr);
    c->hdr = NULL;
    s->read_paused = true; /* more may be waiting behind what we read */
    if (IS_ECHO(c)) {
        c->state = CONN_OPEN;
        arm_idle(c);
        (void)drain(c, &c->client);
    } else {
        start_connect(c);
    }
}

/* Puts the PROXY header for the upstream in front of anything kept. */
static bool queue_proxy_header(struct conn *c)
{
    enum send_proxy v = c->l->cfg->send_proxy;
    if (v == SEND_PROXY_NONE)
        return true;
    addr_t dst = c->ls->addr;
    if (c->proxy_dst != NULL) {
        dst = *c->proxy_dst;
    } else {
        dst.len = sizeof(dst.u);
        if (getsockname(c->client.fd, &dst.u.sa, &dst.len) < 0)
            dst = c->ls->addr;
    }
    uint8_t hdr[PROXY_MAX_HEADER];
    int n = proxy_build(v == SEND_PROXY_V1 ? 1 : 2, &c->peer, &dst, hdr, sizeof(hdr));
    if (n < 0)
        return false;
    struct buf *kept = c->upstream.out;
    c->upstream.out = NULL;
    bool ok = keep(c, &c->upstream, hdr, (size_t)n) &&
              (kept == NULL || keep(c, &c->upstream, kept->data + kept->off,
                                    kept->len - kept->off));
    free(kept);
    return ok;
}

/* Starts a connect to the next upstream address, or closes the client when
 * the attempts are spent. */
static void start_connect(struct conn *c)
{
    struct worker *w = c->w;
    const struct listener_config *cfg = c->l->cfg;
    struct upstream_addr *up;
    while ((up = upstream_next(w, c)) != NULL) {
        int fd = up->addr.u.sa.sa_family == AF_UNIX
                     ? mio_unix_connect(up->addr.u.un.sun_path)
                     : mio_tcp_connect(&up->addr.u.sa, up->addr.len);
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            /* Our shortage, not the upstream's fault. */
            conn_abort(c, fd == -EMFILE || fd == -ENFILE ? "out-of-descriptors"
                                                         : "out-of-memory");
            return;
        }
        if (fd < 0) {
            upstream_failed(w, c, up, -fd);
            continue;
        }
        c->up = up;
        atomic_fetch_add(&up->active, 1);
        c->upstream.fd = fd;
        c->upstream.eof = c->upstream.shut = false;
        if (up->addr.u.sa.sa_family != AF_UNIX)
            (void)mio_tcp_set_nodelay(fd, true);
        conn_urgent_inline(fd);
        if (!watch(c, &c->upstream)) {
            conn_abort(c, "out-of-memory");
            return;
        }
        c->state = CONN_CONNECTING;
        (void)timer_set(&w->timers, &c->timer, w->now_ms + cfg->connect_timeout_ms);
        return;
    }
    char client[ADDR_STRLEN];
    addr_format(&c->peer, client, sizeof(client));
    upstream_warn(w, "listener %s: no upstream reached for %s after %u attempt%s",
                  cfg->name, client, c->attempts, c->attempts == 1 ? "" : "s");
    conn_abort(c, "no-upstream");
}

/* The connect in progress failed with err (or timed out): the address is
 * marked failed and the next one tried. */
static void connect_failed(struct conn *c, int err)
{
    upstream_failed(c->w, c, c->up, err);
    atomic_fetch_sub(&c->up->active, 1);
    c->up = NULL;
    unwatch(c, &c->upstream);
    start_connect(c);
}

/* The upstream socket answered while connecting: connected, or failed. */
static void check_connect(struct conn *c)
{
    int err = -mio_socket_take_error(c->upstream.fd);
    if (err != 0) {
        connect_failed(c, err);
        return;
    }
    upstream_succeeded(c->up);
    c->state = CONN_OPEN;
    arm_idle(c);
    if (!queue_proxy_header(c)) {
        conn_abort(c, "out-of-memory");
        return;
    }
    /* Send what is kept (header, early bytes), then relay both ways: the
     * upstream may speak first, and the client may have written already. */
    c->upstream.read_paused = true;
    if (drain(c, &c->upstream) && !c->dead)
        (void)drain(c, &c->client);
}

void conn_ready(struct side *s, const mio_event_t *ev)
{
    struct conn *c = s->conn;
    if (c->dead)
        return;
    bool in = ev == NULL || mio_event_is_readable(ev) ||
              mio_event_is_read_closed(ev) || mio_event_is_error(ev);
    bool out = ev != NULL && (mio_event_is_writable(ev) ||
                              mio_event_is_write_closed(ev) ||
                              mio_event_is_error(ev));
    if (ev != NULL && (mio_event_is_read_closed(ev) || mio_event_is_error(ev)))
        s->closing = true;
    if (ev != NULL && mio_event_is_priority(ev))
        s->urgent = true;
    switch (c->state) {
    case CONN_PROXY_HEADER:
        if (in)
            read_proxy_header(c);
        return;
    case CONN_CONNECTING:
        if (s == &c->upstream && out) {
            check_connect(c);
            return;
        }
        if (s != &c->client || !in)
            return;
        /* A client that resets gives up now.  A FIN does not: it may be
         * a half-close by a client that waits for the upstream to speak
         * first, so the connect goes on and the FIN is passed on. */
        if (ev != NULL && mio_event_is_error(ev)) {
            int err = -mio_socket_take_error(s->fd);
            if (err != 0) {
                conn_abort(c, error_reason(s, err));
                return;
            }
        }
        c->client.read_paused = true; /* read once connected */
        return;
    case CONN_OPEN:
        /* A reset on a side already at EOF would otherwise wait for a
         * write that may never come. */
        if (ev != NULL && mio_event_is_error(ev) && s->eof) {
            int err = -mio_socket_take_error(s->fd);
            if (err != 0) {
                conn_abort(c, error_reason(s, err));
                return;
            }
        }
        if (in && !s->eof && !pump(c, s, peer_side(s)))
            return;
        if (out && !c->dead)
            (void)drain(c, s);
        return;
    }
}

void conn_timer(struct conn *c)
{
    struct worker *w = c->w;
    if (c->state == CONN_CONNECTING) {
        connect_failed(c, ETIMEDOUT);
        return;
    }
    if (c->state == CONN_PROXY_HEADER && w->now_ms >= header_deadline(c)) {
        char why[64];
        snprintf(why, sizeof(why), "not complete within %lld.%03lld s",
                 (long long)(c->l->cfg->proxy_timeout_ms / 1000),
                 (long long)(c->l->cfg->proxy_timeout_ms % 1000));
        listener_refused(w, c->l, &c->peer, REFUSED_PROXY_HEADER, why);
        conn_close(c, "proxy-header-timeout");
        return;
    }
    int64_t idle = c->l->cfg->idle_timeout_ms;
    if (idle == 0 || w->now_ms < c->last_ms + idle) {
        arm_idle(c); /* there was traffic since it was set */
        return;
    }
    conn_abort(c, "idle-timeout");
}
