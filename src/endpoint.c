/* A connection's socket: reading, writing, shutting, urgent data. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "endpoint.h"

void endpoint_urgent_inline(int fd)
{
    int on = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &on, sizeof(on));
}

bool endpoint_at_urgent_mark(const struct endpoint *e)
{
    int mark = 0;
    return ioctl(e->fd, SIOCATMARK, &mark) == 0 && mark == 1;
}

ssize_t endpoint_read(struct endpoint *e, void *buf, size_t cap)
{
    return recv(e->fd, buf, cap, 0);
}

ssize_t endpoint_write(struct endpoint *e, const void *p, size_t n, bool oob)
{
    if (oob) {
        ssize_t m = send(e->fd, p, n, MSG_NOSIGNAL | MSG_OOB);
        if (m >= 0 || errno != EOPNOTSUPP)
            return m;
    }
    return send(e->fd, p, n, MSG_NOSIGNAL);
}

int endpoint_shutdown(struct endpoint *e)
{
    if (shutdown(e->fd, SHUT_WR) < 0 && errno != ENOTCONN)
        return -errno;
    return 0;
}

bool endpoint_splices(const struct endpoint *e)
{
    (void)e;
    return true; /* every endpoint is a plain socket today */
}

void endpoint_reset_on_close(struct endpoint *e)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (e->fd >= 0)
        (void)setsockopt(e->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}
