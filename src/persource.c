/* Per-source connection counts for max_per_source. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <stdlib.h>
#include <string.h>

#include "persource.h"

struct persource_entry {
    struct persource_entry *next;
    unsigned count;
    uint8_t len;
    uint8_t key[16];
};

uint32_t persource_hash(const uint8_t *key, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ key[i]) * 16777619u;
    return h;
}

int persource_init(struct persource *ps)
{
    memset(ps, 0, sizeof(*ps));
    ps->nbuckets = 256;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    ps->buckets = calloc(ps->nbuckets, sizeof(*ps->buckets));
    if (ps->buckets == NULL)
        return -1;
    pthread_mutex_init(&ps->lock, NULL);
    return 0;
}

void persource_destroy(struct persource *ps)
{
    if (ps->buckets == NULL)
        return;
    for (size_t i = 0; i < ps->nbuckets; i++)
        for (struct persource_entry *e = ps->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(ps->buckets);
    ps->buckets = NULL;
    pthread_mutex_destroy(&ps->lock);
}

/* The slot where key is, or where it would be linked; lock held. */
static struct persource_entry **find(struct persource *ps, const uint8_t *key, size_t len)
{
    struct persource_entry **p = &ps->buckets[persource_hash(key, len) % ps->nbuckets];
    while (*p && ((*p)->len != len || memcmp((*p)->key, key, len) != 0))
        p = &(*p)->next;
    return p;
}

/* Doubles the buckets when the table is full; lock held. */
static void grow(struct persource *ps)
{
    size_t n = ps->nbuckets * 2;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    struct persource_entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < ps->nbuckets; i++)
        for (struct persource_entry *e = ps->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t j = persource_hash(e->key, e->len) % n;
            e->next = b[j];
            b[j] = e;
        }
    free(ps->buckets);
    ps->buckets = b;
    ps->nbuckets = n;
}

bool persource_acquire(struct persource *ps, const uint8_t *key, size_t len,
                       unsigned limit)
{
    pthread_mutex_lock(&ps->lock);
    struct persource_entry **p = find(ps, key, len);
    bool ok = true;
    if (*p != NULL) {
        ok = limit == 0 || (*p)->count < limit;
        if (ok)
            (*p)->count++;
    } else if ((*p = calloc(1, sizeof(**p))) != NULL) {
        (*p)->count = 1;
        (*p)->len = (uint8_t)len;
        memcpy((*p)->key, key, len);
        if (++ps->count > ps->nbuckets)
            grow(ps);
    } else {
        ok = false;
    }
    pthread_mutex_unlock(&ps->lock);
    return ok;
}

void persource_release(struct persource *ps, const uint8_t *key, size_t len)
{
    pthread_mutex_lock(&ps->lock);
    struct persource_entry **p = find(ps, key, len);
    if (*p != NULL && --(*p)->count == 0) {
        struct persource_entry *e = *p;
        *p = e->next;
        free(e);
        ps->count--;
    }
    pthread_mutex_unlock(&ps->lock);
}
