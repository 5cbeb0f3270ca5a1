/*
 * The buffer a poll fills and the readiness of one event: written by the
 * backend that copies the kernel's events out, read by the accessors in
 * events.c.  Private to the library (mio.h names the types opaquely).
 */
#ifndef MIO_EVENTS_H
#define MIO_EVENTS_H

#include "mio.h"

/* Readiness bits of a normalized event, computed by the backend when it
 * copies the kernel's events out. */
enum {
    MIO__EV_READABLE = 1u << 0,
    MIO__EV_WRITABLE = 1u << 1,
    MIO__EV_ERROR = 1u << 2,
    MIO__EV_READ_CLOSED = 1u << 3,
    MIO__EV_WRITE_CLOSED = 1u << 4,
    MIO__EV_PRIORITY = 1u << 5,
    MIO__EV_AIO = 1u << 6,
    MIO__EV_LIO = 1u << 7,
};

struct mio_event {
    mio_token_t token;
    uint32_t flags;
};

struct mio_events {
    struct mio_event *ev;
    size_t len;
    size_t cap;
    void *native; /* cap * mio__backend_native_size_max() bytes for the kernel */
};

/*
 * mio's write-closed rule for a poll-style mask (epoll's and poll(2)'s, each
 * passing its own spelling of the out, error and hang-up bits): writing is
 * closed on a hang-up, on an error beside writability (a refused connect),
 * or on an error alone.  MIO__EV_WRITE_CLOSED or 0.
 */
static inline uint32_t mio__event_write_closed(uint32_t mask, uint32_t out, uint32_t err,
                                               uint32_t hup)
{
    if ((mask & hup) || ((mask & out) && (mask & err)) || mask == err)
        return MIO__EV_WRITE_CLOSED;
    return 0;
}

/* The bits of an epoll-style readiness mask, as a backend's kernel spells
 * them (epoll's EPOLLIN..., io_uring's poll(2) POLLIN...). */
struct mio__mask_bits {
    uint32_t in, pri, out, err, hup, rdhup;
};

/*
 * mio's reading of an epoll-style mask, as MIO__EV_* bits: readable on data
 * or priority data, read-closed on a hang-up or on a peer's FIN beside
 * readability (mio's epoll rule), write-closed by mio__event_write_closed().
 * Inline, so that a backend's constant bits fold away on the event path.
 */
static inline uint32_t mio__event_flags(uint32_t m, const struct mio__mask_bits *b)
{
    uint32_t f = 0;
    if (m & (b->in | b->pri))
        f |= MIO__EV_READABLE;
    if (m & b->out)
        f |= MIO__EV_WRITABLE;
    if (m & b->err)
        f |= MIO__EV_ERROR;
    if ((m & b->hup) || ((m & b->in) && (m & b->rdhup)))
        f |= MIO__EV_READ_CLOSED;
    f |= mio__event_write_closed(m, b->out, b->err, b->hup);
    if (m & b->pri)
        f |= MIO__EV_PRIORITY;
    return f;
}

#endif /* MIO_EVENTS_H */
