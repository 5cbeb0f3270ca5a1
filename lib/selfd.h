/*
 * A selector that is one kernel descriptor: the shape the epoll and kqueue
 * backends share (selfd.c).  Only those two backends include this header;
 * the poll(2) backend has a selector of its own.  The functions take and
 * give the void * of backend.h, so that the backends' tables point at
 * mio__selfd_clone and mio__selfd_free directly.
 */
#ifndef MIO_SELFD_H
#define MIO_SELFD_H

struct mio__selfd {
    int fd; /* the epoll set or the kqueue */
};

/* A selector around `fd`, the result of the call that created it: a
 * negative `fd` is that call's errno and is returned as it is.  `fd` is
 * closed when the selector cannot be allocated. */
int mio__selfd_new(int fd, void **out);
/* A selector around a close-on-exec dup of sel's descriptor: the same set. */
int mio__selfd_clone(void *sel, void **out);
/* Closes this handle; the set lives on while a clone or waker holds it. */
void mio__selfd_free(void *sel);

#endif /* MIO_SELFD_H */
