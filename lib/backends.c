/*
 * The backends a library holds, and the default order among them.
 *
 * Which backends: the build may name them with -DMIO_WITH_EPOLL,
 * -DMIO_WITH_KQUEUE, -DMIO_WITH_POLL and -DMIO_WITH_IO_URING (the
 * poll(2)-only test library, the kqueue backend tested over a shim); when it
 * names none, the library holds every backend configure found
 * (epoll_create1, kqueue, liburing) and poll(2), which is always there.  The
 * default order starts with MIO_DEFAULT_BACKEND, what configure
 * --with-poller chose, and goes on in the order of the list, leaving out the
 * backends taken on request only (io_uring, until it has proved itself
 * under the daemon).
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <string.h>

#include "backend.h"
#include "backend-set.h"

/* The library's backends, best first. */
static const struct mio__backend *const backends[] = {
#ifdef MIO_WITH_EPOLL
    &mio__backend_epoll,
#endif
#ifdef MIO_WITH_KQUEUE
    &mio__backend_kqueue,
#endif
#ifdef MIO_WITH_POLL
    &mio__backend_poll,
#endif
#ifdef MIO_WITH_IO_URING
    &mio__backend_io_uring,
#endif
};

#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

const struct mio__backend *mio__backend_find(const char *name)
{
    for (size_t i = 0; i < NBACKENDS; i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

/* The configured default first, if the library has it, then the list
 * without it; backends taken on request only are never in it. */
const struct mio__backend *mio__backend_at(size_t i)
{
    const struct mio__backend *first = mio__backend_find(MIO_DEFAULT_BACKEND);
    if (first != NULL && first->on_request)
        first = NULL;
    if (first != NULL) {
        if (i == 0)
            return first;
        i--;
    }
    for (size_t k = 0; k < NBACKENDS; k++) {
        if (backends[k] == first || backends[k]->on_request)
            continue;
        if (i == 0)
            return backends[k];
        i--;
    }
    return NULL;
}

/* ENOSYS: an old kernel or a seccomp filter; EPERM, EACCES: a sandbox or a
 * sysctl refuses it.  Shortages (EMFILE, ENOMEM) are not among them: the
 * next backend would meet them too, and the caller must hear of them. */
bool mio__backend_unavailable(int err)
{
    return err == -ENOSYS || err == -EPERM || err == -EACCES;
}

size_t mio__backend_native_size_max(void)
{
    size_t max = 0;
    for (size_t i = 0; i < NBACKENDS; i++)
        if (backends[i]->native_event_size > max)
            max = backends[i]->native_event_size;
    return max;
}
