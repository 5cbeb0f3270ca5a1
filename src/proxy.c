/*
 * The PROXY protocol (HAProxy's proxy-protocol.txt): parsing v1 and v2
 * headers from clients, building them for upstreams.  Stream transports
 * only; v2 TLVs are skipped, not interpreted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "proxy.h"

#define V1_MAX 107 /* the longest v1 line, CRLF included */
#define V2_FIXED 16
#define V2_UNIX_PATH 108

#define STR_(x) #x
#define STR(x) STR_(x)

/* What each parsing step returns; NEED_MORE and BAD are proxy_parse's. */
enum { NEED_MORE = 0, BAD = -1, DONE = 1 };

static const uint8_t v2_signature[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static const char not_proxy[] = "not a PROXY protocol header";

/* Where a v1 parse stands: the bytes it may look at and the next one. */
struct cursor {
    const uint8_t *buf;
    size_t len;
    size_t pos;
};

/* Consumes the literal s: DONE, NEED_MORE when the input ends while it
 * still matches, or BAD. */
static int take_literal(struct cursor *c, const char *s)
{
    for (; *s != '\0'; s++, c->pos++) {
        if (c->pos == c->len)
            return NEED_MORE;
        if (c->buf[c->pos] != (uint8_t)*s)
            return BAD;
    }
    return DONE;
}

/*
 * Consumes up to `max` bytes from `set` and the terminator after them,
 * copying the field into out (max + 1 bytes) with a NUL.
 */
static int take_field(struct cursor *c, const char *set, size_t max, uint8_t term,
                      char *out)
{
    for (size_t n = 0; c->pos < c->len; c->pos++, n++) {
        uint8_t b = c->buf[c->pos];
        if (b == term) {
            out[n] = '\0';
            c->pos++;
            return DONE;
        }
        if (b == '\0' || strchr(set, b) == NULL || n == max)
            return BAD;
        out[n] = (char)b;
    }
    return NEED_MORE;
}

/* Consumes a v1 port, 0-65535 in decimal without leading zeros, and the
 * terminator after it; refuses as soon as no digit could make it valid. */
static int take_port(struct cursor *c, uint8_t term, in_port_t *port)
{
    unsigned value = 0;
    for (size_t n = 0; c->pos < c->len; c->pos++, n++) {
        uint8_t b = c->buf[c->pos];
        if (b == term && n > 0) {
            c->pos++;
            *port = (in_port_t)value;
            return DONE;
        }
        if (b < '0' || b > '9' || (n > 0 && value == 0))
            return BAD;
        value = value * 10 + (unsigned)(b - '0');
        if (value > 65535)
            return BAD;
    }
    return NEED_MORE;
}

/* After "UNKNOWN": ' ' or CR, then anything up to the first CRLF. */
static int v1_unknown(struct cursor *c)
{
    if (c->pos == c->len)
        return NEED_MORE;
    if (c->buf[c->pos] != ' ' && c->buf[c->pos] != '\r')
        return BAD;
    for (; c->pos + 1 < c->len; c->pos++) {
        if (c->buf[c->pos] == '\r' && c->buf[c->pos + 1] == '\n') {
            c->pos += 2;
            return DONE;
        }
    }
    return NEED_MORE;
}

/* "src dst sport dport\r\n" after "TCP4 " or "TCP6 ", each field judged
 * as soon as its terminator arrives. */
static int v1_tcp(struct cursor *c, int family, struct proxy_info *info, const char **why)
{
    const char *set = family == AF_INET ? "0123456789." : "0123456789abcdefABCDEF:.";
    size_t max = family == AF_INET ? INET_ADDRSTRLEN - 1 : INET6_ADDRSTRLEN - 1;
    *why = "PROXY v1: invalid source address";
    char text[INET6_ADDRSTRLEN];
    int rc;
    if ((rc = take_field(c, set, max, ' ', text)) != DONE)
        return rc;
    uint8_t src[16];
    if (inet_pton(family, text, src) != 1)
        return BAD;
    *why = "PROXY v1: invalid destination address";
    if ((rc = take_field(c, set, max, ' ', text)) != DONE)
        return rc;
    uint8_t dst[16];
    if (inet_pton(family, text, dst) != 1)
        return BAD;
    *why = "PROXY v1: invalid source port";
    in_port_t sport;
    if ((rc = take_port(c, ' ', &sport)) != DONE)
        return rc;
    *why = "PROXY v1: invalid destination port";
    in_port_t dport;
    if ((rc = take_port(c, '\r', &dport)) != DONE)
        return rc;
    *why = "PROXY v1: expected CRLF after the destination port";
    if ((rc = take_literal(c, "\n")) != DONE)
        return rc;
    addr_set_ip(&info->src, family, src, htons(sport));
    addr_set_ip(&info->dst, family, dst, htons(dport));
    return DONE;
}

/*
 * A v1 line, looked at no further than 107 bytes: a line still unfinished
 * there is too long.  Addresses are checked by character and length while
 * they arrive and in full at their terminating space.
 */
static int parse_v1(const uint8_t *buf, size_t len, struct proxy_info *info,
                    const char **why)
{
    struct cursor c = {buf, len < V1_MAX ? len : V1_MAX, 0};
    *why = not_proxy;
    int rc;
    if ((rc = take_literal(&c, "PROXY ")) != DONE)
        return rc;
    *why = "PROXY v1: expected TCP4, TCP6 or UNKNOWN";
    if (c.pos < c.len && c.buf[c.pos] == 'U') {
        info->local = true;
        if ((rc = take_literal(&c, "UNKNOWN")) == DONE)
            rc = v1_unknown(&c);
    } else if ((rc = take_literal(&c, "TCP")) == DONE) {
        if (c.pos == c.len)
            rc = NEED_MORE;
        else if (c.buf[c.pos] != '4' && c.buf[c.pos] != '6')
            rc = BAD;
        else {
            int family = c.buf[c.pos++] == '4' ? AF_INET : AF_INET6;
            if ((rc = take_literal(&c, " ")) == DONE)
                rc = v1_tcp(&c, family, info, why);
        }
    }
    if (rc == NEED_MORE && len >= V1_MAX) {
        *why = "PROXY v1 header longer than " STR(V1_MAX) " bytes";
        return BAD;
    }
    return rc == DONE ? (int)c.pos : rc;
}

/* Reads a v2 Unix address field: a path NUL-terminated within 108 bytes
 * (an unnamed socket has an empty one). */
static bool v2_unix(const uint8_t *field, addr_t *a)
{
    size_t room = sizeof(a->u.un.sun_path) < V2_UNIX_PATH ? sizeof(a->u.un.sun_path)
                                                          : V2_UNIX_PATH;
    const uint8_t *nul = memchr(field, '\0', room);
    if (nul == NULL)
        return false;
    memset(a, 0, sizeof(*a));
    a->u.un.sun_family = AF_UNIX;
    memcpy(a->u.un.sun_path, field, (size_t)(nul - field));
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)(nul - field) +
                         1);
    return true;
}

/* The address block of a v2 PROXY command, of the family byte fam. */
static bool v2_addresses(const uint8_t *block, uint8_t fam, struct proxy_info *info)
{
    uint16_t sport, dport;
    switch (fam) {
    case 0x11:
        memcpy(&sport, block + 8, 2);
        memcpy(&dport, block + 10, 2);
        addr_set_ip(&info->src, AF_INET, block, sport);
        addr_set_ip(&info->dst, AF_INET, block + 4, dport);
        return true;
    case 0x21:
        memcpy(&sport, block + 32, 2);
        memcpy(&dport, block + 34, 2);
        addr_set_ip(&info->src, AF_INET6, block, sport);
        addr_set_ip(&info->dst, AF_INET6, block + 16, dport);
        return true;
    case 0x31:
        return v2_unix(block, &info->src) && v2_unix(block + V2_UNIX_PATH, &info->dst);
    default: /* AF_UNSPEC: no addresses */
        info->local = true;
        return true;
    }
}

/*
 * A v2 header.  With the LOCAL command the family byte and any address
 * block are ignored, as the specification asks; with PROXY the length must
 * cover the family's addresses.  Each field is judged as soon as it is in.
 */
static int parse_v2(const uint8_t *buf, size_t len, bool dgram, struct proxy_info *info,
                    const char **why)
{
    *why = not_proxy;
    if (memcmp(buf, v2_signature, len < 12 ? len : 12) != 0)
        return BAD;
    if (len < 13)
        return NEED_MORE;
    if (buf[12] >> 4 != 2) {
        *why = "PROXY v2: unsupported version (not 2)";
        return BAD;
    }
    if ((buf[12] & 0x0f) > 1) {
        *why = "PROXY v2: unknown command (neither LOCAL nor PROXY)";
        return BAD;
    }
    bool local = (buf[12] & 0x0f) == 0;
    if (len < 14)
        return NEED_MORE;
    size_t need = 0;
    if (!local) {
        /* UNSPEC, or INET, INET6, UNIX over STREAM (1) or DGRAM (2). */
        unsigned family = buf[13] >> 4, transport = buf[13] & 0x0f;
        static const size_t block[4] = {0, 12, 36, 2 * (size_t)V2_UNIX_PATH};
        if (buf[13] != 0x00 &&
            (family < 1 || family > 3 || transport < 1 || transport > 2)) {
            *why = "PROXY v2: unknown address family or transport";
            return BAD;
        }
        if (buf[13] != 0x00 && transport != (dgram ? 2u : 1u)) {
            *why = dgram ? "PROXY v2: stream transport in a datagram (DGRAM only)"
                         : "PROXY v2: datagram transport refused (stream only)";
            return BAD;
        }
        need = block[buf[13] == 0x00 ? 0 : family];
    }
    if (len < V2_FIXED)
        return NEED_MORE;
    size_t total = V2_FIXED + ((size_t)buf[14] << 8 | buf[15]);
    if (total > PROXY_MAX_HEADER) {
        *why = "PROXY v2 header longer than " STR(PROXY_MAX_HEADER) " bytes";
        return BAD;
    }
    if (total - V2_FIXED < need) {
        *why = "PROXY v2: length shorter than the address block";
        return BAD;
    }
    if (len < total)
        return NEED_MORE;
    info->local = local;
    if (!local && !v2_addresses(buf + V2_FIXED, (uint8_t)((buf[13] & 0xf0) | 1), info)) {
        *why = "PROXY v2: unix socket path without its NUL";
        return BAD;
    }
    return (int)total;
}

/* Tells v1 from v2 by the first byte; *out is written only on success. */
int proxy_parse(const uint8_t *buf, size_t len, struct proxy_info *out, const char **why)
{
    const char *ignored;
    if (why == NULL)
        why = &ignored;
    if (len == 0)
        return 0;
    struct proxy_info info;
    memset(&info, 0, sizeof(info));
    int rc;
    if (buf[0] == 'P')
        rc = parse_v1(buf, len, &info, why);
    else if (buf[0] == v2_signature[0])
        rc = parse_v2(buf, len, false, &info, why);
    else {
        *why = not_proxy;
        rc = BAD;
    }
    if (rc > 0)
        *out = info;
    return rc;
}

/* A datagram is whole: a header it does not complete is malformed. */
int proxy_parse_dgram(const uint8_t *buf, size_t len, struct proxy_info *out,
                      const char **why)
{
    const char *ignored;
    if (why == NULL)
        why = &ignored;
    struct proxy_info info;
    memset(&info, 0, sizeof(info));
    int rc = BAD;
    if (len > 0 && buf[0] == 'P')
        *why = "PROXY v1 in a datagram (v2 only)";
    else if (len > 0 && buf[0] == v2_signature[0])
        rc = parse_v2(buf, len, true, &info, why);
    else
        *why = not_proxy;
    if (rc == NEED_MORE) {
        *why = "PROXY v2 header longer than the datagram";
        rc = BAD;
    }
    if (rc > 0)
        *out = info;
    return rc;
}

/* What a pair of addresses is written as, once normalised. */
enum kind { KIND_UNKNOWN, KIND_V4, KIND_V6, KIND_UNIX };

/* Rewrites a v4-mapped v6 address as v4. */
static void unmap(addr_t *a)
{
    in_port_t port = a->u.in6.sin6_port;
    struct in_addr ip;
    memcpy(&ip, a->u.in6.sin6_addr.s6_addr + 12, 4);
    memset(a, 0, sizeof(*a));
    a->u.in.sin_family = AF_INET;
    a->u.in.sin_addr = ip;
    a->u.in.sin_port = port;
    a->len = sizeof(a->u.in);
}

/* Rewrites a v4 address as v4-mapped v6. */
static void map(addr_t *a)
{
    in_port_t port = a->u.in.sin_port;
    struct in_addr ip = a->u.in.sin_addr;
    memset(a, 0, sizeof(*a));
    a->u.in6.sin6_family = AF_INET6;
    a->u.in6.sin6_addr.s6_addr[10] = 0xff;
    a->u.in6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(a->u.in6.sin6_addr.s6_addr + 12, &ip, 4);
    a->u.in6.sin6_port = port;
    a->len = sizeof(a->u.in6);
}

/*
 * Gives s and d one family where they are IP addresses of two.  A Unix
 * path that leaves no room for its NUL in v2's 108 bytes (the kernel may
 * report 108 bytes unterminated) makes the pair unknown rather than be cut.
 */
static enum kind normalise(addr_t *s, addr_t *d)
{
    int sf = s->u.sa.sa_family, df = d->u.sa.sa_family;
    addr_t *v4 = sf == AF_INET ? s : d, *v6 = sf == AF_INET ? d : s;
    if (sf == AF_UNIX && df == AF_UNIX)
        return addr_unix_path_len(s) < V2_UNIX_PATH &&
                       addr_unix_path_len(d) < V2_UNIX_PATH
                   ? KIND_UNIX
                   : KIND_UNKNOWN;
    if (sf == AF_INET && df == AF_INET)
        return KIND_V4;
    if (sf == AF_INET6 && df == AF_INET6)
        return KIND_V6;
    if ((sf != AF_INET && sf != AF_INET6) || (df != AF_INET && df != AF_INET6))
        return KIND_UNKNOWN;
    if (IN6_IS_ADDR_V4MAPPED(&v6->u.in6.sin6_addr)) {
        unmap(v6);
        return KIND_V4;
    }
    map(v4);
    return KIND_V6;
}

/* The v1 line for a normalised pair, into text (V1_MAX + 1 bytes). */
static int build_v1(enum kind kind, const addr_t *s, const addr_t *d, char *text)
{
    char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
    int n;
    if (kind == KIND_V4) {
        inet_ntop(AF_INET, &s->u.in.sin_addr, sa, sizeof(sa));
        inet_ntop(AF_INET, &d->u.in.sin_addr, da, sizeof(da));
        n = snprintf(text, V1_MAX + 1, "PROXY TCP4 %s %s %u %u\r\n", sa, da,
                     (unsigned)ntohs(s->u.in.sin_port),
                     (unsigned)ntohs(d->u.in.sin_port));
    } else if (kind == KIND_V6) {
        inet_ntop(AF_INET6, &s->u.in6.sin6_addr, sa, sizeof(sa));
        inet_ntop(AF_INET6, &d->u.in6.sin6_addr, da, sizeof(da));
        n = snprintf(text, V1_MAX + 1, "PROXY TCP6 %s %s %u %u\r\n", sa, da,
                     (unsigned)ntohs(s->u.in6.sin6_port),
                     (unsigned)ntohs(d->u.in6.sin6_port));
    } else {
        n = snprintf(text, V1_MAX + 1, "PROXY UNKNOWN\r\n");
    }
    return n > V1_MAX ? -1 : n;
}

/* The v2 header for a normalised pair, into out (V2_FIXED + 216 bytes),
 * for a stream (transport 1) or datagrams (2).  A pair of no common family
 * is sent as AF_UNSPEC. */
static int build_v2(enum kind kind, const addr_t *s, const addr_t *d, uint8_t transport,
                    uint8_t *out)
{
    uint8_t *block = out + V2_FIXED;
    memset(out, 0, V2_FIXED + 2 * V2_UNIX_PATH);
    memcpy(out, v2_signature, sizeof(v2_signature));
    out[12] = 0x21; /* version 2, PROXY */
    size_t n = 0;
    switch (kind) {
    case KIND_V4:
        out[13] = 0x10 | transport;
        memcpy(block, &s->u.in.sin_addr, 4);
        memcpy(block + 4, &d->u.in.sin_addr, 4);
        memcpy(block + 8, &s->u.in.sin_port, 2);
        memcpy(block + 10, &d->u.in.sin_port, 2);
        n = 12;
        break;
    case KIND_V6:
        out[13] = 0x20 | transport;
        memcpy(block, &s->u.in6.sin6_addr, 16);
        memcpy(block + 16, &d->u.in6.sin6_addr, 16);
        memcpy(block + 32, &s->u.in6.sin6_port, 2);
        memcpy(block + 34, &d->u.in6.sin6_port, 2);
        n = 36;
        break;
    case KIND_UNIX:
        out[13] = 0x30 | transport;
        memcpy(block, s->u.un.sun_path, addr_unix_path_len(s));
        memcpy(block + V2_UNIX_PATH, d->u.un.sun_path, addr_unix_path_len(d));
        n = 2 * (size_t)V2_UNIX_PATH;
        break;
    case KIND_UNKNOWN:
        out[13] = 0x00;
        break;
    }
    out[14] = (uint8_t)(n >> 8);
    out[15] = (uint8_t)n;
    return (int)(V2_FIXED + n);
}

/* Builds the header on the stack, then copies it if buf can hold it. */
int proxy_build(int version, const addr_t *src, const addr_t *dst, uint8_t *buf,
                size_t len)
{
    uint8_t header[V2_FIXED + 2 * V2_UNIX_PATH];
    addr_t s = *src, d = *dst;
    enum kind kind = normalise(&s, &d);
    int n;
    if (version == 1)
        n = build_v1(kind, &s, &d, (char *)header);
    else if (version == 2 || version == PROXY_V2_DGRAM)
        n = build_v2(kind, &s, &d, version == 2 ? 1 : 2, header);
    else
        return -1;
    if (n < 0 || (size_t)n > len)
        return -1;
    memcpy(buf, header, (size_t)n);
    return n;
}
