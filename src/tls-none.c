/*
 * TLS in a build without OpenSSL (configure --without-tls, or no
 * libssl-dev): no context can be built, so a configuration that asks for
 * TLS is refused with "built without TLS", and no session ever exists.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>

#include "tls.h"

bool tls_built(void)
{
    return false;
}

const char *tls_library(void)
{
    return "none";
}

bool tls_ktls_offered(void)
{
    return false;
}

int tls_server_new(const struct tls_config *cfg, struct tls_server **out,
                   struct tls_problem *p)
{
    (void)cfg, (void)out, (void)p;
    return -ENOTSUP;
}

void tls_server_free(struct tls_server *s)
{
    (void)s;
}

int tls_client_new(const struct upstream_tls_config *cfg, size_t nslots,
                   struct tls_client **out, struct tls_problem *p)
{
    (void)cfg, (void)nslots, (void)out, (void)p;
    return -ENOTSUP;
}

void tls_client_free(struct tls_client *c)
{
    (void)c;
}

size_t tls_server_certs(const struct tls_server *s, struct tls_cert_info *out, size_t max)
{
    (void)s, (void)out, (void)max;
    return 0;
}

/* No session is ever made without a context: the rest are never called. */
struct tls_session *tls_session_accept(struct tls_server *s, int fd,
                                       const uint8_t *prefix, size_t n)
{
    (void)s, (void)fd, (void)prefix, (void)n;
    return NULL;
}

struct tls_session *tls_session_connect(struct tls_client *c, int fd, const char *name,
                                        size_t slot)
{
    (void)c, (void)fd, (void)name, (void)slot;
    return NULL;
}

bool tls_session_resumed(const struct tls_session *t)
{
    (void)t;
    return false;
}

void tls_session_free(struct tls_session *t)
{
    (void)t;
}

int tls_session_handshake(struct tls_session *t)
{
    (void)t;
    return -ENOTSUP;
}

ssize_t tls_session_read(struct tls_session *t, void *buf, size_t cap)
{
    (void)t, (void)buf, (void)cap;
    errno = ENOTSUP;
    return -1;
}

ssize_t tls_session_write(struct tls_session *t, const void *p, size_t n)
{
    (void)t, (void)p, (void)n;
    errno = ENOTSUP;
    return -1;
}

int tls_session_shutdown(struct tls_session *t)
{
    (void)t;
    return -ENOTSUP;
}

bool tls_session_wants_write(const struct tls_session *t)
{
    (void)t;
    return false;
}

bool tls_session_pending(const struct tls_session *t)
{
    (void)t;
    return false;
}

bool tls_session_truncated(const struct tls_session *t)
{
    (void)t;
    return false;
}

enum tls_failure tls_session_failure(const struct tls_session *t)
{
    (void)t;
    return TLS_FAIL_OTHER;
}

const char *tls_session_failure_text(const struct tls_session *t)
{
    (void)t;
    return "built without TLS";
}

const char *tls_session_describe(const struct tls_session *t, char *buf, size_t len)
{
    (void)t;
    if (len > 0)
        buf[0] = '\0';
    return buf;
}

const char *tls_session_server_name(const struct tls_session *t)
{
    (void)t;
    return NULL;
}
