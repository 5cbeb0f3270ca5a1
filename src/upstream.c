/* Upstream selection, connect candidates, the loop guard and passive health. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "balance.h"
#include "conn.h"
#include "generation.h"
#include "hello.h"
#include "siphash.h"
#include "upstream.h"
#include "worker.h"

/* ch->tried has a bit for each address of an upstream. */
_Static_assert(ADDR_RESOLVE_MAX <= 8 * sizeof(((struct upstream_choice *)0)->tried),
               "upstream_choice.tried has too few bits for ADDR_RESOLVE_MAX addresses");

/* Whether no failed connect marks the address now. */
static bool addr_unmarked(const struct upstream_addr *ua, int64_t now_ms)
{
    return atomic_load_explicit(&ua->failed_until_ms, memory_order_relaxed) <= now_ms;
}

/* Whether the address may be tried now: operators let it, checks do not
 * say it is down, and no failed connect marks it. */
static bool addr_healthy(const struct upstream_addr *ua, int64_t now_ms)
{
    return upstream_addr_admitted(ua) &&
           !atomic_load_explicit(&ua->down, memory_order_relaxed) &&
           addr_unmarked(ua, now_ms);
}

/* Whether the upstream may be chosen now: its own address may be tried. */
static bool healthy(const struct upstream *up, int64_t now_ms)
{
    return addr_healthy(up->addrs[0], now_ms);
}

unsigned upstream_weight(const struct upstream *up)
{
    unsigned set = atomic_load_explicit(&up->addrs[0]->weight, memory_order_relaxed);
    return set > 0 ? set : up->weight;
}

const char *upstream_state_name(const struct upstream_addr *ua, int64_t now_ms)
{
    switch (atomic_load(&ua->admin)) {
    case UPSTREAM_DRAINING:
        return "draining";
    case UPSTREAM_DISABLED:
        return "disabled";
    default:
        return atomic_load(&ua->down) || !addr_unmarked(ua, now_ms) ? "down" : "up";
    }
}

/*
 * What a pool's weighted choices need: the ids of its upstreams
 * (balance.h), and smooth weighted round-robin's running scores, shared by
 * the workers under a lock.  Weights are read when a choice is made: an
 * operator may change them at any time.
 */
struct pool_weights {
    pthread_mutex_t mu;
    int64_t *current;
    uint64_t *ids; /* a hash of each upstream's address: stable across
                      reloads and daemons, for rendezvous hashing */
};

/* The key of the rendezvous hash: fixed, so that every daemon behind one
 * balancer (and every restart) sends a source to the same upstream. */
static const uint64_t rendezvous_key[2] = {0x6d696f2d6563686full, 0x6f64207372632d68ull};

bool upstream_pool_init(struct upstream_pool *p, const struct upstream_pool *old)
{
    struct pool_weights *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return false;
    w->current = calloc(p->n, sizeof(*w->current));
    w->ids = calloc(p->n, sizeof(*w->ids));
    if (w->current == NULL || w->ids == NULL || pthread_mutex_init(&w->mu, NULL) != 0) {
        free(w->current);
        free(w->ids);
        free(w);
        return false;
    }
    for (unsigned i = 0; i < p->n; i++) {
        const char *name = p->ups[i].addrs[0]->name;
        w->ids[i] = siphash24(rendezvous_key, name, strlen(name));
    }
    if (old != NULL && old->w != NULL) {
        pthread_mutex_lock(&old->w->mu);
        for (unsigned i = 0; i < p->n; i++)
            for (unsigned k = 0; k < old->n; k++)
                if (old->ups[k].addrs[0] == p->ups[i].addrs[0])
                    w->current[i] = old->w->current[k];
        pthread_mutex_unlock(&old->w->mu);
    }
    p->w = w;
    return true;
}

void upstream_pool_free(struct upstream_pool *p)
{
    struct pool_weights *w = p->w;
    if (w == NULL)
        return;
    pthread_mutex_destroy(&w->mu);
    free(w->current);
    free(w->ids);
    free(w);
    p->w = NULL;
}

/* Which upstreams a first pick may take, into ok[0..n): the healthy
 * primaries; when none, the healthy backups; when none either, false
 * (then every one is tried anyway, in order). */
static bool eligible(const struct upstream_pool *p, int64_t now_ms, bool *ok)
{
    for (int backup = 0; backup <= 1; backup++) {
        bool any = false;
        for (unsigned i = 0; i < p->n; i++) {
            ok[i] = p->ups[i].backup == (backup == 1) && healthy(&p->ups[i], now_ms);
            any |= ok[i];
        }
        if (any)
            return true;
    }
    return false;
}

/* The eligible upstream with the fewest connections for its weight
 * (connections / weight, compared without division); ties go round robin
 * so that equal upstreams share the load. */
static unsigned least_connections(const struct upstream_pool *p, const bool *ok,
                                  const unsigned *weights)
{
    unsigned n = p->n;
    if (n == 0) /* a relay has upstreams: for the analyzer */
        return 0;
    unsigned start = atomic_fetch_add(p->rr, 1) % n, best = start;
    unsigned long long best_load = 0, best_weight = 0;
    for (unsigned k = 0; k < n; k++) {
        unsigned i = (start + k) % n;
        if (!ok[i])
            continue;
        unsigned long long load = atomic_load(&p->ups[i].addrs[0]->active),
                           weight = weights[i];
        if (best_weight == 0 || load * best_weight < best_load * weight) {
            best = i;
            best_load = load;
            best_weight = weight;
        }
    }
    return best;
}

/* The first upstream from turn `from` on (round) that operators let take
 * clients, or BALANCE_NONE. */
static size_t next_admitted(const struct upstream_pool *p, unsigned from)
{
    for (unsigned k = 0; k < p->n; k++) {
        unsigned i = (from + k) % p->n;
        if (upstream_addr_admitted(p->ups[i].addrs[0]))
            return i;
    }
    return BALANCE_NONE;
}

/* Where the first attempt starts, by balance mode, among the eligible
 * upstreams; when none is, the next in turn that operators let take
 * clients; BALANCE_NONE when there is none such. */
static size_t first_position(const struct listener *l, const struct upstream_pool *p,
                             const addr_t *peer, int64_t now_ms)
{
    unsigned n = p->n;
    bool small_ok[64], *ok = n <= 64 ? small_ok : malloc(n * sizeof(*ok));
    unsigned small_w[64], *weights = n <= 64 ? small_w : malloc(n * sizeof(*weights));
    size_t i = BALANCE_NONE;
    if (ok == NULL || weights == NULL || !eligible(p, now_ms, ok)) {
        i = next_admitted(p, atomic_fetch_add(p->rr, 1));
        goto out;
    }
    for (unsigned k = 0; k < n; k++)
        weights[k] = upstream_weight(&p->ups[k]);
    switch (l->cfg->balance) {
    case BALANCE_SOURCE_HASH: {
        uint8_t key[16];
        size_t len = addr_source_key(peer, key);
        i = balance_rendezvous(rendezvous_key, key, len, p->w->ids, weights, ok, n);
        break;
    }
    case BALANCE_LEAST_CONNECTIONS:
        i = least_connections(p, ok, weights);
        break;
    case BALANCE_ROUND_ROBIN:
    default:
        pthread_mutex_lock(&p->w->mu);
        i = balance_swrr(weights, p->w->current, ok, n);
        pthread_mutex_unlock(&p->w->mu);
        break;
    }
out:
    if (ok != small_ok)
        free(ok);
    if (weights != small_w)
        free(weights);
    return i;
}

/* Whether a retry may take upstream up now: a healthy primary, or a
 * healthy backup when `backups`. */
static bool retry_takes(const struct upstream *up, bool backups, int64_t now_ms)
{
    return (up->backup == backups) && healthy(up, now_ms);
}

/* The upstream of ch's next attempt: the first where the balance mode
 * says, a retry the next healthy primary after the last (the next healthy
 * backup when no primary is), or when none is healthy the next that
 * operators let take clients; NULL when they let none. */
static const struct upstream *upstream_pick(const struct listener *l,
                                            struct upstream_choice *ch,
                                            const addr_t *peer, int64_t now_ms)
{
    const struct upstream_pool *p = ch->pool;
    unsigned n = p->n;
    if (ch->attempts <= 1) {
        size_t i = first_position(l, p, peer, now_ms);
        if (i == BALANCE_NONE)
            return NULL;
        ch->cursor = (uint16_t)(i + 1);
        return &p->ups[i];
    }
    for (int backups = 0; backups <= 1; backups++)
        for (unsigned k = 0; k < n; k++) {
            unsigned i = (ch->cursor + k) % n;
            if (retry_takes(&p->ups[i], backups == 1, now_ms)) {
                ch->cursor = (uint16_t)(i + 1);
                return &p->ups[i];
            }
        }
    /* All failed: try them anyway.  n >= 1: config_load() refuses a proxy
     * listener without upstreams, and only proxy connections get here. */
    size_t i = next_admitted(p, ch->cursor);
    if (i == BALANCE_NONE)
        return NULL;
    ch->cursor = (uint16_t)(i + 1);
    return &p->ups[i];
}

/* No address: the attempt's upstream has none left to try. */
#define NO_ADDRESS ((size_t)-1)

/* The index of the next address of the current attempt's upstream not
 * tried yet and that operators let take clients (and healthy, unless the
 * upstream was not), or NO_ADDRESS. */
static size_t next_address(struct upstream_choice *ch, int64_t now_ms)
{
    const struct upstream *up = ch->target;
    for (size_t i = 0; up != NULL && i < up->naddrs; i++) {
        if ((ch->tried & (1u << i)) != 0 || !upstream_addr_admitted(up->addrs[i]) ||
            (!ch->all_failed && !addr_healthy(up->addrs[i], now_ms)))
            continue;
        ch->tried |= (uint16_t)(1u << i);
        return i;
    }
    return NO_ADDRESS;
}

/* ---- the loop guard ------------------------------------------------------ */

/* This host's interface addresses, into *out (malloc'd, NULL when none);
 * how many.  A failure is logged: the guard then knows loopback only. */
static size_t host_addrs(addr_t **out)
{
    *out = NULL;
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) < 0) {
        log_warn("cannot list this host's addresses: %s; the upstream loop "
                 "guard knows only loopback ones",
                 log_strerror(errno));
        return 0;
    }
    size_t n = 0, max = 0;
    for (const struct ifaddrs *i = ifs; i != NULL; i = i->ifa_next)
        max++;
    addr_t *a = calloc(max ? max : 1, sizeof(*a));
    for (const struct ifaddrs *i = ifs; a != NULL && i != NULL; i = i->ifa_next) {
        int family = i->ifa_addr != NULL ? i->ifa_addr->sa_family : AF_UNSPEC;
        if (family != AF_INET && family != AF_INET6)
            continue;
        memset(&a[n], 0, sizeof(a[n]));
        a[n].len = family == AF_INET ? sizeof(a[n].u.in) : sizeof(a[n].u.in6);
        memcpy(&a[n].u, i->ifa_addr, a[n].len);
        n++;
    }
    freeifaddrs(ifs);
    *out = a;
    return n;
}

/* Whether the IP address of a is on this host: loopback, or one of
 * host[0..nhost). */
static bool is_local(const addr_t *a, const addr_t *host, size_t nhost)
{
    if (addr_is_loopback(a))
        return true;
    uint8_t ka[16], kh[16];
    size_t na = addr_source_key(a, ka);
    for (size_t i = 0; i < nhost; i++)
        if (na > 0 && addr_source_key(&host[i], kh) == na && memcmp(ka, kh, na) == 0)
            return true;
    return false;
}

/* Whether a wildcard listening socket (0.0.0.0 or [::]) bound to l, fd,
 * takes a connect to t, an address of this host on its port: one of its
 * family, or a v4 one on a [::] socket without IPV6_V6ONLY (systemd may
 * pass one; the daemon's own take v6 only). */
static bool wildcard_takes(const addr_t *l, int fd, const addr_t *t)
{
    int lf = l->u.sa.sa_family, tf = t->u.sa.sa_family;
    if (!addr_is_wildcard(l))
        return false;
    if (lf == AF_INET && tf == AF_INET)
        return l->u.in.sin_port == t->u.in.sin_port;
    if (lf != AF_INET6)
        return false;
    if (tf == AF_INET6)
        return l->u.in6.sin6_port == t->u.in6.sin6_port;
    if (tf != AF_INET || l->u.in6.sin6_port != t->u.in.sin_port)
        return false;
    int v6only = 1;
    socklen_t len = sizeof(v6only);
    return getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) == 0 && v6only == 0;
}

/* The listening socket of g that a connect to `a` reaches, or NULL: the
 * same address, or a wildcard one on its port when `a` is of this host. */
static const struct listen_sock *reached(const struct generation *g, const addr_t *a,
                                         bool udp, const addr_t *host, size_t nhost)
{
    addr_t t = addr_connect_target(a);
    bool local = t.u.sa.sa_family != AF_UNIX && is_local(&t, host, nhost);
    for (size_t i = 0; i < g->nlisteners; i++) {
        const struct listener *l = &g->listeners[i];
        if ((l->cfg->protocol == PROTOCOL_UDP) != udp)
            continue; /* a datagram never reaches a TCP socket, nor the reverse */
        for (size_t k = 0; k < l->nsocks; k++) {
            const struct listen_sock *ls = &l->socks[k];
            /* socks has nsocks entries, which the analyzer does not know. */
            if (addr_equal(&ls->addr, &t) ||
                /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): above */
                (local && wildcard_takes(&ls->addr, ls->fd, &t)))
                return ls;
        }
    }
    return NULL;
}

/*
 * Relays between listeners of g make a graph: an edge from L to M when an
 * upstream address of L reaches a listening socket of M.  An edge on a
 * cycle is a loop (one client would make the daemon connect to itself
 * until max_connections); an edge into a listener that does not lead back
 * (an echo listener, a relay elsewhere) is a chain, which is fine.  The
 * load refuses the loops it can see; this sees the ones it cannot: the
 * host's own interface addresses on the port of a wildcard listener, ports
 * the kernel picked, sockets systemd passed.
 */
int upstream_find_loops(struct generation *g)
{
    size_t n = g->nlisteners;
    addr_t *host;
    size_t nhost = host_addrs(&host);
    bool *path = calloc(n > 0 ? n * n : 1, sizeof(*path)); /* [from * n + to] */
    if (path == NULL) {
        free(host);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct listener *l = &g->listeners[i];
        for (size_t k = 0; k < l->nupstreams; k++)
            for (size_t j = 0; j < l->upstreams[k].naddrs; j++) {
                const struct listen_sock *ls = reached(g, &l->upstreams[k].addrs[j]->addr,
                                                       l->cfg->protocol == PROTOCOL_UDP,
                                                       host, nhost);
                l->upstreams[k].loop_at[j] = ls; /* kept below if it loops */
                if (ls != NULL)
                    path[i * n + (size_t)(ls->listener - g->listeners)] = true;
            }
    }
    /* Every listener each one leads to (Warshall; few of the rows are not
     * empty: only relays into the daemon's own listeners have edges). */
    for (size_t m = 0; m < n; m++)
        for (size_t i = 0; i < n; i++)
            if (path[i * n + m])
                for (size_t j = 0; j < n; j++)
                    path[i * n + j] = path[i * n + j] || path[m * n + j];
    for (size_t i = 0; i < n; i++) {
        struct listener *l = &g->listeners[i];
        for (size_t k = 0; k < l->nupstreams; k++)
            for (size_t j = 0; j < l->upstreams[k].naddrs; j++) {
                const struct listen_sock *ls = l->upstreams[k].loop_at[j];
                if (ls != NULL && !path[(size_t)(ls->listener - g->listeners) * n + i])
                    l->upstreams[k].loop_at[j] = NULL;
            }
    }
    free(path);
    free(host);
    return 0;
}

/* Marks ua failed for the listener's fail_timeout and counts the failure. */
static void mark_failed(struct worker *w, struct listener *l, struct upstream_addr *ua,
                        int err)
{
    int64_t fail = l->cfg->fail_timeout_ms;
    atomic_fetch_add(&l->st->upstream_failures, 1);
    atomic_fetch_add(&ua->connect_failures, 1);
    atomic_store(&ua->last_error, err);
    if (fail > 0)
        atomic_store(&ua->failed_until_ms, w->loop.now_ms + fail);
}

/* "127.0.0.1:6379", or "db.example:6379 (192.0.2.7:6379)" for an address of
 * a name. */
static void describe(const struct upstream *target, const struct upstream_addr *ua,
                     char *buf, size_t len)
{
    const char *text = target != NULL ? target->text : NULL;
    if (text == NULL || strcmp(text, ua->name) == 0)
        snprintf(buf, len, "%s", ua->name);
    else
        snprintf(buf, len, "%s (%s)", text, ua->name);
}

struct upstream_addr *upstream_next(struct worker *w, struct listener *l,
                                    struct upstream_choice *ch, const addr_t *peer)
{
    for (;;) {
        size_t i = next_address(ch, w->loop.now_ms);
        if (i == NO_ADDRESS) {
            if (ch->attempts > l->cfg->retries)
                return NULL;
            ch->attempts++;
            ch->target = upstream_pick(l, ch, peer, w->loop.now_ms);
            if (ch->target == NULL)
                return NULL;
            ch->tried = 0;
            ch->all_failed = !healthy(ch->target, w->loop.now_ms);
            continue;
        }
        struct upstream_addr *ua = ch->target->addrs[i];
        const struct listen_sock *own = ch->target->loop_at[i];
        if (own == NULL) {
            /* Counted here, where every attempt passes, so that one that
             * fails at once (no socket, no route) is a connect too. */
            atomic_fetch_add_explicit(&ua->connects, 1, memory_order_relaxed);
            return ua;
        }
        /* A failed connect for this listener; not a mark on the address,
         * which other listeners may reach without a loop. */
        atomic_fetch_add(&l->st->upstream_failures, 1);
        char what[2 * ADDR_STRLEN + 8];
        describe(ch->target, ua, what, sizeof(what));
        upstream_warn(w,
                      "listener %s: upstream %s is this daemon's own "
                      "listening address %s (listener %s): not connecting (a loop)",
                      l->cfg->name, what, own->name, own->listener->cfg->name);
    }
}

const struct upstream_pool *upstream_route(const struct listener *l,
                                           const char *server_name)
{
    if (server_name != NULL) {
        for (size_t i = 1; i < l->npools; i++)
            if (strcmp(l->pools[i].server_name, server_name) == 0)
                return &l->pools[i];
        for (size_t i = 1; i < l->npools; i++)
            if (l->pools[i].server_name[0] == '*' &&
                hello_name_matches(l->pools[i].server_name, server_name))
                return &l->pools[i];
    }
    return &l->pools[0];
}

void upstream_failed(struct worker *w, struct listener *l, const struct upstream *target,
                     struct upstream_addr *ua, int err)
{
    int64_t fail = l->cfg->fail_timeout_ms;
    mark_failed(w, l, ua, err);
    char what[2 * ADDR_STRLEN + 8];
    describe(target, ua, what, sizeof(what));
    const char *why = err == ETIMEDOUT ? "connect timeout"
                      : err == ECONNREFUSED && l->cfg->protocol == PROTOCOL_UDP
                          ? "port unreachable (ICMP)"
                      : err == EPROTO ? "TLS handshake failed"
                                      : log_strerror(err);
    if (fail > 0)
        upstream_warn(w, "listener %s: upstream %s failed: %s; skipped for %lld.%03lld s",
                      l->cfg->name, what, why, (long long)(fail / 1000),
                      (long long)(fail % 1000));
    else
        upstream_warn(w,
                      "listener %s: upstream %s failed: %s; not skipped "
                      "(fail_timeout is 0)",
                      l->cfg->name, what, why);
}

void upstream_connecting(struct upstream_addr *ua)
{
    atomic_fetch_add(&ua->active, 1);
}

void upstream_released(struct upstream_addr *ua, uint64_t to, uint64_t from)
{
    atomic_fetch_sub(&ua->active, 1);
    if (to > 0)
        atomic_fetch_add_explicit(&ua->bytes_out, to, memory_order_relaxed);
    if (from > 0)
        atomic_fetch_add_explicit(&ua->bytes_in, from, memory_order_relaxed);
}

void upstream_succeeded(struct upstream_addr *ua)
{
    if (atomic_load_explicit(&ua->failed_until_ms, memory_order_relaxed) != 0)
        atomic_store(&ua->failed_until_ms, 0);
}

/* The state of upstream address a held by the listener `listener` of `g`
 * (in g->listeners[0..nlisteners), the one being set up included), or
 * NULL. */
static struct upstream_addr *find_addr(const struct generation *g, const char *listener,
                                       const addr_t *a, bool udp)
{
    for (size_t i = 0; g != NULL && i < g->nlisteners; i++) {
        const struct listener *l = &g->listeners[i];
        if (l->cfg == NULL || strcmp(l->cfg->name, listener) != 0)
            continue;
        for (size_t k = 0; k < l->nupstreams; k++)
            for (size_t j = 0; j < l->upstreams[k].naddrs; j++)
                if (addr_equal(&l->upstreams[k].addrs[j]->addr, a) &&
                    l->upstreams[k].addrs[j]->udp == udp)
                    return l->upstreams[k].addrs[j];
    }
    return NULL;
}

struct upstream_addr *upstream_addr_get(struct generation *g, struct generation *old,
                                        const char *listener, const addr_t *a, bool udp)
{
    struct upstream_addr *ua = find_addr(g, listener, a, udp);
    if (ua == NULL)
        ua = find_addr(old, listener, a, udp);
    if (ua != NULL) {
        atomic_fetch_add(&ua->refs, 1);
        return ua;
    }
    ua = calloc(1, sizeof(*ua));
    if (ua == NULL)
        return NULL;
    atomic_init(&ua->refs, 1);
    ua->addr = *a;
    ua->udp = udp;
    addr_format(a, ua->name, sizeof(ua->name));
    return ua;
}

void upstream_addr_put(struct upstream_addr *ua)
{
    if (atomic_fetch_sub(&ua->refs, 1) == 1)
        free(ua);
}

void upstream_warn(struct worker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vlimited(LOG_WARNING, &w->rl_upstream, w->loop.now_ms,
                 "more upstream warnings, not logged", fmt, ap);
    va_end(ap);
}
