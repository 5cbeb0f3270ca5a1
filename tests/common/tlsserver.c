/*
 * The TLS test server (see tlsserver.h): the callbacks of a test server,
 * each connection an SSL object over its non-blocking socket, moved by
 * the server's poll loop as OpenSSL asks (readable or writable).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "base.h"
#include "tlsserver.h"

#define RECORD_MAX (4 * MIB)
#define IO_CHUNK 16384

struct tconn {
    struct tlss *s;
    SSL *ssl;
    bool hs_done, rd_end, replied;
    short want;  /* what OpenSSL waits for: POLLIN or POLLOUT (0: nothing) */
    uint8_t *tx; /* to send */
    size_t txlen, txoff, txcap;
    struct tlss_seen *seen;
};

/* Every server running, for tlss_stop_all(). */
static struct tlss *running[16];
static size_t nrunning;

/* OpenSSL's queued errors (or errno), as one line into seen->err. */
static void note_error(struct tconn *c, const char *what, int sslerr)
{
    int saved = errno;
    unsigned long e = ERR_peek_last_error();
    char buf[200] = "";
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    else if (sslerr == SSL_ERROR_SYSCALL)
        snprintf(buf, sizeof(buf), "%s", saved != 0 ? strerror(saved) : "EOF");
    snprintf(c->seen->err, sizeof(c->seen->err), "%s: %s", what, buf);
    ERR_clear_error();
}

/* Appends p[0..n) to what c sends. */
static bool queue(struct tconn *c, const void *p, size_t n)
{
    if (c->txoff == c->txlen)
        c->txoff = c->txlen = 0;
    if (c->txlen + n > c->txcap) {
        size_t cap = c->txcap ? c->txcap : 65536;
        while (c->txlen + n > cap)
            cap *= 2;
        uint8_t *tx = realloc(c->tx, cap);
        if (tx == NULL)
            return false;
        c->tx = tx;
        c->txcap = cap;
    }
    memcpy(c->tx + c->txlen, p, n);
    c->txlen += n;
    return true;
}

/* Chooses the first of the server's protocols the client offers. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    const unsigned char *ours = arg;
    unsigned char *chosen;
    if (SSL_select_next_proto(&chosen, outlen, ours + 1, ours[0], in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

static void *tc_open(struct tserver *srv, int fd)
{
    struct tlss *s = (struct tlss *)srv;
    struct tconn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->s = s;
    c->seen = calloc(1, sizeof(*c->seen));
    c->ssl = SSL_new(s->ctx);
    if (c->seen == NULL || c->ssl == NULL || !SSL_set_fd(c->ssl, fd)) {
        SSL_free(c->ssl);
        free(c->seen);
        free(c);
        return NULL;
    }
    SSL_set_accept_state(c->ssl);
    c->want = POLLIN;
    return c;
}

static short tc_events(struct tserver *srv, void *conn)
{
    (void)srv;
    struct tconn *c = conn;
    short ev = c->want;
    if (c->hs_done && !c->rd_end)
        ev |= POLLIN;
    if (c->txoff < c->txlen)
        ev |= POLLOUT;
    return ev != 0 ? ev : POLLIN;
}

/* What the handshake agreed, into c->seen. */
static void note_handshake(struct tconn *c)
{
    struct tlss_seen *w = c->seen;
    w->handshake_ok = true;
    const char *sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
    snprintf(w->sni, sizeof(w->sni), "%s", sni != NULL ? sni : "");
    snprintf(w->version, sizeof(w->version), "%s", SSL_get_version(c->ssl));
    w->resumed = SSL_session_reused(c->ssl) == 1;
    const unsigned char *p;
    unsigned len;
    SSL_get0_alpn_selected(c->ssl, &p, &len);
    snprintf(w->alpn, sizeof(w->alpn), "%.*s", (int)len,
             p != NULL ? (const char *)p : "");
    X509 *peer = SSL_get1_peer_certificate(c->ssl);
    if (peer != NULL) {
        X509_NAME_oneline(X509_get_subject_name(peer), w->peer, (int)sizeof(w->peer));
        X509_free(peer);
    }
}

/* Reads what is there (64 reads at most), recording it and, for an echo,
 * queueing it; notes the client's end.  False when the connection failed. */
static bool tc_read(struct tconn *c)
{
    struct tlss *s = c->s;
    size_t keep = s->conf.record_max ? s->conf.record_max : RECORD_MAX;
    struct tlss_seen *w = c->seen;
    uint8_t buf[IO_CHUNK];
    for (int k = 0; k < 64 && !c->rd_end; k++) {
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        if (SSL_read_ex(c->ssl, buf, sizeof(buf), &n) == 1) {
            w->rxtotal += n;
            if (w->rxlen < keep) {
                size_t take = keep - w->rxlen < n ? keep - w->rxlen : n;
                uint8_t *rx = realloc(w->rx, w->rxlen + take);
                if (rx == NULL)
                    return false;
                memcpy(rx + w->rxlen, buf, take);
                w->rx = rx;
                w->rxlen += take;
            }
            if (s->conf.mode == TLSS_ECHO && !queue(c, buf, n))
                return false;
            continue;
        }
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            c->want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
            return true;
        }
        c->rd_end = true;
        if (e == SSL_ERROR_ZERO_RETURN) {
            w->end = TLS_END_CLOSE_NOTIFY;
            atomic_fetch_add(&s->close_notifies, 1);
            return true;
        }
        unsigned long last = ERR_peek_last_error();
        note_error(c, "read", e);
        if ((e == SSL_ERROR_SYSCALL && errno == ECONNRESET)) {
            w->end = TLS_END_RESET;
        } else if ((e == SSL_ERROR_SYSCALL && last == 0) ||
                   (e == SSL_ERROR_SSL &&
                    ERR_GET_REASON(last) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
            w->end = TLS_END_TRUNCATED;
            atomic_fetch_add(&s->truncations, 1);
        } else {
            w->end = TLS_END_ALERT;
        }
        return false;
    }
    return true;
}

/* Sends what is queued; false when the connection failed. */
static bool tc_write(struct tconn *c)
{
    while (c->txoff < c->txlen) {
        size_t want = c->txlen - c->txoff < IO_CHUNK ? c->txlen - c->txoff : IO_CHUNK;
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        if (SSL_write_ex(c->ssl, c->tx + c->txoff, want, &n) == 1) {
            c->txoff += n;
            continue;
        }
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            c->want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
            return true;
        }
        note_error(c, "write", e);
        return false;
    }
    return true;
}

/* Moves the connection on; true when it is over. */
static bool tc_service(struct tserver *srv, void *conn)
{
    (void)srv;
    struct tconn *c = conn;
    struct tlss *s = c->s;
    c->want = 0;
    if (!c->hs_done) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                c->want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
                return false;
            }
            note_error(c, "handshake", e);
            const char *sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
            snprintf(c->seen->sni, sizeof(c->seen->sni), "%s", sni != NULL ? sni : "");
            atomic_fetch_add(&s->failures, 1);
            return true;
        }
        c->hs_done = true;
        note_handshake(c);
        atomic_fetch_add(&s->handshakes, 1);
    }
    if (!tc_read(c))
        return true;
    if (c->rd_end && s->conf.mode == TLSS_REPLY_EOF && !c->replied) {
        c->replied = true;
        if (s->conf.reply_len > 0 && !queue(c, s->conf.reply, s->conf.reply_len))
            return true;
    }
    if (!tc_write(c))
        return true;
    if (!c->rd_end || c->txoff < c->txlen)
        return false;
    ERR_clear_error();
    int r = SSL_shutdown(c->ssl);
    if (r < 0) {
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            c->want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
            return false;
        }
        note_error(c, "close_notify", e);
    }
    return true;
}

static void tc_free(struct tserver *srv, void *conn)
{
    (void)srv;
    struct tconn *c = conn;
    struct tlss *s = c->s;
    pthread_mutex_lock(&s->mu);
    if (s->nseen == s->capseen) {
        size_t cap = s->capseen ? 2 * s->capseen : 16;
        struct tlss_seen **seen = realloc(s->seen, cap * sizeof(*seen));
        if (seen != NULL) {
            s->seen = seen;
            s->capseen = cap;
        }
    }
    if (s->nseen < s->capseen) {
        s->seen[s->nseen++] = c->seen;
        c->seen = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    if (c->seen != NULL)
        free(c->seen->rx);
    free(c->seen);
    SSL_free(c->ssl);
    free(c->tx);
    free(c);
}

/* The ALPN list "a,b" in the wire's form after a length byte of its own
 * (what select_alpn() reads); NULL when it does not fit. */
static unsigned char *alpn_wire(const char *list)
{
    unsigned char *w = calloc(1, 256);
    if (w == NULL)
        return NULL;
    size_t used = 1;
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > 255 || used + 1 + n > 256) {
            free(w);
            return NULL;
        }
        w[used++] = (unsigned char)n;
        memcpy(w + used, p, n);
        used += n;
        p += n + (p[n] == ',');
    }
    w[0] = (unsigned char)(used - 1);
    return w;
}

struct tlss *tlss_start(const struct tlss_conf *conf)
{
    signal(SIGPIPE, SIG_IGN); /* OpenSSL writes with write(2) */
    CHECK(nrunning < ARRAY_LEN(running));
    struct tlss *s = calloc(1, sizeof(*s));
    CHECK(s != NULL);
    s->conf = *conf;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    CHECK(ctx != NULL);
    s->ctx = ctx;
    if (SSL_CTX_use_certificate_chain_file(ctx, conf->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, conf->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char buf[256];
        ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
        test_fail("TLS test server: certificate %s, key %s: %s", conf->cert, conf->key,
                  buf);
    }
    SSL_CTX_set_mode(ctx,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_num_tickets(ctx, conf->tickets);
    if (conf->client_ca != NULL) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(conf->client_ca);
        if (names == NULL ||
            SSL_CTX_load_verify_locations(ctx, conf->client_ca, NULL) != 1)
            test_fail("TLS test server: client CA %s does not load", conf->client_ca);
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    if (conf->alpn != NULL) {
        unsigned char *w = alpn_wire(conf->alpn);
        CHECK(w != NULL);
        SSL_CTX_set_alpn_select_cb(ctx, select_alpn, w);
        s->conf.alpn = (const char *)w; /* freed by tlss_stop() */
    }
    pthread_mutex_init(&s->mu, NULL);
    s->srv.max = conf->max ? conf->max : 64;
    s->srv.conn_open = tc_open;
    s->srv.conn_events = tc_events;
    s->srv.conn_service = tc_service;
    s->srv.conn_free = tc_free;
    tserver_start(&s->srv, 64);
    running[nrunning++] = s;
    return s;
}

void tlss_stop(struct tlss *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < nrunning; i++)
        if (running[i] == s) {
            running[i] = running[--nrunning];
            break;
        }
    tserver_stop(&s->srv);
    for (size_t i = 0; i < s->nseen; i++) {
        free(s->seen[i]->rx);
        free(s->seen[i]);
    }
    free(s->seen);
    SSL_CTX_free(s->ctx);
    if (s->conf.alpn != NULL)
        free((void *)s->conf.alpn);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void tlss_stop_all(void)
{
    while (nrunning > 0)
        tlss_stop(running[nrunning - 1]);
}

bool tlss_wait_done(struct tlss *s, size_t n, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 100000; i++) {
        pthread_mutex_lock(&s->mu);
        size_t done = s->nseen;
        pthread_mutex_unlock(&s->mu);
        if (done >= n)
            return true;
        if (ms_now() >= until)
            return false;
        sleep_ms(2);
    }
    return false;
}

const struct tlss_seen *tlss_seen(struct tlss *s, size_t k)
{
    pthread_mutex_lock(&s->mu);
    const struct tlss_seen *w = k < s->nseen ? s->seen[k] : NULL;
    pthread_mutex_unlock(&s->mu);
    return w;
}
