/* Accepting clients, and admission: ACLs and limits, before any byte. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "accept.h"
#include "mio.h"
#include "worker.h"

/* Whether allow/deny let src in (cidr_allows(): deny wins, an empty allow
 * allows everyone, Unix-socket clients pass). */
static bool acl_allows(const struct listener_config *cfg, const addr_t *src)
{
    return cidr_allows(cfg->allow, cfg->nallow, cfg->deny, cfg->ndeny, src);
}

const char *const refusal_names[REFUSED_N] = {
    [REFUSED_ACL] = "acl",
    [REFUSED_MAX_CONNECTIONS] = "max_connections",
    [REFUSED_LISTENER_MAX] = "listener_max_connections",
    [REFUSED_PER_SOURCE] = "max_per_source",
    [REFUSED_PROXY_HEADER] = "bad_proxy_header",
    [REFUSED_NO_FD] = "out_of_fds",
};

/* What the log says for a refusal. */
static const char *refusal_text(enum refusal why)
{
    switch (why) {
    case REFUSED_ACL: return "denied by allow/deny";
    case REFUSED_MAX_CONNECTIONS: return "max_connections reached";
    case REFUSED_LISTENER_MAX: return "listener max_connections reached";
    case REFUSED_PER_SOURCE: return "max_per_source reached";
    case REFUSED_PROXY_HEADER: return "bad PROXY header";
    case REFUSED_NO_FD:
    case REFUSED_N: break;
    }
    return "out of file descriptors";
}

void listener_refused(struct worker *w, struct listener *l, const addr_t *src,
                      enum refusal why, const char *detail)
{
    atomic_fetch_add(&l->st->refused[why], 1);
    char reason[160];
    snprintf(reason, sizeof(reason), "%s%s%s", refusal_text(why),
             detail ? (why == REFUSED_PROXY_HEADER ? ": " : " ") : "",
             detail ? detail : "");
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

/* Takes one connection from the daemon's and the listener's limits;
 * REFUSED_N when both had room. */
static enum refusal take_limits(struct worker *w, struct listener *l)
{
    unsigned max = l->gen->cfg->max_connections;
    if (atomic_fetch_add(&w->d->active, 1) >= max && max != 0) {
        atomic_fetch_sub(&w->d->active, 1);
        return REFUSED_MAX_CONNECTIONS;
    }
    max = l->cfg->max_connections;
    if (atomic_fetch_add(&l->st->active, 1) >= max && max != 0) {
        atomic_fetch_sub(&l->st->active, 1);
        atomic_fetch_sub(&w->d->active, 1);
        return REFUSED_LISTENER_MAX;
    }
    return REFUSED_N;
}

bool listener_admit_source(struct worker *w, struct listener *l,
                           const addr_t *src, struct conn *c)
{
    if (!acl_allows(l->cfg, src)) {
        listener_refused(w, l, src, REFUSED_ACL, "(PROXY source)");
        return false;
    }
    if (l->cfg->max_per_source == 0)
        return true;
    /* The connecting peer was counted until now: the source replaces it. */
    if (c->srclen > 0) {
        persource_release(&l->st->persource, c->srckey, c->srclen);
        c->srclen = 0;
    }
    uint8_t key[16];
    size_t len = addr_source_key(src, key);
    if (len == 0)
        return true;
    if (!persource_acquire(&l->st->persource, key, len, l->cfg->max_per_source)) {
        listener_refused(w, l, src, REFUSED_PER_SOURCE, NULL);
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
    enum refusal why = acl_allows(l->cfg, peer) ? take_limits(w, l) : REFUSED_ACL;
    uint8_t key[16];
    size_t len = 0;
    /* With accept_proxy the peer is counted until its header declares the
     * source (listener_admit_source()), so that unfinished headers count. */
    if (why == REFUSED_N && l->cfg->max_per_source > 0 &&
        (len = addr_source_key(peer, key)) > 0 &&
        !persource_acquire(&l->st->persource, key, len, l->cfg->max_per_source)) {
        atomic_fetch_sub(&l->st->active, 1);
        atomic_fetch_sub(&w->d->active, 1);
        why = REFUSED_PER_SOURCE;
    }
    if (why != REFUSED_N) {
        close(fd);
        listener_refused(w, l, peer, why, NULL);
        return;
    }
    conn_open(w, ls, fd, peer, key, len);
}

/* Out of descriptors: give up the spare one to accept and close a client,
 * so that the listener is drained instead of spinning (libuv's trick).
 * False when accepting should stop until the next event: the queue is
 * empty (at the limit accept fails with EMFILE whether or not a client
 * waits, so EAGAIN only comes here), or there is no spare to give up.
 * Under accept_mu, so that no other worker's accept takes the slot. */
static bool shed_one(struct worker *w, struct listen_sock *ls, int err)
{
    if (ratelimit_allow(&w->rl_fd, w->now_ms, NULL))
        log_warn("listener %s: out of file descriptors (%s): refusing clients; "
                 "raise LimitNOFILE or lower max_connections",
                 ls->listener->cfg->name, log_strerror(err));
    if (w->spare_fd < 0) {
        worker_pause_accepting(w, 100);
        return false;
    }
    pthread_mutex_lock(&w->d->accept_mu);
    close(w->spare_fd);
    int fd = mio_tcp_accept(ls->fd, NULL, NULL);
    if (fd >= 0)
        close(fd);
    /* Another thread's socket() may still have taken the slot meanwhile:
     * then the spare is missing until it is opened again (accept, close). */
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pthread_mutex_unlock(&w->d->accept_mu);
    if (fd >= 0) {
        atomic_fetch_add(&ls->listener->st->refused[REFUSED_NO_FD], 1);
        return true;
    }
    if (fd == -EAGAIN) {
        (void)mio_registry_rearm(w->reg, ls->fd, MIO_READABLE);
        return false;
    }
    worker_pause_accepting(w, 100);
    return false;
}

void listener_accept(struct worker *w, struct listen_sock *ls)
{
    /* A bound per wake-up keeps one busy listener from starving the
     * connections this worker already serves; the rest are taken on the
     * next loop through a re-arm without EAGAIN. */
    if (w->spare_fd < 0) /* given up at the limit and lost: take it back */
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (int i = 0; i < 256 && w->accepting; i++) {
        addr_t peer;
        peer.len = sizeof(peer.u);
        pthread_mutex_lock(&w->d->accept_mu);
        int fd = mio_tcp_accept(ls->fd, &peer.u.ss, &peer.len);
        pthread_mutex_unlock(&w->d->accept_mu);
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
            if (!shed_one(w, ls, -fd))
                return;
            continue;
        default:
            if (ratelimit_allow(&w->rl_fd, w->now_ms, NULL))
                log_warn("listener %s: accept on %s: %s", ls->listener->cfg->name,
                         ls->name, log_strerror(-fd));
            worker_pause_accepting(w, 100);
            return;
        }
    }
    /* Still more pending: come back after the other events. */
    worker_pause_accepting(w, 0);
}
