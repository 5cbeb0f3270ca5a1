/*
 * Accepting on the listening sockets, in the workers: a listening socket's
 * handler takes every pending client, lets admission decide on each before
 * any byte is read, and hands the admitted ones to conn_open().  Out of
 * descriptors, a spare one is given up to accept and close a client, so
 * that the accept loop never spins.
 */
#ifndef ECHOD_ACCEPT_H
#define ECHOD_ACCEPT_H

#include "loop.h"

/*
 * How a worker watches a listening socket.  Every worker registers each
 * listening socket in its own poll; MIO_EXCLUSIVE makes a new client wake
 * one of the workers asleep in the kernel rather than all of them (on
 * epoll; the other backends wake all), the first in the socket's queue of
 * waiters, which a worker leaves for its end once it holds more than its
 * share of the connections (accept.c).
 */
#define ACCEPT_INTEREST (MIO_READABLE | MIO_EXCLUSIVE)

/* The handler of a listening socket (struct listen_sock's h), in any
 * worker's loop: accepts what is pending. */
void accept_ready(struct handler *h, struct loop *l, const mio_event_t *ev);

#endif
