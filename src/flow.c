/* UDP flows: their table, their upstream socket and its replies, their end. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dgram.h"
#include "flow.h"
#include "generation.h"
#include "log.h"
#include "proxy.h"
#include "siphash.h"
#include "udp.h"
#include "worker.h"

/* Replies read from an upstream per event, in batches: the rest after the
 * other handlers. */
#define REPLY_BATCHES 4

/* ---- the table ------------------------------------------------------------ */

int flow_table_init(struct flow_table *t)
{
    memset(t, 0, sizeof(*t));
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof(struct flow *));
    if (t->buckets == NULL)
        return -ENOMEM;
    /* Without entropy (very early boot) the key is weaker, not absent. */
    if (getrandom(t->key, sizeof(t->key), GRND_NONBLOCK) != (ssize_t)sizeof(t->key)) {
        t->key[0] = (uint64_t)(uintptr_t)t ^ (uint64_t)loop_clock_ms();
        t->key[1] = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
    }
    return 0;
}

void flow_table_free(struct flow_table *t)
{
    free(t->buckets);
    t->buckets = NULL;
}

/* Appends an address's IP and port to key at *n. */
static void put_key(uint8_t *key, size_t *n, const addr_t *a)
{
    *n += addr_source_key(a, key + *n);
    unsigned port = addr_port(a);
    key[(*n)++] = (uint8_t)(port >> 8);
    key[(*n)++] = (uint8_t)port;
}

struct flow *flow_find(const struct flow_table *t, const addr_t *client,
                       const addr_t *peer, uint64_t *hash)
{
    uint8_t key[36];
    size_t n = 0;
    put_key(key, &n, client);
    if (peer != NULL)
        put_key(key, &n, peer);
    *hash = siphash24(t->key, key, n);
    for (struct flow *f = t->buckets[*hash & (t->nbuckets - 1)]; f != NULL; f = f->hnext)
        if (f->hash == *hash && addr_equal(&f->client, client) &&
            (peer == NULL || addr_equal(&f->peer, peer)))
            return f;
    return NULL;
}

/* Doubles the buckets when there are more flows than buckets; stays as it
 * is when out of memory (lookups get longer, nothing fails). */
static void grow(struct flow_table *t)
{
    size_t n = t->nbuckets * 2;
    struct flow **b = calloc(n, sizeof(struct flow *));
    if (b == NULL)
        return;
    for (size_t i = 0; i < t->nbuckets; i++)
        while (t->buckets[i] != NULL) {
            struct flow *f = t->buckets[i];
            t->buckets[i] = f->hnext;
            f->hnext = b[f->hash & (n - 1)];
            b[f->hash & (n - 1)] = f;
        }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

/* Puts f in t. */
static void insert(struct flow_table *t, struct flow *f)
{
    if (t->n >= t->nbuckets)
        grow(t);
    struct flow **b = &t->buckets[f->hash & (t->nbuckets - 1)];
    f->hnext = *b;
    *b = f;
    t->n++;
}

/* Takes f out of t. */
static void remove_flow(struct flow_table *t, struct flow *f)
{
    for (struct flow **p = &t->buckets[f->hash & (t->nbuckets - 1)]; *p != NULL;
         p = &(*p)->hnext)
        if (*p == f) {
            *p = f->hnext;
            t->n--;
            return;
        }
}

/* ---- the idle deadline ---------------------------------------------------- */

static void read_replies(struct flow *f);

/*
 * The timer is not moved for every datagram (a heap operation each): it
 * fires at the deadline it was given, and a flow that was active since is
 * given its new deadline then.  It also brings a flow back at once when
 * replies were left unread (f->more).
 */
static void idle_due(struct timer *t)
{
    struct flow *f = container_of(t, struct flow, timer);
    struct loop *l = &f->port->w->loop;
    if (f->more) { /* not the deadline: replies left to read */
        f->more = false;
        read_replies(f);
        if (f->dead || f->more)
            return;
    }
    int64_t deadline = f->last_ms + f->l->cfg->idle_timeout_ms;
    if (l->now_ms < deadline && loop_timer_set(l, &f->timer, deadline) == 0)
        return;
    flow_close(f, "idle");
}

void flow_touch(struct flow *f, int64_t now_ms)
{
    f->last_ms = now_ms;
}

/* ---- the access line ------------------------------------------------------ */

/* Writes f's access line: its bytes and datagrams so far (those sent to
 * the client: replies gathered and not yet sent are not), and `reason`
 * ("interim" while it is open). */
static void write_access(const struct flow *f, const char *reason)
{
    char client[ADDR_STRLEN];
    addr_format(&f->peer, client, sizeof(client));
    const struct log_field extra[] = {
        LOG_COUNT("datagrams_in", f->dgrams_in),
        LOG_COUNT("datagrams_out", f->dgrams_out),
    };
    log_access(f->l->cfg->name, client, f->up != NULL ? f->up->name : NULL, f->in, f->out,
               f->port->w->loop.now_ms - f->start_ms, extra,
               sizeof(extra) / sizeof(extra[0]), reason);
}

/* log.interval's timer: an interim access line, then the next one an
 * interval later (a timer per flow, as conn.c's). */
static void on_interim(struct timer *t)
{
    struct flow *f = container_of(t, struct flow, interim);
    struct loop *l = &f->port->w->loop;
    int64_t every = f->l->gen->cfg->log_interval_ms;
    if (log_enabled(LOG_INFO))
        write_access(f, "interim");
    int64_t next = t->deadline_ms + every;
    if (next <= l->now_ms) /* the loop was late: no burst to catch up */
        next = l->now_ms + every;
    (void)loop_timer_set(l, t, next);
}

/* ---- the upstream side ---------------------------------------------------- */

static void on_reply(struct handler *h, struct loop *l, const mio_event_t *ev);

/* Connects f's socket to ua: the same socket when the family allows (a
 * UDP connect only sets the peer), else a new one.  0 or -errno. */
static int connect_to(struct flow *f, struct upstream_addr *ua)
{
    struct worker *w = f->port->w;
    const addr_t *a = &ua->addr;
    if (f->ufd >= 0 &&
        (f->up == NULL || f->up->addr.u.sa.sa_family != a->u.sa.sa_family)) {
        loop_close(&w->loop, f->ufd);
        f->ufd = -1;
    }
    if (f->ufd < 0) {
        int fd = socket(a->u.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        int err = loop_watch(&w->loop, fd, &f->h, MIO_READABLE);
        if (err < 0) {
            close(fd);
            return err;
        }
        f->ufd = fd;
    }
    if (connect(f->ufd, &a->u.sa, a->len) < 0)
        return -errno;
    if (f->up != NULL)
        upstream_released(f->up, 0, 0);
    f->up = ua;
    upstream_connecting(ua);
    return 0;
}

/* Connects f to the next upstream its choice gives: the first, or after
 * one failed (then a fresh choice: the balance mode picks among those not
 * marked failed).  0, or -EHOSTUNREACH when none is left, or -errno. */
static int choose_upstream(struct flow *f)
{
    struct worker *w = f->port->w;
    int err = -EHOSTUNREACH;
    struct upstream_addr *ua;
    while ((ua = upstream_next(w, f->l, &f->choice, &f->peer)) != NULL) {
        err = connect_to(f, ua);
        if (err == 0)
            return 0;
        if (err == -EMFILE || err == -ENFILE || err == -ENOMEM)
            return err;
        upstream_failed(w, f->l, f->choice.target, ua, -err);
    }
    return err;
}

/* The upstream of f refused a datagram (ICMP port unreachable, seen on a
 * later send or read): marks it failed and moves f to another one; false
 * when none is left (f is closed). */
static bool upstream_refused(struct flow *f)
{
    struct worker *w = f->port->w;
    upstream_failed(w, f->l, f->choice.target, f->up, ECONNREFUSED);
    f->choice = (struct upstream_choice){.pool = f->choice.pool};
    if (choose_upstream(f) == 0)
        return true;
    flow_close(f, "no-upstream");
    return false;
}

void flow_forward(struct flow *f, struct dgram *ds, size_t n)
{
    size_t done = 0, dropped = 0;
    int retries = 1; /* one move to another upstream per call */
    while (done < n && !f->dead) {
        int err;
        if (f->proxy_len > 0) {
            err = dgram_send2(f->ufd, f->proxy, f->proxy_len, ds[done].data,
                              ds[done].len);
            done += err == 0;
        } else {
            done += dgram_send(f->ufd, ds + done, n - done, DGRAM_CONNECTED, &err);
        }
        if (err == 0)
            continue;
        if (err == -ECONNREFUSED && retries-- > 0) {
            if (!upstream_refused(f))
                return;
            continue;
        }
        /* Full buffers (-EAGAIN, -ENOBUFS) lose the rest, an error of the
         * route this datagram: lost, as a router would lose them. */
        size_t lost = err == -EAGAIN || err == -ENOBUFS ? n - done : 1;
        done += lost;
        dropped += lost;
    }
    if (dropped > 0)
        udp_dropped(f->port, UDP_DROP_SEND_ERROR, dropped);
}

/*
 * Reads the upstream's replies into the worker's batch, after the replies
 * other flows gathered there, for udp_flush() to send them together to
 * their clients once the batch of events is dispatched (or when the batch
 * is full): up to `responses` of them, for a flow that ends there.  Past
 * REPLY_BATCHES reads it comes back through its timer, after the other
 * handlers (an edge-triggered poll reports nothing new for what waits).
 */
static void read_replies(struct flow *f)
{
    struct worker *w = f->port->w;
    unsigned limit = f->l->cfg->responses;
    for (int b = 0; b < REPLY_BATCHES; b++) {
        if (w->nqueued == DGRAM_BATCH)
            udp_flush(w);
        size_t first = w->nqueued, room = DGRAM_BATCH - first;
        int n = dgram_recv(f->ufd, w->dgrams, first, room);
        if (n == -EAGAIN) {
            loop_rearm(&w->loop, f->ufd, MIO_READABLE);
            return;
        }
        if (n == -ECONNREFUSED) {
            if (!upstream_refused(f))
                return;
            continue;
        }
        if (n < 0) {
            flow_close(f, "upstream-error");
            return;
        }
        size_t k = (size_t)n;
        if (limit > 0 && f->replies + k > limit)
            k = limit - f->replies; /* what is over is not sent */
        for (size_t i = first; i < first + k; i++) {
            struct dgram *d = &w->dgrams->d[i];
            d->peer = f->client;
            d->local = f->local;
            d->ifindex = f->ifindex;
            d->owner = f;
        }
        w->nqueued += k;
        f->replies += (unsigned)k;
        flow_touch(f, w->loop.now_ms);
        if (limit > 0 && f->replies >= limit) {
            flow_close(f, "responses"); /* which sends what is gathered first */
            return;
        }
        if ((size_t)n < room) { /* the queue is empty: a new datagram makes an edge */
            loop_rearm(&w->loop, f->ufd, MIO_READABLE);
            return;
        }
    }
    f->more = true;
    (void)loop_timer_set(&w->loop, &f->timer, w->loop.now_ms);
}

/* The handler of a flow's upstream socket. */
static void on_reply(struct handler *h, struct loop *l, const mio_event_t *ev)
{
    (void)l;
    (void)ev;
    struct flow *f = container_of(h, struct flow, h);
    if (!f->dead)
        read_replies(f);
}

/* ---- open and close ------------------------------------------------------- */

/* Frees a flow closed in the last batch. */
static void release(struct deferred *d)
{
    struct flow *f = container_of(d, struct flow, later);
    generation_unref(f->l->gen);
    free(f);
}

struct flow *flow_open(struct udp_port *port, struct listener *l, const struct dgram *d,
                       uint64_t hash, const addr_t *peer, const struct ticket *ticket,
                       int *err)
{
    struct worker *w = port->w;
    struct flow *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        struct ticket t = *ticket;
        admission_release(&t, w->d, l->st);
        *err = -ENOMEM;
        return NULL;
    }
    f->h.on_event = on_reply;
    f->timer.fire = idle_due;
    f->interim.fire = on_interim;
    f->hash = hash;
    f->port = port;
    f->l = l;
    generation_ref(l->gen);
    f->ticket = *ticket;
    f->client = d->peer;
    f->peer = *peer;
    f->local = d->local;
    f->ifindex = d->ifindex;
    f->ufd = -1;
    f->start_ms = f->last_ms = w->loop.now_ms;
    f->id = atomic_fetch_add_explicit(&w->d->next_conn_id, 1, memory_order_relaxed) + 1;
    insert(&port->flows, f);
    w->nflows++;
    atomic_fetch_add(&l->st->accepted, 1);
    (void)loop_timer_set(&w->loop, &f->timer, f->start_ms + l->cfg->idle_timeout_ms);
    int64_t every = l->gen->cfg->log_interval_ms;
    if (every > 0 && l->gen->cfg->log_access)
        (void)loop_timer_set(&w->loop, &f->interim, f->start_ms + every);
    if (l->cfg->mode != MODE_PROXY)
        return f;
    if (l->cfg->send_proxy == SEND_PROXY_V2) {
        addr_t dst = d->local.len > 0 ? d->local : port->ls->addr;
        if (d->local.len > 0)
            addr_set_port(&dst, addr_port(&port->ls->addr));
        int n = proxy_build(PROXY_V2_DGRAM, peer, &dst, f->proxy, sizeof(f->proxy));
        f->proxy_len = n > 0 ? (uint8_t)n : 0;
    }
    f->choice.pool = &l->pools[0];
    *err = choose_upstream(f);
    if (*err < 0) {
        bool no_fd = *err == -EMFILE || *err == -ENFILE;
        flow_close(f, no_fd ? "out-of-descriptors" : "no-upstream");
        return NULL;
    }
    return f;
}

void flow_close(struct flow *f, const char *reason)
{
    if (f->dead)
        return;
    struct udp_port *port = f->port;
    struct worker *w = port->w;
    udp_flush(w); /* its replies gathered, counted before its access line */
    struct listener *l = f->l;
    f->dead = true;
    loop_timer_cancel(&w->loop, &f->timer);
    loop_timer_cancel(&w->loop, &f->interim);
    remove_flow(&port->flows, f);
    w->nflows--;
    if (f->up != NULL)
        upstream_released(f->up, f->in, f->out);
    admission_release(&f->ticket, w->d, l->st);
    atomic_fetch_add(&l->st->bytes_in, f->in);
    atomic_fetch_add(&l->st->bytes_out, f->out);
    histogram_observe(&l->st->duration, (uint64_t)(w->loop.now_ms - f->start_ms) * 1000);
    if (f->ufd >= 0) {
        loop_close(&w->loop, f->ufd);
        f->ufd = -1;
    }
    if (l->gen->cfg->log_access && log_enabled(LOG_INFO))
        write_access(f, reason);
    loop_defer(&w->loop, &f->later, release);
    udp_flow_gone(port);
}
