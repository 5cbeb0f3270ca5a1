/*
 * The configuration loader's checks across settings and against the
 * system: overlapping listen addresses, relay loops, users.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-check.h"
#include "log.h"
#include "process.h"

/* ---- listen addresses ---------------------------------------------------- */

/* A listen address already taken, for the overlap checks. */
struct check_taken {
    const addr_t *addr;
    const char *text;
    const char *listener;
    int line;
    bool udp;
};

int check_take(struct config_loader *ld, const struct config_addr *a, bool udp,
               const char *listener, int line)
{
    if (ld->ntaken == ld->taken_cap) {
        size_t cap = ld->taken_cap == 0 ? 8 : 2 * ld->taken_cap;
        struct check_taken *t = realloc(ld->taken, cap * sizeof(*t));
        if (t == NULL)
            return value_out_of_memory(ld);
        ld->taken = t;
        ld->taken_cap = cap;
    }
    ld->taken[ld->ntaken++] = (struct check_taken){&a->addr, a->text, listener, line,
                                                   udp};
    return 0;
}

int check_overlap(struct config_loader *ld, const addr_t *a, bool udp, const char *text,
                  int line, const char *scope, const char *key)
{
    for (size_t t = 0; t < ld->ntaken; t++) {
        const struct check_taken *o = &ld->taken[t];
        if (o->udp != udp || !addr_overlaps(a, o->addr))
            continue;
        if (addr_equal(a, o->addr) && strcmp(text, o->text) == 0)
            return value_refuse(ld, line, scope, key,
                                "%s is already used by listener \"%s\" (line %d)", text,
                                o->listener, o->line);
        return value_refuse(ld, line, scope, key,
                            "%s overlaps %s of listener \"%s\" (line %d)", text, o->text,
                            o->listener, o->line);
    }
    return 0;
}

int check_v4_mapped(struct config_loader *ld, const addr_t *a, const char *text, int line,
                    const char *scope, const char *key)
{
    if (a->u.sa.sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr))
        return 0;
    char v4[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a->u.in6.sin6_addr.s6_addr[12], v4, sizeof(v4));
    char q[VALUE_QUOTE_BUF];
    return value_refuse(ld, line, scope, key,
                        "%s is a v4-mapped IPv6 address, which the daemon's IPv6-only "
                        "sockets cannot listen on; write it as \"%s:%u\"",
                        value_quote(q, text), v4, (unsigned)ntohs(a->u.in6.sin6_port));
}

/* ---- relay loops --------------------------------------------------------- */

/* The port of an IP address. */
static unsigned port_of(const addr_t *a)
{
    return ntohs(a->u.sa.sa_family == AF_INET ? a->u.in.sin_port : a->u.in6.sin6_port);
}

/*
 * Whether connections to the upstream address `up` reach the listen
 * address l: equal to it, or on the port of a wildcard l with a loopback
 * (or wildcard) IP address.  A listen address on port 0 gets a fresh port,
 * which no upstream names.  Other addresses of this host on the port of a
 * wildcard l reach it too, but the load cannot know them.
 */
static bool reaches(const addr_t *up, const addr_t *l)
{
    addr_t t = addr_connect_target(up);
    if (t.u.sa.sa_family != l->u.sa.sa_family)
        return false;
    if (l->u.sa.sa_family == AF_UNIX)
        return addr_equal(&t, l);
    if (port_of(l) == 0 || port_of(&t) != port_of(l))
        return false;
    return addr_equal(&t, l) || (addr_is_wildcard(l) && addr_is_loopback(&t));
}

/* A step of a relay loop: listener `from` relays through its upstream `up`
 * to listener `to`, whose listen address `at` that upstream reaches. */
struct hop {
    size_t from, up, to, at;
};

/* The step from listener `from` through its upstream `up` (by any address
 * its name resolved to): false when that upstream reaches no listener. */
static bool hop_of(const struct config *cfg, size_t from, size_t up, struct hop *h)
{
    const struct config_addr *u = &cfg->listeners[from].upstreams[up];
    size_t naddrs = u->naddrs > 0 ? u->naddrs : 1;
    for (size_t a = 0; a < naddrs; a++) {
        const addr_t *ua = u->naddrs > 0 ? &u->addrs[a] : &u->addr;
        for (size_t j = 0; j < cfg->nlisteners; j++) {
            const struct listener_config *lc = &cfg->listeners[j];
            if (lc->protocol != cfg->listeners[from].protocol)
                continue; /* a TCP upstream never reaches a UDP socket */
            for (size_t m = 0; m < lc->nlisten; m++) {
                if (reaches(ua, &lc->listen[m].addr)) {
                    *h = (struct hop){.from = from, .up = up, .to = j, .at = m};
                    return true;
                }
            }
        }
    }
    return false;
}

/*
 * Refuses the loop hops[0..n), which goes around from the first listener
 * back to it, in the words of the first step's upstream (of the listener
 * in `list` first in the file, so that the message does not depend on
 * where the search started): "UPSTREAM is the listen address of listener
 * "B" (line N), whose upstreams.[K] ... : connections would loop".
 */
static int refuse_loop(struct config_loader *ld, const config_setting_t *list,
                       const struct config *cfg, const struct hop *hops, size_t n)
{
    size_t first = 0;
    for (size_t i = 1; i < n; i++)
        if (hops[i].from < hops[first].from)
            first = i;
    char msg[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used < sizeof(msg); i++) {
        const struct hop *h = &hops[(first + i) % n];
        const char *up = cfg->listeners[h->from].upstreams[h->up].text;
        const struct config_addr *at = &cfg->listeners[h->to].listen[h->at];
        if (i > 0)
            used += (size_t)snprintf(msg + used, sizeof(msg) - used,
                                     ", whose upstreams.[%zu] ", h->up);
        if (used >= sizeof(msg))
            break;
        int w;
        if (strcmp(up, at->text) == 0)
            w = snprintf(msg + used, sizeof(msg) - used, "%s is the listen address", up);
        else
            w = snprintf(msg + used, sizeof(msg) - used,
                         "%s reaches %s, the listen address", up, at->text);
        used += (size_t)w;
        if (used < sizeof(msg))
            used += (size_t)snprintf(msg + used, sizeof(msg) - used,
                                     " of listener \"%s\" (line %d)",
                                     cfg->listeners[h->to].name, at->line);
    }
    const struct hop *h = &hops[first];
    const config_setting_t *ups =
        config_setting_get_member(config_setting_get_elem(list, (unsigned)h->from),
                                  "upstreams");
    char scope[16 + CONFIG_NAME_MAX];
    snprintf(scope, sizeof(scope), "listeners.%s", cfg->listeners[h->from].name);
    char key[48];
    snprintf(key, sizeof(key), "upstreams.[%zu]", h->up);
    return value_refuse(ld, value_line(config_setting_get_elem(ups, (unsigned)h->up)),
                        scope, key, "%s: connections would loop", msg);
}

/* The listeners and their upstreams make a graph, searched depth first
 * without recursion; a step into an echo listener ends a chain, which is
 * fine. */
int check_loops(struct config_loader *ld, const config_setting_t *list,
                const struct config *cfg)
{
    size_t n = cfg->nlisteners;
    unsigned char *state = calloc(n, 1);       /* 0 not seen, 1 on the path, 2 done */
    size_t *next = calloc(n, sizeof(*next));   /* its next upstream to follow */
    size_t *depth = calloc(n, sizeof(*depth)); /* where it is on the path */
    size_t *on_path = calloc(n, sizeof(*on_path));
    struct hop *path = calloc(n, sizeof(*path)); /* path[d]: from on_path[d] */
    int rc = 0;
    if (state == NULL || next == NULL || depth == NULL || on_path == NULL ||
        path == NULL) {
        rc = value_out_of_memory(ld);
        goto out;
    }
    for (size_t r = 0; r < n && rc == 0; r++) {
        if (state[r] != 0)
            continue;
        state[r] = 1;
        on_path[0] = r;
        size_t d = 0;
        for (;;) {
            size_t v = on_path[d];
            if (next[v] == cfg->listeners[v].nupstreams) {
                state[v] = 2;
                if (d == 0)
                    break;
                d--;
                continue;
            }
            struct hop h;
            if (!hop_of(cfg, v, next[v]++, &h) || state[h.to] == 2)
                continue;
            path[d] = h;
            if (state[h.to] == 1) {
                rc = refuse_loop(ld, list, cfg, &path[depth[h.to]], d + 1 - depth[h.to]);
                break;
            }
            state[h.to] = 1;
            depth[h.to] = ++d;
            on_path[d] = h.to;
        }
    }
out:
    free(state);
    free(next);
    free(depth);
    free(on_path);
    free(path);
    return rc;
}

/* ---- users --------------------------------------------------------------- */

int check_user(struct config_loader *ld, const config_setting_t *root, const char *user)
{
    uid_t uid;
    gid_t gid;
    int found = process_user_lookup(user, &uid, &gid);
    if (found >= 0) /* "" too: stay who we are */
        return 0;
    int line = value_line(config_setting_get_member(root, "user"));
    char q[VALUE_QUOTE_BUF];
    if (found == -ENOENT)
        return value_refuse(ld, line, "", "user", "no such user %s",
                            value_quote(q, user));
    return value_refuse(ld, line, "", "user", "cannot look up %s: %s",
                        value_quote(q, user), log_strerror(-found));
}
