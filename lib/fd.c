/*
 * Descriptor flags, for descriptors the system could not create with them
 * (net.c's fallbacks, the kqueue), and close-on-exec dups of a selector.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>

#include "fd.h"

/* Sets FD_CLOEXEC, keeping the other descriptor flags. */
int mio__fd_set_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

/* Sets O_NONBLOCK, keeping the other status flags. */
int mio__fd_set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* F_DUPFD_CLOEXEC: the copy refers to the same open file (the same epoll set
 * or kqueue). */
int mio__fd_dup_cloexec(int fd)
{
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return copy < 0 ? -errno : copy;
}
