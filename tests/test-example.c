/*
 * The example server (examples/mio-echo.c) serves, checked byte for byte:
 * concurrent clients of many sizes, each sending all, half-closing, and
 * reading everything back before the server's FIN.  The clients are driven
 * by libmio too.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static pid_t server;
static int port;

/* Starts the example on port 0 and reads the port it prints. */
static int start_server(void **state)
{
    (void)state;
    const char *top = getenv("top_builddir");
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", top ? top : ".", ECHO_PROGRAM);
    int out[2];
    assert_int_equal(pipe(out), 0);
    server = fork();
    assert_true(server >= 0);
    if (server == 0) {
        dup2(out[1], STDOUT_FILENO);
        close(out[0]);
        close(out[1]);
        execl(path, path, "0", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[256] = "";
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    const char *colon = strrchr(line, ':');
    assert_non_null(colon);
    port = atoi(colon + 1);
    assert_true(port > 0);
    return 0;
}

static int stop_server(void **state)
{
    (void)state;
    kill(server, SIGTERM);
    int status;
    waitpid(server, &status, 0);
    return 0;
}

struct client {
    int fd;
    unsigned char *out, *in;
    size_t size, sent, got;
    bool shut, done;
};

/* Deterministic bytes for client i. */
static void fill(unsigned char *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        p[i] = (unsigned char)x;
    }
}

/* Moves a client on until its socket would block both ways. */
static void step(mio_registry_t *reg, struct client *c)
{
    while (c->sent < c->size) {
        ssize_t n = send(c->fd, c->out + c->sent, c->size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            mio_registry_rearm(reg, c->fd, MIO_WRITABLE);
            break;
        }
        c->sent += (size_t)n;
    }
    if (c->sent == c->size && !c->shut) {
        assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
        c->shut = true;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->got, c->size + 1 - c->got, 0);
        if (n == 0) {
            c->done = true;
            return;
        }
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            mio_registry_rearm(reg, c->fd, MIO_READABLE);
            return;
        }
        c->got += (size_t)n;
        assert_true(c->got <= c->size);
    }
}

static void concurrent_clients_get_every_byte_back(void **state)
{
    (void)state;
    enum { N = 120 };
    static const size_t sizes[] = {1,     2,     100,    1460,    16383,  16384,
                                   16385, 65536, 200000, 1 << 20, 3 << 20};
    mio_poll_t *poll;
    assert_int_equal(mio_poll_new(&poll), 0);
    mio_registry_t *reg = mio_poll_registry(poll);
    mio_events_t *events = mio_events_new(256);
    struct client *cl = calloc(N, sizeof(*cl));
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < N; i++) {
        struct client *c = &cl[i];
        c->size = sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];
        c->out = malloc(c->size);
        c->in = malloc(c->size + 1);
        fill(c->out, c->size, (unsigned)i);
        c->fd = mio_tcp_connect((struct sockaddr *)&addr, sizeof(addr));
        assert_true(c->fd >= 0);
        assert_int_equal(mio_registry_register(reg, c->fd, (mio_token_t)i,
                                               MIO_READABLE | MIO_WRITABLE),
                         0);
    }
    int done = 0;
    int64_t deadline = now_ms() + 60000;
    while (done < N) {
        assert_true(now_ms() < deadline);
        int err = mio_poll_poll(poll, events, &(struct timespec){1, 0});
        assert_true(err == 0 || err == -EINTR);
        for (size_t k = 0; k < mio_events_len(events); k++) {
            struct client *c = &cl[mio_event_token(mio_events_get(events, k))];
            if (c->done)
                continue;
            step(reg, c);
            if (c->done) {
                done++;
                assert_int_equal(c->got, c->size);
                assert_memory_equal(c->in, c->out, c->size);
                mio_registry_deregister(reg, c->fd);
                close(c->fd);
            }
        }
    }
    for (int i = 0; i < N; i++) {
        free(cl[i].out);
        free(cl[i].in);
    }
    free(cl);
    mio_events_free(events);
    mio_poll_free(poll);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(concurrent_clients_get_every_byte_back),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
