/* Helpers shared by the libmio tests: loopback sockets, bounded polling. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include "helpers.h"

unsigned event_bits(const mio_event_t *ev)
{
    return (mio_event_is_readable(ev) ? EV_R : 0) |
           (mio_event_is_writable(ev) ? EV_W : 0) | (mio_event_is_error(ev) ? EV_E : 0) |
           (mio_event_is_read_closed(ev) ? EV_RC : 0) |
           (mio_event_is_write_closed(ev) ? EV_WC : 0) |
           (mio_event_is_priority(ev) ? EV_P : 0);
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A timespec of `ms` milliseconds. */
static struct timespec ms_ts(int64_t ms)
{
    if (ms < 0)
        ms = 0;
    return (struct timespec){(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
}

/* One poll until the deadline (EINTR retried within it); the events in
 * *events. */
static void poll_until(mio_poll_t *poll, mio_events_t *events, int64_t deadline)
{
    for (;;) {
        struct timespec ts = ms_ts(deadline - now_ms());
        int err = mio_poll_poll(poll, events, &ts);
        if (err != -EINTR) {
            assert_int_equal(err, 0);
            return;
        }
        if (now_ms() >= deadline) {
            mio_events_clear(events);
            return;
        }
    }
}

unsigned wait_for_token(mio_poll_t *poll, mio_events_t *events, mio_token_t token, int ms)
{
    int64_t deadline = now_ms() + ms;
    unsigned bits = 0;
    bool seen = false;
    do {
        poll_until(poll, events, deadline);
        for (size_t i = 0; i < mio_events_len(events); i++) {
            const mio_event_t *ev = mio_events_get(events, i);
            if (mio_event_token(ev) == token) {
                bits |= event_bits(ev);
                seen = true;
            }
        }
    } while (!seen && now_ms() < deadline);
    if (!seen)
        fail_msg("no event for token %lu within %d ms", (unsigned long)token, ms);
    return bits;
}

void expect_no_event(mio_poll_t *poll, mio_events_t *events, mio_token_t token, int ms)
{
    int64_t deadline = now_ms() + ms;
    do {
        poll_until(poll, events, deadline);
        for (size_t i = 0; i < mio_events_len(events); i++) {
            const mio_event_t *ev = mio_events_get(events, i);
            if (token == MIO_TOKEN_ANY || mio_event_token(ev) == token)
                fail_msg("unexpected event for token %lu (bits 0x%x)",
                         (unsigned long)mio_event_token(ev), event_bits(ev));
        }
    } while (now_ms() < deadline);
}

int loopback_listener(struct sockaddr_storage *addr, socklen_t *addrlen)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int lfd = mio_tcp_listen((struct sockaddr *)&sin, sizeof(sin), 0, 0);
    assert_true(lfd >= 0);
    *addrlen = sizeof(*addr);
    assert_int_equal(mio_socket_local_addr(lfd, addr, addrlen), 0);
    return lfd;
}

int accept_within(int lfd)
{
    int64_t deadline = now_ms() + 1000;
    for (;;) {
        int fd = mio_tcp_accept(lfd, NULL, NULL);
        if (fd >= 0)
            return fd;
        if (fd != -EAGAIN || now_ms() > deadline)
            fail_msg("accept: %s", strerror(-fd));
        usleep(1000);
    }
}

void tcp_pair(int *client, int *server)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int lfd = loopback_listener(&addr, &len);
    *client = mio_tcp_connect((struct sockaddr *)&addr, len);
    assert_true(*client >= 0);
    *server = accept_within(lfd);
    close(lfd);
}

void need_descriptors(unsigned long want)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
        print_message(
            "skipped: %lu descriptors needed, RLIMIT_NOFILE's hard limit is %lu\n", want,
            (unsigned long)rl.rlim_max);
        skip();
    }
    rl.rlim_cur = want;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

int open_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int backend_is_poll(void)
{
    return strcmp(mio_backend_name(), "poll") == 0;
}

void assert_nb_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    int fdfl = fcntl(fd, F_GETFD);
    assert_true(fd >= 0);
    assert_true(fl >= 0 && (fl & O_NONBLOCK));
    assert_true(fdfl >= 0 && (fdfl & FD_CLOEXEC));
}
