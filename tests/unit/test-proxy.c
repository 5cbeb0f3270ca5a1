/*
 * The PROXY protocol (src/proxy.c): valid v1 and v2 headers of each kind,
 * every malformed one refused at the first byte that makes it so, every
 * prefix of a valid header asking for more, the payload left alone, and
 * proxy_build's output byte for byte and back through proxy_parse.
 *
 * Every parse reads from a heap copy of exactly the bytes given, so that
 * valgrind and ASan catch a read past len.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "proxy.h"
#include "seeds.h"

#define NOT_PROXY "not a PROXY protocol header"
#define V1_PROTO "PROXY v1: expected TCP4, TCP6 or UNKNOWN"
#define V1_SRC "PROXY v1: invalid source address"
#define V1_DST "PROXY v1: invalid destination address"
#define V1_SPORT "PROXY v1: invalid source port"
#define V1_DPORT "PROXY v1: invalid destination port"
#define V1_CRLF "PROXY v1: expected CRLF after the destination port"
#define V1_LONG "PROXY v1 header longer than 107 bytes"
#define V2_VERSION "PROXY v2: unsupported version (not 2)"
#define V2_COMMAND "PROXY v2: unknown command (neither LOCAL nor PROXY)"
#define V2_DGRAM "PROXY v2: datagram transport refused (stream only)"
#define V2_FAMILY "PROXY v2: unknown address family or transport"
#define V2_LONG "PROXY v2 header longer than 1024 bytes"
#define V2_SHORT "PROXY v2: length shorter than the address block"
#define V2_NUL "PROXY v2: unix socket path without its NUL"

/* The v2 signature, written out here rather than taken from proxy.c. */
static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* proxy_parse on a heap copy of exactly data[0..len). */
static int parse(const void *data, size_t len, struct proxy_info *info, const char **why)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    int rc = proxy_parse(copy, len, info, why);
    free(copy);
    return rc;
}

/* Asserts that data[0..len) holds a header of hlen bytes (anything after
 * it is payload) and that every shorter prefix asks for more. */
static void expect_header(const void *data, size_t len, size_t hlen,
                          struct proxy_info *info)
{
    const char *why = NULL;
    for (size_t k = 0; k < hlen; k++) {
        int rc = parse(data, k, info, &why);
        if (rc != 0)
            fail_msg("prefix of %zu bytes of a %zu-byte header: %d (%s)", k, hlen, rc,
                     rc < 0 ? why : "");
    }
    for (size_t k = hlen; k <= len; k++) {
        memset(info, 0xa5, sizeof(*info));
        if (parse(data, k, info, &why) != (int)hlen)
            fail_msg("%zu bytes: not a %zu-byte header: %s", k, hlen, why);
    }
}

/* Asserts that data is refused with `reason` from its first `at` bytes on,
 * and that every shorter prefix asks for more, leaving *out alone. */
static void expect_refused_at(const void *data, size_t len, size_t at, const char *reason)
{
    assert_true(at >= 1 && at <= len);
    struct proxy_info info;
    memset(&info, 0x5a, sizeof(info));
    struct proxy_info before = info;
    const char *why = NULL;
    for (size_t k = 0; k < at; k++) {
        int rc = parse(data, k, &info, &why);
        if (rc != 0)
            fail_msg("refused at %zu bytes, expected at %zu: %s", k, at,
                     rc < 0 ? why : "accepted");
    }
    for (size_t k = at; k <= len; k++) {
        why = NULL;
        if (parse(data, k, &info, &why) != -1)
            fail_msg("%zu bytes of a header refused at %zu: not refused", k, at);
        assert_string_equal(why, reason);
    }
    assert_memory_equal(&info, &before, sizeof(info));
}

/* The address addr_parse makes of text. */
static addr_t addr(const char *text)
{
    addr_t out[2];
    char err[256];
    size_t n;
    if (addr_parse(text, ADDR_LISTEN, out, 2, &n, err, sizeof(err)) != 0)
        fail_msg("%s: %s", text, err);
    return out[0];
}

/* Asserts that a is exactly the address addr_parse makes of text. */
static void expect_addr(const addr_t *a, const char *text)
{
    addr_t expected = addr(text);
    char buf[ADDR_STRLEN];
    addr_format(a, buf, sizeof(buf));
    assert_string_equal(buf, text);
    assert_int_equal(a->len, expected.len);
    assert_true(addr_equal(a, &expected));
    assert_memory_equal(&a->u, &expected.u, a->len);
}

/* ---- v1 -------------------------------------------------------------- */

/* A TCP4 line with payload after it: the return value is the line alone. */
static void test_v1_tcp4(void **state)
{
    static const char hdr[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
    static const char data[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"
                               "GET / HTTP/1.0\r\n\r\n";
    (void)state;
    struct proxy_info info;
    expect_header(data, strlen(data), strlen(hdr), &info);
    assert_false(info.local);
    expect_addr(&info.src, "192.0.2.1:56324");
    expect_addr(&info.dst, "198.51.100.2:443");
}

/* The widest and the narrowest TCP4 lines. */
static void test_v1_tcp4_extremes(void **state)
{
    static const char max[] =
        "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    static const char min[] = "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n";
    (void)state;
    struct proxy_info info;
    expect_header(max, strlen(max), strlen(max), &info);
    expect_addr(&info.src, "255.255.255.255:65535");
    expect_addr(&info.dst, "255.255.255.255:65535");
    expect_header(min, strlen(min), strlen(min), &info);
    expect_addr(&info.src, "0.0.0.0:0");
    expect_addr(&info.dst, "0.0.0.0:0");
}

/* TCP6 lines: upper-case hex, v4-mapped, and the longest one (104 bytes). */
static void test_v1_tcp6(void **state)
{
    static const char hdr[] = "PROXY TCP6 2001:db8::1 2001:DB8::2 1 65535\r\n";
    static const char mapped[] =
        "PROXY TCP6 ::ffff:192.0.2.1 ::ffff:198.51.100.2 80 443\r\nx";
    /* the longest v1 line the specification lists: 104 bytes */
    static const char longest[] =
        "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    (void)state;
    struct proxy_info info;
    expect_header(hdr, strlen(hdr), strlen(hdr), &info);
    assert_false(info.local);
    expect_addr(&info.src, "[2001:db8::1]:1");
    expect_addr(&info.dst, "[2001:db8::2]:65535");
    expect_header(mapped, strlen(mapped), strlen(mapped) - 1, &info);
    expect_addr(&info.src, "[::ffff:192.0.2.1]:80");
    expect_addr(&info.dst, "[::ffff:198.51.100.2]:443");
    assert_int_equal(strlen(longest), 104);
    expect_header(longest, strlen(longest), 104, &info);
    expect_addr(&info.dst, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
}

/* UNKNOWN: no addresses, anything up to the first CRLF, 107 bytes at most. */
static void test_v1_unknown(void **state)
{
    static const char *const cases[] = {
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
        "PROXY UNKNOWN anything at all, even \n or \r alone\r\n",
        "PROXY UNKNOWN\r\r\n",
    };
    static const char payload[] = "PROXY UNKNOWN x\r\nPROXY UNKNOWN\r\n";
    (void)state;
    struct proxy_info info;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_header(cases[i], strlen(cases[i]), strlen(cases[i]), &info);
        assert_true(info.local);
    }
    /* the first CRLF ends it, whatever follows */
    expect_header(payload, strlen(payload), strlen("PROXY UNKNOWN x\r\n"), &info);
    assert_true(info.local);

    /* 107 bytes with the CRLF is accepted, 108 is not */
    char exact[108];
    memset(exact, 'x', sizeof(exact));
    memcpy(exact, "PROXY UNKNOWN ", 14);
    memcpy(exact + 105, "\r\n", 2);
    expect_header(exact, 107, 107, &info);
    assert_true(info.local);
    memcpy(exact + 105, "x\r\n", 3);
    expect_refused_at(exact, 108, 107, V1_LONG);
}

/* Each malformed v1 line is refused at the byte that makes it so. */
static void test_v1_malformed(void **state)
{
    static const struct {
        const char *data;   /* the whole input */
        const char *prefix; /* its shortest refused prefix */
        const char *why;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", "G", NOT_PROXY},
        {"proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "p", NOT_PROXY},
        {"PROXI TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "PROXI", NOT_PROXY},
        {"PROXY\tTCP4 192.0.2.1 198.51.100.2 1 2\r\n", "PROXY\t", NOT_PROXY},
        {"PROXYTCP4 192.0.2.1 198.51.100.2 1 2\r\n", "PROXYT", NOT_PROXY},
        {"PROXY  TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "PROXY  ", V1_PROTO},
        {"PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n", "PROXY TCP5", V1_PROTO},
        {"PROXY TCP 192.0.2.1 198.51.100.2 1 2\r\n", "PROXY TCP ", V1_PROTO},
        {"PROXY TCP4\r\n", "PROXY TCP4\r", V1_PROTO},
        {"PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n", "PROXY t", V1_PROTO},
        {"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n", "PROXY UD", V1_PROTO},
        {"PROXY UNKNOWNX\r\n", "PROXY UNKNOWNX", V1_PROTO},
        {"PROXY unknown\r\n", "PROXY u", V1_PROTO},
        {"PROXY \r\n", "PROXY \r", V1_PROTO},
        {"PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n", "PROXY TCP4  ", V1_SRC},
        {"PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n", "PROXY TCP4 192.0.2.256 ",
         V1_SRC},
        {"PROXY TCP4 01.2.3.4 198.51.100.2 1 2\r\n", "PROXY TCP4 01.2.3.4 ", V1_SRC},
        {"PROXY TCP4 1.2.3 198.51.100.2 1 2\r\n", "PROXY TCP4 1.2.3 ", V1_SRC},
        {"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n", "PROXY TCP4 2001:", V1_SRC},
        {"PROXY TCP4 1111111111111111 198.51.100.2 1 2\r\n",
         "PROXY TCP4 1111111111111111", V1_SRC},
        {"PROXY TCP4 192.0.2.1\r\n", "PROXY TCP4 192.0.2.1\r", V1_SRC},
        {"PROXY TCP6 192.0.2.1 192.0.2.2 1 2\r\n", "PROXY TCP6 192.0.2.1 ", V1_SRC},
        {"PROXY TCP6 2001:db8::g 2001:db8::2 1 2\r\n", "PROXY TCP6 2001:db8::g", V1_SRC},
        {"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::2 1 2\r\n", "PROXY TCP6 1:2:3:4:5:6:7:8:9 ",
         V1_SRC},
        {"PROXY TCP6 [::1] ::2 1 2\r\n", "PROXY TCP6 [", V1_SRC},
        {"PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n", "PROXY TCP4 192.0.2.1  ", V1_DST},
        {"PROXY TCP4 192.0.2.1 198.51.100.256 1 2\r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.256 ", V1_DST},
        {"PROXY TCP6 ::1 192.0.2.2 1 2\r\n", "PROXY TCP6 ::1 192.0.2.2 ", V1_DST},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 +", V1_SPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 -", V1_SPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 080 2\r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 08", V1_SPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 00 2\r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 00", V1_SPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 65536", V1_SPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 123456 2\r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 123456", V1_SPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 0x10 2\r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 0x", V1_SPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2  1 2\r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2  ", V1_SPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 1\r", V1_SPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 \r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 1 \r", V1_DPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 ", V1_DPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n", V1_DPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 99999\r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 1 99999", V1_DPORT},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX",
         "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX", V1_CRLF},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\r\n",
         "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\r", V1_CRLF},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t at = strlen(cases[i].prefix);
        assert_memory_equal(cases[i].data, cases[i].prefix, at);
        expect_refused_at(cases[i].data, strlen(cases[i].data), at, cases[i].why);
    }
}

/* A NUL inside a field is refused, not taken for the end of a string. */
static void test_v1_nul_byte(void **state)
{
    static const char data[] = "PROXY TCP4 192.0\0.2.1 198.51.100.2 1 2\r\n";
    static const char unknown[] = "PROXY UNKNOWN \0\r\n";
    (void)state;
    expect_refused_at(data, sizeof(data) - 1, strlen("PROXY TCP4 192.0") + 1, V1_SRC);
    struct proxy_info info;
    /* UNKNOWN ignores what precedes the CRLF, NUL bytes too */
    expect_header(unknown, sizeof(unknown) - 1, sizeof(unknown) - 1, &info);
}

/* Lines with no CRLF in 107 bytes are refused at the 107th. */
static void test_v1_too_long(void **state)
{
    /* valid addresses and ports, but past 107 bytes */
    static const char tcp6[] =
        "PROXY TCP6 0000:0000:0000:0000:0000:ffff:192.168.100.200 "
        "0000:0000:0000:0000:0000:ffff:192.168.100.201 65535 65535\r\n";
    (void)state;
    expect_refused_at(tcp6, strlen(tcp6), 107, V1_LONG);
    char unknown[300];
    memset(unknown, 'x', sizeof(unknown));
    memcpy(unknown, "PROXY UNKNOWN ", 14);
    expect_refused_at(unknown, sizeof(unknown), 107, V1_LONG);
}

/* ---- v2 -------------------------------------------------------------- */

/* Writes a v2 header (signature, ver_cmd, fam, the length field `len`) and
 * then body[0..n) into out; returns 16 + n. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, uint16_t len,
                 const void *body, size_t n)
{
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    if (n > 0)
        memcpy(out + 16, body, n);
    return 16 + n;
}

/* 192.0.2.1:56324 to 198.51.100.2:443 as a v2 TCP4 address block. */
static const uint8_t tcp4_block[12] = {192, 0, 2,    1,    198,  51,
                                       100, 2, 0xdc, 0x04, 0x01, 0xbb};

/* A datagram's v2 header (UDP4, DGRAM): parsed whole; a stream one, a v1
 * line, or one longer than the datagram refused; and built back. */
static void test_v2_dgram(void **state)
{
    (void)state;
    uint8_t data[64];
    size_t n = v2(data, 0x21, 0x12, 12, tcp4_block, sizeof(tcp4_block));
    memcpy(data + n, "dns?", 4);
    struct proxy_info info;
    const char *why = NULL;
    assert_int_equal(proxy_parse_dgram(data, n + 4, &info, &why), (int)n);
    assert_false(info.local);
    assert_int_equal(info.src.u.sa.sa_family, AF_INET);
    assert_int_equal(addr_port(&info.src), 56324);
    assert_int_equal(addr_port(&info.dst), 443);
    /* UDP6 and LOCAL too. */
    uint8_t block6[36] = {0};
    n = v2(data, 0x21, 0x22, 36, block6, sizeof(block6));
    assert_int_equal(proxy_parse_dgram(data, n, &info, &why), (int)n);
    n = v2(data, 0x20, 0x00, 0, NULL, 0);
    assert_int_equal(proxy_parse_dgram(data, n, &info, &why), (int)n);
    assert_true(info.local);
    /* A stream transport, in a datagram, and a datagram one on a stream. */
    n = v2(data, 0x21, 0x11, 12, tcp4_block, sizeof(tcp4_block));
    assert_int_equal(proxy_parse_dgram(data, n, &info, &why), -1);
    assert_string_equal(why, "PROXY v2: stream transport in a datagram (DGRAM only)");
    n = v2(data, 0x21, 0x12, 12, tcp4_block, sizeof(tcp4_block));
    assert_int_equal(proxy_parse(data, n, &info, &why), -1);
    assert_string_equal(why, "PROXY v2: datagram transport refused (stream only)");
    /* Cut short: a datagram does not get more bytes later. */
    assert_int_equal(proxy_parse_dgram(data, n - 1, &info, &why), -1);
    assert_string_equal(why, "PROXY v2 header longer than the datagram");
    static const char v1[] = "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n";
    assert_int_equal(proxy_parse_dgram((const uint8_t *)v1, sizeof(v1) - 1, &info, &why),
                     -1);
    assert_string_equal(why, "PROXY v1 in a datagram (v2 only)");
    assert_int_equal(proxy_parse_dgram(data, 0, &info, &why), -1);
    /* What a UDP relay sends: the DGRAM transport. */
    n = v2(data, 0x21, 0x12, 12, tcp4_block, sizeof(tcp4_block));
    assert_int_equal(proxy_parse_dgram(data, n, &info, &why), (int)n);
    addr_t src = info.src, dst = info.dst;
    uint8_t built[64];
    int len = proxy_build(PROXY_V2_DGRAM, &src, &dst, built, sizeof(built));
    assert_int_equal(len, (int)n);
    assert_memory_equal(built, data, n);
}

/* v2 PROXY over TCP4, with payload after it. */
static void test_v2_tcp4(void **state)
{
    uint8_t data[64];
    size_t n = v2(data, 0x21, 0x11, 12, tcp4_block, 12);
    (void)state;
    memcpy(data + n, "GET /", 5);
    struct proxy_info info;
    expect_header(data, n + 5, 28, &info);
    assert_false(info.local);
    expect_addr(&info.src, "192.0.2.1:56324");
    expect_addr(&info.dst, "198.51.100.2:443");
}

/* v2 PROXY over TCP6, with payload after it. */
static void test_v2_tcp6(void **state)
{
    uint8_t block[36] = {0x20, 0x01, 0x0d,     0xb8, [15] = 1, 0x20, 0x01,
                         0x0d, 0xb8, [31] = 2, 0x00, 0x01,     0xff, 0xff};
    uint8_t data[64];
    size_t n = v2(data, 0x21, 0x21, 36, block, 36);
    (void)state;
    data[n] = 'x';
    struct proxy_info info;
    expect_header(data, n + 1, 52, &info);
    assert_false(info.local);
    expect_addr(&info.src, "[2001:db8::1]:1");
    expect_addr(&info.dst, "[2001:db8::2]:65535");
}

/* v2 PROXY over AF_UNIX: an unnamed client, and the longest path. */
static void test_v2_unix(void **state)
{
    (void)state;
    uint8_t block[216] = {0};
    /* an unnamed client socket (empty path) to a named one */
    strcpy((char *)block + 108, "/run/echo.sock");
    uint8_t data[300];
    size_t n = v2(data, 0x21, 0x31, 216, block, 216);
    memcpy(data + n, "\r\n\r\n", 4);
    struct proxy_info info;
    expect_header(data, n + 4, 232, &info);
    assert_false(info.local);
    assert_int_equal(info.src.u.sa.sa_family, AF_UNIX);
    assert_int_equal(info.src.len, offsetof(struct sockaddr_un, sun_path) + 1);
    assert_string_equal(info.src.u.un.sun_path, "");
    expect_addr(&info.dst, "unix:/run/echo.sock");

    /* the longest path with its NUL in 108 bytes */
    memset(block, 'a', 107);
    block[0] = '/';
    block[107] = '\0';
    n = v2(data, 0x21, 0x31, 216, block, 216);
    expect_header(data, n, 232, &info);
    assert_int_equal(strlen(info.src.u.un.sun_path), 107);
    assert_memory_equal(info.src.u.un.sun_path, block, 107);
    assert_int_equal(info.src.len, offsetof(struct sockaddr_un, sun_path) + 108);
}

/* LOCAL, and PROXY with AF_UNSPEC, give no addresses. */
static void test_v2_local(void **state)
{
    static const uint8_t fams[] = {0x00, 0x11, 0x21, 0x31, 0x12, 0xff};
    (void)state;
    uint8_t data[64];
    struct proxy_info info;
    size_t n;
    /* LOCAL: the family byte and any address block are ignored */
    for (size_t i = 0; i < sizeof(fams); i++) {
        n = v2(data, 0x20, fams[i], 0, NULL, 0);
        data[n] = 'p';
        expect_header(data, n + 1, 16, &info);
        assert_true(info.local);
    }
    n = v2(data, 0x20, 0x11, 12, tcp4_block, 12);
    expect_header(data, n, 28, &info);
    assert_true(info.local);

    /* PROXY with AF_UNSPEC: no addresses either, block skipped */
    n = v2(data, 0x21, 0x00, 0, NULL, 0);
    expect_header(data, n, 16, &info);
    assert_true(info.local);
    n = v2(data, 0x21, 0x00, 5, "abcde", 5);
    expect_header(data, n, 21, &info);
    assert_true(info.local);
}

/* TLVs after the addresses are skipped by the total length. */
static void test_v2_tlvs(void **state)
{
    /* ALPN "h2", then NOOP with 3 bytes: skipped, not interpreted */
    static const uint8_t tlvs[] = {0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x03, 0, 0, 0};
    (void)state;
    uint8_t body[12 + sizeof(tlvs)];
    memcpy(body, tcp4_block, 12);
    memcpy(body + 12, tlvs, sizeof(tlvs));
    uint8_t data[128];
    size_t n = v2(data, 0x21, 0x11, (uint16_t)sizeof(body), body, sizeof(body));
    memcpy(data + n, "payload", 7);
    struct proxy_info info;
    expect_header(data, n + 7, 16 + 12 + sizeof(tlvs), &info);
    expect_addr(&info.src, "192.0.2.1:56324");
    expect_addr(&info.dst, "198.51.100.2:443");

    /* a TLV whose own length lies is not looked at: the total is honoured */
    body[12 + 2] = 0xff;
    n = v2(data, 0x21, 0x11, (uint16_t)sizeof(body), body, sizeof(body));
    expect_header(data, n, n, &info);
}

/* A v2 header of PROXY_MAX_HEADER bytes is accepted, one more is not. */
static void test_v2_bound(void **state)
{
    uint8_t *data = calloc(1, PROXY_MAX_HEADER + 16);
    (void)state;
    assert_non_null(data);
    /* exactly PROXY_MAX_HEADER bytes: accepted once all are in */
    v2(data, 0x21, 0x11, PROXY_MAX_HEADER - 16, tcp4_block, 12);
    struct proxy_info info;
    expect_header(data, PROXY_MAX_HEADER + 16, PROXY_MAX_HEADER, &info);
    expect_addr(&info.src, "192.0.2.1:56324");
    /* one more: refused as soon as the length field is in */
    v2(data, 0x21, 0x11, PROXY_MAX_HEADER - 15, tcp4_block, 12);
    expect_refused_at(data, PROXY_MAX_HEADER + 16, 16, V2_LONG);
    v2(data, 0x21, 0x11, 0xffff, tcp4_block, 12);
    expect_refused_at(data, PROXY_MAX_HEADER + 16, 16, V2_LONG);
    v2(data, 0x20, 0x00, 0xffff, NULL, 0);
    expect_refused_at(data, 16, 16, V2_LONG);
    free(data);
}

/* Bad version, command, family or length, each refused at its byte. */
static void test_v2_malformed(void **state)
{
    static const struct {
        uint8_t ver_cmd, fam;
        uint16_t len;
        size_t at;
        const char *why;
    } cases[] = {
        {0x11, 0x11, 12, 13, V2_VERSION}, {0x10, 0x00, 0, 13, V2_VERSION},
        {0x01, 0x11, 12, 13, V2_VERSION}, {0x31, 0x11, 12, 13, V2_VERSION},
        {0xf1, 0x11, 12, 13, V2_VERSION}, {0x22, 0x11, 12, 13, V2_COMMAND},
        {0x2f, 0x11, 12, 13, V2_COMMAND}, {0x21, 0x12, 12, 14, V2_DGRAM},
        {0x21, 0x22, 36, 14, V2_DGRAM},   {0x21, 0x32, 216, 14, V2_DGRAM},
        {0x21, 0x01, 12, 14, V2_FAMILY},  {0x21, 0x10, 12, 14, V2_FAMILY},
        {0x21, 0x13, 12, 14, V2_FAMILY},  {0x21, 0x33, 216, 14, V2_FAMILY},
        {0x21, 0x41, 12, 14, V2_FAMILY},  {0x21, 0xff, 12, 14, V2_FAMILY},
        {0x21, 0x11, 11, 16, V2_SHORT},   {0x21, 0x11, 0, 16, V2_SHORT},
        {0x21, 0x21, 35, 16, V2_SHORT},   {0x21, 0x21, 12, 16, V2_SHORT},
        {0x21, 0x31, 215, 16, V2_SHORT},
    };
    (void)state;
    uint8_t body[216] = {0}, data[300];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = v2(data, cases[i].ver_cmd, cases[i].fam, cases[i].len, body,
                      sizeof(body));
        expect_refused_at(data, n, cases[i].at, cases[i].why);
    }
}

/* Any wrong signature byte is refused as soon as it arrives. */
static void test_v2_bad_signature(void **state)
{
    (void)state;
    uint8_t data[64];
    for (size_t i = 0; i < 12; i++) {
        size_t n = v2(data, 0x21, 0x11, 12, tcp4_block, 12);
        data[i] ^= 0xff;
        expect_refused_at(data, n, i + 1, NOT_PROXY);
        data[i] ^= 0x20;
        expect_refused_at(data, n, i + 1, NOT_PROXY);
    }
    /* v1 and v2 signatures do not mix */
    memcpy(data, "\r\nPROXY TCP4", 12);
    expect_refused_at(data, 12, 3, NOT_PROXY);
}

/* A Unix path filling its 108 bytes without a NUL is refused. */
static void test_v2_unix_without_nul(void **state)
{
    (void)state;
    uint8_t block[216];
    memset(block, 'a', sizeof(block));
    block[108] = '\0';
    uint8_t data[300];
    size_t n = v2(data, 0x21, 0x31, 216, block, 216);
    expect_refused_at(data, n, n, V2_NUL);
    memset(block, 'a', sizeof(block));
    block[0] = '\0';
    n = v2(data, 0x21, 0x31, 216, block, 216);
    expect_refused_at(data, n, n, V2_NUL);
}

/* Empty input needs more; why may be NULL. */
static void test_parse_edges(void **state)
{
    (void)state;
    struct proxy_info info;
    const char *why = "untouched";
    assert_int_equal(proxy_parse(NULL, 0, &info, &why), 0);
    assert_int_equal(parse("\r", 1, &info, NULL), 0);
    assert_int_equal(parse("X", 1, &info, NULL), -1);
    assert_int_equal(parse("PROXY UNKNOWN\r\n", 15, &info, NULL), 15);
}

/* ---- proxy_build ----------------------------------------------------- */

struct build_case {
    const char *src, *dst;   /* as addr_parse takes them */
    const char *v1;          /* the exact v1 line */
    uint8_t fam;             /* the v2 family byte */
    const char *psrc, *pdst; /* what parsing either gives, NULL for local */
};

static const struct build_case build_cases[] = {
    {"192.0.2.1:56324", "198.51.100.2:443",
     "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", 0x11, "192.0.2.1:56324",
     "198.51.100.2:443"},
    {"[2001:db8::1]:1", "[2001:db8::2]:65535",
     "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", 0x21, "[2001:db8::1]:1",
     "[2001:db8::2]:65535"},
    /* v4 beside v6: v4-mapped */
    {"192.0.2.1:56324", "[2001:db8::2]:65535",
     "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 56324 65535\r\n", 0x21,
     "[::ffff:192.0.2.1]:56324", "[2001:db8::2]:65535"},
    {"[2001:db8::1]:1", "198.51.100.2:443",
     "PROXY TCP6 2001:db8::1 ::ffff:198.51.100.2 1 443\r\n", 0x21, "[2001:db8::1]:1",
     "[::ffff:198.51.100.2]:443"},
    /* v4-mapped beside v4: v4 */
    {"[::ffff:192.0.2.1]:56324", "198.51.100.2:443",
     "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", 0x11, "192.0.2.1:56324",
     "198.51.100.2:443"},
    {"192.0.2.1:56324", "[::ffff:198.51.100.2]:443",
     "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", 0x11, "192.0.2.1:56324",
     "198.51.100.2:443"},
    /* v4-mapped beside v6, mapped or not: stays v6 */
    {"[::ffff:192.0.2.1]:56324", "[::ffff:198.51.100.2]:443",
     "PROXY TCP6 ::ffff:192.0.2.1 ::ffff:198.51.100.2 56324 443\r\n", 0x21,
     "[::ffff:192.0.2.1]:56324", "[::ffff:198.51.100.2]:443"},
    {"[::ffff:192.0.2.1]:56324", "[2001:db8::2]:80",
     "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 56324 80\r\n", 0x21,
     "[::ffff:192.0.2.1]:56324", "[2001:db8::2]:80"},
    {"0.0.0.0:0", "255.255.255.255:65535",
     "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", 0x11, "0.0.0.0:0",
     "255.255.255.255:65535"},
    {"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
     "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535",
     "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe 65535 65535\r\n",
     0x21, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
     "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535"},
    {"unix:/run/client.sock", "unix:/run/echo.sock", "PROXY UNKNOWN\r\n", 0x31,
     "unix:/run/client.sock", "unix:/run/echo.sock"},
    /* no common family: unknown, AF_UNSPEC */
    {"unix:/run/client.sock", "192.0.2.1:80", "PROXY UNKNOWN\r\n", 0x00, NULL, NULL},
    {"[2001:db8::1]:1", "unix:/run/echo.sock", "PROXY UNKNOWN\r\n", 0x00, NULL, NULL},
};

/* The v2 address block length of a family byte. */
static size_t block_len(uint8_t fam)
{
    return fam == 0x11 ? 12 : fam == 0x21 ? 36 : fam == 0x31 ? 216 : 0;
}

/* Asserts the parsed info is what c says. */
static void expect_info(const struct build_case *c, const struct proxy_info *info)
{
    if (c->psrc == NULL) {
        assert_true(info->local);
        return;
    }
    assert_false(info->local);
    expect_addr(&info->src, c->psrc);
    expect_addr(&info->dst, c->pdst);
}

/* v1 lines for every family pair, exact, and back through the parser. */
static void test_build_v1(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(build_cases) / sizeof(build_cases[0]); i++) {
        const struct build_case *c = &build_cases[i];
        addr_t src = addr(c->src), dst = addr(c->dst);
        uint8_t buf[PROXY_MAX_HEADER];
        size_t n = strlen(c->v1);
        assert_int_equal(proxy_build(1, &src, &dst, buf, sizeof(buf)), n);
        assert_memory_equal(buf, c->v1, n);
        struct proxy_info info;
        expect_header(buf, n, n, &info);
        if (c->fam == 0x31)
            assert_true(info.local); /* v1 has no Unix addresses */
        else
            expect_info(c, &info);
        uint8_t again[PROXY_MAX_HEADER];
        if (!info.local) {
            /* built again from what was parsed: the same bytes */
            assert_int_equal(proxy_build(1, &info.src, &info.dst, again, sizeof(again)),
                             n);
            assert_memory_equal(again, buf, n);
        }
    }
}

/* v2 headers for every family pair, and back through the parser. */
static void test_build_v2(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(build_cases) / sizeof(build_cases[0]); i++) {
        const struct build_case *c = &build_cases[i];
        addr_t src = addr(c->src), dst = addr(c->dst);
        uint8_t buf[PROXY_MAX_HEADER];
        size_t n = 16 + block_len(c->fam);
        assert_int_equal(proxy_build(2, &src, &dst, buf, sizeof(buf)), n);
        uint8_t head[16];
        v2(head, 0x21, c->fam, (uint16_t)block_len(c->fam), NULL, 0);
        assert_memory_equal(buf, head, 16);
        struct proxy_info info;
        expect_header(buf, n, n, &info);
        expect_info(c, &info);
        uint8_t again[PROXY_MAX_HEADER];
        if (!info.local) {
            assert_int_equal(proxy_build(2, &info.src, &info.dst, again, sizeof(again)),
                             n);
            assert_memory_equal(again, buf, n);
        }
    }
}

/* v2 headers byte for byte: TCP4, mapped TCP6, Unix, unknown. */
static void test_build_v2_bytes(void **state)
{
    addr_t s = addr("192.0.2.1:56324"), d = addr("198.51.100.2:443");
    (void)state;
    uint8_t expected[300];
    size_t n = v2(expected, 0x21, 0x11, 12, tcp4_block, 12);
    uint8_t buf[300];
    assert_int_equal(proxy_build(2, &s, &d, buf, sizeof(buf)), n);
    assert_memory_equal(buf, expected, n);

    s = addr("192.0.2.1:56324");
    d = addr("[2001:db8::2]:443");
    uint8_t block[216] = {0};
    memcpy(block,
           (const uint8_t[]){[10] = 0xff,
                             0xff,
                             192,
                             0,
                             2,
                             1,
                             0x20,
                             0x01,
                             0x0d,
                             0xb8,
                             [31] = 2,
                             0xdc,
                             0x04,
                             0x01,
                             0xbb},
           36);
    n = v2(expected, 0x21, 0x21, 36, block, 36);
    assert_int_equal(proxy_build(2, &s, &d, buf, sizeof(buf)), n);
    assert_memory_equal(buf, expected, n);

    /* Unix paths NUL-padded to 108 bytes each */
    memset(block, 0, sizeof(block));
    strcpy((char *)block, "/run/client.sock");
    strcpy((char *)block + 108, "/run/echo.sock");
    s = addr("unix:/run/client.sock");
    d = addr("unix:/run/echo.sock");
    n = v2(expected, 0x21, 0x31, 216, block, 216);
    memset(buf, 0xa5, sizeof(buf));
    assert_int_equal(proxy_build(2, &s, &d, buf, sizeof(buf)), n);
    assert_memory_equal(buf, expected, n);

    /* no common family: PROXY command, AF_UNSPEC, no block */
    d = addr("192.0.2.1:80");
    n = v2(expected, 0x21, 0x00, 0, NULL, 0);
    assert_int_equal(proxy_build(2, &s, &d, buf, sizeof(buf)), n);
    assert_memory_equal(buf, expected, n);
}

/* A v6 scope is not part of either version. */
static void test_build_scope_dropped(void **state)
{
    addr_t s = addr("[fe80::1]:80"), d = addr("[fe80::2]:81");
    static const char line[] = "PROXY TCP6 fe80::1 fe80::2 80 81\r\n";
    (void)state;
    s.u.in6.sin6_scope_id = 1;
    d.u.in6.sin6_scope_id = 1;
    uint8_t buf[128];
    assert_int_equal(proxy_build(1, &s, &d, buf, sizeof(buf)), strlen(line));
    assert_memory_equal(buf, line, strlen(line));
    assert_int_equal(proxy_build(2, &s, &d, buf, sizeof(buf)), 52);
    struct proxy_info info;
    assert_int_equal(proxy_parse(buf, 52, &info, NULL), 52);
    expect_addr(&info.src, "[fe80::1]:80");
}

/* Every buffer shorter than the header gets -1 and is left alone; one of
 * exactly its size is filled. */
static void test_build_too_small(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(build_cases) / sizeof(build_cases[0]); i++) {
        const struct build_case *c = &build_cases[i];
        addr_t src = addr(c->src), dst = addr(c->dst);
        for (int version = 1; version <= 2; version++) {
            size_t need = version == 1 ? strlen(c->v1) : 16 + block_len(c->fam);
            for (size_t len = 0; len <= need; len++) {
                uint8_t *buf = malloc(len > 0 ? len : 1);
                assert_non_null(buf);
                memset(buf, 0xa5, len > 0 ? len : 1);
                int rc = proxy_build(version, &src, &dst, buf, len);
                if (len < need) {
                    assert_int_equal(rc, -1);
                    for (size_t k = 0; k < len; k++)
                        assert_int_equal(buf[k], 0xa5);
                } else {
                    assert_int_equal(rc, need);
                }
                free(buf);
            }
        }
    }
}

/* A Unix path unterminated in all of sun_path (as the kernel may report
 * it) does not fit v2's 108 bytes with a NUL: sent as unknown, not cut. */
static void test_build_unix_path_full(void **state)
{
    addr_t d = addr("unix:/run/echo.sock");
    (void)state;
    addr_t s;
    memset(&s, 0, sizeof(s));
    s.u.un.sun_family = AF_UNIX;
    memset(s.u.un.sun_path, 'a', sizeof(s.u.un.sun_path));
    s.len = sizeof(s.u.un);
    uint8_t buf[300];
    assert_int_equal(proxy_build(1, &s, &d, buf, sizeof(buf)), 15);
    assert_memory_equal(buf, "PROXY UNKNOWN\r\n", 15);
    uint8_t expected[16];
    v2(expected, 0x21, 0x00, 0, NULL, 0);
    assert_int_equal(proxy_build(2, &s, &d, buf, sizeof(buf)), 16);
    assert_memory_equal(buf, expected, 16);
    assert_int_equal(proxy_build(2, &d, &s, buf, sizeof(buf)), 16);
    assert_memory_equal(buf, expected, 16);
    struct proxy_info info;
    assert_int_equal(proxy_parse(buf, 16, &info, NULL), 16);
    assert_true(info.local);
}

/* Versions other than 1 and 2 are refused. */
static void test_build_bad_version(void **state)
{
    addr_t s = addr("192.0.2.1:1"), d = addr("192.0.2.2:2");
    (void)state;
    uint8_t buf[PROXY_MAX_HEADER];
    assert_int_equal(proxy_build(0, &s, &d, buf, sizeof(buf)), -1);
    assert_int_equal(proxy_build(3, &s, &d, buf, sizeof(buf)), -1);
}

/* ---- fuzzing seeds --------------------------------------------------- */

/* The seeds say what they are: valid-* start with a header, invalid-* are
 * refused. */
static void test_fuzz_seeds(void **state)
{
    DIR *d = open_corpus("proxy");
    (void)state;
    size_t valid = 0, invalid = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool want_valid = strncmp(e->d_name, "valid-", 6) == 0;
        if (!want_valid && strncmp(e->d_name, "invalid-", 8) != 0)
            continue;
        char data[PROXY_MAX_HEADER + 256];
        size_t n = read_seed("proxy", e->d_name, data, sizeof(data));
        struct proxy_info info;
        const char *why = NULL;
        int rc = parse(data, n, &info, &why);
        if (want_valid ? rc <= 0 : rc != -1)
            fail_msg("%s: %d (%s)", e->d_name, rc, why != NULL ? why : "");
        *(want_valid ? &valid : &invalid) += 1;
    }
    closedir(d);
    assert_true(valid >= 8);
    assert_true(invalid >= 8);
}

/* Runs every test of this file. */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp4_extremes),
        cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v1_malformed),
        cmocka_unit_test(test_v1_nul_byte),
        cmocka_unit_test(test_v1_too_long),
        cmocka_unit_test(test_v2_tcp4),
        cmocka_unit_test(test_v2_dgram),
        cmocka_unit_test(test_v2_tcp6),
        cmocka_unit_test(test_v2_unix),
        cmocka_unit_test(test_v2_local),
        cmocka_unit_test(test_v2_tlvs),
        cmocka_unit_test(test_v2_bound),
        cmocka_unit_test(test_v2_malformed),
        cmocka_unit_test(test_v2_bad_signature),
        cmocka_unit_test(test_v2_unix_without_nul),
        cmocka_unit_test(test_parse_edges),
        cmocka_unit_test(test_build_v1),
        cmocka_unit_test(test_build_v2),
        cmocka_unit_test(test_build_v2_bytes),
        cmocka_unit_test(test_build_scope_dropped),
        cmocka_unit_test(test_build_too_small),
        cmocka_unit_test(test_build_unix_path_full),
        cmocka_unit_test(test_build_bad_version),
        cmocka_unit_test(test_fuzz_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
