/*
 * soak-run: mio-echod under hours-long-style mixed load, for minutes, run by
 * hand through tests/soak (not part of make check).
 *
 *   soak-run -d DAEMON [-m MINUTES] [-r REPORT_S] [-c CHURN_PER_S]
 *            [-s STREAMERS] [-k] [-w WORKDIR]
 *
 * It starts DAEMON (mio-echod, or its poll(2) twin) in the foreground on
 * loopback with an echo listener and a relay to two echo upstreams of its
 * own, then, until the time is up:
 *
 *   - streamers: long connections (half echo, half relayed) sending
 *     verified data at a steady rate, each living 5-60 s, then
 *     half-closing, draining and expecting the daemon's FIN, and starting
 *     over;
 *   - churn: short connections at a steady rate (0-4000 bytes each, echo
 *     and relayed in turn), every byte checked, then the daemon's FIN;
 *   - a SIGHUP every 5 s, alternating two configurations (the second adds
 *     an upstream that refuses, changes the balance mode and the buffer
 *     sizes); every tenth a broken file, which must be refused;
 *   - every 45 s the second upstream goes away (stops accepting: its
 *     backlog fills and further connects time out) for 5 s, then comes
 *     back.
 *
 * Every REPORT_S (30) seconds it prints the connections served, the bytes
 * verified, the errors, and the daemon's RSS and descriptors.  At the end
 * it stops the load, checks that the daemon is back to its idle
 * descriptors, that its counters (SIGUSR1) agree with the clients to the
 * connection and the byte, that its memory did not grow by more than 8 MiB
 * over the first report, and that it exits 0 on SIGTERM; then it prints a
 * summary line, "soak: PASS ..." or "soak: FAIL ...".  Exit status 0 only
 * on PASS.  SIGINT ends the load early, with the same checks.
 *
 * Every loop is bounded in time; nothing is left running (the daemon dies
 * with this program).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* accept4, pipe2, close_range */
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KIB ((uint64_t)1 << 10)
#define MIB ((uint64_t)1 << 20)

/* A connection without progress for this long is an error. */
#define STALL_MS 20000
/* The daemon's shutdown_timeout, in the configuration. */
#define SHUTDOWN_S 5

/* ---- time, errors ------------------------------------------------------- */

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        continue;
}

static int64_t t_start;
static atomic_ullong n_errors;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

/* Prints a line with the elapsed time first. */
__attribute__((format(printf, 1, 2)))
static void say(const char *fmt, ...)
{
    int64_t t = (ms_now() - t_start) / 1000;
    pthread_mutex_lock(&out_mu);
    printf("[%02lld:%02lld] ", (long long)(t / 60), (long long)(t % 60));
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
}

/* Counts an error; the first 50 are printed. */
__attribute__((format(printf, 1, 2)))
static void error(const char *fmt, ...)
{
    unsigned long long n = atomic_fetch_add(&n_errors, 1) + 1;
    if (n > 50)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    say("ERROR %llu: %s%s", n, msg, n == 50 ? " (no more are printed)" : "");
}

/* ---- the pattern ---------------------------------------------------------- */

/* Stream byte i from base is pattern[(base + i) % PLEN]; the buffer holds
 * the period twice, so any position has PLEN bytes after it. */
#define PLEN ((uint64_t)4 << 20)
static uint8_t *pattern;

static const uint8_t *pat(uint64_t pos)
{
    return pattern + pos % PLEN;
}

static void pattern_init(void)
{
    pattern = malloc(2 * PLEN);
    if (pattern == NULL) {
        fprintf(stderr, "soak-run: out of memory\n");
        exit(2);
    }
    uint64_t x = 0x9e3779b97f4a7c15ull * 4242;
    for (uint64_t i = 0; i < PLEN; i += 8) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        memcpy(pattern + i, &z, 8);
    }
    memcpy(pattern + PLEN, pattern, PLEN);
}

/* ---- what was served, by listener (0 echo, 1 relay) ------------------------ */

static atomic_ullong served_conns[2], served_bytes[2];
static atomic_ullong verified_total; /* every byte checked so far, both ways */
static atomic_bool load_stop; /* the load phase is over */
static atomic_bool interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    atomic_store(&interrupted, true);
}

/* ---- sockets ---------------------------------------------------------------- */

static int bind_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    return ntohs(a.sin_port);
}

/* A port nobody listens on now (bound on 127.0.0.1:0 and let go). */
static int reserve_port(void)
{
    int fd = bind_loopback(0);
    int port = fd >= 0 ? port_of(fd) : -1;
    if (fd >= 0)
        close(fd);
    return port;
}

/* A non-blocking connect to 127.0.0.1:port (in progress); -1 on error. */
static int connect_start(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* ---- echo upstreams that can go away and come back ------------------------- */

#define UP_MAX 2048
#define UP_BUF (64 * 1024)

struct upconn {
    int fd;
    bool eof;
    uint8_t *buf;
    size_t len, off;
};

struct upsrv {
    const char *name;
    int lfd, port;
    pthread_t thread;
    atomic_bool stop;
    atomic_bool paused; /* not accepting: the backlog fills, connects hang */
    atomic_ullong accepted;
    atomic_int open;
};

static void upc_free(struct upsrv *u, struct upconn *c)
{
    close(c->fd);
    free(c->buf);
    free(c);
    atomic_fetch_sub(&u->open, 1);
}

/* Echoes what it can; true when the connection is over. */
static bool upc_service(struct upsrv *u, struct upconn *c)
{
    for (int round = 0; round < 64; round++) {
        bool progress = false;
        while (c->off < c->len) {
            ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                c->off += (size_t)n;
                progress = true;
            } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                break;
            } else {
                error("upstream %s: send: %s", u->name, strerror(errno));
                return true;
            }
        }
        if (c->off == c->len)
            c->off = c->len = 0;
        while (!c->eof && c->len == 0) {
            ssize_t n = recv(c->fd, c->buf, UP_BUF, MSG_DONTWAIT);
            if (n > 0) {
                c->len = (size_t)n;
                progress = true;
            } else if (n == 0) {
                c->eof = true;
                progress = true;
            } else if (errno == EAGAIN || errno == EINTR) {
                break;
            } else {
                error("upstream %s: recv: %s", u->name, strerror(errno));
                return true;
            }
        }
        if (c->eof && c->len == 0)
            return true;
        if (!progress)
            break;
    }
    return false;
}

static void *up_run(void *arg)
{
    struct upsrv *u = arg;
    struct upconn **cs = calloc(UP_MAX, sizeof(*cs));
    struct pollfd *pfd = calloc(UP_MAX + 1, sizeof(*pfd));
    if (cs == NULL || pfd == NULL) {
        error("upstream %s: out of memory", u->name);
        free(cs);
        free(pfd);
        return NULL;
    }
    size_t n = 0;
    while (!atomic_load(&u->stop)) {
        bool accepting = !atomic_load(&u->paused) && n < UP_MAX;
        for (size_t i = 0; i < n; i++)
            pfd[i] = (struct pollfd){
                .fd = cs[i]->fd,
                .events = (short)((!cs[i]->eof && cs[i]->len == 0 ? POLLIN : 0) |
                                  (cs[i]->off < cs[i]->len ? POLLOUT : 0))};
        pfd[n] = (struct pollfd){.fd = u->lfd, .events = accepting ? POLLIN : 0};
        size_t polled = n;
        if (poll(pfd, polled + 1, 10) <= 0)
            continue;
        for (size_t i = polled; i-- > 0;) {
            if (pfd[i].revents == 0)
                continue;
            if (upc_service(u, cs[i])) {
                upc_free(u, cs[i]);
                cs[i] = cs[--n];
            }
        }
        if (!accepting || (pfd[polled].revents & POLLIN) == 0)
            continue;
        for (int k = 0; k < 256 && n < UP_MAX; k++) {
            int fd = accept4(u->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                break;
            struct upconn *c = calloc(1, sizeof(*c));
            uint8_t *buf = malloc(UP_BUF);
            if (c == NULL || buf == NULL) {
                free(c);
                free(buf);
                close(fd);
                error("upstream %s: out of memory", u->name);
                continue;
            }
            c->fd = fd;
            c->buf = buf;
            atomic_fetch_add(&u->accepted, 1);
            atomic_fetch_add(&u->open, 1);
            cs[n++] = c;
            if (upc_service(u, c)) {
                upc_free(u, c);
                n--;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        upc_free(u, cs[i]);
    free(cs);
    free(pfd);
    return NULL;
}

/* A backlog of 16: when the upstream goes away its queue fills at once and
 * the daemon's further connects time out. */
static bool up_start(struct upsrv *u, const char *name)
{
    memset(u, 0, sizeof(*u));
    u->name = name;
    u->lfd = bind_loopback(0);
    if (u->lfd < 0 || listen(u->lfd, 16) < 0)
        return false;
    u->port = port_of(u->lfd);
    int fl = fcntl(u->lfd, F_GETFL);
    (void)fcntl(u->lfd, F_SETFL, fl | O_NONBLOCK);
    return pthread_create(&u->thread, NULL, up_run, u) == 0;
}

static void up_stop(struct upsrv *u)
{
    atomic_store(&u->stop, true);
    pthread_join(u->thread, NULL);
    close(u->lfd);
}

/* ---- streamers ---------------------------------------------------------------- */

struct streamer {
    int id, port, li; /* li: 0 echo, 1 relay */
    uint64_t rate;    /* bytes per second */
    pthread_t thread;
    atomic_ullong bytes; /* verified so far, this connection included */
};

#define WINDOW (256 * KIB)
#define CHUNK (32 * KIB)

/* One connection: streams for life_ms at s->rate, then half-closes and
 * expects everything back and the FIN.  False on an error (reported). */
static bool stream_once(struct streamer *s, uint64_t base, int64_t life_ms)
{
    uint8_t buf[64 * 1024];
    int fd = connect_start(s->port);
    if (fd < 0) {
        error("streamer %d: connect to %d: %s", s->id, s->port, strerror(errno));
        return false;
    }
    uint64_t sent = 0, verified = 0;
    bool connected = false, shut = false, ok = false;
    int64_t t0 = ms_now(), last = t0;
    int64_t hard = t0 + life_ms + 3 * STALL_MS;
    for (long round = 0; round < 100000000L; round++) {
        int64_t now = ms_now();
        if (now > hard) {
            error("streamer %d: not done %lld ms after it began", s->id,
                  (long long)(now - t0));
            break;
        }
        if (connected && !shut &&
            (now - t0 >= life_ms || atomic_load(&load_stop))) {
            if (shutdown(fd, SHUT_WR) < 0) {
                error("streamer %d: shutdown: %s", s->id, strerror(errno));
                break;
            }
            shut = true;
        }
        uint64_t allowed = s->rate * (uint64_t)(now - t0) / 1000 + CHUNK;
        bool can_send = connected && !shut && sent - verified < WINDOW && sent < allowed;
        struct pollfd pfd = {.fd = fd, .events = (short)(connected
                                 ? POLLIN | (can_send ? POLLOUT : 0) : POLLOUT)};
        int r = poll(&pfd, 1, can_send || !connected ? 100 : 10);
        if (r < 0 && errno != EINTR) {
            error("streamer %d: poll: %s", s->id, strerror(errno));
            break;
        }
        now = ms_now();
        if (!connected) {
            if (r <= 0) {
                if (now - last > STALL_MS) {
                    error("streamer %d: connect to %d: no answer in %d ms", s->id, s->port,
                          STALL_MS);
                    break;
                }
                continue;
            }
            int err = 0;
            socklen_t len = sizeof(err);
            (void)getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) {
                error("streamer %d: connect to %d: %s", s->id, s->port, strerror(err));
                break;
            }
            connected = true;
            last = now;
            continue;
        }
        bool progress = false;
        if (can_send) {
            uint64_t want = WINDOW - (sent - verified);
            if (want > CHUNK)
                want = CHUNK;
            ssize_t n = send(fd, pat(base + sent), (size_t)want, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent += (uint64_t)n;
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                error("streamer %d (port %d): send after %llu bytes: %s", s->id, s->port,
                      (unsigned long long)sent, strerror(errno));
                break;
            }
        }
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            if (verified + (uint64_t)n > sent ||
                memcmp(buf, pat(base + verified), (size_t)n) != 0) {
                error("streamer %d (port %d): bytes %llu..%llu differ from what was sent",
                      s->id, s->port, (unsigned long long)verified,
                      (unsigned long long)(verified + (uint64_t)n));
                break;
            }
            verified += (uint64_t)n;
            atomic_fetch_add(&s->bytes, (uint64_t)n);
            atomic_fetch_add(&verified_total, (uint64_t)n);
            progress = true;
        } else if (n == 0) {
            if (shut && verified == sent)
                ok = true;
            else
                error("streamer %d (port %d): EOF after %llu of %llu bytes back", s->id,
                      s->port, (unsigned long long)verified, (unsigned long long)sent);
            break;
        } else if (errno != EAGAIN && errno != EINTR) {
            error("streamer %d (port %d): recv after %llu of %llu bytes: %s", s->id, s->port,
                  (unsigned long long)verified, (unsigned long long)sent, strerror(errno));
            break;
        }
        if (progress || (sent == verified && !shut))
            last = now;
        else if (now - last > STALL_MS) {
            error("streamer %d (port %d): no progress for %d ms (%llu sent, %llu back%s)",
                  s->id, s->port, STALL_MS, (unsigned long long)sent,
                  (unsigned long long)verified, shut ? ", half-closed" : "");
            break;
        }
    }
    close(fd);
    if (ok) {
        atomic_fetch_add(&served_conns[s->li], 1);
        atomic_fetch_add(&served_bytes[s->li], sent);
    }
    return ok;
}

static void *stream_run(void *arg)
{
    struct streamer *s = arg;
    uint32_t rng = 2654435761u * (uint32_t)(s->id + 1);
    for (uint64_t k = 0; k < 1000000 && !atomic_load(&load_stop); k++) {
        rng = rng * 1664525u + 1013904223u;
        int64_t life = 5000 + (int64_t)((rng >> 8) % 55000);
        uint64_t base = ((uint64_t)s->id * 1000003 + k * 7919) % PLEN;
        if (!stream_once(s, base, life))
            sleep_ms(100);
    }
    return NULL;
}

/* ---- churn ------------------------------------------------------------------ */

struct churn {
    const int *ports; /* [0] echo, [1] relay: taken in turn */
    int slots;
    unsigned rate; /* connections started per second */
    pthread_t thread;
};

enum { CS_IDLE, CS_CONNECTING, CS_RUN };

struct cslot {
    int fd, state, li;
    size_t len, sent, got;
    bool shut;
    uint64_t base;
    int64_t last;
};

static void cslot_close(struct cslot *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = CS_IDLE;
}

static void cslot_service(struct churn *ch, struct cslot *c, short rev, uint8_t *scratch)
{
    int port = ch->ports[c->li];
    if (c->state == CS_CONNECTING) {
        if ((rev & (POLLOUT | POLLERR | POLLHUP)) == 0)
            return;
        int err = 0;
        socklen_t len = sizeof(err);
        (void)getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            error("churn: connect to %d: %s", port, strerror(err));
            cslot_close(c);
            return;
        }
        c->state = CS_RUN;
        c->last = ms_now();
    }
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
        error("churn: send to %d after %zu of %zu: %s", port, c->sent, c->len,
              strerror(errno));
        cslot_close(c);
        return;
    }
    if (c->sent == c->len && !c->shut) {
        if (shutdown(c->fd, SHUT_WR) < 0) {
            error("churn: shutdown: %s", strerror(errno));
            cslot_close(c);
            return;
        }
        c->shut = true;
    }
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(c->fd, scratch, 8192, MSG_DONTWAIT);
        if (n > 0) {
            if (c->got + (size_t)n > c->sent ||
                memcmp(scratch, pat(c->base + c->got), (size_t)n) != 0) {
                error("churn: port %d: bytes %zu..%zu differ from what was sent", port, c->got,
                      c->got + (size_t)n);
                cslot_close(c);
                return;
            }
            c->got += (size_t)n;
            c->last = ms_now();
            atomic_fetch_add(&verified_total, (uint64_t)n);
            continue;
        }
        if (n == 0) {
            if (c->got != c->len || !c->shut) {
                error("churn: port %d: EOF after %zu of %zu bytes back", port, c->got, c->len);
            } else {
                atomic_fetch_add(&served_conns[c->li], 1);
                atomic_fetch_add(&served_bytes[c->li], c->len);
            }
            cslot_close(c);
            return;
        }
        if (errno == EAGAIN || errno == EINTR)
            return;
        error("churn: recv from %d after %zu of %zu: %s", port, c->got, c->len,
              strerror(errno));
        cslot_close(c);
        return;
    }
}

static void *churn_run(void *arg)
{
    struct churn *ch = arg;
    struct cslot *sl = calloc((size_t)ch->slots, sizeof(*sl));
    struct pollfd *pfd = calloc((size_t)ch->slots, sizeof(*pfd));
    int *idx = calloc((size_t)ch->slots, sizeof(*idx));
    uint8_t *scratch = malloc(8192);
    if (sl == NULL || pfd == NULL || idx == NULL || scratch == NULL) {
        error("churn: out of memory");
        goto out;
    }
    for (int i = 0; i < ch->slots; i++)
        sl[i].fd = -1;
    uint32_t rng = 12345;
    uint64_t k = 0;
    int64_t t0 = ms_now(), stopped_at = 0;
    for (long round = 0; round < 1000000000L; round++) {
        int64_t now = ms_now();
        bool starting = !atomic_load(&load_stop);
        if (!starting && stopped_at == 0)
            stopped_at = now;
        uint64_t allowed = (uint64_t)ch->rate * (uint64_t)(now - t0) / 1000 + 1;
        int n = 0;
        for (int i = 0; i < ch->slots; i++) {
            struct cslot *c = &sl[i];
            if (c->state == CS_IDLE && starting && k < allowed) {
                rng = rng * 1664525u + 1013904223u;
                uint32_t r = rng >> 8;
                c->li = (int)(k % 2);
                c->len = (r & 15) == 0 ? 0 : 1 + r % 4000;
                c->base = (k * 104729u) % PLEN;
                c->sent = c->got = 0;
                c->shut = false;
                c->last = now;
                k++;
                c->fd = connect_start(ch->ports[c->li]);
                if (c->fd < 0)
                    error("churn: connect to %d: %s", ch->ports[c->li], strerror(errno));
                else
                    c->state = CS_CONNECTING;
            }
            if (c->state == CS_IDLE)
                continue;
            if (now - c->last > STALL_MS) {
                error("churn: port %d: no progress for %d ms (%zu of %zu sent, %zu back)",
                      ch->ports[c->li], STALL_MS, c->sent, c->len, c->got);
                cslot_close(c);
                continue;
            }
            short ev = c->state == CS_CONNECTING ? POLLOUT
                       : (short)(POLLIN | (c->sent < c->len ? POLLOUT : 0));
            pfd[n] = (struct pollfd){.fd = c->fd, .events = ev};
            idx[n++] = i;
        }
        if (n == 0 && !starting)
            break;
        if (stopped_at != 0 && now - stopped_at > 2 * STALL_MS) {
            error("churn: %d connections not done %d s after the end", n, 2 * STALL_MS / 1000);
            break;
        }
        int r = poll(pfd, (nfds_t)n, n == 0 || k >= allowed ? 2 : 20);
        if (r < 0 && errno != EINTR) {
            error("churn: poll: %s", strerror(errno));
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

/* ---- the daemon ------------------------------------------------------------- */

struct daemon {
    pid_t pid;
    bool exited;
    int status;
    int errfd;
    pthread_t reader;
    FILE *log;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool eof;
    int started, reloaded, reload_failed, errors, warnings;
    char last_error[512];
    char counters[2][256]; /* the last "listener NAME: open=" lines */
    int counters_seq[2];
};

static struct daemon dmn = {.pid = -1, .errfd = -1,
                            .mu = PTHREAD_MUTEX_INITIALIZER,
                            .cv = PTHREAD_COND_INITIALIZER};

/* Takes one line of the daemon's log: counts what matters. */
static void daemon_line(struct daemon *d, const char *line)
{
    if (strstr(line, " started: ") != NULL)
        d->started++;
    if (strstr(line, "notice: reloaded ") != NULL)
        d->reloaded++;
    if (strstr(line, "reload failed") != NULL)
        d->reload_failed++;
    else if (strstr(line, ": error: ") != NULL) {
        d->errors++;
        snprintf(d->last_error, sizeof(d->last_error), "%.500s", line);
    }
    if (strstr(line, ": warning: ") != NULL)
        d->warnings++;
    static const char *const names[2] = {"listener echo: open=", "listener relay: open="};
    for (int i = 0; i < 2; i++)
        if (strstr(line, names[i]) != NULL) {
            snprintf(d->counters[i], sizeof(d->counters[i]), "%.250s", line);
            d->counters_seq[i]++;
        }
}

static void *daemon_reader(void *arg)
{
    struct daemon *d = arg;
    char buf[65536], line[4096];
    size_t used = 0;
    for (;;) {
        ssize_t n = read(d->errfd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        fwrite(buf, 1, (size_t)n, d->log);
        pthread_mutex_lock(&d->mu);
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (used < sizeof(line) - 1)
                    line[used++] = buf[i];
                continue;
            }
            line[used] = '\0';
            daemon_line(d, line);
            used = 0;
        }
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
    }
    fflush(d->log);
    pthread_mutex_lock(&d->mu);
    d->eof = true;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* Waits up to ms for *counter (under d->mu) to reach want. */
static bool daemon_wait(struct daemon *d, const int *counter, int want, int ms)
{
    int64_t until = ms_now() + ms;
    bool ok = false;
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < 100000; i++) {
        if (*counter >= want) {
            ok = true;
            break;
        }
        int64_t left = until - ms_now();
        if (left <= 0 || d->eof)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
    }
    pthread_mutex_unlock(&d->mu);
    return ok;
}

static int daemon_get(struct daemon *d, const int *counter)
{
    pthread_mutex_lock(&d->mu);
    int v = *counter;
    pthread_mutex_unlock(&d->mu);
    return v;
}

static bool daemon_start(struct daemon *d, const char *prog, const char *conf,
                         const char *logpath)
{
    d->log = fopen(logpath, "w");
    if (d->log == NULL) {
        fprintf(stderr, "soak-run: %s: %s\n", logpath, strerror(errno));
        return false;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return false;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_IGN); /* ^C stops the soak, which stops the daemon */
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            close(null);
        }
        dup2(p[1], STDOUT_FILENO);
        dup2(p[1], STDERR_FILENO);
        (void)close_range(3, ~0u, 0);
        execl(prog, prog, "-f", "-c", conf, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    d->pid = pid;
    d->errfd = p[0];
    if (pthread_create(&d->reader, NULL, daemon_reader, d) != 0)
        return false;
    if (!daemon_wait(d, &d->started, 1, 10000)) {
        fprintf(stderr, "soak-run: the daemon did not start; its log is in %s\n", logpath);
        return false;
    }
    return true;
}

/* Reaps the daemon if it has exited (options: WNOHANG or 0). */
static void daemon_reap(struct daemon *d, int options)
{
    if (d->exited || d->pid <= 0)
        return;
    int status;
    pid_t r;
    do
        r = waitpid(d->pid, &status, options);
    while (r < 0 && errno == EINTR);
    if (r == d->pid || r < 0) {
        d->exited = true;
        d->status = r == d->pid ? status : -1;
    }
}

static bool daemon_alive(struct daemon *d)
{
    daemon_reap(d, WNOHANG);
    return !d->exited;
}

/* SIGTERM, then waits up to ms; returns the exit code, or -1 (killed). */
static int daemon_stop(struct daemon *d, int ms, int64_t *took)
{
    int64_t t0 = ms_now();
    if (daemon_alive(d)) {
        kill(d->pid, SIGTERM);
        while (ms_now() - t0 < ms && daemon_alive(d))
            sleep_ms(5);
    }
    *took = ms_now() - t0;
    if (!d->exited) {
        kill(d->pid, SIGKILL);
        daemon_reap(d, 0);
        return -1;
    }
    if (d->reader != 0) {
        pthread_join(d->reader, NULL);
        d->reader = 0;
    }
    close(d->errfd);
    fclose(d->log);
    d->log = NULL;
    if (d->status >= 0 && WIFEXITED(d->status))
        return WEXITSTATUS(d->status);
    return d->status >= 0 && WIFSIGNALED(d->status) ? 128 + WTERMSIG(d->status) : -1;
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

static int fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    if (dir == NULL)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

/* A number after key in line, or -1. */
static long long field(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    return p != NULL ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* ---- configurations ------------------------------------------------------------ */

static char conf_path[PATH_MAX];
static int p_echo, p_relay, p_dead;
static struct upsrv up1, up2;

/* Variant 0: two upstreams, round-robin, 16 KiB buffers; variant 1 adds an
 * upstream that refuses, least-connections, 32 and 8 KiB buffers;
 * variant 2 is a broken file. */
static bool write_conf(int variant)
{
    char text[4096];
    char dead[64] = "";
    if (variant == 1)
        snprintf(dead, sizeof(dead), ", \"127.0.0.1:%d\"", p_dead);
    int n = snprintf(text, sizeof(text),
        "workers = 2;\n"
        "shutdown_timeout = %d.0;\n"
        "log = { target = \"stderr\"; level = \"info\"; access = false; };\n"
        "listeners = (\n"
        "  { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; mode = \"echo\";\n"
        "    buffer_size = %d; idle_timeout = 120.0; },\n"
        "  { name = \"relay\"; listen = [ \"127.0.0.1:%d\" ]; mode = \"proxy\";\n"
        "    upstreams = [ \"127.0.0.1:%d\", \"127.0.0.1:%d\"%s ];\n"
        "    balance = \"%s\"; connect_timeout = 1.0; retries = 2; fail_timeout = 2.0;\n"
        "    buffer_size = %d; idle_timeout = 120.0; }\n"
        ");\n",
        SHUTDOWN_S, p_echo, variant == 1 ? 32768 : 16384, p_relay, up1.port, up2.port, dead,
        variant == 1 ? "least-connections" : "round-robin", variant == 1 ? 8192 : 16384);
    if (n <= 0 || (size_t)n >= sizeof(text))
        return false;
    if (variant == 2)
        text[n / 2] = '\0'; /* cut in the middle of a listener */
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.new", conf_path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return false;
    fputs(text, f);
    if (fclose(f) != 0)
        return false;
    return rename(tmp, conf_path) == 0;
}

/* ---- the run ---------------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    (void)remove(path);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: soak-run -d DAEMON [-m MINUTES] [-r REPORT_S] [-c CHURN_PER_S] "
                    "[-s STREAMERS] [-k] [-w WORKDIR]\n");
}

int main(int argc, char **argv)
{
    const char *prog = NULL, *workdir = NULL;
    double minutes = 10;
    int report_s = 30, nstreamers = 8, opt;
    unsigned churn_rate = 400;
    bool keep = false;
    while ((opt = getopt(argc, argv, "d:m:r:c:s:kw:h")) != -1) {
        switch (opt) {
        case 'd': prog = optarg; break;
        case 'm': minutes = strtod(optarg, NULL); break;
        case 'r': report_s = atoi(optarg); break;
        case 'c': churn_rate = (unsigned)atoi(optarg); break;
        case 's': nstreamers = atoi(optarg); break;
        case 'k': keep = true; break;
        case 'w': workdir = optarg; break;
        default: usage(); return 2;
        }
    }
    if (prog == NULL || minutes <= 0 || minutes > 24 * 60 || report_s < 1 ||
        nstreamers < 0 || nstreamers > 64 || churn_rate > 100000) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    pattern_init();
    t_start = ms_now();

    char dir[PATH_MAX];
    if (workdir != NULL) {
        snprintf(dir, sizeof(dir), "%s", workdir);
        (void)mkdir(dir, 0700);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/mio-echod-soak.XXXXXX",
                 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
        if (mkdtemp(dir) == NULL) {
            perror("soak-run: mkdtemp");
            return 2;
        }
    }
    snprintf(conf_path, sizeof(conf_path), "%.4000s/mio-echod.conf", dir);
    char logpath[PATH_MAX + 16];
    snprintf(logpath, sizeof(logpath), "%.4000s/mio-echod.log", dir);

    /* Ports: two for the daemon, two echo upstreams, one that refuses
     * (bound, never listening, for the whole run). */
    if (!up_start(&up1, "u1") || !up_start(&up2, "u2")) {
        perror("soak-run: upstreams");
        return 2;
    }
    int dead_fd = bind_loopback(0);
    p_dead = dead_fd >= 0 ? port_of(dead_fd) : -1;
    p_echo = reserve_port();
    p_relay = reserve_port();
    for (int i = 0; i < 100 && p_relay == p_echo; i++)
        p_relay = reserve_port();
    if (p_dead < 0 || p_echo < 0 || p_relay < 0 || !write_conf(0)) {
        fprintf(stderr, "soak-run: cannot set up ports or %s\n", conf_path);
        return 2;
    }
    if (!daemon_start(&dmn, prog, conf_path, logpath)) {
        if (dmn.pid > 0)
            kill(dmn.pid, SIGKILL);
        return 2;
    }
    pid_t pid = dmn.pid;
    sleep_ms(200);
    int fd_idle = fd_count(pid);
    long rss_start = rss_kib(pid);
    say("soak: %s (pid %d) for %.1f min; echo on %d, relay on %d to %d and %d; %d "
        "streamers, %u short connections/s; work dir %s", prog, (int)pid, minutes, p_echo,
        p_relay, up1.port, up2.port, nstreamers, churn_rate, dir);
    say("start: rss %ld KiB, %d descriptors", rss_start, fd_idle);

    /* The load. */
    struct streamer *st = calloc((size_t)(nstreamers > 0 ? nstreamers : 1), sizeof(*st));
    int ports[2] = {p_echo, p_relay};
    for (int i = 0; i < nstreamers; i++) {
        st[i].id = i;
        st[i].li = i % 2;
        st[i].port = ports[i % 2];
        st[i].rate = 4 * MIB;
        if (pthread_create(&st[i].thread, NULL, stream_run, &st[i]) != 0) {
            fprintf(stderr, "soak-run: cannot start a thread\n");
            return 2;
        }
    }
    struct churn ch = {.ports = ports, .slots = 32, .rate = churn_rate};
    bool churning = churn_rate > 0 && pthread_create(&ch.thread, NULL, churn_run, &ch) == 0;

    /* The faults and the reports, until the time is up. */
    int64_t t0 = ms_now(), end = t0 + (int64_t)(minutes * 60000.0);
    int64_t next_reload = t0 + 5000, next_outage = t0 + 45000, outage_end = 0;
    int64_t next_report = t0 + (int64_t)report_s * 1000;
    int nreloads = 0, nbroken = 0, noutages = 0, variant = 0;
    long rss_first = -1, rss_max = rss_start;
    unsigned long long last_conns = 0;
    int64_t last_report = t0;
    while (ms_now() < end && !atomic_load(&interrupted)) {
        int64_t now = ms_now();
        if (!daemon_alive(&dmn)) {
            error("the daemon exited (status 0x%x)", dmn.status);
            break;
        }
        if (now >= next_reload) {
            next_reload = now + 5000;
            bool broken = nreloads % 10 == 5;
            if (broken) {
                int want = daemon_get(&dmn, &dmn.reload_failed) + 1;
                if (!write_conf(2))
                    error("cannot write %s", conf_path);
                kill(pid, SIGHUP);
                if (!daemon_wait(&dmn, &dmn.reload_failed, want, 5000))
                    error("SIGHUP with a broken file: no \"reload failed\" within 5 s");
                nbroken++;
            } else {
                variant = !variant;
                int want = daemon_get(&dmn, &dmn.reloaded) + 1;
                if (!write_conf(variant))
                    error("cannot write %s", conf_path);
                kill(pid, SIGHUP);
                if (!daemon_wait(&dmn, &dmn.reloaded, want, 5000))
                    error("SIGHUP: no \"reloaded\" within 5 s");
            }
            nreloads++;
        }
        if (outage_end == 0 && now >= next_outage) {
            atomic_store(&up2.paused, true);
            outage_end = now + 5000;
            noutages++;
            say("upstream u2 (port %d) goes away: stops accepting for 5 s", up2.port);
        } else if (outage_end != 0 && now >= outage_end) {
            atomic_store(&up2.paused, false);
            outage_end = 0;
            next_outage = now + 40000;
            say("upstream u2 is back");
        }
        if (now >= next_report) {
            next_report += (int64_t)report_s * 1000;
            unsigned long long conns = atomic_load(&served_conns[0]) + atomic_load(&served_conns[1]);
            unsigned long long bytes = atomic_load(&verified_total);
            long rss = rss_kib(pid);
            if (rss_first < 0)
                rss_first = rss;
            if (rss > rss_max)
                rss_max = rss;
            say("served %llu connections (%.0f/s), %.1f MiB verified, %llu errors; %d reloads "
                "(%d broken, refused), %d upstream outages; daemon rss %ld KiB, %d fds",
                conns, (double)(conns - last_conns) * 1000.0 / (double)(now - last_report),
                (double)bytes / MIB, (unsigned long long)atomic_load(&n_errors), nreloads,
                nbroken, noutages, rss, fd_count(pid));
            last_conns = conns;
            last_report = now;
        }
        sleep_ms(50);
    }
    if (atomic_load(&interrupted))
        say("interrupted: ending the load");
    int64_t load_ms = ms_now() - t0;

    /* The end: the load finishes, then everything is checked. */
    atomic_store(&load_stop, true);
    atomic_store(&up2.paused, false);
    if (churning)
        pthread_join(ch.thread, NULL);
    for (int i = 0; i < nstreamers; i++)
        pthread_join(st[i].thread, NULL);
    free(st);
    bool alive = daemon_alive(&dmn);
    int fd_end = -1;
    long rss_end = -1;
    if (alive) {
        for (int i = 0; i < 500 && fd_count(pid) != fd_idle; i++)
            sleep_ms(20);
        fd_end = fd_count(pid);
        rss_end = rss_kib(pid);
        if (fd_end != fd_idle)
            error("the daemon has %d descriptors after the load, %d before", fd_end, fd_idle);
        long base = rss_first > 0 ? rss_first : rss_start;
        if (rss_end - base > 8 * 1024)
            error("the daemon's RSS grew from %ld KiB (first report) to %ld KiB", base, rss_end);
        /* Its counters against ours.  Asked again (10 times at most) while
         * they differ: the daemon closes a connection's sockets before it
         * counts it out, so its last connections may lag a moment. */
        static const char *const names[2] = {"echo", "relay"};
        for (int i = 0; i < 2; i++) {
            char line[256] = "";
            bool agree = false;
            unsigned long long conns = atomic_load(&served_conns[i]);
            unsigned long long bytes = atomic_load(&served_bytes[i]);
            for (int attempt = 0; attempt < 10 && !agree; attempt++) {
                if (attempt > 0)
                    sleep_ms(100);
                int seq = daemon_get(&dmn, &dmn.counters_seq[i]);
                kill(pid, SIGUSR1);
                if (!daemon_wait(&dmn, &dmn.counters_seq[i], seq + 1, 5000))
                    continue;
                pthread_mutex_lock(&dmn.mu);
                snprintf(line, sizeof(line), "%s", dmn.counters[i]);
                pthread_mutex_unlock(&dmn.mu);
                agree = field(line, " open=") == 0 &&
                        field(line, " accepted=") == (long long)conns &&
                        field(line, " in=") == (long long)bytes &&
                        field(line, " out=") == (long long)bytes;
            }
            if (!agree)
                error("listener %s: the daemon counts \"%s\"; the clients %llu connections, "
                      "%llu bytes each way", names[i], line[0] ? strstr(line, "open=") : "-",
                      conns, bytes);
        }
    } else {
        error("the daemon is gone (status 0x%x)", dmn.status);
    }
    int64_t took = 0;
    int code = daemon_stop(&dmn, (SHUTDOWN_S + 3) * 1000, &took);
    if (code != 0)
        error("the daemon exited %d after SIGTERM (%lld ms)", code, (long long)took);
    if (dmn.errors > 0)
        error("the daemon logged %d errors, the last: %s", dmn.errors, dmn.last_error);
    if (dmn.reloaded != nreloads - nbroken || dmn.reload_failed != nbroken)
        error("the daemon logged %d reloads and %d failed ones; %d and %d were asked",
              dmn.reloaded, dmn.reload_failed, nreloads - nbroken, nbroken);
    up_stop(&up1);
    up_stop(&up2);
    if (dead_fd >= 0)
        close(dead_fd);

    unsigned long long conns = atomic_load(&served_conns[0]) + atomic_load(&served_conns[1]);
    unsigned long long bytes = atomic_load(&served_bytes[0]) + atomic_load(&served_bytes[1]);
    unsigned long long errs = atomic_load(&n_errors);
    say("soak: %s: %.1f min, %llu connections (%llu echo, %llu relayed), %.1f MiB verified "
        "each way, %llu errors; %d reloads (%d broken, refused), %d upstream outages, "
        "upstreams accepted %llu+%llu; daemon rss %ld -> %ld KiB (max %ld), fds %d -> %d, "
        "%d warnings, exit %d after %lld ms",
        errs == 0 ? "PASS" : "FAIL", (double)load_ms / 60000.0, conns,
        (unsigned long long)atomic_load(&served_conns[0]),
        (unsigned long long)atomic_load(&served_conns[1]), (double)bytes / MIB, errs, nreloads,
        nbroken, noutages, (unsigned long long)atomic_load(&up1.accepted),
        (unsigned long long)atomic_load(&up2.accepted), rss_first > 0 ? rss_first : rss_start,
        rss_end, rss_max, fd_idle, fd_end, dmn.warnings, code, (long long)took);
    if (errs == 0 && !keep)
        (void)nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    else
        say("the daemon's log and configuration are in %s", dir);
    free(pattern);
    return errs == 0 ? 0 : 1;
}
