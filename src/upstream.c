/* Upstream selection, connect candidates and passive health. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "upstream.h"
#include "worker.h"

/* c->tried has a bit for each address of an upstream. */
_Static_assert(ADDR_RESOLVE_MAX <= 8 * sizeof(((struct conn *)0)->tried),
               "conn.tried has too few bits for ADDR_RESOLVE_MAX addresses");

/* Whether the address may be tried now. */
static bool addr_healthy(const struct upstream_addr *ua, int64_t now_ms)
{
    return atomic_load_explicit(&ua->failed_until_ms, memory_order_relaxed) <= now_ms;
}

/* Whether the upstream may be tried now: one of its addresses may. */
static bool healthy(const struct upstream *up, int64_t now_ms)
{
    for (size_t i = 0; i < up->naddrs; i++)
        if (addr_healthy(up->addrs[i], now_ms))
            return true;
    return false;
}

/* The upstream's connections now: the sum over its addresses. */
static unsigned load_of(const struct upstream *up)
{
    unsigned sum = 0;
    for (size_t i = 0; i < up->naddrs; i++)
        sum += atomic_load(&up->addrs[i]->active);
    return sum;
}

/* Round-robin among the healthy upstreams only, so that the share of a
 * failed one is spread over all the others rather than given to the one
 * after it; among all of them when none is healthy. */
static unsigned round_robin(struct listener *l, int64_t now_ms)
{
    unsigned n = (unsigned)l->nupstreams;
    unsigned turn = atomic_fetch_add(&l->st->rr, 1), nhealthy = 0;
    for (unsigned i = 0; i < n; i++)
        nhealthy += healthy(&l->upstreams[i], now_ms);
    /* n >= 1: config_load() refuses a proxy listener without upstreams. */
    if (nhealthy == 0)
        return turn % n; /* NOLINT(clang-analyzer-core.DivideZero) */
    unsigned k = turn % nhealthy;
    for (unsigned i = 0; i < n; i++)
        if (healthy(&l->upstreams[i], now_ms) && k-- == 0)
            return i;
    /* Another worker changed a mark meanwhile: upstream_pick() goes on
     * from here to a healthy one. */
    return turn % n;
}

/* Where the first attempt starts, by balance mode. */
static unsigned first_position(struct listener *l, struct conn *c, int64_t now_ms)
{
    unsigned n = (unsigned)l->nupstreams;
    switch (l->cfg->balance) {
    case BALANCE_SOURCE_HASH: {
        uint8_t key[16];
        size_t len = addr_source_key(&c->peer, key);
        return source_key_hash(key, len) % n;
    }
    case BALANCE_LEAST_CONNECTIONS: {
        /* The healthy upstream with the fewest connections; ties go round
         * robin so that equal upstreams share the load. */
        unsigned start = atomic_fetch_add(&l->st->rr, 1) % n, best = start;
        unsigned best_active = ~0u;
        for (unsigned k = 0; k < n; k++) {
            unsigned i = (start + k) % n;
            unsigned a = load_of(&l->upstreams[i]);
            if (healthy(&l->upstreams[i], now_ms) && a < best_active) {
                best = i;
                best_active = a;
            }
        }
        return best;
    }
    case BALANCE_ROUND_ROBIN:
    default:
        return round_robin(l, now_ms);
    }
}

/* The upstream of c's next attempt: the first where the balance mode says,
 * a retry the next healthy one after the last. */
static const struct upstream *upstream_pick(struct listener *l, struct conn *c,
                                            int64_t now_ms)
{
    unsigned n = (unsigned)l->nupstreams;
    if (c->attempts <= 1)
        c->cursor = first_position(l, c, now_ms);
    for (unsigned k = 0; k < n; k++) {
        unsigned i = (c->cursor + k) % n;
        if (healthy(&l->upstreams[i], now_ms)) {
            c->cursor = i + 1;
            return &l->upstreams[i];
        }
    }
    /* All failed: try them anyway.  n >= 1: config_load() refuses a proxy
     * listener without upstreams, and only proxy connections get here. */
    unsigned i = c->cursor % n; /* NOLINT(clang-analyzer-core.DivideZero) */
    c->cursor = i + 1;
    return &l->upstreams[i];
}

/* No address: the attempt's upstream has none left to try. */
#define NO_ADDRESS ((size_t)-1)

/* The index of the next address of the current attempt's upstream not
 * tried yet (and not marked failed, unless the whole upstream was), or
 * NO_ADDRESS. */
static size_t next_address(struct conn *c, int64_t now_ms)
{
    const struct upstream *up = c->target;
    for (size_t i = 0; up != NULL && i < up->naddrs; i++) {
        if ((c->tried & (1u << i)) != 0 ||
            (!c->all_failed && !addr_healthy(up->addrs[i], now_ms)))
            continue;
        c->tried |= (uint16_t)(1u << i);
        return i;
    }
    return NO_ADDRESS;
}

/* Marks ua failed for the listener's fail_timeout and counts the failure. */
static void mark_failed(struct worker *w, struct listener *l, struct upstream_addr *ua)
{
    int64_t fail = l->cfg->fail_timeout_ms;
    atomic_fetch_add(&l->st->upstream_failures, 1);
    if (fail > 0)
        atomic_store(&ua->failed_until_ms, w->now_ms + fail);
}

/* "127.0.0.1:6379", or "db.example:6379 (192.0.2.7:6379)" for an address of
 * a name. */
static void describe(const struct conn *c, const struct upstream_addr *ua,
                     char *buf, size_t len)
{
    const char *text = c->target != NULL ? c->target->text : NULL;
    if (text == NULL || strcmp(text, ua->name) == 0)
        snprintf(buf, len, "%s", ua->name);
    else
        snprintf(buf, len, "%s (%s)", text, ua->name);
}

struct upstream_addr *upstream_next(struct worker *w, struct conn *c)
{
    struct listener *l = c->l;
    for (;;) {
        size_t i = next_address(c, w->now_ms);
        if (i == NO_ADDRESS) {
            if (c->attempts > l->cfg->retries)
                return NULL;
            c->attempts++;
            c->target = upstream_pick(l, c, w->now_ms);
            c->tried = 0;
            c->all_failed = !healthy(c->target, w->now_ms);
            continue;
        }
        return c->target->addrs[i];
    }
}

void upstream_failed(struct worker *w, struct conn *c, struct upstream_addr *ua,
                     int err)
{
    struct listener *l = c->l;
    int64_t fail = l->cfg->fail_timeout_ms;
    mark_failed(w, l, ua);
    char what[2 * ADDR_STRLEN + 8];
    describe(c, ua, what, sizeof(what));
    const char *why = err == ETIMEDOUT ? "connect timeout" : log_strerror(err);
    if (fail > 0)
        upstream_warn(w, "listener %s: upstream %s failed: %s; skipped for %lld.%03lld s",
                      l->cfg->name, what, why, (long long)(fail / 1000),
                      (long long)(fail % 1000));
    else
        upstream_warn(w, "listener %s: upstream %s failed: %s; not skipped "
                      "(fail_timeout is 0)", l->cfg->name, what, why);
}

void upstream_succeeded(struct upstream_addr *ua)
{
    if (atomic_load_explicit(&ua->failed_until_ms, memory_order_relaxed) != 0)
        atomic_store(&ua->failed_until_ms, 0);
}

void upstream_warn(struct worker *w, const char *fmt, ...)
{
    unsigned dropped;
    if (!ratelimit_allow(&w->rl_upstream, w->now_ms, &dropped))
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (dropped > 0)
        log_warn("%s (%u more upstream warnings, not logged)", line, dropped);
    else
        log_warn("%s", line);
}
