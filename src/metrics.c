/*
 * The metrics listener: one thread, one poll, a few short HTTP connections,
 * and the exposition of the current generation's counters.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "generation.h"
#include "log.h"
#include "metrics.h"
#include "mio.h"
#include "loop.h"

/* How long accepting pauses after an error such as EMFILE. */
#define ACCEPT_PAUSE_MS 100

#define TEXT_TYPE "text/plain; charset=utf-8"
#define METRICS_TYPE "text/plain; version=0.0.4"

/*
 * One client connection: its request head, then its answer.  Once the
 * head is read, whatever the client sends is read and thrown away (at most
 * METRICS_DISCARD_MAX bytes), so that closing never finds unread input,
 * which would make the kernel reset the connection and drop what is left
 * of the answer in the send queue.
 */
struct mconn {
    struct handler h;      /* its token */
    struct timer timer;    /* its deadline: the head, then taking the answer */
    struct deferred later; /* freed after the batch that closed it */
    int fd;
    bool answering; /* the head is read (or refused): only writes now */
    bool queued;    /* the whole answer is queued and the write side shut */
    bool eof;       /* the client sent its FIN: nothing more to read */
    bool dead;      /* closed; freed after the batch of events */
    char *out;      /* the answer */
    size_t out_len, out_off;
    size_t discarded;          /* bytes read after the head and thrown away */
    struct mconn *prev, *next; /* oldest first */
    struct http_reader rd;
};

/* The listener's thread and what it owns. */
static struct {
    struct daemon *d;
    bool started;
    int lfd;
    char name[ADDR_STRLEN];
    struct loop *loop;         /* the admin thread's (admin.h) */
    struct handler listen;     /* the listening socket's: accept */
    struct timer accept_timer; /* resumes accepting after an error */
    bool accepting;
    struct mconn *conns, *newest;
    unsigned nconns;
    /* stats.allow and stats.deny as started, for when a reload drops the
     * stats group (the listener then runs on until the next restart). */
    struct cidr *allow, *deny;
    size_t nallow, ndeny;
    struct ratelimit rl;
} m = {.lfd = -1, .rl = {.burst = 5}};

/* ---- the exposition ------------------------------------------------------- */

/* Writes a label value with the format's escapes: \\, \" and \n. */
static void put_label_value(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* Writes the # HELP and # TYPE lines of a family. */
static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Writes one sample with a listener label and, when `reason` is not NULL,
 * a reason label. */
static void listener_sample(FILE *f, const char *name, const char *listener,
                            const char *reason, unsigned long long value)
{
    fprintf(f, "%s{listener=\"", name);
    put_label_value(f, listener);
    if (reason != NULL) {
        fputs("\",reason=\"", f);
        put_label_value(f, reason);
    }
    fprintf(f, "\"} %llu\n", value);
}

/* A listener's open connections. */
static unsigned long long st_open(struct listener_state *st)
{
    return atomic_load(&st->active);
}

/* A listener's accepted connections. */
static unsigned long long st_accepted(struct listener_state *st)
{
    return atomic_load(&st->accepted);
}

/* Bytes from a listener's clients, of closed connections. */
static unsigned long long st_bytes_in(struct listener_state *st)
{
    return atomic_load(&st->bytes_in);
}

/* Bytes to a listener's clients, of closed connections. */
static unsigned long long st_bytes_out(struct listener_state *st)
{
    return atomic_load(&st->bytes_out);
}

/* Datagrams from a UDP listener's clients. */
static unsigned long long st_dgrams_in(struct listener_state *st)
{
    return atomic_load(&st->dgrams_in);
}

/* Datagrams to a UDP listener's clients. */
static unsigned long long st_dgrams_out(struct listener_state *st)
{
    return atomic_load(&st->dgrams_out);
}

/* A listener's failed upstream connects. */
static unsigned long long st_upstream_failures(struct listener_state *st)
{
    return atomic_load(&st->upstream_failures);
}

/* Which listeners a family has samples of. */
enum of { OF_ALL, OF_STREAM, OF_UDP };

/* Whether listener l is one of `of`. */
static bool is_of(const struct listener *l, enum of of)
{
    return of == OF_ALL || (of == OF_UDP) == (l->cfg->protocol == PROTOCOL_UDP);
}

/* Whether generation g has a listener of `of`. */
static bool has_of(const struct generation *g, enum of of)
{
    for (size_t i = 0; i < g->nlisteners; i++)
        if (is_of(&g->listeners[i], of))
            return true;
    return false;
}

/* The families with one sample per listener (of some), in the order
 * written.  A UDP listener's flows are what admission counts as its
 * connections (st->active, st->accepted). */
static const struct {
    const char *name, *type, *help;
    unsigned long long (*value)(struct listener_state *st);
    enum of of;
} per_listener[] = {
    {"mio_echod_connections_open", "gauge", "Client connections open now.", st_open,
     OF_STREAM},
    {"mio_echod_connections_total", "counter",
     "Client connections accepted, including those refused later over their "
     "PROXY header; clients refused at accept are not counted.",
     st_accepted, OF_STREAM},
    {"mio_echod_bytes_received_total", "counter",
     "Bytes received from clients, counted when their connection (UDP: flow) closes.",
     st_bytes_in, OF_ALL},
    {"mio_echod_bytes_sent_total", "counter",
     "Bytes sent to clients, counted when their connection (UDP: flow) closes.",
     st_bytes_out, OF_ALL},
    {"mio_echod_udp_flows_open", "gauge", "UDP flows (client address and port) open now.",
     st_open, OF_UDP},
    {"mio_echod_udp_flows_total", "counter", "UDP flows begun.", st_accepted, OF_UDP},
    {"mio_echod_udp_datagrams_received_total", "counter",
     "Datagrams received from clients, dropped ones included.", st_dgrams_in, OF_UDP},
    {"mio_echod_udp_datagrams_sent_total", "counter", "Datagrams sent to clients.",
     st_dgrams_out, OF_UDP},
};

/* Whether listener l makes TLS handshakes on `side`. */
static bool has_tls_side(const struct listener *l, enum tls_side side)
{
    return side == TLS_SIDE_CLIENT ? l->cfg->tls.on : l->cfg->upstream_tls.on;
}

/* One TLS sample of listener st on `side`, with its failure reason or
 * none. */
static void tls_sample(FILE *f, const char *name, const struct listener_state *st,
                       enum tls_side side, const char *reason, unsigned long long value)
{
    fprintf(f, "%s{listener=\"", name);
    put_label_value(f, st->name);
    fprintf(f, "\",side=\"%s", tls_side_name(side));
    if (reason != NULL)
        fprintf(f, "\",reason=\"%s", reason);
    fprintf(f, "\"} %llu\n", value);
}

/* The TLS handshakes of g's listeners that make them, and their failures
 * by reason; nothing when none does. */
static void expose_tls(FILE *f, const struct generation *g)
{
    bool any = false;
    for (size_t i = 0; i < g->nlisteners; i++)
        for (int side = 0; side < TLS_SIDE_N; side++)
            any |= has_tls_side(&g->listeners[i], (enum tls_side)side);
    if (!any)
        return;
    family(f, "mio_echod_tls_handshakes_total", "counter", "TLS handshakes completed.");
    for (size_t i = 0; i < g->nlisteners; i++)
        for (int side = 0; side < TLS_SIDE_N; side++)
            if (has_tls_side(&g->listeners[i], (enum tls_side)side))
                tls_sample(f, "mio_echod_tls_handshakes_total", g->listeners[i].st,
                           (enum tls_side)side, NULL,
                           atomic_load(&g->listeners[i].st->tls_handshakes[side]));
    family(f, "mio_echod_tls_handshake_failures_total", "counter",
           "TLS handshakes that failed or timed out, by reason.");
    for (size_t i = 0; i < g->nlisteners; i++)
        for (int side = 0; side < TLS_SIDE_N; side++)
            for (int r = 0; r < TLS_FAIL_N && has_tls_side(&g->listeners[i], side); r++)
                tls_sample(f, "mio_echod_tls_handshake_failures_total",
                           g->listeners[i].st, (enum tls_side)side,
                           tls_failure_name((enum tls_failure)r),
                           atomic_load(&g->listeners[i].st->tls_failures[side][r]));
}

/* Writes the exposition of generation g of daemon d. */
static void expose(FILE *f, const struct daemon *d, const struct generation *g)
{
    for (size_t k = 0; k < sizeof(per_listener) / sizeof(per_listener[0]); k++) {
        if (!has_of(g, per_listener[k].of))
            continue;
        family(f, per_listener[k].name, per_listener[k].type, per_listener[k].help);
        for (size_t i = 0; i < g->nlisteners; i++) {
            struct listener_state *st = g->listeners[i].st;
            if (is_of(&g->listeners[i], per_listener[k].of))
                listener_sample(f, per_listener[k].name, st->name, NULL,
                                per_listener[k].value(st));
        }
    }
    if (has_of(g, OF_STREAM))
        family(f, "mio_echod_refused_total", "counter",
               "Client connections refused before any byte was served, by reason.");
    for (size_t i = 0; i < g->nlisteners; i++) {
        struct listener_state *st = g->listeners[i].st;
        for (int r = 0; r < REFUSED_N && is_of(&g->listeners[i], OF_STREAM); r++)
            listener_sample(f, "mio_echod_refused_total", st->name, refusal_names[r],
                            atomic_load(&st->refused[r]));
    }
    if (has_of(g, OF_UDP))
        family(f, "mio_echod_udp_dropped_total", "counter",
               "Datagrams from clients dropped, by reason: a new flow refused (as "
               "mio_echod_refused_total's reasons), or truncated, send_error, shutdown, "
               "no_upstream, loop_port.");
    for (size_t i = 0; i < g->nlisteners; i++) {
        struct listener_state *st = g->listeners[i].st;
        for (int r = 0; r < UDP_DROP_N && is_of(&g->listeners[i], OF_UDP); r++)
            listener_sample(f, "mio_echod_udp_dropped_total", st->name,
                            udp_drop_name((enum udp_drop)r),
                            atomic_load(&st->udp_dropped[r]));
    }
    family(f, "mio_echod_upstream_failures_total", "counter",
           "Connect attempts to upstreams that failed or timed out.");
    for (size_t i = 0; i < g->nlisteners; i++) {
        struct listener_state *st = g->listeners[i].st;
        listener_sample(f, "mio_echod_upstream_failures_total", st->name, NULL,
                        st_upstream_failures(st));
    }
    expose_tls(f, g);
    family(f, "mio_echod_reloads_total", "counter",
           "Configuration reloads that took effect.");
    fprintf(f, "mio_echod_reloads_total %llu\n",
            (unsigned long long)atomic_load(&d->reloads));
    family(f, "mio_echod_reload_failures_total", "counter",
           "Configuration reloads that failed, leaving the previous one running.");
    fprintf(f, "mio_echod_reload_failures_total %llu\n",
            (unsigned long long)atomic_load(&d->reload_failures));
    family(f, "mio_echod_daemon_connections_open", "gauge",
           "Client connections and UDP flows open now, on every listener.");
    fprintf(f, "mio_echod_daemon_connections_open %u\n", atomic_load(&d->active));
    family(f, "mio_echod_workers", "gauge", "Worker threads.");
    fprintf(f, "mio_echod_workers %u\n", d->nworkers);
    family(f, "mio_echod_build_info", "gauge",
           "The version of mio-echod and the libmio backend it runs on; always 1.");
    fputs("mio_echod_build_info{version=\"", f);
    put_label_value(f, PACKAGE_VERSION);
    fputs("\",backend=\"", f);
    put_label_value(f, mio_backend_name());
    fputs("\"} 1\n", f);
}

/* The exposition as a new buffer of *len bytes; NULL when out of memory. */
static char *render(size_t *len)
{
    return metrics_render(m.d, true, len);
}

/* Drops the lines that start with '#' from buf[0..*len). */
static void drop_comments(char *buf, size_t *len)
{
    size_t w = 0;
    for (size_t r = 0; r < *len;) {
        char *nl = memchr(buf + r, '\n', *len - r);
        size_t end = nl != NULL ? (size_t)(nl - buf) + 1 : *len;
        if (buf[r] != '#') {
            memmove(buf + w, buf + r, end - r);
            w += end - r;
        }
        r = end;
    }
    *len = w;
}

char *metrics_render(struct daemon *d, bool comments, size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (f == NULL)
        return NULL;
    /* A reference, so that a reload cannot free it while it is read. */
    struct generation *g = generation_current(d);
    expose(f, d, g);
    generation_unref(g);
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(buf);
        return NULL;
    }
    *len = size;
    if (!comments)
        drop_comments(buf, len);
    return buf;
}

/* ---- connections ------------------------------------------------------- */

/* Logs a problem, a few lines a second at most. */
#define warn_limited(...)                                              \
    log_limited(LOG_WARNING, &m.rl, m.loop->now_ms, "more not logged", \
                "metrics: " __VA_ARGS__)

static void mconn_ready(struct handler *h, struct loop *l, const mio_event_t *ev);
static void mconn_deadline(struct timer *t);

/* Frees a connection closed in the last batch (the loop's release). */
static void release_conn(struct deferred *d)
{
    struct mconn *c = container_of(d, struct mconn, later);
    free(c->out);
    free(c);
}

/* Closes a connection; it is freed after the batch of events, which may
 * still name it. */
static void close_conn(struct mconn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    loop_timer_cancel(m.loop, &c->timer);
    loop_unwatch(m.loop, c->fd);
    close(c->fd);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        m.conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        m.newest = c->prev;
    m.nconns--;
    loop_defer(m.loop, &c->later, release_conn);
}

/*
 * Reads and throws away what the client sent after its request head, up to
 * METRICS_DISCARD_MAX bytes in all.  True when nothing is left unread: the
 * queue is empty or the client sent its FIN (c->eof), or the client failed
 * and c is closed; false when the bound stopped the reading, with bytes
 * perhaps still queued.
 */
static bool discard_input(struct mconn *c)
{
    char buf[16384];
    while (!c->eof && !c->dead) {
        size_t room = METRICS_DISCARD_MAX - c->discarded;
        if (room == 0)
            return false;
        ssize_t n = recv(c->fd, buf, room < sizeof(buf) ? room : sizeof(buf), 0);
        if (n > 0) {
            c->discarded += (size_t)n;
        } else if (n == 0) {
            c->eof = true;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            loop_rearm(m.loop, c->fd, MIO_READABLE);
            return true;
        } else {
            close_conn(c); /* reset: nobody takes the answer any more */
        }
    }
    return true;
}

/* Queues what is left of the answer; once it all is, shuts the write side
 * down, so that the FIN follows the answer. */
static void write_answer(struct mconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            loop_rearm(m.loop, c->fd, MIO_WRITABLE);
            return;
        } else {
            close_conn(c); /* the client went away */
            return;
        }
    }
    (void)shutdown(c->fd, SHUT_WR);
    c->queued = true;
}

/*
 * Moves an answered connection on: queues its answer, reads and throws away
 * what the client sends meanwhile, and closes once the answer is queued and
 * the client has sent its FIN: a lingering close, as HTTP servers make, so
 * that unread input never turns the close into a reset that would cut the
 * answer.  A client that does not close is closed at its deadline.
 */
static void serve(struct mconn *c)
{
    if (!c->queued)
        write_answer(c);
    if (!c->dead)
        (void)discard_input(c);
    if (!c->dead && c->queued && c->eof)
        close_conn(c);
}

/* Builds the answer to a head that is complete (status 200 or 404) or
 * refused, and starts sending it. */
static void answer(struct mconn *c, enum http_result res)
{
    int status = res == HTTP_BAD ? c->rd.status : 200;
    if (status == 200 && strcmp(c->rd.target, "/metrics") != 0)
        status = 404;
    char note[160];
    char *body;
    size_t body_len;
    bool metrics = false;
    if (status == 200) {
        body = render(&body_len);
        metrics = true;
    } else {
        int n = snprintf(note, sizeof(note), "%d %s: %s\n", status,
                         http_status_text(status),
                         status == 404 ? "only /metrics is served here" : c->rd.why);
        body_len = n < 0 ? 0 : (size_t)n < sizeof(note) ? (size_t)n : sizeof(note) - 1;
        body = malloc(body_len + 1);
        if (body != NULL)
            memcpy(body, note, body_len);
    }
    char head[512];
    int hlen = body == NULL ? -1
                            : http_response_head(head, sizeof(head), status,
                                                 metrics ? METRICS_TYPE : TEXT_TYPE,
                                                 body_len, time(NULL));
    bool head_only = c->rd.method == HTTP_METHOD_HEAD;
    size_t total = hlen < 0 ? 0 : (size_t)hlen + (head_only ? 0 : body_len);
    char *out = total > 0 ? malloc(total) : NULL;
    if (out == NULL) {
        warn_limited("out of memory for an answer; closing the connection");
        free(body);
        close_conn(c);
        return;
    }
    memcpy(out, head, (size_t)hlen);
    if (!head_only)
        memcpy(out + hlen, body, body_len);
    free(body);
    log_debug("metrics: %s %.64s: %d",
              c->rd.method == HTTP_METHOD_GET ? "GET"
              : head_only                     ? "HEAD"
                                              : "-",
              res == HTTP_BAD ? "-" : c->rd.target, status);
    c->out = out;
    c->out_len = total;
    c->answering = true;
    /* The client gets the deadline again to take the answer. */
    (void)loop_timer_set(m.loop, &c->timer, m.loop->now_ms + METRICS_DEADLINE_MS);
    serve(c);
}

/* Reads the request head; never past HTTP_HEAD_MAX bytes. */
static void read_head(struct mconn *c)
{
    char buf[HTTP_HEAD_MAX];
    while (!c->answering && !c->dead) {
        ssize_t n = recv(c->fd, buf, HTTP_HEAD_MAX - c->rd.total, 0);
        if (n > 0) {
            size_t used;
            enum http_result res = http_read(&c->rd, buf, (size_t)n, &used);
            if (res != HTTP_NEED_MORE) {
                c->discarded = (size_t)n - used; /* what came after the head */
                answer(c, res);
            }
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            loop_rearm(m.loop, c->fd, MIO_READABLE);
            return;
        } else {
            close_conn(c); /* gone before its head was complete */
        }
    }
}

/* Takes a new client, the newest: watched for both directions, with its
 * deadline. */
static void open_conn(int fd)
{
    struct mconn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        warn_limited("out of memory for a connection");
        close(fd);
        return;
    }
    c->fd = fd;
    c->h.on_event = mconn_ready;
    c->timer.fire = mconn_deadline;
    http_reader_init(&c->rd);
    int err = loop_watch(m.loop, fd, &c->h, MIO_READABLE | MIO_WRITABLE);
    if (err == 0)
        err = loop_timer_set(m.loop, &c->timer, m.loop->now_ms + METRICS_DEADLINE_MS);
    if (err < 0) {
        warn_limited("cannot watch a connection: %s", log_strerror(-err));
        loop_unwatch(m.loop, fd);
        close(fd);
        free(c);
        return;
    }
    c->prev = m.newest;
    if (m.newest != NULL)
        m.newest->next = c;
    else
        m.conns = c;
    m.newest = c;
    m.nconns++;
    read_head(c); /* the head may have come before it was watched */
}

/*
 * At METRICS_MAX_CONNECTIONS, makes room for one more by closing the oldest
 * connection that has not sent a complete request head (its head is read
 * first, in case it came since its last event); else the oldest whose
 * answer is all queued and that has nothing unread, which the kernel goes
 * on delivering after the close.  False when every connection is still
 * writing its answer (or has input past METRICS_DISCARD_MAX unread).
 */
static bool make_room(void)
{
    for (struct mconn *c = m.conns; c != NULL; c = c->next) {
        if (c->answering)
            continue;
        read_head(c);
        if (c->dead)
            return true;
        if (!c->answering) {
            warn_limited("%d connections open; closing the oldest one without a "
                         "complete request",
                         METRICS_MAX_CONNECTIONS);
            close_conn(c);
            return true;
        }
    }
    for (struct mconn *c = m.conns; c != NULL; c = c->next) {
        if (c->queued && discard_input(c)) {
            close_conn(c);
            return true;
        }
    }
    return false;
}

/* Whether stats.allow and stats.deny admit a client: those of the current
 * configuration, or those started with when it has no stats group. */
static bool client_allowed(const addr_t *peer)
{
    struct generation *g = generation_current(m.d);
    const struct config *cfg = g->cfg;
    bool ok = cfg->has_stats ? cidr_allows(cfg->stats_allow, cfg->nstats_allow,
                                           cfg->stats_deny, cfg->nstats_deny, peer)
                             : cidr_allows(m.allow, m.nallow, m.deny, m.ndeny, peer);
    generation_unref(g);
    return ok;
}

/* Puts the listening socket in the poll, or takes it out. */
static void watch_listener(bool on)
{
    if (on)
        (void)loop_watch(m.loop, m.lfd, &m.listen, MIO_READABLE);
    else
        loop_unwatch(m.loop, m.lfd);
    m.accepting = on;
}

/* Accepts every waiting client: one that stats.allow/deny refuse is closed
 * at once, unread; past the connection limit an older one makes room, or
 * the new one is closed. */
static void accept_clients(void)
{
    while (m.accepting) {
        addr_t peer;
        peer.len = sizeof(peer.u);
        int fd = mio_tcp_accept(m.lfd, &peer.u.ss, &peer.len);
        if (fd == -EAGAIN || fd == -EWOULDBLOCK) {
            loop_rearm(m.loop, m.lfd, MIO_READABLE);
            return;
        }
        if (fd == -EINTR || fd == -ECONNABORTED)
            continue;
        if (fd < 0) {
            warn_limited("cannot accept: %s; pausing for %d ms", log_strerror(-fd),
                         ACCEPT_PAUSE_MS);
            watch_listener(false);
            (void)loop_timer_set(m.loop, &m.accept_timer,
                                 m.loop->now_ms + ACCEPT_PAUSE_MS);
            return;
        }
        if (!client_allowed(&peer)) {
            close(fd);
            char text[ADDR_STRLEN];
            addr_format(&peer, text, sizeof(text));
            warn_limited("refused %s: denied by stats.allow/deny", text);
            continue;
        }
        if (m.nconns >= METRICS_MAX_CONNECTIONS && !make_room()) {
            warn_limited("%d connections open, all being answered; closing a new one",
                         METRICS_MAX_CONNECTIONS);
            close(fd);
            continue;
        }
        open_conn(fd);
    }
}

/* The end of a pause in accepting. */
static void resume_accepting(struct timer *t)
{
    (void)t;
    watch_listener(true);
    accept_clients();
}

/* A connection's deadline passed: it is closed. */
static void mconn_deadline(struct timer *t)
{
    struct mconn *c = container_of(t, struct mconn, timer);
    log_debug("metrics: closing a connection after %d ms %s", METRICS_DEADLINE_MS,
              !c->answering ? "without a complete request"
              : c->queued   ? "while the client had not closed"
                            : "without its answer taken");
    if (c->answering && !c->queued) {
        /* Cut short: a reset says so, where a FIN would pass for the
         * end, and the kernel keeps no unsent rest for a client that
         * does not read. */
        struct linger abort_close = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
    } else if (c->queued) {
        (void)discard_input(c); /* unread input would make it a reset */
    }
    close_conn(c);
}

/* A connection's socket is ready: its head read, or its answer served. */
static void mconn_ready(struct handler *h, struct loop *l, const mio_event_t *ev)
{
    (void)l;
    (void)ev;
    struct mconn *c = container_of(h, struct mconn, h);
    if (c->dead)
        return;
    if (c->answering)
        serve(c);
    else
        read_head(c);
}

/* The listening socket is readable. */
static void listen_ready(struct handler *h, struct loop *l, const mio_event_t *ev)
{
    (void)h;
    (void)l;
    (void)ev;
    accept_clients();
}

/* ---- start and stop ------------------------------------------------------ */

/* Frees whatever metrics_start() made; the thread is not running. */
static void teardown(void)
{
    while (m.conns != NULL)
        close_conn(m.conns);
    loop_timer_cancel(m.loop, &m.accept_timer);
    loop_due(m.loop); /* frees them */
    if (m.lfd >= 0)
        close(m.lfd);
    m.lfd = -1;
    m.accepting = false;
    free(m.allow);
    free(m.deny);
    m.allow = m.deny = NULL;
    m.nallow = m.ndeny = 0;
}

/* A copy of n ranges into *out (NULL when n is 0); -ENOMEM. */
static int copy_cidrs(const struct cidr *from, size_t n, struct cidr **out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    *out = malloc(n * sizeof(**out));
    if (*out == NULL)
        return -ENOMEM;
    memcpy(*out, from, n * sizeof(**out));
    return 0;
}

const char *metrics_address(void)
{
    return m.name;
}

int metrics_start(struct daemon *d, struct loop *loop, bool *bound)
{
    const struct config *cfg = atomic_load(&d->gen)->cfg;
    *bound = false;
    if (!cfg->has_stats || m.started)
        return 0;
    const addr_t *a = &cfg->stats.addr;
    addr_format(a, m.name, sizeof(m.name));
    int fd = mio_tcp_listen(&a->u.sa, a->len, 0,
                            a->u.sa.sa_family == AF_INET6 ? MIO_LISTEN_V6ONLY : 0);
    if (fd < 0)
        return fd;
    *bound = true;
    m.lfd = fd;
    addr_t local;
    local.len = sizeof(local.u);
    if (mio_socket_local_addr(fd, &local.u.ss, &local.len) == 0)
        addr_format(&local, m.name, sizeof(m.name));
    m.d = d;
    m.loop = loop;
    int e = copy_cidrs(cfg->stats_allow, cfg->nstats_allow, &m.allow);
    if (e == 0)
        e = copy_cidrs(cfg->stats_deny, cfg->nstats_deny, &m.deny);
    m.nallow = m.allow != NULL ? cfg->nstats_allow : 0;
    m.ndeny = m.deny != NULL ? cfg->nstats_deny : 0;
    m.listen.on_event = listen_ready;
    m.accept_timer.fire = resume_accepting;
    if (e == 0) {
        e = loop_watch(m.loop, m.lfd, &m.listen, MIO_READABLE);
        m.accepting = e == 0;
    }
    if (e < 0) {
        teardown();
        return e;
    }
    m.started = true;
    log_info("metrics: listening on %s (GET /metrics)", m.name);
    return 0;
}

void metrics_stop(void)
{
    if (!m.started)
        return;
    teardown();
    m.started = false;
}
