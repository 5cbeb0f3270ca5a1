/*
 * libFuzzer target: the metrics listener's HTTP request reader
 * (src/http.c).
 *
 * The input is the bytes a client sends (the seeds in
 * tests/fuzz-corpus/http/ are requests as sent).  They are fed to a reader
 * three ways: whole, in two pieces split at a point the first byte chooses
 * (its value, modulo the length plus one), and one byte at a time, each
 * piece a heap copy of exactly its bytes so that ASan sees any read past
 * it.  All three must give the same verdict: result, bytes taken, and the
 * status and reason, or the method, target and version.  Checked besides:
 *
 *   - "need more" takes every byte and stays below HTTP_HEAD_MAX;
 *   - a complete head is GET or HEAD, HTTP/1.0 or 1.1, with a non-empty
 *     target of visible characters no longer than HTTP_LINE_MAX, and ends
 *     with the CRLF CRLF at the byte it stopped at;
 *   - a refusal has one of the statuses the header names and a reason;
 *   - once complete or refused, the reader stays so and takes nothing.
 *
 * The head of the answer is built too, for the verdict's status (200 for
 * a complete request), at a time taken from the input's last eight bytes
 * (a request may be followed by anything): it must fit or be refused
 * whole, start with its status line, name its length and end with CRLF
 * CRLF, and a buffer one byte short must be refused.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...)                                             \
    do {                                                             \
        if (!(cond)) {                                               \
            fprintf(stderr, "fuzz-http: check failed: %s: ", #cond); \
            fprintf(stderr, __VA_ARGS__);                            \
            fputc('\n', stderr);                                     \
            abort();                                                 \
        }                                                            \
    } while (0)

/* What a reader made of the input. */
struct verdict {
    enum http_result result;
    size_t used; /* bytes of the input taken in all */
};

/* Feeds data[from..to) to r as one heap piece of exactly its bytes (`one`
 * when it is one byte long); adds what was taken to v->used. */
static enum http_result feed(struct http_reader *r, const uint8_t *data, size_t from,
                             size_t to, uint8_t *one, struct verdict *v)
{
    size_t n = to - from;
    uint8_t *piece = n == 1 ? one : malloc(n > 0 ? n : 1);
    if (piece == NULL)
        abort();
    memcpy(piece, data + from, n);
    size_t used = 99999;
    enum http_result res = http_read(r, piece, n, &used);
    if (piece != one)
        free(piece);
    CHECK(used <= n, "took %zu of %zu bytes", used, n);
    CHECK(res != HTTP_NEED_MORE || used == n, "needs more, yet took %zu of %zu bytes",
          used, n);
    CHECK(res == HTTP_NEED_MORE || n == 0 || used > 0, "a verdict at no byte of %zu", n);
    v->used += used;
    v->result = res;
    return res;
}

/* Feeds the input in pieces ending at the points of cuts[] (ascending,
 * the last one size), stopping at a verdict. */
static void read_in_pieces(struct http_reader *r, const uint8_t *data, const size_t *cuts,
                           size_t ncuts, uint8_t *one, struct verdict *v)
{
    http_reader_init(r);
    v->used = 0;
    v->result = HTTP_NEED_MORE;
    size_t from = 0;
    for (size_t i = 0; i < ncuts; i++) {
        if (feed(r, data, from, cuts[i], one, v) != HTTP_NEED_MORE)
            return;
        from = cuts[i];
    }
}

/* Whether two readers reached the same verdict with the same details. */
static void check_same(const char *how, const struct http_reader *a,
                       const struct verdict *va, const struct http_reader *b,
                       const struct verdict *vb)
{
    CHECK(va->result == vb->result, "%s: result %d, whole %d", how, vb->result,
          va->result);
    CHECK(va->used == vb->used, "%s: took %zu bytes, whole %zu", how, vb->used, va->used);
    CHECK(a->total == b->total, "%s: total %zu, whole %zu", how, b->total, a->total);
    CHECK(a->method == b->method, "%s: method %d, whole %d", how, b->method, a->method);
    if (va->result == HTTP_BAD) {
        CHECK(a->status == b->status && a->why == b->why,
              "%s: refused with %d (%s), whole with %d (%s)", how, b->status, b->why,
              a->status, a->why);
    } else if (va->result == HTTP_COMPLETE) {
        CHECK(a->minor == b->minor && strcmp(a->target, b->target) == 0,
              "%s: HTTP/1.%d \"%s\", whole HTTP/1.%d \"%s\"", how, b->minor, b->target,
              a->minor, a->target);
    }
}

/* The head of the answer for `status`, at the time in data's last eight
 * bytes (little-endian), into heap buffers of exactly their size. */
static void check_response(int status, const uint8_t *data, size_t size)
{
    enum { ROOM = 512 };
    char *buf = malloc(ROOM);
    if (buf == NULL)
        abort();
    uint64_t t = 0;
    for (size_t i = 0; i < 8 && i < size; i++)
        t |= (uint64_t)data[size - 1 - i] << (8 * (7 - i));
    int n = http_response_head(buf, ROOM, status, "text/plain; version=0.0.4", size,
                               (time_t)t);
    char expect[64];
    if (n >= 0) {
        char *shorter = malloc((size_t)n);
        CHECK(n < ROOM && buf[n] == '\0', "head of %d bytes in %d", n, ROOM);
        snprintf(expect, sizeof(expect), "HTTP/1.1 %d %s\r\n", status,
                 http_status_text(status));
        CHECK(strncmp(buf, expect, strlen(expect)) == 0, "status line: %.40s", buf);
        snprintf(expect, sizeof(expect), "\r\nContent-Length: %zu\r\n", size);
        CHECK(strstr(buf, expect) != NULL, "no %s in %s", expect, buf);
        CHECK(n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0,
              "head does not end with CRLF CRLF: %s", buf);
        CHECK((status == 405) == (strstr(buf, "\r\nAllow: GET, HEAD\r\n") != NULL),
              "Allow with status %d", status);
        if (shorter == NULL)
            abort();
        CHECK(http_response_head(shorter, (size_t)n, status, "text/plain; version=0.0.4",
                                 size, (time_t)t) == -1,
              "a head of %d bytes fits in %d", n, n);
        free(shorter);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct http_reader whole, split, bytes;
    size_t cut = size > 0 ? data[0] % (size + 1) : 0;
    size_t cuts[2] = {cut, size};
    static uint8_t *one;
    if (one == NULL && (one = malloc(1)) == NULL)
        abort();

    /* Whole. */
    struct verdict vw;
    read_in_pieces(&whole, data, &size, 1, one, &vw);
    switch (vw.result) {
    case HTTP_NEED_MORE:
        CHECK(vw.used == size && whole.total == size && whole.total < HTTP_HEAD_MAX,
              "needs more after %zu bytes (total %zu)", size, whole.total);
        break;
    case HTTP_COMPLETE: {
        size_t tlen = strnlen(whole.target, sizeof(whole.target));
        CHECK(whole.method == HTTP_METHOD_GET || whole.method == HTTP_METHOD_HEAD,
              "complete with method %d", whole.method);
        CHECK(whole.minor == 0 || whole.minor == 1, "HTTP/1.%d", whole.minor);
        CHECK(tlen > 0 && tlen <= HTTP_LINE_MAX, "target of %zu bytes", tlen);
        for (size_t i = 0; i < tlen; i++)
            CHECK(whole.target[i] > 0x20 && whole.target[i] < 0x7f,
                  "byte %zu of the target is 0x%02x", i, (unsigned char)whole.target[i]);
        CHECK(vw.used >= 4 && memcmp(data + vw.used - 4, "\r\n\r\n", 4) == 0,
              "complete at byte %zu, not after CRLF CRLF", vw.used);
        CHECK(whole.total == vw.used && whole.total <= HTTP_HEAD_MAX,
              "total %zu, used %zu", whole.total, vw.used);
        break;
    }
    case HTTP_BAD:
        CHECK(whole.status == 400 || whole.status == 405 || whole.status == 414 ||
                  whole.status == 431 || whole.status == 505,
              "refused with status %d", whole.status);
        CHECK(whole.why != NULL && whole.why[0] != '\0', "refused without a reason");
        CHECK(strcmp(http_status_text(whole.status), "Unknown") != 0,
              "status %d has no reason phrase", whole.status);
        CHECK(whole.total == vw.used && whole.total <= HTTP_HEAD_MAX,
              "total %zu, used %zu", whole.total, vw.used);
        break;
    default:
        CHECK(0, "result %d", vw.result);
    }
    if (vw.result != HTTP_NEED_MORE) {
        /* It stays so, and takes nothing more. */
        size_t used = 99999;
        enum http_result res = http_read(&whole, data, size, &used);
        CHECK(res == vw.result && used == 0, "a second read gives %d after %zu bytes",
              res, used);
    }

    if (vw.result != HTTP_NEED_MORE)
        check_response(vw.result == HTTP_COMPLETE ? 200 : whole.status, data, size);

    /* Two pieces. */
    struct verdict vs;
    read_in_pieces(&split, data, cuts, 2, one, &vs);
    check_same("split", &whole, &vw, &split, &vs);

    /* A byte at a time. */
    http_reader_init(&bytes);
    struct verdict vb;
    vb.used = 0;
    vb.result = HTTP_NEED_MORE;
    for (size_t i = 0; i < size; i++)
        if (feed(&bytes, data, i, i + 1, one, &vb) != HTTP_NEED_MORE)
            break;
    check_same("bytewise", &whole, &vw, &bytes, &vb);
    return 0;
}
