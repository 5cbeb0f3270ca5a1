/* A client connection's life: open, PROXY header, connect, relay, end. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "generation.h"
#include "hello.h"
#include "pipe.h"
#include "proxy.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"

#define IS_ECHO(c) ((c)->l->cfg->mode == MODE_ECHO)

static void start_connect(struct conn *c);
static void connect_failed(struct conn *c, int err);
static void handshake(struct conn *c, struct endpoint *e);
static void open_relay(struct conn *c, bool upstream_in);

/* A reason naming the side and the error, e.g. "client-reset". */
static const char *error_reason(const struct endpoint *e, int err)
{
    bool client = !e->upstream;
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
        (void)loop_timer_set(&c->w->loop, &c->timer, at);
    else
        loop_timer_cancel(&c->w->loop, &c->timer);
}

/* What reading a socket waits for: readable, and priority, which tells of
 * urgent data (kqueue has no such event: see half.c's short-read rule). */
static mio_interest_t read_interest(const struct worker *w)
{
    return w->no_priority ? MIO_READABLE : MIO_READABLE | MIO_PRIORITY;
}

/* Registers a socket of c for both directions, edge-triggered; -errno. */
static int watch(struct conn *c, struct endpoint *e)
{
    struct worker *w = c->w;
    int err = loop_watch(&w->loop, e->fd, &e->h, read_interest(w) | MIO_WRITABLE);
    if (err == -EOPNOTSUPP && !w->no_priority) {
        w->no_priority = true;
        err = loop_watch(&w->loop, e->fd, &e->h, read_interest(w) | MIO_WRITABLE);
    }
    return err;
}

/* Deregisters and closes a socket of c, ending its TLS session. */
static void unwatch(struct conn *c, struct endpoint *e)
{
    endpoint_end_tls(e, false);
    if (e->fd < 0)
        return;
    loop_close(&c->w->loop, e->fd);
    e->fd = -1;
}

/* The client's address as text, for log lines. */
static void format_client(const struct conn *c, char *buf, size_t len)
{
    addr_t tmp;
    addr_format(addr_small_get(&c->peer, &tmp), buf, len);
}

/* The connection a socket belongs to. */
static struct conn *conn_of(struct endpoint *e)
{
    return e->upstream ? container_of(e, struct conn, upstream)
                       : container_of(e, struct conn, client);
}

/* The half that reads socket e, and the one that writes it. */
static struct half *reading(struct conn *c, const struct endpoint *e)
{
    return &c->halves[e->upstream && !IS_ECHO(c)];
}

static struct half *writing(struct conn *c, const struct endpoint *e)
{
    return &c->halves[!e->upstream && !IS_ECHO(c)];
}

static void on_event(struct handler *h, struct loop *l, const mio_event_t *ev);
static void on_timer(struct timer *t);

/* What an access line says of a connection's TLS, taken while its session
 * lives: its version and cipher once the client's handshake is done, and
 * the server name the client asked for. */
struct tls_note {
    char tls[96], sni[256];
    bool has_tls, has_sni;
};

/* Takes c's TLS note. */
static void note_tls(const struct conn *c, struct tls_note *n)
{
    n->has_tls = false;
    const char *name = c->sni;
    if (c->client.tls != NULL) {
        const char *asked = tls_session_server_name(c->client.tls);
        if (c->tls_up) {
            tls_session_describe(c->client.tls, n->tls, sizeof(n->tls));
            n->has_tls = true;
        }
        if (asked != NULL)
            name = asked;
    }
    n->has_sni = name != NULL;
    if (n->has_sni)
        snprintf(n->sni, sizeof(n->sni), "%s", name);
}

/* Writes c's access line: its bytes so far, and `reason` ("interim" while
 * it is open). */
static void write_access(const struct conn *c, const struct tls_note *n,
                         const char *reason)
{
    char client[ADDR_STRLEN];
    format_client(c, client, sizeof(client));
    const struct log_field extra[] = {
        LOG_TEXT("tls", n->has_tls ? n->tls : NULL),
        LOG_TEXT("sni", n->has_sni ? n->sni : NULL),
    };
    log_access(c->l->cfg->name, client, c->up != NULL ? c->up->name : NULL, c->in, c->out,
               c->w->loop.now_ms - c->start_ms, extra, sizeof(extra) / sizeof(extra[0]),
               reason);
}

/*
 * log.interval's timer: an interim access line with the bytes so far, then
 * the next one an interval later.  A timer per connection, not a sweep of
 * the worker's connections: nothing is done for a connection between its
 * lines, and a sweep would visit every connection at each tick, the young
 * ones too.  Bytes are counted as they move (half.c), so the line needs no
 * more than the counters the final line reads.  None while a PROXY header
 * is read: its bytes are counted in `in` until it is whole.
 */
static void on_interim(struct timer *t)
{
    struct conn *c = container_of(t, struct conn, interim);
    struct loop *loop = &c->w->loop;
    int64_t every = c->l->gen->cfg->log_interval_ms;
    if (c->state != CONN_PROXY_HEADER && log_enabled(LOG_INFO)) {
        struct tls_note note;
        note_tls(c, &note);
        write_access(c, &note, "interim");
    }
    int64_t next = t->deadline_ms + every;
    if (next <= loop->now_ms) /* the loop was late: no burst to catch up */
        next = loop->now_ms + every;
    (void)loop_timer_set(loop, t, next);
}

/* Records in its listener's histogram how long c's upstream took to be
 * ready for the relay: from its connect's start to connected, and with
 * upstream_tls to the handshake done. */
static void record_connect_time(struct conn *c)
{
    int64_t us = loop_clock_us() - c->connect_us;
    histogram_observe(&c->l->st->connect_time, us > 0 ? (uint64_t)us : 0);
}

/* Records in its listener's histogram how long c lived, from its accept
 * to now (to the loop's millisecond). */
static void record_duration(struct conn *c)
{
    int64_t ms = c->w->loop.now_ms - c->start_ms;
    histogram_observe(&c->l->st->duration, ms > 0 ? (uint64_t)ms * 1000 : 0);
}

/* Ends the connection: conn_close() or, when `abort`, conn_abort(). */
static void end(struct conn *c, const char *reason, bool abort)
{
    if (c->dead)
        return;
    struct worker *w = c->w;
    struct listener *l = c->l;
    c->dead = true;
    loop_timer_cancel(&w->loop, &c->timer);
    loop_timer_cancel(&w->loop, &c->interim);
    /* Counts first, sockets after: a client that sees its close and comes
     * straight back must find its slot free, and the counters current. */
    if (c->up != NULL)
        upstream_released(c->up, c->in, c->out);
    admission_release(&c->ticket, w->d, l->st);
    /* What the access line says of TLS, taken before the session ends. */
    bool logging = l->gen->cfg->log_access && log_enabled(LOG_INFO);
    struct tls_note note;
    if (logging) /* a connection's close costs no formatting when unlogged */
        note_tls(c, &note);
    if (c->client.tls != NULL && tls_session_truncated(c->client.tls)) {
        char client[ADDR_STRLEN];
        format_client(c, client, sizeof(client));
        log_limited(LOG_NOTICE, &w->rl_tls, w->loop.now_ms, "more TLS notes, not logged",
                    "listener %s: client %s ended TLS without close_notify (a "
                    "truncation)",
                    l->cfg->name, client);
    }
    atomic_fetch_add(&l->st->bytes_in, c->in);
    atomic_fetch_add(&l->st->bytes_out, c->out);
    record_duration(c);
    if (abort) {
        endpoint_reset_on_close(&c->client);
        endpoint_reset_on_close(&c->upstream);
    } else {
        /* Both peers were done: close_notify where TLS is up. */
        endpoint_end_tls(&c->client, c->tls_up);
        endpoint_end_tls(&c->upstream, c->state == CONN_OPEN);
    }
    unwatch(c, &c->client);
    unwatch(c, &c->upstream);
    for (int i = 0; i < 2; i++)
        half_release(&c->halves[i], &w->pipes);
    if (w->spare_fd < 0) /* lost at the descriptor limit: take it back */
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (logging)
        write_access(c, &note, reason);
    /* Off the open list; freed after the batch, whose events later on may
     * still name its sockets. */
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    w->nconns--;
    loop_defer(&w->loop, &c->later, conn_release);
}

void conn_close(struct conn *c, const char *reason)
{
    end(c, reason, false);
}

void conn_abort(struct conn *c, const char *reason)
{
    end(c, reason, true);
}

void conn_release(struct deferred *d)
{
    struct conn *c = container_of(d, struct conn, later);
    struct worker *w = c->w;
    free(c->proxy_dst);
    free(c->sni);
    addr_small_free(&c->peer);
    generation_unref(c->l->gen);
    free(c);
    /* A worker without connections keeps no pipes open. */
    if (w->nconns == 0 && w->pipes.nfree > 0)
        pipe_pool_free(&w->pipes);
}

/*
 * Whether half i's end closes c, whose other half is done, so that the
 * close sends the FIN and a shutdown() before it would be a system call
 * for nothing: the destination is a plain socket (TLS owes a
 * close_notify) whose own input was read to its end (the other half's
 * source), so the close is a FIN, not a reset.
 */
static bool fin_by_close(const struct conn *c, int i)
{
    const struct endpoint *dst = i == 0 ? &c->upstream : &c->client;
    return c->halves[1 - i].done && dst->tls == NULL;
}

/* Moves half i of c as far as it goes, and acts on why it stopped: the
 * connection ends when both of its halves are done (echo: its one), or
 * aborts when a socket failed.  False when c was closed. */
static bool move(struct conn *c, int i)
{
    struct worker *w = c->w;
    bool echo = IS_ECHO(c);
    struct endpoint *src = i == 0 ? &c->client : &c->upstream;
    struct half_io io = {
        .src = src,
        .dst = i == 0 && !echo ? &c->upstream : &c->client,
        .w = w,
        .read_interest = read_interest(w),
        .cap = c->l->cfg->buffer_size,
        .splice = c->l->cfg->splice,
        .short_reads = !w->no_priority && endpoint_short_read_drains(src),
        .pass_fin = !echo && !fin_by_close(c, i),
        .got = i == 0 ? &c->in : NULL,
        .put = i == 1 || echo ? &c->out : NULL,
    };
    if (io.cap > w->scratch_len)
        io.cap = w->scratch_len; /* a reload raised it and the worker could not */
    enum half_stop stop = half_move(&c->halves[i], &io);
    if (io.progress)
        c->last_ms = w->loop.now_ms;
    switch (stop) {
    case HALF_WAIT_SRC:
    case HALF_WAIT_DST:
        return true;
    case HALF_DONE:
        if (echo || c->halves[1 - i].done) {
            conn_close(c, "done"); /* everything received was delivered */
            return false;
        }
        return true;
    case HALF_SRC_FAILED:
        conn_abort(c, error_reason(io.src, io.err));
        return false;
    case HALF_DST_FAILED:
        break;
    }
    conn_abort(c, error_reason(io.dst, io.err));
    return false;
}

/* Moves both halves of an open connection (its one, for echo). */
static void move_all(struct conn *c)
{
    if (move(c, 0) && !IS_ECHO(c))
        (void)move(c, 1);
}

/* Sets the connection's timer to a handshake's deadline: connect_timeout
 * from now. */
static void arm_handshake(struct conn *c)
{
    (void)loop_timer_set(&c->w->loop, &c->timer,
                         c->w->loop.now_ms + c->l->cfg->connect_timeout_ms);
}

/* Counts a failed handshake on `side` and says why (rate-limited). */
static void tls_failed(struct conn *c, enum tls_side side, enum tls_failure f,
                       const char *text)
{
    struct worker *w = c->w;
    atomic_fetch_add(&c->l->st->tls_failures[side][f], 1);
    char who[ADDR_STRLEN];
    if (side == TLS_SIDE_CLIENT || c->up == NULL)
        format_client(c, who, sizeof(who));
    else
        snprintf(who, sizeof(who), "%s", c->up->name);
    log_limited(LOG_NOTICE, &w->rl_tls, w->loop.now_ms, "more TLS notes, not logged",
                "listener %s: TLS handshake with %s %s failed: %s (%s)", c->l->cfg->name,
                tls_side_name(side), who, tls_failure_name(f), text);
}

/* Starts the client's TLS handshake; the bytes half 0 holds (read with a
 * PROXY header) are the first of it. */
static void accept_tls(struct conn *c)
{
    struct half *h = &c->halves[0];
    size_t n;
    const uint8_t *held = half_held(h, &n);
    c->client.tls = tls_session_accept(c->l->cfg->tls.server, c->client.fd, held, n);
    if (c->client.tls == NULL) {
        conn_abort(c, "out-of-memory");
        return;
    }
    half_drop_front(h, n);
    c->in -= n; /* TLS records, not payload */
    c->state = CONN_HANDSHAKE;
    arm_handshake(c);
    handshake(c, &c->client);
}

/*
 * Reads once from the client, at most `room` bytes, into what half 0 holds
 * (in a buffer of at least `cap` bytes): what a PROXY header or a
 * ClientHello is read into before the relay starts.  True when bytes came;
 * false when there is nothing now (the client's socket re-armed) or the
 * connection ended: closed with reason `closed` at the client's end, or
 * aborted.
 */
static bool read_first_bytes(struct conn *c, size_t room, size_t cap, const char *closed)
{
    struct worker *w = c->w;
    for (;;) {
        ssize_t n = endpoint_read(&c->client, w->scratch,
                                  room < w->scratch_len ? room : w->scratch_len);
        if (n > 0) {
            if (half_hold(&c->halves[0], w->scratch, (size_t)n, cap) < 0) {
                conn_abort(c, "out-of-memory");
                return false;
            }
            c->in += (size_t)n;
            c->last_ms = w->loop.now_ms;
            return true;
        }
        if (n == 0)
            conn_close(c, closed);
        else if (errno == EAGAIN)
            loop_rearm(&w->loop, c->client.fd, read_interest(w));
        else if (errno != EINTR)
            conn_abort(c, error_reason(&c->client, errno));
        else
            continue;
        return false;
    }
}

/* Reads the client's first bytes until its ClientHello says which server
 * it asks for, holding them in half 0 to go to the upstream untouched, and
 * picks the upstreams of that name's route. */
static void read_hello(struct conn *c)
{
    struct worker *w = c->w;
    struct half *h = &c->halves[0];
    struct hello hi;
    const char *why = "incomplete";
    enum hello_result r = HELLO_MORE;
    size_t have;
    const uint8_t *data = half_held(h, &have);
    if (have > 0)
        r = hello_parse(data, have, &hi, &why);
    while (r == HELLO_MORE) {
        if (!read_first_bytes(c, HELLO_MAX_STREAM - have, 0,
                              "client-closed-before-client-hello"))
            return;
        data = half_held(h, &have);
        r = hello_parse(data, have, &hi, &why);
    }
    if (r == HELLO_BAD) {
        char client[ADDR_STRLEN];
        format_client(c, client, sizeof(client));
        log_limited(LOG_NOTICE, &w->rl_tls, w->loop.now_ms, "more TLS notes, not logged",
                    "listener %s: client %s sent a bad TLS ClientHello: %s",
                    c->l->cfg->name, client, why);
        conn_close(c, "bad-client-hello");
        return;
    }
    if (r == HELLO_FOUND && hi.has_sni) {
        c->sni = strdup(hi.server_name);
        c->choice.pool = upstream_route(c->l, hi.server_name);
    }
    h->readable = true; /* more may be waiting behind what we read */
    start_connect(c);
}

/* What comes after the accept, or the PROXY header: the client's TLS
 * handshake, the ClientHello of sni_routes, or the relay (echo: at once,
 * reading now when bytes may be waiting unannounced). */
static void begin(struct conn *c, bool read_now)
{
    const struct listener_config *cfg = c->l->cfg;
    if (cfg->tls.on) {
        accept_tls(c);
    } else if (cfg->nsni_routes > 0) {
        c->state = CONN_HELLO;
        arm_handshake(c);
        read_hello(c);
    } else if (IS_ECHO(c)) {
        c->state = CONN_OPEN;
        arm_idle(c);
        if (read_now) {
            c->halves[0].readable = true;
            (void)move(c, 0);
        }
    } else {
        c->halves[0].readable = true; /* read once the upstream is there */
        start_connect(c);
    }
}

void conn_open(struct worker *w, struct listen_sock *ls, int fd, const addr_t *peer,
               const struct ticket *ticket)
{
    struct listener *l = ls->listener;
    struct conn *c = calloc(1, sizeof(*c));
    if (c != NULL && addr_small_set(&c->peer, peer) < 0) {
        free(c);
        c = NULL;
    }
    if (c == NULL) {
        close(fd);
        log_err("listener %s: out of memory for a connection", l->cfg->name);
        struct ticket t = *ticket;
        admission_release(&t, w->d, l->st);
        return;
    }
    c->w = w;
    c->l = l;
    c->ls = ls;
    c->ticket = *ticket;
    c->choice.pool = &l->pools[0];
    c->client = (struct endpoint){.h.on_event = on_event, .fd = fd};
    c->upstream = (struct endpoint){.h.on_event = on_event, .fd = -1, .upstream = true};
    for (int i = 0; i < 2; i++)
        c->halves[i].writable = true;
    c->timer.fire = on_timer;
    c->interim.fire = on_interim;
    c->start_ms = c->last_ms = w->loop.now_ms;
    c->id = atomic_fetch_add_explicit(&w->d->next_conn_id, 1, memory_order_relaxed) + 1;
    int64_t every = l->gen->cfg->log_interval_ms;
    if (every > 0 && l->gen->cfg->log_access)
        (void)loop_timer_set(&w->loop, &c->interim, c->start_ms + every);
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
        endpoint_urgent_inline(fd); /* not passed on by a Unix listening socket */
    int err = watch(c, &c->client);
    if (err < 0) {
        log_err("listener %s: cannot watch a socket: %s", l->cfg->name,
                log_strerror(-err));
        conn_abort(c, "out-of-memory");
        return;
    }
    if (l->cfg->accept_proxy) {
        c->state = CONN_PROXY_HEADER;
        arm_idle(c);
        /* The header may be there already: its edge came before we watched. */
        on_event(&c->client.h, &w->loop, NULL);
    } else {
        begin(c, false);
    }
}

/* Reads the client's PROXY header, into what half 0 holds for its
 * destination: the bytes after the header, read with it, stay there to go
 * first to the upstream (or back, for echo). */
static void read_proxy_header(struct conn *c)
{
    struct worker *w = c->w;
    struct half *h = &c->halves[0];
    size_t have;
    (void)half_held(h, &have); /* what earlier events brought */
    struct proxy_info info;
    const char *why = "incomplete";
    int hlen = 0;
    while (hlen == 0) {
        if (have == PROXY_MAX_HEADER) {
            why = "PROXY header too long";
            hlen = -1;
            break;
        }
        if (!read_first_bytes(c, PROXY_MAX_HEADER - have, PROXY_MAX_HEADER,
                              "client-closed-before-proxy-header"))
            return;
        const uint8_t *data = half_held(h, &have);
        hlen = proxy_parse(data, have, &info, &why);
    }
    if (hlen < 0) {
        addr_t tmp;
        admission_refused(&w->rl_refused, w->loop.now_ms, c->l,
                          addr_small_get(&c->peer, &tmp), REFUSED_PROXY_HEADER, why);
        conn_close(c, "bad-proxy-header");
        return;
    }
    half_drop_front(h, (size_t)hlen);
    c->in -= (size_t)hlen; /* the header is not payload */
    if (!info.local) {
        /* From now on the client is who the header says, in the access
         * line too, even when it is refused. */
        if (addr_small_set(&c->peer, &info.src) < 0) {
            conn_abort(c, "out-of-memory");
            return;
        }
        enum refusal why2 = admission_declare(&c->ticket, c->l, &info.src);
        if (why2 != REFUSED_N) {
            admission_refused(&w->rl_refused, w->loop.now_ms, c->l, &info.src, why2,
                              why2 == REFUSED_ACL ? "(PROXY source)" : NULL);
            conn_close(c, "refused-after-proxy-header");
            return;
        }
        c->proxy_dst = malloc(sizeof(addr_t));
        if (c->proxy_dst != NULL)
            *c->proxy_dst = info.dst;
    }
    begin(c, true);
}

/* Puts the PROXY header for the upstream in front of what is held for it,
 * or with TLS to the upstream, sends it at once, before the handshake
 * (the header is not part of the TLS stream); 0 or -errno. */
static int queue_proxy_header(struct conn *c)
{
    enum send_proxy v = c->l->cfg->send_proxy;
    if (v == SEND_PROXY_NONE)
        return 0;
    addr_t dst = c->ls->addr;
    if (c->proxy_dst != NULL) {
        dst = *c->proxy_dst;
    } else {
        dst.len = sizeof(dst.u);
        if (getsockname(c->client.fd, &dst.u.sa, &dst.len) < 0)
            dst = c->ls->addr;
    }
    uint8_t hdr[PROXY_MAX_HEADER];
    addr_t src;
    int n = proxy_build(v == SEND_PROXY_V1 ? 1 : 2, addr_small_get(&c->peer, &src), &dst,
                        hdr, sizeof(hdr));
    if (n < 0)
        return -ENOMEM;
    if (!c->l->cfg->upstream_tls.on)
        return half_hold_front(&c->halves[0], hdr, (size_t)n);
    /* A socket just connected has room for it: a short send is an error. */
    ssize_t m = send(c->upstream.fd, hdr, (size_t)n, MSG_NOSIGNAL);
    if (m == n)
        return 0;
    return m < 0 ? -errno : -EAGAIN;
}

/* Starts a connect to the next upstream address, or closes the client when
 * the attempts are spent. */
static void start_connect(struct conn *c)
{
    struct worker *w = c->w;
    const struct listener_config *cfg = c->l->cfg;
    struct upstream_addr *up;
    addr_t tmp;
    const addr_t *source = addr_small_get(&c->peer, &tmp);
    while ((up = upstream_next(w, c->l, &c->choice, source)) != NULL) {
        c->connect_us = loop_clock_us();
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
            upstream_failed(w, c->l, c->choice.target, up, -fd);
            continue;
        }
        c->up = up;
        upstream_connecting(up);
        c->upstream.fd = fd;
        if (up->addr.u.sa.sa_family != AF_UNIX)
            (void)mio_tcp_set_nodelay(fd, true);
        endpoint_urgent_inline(fd);
        int err = watch(c, &c->upstream);
        if (err < 0) {
            log_err("listener %s: cannot watch a socket: %s", cfg->name,
                    log_strerror(-err));
            conn_abort(c, "out-of-memory");
            return;
        }
        c->state = CONN_CONNECTING;
        (void)loop_timer_set(&w->loop, &c->timer,
                             w->loop.now_ms + cfg->connect_timeout_ms);
        return;
    }
    char client[ADDR_STRLEN];
    format_client(c, client, sizeof(client));
    upstream_warn(w, "listener %s: no upstream reached for %s after %u attempt%s",
                  cfg->name, client, c->choice.attempts,
                  c->choice.attempts == 1 ? "" : "s");
    conn_abort(c, "no-upstream");
}

/* The connect in progress failed with err (or timed out): the address is
 * marked failed and the next one tried. */
static void connect_failed(struct conn *c, int err)
{
    upstream_failed(c->w, c->l, c->choice.target, c->up, err);
    upstream_released(c->up, 0, 0);
    c->up = NULL;
    unwatch(c, &c->upstream);
    /* What the failed socket's events said is not the next one's. */
    c->halves[1].readable = false;
    c->halves[1].closing = false;
    start_connect(c);
}

/* The upstream is there: relay both ways, sending first what is held
 * (PROXY header, early bytes): the client may have written already, and
 * the upstream may speak first.  `upstream_in`: an event said the upstream
 * has bytes, or TLS may hold some.  A plain upstream is not read
 * otherwise: it was registered before it could receive a byte, so its
 * first byte makes an event, and a recv now would only say EAGAIN (one
 * system call in every relayed connection). */
static void open_relay(struct conn *c, bool upstream_in)
{
    record_connect_time(c);
    c->state = CONN_OPEN;
    arm_idle(c);
    if (upstream_in)
        c->halves[1].readable = true;
    move_all(c);
}

/* The upstream socket answered while connecting: connected, or failed;
 * `in`: the same event said it has bytes. */
static void check_connect(struct conn *c, bool in)
{
    int err = -mio_socket_take_error(c->upstream.fd);
    if (err != 0) {
        connect_failed(c, err);
        return;
    }
    upstream_succeeded(c->up);
    int rc = queue_proxy_header(c);
    if (rc < 0) {
        conn_abort(c, rc == -ENOMEM ? "out-of-memory" : "upstream-error");
        return;
    }
    const struct upstream_tls_config *ut = &c->l->cfg->upstream_tls;
    if (!ut->on) {
        open_relay(c, in);
        return;
    }
    char host[ADDR_STRLEN];
    const char *name = ut->server_name;
    if (name[0] == '\0')
        name = addr_text_host(c->choice.target->text, host, sizeof(host)) == 0 ? host
                                                                               : NULL;
    const struct upstream *t = c->choice.target;
    size_t k = 0;
    while (k + 1 < t->naddrs && t->addrs[k] != c->up)
        k++;
    size_t i = (t->turn + k) % t->naddrs; /* the address among the name's */
    size_t slot = i < t->slots ? t->slot0 + i : SIZE_MAX; /* SIZE_MAX: none */
    c->upstream.tls = tls_session_connect(ut->client, c->upstream.fd, name, slot);
    if (c->upstream.tls == NULL) {
        conn_abort(c, "out-of-memory");
        return;
    }
    c->state = CONN_UPSTREAM_HANDSHAKE;
    arm_handshake(c);
    handshake(c, &c->upstream);
}

/* Goes on with the TLS handshake on e, and once it is done, with what
 * follows: for the client, the upstream's connect (or echo); for the
 * upstream, the relay.  A failed one closes the client, or counts as a
 * failed connect of the upstream (the next one is tried). */
static void handshake(struct conn *c, struct endpoint *e)
{
    struct worker *w = c->w;
    enum tls_side side = e->upstream ? TLS_SIDE_UPSTREAM : TLS_SIDE_CLIENT;
    int r = tls_session_handshake(e->tls);
    if (r == -EAGAIN) {
        loop_rearm(&w->loop, e->fd, endpoint_wait(e, MIO_READABLE));
        return;
    }
    if (r < 0) {
        tls_failed(c, side, tls_session_failure(e->tls),
                   tls_session_failure_text(e->tls));
        if (side == TLS_SIDE_CLIENT)
            conn_close(c, "tls-handshake-failed");
        else
            connect_failed(c, EPROTO);
        return;
    }
    atomic_fetch_add(&c->l->st->tls_handshakes[side], 1);
    c->last_ms = w->loop.now_ms;
    if (side == TLS_SIDE_UPSTREAM) {
        open_relay(c, true);
        return;
    }
    c->tls_up = true;
    c->halves[0].readable = true; /* bytes may have come with its Finished */
    if (IS_ECHO(c)) {
        c->state = CONN_OPEN;
        arm_idle(c);
        (void)move(c, 0);
        return;
    }
    c->choice.pool = upstream_route(c->l, tls_session_server_name(e->tls));
    start_connect(c);
}

/* A socket of a connection is ready: in its state, moves what it can. */
static void on_event(struct handler *hd, struct loop *l, const mio_event_t *ev)
{
    (void)l;
    struct endpoint *e = container_of(hd, struct endpoint, h);
    struct conn *c = conn_of(e);
    if (c->dead)
        return;
    bool in = ev == NULL || mio_event_is_readable(ev) || mio_event_is_read_closed(ev) ||
              mio_event_is_error(ev);
    bool out = ev != NULL && (mio_event_is_writable(ev) ||
                              mio_event_is_write_closed(ev) || mio_event_is_error(ev));
    bool failed = ev != NULL && mio_event_is_error(ev);
    struct half *r = reading(c, e), *wr = writing(c, e);
    if (ev != NULL && (mio_event_is_read_closed(ev) || failed))
        r->closing = true;
    if (ev != NULL && mio_event_is_priority(ev))
        r->urgent = true;
    switch ((enum conn_state)c->state) {
    case CONN_PROXY_HEADER:
        if (in)
            read_proxy_header(c);
        return;
    case CONN_HELLO:
        if (in)
            read_hello(c);
        return;
    case CONN_HANDSHAKE:
        if (!e->upstream)
            handshake(c, e);
        return;
    case CONN_CONNECTING:
    case CONN_UPSTREAM_HANDSHAKE:
        if (e->upstream && c->state == CONN_UPSTREAM_HANDSHAKE) {
            handshake(c, e);
            return;
        }
        if (e->upstream && out) {
            check_connect(c, in);
            return;
        }
        if (e->upstream) {
            /* kqueue tells reading and writing apart: the upstream's
             * first bytes may come as an event of their own before the
             * one that says it is connected. */
            if (in)
                r->readable = true;
            return;
        }
        if (!in)
            return;
        /* A client that resets gives up now.  A FIN does not: it may be
         * a half-close by a client that waits for the upstream to speak
         * first, so the connect goes on and the FIN is passed on. */
        if (failed) {
            int err = -mio_socket_take_error(e->fd);
            if (err != 0) {
                conn_abort(c, error_reason(e, err));
                return;
            }
        }
        r->readable = true; /* read once connected */
        return;
    case CONN_OPEN:
        /* A reset on a socket already read to its end would otherwise
         * wait for a write that may never come. */
        if (failed && r->eof) {
            int err = -mio_socket_take_error(e->fd);
            if (err != 0) {
                conn_abort(c, error_reason(e, err));
                return;
            }
        }
        /* TLS: a read may wait for the socket to be writable, a write for
         * it to be readable, so either event may move either half. */
        if (e->tls != NULL && ev != NULL)
            in = out = true;
        /* The half reading e first, then the one writing it (echo: one
         * half, moved once). */
        in = in && !r->eof;
        if (in)
            r->readable = true;
        if (out)
            wr->writable = true;
        if ((in || (out && wr == r && half_has_work(r))) &&
            !move(c, (int)(r - c->halves)))
            return;
        if (out && wr != r && half_has_work(wr))
            (void)move(c, (int)(wr - c->halves));
        return;
    }
}

/* The connection's deadline: connect timeout, PROXY header, idle. */
static void on_timer(struct timer *t)
{
    struct conn *c = container_of(t, struct conn, timer);
    struct worker *w = c->w;
    if (c->state == CONN_CONNECTING) {
        connect_failed(c, ETIMEDOUT);
        return;
    }
    if (c->state == CONN_UPSTREAM_HANDSHAKE) {
        tls_failed(c, TLS_SIDE_UPSTREAM, TLS_FAIL_TIMEOUT, "no answer in time");
        connect_failed(c, ETIMEDOUT);
        return;
    }
    if (c->state == CONN_HANDSHAKE) {
        tls_failed(c, TLS_SIDE_CLIENT, TLS_FAIL_TIMEOUT, "not done in time");
        conn_abort(c, "tls-handshake-timeout");
        return;
    }
    if (c->state == CONN_HELLO) {
        conn_abort(c, "client-hello-timeout");
        return;
    }
    if (c->state == CONN_PROXY_HEADER && w->loop.now_ms >= header_deadline(c)) {
        char why[64];
        snprintf(why, sizeof(why), "not complete within %lld.%03lld s",
                 (long long)(c->l->cfg->proxy_timeout_ms / 1000),
                 (long long)(c->l->cfg->proxy_timeout_ms % 1000));
        addr_t tmp;
        admission_refused(&w->rl_refused, w->loop.now_ms, c->l,
                          addr_small_get(&c->peer, &tmp), REFUSED_PROXY_HEADER, why);
        conn_close(c, "proxy-header-timeout");
        return;
    }
    int64_t idle = c->l->cfg->idle_timeout_ms;
    if (idle == 0 || w->loop.now_ms < c->last_ms + idle) {
        arm_idle(c); /* there was traffic since it was set */
        return;
    }
    conn_abort(c, "idle-timeout");
}
