/*
 * Unit tests of lib/backend-kqueue.c on a system without kqueue.  The file
 * defines kqueue() and kevent() itself: a small fake kernel that keeps
 * FreeBSD's rules (one receipt per EV_RECEIPT change, in order, with
 * EV_ERROR set and the errno in `data`; ENOENT for a change to a missing
 * event; every change stores its udata; EINTR leaves the changes applied),
 * records every change it is given, and hands out events the test queues.
 * The tests drive the public API and look at what reached the "kernel".
 *
 * Built against tests/kqueue-shim/sys/event.h with lib/backend-kqueue.c,
 * lib/selfd.c and the front (poll.c, events.c, timeout.c, wakefd.c, fd.c,
 * net.c).  With -DKQUEUE_SHIM_NO_EVFILT_USER the backend's wake-fd fallback
 * is tested instead of its EVFILT_USER waker.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/event.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mio.h"

/* ---- the fake kernel ------------------------------------------------- */

#define MAX_KQ 8
#define MAX_KNOTES 32
#define MAX_PENDING 32
#define MAX_LOG 64
#define MAX_FAILS 8

/* Like the backend's: udata is void * or, with KEVENT_UDATA_INTPTR, an
 * intptr_t. */
#ifdef KEVENT_UDATA_INTPTR
#define UDATA(token) ((intptr_t)(token))
#else
#define UDATA(token) ((void *)(token))
#endif

struct knote {
    bool used;
    uintptr_t ident;
    short filter;
    kevent_udata_t udata;
};

struct fake_kq {
    int fd; /* the descriptor kqueue() returned */
    dev_t dev;
    ino_t ino;
    struct knote knotes[MAX_KNOTES];
    struct kevent pending[MAX_PENDING];
    int npending;
};

/* One change as it reached kevent(). */
struct logged_change {
    int fd;   /* the descriptor it was submitted on */
    int kq;   /* index of the kqueue behind that descriptor */
    int call; /* number of the kevent() call */
    struct kevent kev;
};

static struct {
    struct fake_kq kq[MAX_KQ];
    int nkq;
    struct logged_change log[MAX_LOG];
    int nlog;
    int calls;     /* kevent() calls so far */
    int fail_call; /* errno for the next kevent() call, 0 for none */
    struct {
        short filter;
        int err;
    } fails[MAX_FAILS]; /* errnos for the next change to a filter */
    int nfails;
    /* the last wait (a call with no changes) */
    int waits;
    int wait_nevents;
    bool wait_changelist_null;
    bool wait_timeout_null;
    struct timespec wait_timeout;
} fake;

static void fake_reset(void)
{
    memset(&fake, 0, sizeof(fake));
}

/* The next change to `filter` fails with `err` and is not applied. */
static void fake_fail_change(short filter, int err)
{
    assert_true(fake.nfails < MAX_FAILS);
    fake.fails[fake.nfails].filter = filter;
    fake.fails[fake.nfails].err = err;
    fake.nfails++;
}

/* The next kevent() call fails with `err`; with EINTR its changes are
 * applied first, as FreeBSD documents. */
static void fake_fail_next_call(int err)
{
    fake.fail_call = err;
}

/* A real descriptor whose inode names the queue, so that dups of it reach
 * the same fake kqueue and close() works.  No close-on-exec: the backend
 * must set it. */
int kqueue(void)
{
    if (fake.nkq == MAX_KQ) {
        errno = EMFILE;
        return -1;
    }
    int p[2];
    if (pipe(p) < 0)
        return -1;
    close(p[1]);
    struct stat st;
    if (fstat(p[0], &st) < 0)
        return -1;
    struct fake_kq *kq = &fake.kq[fake.nkq++];
    memset(kq, 0, sizeof(*kq));
    kq->fd = p[0];
    kq->dev = st.st_dev;
    kq->ino = st.st_ino;
    return p[0];
}

/* The index of the queue behind descriptor `fd`, or -1. */
static int fake_kq_index(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -1;
    for (int i = 0; i < fake.nkq; i++)
        if (fake.kq[i].dev == st.st_dev && fake.kq[i].ino == st.st_ino)
            return i;
    return -1;
}

static struct knote *find_knote(struct fake_kq *kq, uintptr_t ident, short filter)
{
    for (int i = 0; i < MAX_KNOTES; i++) {
        struct knote *kn = &kq->knotes[i];
        if (kn->used && kn->ident == ident && kn->filter == filter)
            return kn;
    }
    return NULL;
}

/* Queues an event as the kernel would return it. */
static void queue_event(struct fake_kq *kq, uintptr_t ident, short filter,
                        unsigned short flags, unsigned int fflags, kevent_udata_t udata)
{
    assert_true(kq->npending < MAX_PENDING);
    EV_SET(&kq->pending[kq->npending], ident, filter, flags, fflags, 0, udata);
    kq->npending++;
}

#ifdef EVFILT_USER
/* EVFILT_USER with NOTE_TRIGGER: one pending event however many triggers. */
static void trigger(struct fake_kq *kq, const struct knote *kn)
{
    for (int i = 0; i < kq->npending; i++)
        if (kq->pending[i].ident == kn->ident && kq->pending[i].filter == kn->filter)
            return;
    queue_event(kq, kn->ident, kn->filter, EV_CLEAR, 0, kn->udata);
}
#endif

/* Applies one change; 0 or the errno its receipt carries. */
static int apply_change(struct fake_kq *kq, const struct kevent *ch)
{
    for (int i = 0; i < fake.nfails; i++) {
        if (fake.fails[i].filter == ch->filter) {
            int err = fake.fails[i].err;
            memmove(&fake.fails[i], &fake.fails[i + 1],
                    (size_t)(fake.nfails - i - 1) * sizeof(fake.fails[0]));
            fake.nfails--;
            return err;
        }
    }
    if ((ch->filter == EVFILT_READ || ch->filter == EVFILT_WRITE) &&
        fcntl((int)ch->ident, F_GETFD) < 0)
        return EBADF;
    struct knote *kn = find_knote(kq, ch->ident, ch->filter);
    if (ch->flags & EV_DELETE) {
        if (kn == NULL)
            return ENOENT;
        kn->used = false;
        return 0;
    }
    if (kn == NULL) {
        if (!(ch->flags & EV_ADD))
            return ENOENT;
        for (int i = 0; i < MAX_KNOTES && kn == NULL; i++)
            if (!kq->knotes[i].used)
                kn = &kq->knotes[i];
        assert_non_null(kn);
        kn->used = true;
        kn->ident = ch->ident;
        kn->filter = ch->filter;
    }
    kn->udata = ch->udata; /* FreeBSD: any change stores its udata */
#ifdef EVFILT_USER
    if (ch->filter == EVFILT_USER && (ch->fflags & NOTE_TRIGGER))
        trigger(kq, kn);
#endif
    return 0;
}

int kevent(int kqfd, const struct kevent *changelist, int nchanges,
           struct kevent *eventlist, int nevents, const struct timespec *timeout)
{
    fake.calls++;
    int k = fake_kq_index(kqfd);
    if (k < 0) {
        errno = EBADF;
        return -1;
    }
    struct fake_kq *kq = &fake.kq[k];
    int fail = fake.fail_call;
    fake.fail_call = 0;
    if (fail != 0 && fail != EINTR) {
        errno = fail;
        return -1;
    }

    /* The receipts may be written over the change list: copy it first. */
    struct kevent changes[MAX_LOG];
    assert_true(nchanges >= 0 && nchanges <= MAX_LOG);
    if (nchanges > 0)
        memcpy(changes, changelist, (size_t)nchanges * sizeof(changes[0]));
    int nout = 0;
    for (int i = 0; i < nchanges; i++) {
        assert_true(fake.nlog < MAX_LOG);
        fake.log[fake.nlog++] = (struct logged_change){.fd = kqfd,
                                                       .kq = k,
                                                       .call = fake.calls,
                                                       .kev = changes[i]};
        int err = apply_change(kq, &changes[i]);
        if (fail == EINTR)
            continue;
        if (err == 0 && !(changes[i].flags & EV_RECEIPT))
            continue;
        if (nout == nevents) {
            if (err == 0)
                continue;
            errno = err;
            return -1;
        }
        eventlist[nout] = changes[i];
        eventlist[nout].flags = EV_ERROR;
        eventlist[nout].data = err;
        nout++;
    }
    if (fail == EINTR) {
        errno = EINTR;
        return -1;
    }
    if (nout > 0 || nevents == 0)
        return nout;

    /* A wait. */
    fake.waits++;
    fake.wait_nevents = nevents;
    fake.wait_changelist_null = changelist == NULL;
    fake.wait_timeout_null = timeout == NULL;
    if (timeout != NULL)
        fake.wait_timeout = *timeout;
    if (kq->npending == 0 && timeout == NULL)
        fail_msg("kevent() would block forever");
    int n = kq->npending < nevents ? kq->npending : nevents;
    memcpy(eventlist, kq->pending, (size_t)n * sizeof(eventlist[0]));
    memmove(kq->pending, kq->pending + n,
            (size_t)(kq->npending - n) * sizeof(kq->pending[0]));
    kq->npending -= n;
    return n;
}

/* Queues an event for a registered filter of `ident` on the first queue,
 * with the udata the registration stored. */
static void fake_fire(uintptr_t ident, short filter, unsigned short flags,
                      unsigned int fflags)
{
    struct knote *kn = find_knote(&fake.kq[0], ident, filter);
    assert_non_null(kn);
    queue_event(&fake.kq[0], ident, filter, flags, fflags, kn->udata);
}

/* Queues an event no registration made (EVFILT_AIO/LIO come from aio
 * requests). */
static void fake_queue(uintptr_t ident, short filter, unsigned short flags,
                       unsigned int fflags, mio_token_t token)
{
    queue_event(&fake.kq[0], ident, filter, flags, fflags, UDATA(token));
}

static bool fake_has_knote(int kq, uintptr_t ident, short filter)
{
    return find_knote(&fake.kq[kq], ident, filter) != NULL;
}

/* ---- helpers --------------------------------------------------------- */

struct fixture {
    mio_poll_t *poll;
    mio_registry_t *reg;
    mio_events_t *events;
    int pipe[2]; /* registered descriptors must be open */
};

static int setup(void **state)
{
    static struct fixture f;
    fake_reset();
    memset(&f, 0, sizeof(f));
    assert_int_equal(mio_poll_new(&f.poll), 0);
    f.reg = mio_poll_registry(f.poll);
    f.events = mio_events_new(8);
    assert_non_null(f.events);
    assert_int_equal(pipe(f.pipe), 0);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    mio_events_free(f->events);
    mio_poll_free(f->poll);
    close(f->pipe[0]);
    close(f->pipe[1]);
    return 0;
}

/* The readiness of an event as EV_* style bits, from the public accessors. */
enum {
    R = 1 << 0,
    W = 1 << 1,
    E = 1 << 2,
    RC = 1 << 3,
    WC = 1 << 4,
    P = 1 << 5,
    AIO = 1 << 6,
    LIO = 1 << 7,
};

static unsigned readiness(const mio_event_t *ev)
{
    return (mio_event_is_readable(ev) ? R : 0) | (mio_event_is_writable(ev) ? W : 0) |
           (mio_event_is_error(ev) ? E : 0) | (mio_event_is_read_closed(ev) ? RC : 0) |
           (mio_event_is_write_closed(ev) ? WC : 0) |
           (mio_event_is_priority(ev) ? P : 0) | (mio_event_is_aio(ev) ? AIO : 0) |
           (mio_event_is_lio(ev) ? LIO : 0);
}

/* Polls once without waiting and checks that exactly one event came, for
 * `token` with exactly the readiness `bits`. */
static void expect_one_event(struct fixture *f, mio_token_t token, unsigned bits)
{
    const struct timespec zero = {0, 0};
    assert_int_equal(mio_poll_poll(f->poll, f->events, &zero), 0);
    assert_int_equal(mio_events_len(f->events), 1);
    const mio_event_t *ev = mio_events_get(f->events, 0);
    assert_true(mio_event_token(ev) == token);
    assert_int_equal(readiness(ev), bits);
}

/* Checks the i-th change submitted so far. */
static void assert_change(int i, uintptr_t ident, short filter, unsigned flags,
                          unsigned fflags, mio_token_t token)
{
    assert_true(i < fake.nlog);
    const struct kevent *kev = &fake.log[i].kev;
    assert_int_equal(kev->ident, ident);
    assert_int_equal(kev->filter, filter);
    assert_int_equal(kev->flags, flags);
    assert_int_equal(kev->fflags, fflags);
    assert_true((mio_token_t)kev->udata == token);
}

static bool is_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    return flags >= 0 && (flags & FD_CLOEXEC);
}

static int open_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

#define ADD (EV_ADD | EV_CLEAR | EV_RECEIPT)
#define DEL (EV_DELETE | EV_RECEIPT)

/* ---- poll ------------------------------------------------------------ */

static void backend_is_named_kqueue(void **state)
{
    struct fixture *f = *state;
    assert_string_equal(mio_poll_backend(f->poll), "kqueue");
    assert_string_equal(mio_backend_name(), "kqueue");
}

static void poll_new_makes_kqueue_close_on_exec(void **state)
{
    (void)state;
    assert_int_equal(fake.nkq, 1);
    assert_true(is_cloexec(fake.kq[0].fd));
}

static void poll_free_closes_kqueue(void **state)
{
    struct fixture *f = *state;
    int fd = fake.kq[0].fd;
    mio_poll_free(f->poll);
    f->poll = NULL;
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
    assert_int_equal(mio_poll_new(&f->poll), 0); /* for teardown */
}

static void registry_clone_dups_kqueue(void **state)
{
    struct fixture *f = *state;
    mio_registry_t *clone;
    assert_int_equal(mio_registry_try_clone(f->reg, &clone), 0);
    assert_int_equal(mio_registry_register(clone, f->pipe[0], 5, MIO_READABLE), 0);
    assert_int_equal(fake.nlog, 1);
    assert_int_not_equal(fake.log[0].fd, fake.kq[0].fd);
    assert_int_equal(fake.log[0].kq, 0);
    assert_true(is_cloexec(fake.log[0].fd));
    mio_registry_free(clone);
    assert_int_equal(fcntl(fake.log[0].fd, F_GETFD), -1);
    fake_fire((uintptr_t)f->pipe[0], EVFILT_READ, 0, 0);
    expect_one_event(f, 5, R);
}

/* ---- register -------------------------------------------------------- */

static void register_readable_adds_read_filter_with_clear_and_receipt(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 7, MIO_READABLE), 0);
    assert_int_equal(fake.calls, 1);
    assert_int_equal(fake.nlog, 1);
    assert_change(0, (uintptr_t)f->pipe[0], EVFILT_READ, ADD, 0, 7);
}

static void register_writable_adds_write_filter(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[1], 8, MIO_WRITABLE), 0);
    assert_int_equal(fake.nlog, 1);
    assert_change(0, (uintptr_t)f->pipe[1], EVFILT_WRITE, ADD, 0, 8);
}

static void register_both_adds_read_and_write_in_one_call(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 9,
                                           MIO_READABLE | MIO_WRITABLE),
                     0);
    assert_int_equal(fake.calls, 1);
    assert_int_equal(fake.nlog, 2);
    assert_change(0, (uintptr_t)f->pipe[0], EVFILT_READ, ADD, 0, 9);
    assert_change(1, (uintptr_t)f->pipe[0], EVFILT_WRITE, ADD, 0, 9);
}

static void register_aio_or_lio_adds_no_filter(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1, MIO_AIO), 0);
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1, MIO_LIO), 0);
    assert_int_equal(fake.calls, 0);
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 2,
                                           MIO_READABLE | MIO_AIO | MIO_LIO),
                     0);
    assert_int_equal(fake.nlog, 1);
    assert_change(0, (uintptr_t)f->pipe[0], EVFILT_READ, ADD, 0, 2);
}

static void register_priority_is_not_supported(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1, MIO_PRIORITY),
                     -EOPNOTSUPP);
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1,
                                           MIO_READABLE | MIO_PRIORITY),
                     -EOPNOTSUPP);
    assert_int_equal(mio_registry_reregister(f->reg, f->pipe[0], 1, MIO_PRIORITY),
                     -EOPNOTSUPP);
    assert_int_equal(fake.calls, 0);
}

static void register_returns_receipt_error_as_negative_errno(void **state)
{
    struct fixture *f = *state;
    fake_fail_change(EVFILT_WRITE, EBADF);
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1,
                                           MIO_READABLE | MIO_WRITABLE),
                     -EBADF);
    /* and from the fake kernel's own check of the descriptor */
    int fd = dup(f->pipe[0]);
    close(fd);
    assert_int_equal(mio_registry_register(f->reg, fd, 1, MIO_READABLE), -EBADF);
}

static void register_returns_first_error_not_ignored(void **state)
{
    struct fixture *f = *state;
    fake_fail_change(EVFILT_READ, EPIPE);
    fake_fail_change(EVFILT_WRITE, ENOMEM);
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1,
                                           MIO_READABLE | MIO_WRITABLE),
                     -ENOMEM);
    fake_fail_change(EVFILT_READ, EACCES);
    fake_fail_change(EVFILT_WRITE, ENOMEM);
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1,
                                           MIO_READABLE | MIO_WRITABLE),
                     -EACCES);
}

static void register_ignores_epipe(void **state)
{
    struct fixture *f = *state;
    fake_fail_change(EVFILT_READ, EPIPE);
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1, MIO_READABLE), 0);
}

static void register_counts_eintr_as_applied(void **state)
{
    struct fixture *f = *state;
    fake_fail_next_call(EINTR);
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 3,
                                           MIO_READABLE | MIO_WRITABLE),
                     0);
    assert_int_equal(fake.nlog, 2);
    assert_true(fake_has_knote(0, (uintptr_t)f->pipe[0], EVFILT_READ));
    assert_true(fake_has_knote(0, (uintptr_t)f->pipe[0], EVFILT_WRITE));
}

static void register_returns_failure_of_the_call(void **state)
{
    struct fixture *f = *state;
    fake_fail_next_call(ENOMEM);
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 3, MIO_READABLE), -ENOMEM);
}

static void register_twice_updates_the_token(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1, MIO_READABLE), 0);
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 2, MIO_READABLE), 0);
    fake_fire((uintptr_t)f->pipe[0], EVFILT_READ, 0, 0);
    expect_one_event(f, 2, R);
}

/* ---- reregister and deregister --------------------------------------- */

static void reregister_adds_wanted_and_deletes_other_filters(void **state)
{
    struct fixture *f = *state;
    uintptr_t fd = (uintptr_t)f->pipe[0];
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1, MIO_READABLE), 0);
    assert_int_equal(mio_registry_reregister(f->reg, f->pipe[0], 2, MIO_WRITABLE), 0);
    assert_int_equal(fake.nlog, 3);
    assert_int_equal(fake.log[1].call, fake.log[2].call);
    assert_change(1, fd, EVFILT_READ, DEL, 0, 2);
    assert_change(2, fd, EVFILT_WRITE, ADD, 0, 2);
    assert_false(fake_has_knote(0, fd, EVFILT_READ));

    assert_int_equal(mio_registry_reregister(f->reg, f->pipe[0], 3,
                                             MIO_READABLE | MIO_WRITABLE),
                     0);
    assert_int_equal(fake.nlog, 5);
    assert_change(3, fd, EVFILT_READ, ADD, 0, 3);
    assert_change(4, fd, EVFILT_WRITE, ADD, 0, 3);

    assert_int_equal(mio_registry_reregister(f->reg, f->pipe[0], 4, MIO_READABLE), 0);
    assert_int_equal(fake.nlog, 7);
    assert_change(5, fd, EVFILT_READ, ADD, 0, 4);
    assert_change(6, fd, EVFILT_WRITE, DEL, 0, 4);
    fake_fire(fd, EVFILT_READ, 0, 0);
    expect_one_event(f, 4, R);
}

static void reregister_ignores_enoent_for_filter_not_there(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1, MIO_READABLE), 0);
    /* the delete of EVFILT_WRITE gets ENOENT from the kernel */
    assert_int_equal(mio_registry_reregister(f->reg, f->pipe[0], 2, MIO_READABLE), 0);
    assert_int_equal(fake.nlog, 3);
    assert_change(2, (uintptr_t)f->pipe[0], EVFILT_WRITE, DEL, 0, 2);
}

static void reregister_returns_other_errors(void **state)
{
    struct fixture *f = *state;
    fake_fail_change(EVFILT_READ, EBADF);
    assert_int_equal(mio_registry_reregister(f->reg, f->pipe[0], 1, MIO_READABLE),
                     -EBADF);
    fake_fail_change(EVFILT_READ, ENOMEM); /* on a delete */
    assert_int_equal(mio_registry_reregister(f->reg, f->pipe[0], 1, MIO_WRITABLE),
                     -ENOMEM);
}

static void deregister_deletes_both_filters(void **state)
{
    struct fixture *f = *state;
    uintptr_t fd = (uintptr_t)f->pipe[0];
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1,
                                           MIO_READABLE | MIO_WRITABLE),
                     0);
    assert_int_equal(mio_registry_deregister(f->reg, f->pipe[0]), 0);
    assert_int_equal(fake.nlog, 4);
    assert_int_equal(fake.log[2].call, fake.log[3].call);
    assert_change(2, fd, EVFILT_READ, DEL, 0, 0);
    assert_change(3, fd, EVFILT_WRITE, DEL, 0, 0);
    assert_false(fake_has_knote(0, fd, EVFILT_READ));
    assert_false(fake_has_knote(0, fd, EVFILT_WRITE));
}

/* epoll and poll(2) return -ENOENT here; kqueue cannot tell. */
static void deregister_of_unregistered_fd_returns_0(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_deregister(f->reg, f->pipe[0]), 0);
    assert_int_equal(fake.nlog, 2);
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 1, MIO_WRITABLE), 0);
    assert_int_equal(mio_registry_deregister(f->reg, f->pipe[0]), 0);
}

static void deregister_returns_other_errors(void **state)
{
    struct fixture *f = *state;
    fake_fail_change(EVFILT_WRITE, EBADF);
    assert_int_equal(mio_registry_deregister(f->reg, f->pipe[0]), -EBADF);
}

static void rearm_makes_no_system_call(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_rearm(f->reg, f->pipe[0], MIO_READABLE | MIO_WRITABLE),
                     0);
    assert_int_equal(fake.calls, 0);
}

/* ---- poll: the wait -------------------------------------------------- */

static void poll_passes_exact_timeout_to_kevent(void **state)
{
    struct fixture *f = *state;
    const struct timespec timeouts[] = {
        {0, 0}, {0, 1}, {0, 999999}, {1, 500000001}, {86400L * 365, 999999999}};
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
        assert_int_equal(mio_poll_poll(f->poll, f->events, &timeouts[i]), 0);
        assert_int_equal(fake.waits, (int)i + 1);
        assert_true(fake.wait_changelist_null);
        assert_false(fake.wait_timeout_null);
        assert_int_equal(fake.wait_timeout.tv_sec, timeouts[i].tv_sec);
        assert_int_equal(fake.wait_timeout.tv_nsec, timeouts[i].tv_nsec);
        assert_true(mio_events_is_empty(f->events));
    }
}

static void poll_with_null_timeout_blocks(void **state)
{
    struct fixture *f = *state;
    fake_queue(0, EVFILT_READ, 0, 0, 1); /* or the fake would fail */
    assert_int_equal(mio_poll_poll(f->poll, f->events, NULL), 0);
    assert_true(fake.wait_timeout_null);
    assert_int_equal(mio_events_len(f->events), 1);
}

static void poll_requests_at_most_capacity(void **state)
{
    struct fixture *f = *state;
    mio_events_t *events = mio_events_new(3);
    assert_non_null(events);
    for (mio_token_t t = 0; t < 5; t++)
        fake_queue(0, EVFILT_READ, 0, 0, t);
    const struct timespec zero = {0, 0};
    assert_int_equal(mio_poll_poll(f->poll, events, &zero), 0);
    assert_int_equal(fake.wait_nevents, 3);
    assert_int_equal(mio_events_len(events), 3);
    for (size_t i = 0; i < 3; i++)
        assert_true(mio_event_token(mio_events_get(events, i)) == i);
    assert_int_equal(mio_poll_poll(f->poll, events, &zero), 0);
    assert_int_equal(mio_events_len(events), 2);
    assert_true(mio_event_token(mio_events_get(events, 0)) == 3);
    assert_true(mio_event_token(mio_events_get(events, 1)) == 4);
    mio_events_free(events);
}

static void poll_returns_eintr(void **state)
{
    struct fixture *f = *state;
    fake_queue(0, EVFILT_READ, 0, 0, 1);
    fake_fail_next_call(EINTR);
    const struct timespec zero = {0, 0};
    assert_int_equal(mio_poll_poll(f->poll, f->events, &zero), -EINTR);
    assert_true(mio_events_is_empty(f->events));
    assert_int_equal(fake.calls, 1); /* not retried */
}

/* ---- poll: translation of kevents ------------------------------------ */

static void read_event_is_readable(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 11, MIO_READABLE), 0);
    fake_fire((uintptr_t)f->pipe[0], EVFILT_READ, 0, 0);
    expect_one_event(f, 11, R);
}

static void read_event_with_eof_is_read_closed(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 12, MIO_READABLE), 0);
    fake_fire((uintptr_t)f->pipe[0], EVFILT_READ, EV_EOF, 0);
    expect_one_event(f, 12, R | RC);
}

static void write_event_is_writable(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[1], 13, MIO_WRITABLE), 0);
    fake_fire((uintptr_t)f->pipe[1], EVFILT_WRITE, 0, 0);
    expect_one_event(f, 13, W);
}

static void write_event_with_eof_is_write_closed(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[1], 14, MIO_WRITABLE), 0);
    fake_fire((uintptr_t)f->pipe[1], EVFILT_WRITE, EV_EOF, 0);
    expect_one_event(f, 14, W | WC);
}

static void eof_with_fflags_is_error(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 15,
                                           MIO_READABLE | MIO_WRITABLE),
                     0);
    fake_fire((uintptr_t)f->pipe[0], EVFILT_READ, EV_EOF, ECONNRESET);
    expect_one_event(f, 15, R | RC | E);
    fake_fire((uintptr_t)f->pipe[0], EVFILT_WRITE, EV_EOF, ECONNREFUSED);
    expect_one_event(f, 15, W | WC | E);
}

static void ev_error_is_error(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 16,
                                           MIO_READABLE | MIO_WRITABLE),
                     0);
    fake_fire((uintptr_t)f->pipe[0], EVFILT_WRITE, EV_ERROR, 0);
    expect_one_event(f, 16, W | E);
}

static void read_and_write_are_two_events_for_one_token(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 17,
                                           MIO_READABLE | MIO_WRITABLE),
                     0);
    fake_fire((uintptr_t)f->pipe[0], EVFILT_READ, 0, 0);
    fake_fire((uintptr_t)f->pipe[0], EVFILT_WRITE, 0, 0);
    const struct timespec zero = {0, 0};
    assert_int_equal(mio_poll_poll(f->poll, f->events, &zero), 0);
    assert_int_equal(mio_events_len(f->events), 2);
    assert_true(mio_event_token(mio_events_get(f->events, 0)) == 17);
    assert_int_equal(readiness(mio_events_get(f->events, 0)), R);
    assert_true(mio_event_token(mio_events_get(f->events, 1)) == 17);
    assert_int_equal(readiness(mio_events_get(f->events, 1)), W);
}

static void user_event_is_readable(void **state)
{
    struct fixture *f = *state;
#ifdef EVFILT_USER
    fake_queue(42, EVFILT_USER, EV_CLEAR, 0, 18);
    expect_one_event(f, 18, R);
#else
    (void)f;
    skip();
#endif
}

static void aio_event_is_aio(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], 19, MIO_AIO), 0);
    fake_queue(0x1000, EVFILT_AIO, 0, 0, 19);
    expect_one_event(f, 19, AIO);
}

static void lio_event_is_lio(void **state)
{
    struct fixture *f = *state;
    fake_queue(0x2000, EVFILT_LIO, 0, 0, 20);
    expect_one_event(f, 20, LIO);
}

static void token_uintptr_max_round_trips(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mio_registry_register(f->reg, f->pipe[0], UINTPTR_MAX, MIO_READABLE),
                     0);
    assert_change(0, (uintptr_t)f->pipe[0], EVFILT_READ, ADD, 0, UINTPTR_MAX);
    fake_fire((uintptr_t)f->pipe[0], EVFILT_READ, 0, 0);
    expect_one_event(f, UINTPTR_MAX, R);
}

/* ---- waker ----------------------------------------------------------- */

#ifdef EVFILT_USER

static void waker_adds_user_event_on_dup_of_kqueue(void **state)
{
    struct fixture *f = *state;
    mio_waker_t *w;
    assert_int_equal(mio_waker_new(f->reg, 21, &w), 0);
    assert_int_equal(fake.nlog, 1);
    const struct logged_change *c = &fake.log[0];
    assert_int_not_equal(c->fd, fake.kq[0].fd);
    assert_int_equal(c->kq, 0);
    assert_true(is_cloexec(c->fd));
    assert_change(0, c->kev.ident, EVFILT_USER, ADD, 0, 21);
    mio_waker_free(w);
}

static void waker_wake_triggers_its_event_with_its_token(void **state)
{
    struct fixture *f = *state;
    mio_waker_t *w;
    assert_int_equal(mio_waker_new(f->reg, 22, &w), 0);
    uintptr_t ident = fake.log[0].kev.ident;
    assert_int_equal(mio_waker_wake(w), 0);
    assert_int_equal(fake.nlog, 2);
    assert_int_equal(fake.log[1].kq, 0);
    assert_change(1, ident, EVFILT_USER, EV_RECEIPT, NOTE_TRIGGER, 22);
    expect_one_event(f, 22, R);
    mio_waker_free(w);
}

static void wakers_of_one_poll_have_their_own_idents(void **state)
{
    struct fixture *f = *state;
    mio_waker_t *a;
    assert_int_equal(mio_waker_new(f->reg, 23, &a), 0);
    mio_waker_t *b;
    assert_int_equal(mio_waker_new(f->reg, 24, &b), 0);
    assert_int_not_equal(fake.log[0].kev.ident, fake.log[1].kev.ident);
    assert_int_equal(mio_waker_wake(a), 0);
    assert_int_equal(mio_waker_wake(b), 0);
    const struct timespec zero = {0, 0};
    assert_int_equal(mio_poll_poll(f->poll, f->events, &zero), 0);
    assert_int_equal(mio_events_len(f->events), 2);
    assert_true(mio_event_token(mio_events_get(f->events, 0)) == 23);
    assert_true(mio_event_token(mio_events_get(f->events, 1)) == 24);
    mio_waker_free(a);
    mio_waker_free(b);
}

static void waker_free_deletes_its_event_and_closes_its_dup(void **state)
{
    struct fixture *f = *state;
    mio_waker_t *w;
    assert_int_equal(mio_waker_new(f->reg, 25, &w), 0);
    int fd = fake.log[0].fd;
    uintptr_t ident = fake.log[0].kev.ident;
    mio_waker_free(w);
    assert_change(1, ident, EVFILT_USER, DEL, 0, 0);
    assert_false(fake_has_knote(0, ident, EVFILT_USER));
    assert_int_equal(fcntl(fd, F_GETFD), -1);
}

static void waker_new_returns_registration_error(void **state)
{
    struct fixture *f = *state;
    mio_waker_t *w = (mio_waker_t *)1;
    int fds = open_fd_count();
    fake_fail_change(EVFILT_USER, ENOMEM);
    assert_int_equal(mio_waker_new(f->reg, 26, &w), -ENOMEM);
    assert_null(w);
    assert_int_equal(open_fd_count(), fds);
}

#else /* the wake-fd fallback */

static void waker_adds_wake_fd_for_reading(void **state)
{
    struct fixture *f = *state;
    mio_waker_t *w;
    assert_int_equal(mio_waker_new(f->reg, 21, &w), 0);
    assert_int_equal(fake.nlog, 1);
    int fd = (int)fake.log[0].kev.ident;
    assert_int_equal(fake.log[0].kq, 0);
    assert_change(0, (uintptr_t)fd, EVFILT_READ, ADD, 0, 21);
    assert_true(is_cloexec(fd));
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    mio_waker_free(w);
}

static void waker_wake_makes_wake_fd_readable(void **state)
{
    struct fixture *f = *state;
    mio_waker_t *w;
    assert_int_equal(mio_waker_new(f->reg, 22, &w), 0);
    struct pollfd pfd = {.fd = (int)fake.log[0].kev.ident, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0);
    assert_int_equal(mio_waker_wake(w), 0);
    assert_int_equal(poll(&pfd, 1, 0), 1);
    assert_int_equal(fake.calls, 1); /* a write, not a kevent() */
    mio_waker_free(w);
}

static void waker_wake_survives_a_full_pipe(void **state)
{
    struct fixture *f = *state;
    mio_waker_t *w;
    assert_int_equal(mio_waker_new(f->reg, 23, &w), 0);
    for (int i = 0; i < 200000; i++)
        assert_int_equal(mio_waker_wake(w), 0);
    mio_waker_free(w);
}

static void waker_free_closes_wake_fd(void **state)
{
    struct fixture *f = *state;
    mio_waker_t *w;
    int fds = open_fd_count();
    assert_int_equal(mio_waker_new(f->reg, 24, &w), 0);
    mio_waker_free(w);
    assert_int_equal(open_fd_count(), fds);
}

static void waker_new_returns_registration_error(void **state)
{
    struct fixture *f = *state;
    mio_waker_t *w = (mio_waker_t *)1;
    int fds = open_fd_count();
    fake_fail_change(EVFILT_READ, ENOMEM);
    assert_int_equal(mio_waker_new(f->reg, 26, &w), -ENOMEM);
    assert_null(w);
    assert_int_equal(open_fd_count(), fds);
}

#endif /* EVFILT_USER */

static void waker_outlives_poll(void **state)
{
    struct fixture *f = *state;
    mio_waker_t *w;
    assert_int_equal(mio_waker_new(f->reg, 27, &w), 0);
    mio_poll_free(f->poll);
    f->poll = NULL;
    assert_int_equal(mio_waker_wake(w), 0);
    mio_waker_free(w);
    assert_int_equal(mio_poll_new(&f->poll), 0); /* for teardown */
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(backend_is_named_kqueue),
        T(poll_new_makes_kqueue_close_on_exec),
        T(poll_free_closes_kqueue),
        T(registry_clone_dups_kqueue),
        T(register_readable_adds_read_filter_with_clear_and_receipt),
        T(register_writable_adds_write_filter),
        T(register_both_adds_read_and_write_in_one_call),
        T(register_aio_or_lio_adds_no_filter),
        T(register_priority_is_not_supported),
        T(register_returns_receipt_error_as_negative_errno),
        T(register_returns_first_error_not_ignored),
        T(register_ignores_epipe),
        T(register_counts_eintr_as_applied),
        T(register_returns_failure_of_the_call),
        T(register_twice_updates_the_token),
        T(reregister_adds_wanted_and_deletes_other_filters),
        T(reregister_ignores_enoent_for_filter_not_there),
        T(reregister_returns_other_errors),
        T(deregister_deletes_both_filters),
        T(deregister_of_unregistered_fd_returns_0),
        T(deregister_returns_other_errors),
        T(rearm_makes_no_system_call),
        T(poll_passes_exact_timeout_to_kevent),
        T(poll_with_null_timeout_blocks),
        T(poll_requests_at_most_capacity),
        T(poll_returns_eintr),
        T(read_event_is_readable),
        T(read_event_with_eof_is_read_closed),
        T(write_event_is_writable),
        T(write_event_with_eof_is_write_closed),
        T(eof_with_fflags_is_error),
        T(ev_error_is_error),
        T(read_and_write_are_two_events_for_one_token),
        T(user_event_is_readable),
        T(aio_event_is_aio),
        T(lio_event_is_lio),
        T(token_uintptr_max_round_trips),
#ifdef EVFILT_USER
        T(waker_adds_user_event_on_dup_of_kqueue),
        T(waker_wake_triggers_its_event_with_its_token),
        T(wakers_of_one_poll_have_their_own_idents),
        T(waker_free_deletes_its_event_and_closes_its_dup),
#else
        T(waker_adds_wake_fd_for_reading),
        T(waker_wake_makes_wake_fd_readable),
        T(waker_wake_survives_a_full_pipe),
        T(waker_free_closes_wake_fd),
#endif
        T(waker_new_returns_registration_error),
        T(waker_outlives_poll),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
