/*
 * Events and Event: the buffer a poll fills, and the readiness of one
 * event.  Backends translate the kernel's events into struct mio_event when
 * they copy them out, so the accessors are plain bit tests.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <assert.h>
#include <stdlib.h>

#include "backend.h" /* mio__backend_native_size_max */
#include "events.h"

/* The buffer does not know which poll will fill it, so its scratch array
 * for the kernel's events is sized for the backend with the largest. */
mio_events_t *mio_events_new(size_t capacity)
{
    mio_events_t *events = calloc(1, sizeof(*events));
    if (events == NULL)
        return NULL;
    events->cap = capacity;
    size_t native_size = mio__backend_native_size_max();
    if (capacity > 0) {
        events->ev = calloc(capacity, sizeof(*events->ev));
        if (native_size > 0)
            events->native = calloc(capacity, native_size);
        if (events->ev == NULL || (native_size > 0 && events->native == NULL)) {
            mio_events_free(events);
            return NULL;
        }
    }
    return events;
}

void mio_events_free(mio_events_t *events)
{
    if (events == NULL)
        return;
    free(events->ev);
    free(events->native);
    free(events);
}

size_t mio_events_capacity(const mio_events_t *events)
{
    assert(events != NULL);
    return events->cap;
}

size_t mio_events_len(const mio_events_t *events)
{
    assert(events != NULL);
    return events->len;
}

bool mio_events_is_empty(const mio_events_t *events)
{
    assert(events != NULL);
    return events->len == 0;
}

void mio_events_clear(mio_events_t *events)
{
    assert(events != NULL);
    events->len = 0;
}

const mio_event_t *mio_events_get(const mio_events_t *events, size_t i)
{
    assert(events != NULL && i < events->len);
    return &events->ev[i];
}

mio_token_t mio_event_token(const mio_event_t *ev)
{
    return ev->token;
}

bool mio_event_is_readable(const mio_event_t *ev)
{
    return (ev->flags & MIO__EV_READABLE) != 0;
}

bool mio_event_is_writable(const mio_event_t *ev)
{
    return (ev->flags & MIO__EV_WRITABLE) != 0;
}

bool mio_event_is_error(const mio_event_t *ev)
{
    return (ev->flags & MIO__EV_ERROR) != 0;
}

bool mio_event_is_read_closed(const mio_event_t *ev)
{
    return (ev->flags & MIO__EV_READ_CLOSED) != 0;
}

bool mio_event_is_write_closed(const mio_event_t *ev)
{
    return (ev->flags & MIO__EV_WRITE_CLOSED) != 0;
}

bool mio_event_is_priority(const mio_event_t *ev)
{
    return (ev->flags & MIO__EV_PRIORITY) != 0;
}

bool mio_event_is_aio(const mio_event_t *ev)
{
    return (ev->flags & MIO__EV_AIO) != 0;
}

bool mio_event_is_lio(const mio_event_t *ev)
{
    return (ev->flags & MIO__EV_LIO) != 0;
}
