/*
 * A test server: a thread serving 127.0.0.1:0 (or ip:port) with a poll(2) loop of its
 * own, 10 ms at a time until tserver_stop(), with at most `max`
 * connections at once.  What a connection does is the user's, through the
 * callbacks, on an object conn_open() makes for it.  The thread counts
 * the connections accepted and open, and errors (a conn_open() that
 * returns NULL counts as one); it never fails the test.  A user embeds it
 * in its own server struct.
 */
#ifndef TESTS_COMMON_TSERVER_H
#define TESTS_COMMON_TSERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct tserver {
    size_t max;
    void *(*conn_open)(struct tserver *s, int fd);       /* NULL: failed */
    short (*conn_events)(struct tserver *s, void *conn); /* POLLIN/POLLOUT */
    bool (*conn_service)(struct tserver *s, void *conn); /* true: it is over */
    void (*conn_free)(struct tserver *s, void *conn);    /* its fd is closed after */
    const char *ip; /* where it listens (an IPv4 literal); NULL: 127.0.0.1 */
    int lfd, port;  /* port: set before the start to listen on that one */
    pthread_t thread;
    atomic_bool stop;
    atomic_bool paused;  /* accepts nothing meanwhile: its backlog fills */
    atomic_int accepted; /* connections accepted so far */
    atomic_int open;     /* connections open now */
    atomic_int errors;   /* socket errors, as the user counts them */
};

/* Listens (with `backlog`) and starts the thread; max and the callbacks
 * must be set. */
void tserver_start(struct tserver *s, int backlog);

/* tserver_start() on s->ip (NULL: 127.0.0.1) and port (SO_REUSEADDR set), so that a
 * server stopped can come back on its port; port 0: one the kernel picks. */
void tserver_start_on(struct tserver *s, int backlog, int port);

/* Stops the thread, then closes its connections and listening socket. */
void tserver_stop(struct tserver *s);

/* Waits up to ms for *counter to be want. */
bool wait_counter(atomic_int *counter, int want, int ms);

#endif
