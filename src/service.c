/* systemd notifications and socket activation. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "log.h"
#include "mio.h"
#include "service.h"

bool service_has_systemd(void)
{
#ifdef HAVE_LIBSYSTEMD
    return true;
#else
    return false;
#endif
}

bool service_supervised(void)
{
    return getenv("NOTIFY_SOCKET") != NULL || getenv("LISTEN_FDS") != NULL;
}

void service_notify(const char *fmt, ...)
{
#ifdef HAVE_LIBSYSTEMD
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    (void)sd_notify(0, msg);
#else
    (void)fmt;
#endif
}

#ifdef HAVE_LIBSYSTEMD
/* Frees the names sd_listen_fds_with_names() returned. */
static void free_names(char **names, int count)
{
    for (int k = 0; names != NULL && k < count; k++)
        free(names[k]);
    free(names);
}

/* Checks one passed socket and makes it ready for edge-triggered accepts
 * (non-blocking, close-on-exec; never shut down: systemd owns it). */
static int adopt(struct passed_sock *p, char *err, size_t errlen)
{
    p->addr.len = sizeof(p->addr.u);
    if (sd_is_socket(p->fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0 ||
        mio_socket_local_addr(p->fd, &p->addr.u.ss, &p->addr.len) < 0) {
        snprintf(err, errlen, "socket passed by systemd as \"%s\" (fd %d) is "
                 "not a listening stream socket", p->name, p->fd);
        return -1;
    }
    int flags = fcntl(p->fd, F_GETFL);
    if (flags < 0 || fcntl(p->fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl(p->fd, F_SETFD, FD_CLOEXEC) < 0) {
        snprintf(err, errlen, "socket passed by systemd as \"%s\": %s", p->name,
                 log_strerror(errno));
        return -1;
    }
    return 0;
}
#endif

int service_take_sockets(struct passed_sock **out, size_t *n, char *err,
                         size_t errlen)
{
    *out = NULL;
    *n = 0;
#ifdef HAVE_LIBSYSTEMD
    char **names = NULL;
    int count = sd_listen_fds_with_names(1, &names);
    if (count <= 0) {
        if (count < 0)
            snprintf(err, errlen, "sockets passed by systemd: %s", log_strerror(-count));
        return count < 0 ? -1 : 0;
    }
    struct passed_sock *socks = calloc((size_t)count, sizeof(*socks));
    int ok = socks != NULL ? 0 : -1;
    if (socks == NULL)
        snprintf(err, errlen, "sockets passed by systemd: %s", log_strerror(ENOMEM));
    for (int i = 0; ok == 0 && i < count; i++) {
        socks[i].fd = SD_LISTEN_FDS_START + i;
        snprintf(socks[i].name, sizeof(socks[i].name), "%s",
                 names != NULL && names[i] != NULL ? names[i] : "unknown");
        ok = adopt(&socks[i], err, errlen);
    }
    free_names(names, count);
    if (ok < 0) {
        free(socks);
        return -1;
    }
    *out = socks;
    *n = (size_t)count;
    return 0;
#else
    (void)err;
    (void)errlen;
    return 0;
#endif
}
