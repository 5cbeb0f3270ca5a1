/*
 * The test server's thread (see tserver.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* accept4 */
#endif

#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "net.h"
#include "tserver.h"

/* Frees connection i of a test server's table (the last one moves in). */
static void tserver_drop(struct tserver *s, void **conns, int *fds, size_t *n, size_t i)
{
    s->conn_free(s, conns[i]);
    close(fds[i]);
    atomic_fetch_sub(&s->open, 1);
    --*n;
    conns[i] = conns[*n];
    fds[i] = fds[*n];
}

/* The test server's thread. */
static void *tserver_run(void *arg)
{
    struct tserver *s = arg;
    void **conns = calloc(s->max, sizeof(*conns));
    int *fds = calloc(s->max, sizeof(*fds));
    struct pollfd *pfd = calloc(s->max + 1, sizeof(*pfd));
    if (conns == NULL || fds == NULL || pfd == NULL) {
        atomic_fetch_add(&s->errors, 1);
        atomic_store(&s->stop, true);
    }
    size_t n = 0;
    /* Bounded: it polls 10 ms at a time until told to stop. */
    while (!atomic_load(&s->stop)) {
        for (size_t i = 0; i < n; i++)
            pfd[i] = (struct pollfd){.fd = fds[i], .events = s->conn_events(s, conns[i])};
        bool accepting = n < s->max && !atomic_load(&s->paused);
        pfd[n] = (struct pollfd){.fd = s->lfd, .events = accepting ? POLLIN : 0};
        size_t polled = n;
        if (poll(pfd, polled + 1, 10) <= 0)
            continue;
        for (size_t i = polled; i-- > 0;)
            if (pfd[i].revents != 0 && s->conn_service(s, conns[i]))
                tserver_drop(s, conns, fds, &n, i);
        if (!accepting || (pfd[polled].revents & POLLIN) == 0)
            continue;
        for (int k = 0; k < 256 && n < s->max; k++) {
            int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                break;
            void *c = s->conn_open(s, fd);
            if (c == NULL) {
                close(fd);
                atomic_fetch_add(&s->errors, 1);
                continue;
            }
            atomic_fetch_add(&s->accepted, 1);
            atomic_fetch_add(&s->open, 1);
            conns[n] = c;
            fds[n++] = fd;
            if (s->conn_service(s, c))
                tserver_drop(s, conns, fds, &n, n - 1);
        }
    }
    while (n > 0)
        tserver_drop(s, conns, fds, &n, n - 1);
    free(conns);
    free(fds);
    free(pfd);
    return NULL;
}

void tserver_start(struct tserver *s, int backlog)
{
    tserver_start_on(s, backlog, 0);
}

void tserver_start_on(struct tserver *s, int backlog, int port)
{
    CHECK(s->max > 0 && s->conn_open != NULL && s->conn_events != NULL &&
          s->conn_service != NULL && s->conn_free != NULL);
    if (port != 0)
        s->port = port;
    s->lfd = listen_at(s->ip != NULL ? s->ip : "127.0.0.1", s->port, backlog, &s->port);
    set_nonblocking(s->lfd);
    CHECK_EQ(pthread_create(&s->thread, NULL, tserver_run, s), 0);
}

void tserver_stop(struct tserver *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->lfd);
}

bool wait_counter(atomic_int *counter, int want, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 10000; i++) {
        if (atomic_load(counter) == want)
            return true;
        if (ms_now() >= until)
            return false;
        sleep_ms(1);
    }
    return false;
}
