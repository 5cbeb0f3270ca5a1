/*
 * The TLS ClientHello (RFC 8446 4.1.2, with the record layer of 5.1) and
 * its server_name extension (RFC 6066 3), read where they lie in the
 * client's first records: each call starts from the first byte, so the
 * caller keeps nothing between calls but the bytes.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <string.h>

#include "hello.h"

#define RECORD_HEADER 5
#define RECORD_MAX (16384 + 256) /* RFC 8446 5.2's bound on any record */
#define CONTENT_HANDSHAKE 22
#define HANDSHAKE_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define NAME_HOST 0
/* legacy_version, random, and the shortest session_id (empty),
 * cipher_suites (one) and compression_methods (one) with their lengths */
#define BODY_MIN (2 + 32 + 1 + 2 + 2 + 1 + 1)
#define NAME_MAX_WIRE 255 /* a host_name's length, a trailing dot included */
#define NAME_MAX_DNS 253  /* a DNS name's, without the dot */
#define LABEL_MAX 63

#define STR_(x) #x
#define STR(x) STR_(x)

_Static_assert(HELLO_MAX_STREAM == 20480, "the message below says 20480");
_Static_assert(RECORD_MAX == 16640, "the message below says 16640");
_Static_assert(sizeof(((struct hello *)0)->server_name) > NAME_MAX_WIRE,
               "server_name holds any host_name and its NUL");

/* What each parsing step returns: a hello_result, DONE for a step that
 * went through. */
enum { MORE = HELLO_MORE, DONE = HELLO_FOUND, NOT_TLS = HELLO_NOT_TLS, BAD = HELLO_BAD };

static const char more[] = "more bytes needed";
static const char found[] = "ClientHello read";
static const char not_tls[] = "not a TLS handshake record";
static const char too_large[] = "ClientHello larger than " STR(
    HELLO_MAX_MESSAGE) " bytes";
static const char too_spread[] = "ClientHello not complete in the first 20480 bytes";
static const char past_end[] = "ClientHello field past the end of the message";
static const char ext_past_end[] = "ClientHello extension past the end of the message";
static const char sni_malformed[] = "server_name extension malformed";

/*
 * Where a parse stands.  Handshake bytes are read across the records that
 * carry them; off counts them, and the bounds of the message and of each
 * field inside it are offsets in that count.
 */
struct reader {
    const uint8_t *buf;
    size_t len;     /* the bytes that may be looked at */
    size_t pos;     /* the next one */
    size_t rec_end; /* where the current record ends in buf (maybe past len) */
    size_t off;     /* handshake bytes read so far */
    const char **why;
};

/* Refuses with why. */
static int bad(struct reader *r, const char *why)
{
    *r->why = why;
    return BAD;
}

/* Reads the header of the record at r->pos; the first one's first two
 * bytes say whether this is TLS at all. */
static int next_record(struct reader *r)
{
    const uint8_t *p = r->buf + r->pos;
    size_t have = r->len - r->pos;
    bool first = r->pos == 0;
    if (have < 1)
        return MORE;
    if (p[0] != CONTENT_HANDSHAKE) {
        if (first) {
            *r->why = not_tls;
            return NOT_TLS;
        }
        return bad(r, "a record other than handshake before the ClientHello ends");
    }
    if (have < 2)
        return MORE;
    if (p[1] != 3) {
        if (first) {
            *r->why = not_tls;
            return NOT_TLS;
        }
        return bad(r, "TLS record version not 0x0301 to 0x0304");
    }
    if (have < 3)
        return MORE;
    if (p[2] < 1 || p[2] > 4)
        return bad(r, "TLS record version not 0x0301 to 0x0304");
    if (have < RECORD_HEADER)
        return MORE;
    size_t n = (size_t)p[3] << 8 | p[4];
    if (n == 0)
        return bad(r, "empty TLS record");
    if (n > RECORD_MAX)
        return bad(r, "TLS record longer than 16640 bytes");
    r->pos += RECORD_HEADER;
    r->rec_end = r->pos + n;
    return DONE;
}

/* Reads the next n handshake bytes into dst, or skips them when dst is
 * NULL, crossing into the records after the current one as needed. */
static int take(struct reader *r, uint8_t *dst, size_t n)
{
    while (n > 0) {
        if (r->pos == r->rec_end) {
            int rc = next_record(r);
            if (rc != DONE)
                return rc;
        }
        size_t end = r->rec_end < r->len ? r->rec_end : r->len;
        if (r->pos == end)
            return MORE;
        size_t k = end - r->pos < n ? end - r->pos : n;
        if (dst != NULL) {
            memcpy(dst, r->buf + r->pos, k);
            dst += k;
        }
        r->pos += k;
        r->off += k;
        n -= k;
    }
    return DONE;
}

/* take() of n bytes that must end by the offset `end`: refused with why,
 * before any is read, when they would not. */
static int field(struct reader *r, uint8_t *dst, size_t n, size_t end, const char *why)
{
    if (n > end - r->off)
        return bad(r, why);
    return take(r, dst, n);
}

/* Reads the 1- or 2-byte length of a vector into *n, the field and the
 * vector both ending by `end`, else refused with why. */
static int length(struct reader *r, size_t width, size_t end, const char *why, size_t *n)
{
    uint8_t b[2];
    int rc = field(r, b, width, end, why);
    if (rc != DONE)
        return rc;
    *n = width == 1 ? b[0] : (size_t)b[0] << 8 | b[1];
    return *n > end - r->off ? bad(r, why) : DONE;
}

/* Whether c is an ASCII letter or digit. */
static bool alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* c lowercased, if it is an ASCII letter. */
static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Whether s[0..n) is a DNS host name: 1 to 253 bytes of labels of 1 to 63
 * letters, digits and '-', no label starting or ending with '-' (RFC 1123
 * 2.1), no trailing dot. */
static bool dns_name(const char *s, size_t n)
{
    if (n == 0 || n > NAME_MAX_DNS)
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = i < n ? (unsigned char)s[i] : '.';
        if (c == '.') {
            if (label == 0 || label > LABEL_MAX || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (alnum(c) || (c == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

/*
 * The server_name extension's body, ending at `end`: a list filling it of
 * at least one entry, each a name_type and a 2-byte length and that many
 * bytes.  The first host_name is the name, judged once all of it is in;
 * other entries are only kept within bounds.
 */
static int server_name(struct reader *r, size_t end, struct hello *h)
{
    size_t n;
    int rc = length(r, 2, end, sni_malformed, &n);
    if (rc != DONE)
        return rc;
    if (n == 0 || n != end - r->off)
        return bad(r, sni_malformed);
    while (r->off < end) {
        uint8_t type;
        if ((rc = field(r, &type, 1, end, sni_malformed)) != DONE ||
            (rc = length(r, 2, end, sni_malformed, &n)) != DONE)
            return rc;
        if (type != NAME_HOST || h->has_sni) {
            if ((rc = take(r, NULL, n)) != DONE)
                return rc;
            continue;
        }
        if (n < 1 || n > NAME_MAX_WIRE)
            return bad(r, "server_name host_name empty or longer than 255 bytes");
        char name[NAME_MAX_WIRE];
        if ((rc = take(r, (uint8_t *)name, n)) != DONE)
            return rc;
        if (name[n - 1] == '.')
            n--;
        if (!dns_name(name, n))
            return bad(r, "server_name host_name not a valid DNS name");
        for (size_t i = 0; i < n; i++)
            h->server_name[i] = (char)lower((unsigned char)name[i]);
        h->server_name[n] = '\0';
        h->has_sni = true;
    }
    return DONE;
}

/* The extensions, from here to `end` which they fill: each within it,
 * server_name at most once. */
static int extensions(struct reader *r, size_t end, struct hello *h)
{
    bool seen = false;
    while (r->off < end) {
        uint8_t type[2];
        size_t n;
        int rc = field(r, type, 2, end, ext_past_end);
        if (rc != DONE)
            return rc;
        bool sni = (type[0] << 8 | type[1]) == EXT_SERVER_NAME;
        if (sni && seen)
            return bad(r, "ClientHello with two server_name extensions");
        if ((rc = length(r, 2, end, ext_past_end, &n)) != DONE)
            return rc;
        if (sni) {
            seen = true;
            rc = server_name(r, r->off + n, h);
        } else {
            rc = take(r, NULL, n);
        }
        if (rc != DONE)
            return rc;
    }
    return DONE;
}

/*
 * The handshake message: a ClientHello of BODY_MIN to HELLO_MAX_MESSAGE
 * bytes, its fields each within it, then either its end (a hello without
 * extensions, as SSLv3 allowed) or extensions filling the rest.
 */
static int client_hello(struct reader *r, struct hello *h)
{
    uint8_t b[3];
    int rc;
    if ((rc = take(r, b, 1)) != DONE)
        return rc;
    if (b[0] != HANDSHAKE_CLIENT_HELLO)
        return bad(r, "handshake message not a ClientHello");
    if ((rc = take(r, b, 3)) != DONE)
        return rc;
    size_t n = (size_t)b[0] << 16 | (size_t)b[1] << 8 | b[2];
    if (n > HELLO_MAX_MESSAGE)
        return bad(r, too_large);
    if (n < BODY_MIN)
        return bad(r, "ClientHello shorter than its fixed fields");
    size_t end = r->off + n;
    if ((rc = take(r, b, 1)) != DONE)
        return rc;
    if (b[0] != 3)
        return bad(r, "ClientHello legacy_version not 3.x");
    if ((rc = take(r, NULL, 1 + 32)) != DONE) /* its minor, random */
        return rc;
    if ((rc = length(r, 1, end, past_end, &n)) != DONE)
        return rc;
    if (n > 32)
        return bad(r, "ClientHello session_id longer than 32 bytes");
    if ((rc = take(r, NULL, n)) != DONE || (rc = length(r, 2, end, past_end, &n)) != DONE)
        return rc;
    if (n < 2 || n % 2 != 0)
        return bad(r, "ClientHello cipher_suites empty or of odd length");
    if ((rc = take(r, NULL, n)) != DONE || (rc = length(r, 1, end, past_end, &n)) != DONE)
        return rc;
    if (n < 1)
        return bad(r, "ClientHello compression_methods empty");
    if ((rc = take(r, NULL, n)) != DONE)
        return rc;
    if (r->off == end)
        return DONE;
    if ((rc = length(r, 2, end, past_end, &n)) != DONE)
        return rc;
    if (n != end - r->off)
        return bad(r, "ClientHello extensions do not fill the message exactly");
    return extensions(r, end, h);
}

/* Starts over from the first record each time; the stream bound is kept
 * by looking at no byte past it. */
enum hello_result hello_parse(const uint8_t *buf, size_t len, struct hello *out,
                              const char **why)
{
    const char *ignored;
    if (why == NULL)
        why = &ignored;
    *why = more;
    if (len == 0)
        return HELLO_MORE;
    struct reader r = {buf, len < HELLO_MAX_STREAM ? len : HELLO_MAX_STREAM, 0, 0, 0,
                       why};
    struct hello h;
    memset(&h, 0, sizeof(h));
    int rc = client_hello(&r, &h);
    if (rc == MORE && len >= HELLO_MAX_STREAM) {
        /* it needs a byte past the bound */
        *why = too_spread;
        rc = BAD;
    }
    if (rc == DONE) {
        *why = found;
        *out = h;
    }
    return (enum hello_result)rc;
}

/* Whether a and b are equal ignoring ASCII case. */
static bool equal_nocase(const char *a, const char *b)
{
    for (;; a++, b++) {
        if (lower((unsigned char)*a) != lower((unsigned char)*b))
            return false;
        if (*a == '\0')
            return true;
    }
}

/* A wildcard's ".suffix" against the end of the name. */
bool hello_name_matches(const char *pattern, const char *name)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *suffix = pattern + 1; /* ".suffix" */
        size_t sn = strlen(suffix), nn = strlen(name);
        return nn > sn && equal_nocase(suffix, name + nn - sn);
    }
    return equal_nocase(pattern, name);
}

/* A wildcard's suffix is judged as a name. */
bool hello_pattern_valid(const char *pattern)
{
    if (pattern[0] == '*' && pattern[1] == '.')
        pattern += 2;
    return dns_name(pattern, strlen(pattern));
}
