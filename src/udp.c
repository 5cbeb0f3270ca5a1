/* UDP listening sockets in their worker: read, admit, echo or relay. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dgram.h"
#include "generation.h"
#include "log.h"
#include "proxy.h"
#include "udp.h"
#include "worker.h"

/* Batches read from a client socket per event: the rest after the other
 * handlers. */
#define READ_BATCHES 4

const char *udp_drop_name(enum udp_drop why)
{
    static const char *const own[UDP_DROP_N - REFUSED_N] = {
        [UDP_DROP_TRUNCATED - REFUSED_N] = "truncated",
        [UDP_DROP_SEND_ERROR - REFUSED_N] = "send_error",
        [UDP_DROP_SHUTDOWN - REFUSED_N] = "shutdown",
        [UDP_DROP_NO_UPSTREAM - REFUSED_N] = "no_upstream",
        [UDP_DROP_LOOP_PORT - REFUSED_N] = "loop_port",
    };
    return (int)why < REFUSED_N ? refusal_names[why] : own[why - REFUSED_N];
}

void udp_dropped(struct udp_port *port, enum udp_drop why, unsigned long long n)
{
    atomic_fetch_add(&port->ls->listener->st->udp_dropped[why], n);
}

/* Logs a dropped datagram of a new source, rate-limited with the
 * worker's refusals. */
static void log_drop(struct udp_port *port, const addr_t *src, const char *what)
{
    struct worker *w = port->w;
    char text[ADDR_STRLEN];
    addr_format(src, text, sizeof(text));
    log_limited(LOG_INFO, &w->rl_refused, w->loop.now_ms, "more refused, not logged",
                "listener %s: dropped a datagram from %s: %s",
                port->ls->listener->cfg->name, text, what);
}

void udp_reply(struct udp_port *port, const struct dgram *ds, size_t n)
{
    enum dgram_to to = port->wildcard ? DGRAM_TO_PEER_FROM_LOCAL : DGRAM_TO_PEER;
    size_t done = 0, sent = 0;
    while (done < n) {
        int err;
        size_t k = dgram_send(port->fd, ds + done, n - done, to, &err);
        for (size_t i = done; i < done + k; i++) {
            struct flow *f = ds[i].owner;
            f->out += ds[i].len;
            f->dgrams_out++;
        }
        done += k;
        sent += k;
        if (err == 0)
            break;
        /* Full buffers lose the rest of the batch, an error of one route
         * (unreachable, refused by a firewall) that datagram only. */
        size_t lost = err == -EAGAIN || err == -ENOBUFS ? n - done : 1;
        udp_dropped(port, UDP_DROP_SEND_ERROR, lost);
        done += lost;
    }
    atomic_fetch_add(&port->ls->listener->st->dgrams_out, sent);
}

void udp_flush(struct worker *w)
{
    size_t n = w->nqueued;
    if (n == 0 || w->dgrams == NULL)
        return;
    const struct dgram *ds = w->dgrams->d;
    w->nqueued = 0;
    for (size_t i = 0, k; i < n; i += k) {
        struct udp_port *port = ((struct flow *)ds[i].owner)->port;
        for (k = 1; i + k < n && ((struct flow *)ds[i + k].owner)->port == port; k++)
            ;
        udp_reply(port, ds + i, k);
    }
}

/* A new source: admission (and the source a PROXY header declared), then
 * its flow; NULL when the datagram is dropped (counted into drops). */
static struct flow *admit(struct udp_port *port, struct listener *l,
                          const struct dgram *d, uint64_t hash, const addr_t *peer,
                          bool declared, unsigned long long *drops)
{
    struct worker *w = port->w;
    if (port->draining) {
        drops[UDP_DROP_SHUTDOWN]++;
        return NULL;
    }
    struct ticket t;
    enum refusal why = admission_take(&t, w->d, l, &d->peer);
    if (why == REFUSED_N && declared) {
        why = admission_declare(&t, l, peer);
        if (why != REFUSED_N)
            admission_release(&t, w->d, l->st);
    }
    if (why != REFUSED_N) {
        drops[why]++;
        log_drop(port, peer, admission_refusal_text(why));
        return NULL;
    }
    int err = 0;
    struct flow *f = flow_open(port, l, d, hash, peer, &t, &err);
    if (f == NULL) {
        bool no_fd = err == -EMFILE || err == -ENFILE;
        drops[no_fd ? (int)REFUSED_NO_FD : (int)UDP_DROP_NO_UPSTREAM]++;
        log_drop(port, peer, err == -EHOSTUNREACH ? "no upstream" : log_strerror(-err));
    }
    return f;
}

/*
 * Whether a datagram from this source port could start a loop: port 0 is
 * no sender's, and echo (7), daytime (13), qotd (17), chargen (19) and
 * time (37) answer any datagram, so a forged one from such a service
 * would bounce between it and this daemon for ever (the "echo-chargen"
 * flood, CVE-1999-0103).  inetd refuses them for the same reason.
 */
static bool loop_port(const addr_t *src)
{
    switch (addr_port(src)) {
    case 0:
    case 7:
    case 13:
    case 17:
    case 19:
    case 37:
        return true;
    default:
        return false;
    }
}

/* The flow of datagram d (a new one admission lets in), its PROXY header
 * taken off; NULL when it is dropped (counted into drops). */
static struct flow *take(struct udp_port *port, struct listener *l, struct dgram *d,
                         unsigned long long *drops)
{
    if (d->truncated) {
        drops[UDP_DROP_TRUNCATED]++;
        log_drop(port, &d->peer, "longer than the largest UDP payload (truncated)");
        return NULL;
    }
    if (loop_port(&d->peer)) {
        drops[UDP_DROP_LOOP_PORT]++;
        log_drop(port, &d->peer, "from a port that could make a loop");
        return NULL;
    }
    addr_t peer = d->peer;
    bool declared = false;
    if (l->cfg->accept_proxy) {
        struct proxy_info info;
        const char *why = NULL;
        int hlen = proxy_parse_dgram(d->data, d->len, &info, &why);
        if (hlen < 0) {
            drops[REFUSED_PROXY_HEADER]++;
            log_drop(port, &d->peer, why);
            return NULL;
        }
        d->data += hlen;
        d->len -= (size_t)hlen;
        if (!info.local) {
            peer = info.src;
            declared = true;
        }
    }
    uint64_t hash;
    struct flow *f = flow_find(&port->flows, &d->peer, declared ? &peer : NULL, &hash);
    if (f == NULL)
        f = admit(port, l, d, hash, &peer, declared, drops);
    if (f != NULL) {
        f->in += d->len;
        f->dgrams_in++;
        flow_touch(f, port->w->loop.now_ms);
    }
    return f;
}

/* Serves one batch: each datagram to its flow, then the echoed ones sent
 * back together, and the relayed ones to their upstreams, a run of one
 * flow's together. */
static void serve(struct udp_port *port, struct dgram *ds, size_t n)
{
    struct listener *l = port->ls->listener;
    unsigned long long drops[UDP_DROP_N] = {0};
    struct dgram relay[DGRAM_BATCH];
    size_t nechoed = 0, nrelayed = 0;
    for (size_t i = 0; i < n; i++) {
        struct flow *f = take(port, l, &ds[i], drops);
        if (f == NULL)
            continue;
        ds[i].owner = f;
        if (f->l->cfg->mode == MODE_ECHO)
            ds[nechoed++] = ds[i]; /* over the batch, in order: nechoed <= i */
        else
            relay[nrelayed++] = ds[i];
    }
    for (int r = 0; r < UDP_DROP_N; r++)
        if (drops[r] > 0)
            udp_dropped(port, (enum udp_drop)r, drops[r]);
    atomic_fetch_add(&l->st->dgrams_in, n);
    if (nechoed > 0)
        udp_reply(port, ds, nechoed);
    for (size_t i = 0, k; i < nrelayed; i += k) {
        for (k = 1; i + k < nrelayed && relay[i + k].owner == relay[i].owner; k++)
            ;
        flow_forward(relay[i].owner, relay + i, k);
    }
}

/* Reads and serves what waits on the port's socket, up to READ_BATCHES
 * batches: then the rest after the other handlers (the `more` timer). */
static void read_port(struct udp_port *port)
{
    struct worker *w = port->w;
    if (w->dgrams == NULL) /* made with the worker's first port: never */
        return;
    udp_flush(w); /* the batch's buffers are read into from the start */
    for (int b = 0; b < READ_BATCHES; b++) {
        int n = dgram_recv(port->fd, w->dgrams, 0, DGRAM_BATCH);
        if (n == -EAGAIN) {
            loop_rearm(&w->loop, port->fd, MIO_READABLE);
            return;
        }
        if (n == -EINTR)
            continue;
        if (n < 0) {
            /* An error queued on the socket (an ICMP error to a reply, on
             * some systems) is consumed by the read that reports it. */
            if (log_ratelimit(&w->rl_fd, w->loop.now_ms, NULL))
                log_warn("listener %s: receive on %s: %s", port->ls->listener->cfg->name,
                         port->ls->name, log_strerror(-n));
            continue;
        }
        serve(port, w->dgrams->d, (size_t)n);
        /* A short batch emptied the queue: the next datagram makes a new
         * edge, so a read that would only say EAGAIN is saved. */
        if (n < DGRAM_BATCH || !port->watched) {
            if (port->watched)
                loop_rearm(&w->loop, port->fd, MIO_READABLE);
            return;
        }
    }
    (void)loop_timer_set(&w->loop, &port->more, w->loop.now_ms);
}

/* The handler of a UDP listening socket. */
static void on_readable(struct handler *h, struct loop *l, const mio_event_t *ev)
{
    (void)l;
    (void)ev;
    struct udp_port *port = container_of(h, struct udp_port, h);
    if (port->watched)
        read_port(port);
}

/* The end of a pause after a full budget of batches. */
static void read_more(struct timer *t)
{
    struct udp_port *port = container_of(t, struct udp_port, more);
    if (port->watched)
        read_port(port);
}

/* ---- the worker's ports --------------------------------------------------- */

/* Takes the port out of the poll: it reads no more. */
static void unwatch(struct udp_port *port)
{
    if (!port->watched)
        return;
    loop_unwatch(&port->w->loop, port->fd);
    loop_timer_cancel(&port->w->loop, &port->more);
    port->watched = false;
}

/* Frees a port taken off the worker's list in the last batch. */
static void release(struct deferred *d)
{
    struct udp_port *port = container_of(d, struct udp_port, later);
    flow_table_free(&port->flows);
    free(port);
}

/* Closes every flow of the port with `reason`. */
static void close_flows(struct udp_port *port, const char *reason)
{
    for (size_t b = 0; b < port->flows.nbuckets; b++)
        while (port->flows.buckets[b] != NULL)
            flow_close(port->flows.buckets[b], reason);
}

/* Ends the port: its flows, its place in the poll and in the list. */
static void remove_port(struct worker *w, struct udp_port **link, const char *reason)
{
    struct udp_port *port = *link;
    close_flows(port, reason);
    unwatch(port);
    *link = port->next;
    loop_defer(&w->loop, &port->later, release);
}

/* A new port for ls, watched. */
static struct udp_port *new_port(struct worker *w, struct listen_sock *ls)
{
    struct udp_port *port = calloc(1, sizeof(*port));
    if (port == NULL)
        return NULL;
    if (flow_table_init(&port->flows) < 0) {
        free(port);
        return NULL;
    }
    port->h.on_event = on_readable;
    port->more.fire = read_more;
    port->w = w;
    port->fd = ls->fd;
    port->ls = ls;
    port->wildcard = addr_is_wildcard(&ls->addr);
    if (loop_watch(&w->loop, ls->fd, &port->h, MIO_READABLE) < 0) {
        flow_table_free(&port->flows);
        free(port);
        return NULL;
    }
    port->watched = true;
    return port;
}

/* Whether worker w serves the UDP socket fd. */
static bool serves(const struct worker *w, int fd)
{
    return (unsigned)fd % w->d->nworkers == w->id;
}

/* The port of w for descriptor fd, or NULL. */
static struct udp_port *port_of(struct worker *w, int fd)
{
    for (struct udp_port *p = w->ports; p != NULL; p = p->next)
        if (p->fd == fd)
            return p;
    return NULL;
}

int udp_sync(struct worker *w)
{
    struct generation *g = w->gen;
    int err = 0;
    for (struct udp_port *p = w->ports; p != NULL; p = p->next)
        p->ls = NULL;
    for (size_t i = 0; i < g->nlisteners; i++)
        for (size_t k = 0; k < g->listeners[i].nsocks; k++) {
            struct listen_sock *ls = &g->listeners[i].socks[k];
            if (!ls->udp || ls->fd < 0 || !serves(w, ls->fd))
                continue;
            struct udp_port *p = port_of(w, ls->fd);
            if (p == NULL && w->dgrams == NULL) {
                w->dgrams = malloc(sizeof(*w->dgrams));
                if (w->dgrams != NULL && dgram_batch_init(w->dgrams) < 0) {
                    free(w->dgrams);
                    w->dgrams = NULL;
                }
                if (w->dgrams == NULL) {
                    err = -ENOMEM;
                    continue;
                }
            }
            if (p == NULL && (p = new_port(w, ls)) != NULL) {
                p->next = w->ports;
                w->ports = p;
            }
            if (p != NULL)
                p->ls = ls;
            else
                err = -ENOMEM;
        }
    /* The ports whose address left the configuration: their flows end (the
     * socket closes once every worker has moved on). */
    for (struct udp_port **link = &w->ports; *link != NULL;)
        if ((*link)->ls == NULL)
            remove_port(w, link, "listener-removed");
        else
            link = &(*link)->next;
    return err;
}

void udp_flow_gone(struct udp_port *port)
{
    if (port->draining && port->flows.n == 0)
        unwatch(port);
}

void udp_stop(struct worker *w)
{
    /* Handed over (SIGUSR2), the sockets are the new process's to read:
     * ours would drop what new sources send.  Our flows still answer
     * through them, and end as they go idle. */
    bool handed_over = atomic_load(&w->d->handed_over);
    for (struct udp_port *p = w->ports; p != NULL; p = p->next) {
        p->draining = true;
        if (handed_over)
            unwatch(p);
        udp_flow_gone(p);
    }
}

void udp_close_flows(struct worker *w, const char *reason)
{
    for (struct udp_port *p = w->ports; p != NULL; p = p->next)
        close_flows(p, reason);
}

void udp_free(struct worker *w)
{
    while (w->ports != NULL)
        remove_port(w, &w->ports, "shutdown");
    loop_due(&w->loop); /* releases them */
    if (w->dgrams != NULL)
        dgram_batch_free(w->dgrams);
    free(w->dgrams);
    w->dgrams = NULL;
}
