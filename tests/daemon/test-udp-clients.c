/*
 * UDP in mio-echod (issue 13) with real programs at both ends, each test
 * skipped, saying why, when its programs are not installed:
 *
 *   iperf3 -u through the daemon: iperf3 talks TCP (its control
 *   connection) and UDP (the data) on one port, so one TCP relay listener
 *   and one UDP relay listener share the port, both to an iperf3 server;
 *   the client must report its test done and the server's receipt;
 *   dig through a responses = 1 relay to dnsmasq answering test.example
 *   with 192.0.2.1: the answer comes back, and the flow ends with it.
 *
 * Debian: iperf3, bind9-dnsutils (dig) and dnsmasq-base, which
 * `./quickstart check` installs.  UDP_TEST=glob runs only the tests it
 * matches.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* How long a test waits for what should happen at once. */
#define WAIT_MS (SANITIZED ? 8000 : 4000)

#define BASE                    \
    "workers = 2;\n"            \
    "shutdown_timeout = 0.5;\n" \
    "log = { target = \"stderr\"; level = \"info\"; access = true; };\n"

/* ---- programs ------------------------------------------------------------------ */

/* Skips the test unless program `name` (of Debian package `pkg`) is
 * installed; its path into `path` (PATH_MAX). */
#define NEED(name, pkg, path)                                                     \
    do {                                                                          \
        if (proc_find_program(name, path, sizeof(path)) == NULL) {                \
            print_message("    skipped: %s is not installed (Debian package %s; " \
                          "./quickstart check installs it)\n",                    \
                          name, pkg);                                             \
            skip();                                                               \
        }                                                                         \
    } while (0)

/* After each test: its programs stopped (SIGTERM, then SIGKILL after 2 s)
 * and freed, each by its own pid, then the harness's teardown. */
static int teardown(void **state)
{
    proc_stop_all(2000);
    return teardown_all(state);
}

/* ---- iperf3 ------------------------------------------------------------------- */

/*
 * The "receiver" summary line of iperf3's UDP client output
 * ("[  5]   0.00-1.00  sec  1.19 MBytes  10.0 Mbits/sec  0.010 ms  0/893 (0%)
 * receiver"): its lost and total datagrams; false without one.
 */
static bool iperf_receiver(const char *out, long *lost, long *total)
{
    for (const char *line = out; line != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);
        char text[512];
        snprintf(text, sizeof(text), "%.*s", (int)(len < 511 ? len : 511), line);
        line = nl != NULL ? nl + 1 : NULL;
        if (strstr(text, "receiver") == NULL)
            continue;
        char *paren = strstr(text, " (");
        if (paren == NULL)
            continue;
        *paren = '\0';
        char *slash = strrchr(text, '/');
        char *sp = slash != NULL ? strrchr(text, ' ') : NULL;
        if (slash == NULL || sp == NULL || sp > slash)
            continue;
        *lost = strtol(sp + 1, NULL, 10);
        *total = strtol(slash + 1, NULL, 10);
        return true;
    }
    return false;
}

/* iperf3 -u through a TCP relay and a UDP relay on one port, client to
 * server and then (-R) server to client: each test is done, its receiver
 * got the datagrams (few lost), and the daemon relayed the control
 * connection over TCP and the datagrams over UDP, a flow per test. */
static void iperf3_udp_through_tcp_and_udp_relays_on_one_port(void **state)
{
    (void)state;
    char iperf[PATH_MAX];
    NEED("iperf3", "iperf3", iperf);
    int sport = reserve_port();
    char sp[16];
    snprintf(sp, sizeof(sp), "%d", sport);
    struct proc *server = proc_start(
        (char *const[]){iperf, "-s", "--forceflush", "-B", "127.0.0.1", "-p", sp, NULL});
    if (!proc_wait_for(server, "Server listening on", WAIT_MS)) {
        proc_print(server);
        fail_msg("iperf3 -s did not start");
    }
    int port = reserve_port();
    struct echod *e =
        echod_startf(BASE "listeners = (\n"
                          "{ name = \"ctl\"; protocol = \"tcp\"; mode = \"proxy\";\n"
                          "  listen = [ \"127.0.0.1:%d\" ];\n"
                          "  upstreams = [ \"127.0.0.1:%d\" ]; },\n"
                          "{ name = \"data\"; protocol = \"udp\"; mode = \"proxy\";\n"
                          "  listen = [ \"127.0.0.1:%d\" ];\n"
                          "  upstreams = [ \"127.0.0.1:%d\" ]; idle_timeout = 5.0; }\n"
                          ");\n",
                     port, sport, port, sport);
    char pp[16];
    snprintf(pp, sizeof(pp), "%d", port);
    long totals[2];
    for (int reverse = 0; reverse < 2; reverse++) {
        char *argv[] = {iperf,
                        "-c",
                        "127.0.0.1",
                        "-p",
                        pp,
                        "-u",
                        "-b",
                        "10M",
                        "-l",
                        "1400",
                        "-t",
                        "1",
                        "--connect-timeout",
                        "3000",
                        reverse ? "-R" : NULL,
                        NULL};
        struct proc *client = proc_start(argv);
        int rc = proc_wait_exit(client, WAIT_MS + 4000);
        char *out = proc_output(client);
        long lost = -1, total = -1;
        bool summary = iperf_receiver(out, &lost, &total);
        bool done = strstr(out, "iperf Done.") != NULL;
        free(out);
        if (rc != 0 || !done || !summary) {
            proc_print(client);
            proc_print(server);
            fail_msg("iperf3 -c%s through the daemon: exit %d, %s, %s",
                     reverse ? " -R" : "", rc, done ? "done" : "not done",
                     summary ? "a receiver line" : "no receiver line");
        }
        print_message("    %s: the %s received %ld of %ld datagrams\n",
                      reverse ? "-R" : "forward", reverse ? "client" : "server",
                      total - lost, total);
        if (total < 100 || lost * 10 > total) {
            proc_print(client);
            fail_msg("iperf3%s: %ld of %ld datagrams lost", reverse ? " -R" : "", lost,
                     total);
        }
        /* What arrived went through the daemon; what the kernel dropped
         * on a loaded machine (a full socket buffer on either side of the
         * daemon) may not have. */
        totals[reverse] = total - lost;
    }
    echod_stop_ok(e);
    /* The data went through the UDP listener (a flow per test, logged in
     * either order), the control through TCP. */
    long long most_in = -1, most_out = -1;
    for (int k = 0; k < 2; k++) {
        const char *line = echod_log_line(e, "access listener=data ", k);
        if (line == NULL)
            fail_msg("no access line %d of listener data", k + 1);
        print_message("    %s\n", line);
        long long in = log_field(line, " datagrams_in="),
                  out = log_field(line, " datagrams_out=");
        most_in = in > most_in ? in : most_in;
        most_out = out > most_out ? out : most_out;
    }
    if (most_in < totals[0] || most_out < totals[1])
        fail_msg(
            "iperf3 received %ld datagrams forward and %ld back, the daemon's flows at "
            "most %lld in and %lld out",
            totals[0], totals[1], most_in, most_out);
    assert_non_null(echod_log_line(e, "access listener=ctl ", 1));
}

/* ---- dig and dnsmasq ------------------------------------------------------------ */

/* dig through a responses = 1 relay to dnsmasq: test.example is 192.0.2.1,
 * and the flow ends with its answer (reason=responses). */
static void dig_through_a_responses_one_relay_to_dnsmasq(void **state)
{
    (void)state;
    char dig[PATH_MAX], dnsmasq[PATH_MAX];
    NEED("dig", "bind9-dnsutils", dig);
    NEED("dnsmasq", "dnsmasq-base", dnsmasq);
    int dport = reserve_port();
    char port_opt[32];
    snprintf(port_opt, sizeof(port_opt), "--port=%d", dport);
    char *argv[16];
    int argc = 0;
    argv[argc++] = dnsmasq;
    argv[argc++] = "--no-daemon";
    argv[argc++] = "--conf-file=/dev/null";
    argv[argc++] = "--no-resolv";
    argv[argc++] = "--no-hosts";
    argv[argc++] = "--pid-file=";
    argv[argc++] = "--log-facility=-";
    argv[argc++] = port_opt;
    argv[argc++] = "--listen-address=127.0.0.1";
    argv[argc++] = "--bind-interfaces";
    argv[argc++] = "--address=/test.example/192.0.2.1";
    if (geteuid() == 0)
        argv[argc++] = "--user=root"; /* no drop to "nobody" needed here */
    argv[argc] = NULL;
    struct proc *dns = proc_start(argv);
    if (!proc_wait_for(dns, "started, version", WAIT_MS)) {
        proc_print(dns);
        fail_msg("dnsmasq did not start");
    }
    struct echod *e = echod_startf(BASE
                                   "listeners = ( { name = \"dns\"; protocol = \"udp\";\n"
                                   "  mode = \"proxy\"; listen = [ \"127.0.0.1:0\" ];\n"
                                   "  upstreams = [ \"127.0.0.1:%d\" ];\n"
                                   "  responses = 1; idle_timeout = 5.0; } );\n",
                                   dport);
    int port = echod_port(e, "dns", 0);
    char pp[16];
    snprintf(pp, sizeof(pp), "%d", port);
    for (int i = 0; i < 2; i++) {
        struct proc *q = proc_start((char *const[]){dig, "@127.0.0.1", "-p", pp,
                                                    "test.example", "A", "+short",
                                                    "+time=1", "+tries=3", NULL});
        int rc = proc_wait_exit(q, WAIT_MS + 3000);
        char *out = proc_output(q);
        bool ok = rc == 0 && strcmp(out, "192.0.2.1\n") == 0;
        free(out);
        if (!ok) {
            proc_print(q);
            proc_print(dns);
            fail_msg("dig test.example through the daemon: exit %d", rc);
        }
    }
    /* Each query a flow of its own, ended by its answer. */
    assert_true(echod_wait_count(e, "access listener=dns ", 2, WAIT_MS));
    for (int i = 0; i < 2; i++) {
        const char *line = echod_log_line(e, "access listener=dns ", i);
        print_message("    %s\n", line);
        char up[64];
        snprintf(up, sizeof(up), " upstream=127.0.0.1:%d ", dport);
        assert_non_null(strstr(line, up));
        assert_non_null(strstr(line, " datagrams_in=1 datagrams_out=1 "));
        const char *r = strstr(line, " reason=responses");
        assert_true(r != NULL && r[17] == '\0');
    }
    echod_stop_ok(e);
}

#define TEST(f) cmocka_unit_test_teardown(f, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(iperf3_udp_through_tcp_and_udp_relays_on_one_port),
        TEST(dig_through_a_responses_one_relay_to_dnsmasq),
    };
    test_filter_from_env("UDP_TEST");
    return cmocka_run_group_tests(tests, setup_ignore_sigpipe, NULL);
}
