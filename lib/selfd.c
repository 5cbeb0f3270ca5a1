/*
 * What the epoll and kqueue backends share: a selector that is one
 * descriptor, made from the creating call each backend makes, duplicated
 * for clones, closed on free.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "fd.h"
#include "selfd.h"

int mio__selfd_new(int fd, void **out)
{
    if (fd < 0)
        return fd;
    struct mio__selfd *sel = malloc(sizeof(*sel));
    if (sel == NULL) {
        close(fd);
        return -ENOMEM;
    }
    sel->fd = fd;
    *out = sel;
    return 0;
}

int mio__selfd_clone(void *sel, void **out)
{
    const struct mio__selfd *s = sel;
    return mio__selfd_new(mio__fd_dup_cloexec(s->fd), out);
}

void mio__selfd_free(void *sel)
{
    struct mio__selfd *s = sel;
    if (s == NULL)
        return;
    close(s->fd);
    free(s);
}
