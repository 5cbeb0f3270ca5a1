/*
 * A binary min-heap of deadlines, one per loop: O(log n) to add, move or
 * remove a timer, O(1) to find the next one, so the cost of each poll does
 * not grow with the number of connections.  Idle timeouts do not move their
 * timer on every byte: the owner keeps its last activity and, when the
 * timer fires early, sets it again for the time that is left.
 */
#ifndef ECHOD_TIMER_H
#define ECHOD_TIMER_H

#include <stddef.h>
#include <stdint.h>

struct timer {
    int64_t deadline_ms;
    size_t slot;                   /* index in the heap + 1; 0 when not scheduled */
    void (*fire)(struct timer *t); /* what the loop runs when it is due */
};

struct timer_heap {
    struct timer **v;
    size_t n, cap;
};

/* Schedules t at `deadline_ms`, or moves it there if scheduled; -ENOMEM. */
int timer_set(struct timer_heap *h, struct timer *t, int64_t deadline_ms);

/* Unschedules t (a no-op when it is not scheduled). */
void timer_cancel(struct timer_heap *h, struct timer *t);

/* The earliest timer, or NULL. */
struct timer *timer_peek(const struct timer_heap *h);

void timer_heap_free(struct timer_heap *h);

#endif
