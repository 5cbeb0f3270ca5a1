/* Listening sockets, accepting, and admission (ACLs and limits). */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "mio.h"
#include "worker.h"

/* Binds a Unix socket, replacing a stale file that nobody listens on. */
static int listen_unix(const char *path)
{
    int fd = mio_unix_listen(path, 0);
    if (fd != -EADDRINUSE)
        return fd;
    int probe = mio_unix_connect(path);
    if (probe >= 0) {
        close(probe);
        /* A non-blocking connect to a live socket succeeds or is pending;
         * to a dead one it is refused at once. */
        return -EADDRINUSE;
    }
    if (probe != -ECONNREFUSED)
        return -EADDRINUSE;
    unlink(path);
    return mio_unix_listen(path, 0);
}

/* A socket systemd passed for this listener and address, or NULL. */
static struct passed_sock *find_passed(struct daemon *d, const char *name,
                                       const addr_t *a)
{
    for (size_t i = 0; i < d->npassed; i++) {
        struct passed_sock *p = &d->passed[i];
        if (!p->taken && strcmp(p->name, name) == 0 && addr_equal(&p->addr, a))
            return p;
    }
    return NULL;
}

/* Binds one address, or takes the socket systemd passed for it; the bound
 * address (real port) goes back into ls. */
static bool open_sock(struct daemon *d, struct listen_sock *ls,
                      const struct listener_config *cfg)
{
    const addr_t *a = &ls->addr;
    struct passed_sock *p = find_passed(d, cfg->name, a);
    int fd;
    if (p != NULL) {
        p->taken = true;
        ls->passed = true;
        fd = p->fd;
    } else if (a->u.sa.sa_family == AF_UNIX)
        fd = listen_unix(a->u.un.sun_path);
    else
        fd = mio_tcp_listen(&a->u.sa, a->len, 0,
                            a->u.sa.sa_family == AF_INET6 ? MIO_LISTEN_V6ONLY : 0);
    if (fd < 0) {
        char text[ADDR_STRLEN];
        addr_format(a, text, sizeof(text));
        log_err("listener %s: cannot listen on %s: %s", cfg->name, text,
                strerror(-fd));
        return false;
    }
    ls->fd = fd;
    if (a->u.sa.sa_family != AF_UNIX) {
        addr_t bound;
        bound.len = sizeof(bound.u);
        if (mio_socket_local_addr(fd, &bound.u.ss, &bound.len) == 0)
            ls->addr = bound;
    }
    addr_format(&ls->addr, ls->name, sizeof(ls->name));
    log_info("listener %s: listening on %s (%s%s)", cfg->name, ls->name,
             cfg->mode == MODE_ECHO ? "echo" : "proxy",
             ls->passed ? ", socket from systemd" : "");
    return true;
}

/* Sets up one listener's runtime state and binds its addresses. */
static bool open_listener(struct daemon *d, struct listener *l,
                          const struct listener_config *cfg)
{
    l->cfg = cfg;
    if (persource_init(&l->persource) < 0)
        return false;
    l->socks = calloc(cfg->nlisten, sizeof(*l->socks));
    l->upstreams = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*l->upstreams));
    if (l->socks == NULL || l->upstreams == NULL)
        return false;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        struct upstream *up = &l->upstreams[i];
        up->addr = cfg->upstreams[i].addr;
        addr_format(&up->addr, up->name, sizeof(up->name));
    }
    l->nupstreams = cfg->nupstreams;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        struct listen_sock *ls = &l->socks[i];
        ls->kind = EP_LISTENER;
        ls->fd = -1;
        ls->addr = cfg->listen[i].addr;
        ls->listener = l;
        l->nsocks++;
        if (!open_sock(d, ls, cfg))
            return false;
    }
    return true;
}

bool listeners_open(struct daemon *d)
{
    d->listeners = calloc(d->cfg->nlisteners, sizeof(*d->listeners));
    if (d->listeners == NULL)
        return false;
    d->nlisteners = d->cfg->nlisteners;
    for (size_t i = 0; i < d->nlisteners; i++)
        if (!open_listener(d, &d->listeners[i], &d->cfg->listeners[i]))
            return false;
    /* A socket passed for nothing is a unit and a configuration that
     * disagree: say which, rather than leave it unserved. */
    bool ok = true;
    for (size_t i = 0; i < d->npassed; i++) {
        struct passed_sock *p = &d->passed[i];
        if (p->taken)
            continue;
        char text[ADDR_STRLEN];
        addr_format(&p->addr, text, sizeof(text));
        log_err("socket passed by systemd as \"%s\" (%s) matches no listen "
                "address of a listener named \"%s\"", p->name, text, p->name);
        ok = false;
    }
    return ok;
}

void listeners_close(struct daemon *d)
{
    for (size_t i = 0; i < d->nlisteners; i++) {
        struct listener *l = &d->listeners[i];
        for (size_t k = 0; k < l->nsocks; k++) {
            struct listen_sock *ls = &l->socks[k];
            if (ls->fd < 0)
                continue;
            close(ls->fd);
            if (ls->addr.u.sa.sa_family == AF_UNIX && !ls->passed)
                unlink(ls->addr.u.un.sun_path);
        }
        free(l->socks);
        free(l->upstreams);
        persource_destroy(&l->persource);
    }
    free(d->listeners);
    d->listeners = NULL;
    d->nlisteners = 0;
}

/* Whether allow/deny let src in.  Deny wins; an empty allow list allows
 * everyone.  Unix-socket clients have no address: file permissions guard
 * them, and the lists do not apply. */
static bool acl_allows(const struct listener_config *cfg, const addr_t *src)
{
    if (src->u.sa.sa_family == AF_UNIX)
        return true;
    for (size_t i = 0; i < cfg->ndeny; i++)
        if (cidr_match(&cfg->deny[i], src))
            return false;
    if (cfg->nallow == 0)
        return true;
    for (size_t i = 0; i < cfg->nallow; i++)
        if (cidr_match(&cfg->allow[i], src))
            return true;
    return false;
}

void listener_refused(struct worker *w, struct listener *l, const addr_t *src,
                      const char *reason)
{
    atomic_fetch_add(&l->refused, 1);
    unsigned dropped;
    if (!ratelimit_allow(&w->rl_refused, w->now_ms, &dropped))
        return;
    char text[ADDR_STRLEN];
    addr_format(src, text, sizeof(text));
    if (dropped > 0)
        log_info("listener %s: refused %s: %s (%u more refused, not logged)",
                 l->cfg->name, text, reason, dropped);
    else
        log_info("listener %s: refused %s: %s", l->cfg->name, text, reason);
}

/* Takes one connection from the daemon's and the listener's limits. */
static const char *take_limits(struct worker *w, struct listener *l)
{
    unsigned max = w->d->cfg->max_connections;
    if (atomic_fetch_add(&w->d->active, 1) >= max && max != 0) {
        atomic_fetch_sub(&w->d->active, 1);
        return "max_connections reached";
    }
    max = l->cfg->max_connections;
    if (atomic_fetch_add(&l->active, 1) >= max && max != 0) {
        atomic_fetch_sub(&l->active, 1);
        atomic_fetch_sub(&w->d->active, 1);
        return "listener max_connections reached";
    }
    return NULL;
}

bool listener_admit_source(struct worker *w, struct listener *l,
                           const addr_t *src, struct conn *c)
{
    if (!acl_allows(l->cfg, src)) {
        listener_refused(w, l, src, "denied by allow/deny (PROXY source)");
        return false;
    }
    if (l->cfg->max_per_source == 0)
        return true;
    uint8_t key[16];
    size_t len = addr_source_key(src, key);
    if (len == 0)
        return true;
    if (!persource_acquire(&l->persource, key, len, l->cfg->max_per_source)) {
        listener_refused(w, l, src, "max_per_source reached");
        return false;
    }
    memcpy(c->srckey, key, len);
    c->srclen = (uint8_t)len;
    return true;
}

/* Decides on one accepted client: refused ones are closed at once. */
static void admit(struct worker *w, struct listen_sock *ls, int fd, const addr_t *peer)
{
    struct listener *l = ls->listener;
    const char *why = NULL;
    if (!acl_allows(l->cfg, peer))
        why = "denied by allow/deny";
    else
        why = take_limits(w, l);
    uint8_t key[16];
    size_t len = 0;
    /* With accept_proxy the source is the one the header will declare. */
    if (why == NULL && l->cfg->max_per_source > 0 && !l->cfg->accept_proxy &&
        (len = addr_source_key(peer, key)) > 0 &&
        !persource_acquire(&l->persource, key, len, l->cfg->max_per_source)) {
        atomic_fetch_sub(&l->active, 1);
        atomic_fetch_sub(&w->d->active, 1);
        why = "max_per_source reached";
    }
    if (why != NULL) {
        close(fd);
        listener_refused(w, l, peer, why);
        return;
    }
    conn_open(w, ls, fd, peer, key, len);
}

/* Out of descriptors: give up the spare one to accept and close a client,
 * so that the listener is drained instead of spinning (libuv's trick). */
static void shed_one(struct worker *w, struct listen_sock *ls, int err)
{
    if (ratelimit_allow(&w->rl_fd, w->now_ms, NULL))
        log_warn("listener %s: out of file descriptors (%s): refusing clients; "
                 "raise LimitNOFILE or lower max_connections",
                 ls->listener->cfg->name, strerror(err));
    if (w->spare_fd < 0) {
        worker_pause_accepting(w, 100);
        return;
    }
    close(w->spare_fd);
    int fd = mio_tcp_accept(ls->fd, NULL, NULL);
    if (fd >= 0)
        close(fd);
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    atomic_fetch_add(&ls->listener->refused, 1);
    if (fd < 0 && fd != -EAGAIN)
        worker_pause_accepting(w, 100);
}

void listener_accept(struct worker *w, struct listen_sock *ls)
{
    /* A bound per wake-up keeps one busy listener from starving the
     * connections this worker already serves; the rest are taken on the
     * next loop through a re-arm without EAGAIN. */
    for (int i = 0; i < 256 && w->accepting; i++) {
        addr_t peer;
        peer.len = sizeof(peer.u);
        int fd = mio_tcp_accept(ls->fd, &peer.u.ss, &peer.len);
        if (fd >= 0) {
            if (peer.len == 0 || peer.u.sa.sa_family == AF_UNSPEC) {
                peer.u.sa.sa_family = AF_UNIX; /* an unnamed Unix client */
                peer.u.un.sun_path[0] = '\0';
            }
            admit(w, ls, fd, &peer);
            continue;
        }
        switch (-fd) {
        case EAGAIN:
            (void)mio_registry_rearm(w->reg, ls->fd, MIO_READABLE);
            return;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            continue;
        case EMFILE:
        case ENFILE:
            shed_one(w, ls, -fd);
            if (!w->accepting)
                return;
            continue;
        default:
            if (ratelimit_allow(&w->rl_fd, w->now_ms, NULL))
                log_warn("listener %s: accept on %s: %s", ls->listener->cfg->name,
                         ls->name, strerror(-fd));
            worker_pause_accepting(w, 100);
            return;
        }
    }
    /* Still more pending: come back after the other events. */
    worker_pause_accepting(w, 0);
}
