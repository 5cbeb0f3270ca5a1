/* The per-worker timer heap. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdlib.h>

#include "timer.h"

/* Puts t at index i and records it there. */
static void place(struct timer_heap *h, size_t i, struct timer *t)
{
    h->v[i] = t;
    t->slot = i + 1;
}

/* Moves the timer at i up while it is earlier than its parent. */
static void sift_up(struct timer_heap *h, size_t i)
{
    struct timer *t = h->v[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->v[parent]->deadline_ms <= t->deadline_ms)
            break;
        place(h, i, h->v[parent]);
        i = parent;
    }
    place(h, i, t);
}

/* Moves the timer at i down while a child is earlier. */
static void sift_down(struct timer_heap *h, size_t i)
{
    struct timer *t = h->v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->v[c + 1]->deadline_ms < h->v[c]->deadline_ms)
            c++;
        if (t->deadline_ms <= h->v[c]->deadline_ms)
            break;
        place(h, i, h->v[c]);
        i = c;
    }
    place(h, i, t);
}

int timer_set(struct timer_heap *h, struct timer *t, int64_t deadline_ms)
{
    if (t->slot != 0) {
        int64_t old = t->deadline_ms;
        t->deadline_ms = deadline_ms;
        if (deadline_ms < old)
            sift_up(h, t->slot - 1);
        else
            sift_down(h, t->slot - 1);
        return 0;
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
        struct timer **v = realloc(h->v, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    t->deadline_ms = deadline_ms;
    place(h, h->n++, t);
    sift_up(h, h->n - 1);
    return 0;
}

void timer_cancel(struct timer_heap *h, struct timer *t)
{
    if (t->slot == 0)
        return;
    size_t i = t->slot - 1;
    t->slot = 0;
    struct timer *last = h->v[--h->n];
    if (i == h->n)
        return;
    place(h, i, last);
    if (i > 0 && last->deadline_ms < h->v[(i - 1) / 2]->deadline_ms)
        sift_up(h, i);
    else
        sift_down(h, i);
}

struct timer *timer_peek(const struct timer_heap *h)
{
    return h->n ? h->v[0] : NULL;
}

void timer_heap_free(struct timer_heap *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
