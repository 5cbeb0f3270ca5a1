/*
 * The TLS settings of a listener: `tls` (terminating), `upstream_tls`
 * (originating) and `sni_routes` (routing by the ClientHello's server
 * name, without decrypting).  The table (config-table.c) reads their plain
 * keys; here are the lists, the required keys, the paths and the contexts,
 * built as the configuration loads so that an unusable certificate or key
 * refuses the file with its line, like any other mistake.
 *
 * A relative path is taken from $CREDENTIALS_DIRECTORY when systemd set it
 * (LoadCredential=, readable by the service's user), else from the
 * directory of the configuration file.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-table.h"
#include "hello.h"
#include "tls.h"

/* The longest path kept. */
#define PATH_MAX_LEN 4096

/* Makes *path absolute (see above); "" stays "". */
static int absolute(struct config_loader *ld, char **path)
{
    if (*path == NULL || (*path)[0] == '\0' || (*path)[0] == '/')
        return 0;
    const char *creds = getenv("CREDENTIALS_DIRECTORY");
    char dir[PATH_MAX_LEN];
    if (creds != NULL && creds[0] != '\0') {
        snprintf(dir, sizeof(dir), "%s", creds);
    } else {
        const char *slash = strrchr(ld->path, '/');
        if (slash == NULL)
            snprintf(dir, sizeof(dir), ".");
        else
            snprintf(dir, sizeof(dir), "%.*s", (int)(slash - ld->path), ld->path);
    }
    size_t len = strlen(dir) + 1 + strlen(*path) + 1;
    char *joined = malloc(len);
    if (joined == NULL)
        return value_out_of_memory(ld);
    snprintf(joined, len, "%s/%s", dir, *path);
    free(*path);
    *path = joined;
    return 0;
}

/* The line of setting `key` of g, else g's. */
static int line_of(const config_setting_t *g, const char *key)
{
    const config_setting_t *s = key != NULL ? config_setting_get_member(g, key) : NULL;
    return value_line(s != NULL ? s : g);
}

/* Refuses a group without `key`, a string that must be given. */
static int require(struct config_loader *ld, const config_setting_t *g, const char *scope,
                   const char *key, const char *value, const char *what)
{
    if (value != NULL && value[0] != '\0')
        return 0;
    return value_refuse(ld, line_of(g, key), scope, key, "%s; expected %s",
                        value == NULL ? "missing" : "empty", what);
}

/* Refuses g unless it is a group of no keys but `a` and `b`; `shape`
 * shows one for the message ("{ a = ...; b = ...; }"). */
static int check_group(struct config_loader *ld, const config_setting_t *g,
                       const char *scope, const char *a, const char *b, const char *shape)
{
    char got[VALUE_QUOTE_BUF];
    if (!config_setting_is_group(g))
        return value_refuse(ld, value_line(g), scope, NULL, "expected a group %s, got %s",
                            shape, value_describe(ld, g, got));
    for (int m = 0; m < config_setting_length(g); m++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)m);
        const char *name = config_setting_name(s);
        if (strcmp(name, a) != 0 && strcmp(name, b) != 0)
            return value_refuse(ld, value_line(s), scope, name,
                                "unknown setting (known: %s, %s)", a, b);
    }
    return 0;
}

/* Loads one { certificate = ...; key = ...; } group into pair; scope names
 * it.  Both are required. */
static int load_pair(struct config_loader *ld, const config_setting_t *g,
                     const char *scope, struct tls_pair *pair)
{
    int rc = check_group(ld, g, scope, "certificate", "key",
                         "{ certificate = \"...\"; key = \"...\"; }");
    if (rc != 0)
        return rc;
    pair->line = value_line(g);
    if ((rc = value_string(ld, g, scope, "certificate", &pair->certificate)) != 0 ||
        (rc = value_string(ld, g, scope, "key", &pair->key)) != 0 ||
        (rc = require(ld, g, scope, "certificate", pair->certificate,
                      "the path of a PEM certificate chain")) != 0 ||
        (rc = require(ld, g, scope, "key", pair->key,
                      "the path of its PEM private key")) != 0)
        return rc;
    if ((rc = absolute(ld, &pair->certificate)) != 0)
        return rc;
    return absolute(ld, &pair->key);
}

/* The list `key` of g, whose elements are groups like `shape`: *list and
 * its length, with an array of that many zeroed elements of `size` bytes
 * in *array (none when the list is absent or empty); -errno with the
 * message written. */
static int group_list(struct config_loader *ld, const config_setting_t *g,
                      const char *scope, const char *key, const char *shape, size_t size,
                      const config_setting_t **list, void **array)
{
    char got[VALUE_QUOTE_BUF];
    *list = config_setting_get_member(g, key);
    if (*list == NULL)
        return 0;
    if (!value_is_sequence(*list)) {
        /* -EINVAL, said so (value_refuse() is variadic: the analyzer does
         * not follow it to its return). */
        (void)value_refuse(ld, value_line(*list), scope, key,
                           "expected a list of groups ( %s, ... ), got %s", shape,
                           value_describe(ld, *list, got));
        return -EINVAL;
    }
    int n = config_setting_length(*list);
    if (n <= 0)
        return 0;
    if ((*array = calloc((size_t)n, size)) == NULL) {
        (void)value_out_of_memory(ld);
        return -ENOMEM;
    }
    return n;
}

int config_load_tls_certificates(struct config_loader *ld, const config_setting_t *g,
                                 const char *scope, const struct setting *row, void *base)
{
    struct listener_config *lc = base;
    const config_setting_t *list;
    char elem[200];
    (void)row;
    void *array = NULL;
    int n = group_list(ld, g, scope, "certificates",
                       "{ certificate = \"...\"; key = \"...\"; }", sizeof(*lc->tls.more),
                       &list, &array);
    lc->tls.more = array;
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++) {
        snprintf(elem, sizeof(elem), "%s.certificates.[%d]", scope, i);
        lc->tls.nmore++;
        int rc = load_pair(ld, config_setting_get_elem(list, (unsigned)i), elem,
                           &lc->tls.more[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int config_load_tls_alpn(struct config_loader *ld, const config_setting_t *g,
                         const char *scope, const struct setting *row, void *base)
{
    struct listener_config *lc = base;
    const config_setting_t *list;
    char q[VALUE_QUOTE_BUF], elem[32];
    (void)row;
    int rc;
    if ((rc = value_strings(ld, g, scope, "alpn", &list)) != 0 || list == NULL)
        return rc;
    int n = config_setting_length(list);
    if (n == 0)
        return 0;
    lc->tls.alpn = calloc((size_t)n, sizeof(*lc->tls.alpn));
    if (lc->tls.alpn == NULL)
        return value_out_of_memory(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *text = config_setting_get_string(e);
        size_t len = strlen(text);
        bool printable = len > 0 && len < 256;
        for (size_t k = 0; k < len && printable; k++)
            printable = text[k] > ' ' && text[k] < 0x7f;
        snprintf(elem, sizeof(elem), "alpn.[%d]", i);
        if (!printable)
            return value_refuse(ld, value_line(e), scope, elem,
                                "expected a protocol name of 1-255 printable characters "
                                "like \"h2\" or \"http/1.1\", got %s",
                                value_quote(q, text));
        if ((lc->tls.alpn[i] = strdup(text)) == NULL)
            return value_out_of_memory(ld);
        lc->tls.nalpn++;
    }
    return 0;
}

/* Loads route i of sni_routes, the group g, into r. */
static int load_route(struct config_loader *ld, const config_setting_t *g,
                      const char *scope, const struct listener_config *lc,
                      struct sni_route *r)
{
    char got[VALUE_QUOTE_BUF];
    int rc = check_group(ld, g, scope, "server_name", "upstreams",
                         "{ server_name = \"...\"; upstreams = [ ... ]; }");
    if (rc != 0)
        return rc;
    r->line = value_line(g);
    if ((rc = value_string(ld, g, scope, "server_name", &r->server_name)) != 0 ||
        (rc = require(ld, g, scope, "server_name", r->server_name,
                      "a host name like \"a.example\" or \"*.b.example\"")) != 0)
        return rc;
    if (!hello_pattern_valid(r->server_name))
        return value_refuse(ld, line_of(g, "server_name"), scope, "server_name",
                            "expected a host name like \"a.example\" or a wildcard like "
                            "\"*.b.example\", got %s",
                            value_quote(got, r->server_name));
    for (char *c = r->server_name; *c != '\0'; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    return config_upstream_list(ld, g, scope, "upstreams", lc->name, &r->upstreams,
                                &r->nupstreams);
}

int config_load_sni_routes(struct config_loader *ld, const config_setting_t *g,
                           const char *scope, const struct setting *row, void *base)
{
    struct listener_config *lc = base;
    const config_setting_t *list;
    char elem[200];
    (void)row;
    void *array = NULL;
    int n = group_list(ld, g, scope, "sni_routes",
                       "{ server_name = \"...\"; upstreams = [ ... ]; }",
                       sizeof(*lc->sni_routes), &list, &array);
    lc->sni_routes = array;
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++) {
        snprintf(elem, sizeof(elem), "%s.sni_routes.[%d]", scope, i);
        lc->nsni_routes++;
        int rc = load_route(ld, config_setting_get_elem(list, (unsigned)i), elem, lc,
                            &lc->sni_routes[i]);
        if (rc != 0)
            return rc;
        /* Each route loaded has its name (load_route() refuses one without). */
        for (int j = 0; j < i; j++)
            /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): above */
            if (strcmp(lc->sni_routes[j].server_name, lc->sni_routes[i].server_name) == 0)
                return value_refuse(ld, lc->sni_routes[i].line, elem, "server_name",
                                    "\"%s\" is routed already (at line %d)",
                                    lc->sni_routes[i].server_name,
                                    lc->sni_routes[j].line);
    }
    return 0;
}

/* Loads `connect_timeout`: a relay's, or an echo listener's with tls (it
 * bounds the handshake). */
int config_load_connect_timeout(struct config_loader *ld, const config_setting_t *g,
                                const char *scope, const struct setting *row, void *base)
{
    const struct listener_config *lc = base;
    const config_setting_t *s = config_setting_get_member(g, "connect_timeout");
    if (s != NULL && lc->mode == MODE_ECHO && config_setting_get_member(g, "tls") == NULL)
        return value_refuse(ld, value_line(s), scope, "connect_timeout",
                            "only for mode = \"proxy\", or with tls (it bounds the "
                            "handshake); this listener's mode is \"echo\"");
    return table_load_value(ld, g, scope, row, base);
}

/* The message for a context that could not be built: the setting at
 * fault in group g (named `inner`), with its line. */
static int refuse_context(struct config_loader *ld, const config_setting_t *g,
                          const char *inner, int rc, const struct tls_problem *p)
{
    if (rc == -ENOMEM)
        return value_out_of_memory(ld);
    if (rc == -ENOTSUP)
        return value_refuse(ld, value_line(g), inner, NULL,
                            "mio-echod was built without TLS (configure found no OpenSSL "
                            "3: install libssl-dev and build again)");
    const config_setting_t *at = g;
    char first[48];
    snprintf(first, sizeof(first), "%s", p->setting);
    char *dot = strchr(first, '.');
    if (dot != NULL)
        *dot = '\0';
    if (config_setting_get_member(g, first) != NULL)
        at = config_setting_get_member(g, first);
    static const char more[] = "certificates.[";
    if (strncmp(p->setting, more, sizeof(more) - 1) == 0 && config_setting_is_list(at)) {
        long idx = strtol(p->setting + sizeof(more) - 1, NULL, 10);
        if (idx >= 0 && idx < config_setting_length(at))
            at = config_setting_get_elem(at, (unsigned)idx);
    }
    return value_refuse(ld, value_line(at), inner, p->setting, "%s", p->why);
}

/* The terminating side: the group's required keys, its paths, its
 * contexts. */
static int check_tls(struct config_loader *ld, const config_setting_t *tg,
                     const char *inner, struct listener_config *lc)
{
    struct tls_config *t = &lc->tls;
    int rc;
    t->on = true;
    if ((rc = require(ld, tg, inner, "certificate", t->pair.certificate,
                      "the path of a PEM certificate chain, leaf first")) != 0 ||
        (rc = require(ld, tg, inner, "key", t->pair.key,
                      "the path of the certificate's PEM private key")) != 0 ||
        (rc = absolute(ld, &t->pair.certificate)) != 0 ||
        (rc = absolute(ld, &t->pair.key)) != 0 || (rc = absolute(ld, &t->client_ca)) != 0)
        return rc;
    t->pair.line = value_line(tg);
    struct tls_problem p;
    if ((rc = tls_server_new(t, &t->server, &p)) != 0)
        return refuse_context(ld, tg, inner, rc, &p);
    return 0;
}

/* The originating side: the client certificate's pair, the paths, a name
 * to verify for every upstream, the context. */
static int check_upstream_tls(struct config_loader *ld, const config_setting_t *ug,
                              const char *inner, struct listener_config *lc)
{
    struct upstream_tls_config *u = &lc->upstream_tls;
    int rc;
    u->on = true;
    bool cert = u->pair.certificate[0] != '\0', key = u->pair.key[0] != '\0';
    if (cert != key)
        return value_refuse(
            ld, line_of(ug, cert ? "certificate" : "key"), inner,
            cert ? "key" : "certificate",
            "missing; a client certificate needs both certificate and key");
    if ((rc = absolute(ld, &u->ca)) != 0 ||
        (rc = absolute(ld, &u->pair.certificate)) != 0 ||
        (rc = absolute(ld, &u->pair.key)) != 0)
        return rc;
    for (size_t i = 0; u->verify && u->server_name[0] == '\0' && i < lc->nupstreams; i++)
        if (lc->upstreams[i].addr.u.sa.sa_family == AF_UNIX)
            return value_refuse(
                ld, line_of(ug, NULL), inner, "server_name",
                "empty, but upstream \"%s\" is a Unix socket, which has no "
                "host name to verify; give the name its certificate has "
                "(or verify = false)",
                lc->upstreams[i].text);
    /* A session slot for each upstream address, own and routes', in the
     * order the listener lays them out (generation.c). */
    size_t nslots = 0;
    for (size_t i = 0; i < lc->nupstreams; i++)
        nslots += lc->upstreams[i].naddrs;
    for (size_t r = 0; r < lc->nsni_routes; r++)
        for (size_t i = 0; i < lc->sni_routes[r].nupstreams; i++)
            nslots += lc->sni_routes[r].upstreams[i].naddrs;
    struct tls_problem p;
    if ((rc = tls_client_new(u, nslots, &u->client, &p)) != 0)
        return refuse_context(ld, ug, inner, rc, &p);
    return 0;
}

int config_check_tls(struct config_loader *ld, const config_setting_t *g,
                     const char *scope, struct listener_config *lc)
{
    char inner[160];
    const config_setting_t *tg = config_setting_get_member(g, "tls");
    const config_setting_t *ug = config_setting_get_member(g, "upstream_tls");
    int rc;
    if (tg != NULL) {
        snprintf(inner, sizeof(inner), "%s.tls", scope);
        if ((rc = check_tls(ld, tg, inner, lc)) != 0)
            return rc;
    }
    if (ug != NULL) {
        snprintf(inner, sizeof(inner), "%s.upstream_tls", scope);
        if ((rc = check_upstream_tls(ld, ug, inner, lc)) != 0)
            return rc;
    }
    return 0;
}

void config_tls_files(const struct config *cfg, void (*each)(const char *file, void *arg),
                      void *arg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct tls_config *t = &cfg->listeners[i].tls;
        const struct upstream_tls_config *u = &cfg->listeners[i].upstream_tls;
        const char *files[] = {
            t->on ? t->pair.certificate : NULL, t->on ? t->pair.key : NULL,
            t->on ? t->client_ca : NULL,        u->on ? u->ca : NULL,
            u->on ? u->pair.certificate : NULL, u->on ? u->pair.key : NULL,
        };
        for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++)
            if (files[k] != NULL && files[k][0] != '\0')
                each(files[k], arg);
        for (size_t k = 0; t->on && k < t->nmore; k++) {
            each(t->more[k].certificate, arg);
            each(t->more[k].key, arg);
        }
    }
}

void config_tls_expiry(const struct config *cfg, time_t now, int days,
                       void (*each)(const char *listener, const char *file,
                                    long days_left, void *arg),
                       void *arg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct tls_server *s = cfg->listeners[i].tls.server;
        struct tls_cert_info info[16];
        size_t n = s != NULL ? tls_server_certs(s, info, 16) : 0;
        for (size_t k = 0; k < n && k < 16; k++) {
            /* Whole days left, rounded down; negative once expired. */
            long long secs = (long long)info[k].not_after - (long long)now;
            long long whole = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
            if (info[k].not_after != 0 && secs < (long long)days * 86400)
                each(cfg->listeners[i].name, info[k].file, (long)whole, arg);
        }
    }
}

void config_free_tls(struct listener_config *lc)
{
    struct tls_config *t = &lc->tls;
    tls_server_free(t->server);
    free(t->pair.certificate);
    free(t->pair.key);
    for (size_t i = 0; i < t->nmore; i++) {
        free(t->more[i].certificate);
        free(t->more[i].key);
    }
    free(t->more);
    free(t->client_ca);
    free(t->ciphers);
    free(t->ciphersuites);
    for (size_t i = 0; i < t->nalpn; i++)
        free(t->alpn[i]);
    free(t->alpn);
    struct upstream_tls_config *u = &lc->upstream_tls;
    tls_client_free(u->client);
    free(u->ca);
    free(u->server_name);
    free(u->pair.certificate);
    free(u->pair.key);
    for (size_t i = 0; i < lc->nsni_routes; i++) {
        free(lc->sni_routes[i].server_name);
        config_free_addrs(lc->sni_routes[i].upstreams, lc->sni_routes[i].nupstreams);
    }
    free(lc->sni_routes);
}
