/* The configuration loader: the shipped file, every default, and the exact
 * message of each kind of mistake. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "config-table.h"
#include "../utf8-valid.h"

/* A minimal valid listener, for tests about other settings. */
#define LISTENER "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; } );\n"

static char dir[200];
static char path[220]; /* dir/t.conf, where each test writes */
static char err[2048];

/* Creates the directory the test files are written into. */
static int make_dir(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/test-config.XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/t.conf", dir);
    return 0;
}

/* Removes the test file and its directory. */
static int remove_dir(void **state)
{
    (void)state;
    unlink(path);
    return rmdir(dir);
}

/* Writes len bytes of text into the test file. */
static void write_bytes(const char *text, size_t len)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Writes text into the test file and loads it. */
static struct config *load(const char *text)
{
    write_bytes(text, strlen(text));
    strcpy(err, "(untouched)");
    return config_load(path, NULL, err, sizeof(err));
}

/* Loads text, which must be valid. */
static struct config *load_ok(const char *text)
{
    struct config *cfg = load(text);
    if (cfg == NULL)
        fail_msg("refused: %s\n--- file:\n%s", err, text);
    return cfg;
}

/* Asserts that text is refused with exactly the message path + rest. */
static void refused(const char *text, const char *rest)
{
    char expected[sizeof(err)];
    struct config *cfg = load(text);
    snprintf(expected, sizeof(expected), "%s%s", path, rest);
    if (cfg != NULL) {
        config_free(cfg);
        fail_msg("accepted, expected: %s\n--- file:\n%s", expected, text);
    }
    assert_string_equal(err, expected);
}

/* Asserts that text is refused with a message that starts with path +
 * start and contains part. */
static void refused_with(const char *text, const char *start, const char *part)
{
    char expected[sizeof(err)];
    struct config *cfg = load(text);
    snprintf(expected, sizeof(expected), "%s%s", path, start);
    if (cfg != NULL) {
        config_free(cfg);
        fail_msg("accepted, expected: %s...%s\n--- file:\n%s", expected, part, text);
    }
    if (strncmp(err, expected, strlen(expected)) != 0 || strstr(err, part) == NULL)
        fail_msg("got:      %s\nexpected: %s...%s...", err, expected, part);
}

/* The listener file with one more setting for listener "a" (line 1). */
static const char *with_listener_setting(char *buf, size_t len, const char *setting)
{
    snprintf(buf, len,
             "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; %s } );\n",
             setting);
    return buf;
}

/* The listener file with one more setting for the proxy listener "p". */
static const char *with_proxy_setting(char *buf, size_t len, const char *setting)
{
    snprintf(buf, len,
             "listeners = ( { name = \"p\"; listen = [ \"127.0.0.1:0\" ];\n"
             "  mode = \"proxy\"; upstreams = [ \"127.0.0.1:6379\" ];\n"
             "  %s\n"
             "} );\n",
             setting);
    return buf;
}

/* The daemon-wide settings at their defaults. */
static void assert_daemon_defaults(const struct config *cfg)
{
    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->max_connections, 10000);
    assert_int_equal(cfg->shutdown_timeout_ms, 10000);
    assert_int_equal(cfg->drain_delay_ms, 0);
    assert_string_equal(cfg->user, "");
    assert_string_equal(cfg->pidfile, "");
    assert_int_equal(cfg->log_target, LOG_TARGET_AUTO);
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
    assert_true(cfg->log_access);
    assert_int_equal(cfg->log_interval_ms, 0);
}

/* The path of a file of the source tree, found through $top_srcdir. */
static const char *source_file(char *buf, size_t len, const char *name)
{
    const char *top = getenv("top_srcdir");
    snprintf(buf, len, "%s/%s", top != NULL && top[0] != '\0' ? top : ".", name);
    return buf;
}

/* ---- files that load ------------------------------------------------------ */

static void shipped_file_loads(void **state)
{
    (void)state;
    char shipped[PATH_MAX];
    source_file(shipped, sizeof(shipped), "conf/mio-echod.conf");

    struct config *cfg = config_load(shipped, NULL, err, sizeof(err));
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_string_equal(cfg->path, shipped);
    assert_daemon_defaults(cfg);
    assert_int_equal(cfg->nlisteners, 2);

    const struct listener_config *l = &cfg->listeners[0];
    assert_string_equal(l->name, "echo");
    assert_int_equal(l->nlisten, 2);
    assert_string_equal(l->listen[0].text, "127.0.0.1:7007");
    assert_int_equal(l->listen[0].addr.u.sa.sa_family, AF_INET);
    assert_int_equal(ntohs(l->listen[0].addr.u.in.sin_port), 7007);
    assert_string_equal(l->listen[1].text, "[::1]:7007");
    assert_int_equal(l->listen[1].addr.u.sa.sa_family, AF_INET6);
    assert_int_equal(l->mode, MODE_ECHO);
    assert_int_equal(l->buffer_size, 16384);
    assert_int_equal(l->idle_timeout_ms, 300000);
    assert_int_equal(l->max_connections, 0);
    assert_int_equal(l->max_per_source, 0);
    assert_int_equal(l->nallow, 0);
    assert_int_equal(l->ndeny, 0);
    assert_false(l->accept_proxy);
    assert_false(l->splice); /* echo: the client reads copied data faster */
    assert_int_equal(l->nupstreams, 0);
    assert_int_equal(l->protocol, PROTOCOL_TCP);
    /* RFC 862's other service, on the same port. */
    const struct listener_config *u = &cfg->listeners[1];
    assert_string_equal(u->name, "udp-echo");
    assert_int_equal(u->protocol, PROTOCOL_UDP);
    assert_int_equal(u->mode, MODE_ECHO);
    assert_int_equal(u->nlisten, 2);
    assert_true(addr_equal(&u->listen[0].addr, &l->listen[0].addr));
    assert_true(addr_equal(&u->listen[1].addr, &l->listen[1].addr));
    config_free(cfg);
}

static void defaults(void **state)
{
    (void)state;
    struct config *cfg = load_ok(LISTENER);
    assert_string_equal(cfg->path, path);
    assert_daemon_defaults(cfg);
    assert_int_equal(cfg->nlisteners, 1);
    const struct listener_config *l = &cfg->listeners[0];
    assert_string_equal(l->name, "a");
    assert_int_equal(l->line, 1);
    assert_int_equal(l->nlisten, 1);
    assert_int_equal(l->mode, MODE_ECHO);
    assert_int_equal(l->buffer_size, 16384);
    assert_int_equal(l->idle_timeout_ms, 300000);
    assert_int_equal(l->max_connections, 0);
    assert_int_equal(l->max_per_source, 0);
    assert_int_equal(l->nallow, 0);
    assert_null(l->allow);
    assert_int_equal(l->ndeny, 0);
    assert_null(l->deny);
    assert_false(l->accept_proxy);
    assert_false(l->splice); /* echo: the client reads copied data faster */
    assert_int_equal(l->nupstreams, 0);
    assert_null(l->upstreams);
    config_free(cfg);

    /* An empty log group keeps the log defaults too. */
    cfg = load_ok("log = { };\n" LISTENER);
    assert_int_equal(cfg->log_target, LOG_TARGET_AUTO);
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_true(cfg->log_access);
    config_free(cfg);
}

static void proxy_defaults(void **state)
{
    (void)state;
    char buf[512];
    struct config *cfg = load_ok(with_proxy_setting(buf, sizeof(buf), ""));
    const struct listener_config *l = &cfg->listeners[0];
    assert_int_equal(l->mode, MODE_PROXY);
    assert_int_equal(l->nupstreams, 1);
    assert_string_equal(l->upstreams[0].text, "127.0.0.1:6379");
    assert_int_equal(ntohs(l->upstreams[0].addr.u.in.sin_port), 6379);
    assert_int_equal(l->balance, BALANCE_ROUND_ROBIN);
    assert_int_equal(l->connect_timeout_ms, 3000);
    assert_int_equal(l->retries, 2);
    assert_int_equal(l->fail_timeout_ms, 10000);
    assert_int_equal(l->send_proxy, SEND_PROXY_NONE);
    assert_false(l->accept_proxy);
    assert_int_equal(l->buffer_size, 16384);
#ifdef HAVE_SPLICE
    assert_true(l->splice);
#else
    assert_false(l->splice);
#endif
    config_free(cfg);
}

/* The issue's own example, with every setting away from its default. */
static void every_setting(void **state)
{
    (void)state;
    struct config *cfg = load_ok(
        "workers = 4;\n"
        "max_connections = 20000;\n"
        "shutdown_timeout = 2.5;\n"
        "user = \"nobody\";\n"
        "pidfile = \"/run/mio-echod.pid\";\n"
        "log = { target = \"syslog\"; level = \"debug\"; format = \"json\";\n"
        "        access = false; interval = 0.25; };\n"
        "listeners = (\n"
        "  { name = \"echo\";\n"
        "    listen = [ \"127.0.0.1:7007\", \"[::1]:7007\", \"unix:/run/echo.sock\" ];\n"
        "    mode = \"echo\";\n"
        "    buffer_size = 1024;\n"
        "    idle_timeout = 0;\n"
        "    max_connections = 100;\n"
        "    max_per_source = 5;\n"
        "    allow = [ \"10.0.0.0/8\", \"2001:db8::/32\" ]; deny = ( \"10.1.2.3\" );\n"
        "    accept_proxy = true;\n"
        "    splice = false;\n"
        "  },\n"
        "  { name = \"relay.2-x_y\"; listen = [ \"*:7008\" ]; mode = \"proxy\";\n"
        "    upstreams = [ \"127.0.0.1:6379\", \"[::1]:6380\" ];\n"
        "    balance = \"least-connections\";\n"
        "    connect_timeout = 0.0001; retries = 0;\n"
        "    fail_timeout = 1.1;\n"
        "    send_proxy = \"v2\";\n"
        "    buffer_size = 16777216L;\n"
        "    idle_timeout = 604800;\n"
        "  }\n"
        ");\n");
    assert_int_equal(cfg->workers, 4);
    assert_int_equal(cfg->max_connections, 20000);
    assert_int_equal(cfg->shutdown_timeout_ms, 2500);
    assert_string_equal(cfg->user, "nobody");
    assert_string_equal(cfg->pidfile, "/run/mio-echod.pid");
    assert_int_equal(cfg->log_target, LOG_TARGET_SYSLOG);
    assert_int_equal(cfg->log_level, LOG_DEBUG);
    assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
    assert_false(cfg->log_access);
    assert_int_equal(cfg->log_interval_ms, 250);
    assert_int_equal(cfg->nlisteners, 2);

    const struct listener_config *e = &cfg->listeners[0];
    assert_string_equal(e->name, "echo");
    assert_int_equal(e->line, 9);
    assert_int_equal(e->nlisten, 3);
    assert_string_equal(e->listen[2].text, "unix:/run/echo.sock");
    assert_int_equal(e->listen[2].addr.u.sa.sa_family, AF_UNIX);
    assert_int_equal(e->buffer_size, 1024);
    assert_int_equal(e->idle_timeout_ms, 0);
    assert_int_equal(e->max_connections, 100);
    assert_int_equal(e->max_per_source, 5);
    assert_int_equal(e->nallow, 2);
    assert_int_equal(e->allow[0].family, AF_INET);
    assert_int_equal(e->allow[0].bits, 8);
    assert_int_equal(e->allow[1].family, AF_INET6);
    assert_int_equal(e->allow[1].bits, 32);
    assert_int_equal(e->ndeny, 1);
    assert_int_equal(e->deny[0].bits, 32);
    assert_true(e->accept_proxy);
    assert_false(e->splice);

    const struct listener_config *r = &cfg->listeners[1];
    assert_string_equal(r->name, "relay.2-x_y");
    assert_int_equal(r->line, 20);
    /* "*:port" stands for both wildcards, each with the text as written. */
    assert_int_equal(r->nlisten, 2);
    assert_string_equal(r->listen[0].text, "*:7008");
    assert_string_equal(r->listen[1].text, "*:7008");
    assert_int_equal(r->listen[0].addr.u.sa.sa_family, AF_INET);
    assert_int_equal(r->listen[1].addr.u.sa.sa_family, AF_INET6);
    assert_int_equal(r->mode, MODE_PROXY);
    assert_int_equal(r->nupstreams, 2);
    assert_string_equal(r->upstreams[1].text, "[::1]:6380");
    assert_int_equal(r->balance, BALANCE_LEAST_CONNECTIONS);
    assert_int_equal(r->connect_timeout_ms, 1); /* 0.1 ms, rounded up */
    assert_int_equal(r->retries, 0);
    assert_int_equal(r->fail_timeout_ms, 1100); /* not 1101 */
    assert_int_equal(r->send_proxy, SEND_PROXY_V2);
    assert_int_equal(r->buffer_size, 16777216);
    assert_int_equal(r->idle_timeout_ms, 604800000);
    config_free(cfg);
}

static void log_levels_and_choices(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int level;
    } levels[] = {
        {"error", LOG_ERR}, {"warning", LOG_WARNING}, {"notice", LOG_NOTICE},
        {"info", LOG_INFO}, {"debug", LOG_DEBUG},
    };
    char buf[512];
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        snprintf(buf, sizeof(buf), "log = { level = \"%s\"; };\n" LISTENER,
                 levels[i].name);
        struct config *cfg = load_ok(buf);
        assert_int_equal(cfg->log_level, levels[i].level);
        config_free(cfg);
    }
    struct config *cfg = load_ok("log = { target = \"stderr\"; };\n" LISTENER);
    assert_int_equal(cfg->log_target, LOG_TARGET_STDERR);
    config_free(cfg);

    static const struct {
        const char *text;
        int value;
    } balances[] = {
        {"balance = \"round-robin\";", BALANCE_ROUND_ROBIN},
        {"balance = \"least-connections\";", BALANCE_LEAST_CONNECTIONS},
        {"balance = \"source-hash\";", BALANCE_SOURCE_HASH},
    };
    for (size_t i = 0; i < 3; i++) {
        cfg = load_ok(with_proxy_setting(buf, sizeof(buf), balances[i].text));
        assert_int_equal(cfg->listeners[0].balance, balances[i].value);
        config_free(cfg);
    }
    static const struct {
        const char *text;
        int value;
    } sends[] = {
        {"send_proxy = \"none\";", SEND_PROXY_NONE},
        {"send_proxy = \"v1\";", SEND_PROXY_V1},
        {"send_proxy = \"v2\";", SEND_PROXY_V2},
    };
    for (size_t i = 0; i < 3; i++) {
        cfg = load_ok(with_proxy_setting(buf, sizeof(buf), sends[i].text));
        assert_int_equal(cfg->listeners[0].send_proxy, sends[i].value);
        config_free(cfg);
    }
}

/* The ends of each range are accepted; seconds take integers and floats. */
static void range_ends_accepted(void **state)
{
    (void)state;
    struct config *cfg = load_ok(
        "workers = 256; max_connections = 1000000;\n"
        "shutdown_timeout = 3600; drain_delay = 3600;\n" LISTENER);
    assert_int_equal(cfg->drain_delay_ms, 3600000);
    assert_int_equal(cfg->workers, 256);
    assert_int_equal(cfg->max_connections, 1000000);
    assert_int_equal(cfg->shutdown_timeout_ms, 3600000);
    config_free(cfg);

    cfg = load_ok("max_connections = 0; shutdown_timeout = 0.0;\n" LISTENER);
    assert_int_equal(cfg->max_connections, 0);
    assert_int_equal(cfg->shutdown_timeout_ms, 0);
    config_free(cfg);

    char buf[512];
    cfg = load_ok(with_listener_setting(
        buf, sizeof(buf),
        "max_connections = 1000000; max_per_source = 1000000; idle_timeout = 604800.0;"));
    assert_int_equal(cfg->listeners[0].max_connections, 1000000);
    assert_int_equal(cfg->listeners[0].max_per_source, 1000000);
    assert_int_equal(cfg->listeners[0].idle_timeout_ms, 604800000);
    config_free(cfg);

    cfg = load_ok(
        with_proxy_setting(buf, sizeof(buf),
                           "connect_timeout = 3600; retries = 100; fail_timeout = 0;"));
    assert_int_equal(cfg->listeners[0].connect_timeout_ms, 3600000);
    assert_int_equal(cfg->listeners[0].retries, 100);
    assert_int_equal(cfg->listeners[0].fail_timeout_ms, 0);
    config_free(cfg);

    /* Rounded up to whole milliseconds, never down to 0. */
    cfg = load_ok("shutdown_timeout = 0.0015;\n" LISTENER);
    assert_int_equal(cfg->shutdown_timeout_ms, 2);
    config_free(cfg);
    cfg = load_ok("shutdown_timeout = 1e-9;\n" LISTENER);
    assert_int_equal(cfg->shutdown_timeout_ms, 1);
    config_free(cfg);
}

/* Port 0 asks the kernel for a free port: it is never a clash. */
static void port_zero_twice(void **state)
{
    (void)state;
    struct config *cfg = load_ok(
        "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\", \"127.0.0.1:0\" ]; },\n"
        "              { name = \"b\"; listen = [ \"*:0\" ]; } );\n");
    assert_int_equal(cfg->listeners[0].nlisten, 2);
    assert_int_equal(cfg->listeners[1].nlisten, 2);
    config_free(cfg);
}

/* The fuzzing seeds say what they are: valid-* load, invalid-* are refused. */
static void fuzz_seeds(void **state)
{
    (void)state;
    char seeds[PATH_MAX], file[PATH_MAX + 256];
    source_file(seeds, sizeof(seeds), "tests/fuzz-corpus/config");
    DIR *d = opendir(seeds);
    if (d == NULL)
        fail_msg("%s: %s", seeds, strerror(errno));
    size_t valid = 0, invalid = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool want_valid = strncmp(e->d_name, "valid-", 6) == 0;
        if (!want_valid && strncmp(e->d_name, "invalid-", 8) != 0)
            continue;
        snprintf(file, sizeof(file), "%s/%s", seeds, e->d_name);
        struct config *cfg = config_load(file, NULL, err, sizeof(err));
        if (want_valid && cfg == NULL)
            fail_msg("%s", err);
        if (!want_valid && cfg != NULL)
            fail_msg("%s: accepted", file);
        config_free(cfg);
        *(want_valid ? &valid : &invalid) += 1;
    }
    closedir(d);
    assert_true(valid >= 3);
    assert_true(invalid >= 10);
}

/* ---- files that are refused ---------------------------------------------- */

static void missing_file(void **state)
{
    (void)state;
    char missing[256], expected[512];
    snprintf(missing, sizeof(missing), "%s/none.conf", dir);
    snprintf(expected, sizeof(expected), "%s: cannot read: No such file or directory",
             missing);
    assert_null(config_load(missing, NULL, err, sizeof(err)));
    assert_string_equal(err, expected);

    snprintf(expected, sizeof(expected), "%s: cannot read: Is a directory", dir);
    assert_null(config_load(dir, NULL, err, sizeof(err)));
    assert_string_equal(err, expected);
}

static void syntax_errors(void **state)
{
    (void)state;
    refused("workers = 1;\nmax_connections = ;\n", ":2: syntax error");
    refused("workers = 1;\n\nworkers = 2;\n", ":3: syntax error: duplicate setting name");
    refused("workers = 1;\nlog = {\n  target = \"auto\"\n  level = ;\n};\n",
            ":4: syntax error");
    refused("workers = 1;\nlog = { target = \"auto\";\n", ":3: syntax error");
    refused("workers = 1;\nlisteners = [ 1, \"a\" ];\n",
            ":2: syntax error: mismatched element type in array");
    write_bytes("workers = 1;\n\nuser = \"a\0b\";\n" LISTENER,
                sizeof("workers = 1;\n\nuser = \"a\0b\";\n" LISTENER) - 1);
    assert_null(config_load(path, NULL, err, sizeof(err)));
    char expected[512];
    snprintf(expected, sizeof(expected), "%s:3: syntax error: NUL byte", path);
    assert_string_equal(err, expected);
    refused("workers = 1;\n@include \"other.conf\"\n",
            ":2: @include is not supported: the configuration is one file");
    /* libconfig 1.5 cannot number lines past 65535. */
    size_t big = 65535 + sizeof(LISTENER);
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, '\n', 65535);
    memcpy(text + 65535, LISTENER, sizeof(LISTENER));
    refused(text, ": more than 65535 lines, past what libconfig can number");
    text[65534] = ' ';
    struct config *last = load_ok(text);
    assert_int_equal(last->listeners[0].line, 65535);
    config_free(last);
    free(text);
    /* Comments and strings hide what looks like an include or a number. */
    struct config *cfg = load_ok(
        "# @include \"x\"\n/* 99999999999 */\n"
        "pidfile = \"@include 99999999999\"; // 99999999999\n" LISTENER);
    assert_string_equal(cfg->pidfile, "@include 99999999999");
    config_free(cfg);
}

static void unknown_settings(void **state)
{
    (void)state;
    char buf[512];
    refused("wokers = 2;\n" LISTENER,
            ":1: wokers: unknown setting (did you mean \"workers\"?)");
    refused(
        "workers = 2;\ncolour = true;\n" LISTENER,
        ":2: colour: unknown setting (known: workers, poller, max_connections, "
        "shutdown_timeout, drain_delay, user, pidfile, log, listeners, control, stats)");
    refused("log = {\n  target = \"auto\";\n  levle = \"info\";\n};\n" LISTENER,
            ":3: log.levle: unknown setting (did you mean \"level\"?)");
    refused("log = { file = \"x\"; };\n" LISTENER,
            ":1: log.file: unknown setting (known: target, level, format, access, "
            "interval)");
    refused(with_proxy_setting(buf, sizeof(buf), "balanse = \"source-hash\";"),
            ":3: listeners.p.balanse: unknown setting (did you mean \"balance\"?)");
    refused_with(
        with_listener_setting(buf, sizeof(buf), "port = 7;"),
        ":1: listeners.a.port: unknown setting (known: name, protocol, listen, "
        "mode, ",
        ", send_proxy, responses, upstream_tls, health_check, resolve, sni_routes, tls)");
    /* Before the name is known, the listener goes by its index. */
    refused("listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; },\n"
            "  { nmae = \"b\"; listen = [ \"127.0.0.1:0\" ]; } );\n",
            ":2: listeners.[1].nmae: unknown setting (did you mean \"name\"?)");
}

static void wrong_types(void **state)
{
    (void)state;
    char buf[512];
    refused("workers = \"4\";\n" LISTENER, ":1: workers: expected an integer, got \"4\"");
    refused("workers = 2.0;\n" LISTENER, ":1: workers: expected an integer, got 2.0");
    refused("max_connections = 1.5;\n" LISTENER,
            ":1: max_connections: expected an integer, got 1.5");
    refused("shutdown_timeout = \"10s\";\n" LISTENER,
            ":1: shutdown_timeout: expected a number of seconds, got \"10s\"");
    refused("shutdown_timeout = true;\n" LISTENER,
            ":1: shutdown_timeout: expected a number of seconds, got true");
    refused("user = 0;\n" LISTENER, ":1: user: expected a string, got 0");
    refused("pidfile = [ \"/run/x\" ];\n" LISTENER,
            ":1: pidfile: expected a string, got an array [ ... ]");
    refused("log = { access = \"yes\"; };\n" LISTENER,
            ":1: log.access: expected true or false, got \"yes\"");
    refused(
        "log = \"syslog\";\n" LISTENER,
        ":1: log: expected a group { target = ...; level = ...; access = ...; }, got \"syslog\"");
    refused("log = { target = \"file\"; };\n" LISTENER,
            ":1: log.target: expected auto, stderr or syslog, got \"file\"");
    refused(
        "log = { level = \"verbose\"; };\n" LISTENER,
        ":1: log.level: expected error, warning, notice, info or debug, got \"verbose\"");
    refused("log = { level = 7; };\n" LISTENER,
            ":1: log.level: expected error, warning, notice, info or debug, got 7");
    refused("log = {\n  format = \"JSON\"; };\n" LISTENER,
            ":2: log.format: expected text or json, got \"JSON\"");
    refused("log = { format = true; };\n" LISTENER,
            ":1: log.format: expected text or json, got true");
    refused("log = { interval = \"1s\"; };\n" LISTENER,
            ":1: log.interval: expected a number of seconds, got \"1s\"");
    refused(with_listener_setting(buf, sizeof(buf), "mode = \"relay\";"),
            ":1: listeners.a.mode: expected echo or proxy, got \"relay\"");
    refused(with_listener_setting(buf, sizeof(buf), "buffer_size = \"16k\";"),
            ":1: listeners.a.buffer_size: expected an integer, got \"16k\"");
    refused(with_listener_setting(buf, sizeof(buf), "idle_timeout = \"5m\";"),
            ":1: listeners.a.idle_timeout: expected a number of seconds, got \"5m\"");
    refused(with_listener_setting(buf, sizeof(buf), "accept_proxy = 1;"),
            ":1: listeners.a.accept_proxy: expected true or false, got 1");
    refused(with_listener_setting(buf, sizeof(buf), "splice = \"yes\";"),
            ":1: listeners.a.splice: expected true or false, got \"yes\"");
    refused(with_listener_setting(buf, sizeof(buf), "allow = \"10.0.0.0/8\";"),
            ":1: listeners.a.allow: expected a list of strings, got \"10.0.0.0/8\" "
            "(write [ \"10.0.0.0/8\" ])");
    refused(with_listener_setting(buf, sizeof(buf), "deny = { a = 1; };"),
            ":1: listeners.a.deny: expected a list of strings, got a group { ... }");
    refused("listeners = ( { name = \"a\";\n  listen = ( \"127.0.0.1:0\",\n  7 ); } );\n",
            ":3: listeners.a.listen.[1]: expected a string, got 7");
    refused(with_proxy_setting(buf, sizeof(buf), "balance = \"random\";"),
            ":3: listeners.p.balance: expected round-robin, least-connections or "
            "source-hash, got \"random\"");
    refused(with_proxy_setting(buf, sizeof(buf), "send_proxy = \"v3\";"),
            ":3: listeners.p.send_proxy: expected none, v1 or v2, got \"v3\"");
    refused(with_proxy_setting(buf, sizeof(buf), "retries = 2.5;"),
            ":3: listeners.p.retries: expected an integer, got 2.5");
    refused(with_proxy_setting(buf, sizeof(buf), "connect_timeout = \"3\";"),
            ":3: listeners.p.connect_timeout: expected a number of seconds, got \"3\"");
    refused(
        "listeners = { name = \"a\"; };\n",
        ":1: listeners: expected a list of groups ( { name = ...; listen = [ ... ]; }, ... ), "
        "got a group { ... }");
    refused(
        "listeners = ( \"a\" );\n",
        ":1: listeners.[0]: expected a group { name = ...; listen = [ ... ]; }, got \"a\"");
    refused("listeners = ( { name = 1; } );\n",
            ":1: listeners.[0].name: expected a string, got 1");
    /* Quoted values are escaped and cut, so the message stays one line. */
    refused("log = { target = \"a\\nb\\\"c\"; };\n" LISTENER,
            ":1: log.target: expected auto, stderr or syslog, got \"a\\nb\\\"c\"");
    refused(
        "log = { target = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"; };\n" LISTENER,
        ":1: log.target: expected auto, stderr or syslog, got "
        "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"...");
}

static void out_of_range(void **state)
{
    (void)state;
    char buf[512];
    refused("workers = -1;\n" LISTENER, ":1: workers: -1 out of range 0-256");
    refused("workers = 257;\n" LISTENER, ":1: workers: 257 out of range 0-256");
    refused("max_connections = -1;\n" LISTENER,
            ":1: max_connections: -1 out of range 0-1000000");
    refused("max_connections = 1000001;\n" LISTENER,
            ":1: max_connections: 1000001 out of range 0-1000000");
    refused("drain_delay = -1.0;\n" LISTENER,
            ":1: drain_delay: -1.0 out of range 0-3600 seconds");
    refused("drain_delay = 3600.5;\n" LISTENER,
            ":1: drain_delay: 3600.5 out of range 0-3600 seconds");
    refused("drain_delay = \"1s\";\n" LISTENER,
            ":1: drain_delay: expected a number of seconds, got \"1s\"");
    refused("shutdown_timeout = -0.5;\n" LISTENER,
            ":1: shutdown_timeout: -0.5 out of range 0-3600 seconds");
    refused("shutdown_timeout = 3600.5;\n" LISTENER,
            ":1: shutdown_timeout: 3600.5 out of range 0-3600 seconds");
    refused("log = {\n  interval = -0.2;\n};\n" LISTENER,
            ":2: log.interval: -0.2 out of range 0-86400 seconds");
    refused("log = { interval = 86401; };\n" LISTENER,
            ":1: log.interval: 86401 out of range 0-86400 seconds");
    refused("shutdown_timeout = 1e999;\n" LISTENER,
            ":1: shutdown_timeout: expected a finite number of seconds, got inf");
    refused(with_listener_setting(buf, sizeof(buf), "buffer_size = 1023;"),
            ":1: listeners.a.buffer_size: 1023 out of range 1024-16777216 bytes");
    refused(with_listener_setting(buf, sizeof(buf), "buffer_size = 16777217;"),
            ":1: listeners.a.buffer_size: 16777217 out of range 1024-16777216 bytes");
    refused(with_listener_setting(buf, sizeof(buf), "idle_timeout = -1;"),
            ":1: listeners.a.idle_timeout: -1 out of range 0-604800 seconds");
    refused(with_listener_setting(buf, sizeof(buf), "idle_timeout = 604800.001;"),
            ":1: listeners.a.idle_timeout: 604800.001 out of range 0-604800 seconds");
    refused(with_listener_setting(buf, sizeof(buf), "max_connections = -1;"),
            ":1: listeners.a.max_connections: -1 out of range 0-1000000");
    refused(with_listener_setting(buf, sizeof(buf), "max_connections = 1000001;"),
            ":1: listeners.a.max_connections: 1000001 out of range 0-1000000");
    refused(with_listener_setting(buf, sizeof(buf), "max_per_source = -1;"),
            ":1: listeners.a.max_per_source: -1 out of range 0-1000000");
    refused(with_listener_setting(buf, sizeof(buf), "max_per_source = 1000001;"),
            ":1: listeners.a.max_per_source: 1000001 out of range 0-1000000");
    refused(with_proxy_setting(buf, sizeof(buf), "connect_timeout = 0;"),
            ":3: listeners.p.connect_timeout: 0 out of range: expected more than 0 "
            "and at most 3600 seconds");
    refused(with_proxy_setting(buf, sizeof(buf), "connect_timeout = 3600.5;"),
            ":3: listeners.p.connect_timeout: 3600.5 out of range: expected more than 0 "
            "and at most 3600 seconds");
    refused(with_proxy_setting(buf, sizeof(buf), "retries = -1;"),
            ":3: listeners.p.retries: -1 out of range 0-100");
    refused(with_proxy_setting(buf, sizeof(buf), "retries = 101;"),
            ":3: listeners.p.retries: 101 out of range 0-100");
    refused(with_proxy_setting(buf, sizeof(buf), "fail_timeout = -0.001;"),
            ":3: listeners.p.fail_timeout: -0.001 out of range 0-3600 seconds");
    refused(with_proxy_setting(buf, sizeof(buf), "fail_timeout = 3601;"),
            ":3: listeners.p.fail_timeout: 3601 out of range 0-3600 seconds");
}

/* Integers past 32 bits: libconfig reads them as int64 with an L suffix,
 * and libconfig 1.5 cuts them to 32 bits without one. */
static void wide_integers(void **state)
{
    (void)state;
    char buf[512];
    refused("workers = 5000000000L;\n" LISTENER,
            ":1: workers: 5000000000 out of range 0-256");
    refused("workers = 3000000000;\n" LISTENER,
            ":1: workers: 3000000000 out of range 0-256");
    /* 4294977296 is 2^32 + 10000: its low 32 bits are in range. */
    refused("max_connections = 4294977296;\n" LISTENER,
            ":1: max_connections: 4294977296 out of range 0-1000000");
    refused("workers = -4294967295;\n" LISTENER,
            ":1: workers: -4294967295 out of range 0-256");
    refused("workers = 0x100000001;\n" LISTENER,
            ":1: workers: 0x100000001 out of range 0-256");
    refused("workers = 99999999999999999999999;\n" LISTENER,
            ":1: workers: 99999999999999999999999 out of range 0-256");
    refused("shutdown_timeout = 4294967306;\n" LISTENER,
            ":1: shutdown_timeout: 4294967306 out of range 0-3600 seconds");
    /* Told from an in-range setting on its line by the name before it. */
    refused("workers = 1; max_connections = 4294967297; shutdown_timeout = 1;\n" LISTENER,
            ":1: max_connections: 4294967297 out of range 0-1000000");
    /* The literal may sit lines below its name. */
    refused("workers = 1; max_connections =\n\n  4294967297;\n" LISTENER,
            ":1: max_connections: 4294967297 out of range 0-1000000");
    refused(with_proxy_setting(buf, sizeof(buf), "retries = 4294967298;"),
            ":3: listeners.p.retries: 4294967298 out of range 0-100");
    refused("user = 4294967297;\n" LISTENER,
            ":1: user: expected a string, got 4294967297");
    /* An L-suffixed literal in range is fine. */
    struct config *cfg = load_ok("workers = 8L; max_connections = 0x10;\n" LISTENER);
    assert_int_equal(cfg->workers, 8);
    assert_int_equal(cfg->max_connections, 16);
    config_free(cfg);
}

static void bad_addresses(void **state)
{
    (void)state;
    refused_with("listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:99999\" ]; } );\n",
                 ":1: listeners.a.listen.[0]: invalid address \"127.0.0.1:99999\": ",
                 "out of range");
    refused_with("listeners = ( { name = \"a\";\n"
                 "  listen = [ \"127.0.0.1:7007\",\n"
                 "             \"localhost:7007\" ]; } );\n",
                 ":3: listeners.a.listen.[1]: invalid address \"localhost:7007\": ",
                 "numeric");
    refused_with("listeners = ( { name = \"a\"; listen = [ \"7007\" ]; } );\n",
                 ":1: listeners.a.listen.[0]: invalid address \"7007\": ", "port");
    refused_with("listeners = ( { name = \"p\"; listen = [ \"127.0.0.1:0\" ];\n"
                 "  mode = \"proxy\"; upstreams = [ \"*:6379\" ]; } );\n",
                 ":2: listeners.p.upstreams.[0]: invalid address \"*:6379\": ", "\"*\"");
    refused_with("listeners = ( { name = \"p\"; listen = [ \"127.0.0.1:0\" ];\n"
                 "  mode = \"proxy\";\n"
                 "  upstreams = [ \"127.0.0.1:1\",\n"
                 "                \"127.0.0.1:0\" ]; } );\n",
                 ":4: listeners.p.upstreams.[1]: invalid address \"127.0.0.1:0\": ",
                 "out of range");
}

static void bad_cidrs(void **state)
{
    (void)state;
    char buf[512];
    refused_with(with_listener_setting(buf, sizeof(buf),
                                       "allow = [ \"10.0.0.0/8\", \"10.0.0.1/8\" ];"),
                 ":1: listeners.a.allow.[1]: invalid CIDR \"10.0.0.1/8\": ",
                 "10.0.0.0/8");
    refused_with(with_listener_setting(buf, sizeof(buf), "deny = [ \"10.0.0.0/33\" ];"),
                 ":1: listeners.a.deny.[0]: invalid CIDR \"10.0.0.0/33\": ", "33");
    refused_with(with_listener_setting(buf, sizeof(buf), "deny = [ \"example.com\" ];"),
                 ":1: listeners.a.deny.[0]: invalid CIDR \"example.com\": ", "expected");
    refused_with(with_listener_setting(buf, sizeof(buf), "deny = [ \"\" ];"),
                 ":1: listeners.a.deny.[0]: invalid CIDR \"\": ", "CIDR");
}

/* sni_routes: each route a group of server_name and upstreams, the name a
 * host name or a "*." wildcard, lowercased, each routed once; the
 * upstreams read as the relay's own. */
static void sni_routes(void **state)
{
    (void)state;
    char buf[1024];
    struct config *cfg = load_ok(with_proxy_setting(
        buf, sizeof(buf),
        "sni_routes = ( { server_name = \"A.Example\"; upstreams = [ \"127.0.0.1:1\" ]; },\n"
        "    { server_name = \"*.b.example\";\n"
        "      upstreams = [ \"127.0.0.1:2\", \"127.0.0.1:3\" ]; } );"));
    const struct listener_config *l = &cfg->listeners[0];
    assert_int_equal(l->nsni_routes, 2);
    assert_string_equal(l->sni_routes[0].server_name, "a.example");
    assert_int_equal(l->sni_routes[0].nupstreams, 1);
    assert_string_equal(l->sni_routes[1].server_name, "*.b.example");
    assert_int_equal(l->sni_routes[1].nupstreams, 2);
    config_free(cfg);
    refused(
        with_proxy_setting(buf, sizeof(buf),
                           "sni_routes = ( { server_name = \"a.example\"; "
                           "upstream = [ \"127.0.0.1:1\" ]; } );"),
        ":3: listeners.p.sni_routes.[0].upstream: unknown setting (known: server_name, "
        "upstreams)");
    refused(with_proxy_setting(buf, sizeof(buf),
                               "sni_routes = ( { server_name = \"a..example\"; "
                               "upstreams = [ \"127.0.0.1:1\" ]; } );"),
            ":3: listeners.p.sni_routes.[0].server_name: expected a host name like "
            "\"a.example\" or a wildcard like \"*.b.example\", got \"a..example\"");
    refused(
        with_proxy_setting(buf, sizeof(buf),
                           "sni_routes = ( { upstreams = [ \"127.0.0.1:1\" ]; } );"),
        ":3: listeners.p.sni_routes.[0].server_name: missing; expected a host name like "
        "\"a.example\" or \"*.b.example\"");
    refused(
        with_proxy_setting(buf, sizeof(buf),
                           "sni_routes = ( { server_name = \"a.example\"; } );"),
        ":3: listeners.p.sni_routes.[0].upstreams: proxy listener \"p\" has no upstreams; "
        "expected a list like [ \"127.0.0.1:6379\" ]");
    refused(
        with_proxy_setting(buf, sizeof(buf),
                           "sni_routes = ( { server_name = \"a.example\"; upstreams = "
                           "[ \"127.0.0.1:1\" ]; },\n"
                           "    { server_name = \"A.EXAMPLE\"; upstreams = "
                           "[ \"127.0.0.1:2\" ]; } );"),
        ":4: listeners.p.sni_routes.[1].server_name: \"a.example\" is routed already (at "
        "line 3)");
    refused_with(
        with_proxy_setting(buf, sizeof(buf), "sni_routes = ( \"a.example\" );"),
        ":3: listeners.p.sni_routes.[0]: expected a group { server_name = \"...\"; "
        "upstreams = [ ... ]; }, got ",
        "a.example");
    refused(
        with_listener_setting(buf, sizeof(buf),
                              "tls = { certificate = \"c.pem\"; key = \"k.pem\";\n"
                              "  certificates = ( { certificate = \"c.pem\"; keys = "
                              "\"k.pem\"; } ); };"),
        ":2: listeners.a.tls.certificates.[0].keys: unknown setting (known: certificate, "
        "key)");
}

/* The stats group's allow and deny: loaded like a listener's, absent by
 * default, and each mistake named with its key. */
static void stats_allow_deny(void **state)
{
    (void)state;
    struct config *cfg = load_ok(LISTENER "stats = { listen = \"127.0.0.1:9107\"; };\n");
    assert_true(cfg->has_stats);
    assert_null(cfg->stats_allow);
    assert_int_equal(cfg->nstats_allow, 0);
    assert_null(cfg->stats_deny);
    assert_int_equal(cfg->nstats_deny, 0);
    config_free(cfg);

    cfg = load_ok(LISTENER
                  "stats = {\n  listen = \"127.0.0.1:9107\";\n"
                  "  allow = [ \"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.7\" ];\n"
                  "  deny = ( \"10.1.2.3\" );\n};\n");
    assert_int_equal(cfg->nstats_allow, 3);
    assert_int_equal(cfg->stats_allow[0].family, AF_INET);
    assert_int_equal(cfg->stats_allow[0].bits, 8);
    assert_int_equal(cfg->stats_allow[1].family, AF_INET6);
    assert_int_equal(cfg->stats_allow[1].bits, 32);
    assert_int_equal(cfg->stats_allow[2].bits, 32);
    assert_int_equal(cfg->nstats_deny, 1);
    assert_int_equal(cfg->stats_deny[0].bits, 32);
    /* The listeners' own lists are not the stats group's. */
    assert_int_equal(cfg->listeners[0].nallow, 0);
    assert_int_equal(cfg->listeners[0].ndeny, 0);
    config_free(cfg);

    refused(LISTENER "stats = { listen = \"127.0.0.1:9107\";\n"
                     "  allow = [ \"10.0.0.0/8\",\n    \"10.0.0.1/8\" ]; };\n",
            ":4: stats.allow.[1]: invalid CIDR \"10.0.0.1/8\": host bits set in "
            "10.0.0.1/8: did you mean 10.0.0.0/8?");
    refused_with(
        LISTENER
        "stats = { listen = \"127.0.0.1:9107\"; deny = [ \"::ffff:10.0.0.0/104\" ]; };\n",
        ":2: stats.deny.[0]: invalid CIDR \"::ffff:10.0.0.0/104\": ", "10.0.0.0/8");
    refused(LISTENER "stats = { listen = \"127.0.0.1:9107\"; deny = \"10.0.0.0/8\"; };\n",
            ":2: stats.deny: expected a list of strings, got \"10.0.0.0/8\" "
            "(write [ \"10.0.0.0/8\" ])");
    refused(LISTENER "stats = { listen = \"127.0.0.1:9107\"; allow = [ 10 ]; };\n",
            ":2: stats.allow.[0]: expected a string, got 10");
    refused(LISTENER "stats = { listen = \"127.0.0.1:9107\"; alow = [ ]; };\n",
            ":2: stats.alow: unknown setting (did you mean \"allow\"?)");
    refused(LISTENER "stats = { allow = [ \"127.0.0.1\" ]; };\n",
            ":2: stats.listen: missing; expected one address like \"127.0.0.1:9107\"");
}

static void listener_names(void **state)
{
    (void)state;
    refused("listeners = (\n  { name = \"echo\"; listen = [ \"127.0.0.1:1\" ]; },\n"
            "  { name = \"echo\"; listen = [ \"127.0.0.1:2\" ]; }\n);\n",
            ":3: listeners.[1].name: duplicate listener name \"echo\" (first at line 2)");
    refused("listeners = ( { listen = [ \"127.0.0.1:0\" ]; } );\n",
            ":1: listeners.[0].name: missing; every listener needs a name of letters, "
            "digits, \"_\", \".\" or \"-\"");
    refused(
        "listeners = ( { name = \"\"; listen = [ \"127.0.0.1:0\" ]; } );\n",
        ":1: listeners.[0].name: expected 1-64 letters, digits, \"_\", \".\" or \"-\", "
        "got \"\"");
    refused(
        "listeners = ( { name = \"my relay\"; listen = [ \"127.0.0.1:0\" ]; } );\n",
        ":1: listeners.[0].name: expected 1-64 letters, digits, \"_\", \".\" or \"-\", "
        "got \"my relay\"");
    refused_with(
        "listeners = ( { name = \"a23456789012345678901234567890123456789012345678901234567890123456789\"; "
        "listen = [ \"127.0.0.1:0\" ]; } );\n",
        ":1: listeners.[0].name: expected 1-64 letters", "got \"a2345");
    struct config *cfg = load_ok(
        "listeners = ( { name = \"a234567890123456789012345678901234567890123456789012345678901234\"; "
        "listen = [ \"127.0.0.1:0\" ]; } );\n");
    config_free(cfg);
}

static void overlapping_addresses(void **state)
{
    (void)state;
    refused("listeners = (\n"
            "  { name = \"echo\"; listen = [ \"127.0.0.1:7007\" ]; },\n"
            "  { name = \"b\";\n"
            "    listen = [ \"127.0.0.1:7007\" ]; }\n);\n",
            ":4: listeners.b.listen.[0]: 127.0.0.1:7007 is already used by listener "
            "\"echo\" (line 2)");
    refused(
        "listeners = (\n"
        "  { name = \"any\"; listen = [ \"*:7007\" ]; },\n"
        "  { name = \"b\"; listen = [ \"127.0.0.2:7008\", \"127.0.0.1:7007\" ]; }\n);\n",
        ":3: listeners.b.listen.[1]: 127.0.0.1:7007 overlaps *:7007 of listener "
        "\"any\" (line 2)");
    refused("listeners = (\n"
            "  { name = \"a\"; listen = [ \"[::1]:7007\" ]; },\n"
            "  { name = \"any\"; listen = [ \"*:7007\" ]; }\n);\n",
            ":3: listeners.any.listen.[0]: *:7007 overlaps [::1]:7007 of listener "
            "\"a\" (line 2)");
    refused("listeners = ( { name = \"a\"; listen = [ \"[::]:7007\",\n"
            "  \"*:7007\" ]; } );\n",
            ":2: listeners.a.listen.[1]: *:7007 overlaps [::]:7007 of listener "
            "\"a\" (line 1)");
    /* Within one listener too. */
    refused("listeners = ( { name = \"a\";\n"
            "  listen = [ \"unix:/tmp/e.sock\", \"unix:/tmp/e.sock\" ]; } );\n",
            ":2: listeners.a.listen.[1]: unix:/tmp/e.sock is already used by listener "
            "\"a\" (line 2)");
    /* Another port, another family, another address: no overlap. */
    struct config *cfg = load_ok(
        "listeners = ( { name = \"a\"; listen = [ \"*:7007\" ]; },\n"
        "  { name = \"b\"; listen = [ \"127.0.0.1:7008\", \"[::1]:7009\", \"unix:/tmp/e.sock\" ]; } );\n");
    config_free(cfg);
}

static void proxy_only_settings(void **state)
{
    (void)state;
    static const char *const settings[][2] = {
        {"upstreams = [ \"127.0.0.1:1\" ];", "upstreams"},
        {"balance = \"round-robin\";", "balance"},
        {"retries = 2;", "retries"},
        {"fail_timeout = 10.0;", "fail_timeout"},
        {"send_proxy = \"none\";", "send_proxy"},
        {"upstream_tls = { verify = false; };", "upstream_tls"},
        {"sni_routes = ( );", "sni_routes"},
    };
    char buf[512], expected[256];
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "listeners = ( { name = \"e\"; listen = [ \"127.0.0.1:0\" ];\n"
                 "  mode = \"echo\";\n  %s } );\n",
                 settings[i][0]);
        snprintf(expected, sizeof(expected),
                 ":3: listeners.e.%s: only for mode = \"proxy\"; this listener's mode "
                 "is \"echo\"",
                 settings[i][1]);
        refused(buf, expected);
    }
    /* connect_timeout bounds a TLS handshake too: an echo listener has it
     * with tls only. */
    refused("listeners = ( { name = \"e\"; listen = [ \"127.0.0.1:0\" ];\n"
            "  mode = \"echo\";\n  connect_timeout = 3.0; } );\n",
            ":3: listeners.e.connect_timeout: only for mode = \"proxy\", or with tls (it "
            "bounds the handshake); this listener's mode is \"echo\"");
    /* Echo is the default mode. */
    refused(with_listener_setting(buf, sizeof(buf), "retries = 2;"),
            ":1: listeners.a.retries: only for mode = \"proxy\"; this listener's mode "
            "is \"echo\"");
    /* accept_proxy and splice are for both modes. */
    struct config *cfg = load_ok(
        with_proxy_setting(buf, sizeof(buf), "accept_proxy = true;"));
    assert_true(cfg->listeners[0].accept_proxy);
    config_free(cfg);
    cfg = load_ok(with_proxy_setting(buf, sizeof(buf), "splice = false;"));
    assert_false(cfg->listeners[0].splice);
    config_free(cfg);
#ifdef HAVE_SPLICE
    cfg = load_ok(with_listener_setting(buf, sizeof(buf), "splice = true;"));
    assert_true(cfg->listeners[0].splice);
#else
    refused(with_listener_setting(buf, sizeof(buf), "splice = true;"),
            ":1: listeners.a.splice: this system has no splice(2); set it to false");
    cfg = load_ok(with_listener_setting(buf, sizeof(buf), "splice = false;"));
#endif
    config_free(cfg);
}

static void missing_upstreams(void **state)
{
    (void)state;
    refused("listeners = ( { name = \"relay\"; listen = [ \"127.0.0.1:0\" ];\n"
            "  mode = \"proxy\"; } );\n",
            ":1: listeners.relay.upstreams: proxy listener \"relay\" has no upstreams; "
            "expected a list like [ \"127.0.0.1:6379\" ]");
    refused("listeners = ( { name = \"relay\"; listen = [ \"127.0.0.1:0\" ];\n"
            "  mode = \"proxy\";\n  upstreams = [ ]; } );\n",
            ":3: listeners.relay.upstreams: proxy listener \"relay\" has no upstreams; "
            "expected a list like [ \"127.0.0.1:6379\" ]");
}

static void no_listeners(void **state)
{
    (void)state;
    refused("workers = 1;\n", ": listeners: no listeners: nothing to serve");
    refused("", ": listeners: no listeners: nothing to serve");
    refused("workers = 1;\nlisteners = ( );\n",
            ":2: listeners: no listeners: nothing to serve");
    refused("listeners = [ ];\n", ":1: listeners: no listeners: nothing to serve");
}

static void listen_lists(void **state)
{
    (void)state;
    char buf[512];
    refused("listeners = ( { name = \"a\";\n  listen = [ ]; } );\n",
            ":2: listeners.a.listen: empty; expected at least one address");
    refused("listeners = (\n  { name = \"a\"; } );\n",
            ":2: listeners.a.listen: missing; expected a list of addresses like "
            "[ \"127.0.0.1:7007\" ]");
    refused("listeners = ( { name = \"a\"; listen = \"127.0.0.1:7007\"; } );\n",
            ":1: listeners.a.listen: expected a list of strings, got \"127.0.0.1:7007\" "
            "(write [ \"127.0.0.1:7007\" ])");
    /* A list in ( ) works as well as an array in [ ]. */
    struct config *cfg = load_ok(
        with_listener_setting(buf, sizeof(buf), "allow = ( \"::1\" );"));
    assert_int_equal(cfg->listeners[0].nallow, 1);
    config_free(cfg);
}

/* A control socket path longer than a Unix socket address holds is refused
 * by -t and a reload, not only when the daemon starts. */
static void control_path_length(void **state)
{
    (void)state;
    char text[1024], long_path[160];
    memset(long_path, 'x', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[sizeof(long_path) - 1] = '\0';
    snprintf(text, sizeof(text),
             "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:7\" ]; } );\n"
             "control = { path = \"%s\"; };\n",
             long_path);
    refused_with(text, ":2: control.path: expected a path of at most 107 bytes",
                 "got 159 bytes");
    long_path[107] = '\0'; /* 107 bytes: fits with its NUL */
    snprintf(text, sizeof(text),
             "listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:7\" ]; } );\n"
             "control = { path = \"%s\"; };\n",
             long_path);
    config_free(load_ok(text));
}

/* resolve is 0 (at load only) or at least 0.1 s: a shorter interval
 * would ask the resolver hundreds of times a second. */
static void resolve_lower_bound(void **state)
{
    (void)state;
    char buf[1024];
    refused(
        with_proxy_setting(buf, sizeof(buf), "resolve = 0.05;"),
        ":3: listeners.p.resolve: expected 0 (at load only) or at least 0.1 seconds, got "
        "0.05");
    struct config *cfg = load_ok(with_proxy_setting(buf, sizeof(buf), "resolve = 0.1;"));
    assert_int_equal(cfg->listeners[0].resolve_ms, 100);
    config_free(cfg);
    cfg = load_ok(with_proxy_setting(buf, sizeof(buf), "resolve = 0.0;"));
    assert_int_equal(cfg->listeners[0].resolve_ms, 0);
    config_free(cfg);
}

/* ---- where list elements are, and what they held ----------------------- */

/* text, which has one listener "a" and a list written one element a line
 * with the bad element on `line`, is refused there with `rest`. */
static void refused_on(const char *text, int line, const char *rest)
{
    char expected[256];
    snprintf(expected, sizeof(expected), ":%d: %s", line, rest);
    refused_with(text, expected, "");
}

/* An element of a list is reported on the line it is written on, not on
 * that of the token after it (where libconfig 1.5 puts it): in every kind
 * of list, one element a line with comments and blank lines between, the
 * bad one last and not last, and with the commas first. */
static void list_element_lines(void **state)
{
    (void)state;
    /* listen, the bad one last: libconfig says 7, the line of "]". */
    refused_on("listeners = ( { name = \"a\";\n"
               "  listen = [\n"
               "    \"127.0.0.1:1\",\n"
               "    \"bad\"\n"
               "    # the last one\n"
               "\n"
               "  ]; } );\n",
               4, "listeners.a.listen.[1]: invalid address \"bad\"");
    /* Not last, a comment between it and the next one. */
    refused_on("listeners = ( { name = \"a\";\n"
               "  listen = [\n"
               "    \"bad\", // comment\n"
               "    /* more\n"
               "       comment */\n"
               "    \"127.0.0.1:1\"\n"
               "  ]; } );\n",
               3, "listeners.a.listen.[0]: invalid address \"bad\"");
    /* deny, the bad one last: libconfig says 5. */
    refused_on("listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ];\n"
               "  deny = [\n"
               "    \"10.0.0.0/8\",\n"
               "    \"10.0.0.1/8\"\n"
               "  ];\n"
               "} );\n",
               4, "listeners.a.deny.[1]: invalid CIDR \"10.0.0.1/8\"");
    /* allow, commas first, the bad one in the middle: libconfig says 6. */
    refused_on("listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ];\n"
               "  allow = [ \"10.0.0.0/8\"\n"
               "          , \"10.0.0.1/8\"\n"
               "          # comment\n"
               "\n"
               "          , \"::1\"\n"
               "          ];\n"
               "} );\n",
               3, "listeners.a.allow.[1]: invalid CIDR \"10.0.0.1/8\"");
    /* Commas first, the bad one last on the line of "]" ... */
    refused_on("listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ];\n"
               "  allow = [ \"10.0.0.0/8\"\n"
               "          , \"10.0.0.1/8\" ];\n"
               "} );\n",
               3, "listeners.a.allow.[1]: invalid CIDR \"10.0.0.1/8\"");
    /* ... or alone on its line: libconfig says 4. */
    refused_on("listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ];\n"
               "  allow = ( \"10.0.0.0/8\"\n"
               "          , \"10.0.0.1/8\"\n"
               "          );\n"
               "} );\n",
               3, "listeners.a.allow.[1]: invalid CIDR \"10.0.0.1/8\"");
    /* upstreams, the bad one last. */
    refused_on("listeners = ( { name = \"p\"; listen = [ \"127.0.0.1:0\" ];\n"
               "  mode = \"proxy\";\n"
               "  upstreams = [\n"
               "    \"127.0.0.1:1\",\n"
               "    \"127.0.0.1:0\"\n"
               "\n"
               "  ];\n"
               "} );\n",
               5, "listeners.p.upstreams.[1]: invalid address \"127.0.0.1:0\"");
    /* A string split over two lines is where it starts. */
    refused_on("listeners = ( { name = \"a\";\n"
               "  listen = [\n"
               "    \"127.0.0.1:1\",\n"
               "    \"127.0.0.1\"\n"
               "    \":99999\"\n"
               "  ]; } );\n",
               4, "listeners.a.listen.[1]: invalid address \"127.0.0.1:99999\"");
    /* Not a string: the same. */
    refused_on("listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ];\n"
               "  deny = (\n"
               "    \"10.0.0.0/8\",\n"
               "    7\n"
               "  );\n"
               "} );\n",
               4, "listeners.a.deny.[1]: expected a string, got 7");
    /* Any other list: the listeners themselves. */
    refused_on("listeners = (\n"
               "  { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; },\n"
               "  \"b\"\n"
               "  # no more\n"
               ");\n",
               3, "listeners.[1]: expected a group");
    refused_on("listeners = (\n"
               "  { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; }\n"
               "  , { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; }\n"
               ");\n",
               3, "listeners.[1].name: duplicate listener name \"a\" (first at line 2)");
    /* Nested lists are counted apart from the lists around them. */
    refused_on("listeners = ( { name = \"a\";\n"
               "  listen = [ \"127.0.0.1:1\",\n"
               "             \"127.0.0.1:2\" ];\n"
               "  allow = ( ( \"10.0.0.0/8\",\n"
               "              \"::1\" ),\n"
               "            \"x\"\n"
               "  );\n"
               "} );\n",
               4, "listeners.a.allow.[0]: expected a string, got a list");
    /* The listener's own line, used in messages, is its "{". */
    struct config *cfg = load_ok("listeners = (\n"
                                 "  { name = \"a\"; listen = [ \"127.0.0.1:0\" ]; }\n"
                                 "  # comment\n"
                                 "  , { name = \"b\";\n"
                                 "      listen = [ \"127.0.0.1:0\" ]; }\n"
                                 ");\n");
    assert_int_equal(cfg->listeners[0].line, 2);
    assert_int_equal(cfg->listeners[1].line, 4);
    assert_int_equal(cfg->listeners[1].listen[0].line, 5);
    config_free(cfg);
}

/* An integer past 32 bits in a list is reported as written, not as what
 * libconfig 1.5 kept of it. */
static void wide_integers_in_lists(void **state)
{
    (void)state;
    refused("listeners = ( { name = \"a\"; listen = [4294967297]; } );\n",
            ":1: listeners.a.listen.[0]: expected a string, got 4294967297");
    refused("listeners = ( { name = \"a\"; listen = ( \"127.0.0.1:0\",\n"
            "  -4294967295\n"
            "\n"
            "  ); } );\n",
            ":2: listeners.a.listen.[1]: expected a string, got -4294967295");
    /* The same value in two lists: each is its own. */
    refused("listeners = ( { name = \"a\"; listen = [ \"127.0.0.1:0\" ];\n"
            "  allow = ( \"::1\" ); deny = ( \"10.0.0.0/8\", 0x100000001 ); } );\n",
            ":2: listeners.a.deny.[1]: expected a string, got 0x100000001");
    refused("listeners = ( 4294967297 );\n",
            ":1: listeners.[0]: expected a group { name = ...; listen = [ ... ]; }, "
            "got 4294967297");
}

/* Bytes of the file that are not UTF-8 are escaped in messages; UTF-8
 * text is kept as it is, and never cut inside a character. */
static void non_utf8_escaped(void **state)
{
    (void)state;
    char buf[512], want[512];
#define MODE_GOT ":1: listeners.a.mode: expected echo or proxy, got "
    refused(with_listener_setting(buf, sizeof(buf), "mode = \"\xff\xfe\";"),
            MODE_GOT "\"\\xff\\xfe\"");
    refused(with_listener_setting(buf, sizeof(buf),
                                  "mode = \"caf\xc3\xa9-\xe2\x82\xac\";"),
            MODE_GOT "\"caf\xc3\xa9-\xe2\x82\xac\"");
    /* Overlong, surrogate, past U+10FFFF, cut short. */
    refused(with_listener_setting(
                buf, sizeof(buf),
                "mode = \"\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82\";"),
            MODE_GOT "\"\\xc0\\xaf \\xed\\xa0\\x80 \\xf4\\x90\\x80\\x80 \\xe2\\x82\"");
    /* Quoted by the loader, and raw in the address parser's message. */
    refused("listeners = ( { name = \"a\"; listen = [ \"\xff\xc3\xa9\" ]; } );\n",
            ":1: listeners.a.listen.[0]: invalid address \"\\xff\xc3\xa9\": missing "
            "port in \"\\xff\xc3\xa9\"; expected host:port");
    /* A quote is cut after 64 bytes, before a character that crosses it. */
    char setting[128];
    snprintf(setting, sizeof(setting), "mode = \"%.63s\xc3\xa9\";",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    snprintf(want, sizeof(want), MODE_GOT "\"%.63s\"...",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    refused(with_listener_setting(buf, sizeof(buf), setting), want);
    assert_true(valid_utf8(err));
#undef MODE_GOT
    /* And the whole message when it is cut to the buffer. */
    char small[96];
    with_listener_setting(buf, sizeof(buf),
                          "mode = \"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
                          "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\";");
    write_bytes(buf, strlen(buf));
    for (size_t len = 1; len <= sizeof(small); len++) {
        assert_null(config_load(path, "f", small, len));
        if (!valid_utf8(small))
            fail_msg("cut to %zu bytes: not UTF-8: %s", len, small);
    }
}

/* ---- what could never run ------------------------------------------------ */

static void v4_mapped_listen_addresses(void **state)
{
    (void)state;
    refused("listeners = ( { name = \"a\";\n"
            "  listen = [ \"127.0.0.1:7006\", \"[::ffff:127.0.0.1]:7007\" ]; } );\n",
            ":2: listeners.a.listen.[1]: \"[::ffff:127.0.0.1]:7007\" is a v4-mapped "
            "IPv6 address, which the daemon's IPv6-only sockets cannot listen on; "
            "write it as \"127.0.0.1:7007\"");
    refused("listeners = ( { name = \"a\"; listen = [ \"[::ffff:0.0.0.0]:0\" ]; } );\n",
            ":1: listeners.a.listen.[0]: \"[::ffff:0.0.0.0]:0\" is a v4-mapped "
            "IPv6 address, which the daemon's IPv6-only sockets cannot listen on; "
            "write it as \"0.0.0.0:0\"");
    refused(LISTENER "stats = { listen = \"[::FFFF:7f00:1]:9107\"; };\n",
            ":2: stats.listen: \"[::FFFF:7f00:1]:9107\" is a v4-mapped IPv6 "
            "address, which the daemon's IPv6-only sockets cannot listen on; "
            "write it as \"127.0.0.1:9107\"");
    /* An upstream may be one: connecting to it works. */
    struct config *cfg = load_ok(
        "listeners = ( { name = \"p\"; listen = [ \"127.0.0.1:0\" ];\n"
        "  mode = \"proxy\"; upstreams = [ \"[::ffff:127.0.0.1]:6379\" ]; } );\n");
    assert_int_equal(cfg->listeners[0].upstreams[0].addr.u.sa.sa_family, AF_INET6);
    config_free(cfg);
}

static void unknown_user(void **state)
{
    (void)state;
    refused("workers = 1;\n\nuser = \"nosuchuser\";\n" LISTENER,
            ":3: user: no such user \"nosuchuser\"");
    struct config *cfg = load_ok("user = \"root\";\n" LISTENER);
    assert_string_equal(cfg->user, "root");
    config_free(cfg);
}

/* A relay whose upstream leads back to itself. */
static void relay_loops(void **state)
{
    (void)state;
    /* The issue's own: the upstream is the relay's listen address. */
    refused("listeners = (\n"
            "  { name = \"relay\";\n"
            "    listen = [ \"127.0.0.1:7000\" ];\n"
            "    mode = \"proxy\";\n"
            "    upstreams = [ \"127.0.0.1:7001\", \"127.0.0.1:7000\" ]; }\n"
            ");\n",
            ":5: listeners.relay.upstreams.[1]: 127.0.0.1:7000 is the listen address "
            "of listener \"relay\" (line 3): connections would loop");
    /* On the port of a wildcard: any loopback address, of its family. */
    refused("listeners = ( { name = \"relay\"; listen = [ \"*:7000\" ];\n"
            "  mode = \"proxy\";\n"
            "  upstreams = [ \"127.0.0.2:7000\" ]; } );\n",
            ":3: listeners.relay.upstreams.[0]: 127.0.0.2:7000 reaches *:7000, the "
            "listen address of listener \"relay\" (line 1): connections would loop");
    refused("listeners = ( { name = \"relay\"; listen = [ \"[::]:7000\" ];\n"
            "  mode = \"proxy\";\n"
            "  upstreams = [ \"[::1]:7000\" ]; } );\n",
            ":3: listeners.relay.upstreams.[0]: [::1]:7000 reaches [::]:7000, the "
            "listen address of listener \"relay\" (line 1): connections would loop");
    /* The wildcard as an upstream connects to loopback. */
    refused("listeners = ( { name = \"relay\"; listen = [ \"127.0.0.1:7000\" ];\n"
            "  mode = \"proxy\";\n"
            "  upstreams = [ \"0.0.0.0:7000\" ]; } );\n",
            ":3: listeners.relay.upstreams.[0]: 0.0.0.0:7000 reaches 127.0.0.1:7000, "
            "the listen address of listener \"relay\" (line 1): connections would loop");
    /* A v4-mapped upstream goes out over IPv4. */
    refused("listeners = ( { name = \"relay\"; listen = [ \"0.0.0.0:7000\" ];\n"
            "  mode = \"proxy\";\n"
            "  upstreams = [ \"[::ffff:127.0.0.1]:7000\" ]; } );\n",
            ":3: listeners.relay.upstreams.[0]: [::ffff:127.0.0.1]:7000 reaches "
            "0.0.0.0:7000, the listen address of listener \"relay\" (line 1): "
            "connections would loop");
    /* A host name, by the address it resolves to. */
    refused("listeners = ( { name = \"relay\"; listen = [ \"*:7000\" ];\n"
            "  mode = \"proxy\";\n"
            "  upstreams = [ \"localhost:7000\" ]; } );\n",
            ":3: listeners.relay.upstreams.[0]: localhost:7000 reaches *:7000, the "
            "listen address of listener \"relay\" (line 1): connections would loop");
    /* A Unix socket. */
    refused("listeners = ( { name = \"relay\"; listen = [ \"unix:/tmp/l.sock\" ];\n"
            "  mode = \"proxy\";\n"
            "  upstreams = [ \"unix:/tmp/l.sock\" ]; } );\n",
            ":3: listeners.relay.upstreams.[0]: unix:/tmp/l.sock is the listen address "
            "of listener \"relay\" (line 1): connections would loop");
    /* Through other relays, named from the first listener of the loop in
     * the file, whichever listener leads into it. */
    refused("listeners = (\n"
            "  { name = \"in\"; listen = [ \"127.0.0.1:6999\" ]; mode = \"proxy\";\n"
            "    upstreams = [ \"127.0.0.1:7001\" ]; },\n"
            "  { name = \"a\"; listen = [ \"127.0.0.1:7000\" ]; mode = \"proxy\";\n"
            "    upstreams = [ \"127.0.0.1:7001\" ]; },\n"
            "  { name = \"b\"; listen = [ \"127.0.0.1:7001\" ]; mode = \"proxy\";\n"
            "    upstreams = [ \"127.0.0.1:9\", \"127.0.0.1:7002\" ]; },\n"
            "  { name = \"c\"; listen = [ \"*:7002\" ]; mode = \"proxy\";\n"
            "    upstreams = [ \"[::1]:7000\", \"127.0.0.1:7000\" ]; }\n"
            ");\n",
            ":5: listeners.a.upstreams.[0]: 127.0.0.1:7001 is the listen address of "
            "listener \"b\" (line 6), whose upstreams.[1] 127.0.0.1:7002 reaches "
            "*:7002, the listen address of listener \"c\" (line 8), whose "
            "upstreams.[1] 127.0.0.1:7000 is the listen address of listener \"a\" "
            "(line 4): connections would loop");
    /* Chains that end are fine: into an echo listener, another port, an
     * address of another family or not loopback, port 0. */
    struct config *cfg = load_ok(
        "listeners = (\n"
        "  { name = \"a\"; listen = [ \"*:7000\" ]; mode = \"proxy\";\n"
        "    upstreams = [ \"127.0.0.1:7001\", \"127.0.0.1:7003\", \"192.0.2.1:7000\" ]; },\n"
        "  { name = \"b\"; listen = [ \"127.0.0.1:7001\" ]; mode = \"proxy\";\n"
        "    upstreams = [ \"127.0.0.1:7002\", \"[::1]:7003\" ]; },\n"
        "  { name = \"echo\"; listen = [ \"127.0.0.1:7002\", \"0.0.0.0:7003\" ]; },\n"
        "  { name = \"z\"; listen = [ \"*:0\", \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "    upstreams = [ \"127.0.0.1:7001\", \"127.0.0.2:7001\" ]; }\n"
        ");\n");
    assert_int_equal(cfg->nlisteners, 4);
    config_free(cfg);
}

/* Messages name the file as the caller says (the name given with -c),
 * while the file is read at its path. */
static void named_as_given(void **state)
{
    (void)state;
    write_bytes("workers = 300;\n" LISTENER, strlen("workers = 300;\n" LISTENER));
    assert_null(config_load(path, "given.conf", err, sizeof(err)));
    assert_string_equal(err, "given.conf:1: workers: 300 out of range 0-256");
    write_bytes("workers = ;\n", strlen("workers = ;\n"));
    assert_null(config_load(path, "given.conf", err, sizeof(err)));
    assert_string_equal(err, "given.conf:1: syntax error");
    char missing[256];
    snprintf(missing, sizeof(missing), "%s/none.conf", dir);
    assert_null(config_load(missing, "none.conf", err, sizeof(err)));
    assert_string_equal(err, "none.conf: cannot read: No such file or directory");
    write_bytes(LISTENER, strlen(LISTENER));
    struct config *cfg = config_load(path, "given.conf", err, sizeof(err));
    assert_non_null(cfg);
    assert_string_equal(cfg->path, path);
    config_free(cfg);
}

/* The message is cut to the buffer given, and no buffer is fine. */
static void small_error_buffer(void **state)
{
    (void)state;
    char small[8];
    write_bytes("workers = 300;\n", strlen("workers = 300;\n"));
    memset(small, 'x', sizeof(small));
    assert_null(config_load(path, NULL, small, sizeof(small)));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_null(config_load(path, NULL, NULL, 0));
    assert_null(config_load(path, NULL, small, 0));
}

static void free_null(void **state)
{
    (void)state;
    config_free(NULL);
}

/* ---- the table of settings ------------------------------------------------ */

/* The table names each documented setting once. */
static void known_keys(void **state)
{
    (void)state;
    static const char *const documented[] = {
        "workers",
        "poller",
        "max_connections",
        "shutdown_timeout",
        "drain_delay",
        "user",
        "pidfile",
        "log",
        "log.target",
        "log.level",
        "log.format",
        "log.access",
        "log.interval",
        "listeners",
        "listeners.name",
        "listeners.listen",
        "listeners.protocol",
        "listeners.mode",
        "listeners.buffer_size",
        "listeners.idle_timeout",
        "listeners.max_connections",
        "listeners.max_per_source",
        "listeners.allow",
        "listeners.deny",
        "listeners.accept_proxy",
        "listeners.proxy_timeout",
        "listeners.splice",
        "listeners.reuse_port",
        "listeners.upstreams",
        "listeners.balance",
        "listeners.connect_timeout",
        "listeners.retries",
        "listeners.fail_timeout",
        "listeners.send_proxy",
        "listeners.responses",
        "listeners.health_check",
        "listeners.health_check.interval",
        "listeners.health_check.timeout",
        "listeners.health_check.rise",
        "listeners.health_check.fall",
        "listeners.health_check.send",
        "listeners.health_check.expect",
        "listeners.resolve",
        "listeners.upstream_tls",
        "listeners.upstream_tls.ca",
        "listeners.upstream_tls.verify",
        "listeners.upstream_tls.server_name",
        "listeners.upstream_tls.certificate",
        "listeners.upstream_tls.key",
        "listeners.sni_routes",
        "listeners.tls",
        "listeners.tls.certificate",
        "listeners.tls.key",
        "listeners.tls.certificates",
        "listeners.tls.client_ca",
        "listeners.tls.min_version",
        "listeners.tls.ciphers",
        "listeners.tls.ciphersuites",
        "listeners.tls.alpn",
        "control",
        "control.path",
        "control.mode",
        "stats",
        "stats.listen",
        "stats.allow",
        "stats.deny",
    };
    size_t n = 0;
    while (table_settings[n].key != NULL)
        n++;
    assert_int_equal(n, sizeof(documented) / sizeof(documented[0]));
    for (size_t i = 0; i < n; i++) {
        size_t found = 0;
        for (size_t j = 0; j < n; j++)
            found += strcmp(table_settings[j].key, documented[i]) == 0;
        if (found != 1)
            fail_msg("%s appears %zu times", documented[i], found);
    }
}

/* The key of a row without its level: "level" for "log.level". */
static const char *name_of(const struct setting *row)
{
    const char *dot = strrchr(row->key, '.');
    return dot != NULL ? dot + 1 : row->key;
}

/* Whether the table's default of row is a value it keeps (not: none, or
 * its own loader's). */
static bool has_default(const struct setting *row)
{
    switch (row->kind) {
    case SETTING_COUNT:
    case SETTING_BYTES:
    case SETTING_SECONDS:
    case SETTING_BOOL:
    case SETTING_CHOICE:
    case SETTING_CIDRS:
        return true;
    case SETTING_STRING:
        return row->def.text != NULL;
    default:
        return false;
    }
}

/* Every row is whole: help, a group for its level, a loader where its kind
 * has no reading of its own, a default in its range. */
static void table_rows(void **state)
{
    (void)state;
    for (const struct setting *row = table_settings; row->key != NULL; row++) {
        const char *dot = strrchr(row->key, '.');
        if (row->help == NULL || row->help[0] == '\0')
            fail_msg("%s: no help", row->key);
        if (dot != NULL) {
            /* A setting of a group, or of a group in a listener
             * ("listeners.tls.key"); no deeper. */
            char group[32];
            snprintf(group, sizeof(group), "%.*s", (int)(dot - row->key), row->key);
            const struct setting *g = table_find(group);
            if (g == NULL || (g->kind != SETTING_GROUP && g->kind != SETTING_GROUPS))
                fail_msg("%s: no group %s", row->key, group);
            const char *first = strchr(row->key, '.');
            if (first != dot &&
                (strncmp(row->key, "listeners.", 10) != 0 ||
                 strchr(first + 1, '.') != dot || g->kind != SETTING_GROUP))
                fail_msg("%s: nested too deep", row->key);
        }
        assert_ptr_equal(table_find(row->key), row);
        switch (row->kind) {
        case SETTING_COUNT:
        case SETTING_BYTES:
            if (row->def.count < row->range.count.lo ||
                row->def.count > row->range.count.hi)
                fail_msg("%s: default %lld out of range", row->key, row->def.count);
            break;
        case SETTING_SECONDS:
            if (row->def.seconds > row->range.seconds.max || row->def.seconds < 0 ||
                (row->range.seconds.positive && row->def.seconds == 0))
                fail_msg("%s: default %g out of range", row->key, row->def.seconds);
            break;
        case SETTING_CHOICE: {
            bool found = false;
            for (const struct value_choice *c = row->range.choices; c->name != NULL; c++)
                found |= c->value == row->def.choice;
            if (!found)
                fail_msg("%s: default %d is none of its choices", row->key,
                         row->def.choice);
            break;
        }
        case SETTING_GROUP:
            if (row->range.shape == NULL || row->load != NULL)
                fail_msg("%s: a group has a shape, and the table loads it", row->key);
            break;
        case SETTING_GROUPS:
        case SETTING_ADDRESS:
        case SETTING_ADDRESSES:
        case SETTING_STRINGS:
            if (row->load == NULL)
                fail_msg("%s: no loader", row->key);
            break;
        default:
            break;
        }
        if (row->flags != 0 && !table_in_listener(row))
            fail_msg("%s: flags for a listener's setting", row->key);
    }
}

/* The problems the checks below found: each is printed, the test fails at
 * its end if there was any. */
static int problems;

__attribute__((format(printf, 1, 2))) static void problem(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    problems++;
}

/* Reads a file of the source tree into a NUL-terminated buffer. */
static char *read_source_file(const char *name, char *file, size_t filelen)
{
    static char text[131072];
    FILE *f = fopen(source_file(file, filelen, name), "r");
    if (f == NULL)
        fail_msg("%s: %s", file, strerror(errno));
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    assert_false(ferror(f));
    assert_true(feof(f));
    fclose(f);
    text[n] = '\0';
    return text;
}

/* The settings mio-echod.conf(5) documents, one path each ("workers",
 * "log.target", "listeners.balance"): each ".It Ic NAME" of a list in
 * GLOBAL SETTINGS or LISTENERS, under the ".It Ic" entry its list is nested
 * in, if any. */
static size_t documented_settings(char *page, char paths[][64], size_t max)
{
    char section[64] = "", tag[8][64];
    size_t depth = 0, n = 0;
    for (char *line = strtok(page, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strncmp(line, ".Sh ", 4) == 0) {
            size_t o = 0;
            for (const char *c = line + 4; *c != '\0' && o + 1 < sizeof(section); c++)
                if (*c != '"' && (o > 0 || (*c != ' ' && *c != '\t')))
                    section[o++] = *c;
            section[o] = '\0';
            depth = 0;
            continue;
        }
        char word[3][64] = {"", "", ""};
        sscanf(line, "%63s %63s %63s", word[0], word[1], word[2]);
        if (strcmp(word[0], ".Bl") == 0) {
            assert_true(depth + 1 < 8);
            tag[++depth][0] = '\0';
        } else if (strcmp(word[0], ".El") == 0) {
            if (depth > 0)
                depth--;
        } else if (strcmp(word[0], ".It") == 0 && depth > 0) {
            tag[depth][0] = '\0';
            if (strcmp(word[1], "Ic") != 0 || word[2][0] == '\0')
                continue;
            if (strcmp(section, "GLOBAL SETTINGS") != 0 &&
                strcmp(section, "LISTENERS") != 0)
                continue;
            const char *parent = depth > 1 ? tag[depth - 1] : "";
            if (parent[0] == '\0' && strcmp(section, "LISTENERS") == 0)
                parent = "listeners";
            int w = snprintf(tag[depth], sizeof(tag[depth]), "%s%s%s", parent,
                             parent[0] != '\0' ? "." : "", word[2]);
            assert_true(w > 0 && (size_t)w < sizeof(tag[depth]));
            assert_true(n < max);
            memcpy(paths[n++], tag[depth], (size_t)w + 1);
        }
    }
    return n;
}

/* mio-echod.conf(5) has an entry for every setting of the table, in the
 * list of its level (top-level settings in GLOBAL SETTINGS, the log and
 * stats groups' nested in their entry, a listener's in LISTENERS), and none
 * for a setting the table does not have. */
static void man_page_documents_every_setting(void **state)
{
    (void)state;
    char page[PATH_MAX], paths[128][64];
    size_t n = documented_settings(read_source_file("man/mio-echod.conf.5.in", page,
                                                    sizeof(page)),
                                   paths, 128);

    problems = 0;
    for (const struct setting *row = table_settings; row->key != NULL; row++) {
        const char *dot = strchr(row->key, '.');
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found |= strcmp(paths[i], row->key) == 0;
        char where[64] = "GLOBAL SETTINGS";
        if (table_in_listener(row))
            snprintf(where, sizeof(where), "LISTENERS");
        else if (dot != NULL)
            snprintf(where, sizeof(where), "the .It Ic %.*s entry of GLOBAL SETTINGS",
                     (int)(dot - row->key), row->key);
        if (!found)
            problem("%s: no \".It Ic %s\" in %s for setting %s", page, name_of(row),
                    where, row->key);
    }
    for (size_t i = 0; i < n; i++) {
        const char *dot = strrchr(paths[i], '.');
        if (table_find(paths[i]) == NULL)
            problem("%s: \".It Ic %s\" documents %s, which the table of settings "
                    "(src/config-table.c) does not have",
                    page, dot != NULL ? dot + 1 : paths[i], paths[i]);
    }
    assert_int_equal(problems, 0);
}

/* Whether line shows the setting `name`: "NAME =" or "NAME :", possibly
 * commented out ("# NAME = ..."). */
static bool shows(const char *line, const char *name)
{
    line += strspn(line, " \t#/");
    if (strncmp(line, name, strlen(name)) != 0)
        return false;
    line += strlen(name);
    line += strspn(line, " \t");
    return *line == '=' || *line == ':';
}

/* Every setting is shown in the shipped file (the proxy ones commented
 * out), as "key =". */
static void shipped_file_shows_every_setting(void **state)
{
    (void)state;
    char shipped[PATH_MAX];
    const char *text = read_source_file("conf/mio-echod.conf", shipped, sizeof(shipped));

    problems = 0;
    for (const struct setting *row = table_settings; row->key != NULL; row++) {
        bool found = false;
        for (const char *line = text; line != NULL && !found;
             line = strchr(line, '\n') != NULL ? strchr(line, '\n') + 1 : NULL)
            found = shows(line, name_of(row));
        if (!found)
            problem("%s: setting %s (%s = ...) is not there", shipped, row->key,
                    name_of(row));
    }
    assert_int_equal(problems, 0);
}

/* The name of a choice's value. */
static const char *choice_name(const struct setting *row, int value)
{
    for (const struct value_choice *c = row->range.choices; c->name != NULL; c++)
        if (c->value == value)
            return c->name;
    return "(none)";
}

/* Whether the value kept of row in base is the table's default; both as
 * text in kept and def. */
static bool is_default(const struct setting *row, const void *base, char *kept, char *def,
                       size_t len)
{
    const char *p = (const char *)base + row->offset;
    switch (row->kind) {
    case SETTING_COUNT:
        snprintf(kept, len, "%u", *(const unsigned *)p);
        snprintf(def, len, "%lld", row->def.count);
        break;
    case SETTING_BYTES:
        snprintf(kept, len, "%zu", *(const size_t *)p);
        snprintf(def, len, "%lld", row->def.count);
        break;
    case SETTING_SECONDS:
        snprintf(kept, len, "%" PRId64 " ms", *(const int64_t *)p);
        snprintf(def, len, "%" PRId64 " ms", value_ms(row->def.seconds));
        break;
    case SETTING_BOOL:
        snprintf(kept, len, "%s", *(const bool *)p ? "true" : "false");
        snprintf(def, len, "%s", row->def.yes ? "true" : "false");
        break;
    case SETTING_STRING:
        snprintf(kept, len, "\"%s\"", *(char *const *)p);
        snprintf(def, len, "\"%s\"", row->def.text);
        break;
    case SETTING_CHOICE:
        snprintf(kept, len, "\"%s\"", choice_name(row, *(const int *)p));
        snprintf(def, len, "\"%s\"", choice_name(row, row->def.choice));
        break;
    case SETTING_CIDRS:
        snprintf(kept, len, "%zu CIDRs",
                 *(const size_t *)((const char *)base + row->count_offset));
        snprintf(def, len, "0 CIDRs");
        break;
    default:
        return true;
    }
    return strcmp(kept, def) == 0;
}

/* Checks row of the group g (as loaded into base) when the shipped file
 * writes it, uncommented. */
static void check_shipped_value(const char *shipped, const struct setting *row,
                                const config_setting_t *g, const void *base,
                                const char *where)
{
    if (g == NULL || config_setting_get_member(g, name_of(row)) == NULL)
        return;
    char kept[128], def[128];
    if (!is_default(row, base, kept, def, sizeof(kept)))
        problem("%s: %s%s is %s, but the file shows every setting at its default, %s",
                shipped, where, row->key, kept, def);
}

/* The shipped file shows every setting at its default: each one it writes
 * uncommented holds the table's default; the listeners after the first
 * (UDP echo) are examples, which only load. */
static void shipped_file_at_defaults(void **state)
{
    (void)state;
    char shipped[PATH_MAX], where[64];
    config_t parsed;

    source_file(shipped, sizeof(shipped), "conf/mio-echod.conf");
    struct config *cfg = config_load(shipped, NULL, err, sizeof(err));
    if (cfg == NULL)
        fail_msg("%s", err);
    config_init(&parsed);
    if (!config_read_file(&parsed, shipped))
        fail_msg("%s:%d: %s", shipped, config_error_line(&parsed),
                 config_error_text(&parsed));
    const config_setting_t *root = config_root_setting(&parsed);
    const config_setting_t *listeners = config_setting_get_member(root, "listeners");

    problems = 0;
    for (const struct setting *row = table_settings; row->key != NULL; row++) {
        if (!has_default(row))
            continue;
        if (table_in_listener(row)) {
            for (size_t i = 0; i < 1; i++) {
                snprintf(where, sizeof(where),
                         "listener \"%s\": ", cfg->listeners[i].name);
                check_shipped_value(shipped, row,
                                    config_setting_get_elem(listeners, (unsigned)i),
                                    &cfg->listeners[i], where);
            }
        } else if (strchr(row->key, '.') == NULL) {
            check_shipped_value(shipped, row, root, cfg, "");
        } else {
            char group[32];
            snprintf(group, sizeof(group), "%.*s",
                     (int)(strchr(row->key, '.') - row->key), row->key);
            check_shipped_value(shipped, row, config_setting_get_member(root, group), cfg,
                                "");
        }
    }
    config_destroy(&parsed);
    config_free(cfg);
    assert_int_equal(problems, 0);
}

/* Upstreams as groups: weight and backup, and their mistakes. */
static void upstream_groups(void **state)
{
    (void)state;
    struct config *cfg = load_ok(
        "listeners = ( { name = \"p\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "  upstreams = ( \"127.0.0.1:1\", { address = \"127.0.0.1:2\"; weight = 3; },\n"
        "                { address = \"127.0.0.1:3\"; backup = true; } ); } );\n");
    const struct listener_config *l = &cfg->listeners[0];
    assert_int_equal(l->nupstreams, 3);
    assert_int_equal(l->upstreams[0].weight, 1);
    assert_false(l->upstreams[0].backup);
    assert_int_equal(l->upstreams[1].weight, 3);
    assert_string_equal(l->upstreams[1].text, "127.0.0.1:2");
    assert_true(l->upstreams[2].backup);
    config_free(cfg);
    char buf[1024];
    static const struct {
        const char *list, *message;
    } bad[] = {
        {"( { address = \"127.0.0.1:2\"; weight = 0; } )",
         ":3: listeners.p.upstreams.[0].weight: 0 out of range 1-256"},
        {"( { address = \"127.0.0.1:2\"; weight = 257; } )",
         ":3: listeners.p.upstreams.[0].weight: 257 out of range 1-256"},
        {"( \"127.0.0.1:1\", { weight = 2; } )",
         ":3: listeners.p.upstreams.[1].address: missing; expected an address like "
         "\"10.0.0.2:6379\""},
        {"( { address = \"127.0.0.1:2\"; wieght = 2; } )",
         ":3: listeners.p.upstreams.[0].wieght: unknown setting (known: address, weight, "
         "backup)"},
        {"( { address = \"127.0.0.1:2\"; backup = true; } )",
         ":3: listeners.p.upstreams: every upstream is a backup; at least one must not "
         "be"},
        {"( 6379 )", ":3: listeners.p.upstreams.[0]: expected an address as a string, or "
                     "a group { address = \"...\"; weight = N; backup = false; }, got "
                     "6379"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char setting[256];
        snprintf(setting, sizeof(setting), "upstreams = %s;", bad[i].list);
        snprintf(buf, sizeof(buf),
                 "listeners = ( { name = \"p\"; listen = [ \"127.0.0.1:0\" ];\n"
                 "  mode = \"proxy\";\n"
                 "  %s\n"
                 "} );\n",
                 setting);
        refused(buf, bad[i].message);
    }
}

/* A UDP listener: what it takes, what it refuses with file:line:setting,
 * and a TCP and a UDP listener on one port. */
static void udp_listeners(void **state)
{
    (void)state;
    char buf[1024];
    struct config *cfg = load_ok(
        "listeners = ( { name = \"t\"; listen = [ \"127.0.0.1:7\" ]; },\n"
        "  { name = \"u\"; protocol = \"udp\"; listen = [ \"127.0.0.1:7\" ]; },\n"
        "  { name = \"r\"; protocol = \"udp\"; listen = [ \"127.0.0.1:8\" ];\n"
        "    mode = \"proxy\"; upstreams = [ \"127.0.0.1:7\" ]; responses = 1;\n"
        "    send_proxy = \"v2\"; accept_proxy = true; } );\n");
    assert_int_equal(cfg->listeners[0].protocol, PROTOCOL_TCP);
    assert_int_equal(cfg->listeners[1].protocol, PROTOCOL_UDP);
    assert_int_equal(cfg->listeners[2].responses, 1);
    assert_false(cfg->listeners[2].splice); /* a relay's default, not for UDP */
    config_free(cfg);
    /* A UDP relay to a UDP listener of its own is a loop; to the TCP one
     * on that port it is not (above). */
    refused("listeners = ( { name = \"r\"; protocol = \"udp\"; "
            "listen = [ \"127.0.0.1:9\" ];\n"
            "  mode = \"proxy\"; upstreams = [ \"127.0.0.1:9\" ]; } );\n",
            ":2: listeners.r.upstreams.[0]: 127.0.0.1:9 is the listen address of "
            "listener \"r\" (line 1): connections would loop");
    refused("listeners = ( { name = \"u\"; protocol = \"udp\";\n"
            "  listen = [ \"unix:/tmp/x.sock\" ]; } );\n",
            ":2: listeners.u.listen.[0]: \"unix:/tmp/x.sock\": a Unix socket is not "
            "allowed with protocol = \"udp\"; expected an IP address like "
            "\"127.0.0.1:7007\"");
    refused("listeners = ( { name = \"u\"; protocol = \"udp\"; "
            "listen = [ \"127.0.0.1:7\", \"127.0.0.1:7\" ]; } );\n",
            ":1: listeners.u.listen.[1]: 127.0.0.1:7 is already used by listener "
            "\"u\" (line 1)");
    /* A setting of the other protocol, on a listener ("a") or a relay ("p"). */
    static const struct {
        bool relay;
        const char *setting, *message;
    } others[] = {
        {false, "protocol = \"udp\"; splice = true;",
         ":1: listeners.a.splice: only for protocol = \"tcp\"; this listener's "
         "protocol is \"udp\""},
        {false, "protocol = \"udp\"; buffer_size = 4096;",
         ":1: listeners.a.buffer_size: only for protocol = \"tcp\"; this listener's "
         "protocol is \"udp\""},
        {false, "protocol = \"udp\"; tls = { certificate = \"c\"; key = \"k\"; };",
         ":1: listeners.a.tls: only for protocol = \"tcp\"; this listener's protocol is "
         "\"udp\""},
        {true, "responses = 1;",
         ":3: listeners.p.responses: only for protocol = \"udp\"; this listener's "
         "protocol is \"tcp\""},
        {true, "protocol = \"udp\"; retries = 1;",
         ":3: listeners.p.retries: only for protocol = \"tcp\"; this listener's "
         "protocol is \"udp\""},
        {true, "protocol = \"udp\"; send_proxy = \"v1\";",
         ":3: listeners.p.send_proxy: \"v1\" is not allowed with protocol = \"udp\": "
         "PROXY over UDP is v2 only; expected \"none\" or \"v2\""},
        {false, "protocol = \"udp\"; idle_timeout = 0;",
         ":1: listeners.a.idle_timeout: 0 is not allowed with protocol = \"udp\": a flow "
         "ends only when idle; expected seconds like 30.0"},
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        refused(others[i].relay
                    ? with_proxy_setting(buf, sizeof(buf), others[i].setting)
                    : with_listener_setting(buf, sizeof(buf), others[i].setting),
                others[i].message);
    refused(with_listener_setting(buf, sizeof(buf), "protocol = \"sctp\";"),
            ":1: listeners.a.protocol: expected tcp or udp, got \"sctp\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shipped_file_loads),
        cmocka_unit_test(udp_listeners),
        cmocka_unit_test(upstream_groups),
        cmocka_unit_test(defaults),
        cmocka_unit_test(proxy_defaults),
        cmocka_unit_test(every_setting),
        cmocka_unit_test(log_levels_and_choices),
        cmocka_unit_test(range_ends_accepted),
        cmocka_unit_test(port_zero_twice),
        cmocka_unit_test(fuzz_seeds),
        cmocka_unit_test(missing_file),
        cmocka_unit_test(syntax_errors),
        cmocka_unit_test(unknown_settings),
        cmocka_unit_test(wrong_types),
        cmocka_unit_test(out_of_range),
        cmocka_unit_test(wide_integers),
        cmocka_unit_test(bad_addresses),
        cmocka_unit_test(bad_cidrs),
        cmocka_unit_test(stats_allow_deny),
        cmocka_unit_test(listener_names),
        cmocka_unit_test(control_path_length),
        cmocka_unit_test(resolve_lower_bound),
        cmocka_unit_test(overlapping_addresses),
        cmocka_unit_test(proxy_only_settings),
        cmocka_unit_test(sni_routes),
        cmocka_unit_test(missing_upstreams),
        cmocka_unit_test(no_listeners),
        cmocka_unit_test(listen_lists),
        cmocka_unit_test(list_element_lines),
        cmocka_unit_test(wide_integers_in_lists),
        cmocka_unit_test(non_utf8_escaped),
        cmocka_unit_test(v4_mapped_listen_addresses),
        cmocka_unit_test(unknown_user),
        cmocka_unit_test(relay_loops),
        cmocka_unit_test(named_as_given),
        cmocka_unit_test(small_error_buffer),
        cmocka_unit_test(free_null),
        cmocka_unit_test(known_keys),
        cmocka_unit_test(table_rows),
        cmocka_unit_test(man_page_documents_every_setting),
        cmocka_unit_test(shipped_file_shows_every_setting),
        cmocka_unit_test(shipped_file_at_defaults),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
