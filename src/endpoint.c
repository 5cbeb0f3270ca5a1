/* A connection's socket: reading, writing, shutting, urgent data. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "endpoint.h"
#include "tls.h"

void endpoint_urgent_inline(int fd)
{
    int on = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &on, sizeof(on));
}

bool endpoint_at_urgent_mark(const struct endpoint *e)
{
    int mark = 0;
    if (e->tls != NULL)
        return false; /* urgent data inside TLS records has no meaning */
    return ioctl(e->fd, SIOCATMARK, &mark) == 0 && mark == 1;
}

ssize_t endpoint_read(struct endpoint *e, void *buf, size_t cap)
{
    if (e->tls != NULL)
        return tls_session_read(e->tls, buf, cap);
    return recv(e->fd, buf, cap, 0);
}

ssize_t endpoint_write(struct endpoint *e, const void *p, size_t n, bool oob)
{
    if (e->tls != NULL)
        return tls_session_write(e->tls, p, n);
    if (oob) {
        ssize_t m = send(e->fd, p, n, MSG_NOSIGNAL | MSG_OOB);
        if (m >= 0 || errno != EOPNOTSUPP)
            return m;
    }
    return send(e->fd, p, n, MSG_NOSIGNAL);
}

int endpoint_shutdown(struct endpoint *e)
{
    int err;
    if (e->tls != NULL && (err = tls_session_shutdown(e->tls)) < 0)
        return err; /* -EAGAIN: close_notify waits for a writable socket */
    if (shutdown(e->fd, SHUT_WR) < 0 && errno != ENOTCONN)
        return -errno;
    return 0;
}

bool endpoint_splices(const struct endpoint *e)
{
    return e->tls == NULL;
}

bool endpoint_short_read_drains(const struct endpoint *e)
{
    return e->tls == NULL;
}

mio_interest_t endpoint_wait(const struct endpoint *e, mio_interest_t plain)
{
    if (e->tls == NULL)
        return plain;
    return tls_session_wants_write(e->tls) ? MIO_WRITABLE : MIO_READABLE;
}

void endpoint_end_tls(struct endpoint *e, bool graceful)
{
    if (e->tls == NULL)
        return;
    if (graceful && e->fd >= 0)
        (void)tls_session_shutdown(e->tls);
    tls_session_free(e->tls);
    e->tls = NULL;
}

void endpoint_reset_on_close(struct endpoint *e)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (e->fd >= 0)
        (void)setsockopt(e->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}
