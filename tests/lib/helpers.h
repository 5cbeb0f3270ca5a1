/*
 * Helpers shared by the libmio cmocka tests: loopback sockets and bounded
 * polling.  Each test binary is built twice, once against the configured
 * backend and once against the poll(2) backend; mio_backend_name() tells
 * which one runs.
 */
#ifndef TESTS_LIB_HELPERS_H
#define TESTS_LIB_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mio.h"

/* Polls (repeatedly, at most `ms` milliseconds in all) until an event for
 * `token` arrives; returns a copy of its readiness in *flags_out as a set of
 * EV_* bits below, or fails the test. */
enum {
    EV_R = 1 << 0,  /* readable */
    EV_W = 1 << 1,  /* writable */
    EV_E = 1 << 2,  /* error */
    EV_RC = 1 << 3, /* read closed */
    EV_WC = 1 << 4, /* write closed */
    EV_P = 1 << 5,  /* priority */
};
unsigned event_bits(const mio_event_t *ev);
unsigned wait_for_token(mio_poll_t *poll, mio_events_t *events, mio_token_t token,
                        int ms);

/* Polls for `ms` milliseconds and fails the test if any event for `token`
 * is delivered (pass MIO_TOKEN_ANY to refuse every event). */
#define MIO_TOKEN_ANY ((mio_token_t)-1)
void expect_no_event(mio_poll_t *poll, mio_events_t *events, mio_token_t token, int ms);

/* A listening TCP socket on 127.0.0.1 port 0; its address in *addr. */
int loopback_listener(struct sockaddr_storage *addr, socklen_t *addrlen);

/* A connected TCP pair over loopback, both ends non-blocking. */
void tcp_pair(int *client, int *server);

/* Accepts on `lfd`, retrying EAGAIN for up to a second. */
int accept_within(int lfd);

/* Fails unless `fd` is non-blocking and close-on-exec. */
void assert_nb_cloexec(int fd);

/* Number of open descriptors of this process (from /proc/self/fd). */
int open_fd_count(void);

/* Raises the soft RLIMIT_NOFILE to at least `want` descriptors (a user's
 * default is 1024); skips the test, saying why, when the hard limit is
 * lower. */
void need_descriptors(unsigned long want);

/* Milliseconds since an arbitrary start, monotonic. */
int64_t now_ms(void);

/* True when the library runs on the poll(2) backend. */
int backend_is_poll(void);

#endif
