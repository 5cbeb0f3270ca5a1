/*
 * The TLS test client (see tlsclient.h): OpenSSL over a non-blocking
 * socket, each call a loop of SSL_* calls and poll(2) waits for what
 * OpenSSL asks, every wait within the client's timeout.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* pipe2, close_range */
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base.h"
#include "net.h"
#include "run.h"
#include "tlsclient.h"

#define DEFAULT_TIMEOUT_MS 5000
/* The most one SSL_write is given: the same length again after a
 * WANT_WRITE, as OpenSSL requires. */
#define WRITE_CHUNK 16384

struct tlsc {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    int timeout_ms;
    bool ok;
    int alert; /* the last alert the peer sent, or -1 */
    char err[512];
    char version[32], cipher[128], alpn[64], subject[512];
    long serial;
    struct tlsc *prev, *next; /* every open client, for tlsc_close_all() */
};

static pthread_mutex_t all_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tlsc *all;

/* SIGPIPE ignored (once, by the first client): OpenSSL's socket writes
 * are write(2), which a peer's reset would otherwise turn into a signal
 * that kills the test. */
static void sigpipe_off(void)
{
    signal(SIGPIPE, SIG_IGN);
}

/* Records a failure: "what: reason", with OpenSSL's queued errors, errno
 * for a system error, and the alert received. */
__attribute__((format(printf, 3, 4))) static bool failed(struct tlsc *c, int sslerr,
                                                         const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    size_t used = n < 0                         ? 0
                  : (size_t)n >= sizeof(c->err) ? sizeof(c->err) - 1
                                                : (size_t)n;
    unsigned long e;
    while ((e = ERR_get_error()) != 0 && used < sizeof(c->err) - 1) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        n = snprintf(c->err + used, sizeof(c->err) - used, ": %s", buf);
        used += n < 0 ? 0 : (size_t)n;
    }
    if (sslerr == SSL_ERROR_SYSCALL && used < sizeof(c->err) - 1)
        used += (size_t)snprintf(c->err + used, sizeof(c->err) - used, ": %s",
                                 saved != 0 ? strerror(saved) : "EOF");
    if (c->alert >= 0 && used < sizeof(c->err) - 1)
        snprintf(c->err + used, sizeof(c->err) - used, " (alert %d: %s)", c->alert,
                 SSL_alert_desc_string_long(c->alert));
    ERR_clear_error();
    c->ok = false;
    return false;
}

/* Keeps the alerts the peer sends. */
static void info_cb(const SSL *ssl, int where, int ret)
{
    if ((where & SSL_CB_READ_ALERT) == 0)
        return;
    struct tlsc *c = SSL_get_app_data(ssl);
    if (c != NULL && (ret >> 8) == SSL3_AL_FATAL)
        c->alert = ret & 0xff;
}

/* Waits until the deadline for what OpenSSL wants (its SSL_get_error()
 * answer); false when the time is up or it wants anything else. */
static bool await(struct tlsc *c, int sslerr, int64_t until, const char *what)
{
    short ev = sslerr == SSL_ERROR_WANT_READ    ? POLLIN
               : sslerr == SSL_ERROR_WANT_WRITE ? POLLOUT
                                                : 0;
    if (ev == 0)
        return failed(c, sslerr, "%s", what);
    for (int i = 0; i < 100000; i++) {
        int64_t left = until - ms_now();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = c->fd, .events = ev};
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return failed(c, 0, "%s: poll: %s", what, strerror(errno));
    }
    return failed(c, 0, "%s: nothing within %d ms", what, c->timeout_ms);
}

/* Sets the protocols of opts->alpn ("a,b") on ssl. */
static bool set_alpn(SSL *ssl, const char *list)
{
    unsigned char wire[256];
    size_t used = 0;
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > 255 || used + 1 + n > sizeof(wire))
            return false;
        wire[used++] = (unsigned char)n;
        memcpy(wire + used, p, n);
        used += n;
        p += n + (p[n] == ',');
    }
    return SSL_set_alpn_protos(ssl, wire, (unsigned)used) == 0;
}

/* A context and an SSL object as opts say, into c; false with c->err. */
static bool configure(struct tlsc *c, const struct tls_opts *o)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        return failed(c, 0, "SSL_CTX_new");
    if (o->min_version != 0 && !SSL_CTX_set_min_proto_version(c->ctx, o->min_version))
        return failed(c, 0, "min_version %#x", o->min_version);
    if (o->max_version != 0 && !SSL_CTX_set_max_proto_version(c->ctx, o->max_version))
        return failed(c, 0, "max_version %#x", o->max_version);
    if (o->ciphersuites != NULL && !SSL_CTX_set_ciphersuites(c->ctx, o->ciphersuites))
        return failed(c, 0, "ciphersuites \"%s\"", o->ciphersuites);
    if (o->ciphers != NULL && !SSL_CTX_set_cipher_list(c->ctx, o->ciphers))
        return failed(c, 0, "ciphers \"%s\"", o->ciphers);
    if (o->cert != NULL &&
        (SSL_CTX_use_certificate_chain_file(c->ctx, o->cert) != 1 ||
         SSL_CTX_use_PrivateKey_file(c->ctx, o->key, SSL_FILETYPE_PEM) != 1))
        return failed(c, 0, "client certificate %s, key %s", o->cert, o->key);
    if (o->ca != NULL) {
        if (SSL_CTX_load_verify_locations(c->ctx, o->ca, NULL) != 1)
            return failed(c, 0, "CA %s", o->ca);
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    }
    SSL_CTX_set_mode(c->ctx,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL)
        return failed(c, 0, "SSL_new");
    SSL_set_app_data(c->ssl, c);
    SSL_set_info_callback(c->ssl, info_cb);
    if (o->sni != NULL && !SSL_set_tlsext_host_name(c->ssl, o->sni))
        return failed(c, 0, "SNI \"%s\"", o->sni);
    if (o->alpn != NULL && !set_alpn(c->ssl, o->alpn))
        return failed(c, 0, "ALPN \"%s\"", o->alpn);
    if (o->verify_name != NULL) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        struct in_addr ip;
        int set = inet_pton(AF_INET, o->verify_name, &ip) == 1
                      ? X509_VERIFY_PARAM_set1_ip_asc(vp, o->verify_name)
                      : X509_VERIFY_PARAM_set1_host(vp, o->verify_name, 0);
        if (!set)
            return failed(c, 0, "verify_name \"%s\"", o->verify_name);
    }
    return true;
}

/* What the handshake agreed, into c's strings. */
static void note_session(struct tlsc *c)
{
    snprintf(c->version, sizeof(c->version), "%s", SSL_get_version(c->ssl));
    const char *cipher = SSL_get_cipher_name(c->ssl);
    snprintf(c->cipher, sizeof(c->cipher), "%s", cipher != NULL ? cipher : "");
    const unsigned char *proto;
    unsigned len;
    SSL_get0_alpn_selected(c->ssl, &proto, &len);
    snprintf(c->alpn, sizeof(c->alpn), "%.*s", (int)len,
             proto != NULL ? (const char *)proto : "");
    X509 *peer = SSL_get1_peer_certificate(c->ssl);
    c->subject[0] = '\0';
    c->serial = -1;
    if (peer == NULL)
        return;
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem != NULL) {
        X509_NAME_print_ex(mem, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
        int n = BIO_read(mem, c->subject, (int)sizeof(c->subject) - 1);
        c->subject[n > 0 ? n : 0] = '\0';
        BIO_free(mem);
    }
    c->serial = ASN1_INTEGER_get(X509_get0_serialNumber(peer));
    X509_free(peer);
}

struct tlsc *tlsc_connect_fd(int fd, const struct tls_opts *opts)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sigpipe_off);
    struct tls_opts none = {0};
    const struct tls_opts *o = opts != NULL ? opts : &none;
    struct tlsc *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    c->fd = fd;
    c->ok = true;
    c->alert = -1;
    c->serial = -1;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    pthread_mutex_lock(&all_mu);
    c->next = all;
    if (all != NULL)
        all->prev = c;
    all = c;
    pthread_mutex_unlock(&all_mu);
    ERR_clear_error();
    if (fd < 0) {
        failed(c, 0, "connect: %s", strerror(errno));
        return c;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        failed(c, 0, "O_NONBLOCK: %s", strerror(errno));
        return c;
    }
    if (!configure(c, o) || !SSL_set_fd(c->ssl, fd)) {
        if (c->ok)
            failed(c, 0, "SSL_set_fd");
        return c;
    }
    int64_t until = ms_now() + c->timeout_ms;
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(c->ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            long v = SSL_get_verify_result(c->ssl);
            if (v != X509_V_OK)
                failed(c, e, "handshake: verify: %s", X509_verify_cert_error_string(v));
            else
                failed(c, e, "handshake");
            return c;
        }
        if (!await(c, e, until, "handshake"))
            return c;
    }
    note_session(c);
    return c;
}

struct tlsc *tlsc_connect(int port, const struct tls_opts *opts)
{
    return tlsc_connect_fd(connect_to(port), opts);
}

bool tlsc_ok(const struct tlsc *c)
{
    return c->ok;
}

const char *tlsc_error(const struct tlsc *c)
{
    return c->err[0] != '\0' ? c->err : "no error";
}

int tlsc_alert(const struct tlsc *c)
{
    return c->alert;
}

/* What one read gave. */
enum rd { RD_DATA, RD_WANT, RD_CLOSE_NOTIFY, RD_EOF, RD_RESET, RD_ERROR };

/* One SSL_read into buf: RD_DATA with *n, RD_WANT with *sslerr to wait
 * for, or how the peer ended (an error is left in c->err). */
static enum rd read_once(struct tlsc *c, void *buf, size_t cap, size_t *n, int *sslerr)
{
    ERR_clear_error();
    errno = 0;
    *n = 0;
    if (SSL_read_ex(c->ssl, buf, cap, n) == 1)
        return RD_DATA;
    int e = SSL_get_error(c->ssl, 0);
    *sslerr = e;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return RD_WANT;
    if (e == SSL_ERROR_ZERO_RETURN)
        return RD_CLOSE_NOTIFY;
    if (e == SSL_ERROR_SYSCALL && errno == ECONNRESET) {
        failed(c, e, "read");
        return RD_RESET;
    }
    unsigned long last = ERR_peek_last_error();
    if ((e == SSL_ERROR_SYSCALL && errno == 0 && last == 0) ||
        (e == SSL_ERROR_SSL &&
         ERR_GET_REASON(last) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        failed(c, e, "read: EOF without close_notify");
        return RD_EOF;
    }
    failed(c, e, "read");
    return RD_ERROR;
}

/* One SSL_write of at most WRITE_CHUNK: true with *n (0 and *sslerr when
 * it must wait), false on an error. */
static bool write_once(struct tlsc *c, const void *buf, size_t len, size_t *n,
                       int *sslerr)
{
    ERR_clear_error();
    errno = 0;
    *n = 0;
    if (len > WRITE_CHUNK)
        len = WRITE_CHUNK;
    if (SSL_write_ex(c->ssl, buf, len, n) == 1)
        return true;
    int e = SSL_get_error(c->ssl, 0);
    *sslerr = e;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return true;
    return failed(c, e, "write");
}

bool tlsc_write_all(struct tlsc *c, const void *buf, size_t len)
{
    return tlsc_exchange(c, buf, len, NULL, 0, false);
}

bool tlsc_read_exact(struct tlsc *c, void *buf, size_t len)
{
    return tlsc_exchange(c, NULL, 0, buf, len, false);
}

/* The name of a read's end, for messages. */
static const char *rd_name(enum rd r)
{
    return r == RD_CLOSE_NOTIFY ? "close_notify"
           : r == RD_EOF        ? "EOF without close_notify"
           : r == RD_RESET      ? "a reset"
                                : "an error";
}

bool tlsc_exchange(struct tlsc *c, const void *out, size_t outlen, void *in, size_t inlen,
                   bool shut)
{
    if (!c->ok)
        return false;
    const uint8_t *o = out;
    uint8_t *i = in;
    size_t sent = 0, got = 0;
    bool shut_done = !shut;
    int64_t until = ms_now() + c->timeout_ms;
    for (long round = 0; round < 100000000; round++) {
        bool progress = false;
        short ev = 0;
        /* Reads first: an alert that came before a reset must be read
         * before a write meets the reset. */
        if (got < inlen) {
            size_t n;
            int e = 0;
            enum rd r = read_once(c, i + got, inlen - got, &n, &e);
            if (r == RD_DATA) {
                got += n;
                progress = true;
            } else if (r == RD_WANT) {
                ev |= e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
            } else {
                if (r == RD_CLOSE_NOTIFY)
                    c->ok = false;
                char why[512];
                snprintf(why, sizeof(why), "%s", c->err);
                return failed(c, 0,
                              "%s after reading %zu of %zu bytes (sent %zu of %zu)%s%s",
                              rd_name(r), got, inlen, sent, outlen,
                              r == RD_CLOSE_NOTIFY ? "" : ": ",
                              r == RD_CLOSE_NOTIFY ? "" : why);
            }
        }
        if (sent < outlen) {
            size_t n;
            int e = 0;
            if (!write_once(c, o + sent, outlen - sent, &n, &e)) {
                char why[512];
                snprintf(why, sizeof(why), "%s", c->err);
                return failed(c, 0, "%s after writing %zu of %zu bytes", why, sent,
                              outlen);
            }
            sent += n;
            progress |= n > 0;
            ev |= e == SSL_ERROR_WANT_READ    ? POLLIN
                  : e == SSL_ERROR_WANT_WRITE ? POLLOUT
                                              : 0;
        }
        if (sent == outlen && !shut_done) {
            ERR_clear_error();
            int r = SSL_shutdown(c->ssl);
            if (r >= 0) {
                shut_done = true;
                progress = true;
            } else {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE)
                    ev |= POLLOUT;
                else if (e == SSL_ERROR_WANT_READ)
                    ev |= POLLIN;
                else
                    return failed(c, e, "close_notify after %zu bytes", sent);
            }
        }
        if (sent == outlen && shut_done && got == inlen)
            return true;
        if (progress) {
            until = ms_now() + c->timeout_ms;
            continue;
        }
        int64_t left = until - ms_now();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = c->fd, .events = ev != 0 ? ev : POLLIN};
        int r = poll(&p, 1, (int)(left < 100 ? left : 100));
        if (r < 0 && errno != EINTR)
            return failed(c, 0, "poll: %s", strerror(errno));
    }
    return failed(c, 0,
                  "no progress for %d ms: wrote %zu of %zu bytes, read %zu of %zu%s",
                  c->timeout_ms, sent, outlen, got, inlen,
                  shut_done ? "" : ", close_notify not sent");
}

bool tlsc_shutdown(struct tlsc *c)
{
    return tlsc_exchange(c, NULL, 0, NULL, 0, true);
}

const char *tls_end_name(enum tls_end end)
{
    switch (end) {
    case TLS_END_CLOSE_NOTIFY:
        return "close_notify";
    case TLS_END_TRUNCATED:
        return "truncated";
    case TLS_END_RESET:
        return "reset";
    case TLS_END_ALERT:
        return "alert";
    case TLS_END_NONE:
        break;
    }
    return "nothing";
}

enum tls_end tlsc_wait_end(struct tlsc *c, int ms, size_t *drained)
{
    if (drained != NULL)
        *drained = 0;
    if (c->ssl == NULL)
        return TLS_END_ALERT;
    uint8_t buf[16384];
    int64_t until = ms_now() + ms;
    for (long round = 0; round < 10000000; round++) {
        size_t n;
        int e = 0;
        enum rd r = read_once(c, buf, sizeof(buf), &n, &e);
        switch (r) {
        case RD_DATA:
            if (drained != NULL)
                *drained += n;
            continue;
        case RD_CLOSE_NOTIFY:
            return TLS_END_CLOSE_NOTIFY;
        case RD_EOF:
            return TLS_END_TRUNCATED;
        case RD_RESET:
            return TLS_END_RESET;
        case RD_ERROR:
            return TLS_END_ALERT;
        case RD_WANT:
            break;
        }
        int64_t left = until - ms_now();
        if (left <= 0)
            return TLS_END_NONE;
        struct pollfd p = {.fd = c->fd,
                           .events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
        (void)poll(&p, 1, (int)left);
    }
    return TLS_END_NONE;
}

const char *tlsc_version(const struct tlsc *c)
{
    return c->version;
}

const char *tlsc_cipher(const struct tlsc *c)
{
    return c->cipher;
}

const char *tlsc_alpn(const struct tlsc *c)
{
    return c->alpn;
}

const char *tlsc_peer_subject(const struct tlsc *c)
{
    return c->subject;
}

long tlsc_peer_serial(const struct tlsc *c)
{
    return c->serial;
}

int tlsc_fd(const struct tlsc *c)
{
    return c->fd;
}

int tlsc_port(const struct tlsc *c)
{
    return c->fd >= 0 ? local_port(c->fd) : -1;
}

void tlsc_close(struct tlsc *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&all_mu);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        all = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&all_mu);
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

void tlsc_close_all(void)
{
    for (int i = 0; i < 100000; i++) {
        pthread_mutex_lock(&all_mu);
        struct tlsc *c = all;
        pthread_mutex_unlock(&all_mu);
        if (c == NULL)
            return;
        tlsc_close(c);
    }
}

size_t tls_client_hello(const struct tls_opts *opts, uint8_t *buf, size_t cap)
{
    struct tlsc c = {.fd = -1, .ok = true, .alert = -1};
    struct tls_opts none = {0};
    size_t len = 0;
    if (configure(&c, opts != NULL ? opts : &none)) {
        BIO *rd = BIO_new(BIO_s_mem()), *wr = BIO_new(BIO_s_mem());
        if (rd != NULL && wr != NULL) {
            SSL_set_bio(c.ssl, rd, wr); /* c.ssl owns them now */
            (void)SSL_connect(c.ssl);   /* writes the ClientHello, wants the answer */
            size_t pending = BIO_ctrl_pending(wr);
            if (pending > 0 && pending <= cap &&
                BIO_read(wr, buf, (int)pending) == (int)pending)
                len = pending;
        } else {
            BIO_free(rd);
            BIO_free(wr);
        }
    }
    SSL_free(c.ssl);
    SSL_CTX_free(c.ctx);
    ERR_clear_error();
    return len;
}

/* ---- run_piped ------------------------------------------------------------- */

/* In the child: stdin, stdout and stderr from the pipes, nothing else
 * open, dies with the parent; then argv. */
static void piped_child(char *const argv[], pid_t parent, int in, int out, int err)
{
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(126);
    if (close_range(3, ~0u, 0) < 0)
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
    execvp(argv[0], argv);
    _exit(127);
}

long run_piped(char *const argv[], const void *in, size_t inlen, void *out, size_t cap,
               size_t want, int ms, int *status, char *errbuf, size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sigpipe_off);
    int pin[2], pout[2], perr[2];
    if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 ||
        pipe2(perr, O_CLOEXEC) < 0)
        test_fail("pipe2: %s", strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        test_fail("fork: %s", strerror(errno));
    if (pid == 0)
        piped_child(argv, parent, pin[0], pout[1], perr[1]);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    set_nonblocking(pin[1]);
    int wfd = pin[1], rfd = pout[0], efd = perr[0];
    size_t put = 0, got = 0, elen = 0;
    if (errlen > 0)
        errbuf[0] = '\0';
    int64_t until = ms_now() + ms;
    bool timed_out = false;
    while (rfd >= 0 || efd >= 0) {
        if (wfd >= 0 && (put == inlen && (want == 0 || got >= want))) {
            close(wfd);
            wfd = -1;
        }
        int64_t left = until - ms_now();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p[3] = {{.fd = rfd, .events = POLLIN},
                              {.fd = efd, .events = POLLIN},
                              {.fd = put < inlen ? wfd : -1, .events = POLLOUT}};
        if (poll(p, 3, (int)left) < 0 && errno != EINTR)
            test_fail("poll: %s", strerror(errno));
        if (p[2].revents != 0) {
            ssize_t n = write(wfd, (const uint8_t *)in + put, inlen - put);
            if (n > 0)
                put += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                put = inlen; /* it does not read: stop giving */
        }
        if (p[0].revents != 0) {
            uint8_t scratch[4096];
            uint8_t *dst = got < cap ? (uint8_t *)out + got : scratch;
            size_t room = got < cap ? cap - got : sizeof(scratch);
            ssize_t n = read(rfd, dst, room);
            if (n > 0) {
                got += got < cap ? (size_t)n : 0;
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(rfd);
                rfd = -1;
            }
        }
        if (p[1].revents != 0) {
            char scratch[4096];
            ssize_t n = read(efd, scratch, sizeof(scratch));
            if (n > 0) {
                size_t take = elen + (size_t)n < errlen ? (size_t)n
                              : errlen > elen           ? errlen - 1 - elen
                                                        : 0;
                memcpy(errbuf + elen, scratch, take);
                elen += take;
                if (errlen > 0)
                    errbuf[elen] = '\0';
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(efd);
                efd = -1;
            }
        }
    }
    if (wfd >= 0)
        close(wfd);
    if (rfd >= 0)
        close(rfd);
    if (efd >= 0)
        close(efd);
    int st = -1;
    if (timed_out)
        kill(pid, SIGKILL);
    for (int i = 0; i < 100000; i++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            break;
        if (ms_now() >= until && !timed_out) {
            timed_out = true;
            kill(pid, SIGKILL);
        }
        sleep_ms(1);
    }
    *status = exit_code(st);
    return timed_out ? -1 : (long)got;
}
