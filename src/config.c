/*
 * Loading mio-echod's configuration: the file is read and scanned, libconfig
 * parses it, then every setting is checked and copied into struct config,
 * as the table of settings (config-table.c) says; the settings the kinds of
 * the table cannot say are loaded here.  The first problem found is
 * reported as one line, and nothing of the file is kept.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "config-check.h"
#include "config-scan.h"
#include "config-table.h"
#include "config-value.h"
#include "log.h"
#include "mio.h"
#include "pipe.h"

/* A bound on the file, so that a mistaken path (/dev/zero) cannot eat
 * memory. */
#define FILE_MAX (16 * 1024 * 1024)

/* Listener names appear in every log line of their connections. */
#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"

/* ---- listeners ----------------------------------------------------------- */

/* Frees what a listener holds. */
static void free_listener(struct listener_config *lc)
{
    free(lc->name);
    for (size_t i = 0; i < lc->nlisten; i++)
        free(lc->listen[i].text);
    free(lc->listen);
    free(lc->allow);
    free(lc->deny);
    config_free_addrs(lc->upstreams, lc->nupstreams);
    free(lc->health_check.send);
    free(lc->health_check.expect);
    config_free_tls(lc);
}

void config_free_addrs(struct config_addr *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].text);
        free(a[i].addrs);
    }
    free(a);
}

/*
 * Checks the listener name setting s and copies it into lc; scope is the
 * listener's index path.  Names are unique among listeners[0..i).
 */
static int load_name(struct config_loader *ld, const config_setting_t *s,
                     const char *scope, const struct config *cfg, size_t i,
                     struct listener_config *lc)
{
    char got[VALUE_QUOTE_BUF];
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return value_refuse(ld, value_line(s), scope, "name", "expected a string, got %s",
                            value_describe(ld, s, got));
    const char *name = config_setting_get_string(s);
    if (name[0] == '\0' || strlen(name) > CONFIG_NAME_MAX ||
        strspn(name, NAME_CHARS) != strlen(name))
        return value_refuse(ld, value_line(s), scope, "name",
                            "expected 1-%d letters, digits, \"_\", \".\" or \"-\", "
                            "got %s",
                            CONFIG_NAME_MAX, value_quote(got, name));
    /* listeners[0..i) were loaded, so each has a name; the analyzer does
     * not follow the variadic value_refuse() and thinks it may return 0. */
    for (size_t j = 0; j < i; j++)
        /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): above */
        if (strcmp(cfg->listeners[j].name, name) == 0)
            return value_refuse(ld, value_line(s), scope, "name",
                                "duplicate listener name \"%s\" (first at line %d)", name,
                                cfg->listeners[j].line);
    lc->name = strdup(name);
    return lc->name == NULL ? value_out_of_memory(ld) : 0;
}

/* Parses the listen addresses of a listener (base), refusing any that
 * overlaps an address taken before, by this listener or another. */
int config_load_listen(struct config_loader *ld, const config_setting_t *g,
                       const char *scope, const struct setting *row, void *base)
{
    struct listener_config *lc = base;
    (void)row;
    const config_setting_t *list;
    int rc;
    if ((rc = value_strings(ld, g, scope, "listen", &list)) != 0)
        return rc;
    if (list == NULL)
        return value_refuse(ld, value_line(g), scope, "listen",
                            "missing; expected a list of addresses like "
                            "[ \"127.0.0.1:7007\" ]");
    int n = config_setting_length(list);
    if (n == 0)
        return value_refuse(ld, value_line(list), scope, "listen",
                            "empty; expected at least one address");
    lc->listen = calloc(2 * (size_t)n, sizeof(*lc->listen));
    if (lc->listen == NULL)
        return value_out_of_memory(ld);
    char aerr[256], key[48], q[VALUE_QUOTE_BUF];
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *text = config_setting_get_string(e);
        int line = value_line(e);
        snprintf(key, sizeof(key), "listen.[%d]", i);
        addr_t parsed[2];
        size_t count;
        if (addr_parse(text, ADDR_LISTEN, parsed, 2, &count, aerr, sizeof(aerr)) != 0)
            return value_refuse(ld, line, scope, key, "invalid address %s: %s",
                                value_quote(q, text), aerr);
        const char *what = parsed[0].u.sa.sa_family == AF_UNIX
                               ? addr_unix_path_problem(parsed[0].u.un.sun_path)
                               : NULL;
        if (parsed[0].u.sa.sa_family == AF_UNIX && lc->protocol == PROTOCOL_UDP)
            return value_refuse(ld, line, scope, key,
                                "%s: a Unix socket is not allowed with protocol = "
                                "\"udp\"; expected an IP address like \"127.0.0.1:7007\"",
                                value_quote(q, text));
        if (what != NULL)
            return value_refuse(ld, line, scope, key,
                                "%s: %s is %s, not a socket; only a stale socket is "
                                "replaced: remove it or choose another path",
                                value_quote(q, text), parsed[0].u.un.sun_path, what);
        if ((rc = check_v4_mapped(ld, &parsed[0], text, line, scope, key)) != 0)
            return rc;
        for (size_t k = 0; k < count; k++) {
            struct config_addr *a = &lc->listen[lc->nlisten];
            bool udp = lc->protocol == PROTOCOL_UDP;
            if ((rc = check_overlap(ld, &parsed[k], udp, text, line, scope, key)) != 0)
                return rc;
            a->text = strdup(text);
            if (a->text == NULL)
                return value_out_of_memory(ld);
            a->addr = parsed[k];
            a->line = line;
            lc->nlisten++;
            if ((rc = check_take(ld, a, udp, lc->name, line)) != 0)
                return rc;
        }
    }
    return 0;
}

/* Parses the list `key` of group g into *out and *n: at least one
 * upstream, each with every address its name resolves to; `listener`
 * names the relay in the message for none. */
/* The most weight an upstream may have. */
#define WEIGHT_MAX 256

/*
 * Reads element e of an upstream list, named SCOPE.ELEM: a string, or a
 * group { address = "..."; weight = N; backup = BOOL; }.  Its address text
 * into *text (the file's own string), its weight and backup into a.
 */
static int upstream_element(struct config_loader *ld, const config_setting_t *e,
                            const char *scope, const char *elem, const char **text,
                            struct config_addr *a)
{
    char got[VALUE_QUOTE_BUF], inner[160];
    a->weight = 1;
    if (config_setting_type(e) == CONFIG_TYPE_STRING) {
        *text = config_setting_get_string(e);
        return 0;
    }
    if (!config_setting_is_group(e))
        return value_refuse(ld, value_line(e), scope, elem,
                            "expected an address as a string, or a group { address = "
                            "\"...\"; weight = N; backup = false; }, got %s",
                            value_describe(ld, e, got));
    snprintf(inner, sizeof(inner), "%s.%s", scope, elem);
    for (int m = 0; m < config_setting_length(e); m++) {
        const config_setting_t *s = config_setting_get_elem(e, (unsigned)m);
        const char *name = config_setting_name(s);
        if (strcmp(name, "address") != 0 && strcmp(name, "weight") != 0 &&
            strcmp(name, "backup") != 0)
            return value_refuse(ld, value_line(s), inner, name,
                                "unknown setting (known: address, weight, backup)");
    }
    const config_setting_t *addr = config_setting_get_member(e, "address");
    if (addr == NULL)
        return value_refuse(ld, value_line(e), inner, "address",
                            "missing; expected an address like \"10.0.0.2:6379\"");
    if (config_setting_type(addr) != CONFIG_TYPE_STRING)
        return value_refuse(ld, value_line(addr), inner, "address",
                            "expected an address as a string, got %s",
                            value_describe(ld, addr, got));
    *text = config_setting_get_string(addr);
    int rc = value_count(ld, e, inner, "weight", 1, WEIGHT_MAX, "", &a->weight);
    return rc != 0 ? rc : value_bool(ld, e, inner, "backup", &a->backup);
}

int config_upstream_list(struct config_loader *ld, const config_setting_t *g,
                         const char *scope, const char *key, const char *listener,
                         struct config_addr **out, size_t *n)
{
    const config_setting_t *list = config_setting_get_member(g, key);
    char got[VALUE_QUOTE_BUF];
    if (list != NULL && config_setting_type(list) == CONFIG_TYPE_STRING)
        return value_refuse(ld, value_line(list), scope, key,
                            "expected a list of addresses, got %s (write [ %s ])",
                            value_describe(ld, list, got), got);
    if (list != NULL && !value_is_sequence(list))
        return value_refuse(ld, value_line(list), scope, key,
                            "expected a list of addresses, got %s",
                            value_describe(ld, list, got));
    int len = list == NULL ? 0 : config_setting_length(list);
    if (len == 0)
        return value_refuse(ld, value_line(list != NULL ? list : g), scope, key,
                            "proxy listener \"%s\" has no upstreams; expected a list "
                            "like [ \"127.0.0.1:6379\" ]",
                            listener);
    *out = calloc((size_t)len, sizeof(**out));
    if (*out == NULL)
        return value_out_of_memory(ld);
    char aerr[256], elem[48], q[VALUE_QUOTE_BUF];
    bool primary = false;
    for (int i = 0; i < len; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        struct config_addr *a = &(*out)[i];
        snprintf(elem, sizeof(elem), "%s.[%d]", key, i);
        const char *text = NULL;
        int rc = upstream_element(ld, e, scope, elem, &text, a);
        if (rc != 0 || text == NULL) /* text is set when rc is 0 */
            return rc != 0 ? rc : -EINVAL;
        primary |= !a->backup;
        addr_t parsed[ADDR_RESOLVE_MAX];
        size_t count;
        if (addr_parse(text, ADDR_UPSTREAM, parsed, ADDR_RESOLVE_MAX, &count, aerr,
                       sizeof(aerr)) != 0)
            return value_refuse(ld, value_line(e), scope, elem, "invalid address %s: %s",
                                value_quote(q, text), aerr);
        a->text = strdup(text);
        a->addrs = malloc(count * sizeof(*a->addrs));
        (*n)++; /* the caller frees what was allocated */
        if (a->text == NULL || a->addrs == NULL)
            return value_out_of_memory(ld);
        memcpy(a->addrs, parsed, count * sizeof(*a->addrs));
        a->naddrs = count;
        a->addr = parsed[0];
        a->line = value_line(e);
    }
    if (!primary)
        return value_refuse(ld, value_line(list), scope, key,
                            "every upstream is a backup; at least one must not be");
    return 0;
}

/* Parses the upstreams of a relay (base). */
int config_load_upstreams(struct config_loader *ld, const config_setting_t *g,
                          const char *scope, const struct setting *row, void *base)
{
    struct listener_config *lc = base;
    (void)row;
    return config_upstream_list(ld, g, scope, "upstreams", lc->name, &lc->upstreams,
                                &lc->nupstreams);
}

/* Loads `proxy_timeout`, which only a listener with accept_proxy has. */
int config_load_proxy_timeout(struct config_loader *ld, const config_setting_t *g,
                              const char *scope, const struct setting *row, void *base)
{
    const struct listener_config *lc = base;
    const config_setting_t *s = config_setting_get_member(g, "proxy_timeout");
    if (s != NULL && !lc->accept_proxy)
        return value_refuse(ld, value_line(s), scope, "proxy_timeout",
                            "only with accept_proxy = true; this listener reads no "
                            "PROXY header");
    return table_load_value(ld, g, scope, row, base);
}

/*
 * Loads `splice`: refused where the system has no splice(2).  On by default
 * for relays, where it halves the daemon's CPU per byte; off for echo (the
 * table's default), where the client then reads the spliced pages back more
 * slowly than copied ones (bench/RESULTS.md: 1.4 against 2.4 GB/s on
 * loopback).
 */
int config_load_splice(struct config_loader *ld, const config_setting_t *g,
                       const char *scope, const struct setting *row, void *base)
{
    struct listener_config *lc = base;
    if (lc->mode == MODE_PROXY)
        lc->splice = pipe_splice_available();
    int rc;
    if ((rc = table_load_value(ld, g, scope, row, base)) != 0)
        return rc;
    if (lc->splice && !pipe_splice_available())
        return value_refuse(ld, value_line(config_setting_get_member(g, "splice")), scope,
                            "splice", "this system has no splice(2); set it to false");
    return 0;
}

/* Loads `reuse_port`: refused with a Unix socket address, which has no
 * port to share (loaded after `listen`). */
int config_load_reuse_port(struct config_loader *ld, const config_setting_t *g,
                           const char *scope, const struct setting *row, void *base)
{
    struct listener_config *lc = base;
    char q[VALUE_QUOTE_BUF];
    int rc;
    if ((rc = table_load_value(ld, g, scope, row, base)) != 0)
        return rc;
    for (size_t i = 0; lc->reuse_port && i < lc->nlisten; i++)
        if (lc->listen[i].addr.u.sa.sa_family == AF_UNIX)
            return value_refuse(ld,
                                value_line(config_setting_get_member(g, "reuse_port")),
                                scope, "reuse_port",
                                "true with the Unix socket address %s, which has no port "
                                "to share; expected false, or IP addresses only",
                                value_quote(q, lc->listen[i].text));
    return 0;
}

/* Refuses the first setting of the listener group g whose row has
 * `flag`, saying `why`. */
static int refuse_flagged(struct config_loader *ld, const config_setting_t *g,
                          const char *scope, unsigned flag, const char *why)
{
    for (const struct setting *row = table_settings; row->key != NULL; row++) {
        const char *key = table_key_in(row, "listeners.");
        const config_setting_t *s = key != NULL && (row->flags & flag)
                                        ? config_setting_get_member(g, key)
                                        : NULL;
        if (s != NULL)
            return value_refuse(ld, value_line(s), scope, key, "%s", why);
    }
    return 0;
}

/* Loads the settings only a relay has, or refuses them on an echo
 * listener. */
static int load_mode_settings(struct config_loader *ld, const config_setting_t *g,
                              const char *scope, struct listener_config *lc)
{
    if (lc->mode == MODE_PROXY)
        return table_load(ld, g, scope, "listeners.", lc, SETTING_PROXY_ONLY);
    return refuse_flagged(ld, g, scope, SETTING_PROXY_ONLY,
                          "only for mode = \"proxy\"; this listener's mode is \"echo\"");
}

/* Refuses the settings of the other protocol: a TCP-only one on a UDP
 * listener, or the reverse. */
static int check_protocol_settings(struct config_loader *ld, const config_setting_t *g,
                                   const char *scope, const struct listener_config *lc)
{
    if (lc->protocol == PROTOCOL_UDP)
        return refuse_flagged(ld, g, scope, SETTING_TCP_ONLY,
                              "only for protocol = \"tcp\"; this listener's protocol is "
                              "\"udp\"");
    return refuse_flagged(ld, g, scope, SETTING_UDP_ONLY,
                          "only for protocol = \"udp\"; this listener's protocol is "
                          "\"tcp\"");
}

/* What a UDP listener needs beyond its settings one by one: flows that
 * end, and a PROXY header that fits a datagram (v2). */
static int check_udp(struct config_loader *ld, const config_setting_t *g,
                     const char *scope, struct listener_config *lc)
{
    if (lc->protocol != PROTOCOL_UDP)
        return 0;
    lc->splice = false;
    const config_setting_t *s = config_setting_get_member(g, "idle_timeout");
    if (lc->idle_timeout_ms == 0)
        return value_refuse(ld, value_line(s), scope, "idle_timeout",
                            "0 is not allowed with protocol = \"udp\": a flow ends only "
                            "when idle; expected seconds like 30.0");
    s = config_setting_get_member(g, "send_proxy");
    if (lc->send_proxy == SEND_PROXY_V1)
        return value_refuse(ld, value_line(s), scope, "send_proxy",
                            "\"v1\" is not allowed with protocol = \"udp\": PROXY over "
                            "UDP is v2 only; expected \"none\" or \"v2\"");
    return 0;
}

/* Seconds for a message: "1.0", "0.25". */
static void seconds_text(int64_t ms, char *buf, size_t len)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%lld.0", (long long)(ms / 1000));
    else if (ms % 100 == 0)
        snprintf(buf, len, "%lld.%01lld", (long long)(ms / 1000),
                 (long long)(ms % 1000 / 100));
    else if (ms % 10 == 0)
        snprintf(buf, len, "%lld.%02lld", (long long)(ms / 1000),
                 (long long)(ms % 1000 / 10));
    else
        snprintf(buf, len, "%lld.%03lld", (long long)(ms / 1000), (long long)(ms % 1000));
}

/*
 * What a relay's health_check needs beyond its settings one by one: a
 * check that ends before the next starts (a timeout not written is cut to
 * the interval; one written longer is refused), and on UDP a datagram to
 * send, since an upstream answers nothing to no datagram.
 */
static int check_health(struct config_loader *ld, const config_setting_t *g,
                        const char *scope, struct listener_config *lc)
{
    struct health_check_config *hc = &lc->health_check;
    const config_setting_t *hg = config_setting_get_member(g, "health_check");
    if (lc->mode != MODE_PROXY || hg == NULL || hc->interval_ms == 0)
        return 0;
    char inner[16 + CONFIG_NAME_MAX + 16];
    snprintf(inner, sizeof(inner), "%s.health_check", scope);
    const config_setting_t *t = config_setting_get_member(hg, "timeout");
    if (hc->timeout_ms > hc->interval_ms) {
        if (t == NULL) {
            hc->timeout_ms = hc->interval_ms;
        } else {
            char ts[32], is[32];
            seconds_text(hc->timeout_ms, ts, sizeof(ts));
            seconds_text(hc->interval_ms, is, sizeof(is));
            return value_refuse(ld, value_line(t), inner, "timeout",
                                "%s s is longer than interval (%s s): a check must end "
                                "before the next starts; expected at most %s",
                                ts, is, is);
        }
    }
    if (lc->protocol == PROTOCOL_UDP && hc->send[0] == '\0') {
        const config_setting_t *s = config_setting_get_member(hg, "send");
        return value_refuse(ld, value_line(s != NULL ? s : hg), inner, "send",
                            "empty, but a UDP relay's check sends a datagram and waits "
                            "for the answer; expected the bytes of a request its "
                            "upstreams answer, such as \"ping\"");
    }
    return 0;
}

/*
 * Loads listener i from the group g into cfg->listeners[i].  Messages name
 * it "listeners.[i]" (counted from 0, as libconfig paths do) until its name
 * is known, "listeners.NAME" after.  The name first, then its keys are
 * checked, then its mode and protocol, the settings of its mode, and the
 * others.
 */
static int load_listener(struct config_loader *ld, const config_setting_t *g,
                         struct config *cfg, size_t i)
{
    struct listener_config *lc = &cfg->listeners[i];
    char scope[16 + CONFIG_NAME_MAX];
    snprintf(scope, sizeof(scope), "listeners.[%zu]", i);
    char got[VALUE_QUOTE_BUF];
    if (!config_setting_is_group(g))
        return value_refuse(ld, value_line(g), scope, NULL,
                            "expected a group { name = ...; listen = [ ... ]; }, got %s",
                            value_describe(ld, g, got));
    lc->line = value_line(g);
    int rc;
    if ((rc = table_defaults(ld, lc, true)) != 0)
        return rc;
    const config_setting_t *name = config_setting_get_member(g, "name");
    if (name != NULL) {
        if ((rc = load_name(ld, name, scope, cfg, i, lc)) != 0)
            return rc;
        snprintf(scope, sizeof(scope), "listeners.%s", lc->name);
    }
    if ((rc = table_check_keys(ld, g, scope, "listeners.")) != 0)
        return rc;
    if (name == NULL)
        return value_refuse(ld, value_line(g), scope, "name",
                            "missing; every listener needs a name of letters, digits, "
                            "\"_\", \".\" or \"-\"");
    if ((rc = table_load(ld, g, scope, "listeners.", lc, SETTING_EARLY)) != 0 ||
        (rc = check_protocol_settings(ld, g, scope, lc)) != 0 ||
        (rc = load_mode_settings(ld, g, scope, lc)) != 0 ||
        (rc = table_load(ld, g, scope, "listeners.", lc, 0)) != 0 ||
        (rc = check_udp(ld, g, scope, lc)) != 0 ||
        (rc = check_health(ld, g, scope, lc)) != 0)
        return rc;
    return config_check_tls(ld, g, scope, lc);
}

/* Loads the listeners list into cfg (base): at least one listener, no relay
 * loop between them. */
int config_load_listeners(struct config_loader *ld, const config_setting_t *root,
                          const char *scope, const struct setting *row, void *base)
{
    const config_setting_t *list = config_setting_get_member(root, "listeners");
    struct config *cfg = base;
    (void)scope;
    (void)row;
    if (list == NULL)
        return value_refuse(ld, 0, "", "listeners", "no listeners: nothing to serve");
    char got[VALUE_QUOTE_BUF];
    if (!value_is_sequence(list))
        return value_refuse(ld, value_line(list), "", "listeners",
                            "expected a list of groups ( { name = ...; listen = [ ... ]; "
                            "}, ... ), got %s",
                            value_describe(ld, list, got));
    int n = config_setting_length(list);
    if (n == 0)
        return value_refuse(ld, value_line(list), "", "listeners",
                            "no listeners: nothing to serve");
    cfg->listeners = calloc((size_t)n, sizeof(*cfg->listeners));
    if (cfg->listeners == NULL)
        return value_out_of_memory(ld);
    cfg->nlisteners = (size_t)n;
    int rc;
    for (int i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        if ((rc = load_listener(ld, g, cfg, (size_t)i)) != 0)
            return rc;
    }
    return check_loops(ld, list, cfg);
}

/* Loads `resolve`: 0 (at load only) or at least a tenth of a second, so
 * that a name is never asked for hundreds of times a second. */
int config_load_resolve(struct config_loader *ld, const config_setting_t *g,
                        const char *scope, const struct setting *row, void *base)
{
    const struct listener_config *lc = base;
    int rc = table_load_value(ld, g, scope, row, base);
    const config_setting_t *s = config_setting_get_member(g, "resolve");
    if (rc != 0 || s == NULL || lc->resolve_ms == 0 || lc->resolve_ms >= 100)
        return rc;
    char got[VALUE_QUOTE_BUF];
    return value_refuse(ld, value_line(s), scope, "resolve",
                        "expected 0 (at load only) or at least 0.1 seconds, got %s",
                        value_describe(ld, s, got));
}

/* ---- the daemon ---------------------------------------------------------- */

const char *config_poller_backend(const struct config *cfg)
{
    return cfg->poller == POLLER_AUTO ? NULL
                                      : table_choice_name("poller", (int)cfg->poller);
}

void config_pollers_usable(char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int p = POLLER_AUTO + 1; p <= POLLER_IO_URING; p++) {
        const char *name = table_choice_name("poller", p);
        mio_poll_t *poll = NULL;
        if (name == NULL || mio_poll_new_with(&poll, name) < 0)
            continue;
        mio_poll_free(poll);
        int w = snprintf(buf + n, len - n, "%s%s", n > 0 ? ", " : "", name);
        if (w < 0 || (size_t)w >= len - n)
            break;
        n += (size_t)w;
    }
}

/*
 * Loads `poller`, refused when the backend it names cannot be had here: a
 * poll is made and freed, so that -t and a reload's check say so rather
 * than the start.  auto is always had (mio_poll_new(), never io_uring).
 */
int config_load_poller(struct config_loader *ld, const config_setting_t *root,
                       const char *scope, const struct setting *row, void *base)
{
    const struct config *cfg = base;
    int rc = table_load_value(ld, root, scope, row, base);
    const char *name = config_poller_backend(cfg);
    if (rc != 0 || name == NULL)
        return rc;
    mio_poll_t *poll = NULL;
    int err = mio_poll_new_with(&poll, name);
    if (err == 0) {
        mio_poll_free(poll);
        return 0;
    }
    char usable[64];
    config_pollers_usable(usable, sizeof(usable));
    int line = value_line(config_setting_get_member(root, "poller"));
    if (err == -ENOSYS)
        return value_refuse(
            ld, line, scope, "poller",
            "this system has no %s (not built in, or the kernel lacks it); "
            "usable here: %s",
            name, usable);
    if (err == -EPERM || err == -EACCES)
        return value_refuse(
            ld, line, scope, "poller",
            "the system refuses %s: %s (%sa seccomp filter); usable here: %s", name,
            log_strerror(-err),
            cfg->poller == POLLER_IO_URING ? "sysctl kernel.io_uring_disabled, or " : "",
            usable);
    return value_refuse(ld, line, scope, "poller",
                        "cannot make a %s poller: %s; usable here: %s", name,
                        log_strerror(-err), usable);
}

/* Loads `user`, which must exist. */
int config_load_user(struct config_loader *ld, const config_setting_t *root,
                     const char *scope, const struct setting *row, void *base)
{
    const struct config *cfg = base;
    int rc = table_load_value(ld, root, scope, row, base);
    return rc != 0 ? rc : check_user(ld, root, cfg->user);
}

/* Loads `listen` of the stats group g, required there: the one numeric TCP
 * address of the metrics listener, which no listener's address may
 * overlap. */
/* Loads control.path, which must fit a Unix socket address (with its NUL)
 * as written; a relative one is made absolute at start, and checked again
 * then. */
int config_load_control_path(struct config_loader *ld, const config_setting_t *g,
                             const char *scope, const struct setting *row, void *base)
{
    const struct config *cfg = base;
    int rc = table_load_value(ld, g, scope, row, base);
    const config_setting_t *s = config_setting_get_member(g, "path");
    size_t max = sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1;
    if (rc != 0 || s == NULL || cfg->control_path == NULL ||
        strlen(cfg->control_path) <= max)
        return rc;
    return value_refuse(ld, value_line(s), scope, "path",
                        "expected a path of at most %zu bytes (a Unix socket address), "
                        "got %zu bytes",
                        max, strlen(cfg->control_path));
}

/*
 * Loads control.mode: permission bits written as chmod takes them, in
 * octal.  libconfig reads 0600 as the decimal 600, so the digits are taken
 * as octal ones: 600 and 0600 are both rw for the owner only.
 */
int config_load_control_mode(struct config_loader *ld, const config_setting_t *g,
                             const char *scope, const struct setting *row, void *base)
{
    struct config *cfg = base;
    const config_setting_t *s = config_setting_get_member(g, "mode");
    if (s == NULL)
        return 0;
    char got[VALUE_QUOTE_BUF];
    if (config_setting_type(s) != CONFIG_TYPE_INT)
        return value_refuse(ld, value_line(s), scope, "mode",
                            "expected permission bits in octal such as 0600, got %s",
                            value_describe(ld, s, got));
    long long digits = config_setting_get_int(s);
    unsigned mode = 0, shift = 0;
    for (long long v = digits; v > 0 && shift <= 9; v /= 10, shift += 3) {
        if (v % 10 > 7)
            shift = 99; /* not an octal digit */
        else
            mode |= (unsigned)(v % 10) << shift;
    }
    if (digits < 0 || shift > 9 || mode > (unsigned)row->range.count.hi)
        return value_refuse(ld, value_line(s), scope, "mode",
                            "expected permission bits in octal, 0000 to 0777, such as "
                            "0600, got %lld",
                            digits);
    cfg->control_mode = mode;
    return 0;
}

int config_load_stats_listen(struct config_loader *ld, const config_setting_t *g,
                             const char *scope, const struct setting *row, void *base)
{
    const config_setting_t *s = config_setting_get_member(g, "listen");
    struct config *cfg = base;
    (void)row;
    if (s == NULL)
        return value_refuse(ld, value_line(g), scope, "listen",
                            "missing; expected one address like \"127.0.0.1:9107\"");
    int line = value_line(s);
    char got[VALUE_QUOTE_BUF];
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return value_refuse(ld, line, scope, "listen",
                            "expected one address as a string like \"127.0.0.1:9107\", "
                            "got %s",
                            value_describe(ld, s, got));
    const char *text = config_setting_get_string(s);
    if (text[0] == '*')
        return value_refuse(ld, line, scope, "listen",
                            "%s: \"*\" is not allowed here, metrics are served on one "
                            "address; expected one like \"127.0.0.1:9107\" (or "
                            "\"0.0.0.0:9107\", \"[::]:9107\")",
                            value_quote(got, text));
    if (strncmp(text, "unix:", 5) == 0)
        return value_refuse(ld, line, scope, "listen",
                            "%s: a Unix socket is not allowed here, metrics are served "
                            "over TCP; expected an address like \"127.0.0.1:9107\"",
                            value_quote(got, text));
    char aerr[256];
    addr_t parsed;
    size_t count;
    /* Neither "*" nor "unix:" is left: one numeric address. */
    if (addr_parse(text, ADDR_LISTEN, &parsed, 1, &count, aerr, sizeof(aerr)) != 0)
        return value_refuse(ld, line, scope, "listen", "invalid address %s: %s",
                            value_quote(got, text), aerr);
    int rc;
    if ((rc = check_v4_mapped(ld, &parsed, text, line, scope, "listen")) != 0 ||
        (rc = check_overlap(ld, &parsed, false, text, line, scope, "listen")) != 0)
        return rc;
    cfg->stats.text = strdup(text);
    if (cfg->stats.text == NULL)
        return value_out_of_memory(ld);
    cfg->stats.addr = parsed;
    cfg->has_stats = true;
    return 0;
}

/* ---- the file ------------------------------------------------------------ */

/*
 * Reads the whole file into *text, NUL-terminated, once: libconfig parses
 * it from there, so a pipe works too.  0, or a negative errno with the
 * message written: the read's, or -EFBIG, or -ENOMEM.
 */
static int read_source(struct config_loader *ld, char **text, size_t *len)
{
    char *buf = NULL;
    int fd = open(ld->path, O_RDONLY | O_CLOEXEC), rc;
    if (fd < 0) {
        rc = -errno;
        value_refuse(ld, 0, "", NULL, "cannot read: %s", log_strerror(-rc));
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
        value_refuse(ld, 0, "", NULL, "cannot read: %s", log_strerror(EISDIR));
        goto fail;
    }
    size_t cap = 0, n = 0;
    for (;;) {
        if (cap - n < 2) {
            cap = cap == 0 ? 8192 : 2 * cap;
            if (cap > FILE_MAX + 2) {
                rc = -EFBIG;
                value_refuse(ld, 0, "", NULL, "cannot read: larger than %d MiB",
                             FILE_MAX >> 20);
                goto fail;
            }
            char *grown = realloc(buf, cap);
            if (grown == NULL) {
                rc = value_out_of_memory(ld);
                goto fail;
            }
            buf = grown;
        }
        ssize_t got = read(fd, buf + n, cap - n - 1);
        if (got == 0)
            break;
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = -errno;
            value_refuse(ld, 0, "", NULL, "cannot read: %s", log_strerror(-rc));
            goto fail;
        }
        n += (size_t)got;
    }
    close(fd);
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
fail:
    close(fd);
    free(buf);
    return rc;
}

/* Fills a new *out from root, the file libconfig parsed: the defaults
 * first, then what the file says. */
static int load_root(struct config_loader *ld, config_setting_t *root,
                     struct config **out)
{
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (cfg != NULL)
        atomic_init(&cfg->refs, 1);
    if (cfg == NULL)
        return value_out_of_memory(ld);
    cfg->path = strdup(ld->path);
    int rc;
    if (cfg->path == NULL)
        rc = value_out_of_memory(ld);
    else if ((rc = value_note_lines(ld, root)) == 0 &&
             (rc = table_defaults(ld, cfg, false)) == 0 &&
             (rc = table_check_keys(ld, root, "", "")) == 0 &&
             (rc = table_load(ld, root, "", "", cfg, 0)) == 0)
        rc = value_check_wide_claimed(ld);
    if (rc != 0) {
        config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

/* Parses text with libconfig and loads what it holds into a new *out.  0,
 * or a negative errno with the message written. */
static int load_text(struct config_loader *ld, const char *text, struct config **out)
{
    config_t parsed;
    config_init(&parsed);
    int rc;
    if (config_read_string(&parsed, text)) {
        rc = load_root(ld, config_root_setting(&parsed), out);
    } else {
        const char *file = config_error_file(&parsed);
        const char *why = config_error_text(&parsed);
        if (file != NULL)
            ld->name = file;
        if (strcmp(why, "syntax error") == 0) /* libconfig's usual text */
            rc = value_refuse(ld, config_error_line(&parsed), "", NULL, "syntax error");
        else
            rc = value_refuse(ld, config_error_line(&parsed), "", NULL,
                              "syntax error: %s", why);
    }
    config_destroy(&parsed);
    return rc;
}

struct config *config_load(const char *path, const char *name, char *err, size_t errlen)
{
    struct config_loader ld = {.path = path,
                               .name = name != NULL ? name : path,
                               .err = err,
                               .errlen = errlen};
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    size_t len = 0;
    char *text = NULL;
    if (read_source(&ld, &text, &len) != 0)
        return NULL;
    int rc = config_scan(text, len, &ld.scan);
    struct config *cfg = NULL;
    if (rc == -ENOMEM)
        value_out_of_memory(&ld);
    else if (rc < 0)
        value_refuse(&ld, ld.scan.line, "", NULL, "%s", ld.scan.why);
    else
        load_text(&ld, text, &cfg);
    free(text);
    free(ld.info);
    config_scan_free(&ld.scan);
    free(ld.taken);
    return cfg;
}

struct config *config_ref(struct config *cfg)
{
    atomic_fetch_add(&cfg->refs, 1);
    return cfg;
}

void config_free(struct config *cfg)
{
    if (cfg == NULL || atomic_fetch_sub(&cfg->refs, 1) > 1)
        return;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        free_listener(&cfg->listeners[i]);
    free(cfg->listeners);
    free(cfg->stats.text);
    free(cfg->stats_allow);
    free(cfg->stats_deny);
    free(cfg->path);
    free(cfg->user);
    free(cfg->pidfile);
    free(cfg->control_path);
    free(cfg);
}
