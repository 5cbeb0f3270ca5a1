/*
 * TLS contexts: what a listener's `tls` and a relay's `upstream_tls` make
 * of their files when the configuration loads, so that a certificate, key
 * or CA that cannot be used refuses the whole configuration (at start, at
 * -t, and at a reload, which then keeps the old one).
 *
 * A server has one SSL_CTX per certificate, the first the default: the
 * servername callback moves a handshake to the context of the first
 * certificate whose names (SAN, else CN; wildcards as X509_check_host()
 * allows) cover the name the client asked for.  Every context has the
 * same versions, ciphers, client CA and ALPN.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tls-internal.h"

bool tls_built(void)
{
    return true;
}

const char *tls_library(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

bool tls_ktls_offered(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "re");
    char line[256];
    bool found = false;
    if (f == NULL)
        return false;
    if (fgets(line, sizeof(line), f) != NULL)
        for (char *save = NULL, *w = strtok_r(line, " \t\n", &save); w != NULL && !found;
             w = strtok_r(NULL, " \t\n", &save))
            found = strcmp(w, "tls") == 0;
    fclose(f);
    return found;
}

/* Writes the problem of `setting` into p; returns -EINVAL. */
__attribute__((format(printf, 3, 4))) static int
refuse(struct tls_problem *p, const char *setting, const char *fmt, ...)
{
    snprintf(p->setting, sizeof(p->setting), "%s", setting);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof(p->why), fmt, ap);
    va_end(ap);
    ERR_clear_error();
    return -EINVAL;
}

/* OpenSSL's reason for its last error, or `fallback`. */
static const char *ssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : fallback;
}

/* Refuses a file the daemon cannot open, naming who it runs as when that
 * is not root (a key readable by root only, after the privilege drop). */
static int check_readable(struct tls_problem *p, const char *setting, const char *file)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    int err = errno;
    if (err == EACCES && geteuid() != 0) {
        /* A user systemd allocated (DynamicUser=) may have no name where
         * nss-systemd is not configured: the uid says it then. */
        struct passwd pw, *found = NULL;
        char pwbuf[1024];
        if (getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &found) == 0 &&
            found != NULL)
            return refuse(p, setting, "cannot read %s as user %s (uid %u): %s", file,
                          found->pw_name, (unsigned)geteuid(), log_strerror(err));
        return refuse(p, setting, "cannot read %s as uid %u: %s", file,
                      (unsigned)geteuid(), log_strerror(err));
    }
    return refuse(p, setting, "cannot read %s: %s", file, log_strerror(err));
}

/* Loads a certificate chain and its key into ctx and checks that they
 * belong together; `where` names the pair's settings ("", "certificates.[0].",
 * "upstream" ones are relative to their group). */
static int load_pair(SSL_CTX *ctx, const struct tls_pair *pair, const char *where,
                     struct tls_problem *p)
{
    char cert_key[40], key_key[40];
    snprintf(cert_key, sizeof(cert_key), "%scertificate", where);
    snprintf(key_key, sizeof(key_key), "%skey", where);
    int rc;
    if ((rc = check_readable(p, cert_key, pair->certificate)) != 0 ||
        (rc = check_readable(p, key_key, pair->key)) != 0)
        return rc;
    if (SSL_CTX_use_certificate_chain_file(ctx, pair->certificate) != 1)
        return refuse(p, cert_key, "%s: not a usable PEM certificate chain: %s",
                      pair->certificate, ssl_reason("unreadable"));
    if (SSL_CTX_use_PrivateKey_file(ctx, pair->key, SSL_FILETYPE_PEM) != 1)
        return refuse(p, key_key, "%s: not a usable PEM private key for %s: %s",
                      pair->key, pair->certificate, ssl_reason("unreadable"));
    if (SSL_CTX_check_private_key(ctx) != 1)
        return refuse(p, key_key, "%s does not match the certificate %s: %s", pair->key,
                      pair->certificate, ssl_reason("mismatch"));
    return 0;
}

/* The options every context has: no renegotiation, buffers released when
 * idle (an idle connection holds none), writes that may be partial and
 * retried from a buffer that moved (the halves' held bytes), kTLS where
 * the kernel has it, and read-ahead: a record is read with one read(2)
 * (with what follows it), not its header and then its body. */
static void common_options(SSL_CTX *ctx)
{
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 (tls_ktls_offered() ? SSL_OP_ENABLE_KTLS : 0));
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/* Sets the versions and ciphers of cfg on ctx. */
static int set_protocol(SSL_CTX *ctx, int min_version, const char *ciphers,
                        const char *suites, struct tls_problem *p)
{
    SSL_CTX_set_min_proto_version(ctx, min_version);
    if (ciphers[0] != '\0' && SSL_CTX_set_cipher_list(ctx, ciphers) != 1)
        return refuse(p, "ciphers", "\"%s\": no cipher OpenSSL knows: %s", ciphers,
                      ssl_reason("no match"));
    if (suites[0] != '\0' && SSL_CTX_set_ciphersuites(ctx, suites) != 1)
        return refuse(p, "ciphersuites",
                      "\"%s\": not TLS 1.3 cipher suites OpenSSL knows: %s", suites,
                      ssl_reason("no match"));
    return 0;
}

/* Chooses the context of the first certificate that covers the name the
 * client asked for; the default one otherwise. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    struct tls_server *s = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    (void)alert;
    if (name == NULL || s->nctx < 2)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < s->nctx; i++) {
        if (X509_check_host(s->leaf[i], name, 0, 0, NULL) != 1)
            continue;
        if (i != 0)
            SSL_set_SSL_CTX(ssl, s->ctx[i]);
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* Picks the first of our protocols the client offers (ALPN); none in
 * common: the handshake goes on without one. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    const struct tls_server *s = arg;
    (void)ssl;
    for (size_t o = 0; o < s->alpn_len; o += 1u + s->alpn[o])
        for (unsigned i = 0; i < inlen; i += 1u + in[i])
            if (in[i] == s->alpn[o] && i + 1u + in[i] <= inlen &&
                memcmp(in + i + 1, s->alpn + o + 1, in[i]) == 0) {
                *out = in + i + 1;
                *outlen = in[i];
                return SSL_TLSEXT_ERR_OK;
            }
    return SSL_TLSEXT_ERR_NOACK;
}

/* Asks clients for a certificate signed by one of the CAs in file. */
static int set_client_ca(SSL_CTX *ctx, const char *file, struct tls_problem *p)
{
    int rc;
    if ((rc = check_readable(p, "client_ca", file)) != 0)
        return rc;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(file);
    if (names == NULL || SSL_CTX_load_verify_locations(ctx, file, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return refuse(p, "client_ca", "%s: no usable PEM CA certificate: %s", file,
                      ssl_reason("unreadable"));
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return 0;
}

/* Builds the context of certificate i of cfg (0: the default) into s. */
static int server_context(struct tls_server *s, const struct tls_config *cfg, size_t i,
                          struct tls_problem *p)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return -ENOMEM;
    s->ctx[i] = ctx;
    common_options(ctx);
    /* Resumption: stateless tickets only; the id context lets a client
     * resume where client certificates are asked. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    static const unsigned char sid[] = "mio-echod";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    char where[40] = "";
    if (i > 0)
        snprintf(where, sizeof(where), "certificates.[%zu].", i - 1);
    const struct tls_pair *pair = i == 0 ? &cfg->pair : &cfg->more[i - 1];
    int rc;
    if ((rc = load_pair(ctx, pair, where, p)) != 0 ||
        (rc = set_protocol(ctx,
                           cfg->min_version == TLS_VERSION_1_3 ? TLS1_3_VERSION
                                                               : TLS1_2_VERSION,
                           cfg->ciphers, cfg->ciphersuites, p)) != 0)
        return rc;
    if (cfg->client_ca[0] != '\0' && (rc = set_client_ca(ctx, cfg->client_ca, p)) != 0)
        return rc;
    s->leaf[i] = SSL_CTX_get0_certificate(ctx);
    const ASN1_TIME *end = X509_get0_notAfter(s->leaf[i]);
    struct tm tm;
    s->not_after[i] = end != NULL && ASN1_TIME_to_tm(end, &tm) == 1 ? timegm(&tm) : 0;
    s->file[i] = pair->certificate;
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, s);
    if (s->alpn_len > 0)
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn, s);
    return 0;
}

int tls_server_new(const struct tls_config *cfg, struct tls_server **out,
                   struct tls_problem *p)
{
    size_t n = 1 + cfg->nmore, alpn_len = 0;
    for (size_t i = 0; i < cfg->nalpn; i++)
        alpn_len += 1 + strlen(cfg->alpn[i]);
    struct tls_server *s = calloc(1, sizeof(*s) + alpn_len);
    if (s == NULL)
        return -ENOMEM;
    s->ctx = calloc(n, sizeof(SSL_CTX *));
    s->leaf = calloc(n, sizeof(X509 *));
    s->not_after = calloc(n, sizeof(*s->not_after));
    s->file = calloc(n, sizeof(*s->file));
    s->nctx = n;
    int rc = -ENOMEM;
    if (s->ctx == NULL || s->leaf == NULL || s->not_after == NULL || s->file == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->nalpn; i++) {
        size_t len = strlen(cfg->alpn[i]);
        s->alpn[s->alpn_len] = (unsigned char)len;
        memcpy(s->alpn + s->alpn_len + 1, cfg->alpn[i], len);
        s->alpn_len += 1 + len;
    }
    for (size_t i = 0; i < n; i++)
        if ((rc = server_context(s, cfg, i, p)) != 0)
            goto fail;
    *out = s;
    return 0;
fail:
    tls_server_free(s);
    ERR_clear_error();
    return rc;
}

void tls_server_free(struct tls_server *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; s->ctx != NULL && i < s->nctx; i++)
        SSL_CTX_free(s->ctx[i]);
    free(s->ctx);
    free(s->leaf);
    free(s->not_after);
    free(s->file);
    free(s);
}

size_t tls_server_certs(const struct tls_server *s, struct tls_cert_info *out, size_t max)
{
    for (size_t i = 0; i < s->nctx && i < max; i++)
        out[i] = (struct tls_cert_info){.file = s->file[i], .not_after = s->not_after[i]};
    return s->nctx;
}

static int slot_index = -1;
static pthread_once_t slot_once = PTHREAD_ONCE_INIT;

static void slot_index_make(void)
{
    slot_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

int tls_slot_index(void)
{
    pthread_once(&slot_once, slot_index_make);
    return slot_index;
}

/* Keeps a session an upstream gave (a TLS 1.3 ticket comes after the
 * handshake) in the slot of its address, for the next connection there. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_client *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    uintptr_t slot = (uintptr_t)SSL_get_ex_data(ssl, tls_slot_index());
    if (c == NULL || slot == 0 || slot > c->nslots)
        return 0; /* not kept: OpenSSL frees it */
    pthread_mutex_lock(&c->mu);
    SSL_SESSION *old = c->slot[slot - 1];
    c->slot[slot - 1] = sess;
    pthread_mutex_unlock(&c->mu);
    SSL_SESSION_free(old);
    return 1; /* ours now */
}

int tls_client_new(const struct upstream_tls_config *cfg, size_t nslots,
                   struct tls_client **out, struct tls_problem *p)
{
    struct tls_client *c = calloc(1, sizeof(*c) + nslots * sizeof(SSL_SESSION *));
    if (c == NULL)
        return -ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    c->nslots = nslots;
    c->ctx = SSL_CTX_new(TLS_client_method());
    c->verify = cfg->verify;
    int rc = -ENOMEM;
    if (c->ctx == NULL || tls_slot_index() < 0)
        goto fail;
    common_options(c->ctx);
    /* Resumption: each address's last session, kept by on_new_session(),
     * not in OpenSSL's cache. */
    SSL_CTX_set_app_data(c->ctx, c);
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT |
                                               SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c->ctx, on_new_session);
    if ((rc = set_protocol(c->ctx, TLS1_2_VERSION, "", "", p)) != 0)
        goto fail;
    if (cfg->ca[0] != '\0') {
        if ((rc = check_readable(p, "ca", cfg->ca)) != 0)
            goto fail;
        if (SSL_CTX_load_verify_locations(c->ctx, cfg->ca, NULL) != 1) {
            rc = refuse(p, "ca", "%s: no usable PEM CA certificate: %s", cfg->ca,
                        ssl_reason("unreadable"));
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        rc = refuse(p, "ca", "the system's CA certificates cannot be loaded: %s",
                    ssl_reason("unreadable"));
        goto fail;
    }
    if (cfg->pair.certificate[0] != '\0' &&
        (rc = load_pair(c->ctx, &cfg->pair, "", p)) != 0)
        goto fail;
    SSL_CTX_set_verify(c->ctx, cfg->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    *out = c;
    return 0;
fail:
    tls_client_free(c);
    ERR_clear_error();
    return rc;
}

void tls_client_free(struct tls_client *c)
{
    if (c == NULL)
        return;
    SSL_CTX_free(c->ctx);
    for (size_t i = 0; i < c->nslots; i++)
        SSL_SESSION_free(c->slot[i]);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
