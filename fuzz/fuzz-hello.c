/*
 * libFuzzer target: the TLS ClientHello reader of src/hello.c.
 *
 * hello_parse() is given a heap copy of exactly the input's bytes, so that
 * ASan reports any read past len; the shorter prefixes it is also given
 * have the bytes after them poisoned.  Checked:
 *
 *   - the result is one of the four, never HELLO_MORE from
 *     HELLO_MAX_STREAM bytes on; *why is set on a refusal; *out is
 *     untouched unless a hello is found;
 *   - HELLO_NOT_TLS only for a first byte other than 22 or a second other
 *     than 3, decided from those;
 *   - a name found is NUL-terminated, lowercase and valid as a pattern, and
 *     matches itself and the wildcard of its parent; without one it is "";
 *   - the reader is incremental: the prefixes need more up to a point and
 *     from there give the input's result (the same reason, the same name);
 *     the point is found by bisection and the rest is checked on a sample
 *     of prefixes; the byte after that point changes nothing;
 *   - the records do not matter: a hello found, its message put in one
 *     record or in records of another size, is found with the same name,
 *     or refused as spread too thin when those pass HELLO_MAX_STREAM bytes;
 *   - a valid pattern matches the names it describes, in any case.
 */
#include <sanitizer/asan_interface.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...)                                              \
    do {                                                              \
        if (!(cond)) {                                                \
            fprintf(stderr, "fuzz-hello: check failed: %s: ", #cond); \
            fprintf(stderr, __VA_ARGS__);                             \
            fputc('\n', stderr);                                      \
            abort();                                                  \
        }                                                             \
    } while (0)

/* Prefixes looked at besides those around the deciding one: all up to
 * this many bytes, then this many more spread over the rest. */
#define PREFIX_ALL 64
#define PREFIX_SPREAD 32

/* What one parse said. */
struct outcome {
    enum hello_result rc;
    const char *why;
    struct hello out;
};

/* hello_parse() on buf[0..k), the bytes after k poisoned for ASan. */
static struct outcome parse_prefix(const uint8_t *buf, size_t len, size_t k)
{
    struct outcome o;
    memset(&o, 0, sizeof(o));
    ASAN_POISON_MEMORY_REGION(buf + k, len - k);
    o.rc = hello_parse(buf, k, &o.out, &o.why);
    ASAN_UNPOISON_MEMORY_REGION(buf + k, len - k);
    return o;
}

/* Whether two outcomes say the same. */
static bool same(const struct outcome *a, const struct outcome *b)
{
    if (a->rc != b->rc)
        return false;
    if (a->rc == HELLO_FOUND)
        return a->out.has_sni == b->out.has_sni &&
               strcmp(a->out.server_name, b->out.server_name) == 0;
    return a->rc == HELLO_MORE || strcmp(a->why, b->why) == 0;
}

/* The checks of a name found. */
static void check_name(const struct hello *h)
{
    const char *name = h->server_name;
    CHECK(memchr(name, '\0', sizeof(h->server_name)) != NULL, "server_name unterminated");
    if (!h->has_sni) {
        CHECK(name[0] == '\0', "a name \"%s\" without has_sni", name);
        return;
    }
    CHECK(hello_pattern_valid(name), "the name found \"%s\" is no valid name", name);
    char upper[sizeof(h->server_name)];
    size_t n = strlen(name);
    for (size_t i = 0; i <= n; i++) {
        CHECK(name[i] < 'A' || name[i] > 'Z', "\"%s\" is not lowercase", name);
        upper[i] = name[i] >= 'a' && name[i] <= 'z' ? (char)(name[i] - 'a' + 'A')
                                                    : name[i];
    }
    CHECK(hello_name_matches(name, name), "\"%s\" does not match itself", name);
    CHECK(hello_name_matches(upper, name), "\"%s\" does not match \"%s\"", upper, name);
    const char *dot = strchr(name, '.');
    if (dot != NULL) {
        char wild[sizeof(h->server_name) + 1];
        snprintf(wild, sizeof(wild), "*%s", dot);
        CHECK(hello_pattern_valid(wild), "\"%s\" refused", wild);
        CHECK(hello_name_matches(wild, name), "\"%s\" does not match \"%s\"", wild, name);
        CHECK(!hello_name_matches(wild, dot + 1), "\"%s\" matches \"%s\"", wild, dot + 1);
    }
}

/* The first `at` bytes (at least 4) of the handshake bytes carried by the
 * records of buf[0..len), into hs; false when they are not all there. */
static bool unwrap(const uint8_t *buf, size_t len, uint8_t *hs, size_t at)
{
    size_t got = 0;
    for (size_t pos = 0; got < at && pos + 5 <= len;) {
        size_t n = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
        pos += 5;
        for (; n > 0 && pos < len && got < at; n--)
            hs[got++] = buf[pos++];
    }
    return got == at;
}

/* The message hs[0..n) put in records of `size` bytes: found with the
 * same name as h, or refused as spread too thin past the bound. */
static void check_reframed(const uint8_t *hs, size_t n, size_t size,
                           const struct hello *h)
{
    size_t records = (n + size - 1) / size;
    size_t len = n + 5 * records;
    uint8_t *buf = malloc(len);
    CHECK(buf != NULL, "out of memory");
    for (size_t i = 0, o = 0; i < n; i += size) {
        size_t k = n - i < size ? n - i : size;
        buf[o] = 22;
        buf[o + 1] = 3;
        buf[o + 2] = 3;
        buf[o + 3] = (uint8_t)(k >> 8);
        buf[o + 4] = (uint8_t)k;
        memcpy(buf + o + 5, hs + i, k);
        o += 5 + k;
    }
    struct outcome o = parse_prefix(buf, len, len);
    if (len > HELLO_MAX_STREAM) {
        CHECK(o.rc == HELLO_BAD, "a hello spread over %zu bytes in records of %zu: %d",
              len, size, o.rc);
    } else {
        CHECK(o.rc == HELLO_FOUND, "a hello found, in records of %zu bytes: %d (%s)",
              size, o.rc, o.why != NULL ? o.why : "");
        CHECK(o.out.has_sni == h->has_sni &&
                  strcmp(o.out.server_name, h->server_name) == 0,
              "in records of %zu bytes the hello names \"%s\", not \"%s\"", size,
              o.out.server_name, h->server_name);
    }
    free(buf);
}

/* The input as a pattern, when it is a valid one: it matches the names it
 * describes. */
static void check_pattern(const uint8_t *data, size_t size)
{
    char pattern[300], name[300];
    if (size == 0 || size >= sizeof(pattern) - 1 || memchr(data, '\0', size) != NULL)
        return;
    memcpy(pattern, data, size);
    pattern[size] = '\0';
    if (!hello_pattern_valid(pattern))
        return;
    bool wild = pattern[0] == '*';
    snprintf(name, sizeof(name), "%s%s", wild ? "x" : "", pattern + (wild ? 1 : 0));
    for (char *p = name; *p != '\0'; p++)
        *p = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
    CHECK(hello_name_matches(pattern, name), "\"%s\" does not match \"%s\"", pattern,
          name);
    if (wild)
        CHECK(!hello_name_matches(pattern, pattern + 2), "\"%s\" matches \"%s\"", pattern,
              pattern + 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_pattern(data, size);
    uint8_t *buf = malloc(size > 0 ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    /* Exactly size bytes: with size 0 the one byte is poisoned. */
    if (size == 0)
        ASAN_POISON_MEMORY_REGION(buf, 1);
    struct hello out;
    memset(&out, 0x77, sizeof(out));
    struct hello before = out;
    const char *why = NULL;
    enum hello_result rc = hello_parse(buf, size, &out, &why);
    CHECK(rc == HELLO_MORE || rc == HELLO_FOUND || rc == HELLO_NOT_TLS || rc == HELLO_BAD,
          "returned %d", (int)rc);
    CHECK(rc != HELLO_MORE || size < HELLO_MAX_STREAM, "more needed after %zu bytes",
          size);
    CHECK((rc != HELLO_BAD && rc != HELLO_NOT_TLS) || (why != NULL && why[0] != '\0'),
          "refused without a reason");
    if (rc != HELLO_FOUND)
        CHECK(memcmp(&out, &before, sizeof(out)) == 0, "*out written, yet %d", rc);
    if (size == 0) {
        ASAN_UNPOISON_MEMORY_REGION(buf, 1);
        free(buf);
        return 0;
    }
    if (rc == HELLO_NOT_TLS)
        CHECK(buf[0] != 22 || (size >= 2 && buf[1] != 3), "not TLS, yet %02x %02x",
              buf[0], size >= 2 ? buf[1] : 0);
    if (rc == HELLO_FOUND)
        check_name(&out);

    /* The shortest prefix that decides, by bisection, and a sample of the
     * others. */
    struct outcome whole = {rc, why, out};
    size_t at = size;
    if (rc != HELLO_MORE) {
        size_t lo = 0; /* needs more */
        while (at - lo > 1) {
            size_t mid = lo + (at - lo) / 2;
            if (parse_prefix(buf, size, mid).rc == HELLO_MORE)
                lo = mid;
            else
                at = mid;
        }
    }
    if (rc == HELLO_NOT_TLS)
        CHECK(at <= 2, "not TLS decided at %zu bytes", at);
    for (size_t k = 1; k <= size; k++) {
        bool near = (k < at ? at - k : k - at) <= 2;
        if (!near && k > PREFIX_ALL && k % (size / PREFIX_SPREAD + 1) != 0 &&
            k != size - 1)
            continue;
        struct outcome p = parse_prefix(buf, size, k);
        if (k < at || rc == HELLO_MORE)
            CHECK(p.rc == HELLO_MORE, "%zu bytes give %d (%s), decided at %zu", k, p.rc,
                  p.why != NULL ? p.why : "", at);
        else
            CHECK(same(&p, &whole), "%zu bytes give %d (%s), %zu bytes %d (%s)", k, p.rc,
                  p.why != NULL ? p.why : "", size, rc, why != NULL ? why : "");
    }
    if (rc != HELLO_MORE && at < size) {
        buf[at] ^= 0xff;
        struct outcome p = parse_prefix(buf, size, size);
        CHECK(same(&p, &whole), "the byte after the %zu that decide changes the result",
              at);
        buf[at] ^= 0xff;
    }

    /* Found: the same message in other records. */
    if (rc == HELLO_FOUND) {
        uint8_t head[4];
        CHECK(unwrap(buf, at, head, 4), "no handshake header in %zu bytes", at);
        size_t n = 4 + ((size_t)head[1] << 16 | (size_t)head[2] << 8 | head[3]);
        CHECK(n <= 4 + HELLO_MAX_MESSAGE, "a message of %zu bytes found", n);
        uint8_t *hs = malloc(n);
        CHECK(hs != NULL, "out of memory");
        CHECK(unwrap(buf, at, hs, n), "the message is not in the %zu bytes", at);
        check_reframed(hs, n, n, &out);
        check_reframed(hs, n, 1 + (size_t)buf[size - 1] % 64, &out);
        free(hs);
    }
    free(buf);
    return 0;
}
