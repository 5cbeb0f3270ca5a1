/*
 * The HTTP request reader (src/http.c): every request it accepts and every
 * one it refuses, with the status and at the byte that decides it, the
 * same whether the bytes come at once, one by one or split anywhere; the
 * bounds on the request line (2048) and the head (8192) to the byte; and
 * the response head byte for byte.
 *
 * Every read is from a heap copy of exactly the bytes given, so that
 * valgrind and ASan catch a read past len.  The fuzzing seeds in
 * tests/fuzz-corpus/http/ say what they are.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "seeds.h"

/* One head fed in pieces of `chunk` bytes (0: all at once), each from a
 * heap copy of exactly that piece; *taken gets the bytes taken in all. */
static enum http_result feed(struct http_reader *r, const char *req, size_t len,
                             size_t chunk, size_t *taken)
{
    http_reader_init(r);
    *taken = 0;
    if (chunk == 0)
        chunk = len;
    enum http_result res = HTTP_NEED_MORE;
    size_t off = 0;
    while (off < len && res == HTTP_NEED_MORE) {
        size_t n = len - off < chunk ? len - off : chunk;
        char *copy = malloc(n);
        assert_non_null(copy);
        memcpy(copy, req + off, n);
        size_t used = 0;
        res = http_read(r, copy, n, &used);
        free(copy);
        assert_true(used <= n);
        if (res == HTTP_NEED_MORE)
            assert_int_equal(used, n);
        *taken += used;
        off += n;
    }
    return res;
}

/* The result of feeding req[0..len) whole, byte by byte, in pieces of a
 * few sizes, and in two pieces split at every position: all the same, or
 * the test fails.  *r is the reader of the whole feed. */
static enum http_result read_every_way(struct http_reader *r, const char *req, size_t len,
                                       size_t *taken)
{
    static const size_t chunks[] = {1, 2, 3, 7, 64, 1000};
    struct http_reader other;
    size_t other_taken;
    enum http_result res = feed(r, req, len, 0, taken);
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        enum http_result o = feed(&other, req, len, chunks[i], &other_taken);
        if (o != res || other_taken != *taken || other.status != r->status)
            fail_msg("pieces of %zu: result %d taken %zu status %d; whole: %d %zu %d",
                     chunks[i], (int)o, other_taken, other.status, (int)res, *taken,
                     r->status);
    }
    for (size_t cut = 1; len < 600 && cut < len; cut++) {
        http_reader_init(&other);
        enum http_result o = HTTP_NEED_MORE;
        size_t used = 0;
        o = http_read(&other, req, cut, &used);
        other_taken = used;
        if (o == HTTP_NEED_MORE) {
            o = http_read(&other, req + cut, len - cut, &used);
            other_taken += used;
        }
        if (o != res || other_taken != *taken || other.status != r->status)
            fail_msg("split at %zu: result %d taken %zu; whole: %d %zu", cut, (int)o,
                     other_taken, (int)res, *taken);
    }
    return res;
}

/* Expects req to be a complete head of `head_len` bytes (the rest of req is
 * left alone) with this method, target and minor version. */
static void accepted_len(const char *req, size_t head_len, enum http_method method,
                         const char *target, int minor)
{
    struct http_reader r;
    size_t taken;
    enum http_result res = read_every_way(&r, req, strlen(req), &taken);
    if (res != HTTP_COMPLETE)
        fail_msg("refused (%d %s): \"%s\"", r.status, r.why ? r.why : "", req);
    assert_int_equal(taken, head_len);
    assert_int_equal(r.total, head_len);
    assert_int_equal(r.method, method);
    assert_string_equal(r.target, target);
    assert_int_equal(r.minor, minor);
    /* Complete: it stays so and takes nothing more. */
    size_t used = 99;
    assert_int_equal(http_read(&r, "GET", 3, &used), HTTP_COMPLETE);
    assert_int_equal(used, 0);
}

/* Expects the whole of req to be one complete head. */
static void accepted(const char *req, enum http_method method, const char *target,
                     int minor)
{
    accepted_len(req, strlen(req), method, target, minor);
}

/* Expects req[0..len) to be refused with `status`, at its byte `at`
 * (counted from 1), saying something containing `why`. */
static void refused_at(const char *req, size_t len, int status, size_t at,
                       const char *why)
{
    struct http_reader r;
    size_t taken;
    enum http_result res = read_every_way(&r, req, len, &taken);
    if (res != HTTP_BAD)
        fail_msg("not refused (%d): \"%.*s\"", (int)res, (int)len, req);
    if (r.status != status || strstr(r.why, why) == NULL)
        fail_msg("\"%.*s\": %d \"%s\", expected %d \"%s\"", (int)(len < 200 ? len : 200),
                 req, r.status, r.why, status, why);
    if (at != 0 && taken != at)
        fail_msg("\"%.*s\": refused at byte %zu, expected %zu",
                 (int)(len < 200 ? len : 200), req, taken, at);
    size_t used = 99;
    assert_int_equal(http_read(&r, "\r\n", 2, &used), HTTP_BAD);
    assert_int_equal(used, 0);
    assert_int_equal(r.status, status);
}

/* Expects the string req to be refused with `status` at its last byte. */
static void refused(const char *req, int status, const char *why)
{
    refused_at(req, strlen(req), status, strlen(req), why);
}

/* ---- accepted ------------------------------------------------------------ */

static void plain_requests(void **state)
{
    (void)state;
    accepted("GET /metrics HTTP/1.1\r\nHost: localhost:9107\r\n\r\n", HTTP_METHOD_GET,
             "/metrics", 1);
    accepted("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_METHOD_HEAD, "/metrics",
             1);
    /* HTTP/1.0 needs no Host. */
    accepted("GET /metrics HTTP/1.0\r\n\r\n", HTTP_METHOD_GET, "/metrics", 0);
    accepted("HEAD /metrics HTTP/1.0\r\nAccept: */*\r\n\r\n", HTTP_METHOD_HEAD,
             "/metrics", 0);
    /* What Prometheus sends. */
    accepted("GET /metrics HTTP/1.1\r\n"
             "Host: 127.0.0.1:9107\r\n"
             "User-Agent: Prometheus/2.45.0\r\n"
             "Accept: application/openmetrics-text;version=1.0.0,"
             "text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
             "Accept-Encoding: gzip\r\n"
             "X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
             HTTP_METHOD_GET, "/metrics", 1);
}

/* The target is the caller's to judge: any visible ASCII is read. */
static void any_target_is_read(void **state)
{
    (void)state;
    accepted("GET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_METHOD_GET, "/", 1);
    accepted("GET /metrics?name[]=a%20b HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_METHOD_GET,
             "/metrics?name[]=a%20b", 1);
    accepted("GET http://127.0.0.1:9107/metrics HTTP/1.1\r\nHost: 127.0.0.1:9107\r\n\r\n",
             HTTP_METHOD_GET, "http://127.0.0.1:9107/metrics", 1);
    accepted("HEAD * HTTP/1.0\r\n\r\n", HTTP_METHOD_HEAD, "*", 0);
}

/* Field values: optional blanks around them, blanks and obs-text inside,
 * empty ones, names in any case, long names. */
static void header_fields(void **state)
{
    (void)state;
    accepted("GET /metrics HTTP/1.1\r\n"
             "hOsT:\t [::1]:9107 \t\r\n"
             "X-Empty:\r\n"
             "X-Blank:   \r\n"
             "X-Inner: a b\tc\r\n"
             "X-Latin: caf\xc3\xa9 \x80\xff\r\n"
             "X-A-Very-Long-Header-Name-Past-What-Is-Kept-For-Matching: 5\r\n"
             "Content-Lengthy: 5\r\n"
             "X-Transfer-Encoding: chunked\r\n"
             "!#$%&'*+-.^_`|~09azAZ: token characters\r\n\r\n",
             HTTP_METHOD_GET, "/metrics", 1);
    /* Host may be empty (RFC 9112 3.2); the usual forms of it. */
    accepted("GET /metrics HTTP/1.1\r\nHost:\r\n\r\n", HTTP_METHOD_GET, "/metrics", 1);
    accepted("GET /metrics HTTP/1.1\r\nHost: metrics.example.org\r\n\r\n",
             HTTP_METHOD_GET, "/metrics", 1);
    accepted("GET /metrics HTTP/1.1\r\nHost: [fe80::1%25eth0]:80\r\n\r\n",
             HTTP_METHOD_GET, "/metrics", 1);
}

/* Content-Length 0, however written and however often, is no body. */
static void content_length_zero(void **state)
{
    (void)state;
    accepted("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
             HTTP_METHOD_GET, "/metrics", 1);
    accepted("GET /metrics HTTP/1.1\r\nHost: x\r\ncontent-length:000 \r\n"
             "CONTENT-LENGTH: 0\r\n\r\n",
             HTTP_METHOD_GET, "/metrics", 1);
}

/* The head ends at its blank line: what follows is not taken. */
static void bytes_after_the_head(void **state)
{
    (void)state;
    const char *head = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    char req[128];
    snprintf(req, sizeof(req), "%sGET /metrics HTTP/1.1\r\n", head);
    accepted_len(req, strlen(head), HTTP_METHOD_GET, "/metrics", 1);
    snprintf(req, sizeof(req), "%s\x01\x02 garbage\n", head);
    accepted_len(req, strlen(head), HTTP_METHOD_GET, "/metrics", 1);
}

/* ---- refused: the request line --------------------------------------------- */

static void bare_lf_and_lone_cr(void **state)
{
    (void)state;
    refused("GET /metrics HTTP/1.1\n", 400, "bare LF");
    refused("GET /metrics\n", 400, "bare LF");
    refused("GET /metrics HTTP/1.1\r\nHost: x\n", 400, "bare LF");
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\n\n", 400, "bare LF");
    refused("GET /metrics HTTP/1.1\r\nHost\n", 400, "without a colon");
    refused("GET /metrics HTTP/1.1\rX", 400, "CR without LF");
    refused("GET /metrics HTTP/1.1\r\r", 400, "CR without LF");
    refused("GET /metrics HTTP/1.1\r\nHost: x\rX", 400, "CR without LF");
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\n\rX", 400, "CR without LF");
    refused("\r", 400, "ends early");
    refused("\n", 400, "bare LF");
}

/* One space between the three parts, none before or after. */
static void spaces_in_the_request_line(void **state)
{
    (void)state;
    refused(" ", 400, "starts with a space");
    refused("GET  ", 400, "empty target");
    refused("GET /metrics  ", 400, "version");
    refused("GET /metrics HTTP/1.1 ", 400, "version");
    refused("GET\t", 400, "method");
    refused("GET /metrics\t", 400, "target");
    refused("GET /metrics\r", 400, "ends early");
    refused("GET\r", 400, "ends early");
    refused("GET /metrics HTTP/1.1\r\n ", 400, "obs-fold");
}

static void bad_characters_in_the_request_line(void **state)
{
    (void)state;
    refused("GE(", 400, "method");
    refused("G\xc3", 400, "method");
    refused_at("G\0T", 3, 400, 2, "method");
    refused("GET /m\x7f", 400, "target");
    refused("GET /m\x80", 400, "target");
    refused("GET /m\x01", 400, "target");
    refused_at("GET /m\0", 7, 400, 7, "target");
    refused("GET /metrics HTTP/1.\x01", 400, "version");
}

static void versions(void **state)
{
    (void)state;
    refused("GET /metrics http/1.1\r", 400, "malformed HTTP version");
    refused("GET /metrics HTTP/1.10", 400, "malformed HTTP version");
    refused("GET /metrics HTTP/11\r", 400, "malformed HTTP version");
    refused("GET /metrics HTTP/1\r", 400, "malformed HTTP version");
    refused("GET /metrics HTTP/1.x\r", 400, "malformed HTTP version");
    refused("GET /metrics HTTPS/1.1", 400, "malformed HTTP version");
    refused("GET /metrics \r", 400, "malformed HTTP version");
    /* Well-formed, but not one this reader speaks: 505 at the line's end. */
    refused("GET /metrics HTTP/2.0\r\n", 505, "HTTP/1.0 and HTTP/1.1");
    refused("GET /metrics HTTP/1.2\r\n", 505, "HTTP/1.0 and HTTP/1.1");
    refused("GET /metrics HTTP/0.9\r\n", 505, "HTTP/1.0 and HTTP/1.1");
    refused("PRI * HTTP/2.0\r\n", 505, "HTTP/1.0 and HTTP/1.1");
}

/* Methods are case-sensitive; only GET and HEAD, decided once the head is
 * complete (so that a bad head is 400 whatever its method). */
static void methods(void **state)
{
    (void)state;
    static const char *const others[] = {
        "POST",  "PUT",     "DELETE", "OPTIONS", "PATCH",
        "TRACE", "CONNECT", "get",    "Get",     "head",
        "GETS",  "HEADER",  "GE",     "X",       "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    };
    char req[128];
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        snprintf(req, sizeof(req), "%s /metrics HTTP/1.1\r\nHost: x\r\n\r\n", others[i]);
        refused(req, 405, "only GET and HEAD");
    }
    refused("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3", 400, "body");
    refused("POST /metrics HTTP/1.1\r\n\r\n", 400, "without a Host");
    refused("OPTIONS * HTTP/1.0\r\n\r\n", 405, "only GET and HEAD");
}

/* ---- refused: header lines ---------------------------------------------------- */

static void header_syntax(void **state)
{
    (void)state;
    /* obs-fold, with a space or a tab. */
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: a\r\n ", 400, "obs-fold");
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\t", 400, "obs-fold");
    refused("GET /metrics HTTP/1.1\r\nHost ", 400, "blank between");
    refused("GET /metrics HTTP/1.1\r\nHost\t", 400, "blank between");
    refused("GET /metrics HTTP/1.1\r\nHostx\r", 400, "without a colon");
    refused("GET /metrics HTTP/1.1\r\n:", 400, "empty header name");
    refused("GET /metrics HTTP/1.1\r\nHo(", 400, "header name");
    refused("GET /metrics HTTP/1.1\r\nH\xc3", 400, "header name");
    refused("GET /metrics HTTP/1.1\r\n\"", 400, "header name");
    refused("GET /metrics HTTP/1.1\r\nX-A: a\x01", 400, "control character");
    refused("GET /metrics HTTP/1.1\r\nX-A: a\x7f", 400, "control character");
    refused("GET /metrics HTTP/1.1\r\nX-A: \x1b", 400, "control character");
    refused_at("GET /metrics HTTP/1.1\r\nX-A: a\0b\r\n", 33, 400, 30,
               "control character");
}

/* HTTP/1.1 needs exactly one Host, with a host and port in it. */
static void host(void **state)
{
    (void)state;
    refused("GET /metrics HTTP/1.1\r\n\r\n", 400, "without a Host");
    refused("GET /metrics HTTP/1.1\r\nX-Host: x\r\n\r\n", 400, "without a Host");
    refused("GET /metrics HTTP/1.1\r\nHost: a\r\nhost:", 400, "more than one Host");
    refused("GET /metrics HTTP/1.0\r\nHost: a\r\nHOST:", 400, "more than one Host");
    refused("GET /metrics HTTP/1.1\r\nHost: a b", 400, "invalid Host");
    refused("GET /metrics HTTP/1.1\r\nHost: a/", 400, "invalid Host");
    refused("GET /metrics HTTP/1.1\r\nHost: a@", 400, "invalid Host");
    refused("GET /metrics HTTP/1.1\r\nHost: \xc3", 400, "invalid Host");
}

/* No request body: Content-Length other than 0, or Transfer-Encoding at
 * all, refused at the byte that shows it. */
static void request_bodies(void **state)
{
    (void)state;
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5", 400,
            "body is not allowed (Content-Length)");
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0001", 400,
            "body is not allowed (Content-Length)");
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0 1", 400,
            "invalid Content-Length");
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0,", 400,
            "invalid Content-Length");
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -", 400,
            "invalid Content-Length");
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: +", 400,
            "invalid Content-Length");
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0x", 400,
            "invalid Content-Length");
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: \r", 400,
            "invalid Content-Length");
    refused("GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:", 400,
            "body is not allowed (Transfer-Encoding)");
    refused("GET /metrics HTTP/1.0\r\ntransfer-encoding:", 400,
            "body is not allowed (Transfer-Encoding)");
}

/* ---- bounds --------------------------------------------------------------- */

/* A request line of 2048 bytes is read; one of 2049 is 414 at its 2049th
 * byte, without waiting for its end. */
static void request_line_bound(void **state)
{
    (void)state;
    static char req[HTTP_LINE_MAX + 64], target[HTTP_LINE_MAX];
    size_t tlen = HTTP_LINE_MAX - strlen("GET  HTTP/1.1");
    target[0] = '/';
    memset(target + 1, 'a', tlen - 1);
    target[tlen] = '\0';
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target);
    assert_int_equal(strchr(req, '\r') - req, HTTP_LINE_MAX);
    accepted(req, HTTP_METHOD_GET, target, 1);

    snprintf(req, sizeof(req), "GET %sa HTTP/1.1\r\nHost: x\r\n\r\n", target);
    refused_at(req, strlen(req), 414, HTTP_LINE_MAX + 1, "longer than 2048");
    /* However long a part is: a method of 2049 bytes too. */
    memset(req, 'G', HTTP_LINE_MAX + 1);
    refused_at(req, HTTP_LINE_MAX + 1, 414, HTTP_LINE_MAX + 1, "longer than 2048");
}

/* A head with `pad` bytes in an X-Pad value, into buf; returns its length. */
static size_t padded_head(char *buf, size_t size, size_t pad)
{
    int n = snprintf(buf, size, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    assert_true(n > 0 && (size_t)n + pad + 4 < size);
    memset(buf + n, 'p', pad);
    memcpy(buf + n + pad, "\r\n\r\n", 5);
    return (size_t)n + pad + 4;
}

/* A head of 8192 bytes is read; one of 8193 is 431 at its 8192nd byte:
 * the reader never needs a byte past the bound to refuse it.  Many short
 * lines are bounded the same way. */
static void head_bound(void **state)
{
    (void)state;
    size_t size = 3 * HTTP_HEAD_MAX;
    char *req = malloc(size);
    assert_non_null(req);
    size_t fixed = padded_head(req, size, 0);

    size_t len = padded_head(req, size, HTTP_HEAD_MAX - fixed);
    assert_int_equal(len, HTTP_HEAD_MAX);
    accepted(req, HTTP_METHOD_GET, "/metrics", 1);

    len = padded_head(req, size, HTTP_HEAD_MAX - fixed + 1);
    assert_int_equal(len, HTTP_HEAD_MAX + 1);
    refused_at(req, len, 431, HTTP_HEAD_MAX, "longer than 8192");
    /* Fed just the 8192 bytes it may read: refused already. */
    refused_at(req, HTTP_HEAD_MAX, 431, HTTP_HEAD_MAX, "longer than 8192");
    /* Fed far more at once: it takes 8192 and stops. */
    len = padded_head(req, size, 2 * HTTP_HEAD_MAX);
    refused_at(req, len, 431, HTTP_HEAD_MAX, "longer than 8192");

    /* Many header lines, none long. */
    size_t off = (size_t)snprintf(req, size, "GET /metrics HTTP/1.1\r\nHost: x\r\n");
    while (off + 8 < size) {
        memcpy(req + off, "A: b\r\n", 6);
        off += 6;
    }
    refused_at(req, off, 431, HTTP_HEAD_MAX, "longer than 8192");
    free(req);
}

/* ---- responses ------------------------------------------------------------ */

static void response_heads(void **state)
{
    (void)state;
    char buf[512];
    /* RFC 9110's example date: Sun, 06 Nov 1994 08:49:37 GMT. */
    const time_t when = 784111777;
    int n = http_response_head(buf, sizeof(buf), 200, "text/plain; version=0.0.4", 1234,
                               when);
    const char *want = "HTTP/1.1 200 OK\r\n"
                       "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                       "Content-Type: text/plain; version=0.0.4\r\n"
                       "Content-Length: 1234\r\n"
                       "Connection: close\r\n"
                       "\r\n";
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));

    n = http_response_head(buf, sizeof(buf), 405, "text/plain; charset=utf-8", 0, 0);
    want = "HTTP/1.1 405 Method Not Allowed\r\n"
           "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n"
           "Content-Length: 0\r\n"
           "Allow: GET, HEAD\r\n"
           "Connection: close\r\n"
           "\r\n";
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));

    /* Too small: -1, for every size short of the head and its NUL. */
    for (size_t size = 0; size <= strlen(want); size++)
        assert_int_equal(http_response_head(buf, size, 405, "text/plain; charset=utf-8",
                                            0, 0),
                         -1);
}

static void status_texts(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *text;
    } cases[] = {
        {200, "OK"},
        {400, "Bad Request"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {414, "URI Too Long"},
        {431, "Request Header Fields Too Large"},
        {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"},
        {500, "Unknown"},
        {0, "Unknown"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(http_status_text(cases[i].status), cases[i].text);
}

/* ---- fuzzing seeds --------------------------------------------------- */

/* The seeds say what they are: valid-* are complete heads, invalid-* are
 * refused, however they are fed. */
static void fuzz_seeds(void **state)
{
    DIR *d = open_corpus("http");
    (void)state;
    size_t valid = 0, invalid = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool want_valid = strncmp(e->d_name, "valid-", 6) == 0;
        static char data[4 * HTTP_HEAD_MAX];
        if (!want_valid && strncmp(e->d_name, "invalid-", 8) != 0)
            continue;
        size_t n = read_seed("http", e->d_name, data, sizeof(data));
        struct http_reader r;
        size_t taken;
        enum http_result res = read_every_way(&r, data, n, &taken);
        if (res != (want_valid ? HTTP_COMPLETE : HTTP_BAD))
            fail_msg("%s: result %d, status %d (%s)", e->d_name, (int)res, r.status,
                     r.why != NULL ? r.why : "");
        *(want_valid ? &valid : &invalid) += 1;
    }
    closedir(d);
    assert_true(valid >= 4);
    assert_true(invalid >= 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_requests),
        cmocka_unit_test(any_target_is_read),
        cmocka_unit_test(header_fields),
        cmocka_unit_test(content_length_zero),
        cmocka_unit_test(bytes_after_the_head),
        cmocka_unit_test(bare_lf_and_lone_cr),
        cmocka_unit_test(spaces_in_the_request_line),
        cmocka_unit_test(bad_characters_in_the_request_line),
        cmocka_unit_test(versions),
        cmocka_unit_test(methods),
        cmocka_unit_test(header_syntax),
        cmocka_unit_test(host),
        cmocka_unit_test(request_bodies),
        cmocka_unit_test(request_line_bound),
        cmocka_unit_test(head_bound),
        cmocka_unit_test(response_heads),
        cmocka_unit_test(status_texts),
        cmocka_unit_test(fuzz_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
