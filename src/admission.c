/* Admission: ACLs and limits, and the ticket of what a connection holds. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <stdio.h>
#include <string.h>

#include "admission.h"
#include "daemon.h"
#include "generation.h"

const char *const refusal_names[REFUSED_N] = {
    [REFUSED_ACL] = "acl",
    [REFUSED_MAX_CONNECTIONS] = "max_connections",
    [REFUSED_LISTENER_MAX] = "listener_max_connections",
    [REFUSED_PER_SOURCE] = "max_per_source",
    [REFUSED_PROXY_HEADER] = "bad_proxy_header",
    [REFUSED_NO_FD] = "out_of_fds",
};

const char *admission_refusal_text(enum refusal why)
{
    switch (why) {
    case REFUSED_ACL:
        return "denied by allow/deny";
    case REFUSED_MAX_CONNECTIONS:
        return "max_connections reached";
    case REFUSED_LISTENER_MAX:
        return "listener max_connections reached";
    case REFUSED_PER_SOURCE:
        return "max_per_source reached";
    case REFUSED_PROXY_HEADER:
        return "bad PROXY header";
    case REFUSED_NO_FD:
    case REFUSED_N:
        break;
    }
    return "out of file descriptors";
}

/* Whether allow/deny let src in (cidr_allows(): deny wins, an empty allow
 * allows everyone, Unix-socket clients pass). */
static bool acl_allows(const struct listener_config *cfg, const addr_t *src)
{
    return cidr_allows(cfg->allow, cfg->nallow, cfg->deny, cfg->ndeny, src);
}

/* Counts src against max_per_source into *t; false when it is reached (a
 * source without an IP address is not counted). */
static bool count_source(struct ticket *t, struct listener *l, const addr_t *src)
{
    t->srclen = 0;
    if (l->cfg->max_per_source == 0)
        return true;
    uint8_t key[16];
    size_t len = addr_source_key(src, key);
    if (len == 0)
        return true;
    if (!persource_acquire(&l->st->persource, key, len, l->cfg->max_per_source))
        return false;
    memcpy(t->srckey, key, len);
    t->srclen = (uint8_t)len;
    return true;
}

/* Gives back the max_per_source count *t holds. */
static void uncount_source(struct ticket *t, struct listener_state *st)
{
    if (t->srclen > 0)
        persource_release(&st->persource, t->srckey, t->srclen);
    t->srclen = 0;
}

enum refusal admission_take(struct ticket *t, struct daemon *d, struct listener *l,
                            const addr_t *peer)
{
    *t = (struct ticket){0};
    if (!acl_allows(l->cfg, peer))
        return REFUSED_ACL;
    unsigned max = l->gen->cfg->max_connections;
    if (atomic_fetch_add(&d->active, 1) >= max && max != 0) {
        atomic_fetch_sub(&d->active, 1);
        return REFUSED_MAX_CONNECTIONS;
    }
    max = l->cfg->max_connections;
    if (atomic_fetch_add(&l->st->active, 1) >= max && max != 0) {
        atomic_fetch_sub(&l->st->active, 1);
        atomic_fetch_sub(&d->active, 1);
        return REFUSED_LISTENER_MAX;
    }
    t->held = true;
    if (!count_source(t, l, peer)) {
        admission_release(t, d, l->st);
        return REFUSED_PER_SOURCE;
    }
    return REFUSED_N;
}

enum refusal admission_declare(struct ticket *t, struct listener *l, const addr_t *src)
{
    if (!acl_allows(l->cfg, src))
        return REFUSED_ACL;
    uncount_source(t, l->st);
    return count_source(t, l, src) ? REFUSED_N : REFUSED_PER_SOURCE;
}

void admission_release(struct ticket *t, struct daemon *d, struct listener_state *st)
{
    if (!t->held)
        return;
    t->held = false;
    uncount_source(t, st);
    atomic_fetch_sub(&st->active, 1);
    atomic_fetch_sub(&d->active, 1);
}

void admission_refused(struct ratelimit *rl, int64_t now_ms, struct listener *l,
                       const addr_t *src, enum refusal why, const char *detail)
{
    atomic_fetch_add(&l->st->refused[why], 1);
    char reason[160];
    snprintf(reason, sizeof(reason), "%s%s%s", admission_refusal_text(why),
             detail ? (why == REFUSED_PROXY_HEADER ? ": " : " ") : "",
             detail ? detail : "");
    char text[ADDR_STRLEN];
    addr_format(src, text, sizeof(text));
    log_limited(LOG_INFO, rl, now_ms, "more refused, not logged",
                "listener %s: refused %s: %s", l->cfg->name, text, reason);
}
