/* Active health checks of upstream addresses, on the admin thread. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "generation.h"
#include "log.h"
#include "mio.h"
#include "upstream.h"

/* What a check is doing. */
enum check_state {
    CHECK_CONNECTING, /* TCP: the connect is under way */
    CHECK_SENDING,    /* TCP: writing `send` */
    CHECK_READING,    /* reading the answer (UDP: from the start) */
};

/* One check of one address, running: its socket, its deadline, and what
 * it needs of the settings, copied so that it does not depend on the
 * generation that started it. */
struct check {
    struct handler h;      /* its socket's token */
    struct timer timer;    /* its deadline: timeout */
    struct deferred later; /* freed after the batch that ended it */
    struct check *prev, *next;
    struct upstream_addr *ua; /* a reference (refs) */
    int fd;
    enum check_state state;
    bool udp;
    bool dead; /* ended; events still in the batch are ignored */
    int64_t timeout_ms;
    unsigned rise, fall;
    size_t send_len, sent;  /* `send`, and how much of it went */
    size_t expect_len, got; /* `expect`, and how much of it came */
    char listener[CONFIG_NAME_MAX + 1];
    char what[2 * ADDR_STRLEN + 8]; /* the address as the log names it */
    char *send, *expect;            /* in data */
    char data[];                    /* send, NUL, expect, NUL */
};

/* The checker's state, on the admin thread. */
static struct {
    struct daemon *d;
    struct loop *loop;
    bool started;
    struct timer scan; /* the next look at the generation */
    struct check *running;
    unsigned nrunning;
    bool starved;        /* a due check waits for one to end */
    struct ratelimit rl; /* warnings of our own shortages */
} ck = {.rl = {.burst = 5}};

/* ---- results -------------------------------------------------------------- */

/* ms as seconds for people: "1.0", "0.25", "0.001". */
static void format_seconds(int64_t ms, char *buf, size_t len)
{
    if (ms % 1000 == 0) {
        snprintf(buf, len, "%lld.0", (long long)(ms / 1000));
        return;
    }
    snprintf(buf, len, "%lld.%03lld", (long long)(ms / 1000), (long long)(ms % 1000));
    size_t n = strlen(buf);
    while (n > 0 && buf[n - 1] == '0')
        buf[--n] = '\0';
}

/* An errno's text, lowercase as the other reasons are ("connection
 * refused"). */
static void errno_text(int err, char *buf, size_t len)
{
    snprintf(buf, len, "%s", log_strerror(err));
    /* Only a capital followed by a lowercase letter: not "ICMP". */
    if (isupper((unsigned char)buf[0]) && islower((unsigned char)buf[1]))
        buf[0] = (char)tolower((unsigned char)buf[0]);
}

/* Writes s (n bytes) double-quoted with C escapes into buf, cut with "..."
 * before it would overflow len. */
static void quote(const char *s, size_t n, char *buf, size_t len)
{
    size_t o = 0;
    if (len < 8) {
        if (len > 0)
            buf[0] = '\0';
        return;
    }
    buf[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        char one[8];
        unsigned char b = (unsigned char)s[i];
        if (b == '"' || b == '\\')
            snprintf(one, sizeof(one), "\\%c", b);
        else if (b == '\r')
            snprintf(one, sizeof(one), "\\r");
        else if (b == '\n')
            snprintf(one, sizeof(one), "\\n");
        else if (b == '\t')
            snprintf(one, sizeof(one), "\\t");
        else if (b < 0x20 || b >= 0x7f)
            snprintf(one, sizeof(one), "\\x%02x", b);
        else
            snprintf(one, sizeof(one), "%c", b);
        size_t k = strlen(one);
        /* Room for this, a closing quote and NUL, or else for "...". */
        if (o + k + 2 > len || (i + 1 < n && o + k + 5 > len)) {
            if (o + 5 > len)
                o = len - 5;
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(buf + o, one, k);
        o += k;
    }
    buf[o++] = '"';
    buf[o] = '\0';
}

/* Records the result of c in its address, logs a change of state, and
 * frees c (after the batch of events). */
static void check_end(struct check *c, bool passed, const char *why)
{
    struct upstream_addr *ua = c->ua;
    struct loop *l = ck.loop;
    ua->check_last_ms = l->now_ms;
    ua->check_running = false;
    bool down = atomic_load(&ua->down);
    if (passed) {
        ua->check_fail = 0;
        ua->check_ok++;
        ua->check_why[0] = '\0';
        if (down && ua->check_ok >= c->rise) {
            atomic_store(&ua->down, false);
            log_notice("listener %s: upstream %s is up: check passed (%u in a row)",
                       c->listener, c->what, ua->check_ok);
        }
    } else {
        ua->check_ok = 0;
        ua->check_fail++;
        atomic_fetch_add_explicit(&ua->check_failures, 1, memory_order_relaxed);
        snprintf(ua->check_why, sizeof(ua->check_why), "%s", why);
        if (!down && ua->check_fail >= c->fall) {
            atomic_store(&ua->down, true);
            log_warn("listener %s: upstream %s is down: check: %s (%u in a row)",
                     c->listener, c->what, why, ua->check_fail);
        } else {
            log_debug("listener %s: upstream %s: check failed: %s (%u in a row)",
                      c->listener, c->what, why, ua->check_fail);
        }
    }
    /* The next scan: at once when a due check waits for this slot, else
     * when this address is due again, if that is sooner than planned. */
    int64_t at = ck.starved ? l->now_ms : ua->check_due_ms;
    if (ck.scan.slot == 0 || at < ck.scan.deadline_ms)
        (void)loop_timer_set(l, &ck.scan, at);

    if (c->fd >= 0) {
        loop_unwatch(l, c->fd);
        /* What the upstream sent beyond the answer is read first, so that
         * the close is a FIN rather than a reset. */
        char scrap[2048];
        for (int i = 0; !c->udp && i < 16 && recv(c->fd, scrap, sizeof(scrap), 0) > 0;
             i++)
            ;
        close(c->fd);
        c->fd = -1;
    }
    loop_timer_cancel(l, &c->timer);
    c->dead = true;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ck.running = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    ck.nrunning--;
    upstream_addr_put(ua);
    c->ua = NULL;
}

/* Frees a check that ended, once its batch of events is over. */
static void check_release(struct deferred *d)
{
    free(container_of(d, struct check, later));
}

/* check_end() of a failure, then its free. */
static void check_fail(struct check *c, const char *why)
{
    check_end(c, false, why);
    loop_defer(ck.loop, &c->later, check_release);
}

/* check_end() of a pass, then its free. */
static void check_pass(struct check *c)
{
    check_end(c, true, NULL);
    loop_defer(ck.loop, &c->later, check_release);
}

/* A failure for errno err ("connection refused"; for UDP, ECONNREFUSED is
 * an ICMP port unreachable). */
static void check_fail_errno(struct check *c, int err)
{
    char why[96];
    if (c->udp && err == ECONNREFUSED)
        snprintf(why, sizeof(why), "port unreachable (ICMP)");
    else
        errno_text(err, why, sizeof(why));
    check_fail(c, why);
}

/* Fails c: its answer did not start with `expect`. */
static void check_fail_answer(struct check *c)
{
    char q[64], why[96]; /* 26 + 63 bytes: they fit */
    quote(c->expect, c->expect_len, q, sizeof(q));
    snprintf(why, sizeof(why), "answer did not start with %s", q);
    check_fail(c, why);
}

/* ---- TCP and Unix sockets --------------------------------------------------- */

/* Moves a connected stream check on: writes `send`, then reads the answer,
 * until it waits (EAGAIN) or ends. */
static void stream_move(struct check *c)
{
    if (c->state == CHECK_SENDING) {
        while (c->sent < c->send_len) {
            ssize_t n = send(c->fd, c->send + c->sent, c->send_len - c->sent,
                             MSG_NOSIGNAL);
            if (n > 0) {
                c->sent += (size_t)n;
            } else if (n < 0 && errno == EAGAIN) {
                loop_rearm(ck.loop, c->fd, MIO_WRITABLE);
                return;
            } else if (n < 0 && errno != EINTR) {
                check_fail_errno(c, errno);
                return;
            }
        }
        if (c->expect_len == 0) {
            check_pass(c);
            return;
        }
        c->state = CHECK_READING;
    }
    while (c->got < c->expect_len) {
        char buf[512];
        size_t want = c->expect_len - c->got;
        ssize_t n = recv(c->fd, buf, want < sizeof(buf) ? want : sizeof(buf), 0);
        if (n > 0) {
            if (memcmp(buf, c->expect + c->got, (size_t)n) != 0) {
                check_fail_answer(c);
                return;
            }
            c->got += (size_t)n;
        } else if (n == 0) {
            check_fail(c, "closed before the answer");
            return;
        } else if (errno == EAGAIN) {
            loop_rearm(ck.loop, c->fd, MIO_READABLE);
            return;
        } else if (errno != EINTR) {
            check_fail_errno(c, errno);
            return;
        }
    }
    check_pass(c);
}

/* ---- UDP -------------------------------------------------------------------- */

/* Reads the answer of a UDP check: the first datagram decides. */
static void dgram_read(struct check *c)
{
    char small[1];
    char *buf = c->expect_len > 0 ? c->expect + c->expect_len + 1 : small;
    size_t cap = c->expect_len > 0 ? c->expect_len : sizeof(small);
    for (;;) {
        ssize_t n = recv(c->fd, buf, cap, 0);
        if (n >= 0) {
            if ((size_t)n < c->expect_len || memcmp(buf, c->expect, c->expect_len) != 0)
                check_fail_answer(c);
            else
                check_pass(c);
            return;
        }
        if (errno == EAGAIN) {
            loop_rearm(ck.loop, c->fd, MIO_READABLE);
            return;
        }
        if (errno != EINTR) {
            check_fail_errno(c, errno);
            return;
        }
    }
}

/* ---- running checks ----------------------------------------------------------- */

/* The check's socket is ready. */
static void on_event(struct handler *h, struct loop *l, const mio_event_t *ev)
{
    struct check *c = container_of(h, struct check, h);
    (void)l;
    (void)ev;
    if (c->dead)
        return;
    if (c->udp) {
        dgram_read(c);
        return;
    }
    if (c->state == CHECK_CONNECTING) {
        /* Any event ends the connect: connected, or an error. */
        int err = -mio_socket_take_error(c->fd);
        if (err != 0) {
            check_fail_errno(c, err);
            return;
        }
        c->state = CHECK_SENDING;
    }
    stream_move(c);
}

/* The check's deadline. */
static void on_timeout(struct timer *t)
{
    struct check *c = container_of(t, struct check, timer);
    char s[32], why[96];
    format_seconds(c->timeout_ms, s, sizeof(s));
    snprintf(why, sizeof(why), "timeout after %s s%s", s,
             c->state == CHECK_CONNECTING ? " connecting"
             : c->state == CHECK_SENDING  ? " sending"
                                          : " waiting for the answer");
    check_fail(c, why);
}

/* Whether err is a shortage of ours (descriptors, memory) rather than the
 * upstream's fault. */
static bool our_shortage(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

/* The socket of a check of ua, connecting (connected, for UDP); -errno. */
static int open_socket(const struct upstream_addr *ua, bool udp)
{
    const addr_t *a = &ua->addr;
    if (!udp)
        return a->u.sa.sa_family == AF_UNIX ? mio_unix_connect(a->u.un.sun_path)
                                            : mio_tcp_connect(&a->u.sa, a->len);
    int fd = socket(a->u.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, &a->u.sa, a->len) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

/* The address as the log names it: "127.0.0.1:6379", or "db.example:6379
 * (192.0.2.7:6379)" for an address of a name. */
static void describe(const struct upstream *up, const struct upstream_addr *ua, char *buf,
                     size_t len)
{
    if (up->text == NULL || strcmp(up->text, ua->name) == 0)
        snprintf(buf, len, "%s", ua->name);
    else
        snprintf(buf, len, "%s (%s)", up->text, ua->name);
}

/* Puts ua's check off for CHECK_RESCAN_MS after a shortage of ours (no
 * result: the upstream is not to blame), saying so (rate-limited). */
static void put_off(struct upstream_addr *ua, const char *what, int err)
{
    log_limited(LOG_WARNING, &ck.rl, ck.loop->now_ms, "more, not logged",
                "health checks: %s: %s; checks put off", what, log_strerror(err));
    ua->check_due_ms = ck.loop->now_ms + CHECK_RESCAN_MS;
}

/* Starts a check of up's address for listener l, due now; it may end at
 * once (a connect refused on the spot). */
static void check_begin(const struct listener *l, const struct upstream *up)
{
    const struct health_check_config *hc = &l->cfg->health_check;
    struct upstream_addr *ua = up->addrs[0];
    bool udp = l->cfg->protocol == PROTOCOL_UDP;
    size_t send_len = strlen(hc->send), expect_len = strlen(hc->expect);
    /* UDP reads its answer after expect, into as many bytes. */
    struct check *c = calloc(1, sizeof(*c) + send_len + 2 * expect_len + 2);
    if (c == NULL) {
        put_off(ua, "no memory", ENOMEM);
        return;
    }
    c->h.on_event = on_event;
    c->timer.fire = on_timeout;
    c->udp = udp;
    c->state = udp ? CHECK_READING : CHECK_CONNECTING;
    c->timeout_ms = hc->timeout_ms;
    c->rise = hc->rise;
    c->fall = hc->fall;
    snprintf(c->listener, sizeof(c->listener), "%s", l->cfg->name);
    describe(up, ua, c->what, sizeof(c->what));
    c->send = c->data;
    c->send_len = send_len;
    memcpy(c->send, hc->send, send_len + 1);
    c->expect = c->data + send_len + 1;
    c->expect_len = expect_len;
    memcpy(c->expect, hc->expect, expect_len + 1);
    c->fd = open_socket(ua, udp);
    if (c->fd < 0 && our_shortage(-c->fd)) {
        put_off(ua, "cannot open a socket", -c->fd);
        free(c);
        return;
    }
    if (c->fd >= 0) {
        mio_interest_t in = udp ? MIO_READABLE
                                : (mio_interest_t)(MIO_READABLE | MIO_WRITABLE);
        int err = loop_watch(ck.loop, c->fd, &c->h, in);
        if (err == 0 && (err = loop_timer_set(ck.loop, &c->timer,
                                              ck.loop->now_ms + c->timeout_ms)) < 0)
            loop_unwatch(ck.loop, c->fd);
        if (err < 0) {
            put_off(ua, "cannot watch a socket", -err);
            close(c->fd);
            free(c);
            return;
        }
    }
    c->ua = ua;
    atomic_fetch_add(&ua->refs, 1);
    c->next = ck.running;
    if (ck.running != NULL)
        ck.running->prev = c;
    ck.running = c;
    ck.nrunning++;
    ua->check_running = true;
    ua->check_due_ms = ck.loop->now_ms + hc->interval_ms;
    if (c->fd < 0) {
        check_fail_errno(c, -c->fd);
        return;
    }
    if (udp && send(c->fd, c->send, c->send_len, 0) < 0 && errno != EAGAIN &&
        errno != ENOBUFS)
        check_fail_errno(c, errno);
    /* A UDP datagram a full buffer lost: the timeout tells. */
}

/* ---- the scan ------------------------------------------------------------------ */

/* A relay whose checks are off: its address ua is not down by checks. */
static void checks_off(const struct listener *l, const struct upstream *up,
                       struct upstream_addr *ua)
{
    if (ua->check_running)
        return;
    ua->check_ok = ua->check_fail = 0;
    ua->check_due_ms = 0;
    if (atomic_load(&ua->down)) {
        atomic_store(&ua->down, false);
        char what[2 * ADDR_STRLEN + 8];
        describe(up, ua, what, sizeof(what));
        log_notice("listener %s: upstream %s is up: health checks are off", l->cfg->name,
                   what);
    }
}

/* The timer: starts the checks that are due in the current generation and
 * sets itself for the next one (CHECK_RESCAN_MS at most). */
static void scan(struct timer *t)
{
    (void)t;
    int64_t now = ck.loop->now_ms, next = now + CHECK_RESCAN_MS;
    ck.starved = false;
    struct generation *g = generation_current(ck.d);
    for (size_t i = 0; i < g->nlisteners; i++) {
        const struct listener *l = &g->listeners[i];
        if (l->cfg->mode != MODE_PROXY)
            continue;
        bool off = l->cfg->health_check.interval_ms == 0;
        for (size_t k = 0; k < l->nupstreams; k++) {
            const struct upstream *up = &l->upstreams[k];
            struct upstream_addr *ua = up->addrs[0];
            if (off) {
                checks_off(l, up, ua);
                continue;
            }
            /* An address in the relay's upstreams and its routes' is one
             * object: once started (or not due), it is passed over. */
            if (ua->check_running || up->loop_at[0] != NULL ||
                atomic_load(&ua->admin) == UPSTREAM_DISABLED)
                continue;
            if (ua->check_due_ms <= now && ck.nrunning >= CHECKS_MAX) {
                ck.starved = true;
                continue;
            }
            if (ua->check_due_ms <= now)
                check_begin(l, up);
            if (!ua->check_running && ua->check_due_ms < next)
                next = ua->check_due_ms;
        }
    }
    generation_unref(g);
    /* A check that ended meanwhile set the timer: the sooner wins. */
    if (ck.scan.slot == 0 || next < ck.scan.deadline_ms)
        (void)loop_timer_set(ck.loop, &ck.scan, next);
}

int check_start(struct daemon *d, struct loop *loop)
{
    if (ck.started)
        return 0;
    ck.d = d;
    ck.loop = loop;
    ck.scan.fire = scan;
    int e = loop_timer_set(loop, &ck.scan, loop_clock_ms());
    if (e < 0)
        return e;
    ck.started = true;
    return 0;
}

void check_stop(void)
{
    if (!ck.started)
        return;
    while (ck.running != NULL) {
        struct check *c = ck.running;
        ck.running = c->next;
        if (c->fd >= 0) {
            loop_unwatch(ck.loop, c->fd);
            close(c->fd);
        }
        loop_timer_cancel(ck.loop, &c->timer);
        c->ua->check_running = false;
        upstream_addr_put(c->ua);
        free(c);
    }
    ck.nrunning = 0;
    loop_timer_cancel(ck.loop, &ck.scan);
    ck.started = false;
}
