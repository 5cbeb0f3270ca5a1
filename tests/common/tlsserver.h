/*
 * A TLS test server: a test server (tserver.h) whose connections speak
 * TLS through OpenSSL, non-blocking in the server's thread.  It echoes, or
 * records until the client's end and then answers; it may require a
 * client certificate and select an ALPN protocol.  Each connection, once
 * over, leaves what it saw (SNI, the client's certificate, the protocol,
 * the bytes, how the client ended) for the test to check.  Its thread
 * never fails the test.
 */
#ifndef TESTS_COMMON_TLSSERVER_H
#define TESTS_COMMON_TLSSERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tlsclient.h"
#include "tserver.h"

enum tlss_mode {
    /* Sends back what it receives; at the client's close_notify, sends the
     * rest and close_notify, and closes. */
    TLSS_ECHO,
    /* Receives until the client's close_notify, then sends `reply` and
     * close_notify, and closes. */
    TLSS_REPLY_EOF,
};

/* What the server does; zeroes are the defaults. */
struct tlss_conf {
    enum tlss_mode mode;
    const char *cert, *key; /* its chain (PEM, leaf first) and key */
    const char *client_ca;  /* requires a client certificate it signed, or NULL */
    const char *alpn;       /* the protocols it selects from, "h2,x", or NULL */
    const void *reply;      /* TLSS_REPLY_EOF's answer */
    size_t reply_len;
    size_t record_max; /* of each connection's bytes, the most kept (0: 4 MiB) */
    size_t max;        /* connections at once (0: 64) */
    size_t tickets;    /* TLS 1.3 session tickets sent after a handshake */
};

/* What one connection saw, once it is over. */
struct tlss_seen {
    bool handshake_ok;
    bool resumed;     /* the client resumed an earlier session */
    char sni[256];    /* "" when none */
    char peer[256];   /* the client certificate's subject, "" when none */
    char alpn[64];    /* "" when none */
    char version[32]; /* "TLSv1.3" */
    enum tls_end end; /* how the client ended (NONE: the server stopped) */
    char err[256];    /* why the handshake or the connection failed */
    uint8_t *rx;      /* what it received (record_max at most) ... */
    size_t rxlen;     /* ... and how much */
    size_t rxtotal;   /* every byte received */
};

struct tlss {
    struct tserver srv; /* srv.port: where it listens */
    struct tlss_conf conf;
    void *ctx; /* its SSL_CTX */
    atomic_int handshakes, failures, close_notifies, truncations;
    pthread_mutex_t mu;
    struct tlss_seen **seen; /* in the order the connections ended */
    size_t nseen, capseen;
};

/* Starts a server on 127.0.0.1:0; fails the test when its certificate or
 * key does not load.  tlss_stop_all() stops it if tlss_stop() does not. */
struct tlss *tlss_start(const struct tlss_conf *conf);

/* Stops the server and frees it (and what it saw). */
void tlss_stop(struct tlss *s);

/* Stops every server still running (a test's teardown). */
void tlss_stop_all(void);

/* Waits up to ms until n connections are over; false when they are not. */
bool tlss_wait_done(struct tlss *s, size_t n, int ms);

/* The k-th connection over (from 0), or NULL; valid until tlss_stop(). */
const struct tlss_seen *tlss_seen(struct tlss *s, size_t k);

#endif
