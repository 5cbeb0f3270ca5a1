/*
 * TLS in mio-echod (issue 12), end to end on the real daemon over
 * loopback, with certificates made by tests/common/certs.c and the TLS
 * client and upstream of tests/common/tlsclient.c and tlsserver.c:
 *
 *   terminating: echo over TLS byte for byte from 1 B to 1 MiB with 20
 *   clients at once, and under openssl s_client; mTLS (a good client
 *   certificate, none, one from another CA); the certificate chosen by
 *   SNI; ALPN; min_version and ciphersuites, and the handshake failures
 *   they cause, counted by reason and logged; half-close through TLS;
 *   truncation; the handshake timeout;
 *   originating: re-encryption to a TLS upstream, plain and terminated,
 *   with a client certificate; verification failures (wrong CA, wrong
 *   name);
 *   routing: sni_routes without decryption, the bytes each upstream gets
 *   compared with what the client sent, ClientHello included;
 *   operating: reloads of certificates under load (a renewed one, a
 *   mismatched key), relative paths and $CREDENTIALS_DIRECTORY, -t's
 *   checks of keys and dates, the access line's tls= and sni= (a server
 *   name's bytes escaped in text and JSON, interim lines counting the
 *   payload), and the configuration errors.
 *
 * Every test starts its own daemon on ephemeral ports (echod_port()) and
 * is skipped when the openssl command (for the certificates) is missing.
 * TLS_TEST=glob runs only the tests it matches.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memmem */
#endif

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "harness.h"

#include "certs.h"
#include "json.h"
#include "tlsclient.h"
#include "tlsserver.h"

/* The bytes every test sends are slices of the pattern (pattern.h). */
#define PATTERN_LEN ((size_t)4 << 20)
/* How long a test waits for what should happen at once. */
#define WAIT_MS 3000
/* The subjects and serials of certs.h. */
#define SERVER_CN "CN=mio-test-server"
#define SERVER_SERIAL 0x1001
#define B_CN "CN=mio-test-b"
#define B_SERIAL 0x1002
#define SANS "DNS:localhost,DNS:a.example,IP:127.0.0.1"
#define FAILURES "mio_echod_tls_handshake_failures_total"

/* Every daemon here: two workers, the log on stderr with access lines,
 * and the metrics listener. */
#define BASE                                                             \
    "workers = 2;\n"                                                     \
    "shutdown_timeout = 3.0;\n"                                          \
    "log = { target = \"stderr\"; level = \"info\"; access = true; };\n" \
    "stats = { listen = \"127.0.0.1:0\"; };\n"

static const struct certs *cs;

/* Skips the test when the certificates cannot be made. */
#define NEED_CERTS()                                                 \
    do {                                                             \
        if (cs == NULL) {                                            \
            print_message("    skipped: %s\n", certs_unavailable()); \
            skip();                                                  \
        }                                                            \
    } while (0)

/* ---- configurations --------------------------------------------------------- */

/* A configuration being written. */
struct text {
    char s[16384];
    size_t n;
};

/* Appends to t; fails the test when it does not fit. */
__attribute__((format(printf, 2, 3))) static void add(struct text *t, const char *fmt,
                                                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(t->s + t->n, sizeof(t->s) - t->n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof(t->s) - t->n)
        fail_msg("configuration longer than %zu bytes", sizeof(t->s));
    t->n += (size_t)k;
}

/* A listener `name` in `mode` over TLS with the server certificate:
 * `tls` goes into its tls group, `extra` into the listener. */
static void add_tls_listener(struct text *t, const char *name, const char *mode,
                             const char *tls, const char *extra)
{
    add(t,
        "{\n"
        "  name = \"%s\";\n"
        "  listen = [ \"127.0.0.1:0\" ];\n"
        "  mode = \"%s\";\n"
        "  %s\n"
        "  tls = { certificate = \"%s\"; key = \"%s\"; %s };\n"
        "}",
        name, mode, extra != NULL ? extra : "", cs->server.cert, cs->server.key,
        tls != NULL ? tls : "");
}

/* An echo listener `name` over TLS (add_tls_listener()). */
static void add_tls_echo(struct text *t, const char *name, const char *tls,
                         const char *extra)
{
    add_tls_listener(t, name, "echo", tls, extra);
}

/* A daemon with one TLS echo listener "t" (add_tls_echo()). */
static struct echod *start_tls_echo(const char *tls, const char *extra)
{
    struct text t = {0};
    add(&t, BASE "listeners = ( ");
    add_tls_echo(&t, "t", tls, extra);
    add(&t, " );\n");
    return echod_start(t.s);
}

/* ---- metrics ------------------------------------------------------------------ */

/* Waits up to WAIT_MS for the sample written by the format to be want (a
 * sample not there counts as 0); fails, with the exposition's TLS samples,
 * when it is not (metrics_wait_between()). */
#define expect_metric(e, want, ...) \
    ((void)metrics_wait_between(e, WAIT_MS, "mio_echod_tls", want, want, __VA_ARGS__))

/* ---- the log ------------------------------------------------------------------ */

/* Waits up to WAIT_MS for a log line that contains a and b; returns it. */
static const char *must_log_both(struct echod *e, const char *a, const char *b)
{
    int64_t until = ms_now() + WAIT_MS;
    for (int round = 0; round < 10000; round++) {
        for (int n = 0; n < 10000; n++) {
            const char *line = echod_log_line(e, a, n);
            if (line == NULL)
                break;
            if (strstr(line, b) != NULL)
                return line;
        }
        if (ms_now() >= until)
            break;
        sleep_ms(10);
    }
    const char *any = echod_log_line(e, a, 0);
    fail_msg("no log line with \"%s\" and \"%s\" within %d ms (one with \"%s\": %s)", a,
             b, WAIT_MS, a, any != NULL ? any : "none");
    return NULL;
}

/* The access line of the client whose own port is cport. */
static const char *access_of(struct echod *e, int cport)
{
    char needle[64];
    snprintf(needle, sizeof(needle), " client=127.0.0.1:%d ", cport);
    const char *line = echod_wait_log(e, needle, WAIT_MS);
    if (line == NULL)
        fail_msg("no access line for client 127.0.0.1:%d", cport);
    if (strstr(line, ": access listener=") == NULL)
        fail_msg("not an access line: %s", line);
    return line;
}

/* The word after key (" tls=") in line, up to a space, into buf; NULL
 * when line has no key. */
static const char *word_after(const char *line, const char *key, char *buf, size_t len)
{
    const char *at = strstr(line, key);
    if (at == NULL)
        return NULL;
    at += strlen(key);
    size_t n = strcspn(at, " \n");
    snprintf(buf, len, "%.*s", (int)n, at);
    return buf;
}

/* The access line of client cport must say tls=TLS and sni=SNI. */
static const char *expect_access_tls(struct echod *e, int cport, const char *tls,
                                     const char *sni)
{
    const char *line = access_of(e, cport);
    char got[256];
    const char *w = word_after(line, " tls=", got, sizeof(got));
    if (w == NULL || strcmp(w, tls) != 0)
        fail_msg("expected tls=%s in the access line: %s", tls, line);
    w = word_after(line, " sni=", got, sizeof(got));
    if (w == NULL || strcmp(w, sni) != 0)
        fail_msg("expected sni=%s in the access line: %s", sni, line);
    return line;
}

/* The access line's " in=N " and " out=N ". */
static void expect_access_bytes(struct echod *e, int cport, size_t in, size_t out)
{
    const char *line = access_of(e, cport);
    if (log_field(line, " in=") != (long long)in ||
        log_field(line, " out=") != (long long)out)
        fail_msg("expected in=%zu out=%zu in the access line: %s", in, out, line);
}

/* ---- clients ------------------------------------------------------------------- */

/* Connects with o; the handshake must succeed. */
static struct tlsc *must_connect(int port, const struct tls_opts *o)
{
    struct tlsc *c = tlsc_connect(port, o);
    assert_non_null(c);
    if (!tlsc_ok(c))
        fail_msg("handshake with 127.0.0.1:%d: %s", port, tlsc_error(c));
    return c;
}

/* Sends msg, expects it back, sends close_notify and expects the
 * daemon's close_notify after nothing else; returns the client's port
 * and closes it. */
static int echo_and_end(struct tlsc *c, const char *msg)
{
    size_t n = strlen(msg);
    char back[512];
    assert_true(n <= sizeof(back));
    if (!tlsc_exchange(c, msg, n, back, n, true))
        fail_msg("echo of \"%s\": %s", msg, tlsc_error(c));
    assert_memory_equal(back, msg, n);
    size_t drained = 0;
    enum tls_end end = tlsc_wait_end(c, WAIT_MS, &drained);
    if (end != TLS_END_CLOSE_NOTIFY || drained != 0)
        fail_msg(
            "after the echo: %s with %zu bytes before it, expected close_notify (%s)",
            tls_end_name(end), drained, tlsc_error(c));
    int cport = tlsc_port(c);
    tlsc_close(c);
    return cport;
}

/* A client the daemon must refuse: either the handshake fails or (TLS
 * 1.3, where the server judges the client's certificate after the
 * client's handshake is over) the first exchange does. */
static void expect_refused(struct tlsc *c, const char *what)
{
    char back[8];
    if (tlsc_ok(c) && tlsc_exchange(c, "refused?", 8, back, 8, false))
        fail_msg("%s: the daemon took it and echoed", what);
    tlsc_close(c);
}

/* Sends out[0..outlen) on a plain socket while reading exactly inlen
 * bytes into in; half-closes after the last byte when shut.  Fails the
 * test after 5 s without progress. */
static void plain_exchange(int fd, const void *out, size_t outlen, void *in, size_t inlen,
                           bool shut)
{
    set_nonblocking(fd);
    size_t sent = 0, got = 0;
    bool shut_done = !shut;
    int64_t until = ms_now() + 5000;
    for (long round = 0; round < 10000000; round++) {
        bool progress = false;
        if (sent < outlen) {
            ssize_t n = send(fd, (const uint8_t *)out + sent, outlen - sent,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent += (size_t)n;
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                fail_msg("send after %zu of %zu bytes: %s", sent, outlen,
                         strerror(errno));
            }
        }
        if (sent == outlen && !shut_done) {
            assert_int_equal(shutdown(fd, SHUT_WR), 0);
            shut_done = true;
        }
        if (got < inlen) {
            ssize_t n = recv(fd, (uint8_t *)in + got, inlen - got, MSG_DONTWAIT);
            if (n > 0) {
                got += (size_t)n;
                progress = true;
            } else if (n == 0) {
                fail_msg("EOF after %zu of %zu bytes (sent %zu of %zu)", got, inlen, sent,
                         outlen);
            } else if (errno != EAGAIN && errno != EINTR) {
                fail_msg("recv after %zu of %zu bytes: %s", got, inlen, strerror(errno));
            }
        }
        if (sent == outlen && got == inlen)
            return;
        if (progress) {
            until = ms_now() + 5000;
            continue;
        }
        if (ms_now() >= until)
            fail_msg("no progress for 5 s: sent %zu of %zu, received %zu of %zu", sent,
                     outlen, got, inlen);
        struct pollfd p = {.fd = fd,
                           .events = (short)(POLLIN | (sent < outlen ? POLLOUT : 0))};
        (void)poll(&p, 1, 50);
    }
}

/* ---- a plain recorder upstream ----------------------------------------------- */

/* A test upstream that records every byte of a connection until its EOF,
 * then sends `reply` and closes: what a routing daemon relayed to it,
 * compared byte for byte by the test. */
struct recorder {
    struct tserver srv;
    const char *reply;
    pthread_mutex_t mu;
    struct {
        uint8_t *rx;
        size_t len;
    } done[32]; /* connections over, in order */
    size_t ndone;
};

struct rconn {
    int fd;
    uint8_t *rx;
    size_t len, cap, txoff;
    bool eof;
};

static struct recorder *recorders[8];
static size_t nrecorders;

static void *rec_open(struct tserver *s, int fd)
{
    (void)s;
    struct rconn *c = calloc(1, sizeof(*c));
    if (c != NULL)
        c->fd = fd;
    return c;
}

static short rec_events(struct tserver *s, void *conn)
{
    (void)s;
    const struct rconn *c = conn;
    return c->eof ? POLLOUT : POLLIN;
}

/* Reads to EOF, then sends the reply; true when it is all sent. */
static bool rec_service(struct tserver *s, void *conn)
{
    struct recorder *r = (struct recorder *)s;
    struct rconn *c = conn;
    for (int i = 0; i < 64 && !c->eof; i++) {
        if (c->len == c->cap) {
            size_t cap = c->cap ? 2 * c->cap : 4096;
            uint8_t *rx = realloc(c->rx, cap);
            if (rx == NULL)
                return true;
            c->rx = rx;
            c->cap = cap;
        }
        ssize_t n = recv(c->fd, c->rx + c->len, c->cap - c->len, MSG_DONTWAIT);
        if (n > 0)
            c->len += (size_t)n;
        else if (n == 0)
            c->eof = true;
        else if (errno == EAGAIN || errno == EINTR)
            return false;
        else
            return true;
    }
    size_t rlen = strlen(r->reply);
    while (c->eof && c->txoff < rlen) {
        ssize_t n = send(c->fd, r->reply + c->txoff, rlen - c->txoff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            c->txoff += (size_t)n;
        else if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return false;
        else
            return true;
    }
    return c->eof;
}

static void rec_free(struct tserver *s, void *conn)
{
    struct recorder *r = (struct recorder *)s;
    struct rconn *c = conn;
    pthread_mutex_lock(&r->mu);
    if (r->ndone < ARRAY_LEN(r->done)) {
        r->done[r->ndone].rx = c->rx;
        r->done[r->ndone++].len = c->len;
        c->rx = NULL;
    }
    pthread_mutex_unlock(&r->mu);
    free(c->rx);
    free(c);
}

/* Starts a recorder answering `reply` (a string). */
static struct recorder *rec_start(const char *reply)
{
    assert_true(nrecorders < ARRAY_LEN(recorders));
    struct recorder *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->reply = reply;
    pthread_mutex_init(&r->mu, NULL);
    r->srv = (struct tserver){.max = 16,
                              .conn_open = rec_open,
                              .conn_events = rec_events,
                              .conn_service = rec_service,
                              .conn_free = rec_free};
    tserver_start(&r->srv, 16);
    recorders[nrecorders++] = r;
    return r;
}

/* How many connections r has seen end. */
static size_t rec_done(struct recorder *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->ndone;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Stops every recorder (a test's end or teardown). */
static void rec_stop_all(void)
{
    while (nrecorders > 0) {
        struct recorder *r = recorders[--nrecorders];
        tserver_stop(&r->srv);
        for (size_t i = 0; i < r->ndone; i++)
            free(r->done[i].rx);
        pthread_mutex_destroy(&r->mu);
        free(r);
    }
}

static void streamers_stop(void);

static int teardown(void **state)
{
    streamers_stop();
    tlsc_close_all();
    int rc = teardown_all(state);
    rec_stop_all();
    tlss_stop_all();
    return rc;
}

/* ---- echo over TLS ------------------------------------------------------------- */

/* One client of the concurrent echo, run in a thread of its own. */
struct echo_job {
    int port;
    size_t size;
    uint64_t off;
    const char *sni;
    pthread_t thread;
    bool ok;
    int cport;
    char tls[200]; /* "version/cipher" as the client saw them */
    char err[700];
};

/* Connects (verifying the server as localhost), sends pat(off)[0..size)
 * while it reads the echo, sends close_notify, and expects the echo byte
 * for byte and then the daemon's close_notify. */
static void *echo_job_run(void *arg)
{
    struct echo_job *j = arg;
    uint8_t *in = malloc(j->size);
    struct tlsc *c = tlsc_connect(j->port, &(struct tls_opts){.sni = j->sni,
                                                              .ca = cs->ca.cert,
                                                              .verify_name = "localhost",
                                                              .timeout_ms = 10000});
    if (c == NULL || in == NULL) {
        snprintf(j->err, sizeof(j->err), "no memory");
    } else if (!tlsc_ok(c) ||
               !tlsc_exchange(c, pat(j->off), j->size, in, j->size, true)) {
        snprintf(j->err, sizeof(j->err), "%s", tlsc_error(c));
    } else if (memcmp(in, pat(j->off), j->size) != 0) {
        snprintf(j->err, sizeof(j->err), "the echo differs from what was sent");
    } else {
        size_t drained = 0;
        enum tls_end end = tlsc_wait_end(c, 5000, &drained);
        if (end != TLS_END_CLOSE_NOTIFY || drained != 0)
            snprintf(j->err, sizeof(j->err), "%zu bytes, then %s after the echo: %s",
                     drained, tls_end_name(end), tlsc_error(c));
        else
            j->ok = true;
    }
    if (c != NULL) {
        j->cport = tlsc_port(c);
        snprintf(j->tls, sizeof(j->tls), "%s/%s", tlsc_version(c), tlsc_cipher(c));
        tlsc_close(c);
    }
    free(in);
    return NULL;
}

/* 20 clients at once, 1 B to 1 MiB each, half of them with SNI: every
 * byte comes back, then close_notify; each access line counts the bytes
 * and names the version, cipher and SNI the client saw; 20 handshakes
 * are counted. */
static void test_echo_sizes_concurrent(void **state)
{
    (void)state;
    NEED_CERTS();
    static const size_t sizes[] = {1,     2,     100,   1000,   16383,
                                   16384, 16385, 65536, 100000, MIB};
    enum { N = 20 };
    struct echod *e = start_tls_echo(NULL, NULL);
    int port = echod_port(e, "t", 0);
    struct echo_job jobs[N];
    memset(jobs, 0, sizeof(jobs));
    for (size_t i = 0; i < N; i++) {
        jobs[i].port = port;
        jobs[i].size = sizes[i % ARRAY_LEN(sizes)];
        jobs[i].off = (i * 100003) % (PATTERN_LEN - MIB);
        jobs[i].sni = i % 2 == 0 ? "localhost" : NULL;
        assert_int_equal(pthread_create(&jobs[i].thread, NULL, echo_job_run, &jobs[i]),
                         0);
    }
    for (size_t i = 0; i < N; i++)
        pthread_join(jobs[i].thread, NULL);
    for (size_t i = 0; i < N; i++)
        if (!jobs[i].ok)
            fail_msg("client %zu (%zu bytes, port %d): %s", i, jobs[i].size,
                     jobs[i].cport, jobs[i].err);
    for (size_t i = 0; i < N; i++) {
        expect_access_bytes(e, jobs[i].cport, jobs[i].size, jobs[i].size);
        expect_access_tls(e, jobs[i].cport, jobs[i].tls, jobs[i].sni ? jobs[i].sni : "-");
    }
    expect_metric(e, N, "mio_echod_tls_handshakes_total{listener=\"t\",side=\"client\"}");
    echod_stop_ok(e);
}

/* openssl s_client -quiet, 256 KiB piped in: the same bytes come out,
 * and s_client ends cleanly at the end of its input. */
static void test_echo_openssl_s_client(void **state)
{
    (void)state;
    NEED_CERTS();
    struct echod *e = start_tls_echo(NULL, NULL);
    char connect_arg[32];
    snprintf(connect_arg, sizeof(connect_arg), "127.0.0.1:%d", echod_port(e, "t", 0));
    char *argv[] = {"openssl",
                    "s_client",
                    "-quiet",
                    "-no_ign_eof", /* its input's end ends it (-quiet ignores it) */
                    "-nocommands", /* input starting with Q, R or k is data */
                    "-connect",
                    connect_arg,
                    "-servername",
                    "localhost",
                    "-CAfile",
                    (char *)cs->ca.cert,
                    "-verify_hostname",
                    "localhost",
                    "-verify_return_error",
                    NULL};
    size_t n = 256 * KIB;
    uint8_t *out = xmalloc(n);
    int status;
    char err[4096];
    long got = run_piped(argv, pat(777), n, out, n, n, 10000, &status, err, sizeof(err));
    if (got != (long)n || memcmp(out, pat(777), n) != 0)
        fail_msg("s_client gave back %ld of %zu bytes%s, exit %d: %s", got, n,
                 got == (long)n ? " (different ones)" : "", status, err);
    if (status != 0)
        fail_msg("s_client exit %d: %s", status, err);
    free(out);
    echod_stop_ok(e);
}

/* ---- client certificates, SNI, ALPN, versions ------------------------------------ */

/* client_ca set: a certificate it signed is taken (the echo works); none,
 * or one another CA signed, is refused, counted under its reason and
 * logged. */
static void test_mtls(void **state)
{
    (void)state;
    NEED_CERTS();
    char tls[PATH_MAX + 32];
    snprintf(tls, sizeof(tls), "client_ca = \"%s\";", cs->client_ca.cert);
    struct echod *e = start_tls_echo(tls, NULL);
    int port = echod_port(e, "t", 0);

    struct tlsc *c = must_connect(port, &(struct tls_opts){.ca = cs->ca.cert,
                                                           .cert = cs->client.cert,
                                                           .key = cs->client.key});
    echo_and_end(c, "with a certificate of the client CA");
    expect_refused(tlsc_connect(port, NULL), "no client certificate");
    expect_refused(tlsc_connect(port, &(struct tls_opts){.cert = cs->stranger.cert,
                                                         .key = cs->stranger.key}),
                   "a client certificate of another CA");

    expect_metric(e, 1, "mio_echod_tls_handshakes_total{listener=\"t\",side=\"client\"}");
    expect_metric(e, 1,
                  FAILURES "{listener=\"t\",side=\"client\",reason=\"no-certificate\"}");
    expect_metric(e, 1,
                  FAILURES "{listener=\"t\",side=\"client\",reason=\"unknown-ca\"}");
    must_log_both(e, "handshake", "no-certificate");
    must_log_both(e, "handshake", "unknown-ca");
    echod_stop_ok(e);
}

/* Two certificates: SNI a.example (and localhost, and none, and a name
 * no certificate has) gets the default one, x.b.example the *.b.example
 * one; each verifies for its name; the access line names the SNI. */
static void test_sni_selects_certificate(void **state)
{
    (void)state;
    NEED_CERTS();
    char tls[2 * PATH_MAX + 64];
    snprintf(tls, sizeof(tls),
             "certificates = ( { certificate = \"%s\"; key = \"%s\"; } );", cs->b.cert,
             cs->b.key);
    struct echod *e = start_tls_echo(tls, NULL);
    int port = echod_port(e, "t", 0);
    static const struct {
        const char *sni, *verify, *subject;
        long serial;
    } cases[] = {
        {"a.example", "a.example", SERVER_CN, SERVER_SERIAL},
        {"x.b.example", "x.b.example", B_CN, B_SERIAL},
        {"localhost", "localhost", SERVER_CN, SERVER_SERIAL},
        {NULL, "127.0.0.1", SERVER_CN, SERVER_SERIAL},
        {"other.example", NULL, SERVER_CN, SERVER_SERIAL},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct tlsc *c =
            must_connect(port,
                         &(struct tls_opts){.sni = cases[i].sni,
                                            .ca = cases[i].verify ? cs->ca.cert : NULL,
                                            .verify_name = cases[i].verify});
        if (strcmp(tlsc_peer_subject(c), cases[i].subject) != 0 ||
            tlsc_peer_serial(c) != cases[i].serial)
            fail_msg("SNI %s: got %s (serial %#lx), expected %s (%#lx)",
                     cases[i].sni ? cases[i].sni : "(none)", tlsc_peer_subject(c),
                     tlsc_peer_serial(c), cases[i].subject, cases[i].serial);
        char tlsword[200];
        snprintf(tlsword, sizeof(tlsword), "%s/%s", tlsc_version(c), tlsc_cipher(c));
        int cport = echo_and_end(c, "sni");
        expect_access_tls(e, cport, tlsword, cases[i].sni ? cases[i].sni : "-");
    }
    echod_stop_ok(e);
}

/* alpn = [ "h2", "http/1.1" ]: a client offering one of them gets it; one
 * offering none gets none. */
static void test_alpn(void **state)
{
    (void)state;
    NEED_CERTS();
    struct echod *e = start_tls_echo("alpn = [ \"h2\", \"http/1.1\" ];", NULL);
    int port = echod_port(e, "t", 0);
    static const struct {
        const char *offer, *want;
    } cases[] = {
        {"http/1.1", "http/1.1"},
        {"h2", "h2"},
        {"x-other,http/1.1", "http/1.1"},
        {NULL, ""},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct tlsc *c = must_connect(port, &(struct tls_opts){.alpn = cases[i].offer});
        if (strcmp(tlsc_alpn(c), cases[i].want) != 0)
            fail_msg("offering %s: ALPN \"%s\", expected \"%s\"",
                     cases[i].offer ? cases[i].offer : "nothing", tlsc_alpn(c),
                     cases[i].want);
        echo_and_end(c, "alpn");
    }
    echod_stop_ok(e);
}

/* min_version = "TLSv1.3" refuses a TLS 1.2 client (protocol-version) and
 * takes a TLS 1.3 one; the default (TLSv1.2) takes a TLS 1.2 client, whose
 * access line names TLSv1.2 and its cipher; ciphersuites limits TLS 1.3's
 * suites (a client with none of them: no-shared-cipher). */
static void test_versions_and_suites(void **state)
{
    (void)state;
    NEED_CERTS();
    struct text t = {0};
    add(&t, BASE "listeners = ( ");
    add_tls_echo(&t, "v13", "min_version = \"TLSv1.3\";", NULL);
    add(&t, ", ");
    add_tls_echo(&t, "v12", NULL, NULL);
    add(&t, ", ");
    add_tls_echo(&t, "chacha", "ciphersuites = \"TLS_CHACHA20_POLY1305_SHA256\";", NULL);
    add(&t, " );\n");
    struct echod *e = echod_start(t.s);

    struct tlsc *c = tlsc_connect(echod_port(e, "v13", 0),
                                  &(struct tls_opts){.max_version = TLS1_2_VERSION});
    if (tlsc_ok(c))
        fail_msg("min_version TLSv1.3 took a TLS 1.2 client (%s)", tlsc_version(c));
    tlsc_close(c);
    c = must_connect(echod_port(e, "v13", 0), NULL);
    assert_string_equal(tlsc_version(c), "TLSv1.3");
    echo_and_end(c, "v13");

    c = must_connect(echod_port(e, "v12", 0),
                     &(struct tls_opts){.max_version = TLS1_2_VERSION});
    assert_string_equal(tlsc_version(c), "TLSv1.2");
    char tlsword[200];
    snprintf(tlsword, sizeof(tlsword), "TLSv1.2/%s", tlsc_cipher(c));
    int cport = echo_and_end(c, "v12");
    expect_access_tls(e, cport, tlsword, "-");

    c = must_connect(echod_port(e, "chacha", 0), NULL);
    assert_string_equal(tlsc_cipher(c), "TLS_CHACHA20_POLY1305_SHA256");
    cport = echo_and_end(c, "chacha");
    expect_access_tls(e, cport, "TLSv1.3/TLS_CHACHA20_POLY1305_SHA256", "-");
    c = tlsc_connect(echod_port(e, "chacha", 0),
                     &(struct tls_opts){.min_version = TLS1_3_VERSION,
                                        .ciphersuites = "TLS_AES_128_GCM_SHA256"});
    if (tlsc_ok(c))
        fail_msg("ciphersuites CHACHA20 only took a client of AES-128-GCM only (%s)",
                 tlsc_cipher(c));
    tlsc_close(c);

    expect_metric(e, 1,
                  FAILURES
                  "{listener=\"v13\",side=\"client\",reason=\"protocol-version\"}");
    expect_metric(e, 1,
                  FAILURES
                  "{listener=\"chacha\",side=\"client\",reason=\"no-shared-cipher\"}");
    expect_metric(e, 1,
                  "mio_echod_tls_handshakes_total{listener=\"v13\",side=\"client\"}");
    expect_metric(e, 1,
                  "mio_echod_tls_handshakes_total{listener=\"v12\",side=\"client\"}");
    must_log_both(e, "handshake", "protocol-version");
    must_log_both(e, "handshake", "no-shared-cipher");
    echod_stop_ok(e);
}

/* ---- half-close, truncation, timeouts ------------------------------------------------
 */

/* A client sends 64 KiB, then close_notify, and only then reads: it gets
 * every byte back, then the daemon's close_notify. */
static void test_half_close_echo(void **state)
{
    (void)state;
    NEED_CERTS();
    struct echod *e = start_tls_echo(NULL, NULL);
    size_t n = 64 * KIB;
    struct tlsc *c = must_connect(echod_port(e, "t", 0), NULL);
    if (!tlsc_write_all(c, pat(4242), n) || !tlsc_shutdown(c))
        fail_msg("%s", tlsc_error(c));
    uint8_t *back = xmalloc(n);
    if (!tlsc_read_exact(c, back, n))
        fail_msg("after close_notify: %s", tlsc_error(c));
    assert_memory_equal(back, pat(4242), n);
    free(back);
    size_t drained = 0;
    enum tls_end end = tlsc_wait_end(c, WAIT_MS, &drained);
    if (end != TLS_END_CLOSE_NOTIFY || drained != 0)
        fail_msg("then %zu bytes and %s, expected close_notify", drained,
                 tls_end_name(end));
    int cport = tlsc_port(c);
    tlsc_close(c);
    expect_access_bytes(e, cport, n, n);
    echod_stop_ok(e);
}

/*
 * Half-close through a relay: a TLS client sends 100 KiB and close_notify;
 * a plain upstream sees the bytes, then its EOF, and answers 200 KiB
 * after it, which reach the client before the daemon's close_notify.  The
 * same through re-encryption: the TLS upstream sees close_notify after the
 * bytes and answers after it.
 */
static void test_half_close_relay(void **state)
{
    (void)state;
    NEED_CERTS();
    size_t n = 100 * KIB, reply = 200 * KIB;
    struct upsrv *plain = up_start(
        &(struct up_conf){.mode = UP_REPLY_EOF, .nbytes = reply, .off = 999});
    static const char answer[] = "the TLS upstream's answer, after the client's end";
    struct tlss *tup = tlss_start(&(struct tlss_conf){.mode = TLSS_REPLY_EOF,
                                                      .cert = cs->server.cert,
                                                      .key = cs->server.key,
                                                      .reply = answer,
                                                      .reply_len = sizeof(answer) - 1});
    struct text t = {0};
    add(&t, BASE "listeners = ( ");
    char extra[PATH_MAX + 256];
    snprintf(extra, sizeof(extra), "retries = 0; upstreams = [ \"127.0.0.1:%d\" ];",
             plain->srv.port);
    add_tls_listener(&t, "to-plain", "proxy", NULL, extra);
    add(&t, ", ");
    snprintf(extra, sizeof(extra),
             "retries = 0; upstreams = [ \"127.0.0.1:%d\" ];\n"
             "  upstream_tls = { ca = \"%s\"; verify = true; };",
             tup->srv.port, cs->ca.cert);
    add_tls_listener(&t, "to-tls", "proxy", NULL, extra);
    add(&t, " );\n");
    struct echod *e = echod_start(t.s);

    struct tlsc *c = must_connect(echod_port(e, "to-plain", 0), NULL);
    if (!tlsc_write_all(c, pat(0), n) || !tlsc_shutdown(c))
        fail_msg("%s", tlsc_error(c));
    uint8_t *back = xmalloc(reply);
    if (!tlsc_read_exact(c, back, reply))
        fail_msg("the upstream's answer: %s", tlsc_error(c));
    assert_memory_equal(back, pat(999), reply);
    free(back);
    assert_int_equal(tlsc_wait_end(c, WAIT_MS, NULL), TLS_END_CLOSE_NOTIFY);
    tlsc_close(c);
    assert_true(wait_counter(&plain->eofs, 1, WAIT_MS));
    assert_int_equal(atomic_load(&plain->last_rx), n);
    assert_int_equal(atomic_load(&plain->mismatches), 0);

    c = must_connect(echod_port(e, "to-tls", 0), NULL);
    char got[sizeof(answer) - 1];
    if (!tlsc_write_all(c, pat(5), n) || !tlsc_shutdown(c) ||
        !tlsc_read_exact(c, got, sizeof(got)))
        fail_msg("%s", tlsc_error(c));
    assert_memory_equal(got, answer, sizeof(got));
    assert_int_equal(tlsc_wait_end(c, WAIT_MS, NULL), TLS_END_CLOSE_NOTIFY);
    tlsc_close(c);
    assert_true(tlss_wait_done(tup, 1, WAIT_MS));
    const struct tlss_seen *w = tlss_seen(tup, 0);
    if (w->end != TLS_END_CLOSE_NOTIFY)
        fail_msg("the TLS upstream saw %s, not close_notify (%s)", tls_end_name(w->end),
                 w->err);
    assert_int_equal(w->rxtotal, n);
    assert_memory_equal(w->rx, pat(5), n);
    echod_stop_ok(e);
    up_stop(plain);
    tlss_stop(tup);
}

/* A client that ends its TCP connection without close_notify: the daemon
 * logs a truncation. */
static void test_truncation_logged(void **state)
{
    (void)state;
    NEED_CERTS();
    struct echod *e = start_tls_echo(NULL, NULL);
    struct tlsc *c = must_connect(echod_port(e, "t", 0), NULL);
    char back[5];
    if (!tlsc_exchange(c, "trunc", 5, back, 5, false))
        fail_msg("%s", tlsc_error(c));
    int cport = tlsc_port(c);
    tlsc_close(c); /* a FIN, no close_notify */
    char port[32];
    snprintf(port, sizeof(port), "127.0.0.1:%d", cport);
    must_log_both(e, "truncat", port);
    echod_stop_ok(e);
}

/*
 * connect_timeout bounds the handshake: a client that connects and sends
 * nothing, and one that sends half a ClientHello, are closed after it
 * (0.5 s; not before 0.4 s, nor after 3 s), counted as timeouts; one that
 * sends half a ClientHello and closes is counted as closed.
 */
static void test_handshake_timeout(void **state)
{
    (void)state;
    NEED_CERTS();
    struct echod *e = start_tls_echo(NULL, "connect_timeout = 0.5;");
    int port = echod_port(e, "t", 0);
    uint8_t hello[4096];
    size_t hlen = tls_client_hello(NULL, hello, sizeof(hello));
    assert_true(hlen > 20);
    for (int k = 0; k < 2; k++) {
        int fd = client4(port);
        if (k == 1)
            send_all(fd, hello, hlen / 2);
        int64_t t0 = ms_now();
        size_t drained = 0;
        enum end how = wait_end(fd, 5000, &drained);
        int64_t ms = ms_now() - t0;
        close(fd);
        if (how == END_NONE || ms < 400 || ms > 3000)
            fail_msg("%s: %s after %lld ms (connect_timeout 0.5 s)",
                     k == 0 ? "silent client" : "half a ClientHello", end_name(how),
                     (long long)ms);
    }
    int fd = client4(port);
    send_all(fd, hello, hlen / 2);
    sleep_ms(50);
    close(fd);
    expect_metric(e, 2, FAILURES "{listener=\"t\",side=\"client\",reason=\"timeout\"}");
    expect_metric(e, 1, FAILURES "{listener=\"t\",side=\"client\",reason=\"closed\"}");
    must_log_both(e, "handshake", "timeout");
    echod_stop_ok(e);
}

/* A TLS echo upstream with the server certificate: asking for a client
 * certificate client_ca signed (or none: NULL), sending `tickets` TLS 1.3
 * session tickets. */
static struct tlss *echo_upstream(const char *client_ca, size_t tickets)
{
    return tlss_start(&(struct tlss_conf){.mode = TLSS_ECHO,
                                          .cert = cs->server.cert,
                                          .key = cs->server.key,
                                          .client_ca = client_ca,
                                          .tickets = tickets});
}

/* ---- re-encryption
 * --------------------------------------------------------------------- */

/*
 * upstream_tls: a plain client's 1 MiB reaches a TLS upstream (verified
 * against the CA, as 127.0.0.1, no SNI) and comes back byte for byte,
 * its FIN passed on as close_notify; a TLS client through a listener that
 * terminates and re-encrypts, with server_name a.example and a client
 * certificate the upstream requires, the same; every handshake counted by
 * side.
 */
static void test_reencrypt(void **state)
{
    (void)state;
    NEED_CERTS();
    struct tlss *up = echo_upstream(NULL, 0);
    struct tlss *mup = echo_upstream(cs->client_ca.cert, 0);
    struct text t = {0};
    add(&t,
        BASE "listeners = ( {\n"
             "  name = \"to-tls\";\n"
             "  listen = [ \"127.0.0.1:0\" ];\n"
             "  mode = \"proxy\";\n"
             "  retries = 0;\n"
             "  upstreams = [ \"127.0.0.1:%d\" ];\n"
             "  upstream_tls = { ca = \"%s\"; verify = true; };\n"
             "}, ",
        up->srv.port, cs->ca.cert);
    char extra[3 * PATH_MAX + 256];
    snprintf(
        extra, sizeof(extra),
        "retries = 0; upstreams = [ \"127.0.0.1:%d\" ];\n"
        "  upstream_tls = { ca = \"%s\"; verify = true; server_name = \"a.example\";\n"
        "                   certificate = \"%s\"; key = \"%s\"; };",
        mup->srv.port, cs->ca.cert, cs->client.cert, cs->client.key);
    add_tls_listener(&t, "both", "proxy", NULL, extra);
    add(&t, " );\n");
    struct echod *e = echod_start(t.s);

    size_t n = MIB;
    uint8_t *back = xmalloc(n);
    int fd = client4(echod_port(e, "to-tls", 0));
    int cport = local_port(fd);
    plain_exchange(fd, pat(31), n, back, n, true);
    assert_memory_equal(back, pat(31), n);
    enum end how = wait_end(fd, WAIT_MS, NULL);
    if (how != END_EOF)
        fail_msg("after the echo through to-tls: %s, expected EOF", end_name(how));
    close(fd);
    assert_true(tlss_wait_done(up, 1, WAIT_MS));
    const struct tlss_seen *w = tlss_seen(up, 0);
    if (w->end != TLS_END_CLOSE_NOTIFY || w->rxtotal != n)
        fail_msg("the upstream got %zu bytes and %s (%s)", w->rxtotal,
                 tls_end_name(w->end), w->err);
    assert_memory_equal(w->rx, pat(31), n);
    assert_string_equal(w->sni, ""); /* an IP address is not sent as SNI */
    expect_access_tls(e, cport, "-", "-");

    struct tlsc *c = must_connect(echod_port(e, "both", 0), NULL);
    if (!tlsc_exchange(c, pat(77), n, back, n, true))
        fail_msg("through both: %s", tlsc_error(c));
    assert_memory_equal(back, pat(77), n);
    assert_int_equal(tlsc_wait_end(c, WAIT_MS, NULL), TLS_END_CLOSE_NOTIFY);
    tlsc_close(c);
    free(back);
    assert_true(tlss_wait_done(mup, 1, WAIT_MS));
    w = tlss_seen(mup, 0);
    if (!w->handshake_ok)
        fail_msg("the mTLS upstream refused the daemon: %s", w->err);
    assert_string_equal(w->sni, "a.example");
    assert_string_equal(w->peer, "/CN=mio-test-client");
    assert_int_equal(w->end, TLS_END_CLOSE_NOTIFY);
    assert_int_equal(w->rxtotal, n);

    expect_metric(
        e, 1, "mio_echod_tls_handshakes_total{listener=\"to-tls\",side=\"upstream\"}");
    expect_metric(e, 1,
                  "mio_echod_tls_handshakes_total{listener=\"both\",side=\"client\"}");
    expect_metric(e, 1,
                  "mio_echod_tls_handshakes_total{listener=\"both\",side=\"upstream\"}");
    echod_stop_ok(e);
    tlss_stop(up);
    tlss_stop(mup);
}

/* An upstream whose certificate another CA signed, and one verified for
 * server_name "wrong.example" (sent as SNI too): the connection fails,
 * the client gets nothing, and each failure is counted (verify-failed,
 * side upstream) and logged. */
static void test_upstream_verify_failures(void **state)
{
    (void)state;
    NEED_CERTS();
    struct tlss *up = echo_upstream(NULL, 0);
    struct text t = {0};
    add(&t,
        BASE
        "listeners = ( {\n"
        "  name = \"wrong-ca\";\n"
        "  listen = [ \"127.0.0.1:0\" ];\n"
        "  mode = \"proxy\";\n"
        "  retries = 0;\n"
        "  upstreams = [ \"127.0.0.1:%d\" ];\n"
        "  upstream_tls = { ca = \"%s\"; verify = true; };\n"
        "}, {\n"
        "  name = \"wrong-name\";\n"
        "  listen = [ \"127.0.0.1:0\" ];\n"
        "  mode = \"proxy\";\n"
        "  retries = 0;\n"
        "  upstreams = [ \"127.0.0.1:%d\" ];\n"
        "  upstream_tls = { ca = \"%s\"; verify = true; server_name = \"wrong.example\"; };\n"
        "} );\n",
        up->srv.port, cs->client_ca.cert, up->srv.port, cs->ca.cert);
    struct echod *e = echod_start(t.s);
    static const char *const names[] = {"wrong-ca", "wrong-name"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        int fd = client4(echod_port(e, names[i], 0));
        /* The daemon may have given up (with a reset) before this. */
        (void)send(fd, "hello?", 6, MSG_NOSIGNAL);
        size_t drained = 0;
        enum end how = wait_end(fd, WAIT_MS, &drained);
        close(fd);
        if (how == END_NONE || drained != 0)
            fail_msg("%s: %zu bytes, then %s; expected the connection to fail", names[i],
                     drained, end_name(how));
        expect_metric(e, 1,
                      FAILURES
                      "{listener=\"%s\",side=\"upstream\",reason=\"verify-failed\"}",
                      names[i]);
        expect_metric(e, 0,
                      "mio_echod_tls_handshakes_total{listener=\"%s\",side=\"upstream\"}",
                      names[i]);
    }
    must_log_both(e, "wrong-ca", "verify-failed");
    must_log_both(e, "wrong-name", "verify-failed");
    assert_true(tlss_wait_done(up, 2, WAIT_MS));
    bool wrong_sni = false;
    for (size_t k = 0; k < 2; k++)
        wrong_sni |= strcmp(tlss_seen(up, k)->sni, "wrong.example") == 0;
    if (!wrong_sni)
        fail_msg("server_name \"wrong.example\" was not sent as SNI (saw \"%s\", \"%s\")",
                 tlss_seen(up, 0)->sni, tlss_seen(up, 1)->sni);
    echod_stop_ok(e);
    tlss_stop(up);
}

/* ---- SNI routing
 * ------------------------------------------------------------------------ */

/*
 * sni_routes without decryption: a ClientHello naming a.example (sent in
 * two pieces, 60 ms apart), x.b.example (*.b.example), b.example (which
 * *.b.example does not match), none, and bytes that are not TLS: each
 * upstream gets exactly what its client sent, ClientHello included, and
 * each client gets its upstream's answer.  Then a real TLS session,
 * routed by SNI localhost to a TLS upstream, end to end through the
 * daemon: the client sees the upstream's certificate.
 */
static void test_sni_routing(void **state)
{
    (void)state;
    NEED_CERTS();
    struct recorder *r0 = rec_start("default upstream"), *r1 = rec_start("a.example's"),
                    *r2 = rec_start("*.b.example's");
    struct tlss *tup = tlss_start(
        &(struct tlss_conf){.mode = TLSS_ECHO, .cert = cs->b.cert, .key = cs->b.key});
    struct text t = {0};
    add(&t,
        BASE
        "listeners = ( {\n"
        "  name = \"by-sni\";\n"
        "  listen = [ \"127.0.0.1:0\" ];\n"
        "  mode = \"proxy\";\n"
        "  retries = 0;\n"
        "  upstreams = [ \"127.0.0.1:%d\" ];\n"
        "  sni_routes = ( { server_name = \"a.example\"; upstreams = [ \"127.0.0.1:%d\" ]; },\n"
        "                 { server_name = \"*.b.example\"; upstreams = [ \"127.0.0.1:%d\" ]; },\n"
        "                 { server_name = \"localhost\"; upstreams = [ \"127.0.0.1:%d\" ]; } );\n"
        "} );\n",
        r0->srv.port, r1->srv.port, r2->srv.port, tup->srv.port);
    struct echod *e = echod_start(t.s);
    int port = echod_port(e, "by-sni", 0);
    static const char not_tls[] = "GET / HTTP/1.0\r\nHost: a.example\r\n\r\n";
    const struct {
        const char *sni; /* NULL: none; "": not TLS at all */
        struct recorder *to;
        const char *access_sni;
    } cases[] = {
        {"a.example", r1, "a.example"},
        {"x.b.example", r2, "x.b.example"},
        {"b.example", r0, "b.example"},
        {NULL, r0, "-"},
        {"", r0, "-"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint8_t sent[8192];
        size_t len;
        if (cases[i].sni != NULL && cases[i].sni[0] == '\0') {
            len = sizeof(not_tls) - 1;
            memcpy(sent, not_tls, len);
        } else {
            len = tls_client_hello(&(struct tls_opts){.sni = cases[i].sni}, sent, 4096);
            assert_true(len > 0);
        }
        memcpy(sent + len, pat(i * 1000), 1000); /* and bytes after it */
        len += 1000;
        size_t before = rec_done(cases[i].to);
        int fd = client4(port);
        int cport = local_port(fd);
        if (i == 0) { /* the ClientHello in two pieces */
            send_all(fd, sent, 30);
            sleep_ms(60);
            send_all(fd, sent + 30, len - 30);
        } else {
            send_all(fd, sent, len);
        }
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
        size_t rlen = strlen(cases[i].to->reply);
        char reply[64];
        recv_exact(fd, reply, rlen);
        assert_memory_equal(reply, cases[i].to->reply, rlen);
        assert_true(peer_closed_within(fd, WAIT_MS));
        close(fd);
        int64_t until = ms_now() + WAIT_MS;
        while (rec_done(cases[i].to) == before && ms_now() < until)
            sleep_ms(5);
        struct recorder *r = cases[i].to;
        pthread_mutex_lock(&r->mu);
        bool same = r->ndone > before && r->done[before].len == len &&
                    memcmp(r->done[before].rx, sent, len) == 0;
        size_t got = r->ndone > before ? r->done[before].len : 0;
        pthread_mutex_unlock(&r->mu);
        if (!same)
            fail_msg("SNI %s: the upstream got %zu bytes, not the %zu sent (or others)",
                     cases[i].sni ? cases[i].sni : "(none)", got, len);
        expect_access_tls(e, cport, "-", cases[i].access_sni);
    }
    /* Nothing went where it should not. */
    assert_int_equal(rec_done(r0), 3);
    assert_int_equal(rec_done(r1), 1);
    assert_int_equal(rec_done(r2), 1);

    struct tlsc *c = must_connect(port, &(struct tls_opts){.sni = "localhost"});
    assert_string_equal(tlsc_peer_subject(c), B_CN); /* the upstream's */
    uint8_t *back = xmalloc(64 * KIB);
    if (!tlsc_exchange(c, pat(3), 64 * KIB, back, 64 * KIB, true))
        fail_msg("through the route: %s", tlsc_error(c));
    assert_memory_equal(back, pat(3), 64 * KIB);
    free(back);
    assert_int_equal(tlsc_wait_end(c, WAIT_MS, NULL), TLS_END_CLOSE_NOTIFY);
    tlsc_close(c);
    assert_true(tlss_wait_done(tup, 1, WAIT_MS));
    assert_int_equal(tlss_seen(tup, 0)->end, TLS_END_CLOSE_NOTIFY);
    assert_string_equal(tlss_seen(tup, 0)->sni, "localhost");
    echod_stop_ok(e);
    rec_stop_all();
    tlss_stop(tup);
}

/* ---- reloads
 * ------------------------------------------------------------------------------ */

/* A client that echoes 8 KiB slices in a loop on one connection until
 * told to stop, then ends with close_notify both ways. */
struct streamer {
    int port;
    uint64_t base;
    pthread_t thread;
    atomic_bool stop;
    atomic_int rounds;
    bool ok;
    char err[700];
};

static void *streamer_run(void *arg);

/* The streamers running, stopped by teardown() after a failed test. */
static struct streamer *streamers[8];
static size_t nstreamers;

/* Starts a streamer thread on port. */
static void streamer_start(struct streamer *s, int port, uint64_t base)
{
    assert_true(nstreamers < ARRAY_LEN(streamers));
    memset(s, 0, sizeof(*s));
    s->port = port;
    s->base = base;
    assert_int_equal(pthread_create(&s->thread, NULL, streamer_run, s), 0);
    streamers[nstreamers++] = s;
}

/* Stops every streamer and waits for them (each ends within its client's
 * timeout). */
static void streamers_stop(void)
{
    for (size_t i = 0; i < nstreamers; i++)
        atomic_store(&streamers[i]->stop, true);
    for (size_t i = 0; i < nstreamers; i++)
        pthread_join(streamers[i]->thread, NULL);
    nstreamers = 0;
}

static void *streamer_run(void *arg)
{
    struct streamer *s = arg;
    struct tlsc *c = tlsc_connect(s->port, &(struct tls_opts){.timeout_ms = 5000});
    uint8_t back[8192];
    if (c == NULL)
        return NULL;
    for (int i = 0; i < 1000000 && !atomic_load(&s->stop) && tlsc_ok(c); i++) {
        const uint8_t *p = pat((s->base + (uint64_t)i * 8192) % (PATTERN_LEN - 8192));
        if (!tlsc_exchange(c, p, sizeof(back), back, sizeof(back), false))
            break;
        if (memcmp(back, p, sizeof(back)) != 0) {
            snprintf(s->err, sizeof(s->err), "round %d: the echo differs", i);
            tlsc_close(c);
            return NULL;
        }
        atomic_fetch_add(&s->rounds, 1);
    }
    if (tlsc_ok(c) && tlsc_shutdown(c) &&
        tlsc_wait_end(c, 5000, NULL) == TLS_END_CLOSE_NOTIFY)
        s->ok = true;
    else
        snprintf(s->err, sizeof(s->err), "after %d rounds: %s", atomic_load(&s->rounds),
                 tlsc_error(c));
    tlsc_close(c);
    return NULL;
}

/* Copies the default certificate and key to DIR/live.pem and live.key
 * (DIR a fresh temporary directory) for a test to replace. */
static void live_copies(char *cert, char *key)
{
    const char *dir = test_tmpdir();
    snprintf(cert, PATH_MAX, "%.*s/live.pem", PATH_MAX - 16, dir);
    snprintf(key, PATH_MAX, "%.*s/live.key", PATH_MAX - 16, dir);
    copy_file(cs->server.cert, cert);
    copy_file(cs->server.key, key);
}

/* A daemon with a TLS echo listener "t" on the certificate and key given,
 * on port 0: a reload keeps the port the kernel gave it. */
static struct echod *start_echo_on(const char *cert, const char *key)
{
    return echod_startf(BASE "listeners = ( {\n"
                             "  name = \"t\";\n"
                             "  listen = [ \"127.0.0.1:0\" ];\n"
                             "  mode = \"echo\";\n"
                             "  tls = { certificate = \"%s\"; key = \"%s\"; };\n"
                             "} );\n",
                        cert, key);
}

/* The serial of the certificate a new client gets. */
static long serial_now(int port)
{
    struct tlsc *c = must_connect(port, NULL);
    long serial = tlsc_peer_serial(c);
    echo_and_end(c, "which certificate?");
    return serial;
}

/*
 * A renewed certificate (a new key, serial 0x3001) put in place of the
 * old one and SIGHUP, while four clients stream over TLS: none of them is
 * dropped or misses a byte, each goes on after the reload, and new
 * connections get the renewed certificate.
 */
static void test_reload_renewed_certificate_under_load(void **state)
{
    (void)state;
    NEED_CERTS();
    char cert[PATH_MAX], key[PATH_MAX];
    live_copies(cert, key);
    struct echod *e = start_echo_on(cert, key);
    int port = echod_port(e, "t", 0);
    assert_int_equal(serial_now(port), SERVER_SERIAL);
    enum { N = 4 };
    static struct streamer st[N]; /* teardown() may stop them after this returns */
    for (int i = 0; i < N; i++)
        streamer_start(&st[i], port, (uint64_t)i * 300007);
    int64_t until = ms_now() + WAIT_MS;
    for (int i = 0; i < N; i++)
        while (atomic_load(&st[i].rounds) < 5 && ms_now() < until)
            sleep_ms(5);
    struct cert_pair renewed;
    certs_issue("renewed", "mio-test-renewed", SANS, 0x3001, 365, &renewed);
    copy_file(renewed.key, key);
    copy_file(renewed.cert, cert);
    int at_reload[N];
    for (int i = 0; i < N; i++)
        at_reload[i] = atomic_load(&st[i].rounds);
    echod_reload_ok(e, WAIT_MS);
    struct tlsc *c = must_connect(port, &(struct tls_opts){.ca = cs->ca.cert,
                                                           .verify_name = "localhost"});
    assert_string_equal(tlsc_peer_subject(c), "CN=mio-test-renewed");
    assert_int_equal(tlsc_peer_serial(c), 0x3001);
    echo_and_end(c, "after the reload");
    until = ms_now() + WAIT_MS;
    for (int i = 0; i < N; i++)
        while (atomic_load(&st[i].rounds) < at_reload[i] + 5 && ms_now() < until)
            sleep_ms(5);
    streamers_stop();
    for (int i = 0; i < N; i++) {
        if (!st[i].ok)
            fail_msg("stream %d: %s", i, st[i].err);
        if (atomic_load(&st[i].rounds) < at_reload[i] + 5)
            fail_msg("stream %d: %d rounds after the reload, expected 5 at least", i,
                     atomic_load(&st[i].rounds) - at_reload[i]);
    }
    echod_stop_ok(e);
}

/* SIGHUP and waits for one more "reload failed" line, which must name
 * one of the files (key or cert); returns it. */
static const char *reload_fails(struct echod *e, const char *key, const char *cert)
{
    int n = echod_count_log(e, "reload failed");
    echod_signal(e, SIGHUP);
    if (!echod_wait_count(e, "reload failed", n + 1, WAIT_MS)) {
        const char *any = echod_log_line(e, "reload", 0);
        fail_msg("no \"reload failed\" line within %d ms (%s)", WAIT_MS,
                 any != NULL ? any : "no reload line at all");
    }
    const char *line = echod_log_line(e, "reload failed", n);
    if (strstr(line, key) == NULL && strstr(line, cert) == NULL)
        fail_msg("\"reload failed\" names neither %s nor %s: %s", key, cert, line);
    return line;
}

/* A key that does not match the certificate, then one that is not a key:
 * each reload fails naming the file, the old certificate stays, new
 * connections are served; mended, the reload applies. */
static void test_reload_bad_key_keeps_old_certificate(void **state)
{
    (void)state;
    NEED_CERTS();
    char cert[PATH_MAX], key[PATH_MAX];
    live_copies(cert, key);
    struct echod *e = start_echo_on(cert, key);
    int port = echod_port(e, "t", 0);
    struct tlsc *old = must_connect(port, NULL);

    copy_file(cs->wrong_key, key);
    reload_fails(e, key, cert);
    assert_int_equal(serial_now(port), SERVER_SERIAL);

    FILE *f = fopen(key, "w");
    assert_non_null(f);
    fputs("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    reload_fails(e, key, cert);
    assert_int_equal(serial_now(port), SERVER_SERIAL);
    echo_and_end(old, "a connection from before the failed reloads");

    struct cert_pair renewed;
    certs_issue("renewed2", "mio-test-renewed", SANS, 0x3002, 365, &renewed);
    copy_file(renewed.key, key);
    copy_file(renewed.cert, cert);
    echod_reload_ok(e, WAIT_MS);
    assert_int_equal(serial_now(port), 0x3002);
    echod_stop_ok(e);
}

/* ---- files: relative paths, -t
 * ------------------------------------------------------------- */

/* Relative paths are taken from the configuration's directory, or from
 * $CREDENTIALS_DIRECTORY when it is set. */
static void test_relative_paths(void **state)
{
    (void)state;
    NEED_CERTS();
    static const char conf[] = BASE
        "listeners = ( {\n"
        "  name = \"t\";\n"
        "  listen = [ \"127.0.0.1:0\" ];\n"
        "  mode = \"echo\";\n"
        "  tls = { certificate = \"cert.pem\"; key = \"key.pem\"; };\n"
        "} );\n";
    char path[PATH_MAX];
    const char *confdir = test_tmpdir();
    snprintf(path, sizeof(path), "%.*s/cert.pem", PATH_MAX - 16, confdir);
    copy_file(cs->server.cert, path);
    snprintf(path, sizeof(path), "%.*s/key.pem", PATH_MAX - 16, confdir);
    copy_file(cs->server.key, path);
    struct echod *e = echod_start_opts(conf, &(struct echod_opts){.dir = confdir});
    assert_int_equal(serial_now(echod_port(e, "t", 0)), SERVER_SERIAL);
    echod_stop_ok(e);

    const char *creds = test_tmpdir();
    snprintf(path, sizeof(path), "%.*s/cert.pem", PATH_MAX - 16, creds);
    copy_file(cs->b.cert, path);
    snprintf(path, sizeof(path), "%.*s/key.pem", PATH_MAX - 16, creds);
    copy_file(cs->b.key, path);
    setenv("CREDENTIALS_DIRECTORY", creds, 1);
    e = echod_start_opts(conf, &(struct echod_opts){.dir = confdir});
    unsetenv("CREDENTIALS_DIRECTORY");
    assert_int_equal(serial_now(echod_port(e, "t", 0)), B_SERIAL);
    echod_stop_ok(e);
}

/* "mio-echod -t" on a listener with this certificate and key: its exit
 * status, and its output into out. */
static int check_with(const char *cert, const char *key, char *out, size_t len)
{
    char conf[3 * PATH_MAX];
    snprintf(conf, sizeof(conf),
             "listeners = ( {\n"
             "  name = \"t\";\n"
             "  listen = [ \"127.0.0.1:0\" ];\n"
             "  mode = \"echo\";\n"
             "  tls = { certificate = \"%s\"; key = \"%s\"; };\n"
             "} );\n",
             cert, key);
    return echod_run(out, len, "-t", "-c", write_conf(conf), (char *)NULL);
}

/* -t: a good pair passes without a word about expiry; one expiring in 10
 * days passes with a warning naming the file and "expires"; an expired
 * one is reported ("expired", the file); a key that does not match fails
 * naming the file. */
static void test_check_mode(void **state)
{
    (void)state;
    NEED_CERTS();
    char out[8192];
    int rc = check_with(cs->server.cert, cs->server.key, out, sizeof(out));
    if (rc != 0 || strstr(out, "expire") != NULL)
        fail_msg("a good pair: exit %d: %s", rc, out);
    rc = check_with(cs->expiring.cert, cs->expiring.key, out, sizeof(out));
    if (rc != 0 || strstr(out, "expires") == NULL ||
        strstr(out, cs->expiring.cert) == NULL)
        fail_msg("expiring in 10 days: exit %d, expected 0 and a warning naming %s with "
                 "\"expires\": %s",
                 rc, cs->expiring.cert, out);
    rc = check_with(cs->expired.cert, cs->expired.key, out, sizeof(out));
    if (strstr(out, "expired") == NULL || strstr(out, cs->expired.cert) == NULL)
        fail_msg("expired: exit %d, expected \"expired\" naming %s: %s", rc,
                 cs->expired.cert, out);
    print_message("    -t on an expired certificate: exit %d\n", rc);
    rc = check_with(cs->server.cert, cs->wrong_key, out, sizeof(out));
    if (rc == 0 || strstr(out, cs->wrong_key) == NULL)
        fail_msg("a key that does not match: exit %d, expected non-zero naming %s: %s",
                 rc, cs->wrong_key, out);
}

/* The configuration's TLS errors: a missing certificate file or key file
 * names file:line and the setting; min_version "TLSv1.1" is refused with
 * the choices. */
static void test_config_errors(void **state)
{
    (void)state;
    NEED_CERTS();
    char conf[3 * PATH_MAX], missing[PATH_MAX];
    snprintf(missing, sizeof(missing), "%.*s/no-such.pem", PATH_MAX - 16, cs->dir);
    static const char fmt[] = "listeners = ( {\n"
                              "  name = \"t\";\n"
                              "  listen = [ \"127.0.0.1:0\" ];\n"
                              "  mode = \"echo\";\n"
                              "  tls = {\n"
                              "    certificate = \"%s\";\n"
                              "    key = \"%s\";\n"
                              "    %s\n"
                              "  };\n"
                              "} );\n";
    snprintf(conf, sizeof(conf), fmt, missing, cs->server.key, "");
    expect_conf_error("a missing certificate file", conf, 6,
                      "listeners.t.tls.certificate");
    char out[4096];
    int rc = echod_run(out, sizeof(out), "-t", "-c", write_conf(conf), (char *)NULL);
    if (strstr(out, missing) == NULL)
        fail_msg("a missing certificate file: exit %d, not naming %s: %s", rc, missing,
                 out);
    snprintf(conf, sizeof(conf), fmt, cs->server.cert, missing, "");
    expect_conf_error("a missing key file", conf, 7, "listeners.t.tls.key");
    snprintf(conf, sizeof(conf), fmt, cs->server.cert, cs->server.key,
             "min_version = \"TLSv1.1\";");
    expect_conf_error("min_version TLSv1.1", conf, 8,
                      "listeners.t.tls.min_version: expected TLSv1.2 or TLSv1.3, got "
                      "\"TLSv1.1\"");
}

/* ---- the access line
 * ----------------------------------------------------------------------- */

/* A plain listener's access line says tls=- sni=-; a TLS one names the
 * version and cipher the client agreed, and the SNI it sent. */
static void test_access_line_fields(void **state)
{
    (void)state;
    NEED_CERTS();
    struct text t = {0};
    add(&t, BASE "listeners = ( { name = \"plain\"; listen = [ \"127.0.0.1:0\" ]; "
                 "mode = \"echo\"; }, ");
    add_tls_echo(&t, "t", NULL, NULL);
    add(&t, " );\n");
    struct echod *e = echod_start(t.s);
    int fd = client4(echod_port(e, "plain", 0));
    int cport = local_port(fd);
    expect_echo(fd, "plain");
    finish(fd);
    expect_access_tls(e, cport, "-", "-");

    struct tlsc *c = must_connect(
        echod_port(e, "t", 0),
        &(struct tls_opts){.sni = "a.example", .ciphersuites = "TLS_AES_128_GCM_SHA256"});
    cport = echo_and_end(c, "tls");
    const char *line = expect_access_tls(e, cport, "TLSv1.3/TLS_AES_128_GCM_SHA256",
                                         "a.example");
    if (strstr(line, " reason=done") == NULL)
        fail_msg("a clean TLS end is not reason=done: %s", line);
    echod_stop_ok(e);
}

/*
 * A server name with a quote, a control byte, a backslash, DEL and a byte
 * that is not UTF-8, in the access lines: written \xNN in text (but the
 * quote and the backslash), escaped in JSON so that Python's json module
 * reads back its very bytes (the stray byte as U+00FF).  And TLS
 * connections' interim lines (log.interval) count the payload, not the
 * records.
 */
static void test_access_line_escapes_the_server_name(void **state)
{
    (void)state;
    NEED_CERTS();
    static const char sni[] = "q\"\x01\\\x7f\xffz";
    struct text t = {0};
    add(&t, "workers = 2;\n"
            "log = { target = \"stderr\"; format = \"text\"; interval = 0.2; };\n"
            "listeners = ( ");
    add_tls_echo(&t, "t", NULL, NULL);
    add(&t, " );\n");
    struct echod *e = echod_start(t.s);
    int port = echod_port(e, "t", 0);
    int cport = echo_and_end(must_connect(port, &(struct tls_opts){.sni = sni}), "x");
    const char *line = access_of(e, cport);
    if (strstr(line, " sni=q\"\\x01\\\\x7f\\xffz reason=done") == NULL)
        fail_msg("expected sni=q\"\\x01\\\\x7f\\xffz in: %s", line);

    char *json = strstr(t.s, "\"text\"");
    assert_non_null(json);
    memcpy(json, "\"json\"", 6);
    echod_rewrite_conf(e, "%s", t.s);
    echod_signal(e, SIGHUP);
    if (!echod_wait_count(e, "{\"level\":\"notice\",\"message\":\"reloaded ", 1, WAIT_MS))
        fail_msg("no JSON \"reloaded\" line after SIGHUP");
    struct tlsc *c = must_connect(port, &(struct tls_opts){.sni = sni});
    cport = tlsc_port(c);
    char out[3000], back[3000];
    memcpy(out, pat(0), sizeof(out));
    if (!tlsc_exchange(c, out, sizeof(out), back, sizeof(back), false))
        fail_msg("%s", tlsc_error(c));
    char needle[128];
    snprintf(needle, sizeof(needle),
             "\"client\":\"127.0.0.1:%d\",\"upstream\":null,\"in\":3000,\"out\":3000,",
             cport);
    line = echod_wait_log(e, needle, WAIT_MS);
    if (line == NULL)
        fail_msg("no interim line with %s", needle);
    char *fields = json_fields(&line, 1);
    if (fields == NULL) {
        print_message("    skipped: python3 is not there\n");
        tlsc_close(c);
        skip();
    }
    char want[512];
    snprintf(want, sizeof(want),
             "level=s:info\ttype=s:access\tlistener=s:t\tclient=s:127.0.0.1:%d\t"
             "upstream=null\tin=i:3000\tout=i:3000\tduration=f:*\ttls=s:TLSv1.3/*\t"
             "sni=s:q\"\\x01\\x5c\\x7f\\xc3\\xbfz\treason=s:interim",
             cport);
    json_expect_fields(fields, want);
    free(fields);
    assert_int_equal(echo_and_end(c, "abc"), cport);
    snprintf(needle, sizeof(needle), "\"client\":\"127.0.0.1:%d\"", cport);
    line = must_log_both(e, needle, "\"reason\":\"done\"");
    fields = json_fields(&line, 1);
    snprintf(want, sizeof(want),
             "level=s:info\ttype=s:access\tlistener=s:t\tclient=s:127.0.0.1:%d\t"
             "upstream=null\tin=i:3003\tout=i:3003\tduration=f:*\ttls=s:TLSv1.3/*\t"
             "sni=s:q\"\\x01\\x5c\\x7f\\xc3\\xbfz\treason=s:done",
             cport);
    json_expect_fields(fields, want);
    free(fields);
    echod_stop_ok(e);
}

/* ---- TLS with the relay's other features ------------------------------------------ */

/*
 * accept_proxy with tls: the PROXY header and the ClientHello come in one
 * segment (MSG_MORE), so that the header's read takes the first bytes of
 * the handshake with it; the session must read those first.  Echo works
 * byte for byte and the client is the one the header declares.
 */
static void test_proxy_header_then_tls(void **state)
{
    (void)state;
    NEED_CERTS();
    struct echod *e = start_tls_echo(NULL, "accept_proxy = true;");
    int port = echod_port(e, "t", 0);
    static const char *const headers[] = {
        "PROXY TCP4 192.0.2.9 127.0.0.1 5555 7443\r\n",
        /* v2, TCP over IPv4, 192.0.2.10:5556 to 127.0.0.1:7443 */
        "\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x0c\xc0\0\x02\x0a\x7f\0\0\x01\x15\xb4\x1d\x13",
    };
    static const size_t lens[] = {sizeof("PROXY TCP4 192.0.2.9 127.0.0.1 5555 7443\r\n") -
                                      1,
                                  28};
    static const char *const sources[] = {"192.0.2.9:5555", "192.0.2.10:5556"};
    for (size_t i = 0; i < ARRAY_LEN(headers); i++) {
        int fd = client4(port);
        if (send(fd, headers[i], lens[i], MSG_MORE) != (ssize_t)lens[i])
            fail_msg("send: %s", strerror(errno));
        struct tlsc *c = tlsc_connect_fd(fd,
                                         &(struct tls_opts){.ca = cs->ca.cert,
                                                            .verify_name = "localhost"});
        assert_non_null(c);
        if (!tlsc_ok(c))
            fail_msg("PROXY v%zu then TLS: %s", i + 1, tlsc_error(c));
        size_t n = 100000;
        uint8_t *back = xmalloc(n);
        if (!tlsc_exchange(c, pat(i * 7), n, back, n, true) ||
            memcmp(back, pat(i * 7), n) != 0)
            fail_msg("PROXY v%zu then TLS: the echo: %s", i + 1, tlsc_error(c));
        free(back);
        tlsc_close(c);
        char needle[96];
        snprintf(needle, sizeof(needle), " client=%s ", sources[i]);
        const char *line = must_log_both(e, needle, " tls=TLSv1.3/");
        if (log_field(line, " in=") != (long long)n ||
            log_field(line, " out=") != (long long)n)
            fail_msg("expected in=%zu out=%zu: %s", n, n, line);
    }
    echod_stop_ok(e);
}

/* tls with sni_routes: the connection is decrypted and routed by the name
 * of its handshake; the upstream gets the plaintext. */
static void test_tls_routed_by_handshake_name(void **state)
{
    (void)state;
    NEED_CERTS();
    struct recorder *r0 = rec_start("default's"), *r1 = rec_start("a.example's");
    struct text t = {0};
    char extra[512];
    snprintf(extra, sizeof(extra),
             "upstreams = [ \"127.0.0.1:%d\" ];\n"
             "  sni_routes = ( { server_name = \"a.example\"; "
             "upstreams = [ \"127.0.0.1:%d\" ]; } );",
             r0->srv.port, r1->srv.port);
    add(&t, BASE "listeners = ( ");
    add_tls_listener(&t, "t", "proxy", NULL, extra);
    add(&t, " );\n");
    struct echod *e = echod_start(t.s);
    int port = echod_port(e, "t", 0);
    const struct {
        const char *sni;
        struct recorder *to;
    } cases[] = {{"a.example", r1}, {"localhost", r0}, {NULL, r0}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct tlsc *c = must_connect(port, &(struct tls_opts){.sni = cases[i].sni});
        static const char msg[] = "plaintext for the upstream";
        size_t before = rec_done(cases[i].to);
        assert_true(tlsc_write_all(c, msg, sizeof(msg) - 1));
        assert_true(tlsc_shutdown(c)); /* close_notify: the upstream's EOF */
        size_t rlen = strlen(cases[i].to->reply);
        char reply[64];
        if (!tlsc_read_exact(c, reply, rlen) ||
            memcmp(reply, cases[i].to->reply, rlen) != 0)
            fail_msg("SNI %s: no reply from its upstream: %s",
                     cases[i].sni ? cases[i].sni : "(none)", tlsc_error(c));
        tlsc_close(c);
        int64_t until = ms_now() + WAIT_MS;
        while (rec_done(cases[i].to) == before && ms_now() < until)
            sleep_ms(5);
        struct recorder *r = cases[i].to;
        pthread_mutex_lock(&r->mu);
        bool same = r->ndone > before && r->done[before].len == sizeof(msg) - 1 &&
                    memcmp(r->done[before].rx, msg, sizeof(msg) - 1) == 0;
        pthread_mutex_unlock(&r->mu);
        if (!same)
            fail_msg("SNI %s: the upstream did not get the plaintext",
                     cases[i].sni ? cases[i].sni : "(none)");
    }
    assert_int_equal(rec_done(r1), 1);
    assert_int_equal(rec_done(r0), 2);
    echod_stop_ok(e);
}

/*
 * upstream_tls resumes: the second connection to the same upstream
 * address resumes the session the first one got (a TLS 1.3 ticket), so
 * only the first pays for a full handshake; a reload starts afresh.
 */
static void test_upstream_sessions_resumed(void **state)
{
    (void)state;
    NEED_CERTS();
    struct tlss *up = echo_upstream(NULL, 2);
    struct echod *e = echod_startf(
        BASE
        "listeners = ( { name = \"r\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "  retries = 0; upstreams = [ \"127.0.0.1:%d\" ];\n"
        "  upstream_tls = { ca = \"%s\"; }; } );\n",
        up->srv.port, cs->ca.cert);
    int port = echod_port(e, "r", 0);
    enum { N = 4 };
    for (int i = 0; i < N; i++) {
        if (i == N - 1)
            echod_reload_ok(e, WAIT_MS);
        int fd = client4(port);
        expect_echo(fd, "resumed?");
        finish(fd);
        if (!tlss_wait_done(up, (size_t)i + 1, WAIT_MS))
            fail_msg("connection %d: the upstream saw no end", i);
        const struct tlss_seen *seen = tlss_seen(up, (size_t)i);
        bool want = i > 0 && i < N - 1; /* none to resume first, and after the reload */
        if (!seen->handshake_ok || seen->resumed != want)
            fail_msg("connection %d: %s, expected %s (%s)", i,
                     seen->resumed ? "resumed" : "a full handshake",
                     want ? "resumed" : "a full handshake", seen->err);
    }
    echod_stop_ok(e);
}

/* send_proxy with upstream_tls: the PROXY header goes in the clear, before
 * the ClientHello, as HAProxy and nginx read it. */
static void test_send_proxy_before_upstream_tls(void **state)
{
    (void)state;
    NEED_CERTS();
    struct recorder *r = rec_start("");
    struct echod *e = echod_startf(
        BASE
        "listeners = ( { name = \"r\"; listen = [ \"127.0.0.1:0\" ]; mode = \"proxy\";\n"
        "  retries = 0; connect_timeout = 0.3; send_proxy = \"v2\";\n"
        "  upstreams = [ \"127.0.0.1:%d\" ];\n"
        "  upstream_tls = { verify = false; }; } );\n",
        r->srv.port);
    int fd = client4(echod_port(e, "r", 0));
    /* The recorder never answers the handshake: it times out, the daemon
     * closes, and the recorder has what came before. */
    int64_t until = ms_now() + WAIT_MS;
    while (rec_done(r) == 0 && ms_now() < until)
        sleep_ms(10);
    close(fd);
    pthread_mutex_lock(&r->mu);
    size_t len = r->ndone > 0 ? r->done[0].len : 0;
    uint8_t head[64] = {0};
    memcpy(head, r->done[0].rx, len < sizeof(head) ? len : sizeof(head));
    pthread_mutex_unlock(&r->mu);
    static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
    if (len < 16 || memcmp(head, sig, sizeof(sig)) != 0)
        fail_msg("the upstream's first bytes are not a PROXY v2 header (%zu bytes)", len);
    size_t hlen = 16 + ((size_t)head[14] << 8 | head[15]);
    if (len < hlen + 3 || head[hlen] != 0x16 || head[hlen + 1] != 0x03)
        fail_msg("no TLS handshake record right after the %zu-byte PROXY header", hlen);
    must_log_both(e, "TLS handshake with upstream", "timeout");
    echod_stop_ok(e);
}

/* An idle TLS connection costs less than 40 KiB of the daemon's memory
 * (bench/RESULTS.md: about 14 KiB, OpenSSL's session state). */
static void test_idle_memory(void **state)
{
    (void)state;
    NEED_CERTS();
    enum { WARM = 20, N = 200 };
    struct echod *e = start_tls_echo(NULL, NULL);
    int port = echod_port(e, "t", 0);
    struct tlsc *c[WARM + N];
    long before = 0;
    for (int i = 0; i < WARM + N; i++) {
        if (i == WARM) {
            sleep_ms(200);
            before = echod_rss_kib(e);
        }
        c[i] = must_connect(port, &(struct tls_opts){.sni = "localhost"});
        char back[100];
        if (!tlsc_exchange(c[i], pat((size_t)i), sizeof(back), back, sizeof(back), false))
            fail_msg("connection %d: %s", i, tlsc_error(c[i]));
    }
    sleep_ms(200);
    long after = echod_rss_kib(e);
    double each = (double)(after - before) / N;
    print_message("    %d idle TLS connections: %ld KiB, %.1f KiB each\n", N,
                  after - before, each);
    if (SANITIZED)
        print_message("    (RSS not checked under a sanitizer)\n");
    else if (each >= 40.0)
        fail_msg("%.1f KiB per idle TLS connection, expected under 40", each);
    for (int i = 0; i < WARM + N; i++)
        tlsc_close(c[i]);
    echod_stop_ok(e);
}

int main(void)
{
    if (!pattern_init(PATTERN_LEN, 0x715))
        return 1;
    cs = certs_get();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_echo_sizes_concurrent, teardown),
        cmocka_unit_test_teardown(test_echo_openssl_s_client, teardown),
        cmocka_unit_test_teardown(test_mtls, teardown),
        cmocka_unit_test_teardown(test_sni_selects_certificate, teardown),
        cmocka_unit_test_teardown(test_alpn, teardown),
        cmocka_unit_test_teardown(test_versions_and_suites, teardown),
        cmocka_unit_test_teardown(test_half_close_echo, teardown),
        cmocka_unit_test_teardown(test_half_close_relay, teardown),
        cmocka_unit_test_teardown(test_truncation_logged, teardown),
        cmocka_unit_test_teardown(test_handshake_timeout, teardown),
        cmocka_unit_test_teardown(test_reencrypt, teardown),
        cmocka_unit_test_teardown(test_upstream_verify_failures, teardown),
        cmocka_unit_test_teardown(test_sni_routing, teardown),
        cmocka_unit_test_teardown(test_reload_renewed_certificate_under_load, teardown),
        cmocka_unit_test_teardown(test_reload_bad_key_keeps_old_certificate, teardown),
        cmocka_unit_test_teardown(test_relative_paths, teardown),
        cmocka_unit_test_teardown(test_check_mode, teardown),
        cmocka_unit_test_teardown(test_config_errors, teardown),
        cmocka_unit_test_teardown(test_access_line_fields, teardown),
        cmocka_unit_test_teardown(test_access_line_escapes_the_server_name, teardown),
        cmocka_unit_test_teardown(test_proxy_header_then_tls, teardown),
        cmocka_unit_test_teardown(test_tls_routed_by_handshake_name, teardown),
        cmocka_unit_test_teardown(test_upstream_sessions_resumed, teardown),
        cmocka_unit_test_teardown(test_send_proxy_before_upstream_tls, teardown),
        cmocka_unit_test_teardown(test_idle_memory, teardown),
    };
    test_filter_from_env("TLS_TEST");
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pattern_free();
    return rc;
}
