/*
 * libFuzzer target: the PROXY protocol v1/v2 parser of src/proxy.c.
 *
 * proxy_parse() is given a heap copy of exactly the input's bytes, so that
 * ASan reports any read past len; the shorter prefixes it is also given
 * have the bytes after them poisoned.  Checked:
 *
 *   - the result is -1, 0 or a length of at most len, and *why is set on a
 *     refusal; *out is untouched unless a header is returned;
 *   - the reader is incremental: every prefix of an accepted header is
 *     "need more" (0), and so is every prefix of an input that needs more;
 *     a prefix that is refused stays refused with every byte added; an
 *     accepted header gives the same length and addresses whatever follows
 *     it;
 *   - what is parsed can be sent on: proxy_build() of the addresses, in v1
 *     and in v2, parses back to the same addresses (v1 has no Unix
 *     addresses: a Unix pair is sent as UNKNOWN);
 *   - proxy_build() refuses a buffer one byte short and writes nothing;
 *   - a pair of two families is sent as one: with one address of the pair
 *     rewritten in the other family (v4 as v4-mapped v6, a v4-mapped v6 as
 *     v4), the header built parses back to the same addresses once
 *     v4-mapped ones are read as v4, both of one family; a Unix address
 *     beside an IP one is sent as UNKNOWN / AF_UNSPEC;
 *   - a datagram's header (proxy_parse_dgram()): -1 or a length, never
 *     "need more"; one accepted is the stream header of the same addresses
 *     once its transport says STREAM, and what proxy_build() makes of it
 *     for datagrams parses back the same.
 */
#include <sanitizer/asan_interface.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...)                                              \
    do {                                                              \
        if (!(cond)) {                                                \
            fprintf(stderr, "fuzz-proxy: check failed: %s: ", #cond); \
            fprintf(stderr, __VA_ARGS__);                             \
            fputc('\n', stderr);                                      \
            abort();                                                  \
        }                                                             \
    } while (0)

/* Past this, prefixes are looked at only at a few points. */
#define PREFIX_ALL (PROXY_MAX_HEADER + 64)

/* Whether two parsed headers say the same. */
static bool same_info(const struct proxy_info *a, const struct proxy_info *b)
{
    if (a->local != b->local)
        return false;
    return a->local || (addr_equal(&a->src, &b->src) && addr_equal(&a->dst, &b->dst));
}

/* proxy_parse() on buf[0..k), the bytes after k poisoned for ASan. */
static int parse_prefix(const uint8_t *buf, size_t len, size_t k, struct proxy_info *out,
                        const char **why)
{
    ASAN_POISON_MEMORY_REGION(buf + k, len - k);
    int rc = proxy_parse(buf, k, out, why);
    ASAN_UNPOISON_MEMORY_REGION(buf + k, len - k);
    return rc;
}

/* Builds a header of `version` for info's addresses and parses it back. */
static void round_trip(int version, const struct proxy_info *info)
{
    uint8_t built[PROXY_MAX_HEADER];
    int n = proxy_build(version, &info->src, &info->dst, built, sizeof(built));
    CHECK(n > 0, "v%d: proxy_build refused what was parsed (%d)", version, n);
    CHECK(n <= (version == 1 ? 107 : 16 + 216), "v%d: built %d bytes", version, n);
    uint8_t shorter[PROXY_MAX_HEADER];
    memset(shorter, 0xee, sizeof(shorter));
    CHECK(proxy_build(version, &info->src, &info->dst, shorter, (size_t)n - 1) == -1,
          "v%d: built %d bytes into %d", version, n, n - 1);
    for (int i = 0; i < n; i++)
        CHECK(shorter[i] == 0xee, "v%d: a refused build wrote byte %d", version, i);
    struct proxy_info back;
    memset(&back, 0, sizeof(back));
    const char *why = NULL;
    int rc = proxy_parse(built, (size_t)n, &back, &why);
    CHECK(rc == n, "v%d: the header built (%d bytes) parses as %d: %s", version, n, rc,
          why != NULL ? why : "");
    if (version == 1 && !info->local && info->src.u.sa.sa_family == AF_UNIX) {
        CHECK(back.local, "v1: a Unix pair is not sent as UNKNOWN");
        return;
    }
    CHECK(same_info(info, &back), "v%d: the header built parses to other addresses",
          version);
}

/* a as v4 when it is v4-mapped v6: how the pair rules compare them. */
static addr_t canonical(const addr_t *a)
{
    const uint8_t *ip6 = a->u.in6.sin6_addr.s6_addr;
    addr_t c = *a;
    if (a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr)) {
        memset(&c, 0, sizeof(c));
        c.u.in.sin_family = AF_INET;
        memcpy(&c.u.in.sin_addr, ip6 + 12, 4);
        c.u.in.sin_port = a->u.in6.sin6_port;
        c.len = sizeof(c.u.in);
    }
    return c;
}

/* Rewrites a in the other IP family, when it has a form there. */
static bool other_family(const addr_t *a, addr_t *out)
{
    if (a->u.sa.sa_family == AF_INET6) {
        *out = canonical(a);
        return out->u.sa.sa_family == AF_INET;
    }
    if (a->u.sa.sa_family != AF_INET)
        return false;
    memset(out, 0, sizeof(*out));
    out->u.in6.sin6_family = AF_INET6;
    out->u.in6.sin6_addr.s6_addr[10] = 0xff;
    out->u.in6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(out->u.in6.sin6_addr.s6_addr + 12, &a->u.in.sin_addr, 4);
    out->u.in6.sin6_port = a->u.in.sin_port;
    out->len = sizeof(out->u.in6);
    return true;
}

/* Builds src/dst in both versions and checks what they parse back to:
 * `local`, or the canonical forms of want_src and want_dst. */
static void mixed(const addr_t *src, const addr_t *dst, bool local,
                  const addr_t *want_src, const addr_t *want_dst)
{
    for (int version = 1; version <= 2; version++) {
        uint8_t built[PROXY_MAX_HEADER];
        int n = proxy_build(version, src, dst, built, sizeof(built));
        CHECK(n > 0, "v%d: a mixed pair is refused (%d)", version, n);
        struct proxy_info back;
        memset(&back, 0, sizeof(back));
        CHECK(proxy_parse(built, (size_t)n, &back, NULL) == n,
              "v%d: the header built for a mixed pair does not parse", version);
        CHECK(back.local == local, "v%d: a mixed pair parses %s", version,
              back.local ? "as UNKNOWN" : "with addresses");
        if (local)
            continue;
        CHECK(back.src.u.sa.sa_family == back.dst.u.sa.sa_family,
              "v%d: a mixed pair is sent with two families", version);
        addr_t a = canonical(want_src);
        addr_t b = canonical(&back.src);
        CHECK(addr_equal(&a, &b), "v%d: a mixed pair's source changed", version);
        a = canonical(want_dst);
        b = canonical(&back.dst);
        CHECK(addr_equal(&a, &b), "v%d: a mixed pair's destination changed", version);
    }
}

/* The pair of a parsed header, one address rewritten in the other family,
 * and each beside a Unix address. */
static void check_mixed(const struct proxy_info *info)
{
    addr_t unix_addr;
    int family = info->src.u.sa.sa_family;
    memset(&unix_addr, 0, sizeof(unix_addr));
    unix_addr.u.un.sun_family = AF_UNIX;
    memcpy(unix_addr.u.un.sun_path, "/s", 3);
    unix_addr.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 3);
    if (family == AF_UNIX) {
        addr_t v4;
        memset(&v4, 0, sizeof(v4));
        v4.u.in.sin_family = AF_INET;
        v4.len = sizeof(v4.u.in);
        mixed(&info->src, &v4, true, NULL, NULL);
        mixed(&v4, &info->dst, true, NULL, NULL);
        return;
    }
    addr_t other;
    if (other_family(&info->src, &other))
        mixed(&other, &info->dst, false, &info->src, &info->dst);
    if (other_family(&info->dst, &other))
        mixed(&info->src, &other, false, &info->src, &info->dst);
    mixed(&info->src, &unix_addr, true, NULL, NULL);
    mixed(&unix_addr, &info->dst, true, NULL, NULL);
}

/* The datagram parser on buf[0..size), which it may alter and restores. */
static void check_dgram(uint8_t *buf, size_t size)
{
    struct proxy_info info, again;
    const char *why = NULL;
    int rc = proxy_parse_dgram(buf, size, &info, &why);
    CHECK(rc == -1 || (rc > 0 && (size_t)rc <= size),
          "datagram: returned %d for %zu bytes", rc, size);
    CHECK(rc != -1 || why != NULL, "datagram: refused without a reason");
    if (rc <= 0)
        return;
    if ((buf[13] & 0x0f) == 2) { /* not UNSPEC or LOCAL: the stream form */
        buf[13] ^= 0x03;
        memset(&again, 0, sizeof(again));
        CHECK(proxy_parse(buf, size, &again, &why) == rc && same_info(&info, &again),
              "the stream form of a datagram header differs");
        buf[13] ^= 0x03;
    }
    if (info.local)
        return;
    uint8_t out[PROXY_MAX_HEADER];
    int n = proxy_build(PROXY_V2_DGRAM, &info.src, &info.dst, out, sizeof(out));
    CHECK(n > 0, "proxy_build() of a datagram header: %d", n);
    memset(&again, 0, sizeof(again));
    CHECK(proxy_parse_dgram(out, (size_t)n, &again, &why) == n,
          "a built datagram header does not parse: %s", why != NULL ? why : "");
    if (info.src.u.sa.sa_family != AF_UNIX)
        CHECK(same_info(&info, &again), "a built datagram header says otherwise");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size > 0 ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    /* Exactly size bytes: with size 0 the one byte is poisoned. */
    if (size == 0)
        ASAN_POISON_MEMORY_REGION(buf, 1);
    struct proxy_info info;
    memset(&info, 0x77, sizeof(info));
    struct proxy_info before = info;
    const char *why = NULL;
    int rc = proxy_parse(buf, size, &info, &why);
    CHECK(rc >= -1 && (rc <= 0 || (size_t)rc <= size), "returned %d for %zu bytes", rc,
          size);
    CHECK(rc != -1 || why != NULL, "refused without a reason");
    if (rc <= 0)
        CHECK(memcmp(&info, &before, sizeof(info)) == 0, "*out written, yet %d", rc);
    if (size == 0) {
        ASAN_UNPOISON_MEMORY_REGION(buf, 1);
        free(buf);
        return 0;
    }

    /* Prefixes: all of them up to a bound, a few past it. */
    size_t end = rc > 0 ? (size_t)rc : size;
    int prev = 0;
    struct proxy_info prefix_info;
    for (size_t k = 1; k < end; k++) {
        if (k > PREFIX_ALL && k != end - 1 && k % 257 != 0)
            continue;
        int p = parse_prefix(buf, size, k, &prefix_info, &why);
        if (rc > 0 || rc == 0)
            CHECK(p == 0, "a prefix of %zu bytes of a %s gives %d (%s)", k,
                  rc > 0 ? "header" : "\"need more\"", p, why != NULL ? why : "");
        else
            CHECK(prev != -1 || p == -1, "%zu bytes refused, %zu bytes give %d", k - 1, k,
                  p);
        prev = p;
    }
    if (rc > 0) {
        /* The same header alone, and with a different byte after it. */
        struct proxy_info alone;
        memset(&alone, 0, sizeof(alone));
        CHECK(parse_prefix(buf, size, (size_t)rc, &alone, &why) == rc,
              "the header alone is not %d bytes", rc);
        CHECK(same_info(&info, &alone), "the header alone says otherwise");
        if ((size_t)rc < size) {
            buf[rc] ^= 0xff;
            memset(&alone, 0, sizeof(alone));
            CHECK(proxy_parse(buf, size, &alone, &why) == rc && same_info(&info, &alone),
                  "the byte after the header changes it");
            buf[rc] ^= 0xff;
        }
        if (!info.local) {
            int sf = info.src.u.sa.sa_family, df = info.dst.u.sa.sa_family;
            CHECK(sf == df && (sf == AF_INET || sf == AF_INET6 || sf == AF_UNIX),
                  "families %d and %d", sf, df);
        }
        round_trip(1, &info);
        round_trip(2, &info);
        if (!info.local)
            check_mixed(&info);
    }
    check_dgram(buf, size);
    free(buf);
    return 0;
}
