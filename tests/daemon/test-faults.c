/*
 * mio-echod under faults and load, with the real daemon on loopback: what
 * it does when it runs out of descriptors, when upstreams refuse, reset,
 * never read, close mid-stream or never answer, when clients reset, go
 * silent after a FIN, read slowly or never send; thousands of short
 * connections a second; SIGHUP repeated under load (one broken file among
 * them); SIGTERM under load.
 *
 * Every upstream and client fault is paired with a healthy relayed
 * connection streaming verified data through the same daemon, which must
 * come through intact.  Every test prints its figures (print_message);
 * every loop is bounded in count and time; nothing here asserts on speed.
 * FAULTS_TEST=glob in the environment runs only the tests it matches.
 *
 * Threads here (test upstreams, streamers, churn clients) never call
 * cmocka: they leave counters and a message that the test checks.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* accept4 */
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* How long a test waits for something that should happen at once. */
#define WAIT_MS 3000

/* Fails when the daemon's RSS grew by `kib` or more than `bound` KiB
 * (unless under a sanitizer). */
#define assert_rss_growth_below(kib, bound)                             \
    do {                                                                \
        if (!SANITIZED)                                                 \
            assert_true((kib) < (bound));                               \
        else                                                            \
            print_message("    (RSS not checked under a sanitizer)\n"); \
    } while (0)

/* Every byte sent here is the pattern's (pattern.h), 4 MiB long. */
#define PLEN ((size_t)4 << 20)

/* ---- configurations ----------------------------------------------------- */

/* The daemon part every configuration starts with. */
#define HEAD(shutdown, access)           \
    "workers = 2;\n"                     \
    "shutdown_timeout = " shutdown ";\n" \
    "log = { target = \"stderr\"; level = \"info\"; access = " access "; };\n"

/* An echo listener's group on 127.0.0.1:port (0: any). */
static void echo_group(char *buf, size_t len, const char *name, int port,
                       const char *idle)
{
    int n = snprintf(buf, len,
                     "{ name = \"%s\"; listen = [ \"127.0.0.1:%d\" ]; mode = \"echo\";\n"
                     "  buffer_size = 16384; idle_timeout = %s; }",
                     name, port, idle);
    assert_true(n > 0 && (size_t)n < len);
}

/* A proxy listener's group on 127.0.0.1:port relaying to one upstream on
 * 127.0.0.1:up. */
static void relay_group(char *buf, size_t len, const char *name, int port, int up,
                        const char *idle, const char *connect_timeout, int retries)
{
    int n = snprintf(buf, len,
                     "{ name = \"%s\"; listen = [ \"127.0.0.1:%d\" ]; mode = \"proxy\";\n"
                     "  upstreams = [ \"127.0.0.1:%d\" ]; buffer_size = 16384;\n"
                     "  idle_timeout = %s; connect_timeout = %s; retries = %d;\n"
                     "  fail_timeout = 0; }",
                     name, port, up, idle, connect_timeout, retries);
    assert_true(n > 0 && (size_t)n < len);
}

/* ---- the daemon from outside ------------------------------------------- */

/*
 * The access line of the client from 127.0.0.1:port on `listener`, which
 * must say `expect` (when not NULL) and end with reason=`reason`: waits up
 * to WAIT_MS for one.  The listener is part of the key: a client port may
 * be shared by connections to different listeners (Linux lets connect()
 * reuse a local port for another destination).
 */
static const char *check_access(struct echod *e, const char *listener, int port,
                                const char *expect, const char *reason)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "access listener=%s client=127.0.0.1:%d ", listener,
             port);
    char r[64];
    snprintf(r, sizeof(r), " reason=%s", reason);
    const char *last = NULL;
    int64_t until = ms_now() + WAIT_MS;
    for (int round = 0; round < 100000; round++) {
        for (int n = 0; n < 64; n++) {
            const char *line = echod_log_line(e, needle, n);
            if (line == NULL)
                break;
            last = line;
            const char *at = strstr(line, r);
            if ((expect == NULL || strstr(line, expect) != NULL) && at != NULL &&
                at[strlen(r)] == '\0')
                return line;
        }
        if (ms_now() >= until)
            break;
        sleep_ms(5);
    }
    if (last == NULL)
        fail_msg("no access line for client 127.0.0.1:%d on listener %s", port, listener);
    fail_msg("no access line with \"%s\" ending in \"%s\"; the last for client "
             "127.0.0.1:%d on listener %s: %s",
             expect != NULL ? expect : "", r, port, listener, last);
    return NULL;
}

/* The reason= of the access line of the client from 127.0.0.1:port on
 * `listener`. */
static const char *access_reason(struct echod *e, const char *listener, int port)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "access listener=%s client=127.0.0.1:%d ", listener,
             port);
    const char *line = echod_wait_log(e, needle, WAIT_MS);
    if (line == NULL)
        fail_msg("no access line for client 127.0.0.1:%d on listener %s", port, listener);
    const char *at = strstr(line, " reason=");
    assert_non_null(at);
    return at + 8;
}

/* The daemon's CPU time so far (user + system, every thread), in ms. */
static long long cpu_ms(struct echod *e)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)echod_pid(e));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    char buf[2048];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    /* After "(comm)": state is field 3, utime and stime 14 and 15. */
    char *p = strrchr(buf, ')');
    assert_non_null(p);
    unsigned long long ut = 0, st = 0;
    assert_int_equal(sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                            &st),
                     2);
    long tck = sysconf(_SC_CLK_TCK);
    return (long long)((ut + st) * 1000ull / (unsigned long long)(tck > 0 ? tck : 100));
}

/* The daemon's "Max open files" soft limit, from /proc/PID/limits. */
static long daemon_nofile(struct echod *e)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/limits", (int)echod_pid(e));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long v = -1;
    char line[256];
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "Max open files", 14) == 0)
            v = strtol(line + 14, NULL, 10);
    fclose(f);
    return v;
}

/* How many of the daemon's sockets are in TCP state `st` (8: CLOSE_WAIT),
 * matching the socket inodes of /proc/PID/fd with /proc/PID/net/tcp{,6}. */
static int sockets_in_state(struct echod *e, unsigned st)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)echod_pid(e));
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    unsigned long inodes[4096];
    size_t n = 0;
    char link[128];
    while ((de = readdir(d)) != NULL && n < ARRAY_LEN(inodes)) {
        if (de->d_name[0] == '.')
            continue;
        char fdpath[PATH_MAX + 300];
        snprintf(fdpath, sizeof(fdpath), "%s/%s", path, de->d_name);
        ssize_t len = readlink(fdpath, link, sizeof(link) - 1);
        if (len <= 0)
            continue;
        link[len] = '\0';
        unsigned long ino;
        if (sscanf(link, "socket:[%lu]", &ino) == 1)
            inodes[n++] = ino;
    }
    closedir(d);
    int count = 0;
    static const char *const tables[] = {"tcp", "tcp6"};
    for (size_t t = 0; t < ARRAY_LEN(tables); t++) {
        snprintf(path, sizeof(path), "/proc/%d/net/%s", (int)echod_pid(e), tables[t]);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        char line[512];
        while (fgets(line, sizeof(line), f) != NULL) {
            unsigned state;
            unsigned long ino;
            if (sscanf(line, " %*d: %*s %*s %x %*s %*s %*s %*d %*d %lu", &state, &ino) !=
                2)
                continue;
            for (size_t i = 0; i < n; i++)
                if (inodes[i] == ino && state == st)
                    count++;
        }
        fclose(f);
    }
    return count;
}

/* ---- test upstreams ------------------------------------------------------- */

/* A test upstream on 127.0.0.1:0 (UP_ECHO, UP_SHUT_FIRST or UP_SEND_CLOSE);
 * the sending modes send the pattern from k * 1000003 on their k-th
 * connection. */
static struct upsrv *start_upstream(enum up_mode mode, size_t nbytes)
{
    return up_start(&(struct up_conf){
        .mode = mode, .nbytes = nbytes, .stride = 1000003, .max = 1024, .backlog = 1024});
}

/* ---- descriptor exhaustion ---------------------------------------------- */

/* The daemon's soft RLIMIT_NOFILE in that test. */
#define FD_LIMIT 48

/* Waits (up to ms) for each client of fds[0..n) that sent its one byte to
 * be served (the byte back: served[i] = 1) or turned away (EOF or reset:
 * served[i] = 0); -1 stays for those with no answer. */
static void classify(const int *fds, int *served, size_t n, int ms)
{
    int64_t until = ms_now() + ms;
    struct pollfd *pfd = calloc(n, sizeof(*pfd));
    size_t *idx = calloc(n, sizeof(*idx));
    assert_true(pfd != NULL && idx != NULL);
    for (int round = 0; round < 100000; round++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (served[i] < 0) {
                pfd[k] = (struct pollfd){.fd = fds[i], .events = POLLIN};
                idx[k++] = i;
            }
        int64_t left = until - ms_now();
        if (k == 0 || left <= 0)
            break;
        int r = poll(pfd, (nfds_t)k, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (size_t j = 0; j < k; j++) {
            if (pfd[j].revents == 0)
                continue;
            char c;
            ssize_t got = recv(fds[idx[j]], &c, 1, MSG_DONTWAIT);
            if (got == 1)
                served[idx[j]] = 1;
            else if (got == 0 || (errno != EAGAIN && errno != EINTR))
                served[idx[j]] = 0;
        }
    }
    free(pfd);
    free(idx);
}
/* A daemon with one echo listener under RLIMIT_NOFILE = FD_LIMIT. */
static struct echod *start_low_nofile(void)
{
    char g[512];
    echo_group(g, sizeof(g), "echo", 0, "30.0");
    char conf[1024];
    snprintf(conf, sizeof(conf), HEAD("2.0", "true") "listeners = ( %s );\n", g);
    struct echod *e = echod_start_nofile(conf, FD_LIMIT);
    assert_int_equal(daemon_nofile(e), FD_LIMIT);
    return e;
}

/* n clients at once, each sending one byte (tracked, non-blocking). */
static void flood(int port, int *fds, int *served, int n)
{
    for (int i = 0; i < n; i++) {
        fds[i] = client4(port);
        track_fd(fds[i]);
        set_nonblocking(fds[i]);
        (void)send(fds[i], "x", 1, MSG_NOSIGNAL);
        served[i] = -1;
    }
}

/*
 * With RLIMIT_NOFILE = 48 and 200 clients at once, each sending one byte:
 * the daemon stays up, serves as many as its descriptors allow and turns
 * every other away at once (none is left hanging), logs "out of file
 * descriptors", does not spin while it stays at the limit (its CPU time
 * over a second in which a new client knocks every 50 ms), goes on serving
 * the clients it holds byte for byte, and once they have gone serves new
 * clients again, many at once.
 */
static void fd_exhaustion_refuses_without_spinning_and_recovers(void **state)
{
    (void)state;
    struct echod *e = start_low_nofile();
    int port = echod_port(e, "echo", 0);
    int idle = echod_fd_count(e);
    assert_true(idle > 3 && idle < FD_LIMIT - 8);

    enum { FLOOD = 200 };
    int fds[FLOOD], served[FLOOD];
    flood(port, fds, served, FLOOD);
    classify(fds, served, FLOOD, 5000);
    int held = 0, shed = 0, hanging = 0;
    for (int i = 0; i < FLOOD; i++)
        held += served[i] == 1, shed += served[i] == 0, hanging += served[i] < 0;
    print_message("    limit %d, %d descriptors idle: of %d clients %d served, %d turned "
                  "away, %d without an answer\n",
                  FD_LIMIT, idle, FLOOD, held, shed, hanging);
    /* (Clients left without an answer, and served ones past the room
     * there is, are fd_exhaustion_accounting_and_spares's business.) */
    assert_true(held > 0 && shed > 0);
    echod_must_log(e, "out of file descriptors");

    /* At the limit: a knock every 50 ms for a second, each turned away at
     * once; the CPU the daemon used meanwhile. */
    enum { KNOCKS = 20 };
    int knock[KNOCKS], kserved[KNOCKS];
    long long c0 = cpu_ms(e);
    int64_t t0 = ms_now();
    for (int i = 0; i < KNOCKS; i++) {
        flood(port, &knock[i], &kserved[i], 1);
        int64_t wait = t0 + 50 * (i + 1) - ms_now();
        if (wait > 0)
            sleep_ms((int)wait);
    }
    long long c1 = cpu_ms(e);
    int64_t t1 = ms_now();
    /* And a second without knocks. */
    sleep_ms(1000);
    long long c2 = cpu_ms(e);
    int64_t t2 = ms_now();
    classify(knock, kserved, KNOCKS, 2000);
    int kturned = 0, kserved_n = 0;
    for (int i = 0; i < KNOCKS; i++)
        kturned += kserved[i] == 0, kserved_n += kserved[i] == 1;
    double pct = 100.0 * (double)(c1 - c0) / (double)(t1 - t0 > 0 ? t1 - t0 : 1);
    double quiet = 100.0 * (double)(c2 - c1) / (double)(t2 - t1 > 0 ? t2 - t1 : 1);
    print_message(
        "    at the limit: %lld ms of CPU in %lld ms with a knock every 50 ms "
        "(%.1f%% of a core), %lld ms in %lld ms without (%.1f%%); of %d knocks %d "
        "turned away, %d served\n",
        c1 - c0, (long long)(t1 - t0), pct, c2 - c1, (long long)(t2 - t1), quiet, KNOCKS,
        kturned, kserved_n);
    /* Turned away, most of them.  (One may be served, or wait, when a
     * descriptor a worker gave up to shed a client was taken by the other
     * worker's accept; fd_exhaustion_accounting_and_spares is about that.) */
    assert_true(kturned >= KNOCKS / 2);
    assert_true(pct < 25.0);
    assert_true(quiet < 10.0);
    assert_true(kill(echod_pid(e), 0) == 0);

    /* The clients it holds are served meanwhile, byte for byte. */
    int checked = 0;
    for (int i = 0; i < FLOOD && checked < 5; i++)
        if (served[i] == 1) {
            send_all(fds[i], pat(1000 * (uint64_t)i), 5000);
            uint8_t back[5000];
            recv_exact(fds[i], back, sizeof(back));
            assert_memory_equal(back, pat(1000 * (uint64_t)i), sizeof(back));
            checked++;
        }
    assert_int_equal(checked, held < 5 ? held : 5);

    /* The clients go; once the daemon has let go of their descriptors (it
     * may have one spare fewer: the other test's business) new clients are
     * served, one with 100000 bytes, then 30 at once. */
    for (int i = 0; i < FLOOD; i++)
        close_tracked(fds[i]);
    for (int i = 0; i < KNOCKS; i++)
        close_tracked(knock[i]);
    int64_t until = ms_now() + WAIT_MS;
    while (echod_fd_count(e) > idle && ms_now() < until)
        sleep_ms(2);
    assert_true(echod_fd_count(e) <= idle);
    int fd = client4(port);
    int cport = local_port(fd);
    send_all(fd, pat(777), 100000);
    uint8_t *back = malloc(100000);
    assert_non_null(back);
    recv_exact(fd, back, 100000);
    assert_memory_equal(back, pat(777), 100000);
    free(back);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    assert_true(peer_closed_within(fd, WAIT_MS));
    close(fd);
    check_access(e, "echo", cport, " in=100000 out=100000 ", "done");
    enum { AGAIN = 30 };
    int again[AGAIN], aserved[AGAIN];
    flood(port, again, aserved, AGAIN);
    classify(again, aserved, AGAIN, WAIT_MS);
    for (int i = 0; i < AGAIN; i++)
        assert_int_equal(aserved[i], 1);
    for (int i = 0; i < AGAIN; i++)
        close_tracked(again[i]);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/*
 * The same flood, five times over: the daemon counts exactly the clients
 * it turned away (refused= of SIGUSR1, the out_of_fds refusals), never
 * gives a client the descriptor it keeps spare for shedding, and after
 * each flood is back to its idle descriptors, spares included, so that the
 * next flood is shed as well.
 */
static void fd_exhaustion_accounting_and_spares(void **state)
{
    (void)state;
    struct echod *e = start_low_nofile();
    int port = echod_port(e, "echo", 0);
    int idle = echod_fd_count(e);
    enum { FLOOD = 200, ROUNDS = 5 };
    int fds[FLOOD], served[FLOOD];
    int held[ROUNDS], shed[ROUNDS], hanging[ROUNDS], after[ROUNDS];
    long long counted[ROUNDS];
    long long refused0 = echod_counters_now(e, "echo").refused;
    for (int r = 0; r < ROUNDS; r++) {
        flood(port, fds, served, FLOOD);
        classify(fds, served, FLOOD, 5000);
        held[r] = shed[r] = hanging[r] = 0;
        for (int i = 0; i < FLOOD; i++)
            held[r] += served[i] == 1, shed[r] += served[i] == 0,
                hanging[r] += served[i] < 0;
        /* (A refusal is counted just after the client is closed: ask
         * again while the count is short.) */
        long long refused = echod_counters_now(e, "echo").refused;
        for (int i = 0; i < 10 && refused - refused0 < shed[r]; i++) {
            sleep_ms(50);
            refused = echod_counters_now(e, "echo").refused;
        }
        counted[r] = refused - refused0;
        refused0 = refused;
        for (int i = 0; i < FLOOD; i++)
            close_tracked(fds[i]);
        (void)echod_wait_fd_count(e, idle, 1000);
        after[r] = echod_fd_count(e);
        print_message(
            "    flood %d: %d served (room for %d), %d turned away, %d hanging; "
            "refusals counted %lld; descriptors after %d (idle %d)\n",
            r + 1, held[r], FD_LIMIT - idle, shed[r], hanging[r], counted[r], after[r],
            idle);
    }
    for (int r = 0; r < ROUNDS; r++) {
        assert_int_equal(hanging[r], 0);
        assert_int_equal(counted[r], shed[r]);
        assert_true(held[r] <= FD_LIMIT - idle);
        assert_int_equal(after[r], idle);
    }
    assert_int_equal(echod_stop(e, 3000), 0);
}
/* ---- upstream faults, each beside a healthy relayed stream --------------- */

/*
 * A daemon with two proxy listeners: "healthy" to an echo upstream, with
 * a streamer on it, and "fault" to the upstream under test (retries = 0,
 * so that the fault reaches the client).
 */
struct fault_env {
    struct echod *e;
    struct upsrv *good;
    struct stream *s;
    int p_fault;
    uint64_t before; /* verified by the streamer when the fault began */
};

/* The daemon with "healthy" and the listener groups `groups` (", {...}"),
 * and the streamer going. */
static void env_start(struct fault_env *env, const char *groups)
{
    env->good = start_upstream(UP_ECHO, 0);
    char g1[1024];
    relay_group(g1, sizeof(g1), "healthy", 0, env->good->srv.port, "30.0", "3.0", 0);
    env->e = echod_startf(HEAD("2.0", "true") "listeners = ( %s%s );\n", g1, groups);
    env->p_fault = -1;
    env->s = stream_start(echod_port(env->e, "healthy", 0), 12345, false);
    if (!stream_advances(env->s, 256 * KIB, WAIT_MS)) {
        stream_check(env->s);
        fail_msg("the healthy stream does not flow");
    }
    env->before = atomic_load(&env->s->verified);
}

static void fault_start(struct fault_env *env, int fault_up, const char *idle,
                        const char *connect_timeout)
{
    char g2[1024];
    relay_group(g2, sizeof(g2), "fault", 0, fault_up, idle, connect_timeout, 0);
    char groups[1100];
    snprintf(groups, sizeof(groups), ", %s", g2);
    env_start(env, groups);
    env->p_fault = echod_port(env->e, "fault", 0);
}

/* fault_start() with the fault listener's upstream a test listener on
 * 127.0.0.1 (backlog 16, tracked) that accepts nothing by itself: its
 * socket returned, its port in *up. */
static int fault_start_listening(struct fault_env *env, int *up, const char *idle,
                                 const char *connect_timeout)
{
    int lfd = listen_loopback(16, up);
    track_fd(lfd);
    fault_start(env, *up, idle, connect_timeout);
    return lfd;
}

/* The healthy stream went on through the fault, still does, and ends with
 * every byte back and reason=done. */
static void fault_end(struct fault_env *env, const char *what)
{
    struct stream *s = env->s;
    stream_check(s);
    if (!stream_advances(s, 256 * KIB, WAIT_MS)) {
        stream_check(s);
        fail_msg("the healthy stream stopped after the fault");
    }
    uint64_t during = atomic_load(&s->verified) - env->before;
    int cport = s->cport;
    uint64_t total = stream_finish(s);
    char expect[128];
    snprintf(expect, sizeof(expect), " upstream=127.0.0.1:%d in=%llu out=%llu ",
             env->good->srv.port, (unsigned long long)total, (unsigned long long)total);
    check_access(env->e, "healthy", cport, expect, "done");
    print_message("    %s; healthy stream: %.1f MiB verified during the fault, %.1f MiB "
                  "in all, intact\n",
                  what, (double)during / MIB, (double)total / MIB);
    assert_int_equal(atomic_load(&env->good->srv.errors), 0);
    assert_int_equal(echod_stop(env->e, 3000), 0);
}

/* An upstream that refuses: the client gets a reset (an EOF would look
 * like an empty answer), reason=no-upstream, and the refusal is logged. */
static void upstream_refuses(void **state)
{
    (void)state;
    struct fault_env env;
    int bad = refusing_port();
    fault_start(&env, bad, "30.0", "3.0");
    int fd = client4(env.p_fault);
    int cport = local_port(fd);
    enum end how = wait_end(fd, WAIT_MS, NULL);
    close(fd);
    assert_int_equal(how, END_RESET);
    check_access(env.e, "fault", cport, " upstream=- in=0 out=0 ", "no-upstream");
    echod_must_log(env.e, "upstream 127.0.0.1:%d failed: Connection refused", bad);
    fault_end(&env, "refused: client got a reset, reason=no-upstream");
}

/* An upstream that accepts and resets at once (SO_LINGER 0): the client's
 * connection is reset too; reason=upstream-reset, or no-upstream with the
 * reset logged when it came before the daemon saw the connect complete.
 * Then one that resets after reading the client's first bytes: the client
 * gets a reset, reason=upstream-reset. */
static void upstream_resets_after_accept(void **state)
{
    (void)state;
    struct fault_env env;
    int up;
    int lfd = fault_start_listening(&env, &up, "30.0", "3.0");

    int fd = client4(env.p_fault);
    int cport = local_port(fd);
    close_reset(accept_within(lfd, WAIT_MS));
    enum end how = wait_end(fd, WAIT_MS, NULL);
    close(fd);
    assert_int_equal(how, END_RESET);
    const char *reason = access_reason(env.e, "fault", cport);
    if (strcmp(reason, "no-upstream") == 0) {
        echod_must_log(env.e, "upstream 127.0.0.1:%d failed: Connection reset", up);
    } else {
        check_access(env.e, "fault", cport, " in=0 out=0 ", "upstream-reset");
    }
    char first[160];
    snprintf(first, sizeof(first), "reset at accept: client got %s, reason=%s",
             end_name(how), reason);

    fd = client4(env.p_fault);
    cport = local_port(fd);
    send_all(fd, "hello", 5);
    int ufd = accept_within(lfd, WAIT_MS);
    char got[5];
    recv_exact(ufd, got, 5);
    assert_memory_equal(got, "hello", 5);
    close_reset(ufd);
    enum end how2 = wait_end(fd, WAIT_MS, NULL);
    close(fd);
    assert_int_equal(how2, END_RESET);
    check_access(env.e, "fault", cport, " in=5 out=0 ", "upstream-reset");
    char what[320];
    snprintf(what, sizeof(what),
             "%s; reset after 5 bytes: client got %s, "
             "reason=upstream-reset",
             first, end_name(how2));
    fault_end(&env, what);
}

/*
 * An upstream that accepts and never reads, while the client sends all it
 * can: the client's sends stall (backpressure), the daemon's memory stays
 * flat, the healthy stream flows on, and idle_timeout (1 s) aborts the stuck
 * connection: both peers get a reset.  The upstream, reading at last, finds
 * a byte-exact prefix of the stream, then the reset.
 */
static void upstream_never_reads(void **state)
{
    (void)state;
    struct fault_env env;
    int up;
    /* The sends must stall (500 ms without room) before the idle timeout
     * resets the client: a sanitized daemon on a loaded machine fills the
     * buffers more slowly (a TSan run in CI saw the reset first). */
    const int idle_ms = SANITIZED ? 2500 : 1000;
    int lfd = fault_start_listening(&env, &up, SANITIZED ? "2.5" : "1.0", "3.0");

    int fd = client4(env.p_fault);
    int cport = local_port(fd);
    set_nonblocking(fd);
    int ufd = accept_within(lfd, WAIT_MS);
    track_fd(ufd);
    long rss0 = echod_rss_kib(env.e);
    uint64_t sent = 0;
    bool stalled = send_until_stalled(fd, 99, &sent, 5000);
    int64_t stalled_at = ms_now();
    long rss1 = echod_rss_kib(env.e);
    if (!stalled)
        fail_msg("the client's sends never stalled (%llu bytes taken)",
                 (unsigned long long)sent);
    assert_rss_growth_below(rss1 - rss0, 2048);
    /* The healthy stream flows while this one is stuck. */
    assert_true(stream_advances(env.s, 1 * MIB, WAIT_MS));

    enum end how = wait_end(fd, idle_ms + WAIT_MS, NULL);
    int64_t closed_after = ms_now() - stalled_at;
    close(fd);
    assert_int_equal(how, END_RESET);
    const char *line = check_access(env.e, "fault", cport, " out=0 ", "idle-timeout");
    long long in = log_field(line, " in=");
    assert_true(in > 0 && (uint64_t)in <= sent);

    /* What reached the upstream: a prefix of the stream, then the reset. */
    set_nonblocking(ufd);
    uint8_t *buf = malloc(64 * KIB);
    assert_non_null(buf);
    uint64_t got = 0;
    enum end uend = END_NONE;
    int64_t until = ms_now() + WAIT_MS;
    while (uend == END_NONE && ms_now() < until) {
        ssize_t n = recv(ufd, buf, 64 * KIB, MSG_DONTWAIT);
        if (n > 0) {
            if (memcmp(buf, pat(99 + got), (size_t)n) != 0)
                fail_msg("the upstream got bytes %llu..%llu wrong",
                         (unsigned long long)got,
                         (unsigned long long)got + (unsigned long long)n);
            got += (uint64_t)n;
        } else if (n == 0) {
            uend = END_EOF;
        } else if (errno == EAGAIN) {
            struct pollfd p = {.fd = ufd, .events = POLLIN};
            (void)poll(&p, 1, 100);
        } else {
            uend = END_RESET;
        }
    }
    free(buf);
    close_tracked(ufd);
    assert_int_equal(uend, END_RESET);
    assert_true(got > 0 && got <= (uint64_t)in);
    char what[320];
    snprintf(
        what, sizeof(what),
        "never reads: %.1f MiB sent before the sends stalled, "
        "RSS %ld -> %ld KiB, ended %lld ms after the stall (%s, reason=idle-timeout), "
        "upstream got %llu of the %lld bytes taken",
        (double)sent / MIB, rss0, rss1, (long long)closed_after, end_name(how),
        (unsigned long long)got, in);
    fault_end(&env, what);
}

/*
 * An upstream that sends 300000 bytes and closes: the client gets exactly
 * those bytes and an EOF; when it then half-closes, reason=done.  A second
 * client writes after that EOF: the closed upstream resets and the
 * connection ends with reason=upstream-reset.
 */
static void upstream_closes_mid_stream(void **state)
{
    (void)state;
    const size_t N = 300000;
    struct fault_env env;
    struct upsrv *src = start_upstream(UP_SEND_CLOSE, N);
    fault_start(&env, src->srv.port, "30.0", "3.0");
    uint8_t *buf = malloc(N);
    assert_non_null(buf);

    int fd = client4(env.p_fault);
    int cport = local_port(fd);
    recv_exact(fd, buf, N);
    assert_memory_equal(buf, pat(0), N); /* the upstream's first connection */
    assert_true(peer_closed_within(fd, WAIT_MS));
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    char expect[64];
    snprintf(expect, sizeof(expect), " in=0 out=%zu ", N);
    check_access(env.e, "fault", cport, expect, "done");
    close(fd);

    fd = client4(env.p_fault);
    cport = local_port(fd);
    recv_exact(fd, buf, N);
    assert_memory_equal(buf, pat(1000003), N);
    assert_true(peer_closed_within(fd, WAIT_MS));
    send_all(fd, "late", 4);
    snprintf(expect, sizeof(expect), " out=%zu ", N);
    const char *line = check_access(env.e, "fault", cport, expect, "upstream-reset");
    close(fd);
    free(buf);
    char what[256];
    snprintf(what, sizeof(what),
             "closes after %zu bytes: both clients got them and "
             "an EOF; reasons done, then upstream-reset (%s)",
             N, strstr(line, " in="));
    fault_end(&env, what);
}

/* A blackholed upstream (SYNs dropped): given up after connect_timeout
 * (0.3 s); the client gets a reset, reason=no-upstream, and the timeout is
 * logged. */
static void upstream_blackholed(void **state)
{
    (void)state;
    struct fault_env env;
    int silent = silent_port();
    fault_start(&env, silent, "30.0", "0.3");
    int64_t t0 = ms_now();
    int fd = client4(env.p_fault);
    int cport = local_port(fd);
    enum end how = wait_end(fd, WAIT_MS, NULL);
    int64_t after = ms_now() - t0;
    close(fd);
    assert_int_equal(how, END_RESET);
    assert_true(after >= 300 - 2);
    check_access(env.e, "fault", cport, " upstream=- in=0 out=0 ", "no-upstream");
    echod_must_log(env.e, "upstream 127.0.0.1:%d failed: connect timeout", silent);
    char what[160];
    snprintf(what, sizeof(what), "blackholed: reset after %lld ms, reason=no-upstream",
             (long long)after);
    fault_end(&env, what);
}

/* ---- client faults ---------------------------------------------------------- */

/* The daemon with "healthy", an echo listener "echo" and a relay "relay"
 * to the upstream on up_port, both with idle_timeout `idle`; the
 * streamer going; their ports in *p_echo and *p_relay. */
static void client_env_start(struct fault_env *env, int up_port, const char *idle,
                             int *p_echo, int *p_relay)
{
    char g2[512];
    echo_group(g2, sizeof(g2), "echo", 0, idle);
    char g3[1024];
    relay_group(g3, sizeof(g3), "relay", 0, up_port, idle, "3.0", 0);
    char groups[1600];
    snprintf(groups, sizeof(groups), ", %s, %s", g2, g3);
    env_start(env, groups);
    *p_echo = echod_port(env->e, "echo", 0);
    *p_relay = echod_port(env->e, "relay", 0);
}

/* Receives bytes [from, to) of the stream from base on fd, checking each;
 * fails after WAIT_MS without progress. */
static void recv_verify(int fd, uint64_t base, uint64_t from, uint64_t to)
{
    static uint8_t buf[64 * 1024];
    int64_t last = ms_now();
    while (from < to) {
        size_t want = to - from < sizeof(buf) ? (size_t)(to - from) : sizeof(buf);
        ssize_t n = recv(fd, buf, want, MSG_DONTWAIT);
        if (n > 0) {
            if (memcmp(buf, pat(base + from), (size_t)n) != 0)
                fail_msg("bytes %llu..%llu differ from what was sent",
                         (unsigned long long)from,
                         (unsigned long long)from + (unsigned long long)n);
            from += (uint64_t)n;
            last = ms_now();
            continue;
        }
        if (n == 0)
            fail_msg("EOF at %llu of %llu bytes", (unsigned long long)from,
                     (unsigned long long)to);
        if (errno != EAGAIN && errno != EINTR)
            fail_msg("recv at %llu of %llu bytes: %s", (unsigned long long)from,
                     (unsigned long long)to, strerror(errno));
        if (ms_now() - last > WAIT_MS)
            fail_msg("nothing for %d ms at %llu of %llu bytes", WAIT_MS,
                     (unsigned long long)from, (unsigned long long)to);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        (void)poll(&p, 1, 100);
    }
}

/* Waits (up to 3 s) until fd's receive queue stops growing for 200 ms;
 * returns its length. */
static int queue_settled(int fd)
{
    int last = -1, now = 0;
    int64_t since = ms_now(), until = ms_now() + 3000;
    while (ms_now() < until) {
        assert_int_equal(ioctl(fd, FIONREAD, &now), 0);
        if (now != last) {
            last = now;
            since = ms_now();
        } else if (ms_now() - since >= 200) {
            break;
        }
        sleep_ms(10);
    }
    return now;
}

/*
 * A client resets while the daemon has data for it: an echo client that
 * sent until its sends stalled, and a relay client that read nothing of an
 * upstream sending 64 MiB.  Each ends with reason=client-reset, the relay's
 * upstream connection is closed too, the daemon is back to its descriptors
 * with no socket in CLOSE_WAIT, and the healthy stream is intact.
 */
static void client_resets_mid_stream(void **state)
{
    (void)state;
    struct fault_env env;
    struct upsrv *src = start_upstream(UP_SHUT_FIRST, 64 * MIB);
    int p_echo, p_relay;
    client_env_start(&env, src->srv.port, "30.0", &p_echo, &p_relay);
    int base_fds = echod_fd_count(env.e);

    int fd = client4(p_echo);
    int cport = local_port(fd);
    set_nonblocking(fd);
    uint64_t sent = 0;
    assert_true(send_until_stalled(fd, 5, &sent, 5000));
    close_reset(fd);
    const char *line = check_access(env.e, "echo", cport, NULL, "client-reset");
    long long in = log_field(line, " in="), out = log_field(line, " out=");
    assert_true(in > 0 && out < in);

    fd = client4(p_relay);
    int rport = local_port(fd);
    int queued = queue_settled(fd);
    assert_true(queued > 0);
    close_reset(fd);
    const char *rline = check_access(env.e, "relay", rport, " in=0 ", "client-reset");
    assert_true(wait_counter(&src->srv.open, 0, WAIT_MS));
    assert_int_equal(atomic_load(&src->srv.errors), 0);
    assert_true(echod_wait_fd_count(env.e, base_fds, WAIT_MS));
    assert_int_equal(sockets_in_state(env.e, 0x08), 0);
    char what[400];
    snprintf(
        what, sizeof(what),
        "echo client reset with %lld of %lld bytes not yet back; "
        "relay client reset with %d bytes unread (%s); upstream end closed (%d reset); "
        "descriptors back to %d",
        in - out, in, queued, strstr(rline, " out="), atomic_load(&src->resets),
        base_fds);
    fault_end(&env, what);
}

/*
 * A client sends, half-closes and then says nothing (reads nothing): the
 * daemon sends everything back and closes by itself, leaving no socket in
 * CLOSE_WAIT (echo: 0, 1 and 60000 bytes; relay: 0 and 60000 bytes).  When
 * more was sent than the socket buffers hold, the daemon keeps the
 * connection until the client reads, and then lets go as well.
 */
static void client_half_close_then_silence(void **state)
{
    (void)state;
    struct fault_env env;
    struct upsrv *up2 = start_upstream(UP_ECHO, 0);
    int p_echo, p_relay;
    client_env_start(&env, up2->srv.port, "30.0", &p_echo, &p_relay);
    int base_fds = echod_fd_count(env.e);

    static const struct {
        bool relay;
        size_t size;
    } cases[] = {{false, 0}, {false, 1}, {false, 60000}, {true, 0}, {true, 60000}};
    uint8_t *buf = malloc(60000);
    assert_non_null(buf);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        size_t size = cases[i].size;
        uint64_t base = 4242 + 77 * i;
        int fd = client4(cases[i].relay ? p_relay : p_echo);
        int cport = local_port(fd);
        /* Until the daemon has taken the connection, its descriptors are
         * the idle ones already, and a socket it accepts while they are
         * looked at may be caught in CLOSE_WAIT (seen once under load). */
        for (int k = 0; k < 1000 && echod_fd_count(env.e) <= base_fds; k++)
            sleep_ms(1);
        send_all(fd, pat(base), size);
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
        /* Silence: everything is sent back and the daemon lets go. */
        if (!echod_wait_fd_count(env.e, base_fds, WAIT_MS))
            fail_msg("%s, %zu bytes: the daemon still has %d descriptors (%d idle)",
                     cases[i].relay ? "relay" : "echo", size, echod_fd_count(env.e),
                     base_fds);
        assert_int_equal(sockets_in_state(env.e, 0x08), 0);
        recv_exact(fd, buf, size);
        assert_memory_equal(buf, pat(base), size);
        assert_true(peer_closed_within(fd, WAIT_MS));
        close(fd);
        char expect[64];
        snprintf(expect, sizeof(expect), " in=%zu out=%zu ", size, size);
        check_access(env.e, cases[i].relay ? "relay" : "echo", cport, expect, "done");
    }
    free(buf);

    /* More than the buffers hold: the daemon waits for the reader. */
    int fd = client4(p_echo);
    int cport = local_port(fd);
    set_nonblocking(fd);
    uint64_t sent = 0;
    assert_true(send_until_stalled(fd, 31337, &sent, 5000));
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    sleep_ms(300);
    int holding = echod_fd_count(env.e);
    assert_int_equal(holding, base_fds + 1);
    recv_verify(fd, 31337, 0, sent);
    assert_true(peer_closed_within(fd, WAIT_MS));
    close(fd);
    char expect[64];
    snprintf(expect, sizeof(expect), " in=%llu out=%llu ", (unsigned long long)sent,
             (unsigned long long)sent);
    check_access(env.e, "echo", cport, expect, "done");
    assert_true(echod_wait_fd_count(env.e, base_fds, WAIT_MS));
    assert_int_equal(sockets_in_state(env.e, 0x08), 0);
    assert_int_equal(atomic_load(&up2->srv.errors), 0);
    char what[256];
    snprintf(what, sizeof(what),
             "FIN then silence: 5 connections echoed and closed by "
             "the daemon alone, 0 in CLOSE_WAIT; %.1f MiB held for a silent reader, all "
             "delivered",
             (double)sent / MIB);
    fault_end(&env, what);
}

/*
 * Slow readers with fast writers: 8 echo clients sending as fast as the
 * daemon takes while reading 4 KiB every 10 ms, and a relay client reading
 * as slowly from an upstream that sends 8 MiB at once, for 2 s.  The
 * daemon's memory grows by less than 2 MiB, and every byte arrives.
 */
static void client_slow_reader_fast_writer(void **state)
{
    (void)state;
    struct fault_env env;
    const uint64_t SRC = 8 * MIB;
    struct upsrv *src = start_upstream(UP_SHUT_FIRST, (size_t)SRC);
    int p_echo, p_relay;
    client_env_start(&env, src->srv.port, "30.0", &p_echo, &p_relay);

    enum { NE = 8, N = NE + 1 };
    struct {
        int fd, cport;
        uint64_t base, sent, got;
    } cl[N];
    for (int i = 0; i < N; i++) {
        cl[i].fd = client4(i < NE ? p_echo : p_relay);
        track_fd(cl[i].fd);
        cl[i].cport = local_port(cl[i].fd);
        set_nonblocking(cl[i].fd);
        cl[i].base = i < NE ? 333331 * (uint64_t)(i + 1) : 0;
        cl[i].sent = cl[i].got = 0;
    }
    sleep_ms(100);
    long rss0 = echod_rss_kib(env.e), rss_max = rss0;
    uint8_t buf[4096];
    int64_t t0 = ms_now();
    for (int round = 0; round < 400 && ms_now() - t0 < 2000; round++) {
        for (int i = 0; i < N; i++) {
            for (int k = 0; i < NE && k < 16; k++) {
                ssize_t n = send(cl[i].fd, pat(cl[i].base + cl[i].sent), 64 * KIB,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n <= 0) {
                    if (n < 0 && errno != EAGAIN && errno != EINTR)
                        fail_msg("send: %s", strerror(errno));
                    break;
                }
                cl[i].sent += (uint64_t)n;
            }
            ssize_t n = recv(cl[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n > 0) {
                if (memcmp(buf, pat(cl[i].base + cl[i].got), (size_t)n) != 0)
                    fail_msg("client %d: bytes %llu.. differ", i,
                             (unsigned long long)cl[i].got);
                cl[i].got += (uint64_t)n;
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                fail_msg("client %d: the connection ended (%s)", i,
                         n == 0 ? "EOF" : strerror(errno));
            }
        }
        if (round % 10 == 0) {
            long rss = echod_rss_kib(env.e);
            if (rss > rss_max)
                rss_max = rss;
        }
        sleep_ms(10);
    }
    long rss_end = echod_rss_kib(env.e);
    if (rss_end > rss_max)
        rss_max = rss_end;
    uint64_t sent = 0, got = 0, inflight = 0;
    for (int i = 0; i < NE; i++) {
        sent += cl[i].sent, got += cl[i].got;
        if (cl[i].sent - cl[i].got > inflight)
            inflight = cl[i].sent - cl[i].got;
    }
    /* What a writer got ahead of its reader sits in the kernel's socket
     * buffers (their autotuning decides how much); not in the daemon. */
    print_message(
        "    8 echo clients sent %.1f MiB and read %.1f MiB in 2 s (at most %.1f MiB "
        "ahead, in socket buffers); the relay client read %.1f MiB; RSS %ld -> "
        "max %ld KiB (+%ld)\n",
        (double)sent / MIB, (double)got / MIB, (double)inflight / MIB,
        (double)cl[NE].got / MIB, rss0, rss_max, rss_max - rss0);
    assert_rss_growth_below(rss_max - rss0, 2048);

    /* Then they read the rest at full speed: every byte, then EOF. */
    for (int i = 0; i < NE; i++) {
        assert_int_equal(shutdown(cl[i].fd, SHUT_WR), 0);
        recv_verify(cl[i].fd, cl[i].base, cl[i].got, cl[i].sent);
        assert_true(peer_closed_within(cl[i].fd, WAIT_MS));
        close_tracked(cl[i].fd);
        char expect[96];
        snprintf(expect, sizeof(expect), " in=%llu out=%llu ",
                 (unsigned long long)cl[i].sent, (unsigned long long)cl[i].sent);
        check_access(env.e, "echo", cl[i].cport, expect, "done");
    }
    recv_verify(cl[NE].fd, 0, cl[NE].got, SRC);
    assert_true(peer_closed_within(cl[NE].fd, WAIT_MS));
    assert_int_equal(shutdown(cl[NE].fd, SHUT_WR), 0);
    char expect[96];
    snprintf(expect, sizeof(expect), " in=0 out=%llu ", (unsigned long long)SRC);
    check_access(env.e, "relay", cl[NE].cport, expect, "done");
    close_tracked(cl[NE].fd);
    assert_int_equal(up_failures(src), 0);
    fault_end(&env, "slow readers: every byte delivered after");
}

/*
 * Clients that send nothing are closed at idle_timeout (0.5 s), echo and
 * relay (the relay's upstream connection with them), and one that went
 * silent after an exchange 0.5 s after its last byte: reason=idle-timeout.
 */
static void client_silent_until_idle_timeout(void **state)
{
    (void)state;
    struct fault_env env;
    struct upsrv *up2 = start_upstream(UP_ECHO, 0);
    int p_echo, p_relay;
    client_env_start(&env, up2->srv.port, "0.5", &p_echo, &p_relay);

    enum { N = 6 }; /* 3 echo, 2 relay silent; the last talks first */
    int fds[N], ports[N];
    int64_t from[N], ended[N];
    for (int i = 0; i < N; i++) {
        from[i] = ms_now();
        fds[i] = client4(i >= 3 && i < 5 ? p_relay : p_echo);
        track_fd(fds[i]);
        ports[i] = local_port(fds[i]);
        ended[i] = -1;
    }
    send_all(fds[N - 1], "abc", 3);
    char back[3];
    recv_exact(fds[N - 1], back, 3);
    assert_memory_equal(back, "abc", 3);
    from[N - 1] = ms_now();
    assert_true(wait_counter(&up2->srv.open, 2, WAIT_MS));
    for (int round = 0; round < 1000; round++) {
        struct pollfd pfd[N];
        int idx[N], k = 0;
        for (int i = 0; i < N; i++)
            if (ended[i] < 0) {
                pfd[k] = (struct pollfd){.fd = fds[i], .events = POLLIN};
                idx[k++] = i;
            }
        if (k == 0 || ms_now() - from[0] > 500 + WAIT_MS)
            break;
        if (poll(pfd, (nfds_t)k, 50) <= 0)
            continue;
        for (int j = 0; j < k; j++)
            if (pfd[j].revents != 0) {
                char c;
                ssize_t n = recv(fds[idx[j]], &c, 1, MSG_DONTWAIT);
                assert_int_equal(n, -1); /* a reset: no data, no FIN */
                assert_int_equal(errno, ECONNRESET);
                ended[idx[j]] = ms_now();
            }
    }
    char figures[256] = "";
    size_t used = 0;
    for (int i = 0; i < N; i++) {
        if (ended[i] < 0)
            fail_msg("client %d not closed within %d ms", i, 500 + WAIT_MS);
        long long after = ended[i] - from[i];
        used += (size_t)snprintf(figures + used, sizeof(figures) - used, "%s%lld",
                                 i ? ", " : "", after);
        assert_true(after >= 500 - 2 && after < 500 + 2500);
        close_tracked(fds[i]);
        const char *line = check_access(env.e, i >= 3 && i < 5 ? "relay" : "echo",
                                        ports[i],
                                        i == N - 1 ? " in=3 out=3 " : " in=0 out=0 ",
                                        "idle-timeout");
        const char *d = strstr(line, " duration=");
        assert_non_null(d);
        assert_true(strtod(d + 10, NULL) >= 0.5);
    }
    assert_true(wait_counter(&up2->srv.open, 0, WAIT_MS));
    char what[400];
    snprintf(what, sizeof(what),
             "idle_timeout 0.5 s: reset after %s ms (3 echo, 2 relay, "
             "1 after its last byte), reason=idle-timeout",
             figures);
    fault_end(&env, what);
}

/* ---- churn ---------------------------------------------------------------- */

/*
 * Short connections by the thousand: two clients with 32 connections each
 * at any time, half to an echo listener and half relayed to an echo
 * upstream, each connection 0-4000 bytes checked byte for byte: 1 s of
 * warm-up, then 3 s measured.  Afterwards the daemon has its idle
 * descriptors again, its memory within 1 MiB of what it had after the
 * warm-up, and its counters agree with the clients to the byte.
 */
static void churn_thousands_of_short_connections(void **state)
{
    (void)state;
    struct upsrv *up = start_upstream(UP_ECHO, 0);
    char g1[512], g2[1024];
    echo_group(g1, sizeof(g1), "echo", 0, "30.0");
    relay_group(g2, sizeof(g2), "relay", 0, up->srv.port, "30.0", "3.0", 0);
    struct echod *e = echod_startf(HEAD("2.0", "false") "listeners = ( %s, %s );\n", g1,
                                   g2);
    int ports[2] = {echod_port(e, "echo", 0), echod_port(e, "relay", 0)};
    int fd_idle = echod_fd_count(e);
    long rss_start = echod_rss_kib(e);

    struct churn warm, run;
    churn_for(ports, 2, 2, 32, 2500, 1000, 1, &warm);
    if (warm.errors != 0)
        fail_msg("%llu errors in the warm-up; first: %s", (unsigned long long)warm.errors,
                 warm.err);
    assert_true(echod_wait_fd_count(e, fd_idle, WAIT_MS));
    long rss_warm = echod_rss_kib(e);
    int64_t t0 = ms_now();
    churn_for(ports, 2, 2, 32, 2500, 3000, 2, &run);
    int64_t took = ms_now() - t0;
    if (run.errors != 0)
        fail_msg("%llu errors in %llu connections; first: %s",
                 (unsigned long long)run.errors, (unsigned long long)run.done, run.err);
    bool fds_back = echod_wait_fd_count(e, fd_idle, WAIT_MS);
    int fd_after = echod_fd_count(e);
    long rss_after = echod_rss_kib(e);
    print_message(
        "    %llu connections in %lld ms (%.0f/s; %llu echo, %llu relayed), %.1f MiB "
        "each way, all verified, 0 errors\n",
        (unsigned long long)run.done, (long long)took,
        (double)run.done * 1000.0 / (double)took, (unsigned long long)run.port_done[0],
        (unsigned long long)run.port_done[1], (double)run.bytes / MIB);
    print_message(
        "    descriptors %d idle, %d after; RSS %ld KiB at start, %ld after the "
        "warm-up (%llu connections), %ld after (%+ld)\n",
        fd_idle, fd_after, rss_start, rss_warm, (unsigned long long)warm.done, rss_after,
        rss_after - rss_warm);
    assert_true(run.done >= 1000);
    assert_true(fds_back);
    assert_int_equal(fd_after, fd_idle);
    assert_int_equal(sockets_in_state(e, 0x08), 0);
    assert_rss_growth_below(rss_after - rss_warm, 1024);

    const char *names[2] = {"echo", "relay"};
    for (int i = 0; i < 2; i++) {
        struct echod_counters c = echod_counters_settled(e, names[i]);
        long long conns = (long long)(warm.port_done[i] + run.port_done[i]);
        long long bytes = (long long)(warm.port_bytes[i] + run.port_bytes[i]);
        assert_int_equal(c.open, 0);
        assert_int_equal(c.refused, 0);
        assert_int_equal(c.accepted, conns);
        assert_int_equal(c.in, bytes);
        assert_int_equal(c.out, bytes);
    }
    assert_int_equal(atomic_load(&up->srv.accepted),
                     (int)(warm.port_done[1] + run.port_done[1]));
    assert_int_equal(atomic_load(&up->srv.errors), 0);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* ---- reload under load ---------------------------------------------------- */

/* A churn client running in the background until stopped (teardown stops
 * it should the test fail). */
static struct churn bg;
static bool bg_running;

static int teardown_bg(void **state)
{
    if (bg_running)
        churn_stop(&bg);
    bg_running = false;
    return teardown_all(state);
}

/* The reload test's configuration; `variant` changes the buffer sizes and
 * idle timeouts, so that each reload makes a different generation. */
static void reload_conf(char *buf, size_t len, int p_echo, int p_relay, int up,
                        int variant)
{
    int n = snprintf(
        buf, len,
        HEAD(
            "5.0",
            "false") "listeners = (\n"
                     "  { name = \"echo\"; listen = [ \"127.0.0.1:%d\" ]; mode = \"echo\";\n"
                     "    buffer_size = %d; idle_timeout = %d.0; },\n"
                     "  { name = \"relay\"; listen = [ \"127.0.0.1:%d\" ]; mode = \"proxy\";\n"
                     "    upstreams = [ \"127.0.0.1:%d\" ]; buffer_size = %d;\n"
                     "    idle_timeout = %d.0; retries = 0; }\n"
                     ");\n",
        p_echo, variant ? 32768 : 16384, 30 + variant, p_relay, up,
        variant ? 8192 : 16384, 30 + variant);
    assert_true(n > 0 && (size_t)n < len);
}

/*
 * SIGHUP every 100 ms for 2 s (20 reloads, the 11th of a broken file)
 * while 6 connections stream verified data (3 echo, 3 relayed) and a
 * client keeps 16 short connections going: no connection is refused or
 * dropped, no byte lost; the broken file is refused and the old
 * configuration goes on; the daemon's counters agree to the byte.
 */
static void reload_under_load_loses_nothing(void **state)
{
    (void)state;
    struct upsrv *up = start_upstream(UP_ECHO, 0);
    int p_echo = reserve_port(), p_relay = reserve_port();
    for (int i = 0; i < 100 && p_relay == p_echo; i++)
        p_relay = reserve_port();
    char conf[2048];
    reload_conf(conf, sizeof(conf), p_echo, p_relay, up->srv.port, 0);
    struct echod *e = echod_startf("%s", conf);
    assert_int_equal(echod_port(e, "echo", 0), p_echo);
    assert_int_equal(echod_port(e, "relay", 0), p_relay);
    const char *path = echod_conf_path(e);

    enum { NS = 6 };
    struct stream *s[NS];
    for (int i = 0; i < NS; i++)
        s[i] = stream_start(i < NS / 2 ? p_echo : p_relay, 500009 * (uint64_t)(i + 1),
                            false);
    for (int i = 0; i < NS; i++)
        if (!stream_advances(s[i], 128 * KIB, WAIT_MS)) {
            stream_check(s[i]);
            fail_msg("stream %d does not flow", i);
        }
    int ports[2] = {p_echo, p_relay};
    bg =
        (struct churn){.ports = ports, .nports = 2, .slots = 16, .rate = 1500, .seed = 3};
    churn_start(&bg);
    bg_running = true;

    char ok[PATH_MAX + 32];
    snprintf(ok, sizeof(ok), "notice: reloaded %s", path);
    int good = 0;
    int64_t t0 = ms_now(), slowest = 0;
    for (int i = 0; i < 20; i++) {
        int64_t t = ms_now();
        if (i == 10) {
            char broken[2048];
            reload_conf(broken, sizeof(broken), p_echo, p_relay, up->srv.port, 1);
            broken[strlen(broken) / 2] = '\0'; /* cut in the middle of a group */
            conf_rewrite(path, "%s", broken);
            echod_signal(e, SIGHUP);
            if (!echod_wait_count(e, "reload failed", 1, WAIT_MS))
                fail_msg("no \"reload failed\" line after SIGHUP with a broken file");
        } else {
            reload_conf(conf, sizeof(conf), p_echo, p_relay, up->srv.port, (i + 1) % 2);
            conf_rewrite(path, "%s", conf);
            echod_signal(e, SIGHUP);
            if (!echod_wait_count(e, ok, good + 1, WAIT_MS))
                fail_msg("reload %d: no \"%s\" line", i, ok);
            good++;
        }
        if (ms_now() - t > slowest)
            slowest = ms_now() - t;
        for (int k = 0; k < NS; k++)
            stream_check(s[k]);
        int64_t wait = t0 + 100 * (i + 1) - ms_now();
        if (wait > 0)
            sleep_ms((int)wait);
    }
    int64_t took = ms_now() - t0;
    /* Everyone still flows after the last reload. */
    for (int i = 0; i < NS; i++)
        if (!stream_advances(s[i], 128 * KIB, WAIT_MS)) {
            stream_check(s[i]);
            fail_msg("stream %d stopped after the reloads", i);
        }
    churn_stop(&bg);
    bg_running = false;
    if (bg.errors != 0)
        fail_msg("%llu of the short connections failed; first: %s",
                 (unsigned long long)bg.errors, bg.err);
    uint64_t total[2] = {0, 0};
    for (int i = 0; i < NS; i++)
        total[i >= NS / 2] += stream_finish(s[i]);

    assert_int_equal(echod_count_log(e, "notice: reloaded "), 19);
    assert_int_equal(echod_count_log(e, "reload failed"), 1);
    assert_non_null(echod_wait_log(e, "still running the previous configuration", 0));
    const char *names[2] = {"echo", "relay"};
    for (int i = 0; i < 2; i++) {
        struct echod_counters c = echod_counters_settled(e, names[i]);
        long long bytes = (long long)(total[i] + bg.port_bytes[i]);
        assert_int_equal(c.open, 0);
        assert_int_equal(c.refused, 0);
        assert_int_equal(c.accepted, (long long)(NS / 2 + bg.port_done[i]));
        assert_int_equal(c.in, bytes);
        assert_int_equal(c.out, bytes);
    }
    assert_int_equal(atomic_load(&up->srv.errors), 0);
    print_message(
        "    20 SIGHUPs in %lld ms (19 reloads, 1 broken file refused; slowest %lld "
        "ms); meanwhile 6 streams carried %.1f MiB and %llu short connections "
        "%.1f MiB: 0 dropped, 0 bytes lost\n",
        (long long)took, (long long)slowest, (double)(total[0] + total[1]) / MIB,
        (unsigned long long)bg.done, (double)bg.bytes / MIB);
    assert_int_equal(echod_stop(e, 3000), 0);
}

/* ---- SIGTERM under load -------------------------------------------------- */

/*
 * SIGTERM while 8 connections stream (echo and relayed): the 6 that finish
 * within shutdown_timeout (2 s), sending on after the signal, get every
 * byte back and their FIN (reason=done); the 2 that would go on are closed
 * at shutdown_timeout (reason=shutdown) with what they got intact; the
 * daemon exits 0 within shutdown_timeout + 1.5 s.
 */
static void sigterm_under_load(void **state)
{
    (void)state;
    struct upsrv *up = start_upstream(UP_ECHO, 0);
    char g1[512], g2[1024];
    echo_group(g1, sizeof(g1), "echo", 0, "30.0");
    relay_group(g2, sizeof(g2), "relay", 0, up->srv.port, "30.0", "3.0", 0);
    struct echod *e = echod_startf(HEAD("2.0", "true") "listeners = ( %s, %s );\n", g1,
                                   g2);
    int p_echo = echod_port(e, "echo", 0), p_relay = echod_port(e, "relay", 0);

    enum { NF = 6, NL = 2 };
    struct stream *fin[NF], *lag[NL];
    bool relayed[NF];
    for (int i = 0; i < NF; i++) {
        relayed[i] = i % 2 == 1;
        fin[i] = stream_start(relayed[i] ? p_relay : p_echo, 700001 * (uint64_t)(i + 1),
                              false);
    }
    for (int i = 0; i < NL; i++)
        lag[i] = stream_start(i ? p_relay : p_echo, 900007 * (uint64_t)(i + 1), true);
    for (int i = 0; i < NF; i++)
        assert_true(stream_advances(fin[i], 128 * KIB, WAIT_MS));
    for (int i = 0; i < NL; i++)
        assert_true(stream_advances(lag[i], 128 * KIB, WAIT_MS));

    int64_t t0 = ms_now();
    echod_signal(e, SIGTERM);
    echod_must_log(e, "SIGTERM: no longer accepting");
    /* Bytes sent after the signal are served. */
    for (int i = 0; i < NF; i++)
        if (!stream_advances(fin[i], 128 * KIB, WAIT_MS)) {
            stream_check(fin[i]);
            fail_msg("stream %d stopped at SIGTERM", i);
        }
    sleep_ms(200);
    uint64_t total = 0;
    for (int i = 0; i < NF; i++) {
        int cport = fin[i]->cport;
        uint64_t sent = stream_finish(fin[i]);
        total += sent;
        char expect[96];
        snprintf(expect, sizeof(expect), " in=%llu out=%llu ", (unsigned long long)sent,
                 (unsigned long long)sent);
        check_access(e, relayed[i] ? "relay" : "echo", cport, expect, "done");
    }
    int64_t finished = ms_now() - t0;
    assert_true(finished < 2000);

    /* The laggards are cut at shutdown_timeout; what they got is right. */
    int64_t until = t0 + 2000 + WAIT_MS;
    for (int i = 0; i < NL; i++)
        while (!atomic_load(&lag[i]->done) && ms_now() < until)
            sleep_ms(2);
    uint64_t lag_bytes = 0;
    int64_t cut_at[NL];
    for (int i = 0; i < NL; i++) {
        assert_true(atomic_load(&lag[i]->done));
        if (!lag[i]->ok)
            fail_msg("laggard %d: %s", i, lag[i]->err);
        assert_true(lag[i]->cut);
        cut_at[i] = lag[i]->end_ms - t0;
        assert_true(cut_at[i] >= 2000 - 10);
        lag_bytes += atomic_load(&lag[i]->verified);
        int cport = lag[i]->cport;
        stream_forget(lag[i]);
        check_access(e, i ? "relay" : "echo", cport, NULL, "shutdown");
    }
    assert_non_null(echod_wait_log(e, "mio-echod: notice: stopped", 2000 + WAIT_MS));
    int64_t stopped = ms_now() - t0;
    assert_int_equal(echod_stop(e, 3000), 0);
    print_message(
        "    SIGTERM with 8 streams: 6 finished %lld ms after it with all %.1f MiB "
        "back; 2 cut at %lld and %lld ms (%.1f MiB verified before); exit 0 "
        "after %lld ms\n",
        (long long)finished, (double)total / MIB, (long long)cut_at[0],
        (long long)cut_at[1], (double)lag_bytes / MIB, (long long)stopped);
    assert_true(stopped < 2000 + 1500);
    assert_non_null(echod_wait_log(e, "shutdown_timeout: closing 2 connections", 0));
    assert_int_equal(atomic_load(&up->srv.errors), 0);
}

static int setup_group(void **state)
{
    (void)state;
    return setup_sigpipe_and_pattern(PLEN, 20250101);
}

#define TEST(f) cmocka_unit_test_teardown(f, teardown_all)

int main(void)
{
    /* FAULTS_TEST=name (a glob) runs only the tests it matches. */
    test_filter_from_env("FAULTS_TEST");
    const struct CMUnitTest tests[] = {
        TEST(fd_exhaustion_refuses_without_spinning_and_recovers),
        TEST(fd_exhaustion_accounting_and_spares),
        TEST(upstream_refuses),
        TEST(upstream_resets_after_accept),
        TEST(upstream_never_reads),
        TEST(upstream_closes_mid_stream),
        TEST(upstream_blackholed),
        TEST(client_resets_mid_stream),
        TEST(client_half_close_then_silence),
        TEST(client_slow_reader_fast_writer),
        TEST(client_silent_until_idle_timeout),
        TEST(churn_thousands_of_short_connections),
        cmocka_unit_test_teardown(reload_under_load_loses_nothing, teardown_bg),
        TEST(sigterm_under_load),
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_pattern);
}
