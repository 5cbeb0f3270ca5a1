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

int mio__selfd_new(int fd, struct mio__sel **out)
{
    if (fd < 0)
        return fd;
    struct mio__sel *sel = malloc(sizeof(*sel));
    if (sel == NULL) {
        close(fd);
        return -ENOMEM;
    }
    sel->fd = fd;
    *out = sel;
    return 0;
}

int mio__selfd_clone(struct mio__sel *sel, struct mio__sel **out)
{
    return mio__selfd_new(mio__fd_dup_cloexec(sel->fd), out);
}

void mio__selfd_free(struct mio__sel *sel)
{
    if (sel == NULL)
        return;
    close(sel->fd);
    free(sel);
}
