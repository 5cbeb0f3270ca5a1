/* Zero-copy relaying through a pipe, and the worker's pool of pipes. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "mio.h"
#include "pipe.h"

/* Empty pipes a worker keeps: enough for the directions that turn to bulk
 * at the same moment, few enough that the descriptors stay with clients. */
#define POOL_MAX 16

unsigned pipe_budget(unsigned workers)
{
    struct rlimit rl;
    rlim_t fds = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        fds = rl.rlim_cur;
    /* An eighth of the descriptors, two to a pipe. */
    rlim_t n = fds / 16 / (workers > 0 ? workers : 1);
    return n > 4096 ? 4096 : n < 2 ? 2 : (unsigned)n;
}

#ifdef HAVE_SPLICE

struct pipe *pipe_get(struct pipe_pool *pool)
{
    struct pipe *p = pool->free;
    if (p != NULL) {
        pool->free = p->next;
        pool->nfree--;
        return p;
    }
    if (pool->open >= pool->max)
        return NULL;
    p = malloc(sizeof(*p));
    if (p == NULL)
        return NULL;
    int fds[2];
    if (mio_pipe(fds) < 0) {
        free(p);
        return NULL;
    }
    int size = fcntl(fds[1], F_GETPIPE_SZ);
    *p = (struct pipe){.rd = fds[0], .wr = fds[1], .cap = size > 0 ? (size_t)size : 4096};
    pool->open++;
    return p;
}

ssize_t pipe_fill(struct pipe *p, int fd, size_t max)
{
    if (max > p->cap - p->len)
        max = p->cap - p->len;
    for (;;) {
        ssize_t n = splice(fd, NULL, p->wr, NULL, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n >= 0) {
            p->len += (size_t)n;
            return n;
        }
        if (errno != EINTR)
            return -errno;
    }
}

/*
 * SIGPIPE: splice(2) into a socket whose peer is gone raises it (there is no
 * MSG_NOSIGNAL on this path); the daemon ignores SIGPIPE and sees EPIPE.
 */
ssize_t pipe_drain(struct pipe *p, int fd)
{
    size_t done = 0;
    while (p->len > 0) {
        ssize_t n = splice(p->rd, NULL, fd, NULL, p->len,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            p->len -= (size_t)n;
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (done > 0)
            break; /* the error, if it stays, comes back on the next call */
        return n == 0 ? -EPIPE : -errno;
    }
    return (ssize_t)done;
}

#else /* !HAVE_SPLICE */

struct pipe *pipe_get(struct pipe_pool *pool)
{
    (void)pool;
    return NULL;
}

ssize_t pipe_fill(struct pipe *p, int fd, size_t max)
{
    (void)p, (void)fd, (void)max;
    return -ENOSYS;
}

ssize_t pipe_drain(struct pipe *p, int fd)
{
    (void)p, (void)fd;
    return -ENOSYS;
}

#endif /* HAVE_SPLICE */

/* Closes a pipe and forgets it. */
static void pipe_close(struct pipe_pool *pool, struct pipe *p)
{
    close(p->rd);
    close(p->wr);
    free(p);
    pool->open--;
}

void pipe_put(struct pipe_pool *pool, struct pipe *p)
{
    if (p->len > 0 || pool->nfree >= POOL_MAX) {
        pipe_close(pool, p); /* stale bytes never reach another connection */
        return;
    }
    p->next = pool->free;
    pool->free = p;
    pool->nfree++;
}

void pipe_pool_free(struct pipe_pool *pool)
{
    while (pool->free != NULL) {
        struct pipe *p = pool->free;
        pool->free = p->next;
        pipe_close(pool, p);
    }
    pool->nfree = 0;
}
