/* Waker: readable events that coalesce, from threads and signal handlers. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "helpers.h"

#define WAKE ((mio_token_t)42)

struct fixture {
    mio_poll_t *poll;
    mio_events_t *events;
    mio_waker_t *waker;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_int_equal(mio_poll_new(&f->poll), 0);
    f->events = mio_events_new(16);
    assert_int_equal(mio_waker_new(mio_poll_registry(f->poll), WAKE, &f->waker), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    mio_waker_free(f->waker);
    mio_events_free(f->events);
    mio_poll_free(f->poll);
    free(f);
    return 0;
}

/* Counts the events for the waker's token in one poll of `ms`. */
static int wake_events(struct fixture *f, int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    assert_int_equal(mio_poll_poll(f->poll, f->events, &ts), 0);
    int n = 0;
    for (size_t i = 0; i < mio_events_len(f->events); i++) {
        const mio_event_t *ev = mio_events_get(f->events, i);
        if (mio_event_token(ev) == WAKE) {
            assert_true(mio_event_is_readable(ev));
            assert_false(mio_event_is_writable(ev));
            n++;
        }
    }
    return n;
}

static void wake_gives_one_readable_event(void **state)
{
    struct fixture *f = *state;
    expect_no_event(f->poll, f->events, WAKE, 20);
    assert_int_equal(mio_waker_wake(f->waker), 0);
    assert_int_equal(wake_events(f, 1000), 1);
    expect_no_event(f->poll, f->events, WAKE, 50);
    /* And again: a waker is reusable without any reset by the caller. */
    assert_int_equal(mio_waker_wake(f->waker), 0);
    assert_int_equal(wake_events(f, 1000), 1);
}

static void wakes_coalesce(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 5; i++)
        assert_int_equal(mio_waker_wake(f->waker), 0);
    assert_int_equal(wake_events(f, 1000), 1);
    expect_no_event(f->poll, f->events, WAKE, 50);
}

/* Far more wakes than a pipe or an eventfd holds at once still end in an
 * event after each burst. */
static void many_wakes_still_wake(void **state)
{
    struct fixture *f = *state;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 100000; i++)
            assert_int_equal(mio_waker_wake(f->waker), 0);
        assert_int_equal(wake_events(f, 1000), 1);
    }
}

static void *wake_later(void *arg)
{
    usleep(50 * 1000);
    assert_int_equal(mio_waker_wake(arg), 0);
    return NULL;
}

static void wake_from_thread_ends_blocked_poll(void **state)
{
    struct fixture *f = *state;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wake_later, f->waker), 0);
    int64_t t0 = now_ms();
    assert_int_equal(mio_poll_poll(f->poll, f->events, NULL), 0);
    pthread_join(t, NULL);
    assert_true(now_ms() - t0 < 5000);
    assert_int_equal(mio_events_len(f->events), 1);
    assert_int_equal(mio_event_token(mio_events_get(f->events, 0)), WAKE);
}

static void *wake_many(void *arg)
{
    for (int i = 0; i < 2000; i++)
        assert_int_equal(mio_waker_wake(arg), 0);
    return NULL;
}

static void wakes_from_two_threads(void **state)
{
    struct fixture *f = *state;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, wake_many, f->waker), 0);
    int events = 0;
    for (int i = 0; i < 50 && events == 0; i++)
        events += wake_events(f, 100);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_true(events >= 1);
    /* Whatever was pending after the threads ended is at most one event. */
    assert_true(wake_events(f, 50) <= 1);
    expect_no_event(f->poll, f->events, WAKE, 30);
}

static mio_waker_t *signal_waker;

static void on_sigusr1(int sig)
{
    (void)sig;
    errno = 1234; /* the waker must not disturb errno */
    int saved = errno;
    (void)mio_waker_wake(signal_waker);
    if (errno != saved)
        abort();
}

/* A signal handler may wake the poll: the wake is async-signal-safe. */
static void wake_from_signal_handler(void **state)
{
    struct fixture *f = *state;
    signal_waker = f->waker;
    struct sigaction sa = {.sa_handler = on_sigusr1}, old;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    raise(SIGUSR1);
    assert_int_equal(wake_events(f, 1000), 1);
    sigaction(SIGUSR1, &old, NULL);
}

/* A waker may outlive its poll; its wakes then go nowhere. */
static void waker_outlives_poll(void **state)
{
    struct fixture *f = *state;
    mio_poll_free(f->poll);
    f->poll = NULL;
    (void)mio_waker_wake(f->waker);
    mio_waker_free(f->waker);
    f->waker = NULL;
}

/* Two wakers on one poll, each with its own token. */
static void two_wakers_two_tokens(void **state)
{
    struct fixture *f = *state;
    mio_waker_t *other;
    assert_int_equal(mio_waker_new(mio_poll_registry(f->poll), 43, &other), 0);
    assert_int_equal(mio_waker_wake(other), 0);
    assert_true(wait_for_token(f->poll, f->events, 43, 1000) & EV_R);
    expect_no_event(f->poll, f->events, WAKE, 30);
    assert_int_equal(mio_waker_wake(f->waker), 0);
    assert_true(wait_for_token(f->poll, f->events, WAKE, 1000) & EV_R);
    expect_no_event(f->poll, f->events, 43, 30);
    mio_waker_free(other);
}

/* A pending wake that did not fit in the events comes with the next poll. */
static void wake_waits_for_room(void **state)
{
    struct fixture *f = *state;
    mio_events_t *one = mio_events_new(1);
    int fds[2];
    assert_int_equal(mio_pipe(fds), 0);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_int_equal(mio_registry_register(mio_poll_registry(f->poll), fds[0], 5,
                                           MIO_READABLE),
                     0);
    assert_int_equal(mio_waker_wake(f->waker), 0);
    int wake = 0, data = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(mio_poll_poll(f->poll, one, &(struct timespec){0, 100000000}),
                         0);
        for (size_t k = 0; k < mio_events_len(one); k++) {
            mio_token_t t = mio_event_token(mio_events_get(one, k));
            wake += t == WAKE;
            data += t == 5;
        }
    }
    assert_int_equal(wake, 1);
    assert_int_equal(data, 1);
    close(fds[0]);
    close(fds[1]);
    mio_events_free(one);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(wake_gives_one_readable_event), T(wakes_coalesce),
        T(many_wakes_still_wake),         T(wake_from_thread_ends_blocked_poll),
        T(wakes_from_two_threads),        T(wake_from_signal_handler),
        T(waker_outlives_poll),           T(two_wakers_two_tokens),
        T(wake_waits_for_room),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
