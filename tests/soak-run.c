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
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "churn.h"
#include "echod.h"
#include "files.h"
#include "net.h"
#include "pattern.h"
#include "stream.h"
#include "upstream.h"

/* A connection without progress for this long is an error. */
#define STALL_MS 20000
/* The daemon's shutdown_timeout, in the configuration. */
#define SHUTDOWN_S 5
/* The pattern every stream and short connection sends. */
#define PLEN ((size_t)4 << 20)

/* ---- output, errors --------------------------------------------------------- */

static int64_t t_start;
static atomic_ullong n_errors;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

/* Prints a line with the elapsed time first. */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
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
__attribute__((format(printf, 1, 2))) static void error(const char *fmt, ...)
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

/* The test library's failures (while setting up): the soak cannot run. */
static void setup_failed(const char *msg)
{
    fprintf(stderr, "soak-run: %s\n", msg);
    exit(2);
}

/* An upstream's socket error. */
static void upstream_error(const struct upsrv *u, const char *what, int err)
{
    error("upstream %s: %s: %s", u->conf.name, what, strerror(err));
}

/* A churn connection's error. */
static void churn_error(struct churn *ch, const char *msg)
{
    (void)ch;
    error("churn: %s", msg);
}

/* ---- what was served, by listener (0 echo, 1 relay) ------------------------ */

/* The streamers' connections and bytes; the churn client counts its own. */
static atomic_ullong streamed_conns[2], streamed_bytes[2];
static atomic_ullong verified_total; /* every byte checked so far, both ways */
static atomic_bool load_stop;        /* the load phase is over */
static atomic_bool interrupted;
static struct churn ch;

static unsigned long long served_conns(int li)
{
    return atomic_load(&streamed_conns[li]) + atomic_load(&ch.port_done[li]);
}

static unsigned long long served_bytes(int li)
{
    return atomic_load(&streamed_bytes[li]) + atomic_load(&ch.port_bytes[li]);
}

static void on_sigint(int sig)
{
    (void)sig;
    atomic_store(&interrupted, true);
}

/* ---- streamers ---------------------------------------------------------------- */

struct streamer {
    int id, port, li; /* li: 0 echo, 1 relay */
    uint64_t rate;    /* bytes per second */
    pthread_t thread;
};

/* One connection after another, each streaming for 5-60 s at s->rate,
 * then half-closing and expecting everything back and the FIN; until the
 * load is over. */
static void *stream_run(void *arg)
{
    struct streamer *st = arg;
    uint32_t rng = 2654435761u * (uint32_t)(st->id + 1);
    for (uint64_t k = 0; k < 1000000 && !atomic_load(&load_stop); k++) {
        rng = rng * 1664525u + 1013904223u;
        int64_t life = 5000 + (int64_t)((rng >> 8) % 55000);
        uint64_t base = ((uint64_t)st->id * 1000003 + k * 7919) % PLEN;
        int fd = connect_within(st->port, STALL_MS);
        if (fd < 0) {
            if (errno == ETIMEDOUT)
                error("streamer %d: connect to %d: no answer in %d ms", st->id, st->port,
                      STALL_MS);
            else
                error("streamer %d: connect to %d: %s", st->id, st->port,
                      strerror(errno));
            sleep_ms(100);
            continue;
        }
        int64_t t0 = ms_now();
        struct stream s = {.fd = fd,
                           .base = base,
                           .rate = st->rate,
                           .stall_ms = STALL_MS,
                           .finish_at = t0 + life,
                           .give_up_at = t0 + life + 3 * STALL_MS,
                           .finish_too = &load_stop,
                           .total = &verified_total};
        stream_pump(&s);
        close(fd);
        if (s.ok) {
            atomic_fetch_add(&streamed_conns[st->li], 1);
            atomic_fetch_add(&streamed_bytes[st->li], atomic_load(&s.sent));
        } else {
            error("streamer %d (port %d): %s", st->id, st->port, s.err);
            sleep_ms(100);
        }
    }
    return NULL;
}

/* ---- configurations ------------------------------------------------------------ */

static int p_echo, p_relay, p_dead;
static struct upsrv *up1, *up2;

/* Variant 0: two upstreams, round-robin, 16 KiB buffers; variant 1 adds an
 * upstream that refuses, least-connections, 32 and 8 KiB buffers;
 * variant 2 is a broken file.  The text into buf. */
static void make_conf(char *text, size_t len, int variant)
{
    char dead[64] = "";
    if (variant == 1)
        snprintf(dead, sizeof(dead), ", \"127.0.0.1:%d\"", p_dead);
    int n = snprintf(
        text, len,
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
        SHUTDOWN_S, p_echo, variant == 1 ? 32768 : 16384, p_relay, up1->srv.port,
        up2->srv.port, dead, variant == 1 ? "least-connections" : "round-robin",
        variant == 1 ? 8192 : 16384);
    CHECK(n > 0 && (size_t)n < len);
    if (variant == 2)
        text[n / 2] = '\0'; /* cut in the middle of a listener */
}

/* SIGHUP with configuration `variant` (2: broken), and the line it must
 * bring ("reload failed" for the broken one) within 5 s. */
static void reload(struct echod *e, int variant)
{
    const char *needle = variant == 2 ? "reload failed" : "notice: reloaded ";
    int want = echod_count_log(e, needle) + 1;
    char text[4096];
    make_conf(text, sizeof(text), variant);
    conf_rewrite(echod_conf_path(e), "%s", text);
    echod_signal(e, SIGHUP);
    if (!echod_wait_count(e, needle, want, 5000))
        error(variant == 2 ? "SIGHUP with a broken file: no \"reload failed\" within 5 s"
                           : "SIGHUP: no \"reloaded\" within 5 s");
}

/* The daemon's error lines (those of refused reloads aside): how many, and
 * the last in last. */
static int daemon_errors(struct echod *e, char *last, size_t len)
{
    int n = 0;
    const char *line;
    for (int i = 0; (line = echod_log_line(e, ": error: ", i)) != NULL; i++)
        if (strstr(line, "reload failed") == NULL) {
            n++;
            snprintf(last, len, "%.500s", line);
        }
    return n;
}

/* ---- the run ---------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: soak-run -d DAEMON [-m MINUTES] [-r REPORT_S] [-c CHURN_PER_S] "
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
        case 'd':
            prog = optarg;
            break;
        case 'm':
            minutes = strtod(optarg, NULL);
            break;
        case 'r':
            report_s = atoi(optarg);
            break;
        case 'c':
            churn_rate = (unsigned)atoi(optarg);
            break;
        case 's':
            nstreamers = atoi(optarg);
            break;
        case 'k':
            keep = true;
            break;
        case 'w':
            workdir = optarg;
            break;
        default:
            usage();
            return 2;
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
    if (!pattern_init(PLEN, 4241)) {
        fprintf(stderr, "soak-run: out of memory\n");
        return 2;
    }
    test_set_fail(setup_failed);
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
    char logpath[PATH_MAX + 16];
    snprintf(logpath, sizeof(logpath), "%.4000s/mio-echod.log", dir);

    /* Ports: two for the daemon, two echo upstreams, one that refuses
     * (bound, never listening, for the whole run).  A backlog of 16: when
     * an upstream goes away its queue fills at once and the daemon's
     * further connects time out. */
    struct up_conf upc = {.mode = UP_ECHO,
                          .max = 2048,
                          .backlog = 16,
                          .on_error = upstream_error};
    upc.name = "u1";
    up1 = up_start(&upc);
    upc.name = "u2";
    up2 = up_start(&upc);
    p_dead = refusing_port();
    p_echo = reserve_port();
    p_relay = reserve_port();
    for (int i = 0; i < 100 && p_relay == p_echo; i++)
        p_relay = reserve_port();
    char text[4096];
    make_conf(text, sizeof(text), 0);
    struct echod_opts opts = {.program = prog,
                              .dir = dir,
                              .log_path = logpath,
                              .start_ms = 10000};
    struct echod *e = echod_start_opts(text, &opts);
    pid_t pid = echod_pid(e);
    sleep_ms(200);
    int fd_idle = echod_fd_count(e);
    long rss_start = echod_rss_kib(e);
    say("soak: %s (pid %d) for %.1f min; echo on %d, relay on %d to %d and %d; %d "
        "streamers, %u short connections/s; work dir %s",
        prog, (int)pid, minutes, p_echo, p_relay, up1->srv.port, up2->srv.port,
        nstreamers, churn_rate, dir);
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
    ch = (struct churn){.ports = ports,
                        .nports = 2,
                        .slots = 32,
                        .rate = churn_rate,
                        .seed = 12345,
                        .stall_ms = STALL_MS,
                        .grace_ms = 2 * STALL_MS,
                        .stop_too = &load_stop,
                        .total = &verified_total,
                        .on_error = churn_error};
    bool churning = churn_rate > 0 &&
                    pthread_create(&ch.thread, NULL, churn_run, &ch) == 0;

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
        if (!echod_alive(e)) {
            error("the daemon exited (status 0x%x)", echod_status(e));
            break;
        }
        if (now >= next_reload) {
            next_reload = now + 5000;
            bool broken = nreloads % 10 == 5;
            if (broken) {
                reload(e, 2);
                nbroken++;
            } else {
                variant = !variant;
                reload(e, variant);
            }
            nreloads++;
        }
        if (outage_end == 0 && now >= next_outage) {
            atomic_store(&up2->srv.paused, true);
            outage_end = now + 5000;
            noutages++;
            say("upstream u2 (port %d) goes away: stops accepting for 5 s",
                up2->srv.port);
        } else if (outage_end != 0 && now >= outage_end) {
            atomic_store(&up2->srv.paused, false);
            outage_end = 0;
            next_outage = now + 40000;
            say("upstream u2 is back");
        }
        if (now >= next_report) {
            next_report += (int64_t)report_s * 1000;
            unsigned long long conns = served_conns(0) + served_conns(1);
            unsigned long long bytes = atomic_load(&verified_total);
            long rss = echod_rss_kib(e);
            if (rss_first < 0)
                rss_first = rss;
            if (rss > rss_max)
                rss_max = rss;
            say("served %llu connections (%.0f/s), %.1f MiB verified, %llu errors; %d reloads "
                "(%d broken, refused), %d upstream outages; daemon rss %ld KiB, %d fds",
                conns,
                (double)(conns - last_conns) * 1000.0 / (double)(now - last_report),
                (double)bytes / MIB, (unsigned long long)atomic_load(&n_errors), nreloads,
                nbroken, noutages, rss, echod_fd_count(e));
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
    atomic_store(&up2->srv.paused, false);
    if (churning)
        pthread_join(ch.thread, NULL);
    for (int i = 0; i < nstreamers; i++)
        pthread_join(st[i].thread, NULL);
    free(st);
    bool alive = echod_alive(e);
    int fd_end = -1;
    long rss_end = -1;
    if (alive) {
        for (int i = 0; i < 500 && echod_fd_count(e) != fd_idle; i++)
            sleep_ms(20);
        fd_end = echod_fd_count(e);
        rss_end = echod_rss_kib(e);
        if (fd_end != fd_idle)
            error("the daemon has %d descriptors after the load, %d before", fd_end,
                  fd_idle);
        long base = rss_first > 0 ? rss_first : rss_start;
        if (rss_end - base > 8 * 1024)
            error("the daemon's RSS grew from %ld KiB (first report) to %ld KiB", base,
                  rss_end);
        /* Its counters against ours.  Asked again (10 times at most) while
         * they differ: the daemon closes a connection's sockets before it
         * counts it out, so its last connections may lag a moment. */
        static const char *const names[2] = {"echo", "relay"};
        for (int i = 0; i < 2; i++) {
            char line[256] = "";
            bool agree = false;
            unsigned long long conns = served_conns(i);
            unsigned long long bytes = served_bytes(i);
            for (int attempt = 0; attempt < 10 && !agree; attempt++) {
                if (attempt > 0)
                    sleep_ms(100);
                struct echod_counters c;
                const char *l;
                if (!echod_counters_within(e, names[i], 5000, &c, &l))
                    continue;
                snprintf(line, sizeof(line), "%.250s", l);
                agree = c.open == 0 && c.accepted == (long long)conns &&
                        c.in == (long long)bytes && c.out == (long long)bytes;
            }
            if (!agree)
                error(
                    "listener %s: the daemon counts \"%s\"; the clients %llu connections, "
                    "%llu bytes each way",
                    names[i], line[0] ? strstr(line, "open=") : "-", conns, bytes);
        }
    } else {
        error("the daemon is gone (status 0x%x)", echod_status(e));
    }
    int64_t t_stop = ms_now();
    int code = echod_stop(e, (SHUTDOWN_S + 3) * 1000);
    int64_t took = ms_now() - t_stop;
    if (code != 0)
        error("the daemon exited %d after SIGTERM (%lld ms)", code, (long long)took);
    char last_error[512] = "";
    int errors = daemon_errors(e, last_error, sizeof(last_error));
    if (errors > 0)
        error("the daemon logged %d errors, the last: %s", errors, last_error);
    int reloaded = echod_count_log(e, "notice: reloaded ");
    int reload_failed = echod_count_log(e, "reload failed");
    if (reloaded != nreloads - nbroken || reload_failed != nbroken)
        error("the daemon logged %d reloads and %d failed ones; %d and %d were asked",
              reloaded, reload_failed, nreloads - nbroken, nbroken);
    int accepted[2] = {atomic_load(&up1->srv.accepted), atomic_load(&up2->srv.accepted)};
    up_stop(up1);
    up_stop(up2);
    close_all_tracked(); /* the refusing port */

    unsigned long long conns = served_conns(0) + served_conns(1);
    unsigned long long bytes = served_bytes(0) + served_bytes(1);
    unsigned long long errs = atomic_load(&n_errors);
    say("soak: %s: %.1f min, %llu connections (%llu echo, %llu relayed), %.1f MiB verified "
        "each way, %llu errors; %d reloads (%d broken, refused), %d upstream outages, "
        "upstreams accepted %llu+%llu; daemon rss %ld -> %ld KiB (max %ld), fds %d -> %d, "
        "%d warnings, exit %d after %lld ms",
        errs == 0 ? "PASS" : "FAIL", (double)load_ms / 60000.0, conns, served_conns(0),
        served_conns(1), (double)bytes / MIB, errs, nreloads, nbroken, noutages,
        (unsigned long long)accepted[0], (unsigned long long)accepted[1],
        rss_first > 0 ? rss_first : rss_start, rss_end, rss_max, fd_idle, fd_end,
        echod_count_log(e, ": warning: "), code, (long long)took);
    if (errs == 0 && !keep)
        remove_tree(dir);
    else
        say("the daemon's log and configuration are in %s", dir);
    pattern_free();
    return errs == 0 ? 0 : 1;
}
