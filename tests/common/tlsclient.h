/*
 * A TLS test client on OpenSSL, blocking for its user and bounded in time:
 * its socket is non-blocking and every wait is a poll(2) within the
 * client's timeout.  It connects to 127.0.0.1:port, shakes hands with the
 * options given, writes and reads byte for byte, half-closes with
 * close_notify and keeps reading, and tells how the peer ended: with
 * close_notify, or a bare EOF (a truncation), or a reset.
 *
 * Nothing here fails the test, so that threads may use it: a function
 * that fails returns false (or NULL) and leaves a message, tlsc_error(),
 * that names the step and OpenSSL's reason (and the alert received).
 * Built only with TLS (libtesttls, linked with OpenSSL).
 */
#ifndef TESTS_COMMON_TLSCLIENT_H
#define TESTS_COMMON_TLSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How a client shakes hands; a zeroed struct is a TLS client of OpenSSL's
 * defaults that sends no SNI and verifies nothing. */
struct tls_opts {
    const char *sni;         /* server name sent, or NULL */
    const char *alpn;        /* protocols offered, "h2,http/1.1", or NULL */
    const char *cert, *key;  /* the client's certificate and key, or NULL */
    const char *ca;          /* verify the server's chain against it, or NULL */
    const char *verify_name; /* ... and this host name (or IP) in it, or NULL */
    int min_version;         /* TLS1_2_VERSION, TLS1_3_VERSION; 0: OpenSSL's */
    int max_version;
    const char *ciphersuites; /* TLS 1.3's, or NULL */
    const char *ciphers;      /* TLS 1.2's, or NULL */
    int timeout_ms;           /* each call's bound; 0: 5000 */
};

struct tlsc;

/*
 * Connects to 127.0.0.1:port and shakes hands.  NULL only when there is
 * no memory; otherwise a client whose tlsc_ok() says whether the
 * handshake succeeded (tlsc_error() says why not).  In TLS 1.3 a server
 * refuses a client's certificate after the client's handshake is done:
 * the refusal comes with the first read.
 */
struct tlsc *tlsc_connect(int port, const struct tls_opts *opts);

/* tlsc_connect() over a connected socket of the caller's (taken over). */
struct tlsc *tlsc_connect_fd(int fd, const struct tls_opts *opts);

/* Whether the handshake and every call since succeeded; the last error. */
bool tlsc_ok(const struct tlsc *c);
const char *tlsc_error(const struct tlsc *c);

/* The alert the peer sent (e.g. 116, certificate required), or -1. */
int tlsc_alert(const struct tlsc *c);

/* Writes all of buf. */
bool tlsc_write_all(struct tlsc *c, const void *buf, size_t len);

/* Reads exactly len bytes (an end or an error before is a failure). */
bool tlsc_read_exact(struct tlsc *c, void *buf, size_t len);

/*
 * Writes out[0..outlen) while it reads exactly inlen bytes into in, both at
 * once (an echo that is not read stops taking what is written); with
 * `shut`, sends close_notify once everything is written.  The bound is
 * the client's timeout for each step without progress.
 */
bool tlsc_exchange(struct tlsc *c, const void *out, size_t outlen, void *in, size_t inlen,
                   bool shut);

/* Sends close_notify (a half-close: reading goes on). */
bool tlsc_shutdown(struct tlsc *c);

enum tls_end {
    TLS_END_NONE,         /* nothing within the time */
    TLS_END_CLOSE_NOTIFY, /* the peer's close_notify */
    TLS_END_TRUNCATED,    /* EOF without close_notify */
    TLS_END_RESET,        /* ECONNRESET */
    TLS_END_ALERT,        /* a fatal alert (tlsc_alert()) or another error */
};

/* "nothing", "close_notify", "truncated", "reset", "alert". */
const char *tls_end_name(enum tls_end end);

/* Waits up to ms for the peer to end its side, reading and discarding
 * what comes first (counted in *drained when not NULL). */
enum tls_end tlsc_wait_end(struct tlsc *c, int ms, size_t *drained);

/* What was negotiated: "TLSv1.3", its cipher's name, the ALPN protocol
 * ("" when none); the server certificate's subject ("CN=..." as RFC 2253
 * writes it, "" when none) and serial (-1 when none). */
const char *tlsc_version(const struct tlsc *c);
const char *tlsc_cipher(const struct tlsc *c);
const char *tlsc_alpn(const struct tlsc *c);
const char *tlsc_peer_subject(const struct tlsc *c);
long tlsc_peer_serial(const struct tlsc *c);

/* The client's socket, and its own port (as the daemon logs it). */
int tlsc_fd(const struct tlsc *c);
int tlsc_port(const struct tlsc *c);

/* Closes the socket without close_notify and frees the client. */
void tlsc_close(struct tlsc *c);

/* Closes every client still open (a test's teardown, main thread). */
void tlsc_close_all(void);

/* The ClientHello a client with these options sends first (no socket
 * involved): its length, 0 when it does not fit in cap. */
size_t tls_client_hello(const struct tls_opts *opts, uint8_t *buf, size_t cap);

/*
 * Runs argv (a program on $PATH or a path) with `in` written to its stdin
 * while its stdout is read into out (cap bytes at most); stdin is closed
 * once `want` bytes came out (or all of in is written, when want is 0),
 * then it must exit within ms in all.  Its stderr goes to errbuf.
 * Returns the bytes read, or -1 on a timeout (the program is killed);
 * *status gets its exit code (as exit_code()).
 */
long run_piped(char *const argv[], const void *in, size_t inlen, void *out, size_t cap,
               size_t want, int ms, int *status, char *errbuf, size_t errlen);

#endif
