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

#include "config.h"
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

bool service_notifies(void)
{
    return getenv("NOTIFY_SOCKET") != NULL;
}

bool service_supervised(void)
{
    return service_notifies() || getenv("LISTEN_FDS") != NULL;
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
 * (non-blocking, close-on-exec; never shut down: systemd owns it).  0,
 * -ENOTSOCK when it is not a listening stream socket, or -errno. */
static int adopt(struct passed_sock *p)
{
    p->addr.len = sizeof(p->addr.u);
    p->udp = sd_is_socket(p->fd, AF_UNSPEC, SOCK_DGRAM, -1) > 0;
    if ((!p->udp && sd_is_socket(p->fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) ||
        mio_socket_local_addr(p->fd, &p->addr.u.ss, &p->addr.len) < 0)
        return -ENOTSOCK;
    int flags = fcntl(p->fd, F_GETFL);
    if (flags < 0 || fcntl(p->fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl(p->fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}
#endif

int service_take_sockets(struct passed_sock **out, size_t *n, struct passed_sock *bad)
{
    *out = NULL;
    *n = 0;
    bad->fd = -1;
#ifdef HAVE_LIBSYSTEMD
    char **names = NULL;
    int count = sd_listen_fds_with_names(1, &names);
    if (count <= 0)
        return count;
    struct passed_sock *socks = calloc((size_t)count, sizeof(*socks));
    int err = socks != NULL ? 0 : -ENOMEM;
    for (int i = 0; err == 0 && i < count; i++) {
        socks[i].fd = SD_LISTEN_FDS_START + i;
        const char *name = names != NULL && names[i] != NULL ? names[i] : "unknown";
        size_t plen = strlen(SERVICE_STORE_PREFIX);
        socks[i].stored = strncmp(name, SERVICE_STORE_PREFIX, plen) == 0;
        snprintf(socks[i].name, sizeof(socks[i].name), "%s",
                 socks[i].stored ? name + plen : name);
        err = adopt(&socks[i]);
        if (err < 0)
            *bad = socks[i];
    }
    free_names(names, count);
    if (err < 0) {
        free(socks);
        return err;
    }
    *out = socks;
    *n = (size_t)count;
    return 0;
#else
    return 0;
#endif
}

int service_store(const char *name, const int *fds, size_t n)
{
#ifdef HAVE_LIBSYSTEMD
    char msg[128 + CONFIG_NAME_MAX];
    snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=" SERVICE_STORE_PREFIX "%s", name);
    return sd_pid_notify_with_fds(0, 0, msg, fds, (unsigned)n);
#else
    (void)name;
    (void)fds;
    (void)n;
    return 0;
#endif
}

int service_store_remove(const char *name)
{
#ifdef HAVE_LIBSYSTEMD
    char msg[128 + CONFIG_NAME_MAX];
    snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=" SERVICE_STORE_PREFIX "%s",
             name);
    return sd_notify(0, msg);
#else
    (void)name;
    return 0;
#endif
}
