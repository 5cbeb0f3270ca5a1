/*
 * TLS through OpenSSL: the contexts a configuration builds when it loads
 * (tls-context.c: certificates and keys read and checked, versions,
 * ciphers, the client CA, ALPN, the certificate chosen by SNI), and the
 * session of one socket of a connection (tls-session.c: the non-blocking
 * handshake, reads and writes, close_notify).  A build without OpenSSL has
 * tls-none.c instead, whose context builders say "built without TLS".
 *
 * A session reads and writes its socket itself (OpenSSL's socket BIO), so
 * a read may need the socket to be writable and a write may need it to be
 * readable: a call that cannot go on says EAGAIN and
 * tls_session_wants_write() tells for which readiness, mapped onto the
 * connection's halves.
 */
#ifndef ECHOD_TLS_H
#define ECHOD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "addr.h"
#include "config.h"

/* Why a handshake failed, as metrics and the log name it. */
enum tls_failure {
    TLS_FAIL_TIMEOUT,          /* not done within connect_timeout */
    TLS_FAIL_CLOSED,           /* the peer closed or reset during it */
    TLS_FAIL_NO_SHARED_CIPHER, /* no cipher both sides accept */
    TLS_FAIL_PROTOCOL_VERSION, /* no version both sides accept */
    TLS_FAIL_UNKNOWN_CA,       /* a certificate signed by a CA not trusted */
    TLS_FAIL_BAD_CERTIFICATE,  /* a certificate refused otherwise */
    TLS_FAIL_NO_CERTIFICATE,   /* a client without the certificate asked */
    TLS_FAIL_VERIFY_FAILED,    /* an upstream's certificate or name refused */
    TLS_FAIL_OTHER,
    TLS_FAIL_N
};

/* Which socket of a connection a handshake was on. */
enum tls_side { TLS_SIDE_CLIENT, TLS_SIDE_UPSTREAM, TLS_SIDE_N };

/* "timeout", "no-shared-cipher", ... as metrics and the log name it. */
static inline const char *tls_failure_name(enum tls_failure f)
{
    static const char *const names[TLS_FAIL_N] = {
        "timeout",          "closed",        "no-shared-cipher",
        "protocol-version", "unknown-ca",    "bad-certificate",
        "no-certificate",   "verify-failed", "other",
    };
    return (unsigned)f < TLS_FAIL_N ? names[f] : "other";
}

/* "client" or "upstream". */
static inline const char *tls_side_name(enum tls_side s)
{
    return s == TLS_SIDE_UPSTREAM ? "upstream" : "client";
}

/* ---- contexts (tls-context.c) --------------------------------------------- */

struct tls_server; /* a listener's `tls`: every certificate, one context each */
struct tls_client; /* a relay's `upstream_tls` */

/* What building a context refused: the setting (relative to its group:
 * "key", "certificates.[1].certificate", "ciphers") and why, with the file
 * when a file is at fault. */
struct tls_problem {
    char setting[48];
    char why[320];
};

/* Whether this build has TLS (tls-none.c says no). */
bool tls_built(void);

/* Builds the server contexts of cfg: certificates and keys read and each
 * key checked against its certificate.  0, -ENOTSUP without TLS, or
 * -EINVAL / -ENOMEM with *p saying why. */
int tls_server_new(const struct tls_config *cfg, struct tls_server **out,
                   struct tls_problem *p);
void tls_server_free(struct tls_server *s);

/* Builds the upstream context of cfg, with room to keep one session for
 * each of `nslots` upstream addresses (resumed by the next connection to
 * the same address); as tls_server_new(). */
int tls_client_new(const struct upstream_tls_config *cfg, size_t nslots,
                   struct tls_client **out, struct tls_problem *p);
void tls_client_free(struct tls_client *c);

/* One certificate of a server context: its file and when it expires. */
struct tls_cert_info {
    const char *file;
    time_t not_after;
};

/* The certificates of s (the default one first), at most max of them;
 * returns how many there are. */
size_t tls_server_certs(const struct tls_server *s, struct tls_cert_info *out,
                        size_t max);

/* Whether the kernel offers kernel TLS ("tls" in tcp_available_ulp), and
 * the OpenSSL version in use, for -V and the log. */
bool tls_ktls_offered(void);
const char *tls_library(void);

/* ---- sessions (tls-session.c) ---------------------------------------------- */

struct tls_session;

/* A session that accepts the client on fd (a server handshake), reading
 * prefix[0..n) first: bytes read from the socket before TLS (with a PROXY
 * header).  NULL when out of memory. */
struct tls_session *tls_session_accept(struct tls_server *s, int fd,
                                       const uint8_t *prefix, size_t n);

/* A session that connects to an upstream on fd (a client handshake),
 * sending `name` (SNI, unless it is an IP address) and verifying the
 * certificate for it (`name` NULL: neither), resuming the session kept in
 * `slot` (the upstream address's) when there is one, and keeping there
 * the one the upstream gives next.  NULL when out of memory. */
struct tls_session *tls_session_connect(struct tls_client *c, int fd, const char *name,
                                        size_t slot);

/* Whether the handshake resumed an earlier session. */
bool tls_session_resumed(const struct tls_session *t);

void tls_session_free(struct tls_session *t);

/* Goes on with the handshake: 0 once it is done, -EAGAIN when it waits
 * (tls_session_wants_write()), -EPROTO when it failed
 * (tls_session_failure()). */
int tls_session_handshake(struct tls_session *t);

/* Reads decrypted bytes, as recv(2): 0 at the peer's close_notify, or at
 * its end without one (tls_session_truncated()); -1 with errno EAGAIN
 * (tls_session_wants_write()), ECONNRESET, or EPROTO. */
ssize_t tls_session_read(struct tls_session *t, void *buf, size_t cap);

/* Writes p[0..n), as send(2); -1 with errno EAGAIN, EPIPE or EPROTO. */
ssize_t tls_session_write(struct tls_session *t, const void *p, size_t n);

/* Sends close_notify (the direction to the peer ends, reading goes on):
 * 0, or -EAGAIN when the socket cannot take it now, or -errno. */
int tls_session_shutdown(struct tls_session *t);

/* Whether the last EAGAIN waits for the socket to be writable (else
 * readable). */
bool tls_session_wants_write(const struct tls_session *t);

/* Whether decrypted bytes wait in the session, which no event will tell. */
bool tls_session_pending(const struct tls_session *t);

/* Whether the peer ended without close_notify. */
bool tls_session_truncated(const struct tls_session *t);

/* Why the handshake failed, and OpenSSL's words for it (a static or
 * session-owned string). */
enum tls_failure tls_session_failure(const struct tls_session *t);
const char *tls_session_failure_text(const struct tls_session *t);

/* "TLSv1.3/TLS_AES_128_GCM_SHA256" into buf, after the handshake. */
const char *tls_session_describe(const struct tls_session *t, char *buf, size_t len);

/* The server name the client asked for (SNI), or NULL. */
const char *tls_session_server_name(const struct tls_session *t);

#endif
