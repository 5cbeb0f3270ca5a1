/*
 * The backends of one library, chosen at run time: every backend the
 * library holds works through mio_poll_new_with() (a registration, its
 * event, a waker, a clone's registration), the others and unknown names are
 * -ENOSYS, mio_poll_backend() names what a poll got, mio_poll_new() takes
 * the default or what MIO_BACKEND says, with no fallback for a name the
 * library lacks, and never io_uring unless asked.  io_uring may be built
 * and still refused by the kernel (too old, kernel.io_uring_disabled,
 * seccomp): its cases then say why and skip.
 *
 * Built twice: against the whole library, whose backends are those
 * configure found, and against the poll(2)-only library, with
 * -DMIO_WITH_POLL as that library is built.  The test derives the same list
 * as lib/backends.c from the same macros.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

#include "backend-set.h"
#include "helpers.h"

/* The backends this library should hold, in the order of the list. */
static const char *const built[] = {
#ifdef MIO_WITH_EPOLL
    "epoll",
#endif
#ifdef MIO_WITH_KQUEUE
    "kqueue",
#endif
#ifdef MIO_WITH_POLL
    "poll",
#endif
#ifdef MIO_WITH_IO_URING
    "io_uring",
#endif
};
#define NBUILT (sizeof(built) / sizeof(built[0]))

/* Every name mio_poll_new_with() knows of, built here or not. */
static const char *const known[] = {"io_uring", "epoll", "kqueue", "poll"};

#define DATA ((mio_token_t)7)
#define WRITE ((mio_token_t)8)
#define WAKE ((mio_token_t)9)

/* What the out argument holds before a call that must clear it. */
static char sentinel;
#define NOT_NULL ((mio_poll_t *)&sentinel)

static bool is_built(const char *name)
{
    for (size_t i = 0; i < NBUILT; i++)
        if (strcmp(built[i], name) == 0)
            return true;
    return false;
}

/* What mio_poll_new() takes when no backend is refused: the configured
 * default if the library holds it, else the first of the list (io_uring,
 * taken on request only, is last). */
static const char *expected_default(void)
{
    return is_built(MIO_DEFAULT_BACKEND) ? MIO_DEFAULT_BACKEND : built[0];
}

/* Each test starts and ends without MIO_BACKEND. */
static int clear_env(void **state)
{
    (void)state;
    assert_int_equal(unsetenv("MIO_BACKEND"), 0);
    return 0;
}

/* Whether a poll on `name` can be had here.  Only io_uring may be refused,
 * and only for a reason that says the system will not have it; the reason
 * is printed. */
static bool usable(const char *name)
{
    if (strcmp(name, "io_uring") != 0)
        return true;
    mio_poll_t *poll = NULL;
    int err = mio_poll_new_with(&poll, name);
    if (err == 0) {
        mio_poll_free(poll);
        return true;
    }
    if (err != -ENOSYS && err != -EPERM && err != -EACCES)
        fail_msg("mio_poll_new_with(\"io_uring\"): %s", strerror(-err));
    print_message("io_uring refused by this system (%s): its cases skip\n",
                  strerror(-err));
    return false;
}

/* A poll on `name` that must work, checked to run on it. */
static mio_poll_t *poll_on(const char *name)
{
    mio_poll_t *poll = NULL;
    int err = mio_poll_new_with(&poll, name);
    if (err != 0)
        fail_msg("mio_poll_new_with(\"%s\"): %s", name, strerror(-err));
    assert_non_null(poll);
    assert_string_equal(mio_poll_backend(poll), name);
    return poll;
}

/* A readable event for a registered socket, a writable one through a clone
 * of the registry, and a waker's event, on the backend of `poll`. */
static void smoke(mio_poll_t *poll, mio_events_t *events)
{
    mio_registry_t *reg = mio_poll_registry(poll);
    int client, server;
    tcp_pair(&client, &server);

    assert_int_equal(mio_registry_register(reg, server, DATA, MIO_READABLE), 0);
    expect_no_event(poll, events, DATA, 20);
    assert_int_equal(write(client, "x", 1), 1);
    assert_true(wait_for_token(poll, events, DATA, 1000) & EV_R);

    mio_registry_t *clone = NULL;
    assert_int_equal(mio_registry_try_clone(reg, &clone), 0);
    assert_int_equal(mio_registry_register(clone, client, WRITE, MIO_WRITABLE), 0);
    assert_true(wait_for_token(poll, events, WRITE, 1000) & EV_W);

    mio_waker_t *waker = NULL;
    assert_int_equal(mio_waker_new(clone, WAKE, &waker), 0);
    assert_int_equal(mio_waker_wake(waker), 0);
    assert_int_equal(wait_for_token(poll, events, WAKE, 1000), EV_R);

    assert_int_equal(mio_registry_deregister(reg, server), 0);
    assert_int_equal(mio_registry_deregister(clone, client), 0);
    mio_waker_free(waker);
    mio_registry_free(clone);
    close(client);
    close(server);
}

static void every_backend_built_passes_a_smoke_test(void **state)
{
    (void)state;
    /* One events buffer for all: it is sized for any backend. */
    mio_events_t *events = mio_events_new(4);
    assert_non_null(events);
    for (size_t i = 0; i < NBUILT; i++) {
        if (!usable(built[i]))
            continue;
        print_message("backend: %s\n", built[i]);
        mio_poll_t *poll = poll_on(built[i]);
        smoke(poll, events);
        mio_poll_free(poll);
    }
    mio_events_free(events);
}

/* A poll of every backend at once, all watching one socket. */
static void backends_live_side_by_side(void **state)
{
    (void)state;
    mio_poll_t *polls[NBUILT] = {NULL};
    mio_events_t *events = mio_events_new(4);
    int client, server;
    tcp_pair(&client, &server);
    for (size_t i = 0; i < NBUILT; i++) {
        if (!usable(built[i]))
            continue;
        polls[i] = poll_on(built[i]);
        assert_int_equal(mio_registry_register(mio_poll_registry(polls[i]), server,
                                               DATA + i, MIO_READABLE),
                         0);
    }
    assert_int_equal(write(client, "x", 1), 1);
    for (size_t i = 0; i < NBUILT; i++) {
        if (polls[i] == NULL)
            continue;
        assert_true(wait_for_token(polls[i], events, DATA + i, 1000) & EV_R);
        assert_int_equal(mio_registry_deregister(mio_poll_registry(polls[i]), server), 0);
        mio_poll_free(polls[i]);
    }
    mio_events_free(events);
    close(client);
    close(server);
}

static void backends_not_built_are_enosys(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (is_built(known[i]))
            continue;
        mio_poll_t *poll = NOT_NULL;
        assert_int_equal(mio_poll_new_with(&poll, known[i]), -ENOSYS);
        assert_null(poll);
    }
}

static void unknown_names_are_enosys(void **state)
{
    (void)state;
    static const char *const names[] = {"",       "EPOLL", "Poll", "epoll ",
                                        "select", "none",  "auto", "uring"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        mio_poll_t *poll = NOT_NULL;
        assert_int_equal(mio_poll_new_with(&poll, names[i]), -ENOSYS);
        assert_null(poll);
    }
}

static void default_is_the_configured_backend(void **state)
{
    (void)state;
    mio_poll_t *poll = NULL;
    assert_int_equal(mio_poll_new(&poll), 0);
    assert_string_equal(mio_poll_backend(poll), expected_default());
    assert_string_equal(mio_backend_name(), expected_default());
    mio_poll_free(poll);
}

static void mio_backend_chooses_the_backend(void **state)
{
    (void)state;
    for (size_t i = 0; i < NBUILT; i++) {
        if (!usable(built[i]))
            continue;
        assert_int_equal(setenv("MIO_BACKEND", built[i], 1), 0);
        mio_poll_t *poll = NULL;
        assert_int_equal(mio_poll_new(&poll), 0);
        assert_string_equal(mio_poll_backend(poll), built[i]);
        assert_string_equal(mio_backend_name(), built[i]);
        mio_poll_free(poll);
    }
}

/* A name the library lacks fails mio_poll_new() instead of landing on
 * another backend unnoticed. */
static void mio_backend_lacking_fails_without_fallback(void **state)
{
    (void)state;
    static const char *const names[] = {"io_uring", "epoll", "kqueue", "bogus"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (is_built(names[i]))
            continue;
        assert_int_equal(setenv("MIO_BACKEND", names[i], 1), 0);
        mio_poll_t *poll = NOT_NULL;
        assert_int_equal(mio_poll_new(&poll), -ENOSYS);
        assert_null(poll);
        assert_string_equal(mio_backend_name(), "none");
    }
}

static void empty_mio_backend_is_unset(void **state)
{
    (void)state;
    assert_int_equal(setenv("MIO_BACKEND", "", 1), 0);
    mio_poll_t *poll = NULL;
    assert_int_equal(mio_poll_new(&poll), 0);
    assert_string_equal(mio_poll_backend(poll), expected_default());
    mio_poll_free(poll);
}

static void new_with_ignores_mio_backend(void **state)
{
    (void)state;
    assert_int_equal(setenv("MIO_BACKEND", "bogus", 1), 0);
    for (size_t i = 0; i < NBUILT; i++) {
        if (!usable(built[i]))
            continue;
        mio_poll_t *poll = poll_on(built[i]);
        mio_poll_free(poll);
    }
    assert_int_equal(setenv("MIO_BACKEND", built[NBUILT - 1], 1), 0);
    mio_poll_t *poll = poll_on(built[0]);
    mio_poll_free(poll);
}

/* A poll on io_uring for the cases below, or a skip that says why not. */
static mio_poll_t *io_uring_or_skip(void)
{
    if (!is_built("io_uring")) {
        print_message("io_uring is not built in this library (no liburing): skipped\n");
        skip();
    }
    if (!usable("io_uring"))
        skip();
    return poll_on("io_uring");
}

static void io_uring_passes_a_smoke_test(void **state)
{
    (void)state;
    mio_poll_t *poll = io_uring_or_skip();
    mio_events_t *events = mio_events_new(4);
    smoke(poll, events);
    mio_events_free(events);
    mio_poll_free(poll);
}

/* Taken on request only: never by mio_poll_new() or mio_backend_name()
 * without MIO_BACKEND, even where the kernel grants it. */
static void io_uring_is_never_the_default(void **state)
{
    (void)state;
    mio_poll_free(io_uring_or_skip());
    mio_poll_t *poll = NULL;
    assert_int_equal(mio_poll_new(&poll), 0);
    assert_string_not_equal(mio_poll_backend(poll), "io_uring");
    assert_string_not_equal(mio_backend_name(), "io_uring");
    mio_poll_free(poll);
}

/* Reads fd until EAGAIN; the byte count. */
static size_t drain_fd(int fd)
{
    char buf[4096];
    size_t total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        total += (size_t)n;
    assert_int_equal(n, -1);
    assert_int_equal(errno, EAGAIN);
    return total;
}

/* Events for `token` in one poll of up to `ms`. */
static int events_for(mio_poll_t *poll, mio_events_t *events, mio_token_t token, int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    assert_int_equal(mio_poll_poll(poll, events, &ts), 0);
    int n = 0;
    for (size_t i = 0; i < mio_events_len(events); i++)
        n += mio_event_token(mio_events_get(events, i)) == token;
    return n;
}

/*
 * How multishot poll maps onto mio's edge: the kernel completes a multishot
 * poll once per wake-up of the source, so many writes before a poll make
 * many completions; they are one event.  More wake-ups than the completion
 * queue holds (4096 entries) end the multishot (a completion without
 * IORING_CQE_F_MORE); the backend arms it again, so the source is not lost:
 * the next write still brings an event.
 */
static void io_uring_wake_ups_are_one_event_and_survive_a_full_queue(void **state)
{
    (void)state;
    mio_poll_t *poll = io_uring_or_skip();
    mio_registry_t *reg = mio_poll_registry(poll);
    mio_events_t *events = mio_events_new(8);
    int fds[2]; /* a pipe: 6000 one-byte writes fit, and each wakes it */
    assert_int_equal(mio_pipe(fds), 0);
    assert_int_equal(mio_registry_register(reg, fds[0], DATA, MIO_READABLE), 0);
    expect_no_event(poll, events, DATA, 20);
    for (int round = 0; round < 2; round++) {
        int writes = round == 0 ? 10 : 6000;
        for (int i = 0; i < writes; i++)
            assert_int_equal(write(fds[1], "x", 1), 1);
        assert_int_equal(events_for(poll, events, DATA, 1000), 1);
        expect_no_event(poll, events, DATA, 30);
        assert_int_equal(drain_fd(fds[0]), (size_t)writes);
        assert_int_equal(write(fds[1], "y", 1), 1);
        assert_int_equal(events_for(poll, events, DATA, 1000), 1);
        assert_int_equal(drain_fd(fds[0]), 1);
        expect_no_event(poll, events, DATA, 30);
    }
    assert_int_equal(mio_registry_deregister(reg, fds[0]), 0);
    close(fds[0]);
    close(fds[1]);
    mio_events_free(events);
    mio_poll_free(poll);
}

/* The poll request holds a reference to the file: deregister sends its
 * removal at once, so that a close() right after closes the socket and the
 * peer reads its end of file without the poll being polled again. */
static void io_uring_close_after_deregister_closes(void **state)
{
    (void)state;
    mio_poll_t *poll = io_uring_or_skip();
    mio_registry_t *reg = mio_poll_registry(poll);
    mio_events_t *events = mio_events_new(4);
    int client, server;
    tcp_pair(&client, &server);
    assert_int_equal(mio_registry_register(reg, server, DATA, MIO_READABLE), 0);
    assert_int_equal(mio_poll_poll(poll, events, &(struct timespec){0, 0}), 0);
    assert_int_equal(mio_registry_deregister(reg, server), 0);
    close(server);
    char c;
    ssize_t n = -1;
    for (int i = 0; i < 100 && n != 0; i++) {
        n = read(client, &c, 1);
        if (n != 0)
            usleep(10 * 1000);
    }
    assert_int_equal(n, 0);
    close(client);
    mio_events_free(events);
    mio_poll_free(poll);
}

#if defined(__linux__) && defined(__NR_io_uring_setup)
/* In a child: io_uring_setup refused with `err` by a seccomp filter, as a
 * container runtime refuses it; the child's exit status says what
 * mio_poll_new_with("io_uring") answered (0: -err, as the kernel said, and
 * mio_poll_new() still found its default; 77: no seccomp here). */
static int refused_child(int err)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return 77;
    mio_poll_t *poll = NOT_NULL;
    if (mio_poll_new_with(&poll, "io_uring") != -err || poll != NULL)
        return 1;
    if (mio_poll_new(&poll) != 0 || strcmp(mio_poll_backend(poll), "io_uring") == 0)
        return 2;
    mio_poll_free(poll);
    return 0;
}

/* The kernel's refusal comes back unchanged: -EPERM (seccomp, or
 * kernel.io_uring_disabled) and -ENOSYS (seccomp, or no io_uring). */
static void io_uring_refused_is_the_kernels_errno(void **state)
{
    (void)state;
    mio_poll_free(io_uring_or_skip());
    static const int errs[] = {EPERM, ENOSYS};
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(refused_child(errs[i]));
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77) {
            print_message("no seccomp filter can be set here: skipped\n");
            skip();
        }
        assert_int_equal(WEXITSTATUS(status), 0);
    }
}
#else
static void io_uring_refused_is_the_kernels_errno(void **state)
{
    (void)state;
    skip();
}
#endif

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, clear_env, clear_env)
    const struct CMUnitTest tests[] = {
        T(every_backend_built_passes_a_smoke_test),
        T(backends_live_side_by_side),
        T(backends_not_built_are_enosys),
        T(unknown_names_are_enosys),
        T(default_is_the_configured_backend),
        T(mio_backend_chooses_the_backend),
        T(mio_backend_lacking_fails_without_fallback),
        T(empty_mio_backend_is_unset),
        T(new_with_ignores_mio_backend),
        T(io_uring_passes_a_smoke_test),
        T(io_uring_is_never_the_default),
        T(io_uring_wake_ups_are_one_event_and_survive_a_full_queue),
        T(io_uring_close_after_deregister_closes),
        T(io_uring_refused_is_the_kernels_errno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
