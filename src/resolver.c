/* Re-resolving upstream host names in the background. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "generation.h"
#include "log.h"
#include "loop.h"
#include "resolver.h"

/* How long the thread sleeps at most, so that it sees a reload even if
 * it missed the wake. */
#define IDLE_MS 60000

/* One name the relays re-resolve, and what it resolved to last. */
struct name {
    char *text;     /* as written: "cache.internal:6379" */
    int64_t every;  /* ms: the shortest `resolve` of the relays naming it */
    int64_t due_ms; /* the next resolution (0: not scheduled yet) */
    addr_t addrs[ADDR_RESOLVE_MAX];
    size_t n;     /* 0: none of its own yet (the configuration's stand) */
    bool failing; /* the last resolution failed (logged once) */
    bool seen;    /* a relay of the current generation names it */
};

static struct {
    struct daemon *d;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop, rescan;
    struct name *names;
    size_t nnames;
} r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* The entry of text, or NULL. */
static struct name *find(const char *text)
{
    for (size_t i = 0; i < r.nnames; i++)
        if (strcmp(r.names[i].text, text) == 0)
            return &r.names[i];
    return NULL;
}

/* The entry of ca's name, made when missing with the configuration's
 * addresses as what it resolves to now; NULL when out of memory. */
static struct name *entry(const struct config_addr *ca)
{
    struct name *e = find(ca->text);
    if (e != NULL)
        return e;
    struct name *grown = realloc(r.names, (r.nnames + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    r.names = grown;
    e = &r.names[r.nnames];
    *e = (struct name){.text = strdup(ca->text)};
    if (e->text == NULL)
        return NULL;
    r.nnames++;
    e->n = ca->naddrs < ADDR_RESOLVE_MAX ? ca->naddrs : ADDR_RESOLVE_MAX;
    memcpy(e->addrs, ca->addrs, e->n * sizeof(addr_t));
    return e;
}

/* Notes the names of one list of upstreams of a relay that re-resolves
 * every `every` ms. */
static void note_names(const struct config_addr *list, size_t n, int64_t every)
{
    for (size_t i = 0; i < n; i++) {
        if (!addr_text_is_name(list[i].text))
            continue;
        struct name *e = entry(&list[i]);
        if (e == NULL)
            continue; /* out of memory: resolved at reloads only */
        if (!e->seen || every < e->every)
            e->every = every;
        e->seen = true;
    }
}

/* Makes the list of names again from the current generation: those no
 * relay names any more are dropped. */
static void scan(void)
{
    for (size_t i = 0; i < r.nnames; i++)
        r.names[i].seen = false;
    struct generation *g = generation_current(r.d);
    for (size_t i = 0; i < g->nlisteners; i++) {
        const struct listener_config *lc = g->listeners[i].cfg;
        if (lc->mode != MODE_PROXY || lc->resolve_ms <= 0)
            continue;
        note_names(lc->upstreams, lc->nupstreams, lc->resolve_ms);
        for (size_t k = 0; k < lc->nsni_routes; k++)
            note_names(lc->sni_routes[k].upstreams, lc->sni_routes[k].nupstreams,
                       lc->resolve_ms);
    }
    generation_unref(g);
    size_t kept = 0;
    for (size_t i = 0; i < r.nnames; i++) {
        if (r.names[i].seen)
            r.names[kept++] = r.names[i];
        else
            free(r.names[i].text);
    }
    r.nnames = kept;
}

/* "a, b, c" of addrs[0..n) into buf. */
static void list_addrs(const addr_t *addrs, size_t n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used + 2 < len; i++) {
        char one[ADDR_STRLEN];
        addr_format(&addrs[i], one, sizeof(one));
        int w = snprintf(buf + used, len - used, "%s%s", i > 0 ? ", " : "", one);
        if (w < 0)
            break;
        used += (size_t)w < len - used ? (size_t)w : len - used - 1;
    }
}

/* Whether a[0..na) and b[0..nb) are the same addresses, in any order
 * (each list has each address once).  A new order alone is no change:
 * DNS servers that rotate their answers give one at each query, which
 * would open the configuration again (and log) at every interval; the
 * order kept is the one the addresses came in when they last changed. */
static bool same(const addr_t *a, size_t na, const addr_t *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t k = 0; k < nb && !found; k++)
            found = addr_equal(&a[i], &b[k]);
        if (!found)
            return false;
    }
    return true;
}

/* Resolves the entry at index i (the lock is let go meanwhile: the list
 * may change, so it is found again by text); true when its addresses
 * changed. */
static bool resolve_one(size_t i, int64_t now)
{
    char *text = strdup(r.names[i].text);
    if (text == NULL)
        return false;
    r.names[i].due_ms = now + r.names[i].every;
    pthread_mutex_unlock(&r.mu);
    addr_t got[ADDR_RESOLVE_MAX];
    size_t n = 0;
    char err[256];
    int rc = addr_parse(text, ADDR_UPSTREAM, got, ADDR_RESOLVE_MAX, &n, err, sizeof(err));
    pthread_mutex_lock(&r.mu);
    struct name *e = find(text);
    free(text);
    if (e == NULL)
        return false;
    char was[1024], now_text[1024];
    list_addrs(e->addrs, e->n, was, sizeof(was));
    if (rc != 0) {
        if (!e->failing)
            log_warn("resolve: %s; keeping %s", err, was[0] != '\0' ? was : "no address");
        e->failing = true;
        return false;
    }
    if (e->failing)
        log_notice("resolve: %s resolves again", e->text);
    e->failing = false;
    if (same(e->addrs, e->n, got, n))
        return false;
    list_addrs(got, n, now_text, sizeof(now_text));
    log_notice("resolve: %s now resolves to %s (was %s)", e->text, now_text, was);
    memcpy(e->addrs, got, n * sizeof(addr_t));
    e->n = n;
    return true;
}

/* The thread: resolves what is due, sleeps until the next. */
static void *run(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&r.mu);
    r.rescan = true;
    while (!r.stop) {
        if (r.rescan) {
            scan();
            r.rescan = false;
        }
        int64_t now = loop_clock_ms(), next = now + IDLE_MS;
        bool changed = false;
        for (size_t i = 0; i < r.nnames && !r.stop && !r.rescan; i++) {
            if (r.names[i].due_ms == 0)
                r.names[i].due_ms = now + r.names[i].every;
            if (r.names[i].due_ms <= now)
                changed |= resolve_one(i, now);
            if (i < r.nnames && r.names[i].due_ms < next)
                next = r.names[i].due_ms;
        }
        if (changed)
            kill(getpid(), RESOLVER_SIGNAL);
        if (r.stop || r.rescan)
            continue;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t wait = next - loop_clock_ms();
        if (wait < 0)
            wait = 0;
        until.tv_sec += (time_t)(wait / 1000);
        until.tv_nsec += (long)(wait % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&r.cond, &r.mu, &until);
    }
    pthread_mutex_unlock(&r.mu);
    return NULL;
}

int resolver_start(struct daemon *d)
{
    r.d = d;
    r.stop = false;
    pthread_condattr_t attr;
    int e = pthread_condattr_init(&attr);
    if (e == 0)
        e = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (e == 0) {
        pthread_cond_destroy(&r.cond);
        e = pthread_cond_init(&r.cond, &attr);
    }
    pthread_condattr_destroy(&attr);
    if (e == 0)
        e = pthread_create(&r.thread, NULL, run, NULL);
    if (e != 0)
        return -e;
    (void)pthread_setname_np(r.thread, "mio-echod dns");
    r.started = true;
    return 0;
}

void resolver_stop(void)
{
    if (!r.started)
        return;
    pthread_mutex_lock(&r.mu);
    r.stop = true;
    pthread_cond_signal(&r.cond);
    pthread_mutex_unlock(&r.mu);
    pthread_join(r.thread, NULL);
    r.started = false;
    for (size_t i = 0; i < r.nnames; i++)
        free(r.names[i].text);
    free(r.names);
    r.names = NULL;
    r.nnames = 0;
}

void resolver_reloaded(void)
{
    pthread_mutex_lock(&r.mu);
    for (size_t i = 0; i < r.nnames; i++)
        free(r.names[i].text);
    r.nnames = 0;
    r.rescan = true;
    pthread_cond_signal(&r.cond);
    pthread_mutex_unlock(&r.mu);
}

size_t resolver_lookup(const char *text, addr_t *out, size_t max)
{
    pthread_mutex_lock(&r.mu);
    const struct name *e = find(text);
    size_t n = e != NULL && e->n <= max ? e->n : 0;
    if (n > 0)
        memcpy(out, e->addrs, n * sizeof(addr_t));
    pthread_mutex_unlock(&r.mu);
    return n;
}
