/* Poll and Events: timeouts, capacity, errors, and no descriptor leaks. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "timeout.h" /* mio__timeout_ms, compiled into this test */

/* Nanoseconds of CLOCK_MONOTONIC. */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void empty_poll_with_timeout_returns(void **state)
{
    (void)state;
    mio_poll_t *poll;
    assert_int_equal(mio_poll_new(&poll), 0);
    mio_events_t *events = mio_events_new(16);
    struct timespec ts = {0, 50 * 1000000};
    int64_t t0 = now_ns();
    assert_int_equal(mio_poll_poll(poll, events, &ts), 0);
    assert_true(now_ns() - t0 >= 50 * 1000000);
    assert_true(mio_events_is_empty(events));
    mio_events_free(events);
    mio_poll_free(poll);
}

static void zero_timeout_returns_ready_events(void **state)
{
    (void)state;
    mio_poll_t *poll;
    assert_int_equal(mio_poll_new(&poll), 0);
    mio_events_t *events = mio_events_new(16);
    int fds[2];
    assert_int_equal(mio_unix_pair(fds), 0);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_int_equal(mio_registry_register(mio_poll_registry(poll), fds[0], 7,
                                           MIO_READABLE),
                     0);
    struct timespec zero = {0, 0};
    assert_int_equal(mio_poll_poll(poll, events, &zero), 0);
    assert_int_equal(mio_events_len(events), 1);
    const mio_event_t *ev = mio_events_get(events, 0);
    assert_int_equal(mio_event_token(ev), 7);
    assert_true(mio_event_is_readable(ev));
    assert_false(mio_event_is_writable(ev));
    close(fds[0]);
    close(fds[1]);
    mio_events_free(events);
    mio_poll_free(poll);
}

/* mio #1614/#1642: a timeout under a millisecond must wait, not spin. */
static void sub_millisecond_timeout_waits(void **state)
{
    (void)state;
    mio_poll_t *poll;
    assert_int_equal(mio_poll_new(&poll), 0);
    mio_events_t *events = mio_events_new(4);
    struct timespec ts = {0, 200 * 1000};
    for (int i = 0; i < 20; i++) {
        int64_t t0 = now_ns();
        assert_int_equal(mio_poll_poll(poll, events, &ts), 0);
        assert_true(now_ns() - t0 >= 200 * 1000);
    }
    mio_events_free(events);
    mio_poll_free(poll);
}

/* mio #1948: past 24.8 days the millisecond count must saturate, not wrap. */
static void timeout_milliseconds_round_up_and_saturate(void **state)
{
    (void)state;
    assert_int_equal(mio__timeout_ms(NULL), -1);
    assert_int_equal(mio__timeout_ms(&(struct timespec){0, 0}), 0);
    assert_int_equal(mio__timeout_ms(&(struct timespec){0, 1}), 1);
    assert_int_equal(mio__timeout_ms(&(struct timespec){0, 999999}), 1);
    assert_int_equal(mio__timeout_ms(&(struct timespec){0, 1000000}), 1);
    assert_int_equal(mio__timeout_ms(&(struct timespec){1, 1000001}), 1002);
    assert_int_equal(mio__timeout_ms(&(struct timespec){2147483, 647000000}), INT_MAX);
    assert_int_equal(mio__timeout_ms(&(struct timespec){2147483, 648000000}), INT_MAX);
    assert_int_equal(mio__timeout_ms(&(struct timespec){30 * 86400, 0}), INT_MAX);
    struct timespec huge = {(time_t)INT_MAX, 999999999};
    assert_int_equal(mio__timeout_ms(&huge), INT_MAX);
}

/* A timeout far in the future is accepted and a ready source still returns
 * at once. */
static void huge_timeout_with_ready_source_returns(void **state)
{
    (void)state;
    mio_poll_t *poll;
    assert_int_equal(mio_poll_new(&poll), 0);
    mio_events_t *events = mio_events_new(4);
    int fds[2];
    assert_int_equal(mio_pipe(fds), 0);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_int_equal(mio_registry_register(mio_poll_registry(poll), fds[0], 1,
                                           MIO_READABLE),
                     0);
    struct timespec ts = {(time_t)INT_MAX, 0};
    assert_int_equal(mio_poll_poll(poll, events, &ts), 0);
    assert_int_equal(mio_events_len(events), 1);
    close(fds[0]);
    close(fds[1]);
    mio_events_free(events);
    mio_poll_free(poll);
}

static void malformed_timeout_is_einval(void **state)
{
    (void)state;
    mio_poll_t *poll;
    assert_int_equal(mio_poll_new(&poll), 0);
    mio_events_t *events = mio_events_new(4);
    assert_int_equal(mio_poll_poll(poll, events, &(struct timespec){-1, 0}), -EINVAL);
    assert_int_equal(mio_poll_poll(poll, events, &(struct timespec){0, 1000000000}),
                     -EINVAL);
    assert_int_equal(mio_poll_poll(poll, events, &(struct timespec){0, -1}), -EINVAL);
    mio_events_free(events);
    mio_poll_free(poll);
}

static void events_capacity_zero_is_einval(void **state)
{
    (void)state;
    mio_poll_t *poll;
    assert_int_equal(mio_poll_new(&poll), 0);
    mio_events_t *events = mio_events_new(0);
    assert_non_null(events);
    assert_int_equal(mio_events_capacity(events), 0);
    assert_true(mio_events_is_empty(events));
    assert_int_equal(mio_poll_poll(poll, events, &(struct timespec){0, 0}), -EINVAL);
    mio_events_free(events);
    mio_poll_free(poll);
}

static void events_accessors(void **state)
{
    (void)state;
    mio_poll_t *poll;
    assert_int_equal(mio_poll_new(&poll), 0);
    mio_events_t *events = mio_events_new(8);
    assert_int_equal(mio_events_capacity(events), 8);
    assert_int_equal(mio_events_len(events), 0);
    assert_true(mio_events_is_empty(events));
    int fds[2];
    assert_int_equal(mio_pipe(fds), 0);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_int_equal(mio_registry_register(mio_poll_registry(poll), fds[0], 3,
                                           MIO_READABLE),
                     0);
    assert_int_equal(mio_poll_poll(poll, events, &(struct timespec){1, 0}), 0);
    assert_int_equal(mio_events_len(events), 1);
    assert_false(mio_events_is_empty(events));
    const mio_event_t *ev = mio_events_get(events, 0);
    assert_false(mio_event_is_aio(ev));
    assert_false(mio_event_is_lio(ev));
    assert_false(mio_event_is_priority(ev));
    mio_events_clear(events);
    assert_true(mio_events_is_empty(events));
    assert_int_equal(mio_events_capacity(events), 8);
    close(fds[0]);
    close(fds[1]);
    mio_events_free(events);
    mio_events_free(NULL);
    mio_poll_free(poll);
}

/* Readiness that does not fit is reported by the next poll, each source
 * exactly once. */
static void events_beyond_capacity_come_next_time(void **state)
{
    (void)state;
    enum { N = 10 };
    mio_poll_t *poll;
    assert_int_equal(mio_poll_new(&poll), 0);
    mio_events_t *events = mio_events_new(4);
    int fds[N][2];
    for (int i = 0; i < N; i++) {
        assert_int_equal(mio_pipe(fds[i]), 0);
        assert_int_equal(write(fds[i][1], "x", 1), 1);
        assert_int_equal(mio_registry_register(mio_poll_registry(poll), fds[i][0],
                                               (mio_token_t)i, MIO_READABLE),
                         0);
    }
    int seen[N] = {0};
    int total = 0;
    for (int round = 0; round < 10 && total < N; round++) {
        assert_int_equal(mio_poll_poll(poll, events, &(struct timespec){0, 100000000}),
                         0);
        assert_true(mio_events_len(events) <= 4);
        for (size_t i = 0; i < mio_events_len(events); i++) {
            mio_token_t t = mio_event_token(mio_events_get(events, i));
            assert_true(t < N);
            seen[t]++;
            total++;
        }
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    expect_no_event(poll, events, MIO_TOKEN_ANY, 50);
    for (int i = 0; i < N; i++) {
        close(fds[i][0]);
        close(fds[i][1]);
    }
    mio_events_free(events);
    mio_poll_free(poll);
}

static void create_and_free_2000_times_leaks_no_fd(void **state)
{
    (void)state;
    int before = open_fd_count();
    int waits = 0;
    for (int i = 0; i < 2000; i++) {
        mio_poll_t *poll;
        int err = mio_poll_new(&poll);
        /* io_uring: a user without CAP_IPC_LOCK has its rings counted
         * against RLIMIT_MEMLOCK, and the kernel gives a freed ring's
         * back only once its teardown ran in the background: ENOMEM
         * for a while, 2 s at most. */
        while (err == -ENOMEM && waits < 200) {
            waits++;
            struct timespec ms10 = {0, 10 * 1000000};
            nanosleep(&ms10, NULL);
            err = mio_poll_new(&poll);
        }
        assert_int_equal(err, 0);
        mio_waker_t *waker;
        assert_int_equal(mio_waker_new(mio_poll_registry(poll), 1, &waker), 0);
        mio_registry_t *clone;
        assert_int_equal(mio_registry_try_clone(mio_poll_registry(poll), &clone), 0);
        mio_registry_free(clone);
        mio_waker_free(waker);
        mio_poll_free(poll);
    }
    assert_int_equal(open_fd_count(), before);
}

struct churn {
    mio_registry_t *reg;
    atomic_bool stop; /* set by the test's thread, read by the churner's */
};

/* Registers and deregisters an idle pipe every 50 ms until told to stop,
 * for a second at most (so a poll that restarts its timeout on every
 * wake-up ends, and fails, instead of hanging). */
static void *churn_registrations(void *arg)
{
    struct churn *c = arg;
    int fds[2];
    assert_int_equal(mio_pipe(fds), 0);
    for (int i = 0; i < 20 && !atomic_load(&c->stop); i++) {
        usleep(50 * 1000);
        assert_int_equal(mio_registry_register(c->reg, fds[0], 99, MIO_READABLE), 0);
        assert_int_equal(mio_registry_deregister(c->reg, fds[0]), 0);
    }
    close(fds[0]);
    close(fds[1]);
    return NULL;
}

/* Registrations from another thread wake the poll(2) backend; it must then
 * wait only for the time that is left, not the whole timeout again (mio's
 * poll backend restarts it). */
static void timeout_is_honoured_across_registrations(void **state)
{
    (void)state;
    mio_poll_t *poll;
    assert_int_equal(mio_poll_new(&poll), 0);
    mio_events_t *events = mio_events_new(4);
    struct churn c = {mio_poll_registry(poll), false};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, churn_registrations, &c), 0);
    int64_t t0 = now_ms();
    assert_int_equal(mio_poll_poll(poll, events, &(struct timespec){0, 400000000}), 0);
    int64_t elapsed = now_ms() - t0;
    atomic_store(&c.stop, true);
    pthread_join(t, NULL);
    assert_true(mio_events_is_empty(events));
    assert_true(elapsed >= 400);
    /* Restarting the timeout on each registration would take 1.4 s;
     * 650 ms leaves room for a loaded machine. */
    assert_true(elapsed < 650);
    mio_events_free(events);
    mio_poll_free(poll);
}

static void on_signal(int sig)
{
    (void)sig;
}

struct interrupter {
    pthread_t target;
};

static void *interrupt_later(void *arg)
{
    struct interrupter *in = arg;
    usleep(50 * 1000);
    pthread_kill(in->target, SIGUSR1);
    return NULL;
}

/* EINTR is returned, not retried: the caller decides (mio #494). */
static void signal_interrupts_poll_with_eintr(void **state)
{
    (void)state;
    struct sigaction sa = {.sa_handler = on_signal}, old;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    mio_poll_t *poll;
    assert_int_equal(mio_poll_new(&poll), 0);
    mio_events_t *events = mio_events_new(4);
    struct interrupter in = {pthread_self()};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, interrupt_later, &in), 0);
    int64_t t0 = now_ms();
    int err = mio_poll_poll(poll, events, &(struct timespec){5, 0});
    pthread_join(t, NULL);
    assert_int_equal(err, -EINTR);
    assert_true(now_ms() - t0 < 4000);
    assert_true(mio_events_is_empty(events));
    sigaction(SIGUSR1, &old, NULL);
    mio_events_free(events);
    mio_poll_free(poll);
}

static void backend_has_a_name(void **state)
{
    (void)state;
    const char *name = mio_backend_name();
    assert_true(strcmp(name, "epoll") == 0 || strcmp(name, "kqueue") == 0 ||
                strcmp(name, "poll") == 0 || strcmp(name, "io_uring") == 0);
    print_message("backend: %s\n", name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backend_has_a_name),
        cmocka_unit_test(empty_poll_with_timeout_returns),
        cmocka_unit_test(zero_timeout_returns_ready_events),
        cmocka_unit_test(sub_millisecond_timeout_waits),
        cmocka_unit_test(timeout_milliseconds_round_up_and_saturate),
        cmocka_unit_test(huge_timeout_with_ready_source_returns),
        cmocka_unit_test(malformed_timeout_is_einval),
        cmocka_unit_test(events_capacity_zero_is_einval),
        cmocka_unit_test(events_accessors),
        cmocka_unit_test(events_beyond_capacity_come_next_time),
        cmocka_unit_test(create_and_free_2000_times_leaks_no_fd),
        cmocka_unit_test(timeout_is_honoured_across_registrations),
        cmocka_unit_test(signal_interrupts_poll_with_eintr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
