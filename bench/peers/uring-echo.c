/*
 * uring-echo: a plain TCP echo server on io_uring (liburing), to find out
 * what io_uring's data path can save per message at best (issue 16).  One
 * thread, one ring, no library but liburing.
 *
 *   uring-echo MODE PORT      listen on 127.0.0.1:PORT
 *
 * MODE is a rung of the ladder, each moving more of the work into the ring:
 *
 *   poll  multishot POLL_ADD per socket (readiness), then recv and send as
 *         system calls, as floor-echo does after epoll_wait (and as libmio's
 *         io_uring backend does): the baseline.
 *   send  readiness and recv as in poll, but the echo goes out as
 *         IORING_OP_SEND queued in the ring and submitted together with the
 *         next wait (io_uring_submit_and_wait): one system call fewer per
 *         message.  The bytes are read into a buffer of the connection's,
 *         taken from a pool, which stays busy until the send completes.
 *   recv  multishot IORING_OP_RECV into buffers the kernel picks from a
 *         provided buffer ring, and ring sends: no system call per message
 *         but the io_uring_enter that waits and submits.  A buffer goes back
 *         to the ring when its send completes.
 *
 * Every mode accepts with a multishot accept.  Bytes are echoed in order,
 * each connection having at most one send in the ring at a time (two sends
 * on one socket could complete out of order, the first one short); after
 * the client's FIN what is read is sent, then the connection is closed.
 * Memory is bounded: one 64 KiB buffer per connection sending (send, and
 * poll for what the socket refuses), or the buffer ring's (recv, with at
 * most HOLD buffers queued by one connection).
 *
 * The ring is set up with IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN when
 * the kernel takes them, else COOP_TASKRUN, else nothing;
 * URING_ECHO_SETUP=defer|coop|none picks one (and fails if refused).
 * URING_ECHO_WAIT=sends (send, recv) makes a wait that submits sends also
 * wait for their completions and one event more, rather than return on
 * the completions of sends that went at once (one io_uring_enter fewer per
 * message at one connection), when nothing but freeing their buffers
 * follows; the ring's sends then carry MSG_WAITALL.
 * URING_ECHO_BUFS and URING_ECHO_BUFSIZE size the buffer ring of recv
 * (a power of two of buffers, 1024 by default; 32768 bytes each).  On
 * SIGTERM it prints what it counted on standard error and exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536 /* the buffers of poll and send */
#ifndef HOLD
#define HOLD 8 /* recv: buffers one connection may have queued */
#endif
#define BGID 0 /* recv: the buffer group */
#define SQ_ENTRIES 4096
#define CQ_ENTRIES 16384

enum mode { MODE_POLL, MODE_SEND, MODE_RECV };

/* What a completion is for, in the low bits of its user_data (the rest is
 * the connection's address, aligned to 8). */
enum op { OP_ACCEPT = 1, OP_POLL, OP_POLLOUT, OP_RECV, OP_SEND, OP_CANCEL };
#define OP_MASK 7u

struct pool_buf {
    struct pool_buf *next;
};

struct conn {
    int fd;
    unsigned refs;           /* requests in the ring that name this connection */
    unsigned closing : 1;    /* closed: freed when refs drops to 0 */
    unsigned eof : 1;        /* the client's FIN was read */
    unsigned fin : 1;        /* readiness said FIN (or an error): read on to the end */
    unsigned more : 1;       /* read again once the send in flight is done */
    unsigned armed : 1;      /* the multishot poll or recv is in the ring */
    unsigned cancelling : 1; /* its cancellation was queued */
    unsigned sending : 1;    /* a send is in the ring */
    unsigned starved : 1;    /* recv: on the starved list (ENOBUFS) */
    char *buf;               /* poll, send: the bytes being sent */
    size_t off, len;
    /* recv: the buffers read and not yet sent back, a list through
     * next_bid[], oldest first; q_head is the one being sent. */
    int q_head, q_tail;
    unsigned queued;
    struct conn *next_starved;
};

static enum mode mode;
static struct io_uring ring;
static char scratch[BUF];
static int lfd;
static volatile sig_atomic_t stop;

/* The pool of 64 KiB buffers (poll, send): those free, kept for reuse. */
static struct pool_buf *pool;

/* recv: the provided buffer ring and its buffers. */
static struct io_uring_buf_ring *br;
static unsigned nbufs = 1024, bufsize = 32768;
static char *bufs;
static int *next_bid;
static unsigned *bid_len;
static struct conn *starved; /* connections whose recv ran out of buffers */

/* What is counted, printed on SIGTERM. */
static struct {
    unsigned long long enters, cqes, reads, sends, short_sends, eagain, rearm_poll,
        rearm_recv, enobufs, backpressure, accepts, closes, frees, sqe_full;
} st;

static const char *setup_name = "none";

/* URING_ECHO_WAIT=sends (send, recv): the sends queued since the last wait
 * are waited for together with one event more, rather than the wait
 * returning on their completions alone, when nothing but freeing their
 * buffer follows them (see quiet()).  The connections are kept here. */
#define ROUND_MAX 256
static int wait_sends;
static struct conn *round_sends[ROUND_MAX];
static unsigned nround;

/* A submission queue entry, submitting what is queued when it is full. */
static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    while (sqe == NULL) {
        st.sqe_full++;
        io_uring_submit(&ring);
        nround = ROUND_MAX + 1; /* sends submitted may complete now: wait for 1 */
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static uint64_t tag(struct conn *c, enum op op)
{
    return (uint64_t)(uintptr_t)c | op;
}

/* A 64 KiB buffer from the pool. */
static char *pool_get(void)
{
    struct pool_buf *b = pool;
    if (b == NULL)
        return malloc(BUF);
    pool = b->next;
    return (char *)b;
}

/* Back to the pool. */
static void pool_put(char *p)
{
    struct pool_buf *b = (struct pool_buf *)(void *)p;
    b->next = pool;
    pool = b;
}

/* recv: buffer bid back into the buffer ring. */
static unsigned long long returned; /* buffers given back */
static void buf_return(int bid)
{
    returned++;
    io_uring_buf_ring_add(br, bufs + (size_t)bid * bufsize, bufsize, (unsigned short)bid,
                          io_uring_buf_ring_mask(nbufs), 0);
    io_uring_buf_ring_advance(br, 1);
}

/* Drops a reference; frees a closed connection with none left (with the
 * buffer of its last send, in send mode). */
static void conn_put(struct conn *c)
{
    if (--c->refs == 0 && c->closing) {
        if (c->buf != NULL)
            pool_put(c->buf);
        free(c);
        st.frees++;
    }
}

/* Queues the cancellation of c's request op. */
static void cancel(struct conn *c, enum op op)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_cancel64(sqe, tag(c, op), 0);
    io_uring_sqe_set_data64(sqe, OP_CANCEL);
}

/* Closes the socket and cancels the requests that hold it: a request in
 * the ring keeps its own reference to the file, so the socket (and the FIN
 * the client waits for) would outlive close() until the request ends.  The
 * buffers queued and not in flight go back; the connection is freed when
 * its last request has completed. */
static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    st.closes++;
    if (c->armed && !c->cancelling)
        cancel(c, mode == MODE_RECV ? OP_RECV : OP_POLL);
    c->cancelling = 1;
    if (c->sending)
        cancel(c, OP_SEND);
    if (mode == MODE_POLL && c->buf != NULL) /* its POLLOUT is armed */
        cancel(c, OP_POLLOUT);
    close(c->fd);
    if (mode == MODE_RECV && c->q_head >= 0) {
        int bid = c->q_head;
        if (c->sending) { /* the one in flight goes back with its send */
            bid = next_bid[bid];
            next_bid[c->q_head] = -1;
            c->q_tail = c->q_head;
        } else {
            c->q_head = c->q_tail = -1;
        }
        for (; bid >= 0; bid = next_bid[bid])
            buf_return(bid);
    }
    if (mode == MODE_POLL) {
        free(c->buf);
        c->buf = NULL;
    } else if (!c->sending && c->buf != NULL) {
        pool_put(c->buf);
        c->buf = NULL;
    }
    conn_put(c); /* the reference of being open */
}

/* Arms the multishot readiness (poll, send) or receive (recv). */
static void arm(struct conn *c)
{
    struct io_uring_sqe *sqe = get_sqe();
    if (mode == MODE_RECV) {
        io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BGID;
        io_uring_sqe_set_data64(sqe, tag(c, OP_RECV));
    } else {
        io_uring_prep_poll_multishot(sqe, c->fd, POLLIN | POLLRDHUP);
        io_uring_sqe_set_data64(sqe, tag(c, OP_POLL));
    }
    c->armed = 1;
    c->cancelling = 0;
    c->refs++;
}

/* Queues a send of c->buf[off..len) (poll mode never queues one). */
static void queue_send(struct conn *c, const char *p, size_t n)
{
    struct io_uring_sqe *sqe = get_sqe();
    /* With wait_sends, MSG_WAITALL: the ring sends the rest of a short
     * send by itself, so a completion needs no re-queueing. */
    io_uring_prep_send(sqe, c->fd, p, n, MSG_NOSIGNAL | (wait_sends ? MSG_WAITALL : 0));
    if (nround < ROUND_MAX)
        round_sends[nround] = c;
    nround++;
    io_uring_sqe_set_data64(sqe, tag(c, OP_SEND));
    c->sending = 1;
    c->refs++;
    st.sends++;
}

/* ---- poll: readiness, then recv and send as system calls ---------------- */

/* Writes what is kept; 1 when it all went, 0 when some is left, -1. */
static int poll_flush(struct conn *c)
{
    while (c->off < c->len) {
        ssize_t m = send(c->fd, c->buf + c->off, c->len - c->off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (m > 0) {
            c->off += (size_t)m;
            continue;
        }
        if (m < 0 && errno == EINTR)
            continue;
        return m < 0 && errno == EAGAIN ? 0 : -1;
    }
    free(c->buf);
    c->buf = NULL;
    return 1;
}

/* Waits for the socket to take what it refused (a one-shot POLLOUT). */
static void poll_wait_out(struct conn *c)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
    io_uring_sqe_set_data64(sqe, tag(c, OP_POLLOUT));
    c->refs++;
}

/* Sends p[0..n) at once; keeps what the socket does not take. */
static int poll_send_all(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t m = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (m > 0) {
            p += m;
            n -= (size_t)m;
            continue;
        }
        if (m < 0 && errno == EINTR)
            continue;
        if (m < 0 && errno == EAGAIN) {
            st.eagain++;
            c->buf = malloc(n);
            if (c->buf == NULL)
                return -1;
            memcpy(c->buf, p, n);
            c->off = 0;
            c->len = n;
            poll_wait_out(c);
            return 0;
        }
        return -1;
    }
    return 0;
}

/* floor-echo's pump: reads into the shared buffer and echoes until drained,
 * blocked or ended, stopping at a short read unless FIN was seen. */
static int poll_pump(struct conn *c, int to_eof)
{
    while (c->buf == NULL && !c->eof) {
        ssize_t n = recv(c->fd, scratch, BUF, MSG_DONTWAIT);
        if (n > 0) {
            st.reads++;
            if (poll_send_all(c, scratch, (size_t)n) < 0)
                return -1;
            if (n < BUF && !to_eof && !c->fin)
                return 0;
            continue;
        }
        if (n == 0) {
            c->eof = 1;
            break;
        }
        if (errno == EINTR)
            continue;
        return errno == EAGAIN ? 0 : -1;
    }
    return c->eof && c->buf == NULL ? -1 : 0;
}

/* ---- send: readiness and recv, the echo sent through the ring ------------ */

/* Reads once into the connection's buffer and queues its echo; -1: close. */
static int send_pump(struct conn *c)
{
    for (;;) {
        if (c->buf == NULL)
            c->buf = pool_get();
        if (c->buf == NULL)
            return -1;
        ssize_t n = recv(c->fd, c->buf, BUF, MSG_DONTWAIT);
        if (n > 0) {
            st.reads++;
            c->off = 0;
            c->len = (size_t)n;
            queue_send(c, c->buf, (size_t)n);
            /* A full buffer may have left bytes behind, and after a FIN
             * no new readiness comes: read again once this has gone. */
            c->more = n == BUF || c->fin;
            return 0;
        }
        pool_put(c->buf);
        c->buf = NULL;
        if (n == 0) {
            c->eof = 1;
            return -1;
        }
        if (errno == EINTR)
            continue;
        return errno == EAGAIN ? 0 : -1;
    }
}

/* ---- recv: multishot receive into provided buffers ---------------------- */

/* Sends the oldest buffer queued, if none is in flight. */
static void recv_send_next(struct conn *c)
{
    if (c->sending || c->q_head < 0)
        return;
    c->off = 0;
    c->len = bid_len[c->q_head];
    queue_send(c, bufs + (size_t)c->q_head * bufsize, c->len);
}

/* Re-arms the receive that ended, unless the connection is done reading
 * or holds HOLD buffers (it is re-armed when its queue drains). */
static void recv_rearm(struct conn *c)
{
    if (c->closing || c->eof || c->armed || c->starved || c->queued >= HOLD)
        return;
    st.rearm_recv++;
    arm(c);
}

/* ---- completions --------------------------------------------------------- */

/* A new connection (multishot accept). */
static void on_accept(struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE)) { /* ended (an error): accept again */
        struct io_uring_sqe *sqe = get_sqe();
        io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, OP_ACCEPT);
    }
    if (cqe->res < 0) {
        if (cqe->res != -EAGAIN && cqe->res != -ECONNABORTED && cqe->res != -EINTR)
            fprintf(stderr, "uring-echo: accept: %s\n", strerror(-cqe->res));
        return;
    }
    int fd = cqe->res, one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    st.accepts++;
    c->fd = fd;
    c->refs = 1; /* the reference of being open */
    c->q_head = c->q_tail = -1;
    arm(c);
}

/* Readiness (poll, send). */
static void on_poll(struct conn *c, struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        c->armed = c->cancelling = 0;
        if (!c->closing && cqe->res != -ECANCELED) {
            st.rearm_poll++;
            arm(c);
        }
    }
    if (c->closing || cqe->res <= 0)
        return;
    if (cqe->res & POLLERR) {
        conn_close(c);
        return;
    }
    if (cqe->res & (POLLRDHUP | POLLHUP))
        c->fin = 1;
    if (mode == MODE_POLL) {
        if (c->buf == NULL && poll_pump(c, 0) < 0)
            conn_close(c);
        return;
    }
    if (c->sending) { /* reading waits for the send (backpressure) */
        c->more = 1;
        return;
    }
    if (send_pump(c) < 0)
        conn_close(c);
}

/* The socket takes bytes again (poll). */
static void on_pollout(struct conn *c, struct io_uring_cqe *cqe)
{
    if (c->closing)
        return;
    if (cqe->res < 0 || (cqe->res & POLLERR)) {
        conn_close(c);
        return;
    }
    int r = poll_flush(c);
    if (r == 0)
        poll_wait_out(c);
    else if (r < 0 || poll_pump(c, 1) < 0) /* drained: read what waited */
        conn_close(c);
}

/* Bytes received into a provided buffer (recv). */
static void on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->armed = c->cancelling = 0;
    if (cqe->res > 0) {
        int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        st.reads++;
        if (c->closing) {
            buf_return(bid);
        } else {
            bid_len[bid] = (unsigned)cqe->res;
            next_bid[bid] = -1;
            if (c->q_tail >= 0)
                next_bid[c->q_tail] = bid;
            else
                c->q_head = bid;
            c->q_tail = bid;
            c->queued++;
            recv_send_next(c);
            if (c->queued >= HOLD && c->armed && !c->cancelling) {
                /* Backpressure: a client that does not read must not take
                 * the whole ring.  Re-armed when the queue drains. */
                cancel(c, OP_RECV);
                c->cancelling = 1;
                st.backpressure++;
            }
        }
    } else if (cqe->res == 0) {
        c->eof = 1;
    } else if (cqe->res == -ENOBUFS) {
        /* The ring ran dry: this connection waits for a buffer to come back. */
        st.enobufs++;
        if (!c->closing && !c->starved) {
            c->starved = 1;
            c->next_starved = starved;
            starved = c;
            c->refs++;
        }
    } else if (cqe->res != -ECANCELED && !c->closing) {
        conn_close(c);
    }
    if (!c->closing && !c->armed) {
        if (c->eof && !c->sending)
            conn_close(c);
        else
            recv_rearm(c);
    }
}

/* A send completed: the rest of a short one, or the next read. */
static void on_send(struct conn *c, struct io_uring_cqe *cqe)
{
    c->sending = 0;
    if (cqe->res <= 0) {
        if (mode == MODE_RECV && c->q_head >= 0) {
            int bid = c->q_head; /* the one that was in flight */
            c->q_head = next_bid[bid];
            buf_return(bid);
        }
        conn_close(c);
        return;
    }
    c->off += (size_t)cqe->res;
    if (c->off < c->len) { /* short: the rest, before anything else */
        st.short_sends++;
        c->sending = 1;
        c->refs++;
        char *base = mode == MODE_RECV ? bufs + (size_t)c->q_head * bufsize : c->buf;
        struct io_uring_sqe *sqe = get_sqe();
        io_uring_prep_send(sqe, c->fd, base + c->off, c->len - c->off, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, tag(c, OP_SEND));
        nround = ROUND_MAX + 1; /* not quiet */
        return;
    }
    if (mode == MODE_RECV) {
        int bid = c->q_head;
        c->q_head = next_bid[bid];
        if (c->q_head < 0)
            c->q_tail = -1;
        c->queued--;
        buf_return(bid);
        if (c->closing)
            return;
        recv_send_next(c);
        if (!c->sending && c->eof)
            conn_close(c);
        else if (c->queued < HOLD / 2)
            recv_rearm(c);
        return;
    }
    pool_put(c->buf); /* send mode */
    c->buf = NULL;
    if (c->closing)
        return;
    if (c->more) {
        c->more = 0;
        if (send_pump(c) < 0)
            conn_close(c);
    }
}

/* recv: re-arms the connections that waited for buffers, once some came
 * back (re-armed on an empty ring, a receive would end at once again). */
static void feed_starved(void)
{
    static unsigned long long seen;
    if (returned == seen)
        return;
    seen = returned;
    while (starved != NULL) {
        struct conn *c = starved;
        starved = c->next_starved;
        c->starved = 0;
        recv_rearm(c);
        conn_put(c);
    }
}

/* Whether all that follows c's send completing is freeing its buffer: no
 * more to read or send, no FIN to answer, its receive armed.  Waiting for
 * one event more than such sends is what the loop would do anyway. */
static int quiet(const struct conn *c)
{
    if (c->closing || c->eof || c->fin)
        return 0;
    if (mode == MODE_SEND)
        return !c->more;
    return c->armed && !c->cancelling && c->q_head == c->q_tail && starved == NULL;
}

/* How many completions to wait for: 1, or with wait_sends the sends queued
 * since the last wait and one more when all of them are quiet. */
static unsigned wait_nr(void)
{
    unsigned n = nround;
    nround = 0;
    if (!wait_sends || n == 0 || n > ROUND_MAX)
        return 1;
    for (unsigned i = 0; i < n; i++)
        if (!quiet(round_sends[i]))
            return 1;
    return n + 1;
}

/* ---- setup ------------------------------------------------------------------ */

/* The ring, with the best setup flags the kernel takes (or those asked). */
static int ring_init(void)
{
    static const struct {
        const char *name;
        unsigned flags;
    } setups[] = {
        {"defer", IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN},
        {"coop", IORING_SETUP_COOP_TASKRUN},
        {"none", 0},
    };
    const char *want = getenv("URING_ECHO_SETUP");
    int err = -EINVAL;
    for (size_t i = 0; i < sizeof(setups) / sizeof(setups[0]); i++) {
        if (want != NULL && *want != '\0' && strcmp(want, setups[i].name) != 0)
            continue;
        struct io_uring_params p = {.flags = setups[i].flags | IORING_SETUP_CQSIZE |
                                             IORING_SETUP_SUBMIT_ALL,
                                    .cq_entries = CQ_ENTRIES};
        err = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
        if (err == 0) {
            setup_name = setups[i].name;
            return 0;
        }
        fprintf(stderr, "uring-echo: setup %s refused: %s\n", setups[i].name,
                strerror(-err));
    }
    return err;
}

/* recv: the buffers and the ring that provides them. */
static int bufring_init(void)
{
    const char *e = getenv("URING_ECHO_BUFS");
    if (e != NULL && *e != '\0')
        nbufs = (unsigned)atoi(e);
    e = getenv("URING_ECHO_BUFSIZE");
    if (e != NULL && *e != '\0')
        bufsize = (unsigned)atoi(e);
    if (nbufs == 0 || nbufs > 32768 || (nbufs & (nbufs - 1)) != 0 || bufsize == 0) {
        fprintf(stderr,
                "uring-echo: URING_ECHO_BUFS must be a power of two up to 32768\n");
        return -EINVAL;
    }
    /* The ring must be page aligned (the kernel maps it by pages). */
    size_t ring_size = (nbufs * sizeof(struct io_uring_buf) + 4095) & ~(size_t)4095;
    br = aligned_alloc(4096, ring_size);
    bufs = malloc((size_t)nbufs * bufsize);
    next_bid = calloc(nbufs, sizeof(*next_bid));
    bid_len = calloc(nbufs, sizeof(*bid_len));
    if (br == NULL || bufs == NULL || next_bid == NULL || bid_len == NULL)
        return -ENOMEM;
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br,
                                   .ring_entries = nbufs,
                                   .bgid = BGID};
    int err = io_uring_register_buf_ring(&ring, &reg, 0);
    if (err < 0)
        return err;
    for (unsigned i = 0; i < nbufs; i++)
        buf_return((int)i);
    return 0;
}

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

/* What was counted, per read (a read is a message in pingpong). */
static void print_stats(void)
{
    double r = st.reads ? (double)st.reads : 1;
    fprintf(
        stderr,
        "uring-echo: %s, setup %s: %llu reads, %.3f io_uring_enter per read, "
        "%.2f completions per enter; %llu sends (%llu short), %llu EAGAIN, "
        "%llu accepts, %llu closes, %llu freed; re-armed: %llu poll, %llu recv; %llu ENOBUFS, "
        "%llu backpressure cancels, %llu SQ full\n",
        mode == MODE_POLL   ? "poll"
        : mode == MODE_SEND ? "send"
                            : "recv",
        setup_name, st.reads, (double)st.enters / r,
        st.enters ? (double)st.cqes / (double)st.enters : 0.0, st.sends, st.short_sends,
        st.eagain, st.accepts, st.closes, st.frees, st.rearm_poll, st.rearm_recv,
        st.enobufs, st.backpressure, st.sqe_full);
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "poll") != 0 && strcmp(argv[1], "send") != 0 &&
                      strcmp(argv[1], "recv") != 0)) {
        fprintf(stderr, "usage: uring-echo poll|send|recv PORT\n");
        return 2;
    }
    mode = argv[1][0] == 'p' ? MODE_POLL : argv[1][0] == 's' ? MODE_SEND : MODE_RECV;
    const char *w = getenv("URING_ECHO_WAIT");
    wait_sends = w != NULL && strcmp(w, "sends") == 0;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_term}; /* no SA_RESTART: the wait ends */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(argv[2])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, SOMAXCONN) < 0) {
        perror("uring-echo: listen");
        return 1;
    }
    int err = ring_init();
    if (err < 0) {
        fprintf(stderr, "uring-echo: io_uring_queue_init: %s\n", strerror(-err));
        return 1;
    }
    if (mode == MODE_RECV && (err = bufring_init()) < 0) {
        fprintf(stderr, "uring-echo: buffer ring: %s\n", strerror(-err));
        return 1;
    }
    fprintf(stderr, "uring-echo: %s, setup %s%s%s\n", argv[1], setup_name,
            mode == MODE_RECV ? ", buffer ring registered" : "",
            wait_sends ? ", waiting for the sends and one event more" : "");
    /* The accepted sockets are blocking: a ring request on them waits in
     * the ring (its internal poll) rather than failing with EAGAIN; the
     * recv and send system calls of poll and send pass MSG_DONTWAIT. */
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, OP_ACCEPT);

    while (!stop) {
        st.enters++;
        err = io_uring_submit_and_wait(&ring, wait_nr());
        if (err < 0 && err != -EINTR && err != -EAGAIN && err != -EBUSY) {
            fprintf(stderr, "uring-echo: io_uring_submit_and_wait: %s\n", strerror(-err));
            return 1;
        }
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            n++;
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)OP_MASK);
            switch (ud & OP_MASK) {
            case OP_ACCEPT:
                on_accept(cqe);
                continue;
            case OP_CANCEL:
                continue;
            case OP_POLL:
                on_poll(c, cqe);
                break;
            case OP_POLLOUT:
                on_pollout(c, cqe);
                break;
            case OP_RECV:
                on_recv(c, cqe);
                break;
            case OP_SEND:
                on_send(c, cqe);
                break;
            }
            /* A multishot request holds its reference until its last
             * completion; a one-shot one until its only one. */
            if (!(cqe->flags & IORING_CQE_F_MORE))
                conn_put(c);
        }
        io_uring_cq_advance(&ring, n);
        st.cqes += n;
        if (starved != NULL)
            feed_starved();
    }
    print_stats();
    return 0;
}
