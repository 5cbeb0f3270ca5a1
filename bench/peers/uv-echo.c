/*
 * uv-echo: a TCP echo server on libuv, written the way libuv is meant to
 * be used for it, as a peer in the benchmark.
 *
 *   uv-echo PORT      listen on 127.0.0.1:PORT
 *
 * Reads go into one shared buffer (libuv asks for a buffer before each
 * read) and are sent back with uv_try_write at once; only what the socket
 * does not take is copied and handed to uv_write, and reading stops until
 * that write is done (backpressure).  After the client's EOF, the pending
 * write finishes and the handle is closed.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define BUF 65536

struct conn {
    uv_tcp_t tcp;
    uv_write_t req;
    int writing, eof;
    char *pending;
};

static uv_loop_t *loop;
static char scratch[BUF];
static int scratch_busy;

static void on_close(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h;
    free(c->pending);
    free(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    /* One read at a time on one thread: the shared buffer is free again
     * when on_read returns. */
    if (scratch_busy) {
        *buf = uv_buf_init(malloc(BUF), BUF);
        return;
    }
    scratch_busy = 1;
    *buf = uv_buf_init(scratch, BUF);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    free(c->pending);
    c->pending = NULL;
    c->writing = 0;
    if (status < 0 || c->eof) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)s;
    if (n > 0) {
        uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
        int w = uv_try_write(s, &b, 1);
        if (w == UV_EAGAIN)
            w = 0;
        if (w < 0) {
            uv_close((uv_handle_t *)s, on_close);
        } else if (w < n) {
            size_t left = (size_t)n - (size_t)w;
            c->pending = malloc(left);
            memcpy(c->pending, buf->base + w, left);
            b = uv_buf_init(c->pending, (unsigned)left);
            c->writing = 1;
            c->req.data = c;
            uv_read_stop(s);
            if (uv_write(&c->req, s, &b, 1, on_write) < 0)
                uv_close((uv_handle_t *)s, on_close);
        }
    } else if (n < 0) {
        c->eof = 1;
        uv_read_stop(s);
        if (!c->writing)
            uv_close((uv_handle_t *)s, on_close);
    }
    if (buf->base == scratch)
        scratch_busy = 0;
    else
        free(buf->base);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: uv-echo PORT\n");
        return 2;
    }
    loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    uv_tcp_init(loop, &server);
    int err = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    if (err < 0) {
        fprintf(stderr, "uv-echo: listen: %s\n", uv_strerror(err));
        return 1;
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
