/*
 * mio_poll_new() when the system refuses a backend: linked with
 * -Wl,--wrap=epoll_create1, whose wrapper fails with the errno a test sets
 * (EPERM as a seccomp filter answers, ENOSYS as an old kernel, EMFILE as a
 * full descriptor table) and otherwise calls the real one.  A backend
 * refused for good gives way to the next of the default order; a shortage
 * is returned; MIO_BACKEND and mio_poll_new_with() never fall back.  The
 * library must be linked statically (libmio-core) for --wrap to reach it;
 * built where the library has epoll.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "helpers.h"

#ifndef MIO_DEFAULT_BACKEND
#define MIO_DEFAULT_BACKEND ""
#endif

/* The errno the next epoll_create1 calls fail with; 0: the real call. */
static int refuse;
/* Calls that reached the wrapper. */
static int calls;

int __wrap_epoll_create1(int flags);
int __real_epoll_create1(int flags);

int __wrap_epoll_create1(int flags)
{
    calls++;
    if (refuse != 0) {
        errno = refuse;
        return -1;
    }
    return __real_epoll_create1(flags);
}

static int reset(void **state)
{
    (void)state;
    refuse = 0;
    calls = 0;
    assert_int_equal(unsetenv("MIO_BACKEND"), 0);
    return 0;
}

/* What mio_poll_new() takes once epoll is refused for good: the configured
 * default unless that is epoll, else poll(2), the next this library has
 * (configure builds kqueue only where there is no epoll). */
static const char *next_after_epoll(void)
{
    if (strcmp(MIO_DEFAULT_BACKEND, "epoll") != 0 && MIO_DEFAULT_BACKEND[0] != '\0')
        return MIO_DEFAULT_BACKEND;
    return "poll";
}

/* mio_poll_new() lands on `expected`. */
static void expect_new(const char *expected)
{
    mio_poll_t *poll = NULL;
    assert_int_equal(mio_poll_new(&poll), 0);
    assert_string_equal(mio_poll_backend(poll), expected);
    mio_poll_free(poll);
}

static void epoll_granted_is_the_default(void **state)
{
    (void)state;
    if (strcmp(MIO_DEFAULT_BACKEND, "epoll") != 0)
        skip(); /* configured --with-poller=poll */
    expect_new("epoll");
    assert_string_equal(mio_backend_name(), "epoll");
    assert_int_equal(calls, 2); /* the poll, then the probe */
}

/* Refused for good: mio_poll_new() goes on, mio_poll_new_with() and
 * mio_backend_name() tell. */
static void epoll_refused_gives_way(void **state)
{
    (void)state;
    static const int errs[] = {EPERM, ENOSYS, EACCES};
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        refuse = errs[i];
        print_message("epoll_create1 fails with %s\n", strerror(refuse));
        expect_new(next_after_epoll());
        assert_string_equal(mio_backend_name(), next_after_epoll());
        mio_poll_t *poll = NULL;
        assert_int_equal(mio_poll_new_with(&poll, "epoll"), -refuse);
        assert_null(poll);
    }
}

/* A shortage is the caller's to hear: the next backend would meet it too. */
static void epoll_shortage_is_returned(void **state)
{
    (void)state;
    if (strcmp(MIO_DEFAULT_BACKEND, "epoll") != 0)
        skip();
    refuse = EMFILE;
    mio_poll_t *poll = NULL;
    assert_int_equal(mio_poll_new(&poll), -EMFILE);
    assert_null(poll);
    assert_int_equal(calls, 1);
    /* Still the backend mio_poll_new() would take. */
    assert_string_equal(mio_backend_name(), "epoll");
}

/* Asked for by name, a refused backend fails: no fallback. */
static void mio_backend_epoll_refused_fails(void **state)
{
    (void)state;
    assert_int_equal(setenv("MIO_BACKEND", "epoll", 1), 0);
    refuse = EPERM;
    mio_poll_t *poll = NULL;
    assert_int_equal(mio_poll_new(&poll), -EPERM);
    assert_null(poll);
    assert_string_equal(mio_backend_name(), "epoll");
    refuse = 0;
    expect_new("epoll");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, reset, reset)
    const struct CMUnitTest tests[] = {
        T(epoll_granted_is_the_default),
        T(epoll_refused_gives_way),
        T(epoll_shortage_is_returned),
        T(mio_backend_epoll_refused_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
