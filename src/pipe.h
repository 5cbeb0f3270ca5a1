/*
 * Zero-copy relaying through a pipe (Linux splice(2)), and each worker's
 * pool of empty pipes.
 *
 * A direction of a connection that moves bulk data reads its source into a
 * pipe and writes the pipe out to its destination, so the bytes never come
 * up into the daemon.  A pipe is taken from the pool for one read and given
 * back as soon as it is empty; only a pipe whose bytes the destination could
 * not take yet stays with the connection, in place of a buffer.  An idle
 * connection therefore holds no pipe, pipes in use are bounded by the
 * directions that are blocked at that moment, and a worker with no
 * connection left closes its pool.
 *
 * Where splice(2) does not exist, pipe_get() always fails and the caller
 * copies.
 */
#ifndef ECHOD_PIPE_H
#define ECHOD_PIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A pipe and the count of bytes in it. */
struct pipe {
    int rd, wr;
    size_t len;        /* bytes in the pipe */
    size_t cap;        /* what it holds at most */
    struct pipe *next; /* in the pool */
};

/* A worker's empty pipes, kept for the next bulk read, and its budget. */
struct pipe_pool {
    struct pipe *free;
    unsigned nfree;
    unsigned open; /* pipes open, pooled or in use */
    unsigned max;  /* past it, pipe_get() fails: descriptors go to clients */
};

/* The pipes one of `workers` workers may hold open: their descriptors (two
 * a pipe) take at most an eighth of the descriptor limit between them, so
 * that at the limit descriptors still go to clients first.  Reads the limit
 * now: the workers ask at start and at each reload. */
unsigned pipe_budget(unsigned workers);

/* True when this build can splice. */
static inline bool pipe_splice_available(void)
{
#ifdef HAVE_SPLICE
    return true;
#else
    return false;
#endif
}

/* An empty pipe from the pool, or a new one; NULL when none can be made
 * (over budget, no descriptors, no memory): the caller copies instead. */
struct pipe *pipe_get(struct pipe_pool *pool);

/* Gives a pipe back: an empty one to the pool (or closed when the pool is
 * full), one with bytes in it closed. */
void pipe_put(struct pipe_pool *pool, struct pipe *p);

/* Closes every pooled pipe. */
void pipe_pool_free(struct pipe_pool *pool);

/* Moves up to `max` bytes from the socket `fd` into the empty pipe `p`.
 * Returns the bytes moved, 0 at end of file, or -errno (-EAGAIN when the
 * socket has nothing; -EINVAL when it cannot be spliced). */
ssize_t pipe_fill(struct pipe *p, int fd, size_t max);

/* Writes what is in `p` to the socket `fd` until the pipe is empty or the
 * socket is full.  Returns the bytes written (p->len tells what is left),
 * or -errno when nothing could be written (-EAGAIN: the socket is full). */
ssize_t pipe_drain(struct pipe *p, int fd);

#endif
