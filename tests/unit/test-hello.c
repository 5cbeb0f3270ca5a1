/*
 * The ClientHello reader (src/hello.c): real ClientHellos of OpenSSL and
 * curl and ones built here, whole, in one record, in 1-byte records and in
 * two records split at every byte, every prefix asking for more; every
 * malformed one refused, with its reason, at the byte that decides it; the
 * bounds on the message (16384) and on the records that carry it (20480)
 * to the byte; the bytes after it not looked at; names matched against
 * sni_routes patterns, and the patterns judged.
 *
 * Every parse reads from a heap copy of exactly the bytes given, so that
 * valgrind and ASan catch a read past len.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hello.h"
#include "seeds.h"

#define NOT_TLS "not a TLS handshake record"
#define REC_TYPE "a record other than handshake before the ClientHello ends"
#define REC_VERSION "TLS record version not 0x0301 to 0x0304"
#define REC_EMPTY "empty TLS record"
#define REC_LONG "TLS record longer than 16640 bytes"
#define HS_TYPE "handshake message not a ClientHello"
#define TOO_LARGE "ClientHello larger than 16384 bytes"
#define TOO_SPREAD "ClientHello not complete in the first 20480 bytes"
#define SHORT "ClientHello shorter than its fixed fields"
#define VERSION "ClientHello legacy_version not 3.x"
#define PAST_END "ClientHello field past the end of the message"
#define SID_LONG "ClientHello session_id longer than 32 bytes"
#define SUITES "ClientHello cipher_suites empty or of odd length"
#define COMP "ClientHello compression_methods empty"
#define FILL "ClientHello extensions do not fill the message exactly"
#define EXT_PAST "ClientHello extension past the end of the message"
#define SNI_TWICE "ClientHello with two server_name extensions"
#define SNI_BAD "server_name extension malformed"
#define NAME_LEN "server_name host_name empty or longer than 255 bytes"
#define NAME_BAD "server_name host_name not a valid DNS name"

/* ---- captured ClientHellos ------------------------------------------- */

/*
 * Each the first bytes a client sent to `socat -u TCP-LISTEN:PORT
 * OPEN:hello.bin,creat`: one record holding the ClientHello.  The random,
 * session_id and key shares are of connections that went no further.
 */

/* openssl s_client -connect 127.0.0.1:PORT -servername a.example (OpenSSL 3.0.19,
 * TLS 1.3) */
static const uint8_t openssl_tls13[315] = {
    0x16, 0x03, 0x01, 0x01, 0x36, 0x01, 0x00, 0x01, 0x32, 0x03, 0x03, 0x9b, 0xb1, 0x41,
    0xbe, 0xe0, 0xda, 0x09, 0x3e, 0x2c, 0xf2, 0x97, 0xce, 0xfb, 0x32, 0x07, 0x63, 0xba,
    0x9f, 0x5e, 0xf2, 0xd1, 0x1b, 0xcd, 0xf3, 0x8e, 0x16, 0xd3, 0x98, 0xd1, 0xe1, 0xe5,
    0x7a, 0x20, 0x40, 0xb9, 0x21, 0x3d, 0x36, 0x44, 0xf6, 0x3d, 0xd9, 0x6e, 0xbb, 0xbc,
    0x2e, 0xe4, 0x46, 0x96, 0xc6, 0xc3, 0xac, 0x8a, 0x05, 0x92, 0x2f, 0x77, 0xf2, 0xe8,
    0xa8, 0xfd, 0x2d, 0xaa, 0x2a, 0xd9, 0x00, 0x3e, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01,
    0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa, 0xc0, 0x2b,
    0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27,
    0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33,
    0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff,
    0x01, 0x00, 0x00, 0xab, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x0c, 0x00, 0x00, 0x09, 0x61,
    0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00,
    0x01, 0x02, 0x00, 0x0a, 0x00, 0x16, 0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e,
    0x00, 0x19, 0x00, 0x18, 0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04,
    0x00, 0x23, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d,
    0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08,
    0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01,
    0x05, 0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02,
    0x06, 0x02, 0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03,
    0x01, 0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00,
    0x1d, 0x00, 0x20, 0x4e, 0xe1, 0xb2, 0x67, 0xff, 0xe7, 0xef, 0xfc, 0x7a, 0x6e, 0x48,
    0xeb, 0x77, 0xa5, 0x88, 0x73, 0x1d, 0xd3, 0x08, 0x28, 0xce, 0x49, 0x69, 0x6e, 0x96,
    0x3d, 0x0d, 0xd5, 0x24, 0x76, 0x12, 0x40,
};

/* the same with -tls1_2 */
static const uint8_t openssl_tls12[206] = {
    0x16, 0x03, 0x01, 0x00, 0xc9, 0x01, 0x00, 0x00, 0xc5, 0x03, 0x03, 0x62, 0xc3, 0x50,
    0x0f, 0x62, 0x97, 0x22, 0x58, 0x68, 0x61, 0x4d, 0xbd, 0x3d, 0xcf, 0xf6, 0xa8, 0xab,
    0xdf, 0xc9, 0x63, 0x71, 0x36, 0xd8, 0xcb, 0x5f, 0x4d, 0xb0, 0xbd, 0x8a, 0x03, 0xad,
    0x48, 0x00, 0x00, 0x38, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8,
    0xcc, 0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b,
    0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09,
    0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35,
    0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0x64, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x0c,
    0x00, 0x00, 0x09, 0x61, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x00, 0x0b,
    0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x0c, 0x00, 0x0a, 0x00, 0x1d,
    0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16,
    0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03,
    0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b,
    0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x03, 0x03,
    0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02,
};

/* curl --tlsv1.2 --tls-max 1.2 --resolve a.example:PORT:127.0.0.1 https://a.example:PORT/
 * (curl 7.88.1, OpenSSL 3.0.19) */
static const uint8_t curl_tls12[220] = {
    0x16, 0x03, 0x01, 0x00, 0xd7, 0x01, 0x00, 0x00, 0xd3, 0x03, 0x03, 0x71, 0xb6, 0xcf,
    0xfa, 0x72, 0xd4, 0x9b, 0x4c, 0xcb, 0xfd, 0x4b, 0xd1, 0xcf, 0x43, 0xa7, 0xcb, 0xc5,
    0x3e, 0xa3, 0x71, 0xe9, 0xc6, 0x6a, 0xab, 0xd9, 0x0f, 0x67, 0xaf, 0x36, 0x26, 0x81,
    0xea, 0x00, 0x00, 0x38, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8,
    0xcc, 0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b,
    0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09,
    0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35,
    0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0x72, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x0c,
    0x00, 0x00, 0x09, 0x61, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x00, 0x0b,
    0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x0c, 0x00, 0x0a, 0x00, 0x1d,
    0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c,
    0x02, 0x68, 0x32, 0x08, 0x68, 0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x16,
    0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03,
    0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b,
    0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x03, 0x03,
    0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02,
};

/* openssl s_client -connect 127.0.0.1:PORT -noservername (TLS 1.3) */
static const uint8_t openssl_no_sni[297] = {
    0x16, 0x03, 0x01, 0x01, 0x24, 0x01, 0x00, 0x01, 0x20, 0x03, 0x03, 0x13, 0x21, 0x52,
    0x04, 0xde, 0xac, 0x93, 0xe8, 0xe3, 0x67, 0x0c, 0xb9, 0xec, 0xe6, 0x17, 0x33, 0x15,
    0x82, 0xea, 0xc3, 0x68, 0xa5, 0xc7, 0x92, 0x98, 0xcf, 0x73, 0x9e, 0x11, 0xdb, 0xfe,
    0xf7, 0x20, 0x10, 0xc1, 0x2f, 0x8f, 0x98, 0x12, 0x40, 0xf4, 0xf5, 0x33, 0xf7, 0x5e,
    0x1f, 0xb7, 0x3d, 0x3d, 0xb9, 0xdf, 0x4a, 0x40, 0xba, 0x10, 0x20, 0x4e, 0x73, 0xc1,
    0xdc, 0x59, 0xbb, 0x33, 0xfb, 0x34, 0x00, 0x3e, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01,
    0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa, 0xc0, 0x2b,
    0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27,
    0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33,
    0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff,
    0x01, 0x00, 0x00, 0x99, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a,
    0x00, 0x16, 0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18,
    0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23, 0x00, 0x00,
    0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28,
    0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a,
    0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01,
    0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02, 0x00, 0x2b,
    0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01, 0x00, 0x2d, 0x00,
    0x02, 0x01, 0x01, 0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0x35,
    0x05, 0xd6, 0x8f, 0x74, 0x45, 0xeb, 0x8b, 0x9c, 0x7d, 0xcb, 0xe0, 0xc0, 0xc0, 0xb6,
    0x6b, 0x22, 0xf1, 0x43, 0x7b, 0x32, 0xbb, 0x4f, 0x0a, 0x9c, 0x0e, 0xd0, 0x5b, 0x89,
    0xd7, 0x51, 0x24,
};

/* ---- parsing helpers ------------------------------------------------- */

/* hello_parse on a heap copy of exactly data[0..len). */
static enum hello_result parse(const void *data, size_t len, struct hello *out,
                               const char **why)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    enum hello_result rc = hello_parse(copy, len, out, why);
    free(copy);
    return rc;
}

/* Whether the prefix of k bytes is looked at: all of them up to 2048
 * bytes, then some, and all within 64 bytes of `at`. */
static bool sampled(size_t k, size_t at)
{
    return k < 2048 || k % 61 == 0 || (k < at ? at - k : k - at) < 64;
}

/* Asserts that data[0..len) holds a ClientHello complete at its first `at`
 * bytes, naming `name` (NULL: no name): every shorter prefix needs more,
 * and every longer one says the same, whatever follows. */
static void expect_found(const void *data, size_t len, size_t at, const char *name)
{
    struct hello out;
    const char *why = NULL;
    for (size_t k = 0; k < at; k++) {
        if (!sampled(k, at))
            continue;
        memset(&out, 0x5a, sizeof(out));
        enum hello_result rc = parse(data, k, &out, &why);
        if (rc != HELLO_MORE)
            fail_msg("prefix of %zu bytes of a hello found at %zu: %d (%s)", k, at, rc,
                     why);
        for (size_t i = 0; i < sizeof(out); i++)
            assert_int_equal(((unsigned char *)&out)[i], 0x5a);
    }
    for (size_t k = at; k <= len; k++) {
        if (!sampled(k, at))
            continue;
        memset(&out, 0x5a, sizeof(out));
        enum hello_result rc = parse(data, k, &out, &why);
        if (rc != HELLO_FOUND)
            fail_msg("%zu bytes of a hello found at %zu: %d (%s)", k, at, rc, why);
        if (name == NULL) {
            assert_false(out.has_sni);
            assert_string_equal(out.server_name, "");
        } else {
            assert_true(out.has_sni);
            assert_string_equal(out.server_name, name);
        }
    }
}

/* Asserts that data is refused with `result` and `reason` from its first
 * `at` bytes on, every shorter prefix needing more, *out left alone. */
static void expect_refused_at(const void *data, size_t len, size_t at,
                              enum hello_result result, const char *reason)
{
    assert_true(at >= 1 && at <= len);
    struct hello out;
    memset(&out, 0x5a, sizeof(out));
    const char *why = NULL;
    for (size_t k = 0; k < at; k++) {
        if (!sampled(k, at))
            continue;
        enum hello_result rc = parse(data, k, &out, &why);
        if (rc != HELLO_MORE)
            fail_msg("decided at %zu bytes, expected at %zu: %d (%s)", k, at, rc, why);
    }
    for (size_t k = at; k <= len; k++) {
        if (!sampled(k, at))
            continue;
        why = NULL;
        enum hello_result rc = parse(data, k, &out, &why);
        if (rc != result)
            fail_msg("%zu bytes of an input refused at %zu: %d (%s), not %d", k, at, rc,
                     why, result);
        assert_string_equal(why, reason);
    }
    for (size_t i = 0; i < sizeof(out); i++)
        assert_int_equal(((unsigned char *)&out)[i], 0x5a);
}

/* ---- building ClientHellos ------------------------------------------- */

/* What build() puts in a ClientHello besides its fixed fields. */
struct knobs {
    const char *name; /* the host_name, NULL for no server_name extension */
    size_t name_len;  /* its length when not strlen(name) */
    bool sni_twice;   /* a second server_name extension */
    bool other_entry; /* a name_type 1 entry before the host_name */
    bool bare;        /* no extensions at all, as SSLv3 allowed */
    const void *raw;  /* an extension (or less) written as is, last */
    size_t raw_len;
    size_t size; /* the message padded to this many bytes, header included */
};

/* Where the fields of a built message are, its 4-byte header included. */
#define AT_VERSION 4
#define AT_SID 38    /* session_id's length */
#define AT_SUITES 71 /* cipher_suites' length */
#define AT_COMP 77   /* compression_methods' length */
#define AT_EXTS 79   /* the extensions' length */

/* Where build() put the parts that move. */
struct layout {
    size_t sni;  /* the server_name extension */
    size_t name; /* the first host_name's bytes */
    size_t sni2; /* the second server_name extension */
    size_t raw;  /* the raw bytes */
};

/* Writes into a buffer that must have room. */
struct writer {
    uint8_t *p;
    size_t n, room;
};

/* Appends n bytes of b, or n zero bytes when b is NULL. */
static void put(struct writer *w, const void *b, size_t n)
{
    assert_true(n <= w->room - w->n);
    if (b != NULL)
        memcpy(w->p + w->n, b, n);
    else
        memset(w->p + w->n, 0, n);
    w->n += n;
}

/* Appends v as n big-endian bytes. */
static void put_int(struct writer *w, size_t v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)(v >> (8 * (n - 1 - i)));
        put(w, &b, 1);
    }
}

/* Writes into the 2-byte length at `at` the bytes written after it. */
static void close16(struct writer *w, size_t at)
{
    size_t n = w->n - at - 2;
    assert_true(n <= 0xffff);
    w->p[at] = (uint8_t)(n >> 8);
    w->p[at + 1] = (uint8_t)n;
}

/* One server_name extension for k. */
static void put_sni(struct writer *w, const struct knobs *k, struct layout *at,
                    bool first)
{
    size_t len = k->name_len != 0 ? k->name_len : strlen(k->name);
    *(first ? &at->sni : &at->sni2) = w->n;
    put_int(w, 0, 2);
    size_t ext = w->n;
    put_int(w, 0, 2);
    size_t list = w->n;
    put_int(w, 0, 2);
    if (k->other_entry) {
        put_int(w, 1, 1);
        put_int(w, 3, 2);
        put(w, "abc", 3);
    }
    put_int(w, 0, 1);
    put_int(w, len, 2);
    if (first)
        at->name = w->n;
    put(w, k->name, len);
    close16(w, list);
    close16(w, ext);
}

/* Writes the ClientHello handshake message k asks for into msg; returns
 * its length and says in *at where its parts went. */
static size_t build(uint8_t *msg, size_t room, const struct knobs *k, struct layout *at)
{
    struct writer w = {msg, 0, room};
    uint8_t fill[32];
    memset(at, 0, sizeof(*at));
    put_int(&w, 1, 1); /* client_hello */
    put_int(&w, 0, 3);
    put_int(&w, 0x0303, 2);
    memset(fill, 0xa5, sizeof(fill));
    put(&w, fill, 32); /* random */
    put_int(&w, 32, 1);
    put(&w, fill, 32); /* session_id */
    put_int(&w, 4, 2);
    put_int(&w, 0x1301, 2);
    put_int(&w, 0xc02f, 2);
    put_int(&w, 1, 1);
    put_int(&w, 0, 1);
    assert_int_equal(w.n, AT_EXTS);
    if (!k->bare) {
        size_t exts = w.n;
        put_int(&w, 0, 2);
        put_int(&w, 43, 2); /* supported_versions: TLS 1.3 */
        put_int(&w, 3, 2);
        put_int(&w, 2, 1);
        put_int(&w, 0x0304, 2);
        if (k->name != NULL)
            put_sni(&w, k, at, true);
        if (k->name != NULL && k->sni_twice)
            put_sni(&w, k, at, false);
        if (k->raw != NULL) {
            at->raw = w.n;
            put(&w, k->raw, k->raw_len);
        }
        if (k->size != 0) {
            assert_true(k->size >= w.n + 4);
            size_t pad = k->size - w.n - 4;
            put_int(&w, 21, 2); /* padding */
            put_int(&w, pad, 2);
            put(&w, NULL, pad);
        }
        close16(&w, exts);
    }
    size_t n = w.n - 4;
    msg[1] = (uint8_t)(n >> 16);
    msg[2] = (uint8_t)(n >> 8);
    msg[3] = (uint8_t)n;
    return w.n;
}

/* The handshake bytes hs[0..n) in records, the first of `first` bytes
 * and the others of `size` (0: the rest), in a heap buffer; *len gets its
 * length. */
static uint8_t *wrap(const uint8_t *hs, size_t n, size_t first, size_t size, size_t *len)
{
    uint8_t *out = malloc(6 * n + 5);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0, r = 0; i < n; r++) {
        size_t k = r == 0 ? first : size;
        if (k == 0 || k > n - i)
            k = n - i;
        assert_true(k <= 16640);
        out[o++] = 22;
        out[o++] = 3;
        out[o++] = r == 0 ? 1 : 3;
        out[o++] = (uint8_t)(k >> 8);
        out[o++] = (uint8_t)k;
        memcpy(out + o, hs + i, k);
        o += k;
        i += k;
    }
    *len = o;
    return out;
}

/* The built message of k in one record, in a heap buffer of `extra` more
 * bytes; *len gets the record's length, *at the layout. */
static uint8_t *built(const struct knobs *k, size_t extra, size_t *len, struct layout *at)
{
    uint8_t *msg = malloc(HELLO_MAX_MESSAGE + 64);
    assert_non_null(msg);
    size_t n = build(msg, HELLO_MAX_MESSAGE + 64, k, at);
    uint8_t *rec = wrap(msg, n, 0, 0, len);
    free(msg);
    uint8_t *out = realloc(rec, *len + extra + 1);
    assert_non_null(out);
    return out;
}

/* Asserts that the message hs[0..n) is found, naming `name`, in one
 * record, in records of a few sizes down to 1 byte, and in two records
 * split at every byte, every prefix of each needing more. */
static void expect_found_every_way(const uint8_t *hs, size_t n, const char *name)
{
    static const size_t sizes[] = {0, 1, 2, 3, 7, 64, 1000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len;
        uint8_t *data = wrap(hs, n, sizes[i], sizes[i], &len);
        expect_found(data, len, len, name);
        free(data);
    }
    for (size_t cut = 1; cut < n; cut++) {
        size_t len;
        uint8_t *data = wrap(hs, n, cut, 0, &len);
        assert_int_equal(len, n + 10);
        expect_found(data, len, len, name);
        free(data);
    }
}

/* ---- real ClientHellos ----------------------------------------------- */

/* The captures: the name found, every way they may be split. */
static void test_captured(void **state)
{
    static const struct {
        const uint8_t *data;
        size_t len;
        const char *name;
    } cases[] = {
        {openssl_tls13, sizeof(openssl_tls13), "a.example"},
        {openssl_tls12, sizeof(openssl_tls12), "a.example"},
        {curl_tls12, sizeof(curl_tls12), "a.example"},
        {openssl_no_sni, sizeof(openssl_no_sni), NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const uint8_t *d = cases[i].data;
        /* one record holding exactly the message */
        assert_int_equal((size_t)(d[3] << 8 | d[4]) + 5, cases[i].len);
        assert_int_equal((size_t)(d[6] << 16 | d[7] << 8 | d[8]) + 9, cases[i].len);
        expect_found(d, cases[i].len, cases[i].len, cases[i].name);
        expect_found_every_way(d + 5, cases[i].len - 5, cases[i].name);
    }
}

/* What follows the ClientHello is not looked at: the next records (a
 * change_cipher_spec, early data), or anything. */
static void test_bytes_after(void **state)
{
    static const uint8_t after[] = {
        0x14, 0x03, 0x03, 0x00, 0x01, 0x01,          /* change_cipher_spec */
        0x17, 0x03, 0x03, 0x00, 0x03, 1,    2,    3, /* application_data */
        'G',  'E',  'T',  ' ',  '/',  0x00, 0xff, 0x16, 0x03,
    };
    (void)state;
    uint8_t data[sizeof(openssl_tls13) + sizeof(after)];
    memcpy(data, openssl_tls13, sizeof(openssl_tls13));
    memcpy(data + sizeof(openssl_tls13), after, sizeof(after));
    expect_found(data, sizeof(data), sizeof(openssl_tls13), "a.example");

    /* nor the rest of its last record: another message, or junk */
    size_t len;
    struct layout at;
    uint8_t *rec = built(&(struct knobs){.name = "a.example"}, 10, &len, &at);
    size_t n = len - 5 + 10;
    rec[3] = (uint8_t)(n >> 8);
    rec[4] = (uint8_t)n;
    memset(rec + len, 0xee, 10);
    expect_found(rec, len + 10, len, "a.example");
    free(rec);
}

/* ---- built ClientHellos ---------------------------------------------- */

/* Built ones, with and without a name, every way they may be split. */
static void test_built(void **state)
{
    static const struct knobs cases[] = {
        {.name = "a.example"},
        {.name = "a"},
        {.name = "a.example", .other_entry = true},
        {.name = "b.example", .raw = "\x00\x17\x00\x00", .raw_len = 4},
        {.name = "c.example", .size = 600},
        {.name = NULL},
        {.bare = true},
    };
    (void)state;
    uint8_t msg[1024];
    struct layout at;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = build(msg, sizeof(msg), &cases[i], &at);
        expect_found_every_way(msg, n, cases[i].name);
    }
}

/* A hello of SSLv3's form (no extensions) names no server; an empty
 * extensions block is allowed too. */
static void test_no_extensions(void **state)
{
    (void)state;
    size_t len;
    struct layout at;
    uint8_t *rec = built(&(struct knobs){.bare = true}, 2, &len, &at);
    assert_int_equal(len, 5 + AT_EXTS);
    expect_found(rec, len, len, NULL);
    /* an empty extensions block */
    memset(rec + len, 0, 2);
    rec[4] += 2;
    rec[8] += 2;
    expect_found(rec, len + 2, len + 2, NULL);
    /* one byte where the extensions' length would be */
    rec[4] -= 1;
    rec[8] -= 1;
    expect_refused_at(rec, len + 1, len, HELLO_BAD, PAST_END);
    free(rec);
}

/* Names: lowercased, a trailing dot dropped, the longest there is. */
static void test_names(void **state)
{
    static const struct {
        const char *sent, *found;
    } cases[] = {
        {"A.EXAMPLE", "a.example"},
        {"Mixed-Case.Example.COM", "mixed-case.example.com"},
        {"a.example.", "a.example"},
        {"localhost", "localhost"},
        {"123.example", "123.example"},
        {"xn--bcher-kva.example", "xn--bcher-kva.example"},
        {"a-b--c.x9", "a-b--c.x9"},
        {"1.2.3.4", "1.2.3.4"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        struct layout at;
        uint8_t *rec = built(&(struct knobs){.name = cases[i].sent}, 0, &len, &at);
        expect_found(rec, len, len, cases[i].found);
        free(rec);
    }
    /* 253 bytes in labels of 63, with and without a trailing dot */
    char name[256];
    memset(name, 'x', 253);
    name[63] = name[127] = name[191] = '.';
    name[253] = '\0';
    for (int dot = 0; dot <= 1; dot++) {
        char sent[256];
        memcpy(sent, name, 253);
        memcpy(sent + 253, dot ? ".\0" : "\0", 2);
        size_t len;
        struct layout at;
        uint8_t *rec = built(&(struct knobs){.name = sent}, 0, &len, &at);
        expect_found(rec, len, len, name);
        free(rec);
    }
}

/* Names that are no DNS name, refused once all their bytes are in; a
 * length of 0 or past 255 as soon as it is. */
static void test_invalid_names(void **state)
{
    static const struct {
        const char *name;
        size_t len;
    } cases[] = {
        {"a\0b.example", 11},
        {"a.example\0", 10},
        {"\0", 1},
        {"a b.example", 0},
        {"a..example", 0},
        {".a.example", 0},
        {".", 0},
        {"..", 0},
        {"a.example..", 0},
        {"-a.example", 0},
        {"a-.example", 0},
        {"a.-", 0},
        {"a_b.example", 0},
        {"*.example", 0},
        {"caf\xc3\xa9.example", 0},
        {"a.example\r\n", 0},
        {"a/b", 0},
        {"[::1]", 0},
        {"a.example:443", 0},
    };
    (void)state;
    size_t len;
    struct layout at;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct knobs k = {.name = cases[i].name, .name_len = cases[i].len};
        uint8_t *rec = built(&k, 0, &len, &at);
        size_t n = k.name_len != 0 ? k.name_len : strlen(k.name);
        expect_refused_at(rec, len, 5 + at.name + n, HELLO_BAD, NAME_BAD);
        free(rec);
    }

    /* a label of 64; 254 bytes; 255 with a dot that leaves 254 */
    char name[300];
    memset(name, 'x', sizeof(name));
    name[64] = '.';
    name[66] = '\0';
    const char *long_ones[] = {name, NULL, NULL};
    char n254[300], n255[300];
    memset(n254, 'x', 254);
    n254[63] = n254[127] = n254[191] = '.';
    n254[254] = '\0';
    memcpy(n255, n254, 254);
    memcpy(n255 + 254, ".\0", 2);
    long_ones[1] = n254;
    long_ones[2] = n255;
    for (size_t i = 0; i < 3; i++) {
        uint8_t *rec = built(&(struct knobs){.name = long_ones[i]}, 0, &len, &at);
        expect_refused_at(rec, len, 5 + at.name + strlen(long_ones[i]), HELLO_BAD,
                          NAME_BAD);
        free(rec);
    }

    /* 256 bytes, and 0: refused at their length */
    memset(name, 'x', 256);
    name[63] = name[127] = name[191] = '.';
    uint8_t *rec = built(&(struct knobs){.name = name, .name_len = 256}, 0, &len, &at);
    expect_refused_at(rec, len, 5 + at.name, HELLO_BAD, NAME_LEN);
    free(rec);
    static const uint8_t empty[] = {0, 0, 0, 5, 0, 3, 0, 0, 0};
    rec = built(&(struct knobs){.raw = empty, .raw_len = sizeof(empty)}, 0, &len, &at);
    expect_refused_at(rec, len, 5 + at.raw + 9, HELLO_BAD, NAME_LEN);
    free(rec);
}

/* ---- not TLS --------------------------------------------------------- */

/* What cannot begin a TLS handshake record is told at once. */
static void test_not_tls(void **state)
{
    static const struct {
        const char *data;
        size_t len, at;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", 35, 1},
        {"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", 32, 1},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n", 39, 1},
        /* an SSLv2 CLIENT-HELLO: the high bit of a 2-byte length */
        {"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10", 11, 1},
        {"\x17\x03\x03\x00\x05hello", 10, 1},   /* application_data */
        {"\x15\x03\x03\x00\x02\x02\x28", 7, 1}, /* an alert */
        {"\x14\x03\x03\x00\x01\x01", 6, 1},     /* change_cipher_spec */
        {"\x00", 1, 1},
        {"\x16\x02\x00\x00\x10", 5, 2},
        {"\x16\x00\x03\x00\x10", 5, 2},
        {"\x16\x16\x03\x01\x00", 5, 2},
        {"\x16\xfe\xfd\x00\x10", 5, 2}, /* DTLS */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_refused_at(cases[i].data, cases[i].len, cases[i].at, HELLO_NOT_TLS,
                          NOT_TLS);
}

/* ---- records --------------------------------------------------------- */

/* A first record of an unknown version, empty or too long. */
static void test_first_record(void **state)
{
    static const uint8_t minors[] = {0x00, 0x05, 0x80, 0xff};
    static const struct {
        uint16_t len;
        const char *why;
    } lengths[] = {{0, REC_EMPTY},
                   {16641, REC_LONG},
                   {0x8000, REC_LONG},
                   {0xffff, REC_LONG}};
    (void)state;
    uint8_t data[sizeof(openssl_tls12)];
    for (size_t i = 0; i < sizeof(minors); i++) {
        memcpy(data, openssl_tls12, sizeof(data));
        data[2] = minors[i];
        expect_refused_at(data, sizeof(data), 3, HELLO_BAD, REC_VERSION);
    }
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        memcpy(data, openssl_tls12, sizeof(data));
        data[3] = (uint8_t)(lengths[i].len >> 8);
        data[4] = (uint8_t)lengths[i].len;
        expect_refused_at(data, sizeof(data), 5, HELLO_BAD, lengths[i].why);
    }
    /* every version from 0x0301 to 0x0304; the longest record */
    for (uint8_t minor = 1; minor <= 4; minor++) {
        memcpy(data, openssl_tls12, sizeof(data));
        data[2] = minor;
        expect_found(data, sizeof(data), sizeof(data), "a.example");
    }
    data[3] = 0x41; /* 16640 */
    data[4] = 0x00;
    expect_found(data, sizeof(data), sizeof(data), "a.example");
}

/* The records after the first: handshake, of a known version, 1 to 16640
 * bytes, each judged as its header arrives. */
static void test_later_records(void **state)
{
    static const struct {
        size_t at; /* in the second record's header */
        uint8_t value;
        size_t refused; /* bytes of its header that decide */
        const char *why;
    } cases[] = {
        {0, 23, 1, REC_TYPE},      {0, 21, 1, REC_TYPE},   {0, 20, 1, REC_TYPE},
        {0, 0x80, 1, REC_TYPE},    {0, 0, 1, REC_TYPE},    {1, 2, 2, REC_VERSION},
        {1, 0x16, 2, REC_VERSION}, {2, 0, 3, REC_VERSION}, {2, 5, 3, REC_VERSION},
        {3, 0x41, 5, REC_LONG},    {3, 0xff, 5, REC_LONG},
    };
    (void)state;
    const uint8_t *hs = curl_tls12 + 5;
    size_t n = sizeof(curl_tls12) - 5, len;
    for (size_t cut = 1; cut < n; cut += 17) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            uint8_t *data = wrap(hs, n, cut, 0, &len);
            size_t second = 5 + cut;
            data[second + cases[i].at] = cases[i].value;
            expect_refused_at(data, len, second + cases[i].refused, HELLO_BAD,
                              cases[i].why);
            free(data);
        }
        uint8_t *data = wrap(hs, n, cut, 0, &len);
        data[5 + cut + 3] = 0;
        data[5 + cut + 4] = 0;
        expect_refused_at(data, len, 5 + cut + 5, HELLO_BAD, REC_EMPTY);
        free(data);
    }
}

/* ---- the handshake message ------------------------------------------- */

/* Each fixed field of a malformed hello is refused at its byte, each
 * length as soon as it is in. */
static void test_fixed_fields(void **state)
{
    static const struct {
        size_t at;    /* the offset in the message of what is changed */
        size_t value; /* written there in `width` bytes */
        size_t width;
        const char *why;
    } cases[] = {
        {0, 2, 1, HS_TYPE},               /* a ServerHello */
        {0, 0, 1, HS_TYPE},               /* a HelloRequest */
        {0, 0x16, 1, HS_TYPE},            /* a record header twice */
        {1, 16385, 3, TOO_LARGE},         /* one past the bound */
        {1, 0xffffff, 3, TOO_LARGE},      /* the largest */
        {1, 40, 3, SHORT},                /* no room for the fixed fields */
        {1, 0, 3, SHORT},                 /* empty */
        {AT_VERSION, 2, 1, VERSION},      /* SSL 2 */
        {AT_VERSION, 0x7f, 1, VERSION},   /* junk */
        {AT_SID, 33, 1, SID_LONG},        /* longer than 32 */
        {AT_SID, 255, 1, PAST_END},       /* past the end */
        {AT_SUITES, 0, 2, SUITES},        /* empty */
        {AT_SUITES, 3, 2, SUITES},        /* odd */
        {AT_SUITES, 0xfffe, 2, PAST_END}, /* past the end */
        {AT_COMP, 0, 1, COMP},            /* empty */
        {AT_COMP, 0xff, 1, PAST_END},     /* past the end */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        struct layout at;
        uint8_t *rec = built(&(struct knobs){.name = "a.example"}, 0, &len, &at);
        uint8_t *p = rec + 5 + cases[i].at;
        for (size_t b = 0; b < cases[i].width; b++)
            p[b] = (uint8_t)(cases[i].value >> (8 * (cases[i].width - 1 - b)));
        expect_refused_at(rec, len, 5 + cases[i].at + cases[i].width, HELLO_BAD,
                          cases[i].why);
        free(rec);
    }
}

/* The extensions must fill the message: a length one short or long of
 * it, or a message one byte shorter or longer than they are. */
static void test_extensions_fill(void **state)
{
    static const int deltas[] = {-1, 1, -20, 100};
    (void)state;
    size_t len;
    struct layout at;
    for (size_t i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
        uint8_t *rec = built(&(struct knobs){.name = "a.example"}, 0, &len, &at);
        uint8_t *p = rec + 5 + AT_EXTS;
        size_t n = (size_t)((p[0] << 8 | p[1]) + deltas[i]);
        p[0] = (uint8_t)(n >> 8);
        p[1] = (uint8_t)n;
        expect_refused_at(rec, len, 5 + AT_EXTS + 2, HELLO_BAD,
                          deltas[i] > 0 ? PAST_END : FILL);
        free(rec);

        /* the message's length changed instead */
        rec = built(&(struct knobs){.name = "a.example"}, 0, &len, &at);
        n = (size_t)((rec[7] << 8 | rec[8]) + deltas[i]);
        rec[7] = (uint8_t)(n >> 8);
        rec[8] = (uint8_t)n;
        expect_refused_at(rec, len, 5 + AT_EXTS + 2, HELLO_BAD,
                          deltas[i] > 0 ? FILL : PAST_END);
        free(rec);
    }
}

/* Extensions cut short: a header of 1 to 3 bytes, data past the end. */
static void test_extension_bounds(void **state)
{
    static const struct {
        const char *raw;
        size_t len, refused; /* bytes of raw that decide */
    } cases[] = {
        {"\x00", 1, 0},
        {"\x00\x0a", 2, 2},
        {"\x00\x0a\x00", 3, 2},
        {"\x00\x0a\x00\x05\x01", 5, 4},
        {"\xff\xff\x00\x01", 4, 4},
        {"\x00\x00\x00\x0e", 4, 4}, /* a server_name past the end */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        struct layout at;
        struct knobs k = {.name = "a.example",
                          .raw = cases[i].raw,
                          .raw_len = cases[i].len};
        if (i == 5)
            k.name = NULL;
        uint8_t *rec = built(&k, 0, &len, &at);
        expect_refused_at(rec, len, 5 + at.raw + cases[i].refused, HELLO_BAD, EXT_PAST);
        free(rec);
    }
    /* empty extensions, of any type, are skipped */
    size_t len;
    struct layout at;
    uint8_t *rec = built(&(struct knobs){.name = "a.example",
                                         .raw = "\x00\x01\x00\x00\xff\xff\x00\x00",
                                         .raw_len = 8},
                         0, &len, &at);
    expect_found(rec, len, len, "a.example");
    free(rec);
}

/* Two server_name extensions: refused at the second one's type. */
static void test_duplicate_sni(void **state)
{
    (void)state;
    size_t len;
    struct layout at;
    uint8_t *rec = built(&(struct knobs){.name = "a.example", .sni_twice = true}, 0, &len,
                         &at);
    expect_refused_at(rec, len, 5 + at.sni2 + 2, HELLO_BAD, SNI_TWICE);
    free(rec);
    /* the second one empty, or malformed: refused all the same */
    static const uint8_t empty[] = {0, 0, 0, 0};
    rec = built(&(struct knobs){.name = "a.example", .raw = empty, .raw_len = 4}, 0, &len,
                &at);
    expect_refused_at(rec, len, 5 + at.raw + 2, HELLO_BAD, SNI_TWICE);
    free(rec);
}

/* The server_name extension's inside: a list filling it, entries within
 * the list; the first host_name is the name. */
static void test_server_name_extension(void **state)
{
    static const struct {
        const char *raw;
        size_t len;
        size_t refused; /* 0: found */
        const char *found;
    } cases[] = {
        /* no room for the list's length */
        {"\x00\x00\x00\x00", 4, 4, NULL},
        {"\x00\x00\x00\x01\x00", 5, 4, NULL},
        /* an empty list */
        {"\x00\x00\x00\x02\x00\x00", 6, 6, NULL},
        /* a list shorter or longer than the extension */
        {"\x00\x00\x00\x06\x00\x03\x00\x00\x01\x61", 10, 6, NULL},
        {"\x00\x00\x00\x06\x00\x05\x00\x00\x01\x61", 10, 6, NULL},
        /* an entry past the list: its header, its name */
        {"\x00\x00\x00\x03\x00\x01\x00", 7, 7, NULL},
        {"\x00\x00\x00\x04\x00\x02\x00\x00", 8, 7, NULL},
        {"\x00\x00\x00\x06\x00\x04\x00\x00\x05\x61", 10, 9, NULL},
        {"\x00\x00\x00\x09\x00\x07\x00\x00\x01\x61\x01\x00\x05", 13, 13, NULL},
        /* no host_name: no name */
        {"\x00\x00\x00\x08\x00\x06\x01\x00\x03\x61\x62\x63", 12, 0, NULL},
        {"\x00\x00\x00\x05\x00\x03\xff\x00\x00", 9, 0, NULL},
        /* another type first, with an empty name */
        {"\x00\x00\x00\x09\x00\x07\x01\x00\x00\x00\x00\x01\x61", 13, 0, "a"},
        /* two host_names: only the first is judged and counts */
        {"\x00\x00\x00\x0c\x00\x0a\x00\x00\x01\x61\x00\x00\x03\x62\x20\x63", 16, 0, "a"},
        {"\x00\x00\x00\x09\x00\x07\x00\x00\x01\x41\x00\x00\x00", 13, 0, "a"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        struct layout at;
        uint8_t *rec = built(&(struct knobs){.raw = cases[i].raw,
                                             .raw_len = cases[i].len},
                             0, &len, &at);
        if (cases[i].refused != 0)
            expect_refused_at(rec, len, 5 + at.raw + cases[i].refused, HELLO_BAD,
                              SNI_BAD);
        else
            expect_found(rec, len, len, cases[i].found);
        free(rec);
    }
}

/* ---- the bounds ------------------------------------------------------ */

/* A message of 16384 bytes is read; one more is refused at its length,
 * wherever the records split it. */
static void test_message_bound(void **state)
{
    uint8_t *msg = malloc(HELLO_MAX_MESSAGE + 64);
    (void)state;
    assert_non_null(msg);
    struct layout at;
    size_t n = build(msg, HELLO_MAX_MESSAGE + 64,
                     &(struct knobs){.name = "a.example", .size = HELLO_MAX_MESSAGE + 4},
                     &at);
    assert_int_equal(n, HELLO_MAX_MESSAGE + 4);
    size_t len;
    uint8_t *data = wrap(msg, n, 0, 0, &len);
    expect_found(data, len, len, "a.example");
    free(data);
    /* in records of 21 bytes (20293 bytes in all) */
    data = wrap(msg, n, 21, 21, &len);
    assert_int_equal(len, 20293);
    expect_found(data, len, len, "a.example");
    free(data);

    n = build(msg, HELLO_MAX_MESSAGE + 64,
              &(struct knobs){.name = "a.example", .size = HELLO_MAX_MESSAGE + 5}, &at);
    for (size_t cut = 0; cut <= 4; cut++) {
        /* the length split over two records, or not */
        data = wrap(msg, n, cut, 0, &len);
        size_t refused = cut == 0 || cut >= 4 ? 9 : 5 + cut + 5 + (4 - cut);
        expect_refused_at(data, len, refused, HELLO_BAD, TOO_LARGE);
        free(data);
    }
    free(msg);
}

/* A hello complete within 20480 bytes of records is read, to the byte;
 * one that would need more is refused at 20480 bytes. */
static void test_stream_bound(void **state)
{
    uint8_t *msg = malloc(HELLO_MAX_MESSAGE + 64);
    (void)state;
    assert_non_null(msg);
    struct layout at;
    /* a first record of 3 bytes, then 1-byte ones: 6 * 3415 - 10 bytes */
    size_t n = build(msg, 4096, &(struct knobs){.name = "a.example", .size = 3415}, &at);
    size_t len;
    uint8_t *data = wrap(msg, n, 3, 1, &len);
    assert_int_equal(len, HELLO_MAX_STREAM);
    expect_found(data, len, len, "a.example");
    free(data);
    n = build(msg, 4096, &(struct knobs){.name = "a.example", .size = 3416}, &at);
    data = wrap(msg, n, 3, 1, &len);
    assert_int_equal(len, HELLO_MAX_STREAM + 6);
    expect_refused_at(data, len, HELLO_MAX_STREAM, HELLO_BAD, TOO_SPREAD);
    free(data);

    /* the largest message in records of 20 bytes: 20488 bytes */
    n = build(msg, HELLO_MAX_MESSAGE + 64,
              &(struct knobs){.name = "a.example", .size = HELLO_MAX_MESSAGE + 4}, &at);
    data = wrap(msg, n, 20, 20, &len);
    assert_int_equal(len, 20488);
    expect_refused_at(data, len, HELLO_MAX_STREAM, HELLO_BAD, TOO_SPREAD);
    free(data);

    free(msg);
}

/* Empty input needs more; why may be NULL; bytes past len are not read
 * even when they would complete the hello. */
static void test_parse_edges(void **state)
{
    (void)state;
    struct hello out;
    const char *why = NULL;
    assert_int_equal(hello_parse(NULL, 0, &out, &why), HELLO_MORE);
    assert_non_null(why);
    assert_int_equal(parse("G", 1, &out, NULL), HELLO_NOT_TLS);
    assert_int_equal(parse("\x16", 1, &out, NULL), HELLO_MORE);
    assert_int_equal(parse(openssl_tls13, sizeof(openssl_tls13), &out, NULL),
                     HELLO_FOUND);
    assert_string_equal(out.server_name, "a.example");
    assert_int_equal(hello_parse(openssl_tls13, sizeof(openssl_tls13) - 1, &out, &why),
                     HELLO_MORE);
}

/* ---- names and patterns ---------------------------------------------- */

/* Exact names ignoring case, and "*." wildcards over one label or more. */
static void test_name_matches(void **state)
{
    static const struct {
        const char *pattern, *name;
        bool match;
    } cases[] = {
        {"a.example", "a.example", true},
        {"A.Example", "a.example", true},
        {"a.example", "A.EXAMPLE", true},
        {"a.example", "b.example", false},
        {"a.example", "a.example.com", false},
        {"a.example", "xa.example", false},
        {"a.example", "a.exampl", false},
        {"a.example", "", false},
        {"*.b.example", "x.b.example", true},
        {"*.b.example", "y.x.b.example", true},
        {"*.B.EXAMPLE", "x.b.example", true},
        {"*.b.example", "b.example", false},
        {"*.b.example", ".b.example", false},
        {"*.b.example", "xb.example", false},
        {"*.b.example", "x.b.example.com", false},
        {"*.b.example", "x.c.example", false},
        {"*.b.example", "*.b.example", true},
        {"*.example", "a.example", true},
        {"*", "a", false},
        {"*a.example", "ba.example", false},
        {"x.*.example", "x.a.example", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (hello_name_matches(cases[i].pattern, cases[i].name) != cases[i].match)
            fail_msg("\"%s\" vs \"%s\": not %s", cases[i].pattern, cases[i].name,
                     cases[i].match ? "a match" : "refused");
}

/* What a config may give as sni_routes server names. */
static void test_pattern_valid(void **state)
{
    static const char *const valid[] = {
        "a.example", "A.Example",   "localhost",
        "*.example", "*.b.example", "xn--bcher-kva.example",
        "a-b.c-d",   "1.2.3.4",     "0a.9z",
    };
    static const char *const invalid[] = {
        "",
        "*",
        "*.",
        "**.example",
        "*a.example",
        "a.*.example",
        "a.example.",
        ".a.example",
        "a..example",
        "-a.example",
        "a-.example",
        "a_b.example",
        "a b",
        "*.*.example",
        "*.-a.example",
        "a.example/",
        "caf\xc3\xa9.example",
        "a.example:443",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        if (!hello_pattern_valid(valid[i]))
            fail_msg("\"%s\" refused", valid[i]);
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        if (hello_pattern_valid(invalid[i]))
            fail_msg("\"%s\" accepted", invalid[i]);
    /* labels of 63 and names of 253 bytes, not one more */
    char name[300];
    memset(name, 'x', sizeof(name));
    name[63] = '\0';
    assert_true(hello_pattern_valid(name));
    name[63] = 'x';
    name[64] = '\0';
    assert_false(hello_pattern_valid(name));
    memset(name, 'x', sizeof(name));
    name[63] = name[127] = name[191] = '.';
    name[253] = '\0';
    assert_true(hello_pattern_valid(name));
    name[253] = 'x';
    name[254] = '\0';
    assert_false(hello_pattern_valid(name));
}

/* ---- fuzzing seeds --------------------------------------------------- */

/* The seeds say what they are: valid-* hold a ClientHello (naming
 * a.example unless the name says no-sni), invalid-* are refused. */
static void test_fuzz_seeds(void **state)
{
    DIR *d = open_corpus("hello");
    (void)state;
    size_t valid = 0, invalid = 0;
    char *data = malloc(2 * HELLO_MAX_STREAM);
    assert_non_null(data);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool want_valid = strncmp(e->d_name, "valid-", 6) == 0;
        if (!want_valid && strncmp(e->d_name, "invalid-", 8) != 0)
            continue;
        size_t n = read_seed("hello", e->d_name, data, 2 * HELLO_MAX_STREAM);
        struct hello out;
        const char *why = NULL;
        enum hello_result rc = parse(data, n, &out, &why);
        if (want_valid ? rc != HELLO_FOUND : rc != HELLO_BAD && rc != HELLO_NOT_TLS)
            fail_msg("%s: %d (%s)", e->d_name, rc, why != NULL ? why : "");
        if (want_valid && strstr(e->d_name, "no-sni") != NULL)
            assert_false(out.has_sni);
        else if (want_valid)
            assert_string_equal(out.server_name, "a.example");
        *(want_valid ? &valid : &invalid) += 1;
    }
    closedir(d);
    free(data);
    assert_true(valid >= 6);
    assert_true(invalid >= 8);
}

/* Runs every test of this file. */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_captured),
        cmocka_unit_test(test_bytes_after),
        cmocka_unit_test(test_built),
        cmocka_unit_test(test_no_extensions),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_not_tls),
        cmocka_unit_test(test_first_record),
        cmocka_unit_test(test_later_records),
        cmocka_unit_test(test_fixed_fields),
        cmocka_unit_test(test_extensions_fill),
        cmocka_unit_test(test_extension_bounds),
        cmocka_unit_test(test_duplicate_sni),
        cmocka_unit_test(test_server_name_extension),
        cmocka_unit_test(test_message_bound),
        cmocka_unit_test(test_stream_bound),
        cmocka_unit_test(test_parse_edges),
        cmocka_unit_test(test_name_matches),
        cmocka_unit_test(test_pattern_valid),
        cmocka_unit_test(test_fuzz_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
