/*
 * The TLS test helpers (tests/common/certs, tlsclient, tlsserver) checked
 * before the daemon's tests rely on them: the certificates verify as
 * certs.h says (names, dates, issuers), the client and the test server
 * agree byte for byte with close_notify both ways, and each stands up to
 * OpenSSL's own tools (the client against openssl s_server, the server
 * under openssl s_client).  No daemon runs here.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "certs.h"
#include "harness.h"
#include "tlsclient.h"
#include "tlsserver.h"

static const struct certs *cs;

/* Makes the certificates once, or skips (no openssl command). */
static int setup(void **state)
{
    (void)state;
    cs = certs_get();
    return 0;
}

#define NEED_CERTS()                                                 \
    do {                                                             \
        if (cs == NULL) {                                            \
            print_message("    skipped: %s\n", certs_unavailable()); \
            skip();                                                  \
        }                                                            \
    } while (0)

static int teardown(void **state)
{
    tlsc_close_all();
    tlss_stop_all();
    return teardown_all(state);
}

/* An echoing test server with the default certificate. */
static struct tlss *echo_server(void)
{
    return tlss_start(&(struct tlss_conf){.mode = TLSS_ECHO,
                                          .cert = cs->server.cert,
                                          .key = cs->server.key});
}

/* A client's handshake must succeed; the client. */
static struct tlsc *must_connect(int port, const struct tls_opts *o)
{
    struct tlsc *c = tlsc_connect(port, o);
    assert_non_null(c);
    if (!tlsc_ok(c))
        fail_msg("handshake with 127.0.0.1:%d: %s", port, tlsc_error(c));
    return c;
}

/* The server certificate verifies for each of its names, and for no
 * other; the expired one does not verify; each subject and serial is as
 * certs.h says. */
static void test_certificates_verify_as_documented(void **state)
{
    (void)state;
    NEED_CERTS();
    struct tlss *s = echo_server();
    static const char *const good[] = {"localhost", "a.example", "127.0.0.1"};
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        struct tlsc *c = must_connect(s->srv.port,
                                      &(struct tls_opts){.ca = cs->ca.cert,
                                                         .verify_name = good[i]});
        assert_string_equal(tlsc_peer_subject(c), "CN=mio-test-server");
        assert_int_equal(tlsc_peer_serial(c), 0x1001);
        tlsc_close(c);
    }
    struct tlsc *c = tlsc_connect(s->srv.port,
                                  &(struct tls_opts){.ca = cs->ca.cert,
                                                     .verify_name = "b.example"});
    assert_false(tlsc_ok(c));
    assert_non_null(strstr(tlsc_error(c), "verify"));
    tlsc_close(c);
    /* Another CA does not vouch for it. */
    c = tlsc_connect(s->srv.port, &(struct tls_opts){.ca = cs->client_ca.cert});
    assert_false(tlsc_ok(c));
    tlsc_close(c);
    tlss_stop(s);

    const struct {
        const struct cert_pair *pair;
        const char *subject, *name;
        long serial;
        const char *fails; /* NULL: verifies */
    } more[] = {
        {&cs->b, "CN=mio-test-b", "x.b.example", 0x1002, NULL},
        {&cs->expiring, "CN=mio-test-expiring", "localhost", 0x1004, NULL},
        {&cs->expired, "CN=mio-test-expired", "localhost", 0x1003,
         "certificate has expired"},
    };
    for (size_t i = 0; i < ARRAY_LEN(more); i++) {
        s = tlss_start(
            &(struct tlss_conf){.cert = more[i].pair->cert, .key = more[i].pair->key});
        c = tlsc_connect(s->srv.port, &(struct tls_opts){.ca = cs->ca.cert,
                                                         .verify_name = more[i].name});
        if (more[i].fails == NULL) {
            if (!tlsc_ok(c))
                fail_msg("%s: %s", more[i].subject, tlsc_error(c));
            assert_string_equal(tlsc_peer_subject(c), more[i].subject);
            assert_int_equal(tlsc_peer_serial(c), more[i].serial);
        } else if (tlsc_ok(c) || strstr(tlsc_error(c), more[i].fails) == NULL) {
            fail_msg("%s: expected \"%s\", got %s", more[i].subject, more[i].fails,
                     tlsc_ok(c) ? "a handshake" : tlsc_error(c));
        }
        tlsc_close(c);
        tlss_stop(s);
    }
}

/* The chain file is the leaf then the CA; wrong.key matches no
 * certificate: a server does not start with it. */
static void test_chain_and_wrong_key(void **state)
{
    (void)state;
    NEED_CERTS();
    struct tlss *s = tlss_start(
        &(struct tlss_conf){.cert = cs->server_chain, .key = cs->server.key});
    struct tlsc *c = must_connect(s->srv.port, &(struct tls_opts){.ca = cs->ca.cert});
    assert_string_equal(tlsc_peer_subject(c), "CN=mio-test-server");
    tlsc_close(c);
    tlss_stop(s);

    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, cs->server.cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, cs->wrong_key, SSL_FILETYPE_PEM),
                     0);
    SSL_CTX_free(ctx);
}

/* 1 MiB each way at once, then close_notify both ways; the server saw
 * every byte and the client's close_notify. */
static void test_echo_and_close_notify(void **state)
{
    (void)state;
    NEED_CERTS();
    struct tlss *s = echo_server();
    size_t n = MIB;
    uint8_t *out = malloc(n), *in = malloc(n);
    assert_true(out != NULL && in != NULL);
    fill_random(out, n, 7);
    struct tlsc *c = must_connect(s->srv.port, &(struct tls_opts){.ca = cs->ca.cert,
                                                                  .sni = "localhost"});
    if (!tlsc_exchange(c, out, n, in, n, true))
        fail_msg("%s", tlsc_error(c));
    assert_memory_equal(in, out, n);
    enum tls_end end = tlsc_wait_end(c, 3000, NULL);
    assert_string_equal(tls_end_name(end), "close_notify");
    tlsc_close(c);
    assert_true(tlss_wait_done(s, 1, 3000));
    const struct tlss_seen *w = tlss_seen(s, 0);
    assert_true(w->handshake_ok);
    assert_string_equal(w->sni, "localhost");
    assert_string_equal(w->version, "TLSv1.3");
    assert_int_equal(w->end, TLS_END_CLOSE_NOTIFY);
    assert_int_equal(w->rxlen, n);
    assert_memory_equal(w->rx, out, n);
    free(out);
    free(in);
    tlss_stop(s);
}

/* A client that closes without close_notify is a truncation to the
 * server; a reply-at-the-end server answers after close_notify. */
static void test_truncation_and_reply(void **state)
{
    (void)state;
    NEED_CERTS();
    struct tlss *s = echo_server();
    struct tlsc *c = must_connect(s->srv.port, NULL);
    assert_true(tlsc_write_all(c, "abc", 3));
    char back[3];
    assert_true(tlsc_read_exact(c, back, 3));
    tlsc_close(c);
    assert_true(tlss_wait_done(s, 1, 3000));
    assert_int_equal(tlss_seen(s, 0)->end, TLS_END_TRUNCATED);
    assert_int_equal(atomic_load(&s->truncations), 1);
    tlss_stop(s);

    static const char reply[] = "the answer after the end";
    s = tlss_start(&(struct tlss_conf){.mode = TLSS_REPLY_EOF,
                                       .cert = cs->server.cert,
                                       .key = cs->server.key,
                                       .reply = reply,
                                       .reply_len = sizeof(reply) - 1});
    c = must_connect(s->srv.port, NULL);
    char got[sizeof(reply) - 1];
    if (!tlsc_exchange(c, "question", 8, got, sizeof(got), true))
        fail_msg("%s", tlsc_error(c));
    assert_memory_equal(got, reply, sizeof(got));
    assert_int_equal(tlsc_wait_end(c, 3000, NULL), TLS_END_CLOSE_NOTIFY);
    tlsc_close(c);
    assert_true(tlss_wait_done(s, 1, 3000));
    assert_int_equal(tlss_seen(s, 0)->rxlen, 8);
    tlss_stop(s);
}

/* mTLS on the test server: a client certificate from its CA is taken
 * (and its subject noted); none, or one from another CA, is refused. */
static void test_client_certificates(void **state)
{
    (void)state;
    NEED_CERTS();
    struct tlss *s = tlss_start(&(struct tlss_conf){.cert = cs->server.cert,
                                                    .key = cs->server.key,
                                                    .client_ca = cs->client_ca.cert});
    struct tlsc *c = must_connect(s->srv.port, &(struct tls_opts){.cert = cs->client.cert,
                                                                  .key = cs->client.key});
    assert_true(tlsc_exchange(c, "x", 1, (char[1]){0}, 1, true));
    tlsc_close(c);
    const struct tls_opts refused[] = {
        {.timeout_ms = 2000},
        {.cert = cs->stranger.cert, .key = cs->stranger.key, .timeout_ms = 2000},
    };
    for (size_t i = 0; i < ARRAY_LEN(refused); i++) {
        c = tlsc_connect(s->srv.port, &refused[i]);
        /* TLS 1.3: the refusal comes with the first read. */
        char b;
        assert_false(tlsc_ok(c) && tlsc_exchange(c, "x", 1, &b, 1, false));
        if (tlsc_alert(c) <= 0)
            fail_msg("refused without an alert: %s", tlsc_error(c));
        tlsc_close(c);
    }
    assert_true(tlss_wait_done(s, 3, 3000));
    assert_string_equal(tlss_seen(s, 0)->peer, "/CN=mio-test-client");
    assert_int_equal(atomic_load(&s->handshakes), 1);
    assert_int_equal(atomic_load(&s->failures), 2);
    tlss_stop(s);
}

/* ALPN, versions and a TLS 1.3 suite as asked. */
static void test_alpn_versions_suites(void **state)
{
    (void)state;
    NEED_CERTS();
    struct tlss *s = tlss_start(&(struct tlss_conf){.cert = cs->server.cert,
                                                    .key = cs->server.key,
                                                    .alpn = "h2,http/1.1"});
    struct tlsc *c = must_connect(s->srv.port, &(struct tls_opts){.alpn = "http/1.1,x"});
    assert_string_equal(tlsc_alpn(c), "http/1.1");
    tlsc_close(c);
    c = must_connect(s->srv.port, &(struct tls_opts){.max_version = TLS1_2_VERSION});
    assert_string_equal(tlsc_version(c), "TLSv1.2");
    assert_string_equal(tlsc_alpn(c), "");
    tlsc_close(c);
    c = must_connect(s->srv.port,
                     &(struct tls_opts){.ciphersuites = "TLS_CHACHA20_POLY1305_SHA256"});
    assert_string_equal(tlsc_version(c), "TLSv1.3");
    assert_string_equal(tlsc_cipher(c), "TLS_CHACHA20_POLY1305_SHA256");
    tlsc_close(c);
    tlss_stop(s);
}

/* A ClientHello as a client sends it: a handshake record that names the
 * SNI. */
static void test_client_hello(void **state)
{
    (void)state;
    uint8_t buf[4096];
    size_t n = tls_client_hello(&(struct tls_opts){.sni = "a.example"}, buf, sizeof(buf));
    assert_true(n > 100);
    assert_int_equal(buf[0], 0x16); /* handshake */
    assert_int_equal(buf[1], 0x03);
    assert_int_equal(buf[5], 0x01); /* ClientHello */
    assert_non_null(memmem(buf, n, "a.example", 9));
    assert_int_equal((size_t)((buf[3] << 8) | buf[4]) + 5, n); /* one record */
}

/* The client against openssl s_server: -rev sends each line back
 * reversed; s_server killed ends without close_notify, a truncation. */
static void test_client_against_s_server(void **state)
{
    (void)state;
    NEED_CERTS();
    int port = reserve_port();
    char accept_arg[32];
    snprintf(accept_arg, sizeof(accept_arg), "127.0.0.1:%d", port);
    char *argv[] = {"openssl",
                    "s_server",
                    "-quiet",
                    "-accept",
                    accept_arg,
                    "-cert",
                    (char *)cs->server.cert,
                    "-key",
                    (char *)cs->server.key,
                    "-naccept",
                    "1",
                    "-rev",
                    NULL};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* dies with us; says nothing */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    struct tlsc *c = NULL;
    for (int i = 0; i < 200; i++) { /* until it listens, 2 s at most */
        int fd = connect_to(port);
        if (fd >= 0) {
            c = tlsc_connect_fd(fd, &(struct tls_opts){.ca = cs->ca.cert,
                                                       .verify_name = "localhost"});
            break;
        }
        sleep_ms(10);
    }
    assert_non_null(c);
    if (!tlsc_ok(c))
        fail_msg("%s", tlsc_error(c));
    char got[6];
    if (!tlsc_exchange(c, "hello\n", 6, got, 6, false))
        fail_msg("%s", tlsc_error(c));
    assert_memory_equal(got, "olleh\n", 6);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    assert_int_equal(tlsc_wait_end(c, 3000, NULL), TLS_END_TRUNCATED);
    tlsc_close(c);
}

/* openssl s_client -quiet against the test server: what goes in comes
 * out, byte for byte (run_piped). */
static void test_s_client_against_server(void **state)
{
    (void)state;
    NEED_CERTS();
    struct tlss *s = echo_server();
    char connect_arg[32];
    snprintf(connect_arg, sizeof(connect_arg), "127.0.0.1:%d", s->srv.port);
    char *argv[] = {"openssl",
                    "s_client",
                    "-quiet",
                    "-no_ign_eof",
                    "-connect",
                    connect_arg,
                    "-servername",
                    "localhost",
                    "-CAfile",
                    (char *)cs->ca.cert,
                    "-verify_return_error",
                    NULL};
    size_t n = 200 * KIB;
    uint8_t *in = malloc(n), *out = malloc(n);
    assert_true(in != NULL && out != NULL);
    fill_random(in, n, 11);
    int status;
    char err[2048];
    long got = run_piped(argv, in, n, out, n, n, 10000, &status, err, sizeof(err));
    if (got != (long)n)
        fail_msg("s_client gave %ld of %zu bytes, exit %d: %s", got, n, status, err);
    assert_memory_equal(out, in, n);
    assert_int_equal(status, 0);
    assert_true(tlss_wait_done(s, 1, 3000));
    assert_int_equal(tlss_seen(s, 0)->end, TLS_END_CLOSE_NOTIFY);
    free(in);
    free(out);
    tlss_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_certificates_verify_as_documented, teardown),
        cmocka_unit_test_teardown(test_chain_and_wrong_key, teardown),
        cmocka_unit_test_teardown(test_echo_and_close_notify, teardown),
        cmocka_unit_test_teardown(test_truncation_and_reply, teardown),
        cmocka_unit_test_teardown(test_client_certificates, teardown),
        cmocka_unit_test_teardown(test_alpn_versions_suites, teardown),
        cmocka_unit_test_teardown(test_client_hello, teardown),
        cmocka_unit_test_teardown(test_client_against_s_server, teardown),
        cmocka_unit_test_teardown(test_s_client_against_server, teardown),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
