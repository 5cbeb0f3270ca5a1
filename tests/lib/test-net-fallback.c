/*
 * The run-time fallback of lib/net.c: linked with -Wl,--wrap=accept4
 * -Wl,--wrap=pipe2, whose wrappers fail with ENOSYS as x86 Android's seccomp
 * does (mio #1445).  mio_tcp_accept and mio_pipe must still return
 * non-blocking close-on-exec descriptors, and must not try the refused call
 * again.  The library must be linked statically for --wrap to reach it.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "helpers.h"
#include "mio.h"

/* Calls that reached the wrappers; without HAVE_ACCEPT4/HAVE_PIPE2 the
 * library never calls them and the counts stay 0. */
static int accept4_calls;
static int pipe2_calls;

#ifdef HAVE_ACCEPT4
#define ACCEPT4_TRIES 1
#else
#define ACCEPT4_TRIES 0
#endif
#ifdef HAVE_PIPE2
#define PIPE2_TRIES 1
#else
#define PIPE2_TRIES 0
#endif

int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int __wrap_pipe2(int fds[2], int flags);

/* accept4 as a seccomp filter that blocks it answers. */
int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    (void)fd;
    (void)addr;
    (void)len;
    (void)flags;
    accept4_calls++;
    errno = ENOSYS;
    return -1;
}

/* pipe2 on a kernel without it. */
int __wrap_pipe2(int fds[2], int flags)
{
    (void)fds;
    (void)flags;
    pipe2_calls++;
    errno = ENOSYS;
    return -1;
}

/* mio_pipe falls back to pipe() + fcntl and remembers that pipe2 is gone. */
static void test_pipe_fallback(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(mio_pipe(p), 0);
    assert_int_equal(pipe2_calls, PIPE2_TRIES);
    assert_nb_cloexec(p[0]);
    assert_nb_cloexec(p[1]);
    char c = 0;
    assert_int_equal(read(p[0], &c, 1), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(c, 'x');

    int q[2];
    assert_int_equal(mio_pipe(q), 0);
    assert_int_equal(pipe2_calls, PIPE2_TRIES);
    assert_nb_cloexec(q[0]);
    assert_nb_cloexec(q[1]);
    close(q[0]);
    close(q[1]);
    close(p[0]);
    close(p[1]);
}

/* Waits up to two seconds for `fd` to become readable. */
static void wait_readable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 2000), 1);
}

/* mio_tcp_accept falls back to accept() + fcntl and remembers that accept4
 * is gone; EAGAIN still comes through the fallback. */
static void test_accept_fallback(void **state)
{
    (void)state;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int lfd = mio_tcp_listen((struct sockaddr *)&sin, sizeof(sin), 0, 0);
    assert_true(lfd >= 0);
    struct sockaddr_storage ss;
    socklen_t len = 0;
    assert_int_equal(mio_socket_local_addr(lfd, &ss, &len), 0);

    assert_int_equal(mio_tcp_accept(lfd, NULL, NULL), -EAGAIN);
    assert_int_equal(accept4_calls, ACCEPT4_TRIES);

    int c1 = mio_tcp_connect((struct sockaddr *)&ss, len);
    assert_true(c1 >= 0);
    wait_readable(lfd);
    int s1 = mio_tcp_accept(lfd, NULL, NULL);
    assert_nb_cloexec(s1);

    int c2 = mio_tcp_connect((struct sockaddr *)&ss, len);
    assert_true(c2 >= 0);
    wait_readable(lfd);
    int s2 = mio_tcp_accept(lfd, NULL, NULL);
    assert_nb_cloexec(s2);
    assert_int_equal(accept4_calls, ACCEPT4_TRIES);

    assert_int_equal(send(c1, "y", 1, MSG_NOSIGNAL), 1);
    wait_readable(s1);
    assert_int_equal(recv(s1, &sin, sizeof(sin), 0), 1);
    assert_int_equal(recv(s1, &sin, sizeof(sin), 0), -1);
    assert_int_equal(errno, EAGAIN);

    close(s2);
    close(c2);
    close(s1);
    close(c1);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipe_fallback),
        cmocka_unit_test(test_accept_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
