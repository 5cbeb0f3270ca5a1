/*
 * mio-bench: a load generator for TCP echo servers and relays, on libmio.
 *
 *   mio-bench pingpong|stream|idle|churn|handshake|udp --port PORT [options]
 *   mio-bench --free-port          print a port free on 127.0.0.1 (TCP and UDP)
 *
 * One process, one thread, non-blocking sockets on one mio_poll_t.
 *
 *   pingpong  each of C connections sends S bytes, waits for exactly those
 *             bytes back, and sends the next S; messages per second, and
 *             the latency of each message (first byte sent to last byte
 *             back) from a log-linear histogram: p50, p99, p99.9, max.
 *   stream    each connection writes as fast as the server takes it, S
 *             bytes a send (32 KiB unless -s says; at most 64 KiB), and
 *             reads the echo back as much at a time (32 KiB at least);
 *             MB/s (10^6 bytes) echoed back.
 *   idle      opens C connections, exchanges one message of S bytes on
 *             each, holds them for the duration, and prints the growth of
 *             the server's resident memory per connection (--pid).
 *   churn     each of C loops connects, sends one message of S bytes,
 *             reads it back, half-closes, waits for the server's FIN,
 *             closes, and starts over; new connections per second, and
 *             the server's CPU per connection.
 *   handshake churn over TLS: each connection makes a full TLS handshake
 *             first (no session is ever resumed) and sends close_notify
 *             before its FIN; handshakes per second.
 *   udp       C flows (a UDP socket each) keep W datagrams of S bytes
 *             outstanding each (-w), resending what is unanswered after
 *             --resend seconds; datagrams answered per second, losses,
 *             duplicates, and every answer checked byte for byte (see
 *             "udp" below).
 *
 * --tls runs pingpong and stream over TLS.  Every TLS connection offers
 * TLS 1.3 only, the one cipher suite TLS_AES_128_GCM_SHA256 and the one
 * key exchange group X25519, so that every server negotiates the same;
 * each handshake is checked for them, and --tls-ca FILE verifies the
 * server's certificate against FILE.  The first handshake's version,
 * suite and group and the session tickets the server sent (counted, never
 * used) are printed.  Over TLS, the server's CPU time is utime + stime of
 * each of its processes (/proc/PID/stat), which keeps the time of threads
 * that have ended (stunnel runs a thread per connection); --backend-pid
 * measures the echo server behind a relay the same way, separately.
 *
 * Before any load, every connection exchanges one message, so that the
 * server (and a relay's upstream) has accepted them all; the warmup
 * follows, unmeasured, then the measured seconds.  With --pid, the
 * server's CPU time over the measured seconds (schedstat of each thread of
 * the process and its descendants) is printed per message, per connection
 * (churn, with the time of the children the server reaped) or per GB.
 *
 * Every connection sends a deterministic stream of its own (a slice of a
 * pseudo-random table at an offset of its own), and every byte that comes
 * back is compared with what was sent at that offset.  A mismatch, a byte
 * too many, a connection the server resets or ends early, a connect that
 * fails: each is an error (exit status 1, a message on stderr), never a
 * number.  At the end every connection half-closes and must see the
 * server's FIN after all its bytes, so nothing is lost either.  (Over TLS
 * a connection first waits for the echo of all it sent, then sends
 * close_notify and its FIN: how a TLS server passes a half-close on is
 * not what is measured.)
 *
 * Always bounded in time: connecting and draining each have --timeout
 * seconds, and an alarm ends the process (exit status 3) if anything
 * hangs past warmup + duration + 3 * timeout + 5 s.
 *
 * Reading stops at a short read rather than at EAGAIN: on epoll, which is
 * the only backend this tool is built with, new data makes a new edge
 * anyway, and it saves one recv per message on the client's side.  Not
 * over TLS, where OpenSSL may hold bytes already taken from the socket:
 * there reading goes on until OpenSSL asks to wait.
 *
 * TLS needs OpenSSL (-DMIO_BENCH_TLS -lssl -lcrypto); built without it,
 * the TLS modes say so and exit with status 2.
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

#ifdef MIO_BENCH_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

/* ---- the pattern -------------------------------------------------------- */

/* A prime, so that offsets of different connections do not line up. */
#define PAT_LEN 65521u
/* Most bytes one recv or send moves (a stream's -s at most): pat repeats
 * its start after PAT_LEN, so that a slice of it never wraps. */
#define IO_MAX 65536u
/* What one recv or send moves unless a stream's -s asks for more. */
#define IO_DEFAULT 32768u

static uint8_t pat[PAT_LEN + IO_MAX];

static void pattern_init(void)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < PAT_LEN; i++) {
        x ^= x << 13; /* xorshift64 */
        x ^= x >> 7;
        x ^= x << 17;
        pat[i] = (uint8_t)(x >> 24);
    }
    for (size_t i = PAT_LEN; i < sizeof(pat); i++)
        pat[i] = pat[i - PAT_LEN];
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

/* utime + stime of process `pid` (all its threads, those that ended
 * too) from /proc/PID/stat, in ns; 0 when it is gone. */
static double proc_stat_cpu_ns(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (p == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
               &st) != 2)
        return 0;
    return (double)(ut + st) * 1e9 / (double)sysconf(_SC_CLK_TCK);
}

/* CPU time used so far by the processes pids[0..n), in ns, by
 * proc_stat_cpu_ns(): coarser than schedstat (clock ticks), but it keeps
 * the time of threads that have ended. */
static double tree_stat_cpu_ns(const int *pids, size_t n)
{
    double total = 0;
    for (size_t k = 0; k < n; k++)
        total += proc_stat_cpu_ns(pids[k]);
    return total;
}

/* CPU time used so far by the processes pids[0..n) and all their threads,
 * in ns: the first field of each thread's schedstat (time on a CPU), or
 * utime + stime from stat where there is no schedstat. */
static double tree_cpu_ns(const int *pids, size_t n)
{
    double total = 0;
    char path[300];
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
        if (!got)
            total += proc_stat_cpu_ns(pids[k]);
    }
    return total;
}

/* The CPU time of the tree below root so far, in ns: every process of it
 * as it is now (socat forks a process per flow, connection or datagram),
 * schedstat of each thread, plus the time of the children each has reaped
 * (cutime and cstime in /proc/PID/stat, in clock ticks), which keeps that
 * of the processes that ended meanwhile.  *most, when given, keeps the
 * most processes seen. */
static double tree_reaped_cpu_ns(int root, size_t *most)
{
    size_t n;
    int *pids = tree_pids(root, &n);
    double total = tree_cpu_ns(pids, n);
    for (size_t k = 0; k < n; k++) {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", pids[k]);
        FILE *fp = fopen(path, "r");
        if (fp == NULL)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[len] = '\0';
        char *p = strrchr(buf, ')');
        long long cut, cst;
        if (p != NULL && sscanf(p + 1,
                                " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u "
                                "%lld %lld",
                                &cut, &cst) == 2)
            total += (double)(cut + cst) * 1e9 / (double)sysconf(_SC_CLK_TCK);
    }
    if (most != NULL && n > *most)
        *most = n;
    free(pids);
    return total;
}

/* ---- connections -------------------------------------------------------- */

/* churn is the mode of loops of new connections; over TLS its name is
 * handshake. */
enum mode { PINGPONG, STREAM, IDLE, CHURN, UDP };
static const char *const mode_name[] = {"pingpong", "stream", "idle", "churn", "udp"};

enum cstate { C_NEW, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_SHUT, C_DONE };

struct conn {
    int fd;
    uint8_t state;
    bool busy;     /* pingpong/idle: a message is out */
    bool writable; /* the last send did not hit EAGAIN */
    uint32_t seed; /* where in pat its stream starts */
    uint64_t sent, rcvd;
    uint64_t msg_end; /* value of sent (and rcvd) when the message is done */
    uint64_t t_sent;  /* when the message's first byte went */
    void *ssl;        /* its SSL, over TLS */
    uint32_t wpend;   /* bytes of an SSL_write to be called again with them */
    bool read_wants_write, write_wants_read; /* what OpenSSL last asked */
};

enum phase { P_CONNECT, P_PRIME, P_WARMUP, P_RUN, P_HOLD, P_DRAIN, P_SHUTDOWN, P_END };

static struct {
    enum mode mode;
    unsigned nconns;
    unsigned window; /* udp: datagrams each flow keeps outstanding */
    double resend;   /* udp: seconds before an unanswered datagram is sent again */
    size_t size;
    double duration, warmup, timeout;
    int pid, backend_pid;
    bool json, tls;
    const char *tls_ca;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *host, *port;
} opt = {.nconns = 1,
         .window = 1,
         .resend = 0.2,
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
    unsigned active;   /* churn: loops in the middle of a connection */
    size_t wmax, rmax; /* most bytes one send, one recv moves */
    uint64_t now, t_phase_end, t_run, t_run_end;
    /* Counted while P_RUN, and over the whole run; cycles: churn's
     * connections ended. */
    uint64_t messages, bytes, cycles;
    uint64_t messages_all, bytes_all, cycles_all, cycles_started;
    struct mem before, after; /* the server's, with --pid */
    int *pids;                /* the server's processes, once all are open */
    int *bpids;               /* and the backend's, with --backend-pid */
    size_t npids, nbpids;
    double cpu_run_ns;     /* their CPU time during P_RUN */
    double backend_run_ns; /* the backend's */
    double self_run_ns;    /* ours */
    struct hist hist;
    uint8_t buf[IO_MAX];
} g;

static void conn_fail(struct conn *c, const char *what, int err)
{
    die("connection %u: %s%s%s (sent %" PRIu64 ", received %" PRIu64 ")",
        (unsigned)(c - g.c), what, err ? ": " : "", err ? strerror(err) : "", c->sent,
        c->rcvd);
}

/* ---- TLS ------------------------------------------------------------------ */

/* What every connection offers: the one suite and group (and TLS 1.3). */
#define TLS_SUITE "TLS_AES_128_GCM_SHA256"
#define TLS_GROUP "X25519"

/* What the first handshake negotiated, and the session tickets the server
 * sent over the whole run (taken and dropped: nothing is ever resumed). */
static struct {
    char version[16], suite[48], group[32];
    uint64_t tickets;
} tls;

#ifdef MIO_BENCH_TLS

static SSL_CTX *tls_ctx;

/* Dies with OpenSSL's reason for the failure of `what` on c (or on no
 * connection when c is NULL). */
static void tls_fail(struct conn *c, const char *what, int ssl_err)
{
    char reason[256] = "";
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    if (c == NULL)
        die("%s: %s", what, e ? reason : "failed");
    if (ssl_err == SSL_ERROR_SYSCALL && e == 0)
        conn_fail(c, what, errno ? errno : ECONNRESET);
    long v = SSL_get_verify_result(c->ssl);
    if (v != X509_V_OK)
        die("connection %u: %s: the server's certificate: %s", (unsigned)(c - g.c), what,
            X509_verify_cert_error_string(v));
    die("connection %u: %s: %s", (unsigned)(c - g.c), what, e ? reason : "failed");
}

static int tls_on_ticket(SSL *ssl, SSL_SESSION *session)
{
    (void)ssl;
    (void)session;
    tls.tickets++;
    return 0; /* not kept */
}

static void tls_init(void)
{
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (tls_ctx == NULL)
        tls_fail(NULL, "SSL_CTX_new", 0);
    if (!SSL_CTX_set_min_proto_version(tls_ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(tls_ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(tls_ctx, TLS_SUITE) ||
        !SSL_CTX_set1_groups_list(tls_ctx, TLS_GROUP))
        tls_fail(NULL, "TLS 1.3, " TLS_SUITE ", " TLS_GROUP, 0);
    if (opt.tls_ca != NULL) {
        if (!SSL_CTX_load_verify_locations(tls_ctx, opt.tls_ca, NULL))
            tls_fail(NULL, opt.tls_ca, 0);
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
    }
    /* A write that found the socket full is repeated from the same place
     * of the pattern, with the same length. */
    SSL_CTX_set_mode(tls_ctx,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* A server may end with its FIN alone: the byte counts still decide. */
    SSL_CTX_set_options(tls_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Tickets are counted through the callback, and never stored. */
    SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_CLIENT |
                                                SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(tls_ctx, tls_on_ticket);
}

static void tls_start(struct conn *c)
{
    SSL *ssl = SSL_new(tls_ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, c->fd))
        tls_fail(NULL, "SSL_new", 0);
    SSL_set_connect_state(ssl);
    c->ssl = ssl;
}

static void tls_free(struct conn *c)
{
    SSL_free(c->ssl);
    c->ssl = NULL;
}

/* Checks what a finished handshake negotiated; the first one's is kept. */
static void tls_check(struct conn *c)
{
    SSL *ssl = c->ssl;
    const SSL_CIPHER *suite = SSL_get_current_cipher(ssl);
    const char *name = suite ? SSL_CIPHER_get_name(suite) : "none";
    if (SSL_version(ssl) != TLS1_3_VERSION || strcmp(name, TLS_SUITE) != 0)
        die("connection %u: the server negotiated %s %s, not TLSv1.3 " TLS_SUITE,
            (unsigned)(c - g.c), SSL_get_version(ssl), name);
    if (SSL_session_reused(ssl))
        die("connection %u: a session was resumed", (unsigned)(c - g.c));
    if (tls.version[0] != '\0')
        return;
    const char *group = SSL_group_to_name(ssl, SSL_get_negotiated_group(ssl));
    snprintf(tls.version, sizeof(tls.version), "%s", SSL_get_version(ssl));
    snprintf(tls.suite, sizeof(tls.suite), "%s", name);
    snprintf(tls.group, sizeof(tls.group), "%s", group ? group : "unknown");
}

/* One step of the handshake; true when it is done. */
static bool tls_handshake(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        tls_check(c);
        return true;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        tls_fail(c, "TLS handshake", e);
    return false;
}

/* SSL_write and SSL_read as send(2) and recv(2) do: a count, 0 at the
 * server's end (recv), or -1 with errno, EAGAIN when OpenSSL waits for the
 * socket; what it waits for is kept in c. */
static ssize_t tls_send(struct conn *c, const void *p, size_t n)
{
    ERR_clear_error();
    int r = SSL_write(c->ssl, p, (int)n);
    c->write_wants_read = false;
    if (r > 0) {
        c->wpend = 0;
        return r;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        c->wpend = (uint32_t)n;
        c->write_wants_read = e == SSL_ERROR_WANT_READ;
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        if (errno == 0)
            errno = EPIPE;
        return -1;
    }
    tls_fail(c, "SSL_write", e);
    return -1;
}

static ssize_t tls_recv(struct conn *c, void *p, size_t n)
{
    ERR_clear_error();
    int r = SSL_read(c->ssl, p, (int)n);
    c->read_wants_write = false;
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        c->read_wants_write = e == SSL_ERROR_WANT_WRITE;
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        if (errno == 0)
            errno = ECONNRESET;
        return -1;
    }
    tls_fail(c, "SSL_read", e);
    return -1;
}

/* Sends close_notify (before the FIN). */
static void tls_close_notify(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_shutdown(c->ssl);
    if (r < 0)
        tls_fail(c, "SSL_shutdown", SSL_get_error(c->ssl, r));
}

#else /* no OpenSSL: the TLS modes refuse to start, in main() */

static void tls_init(void)
{
    fputs("mio-bench: built without OpenSSL: no TLS\n", stderr);
    exit(2);
}

static void tls_start(struct conn *c)
{
    (void)c;
}

static void tls_free(struct conn *c)
{
    (void)c;
}

static bool tls_handshake(struct conn *c)
{
    (void)c;
    return true;
}

static ssize_t tls_send(struct conn *c, const void *p, size_t n)
{
    return send(c->fd, p, n, MSG_NOSIGNAL);
}

static ssize_t tls_recv(struct conn *c, void *p, size_t n)
{
    return recv(c->fd, p, n, 0);
}

static void tls_close_notify(struct conn *c)
{
    (void)c;
}

#endif

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
        if (n > g.wmax)
            n = g.wmax;
        const uint8_t *p = pat + (c->seed + c->sent) % PAT_LEN;
        ssize_t m = c->ssl ? tls_send(c, p, n) : send(c->fd, p, n, MSG_NOSIGNAL);
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

/* Ends what c sends: close_notify over TLS, then the FIN. */
static void half_close(struct conn *c)
{
    if (c->ssl != NULL)
        tls_close_notify(c);
    int e = mio_socket_shutdown(c->fd, SHUT_WR);
    if (e < 0)
        conn_fail(c, "shutdown", -e);
    c->state = C_SHUT;
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
    else if (opt.mode == CHURN)
        half_close(c); /* and the server's end ends the loop's turn */
}

static void stream_fill(struct conn *c)
{
    if (g.phase == P_WARMUP || g.phase == P_RUN)
        send_upto(c, UINT64_MAX);
    else if (c->wpend > 0) /* an SSL_write to finish, with the same bytes */
        send_upto(c, c->sent + c->wpend);
}

/* Reads what is there; false when the server's FIN came. */
static bool read_some(struct conn *c, bool to_eof)
{
    for (;;) {
        ssize_t n = c->ssl ? tls_recv(c, g.buf, g.rmax) : recv(c->fd, g.buf, g.rmax, 0);
        if (n > 0) {
            verify(c, g.buf, (size_t)n);
            c->rcvd += (uint64_t)n;
            g.bytes_all += (uint64_t)n;
            if (g.phase == P_RUN)
                g.bytes += (uint64_t)n;
            if (c->busy && c->rcvd == c->msg_end)
                message_done(c);
            if ((size_t)n < g.rmax && !to_eof && c->ssl == NULL)
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

/* Where the stream of the k-th connection starts in pat. */
static uint32_t seed_of(uint64_t k)
{
    return (uint32_t)((k * 2654435761u + 12345u) % PAT_LEN);
}

/* Starts connecting c afresh, its stream at `seed`. */
static void conn_connect(struct conn *c, uint32_t seed)
{
    unsigned i = (unsigned)(c - g.c);
    int fd = mio_tcp_connect((struct sockaddr *)&opt.addr, opt.addrlen);
    if (fd < 0)
        die("connection %u: connect to %s port %s: %s", i, opt.host, opt.port,
            strerror(-fd));
    *c = (struct conn){.fd = fd, .state = C_CONNECTING, .seed = seed};
    int err = mio_registry_register(g.reg, fd, (mio_token_t)i,
                                    MIO_READABLE | MIO_WRITABLE);
    if (err < 0)
        die("register: %s", strerror(-err));
}

static void start_connects(void)
{
    while (g.next_connect < opt.nconns && g.connecting < 256) {
        conn_connect(&g.c[g.next_connect], seed_of(g.next_connect));
        g.next_connect++;
        g.connecting++;
    }
}

/* churn: one loop's next connection. */
static void loop_start(struct conn *c)
{
    conn_connect(c, seed_of(g.cycles_started++));
}

/* churn: a loop's connection is over; the next starts while the load
 * runs, and the loop rests otherwise. */
static void loop_next(struct conn *c)
{
    tls_free(c);
    (void)mio_registry_deregister(g.reg, c->fd);
    close(c->fd);
    c->fd = -1;
    c->state = C_DONE;
    g.cycles_all++;
    if (g.phase == P_RUN)
        g.cycles++;
    if (g.phase == P_WARMUP || g.phase == P_RUN)
        loop_start(c);
    else
        g.active--;
}

/* Connected, and over TLS with the handshake done. */
static void conn_opened(struct conn *c)
{
    c->state = C_OPEN;
    c->writable = true;
    if (opt.mode == CHURN) {
        start_message(c, opt.size);
        return;
    }
    g.connecting--;
    g.open++;
    start_connects();
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
        if (!opt.tls) {
            conn_opened(c);
            return;
        }
        tls_start(c);
        c->state = C_HANDSHAKE;
    }
    if (c->state == C_HANDSHAKE) {
        if (tls_handshake(c))
            conn_opened(c);
        return;
    }
    if (c->state == C_DONE)
        return;
    if (mio_event_is_error(ev)) {
        int err = mio_socket_take_error(c->fd);
        conn_fail(c, "the connection failed", err < 0 ? -err : ECONNRESET);
    }
    bool writable = mio_event_is_writable(ev);
    bool readable = mio_event_is_readable(ev) || mio_event_is_read_closed(ev);
    if (c->ssl != NULL) { /* OpenSSL may wait on one direction for the other */
        writable = writable || (readable && c->write_wants_read);
        readable = readable || (writable && c->read_wants_write);
    }
    if (writable) {
        c->writable = true;
        if (c->busy && c->sent < c->msg_end)
            send_upto(c, c->msg_end);
        else if (opt.mode == STREAM && c->state == C_OPEN)
            stream_fill(c);
    }
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
    if (opt.mode == CHURN) {
        loop_next(c);
        return;
    }
    tls_free(c);
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

/* churn: every loop makes one connection first, for the same reason. */
static void begin_loops(enum phase p, uint64_t end)
{
    enter(p, end);
    g.active = opt.nconns;
    for (unsigned i = 0; i < opt.nconns; i++)
        loop_start(&g.c[i]);
}

static void begin_load(void)
{
    if (opt.mode == CHURN) {
        begin_loops(P_WARMUP, g.now + NS(opt.warmup));
        return;
    }
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
        half_close(c);
    }
}

/* How many connections wait for an echo after the load: messages out, and
 * over TLS bytes of a stream too (each is drained before close_notify). */
static unsigned undrained(void)
{
    if (!opt.tls || opt.mode != STREAM)
        return g.busy;
    unsigned n = 0;
    for (unsigned i = 0; i < opt.nconns; i++)
        n += g.c[i].rcvd < g.c[i].sent || g.c[i].wpend > 0;
    return n;
}

/* The CPU time of the processes pids[0..n) so far: over TLS from stat,
 * which keeps the time of ended threads (stunnel's); for churn, of the tree
 * below root as it is now with the children it reaped, which keeps the
 * time of a process per connection that ended (socat's). */
static double server_cpu_ns(int root, const int *pids, size_t n)
{
    if (opt.tls)
        return tree_stat_cpu_ns(pids, n);
    if (opt.mode == CHURN)
        return tree_reaped_cpu_ns(root, NULL);
    return tree_cpu_ns(pids, n);
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
        if (opt.mode == CHURN ? g.active == 0 : g.busy == 0) {
            if (opt.mode == IDLE) {
                enter(P_HOLD, g.now + NS(opt.duration));
            } else {
                if (opt.pid)
                    g.pids = tree_pids(opt.pid, &g.npids);
                if (opt.backend_pid)
                    g.bpids = tree_pids(opt.backend_pid, &g.nbpids);
                g.now = now_ns();
                begin_load();
            }
        } else if (g.now >= g.t_phase_end && opt.mode == CHURN) {
            die("%u of %u loops had not finished their first connection after %.1f s",
                g.active, opt.nconns, opt.timeout);
        } else if (g.now >= g.t_phase_end) {
            die("%u of %u connections had no echo of their first message after "
                "%.1f s",
                g.busy, opt.nconns, opt.timeout);
        }
        return true;
    case P_WARMUP:
        if (g.now >= g.t_phase_end) {
            g.messages = g.bytes = g.cycles = 0;
            memset(&g.hist, 0, sizeof(g.hist));
            if (g.pids != NULL)
                g.cpu_run_ns = -server_cpu_ns(opt.pid, g.pids, g.npids);
            if (g.bpids != NULL)
                g.backend_run_ns = -server_cpu_ns(opt.backend_pid, g.bpids, g.nbpids);
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
                g.cpu_run_ns += server_cpu_ns(opt.pid, g.pids, g.npids);
            if (g.bpids != NULL)
                g.backend_run_ns += server_cpu_ns(opt.backend_pid, g.bpids, g.nbpids);
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
        if (opt.mode == CHURN) {
            if (g.active == 0)
                return false;
            if (g.now >= g.t_phase_end)
                die("%u of %u loops had not finished their connection %.1f s after the "
                    "end",
                    g.active, opt.nconns, opt.timeout);
            return true;
        }
        if (undrained() == 0) {
            begin_shutdown();
            return true;
        }
        if (g.now >= g.t_phase_end)
            die("%u connections had not everything echoed back %.1f s after the end",
                undrained(), opt.timeout);
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

/* ---- results --------------------------------------------------------------- */

/* CPU time per unit of the load, by mode: us per message, s per GB, us
 * per connection (churn), or ms per 1000 handshakes (the same number as us
 * per handshake, under the name the TLS reports have always used). */
static const char *const cpu_unit_key[] = {"us_per_msg", "s_per_gb", "", "us_per_conn",
                                           "us_per_dgram"};
static const char *const cpu_unit_text[] = {"us per message", "s per GB", "",
                                            "us per connection", "us per datagram"};

/* The name of the mode run: churn over TLS is handshake. */
static const char *mode_str(void)
{
    return opt.mode == CHURN && opt.tls ? "handshake" : mode_name[opt.mode];
}

/* The end of the JSON key of the CPU per unit of the mode run. */
static const char *cpu_key(void)
{
    return opt.mode == CHURN && opt.tls ? "ms_per_khs" : cpu_unit_key[opt.mode];
}

/* The same in words, for the line printed without --json. */
static const char *cpu_text(void)
{
    return opt.mode == CHURN && opt.tls ? "ms per 1000 handshakes"
                                        : cpu_unit_text[opt.mode];
}

static double cpu_per_unit(double ns)
{
    if (opt.mode == CHURN)
        return g.cycles ? ns / 1e3 / (double)g.cycles : 0;
    if (opt.mode == PINGPONG)
        return g.messages ? ns / 1e3 / (double)g.messages : 0;
    return g.bytes ? ns / (double)g.bytes : 0;
}

/* ---- udp: flows of datagrams ------------------------------------------------ */

/*
 * Each of C flows is a UDP socket of its own, connected to the server, that
 * keeps W datagrams of S bytes outstanding: W = 1 is a pingpong, more is a
 * pipelined window.  A datagram is a header (the flow, the slot of the
 * window it fills, its sequence number) and a slice of pat chosen by the
 * flow and the sequence number; an answer must be that datagram, byte for
 * byte, on the flow's socket.  An answer frees its slot, which sends the
 * flow's next datagram at once (the answers of one recvmmsg are answered
 * with one sendmmsg).  A datagram not answered within --resend seconds is
 * sent again (a loss, counted); an answer to a datagram answered already is
 * a duplicate (counted; a late answer to a resent datagram is one).  An
 * answer that is not exactly a datagram of the flow (another length,
 * another flow's, a sequence number never sent, other bytes) is a
 * mismatch: counted, and the exit status is then 1.
 *
 * Before the load the flows are primed one after the other, each waiting
 * for the answer to its first datagram before the next flow sends: a relay
 * (socat's UDP-LISTEN, fork) that connects a socket to each new client must
 * not see the first datagrams of two clients at once.
 */

#define UDP_HDR 16u
#define UDP_BATCH 64u

struct uslot {
    uint64_t seq;
    uint64_t t_first, t_sent; /* first sent, last sent */
    bool busy;
};

struct flow {
    int fd;
    uint32_t id;
    uint64_t next_seq;
    struct uslot *slot;
    uint8_t (*hdr)[UDP_HDR]; /* the header of each slot's datagram */
};

static struct {
    struct flow *f;
    uint64_t answered, answered_all; /* in P_RUN, and in all */
    uint64_t sent_all, resent, resent_all, dup, mismatch, refused;
    uint64_t outstanding;
    unsigned primed; /* flows primed so far */
    uint64_t next_scan;
} u;

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* The payload after the header of datagram `seq` of flow `id`. */
static const uint8_t *udp_payload(uint32_t id, uint64_t seq)
{
    return pat + (seed_of(id) + seq * 7919u) % PAT_LEN;
}

/* Queues slot k of flow f (its header made) into the batch of mm/iov. */
static void udp_queue(struct flow *f, unsigned k, struct mmsghdr *mm, struct iovec *iov,
                      unsigned *n)
{
    struct uslot *s = &f->slot[k];
    iov[2 * *n] = (struct iovec){f->hdr[k], UDP_HDR};
    iov[2 * *n + 1] = (struct iovec){(void *)udp_payload(f->id, s->seq),
                                     opt.size - UDP_HDR};
    mm[*n] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[2 * *n], .msg_iovlen = 2}};
    s->t_sent = g.now;
    (*n)++;
}

/* Sends the n datagrams queued; what the socket refuses counts as lost
 * (the resend timer sends it again). */
static void udp_flush(struct flow *f, struct mmsghdr *mm, unsigned n)
{
    unsigned done = 0;
    for (int tries = 0; done < n && tries < 4; tries++) {
        int r = sendmmsg(f->fd, mm + done, n - done, 0);
        if (r > 0) {
            done += (unsigned)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == ECONNREFUSED) { /* an earlier ICMP: try again */
            u.refused++;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == ENOBUFS))
            break;
        die("flow %u: sendmmsg: %s", f->id, strerror(errno));
    }
    u.sent_all += done;
}

/* Starts the next datagram of flow f in its free slot k. */
static void udp_start(struct flow *f, unsigned k, struct mmsghdr *mm, struct iovec *iov,
                      unsigned *n)
{
    struct uslot *s = &f->slot[k];
    s->seq = f->next_seq++;
    s->busy = true;
    s->t_first = g.now;
    u.outstanding++;
    uint8_t *h = f->hdr[k];
    put64(h, (uint64_t)f->id | (uint64_t)k << 32);
    put64(h + 8, s->seq);
    udp_queue(f, k, mm, iov, n);
}

static bool udp_sending(void)
{
    return g.phase == P_WARMUP || g.phase == P_RUN;
}

/* One answer of n bytes (trunc: it was longer than any datagram sent) on
 * flow f; its slot is freed into *freed when it answers one. */
static void udp_answer(struct flow *f, const uint8_t *p, size_t n, bool trunc,
                       unsigned *freed, unsigned *nfreed)
{
    if (trunc || n != opt.size) {
        u.mismatch++;
        return;
    }
    uint64_t idk = get64(p), seq = get64(p + 8);
    uint32_t id = (uint32_t)idk, k = (uint32_t)(idk >> 32);
    if (id != f->id || k >= opt.window || seq >= f->next_seq ||
        memcmp(p + UDP_HDR, udp_payload(id, seq), opt.size - UDP_HDR) != 0) {
        u.mismatch++;
        return;
    }
    struct uslot *s = &f->slot[k];
    if (!s->busy || s->seq != seq) {
        u.dup++;
        return;
    }
    s->busy = false;
    u.outstanding--;
    u.answered_all++;
    if (g.phase == P_RUN) {
        u.answered++;
        hist_add(&g.hist, g.now - s->t_first);
    }
    freed[(*nfreed)++] = k;
}

/* Reads what flow f has, and sends a new datagram for each answered. */
static void udp_read(struct flow *f)
{
    static uint8_t rbuf[UDP_BATCH][65536];
    struct mmsghdr rm[UDP_BATCH];
    struct iovec riov[UDP_BATCH];
    unsigned freed[UDP_BATCH];
    struct mmsghdr sm[UDP_BATCH];
    struct iovec siov[2 * UDP_BATCH];
    size_t cap = opt.size + 1 < sizeof(rbuf[0]) ? opt.size + 1 : sizeof(rbuf[0]);
    for (int rounds = 0; rounds < 64; rounds++) {
        for (unsigned i = 0; i < UDP_BATCH; i++) {
            riov[i] = (struct iovec){rbuf[i], cap};
            rm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &riov[i], .msg_iovlen = 1}};
        }
        int r = recvmmsg(f->fd, rm, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECONNREFUSED) { /* nothing listened: resent later */
                u.refused++;
                continue;
            }
            if (errno == EAGAIN)
                return;
            die("flow %u: recvmmsg: %s", f->id, strerror(errno));
        }
        unsigned nfreed = 0, ns = 0;
        for (int i = 0; i < r; i++)
            udp_answer(f, rbuf[i], rm[i].msg_len,
                       (rm[i].msg_hdr.msg_flags & MSG_TRUNC) != 0, freed, &nfreed);
        if (g.phase == P_PRIME && nfreed > 0)
            u.primed++;
        if (udp_sending())
            for (unsigned i = 0; i < nfreed; i++)
                udp_start(f, freed[i], sm, siov, &ns);
        if (ns > 0)
            udp_flush(f, sm, ns);
        if ((unsigned)r < UDP_BATCH)
            return; /* drained: the next datagram makes a new edge */
    }
}

/* Sends again every datagram unanswered for --resend seconds. */
static void udp_resend_scan(void)
{
    uint64_t late = NS(opt.resend);
    struct mmsghdr sm[UDP_BATCH];
    struct iovec siov[2 * UDP_BATCH];
    for (unsigned i = 0; i < opt.nconns; i++) {
        struct flow *f = &u.f[i];
        unsigned ns = 0;
        for (unsigned k = 0; k < opt.window; k++) {
            struct uslot *s = &f->slot[k];
            if (!s->busy || g.now - s->t_sent < late)
                continue;
            u.resent_all++;
            if (g.phase == P_RUN)
                u.resent++;
            udp_queue(f, k, sm, siov, &ns);
            if (ns == UDP_BATCH) {
                udp_flush(f, sm, ns);
                ns = 0;
            }
        }
        if (ns > 0)
            udp_flush(f, sm, ns);
    }
}

/* Flow i sends its whole window (or one datagram, to prime it). */
static void udp_fill(unsigned i, unsigned count)
{
    struct flow *f = &u.f[i];
    struct mmsghdr sm[UDP_BATCH];
    struct iovec siov[2 * UDP_BATCH];
    unsigned ns = 0;
    for (unsigned k = 0; k < opt.window && count > 0; k++) {
        if (f->slot[k].busy)
            continue;
        udp_start(f, k, sm, siov, &ns);
        count--;
        if (ns == UDP_BATCH) {
            udp_flush(f, sm, ns);
            ns = 0;
        }
    }
    if (ns > 0)
        udp_flush(f, sm, ns);
}

static void udp_open(void)
{
    u.f = calloc(opt.nconns, sizeof(*u.f));
    if (u.f == NULL)
        die("out of memory");
    for (unsigned i = 0; i < opt.nconns; i++) {
        struct flow *f = &u.f[i];
        f->id = i;
        f->slot = calloc(opt.window, sizeof(*f->slot));
        f->hdr = calloc(opt.window, UDP_HDR);
        if (f->slot == NULL || f->hdr == NULL)
            die("out of memory");
        f->fd = socket(opt.addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (f->fd < 0)
            die("flow %u: socket: %s", i, strerror(errno));
        int err = mio_udp_connect(f->fd, (struct sockaddr *)&opt.addr, opt.addrlen);
        if (err < 0)
            die("flow %u: connect to %s port %s: %s", i, opt.host, opt.port,
                strerror(-err));
        err = mio_registry_register(g.reg, f->fd, (mio_token_t)i, MIO_READABLE);
        if (err < 0)
            die("register: %s", strerror(-err));
    }
}

/* Moves on when a phase is over; false at the end. */
static bool udp_advance(void)
{
    switch (g.phase) {
    case P_PRIME:
        if (u.outstanding == 0 && u.primed < opt.nconns) {
            udp_fill(u.primed, 1);
            return true;
        }
        if (u.outstanding == 0 && u.primed == opt.nconns) {
            g.now = now_ns();
            enter(P_WARMUP, g.now + NS(opt.warmup));
            for (unsigned i = 0; i < opt.nconns; i++)
                udp_fill(i, opt.window);
            return true;
        }
        if (g.now >= g.t_phase_end)
            die("%u of %u flows had an answer to their first datagram after %.1f s",
                u.primed, opt.nconns, opt.timeout);
        return true;
    case P_WARMUP:
        if (g.now >= g.t_phase_end) {
            u.answered = u.resent = 0;
            memset(&g.hist, 0, sizeof(g.hist));
            if (opt.pid)
                g.cpu_run_ns = -tree_reaped_cpu_ns(opt.pid, &g.npids);
            if (opt.backend_pid)
                g.backend_run_ns = -tree_reaped_cpu_ns(opt.backend_pid, NULL);
            g.self_run_ns = -self_cpu_ns();
            g.t_run = now_ns();
            enter(P_RUN, g.t_run + NS(opt.duration));
        }
        return true;
    case P_RUN:
        if (g.now >= g.t_phase_end) {
            g.t_run_end = g.now;
            g.self_run_ns += self_cpu_ns();
            if (opt.pid)
                g.cpu_run_ns += tree_reaped_cpu_ns(opt.pid, &g.npids);
            if (opt.backend_pid)
                g.backend_run_ns += tree_reaped_cpu_ns(opt.backend_pid, NULL);
            enter(P_DRAIN, now_ns() + NS(opt.timeout));
        }
        return true;
    case P_DRAIN:
        if (u.outstanding == 0)
            return false;
        if (g.now >= g.t_phase_end)
            die("%" PRIu64 " datagrams had no answer %.1f s after the end, resent every "
                "%.3f s (%" PRIu64 " answers were mismatches)",
                u.outstanding, opt.timeout, opt.resend, u.mismatch);
        return true;
    default:
        return false;
    }
}

static void udp_run(mio_events_t *events)
{
    udp_open();
    g.now = now_ns();
    enter(P_PRIME, g.now + NS(opt.timeout));
    uint64_t scan_every = NS(opt.resend / 4 < 0.02 ? opt.resend / 4 : 0.02);
    u.next_scan = g.now + scan_every;
    for (;;) {
        g.now = now_ns();
        if (g.now >= u.next_scan) {
            udp_resend_scan();
            u.next_scan = g.now + scan_every;
        }
        if (!udp_advance())
            return;
        uint64_t until = g.t_phase_end < u.next_scan ? g.t_phase_end : u.next_scan;
        uint64_t wait = until > g.now ? until - g.now : 0;
        struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
        int err = mio_poll_poll(g.poll, events, &ts);
        if (err == -EINTR)
            continue;
        if (err < 0)
            die("poll: %s", strerror(-err));
        g.now = now_ns();
        for (size_t i = 0; i < mio_events_len(events); i++) {
            const mio_event_t *ev = mio_events_get(events, i);
            udp_read(&u.f[mio_event_token(ev)]);
        }
    }
}

/* mio-bench udp: the results, and the exit status. */
static int udp_results(void)
{
    double secs = (double)(g.t_run_end - g.t_run) / 1e9;
    double dps = (double)u.answered / secs;
    double loss = u.sent_all ? 100.0 * (double)u.resent_all / (double)u.sent_all : 0;
    double cpu_pct = g.cpu_run_ns / (secs * 1e9) * 100;
    double cpu_per = u.answered ? g.cpu_run_ns / 1e3 / (double)u.answered : 0;
    double bcpu_pct = g.backend_run_ns / (secs * 1e9) * 100;
    double bcpu_per = u.answered ? g.backend_run_ns / 1e3 / (double)u.answered : 0;
    double p50 = hist_quantile_us(&g.hist, 0.50), p99 = hist_quantile_us(&g.hist, 0.99),
           p999 = hist_quantile_us(&g.hist, 0.999), max = (double)g.hist.max / 1000.0;
    bool ok = u.mismatch == 0;
    if (opt.json) {
        printf(
            "{\"mode\":\"udp\",\"flows\":%u,\"window\":%u,\"size\":%zu,\"seconds\":%.3f,"
            "\"datagrams\":%" PRIu64 ",\"dgrams_per_s\":%.0f,\"p50_us\":%.1f,"
            "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
            "\"sent_all\":%" PRIu64 ",\"answered_all\":%" PRIu64 ",\"resent\":%" PRIu64
            ",\"resent_all\":%" PRIu64 ",\"loss_pct\":%.3f,"
            "\"duplicates\":%" PRIu64 ",\"mismatches\":%" PRIu64 ",\"refused\":%" PRIu64
            ",\"client_cpu_pct\":%.1f",
            opt.nconns, opt.window, opt.size, secs, u.answered, dps, p50, p99, p999, max,
            u.sent_all, u.answered_all, u.resent, u.resent_all, loss, u.dup, u.mismatch,
            u.refused, g.self_run_ns / (secs * 1e9) * 100);
        if (opt.pid)
            printf(
                ",\"procs\":%zu,\"server_cpu_pct\":%.1f,\"server_cpu_us_per_dgram\":%.3f",
                g.npids, cpu_pct, cpu_per);
        if (opt.backend_pid)
            printf(",\"backend_cpu_pct\":%.1f,\"backend_cpu_us_per_dgram\":%.3f",
                   bcpu_pct, bcpu_per);
        printf(",\"verified\":%s}\n", ok ? "true" : "false");
    } else {
        printf("udp: %u flows, window %u, %zu B, %.2f s: %.0f datagrams/s, latency p50 "
               "%.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us; %" PRIu64
               " resent (%.3f%% of %" PRIu64 " sent), %" PRIu64 " duplicates, %" PRIu64
               " mismatches",
               opt.nconns, opt.window, opt.size, secs, dps, p50, p99, p999, max,
               u.resent_all, loss, u.sent_all, u.dup, u.mismatch);
        if (opt.pid)
            printf("; server CPU %.0f%% (%zu processes), %.3g us per datagram", cpu_pct,
                   g.npids, cpu_per);
        if (opt.backend_pid)
            printf("; backend CPU %.0f%%, %.3g us per datagram", bcpu_pct, bcpu_per);
        printf("%s\n", ok ? "; every answer verified" : "");
    }
    if (!ok) {
        fprintf(stderr,
                "mio-bench: error: %" PRIu64 " answers were not a datagram sent on their "
                "flow, byte for byte\n",
                u.mismatch);
        return 1;
    }
    return 0;
}

/* ---- options and main ----------------------------------------------------- */

static void usage(FILE *f)
{
    fputs(
        "usage: mio-bench pingpong|stream|idle|churn|handshake|udp --port PORT [options]\n"
        "       mio-bench --free-port\n"
        "  --host HOST     server address (127.0.0.1)\n"
        "  --port PORT     server port\n"
        "  -c N            connections (1); for churn and handshake, loops; for udp, flows\n"
        "  -s BYTES        message size (64); for stream, bytes per send (32768, at\n"
        "                  most 65536; it reads as much, 32768 at least);\n"
        "                  for udp, datagram size (16 to 65507)\n"
        "  -w N            udp: datagrams each flow keeps outstanding (1)\n"
        "  --resend SECS   udp: an unanswered datagram is sent again after (0.2)\n"
        "  -d SECONDS      measured time (5); for idle, how long they are held\n"
        "  --warmup SECS   unmeasured load before (1)\n"
        "  --pid PID       the server: memory of it and its children\n"
        "  --timeout SECS  to connect all, and to drain at the end (10)\n"
        "  --json          one JSON object on stdout\n"
        "  --tls           pingpong, stream or churn over TLS (handshake is churn --tls)\n"
        "  --tls-ca FILE   verify the server's certificate against FILE\n"
        "  --backend-pid PID  the echo server behind a relay: its CPU time\n",
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

/* Binds 127.0.0.1 on ports below the ephemeral range until one is free,
 * for TCP and for UDP. */
static int free_port(void)
{
    srand((unsigned)(now_ns() ^ (uint64_t)getpid() << 16));
    for (int tries = 0; tries < 1000; tries++) {
        int port = 15000 + rand() % 17000;
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = 1;
        for (int t = 0; t < 2 && ok; t++) { /* free for TCP and for UDP */
            int fd = socket(AF_INET, t ? SOCK_DGRAM : SOCK_STREAM, 0);
            ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
            if (fd >= 0)
                close(fd);
        }
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
    enum {
        O_HOST = 256,
        O_PORT,
        O_WARMUP,
        O_PID,
        O_JSON,
        O_TIMEOUT,
        O_FREE,
        O_TLS,
        O_TLS_CA,
        O_BACKEND_PID,
        O_RESEND
    };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"pid", required_argument, NULL, O_PID},
        {"json", no_argument, NULL, O_JSON},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"free-port", no_argument, NULL, O_FREE},
        {"tls", no_argument, NULL, O_TLS},
        {"tls-ca", required_argument, NULL, O_TLS_CA},
        {"backend-pid", required_argument, NULL, O_BACKEND_PID},
        {"resend", required_argument, NULL, O_RESEND},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool size_set = false;
    int o;
    while ((o = getopt_long(argc, argv, "c:s:d:w:h", longopts, NULL)) != -1) {
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
        case 'w':
            opt.window = (unsigned)num(optarg, "-w", 1, 4096);
            break;
        case O_RESEND:
            opt.resend = num(optarg, "--resend", 0.001, 60);
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
        case O_TLS:
            opt.tls = true;
            break;
        case O_TLS_CA:
            opt.tls_ca = optarg;
            break;
        case O_BACKEND_PID:
            opt.backend_pid = (int)num(optarg, "--backend-pid", 1, INT_MAX);
            break;
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
    else if (strcmp(m, "churn") == 0)
        opt.mode = CHURN;
    else if (strcmp(m, "handshake") == 0) {
        opt.mode = CHURN;
        opt.tls = true;
    } else if (strcmp(m, "udp") == 0) {
        opt.mode = UDP;
    } else {
        usage(stderr);
        return 2;
    }
    if (opt.tls && opt.mode == IDLE) {
        fputs("mio-bench: idle has no --tls\n", stderr);
        return 2;
    }
    if (!size_set)
        opt.size = opt.mode == STREAM ? IO_DEFAULT : 64;
    if (opt.mode == STREAM && opt.size > IO_MAX) {
        fprintf(stderr, "mio-bench: stream writes at most %u bytes at a time\n", IO_MAX);
        return 2;
    }
    /* A stream sends -s bytes at a time and reads as much at a time, 32 KiB
     * at least; the other modes move up to 32 KiB a call. */
    g.wmax = opt.mode == STREAM ? opt.size : IO_DEFAULT;
    g.rmax = g.wmax > IO_DEFAULT ? g.wmax : IO_DEFAULT;
    if (opt.mode == UDP && (opt.tls || opt.size < UDP_HDR || opt.size > 65507)) {
        fputs("mio-bench: udp takes datagrams of 16 to 65507 bytes, and no --tls\n",
              stderr);
        return 2;
    }
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
    if (opt.backend_pid && proc_ppid(opt.backend_pid) < 0)
        die("no process %d", opt.backend_pid);
    if (opt.tls)
        tls_init();

    g.now = now_ns();
    if (opt.mode == UDP) {
        udp_run(events);
        return udp_results();
    }
    if (opt.mode == CHURN) {
        begin_loops(P_PRIME, g.now + NS(opt.timeout));
    } else {
        enter(P_CONNECT, g.now + NS(opt.timeout));
        start_connects();
    }
    run_loop(events);
    struct mem before = g.before, after = g.after;
    bool mem = opt.pid && opt.mode == IDLE, cpu = opt.pid && opt.mode != IDLE;
    bool bcpu = opt.backend_pid && opt.mode != IDLE;

    double secs = opt.mode == IDLE ? opt.duration : (double)(g.t_run_end - g.t_run) / 1e9;
    double mps = opt.mode == PINGPONG ? (double)g.messages / secs : 0;
    double cps = (double)g.cycles / secs; /* churn: connections (handshakes) */
    double mbps = opt.mode == IDLE ? 0 : (double)g.bytes / secs / 1e6;
    double per_conn = 0, pss_per_conn = 0;
    if (mem) {
        per_conn = (double)(after.rss_kb - before.rss_kb) * 1024.0 / opt.nconns;
        pss_per_conn = (double)(after.pss_kb - before.pss_kb) * 1024.0 / opt.nconns;
    }
    /* The server's CPU (and the backend's): share of one CPU, and per
     * message, per connection, per 1000 handshakes or per GB. */
    double cpu_pct = g.cpu_run_ns / (secs * 1e9) * 100;
    double bcpu_pct = g.backend_run_ns / (secs * 1e9) * 100;
    double cpu_per = cpu_per_unit(g.cpu_run_ns),
           bcpu_per = cpu_per_unit(g.backend_run_ns);
    double p50 = hist_quantile_us(&g.hist, 0.50), p99 = hist_quantile_us(&g.hist, 0.99),
           p999 = hist_quantile_us(&g.hist, 0.999), max = (double)g.hist.max / 1000.0;
    uint64_t tls_conns = opt.mode == CHURN ? g.cycles_all : opt.nconns;
    double tickets = tls_conns ? (double)tls.tickets / (double)tls_conns : 0;

    if (opt.json) {
        printf("{\"mode\":\"%s\",\"connections\":%u,\"size\":%zu,\"seconds\":%.3f",
               mode_str(), opt.nconns, opt.size, secs);
        if (opt.mode == PINGPONG)
            printf(",\"messages\":%" PRIu64 ",\"msgs_per_s\":%.0f,\"p50_us\":%.1f,"
                   "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f",
                   g.messages, mps, p50, p99, p999, max);
        if (opt.mode == CHURN && opt.tls)
            printf(",\"handshakes\":%" PRIu64 ",\"handshakes_per_s\":%.1f", g.cycles,
                   cps);
        else if (opt.mode == CHURN)
            printf(",\"conns\":%" PRIu64 ",\"conns_per_s\":%.1f", g.cycles, cps);
        if (opt.mode != IDLE)
            printf(",\"bytes\":%" PRIu64 ",\"mb_per_s\":%.1f,\"client_cpu_pct\":%.1f",
                   g.bytes, mbps, g.self_run_ns / (secs * 1e9) * 100);
        printf(",\"messages_all\":%" PRIu64 ",\"bytes_all\":%" PRIu64, g.messages_all,
               g.bytes_all);
        if (cpu)
            printf(",\"procs\":%zu,\"server_cpu_pct\":%.1f,\"server_cpu_%s\":%.3f",
                   g.npids, cpu_pct, cpu_key(), cpu_per);
        if (bcpu)
            printf(",\"backend_cpu_pct\":%.1f,\"backend_cpu_%s\":%.3f", bcpu_pct,
                   cpu_key(), bcpu_per);
        if (opt.tls)
            printf(",\"tls_version\":\"%s\",\"tls_suite\":\"%s\",\"tls_group\":\"%s\","
                   "\"tls_tickets_per_conn\":%.2f",
                   tls.version, tls.suite, tls.group, tickets);
        if (mem)
            printf(",\"procs\":%d,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,"
                   "\"rss_per_conn_b\":%.0f,\"pss_per_conn_b\":%.0f",
                   after.procs, before.rss_kb, after.rss_kb, per_conn, pss_per_conn);
        printf(",\"verified\":true}\n");
    } else {
        printf("%s: %u %s, %zu B, %.2f s", mode_str(), opt.nconns,
               opt.mode == CHURN ? "loops" : "connections", opt.size, secs);
        if (opt.mode == PINGPONG)
            printf(": %.0f msg/s, latency p50 %.1f us, p99 %.1f us, p99.9 %.1f us, "
                   "max %.1f us",
                   mps, p50, p99, p999, max);
        else if (opt.mode == STREAM)
            printf(": %.1f MB/s echoed", mbps);
        else if (opt.mode == CHURN)
            printf(": %.0f %s/s", cps, opt.tls ? "handshakes" : "connections");
        if (cpu)
            printf("; server CPU %.0f%%, %.3g %s", cpu_pct, cpu_per, cpu_text());
        if (bcpu)
            printf("; backend CPU %.0f%%, %.3g %s", bcpu_pct, bcpu_per, cpu_text());
        if (opt.tls)
            printf("; %s %s %s, %.2f session tickets per connection", tls.version,
                   tls.suite, tls.group, tickets);
        if (mem)
            printf(": server RSS %ld -> %ld kB (%d processes): %.0f B per connection "
                   "(PSS %.0f B)",
                   before.rss_kb, after.rss_kb, after.procs, per_conn, pss_per_conn);
        printf("; every byte verified\n");
    }
    return 0;
}
