/*
 * mio-bench: a load generator for TCP echo servers and relays, on libmio.
 *
 *   mio-bench pingpong|stream|idle --port PORT [options]
 *   mio-bench --free-port          print a TCP port free on 127.0.0.1
 *
 * One process, one thread, non-blocking sockets on one mio_poll_t.
 *
 *   pingpong  each of C connections sends S bytes, waits for exactly those
 *             bytes back, and sends the next S; messages per second, and
 *             the latency of each message (first byte sent to last byte
 *             back) from a log-linear histogram: p50, p99, p99.9, max.
 *   stream    each connection writes as fast as the server takes it and
 *             reads the echo back; MB/s (10^6 bytes) echoed back.
 *   idle      opens C connections, exchanges one message of S bytes on
 *             each, holds them for the duration, and prints the growth of
 *             the server's resident memory per connection (--pid).
 *
 * Before any load, every connection exchanges one message, so that the
 * server (and a relay's upstream) has accepted them all; the warmup
 * follows, unmeasured, then the measured seconds.  With --pid, the
 * server's CPU time over the measured seconds (schedstat of each thread of
 * the process and its descendants) is printed per message or per GB.
 *
 * Every connection sends a deterministic stream of its own (a slice of a
 * pseudo-random table at an offset of its own), and every byte that comes
 * back is compared with what was sent at that offset.  A mismatch, a byte
 * too many, a connection the server resets or ends early, a connect that
 * fails: each is an error (exit status 1, a message on stderr), never a
 * number.  At the end every connection half-closes and must see the
 * server's FIN after all its bytes, so nothing is lost either.
 *
 * Always bounded in time: connecting and draining each have --timeout
 * seconds, and an alarm ends the process (exit status 3) if anything
 * hangs past warmup + duration + 3 * timeout + 5 s.
 *
 * Reading stops at a short read rather than at EAGAIN: on epoll, which is
 * the only backend this tool is built with, new data makes a new edge
 * anyway, and it saves one recv per message on the client's side.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mio.h"

/* ---- the pattern -------------------------------------------------------- */

/* A prime, so that offsets of different connections do not line up. */
#define PAT_LEN 65521u
/* Most bytes one recv or send moves: a slice of pat never wraps. */
#define IO_MAX 32768u

static uint8_t pat[2 * PAT_LEN];

static void pattern_init(void)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < PAT_LEN; i++) {
        x ^= x << 13; /* xorshift64 */
        x ^= x >> 7;
        x ^= x << 17;
        pat[i] = pat[i + PAT_LEN] = (uint8_t)(x >> 24);
    }
}

/* ---- the latency histogram ---------------------------------------------- */

/* Log-linear in nanoseconds: exact below 64 ns, then 32 buckets for each
 * power of two (a bucket is at most 1/32 = 3% wide). */
#define HIST_SUB 32
#define HIST_BUCKETS (64 + 58 * HIST_SUB)

struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t n, max;
};

static unsigned hist_index(uint64_t v)
{
    if (v < 64)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 6 */
    unsigned sub = (unsigned)(v >> (e - 5)) & (HIST_SUB - 1);
    return 64 + (e - 6) * HIST_SUB + sub;
}

/* The middle of bucket i, in ns. */
static double hist_value(unsigned i)
{
    if (i < 64)
        return i;
    unsigned e = (i - 64) / HIST_SUB + 6, sub = (i - 64) % HIST_SUB;
    double lo = ldexp(1.0, (int)e) * (1.0 + sub / (double)HIST_SUB);
    return lo + ldexp(1.0, (int)e) / HIST_SUB / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->n++;
    if (v > h->max)
        h->max = v;
}

/* The q-quantile (0 < q <= 1) in microseconds; 0 when empty. */
static double hist_quantile_us(const struct hist *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->n), seen = 0;
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            double v = hist_value(i);
            return (v > (double)h->max ? (double)h->max : v) / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

/* ---- errors and time ---------------------------------------------------- */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mio-bench: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "mio-bench: error: hard time limit reached\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(3);
}

/* CPU time this process used so far, in ns. */
static double self_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec) * 1e9 +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e3;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define NS(seconds) ((uint64_t)(1e9 * (seconds)))

/* ---- the server's memory ------------------------------------------------ */

/* A number after `key` in a /proc file of `pid`, or -1. */
static long proc_field_kb(int pid, const char *file, const char *key)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long v = -1;
    size_t klen = strlen(key);
    char line[256];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) == 0) {
            v = strtol(line + klen, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* The parent of `pid` from /proc/PID/stat, or -1. */
static int proc_ppid(int pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char buf[512];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the name may hold spaces and parens */
    int ppid;
    char state;
    if (p == NULL || sscanf(p + 1, " %c %d", &state, &ppid) != 2)
        return -1;
    return ppid;
}

/* The process `root` and every process below it (nginx's worker, socat's
 * forked children); *n is set to how many. */
static int *tree_pids(int root, size_t *count)
{
    int *pids = NULL, *ppids = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        int pid = atoi(de->d_name);
        int ppid = proc_ppid(pid);
        if (ppid < 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            pids = realloc(pids, cap * sizeof(*pids));
            ppids = realloc(ppids, cap * sizeof(*ppids));
            if (pids == NULL || ppids == NULL)
                die("out of memory");
        }
        pids[n] = pid;
        ppids[n++] = ppid;
    }
    if (d != NULL)
        closedir(d);
    /* Breadth first from root: in[] holds the tree found so far. */
    int *in = malloc((n + 1) * sizeof(*in));
    if (in == NULL)
        die("out of memory");
    size_t nin = 0;
    in[nin++] = root;
    for (size_t k = 0; k < nin; k++)
        for (size_t i = 0; i < n; i++)
            if (ppids[i] == in[k] && pids[i] != root)
                in[nin++] = pids[i];
    free(pids);
    free(ppids);
    *count = nin;
    return in;
}

struct mem {
    long rss_kb, pss_kb; /* summed over the process and its descendants */
    int procs;
};

/* Resident memory of `root` and of every process below it: VmRSS from
 * status, and Pss from smaps_rollup, which does not count pages shared
 * between them more than once. */
static struct mem tree_mem(int root)
{
    struct mem m = {0, 0, 0};
    size_t n;
    int *in = tree_pids(root, &n);
    for (size_t k = 0; k < n; k++) {
        long rss = proc_field_kb(in[k], "status", "VmRSS:");
        long pss = proc_field_kb(in[k], "smaps_rollup", "Pss:");
        if (rss < 0)
            continue; /* gone meanwhile, or a kernel thread */
        m.rss_kb += rss;
        m.pss_kb += pss > 0 ? pss : rss;
        m.procs++;
    }
    free(in);
    return m;
}

/* CPU time used so far by the processes pids[0..n) and all their threads,
 * in ns: the first field of each thread's schedstat (time on a CPU), or
 * utime + stime from stat where there is no schedstat. */
static double tree_cpu_ns(const int *pids, size_t n)
{
    double total = 0;
    char path[300], buf[512];
    for (size_t k = 0; k < n; k++) {
        snprintf(path, sizeof(path), "/proc/%d/task", pids[k]);
        DIR *d = opendir(path);
        struct dirent *de;
        bool got = false;
        while (d != NULL && (de = readdir(d)) != NULL) {
            if (!isdigit((unsigned char)de->d_name[0]))
                continue;
            snprintf(path, sizeof(path), "/proc/%d/task/%s/schedstat", pids[k],
                     de->d_name);
            FILE *f = fopen(path, "r");
            unsigned long long ns;
            if (f != NULL && fscanf(f, "%llu", &ns) == 1) {
                total += (double)ns;
                got = true;
            }
            if (f != NULL)
                fclose(f);
        }
        if (d != NULL)
            closedir(d);
        if (got)
            continue;
        snprintf(path, sizeof(path), "/proc/%d/stat", pids[k]);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *p = strrchr(buf, ')');
        unsigned long long ut, st;
        if (p != NULL &&
            sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                   &st) == 2)
            total += (double)(ut + st) * 1e9 / (double)sysconf(_SC_CLK_TCK);
    }
    return total;
}

/* ---- connections -------------------------------------------------------- */

enum mode { PINGPONG, STREAM, IDLE };
static const char *const mode_name[] = {"pingpong", "stream", "idle"};

enum cstate { C_NEW, C_CONNECTING, C_OPEN, C_SHUT, C_DONE };

struct conn {
    int fd;
    uint8_t state;
    bool busy;     /* pingpong/idle: a message is out */
    bool writable; /* the last send did not hit EAGAIN */
    uint32_t seed; /* where in pat its stream starts */
    uint64_t sent, rcvd;
    uint64_t msg_end; /* value of sent (and rcvd) when the message is done */
    uint64_t t_sent;  /* when the message's first byte went */
};

enum phase { P_CONNECT, P_PRIME, P_WARMUP, P_RUN, P_HOLD, P_DRAIN, P_SHUTDOWN, P_END };

static struct {
    enum mode mode;
    unsigned nconns;
    size_t size;
    double duration, warmup, timeout;
    int pid;
    bool json;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *host, *port;
} opt = {.nconns = 1,
         .duration = 5,
         .warmup = 1,
         .timeout = 10,
         .pid = 0,
         .host = "127.0.0.1"};

static struct {
    mio_poll_t *poll;
    mio_registry_t *reg;
    struct conn *c;
    enum phase phase;
    unsigned next_connect, connecting, open, busy, done;
    uint64_t now, t_phase_end, t_run, t_run_end;
    uint64_t messages, bytes;         /* counted while P_RUN */
    uint64_t messages_all, bytes_all; /* and over the whole run */
    struct mem before, after;         /* the server's, with --pid */
    int *pids;                        /* the server's processes, once all are open */
    size_t npids;
    double cpu_run_ns;  /* their CPU time during P_RUN */
    double self_run_ns; /* ours */
    struct hist hist;
    uint8_t buf[IO_MAX];
} g;

static void conn_fail(struct conn *c, const char *what, int err)
{
    die("connection %u: %s%s%s (sent %" PRIu64 ", received %" PRIu64 ")",
        (unsigned)(c - g.c), what, err ? ": " : "", err ? strerror(err) : "", c->sent,
        c->rcvd);
}

/* Checks n bytes that came back on c at its current receive offset. */
static void verify(struct conn *c, const uint8_t *p, size_t n)
{
    if (c->rcvd + n > c->sent)
        conn_fail(c, "the server sent more bytes than it was sent", 0);
    const uint8_t *want = pat + (c->seed + c->rcvd) % PAT_LEN;
    if (memcmp(p, want, n) == 0)
        return;
    size_t i = 0;
    while (p[i] == want[i])
        i++;
    die("connection %u: byte %" PRIu64 " of its stream is 0x%02x, expected "
        "0x%02x: the echo does not match what was sent",
        (unsigned)(c - g.c), c->rcvd + i, p[i], want[i]);
}

/* Sends from c's stream until `limit` is sent or the socket is full. */
static void send_upto(struct conn *c, uint64_t limit)
{
    while (c->sent < limit) {
        size_t n = limit - c->sent;
        if (n > IO_MAX)
            n = IO_MAX;
        ssize_t m = send(c->fd, pat + (c->seed + c->sent) % PAT_LEN, n, MSG_NOSIGNAL);
        if (m > 0) {
            c->sent += (uint64_t)m;
            continue;
        }
        if (m < 0 && errno == EINTR)
            continue;
        if (m < 0 && errno == EAGAIN) {
            c->writable = false;
            (void)mio_registry_rearm(g.reg, c->fd, MIO_WRITABLE);
            return;
        }
        conn_fail(c, "send", m < 0 ? errno : EPIPE);
    }
}

/* Starts the next message of n bytes on a connection. */
static void start_message(struct conn *c, size_t n)
{
    c->busy = true;
    g.busy++;
    c->msg_end = c->sent + n;
    c->t_sent = g.now;
    send_upto(c, c->msg_end);
}

static void message_done(struct conn *c)
{
    c->busy = false;
    g.busy--;
    g.messages_all++;
    if (g.phase == P_RUN) {
        g.messages++;
        hist_add(&g.hist, g.now - c->t_sent);
    }
    if (opt.mode == PINGPONG && (g.phase == P_WARMUP || g.phase == P_RUN))
        start_message(c, opt.size);
}

static void stream_fill(struct conn *c)
{
    if (g.phase == P_WARMUP || g.phase == P_RUN)
        send_upto(c, UINT64_MAX);
}

/* Reads what is there; false when the server's FIN came. */
static bool read_some(struct conn *c, bool to_eof)
{
    for (;;) {
        ssize_t n = recv(c->fd, g.buf, sizeof(g.buf), 0);
        if (n > 0) {
            verify(c, g.buf, (size_t)n);
            c->rcvd += (uint64_t)n;
            g.bytes_all += (uint64_t)n;
            if (g.phase == P_RUN)
                g.bytes += (uint64_t)n;
            if (c->busy && c->rcvd == c->msg_end)
                message_done(c);
            if ((size_t)n < sizeof(g.buf) && !to_eof)
                return true; /* drained: the next byte makes a new edge */
            continue;
        }
        if (n == 0)
            return false;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            (void)mio_registry_rearm(g.reg, c->fd, MIO_READABLE);
            return true;
        }
        conn_fail(c, "recv", errno);
    }
}

static void start_connects(void)
{
    while (g.next_connect < opt.nconns && g.connecting < 256) {
        struct conn *c = &g.c[g.next_connect];
        int fd = mio_tcp_connect((struct sockaddr *)&opt.addr, opt.addrlen);
        if (fd < 0)
            die("connection %u: connect to %s port %s: %s", g.next_connect, opt.host,
                opt.port, strerror(-fd));
        c->fd = fd;
        c->state = C_CONNECTING;
        c->seed = (uint32_t)(((uint64_t)g.next_connect * 2654435761u + 12345u) % PAT_LEN);
        int err = mio_registry_register(g.reg, fd, (mio_token_t)g.next_connect,
                                        MIO_READABLE | MIO_WRITABLE);
        if (err < 0)
            die("register: %s", strerror(-err));
        g.next_connect++;
        g.connecting++;
    }
}

static void on_event(struct conn *c, const mio_event_t *ev)
{
    if (c->state == C_CONNECTING) {
        if (!mio_event_is_writable(ev) && !mio_event_is_error(ev) &&
            !mio_event_is_write_closed(ev))
            return;
        int err = mio_socket_take_error(c->fd);
        if (err < 0)
            die("connection %u: connect to %s port %s: %s", (unsigned)(c - g.c), opt.host,
                opt.port, strerror(-err));
        (void)mio_tcp_set_nodelay(c->fd, true);
        c->state = C_OPEN;
        c->writable = true;
        g.connecting--;
        g.open++;
        start_connects();
        return;
    }
    if (c->state == C_DONE)
        return;
    if (mio_event_is_error(ev)) {
        int err = mio_socket_take_error(c->fd);
        conn_fail(c, "the connection failed", err < 0 ? -err : ECONNRESET);
    }
    if (mio_event_is_writable(ev)) {
        c->writable = true;
        if (c->busy && c->sent < c->msg_end)
            send_upto(c, c->msg_end);
        else if (opt.mode == STREAM && c->state == C_OPEN)
            stream_fill(c);
    }
    bool readable = mio_event_is_readable(ev) || mio_event_is_read_closed(ev);
    if (!readable)
        return;
    if (read_some(c, mio_event_is_read_closed(ev))) {
        if (opt.mode == STREAM && c->writable && c->state == C_OPEN)
            stream_fill(c);
        return;
    }
    /* The server's FIN. */
    if (c->state != C_SHUT)
        conn_fail(c, "the server closed the connection", 0);
    if (c->rcvd != c->sent)
        conn_fail(c, "the server closed before echoing everything", 0);
    c->state = C_DONE;
    (void)mio_registry_deregister(g.reg, c->fd);
    close(c->fd);
    c->fd = -1;
    g.done++;
}

/* ---- phases -------------------------------------------------------------- */

static void enter(enum phase p, uint64_t end)
{
    g.phase = p;
    g.t_phase_end = end;
}

/* Every connection exchanges one message first, so that the server (and a
 * relay's upstream) has accepted them all before anything is measured. */
static void begin_prime(void)
{
    enter(P_PRIME, g.now + NS(opt.timeout));
    size_t n = opt.mode == STREAM ? 64 : opt.size;
    for (unsigned i = 0; i < opt.nconns; i++)
        start_message(&g.c[i], n);
}

static void begin_load(void)
{
    enter(P_WARMUP, g.now + NS(opt.warmup));
    for (unsigned i = 0; i < opt.nconns; i++) {
        if (opt.mode == PINGPONG)
            start_message(&g.c[i], opt.size);
        else
            stream_fill(&g.c[i]);
    }
}

static void begin_shutdown(void)
{
    enter(P_SHUTDOWN, g.now + NS(opt.timeout));
    for (unsigned i = 0; i < opt.nconns; i++) {
        struct conn *c = &g.c[i];
        if (c->state != C_OPEN)
            continue;
        /* Bytes of a stream still unsent are simply not sent: the server
         * must echo exactly what it got, then pass the FIN. */
        int e = mio_socket_shutdown(c->fd, SHUT_WR);
        if (e < 0)
            conn_fail(c, "shutdown", -e);
        c->state = C_SHUT;
    }
}

/* Moves on when a phase is over; false at the end. */
static bool advance(void)
{
    switch (g.phase) {
    case P_CONNECT:
        if (g.open == opt.nconns) {
            begin_prime();
            return true;
        }
        if (g.now >= g.t_phase_end)
            die("only %u of %u connections were open after %.1f s", g.open, opt.nconns,
                opt.timeout);
        return true;
    case P_PRIME:
        if (g.busy == 0) {
            if (opt.mode == IDLE) {
                enter(P_HOLD, g.now + NS(opt.duration));
            } else {
                if (opt.pid)
                    g.pids = tree_pids(opt.pid, &g.npids);
                g.now = now_ns();
                begin_load();
            }
        } else if (g.now >= g.t_phase_end) {
            die("%u of %u connections had no echo of their first message after "
                "%.1f s",
                g.busy, opt.nconns, opt.timeout);
        }
        return true;
    case P_WARMUP:
        if (g.now >= g.t_phase_end) {
            g.messages = g.bytes = 0;
            memset(&g.hist, 0, sizeof(g.hist));
            if (g.pids != NULL)
                g.cpu_run_ns = -tree_cpu_ns(g.pids, g.npids);
            g.self_run_ns = -self_cpu_ns();
            g.t_run = now_ns();
            enter(P_RUN, g.t_run + NS(opt.duration));
        }
        return true;
    case P_RUN:
        if (g.now >= g.t_phase_end) {
            g.t_run_end = g.now;
            g.self_run_ns += self_cpu_ns();
            if (g.pids != NULL)
                g.cpu_run_ns += tree_cpu_ns(g.pids, g.npids);
            enter(P_DRAIN, now_ns() + NS(opt.timeout));
        }
        return true;
    case P_HOLD:
        if (g.now >= g.t_phase_end) {
            if (opt.pid)
                g.after = tree_mem(opt.pid);
            g.now = now_ns();
            begin_shutdown();
        }
        return true;
    case P_DRAIN:
        if (g.busy == 0) {
            begin_shutdown();
            return true;
        }
        if (g.now >= g.t_phase_end)
            die("%u messages were not echoed back %.1f s after the end", g.busy,
                opt.timeout);
        return true;
    case P_SHUTDOWN:
        if (g.done == opt.nconns)
            return false;
        if (g.now >= g.t_phase_end)
            die("%u of %u connections were not closed by the server %.1f s "
                "after they were half-closed",
                opt.nconns - g.done, opt.nconns, opt.timeout);
        return true;
    case P_END:
        return false;
    }
    return false;
}

static void run_loop(mio_events_t *events)
{
    for (;;) {
        g.now = now_ns();
        if (!advance())
            return;
        uint64_t wait = g.t_phase_end > g.now ? g.t_phase_end - g.now : 0;
        if (wait > NS(0.1))
            wait = NS(0.1);
        struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
        int err = mio_poll_poll(g.poll, events, &ts);
        if (err == -EINTR)
            continue;
        if (err < 0)
            die("poll: %s", strerror(-err));
        g.now = now_ns();
        for (size_t i = 0; i < mio_events_len(events); i++) {
            const mio_event_t *ev = mio_events_get(events, i);
            on_event(&g.c[mio_event_token(ev)], ev);
        }
    }
}

/* ---- options and main ----------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: mio-bench pingpong|stream|idle --port PORT [options]\n"
          "       mio-bench --free-port\n"
          "  --host HOST     server address (127.0.0.1)\n"
          "  --port PORT     server port\n"
          "  -c N            connections (1)\n"
          "  -s BYTES        message size (64); for stream, bytes per send (16384)\n"
          "  -d SECONDS      measured time (5); for idle, how long they are held\n"
          "  --warmup SECS   unmeasured load before (1)\n"
          "  --pid PID       the server: memory of it and its children\n"
          "  --timeout SECS  to connect all, and to drain at the end (10)\n"
          "  --json          one JSON object on stdout\n",
          f);
}

static double num(const char *s, const char *what, double lo, double hi)
{
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "mio-bench: %s: expected a number from %g to %g, got \"%s\"\n",
                what, lo, hi, s);
        exit(2);
    }
    return v;
}

/* Binds 127.0.0.1 on ports below the ephemeral range until one is free. */
static int free_port(void)
{
    srand((unsigned)(now_ns() ^ (uint64_t)getpid() << 16));
    for (int tries = 0; tries < 1000; tries++) {
        int port = 15000 + rand() % 17000;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0)
            close(fd);
        if (ok) {
            printf("%d\n", port);
            return 0;
        }
    }
    fputs("mio-bench: no free port found\n", stderr);
    return 1;
}

static void resolve(void)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV},
                    *res;
    int err = getaddrinfo(opt.host, opt.port, &hints, &res);
    if (err != 0) {
        fprintf(stderr, "mio-bench: %s port %s: %s\n", opt.host, opt.port,
                gai_strerror(err));
        exit(2);
    }
    memcpy(&opt.addr, res->ai_addr, res->ai_addrlen);
    opt.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
}

int main(int argc, char **argv)
{
    enum { O_HOST = 256, O_PORT, O_WARMUP, O_PID, O_JSON, O_TIMEOUT, O_FREE };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"pid", required_argument, NULL, O_PID},
        {"json", no_argument, NULL, O_JSON},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"free-port", no_argument, NULL, O_FREE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool size_set = false;
    int o;
    while ((o = getopt_long(argc, argv, "c:s:d:h", longopts, NULL)) != -1) {
        switch (o) {
        case 'c':
            opt.nconns = (unsigned)num(optarg, "-c", 1, 1000000);
            break;
        case 's':
            opt.size = (size_t)num(optarg, "-s", 1, 1 << 30);
            size_set = true;
            break;
        case 'd':
            opt.duration = num(optarg, "-d", 0.01, 3600);
            break;
        case O_HOST:
            opt.host = optarg;
            break;
        case O_PORT:
            opt.port = optarg;
            break;
        case O_WARMUP:
            opt.warmup = num(optarg, "--warmup", 0, 3600);
            break;
        case O_PID:
            opt.pid = (int)num(optarg, "--pid", 1, INT_MAX);
            break;
        case O_JSON:
            opt.json = true;
            break;
        case O_TIMEOUT:
            opt.timeout = num(optarg, "--timeout", 0.1, 3600);
            break;
        case O_FREE:
            return free_port();
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1 || opt.port == NULL) {
        usage(stderr);
        return 2;
    }
    const char *m = argv[optind];
    if (strcmp(m, "pingpong") == 0)
        opt.mode = PINGPONG;
    else if (strcmp(m, "stream") == 0)
        opt.mode = STREAM;
    else if (strcmp(m, "idle") == 0)
        opt.mode = IDLE;
    else {
        usage(stderr);
        return 2;
    }
    if (!size_set)
        opt.size = opt.mode == STREAM ? 16384 : 64;
    if (opt.mode == STREAM && opt.size > IO_MAX)
        opt.size = IO_MAX;
    resolve();

    /* Enough descriptors for the connections, within the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < opt.nconns + 64) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < opt.nconns + 64)
            die("%u connections need %u descriptors; the limit is %llu", opt.nconns,
                opt.nconns + 64, (unsigned long long)rl.rlim_cur);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)ceil(opt.warmup + opt.duration + 3 * opt.timeout + 5));

    pattern_init();
    g.c = calloc(opt.nconns, sizeof(*g.c));
    mio_events_t *events = mio_events_new(1024);
    if (g.c == NULL || events == NULL)
        die("out of memory");
    int err = mio_poll_new(&g.poll);
    if (err < 0)
        die("poll: %s", strerror(-err));
    g.reg = mio_poll_registry(g.poll);

    if (opt.pid) {
        size_t n;
        free(tree_pids(opt.pid, &n));
        if (proc_ppid(opt.pid) < 0)
            die("no process %d", opt.pid);
        if (opt.mode == IDLE)
            g.before = tree_mem(opt.pid);
    }

    g.now = now_ns();
    enter(P_CONNECT, g.now + NS(opt.timeout));
    start_connects();
    run_loop(events);
    struct mem before = g.before, after = g.after;
    bool mem = opt.pid && opt.mode == IDLE, cpu = opt.pid && opt.mode != IDLE;

    double secs = opt.mode == IDLE ? opt.duration : (double)(g.t_run_end - g.t_run) / 1e9;
    double mps = opt.mode == PINGPONG ? (double)g.messages / secs : 0;
    double mbps = opt.mode == IDLE ? 0 : (double)g.bytes / secs / 1e6;
    double per_conn = 0, pss_per_conn = 0;
    if (mem) {
        per_conn = (double)(after.rss_kb - before.rss_kb) * 1024.0 / opt.nconns;
        pss_per_conn = (double)(after.pss_kb - before.pss_kb) * 1024.0 / opt.nconns;
    }
    /* The server's CPU: share of one CPU, and per message or per GB. */
    double cpu_pct = 0, cpu_us_msg = 0, cpu_s_gb = 0;
    if (cpu) {
        cpu_pct = g.cpu_run_ns / (secs * 1e9) * 100;
        if (g.messages)
            cpu_us_msg = g.cpu_run_ns / 1e3 / (double)g.messages;
        if (g.bytes)
            cpu_s_gb = g.cpu_run_ns / (double)g.bytes;
    }
    double p50 = hist_quantile_us(&g.hist, 0.50), p99 = hist_quantile_us(&g.hist, 0.99),
           p999 = hist_quantile_us(&g.hist, 0.999), max = (double)g.hist.max / 1000.0;

    if (opt.json) {
        printf("{\"mode\":\"%s\",\"connections\":%u,\"size\":%zu,\"seconds\":%.3f",
               mode_name[opt.mode], opt.nconns, opt.size, secs);
        if (opt.mode == PINGPONG)
            printf(",\"messages\":%" PRIu64 ",\"msgs_per_s\":%.0f,\"p50_us\":%.1f,"
                   "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f",
                   g.messages, mps, p50, p99, p999, max);
        if (opt.mode != IDLE)
            printf(",\"bytes\":%" PRIu64 ",\"mb_per_s\":%.1f,\"client_cpu_pct\":%.1f",
                   g.bytes, mbps, g.self_run_ns / (secs * 1e9) * 100);
        printf(",\"messages_all\":%" PRIu64 ",\"bytes_all\":%" PRIu64, g.messages_all,
               g.bytes_all);
        if (cpu) {
            printf(",\"procs\":%zu,\"server_cpu_pct\":%.1f", g.npids, cpu_pct);
            if (opt.mode == PINGPONG)
                printf(",\"server_cpu_us_per_msg\":%.3f", cpu_us_msg);
            else
                printf(",\"server_cpu_s_per_gb\":%.3f", cpu_s_gb);
        }
        if (mem)
            printf(",\"procs\":%d,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,"
                   "\"rss_per_conn_b\":%.0f,\"pss_per_conn_b\":%.0f",
                   after.procs, before.rss_kb, after.rss_kb, per_conn, pss_per_conn);
        printf(",\"verified\":true}\n");
    } else {
        printf("%s: %u connections, %zu B, %.2f s", mode_name[opt.mode], opt.nconns,
               opt.size, secs);
        if (opt.mode == PINGPONG)
            printf(": %.0f msg/s, latency p50 %.1f us, p99 %.1f us, p99.9 %.1f us, "
                   "max %.1f us",
                   mps, p50, p99, p999, max);
        else if (opt.mode == STREAM)
            printf(": %.1f MB/s echoed", mbps);
        if (cpu && opt.mode == PINGPONG)
            printf("; server CPU %.0f%%, %.2f us per message", cpu_pct, cpu_us_msg);
        else if (cpu)
            printf("; server CPU %.0f%%, %.3f s per GB", cpu_pct, cpu_s_gb);
        if (mem)
            printf(": server RSS %ld -> %ld kB (%d processes): %.0f B per connection "
                   "(PSS %.0f B)",
                   before.rss_kb, after.rss_kb, after.procs, per_conn, pss_per_conn);
        printf("; every byte verified\n");
    }
    return 0;
}
