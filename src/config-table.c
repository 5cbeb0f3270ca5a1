/*
 * The table of settings, and what it drives: defaults, the loading of the
 * plain settings, and the check for unknown keys.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "config.h"
#include "config-table.h"

/* The longest key a typo is looked for in. */
#define KEY_MAX 32

/* offsetof(struct T, field), refused at compile time unless the field is
 * a `type`. */
#define AT(T, field, type)                                        \
    /* NOLINTNEXTLINE(bugprone-macro-parentheses): a type name */ \
    _Generic(((struct T *)0)->field, type : offsetof(struct T, field))

/* The start of a row of each kind, without its help and options. */
#define COUNT(k, T, field, lo, hi, d)                                    \
    .key = (k), .kind = SETTING_COUNT, .offset = AT(T, field, unsigned), \
    .range.count = {(lo), (hi)}, .def.count = (d)
#define BYTES(k, T, field, lo, hi, d)                                  \
    .key = (k), .kind = SETTING_BYTES, .offset = AT(T, field, size_t), \
    .range.count = {(lo), (hi)}, .def.count = (d)
#define SECONDS(k, T, field, max, d)                                      \
    .key = (k), .kind = SETTING_SECONDS, .offset = AT(T, field, int64_t), \
    .range.seconds = {(max), false}, .def.seconds = (d)
#define POSITIVE_SECONDS(k, T, field, max, d)                             \
    .key = (k), .kind = SETTING_SECONDS, .offset = AT(T, field, int64_t), \
    .range.seconds = {(max), true}, .def.seconds = (d)
#define BOOL(k, T, field, d) \
    .key = (k), .kind = SETTING_BOOL, .offset = AT(T, field, bool), .def.yes = (d)
#define STRING(k, T, field, d) \
    .key = (k), .kind = SETTING_STRING, .offset = AT(T, field, char *), .def.text = (d)
#define CHOICE(k, T, field, type, names, d)                           \
    .key = (k), .kind = SETTING_CHOICE, .offset = AT(T, field, type), \
    .range.choices = (names), .def.choice = (d)
#define CIDRS(k, T, field, count)                                             \
    .key = (k), .kind = SETTING_CIDRS, .offset = AT(T, field, struct cidr *), \
    .count_offset = AT(T, count, size_t)
#define GROUP(k, example) .key = (k), .kind = SETTING_GROUP, .range.shape = (example)
#define OWN(k, what, loader) .key = (k), .kind = (what), .load = (loader)

/* A choice is kept through an int. */
_Static_assert(sizeof(enum listener_mode) == sizeof(int), "mode kept as an int");
_Static_assert(sizeof(enum balance) == sizeof(int), "balance kept as an int");
_Static_assert(sizeof(enum send_proxy) == sizeof(int), "send_proxy kept as an int");
_Static_assert(sizeof(enum log_target) == sizeof(int), "log target kept as an int");
_Static_assert(sizeof(enum log_format) == sizeof(int), "log format kept as an int");
_Static_assert(sizeof(enum tls_version) == sizeof(int), "TLS version kept as an int");
_Static_assert(sizeof(enum poller) == sizeof(int), "poller kept as an int");

static const struct value_choice targets[] = {
    {"auto", LOG_TARGET_AUTO},
    {"stderr", LOG_TARGET_STDERR},
    {"syslog", LOG_TARGET_SYSLOG},
    {NULL, 0},
};
static const struct value_choice formats[] = {
    {"text", LOG_FORMAT_TEXT},
    {"json", LOG_FORMAT_JSON},
    {NULL, 0},
};
static const struct value_choice levels[] = {
    {"error", LOG_ERR}, {"warning", LOG_WARNING}, {"notice", LOG_NOTICE},
    {"info", LOG_INFO}, {"debug", LOG_DEBUG},     {NULL, 0},
};
static const struct value_choice modes[] = {
    {"echo", MODE_ECHO},
    {"proxy", MODE_PROXY},
    {NULL, 0},
};
static const struct value_choice protocols[] = {
    {"tcp", PROTOCOL_TCP},
    {"udp", PROTOCOL_UDP},
    {NULL, 0},
};
static const struct value_choice balances[] = {
    {"round-robin", BALANCE_ROUND_ROBIN},
    {"least-connections", BALANCE_LEAST_CONNECTIONS},
    {"source-hash", BALANCE_SOURCE_HASH},
    {NULL, 0},
};
static const struct value_choice send_proxies[] = {
    {"none", SEND_PROXY_NONE},
    {"v1", SEND_PROXY_V1},
    {"v2", SEND_PROXY_V2},
    {NULL, 0},
};

/* libmio's backend names, as mio_poll_new_with() takes them. */
static const struct value_choice pollers[] = {
    {"auto", POLLER_AUTO}, {"epoll", POLLER_EPOLL},       {"kqueue", POLLER_KQUEUE},
    {"poll", POLLER_POLL}, {"io_uring", POLLER_IO_URING}, {NULL, 0},
};

static const struct value_choice tls_versions[] = {
    {"TLSv1.2", TLS_VERSION_1_2},
    {"TLSv1.3", TLS_VERSION_1_3},
    {NULL, 0},
};

const struct setting table_settings[] = {
    {COUNT("workers", config, workers, 0, 256, 0),
     .help = "worker threads, each with its own poller; 0 starts one per CPU"},
    {CHOICE("poller", config, poller, enum poller, pollers, POLLER_AUTO),
     .load = config_load_poller,
     .help = "the kernel interface every loop waits on: epoll, poll (poll(2)), io_uring, "
             "kqueue (BSD), or auto: epoll on Linux, kqueue on a BSD, unless MIO_BACKEND "
             "names another"},
    {COUNT("max_connections", config, max_connections, 0, 1000000, 10000),
     .help = "open client connections and UDP flows of the whole daemon; 0: no limit"},
    {SECONDS("shutdown_timeout", config, shutdown_timeout_ms, 3600, 10),
     .help =
         "seconds open connections get to finish once accepting stops after SIGTERM or "
         "SIGINT"},
    {SECONDS("drain_delay", config, drain_delay_ms, 3600, 0),
     .help = "seconds the daemon keeps accepting after SIGTERM, SIGINT or drain while "
             "/health says draining, so that a balancer sees it"},
    {STRING("user", config, user, ""), .load = config_load_user,
     .help = "the user to switch to once listening; \"\" stays who we are"},
    {STRING("pidfile", config, pidfile, ""),
     .help = "a file to write the daemon's process id into; \"\" writes none"},
    {GROUP("log", "{ target = ...; level = ...; access = ...; }"),
     .help = "where log lines go, and which"},
    {CHOICE("log.target", config, log_target, enum log_target, targets, LOG_TARGET_AUTO),
     .help = "stderr, syslog, or auto: stderr in the foreground or the journal"},
    {CHOICE("log.level", config, log_level, int, levels, LOG_INFO),
     .help = "the least important lines kept"},
    {CHOICE("log.format", config, log_format, enum log_format, formats, LOG_FORMAT_TEXT),
     .help = "text, or json: every line one JSON object"},
    {BOOL("log.access", config, log_access, true),
     .help = "a line per closed connection, at level info"},
    {SECONDS("log.interval", config, log_interval_ms, 86400, 0),
     .help = "seconds between interim access lines of an open connection; 0: none"},
    {OWN("listeners", SETTING_GROUPS, config_load_listeners),
     .help = "the listeners, at least one"},
    {STRING("listeners.name", listener_config, name, NULL), .flags = SETTING_NAMES_GROUP,
     .help = "names the listener in log lines; required, unique"},
    {CHOICE("listeners.protocol", listener_config, protocol, enum listener_protocol,
            protocols, PROTOCOL_TCP),
     .flags = SETTING_EARLY,
     .help = "tcp, or udp: datagrams, served per flow (a client's address and port)"},
    {OWN("listeners.listen", SETTING_ADDRESSES, config_load_listen),
     .help = "the addresses to accept connections on; required"},
    {CHOICE("listeners.mode", listener_config, mode, enum listener_mode, modes,
            MODE_ECHO),
     .flags = SETTING_EARLY,
     .help = "echo sends every byte back; proxy relays to the upstreams"},
    {BYTES("listeners.buffer_size", listener_config, buffer_size, 1024, 16777216, 16384),
     .flags = SETTING_TCP_ONLY,
     .help = "bytes buffered per connection in each direction"},
    {SECONDS("listeners.idle_timeout", listener_config, idle_timeout_ms, 604800, 300),
     .help = "seconds a connection may stay silent both ways; 0: forever"},
    {COUNT("listeners.max_connections", listener_config, max_connections, 0, 1000000, 0),
     .help = "open connections of this listener; 0: only the daemon's limit"},
    {COUNT("listeners.max_per_source", listener_config, max_per_source, 0, 1000000, 0),
     .help = "open connections from one client address; 0: no limit"},
    {CIDRS("listeners.allow", listener_config, allow, nallow),
     .help = "the clients let in, when not empty"},
    {CIDRS("listeners.deny", listener_config, deny, ndeny),
     .help = "the clients refused"},
    {BOOL("listeners.accept_proxy", listener_config, accept_proxy, false),
     .help = "expect a PROXY protocol header and take the client from it"},
    {POSITIVE_SECONDS("listeners.proxy_timeout", listener_config, proxy_timeout_ms, 3600,
                      5),
     .load = config_load_proxy_timeout, .flags = SETTING_TCP_ONLY,
     .help = "seconds the whole PROXY header may take; with accept_proxy only"},
    {BOOL("listeners.splice", listener_config, splice, false), .load = config_load_splice,
     .flags = SETTING_TCP_ONLY,
     .help = "move bulk data with splice(2); default true for a relay"},
    {BOOL("listeners.reuse_port", listener_config, reuse_port, false),
     .load = config_load_reuse_port,
     .help = "bind with SO_REUSEPORT: instances with the same setting and user share the "
             "port, the kernel spreading clients (udp: flows) among them; tcp and udp "
             "addresses only"},
    {OWN("listeners.upstreams", SETTING_ADDRESSES, config_load_upstreams),
     .flags = SETTING_PROXY_ONLY,
     .help = "where connections are relayed to; required for a relay"},
    {CHOICE("listeners.balance", listener_config, balance, enum balance, balances,
            BALANCE_ROUND_ROBIN),
     .flags = SETTING_PROXY_ONLY,
     .help = "how an upstream is chosen for each connection"},
    {POSITIVE_SECONDS("listeners.connect_timeout", listener_config, connect_timeout_ms,
                      3600, 3),
     .load = config_load_connect_timeout, .flags = SETTING_TCP_ONLY,
     .help = "seconds allowed to connect to an upstream, and for a TLS handshake"},
    {COUNT("listeners.retries", listener_config, retries, 0, 100, 2),
     .flags = SETTING_PROXY_ONLY | SETTING_TCP_ONLY,
     .help = "other upstreams tried before any byte was relayed"},
    {SECONDS("listeners.fail_timeout", listener_config, fail_timeout_ms, 3600, 10),
     .flags = SETTING_PROXY_ONLY,
     .help = "seconds a failed upstream address is skipped; 0: never"},
    {CHOICE("listeners.send_proxy", listener_config, send_proxy, enum send_proxy,
            send_proxies, SEND_PROXY_NONE),
     .flags = SETTING_PROXY_ONLY,
     .help = "a PROXY protocol header sent to the upstream first"},
    {COUNT("listeners.responses", listener_config, responses, 0, 1000000, 0),
     .flags = SETTING_PROXY_ONLY | SETTING_UDP_ONLY,
     .help = "udp: a flow ends after this many datagrams back (DNS: 1); 0: any number"},
    {GROUP("listeners.upstream_tls", "{ ca = \"...\"; verify = true; }"),
     .flags = SETTING_PROXY_ONLY | SETTING_TCP_ONLY,
     .help = "connect to the upstreams over TLS"},
    {STRING("listeners.upstream_tls.ca", listener_config, upstream_tls.ca, ""),
     .help =
         "CA certificates (PEM) the upstreams' are checked against; \"\": the system's"},
    {BOOL("listeners.upstream_tls.verify", listener_config, upstream_tls.verify, true),
     .help = "check the upstream's certificate and name; false: encrypt only"},
    {STRING("listeners.upstream_tls.server_name", listener_config,
            upstream_tls.server_name, ""),
     .help = "the name sent (SNI) and verified; \"\": the upstream's host name"},
    {STRING("listeners.upstream_tls.certificate", listener_config,
            upstream_tls.pair.certificate, ""),
     .help = "a client certificate chain (PEM) for the upstreams; \"\": none"},
    {STRING("listeners.upstream_tls.key", listener_config, upstream_tls.pair.key, ""),
     .help = "the client certificate's private key (PEM)"},
    {GROUP("listeners.health_check", "{ interval = 2.0; timeout = 1.0; }"),
     .flags = SETTING_PROXY_ONLY,
     .help = "check the upstreams actively, apart from clients"},
    {SECONDS("listeners.health_check.interval", listener_config, health_check.interval_ms,
             3600, 0),
     .help = "seconds between checks of each upstream address; 0: no active checks"},
    {POSITIVE_SECONDS("listeners.health_check.timeout", listener_config,
                      health_check.timeout_ms, 3600, 1),
     .help = "seconds a check may take, connect and answer, at most interval"},
    {COUNT("listeners.health_check.rise", listener_config, health_check.rise, 1, 100, 2),
     .help = "checks passed in a row that mark a down address up"},
    {COUNT("listeners.health_check.fall", listener_config, health_check.fall, 1, 100, 3),
     .help = "checks failed in a row that mark an address down"},
    {STRING("listeners.health_check.send", listener_config, health_check.send, ""),
     .help = "bytes sent once connected (escapes \\r \\n \\xNN); \"\": none"},
    {STRING("listeners.health_check.expect", listener_config, health_check.expect, ""),
     .help = "the answer must begin with these bytes; \"\": connecting is enough"},
    {SECONDS("listeners.resolve", listener_config, resolve_ms, 86400, 0),
     .load = config_load_resolve, .flags = SETTING_PROXY_ONLY,
     .help =
         "seconds between re-resolutions of upstream host names, at least 0.1; 0: at load only"},
    {OWN("listeners.sni_routes", SETTING_GROUPS, config_load_sni_routes),
     .flags = SETTING_PROXY_ONLY | SETTING_TCP_ONLY,
     .help = "upstreams chosen by the server name a TLS client asks for"},
    {GROUP("listeners.tls", "{ certificate = \"...\"; key = \"...\"; }"),
     .flags = SETTING_TCP_ONLY, .help = "terminate TLS on this listener's connections"},
    {STRING("listeners.tls.certificate", listener_config, tls.pair.certificate, NULL),
     .help = "the certificate chain in PEM, leaf first; required"},
    {STRING("listeners.tls.key", listener_config, tls.pair.key, NULL),
     .help = "the certificate's private key in PEM; required"},
    {OWN("listeners.tls.certificates", SETTING_GROUPS, config_load_tls_certificates),
     .help = "more { certificate, key } pairs, chosen by the name a client asks for"},
    {STRING("listeners.tls.client_ca", listener_config, tls.client_ca, ""),
     .help = "clients must show a certificate signed by these CAs; \"\": none asked"},
    {CHOICE("listeners.tls.min_version", listener_config, tls.min_version,
            enum tls_version, tls_versions, TLS_VERSION_1_2),
     .help = "the oldest protocol accepted: TLSv1.2 or TLSv1.3"},
    {STRING("listeners.tls.ciphers", listener_config, tls.ciphers, ""),
     .help = "TLS 1.2 ciphers, in OpenSSL's syntax; \"\": OpenSSL's default"},
    {STRING("listeners.tls.ciphersuites", listener_config, tls.ciphersuites, ""),
     .help = "TLS 1.3 cipher suites, in OpenSSL's syntax; \"\": OpenSSL's default"},
    {OWN("listeners.tls.alpn", SETTING_STRINGS, config_load_tls_alpn),
     .help = "application protocols offered (ALPN), the preferred first"},
    {GROUP("control", "{ path = \"/run/mio-echod/control.sock\"; mode = 0600; }"),
     .help = "a Unix socket taking commands from mio-echodctl(8)"},
    {STRING("control.path", config, control_path, NULL), .load = config_load_control_path,
     .help = "where the control socket is made; required in the group; \"\": none"},
    {COUNT("control.mode", config, control_mode, 0, 0777, 0600),
     .load = config_load_control_mode,
     .help = "the socket's permissions, in octal as chmod takes them: who may steer"},
    {GROUP("stats", "{ listen = \"127.0.0.1:9107\"; }"),
     .help = "serve the counters as Prometheus metrics over HTTP"},
    {OWN("stats.listen", SETTING_ADDRESS, config_load_stats_listen),
     .help = "the metrics listener's one numeric address; required"},
    {CIDRS("stats.allow", config, stats_allow, nstats_allow),
     .help = "who may scrape, when not empty"},
    {CIDRS("stats.deny", config, stats_deny, nstats_deny), .help = "who may not scrape"},
    {.key = NULL},
};

const struct setting *table_find(const char *key)
{
    for (const struct setting *row = table_settings; row->key != NULL; row++)
        if (strcmp(row->key, key) == 0)
            return row;
    return NULL;
}

const char *table_choice_name(const char *key, int value)
{
    const struct setting *row = table_find(key);
    if (row == NULL || row->kind != SETTING_CHOICE)
        return NULL;
    for (const struct value_choice *c = row->range.choices; c->name != NULL; c++)
        if (c->value == value)
            return c->name;
    return NULL;
}

const char *table_key_in(const struct setting *row, const char *level)
{
    size_t n = strlen(level);
    if (strncmp(row->key, level, n) != 0 || strchr(row->key + n, '.') != NULL)
        return NULL;
    return row->key + n;
}

bool table_in_listener(const struct setting *row)
{
    return strncmp(row->key, "listeners.", strlen("listeners.")) == 0;
}

/* The key of a row without its level: "level" for "log.level". */
static const char *name_of(const struct setting *row)
{
    const char *dot = strrchr(row->key, '.');
    return dot != NULL ? dot + 1 : row->key;
}

/* Where a row's value is kept in base. */
static void *at(void *base, size_t offset)
{
    return (char *)base + offset;
}

int table_defaults(struct config_loader *ld, void *base, bool listener)
{
    for (const struct setting *row = table_settings; row->key != NULL; row++) {
        void *p = at(base, row->offset);
        if (table_in_listener(row) != listener)
            continue;
        char *copy;
        switch (row->kind) {
        case SETTING_COUNT:
            *(unsigned *)p = (unsigned)row->def.count;
            break;
        case SETTING_BYTES:
            *(size_t *)p = (size_t)row->def.count;
            break;
        case SETTING_SECONDS:
            *(int64_t *)p = value_ms(row->def.seconds);
            break;
        case SETTING_BOOL:
            *(bool *)p = row->def.yes;
            break;
        case SETTING_CHOICE:
            *(int *)p = row->def.choice;
            break;
        case SETTING_STRING:
            if (row->def.text == NULL)
                break;
            copy = strdup(row->def.text);
            if (copy == NULL)
                return value_out_of_memory(ld);
            free(*(char **)p);
            *(char **)p = copy;
            break;
        default: /* nothing to keep, or its own loader keeps it */
            break;
        }
    }
    return 0;
}

/* ---- unknown settings ---------------------------------------------------- */

/* The optimal string alignment distance between a and b (insertions,
 * deletions, substitutions, swaps of neighbours); SIZE_MAX past KEY_MAX. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t rows[3][KEY_MAX + 1], *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    if (la > KEY_MAX || lb > KEY_MAX)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t d = prev[j - 1] + cost;
            if (prev[j] + 1 < d)
                d = prev[j] + 1;
            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < d)
                d = prev2[j - 2] + 1;
            cur[j] = d;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

/* An unknown setting is named with the nearest known key when it looks like
 * a typo of it, else with the list of known keys, in the table's order. */
int table_check_keys(struct config_loader *ld, const config_setting_t *g,
                     const char *scope, const char *level)
{
    for (int m = 0; m < config_setting_length(g); m++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)m);
        const char *name = config_setting_name(s), *best = NULL, *k;
        size_t best_d = SIZE_MAX;
        char known[512] = "";
        bool found = false;
        for (const struct setting *row = table_settings; row->key != NULL && !found;
             row++) {
            if ((k = table_key_in(row, level)) == NULL)
                continue;
            size_t d = edit_distance(name, k), used = strlen(known);
            found = d == 0;
            if (d < best_d) {
                best_d = d;
                best = k;
            }
            snprintf(known + used, sizeof(known) - used, "%s%s", used > 0 ? ", " : "", k);
        }
        if (found)
            continue;
        if (best != NULL && best_d <= 2 && best_d + 1 < strlen(best))
            return value_refuse(ld, value_line(s), scope, name,
                                "unknown setting (did you mean \"%s\"?)", best);
        return value_refuse(ld, value_line(s), scope, name, "unknown setting (known: %s)",
                            known);
    }
    return 0;
}

/* ---- loading ------------------------------------------------------------- */

/* Parses the CIDR list of row in g into its array and count in base. */
static int load_cidrs(struct config_loader *ld, const config_setting_t *g,
                      const char *scope, const struct setting *row, void *base)
{
    struct cidr **out = at(base, row->offset);
    size_t *nout = at(base, row->count_offset);
    const config_setting_t *list;
    int rc;
    if ((rc = value_strings(ld, g, scope, name_of(row), &list)) != 0)
        return rc;
    int n;
    if (list == NULL || (n = config_setting_length(list)) == 0)
        return 0;
    *out = calloc((size_t)n, sizeof(**out));
    if (*out == NULL)
        return value_out_of_memory(ld);
    char cerr[256], elem[48], q[VALUE_QUOTE_BUF];
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *text = config_setting_get_string(e);
        if (cidr_parse(text, &(*out)[i], cerr, sizeof(cerr)) != 0) {
            snprintf(elem, sizeof(elem), "%s.[%d]", name_of(row), i);
            return value_refuse(ld, value_line(e), scope, elem, "invalid CIDR %s: %s",
                                value_quote(q, text), cerr);
        }
        (*nout)++;
    }
    return 0;
}

/* Reads one setting, by its own loader or as its kind says. */
static int load_row(struct config_loader *ld, const config_setting_t *g,
                    const char *scope, const struct setting *row, void *base)
{
    return row->load != NULL ? row->load(ld, g, scope, row, base)
                             : table_load_value(ld, g, scope, row, base);
}

/* Loads the group of row, when it is there: its keys checked, its
 * settings (plain ones: no group is in a group) loaded into base. */
static int load_group(struct config_loader *ld, const config_setting_t *g,
                      const char *scope, const struct setting *row, void *base)
{
    const char *key = name_of(row);
    const config_setting_t *s = config_setting_get_member(g, key);
    if (s == NULL)
        return 0;
    char got[VALUE_QUOTE_BUF];
    if (!config_setting_is_group(s))
        return value_refuse(ld, value_line(s), scope, key, "expected a group %s, got %s",
                            row->range.shape, value_describe(ld, s, got));
    char inner[160];
    snprintf(inner, sizeof(inner), "%s%s%s", scope, scope[0] != '\0' ? "." : "", key);
    char level[160];
    snprintf(level, sizeof(level), "%s.", row->key);
    int rc;
    if ((rc = table_check_keys(ld, s, inner, level)) != 0)
        return rc;
    for (const struct setting *r = table_settings; r->key != NULL; r++)
        if (table_key_in(r, level) != NULL && (rc = load_row(ld, s, inner, r, base)) != 0)
            return rc;
    return 0;
}

int table_load_value(struct config_loader *ld, const config_setting_t *g,
                     const char *scope, const struct setting *row, void *base)
{
    const char *key = name_of(row);
    void *p = at(base, row->offset);
    unsigned count;
    int rc;
    switch (row->kind) {
    case SETTING_COUNT:
        return value_count(ld, g, scope, key, row->range.count.lo, row->range.count.hi,
                           "", p);
    case SETTING_BYTES:
        count = (unsigned)*(size_t *)p;
        rc = value_count(ld, g, scope, key, row->range.count.lo, row->range.count.hi,
                         "bytes", &count);
        *(size_t *)p = count;
        return rc;
    case SETTING_SECONDS:
        return value_seconds(ld, g, scope, key, row->range.seconds.max,
                             row->range.seconds.positive, p);
    case SETTING_BOOL:
        return value_bool(ld, g, scope, key, p);
    case SETTING_STRING:
        return value_string(ld, g, scope, key, p);
    case SETTING_CHOICE:
        return value_choice(ld, g, scope, key, row->range.choices, p);
    case SETTING_CIDRS:
        return load_cidrs(ld, g, scope, row, base);
    default: /* groups are table_load()'s; the others have a loader of their own */
        return value_refuse(ld, value_line(g), scope, key, "no loader for this setting");
    }
}

int table_load(struct config_loader *ld, const config_setting_t *g, const char *scope,
               const char *level, void *base, unsigned flags)
{
    for (const struct setting *row = table_settings; row->key != NULL; row++) {
        if (table_key_in(row, level) == NULL ||
            (row->flags & ~(SETTING_TCP_ONLY | SETTING_UDP_ONLY)) != flags)
            continue;
        int rc = row->kind == SETTING_GROUP ? load_group(ld, g, scope, row, base)
                                            : load_row(ld, g, scope, row, base);
        if (rc != 0)
            return rc;
    }
    return 0;
}
