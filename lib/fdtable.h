/*
 * The registrations of a selector that keeps them itself, by descriptor
 * (fdtable.c): the poll(2) and io_uring backends, whose kernels hold no
 * registration that answers -EEXIST and -ENOENT at once as mio does.  The
 * epoll and kqueue backends have their kernel's table (selfd.h).
 *
 * The table is what the handles of one selector share: the poll, its
 * registry's clones and its wakers each hold a reference, and the lock
 * guards the table and whatever else the backend says it guards.  A
 * selector's struct starts with its struct mio__fdtable, so that
 * mio__fdtable_clone and mio__fdtable_release take the void * of
 * backend.h.
 *
 * An entry is the backend's own struct, entry_size bytes at index fd,
 * starting with a struct mio__fdreg.  A slot whose descriptor is not
 * registered is all zeroes, and a registered one's generation is never 0:
 * it changes on every register and reregister, so that what a backend took
 * under one generation (a snapshot, a request in the kernel) is known stale
 * after a change.  An entry's address holds until the next
 * mio__fdtable_add, which may move the table.
 *
 * Thread-safety: the caller holds the lock for mio__fdtable_get, _add,
 * _renew and _remove; init, fini, hold, clone and release need no lock.
 * Allocation: only mio__fdtable_add, and only for a descriptor past every
 * one registered before; lookups, reregisters and deregisters never
 * allocate.
 */
#ifndef MIO_FDTABLE_H
#define MIO_FDTABLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mio.h"

/* What every entry starts with. */
struct mio__fdreg {
    mio_token_t token;
    uint32_t gen; /* of the registration; 0 when not registered */
};

struct mio__fdtable {
    atomic_int refs;      /* the poll, its clones and its wakers */
    pthread_mutex_t lock; /* the selector's */
    unsigned char *ent;   /* cap entries of size bytes, by descriptor */
    size_t size, cap;
    uint32_t next_gen;
};

/* An empty table of entries of entry_size bytes (a multiple of their
 * alignment, as sizeof gives), with one reference; 0 or -errno. */
int mio__fdtable_init(struct mio__fdtable *t, size_t entry_size);
/* Frees the entries and the lock; the caller frees the selector. */
void mio__fdtable_fini(struct mio__fdtable *t);
/* One more reference, for a waker. */
void mio__fdtable_hold(struct mio__fdtable *t);
/* A clone of `sel`, a selector that starts with its table: the same
 * selector, one reference more.  Always 0. */
int mio__fdtable_clone(void *sel, void **out);
/* Drops a reference of `sel` (NULL allowed); true when it was the last, and
 * the caller must then fini the table and free the selector. */
bool mio__fdtable_release(void *sel);
/* The entry registered for fd, or NULL. */
void *mio__fdtable_get(const struct mio__fdtable *t, int fd);
/* Registers fd: its entry zeroed but for the token and a new generation,
 * for mio__fdtable_get to give.  -EEXIST when registered, -EBADF for a
 * negative fd, -ENOMEM. */
int mio__fdtable_add(struct mio__fdtable *t, int fd, mio_token_t token);
/* A registered entry's new token and generation; the rest is the backend's
 * to set. */
void mio__fdtable_renew(struct mio__fdtable *t, struct mio__fdreg *r, mio_token_t token);
/* Deregisters a registered entry: its slot zeroed. */
void mio__fdtable_remove(struct mio__fdtable *t, struct mio__fdreg *r);

#endif /* MIO_FDTABLE_H */
