/*
 * One TLS session on a non-blocking socket: the handshake, reads and
 * writes as recv(2) and send(2) would say them, close_notify, and why a
 * handshake failed.
 *
 * OpenSSL reads and writes the socket itself (its socket BIO, which kTLS
 * needs).  Bytes read before TLS started (a PROXY header's read may have
 * taken the first bytes of the ClientHello with it) are served first by a
 * filter BIO in front of the socket's.  OpenSSL wants its thread's error
 * queue empty before each call, so each call clears it first.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "tls-internal.h"

struct tls_session {
    SSL *ssl;
    bool want_write; /* the last EAGAIN waits for a writable socket */
    bool server;     /* we accepted: the client's socket */
    bool truncated;  /* the peer ended without close_notify */
    bool shut;       /* our close_notify went */
    enum tls_failure failure;
    const char *failure_text;
};

/* ---- bytes read before TLS: a filter BIO that serves them first -------- */

struct prefix {
    size_t off, len;
    uint8_t data[];
};

static BIO_METHOD *prefix_method;
static pthread_once_t prefix_once = PTHREAD_ONCE_INIT;

/* Reads what is left of the prefix, then from the socket BIO behind. */
static int prefix_read(BIO *b, char *buf, size_t cap, size_t *got)
{
    struct prefix *p = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (p != NULL && p->off < p->len) {
        size_t n = p->len - p->off < cap ? p->len - p->off : cap;
        memcpy(buf, p->data + p->off, n);
        p->off += n;
        *got = n;
        return 1;
    }
    int r = BIO_read_ex(BIO_next(b), buf, cap, got);
    BIO_copy_next_retry(b);
    return r;
}

/* Writes go to the socket BIO behind (the session writes there anyway). */
static int prefix_write(BIO *b, const char *p, size_t n, size_t *put)
{
    BIO_clear_retry_flags(b);
    int r = BIO_write_ex(BIO_next(b), p, n, put);
    BIO_copy_next_retry(b);
    return r;
}

/* Control calls go to the socket BIO, but for what is pending. */
static long prefix_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    const struct prefix *p = BIO_get_data(b);
    long behind = BIO_next(b) != NULL ? BIO_ctrl(BIO_next(b), cmd, num, ptr) : 0;
    if (cmd == BIO_CTRL_PENDING && p != NULL)
        return behind + (long)(p->len - p->off);
    return behind;
}

static int prefix_destroy(BIO *b)
{
    free(BIO_get_data(b));
    BIO_set_data(b, NULL);
    return 1;
}

static void prefix_method_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER,
                                 "mio-echod prefix");
    if (m != NULL &&
        (!BIO_meth_set_read_ex(m, prefix_read) ||
         !BIO_meth_set_write_ex(m, prefix_write) || !BIO_meth_set_ctrl(m, prefix_ctrl) ||
         !BIO_meth_set_destroy(m, prefix_destroy))) {
        BIO_meth_free(m);
        m = NULL;
    }
    prefix_method = m;
}

/* The read BIO of a socket with prefix[0..n) in front of it. */
static BIO *prefixed(BIO *sock, const uint8_t *prefix, size_t n)
{
    pthread_once(&prefix_once, prefix_method_make);
    struct prefix *p = malloc(sizeof(*p) + n);
    BIO *b = prefix_method != NULL ? BIO_new(prefix_method) : NULL;
    if (p == NULL || b == NULL) {
        free(p);
        BIO_free(b);
        return NULL;
    }
    *p = (struct prefix){.len = n};
    memcpy(p->data, prefix, n);
    BIO_set_data(b, p);
    BIO_set_init(b, 1);
    return BIO_push(b, sock);
}

/* ---- sessions ------------------------------------------------------------ */

/* A session of ctx on fd, its reads served from prefix first. */
static struct tls_session *session_new(SSL_CTX *ctx, int fd, const uint8_t *prefix,
                                       size_t n)
{
    struct tls_session *t = calloc(1, sizeof(*t));
    BIO *sock = BIO_new_socket(fd, BIO_NOCLOSE);
    if (t == NULL || sock == NULL || (t->ssl = SSL_new(ctx)) == NULL)
        goto fail;
    BIO *rbio = sock;
    if (n > 0) {
        if ((rbio = prefixed(sock, prefix, n)) == NULL)
            goto fail;
        BIO_up_ref(sock); /* both the chain and the write side hold it */
    }
    SSL_set_bio(t->ssl, rbio, sock);
    return t;
fail:
    BIO_free(sock);
    if (t != NULL)
        SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return NULL;
}

struct tls_session *tls_session_accept(struct tls_server *s, int fd,
                                       const uint8_t *prefix, size_t n)
{
    struct tls_session *t = session_new(s->ctx[0], fd, prefix, n);
    if (t == NULL)
        return NULL;
    t->server = true;
    SSL_set_accept_state(t->ssl);
    return t;
}

struct tls_session *tls_session_connect(struct tls_client *c, int fd, const char *name,
                                        size_t slot)
{
    struct tls_session *t = session_new(c->ctx, fd, NULL, 0);
    if (t == NULL)
        return NULL;
    SSL_set_connect_state(t->ssl);
    if (slot < c->nslots) {
        (void)SSL_set_ex_data(t->ssl, tls_slot_index(), (void *)(uintptr_t)(slot + 1));
        pthread_mutex_lock(&c->mu);
        SSL_SESSION *sess = c->slot[slot];
        if (sess != NULL && SSL_SESSION_is_resumable(sess))
            (void)SSL_set_session(t->ssl, sess); /* takes its own reference */
        pthread_mutex_unlock(&c->mu);
    }
    if (name == NULL)
        return t;
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    bool ok = true;
    if (is_ip)
        ok = !c->verify ||
             X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name) == 1;
    else
        ok = SSL_set_tlsext_host_name(t->ssl, name) == 1 &&
             (!c->verify || SSL_set1_host(t->ssl, name) == 1);
    if (!ok) {
        tls_session_free(t);
        ERR_clear_error();
        return NULL;
    }
    return t;
}

void tls_session_free(struct tls_session *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t);
}

/* Whether the verification of the peer's certificate failed because its
 * issuer is not trusted (else the certificate itself was refused). */
static bool unknown_issuer(long v)
{
    return v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
           v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
           v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT;
}

/* Notes why the handshake failed, from SSL_get_error()'s `err` and
 * OpenSSL's error queue (then cleared); `sys` is errno after the call. */
static void note_failure(struct tls_session *t, int err, int sys)
{
    unsigned long e = ERR_peek_error();
    int reason = e != 0 ? ERR_GET_REASON(e) : 0;
    const char *text = e != 0 ? ERR_reason_error_string(e) : NULL;
    enum tls_failure f = TLS_FAIL_OTHER;
    if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN || e == 0) {
        f = TLS_FAIL_CLOSED;
        text = sys != 0 ? log_strerror(sys) : "the peer closed the connection";
    }
    switch (reason) {
    case 0:
        break;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        f = TLS_FAIL_CLOSED;
        break;
    case SSL_R_NO_SHARED_CIPHER:
        f = TLS_FAIL_NO_SHARED_CIPHER;
        break;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        f = TLS_FAIL_PROTOCOL_VERSION;
        break;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        f = TLS_FAIL_NO_CERTIFICATE;
        break;
    case SSL_R_CERTIFICATE_VERIFY_FAILED: {
        long v = SSL_get_verify_result(t->ssl);
        text = X509_verify_cert_error_string(v);
        f = !t->server          ? TLS_FAIL_VERIFY_FAILED
            : unknown_issuer(v) ? TLS_FAIL_UNKNOWN_CA
                                : TLS_FAIL_BAD_CERTIFICATE;
        break;
    }
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        f = TLS_FAIL_UNKNOWN_CA;
        break;
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
        f = TLS_FAIL_BAD_CERTIFICATE;
        break;
    default:
        break;
    }
    t->failure = f;
    t->failure_text = text != NULL ? text : "unknown";
    ERR_clear_error();
}

int tls_session_handshake(struct tls_session *t)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return 0;
    int sys = errno, err = SSL_get_error(t->ssl, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        t->want_write = err == SSL_ERROR_WANT_WRITE;
        return -EAGAIN;
    }
    note_failure(t, err, sys);
    return -EPROTO;
}

/* Maps a failed call's SSL_get_error() onto errno: EAGAIN with what it
 * waits for noted, else the socket's errno or EPROTO.  Returns -1. */
static ssize_t failed(struct tls_session *t, int err, int sys)
{
    switch (err) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        t->want_write = err == SSL_ERROR_WANT_WRITE;
        errno = EAGAIN;
        break;
    case SSL_ERROR_SYSCALL:
        errno = sys != 0 ? sys : ECONNRESET;
        break;
    default:
        errno = EPROTO;
        break;
    }
    ERR_clear_error();
    return -1;
}

ssize_t tls_session_read(struct tls_session *t, void *buf, size_t cap)
{
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    if (SSL_read_ex(t->ssl, buf, cap, &got) == 1)
        return (ssize_t)got;
    int sys = errno, err = SSL_get_error(t->ssl, 0);
    if (err == SSL_ERROR_ZERO_RETURN)
        return 0; /* close_notify */
    unsigned long e = ERR_peek_error();
    if ((err == SSL_ERROR_SYSCALL && sys == 0 && e == 0) ||
        (err == SSL_ERROR_SSL &&
         ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        t->truncated = true;
        ERR_clear_error();
        return 0;
    }
    return failed(t, err, sys);
}

ssize_t tls_session_write(struct tls_session *t, const void *p, size_t n)
{
    size_t put = 0;
    if (n == 0)
        return 0;
    ERR_clear_error();
    errno = 0;
    if (SSL_write_ex(t->ssl, p, n, &put) == 1)
        return (ssize_t)put;
    int sys = errno;
    return failed(t, SSL_get_error(t->ssl, 0), sys);
}

int tls_session_shutdown(struct tls_session *t)
{
    if (t->shut)
        return 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_shutdown(t->ssl);
    if (r >= 0) {
        t->shut = true;
        return 0;
    }
    int sys = errno;
    (void)failed(t, SSL_get_error(t->ssl, r), sys);
    return -errno;
}

bool tls_session_wants_write(const struct tls_session *t)
{
    return t->want_write;
}

bool tls_session_pending(const struct tls_session *t)
{
    return SSL_pending(t->ssl) > 0;
}

bool tls_session_resumed(const struct tls_session *t)
{
    return SSL_session_reused(t->ssl) == 1;
}

bool tls_session_truncated(const struct tls_session *t)
{
    return t->truncated;
}

enum tls_failure tls_session_failure(const struct tls_session *t)
{
    return t->failure;
}

const char *tls_session_failure_text(const struct tls_session *t)
{
    return t->failure_text != NULL ? t->failure_text : "unknown";
}

const char *tls_session_describe(const struct tls_session *t, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
    return buf;
}

const char *tls_session_server_name(const struct tls_session *t)
{
    return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}
