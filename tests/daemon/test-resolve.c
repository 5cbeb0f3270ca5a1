/*
 * Re-resolution of upstream host names (a relay's `resolve`), with the
 * real daemon and real upstreams: a name that gains an address, one that
 * loses the address a long stream is on, a failed resolution, the name's
 * weight on each of its addresses, a reload, resolve = 0, UDP, and the
 * configuration errors.
 *
 * The resolver the test controls is the system's own, fed a hosts file
 * the test writes: the daemon has no test hook.  At the start the test
 * program moves into a mount namespace of its own (unshare(CLONE_NEWNS),
 * "/" made private so that nothing leaks to the host) and bind-mounts a
 * file of its temporary directory over /etc/hosts, and one saying
 * "hosts: files" over /etc/nsswitch.conf, so that a name the file lacks
 * fails at once instead of asking DNS.  Each daemon it forks inherits the
 * namespace.  glibc's files backend reads /etc/hosts again at each lookup,
 * so rewriting the file in place (the same inode: a rename would leave
 * the bind mount on the old one) changes what a name resolves to.  The
 * file keeps one size, each version padded with blanks and written by one
 * pwrite(), so that a lookup never finds it empty or cut short.  Without
 * root, or where the namespace or the mounts fail, these tests are
 * skipped, saying why; the configuration errors are checked anyway.
 *
 * The upstreams of the name listen on 127.0.0.11, .12 and .13 (all of
 * 127/8 is loopback on Linux), all on one port: a hosts file names no
 * port, so every address of a name is reached on the port the upstream
 * is written with.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* unshare */
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* The name the relays are given, under a top-level domain kept for tests
 * (RFC 6761). */
#define NAME "svc.resolve.test"
/* The relays' `resolve`, in seconds, for the tests that re-resolve. */
#define RESOLVE "0.2"
/* A change in the hosts file must be seen within this (10 intervals). */
#define SEEN_MS 2000
/* The size every version of the hosts file has (one page at most). */
#define HOSTS_SIZE 2048
/* How long an access line may take after the client saw the close. */
#define LOG_MS 3000

/* The relays' `resolve` setting, for the tests that re-resolve. */
#define RESOLVING "    resolve = " RESOLVE ";\n"

/* The addresses the name's upstreams listen on. */
static const char *const ips[] = {"127.0.0.11", "127.0.0.12", "127.0.0.13"};

/* A set of addresses: indexes of ips[], in order, ended by -1. */
#define SET(...) ((const int[]){__VA_ARGS__, -1})
#define NONE ((const int[]){-1})

/* The file bind-mounted over /etc/hosts. */
static char hosts_path[PATH_MAX];
/* Why there is no private /etc/hosts ("" when there is one). */
static char no_hosts[256];

/* ---- the hosts file ---------------------------------------------------- */

/* Makes the private /etc/hosts with `text` (after a localhost line): one
 * pwrite() of HOSTS_SIZE bytes, padded with a line of blanks, over the
 * same inode. */
static void hosts_write(const char *text)
{
    char buf[HOSTS_SIZE];
    int n = snprintf(buf, sizeof(buf), "127.0.0.1 localhost\n%s", text);
    CHECK(n > 0 && n < HOSTS_SIZE - 1);
    memset(buf + n, ' ', (size_t)(HOSTS_SIZE - 1 - n));
    buf[HOSTS_SIZE - 1] = '\n';
    int fd = open(hosts_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        test_fail("cannot open %s: %s", hosts_path, strerror(errno));
    CHECK_EQ(pwrite(fd, buf, HOSTS_SIZE, 0), HOSTS_SIZE);
    CHECK_EQ(close(fd), 0);
}

/* The hosts file with NAME on the addresses of `set`, in its order (NONE:
 * the name is not there). */
static void hosts_name(const int *set)
{
    char text[512] = "";
    size_t used = 0;
    for (; *set >= 0; set++) {
        CHECK(*set < (int)ARRAY_LEN(ips));
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s %s\n", ips[*set],
                                 NAME);
        CHECK(used < sizeof(text));
    }
    hosts_write(text);
}

/* Moves this program into a mount namespace of its own with the private
 * /etc/hosts and /etc/nsswitch.conf; says in why what failed, "" when
 * nothing did. */
static void private_hosts(char *why, size_t len)
{
    why[0] = '\0';
    if (geteuid() != 0) {
        snprintf(why, len, "needs root for a mount namespace (running as uid %u)",
                 (unsigned)geteuid());
        return;
    }
    const char *dir = test_tmpdir();
    char nss[PATH_MAX];
    snprintf(hosts_path, sizeof(hosts_path), "%s/hosts", dir);
    snprintf(nss, sizeof(nss), "%s/nsswitch.conf", dir);
    hosts_write("");
    FILE *f = fopen(nss, "we");
    CHECK(f != NULL);
    fputs("passwd: files\ngroup: files\nhosts: files\n", f);
    CHECK_EQ(fclose(f), 0);
    if (unshare(CLONE_NEWNS) < 0)
        snprintf(why, len, "unshare(CLONE_NEWNS): %s", strerror(errno));
    else if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        snprintf(why, len, "cannot make / private in the new namespace: %s",
                 strerror(errno));
    else if (mount(hosts_path, "/etc/hosts", NULL, MS_BIND, NULL) < 0)
        snprintf(why, len, "cannot bind-mount a file over /etc/hosts: %s",
                 strerror(errno));
    else if (mount(nss, "/etc/nsswitch.conf", NULL, MS_BIND, NULL) < 0)
        snprintf(why, len, "cannot bind-mount a file over /etc/nsswitch.conf: %s",
                 strerror(errno));
}

/* Skips the test, saying why, without the private /etc/hosts. */
static void need_private_hosts(void)
{
    if (no_hosts[0] != '\0') {
        print_message("skipped: %s\n", no_hosts);
        skip();
    }
}

/* ---- the daemon, its upstreams, its control socket ------------------------ */

/* A relay "relay" to NAME, as a test starts it and looks at it.  Its TCP
 * upstreams are ups[0..n): ups[i] on ips[i]:p, unless the test put one
 * elsewhere. */
struct relay {
    int p; /* the port of NAME's upstreams, on each of ips[] */
    struct upsrv *ups[3];
    size_t n;
    char list[256];  /* the relay's upstreams (the list's inside) */
    const char *dir; /* the daemon's directory, with its control socket */
    struct echod *e;
    int port; /* the relay's port */
};

/* An echoing upstream on ips[i]:port. */
static struct upsrv *up_at(int i, int port)
{
    return up_start(&(struct up_conf){.mode = UP_ECHO, .ip = ips[i], .port = port});
}

/* "NAME:port" as the relays are given it. */
static const char *name_at(int port)
{
    static char text[64];
    snprintf(text, sizeof(text), NAME ":%d", port);
    return text;
}

/* The addresses of `set` on port p, as the daemon lists them: "ips[i]:p",
 * ", " between. */
static void set_text(char *buf, size_t len, int p, const int *set)
{
    size_t used = 0;
    buf[0] = '\0';
    for (; *set >= 0; set++) {
        used += (size_t)snprintf(buf + used, len - used, "%s%s:%d", used > 0 ? ", " : "",
                                 ips[*set], p);
        CHECK(used < len);
    }
}

/* The configuration of a relay "relay" (TCP, or UDP when udp) over
 * `upstreams` (the list's inside) with `more` settings, its control
 * socket in dir. */
static void relay_conf(char *buf, size_t len, const char *dir, bool udp,
                       const char *upstreams, const char *more)
{
    int n = snprintf(buf, len,
                     "workers = 2;\n"
                     "shutdown_timeout = 0.5;\n"
                     "log = { target = \"stderr\"; level = \"info\"; access = true; };\n"
                     "control = { path = \"%s/control.sock\"; };\n"
                     "listeners = ( {\n"
                     "    name = \"relay\";\n"
                     "    protocol = \"%s\";\n"
                     "    listen = [ \"127.0.0.1:0\" ];\n"
                     "    mode = \"proxy\";\n"
                     "    balance = \"round-robin\";\n"
                     "    upstreams = ( %s );\n"
                     "%s"
                     "} );\n",
                     dir, udp ? "udp" : "tcp", upstreams, more);
    CHECK(n > 0 && (size_t)n < len);
}

/* Readies a relay to NAME: skips the test without the private /etc/hosts,
 * reserves the port of the name's upstreams, starts n echoing upstreams
 * on ips[0..n) there, and lists the name alone as the relay's upstreams
 * (a test may write another list before relay_start()). */
static void relay_prepare(struct relay *r, size_t n)
{
    need_private_hosts();
    memset(r, 0, sizeof(*r));
    CHECK(n <= ARRAY_LEN(r->ups));
    r->p = reserve_port();
    for (r->n = 0; r->n < n; r->n++)
        r->ups[r->n] = up_at((int)r->n, r->p);
    snprintf(r->list, sizeof(r->list), "\"%s\"", name_at(r->p));
}

/* Starts the daemon with relay_conf()'s configuration of r->list and
 * `more`, in a directory of its own, and finds the relay's port. */
static void relay_start(struct relay *r, bool udp, const char *more)
{
    r->dir = test_tmpdir();
    char conf[4096];
    relay_conf(conf, sizeof(conf), r->dir, udp, r->list, more);
    r->e = echod_start_opts(conf, &(struct echod_opts){.dir = r->dir});
    r->port = echod_port(r->e, "relay", 0);
}

/* A TCP relay to NAME with n upstreams (relay_prepare()), NAME on the
 * addresses of `set` in the hosts file, started with `more` settings. */
static void relay_begin(struct relay *r, size_t n, const int *set, const char *more)
{
    relay_prepare(r, n);
    hosts_name(set);
    relay_start(r, false, more);
}

/* The answer of the relay's control socket to `show upstreams relay`;
 * malloc'd. */
static char *show_upstreams(const struct relay *r)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/control.sock", r->dir);
    return ctl_ask_path(path, "show upstreams relay");
}

/* How many upstream addresses `show upstreams relay` lists. */
static int upstream_count(const struct relay *r)
{
    char *answer = show_upstreams(r);
    int n = 0;
    for (const char *p = answer; (p = strstr(p, "\nrelay ")) != NULL; p++)
        n++;
    free(answer);
    return n;
}

/* Expects `show upstreams relay` to list address ips[i]:p of the name
 * with `weight`: a line "relay NAME:p ips[i]:p WEIGHT no up ...". */
static void expect_listed(const struct relay *r, int i, unsigned weight)
{
    char want[256];
    snprintf(want, sizeof(want), "\nrelay %s %s:%d %u no up ", name_at(r->p), ips[i],
             r->p, weight);
    char *answer = show_upstreams(r);
    if (strstr(answer, want) == NULL)
        test_fail("show upstreams has no \"%s\": %s", want + 1, answer);
    free(answer);
}

/* Waits up to ms for a log line with `needle`; fails the test without. */
static void expect_log(struct echod *e, const char *needle, int ms)
{
    if (echod_wait_log(e, needle, ms) == NULL)
        test_fail("no \"%s\" within %d ms", needle, ms);
}

/* Waits for the daemon to log that NAME now resolves to the addresses of
 * `now` (was `was`) and then that it relays there; expects that within
 * SEEN_MS of `since`. */
static void expect_change(const struct relay *r, const int *now, const int *was,
                          int64_t since)
{
    char now_text[128], was_text[128], needle[512];
    set_text(now_text, sizeof(now_text), r->p, now);
    set_text(was_text, sizeof(was_text), r->p, was);
    snprintf(needle, sizeof(needle), "notice: resolve: %s now resolves to %s (was %s)",
             name_at(r->p), now_text, was_text);
    expect_log(r->e, needle, SEEN_MS + 1000);
    int64_t took = ms_now() - since;
    /* Each change is followed by one relaying line, which may come before
     * this looks: counted against the changes, not from now. */
    int changes = echod_count_log(r->e, " now resolves to ");
    if (!echod_wait_count(r->e, "info: resolve: relaying to the new upstream", changes,
                          3000))
        test_fail("no \"resolve: relaying to the new upstream addresses\" after \"%s\"",
                  needle);
    print_message("    seen %lld ms after the hosts file changed\n", (long long)took);
    assert_true(took <= SEEN_MS);
}

/* Rewrites the hosts file with NAME on `now` and expects the change from
 * `was` to be seen (expect_change()). */
static void move_name(const struct relay *r, const int *now, const int *was)
{
    int64_t t0 = ms_now();
    hosts_name(now);
    expect_change(r, now, was, t0);
}

/*
 * One client through the relay: "ping" echoed back, then its FIN;
 * returns which of r->ups[] served it (the one whose accepted count
 * grew).  With `logged`, its access line must name that upstream's
 * address.
 */
static int exchange(const struct relay *r, bool logged)
{
    struct upsrv *const *ups = r->ups;
    size_t n = r->n;
    int before[8] = {0};
    assert_true(n <= ARRAY_LEN(before));
    for (size_t i = 0; i < n; i++)
        before[i] = atomic_load(&ups[i]->srv.accepted);
    int fd = client4(r->port);
    track_fd(fd);
    int cport = local_port(fd);
    expect_echo(fd, "ping");
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    assert_true(peer_closed_within(fd, 3000));
    close_tracked(fd);
    int served = -1;
    for (size_t i = 0; i < n; i++) {
        int d = atomic_load(&ups[i]->srv.accepted) - before[i];
        assert_true(d == 0 || d == 1);
        if (d == 1) {
            assert_int_equal(served, -1);
            served = (int)i;
        }
    }
    if (served < 0)
        test_fail("the client on port %d reached none of the upstreams", cport);
    if (logged) {
        char client[64], up[64];
        snprintf(client, sizeof(client), " client=127.0.0.1:%d ", cport);
        const struct upsrv *u = ups[served];
        snprintf(up, sizeof(up), " upstream=%s:%d ",
                 u->conf.ip != NULL ? u->conf.ip : "127.0.0.1", u->srv.port);
        const char *line = echod_wait_log(r->e, client, LOG_MS);
        if (line == NULL || strstr(line, up) == NULL)
            test_fail("no access line with \"%s\" for the client on port %d: %s", up,
                      cport, line != NULL ? line : "none");
    }
    return served;
}

/* `rounds` exchanges; how many each of r->ups[] served into got[]. */
static void exchanges(const struct relay *r, int rounds, bool logged, int *got)
{
    memset(got, 0, r->n * sizeof(*got));
    for (int k = 0; k < rounds; k++)
        got[exchange(r, logged)]++;
}

/* ---- tests ----------------------------------------------------------------- */

/*
 * A name with one address, then two: the second is an upstream within a
 * few intervals, listed by `show upstreams` with the name's weight, and
 * clients go to both (the access lines name each).
 */
static void an_address_that_appears_gets_clients(void **state)
{
    (void)state;
    struct relay r;
    relay_begin(&r, 2, SET(0), RESOLVING);
    int got[2];
    exchanges(&r, 4, true, got);
    assert_int_equal(got[0], 4);
    assert_int_equal(upstream_count(&r), 1);
    expect_listed(&r, 0, 1);

    move_name(&r, SET(0, 1), SET(0));
    assert_int_equal(upstream_count(&r), 2);
    expect_listed(&r, 0, 1);
    expect_listed(&r, 1, 1);
    exchanges(&r, 10, true, got);
    print_message("    after the change: %d and %d of 10\n", got[0], got[1]);
    assert_int_equal(got[0], 5);
    assert_int_equal(got[1], 5);
    assert_int_equal(echod_count_log(r.e, "resolve: cannot"), 0);
    echod_stop_ok(r.e);
}

/*
 * An address that disappears gets no new client, while a long stream
 * relayed to it goes on, byte for byte, and ends with its FIN: drained,
 * not cut.
 */
static void an_address_that_disappears_is_drained(void **state)
{
    (void)state;
    struct relay r;
    relay_begin(&r, 2, SET(0, 1), RESOLVING);
    struct stream *s = stream_start(r.port, 12345, false);
    assert_true(stream_advances(s, 256 * KIB, 3000));
    int gone = atomic_load(&r.ups[0]->srv.open) == 1 ? 0 : 1, kept = 1 - gone;
    assert_int_equal(atomic_load(&r.ups[gone]->srv.open), 1);
    assert_int_equal(atomic_load(&r.ups[kept]->srv.open), 0);
    print_message("    the stream is on %s; it leaves the hosts file\n", ips[gone]);

    move_name(&r, SET(kept), SET(0, 1));
    /* Listed while its stream lasts: draining, gone from the name. */
    assert_int_equal(upstream_count(&r), 2);
    expect_listed(&r, kept, 1);
    char draining[256];
    snprintf(draining, sizeof(draining),
             "\nrelay %s %s:%d 1 no draining 1 1 0 - gone from the configuration; open "
             "connections finish\n",
             name_at(r.p), ips[gone], r.p);
    char *answer = show_upstreams(&r);
    if (strstr(answer, draining) == NULL)
        test_fail("show upstreams has no \"%s\": %s", draining + 1, answer);
    free(answer);

    int got[2];
    exchanges(&r, 10, true, got);
    assert_int_equal(got[gone], 0);
    assert_int_equal(got[kept], 10);
    assert_int_equal(atomic_load(&r.ups[gone]->srv.accepted), 1);
    assert_true(stream_advances(s, 4 * MIB, 5000));
    stream_check(s);
    uint64_t bytes = stream_finish(s);
    print_message("    the stream carried %llu bytes, every one back\n",
                  (unsigned long long)bytes);
    assert_true(wait_counter(&r.ups[gone]->srv.open, 0, 3000));
    /* Its last connection ended: no longer listed. */
    int64_t until = ms_now() + 3000;
    while (upstream_count(&r) != 1 && ms_now() < until)
        sleep_ms(20);
    assert_int_equal(upstream_count(&r), 1);
    assert_int_equal(atomic_load(&r.ups[gone]->resets), 0);
    assert_int_equal(atomic_load(&r.ups[gone]->eofs), 1);
    assert_int_equal(up_failures(r.ups[gone]), 0);
    echod_stop_ok(r.e);
}

/*
 * A name that stops resolving keeps its last addresses, logged once while
 * it fails, and clients are still served there; when it resolves again
 * that is logged, and a change of address then is taken.
 */
static void a_failed_resolution_keeps_the_last_addresses(void **state)
{
    (void)state;
    struct relay r;
    relay_begin(&r, 2, SET(0), RESOLVING);
    int got[2];
    exchanges(&r, 2, true, got);
    assert_int_equal(got[0], 2);

    hosts_name(NONE);
    char failing[256];
    snprintf(failing, sizeof(failing),
             "warning: resolve: cannot resolve \"" NAME "\": %s; keeping %s:%d",
             gai_strerror(EAI_NONAME), ips[0], r.p);
    expect_log(r.e, failing, SEEN_MS);
    sleep_ms(1000); /* five more intervals, failing each */
    assert_int_equal(echod_count_log(r.e, "resolve: cannot resolve"), 1);
    exchanges(&r, 4, true, got);
    assert_int_equal(got[0], 4);
    expect_listed(&r, 0, 1);

    hosts_name(SET(0));
    char again[128];
    snprintf(again, sizeof(again), "notice: resolve: %s resolves again", name_at(r.p));
    expect_log(r.e, again, SEEN_MS);
    sleep_ms(600);
    assert_int_equal(echod_count_log(r.e, "now resolves to"), 0);
    assert_int_equal(echod_count_log(r.e, "relaying to the new upstream"), 0);

    /* Failing again is logged again; coming back elsewhere moves there. */
    hosts_name(NONE);
    assert_true(echod_wait_count(r.e, "resolve: cannot resolve", 2, SEEN_MS));
    int64_t t0 = ms_now();
    hosts_name(SET(1));
    assert_true(echod_wait_count(r.e, "resolves again", 2, SEEN_MS));
    expect_change(&r, SET(1), SET(0), t0);
    exchanges(&r, 4, true, got);
    assert_int_equal(got[1], 4);
    assert_int_equal(echod_count_log(r.e, "resolve: cannot resolve"), 2);
    echod_stop_ok(r.e);
}

/*
 * The same addresses in another order are no change: DNS servers that
 * rotate their answers give a new order at each query, and that must not
 * open the configuration again (nor log) each interval.
 */
static void a_new_order_is_no_change(void **state)
{
    (void)state;
    struct relay r;
    relay_begin(&r, 2, SET(0, 1), RESOLVING);
    for (int round = 0; round < 4; round++) {
        hosts_name(round % 2 == 0 ? SET(1, 0) : SET(0, 1));
        sleep_ms(500); /* two intervals and a half */
    }
    assert_int_equal(echod_count_log(r.e, "resolve: "), 0);
    int got[2];
    exchanges(&r, 4, true, got);
    assert_int_equal(got[0], 2);
    assert_int_equal(got[1], 2);

    /* A change of the set is seen, in the order it now has. */
    move_name(&r, SET(1), SET(0, 1));
    echod_stop_ok(r.e);
}

/*
 * Each address of a name is an upstream of the name's weight, the one
 * that appeared by re-resolution too: a name of weight 3 with two
 * addresses beside an address of weight 1 share clients 3:3:1.
 */
static void each_address_of_a_name_has_its_weight(void **state)
{
    (void)state;
    struct relay r;
    relay_prepare(&r, 2);
    r.ups[r.n++] = up_start(&(struct up_conf){.mode = UP_ECHO});
    hosts_name(SET(0));
    snprintf(r.list, sizeof(r.list),
             "{ address = \"%s\"; weight = 3; }, \"127.0.0.1:%d\"", name_at(r.p),
             r.ups[2]->srv.port);
    relay_start(&r, false, RESOLVING);
    expect_listed(&r, 0, 3);

    move_name(&r, SET(0, 1), SET(0));
    expect_listed(&r, 0, 3);
    expect_listed(&r, 1, 3);

    enum { ROUNDS = 350 };
    int got[3];
    exchanges(&r, ROUNDS, false, got);
    print_message("    weights 3, 3 and 1: %d, %d and %d of %d\n", got[0], got[1], got[2],
                  ROUNDS);
    const int want[3] = {ROUNDS * 3 / 7, ROUNDS * 3 / 7, ROUNDS / 7};
    for (int i = 0; i < 3; i++)
        assert_true(abs(got[i] - want[i]) <= ROUNDS * 3 / 100);
    echod_stop_ok(r.e);
}

/*
 * A reload resolves the names at load, and the resolver starts over from
 * what it found: before it, with resolve = 3600, nothing is re-resolved;
 * the reload (to resolve = 0.2) finds the name's new address at once and
 * logs no change for it; the next change is one from that address.
 */
static void a_reload_resolves_and_the_resolver_starts_over(void **state)
{
    (void)state;
    struct relay r;
    relay_begin(&r, 3, SET(0), "    resolve = 3600;\n");
    int got[3];
    exchanges(&r, 2, true, got);
    assert_int_equal(got[0], 2);

    hosts_name(SET(1));
    char conf[4096];
    relay_conf(conf, sizeof(conf), r.dir, false, r.list, RESOLVING);
    echod_rewrite_conf(r.e, "%s", conf);
    echod_reload_ok(r.e, 5000);
    exchanges(&r, 4, true, got);
    assert_int_equal(got[1], 4);
    expect_listed(&r, 1, 1);
    assert_int_equal(upstream_count(&r), 1);
    sleep_ms(1000); /* five intervals: the same address each time */
    assert_int_equal(echod_count_log(r.e, "resolve: "), 0);

    move_name(&r, SET(2), SET(1));
    exchanges(&r, 4, true, got);
    assert_int_equal(got[2], 4);
    echod_stop_ok(r.e);
}

/* resolve = 0 (the default) never re-resolves: a change in the hosts
 * file is not seen until a reload. */
static void resolve_0_waits_for_a_reload(void **state)
{
    (void)state;
    struct relay r;
    relay_begin(&r, 2, SET(0), "");
    int got[2];
    exchanges(&r, 2, true, got);
    assert_int_equal(got[0], 2);

    hosts_name(SET(1));
    sleep_ms(1000);
    exchanges(&r, 4, true, got);
    assert_int_equal(got[0], 4);
    expect_listed(&r, 0, 1);
    assert_int_equal(echod_count_log(r.e, "resolve: "), 0);

    echod_reload_ok(r.e, 5000);
    exchanges(&r, 4, true, got);
    assert_int_equal(got[1], 4);
    expect_listed(&r, 1, 1);
    assert_int_equal(echod_count_log(r.e, "resolve: "), 0);
    echod_stop_ok(r.e);
}

/* Sends `what` from fd to the relay and expects `reply` back. */
static void expect_udp_reply(const struct relay *r, int fd, const char *what,
                             const char *reply)
{
    char got[64];
    size_t len = strlen(reply);
    ssize_t n = udp_ask(fd, "127.0.0.1", r->port, what, strlen(what), got, sizeof(got), 5,
                        500);
    assert_int_equal(n, len);
    assert_memory_equal(got, reply, len);
}

/*
 * A UDP relay to a name: once the name moves, a new flow goes to the new
 * address; a flow already open stays with the address it began on
 * (drained, as a TCP connection is).
 */
static void udp_flows_follow_the_name(void **state)
{
    (void)state;
    struct relay r;
    relay_prepare(&r, 0);
    struct udpup *a = udpup_start(
        &(struct udpup_conf){.tag = "A:", .ip = ips[0], .port = r.p});
    struct udpup *b = udpup_start(
        &(struct udpup_conf){.tag = "B:", .ip = ips[1], .port = r.p});
    hosts_name(SET(0));
    relay_start(&r, true, RESOLVING "    idle_timeout = 30.0;\n");
    int first = udp_client4();
    expect_udp_reply(&r, first, "one", "A:one");

    move_name(&r, SET(1), SET(0));
    expect_listed(&r, 1, 1);

    int second = udp_client4();
    expect_udp_reply(&r, second, "two", "B:two");
    expect_udp_reply(&r, first, "old", "A:old");
    assert_int_equal(atomic_load(&a->datagrams), 2);
    assert_int_equal(atomic_load(&b->datagrams), 1);
    echod_stop_ok(r.e);
}

/* `resolve` out of its range, not a number, or on an echo listener: the
 * file, the line, the setting and what was expected. */
static void resolve_errors_name_the_line(void **state)
{
    (void)state;
    static const struct conf_error cases[] = {
        {"a negative resolve",
         "listeners = ( { name = \"r\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
         "  upstreams = [ \"127.0.0.1:9\" ];\n"
         "  resolve = -1.0; } );\n",
         3, "listeners.r.resolve: -1.0 out of range 0-86400 seconds"},
        {"a resolve over a day",
         "listeners = ( { name = \"r\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
         "  upstreams = [ \"127.0.0.1:9\" ];\n"
         "  resolve = 86401; } );\n",
         3, "listeners.r.resolve: 86401 out of range 0-86400 seconds"},
        {"a resolve that is no number",
         "listeners = ( { name = \"r\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
         "  upstreams = [ \"127.0.0.1:9\" ];\n"
         "  resolve = \"often\"; } );\n",
         3, "listeners.r.resolve: expected a number of seconds, got \"often\""},
        {"resolve on an echo listener",
         "listeners = ( { name = \"e\"; listen = [ \"127.0.0.1:0\" ]; mode = \"echo\";\n"
         "  resolve = 1.0; } );\n",
         2,
         "listeners.e.resolve: only for mode = \"proxy\"; this listener's mode is \"echo\""},
        {"resolve on a UDP echo listener",
         "listeners = ( { name = \"u\"; protocol = \"udp\"; mode = \"echo\";\n"
         "  listen = [ \"127.0.0.1:0\" ];\n"
         "  resolve = 5; } );\n",
         3, "listeners.u.resolve: only for mode = \"proxy\""},
    };
    expect_conf_errors(cases, ARRAY_LEN(cases));
}

static int setup_group(void **state)
{
    (void)state;
    if (setup_sigpipe_and_pattern(4 * MIB, 20240914) != 0)
        return -1;
    private_hosts(no_hosts, sizeof(no_hosts));
    if (no_hosts[0] != '\0')
        print_message("[ NOTE     ] no private /etc/hosts: %s\n", no_hosts);
    return 0;
}

#define TEST(f) cmocka_unit_test_teardown(f, teardown_all)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(an_address_that_appears_gets_clients),
        TEST(an_address_that_disappears_is_drained),
        TEST(a_failed_resolution_keeps_the_last_addresses),
        TEST(a_new_order_is_no_change),
        TEST(each_address_of_a_name_has_its_weight),
        TEST(a_reload_resolves_and_the_resolver_starts_over),
        TEST(resolve_0_waits_for_a_reload),
        TEST(udp_flows_follow_the_name),
        TEST(resolve_errors_name_the_line),
    };
    test_filter_from_env("RESOLVE_TEST");
    return cmocka_run_group_tests(tests, setup_group, teardown_pattern);
}
