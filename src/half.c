/* One direction of a connection: source to destination, as far as it goes. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "pipe.h"
#include "worker.h"

/* Bytes held for a destination that could not take them yet. */
struct buf {
    size_t off, len, cap;
    uint8_t data[];
};

/* The fewest bytes a spliced read must bring for the next one to be
 * spliced too: below it, two splices cost more than a copy. */
#define SPLICE_MIN 4096

bool half_holds(const struct half *h)
{
    return h->held.buf != NULL;
}

int half_hold(struct half *h, const uint8_t *p, size_t n, size_t cap)
{
    struct buf *b = h->held.buf;
    if (b != NULL && b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    size_t len = b != NULL ? b->len : 0;
    if (b == NULL || len + n > b->cap) {
        if (cap < len + n)
            cap = len + n;
        struct buf *grown = realloc(b, sizeof(struct buf) + cap);
        if (grown == NULL)
            return -ENOMEM;
        *grown = (struct buf){.len = len, .cap = cap};
        h->held.buf = b = grown;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int half_hold_front(struct half *h, const uint8_t *p, size_t n)
{
    size_t len;
    const uint8_t *old = half_held(h, &len);
    struct buf *b = malloc(sizeof(struct buf) + n + len);
    if (b == NULL)
        return -ENOMEM;
    *b = (struct buf){.len = n + len, .cap = n + len};
    memcpy(b->data, p, n);
    if (len > 0)
        memcpy(b->data + n, old, len);
    free(h->held.buf);
    h->held.buf = b;
    return 0;
}

const uint8_t *half_held(const struct half *h, size_t *len)
{
    const struct buf *b = h->held.buf;
    *len = b != NULL ? b->len - b->off : 0;
    return b != NULL ? b->data + b->off : NULL;
}

void half_drop_front(struct half *h, size_t n)
{
    struct buf *b = h->held.buf;
    if (b == NULL)
        return;
    b->off += n < b->len - b->off ? n : b->len - b->off;
    if (b->off == b->len) {
        free(b);
        h->held.buf = NULL;
    }
}

void half_release(struct half *h, struct pipe_pool *pool)
{
    if (h->in_pipe)
        pipe_put(pool, h->held.pipe);
    else
        free(h->held.buf);
    h->held.buf = NULL;
    h->in_pipe = false;
    h->held_oob = false;
}

/* Counts n bytes written to the destination. */
static void wrote(struct half_io *io, size_t n)
{
    if (io->put != NULL)
        *io->put += n;
    io->progress = true;
}

/* The destination took no more: h waits for its writable event. */
static void wait_writable(struct half *h, struct half_io *io)
{
    h->writable = false;
    loop_rearm(&io->w->loop, io->dst->fd, endpoint_wait(io->dst, MIO_WRITABLE));
}

/* Writes p[0..n) to the destination (as urgent data when `oob`) until all
 * of it went or the destination is full; *done counts what went.  0,
 * -EAGAIN (h now waits for the destination), or -errno. */
static int write_some(struct half *h, struct half_io *io, const uint8_t *p, size_t n,
                      bool oob, size_t *done)
{
    *done = 0;
    while (*done < n) {
        ssize_t m = endpoint_write(io->dst, p + *done, n - *done, oob);
        if (m >= 0) {
            *done += (size_t)m;
            wrote(io, (size_t)m);
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        wait_writable(h, io);
        return -EAGAIN;
    }
    return 0;
}

/* Writes p[0..n) to the destination (as urgent data when `oob`), holding
 * what it cannot take now.  0 when everything went, 1 when some is held
 * (h waits for the destination), -errno. */
static int deliver(struct half *h, struct half_io *io, const uint8_t *p, size_t n,
                   bool oob)
{
    size_t done;
    int r = write_some(h, io, p, n, oob, &done);
    if (r != -EAGAIN)
        return r;
    if (half_hold(h, p + done, n - done, io->cap) < 0)
        return -ENOMEM;
    h->held_oob = oob;
    return 1;
}

/* Writes what the pipe holds, as deliver() says: 0 when all of it went
 * (the pipe went back to the pool), 1 when some is still held (h waits for
 * the destination), -errno. */
static int flush_pipe(struct half *h, struct half_io *io)
{
    struct pipe *p = h->held.pipe;
    ssize_t m = pipe_drain(p, io->dst->fd);
    if (m > 0)
        wrote(io, (size_t)m);
    else if (m != -EAGAIN)
        return (int)m;
    if (p->len > 0) {
        wait_writable(h, io);
        return 1;
    }
    pipe_put(&io->w->pipes, p);
    h->held.pipe = NULL;
    h->in_pipe = false;
    return 0;
}

/* Writes what h holds, as deliver() says: 0 when all of it went (freed), 1
 * when some is still held (h waits for the destination), -errno. */
static int flush(struct half *h, struct half_io *io)
{
    if (h->in_pipe)
        return flush_pipe(h, io);
    struct buf *b = h->held.buf;
    size_t done;
    int r = write_some(h, io, b->data + b->off, b->len - b->off, h->held_oob, &done);
    b->off += done;
    if (r < 0)
        return r == -EAGAIN ? 1 : r;
    free(b);
    h->held.buf = NULL;
    h->held_oob = false;
    return 0;
}

/* What one read did: the bytes read (0 at the end, -errno), and whether
 * what it read is all held now, or an error is the destination's. */
struct read_result {
    ssize_t n;
    bool held;
    bool dst_failed;
};

/* One read of up to cap bytes from the source into the worker's scratch
 * buffer, written on to the destination; with `oob`, the one byte at the
 * urgent mark, written on as urgent data. */
static struct read_result copy_once(struct half *h, struct half_io *io, bool oob)
{
    struct worker *w = io->w;
    ssize_t n = endpoint_read(io->src, w->scratch, oob ? 1 : io->cap);
    if (n <= 0)
        return (struct read_result){.n = n == 0 ? 0 : -errno};
    /* A full read: more is likely coming, through a pipe if allowed. */
    if (!oob)
        h->bulk = (size_t)n == io->cap && io->splice;
    if (io->got != NULL)
        *io->got += (size_t)n;
    io->progress = true;
    int r = deliver(h, io, w->scratch, (size_t)n, oob);
    if (r < 0)
        return (struct read_result){.n = r, .dst_failed = r != -ENOMEM};
    return (struct read_result){.n = n, .held = r == 1};
}

/* One read of up to cap bytes from the source into a pipe, written on to
 * the destination from the pipe; what it cannot take stays in the pipe.
 * Copies instead (and says so in *copied) when no pipe can be had or the
 * socket cannot splice. */
static struct read_result splice_once(struct half *h, struct half_io *io, bool *copied)
{
    struct pipe *p = pipe_get(&io->w->pipes);
    if (p == NULL) {
        h->bulk = false;
        *copied = true;
        return copy_once(h, io, false);
    }
    ssize_t n = pipe_fill(p, io->src->fd, io->cap);
    if (n <= 0) {
        pipe_put(&io->w->pipes, p);
        if (n == -EINVAL) { /* not a socket splice(2) knows */
            h->bulk = false;
            *copied = true;
            return copy_once(h, io, false);
        }
        return (struct read_result){.n = n};
    }
    h->bulk = n >= SPLICE_MIN || (size_t)n == io->cap;
    if (io->got != NULL)
        *io->got += (size_t)n;
    io->progress = true;
    h->held.pipe = p;
    h->in_pipe = true;
    int r = flush_pipe(h, io);
    if (r < 0)
        return (struct read_result){.n = r, .dst_failed = true};
    return (struct read_result){.n = n, .held = r == 1};
}

/* Reads the source and writes the destination until one of them stops
 * it; see half.h for the stops.  Bytes held from before are written first,
 * once the destination may take them. */
enum half_stop half_move(struct half *h, struct half_io *io)
{
    io->err = 0;
    io->progress = false;
    if (half_holds(h)) {
        if (!h->writable)
            return HALF_WAIT_DST;
        int r = flush(h, io);
        if (r < 0) {
            io->err = -r;
            return HALF_DST_FAILED;
        }
        if (r == 1)
            return HALF_WAIT_DST;
    }
    /* Once spliced, read by splice until the next event: a splice that came
     * back short may have stopped at an urgent mark whose byte came only
     * after the event, and a recv there would read it in line. */
    bool splicing = false;
    while (!h->eof) {
        if (!h->readable)
            return HALF_WAIT_SRC;
        bool spliced = (h->bulk || splicing) && !h->urgent && io->splice &&
                       endpoint_splices(io->src) && endpoint_splices(io->dst);
        bool oob = h->urgent && endpoint_at_urgent_mark(io->src);
        bool copied = false;
        struct read_result r = spliced ? splice_once(h, io, &copied)
                                       : copy_once(h, io, oob);
        spliced = spliced && !copied;
        splicing = spliced;
        if (r.n > 0) {
            if (r.held)
                return HALF_WAIT_DST; /* backpressure: the source waits */
            /* A short recv emptied the receive queue: new bytes bring a
             * new edge, so the recv that would say EAGAIN is saved.  Not
             * after a FIN or an error was reported (that edge is spent),
             * nor in urgent mode (a recv stops short at the mark), nor
             * where no event tells of urgent data, nor after a splice,
             * which also stops short when the pipe runs out of slots. */
            if (!spliced && (size_t)r.n < io->cap && !h->closing && !h->urgent &&
                io->short_reads) {
                h->readable = false;
                loop_rearm(&io->w->loop, io->src->fd, io->read_interest);
                return HALF_WAIT_SRC;
            }
            continue;
        }
        if (r.n == 0 && spliced) {
            /* splice(2) also says 0 at an urgent mark once the FIN has
             * come: a recv tells which. */
            h->urgent = true;
            continue;
        }
        if (r.n == 0) {
            h->eof = true;
            h->readable = false;
            break;
        }
        if (r.n == -EINTR)
            continue;
        if (r.n == -EAGAIN) {
            h->readable = false;
            h->urgent = false; /* past the mark: the next one is an event */
            loop_rearm(&io->w->loop, io->src->fd,
                       endpoint_wait(io->src, io->read_interest));
            return HALF_WAIT_SRC;
        }
        io->err = (int)-r.n;
        return r.dst_failed ? HALF_DST_FAILED : HALF_SRC_FAILED;
    }
    if (!h->done && io->pass_fin) {
        int err = endpoint_shutdown(io->dst);
        if (err == -EAGAIN) { /* close_notify waits for room */
            wait_writable(h, io);
            return HALF_WAIT_DST;
        }
        if (err < 0) {
            io->err = -err;
            return HALF_DST_FAILED;
        }
    }
    h->done = true;
    return HALF_DONE;
}
