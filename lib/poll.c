/*
 * The front of libmio: Poll and Registry.  It checks arguments once, here,
 * so that every backend can trust them, chooses a poll's backend (backends.c
 * lists them), and forwards through the table of that backend (backend.h),
 * which the poll, its registry, the registry's clones and its wakers hold.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend.h"

#define MIO__KNOWN_INTEREST \
    (MIO_READABLE | MIO_WRITABLE | MIO_AIO | MIO_LIO | MIO_PRIORITY | MIO_EXCLUSIVE)

/* A handle on a backend's selector: the poll's own, or a clone. */
struct mio_registry {
    const struct mio__backend *be;
    void *sel;
    bool is_clone; /* false for the registry embedded in a mio_poll */
};

struct mio_poll {
    struct mio_registry reg;
};

struct mio_waker {
    const struct mio__backend *be;
    max_align_t state[]; /* be->waker_size bytes, the backend's */
};

/* 0 when `interest` is non-empty, known and deliverable by backend `be`;
 * MIO_EXCLUSIVE only beside readable and writable, and taken by every
 * backend (a hint: those that cannot honour it ignore it). */
static int check_interest(const struct mio__backend *be, mio_interest_t interest)
{
    const mio_interest_t dirs = MIO_READABLE | MIO_WRITABLE;
    if (interest == 0 || (interest & ~MIO__KNOWN_INTEREST) != 0)
        return -EINVAL;
    if ((interest & MIO_EXCLUSIVE) &&
        ((interest & dirs) == 0 || (interest & ~(dirs | MIO_EXCLUSIVE)) != 0))
        return -EINVAL;
    if ((interest & ~(be->supported_interest | MIO_EXCLUSIVE)) != 0)
        return -EOPNOTSUPP;
    return 0;
}

/* What register and reregister check first: a descriptor, then the
 * interest. */
static int check_source(const struct mio__backend *be, int fd, mio_interest_t interest)
{
    return fd < 0 ? -EBADF : check_interest(be, interest);
}

/* 0 for NULL or a timespec with tv_sec >= 0 and 0 <= tv_nsec < 1e9. */
static int check_timeout(const struct timespec *ts)
{
    if (ts == NULL)
        return 0;
    if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L)
        return -EINVAL;
    return 0;
}

/* The backend MIO_BACKEND names, or NULL when it is unset or empty.  A
 * set-user-ID or set-group-ID program ignores it (secure_getenv). */
static const char *env_backend(void)
{
#ifdef HAVE_SECURE_GETENV
    const char *name = secure_getenv("MIO_BACKEND");
#else
    const char *name = getenv("MIO_BACKEND");
#endif
    return name != NULL && name[0] != '\0' ? name : NULL;
}

/* A poll on backend `be` into *out, or the error of its sel_new. */
static int poll_open(const struct mio__backend *be, mio_poll_t **out)
{
    mio_poll_t *poll = calloc(1, sizeof(*poll));
    if (poll == NULL)
        return -ENOMEM;
    int err = be->sel_new(&poll->reg.sel);
    if (err < 0) {
        free(poll);
        return err;
    }
    poll->reg.be = be;
    *out = poll;
    return 0;
}

/*
 * MIO_BACKEND, when set, is obeyed as mio_poll_new_with() would be, with no
 * fallback: it is there to choose, and a test or an operator who asked for
 * a backend must not run on another without knowing.  Unset, the first
 * backend of the default order that the system grants is taken; a backend
 * refused for good (ENOSYS, EPERM, EACCES) gives way to the next, any other
 * error is returned.
 */
int mio_poll_new(mio_poll_t **out)
{
    assert(out != NULL);
    *out = NULL;
    const char *name = env_backend();
    if (name != NULL)
        return mio_poll_new_with(out, name);
    int err = -ENOSYS;
    const struct mio__backend *be;
    for (size_t i = 0; (be = mio__backend_at(i)) != NULL; i++) {
        err = poll_open(be, out);
        if (!mio__backend_unavailable(err))
            break;
    }
    return err;
}

/* -ENOSYS for a name this library has no backend for. */
int mio_poll_new_with(mio_poll_t **out, const char *backend)
{
    assert(out != NULL && backend != NULL);
    *out = NULL;
    const struct mio__backend *be = mio__backend_find(backend);
    if (be == NULL)
        return -ENOSYS;
    return poll_open(be, out);
}

void mio_poll_free(mio_poll_t *poll)
{
    if (poll == NULL)
        return;
    poll->reg.be->sel_free(poll->reg.sel);
    free(poll);
}

mio_registry_t *mio_poll_registry(mio_poll_t *poll)
{
    assert(poll != NULL);
    return &poll->reg;
}

int mio_poll_poll(mio_poll_t *poll, mio_events_t *events, const struct timespec *timeout)
{
    assert(poll != NULL && events != NULL);
    events->len = 0;
    if (events->cap == 0)
        return -EINVAL;
    int err = check_timeout(timeout);
    if (err < 0)
        return err;
    return poll->reg.be->sel_select(poll->reg.sel, events, timeout);
}

const char *mio_poll_backend(const mio_poll_t *poll)
{
    assert(poll != NULL);
    return poll->reg.be->name;
}

/* The backend mio_poll_new() would take now, found by its rules, each
 * candidate probed rather than opened; "none" when it would find none. */
const char *mio_backend_name(void)
{
    const struct mio__backend *be;
    const char *name = env_backend();
    if (name != NULL) {
        be = mio__backend_find(name);
        return be != NULL ? be->name : "none";
    }
    for (size_t i = 0; (be = mio__backend_at(i)) != NULL; i++)
        if (be->probe == NULL || !mio__backend_unavailable(be->probe()))
            return be->name;
    return "none";
}

int mio_registry_register(mio_registry_t *reg, int fd, mio_token_t token,
                          mio_interest_t interest)
{
    assert(reg != NULL);
    int err = check_source(reg->be, fd, interest);
    if (err < 0)
        return err;
    return reg->be->sel_register(reg->sel, fd, token, interest);
}

int mio_registry_reregister(mio_registry_t *reg, int fd, mio_token_t token,
                            mio_interest_t interest)
{
    assert(reg != NULL);
    int err = check_source(reg->be, fd, interest);
    if (err < 0)
        return err;
    return reg->be->sel_reregister(reg->sel, fd, token, interest);
}

int mio_registry_deregister(mio_registry_t *reg, int fd)
{
    assert(reg != NULL);
    if (fd < 0)
        return -EBADF;
    return reg->be->sel_deregister(reg->sel, fd);
}

int mio_registry_close(mio_registry_t *reg, int fd)
{
    assert(reg != NULL);
    if (fd < 0)
        return -EBADF;
    int err = reg->be->close_deregisters ? 0 : reg->be->sel_deregister(reg->sel, fd);
    /* Linux closes the descriptor even when close() says EINTR. */
    if (close(fd) < 0 && errno != EINTR && err == 0)
        err = -errno;
    return err;
}

int mio_registry_rearm(mio_registry_t *reg, int fd, mio_interest_t interest)
{
    assert(reg != NULL);
    if (fd < 0)
        return -EBADF;
    int err = check_interest(reg->be, interest);
    if (err < 0)
        return err;
    return reg->be->sel_rearm(reg->sel, fd, interest);
}

int mio_registry_try_clone(mio_registry_t *reg, mio_registry_t **out)
{
    assert(reg != NULL && out != NULL);
    *out = NULL;
    mio_registry_t *clone = calloc(1, sizeof(*clone));
    if (clone == NULL)
        return -ENOMEM;
    int err = reg->be->sel_clone(reg->sel, &clone->sel);
    if (err < 0) {
        free(clone);
        return err;
    }
    clone->be = reg->be;
    clone->is_clone = true;
    *out = clone;
    return 0;
}

void mio_registry_free(mio_registry_t *reg)
{
    if (reg == NULL)
        return;
    assert(reg->is_clone && "only clones are freed; the poll owns its own");
    reg->be->sel_free(reg->sel);
    free(reg);
}

int mio_waker_new(mio_registry_t *reg, mio_token_t token, mio_waker_t **out)
{
    assert(reg != NULL && out != NULL);
    *out = NULL;
    mio_waker_t *waker = calloc(1, sizeof(*waker) + reg->be->waker_size);
    if (waker == NULL)
        return -ENOMEM;
    waker->be = reg->be;
    int err = waker->be->waker_init(waker->state, reg->sel, token);
    if (err < 0) {
        free(waker);
        return err;
    }
    *out = waker;
    return 0;
}

/* errno is saved so that a signal handler calling this leaves the
 * interrupted code's errno alone. */
int mio_waker_wake(mio_waker_t *waker)
{
    assert(waker != NULL);
    int saved = errno;
    int err = waker->be->waker_wake(waker->state);
    errno = saved;
    return err;
}

void mio_waker_free(mio_waker_t *waker)
{
    if (waker == NULL)
        return;
    waker->be->waker_fini(waker->state);
    free(waker);
}
