/*
 * A selector that is one kernel descriptor: the shape the epoll and kqueue
 * backends share (selfd.c).  Only those two backends include this header;
 * the poll(2) backend defines struct mio__sel its own way.
 */
#ifndef MIO_SELFD_H
#define MIO_SELFD_H

#include "backend.h"

struct mio__sel {
    int fd; /* the epoll set or the kqueue */
};

/* A selector around `fd`, the result of the call that created it: a
 * negative `fd` is that call's errno and is returned as it is.  `fd` is
 * closed when the selector cannot be allocated. */
int mio__selfd_new(int fd, struct mio__sel **out);
/* A selector around a close-on-exec dup of sel's descriptor: the same set. */
int mio__selfd_clone(struct mio__sel *sel, struct mio__sel **out);
/* Closes this handle; the set lives on while a clone or waker holds it. */
void mio__selfd_free(struct mio__sel *sel);

#endif /* MIO_SELFD_H */
