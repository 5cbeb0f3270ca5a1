/*
 * Listeners and their generations: binding at start, and at each reload
 * taking over the sockets of addresses that stay, so that nothing is
 * rebound and no queued client is lost.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accept.h"
#include "dgram.h"
#include "endpoint.h"
#include "fdstore.h"
#include "generation.h"
#include "log.h"
#include "mio.h"
#include "resolver.h"
#include "upstream.h"

/*
 * Binds a Unix socket at ls's path, replacing only a stale socket: one that
 * nobody listens on (a connect to it is refused).  Anything else in the way
 * (a file, a directory, a symbolic link, a FIFO) is refused, never removed:
 * `what` then names it.  Remembers the file made, for remove_unix().
 */
static int listen_unix(struct listen_sock *ls, const char **what)
{
    const char *path = ls->addr.u.un.sun_path;
    *what = addr_unix_path_problem(path);
    if (*what != NULL)
        return -EEXIST;
    int fd = mio_unix_listen(path, 0);
    if (fd == -EADDRINUSE) {
        int probe = mio_unix_connect(path);
        if (probe >= 0)
            close(probe);
        /* A non-blocking connect to a live socket succeeds or is pending;
         * to a dead one it is refused at once. */
        if (probe != -ECONNREFUSED)
            return -EADDRINUSE;
        *what = addr_unix_path_problem(path); /* changed meanwhile? */
        if (*what != NULL)
            return -EEXIST;
        unlink(path);
        fd = mio_unix_listen(path, 0);
    }
    struct stat st;
    if (fd >= 0 && lstat(path, &st) == 0) {
        ls->unix_dev = st.st_dev;
        ls->unix_ino = st.st_ino;
    }
    return fd;
}

/* Removes the file of a Unix socket the daemon made, when it is still that
 * socket (not a file put in its place since); says so when it cannot (the
 * directory is not writable by the user it runs as): the next start
 * replaces the stale file. */
static void remove_unix(const struct listen_sock *ls)
{
    if (ls->addr.u.sa.sa_family != AF_UNIX || ls->unix_ino == 0)
        return;
    const char *path = ls->addr.u.un.sun_path;
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno != ENOENT) /* not when it is gone already */
            log_warn("cannot remove the socket file of %s: %s", ls->name,
                     log_strerror(errno));
        return;
    }
    if (!S_ISSOCK(st.st_mode) || st.st_dev != ls->unix_dev || st.st_ino != ls->unix_ino) {
        log_warn("not removing %s: it is no longer the socket the daemon made", ls->name);
        return;
    }
    if (unlink(path) < 0 && errno != ENOENT)
        log_warn("cannot remove the socket file of %s: %s", ls->name,
                 log_strerror(errno));
}

/* Sets or clears SO_REUSEPORT on a bound socket: what a later bind checks. */
static void set_reuseport(int fd, bool on)
{
    int v = on;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, sizeof(v));
}

/* Whether a socket has SO_REUSEPORT: one taken back from the fd store keeps
 * the option it was bound with. */
static bool has_reuseport(int fd)
{
    int v = 0;
    socklen_t len = sizeof(v);
    return getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, &len) == 0 && v != 0;
}

/*
 * Lets a new socket on address a be bound beside the sockets of `old` that
 * overlap it without being equal (a reload that widens 127.0.0.1:P to *:P,
 * or narrows it back): both get SO_REUSEPORT, the old ones until they
 * close (or the reload fails), the new one for good, since the kernel
 * keeps the port's reuse state for as long as a socket holds it.  Not with
 * a socket systemd passed, which stays open after the reload.  True when
 * a was shared.  Only sockets of the same protocol (udp or not) matter.
 */
static bool share_port(struct generation *old, const addr_t *a, bool udp)
{
    bool shared = false;
    for (size_t i = 0; old != NULL && i < old->nlisteners; i++)
        for (size_t k = 0; k < old->listeners[i].nsocks; k++) {
            struct listen_sock *o = &old->listeners[i].socks[k];
            if (o->fd < 0 || o->moved || o->passed || o->udp != udp ||
                !addr_overlaps(&o->addr, a) || addr_equal(&o->addr, a))
                continue;
            set_reuseport(o->fd, true);
            o->shares_port = true;
            shared = true;
        }
    return shared;
}

/* A socket systemd passed for this listener and address (a datagram one
 * when udp), or NULL. */
static struct passed_sock *find_passed(struct daemon *d, const char *name,
                                       const addr_t *a, bool udp)
{
    for (size_t i = 0; i < d->npassed; i++) {
        struct passed_sock *p = &d->passed[i];
        if (p->fd >= 0 && !p->taken && p->udp == udp && strcmp(p->name, name) == 0 &&
            addr_equal(&p->addr, a))
            return p;
    }
    return NULL;
}

/* Remembers the file of a Unix socket stored by the daemon's last run, so
 * that it is removed like one made now: the file at the socket's path. */
static void remember_unix(struct listen_sock *ls)
{
    struct stat st;
    if (ls->addr.u.sa.sa_family == AF_UNIX && lstat(ls->addr.u.un.sun_path, &st) == 0 &&
        S_ISSOCK(st.st_mode)) {
        ls->unix_dev = st.st_dev;
        ls->unix_ino = st.st_ino;
    }
}

/* An equal address of a listener of `old` whose socket (of the same
 * protocol) can be taken over.  Port 0 asks the kernel for a port: the
 * socket that listener `name` got for the same written address is kept,
 * so that a reload does not move it to another port. */
static struct listen_sock *find_old(struct generation *old, const char *name,
                                    const addr_t *a, bool udp)
{
    for (size_t i = 0; old != NULL && i < old->nlisteners; i++)
        for (size_t k = 0; k < old->listeners[i].nsocks; k++) {
            const struct listener *l = &old->listeners[i];
            struct listen_sock *ls = &l->socks[k];
            bool same = addr_equal(&ls->addr, a) ||
                        (a->u.sa.sa_family != AF_UNIX && addr_port(a) == 0 &&
                         strcmp(l->cfg->name, name) == 0 &&
                         addr_equal(&l->cfg->listen[k].addr, a));
            if (ls->fd >= 0 && !ls->moved && ls->udp == udp && same)
                return ls;
        }
    return NULL;
}

/* Gets a socket for ls: the one `old` has for the address, one systemd
 * passed, or a new one; the bound address (real port) goes back into ls.
 * 0, or -errno with *e saying what. */
static int open_sock(struct daemon *d, struct generation *old, struct listen_sock *ls,
                     const struct listener_config *cfg, struct generation_error *e)
{
    const addr_t *a = &ls->addr;
    struct listen_sock *prev = find_old(old, cfg->name, a, ls->udp);
    struct passed_sock *p = prev ? NULL : find_passed(d, cfg->name, a, ls->udp);
    const char *what = NULL;
    int fd;
    if (prev != NULL) { /* reuse_port changes: apply_reuse_port() */
        fd = prev->fd;
        ls->passed = prev->passed;
        ls->reuse_port = prev->reuse_port;
        ls->unix_dev = prev->unix_dev;
        ls->unix_ino = prev->unix_ino;
        prev->moved = true; /* undone by close_new() if the reload fails */
    } else if (p != NULL && p->stored) {
        /* The daemon's own from its last run, kept in the fd store. */
        fd = p->fd;
        p->fd = -1;
        ls->restored = true;
        ls->reuse_port = has_reuseport(fd);
        remember_unix(ls);
    } else if (p != NULL) {
        p->taken = true;
        ls->passed = true;
        fd = p->fd;
    } else if (a->u.sa.sa_family == AF_UNIX) {
        fd = listen_unix(ls, &what);
    } else {
        unsigned flags = a->u.sa.sa_family == AF_INET6 ? MIO_LISTEN_V6ONLY : 0;
        if (share_port(old, a, ls->udp) || cfg->reuse_port)
            flags |= MIO_LISTEN_REUSEPORT;
        ls->reuse_port = cfg->reuse_port;
        fd = ls->udp ? dgram_bind(a, flags) : mio_tcp_listen(&a->u.sa, a->len, 0, flags);
    }
    if (fd >= 0 && ls->udp && prev == NULL) {
        int err = dgram_prepare(fd, a->u.sa.sa_family);
        if (err < 0) { /* a passed socket stays systemd's */
            if (p == NULL)
                close(fd);
            fd = err;
        }
    }
    if (fd < 0) {
        e->err = fd;
        e->listener = cfg->name;
        e->addr = *a;
        e->in_the_way = what;
        e->reuse_port = cfg->reuse_port;
        return fd;
    }
    ls->fd = fd;
    ls->reused = prev != NULL;
    if (!ls->udp)
        endpoint_urgent_inline(fd); /* for the clients it accepts */
    if (a->u.sa.sa_family != AF_UNIX) {
        addr_t bound;
        bound.len = sizeof(bound.u);
        if (mio_socket_local_addr(fd, &bound.u.ss, &bound.len) == 0)
            ls->addr = bound;
    }
    addr_format(&ls->addr, ls->name, sizeof(ls->name));
    return 0;
}

/*
 * Applies a reload's change of reuse_port to the sockets g took over, once
 * g is complete (a failed reload thus leaves the old sockets as they were),
 * and at start to the sockets taken back from the fd store (or from the
 * process that handed over on SIGUSR2), which a restart does not bind anew.
 * Turned on, SO_REUSEPORT is set on the kept socket: Linux checks it when
 * another socket binds the port later, and then joins the two.  Turned off,
 * the kept socket stays shared: the kernel keeps the port's reuse state
 * for as long as a socket holds it, so clearing the option would not close
 * the port to others reliably; the change takes effect when the listener's
 * socket is bound anew (a stop and start that empties the fd store, or a
 * reload that removes the address and a later one that brings it back).  A socket systemd
 * passed keeps the options its unit gave it (ReusePort=).
 */
static void apply_reuse_port(struct generation *g)
{
    for (size_t i = 0; i < g->nlisteners; i++)
        for (size_t k = 0; k < g->listeners[i].nsocks; k++) {
            const struct listener *l = &g->listeners[i];
            struct listen_sock *ls = &l->socks[k];
            if (!(ls->reused || ls->restored) || ls->passed ||
                ls->reuse_port == l->cfg->reuse_port)
                continue;
            if (l->cfg->reuse_port) {
                set_reuseport(ls->fd, true);
                ls->reuse_port = true;
                log_info("listener %s: %s now shares its port (reuse_port)", l->cfg->name,
                         ls->name);
            } else
                log_warn("listener %s: reuse_port = false takes effect when %s is bound "
                         "anew (a stop and start): the socket kept stays shared",
                         l->cfg->name, ls->name);
        }
}

/* Logs the sockets a generation opened: not those it took over. */
static void log_new_sockets(const struct generation *g)
{
    for (size_t i = 0; i < g->nlisteners; i++)
        for (size_t k = 0; k < g->listeners[i].nsocks; k++) {
            const struct listener *l = &g->listeners[i];
            const struct listen_sock *ls = &l->socks[k];
            if (!ls->reused)
                log_info("listener %s: listening on %s (%s%s%s%s)", l->cfg->name,
                         ls->name, ls->udp ? "udp " : "",
                         l->cfg->mode == MODE_ECHO ? "echo" : "proxy",
                         ls->passed ? ", socket from systemd"
                         : ls->restored && service_notifies()
                             ? ", socket from the fd store"
                         : ls->restored ? ", socket handed over by the last process"
                                        : "",
                         ls->reuse_port ? ", port shared" : "");
        }
}

/*
 * At start, a socket passed for nothing is a unit and a configuration that
 * disagree: says which, before anything is bound (a listener would else
 * fail first on the address that socket holds).  0, or -ENOENT with that
 * socket in *e.
 */
static int passed_all_match(struct daemon *d, const struct config *cfg,
                            struct generation_error *e)
{
    for (size_t i = 0; i < d->npassed; i++) {
        const struct passed_sock *p = &d->passed[i];
        bool found = p->stored; /* the daemon's own: closed if unwanted */
        for (size_t l = 0; l < cfg->nlisteners && !found; l++) {
            const struct listener_config *lc = &cfg->listeners[l];
            for (size_t k = 0; k < lc->nlisten && !found; k++)
                found = strcmp(lc->name, p->name) == 0 &&
                        (lc->protocol == PROTOCOL_UDP) == p->udp &&
                        addr_equal(&lc->listen[k].addr, &p->addr);
        }
        if (!found) {
            e->err = -ENOENT;
            e->passed = p->name;
            e->addr = p->addr;
            return e->err;
        }
    }
    return 0;
}

/* The state of the listener called `name` in `old`, or a new one. */
static struct listener_state *state_for(struct generation *old, const char *name)
{
    for (size_t i = 0; old != NULL && i < old->nlisteners; i++)
        if (strcmp(old->listeners[i].st->name, name) == 0) {
            atomic_fetch_add(&old->listeners[i].st->refs, 1);
            return old->listeners[i].st;
        }
    struct listener_state *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    if (persource_init(&st->persource) < 0) {
        free(st);
        return NULL;
    }
    atomic_init(&st->refs, 1);
    snprintf(st->name, sizeof(st->name), "%s", name);
    histogram_init(&st->connect_time, &histogram_connect_bounds);
    histogram_init(&st->duration, &histogram_duration_bounds);
    return st;
}

/* The addresses of one upstream as written: those the configuration
 * resolved, or, in a generation opened for new addresses, those the
 * resolver has for the name (resolver.h). */
struct resolved {
    const addr_t *addrs;
    size_t n;
    addr_t own[ADDR_RESOLVE_MAX];
};

/* Fills *r with ca's addresses for listener cfg of g. */
static void addresses_of(const struct generation *g, const struct listener_config *cfg,
                         const struct config_addr *ca, struct resolved *r)
{
    r->addrs = ca->addrs;
    r->n = ca->naddrs;
    if (g->resolved && cfg->resolve_ms > 0 && addr_text_is_name(ca->text)) {
        size_t n = resolver_lookup(ca->text, r->own, ADDR_RESOLVE_MAX);
        if (n > 0) {
            r->addrs = r->own;
            r->n = n;
        }
    }
}

/* Sets up upstream `up` of listener l for the address `first` of ca's
 * addresses r: that one, then the others in order from there round; each
 * address's state found again in g or old; false when out of memory. */
static bool open_upstream(struct generation *g, struct generation *old,
                          const struct listener *l, struct upstream *up,
                          const struct config_addr *ca, const struct resolved *r,
                          size_t first)
{
    bool udp = l->cfg->protocol == PROTOCOL_UDP;
    up->text = ca->text;
    up->weight = ca->weight > 0 ? ca->weight : 1;
    up->backup = ca->backup;
    up->slots = ca->naddrs;
    up->addrs = calloc(r->n ? r->n : 1, sizeof(struct upstream_addr *));
    up->loop_at = calloc(r->n ? r->n : 1, sizeof(struct listen_sock *));
    if (up->addrs == NULL || up->loop_at == NULL)
        return false;
    for (size_t k = 0; k < r->n; k++) {
        const addr_t *a = &r->addrs[(first + k) % r->n];
        up->addrs[k] = upstream_addr_get(g, old, l->cfg->name, a, udp);
        if (up->addrs[k] == NULL)
            return false;
        up->naddrs++;
    }
    return true;
}

/* The pool of the listener `name` in old for the route server_name (NULL:
 * its own upstreams), or NULL. */
static const struct upstream_pool *old_pool(const struct generation *old,
                                            const char *name, const char *server_name)
{
    for (size_t i = 0; old != NULL && i < old->nlisteners; i++) {
        const struct listener *l = &old->listeners[i];
        if (strcmp(l->cfg->name, name) != 0)
            continue;
        for (size_t r = 0; r < l->npools; r++) {
            const char *sn = l->pools[r].server_name;
            if ((sn == NULL && server_name == NULL) ||
                (sn != NULL && server_name != NULL && strcmp(sn, server_name) == 0))
                return &l->pools[r];
        }
    }
    return NULL;
}

/* Sets up l's upstreams from cfg, its own and then each route's, and the
 * pools that choose among them.  The counts grow as entries are filled,
 * so that free_generation() and the searches see only complete ones. */
static bool open_upstreams(struct generation *g, struct generation *old,
                           struct listener *l, const struct listener_config *cfg)
{
    size_t total = 0, slots = 0;
    for (size_t r = 0; r <= cfg->nsni_routes; r++) {
        const struct config_addr *list = r == 0 ? cfg->upstreams
                                                : cfg->sni_routes[r - 1].upstreams;
        size_t n = r == 0 ? cfg->nupstreams : cfg->sni_routes[r - 1].nupstreams;
        for (size_t i = 0; i < n; i++)
            total += g->resolved && cfg->resolve_ms > 0 && addr_text_is_name(list[i].text)
                         ? ADDR_RESOLVE_MAX
                         : list[i].naddrs;
    }
    l->upstreams = calloc(total ? total : 1, sizeof(*l->upstreams));
    l->pools = calloc(1 + cfg->nsni_routes, sizeof(*l->pools));
    if (l->upstreams == NULL || l->pools == NULL)
        return false;
    for (size_t r = 0; r <= cfg->nsni_routes; r++) {
        const struct config_addr *list = r == 0 ? cfg->upstreams
                                                : cfg->sni_routes[r - 1].upstreams;
        size_t n = r == 0 ? cfg->nupstreams : cfg->sni_routes[r - 1].nupstreams;
        struct upstream_pool *p = &l->pools[r];
        p->ups = &l->upstreams[l->nupstreams];
        p->server_name = r == 0 ? NULL : cfg->sni_routes[r - 1].server_name;
        atomic_init(&p->own_rr, 0);
        p->rr = r == 0 ? &l->st->rr : &p->own_rr;
        l->npools++;
        for (size_t i = 0; i < n; i++) {
            struct resolved res;
            addresses_of(g, cfg, &list[i], &res);
            for (size_t k = 0; k < res.n; k++) {
                struct upstream *up = &l->upstreams[l->nupstreams];
                up->slot0 = slots;
                up->turn = k;
                l->nupstreams++; /* free_generation() frees what was allocated */
                p->n++;
                if (!open_upstream(g, old, l, up, &list[i], &res, k))
                    return false;
            }
            slots += list[i].naddrs;
        }
        if (!upstream_pool_init(p, old_pool(old, cfg->name, p->server_name)))
            return false;
    }
    return true;
}

/* Sets up one listener's runtime state and gets its sockets; 0, or -errno
 * with *e saying what. */
static int open_listener(struct daemon *d, struct generation *g, struct generation *old,
                         struct listener *l, const struct listener_config *cfg,
                         struct generation_error *e)
{
    l->cfg = cfg;
    l->gen = g;
    l->st = state_for(old, cfg->name);
    l->socks = calloc(cfg->nlisten, sizeof(*l->socks));
    if (l->st == NULL || l->socks == NULL || !open_upstreams(g, old, l, cfg))
        return e->err = -ENOMEM;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        struct listen_sock *ls = &l->socks[i];
        ls->h.on_event = accept_ready;
        ls->fd = -1;
        ls->addr = cfg->listen[i].addr;
        ls->udp = cfg->protocol == PROTOCOL_UDP;
        ls->listener = l;
        l->nsocks++;
        int err = open_sock(d, old, ls, cfg, e);
        if (err < 0)
            return err;
    }
    return 0;
}

/* Frees a generation's memory; its sockets were closed or handed on. */
/* The generations alive, newest first, for generation_each(). */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static struct generation *newest;

/* Puts g, just opened, first in the list of those alive. */
static void link_live(struct generation *g)
{
    pthread_mutex_lock(&live_mu);
    g->older = newest;
    if (newest != NULL)
        newest->newer = g;
    newest = g;
    g->live = true;
    pthread_mutex_unlock(&live_mu);
}

/* Takes g, about to be freed, out of the list of those alive. */
static void unlink_live(struct generation *g)
{
    if (!g->live)
        return;
    pthread_mutex_lock(&live_mu);
    if (g->newer != NULL)
        g->newer->older = g->older;
    else
        newest = g->older;
    if (g->older != NULL)
        g->older->newer = g->newer;
    pthread_mutex_unlock(&live_mu);
}

void generation_each(void (*each)(const struct generation *g, void *arg), void *arg)
{
    pthread_mutex_lock(&live_mu);
    for (const struct generation *g = newest; g != NULL; g = g->older)
        each(g, arg);
    pthread_mutex_unlock(&live_mu);
}

static void free_generation(struct generation *g)
{
    unlink_live(g);
    for (size_t i = 0; i < g->nlisteners; i++) {
        struct listener *l = &g->listeners[i];
        if (l->st != NULL && atomic_fetch_sub(&l->st->refs, 1) == 1) {
            persource_destroy(&l->st->persource);
            free(l->st);
        }
        free(l->socks);
        for (size_t k = 0; k < l->nupstreams; k++) {
            for (size_t j = 0; j < l->upstreams[k].naddrs; j++)
                upstream_addr_put(l->upstreams[k].addrs[j]);
            free(l->upstreams[k].addrs);
            free(l->upstreams[k].loop_at);
        }
        free(l->upstreams);
        for (size_t k = 0; k < l->npools; k++)
            upstream_pool_free(&l->pools[k]);
        free(l->pools);
    }
    free(g->listeners);
    config_free(g->cfg);
    free(g);
}

/* Undoes a generation that could not be completed: closes the sockets it
 * bound, gives back those it took over, and frees it (not its config). */
static void close_new(struct daemon *d, struct generation *g)
{
    /* nlisteners counts the entries of a listeners array that was
     * allocated: 0 when calloc() failed, which the analyzer misses. */
    for (size_t i = 0; i < g->nlisteners; i++)
        /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): see above */
        for (size_t k = 0; k < g->listeners[i].nsocks; k++) {
            struct listen_sock *ls = &g->listeners[i].socks[k];
            if (ls->fd < 0 || ls->reused)
                continue;
            if (ls->passed) { /* systemd's sockets stay for another try */
                for (size_t p = 0; p < d->npassed; p++)
                    if (d->passed[p].fd == ls->fd)
                        d->passed[p].taken = false;
                continue;
            }
            if (!fdstore_holds(d, ls->fd))
                remove_unix(ls);
            close(ls->fd);
        }
    g->cfg = NULL;
    free_generation(g);
}

struct generation *generation_open(struct daemon *d, struct config *cfg,
                                   struct generation *old, bool resolved,
                                   struct generation_error *e)
{
    *e = (struct generation_error){0};
    if (old == NULL && passed_all_match(d, cfg, e) < 0)
        return NULL;
    struct generation *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        e->err = -ENOMEM;
        return NULL;
    }
    atomic_init(&g->refs, 1);
    g->cfg = cfg;
    g->resolved = resolved;
    g->listeners = calloc(cfg->nlisteners, sizeof(*g->listeners));
    int err = g->listeners != NULL ? 0 : (e->err = -ENOMEM);
    for (size_t i = 0; err == 0 && i < cfg->nlisteners; i++) {
        g->nlisteners++;
        err = open_listener(d, g, old, &g->listeners[i], &cfg->listeners[i], e);
    }
    if (err == 0) /* once every address is bound */
        err = e->err = upstream_find_loops(g);
    if (err == 0) {
        apply_reuse_port(g);
        log_new_sockets(g);
        link_live(g);
        return g;
    }
    if (old != NULL) /* what was taken over stays with old, unshared */
        for (size_t i = 0; i < old->nlisteners; i++)
            for (size_t k = 0; k < old->listeners[i].nsocks; k++) {
                struct listen_sock *o = &old->listeners[i].socks[k];
                o->moved = false;
                if (o->shares_port && !o->reuse_port) /* a reuse_port one keeps it */
                    set_reuseport(o->fd, false);
                o->shares_port = false;
            }
    close_new(d, g);
    return NULL;
}

void generation_error_text(const struct generation_error *e, char *buf, size_t len)
{
    char text[ADDR_STRLEN];
    addr_format(&e->addr, text, sizeof(text));
    if (e->passed != NULL)
        snprintf(buf, len,
                 "socket passed by systemd as \"%s\" (%s) matches no listen "
                 "address of a listener named \"%s\"",
                 e->passed, text, e->passed);
    else if (e->listener != NULL && e->in_the_way != NULL)
        snprintf(buf, len,
                 "listener %s: cannot listen on %s: %s is %s, not a socket; "
                 "only a stale socket is replaced",
                 e->listener, text, e->addr.u.un.sun_path, e->in_the_way);
    else if (e->listener != NULL && e->err == -EADDRINUSE &&
             e->addr.u.sa.sa_family != AF_UNIX)
        snprintf(buf, len,
                 "listener %s: cannot listen on %s: %s (another socket holds it%s)",
                 e->listener, text, log_strerror(-e->err),
                 e->reuse_port
                     ? ", without reuse_port or as another user"
                     : "; instances that all set reuse_port = true share a port");
    else if (e->listener != NULL)
        snprintf(buf, len, "listener %s: cannot listen on %s: %s", e->listener, text,
                 log_strerror(-e->err));
    else
        snprintf(buf, len, "cannot open the listeners: %s", log_strerror(-e->err));
}

void generation_give_sockets(struct generation *g, uid_t uid, gid_t gid)
{
    for (size_t i = 0; i < g->nlisteners; i++)
        for (size_t k = 0; k < g->listeners[i].nsocks; k++) {
            struct listen_sock *ls = &g->listeners[i].socks[k];
            if (ls->fd < 0 || ls->passed || ls->addr.u.sa.sa_family != AF_UNIX)
                continue;
            if (chown(ls->addr.u.un.sun_path, uid, gid) < 0)
                log_warn("cannot give the socket file of %s to uid %u: %s", ls->name,
                         (unsigned)uid, log_strerror(errno));
        }
}

/* Closes one socket a generation owns, removing its Unix socket file.  A
 * socket systemd passed stays open: systemd keeps the address, so a later
 * reload that brings the listener back takes it again. */
static void close_sock(struct daemon *d, struct listen_sock *ls)
{
    if (ls->fd < 0 || ls->moved)
        return;
    if (ls->passed) {
        for (size_t p = 0; p < d->npassed; p++)
            if (d->passed[p].fd == ls->fd)
                d->passed[p].taken = false;
        ls->fd = -1;
        return;
    }
    /* Else the next process serves it. */
    if (!fdstore_holds(d, ls->fd) && !atomic_load(&d->handed_over))
        remove_unix(ls);
    close(ls->fd);
    ls->fd = -1;
}

void generation_close_sockets(struct daemon *d, struct generation *g, bool udp)
{
    for (size_t i = 0; i < g->nlisteners; i++)
        for (size_t k = 0; k < g->listeners[i].nsocks; k++)
            if (udp || !g->listeners[i].socks[k].udp)
                close_sock(d, &g->listeners[i].socks[k]);
}

void generation_ref(struct generation *g)
{
    atomic_fetch_add(&g->refs, 1);
}

struct generation *generation_current(struct daemon *d)
{
    pthread_mutex_lock(&d->gen_mu);
    struct generation *g = atomic_load(&d->gen);
    generation_ref(g);
    pthread_mutex_unlock(&d->gen_mu);
    return g;
}

void generation_publish(struct daemon *d, struct generation *g)
{
    pthread_mutex_lock(&d->gen_mu);
    atomic_store(&d->gen, g);
    pthread_mutex_unlock(&d->gen_mu);
}

void generation_unref(struct generation *g)
{
    if (g != NULL && atomic_fetch_sub(&g->refs, 1) == 1)
        free_generation(g);
}
