/* Upstream selection and passive health. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <string.h>

#include "upstream.h"
#include "worker.h"

/* Whether up may be tried now. */
static bool healthy(struct upstream *up, int64_t now_ms)
{
    return atomic_load_explicit(&up->failed_until_ms, memory_order_relaxed) <= now_ms;
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
        unsigned start = atomic_fetch_add(&l->rr, 1) % n, best = start;
        unsigned best_active = ~0u;
        for (unsigned k = 0; k < n; k++) {
            unsigned i = (start + k) % n;
            unsigned a = atomic_load(&l->upstreams[i].active);
            if (healthy(&l->upstreams[i], now_ms) && a < best_active) {
                best = i;
                best_active = a;
            }
        }
        return best;
    }
    case BALANCE_ROUND_ROBIN:
    default:
        return atomic_fetch_add(&l->rr, 1) % n;
    }
}

struct upstream *upstream_pick(struct listener *l, struct conn *c, int64_t now_ms)
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

void upstream_failed(struct worker *w, struct listener *l, struct upstream *up,
                     int err)
{
    int64_t fail = l->cfg->fail_timeout_ms;
    atomic_fetch_add(&l->st->upstream_failures, 1);
    if (fail > 0)
        atomic_store(&up->failed_until_ms, w->now_ms + fail);
    if (ratelimit_allow(&w->rl_upstream, w->now_ms, NULL))
        log_warn("listener %s: upstream %s failed: %s; skipped for %lld.%03lld s",
                 l->cfg->name, up->name,
                 err == ETIMEDOUT ? "connect timeout" : log_strerror(err),
                 (long long)(fail / 1000), (long long)(fail % 1000));
}

void upstream_succeeded(struct upstream *up)
{
    if (atomic_load_explicit(&up->failed_until_ms, memory_order_relaxed) != 0)
        atomic_store(&up->failed_until_ms, 0);
}
