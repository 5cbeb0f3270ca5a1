/*
 * The metrics listener: one thread, one poll, a few short HTTP connections,
 * each answered with the exposition of the current generation's counters
 * (exposition.c), which metrics_render() also makes for other callers.
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

#include "exposition.h"
#include "generation.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "upgrade.h"
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

/* Removes the comment lines ("# HELP", "# TYPE") of the n bytes of an
 * exposition at buf; the length left.  A label value has no newline (it is
 * escaped), so a line that starts with '#' is a comment. */
static size_t drop_comments(char *buf, size_t n)
{
    size_t kept = 0;
    for (size_t at = 0; at < n;) {
        const char *nl = memchr(buf + at, '\n', n - at);
        size_t len = nl != NULL ? (size_t)(nl - (buf + at)) + 1 : n - at;
        if (buf[at] != '#') {
            memmove(buf + kept, buf + at, len);
            kept += len;
        }
        at += len;
    }
    buf[kept] = '\0';
    return kept;
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
    exposition_write(f, d, g);
    generation_unref(g);
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(buf);
        return NULL;
    }
    *len = comments ? size : drop_comments(buf, size);
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

/* The body of the answer to /health: "ok\n" (200) while serving,
 * "draining\n" (503) from the start of a drain; *status gets the status. */
static char *health_body(int *status, size_t *len)
{
    bool draining = atomic_load(&m.d->draining);
    const char *text = draining ? "draining\n" : "ok\n";
    *status = draining ? 503 : 200;
    *len = strlen(text);
    return strdup(text);
}

/* Builds the answer to a head that is complete (status 200, 503 or 404)
 * or refused, and starts sending it. */
static void answer(struct mconn *c, enum http_result res)
{
    int status = res == HTTP_BAD ? c->rd.status : 200;
    bool health = status == 200 && strcmp(c->rd.target, "/health") == 0;
    if (status == 200 && !health && strcmp(c->rd.target, "/metrics") != 0)
        status = 404;
    char note[160];
    char *body;
    size_t body_len;
    bool metrics = false;
    if (health) {
        body = health_body(&status, &body_len);
    } else if (status == 200) {
        body = metrics_render(m.d, true, &body_len);
        metrics = true;
    } else {
        int n = snprintf(note, sizeof(note), "%d %s: %s\n", status,
                         http_status_text(status),
                         status == 404 ? "only /metrics and /health are served here"
                                       : c->rd.why);
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

/* The stats socket the previous process handed over (upgrade.h) when it is
 * bound to `a` (to a's address and any port when a's port is 0), else -1,
 * having closed it. */
static int take_inherited(const addr_t *a)
{
    int fd = upgrade_inherited(UPGRADE_METRICS_NAME);
    if (fd < 0)
        return -1;
    addr_t got, want = *a;
    got.len = sizeof(got.u);
    if (mio_socket_local_addr(fd, &got.u.ss, &got.len) == 0) {
        if (addr_port(&want) == 0)
            addr_set_port(&want, addr_port(&got));
        if (addr_equal(&got, &want))
            return fd;
    }
    close(fd);
    return -1;
}

int metrics_start(struct daemon *d, struct loop *loop, bool *bound)
{
    const struct config *cfg = atomic_load(&d->gen)->cfg;
    *bound = false;
    if (!cfg->has_stats || m.started)
        return 0;
    const addr_t *a = &cfg->stats.addr;
    addr_format(a, m.name, sizeof(m.name));
    int fd = take_inherited(a);
    if (fd < 0)
        fd = mio_tcp_listen(&a->u.sa, a->len, 0,
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

int metrics_listen_fd(void)
{
    return m.lfd;
}

/* Stops accepting and closes the listening socket, on the admin thread. */
static void unlisten(struct loop_task *t, struct loop *l)
{
    (void)t;
    (void)l;
    if (m.lfd < 0)
        return;
    if (m.accepting)
        watch_listener(false);
    loop_timer_cancel(m.loop, &m.accept_timer);
    close(m.lfd);
    m.lfd = -1;
}

void metrics_handover(void)
{
    static struct loop_task task;
    if (m.started)
        loop_post(m.loop, &task, unlisten);
}

void metrics_stop(void)
{
    if (!m.started)
        return;
    teardown();
    m.started = false;
}
