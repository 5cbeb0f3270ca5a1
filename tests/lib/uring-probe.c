/*
 * Whether this library can run a poll on io_uring here, for
 * tests/on-backend.sh: exit 0, or 77 (automake's skip) with the reason
 * when the library was built without liburing or the kernel refuses
 * io_uring (too old, kernel.io_uring_disabled, seccomp).
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mio.h"

int main(void)
{
    mio_poll_t *poll = NULL;
    int err = mio_poll_new_with(&poll, "io_uring");
    if (err == 0) {
        mio_poll_free(poll);
        puts("io_uring: granted");
        return 0;
    }
#ifndef HAVE_LIBURING
    if (err == -ENOSYS) {
        puts("io_uring: not built (configure found no liburing >= 2.2)");
        return 77;
    }
#endif
    printf("io_uring: refused by this system: %s\n", strerror(-err));
    return err == -ENOSYS || err == -EPERM || err == -EACCES ? 77 : 1;
}
