/*
 * A wake-up channel made of descriptors: an eventfd where the system has
 * one, else a non-blocking pipe.  The epoll backend registers it as a waker,
 * the poll(2) backend uses it to interrupt its own poll, and the kqueue
 * backend falls back on it where EVFILT_USER is missing.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdint.h>
#include <unistd.h>
#ifdef HAVE_EVENTFD
#include <sys/eventfd.h>
#endif

#include "mio.h"
#include "wakefd.h"

/* An eventfd where the system has one, else mio_pipe()'s pipe. */
int mio__wakefd_open(int fds[2])
{
#ifdef HAVE_EVENTFD
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    fds[0] = fds[1] = fd;
    return 0;
#else
    return mio_pipe(fds);
#endif
}

/* Writes one wake.  EAGAIN means the counter (2^64-2 for an eventfd) or the
 * pipe is full: with edge triggering a full channel would never fire again,
 * so it is drained and written once more, as mio does. */
int mio__wakefd_signal(const int fds[2])
{
    uint64_t one = 1;
    size_t len = fds[0] == fds[1] ? sizeof(one) : 1;
    for (int tries = 0; tries < 4; tries++) {
        if (write(fds[1], &one, len) >= 0)
            return 0;
        if (errno == EAGAIN)
            mio__wakefd_drain(fds);
        else if (errno != EINTR)
            return -errno;
    }
    return -EAGAIN;
}

/* Reads until EAGAIN; one read empties an eventfd. */
void mio__wakefd_drain(const int fds[2])
{
    uint64_t buf[16];
    size_t len = fds[0] == fds[1] ? sizeof(uint64_t) : sizeof(buf);
    for (;;) {
        ssize_t n = read(fds[0], buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || fds[0] == fds[1])
            return; /* empty, or one read reset the eventfd */
    }
}

/* Closes both ends (one descriptor for an eventfd) and marks them closed. */
void mio__wakefd_close(int fds[2])
{
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0 && fds[1] != fds[0])
        close(fds[1]);
    fds[0] = fds[1] = -1;
}
