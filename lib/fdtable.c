/*
 * A selector's own table of registrations, indexed by descriptor, and the
 * references its handles hold on it (fdtable.h): the part of the poll(2)
 * and io_uring backends that is the same in both.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "fdtable.h"

/* A table with no slot yet: the first add allocates. */
int mio__fdtable_init(struct mio__fdtable *t, size_t entry_size)
{
    *t = (struct mio__fdtable){.size = entry_size};
    atomic_init(&t->refs, 1);
    return -pthread_mutex_init(&t->lock, NULL);
}

/* The entries and the lock; the references are the caller's business. */
void mio__fdtable_fini(struct mio__fdtable *t)
{
    pthread_mutex_destroy(&t->lock);
    free(t->ent);
    t->ent = NULL;
    t->cap = 0;
}

/* A waker's reference: the selector outlives the poll while it exists. */
void mio__fdtable_hold(struct mio__fdtable *t)
{
    atomic_fetch_add(&t->refs, 1);
}

/* Clones share the selector: registrations from any of them reach it. */
int mio__fdtable_clone(void *sel, void **out)
{
    mio__fdtable_hold(sel);
    *out = sel;
    return 0;
}

/* The last of the poll, its clones and its wakers tells its caller so. */
bool mio__fdtable_release(void *sel)
{
    struct mio__fdtable *t = sel;
    return t != NULL && atomic_fetch_sub(&t->refs, 1) == 1;
}

/* A bounds check and the generation: NULL past the end and for free slots. */
void *mio__fdtable_get(const struct mio__fdtable *t, int fd)
{
    if (fd < 0 || (size_t)fd >= t->cap)
        return NULL;
    struct mio__fdreg *r = (struct mio__fdreg *)(t->ent + (size_t)fd * t->size);
    return r->gen != 0 ? r : NULL;
}

/* Grows the table to fd when needed, the new slots zeroed (free). */
int mio__fdtable_add(struct mio__fdtable *t, int fd, mio_token_t token)
{
    if (fd < 0)
        return -EBADF;
    if (mio__fdtable_get(t, fd) != NULL)
        return -EEXIST;
    int err = mio__array_grow(&t->ent, &t->cap, (size_t)fd + 1, t->size);
    if (err < 0)
        return err;
    struct mio__fdreg *r = (struct mio__fdreg *)(t->ent + (size_t)fd * t->size);
    memset(r, 0, t->size);
    mio__fdtable_renew(t, r, token);
    return 0;
}

/* Generations count up, skipping 0, which marks a free slot. */
void mio__fdtable_renew(struct mio__fdtable *t, struct mio__fdreg *r, mio_token_t token)
{
    if (++t->next_gen == 0)
        t->next_gen = 1;
    r->token = token;
    r->gen = t->next_gen;
}

/* Zeroes the whole entry, so that the next add starts from nothing. */
void mio__fdtable_remove(struct mio__fdtable *t, struct mio__fdreg *r)
{
    memset(r, 0, t->size);
}
