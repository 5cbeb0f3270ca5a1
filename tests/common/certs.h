/*
 * Certificates for the TLS tests, made with the openssl command (no
 * library linked) in a temporary directory removed at exit: once per
 * program, on the first certs_get(), in about a tenth of a second.
 *
 * Every key is ECDSA P-256.  The CA ("CN=mio-test-ca") signs the server
 * certificates; another CA ("CN=mio-test-client-ca") signs the client
 * certificate that mTLS accepts.  Each certificate has a subject and a
 * serial of its own (below), so that a client can tell which one it got.
 * Without the openssl command certs_get() returns NULL and
 * certs_unavailable() says why: the caller skips its test with that.
 */
#ifndef TESTS_COMMON_CERTS_H
#define TESTS_COMMON_CERTS_H

#include <limits.h>

/* A certificate (PEM) and its private key (PEM, unencrypted). */
struct cert_pair {
    char cert[PATH_MAX];
    char key[PATH_MAX];
};

struct certs {
    char dir[PATH_MAX]; /* where they are */
    struct cert_pair ca;
    /* CN=mio-test-server, serial 0x1001, SANs DNS:localhost, DNS:a.example,
     * IP:127.0.0.1; for a year. */
    struct cert_pair server;
    char server_chain[PATH_MAX]; /* server.cert, then ca.cert */
    /* CN=mio-test-b, serial 0x1002, SAN DNS:*.b.example. */
    struct cert_pair b;
    /* CN=mio-test-expired, serial 0x1003, the server's SANs; valid in
     * January 2020 only. */
    struct cert_pair expired;
    /* CN=mio-test-expiring, serial 0x1004, the server's SANs; expires in 10
     * days. */
    struct cert_pair expiring;
    struct cert_pair client_ca;
    /* CN=mio-test-client, serial 0x2001, signed by client_ca. */
    struct cert_pair client;
    /* CN=mio-test-stranger, serial 0x2002: a client certificate signed by ca,
     * not by client_ca. */
    struct cert_pair stranger;
    char wrong_key[PATH_MAX]; /* a key no certificate here matches */
};

/* The certificates, made on the first call; NULL when they cannot be
 * (no openssl command): certs_unavailable() says why.  Fails the test
 * when the openssl command is there but fails. */
const struct certs *certs_get(void);

/* Why certs_get() returns NULL, or NULL when it does not. */
const char *certs_unavailable(void);

/*
 * A new certificate signed by the CA, with a new key, into
 * DIR/NAME.pem and DIR/NAME.key (DIR: certs_get()'s): subject CN=cn,
 * subjectAltName `san` (e.g. "DNS:localhost,IP:127.0.0.1"), serial
 * `serial`, valid for `days` from now.  Fails the test when it cannot.
 */
void certs_issue(const char *name, const char *cn, const char *san, long serial, int days,
                 struct cert_pair *out);

/* Copies the file at `from` to `to` through a rename, so that no reader
 * ever sees half of it.  Fails the test when it cannot. */
void copy_file(const char *from, const char *to);

#endif
