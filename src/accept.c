/* Accepting clients on a listening socket, and shedding them at EMFILE. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "accept.h"
#include "admission.h"
#include "conn.h"
#include "generation.h"
#include "mio.h"
#include "worker.h"

/* Decides on one accepted client: refused ones are closed at once. */
static void admit(struct worker *w, struct listen_sock *ls, int fd, const addr_t *peer)
{
    struct listener *l = ls->listener;
    struct ticket t;
    enum refusal why = admission_take(&t, w->d, l, peer);
    if (why != REFUSED_N) {
        close(fd);
        admission_refused(&w->rl_refused, w->loop.now_ms, l, peer, why, NULL);
        return;
    }
    conn_open(w, ls, fd, peer, &t);
}

/* Out of descriptors: give up the spare one to accept and close a client,
 * so that the listener is drained instead of spinning (libuv's trick).
 * False when accepting should stop until the next event: the queue is
 * empty (at the limit accept fails with EMFILE whether or not a client
 * waits, so EAGAIN only comes here), or there is no spare to give up.
 * Under accept_mu, so that no other worker's accept takes the slot. */
static bool shed_one(struct worker *w, struct listen_sock *ls, int err)
{
    if (log_ratelimit(&w->rl_fd, w->loop.now_ms, NULL))
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
        loop_rearm(&w->loop, ls->fd, ACCEPT_INTEREST);
        return false;
    }
    worker_pause_accepting(w, 100);
    return false;
}

/*
 * After accepting: a worker holding more than its share of the daemon's
 * connections (one more, against rounding) moves to the end of the
 * listening socket's queue of waiters, by registering it again, so that
 * the next client wakes another worker.  Without it, exclusive wake-ups
 * give every client of a quiet moment to the same worker, which long
 * connections would keep busy while the others idle (test-accept: 40 of
 * 40 long clients on one of 2 workers; 21 and 19 with this).  Short
 * connections under a light load stay on one worker and wake no other.
 */
static void step_back(struct worker *w, struct listen_sock *ls)
{
    unsigned n = w->d->nworkers;
    if (n < 2 || (unsigned long)w->nconns * n <= atomic_load(&w->d->active) + n)
        return;
    loop_unwatch(&w->loop, ls->fd);
    if (loop_watch(&w->loop, ls->fd, &ls->h, ACCEPT_INTEREST) < 0)
        worker_pause_accepting(w, 100); /* its resume registers them all again */
}

/* Accepts every pending client of ls (the socket was readable). */
static void accept_all(struct worker *w, struct listen_sock *ls)
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
            loop_rearm(&w->loop, ls->fd, ACCEPT_INTEREST);
            if (i > 0)
                step_back(w, ls);
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
            if (log_ratelimit(&w->rl_fd, w->loop.now_ms, NULL))
                log_warn("listener %s: accept on %s: %s", ls->listener->cfg->name,
                         ls->name, log_strerror(-fd));
            worker_pause_accepting(w, 100);
            return;
        }
    }
    /* Still more pending: come back after the other events. */
    worker_pause_accepting(w, 0);
}

void accept_ready(struct handler *h, struct loop *l, const mio_event_t *ev)
{
    (void)ev;
    struct listen_sock *ls = container_of(h, struct listen_sock, h);
    struct worker *w = container_of(l, struct worker, loop);
    /* A socket of the generation this batch moved away from: its new
     * registration reports the same clients. */
    if (w->accepting && ls->listener->gen == w->gen)
        accept_all(w, ls);
}
