/*
 * The churn client (see churn.h).
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "churn.h"
#include "net.h"
#include "pattern.h"

enum { CS_IDLE, CS_CONNECTING, CS_RUN };

struct cslot {
    int fd, state, port, pi;
    size_t len, sent, got;
    bool shut;
    uint64_t base;
    int64_t last;
};

__attribute__((format(printf, 2, 3))) static void churn_error(struct churn *ch,
                                                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (atomic_fetch_add(&ch->errors, 1) == 0)
        memcpy(ch->err, msg, sizeof(ch->err));
    if (ch->on_error != NULL)
        ch->on_error(ch, msg);
}

static void cslot_close(struct cslot *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = CS_IDLE;
}

/* Starts the k-th connection in slot c; false on an error (counted). */
static bool cslot_start(struct churn *ch, struct cslot *c, uint64_t k, uint32_t *rng)
{
    *rng = *rng * 1664525u + 1013904223u;
    uint32_t r = *rng >> 8;
    size_t pi = (size_t)(k % ch->nports);
    c->port = ch->ports[pi];
    c->pi = (int)(pi < CHURN_PORTS ? pi : CHURN_PORTS - 1);
    c->len = (r & 15) == 0 ? 0 : 1 + r % 4000;
    c->base = k * 104729u + ch->seed;
    c->sent = c->got = 0;
    c->shut = false;
    c->last = ms_now();
    c->fd = connect_start(c->port);
    if (c->fd < 0) {
        churn_error(ch, "connect to port %d: %s", c->port, strerror(errno));
        return false;
    }
    c->state = CS_CONNECTING;
    return true;
}

/* A connection is done: its bytes back, then the FIN. */
static void cslot_done(struct churn *ch, struct cslot *c)
{
    atomic_fetch_add(&ch->done, 1);
    atomic_fetch_add(&ch->bytes, c->len);
    atomic_fetch_add(&ch->port_done[c->pi], 1);
    atomic_fetch_add(&ch->port_bytes[c->pi], c->len);
}

/* Sends what slot c has to send, then half-closes; false when it failed
 * (counted, closed). */
static bool cslot_send(struct churn *ch, struct cslot *c)
{
    while (c->sent < c->len) {
        ssize_t n = send(c->fd, pat(c->base + c->sent), c->len - c->sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->sent += (size_t)n;
            c->last = ms_now();
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        churn_error(ch, "send to port %d after %zu of %zu: %s", c->port, c->sent, c->len,
                    strerror(errno));
        cslot_close(c);
        return false;
    }
    if (c->sent == c->len && !c->shut) {
        if (shutdown(c->fd, SHUT_WR) < 0) {
            churn_error(ch, "shutdown: %s", strerror(errno));
            cslot_close(c);
            return false;
        }
        c->shut = true;
    }
    return true;
}

/* Moves slot c on after poll said `rev`. */
static void cslot_service(struct churn *ch, struct cslot *c, short rev, uint8_t *scratch)
{
    if (c->state == CS_CONNECTING) {
        if ((rev & (POLLOUT | POLLERR | POLLHUP)) == 0)
            return;
        int err = 0;
        socklen_t len = sizeof(err);
        (void)getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            churn_error(ch, "connect to port %d: %s", c->port, strerror(err));
            cslot_close(c);
            return;
        }
        c->state = CS_RUN;
        c->last = ms_now();
    }
    if (!cslot_send(ch, c))
        return;
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(c->fd, scratch, 8192, MSG_DONTWAIT);
        if (n > 0) {
            if (c->got + (size_t)n > c->sent ||
                memcmp(scratch, pat(c->base + c->got), (size_t)n) != 0) {
                churn_error(ch, "port %d: bytes %zu..%zu differ from what was sent",
                            c->port, c->got, c->got + (size_t)n);
                cslot_close(c);
                return;
            }
            c->got += (size_t)n;
            c->last = ms_now();
            if (ch->total != NULL)
                atomic_fetch_add(ch->total, (uint64_t)n);
            continue;
        }
        if (n == 0) {
            if (c->got != c->len || !c->shut)
                churn_error(ch, "port %d: EOF after %zu of %zu bytes back", c->port,
                            c->got, c->len);
            else
                cslot_done(ch, c);
            cslot_close(c);
            return;
        }
        if (errno == EAGAIN || errno == EINTR)
            return;
        churn_error(ch, "recv from port %d after %zu of %zu: %s", c->port, c->got, c->len,
                    strerror(errno));
        cslot_close(c);
        return;
    }
}

void *churn_run(void *arg)
{
    struct churn *ch = arg;
    int stall_ms = ch->stall_ms > 0 ? ch->stall_ms : 5000;
    int grace_ms = ch->grace_ms > 0 ? ch->grace_ms : 10000;
    struct cslot *sl = calloc((size_t)ch->slots, sizeof(*sl));
    struct pollfd *pfd = calloc((size_t)ch->slots, sizeof(*pfd));
    int *idx = calloc((size_t)ch->slots, sizeof(*idx));
    uint8_t *scratch = malloc(8192);
    if (sl == NULL || pfd == NULL || idx == NULL || scratch == NULL) {
        churn_error(ch, "out of memory");
        goto out;
    }
    for (int i = 0; i < ch->slots; i++)
        sl[i].fd = -1;
    uint32_t rng = ch->seed;
    uint64_t k = 0;
    int64_t t0 = ms_now();
    int64_t stop_at = ch->ms > 0 ? t0 + ch->ms : INT64_MAX, ended_at = 0;
    for (long round = 0; round < 1000000000L; round++) {
        int64_t now = ms_now();
        bool starting = now < stop_at && !atomic_load(&ch->stop) &&
                        (ch->stop_too == NULL || !atomic_load(ch->stop_too));
        if (!starting && ended_at == 0)
            ended_at = now;
        uint64_t allowed = ch->rate > 0
                               ? (uint64_t)ch->rate * (uint64_t)(now - t0) / 1000 + 1
                               : UINT64_MAX;
        int n = 0;
        for (int i = 0; i < ch->slots; i++) {
            struct cslot *c = &sl[i];
            if (c->state == CS_IDLE && starting && k < allowed)
                (void)cslot_start(ch, c, k++, &rng);
            if (c->state == CS_IDLE)
                continue;
            if (now - c->last > stall_ms) {
                churn_error(ch,
                            "port %d: no progress for %d ms (%zu of %zu sent, %zu back)",
                            c->port, stall_ms, c->sent, c->len, c->got);
                cslot_close(c);
                continue;
            }
            short ev = c->state == CS_CONNECTING
                           ? POLLOUT
                           : (short)(POLLIN | (c->sent < c->len ? POLLOUT : 0));
            pfd[n] = (struct pollfd){.fd = c->fd, .events = ev};
            idx[n++] = i;
        }
        if (n == 0 && !starting)
            break;
        if (ended_at != 0 && now - ended_at > grace_ms) {
            churn_error(ch, "%d connections not done %d s after the end", n,
                        grace_ms / 1000);
            break;
        }
        int r = poll(pfd, (nfds_t)n, n == 0 || k >= allowed ? 1 : 20);
        if (r < 0 && errno != EINTR) {
            churn_error(ch, "poll: %s", strerror(errno));
            break;
        }
        for (int j = 0; r > 0 && j < n; j++)
            if (pfd[j].revents != 0)
                cslot_service(ch, &sl[idx[j]], pfd[j].revents, scratch);
    }
out:
    if (sl != NULL)
        for (int i = 0; i < ch->slots; i++)
            cslot_close(&sl[i]);
    free(sl);
    free(pfd);
    free(idx);
    free(scratch);
    return NULL;
}

void churn_start(struct churn *ch)
{
    CHECK_EQ(pthread_create(&ch->thread, NULL, churn_run, ch), 0);
}

void churn_stop(struct churn *ch)
{
    atomic_store(&ch->stop, true);
    pthread_join(ch->thread, NULL);
}

void churn_for(const int *ports, size_t nports, int nthreads, int slots, unsigned rate,
               int ms, uint32_t seed, struct churn *sum)
{
    struct churn ch[4];
    CHECK(nthreads > 0 && (size_t)nthreads <= ARRAY_LEN(ch));
    memset(ch, 0, sizeof(ch));
    for (int t = 0; t < nthreads; t++) {
        ch[t].ports = ports;
        ch[t].nports = nports;
        ch[t].slots = slots;
        ch[t].ms = ms;
        ch[t].rate = rate;
        ch[t].seed = seed + 7919u * (uint32_t)t;
        churn_start(&ch[t]);
    }
    memset(sum, 0, sizeof(*sum));
    for (int t = 0; t < nthreads; t++) {
        pthread_join(ch[t].thread, NULL);
        sum->done += ch[t].done;
        sum->bytes += ch[t].bytes;
        sum->errors += ch[t].errors;
        for (size_t p = 0; p < CHURN_PORTS; p++) {
            sum->port_done[p] += ch[t].port_done[p];
            sum->port_bytes[p] += ch[t].port_bytes[p];
        }
        if (sum->err[0] == '\0')
            memcpy(sum->err, ch[t].err, sizeof(sum->err));
    }
}
