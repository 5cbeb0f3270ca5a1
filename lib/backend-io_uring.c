/*
 * The io_uring backend (Linux 5.13 and later, through liburing): readiness
 * by multishot POLL_ADD, taken only on request (mio_poll_new_with,
 * MIO_BACKEND), never by mio_poll_new()'s default order.
 *
 * Edge triggering.  A multishot poll is armed edge-triggered (the kernel's
 * default without IORING_POLL_ADD_LEVEL): it completes once when armed on a
 * source that is ready, then once per wake-up of the source that leaves it
 * ready in a direction asked for, and never for readiness that stays
 * unconsumed without a wake-up, which is what epoll's EPOLLET does and what
 * mio promises.  Completions for one source that arrive before the same
 * select reads them are merged into one event, as epoll merges them; a
 * waker's completions are merged across selects by a flag, so that wakes
 * between two polls make one event.  A completion without IORING_CQE_F_MORE
 * means the kernel ended the multishot (a full completion queue, a
 * cancellation): the poll is armed again if the source is still registered
 * and ever had a live multishot; a source that ends it at once cannot be
 * polled that way and stays silent after its one event.
 *
 * Registrations.  io_uring answers errors only in completions, while mio
 * answers EEXIST, ENOENT and EBADF at once, so the registrations live in a
 * table of our own (fdtable.h), indexed by descriptor, guarded by its
 * mutex; EBADF comes from fstat(), and regular files and directories are
 * -EPERM as on epoll.  Each poll request's user_data holds the descriptor
 * and the table's generation, which changes on every register and
 * reregister: a completion of another generation is stale and dropped, so
 * nothing is reported after a deregister.
 *
 * The submission queue has one producer at a time: the thread that holds
 * the mutex, while no select waits in the kernel.  select sets `waiting`,
 * releases the mutex, and submits the queued requests with its wait in one
 * io_uring_submit_and_wait_timeout() call; a change made meanwhile by
 * another thread goes to a side list instead and wakes the select through
 * an eventfd that the ring polls, and select moves the list into the ring
 * before it waits again.  register and reregister only queue their
 * requests (they reach the kernel with the next wait); deregister submits
 * at once when it can, because the pending poll holds a reference to the
 * file and a close() right after must really close it.  A removal that
 * meets its poll mid-completion fails with -EALREADY and the poll stays
 * armed (it happens when the add and the remove go in one submission: a
 * descriptor deregistered in the batch that registered it); the poll's
 * next completion, stale and still armed, sends the removal again, so the
 * file is then released by the next select rather than at once.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "backend.h"
#include "fdtable.h"
#include "timeout.h"
#include "wakefd.h"

/* Submission entries (the side list absorbs bursts beyond them) and
 * completion entries: one completion per wake-up of each source, so the
 * completion queue is the larger. */
#define SQ_ENTRIES 256
#define CQ_ENTRIES 4096

/* What a wait without a timeout asks the kernel for: about 31 years, in one
 * call that cannot overflow the kernel's ktime. */
#define FOREVER_NS ((int64_t)1000000000 * 1000000000)

/* user_data: a kind in the top 2 bits, a descriptor (or 0) in the next 30,
 * a generation (or a waker's id) in the low 32.  Never all ones, which
 * liburing reserves. */
enum ud_kind { UD_IGNORE = 0, UD_FD = 1, UD_NOTIFY = 2, UD_WAKER = 3 };
#define UD_FD_MAX 0x3fffffff

/* One registered descriptor, the table's entry for it. */
struct entry {
    struct mio__fdreg reg; /* the token and the generation */
    uint32_t mask;         /* the poll bits asked of the kernel */
    uint32_t want;         /* those the interest reports (see kernel_mask()) */
    uint32_t batch;        /* the select that gave it events->ev[evi] */
    uint32_t evi;
    bool polling; /* a poll request of this generation is in the kernel */
    bool more;    /* that request has completed with IORING_CQE_F_MORE */
};

/* A request made while a select waits, moved into the ring after it. */
struct op {
    uint64_t ud;     /* the new request's user_data */
    uint64_t target; /* for a remove: the poll's user_data */
    int fd;          /* for an add: the descriptor */
    uint32_t mask;   /* for an add: the poll bits */
    bool remove;
};

/* Guarded by tab.lock, but for the ring, which is the waiting select's own
 * while `waiting` is set. */
struct uring_sel {
    struct mio__fdtable tab; /* first (fdtable.h): the registrations, the lock */
    struct io_uring ring;
    int notify[2];  /* an eventfd the ring polls: wakes a waiting select */
    bool waiting;   /* a select is in the kernel: the ring is its own */
    bool notify_on; /* the notify poll is in the kernel */
    uint32_t batch; /* counts selects, for merging completions */
    struct op *ops; /* the side list */
    size_t nops, ops_cap;
    struct uring_waker *wakers;
    uint32_t next_waker_id;
};

/* A waker: its own eventfd polled by the ring, and a flag that makes its
 * completions one event until the poll reports it. */
struct uring_waker {
    struct uring_sel *sel;
    int fds[2];
    mio_token_t token;
    uint32_t id;
    bool polling;
    atomic_bool pending;
    struct uring_waker *next;
};

/* The user_data of a request. */
static uint64_t ud_make(enum ud_kind kind, uint32_t slot, uint32_t gen)
{
    return (uint64_t)kind << 62 | (uint64_t)slot << 32 | gen;
}

/* What a completion is for. */
static enum ud_kind ud_kind(uint64_t ud)
{
    return (enum ud_kind)(ud >> 62);
}

/* The descriptor a completion is for (UD_FD). */
static uint32_t ud_slot(uint64_t ud)
{
    return (uint32_t)(ud >> 32) & UD_FD_MAX;
}

/* The generation, or the waker's id, a completion is for. */
static uint32_t ud_gen(uint64_t ud)
{
    return (uint32_t)ud;
}

/* The poll bits for an interest; POLLRDHUP so that a FIN shows as
 * read-closed (the kernel adds ERR, HUP and RDHUP itself). */
static uint32_t uring_mask(mio_interest_t interest)
{
    uint32_t mask = 0;
    if (interest & MIO_READABLE)
        mask |= POLLIN | POLLRDHUP;
    if (interest & MIO_WRITABLE)
        mask |= POLLOUT;
    if (interest & MIO_PRIORITY)
        mask |= POLLPRI;
    return mask;
}

/*
 * The poll bits to ask the kernel for the bits `want` reported.  POLLPRI
 * alone would never complete: io_uring's wake-up filter leaves EPOLLPRI out
 * when it matches a wake-up's key against a poll's events (io_poll_wake()
 * and IO_ASYNC_POLL_COMMON, since Linux 5.19), so urgent data, whose key is
 * IN | PRI | RDNORM | RDBAND, wakes a poll only through POLLIN.  The extra
 * POLLIN is filtered out of what is reported (test-net's
 * test_priority_alone_ignores_plain_data).
 */
static uint32_t kernel_mask(uint32_t want)
{
    return want & POLLPRI ? want | POLLIN : want;
}

/* mio's reading of a poll completion's mask, as epoll's is read. */
static uint32_t uring_flags(uint32_t r)
{
    static const struct mio__mask_bits bits = {POLLIN,  POLLPRI, POLLOUT,
                                               POLLERR, POLLHUP, POLLRDHUP};
    return mio__event_flags(r, &bits);
}

/* Puts one request into the submission queue, submitting what is there
 * when it is full; lock held, no select waiting. */
static int put_sqe(struct uring_sel *sel, const struct op *op)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&sel->ring);
    if (sqe == NULL) {
        int r = io_uring_submit(&sel->ring);
        if (r < 0)
            return r;
        sqe = io_uring_get_sqe(&sel->ring);
        if (sqe == NULL)
            return -EBUSY;
    }
    if (op->remove)
        io_uring_prep_poll_remove(sqe, op->target);
    else
        io_uring_prep_poll_multishot(sqe, op->fd, op->mask);
    io_uring_sqe_set_data64(sqe, op->ud);
    return 0;
}

/* Queues a request: into the ring, or onto the side list while a select
 * waits, waking it when the list was empty; lock held. */
static int queue_op(struct uring_sel *sel, const struct op *op)
{
    if (!sel->waiting)
        return put_sqe(sel, op);
    int err = mio__array_grow(&sel->ops, &sel->ops_cap, sel->nops + 1, sizeof(*sel->ops));
    if (err < 0)
        return err;
    sel->ops[sel->nops++] = *op;
    if (sel->nops == 1)
        (void)mio__wakefd_signal(sel->notify);
    return 0;
}

/* Moves the side list into the ring; lock held, no select waiting.  What
 * does not fit stays on the list. */
static int flush_ops(struct uring_sel *sel)
{
    size_t done = 0;
    int err = 0;
    if (sel->nops == 0)
        return 0;
    while (done < sel->nops && (err = put_sqe(sel, &sel->ops[done])) == 0)
        done++;
    memmove(sel->ops, sel->ops + done, (sel->nops - done) * sizeof(*sel->ops));
    sel->nops -= done;
    return err;
}

/* Queues the multishot poll of a registered descriptor; lock held. */
static int queue_add(struct uring_sel *sel, int fd, struct entry *e)
{
    struct op op = {.ud = ud_make(UD_FD, (uint32_t)fd, e->reg.gen),
                    .fd = fd,
                    .mask = e->mask};
    int err = queue_op(sel, &op);
    e->polling = err == 0;
    e->more = false;
    return err;
}

/* Queues the removal of the poll request `target`; lock held.  Its
 * completions, and the removal's, are dropped when they come. */
static int queue_remove_ud(struct uring_sel *sel, uint64_t target)
{
    struct op op = {.ud = ud_make(UD_IGNORE, 0, 0), .target = target, .remove = true};
    return queue_op(sel, &op);
}

/* Queues the removal of a descriptor's poll, if one is in the kernel; lock
 * held. */
static int queue_remove(struct uring_sel *sel, int fd, struct entry *e)
{
    if (!e->polling)
        return 0;
    e->polling = false;
    return queue_remove_ud(sel, ud_make(UD_FD, (uint32_t)fd, e->reg.gen));
}

/* Queues the poll of the notify eventfd; lock held. */
static int queue_notify(struct uring_sel *sel)
{
    struct op op = {.ud = ud_make(UD_NOTIFY, 0, 0), .fd = sel->notify[0], .mask = POLLIN};
    int err = queue_op(sel, &op);
    sel->notify_on = err == 0;
    return err;
}

/* Queues the poll of a waker's eventfd; lock held. */
static int queue_waker(struct uring_sel *sel, struct uring_waker *w)
{
    struct op op = {.ud = ud_make(UD_WAKER, 0, w->id), .fd = w->fds[0], .mask = POLLIN};
    int err = queue_op(sel, &op);
    w->polling = err == 0;
    return err;
}

/* Sends what is queued now, when no select waits (one waiting submits it
 * itself); lock held. */
static void submit_now(struct uring_sel *sel)
{
    if (!sel->waiting)
        (void)io_uring_submit(&sel->ring);
}

/*
 * Whether an ended multishot poll may be armed again: it was cancelled by
 * the kernel, or ended with a result.  The kernel ends a multishot poll
 * whose wake-up finds the completion queue full, and posts its last
 * completion (the mask, without IORING_CQE_F_MORE) among the overflow: on
 * a burst of more wake-ups than the queue holds, this is the first
 * completion of many sources, which must be armed again like the others,
 * or they never report again (test-registry wakes 5000 sources at once:
 * 904 were lost for good).  An empty result counts only after the poll had
 * been live.
 */
static bool rearmable(int res, bool was_live)
{
    return res == -ECANCELED || res > 0 || (res == 0 && was_live);
}

/* Adds an event for `token` or merges it into the one this select gave the
 * same source.  False when a new event is needed and there is no room. */
static bool push_event(struct uring_sel *sel, struct mio_events *events, uint32_t *batch,
                       uint32_t *evi, mio_token_t token, uint32_t flags)
{
    if (*batch == sel->batch) {
        events->ev[*evi].flags |= flags;
        return true;
    }
    if (events->len == events->cap)
        return false;
    *batch = sel->batch;
    *evi = (uint32_t)events->len;
    events->ev[events->len++] = (struct mio_event){token, flags};
    return true;
}

/*
 * A completion's mask without a POLLPRI that is not true now.  A poll
 * woken by the source reports the wake-up's key rather than polling it
 * again (epoll polls again before it reports), and a TCP socket's key on
 * any data is IN | PRI | RDNORM | RDBAND: without this every message would
 * look urgent.  Urgent data is told apart by polling the descriptor, one
 * poll(2) where the source was registered with MIO_PRIORITY.
 */
static uint32_t true_priority(int fd, uint32_t res)
{
    struct pollfd p = {.fd = fd, .events = POLLPRI};
    if (poll(&p, 1, 0) == 1 && (p.revents & POLLPRI))
        return res;
    return res & ~(uint32_t)POLLPRI;
}

/* One completion of a descriptor's poll.  False when it needs an event
 * and there is no room: it is then left in the ring for the next select. */
static bool take_fd(struct uring_sel *sel, const struct io_uring_cqe *cqe,
                    struct mio_events *events)
{
    int fd = (int)ud_slot(cqe->user_data);
    struct entry *e = mio__fdtable_get(&sel->tab, fd);
    if (e == NULL || e->reg.gen != ud_gen(cqe->user_data) || !e->polling) {
        /* Stale: deregistered or replaced.  Still armed, it is a poll whose
         * removal met it mid-completion (-EALREADY: the add and the remove
         * reached the kernel in one submission): remove it again, or it
         * would hold the file open for good. */
        if (cqe->flags & IORING_CQE_F_MORE)
            (void)queue_remove_ud(sel, cqe->user_data);
        return true;
    }
    uint32_t res = cqe->res > 0 ? (uint32_t)cqe->res & (e->want | POLLERR | POLLHUP) : 0;
    if (res != 0 && e->batch != sel->batch && events->len == events->cap)
        return false;
    if (cqe->flags & IORING_CQE_F_MORE) {
        e->more = true;
    } else {
        bool was_live = e->more;
        e->polling = false;
        if (rearmable(cqe->res, was_live))
            (void)queue_add(sel, fd, e);
    }
    if (res & POLLPRI)
        res = true_priority(fd, res);
    if (res != 0)
        (void)push_event(sel, events, &e->batch, &e->evi, e->reg.token, uring_flags(res));
    return true;
}

/* One completion of a waker's poll: an event if a wake is pending. */
static bool take_waker(struct uring_sel *sel, const struct io_uring_cqe *cqe,
                       struct mio_events *events)
{
    struct uring_waker *w = sel->wakers;
    while (w != NULL && w->id != ud_gen(cqe->user_data))
        w = w->next;
    if (w == NULL || !w->polling)
        return true;
    if (atomic_load(&w->pending) && events->len == events->cap)
        return false;
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        w->polling = false;
        if (rearmable(cqe->res, true))
            (void)queue_waker(sel, w);
    }
    if (atomic_exchange(&w->pending, false))
        events->ev[events->len++] = (struct mio_event){w->token, MIO__EV_READABLE};
    return true;
}

/* Reads completions into events until the ring is empty or an event finds
 * no room (*full); lock held, no select waiting.  Returns how many it
 * read. */
static unsigned harvest_ring(struct uring_sel *sel, struct mio_events *events, bool *full)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    *full = false;
    io_uring_for_each_cqe(&sel->ring, head, cqe)
    {
        bool taken = true;
        switch (ud_kind(cqe->user_data)) {
        case UD_FD:
            taken = take_fd(sel, cqe, events);
            break;
        case UD_WAKER:
            taken = take_waker(sel, cqe, events);
            break;
        case UD_NOTIFY:
            if (!(cqe->flags & IORING_CQE_F_MORE)) {
                sel->notify_on = false;
                if (rearmable(cqe->res, true))
                    (void)queue_notify(sel);
            }
            break;
        case UD_IGNORE:
            break;
        }
        if (!taken) {
            *full = true;
            break;
        }
        seen++;
    }
    io_uring_cq_advance(&sel->ring, seen);
    return seen;
}

/* Reads the ring, and the completions the kernel kept aside when it was
 * full (a burst of wake-ups), so that one source's burst is one event
 * rather than one now and one at the next select.  A bounded number of
 * rounds: a source that keeps waking does not hold the select. */
static unsigned harvest(struct uring_sel *sel, struct mio_events *events)
{
    unsigned seen = 0;
    for (int round = 0; round < 4; round++) {
        bool full;
        seen += harvest_ring(sel, events, &full);
        if (full || !io_uring_cq_has_overflow(&sel->ring))
            break;
        (void)io_uring_get_events(&sel->ring);
    }
    return seen;
}

/* Arms the notify eventfd's multishot poll on a new ring and checks that
 * the kernel keeps it armed: kernels before 5.13 refuse the flag with
 * EINVAL, which is -ENOSYS here. */
static int arm_notify(struct uring_sel *sel)
{
    int err = mio__wakefd_signal(sel->notify);
    if (err < 0)
        return err;
    err = queue_notify(sel);
    if (err < 0)
        return err;
    struct __kernel_timespec ts = {1, 0};
    struct io_uring_cqe *cqe = NULL;
    int r = io_uring_submit_and_wait_timeout(&sel->ring, &cqe, 1, &ts, NULL);
    if (cqe == NULL)
        return r < 0 && r != -ETIME ? r : -ENOSYS;
    bool live = cqe->res > 0 && (cqe->flags & IORING_CQE_F_MORE);
    err = cqe->res == -EINVAL || (cqe->res >= 0 && !live) ? -ENOSYS : cqe->res;
    io_uring_cqe_seen(&sel->ring, cqe);
    mio__wakefd_drain(sel->notify);
    return live ? 0 : err;
}

/* Frees a selector that has no other holder. */
static void destroy(struct uring_sel *sel, bool ring_up)
{
    if (ring_up)
        io_uring_queue_exit(&sel->ring);
    mio__wakefd_close(sel->notify);
    mio__fdtable_fini(&sel->tab);
    free(sel->ops);
    free(sel);
}

/* A ring with room for a completion per wake-up of many sources; -EPERM
 * or -ENOSYS as the kernel says (kernel.io_uring_disabled, seccomp, no
 * io_uring), -ENOSYS too for a kernel without the timeout argument of
 * io_uring_enter (5.11) or multishot poll (5.13). */
static int uring_new(void **out)
{
    struct uring_sel *sel = calloc(1, sizeof(*sel));
    if (sel == NULL)
        return -ENOMEM;
    int err = mio__fdtable_init(&sel->tab, sizeof(struct entry));
    if (err < 0) {
        free(sel);
        return err;
    }
    err = mio__wakefd_open(sel->notify);
    if (err < 0) {
        mio__fdtable_fini(&sel->tab);
        free(sel);
        return err;
    }
    struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP |
                                         IORING_SETUP_COOP_TASKRUN,
                                .cq_entries = CQ_ENTRIES};
    err = io_uring_queue_init_params(SQ_ENTRIES, &sel->ring, &p);
    if (err == -EINVAL) {
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP,
                                     .cq_entries = CQ_ENTRIES};
        err = io_uring_queue_init_params(SQ_ENTRIES, &sel->ring, &p);
    }
    if (err < 0) {
        destroy(sel, false);
        return err;
    }
    if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_NODROP))
        err = -ENOSYS;
    else
        err = arm_notify(sel);
    if (err < 0) {
        destroy(sel, true);
        return err;
    }
    *out = sel;
    return 0;
}

/* Drops a reference; the last one closes the ring, which cancels its
 * polls. */
static void uring_free(void *handle)
{
    if (mio__fdtable_release(handle))
        destroy(handle, true);
}

/* Whether a ring with multishot poll can be had now. */
static int uring_probe(void)
{
    void *sel;
    int err = uring_new(&sel);
    if (err == 0)
        uring_free(sel);
    return err;
}

/* Nanoseconds as the kernel's timespec. */
static struct __kernel_timespec kernel_ts(int64_t ns)
{
    return (struct __kernel_timespec){ns / 1000000000, ns % 1000000000};
}

/*
 * Reads what the ring holds; when that is no event, submits what is queued
 * and waits in one call, for the time that is left, and reads again.  A
 * wait that ends with no event (a completion of our own: a change from
 * another thread, a multishot armed again) is resumed.  io_uring_enter
 * answers the number submitted rather than EINTR when it submitted
 * something, so a wait that submitted, read nothing at all and ended
 * before its time was interrupted by a signal: -EINTR.
 */
static int uring_select(void *handle, struct mio_events *events,
                        const struct timespec *timeout)
{
    struct uring_sel *sel = handle;
    int64_t deadline = -1;
    if (timeout != NULL) {
        int64_t ns = (int64_t)timeout->tv_nsec;
        /* Saturate instead of overflowing: a century is forever enough. */
        ns += timeout->tv_sec > 3153600000 ? INT64_MAX / 2
                                           : (int64_t)timeout->tv_sec * 1000000000;
        deadline = mio__now_ns() + ns;
    }
    int err = 0;
    pthread_mutex_lock(&sel->tab.lock);
    if (++sel->batch == 0)
        sel->batch = 1;
    (void)harvest(sel, events);
    for (;;) {
        if (!sel->notify_on)
            (void)queue_notify(sel);
        err = flush_ops(sel);
        if (err < 0) {
            if (events->len > 0)
                err = 0; /* the events first; the change waits in the list */
            break;
        }
        if (events->len > 0 && io_uring_sq_ready(&sel->ring) == 0)
            break;
        int64_t left = 0;
        if (events->len == 0 && deadline < 0)
            left = FOREVER_NS;
        else if (events->len == 0 && (left = deadline - mio__now_ns()) < 0)
            left = 0;
        if (left > FOREVER_NS)
            left = FOREVER_NS;
        struct __kernel_timespec ts = kernel_ts(left);
        struct io_uring_cqe *cqe;
        sel->waiting = true;
        pthread_mutex_unlock(&sel->tab.lock);
        int r = io_uring_submit_and_wait_timeout(&sel->ring, &cqe, 1, &ts, NULL);
        pthread_mutex_lock(&sel->tab.lock);
        sel->waiting = false;
        unsigned seen = harvest(sel, events);
        if (r < 0 && r != -ETIME && r != -EAGAIN && r != -EBUSY) {
            if (events->len == 0)
                err = r;
            break;
        }
        if (events->len > 0 || left == 0)
            break;
        bool early = deadline < 0 || mio__now_ns() < deadline;
        if (r > 0 && seen == 0 && early) {
            err = -EINTR;
            break;
        }
        if (!early)
            break;
    }
    pthread_mutex_unlock(&sel->tab.lock);
    return err;
}

/* A new entry and its poll, queued; -EBADF for a closed fd, -EPERM for a
 * regular file or a directory (always ready: epoll refuses them too),
 * -EEXIST when already there. */
static int uring_register(void *handle, int fd, mio_token_t token,
                          mio_interest_t interest)
{
    struct uring_sel *sel = handle;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
        return -EPERM;
    if (fd > UD_FD_MAX)
        return -EINVAL;
    pthread_mutex_lock(&sel->tab.lock);
    int err = mio__fdtable_add(&sel->tab, fd, token);
    if (err == 0) {
        struct entry *e = mio__fdtable_get(&sel->tab, fd);
        e->want = uring_mask(interest);
        e->mask = kernel_mask(e->want);
        err = queue_add(sel, fd, e);
        if (err < 0)
            mio__fdtable_remove(&sel->tab, &e->reg);
    }
    pthread_mutex_unlock(&sel->tab.lock);
    return err;
}

/* The old poll removed and a new one added under a new generation, both
 * queued: the new poll reports what is ready now, as EPOLL_CTL_MOD does;
 * -ENOENT when not there. */
static int uring_reregister(void *handle, int fd, mio_token_t token,
                            mio_interest_t interest)
{
    struct uring_sel *sel = handle;
    int err;
    pthread_mutex_lock(&sel->tab.lock);
    struct entry *e = mio__fdtable_get(&sel->tab, fd);
    if (e == NULL) {
        err = -ENOENT;
    } else if ((err = queue_remove(sel, fd, e)) == 0) {
        mio__fdtable_renew(&sel->tab, &e->reg, token);
        e->want = uring_mask(interest);
        e->mask = kernel_mask(e->want);
        e->batch = 0; /* a new source for the merging of this select */
        err = queue_add(sel, fd, e);
    }
    pthread_mutex_unlock(&sel->tab.lock);
    return err;
}

/* Forgets the entry at once and sends the removal of its poll; -ENOENT
 * when not there. */
static int uring_deregister(void *handle, int fd)
{
    struct uring_sel *sel = handle;
    int err = 0;
    pthread_mutex_lock(&sel->tab.lock);
    struct entry *e = mio__fdtable_get(&sel->tab, fd);
    if (e == NULL) {
        err = -ENOENT;
    } else {
        (void)queue_remove(sel, fd, e);
        mio__fdtable_remove(&sel->tab, &e->reg);
        submit_now(sel);
    }
    pthread_mutex_unlock(&sel->tab.lock);
    return err;
}

/* The kernel sees EAGAIN itself, as with epoll: nothing to do. */
static int uring_rearm(void *sel, int fd, mio_interest_t interest)
{
    (void)sel;
    (void)fd;
    (void)interest;
    return 0;
}

/* An eventfd of its own polled by the ring, and a reference on the
 * selector, so that the waker may outlive the poll. */
static int uring_waker_init(void *waker, void *handle, mio_token_t token)
{
    struct uring_waker *w = waker;
    struct uring_sel *sel = handle;
    int err = mio__wakefd_open(w->fds);
    if (err < 0)
        return err;
    w->token = token;
    atomic_init(&w->pending, false);
    pthread_mutex_lock(&sel->tab.lock);
    w->id = ++sel->next_waker_id;
    err = queue_waker(sel, w);
    if (err == 0) {
        w->next = sel->wakers;
        sel->wakers = w;
    }
    pthread_mutex_unlock(&sel->tab.lock);
    if (err < 0) {
        mio__wakefd_close(w->fds);
        return err;
    }
    mio__fdtable_hold(&sel->tab);
    w->sel = sel;
    return 0;
}

/* A flag and a write: async-signal-safe, no lock. */
static int uring_waker_wake(void *waker)
{
    struct uring_waker *w = waker;
    atomic_store(&w->pending, true);
    return mio__wakefd_signal(w->fds);
}

/* Leaves the list, sends the removal of its poll, and drops the
 * reference on the selector. */
static void uring_waker_fini(void *waker)
{
    struct uring_waker *w = waker;
    struct uring_sel *sel = w->sel;
    pthread_mutex_lock(&sel->tab.lock);
    for (struct uring_waker **p = &sel->wakers; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    if (w->polling) {
        struct op op = {.ud = ud_make(UD_IGNORE, 0, 0),
                        .target = ud_make(UD_WAKER, 0, w->id),
                        .remove = true};
        (void)queue_op(sel, &op);
        submit_now(sel);
    }
    pthread_mutex_unlock(&sel->tab.lock);
    mio__wakefd_close(w->fds);
    uring_free(sel);
}

/* On request only: mio_poll_new() does not take it by itself (yet). */
const struct mio__backend mio__backend_io_uring = {
    .name = "io_uring",
    .on_request = true,
    .native_event_size = 0,
    .supported_interest = MIO_READABLE | MIO_WRITABLE | MIO_PRIORITY,
    .probe = uring_probe,
    .sel_new = uring_new,
    .sel_clone = mio__fdtable_clone,
    .sel_free = uring_free,
    .sel_select = uring_select,
    .sel_register = uring_register,
    .sel_reregister = uring_reregister,
    .sel_deregister = uring_deregister,
    .sel_rearm = uring_rearm,
    .waker_size = sizeof(struct uring_waker),
    .waker_init = uring_waker_init,
    .waker_wake = uring_waker_wake,
    .waker_fini = uring_waker_fini,
};
