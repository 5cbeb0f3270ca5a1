/*
 * Address settings ("127.0.0.1:7007", "[::1]:7007", "*:7007",
 * "unix:/run/echo.sock", upstream host names) and CIDR ranges for ACLs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "addr.h"

#define EXPECTED "expected host:port, [v6]:port, *:port or unix:/path"

/* The longest host name DNS allows. */
#define HOST_MAX 253

/* Writes a message into err (when there is room) and returns -1. */
__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen,
                                                      const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Whether s is one or more bytes, all from set. */
static bool all_of(const char *s, const char *set)
{
    return s[0] != '\0' && strspn(s, set) == strlen(s);
}

/*
 * Parses the port text of the setting `text`, written as `form`, into *port
 * (host order).  Decimal digits only; 0 is allowed only for listen addresses.
 */
static int parse_port(const char *text, const char *form, const char *digits,
                      enum addr_use use, in_port_t *port, char *err, size_t errlen)
{
    unsigned min = use == ADDR_LISTEN ? 0 : 1;
    if (digits[0] == '\0')
        return fail(err, errlen, "missing port in \"%s\"; expected %s", text, form);
    if (!all_of(digits, "0123456789"))
        return fail(err, errlen,
                    "invalid port \"%s\" in \"%s\"; expected a decimal number", digits,
                    text);
    unsigned long value = 0;
    for (const char *p = digits; *p != '\0' && value <= 65535; p++)
        value = value * 10 + (unsigned long)(*p - '0');
    if (value < min || value > 65535)
        return fail(err, errlen, "port \"%s\" out of range %u-65535", digits, min);
    *port = (in_port_t)value;
    return 0;
}

/* Fills a with the v4 address `ip` and port (host order). */
static void set_v4(addr_t *a, const struct in_addr *ip, in_port_t port)
{
    memset(a, 0, sizeof(*a));
    a->u.in.sin_family = AF_INET;
    a->u.in.sin_addr = *ip;
    a->u.in.sin_port = htons(port);
    a->len = sizeof(a->u.in);
}

/* Fills a with the v6 address `ip`, port (host order) and scope. */
static void set_v6(addr_t *a, const struct in6_addr *ip, in_port_t port, uint32_t scope)
{
    memset(a, 0, sizeof(*a));
    a->u.in6.sin6_family = AF_INET6;
    a->u.in6.sin6_addr = *ip;
    a->u.in6.sin6_port = htons(port);
    a->u.in6.sin6_scope_id = scope;
    a->len = sizeof(a->u.in6);
}

/* "unix:/abs/path": absolute, and short enough for sun_path with its NUL. */
static int parse_unix(const char *text, addr_t *a, char *err, size_t errlen)
{
    const char *path = text + strlen("unix:");
    size_t n = strlen(path);
    if (path[0] != '/')
        return fail(err, errlen, "unix socket path must be absolute: \"%s\"", text);
    if (n >= sizeof(a->u.un.sun_path))
        return fail(err, errlen,
                    "unix socket path is %zu bytes long; the limit is %zu: \"%s\"", n,
                    sizeof(a->u.un.sun_path) - 1, text);
    memset(a, 0, sizeof(*a));
    a->u.un.sun_family = AF_UNIX;
    memcpy(a->u.un.sun_path, path, n + 1);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

/* "[v6]:port" or "[v6%interface]:port". */
static int parse_bracketed(const char *text, enum addr_use use, addr_t *a, char *err,
                           size_t errlen)
{
    const char *close = strchr(text, ']');
    if (close == NULL)
        return fail(err, errlen, "missing ']' in \"%s\"; expected [v6]:port", text);
    const char *pct = memchr(text + 1, '%', (size_t)(close - text - 1));
    const char *end = pct != NULL ? pct : close;
    size_t n = (size_t)(end - text - 1);
    char ip_text[INET6_ADDRSTRLEN];
    if (n < sizeof(ip_text)) {
        memcpy(ip_text, text + 1, n);
        ip_text[n] = '\0';
    }
    struct in6_addr ip;
    if (n >= sizeof(ip_text) || inet_pton(AF_INET6, ip_text, &ip) != 1)
        return fail(err, errlen, "invalid IPv6 address \"%.*s\" in \"%s\"", (int)n,
                    text + 1, text);
    char ifname[IF_NAMESIZE];
    uint32_t scope = 0;
    if (pct != NULL) {
        n = (size_t)(close - pct - 1);
        if (n == 0)
            return fail(err, errlen, "missing interface name after '%%' in \"%s\"", text);
        if (n < sizeof(ifname)) {
            memcpy(ifname, pct + 1, n);
            ifname[n] = '\0';
            scope = if_nametoindex(ifname);
        }
        if (scope == 0)
            return fail(err, errlen, "unknown interface \"%.*s\" in \"%s\"", (int)n,
                        pct + 1, text);
    }
    if (close[1] == '\0')
        return fail(err, errlen, "missing port in \"%s\"; expected [v6]:port", text);
    if (close[1] != ':')
        return fail(err, errlen,
                    "unexpected \"%s\" after ']' in \"%s\"; expected [v6]:port",
                    close + 1, text);
    in_port_t port = 0; /* parse_port() sets it on success */
    if (parse_port(text, "[v6]:port", close + 2, use, &port, err, errlen) != 0)
        return -1;
    set_v6(a, &ip, port, scope);
    return 0;
}

/* "*:port": 0.0.0.0 then [::], listen addresses only. */
static int parse_wildcard(const char *text, enum addr_use use, addr_t a[2], char *err,
                          size_t errlen)
{
    struct in_addr any4 = {.s_addr = htonl(INADDR_ANY)};
    if (use != ADDR_LISTEN)
        return fail(
            err, errlen,
            "\"*\" is for listen addresses only; an upstream needs a host: \"%s\"", text);
    if (strcmp(text, "*") == 0)
        return fail(err, errlen, "missing port in \"*\"; expected *:port");
    if (text[1] != ':')
        return fail(err, errlen, EXPECTED ", got \"%s\"", text);
    in_port_t port = 0; /* parse_port() sets it on success */
    if (parse_port(text, "*:port", text + 2, use, &port, err, errlen) != 0)
        return -1;
    set_v4(&a[0], &any4, port);
    set_v6(&a[1], &in6addr_any, port, 0);
    return 0;
}

/*
 * Whether getaddrinfo reads `host` as a number ("0x7f.1", "127.1"), which
 * inet_pton refused: such a name is an ambiguous address, not a host.
 */
static bool legacy_numeric(const char *host)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    freeaddrinfo(res);
    return true;
}

/*
 * Resolves an upstream host name into a[0..max): every IPv4 and IPv6
 * address getaddrinfo gives, in its order (the one RFC 6724 sorting and
 * gai.conf made), each once; *n gets how many.
 */
static int resolve(const char *text, const char *host, in_port_t port, addr_t *a,
                   size_t max, size_t *n, char *err, size_t errlen)
{
    if (!all_of(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789-._"))
        return fail(err, errlen, "invalid host name \"%s\" in \"%s\"", host, text);
    if (legacy_numeric(host))
        return fail(err, errlen, "invalid IPv4 address \"%s\" in \"%s\"", host, text);
    char service[8];
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct addrinfo hints = {.ai_flags = AI_NUMERICSERV, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0)
        return fail(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
    size_t count = 0;
    for (const struct addrinfo *r = res; r != NULL && count < max; r = r->ai_next) {
        addr_t found;
        if ((r->ai_family != AF_INET && r->ai_family != AF_INET6) || r->ai_addr == NULL ||
            r->ai_addrlen > sizeof(found.u))
            continue;
        memset(&found, 0, sizeof(found));
        memcpy(&found.u, r->ai_addr, r->ai_addrlen);
        found.len = r->ai_addrlen;
        bool seen = false;
        for (size_t i = 0; i < count && !seen; i++)
            seen = addr_equal(&a[i], &found);
        if (!seen)
            a[count++] = found;
    }
    freeaddrinfo(res);
    if (count == 0)
        return fail(err, errlen, "cannot resolve \"%s\": no IPv4 or IPv6 address", host);
    *n = count;
    return 0;
}

/* "A.B.C.D:port", or for upstreams "name:port" (up to max addresses, their
 * number in *count). */
static int parse_host(const char *text, enum addr_use use, addr_t *a, size_t max,
                      size_t *count, char *err, size_t errlen)
{
    const char *colon = strchr(text, ':');
    if (colon != NULL && strchr(colon + 1, ':') != NULL)
        return fail(err, errlen, "IPv6 addresses need brackets: [::1]:port");
    if (text[0] == '/')
        return fail(err, errlen, EXPECTED "; a unix socket is written unix:%s", text);
    if (text[0] == '\0' || text[0] == ':')
        return fail(err, errlen, EXPECTED ", got \"%s\"", text);
    if (colon == NULL)
        return fail(err, errlen, "missing port in \"%s\"; expected host:port", text);
    size_t n = (size_t)(colon - text);
    char host[HOST_MAX + 1];
    if (n >= sizeof(host))
        return fail(err, errlen, "host name longer than %d bytes in \"%s\"", HOST_MAX,
                    text);
    memcpy(host, text, n);
    host[n] = '\0';
    struct in_addr ip;
    if (inet_pton(AF_INET, host, &ip) != 1 && all_of(host, "0123456789."))
        return fail(err, errlen, "invalid IPv4 address \"%s\" in \"%s\"", host, text);
    in_port_t port = 0; /* parse_port() sets it on success */
    if (parse_port(text, "host:port", colon + 1, use, &port, err, errlen) != 0)
        return -1;
    if (inet_pton(AF_INET, host, &ip) == 1) {
        set_v4(a, &ip, port);
        *count = 1;
        return 0;
    }
    if (use == ADDR_LISTEN)
        return fail(err, errlen,
                    "listen addresses must be numeric or *, not a host name: \"%s\"",
                    text);
    return resolve(text, host, port, a, max, count, err, errlen);
}

/* Dispatches on the form of the setting; out is written only on success.
 * A host name gives as many addresses as there is room for; "*:port" needs
 * room for both of its own. */
int addr_parse(const char *text, enum addr_use use, addr_t *out, size_t max, size_t *n,
               char *err, size_t errlen)
{
    *n = 0;
    if (text == NULL)
        text = "";
    addr_t parsed[ADDR_RESOLVE_MAX];
    size_t count = 1;
    int rc;
    if (strncmp(text, "unix:", strlen("unix:")) == 0)
        rc = parse_unix(text, &parsed[0], err, errlen);
    else if (text[0] == '[')
        rc = parse_bracketed(text, use, &parsed[0], err, errlen);
    else if (text[0] == '*') {
        rc = parse_wildcard(text, use, parsed, err, errlen);
        count = 2;
    } else
        rc = parse_host(text, use, parsed,
                        max > 0 && max < ADDR_RESOLVE_MAX ? max : ADDR_RESOLVE_MAX,
                        &count, err, errlen);
    if (rc != 0)
        return -1;
    if (max < count)
        return fail(err, errlen, "no room for \"%s\": %zu needed, max %zu", text, count,
                    max);
    memcpy(out, parsed, count * sizeof(parsed[0]));
    *n = count;
    return 0;
}

size_t addr_unix_path_len(const addr_t *a)
{
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t room = a->len > off ? a->len - off : 0;
    if (room > sizeof(a->u.un.sun_path))
        room = sizeof(a->u.un.sun_path);
    return strnlen(a->u.un.sun_path, room);
}

/*
 * "unix:PATH" into buf, cut to fit len.  A path may come from a peer (the
 * name a client bound, a PROXY v2 header) and goes into log lines, so
 * every byte but printable ASCII, and the backslash, is written \xNN: no
 * newline can start a forged line, no space a forged field, no escape
 * sequence reach a terminal.
 */
static void format_unix_path(const addr_t *a, char *buf, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = addr_unix_path_len(a);
    int w = snprintf(buf, len, "unix:");
    if (w < 0 || (size_t)w >= len)
        return;
    size_t o = (size_t)w;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a->u.un.sun_path[i];
        bool plain = c > 0x20 && c < 0x7f && c != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need >= len)
            break;
        if (plain) {
            buf[o++] = (char)c;
        } else {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        }
    }
    buf[o] = '\0';
}

/* The text of an address, as the configuration writes it. */
void addr_format(const addr_t *a, char *buf, size_t len)
{
    if (len == 0)
        return;
    char ip[INET6_ADDRSTRLEN], ifname[IF_NAMESIZE];
    switch (a->u.sa.sa_family) {
    case AF_INET:
        inet_ntop(AF_INET, &a->u.in.sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(a->u.in.sin_port));
        break;
    case AF_INET6:
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, ip, sizeof(ip));
        if (a->u.in6.sin6_scope_id == 0)
            snprintf(buf, len, "[%s]:%u", ip, (unsigned)ntohs(a->u.in6.sin6_port));
        else if (if_indextoname(a->u.in6.sin6_scope_id, ifname) != NULL)
            snprintf(buf, len, "[%s%%%s]:%u", ip, ifname,
                     (unsigned)ntohs(a->u.in6.sin6_port));
        else
            snprintf(buf, len, "[%s%%%u]:%u", ip, (unsigned)a->u.in6.sin6_scope_id,
                     (unsigned)ntohs(a->u.in6.sin6_port));
        break;
    case AF_UNIX:
        format_unix_path(a, buf, len);
        break;
    default:
        snprintf(buf, len, "(address family %d)", (int)a->u.sa.sa_family);
        break;
    }
}

/* Whether two addresses name the same socket. */
bool addr_equal(const addr_t *a, const addr_t *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    size_t n;
    switch (a->u.sa.sa_family) {
    case AF_INET:
        return a->u.in.sin_addr.s_addr == b->u.in.sin_addr.s_addr &&
               a->u.in.sin_port == b->u.in.sin_port;
    case AF_INET6:
        return memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr,
                      sizeof(a->u.in6.sin6_addr)) == 0 &&
               a->u.in6.sin6_port == b->u.in6.sin6_port &&
               a->u.in6.sin6_scope_id == b->u.in6.sin6_scope_id;
    case AF_UNIX:
        n = addr_unix_path_len(a);
        return n == addr_unix_path_len(b) &&
               memcmp(a->u.un.sun_path, b->u.un.sun_path, n) == 0;
    default:
        return false;
    }
}

unsigned addr_port(const addr_t *a)
{
    switch (a->u.sa.sa_family) {
    case AF_INET:
        return ntohs(a->u.in.sin_port);
    case AF_INET6:
        return ntohs(a->u.in6.sin6_port);
    default:
        return 0;
    }
}

void addr_set_ip(addr_t *a, int family, const void *ip, in_port_t port_be)
{
    memset(a, 0, sizeof(*a));
    if (family == AF_INET) {
        a->u.in.sin_family = AF_INET;
        memcpy(&a->u.in.sin_addr, ip, 4);
        a->u.in.sin_port = port_be;
        a->len = sizeof(a->u.in);
    } else {
        a->u.in6.sin6_family = AF_INET6;
        memcpy(&a->u.in6.sin6_addr, ip, 16);
        a->u.in6.sin6_port = port_be;
        a->len = sizeof(a->u.in6);
    }
}

void addr_set_port(addr_t *a, unsigned port)
{
    if (a->u.sa.sa_family == AF_INET)
        a->u.in.sin_port = htons((in_port_t)port);
    else if (a->u.sa.sa_family == AF_INET6)
        a->u.in6.sin6_port = htons((in_port_t)port);
}

int addr_text_host(const char *text, char *buf, size_t len)
{
    const char *start = text, *end = strrchr(text, ':');
    if (strncmp(text, "unix:", 5) == 0 || end == NULL || end == text)
        return -EINVAL;
    if (text[0] == '[') {
        start = text + 1;
        if (end[-1] != ']')
            return -EINVAL;
        end--;
    }
    if ((size_t)(end - start) >= len)
        return -ENAMETOOLONG;
    memcpy(buf, start, (size_t)(end - start));
    buf[end - start] = '\0';
    return 0;
}

bool addr_text_is_name(const char *text)
{
    char host[HOST_MAX + 1];
    if (addr_text_host(text, host, sizeof(host)) < 0 || text[0] == '[')
        return false;
    struct in_addr ip;
    return inet_pton(AF_INET, host, &ip) != 1;
}

bool addr_is_wildcard(const addr_t *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in.sin_addr.s_addr == htonl(INADDR_ANY);
    return a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&a->u.in6.sin6_addr);
}

bool addr_is_loopback(const addr_t *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return (ntohl(a->u.in.sin_addr.s_addr) >> 24) == 127;
    return a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&a->u.in6.sin6_addr);
}

addr_t addr_connect_target(const addr_t *a)
{
    addr_t t = *a;
    if (t.u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&t.u.in6.sin6_addr)) {
        in_port_t port = a->u.in6.sin6_port;
        memset(&t, 0, sizeof(t));
        t.u.in.sin_family = AF_INET;
        memcpy(&t.u.in.sin_addr, a->u.in6.sin6_addr.s6_addr + 12, 4);
        t.u.in.sin_port = port;
        t.len = sizeof(t.u.in);
    }
    if (t.u.sa.sa_family == AF_INET && addr_is_wildcard(&t))
        t.u.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (t.u.sa.sa_family == AF_INET6 && addr_is_wildcard(&t))
        t.u.in6.sin6_addr = in6addr_loopback;
    return t;
}

/* The port of an IP address, in network order. */
static in_port_t ip_port(const addr_t *a)
{
    return a->u.sa.sa_family == AF_INET ? a->u.in.sin_port : a->u.in6.sin6_port;
}

/*
 * Port 0 never clashes: the kernel gives each bind its own port, so two
 * listeners on "127.0.0.1:0" (as tests write them) are not refused.
 */
bool addr_overlaps(const addr_t *a, const addr_t *b)
{
    int family = a->u.sa.sa_family;
    if (family != b->u.sa.sa_family)
        return false;
    if (family == AF_UNIX)
        return addr_equal(a, b);
    if ((family != AF_INET && family != AF_INET6) || ip_port(a) == 0 ||
        ip_port(a) != ip_port(b))
        return false;
    return addr_equal(a, b) || addr_is_wildcard(a) || addr_is_wildcard(b);
}

/* A copy of a, inline when it fits in the room of a sockaddr_in6. */
int addr_small_set(struct addr_small *s, const addr_t *a)
{
    addr_t *big = NULL;
    if (a->len > sizeof(s->u)) {
        big = malloc(sizeof(*big));
        if (big == NULL)
            return -ENOMEM;
        *big = *a;
    }
    free(s->big);
    /* All of the union, whatever len says: an unnamed Unix client has a
     * len of 0 and still its family. */
    memcpy(&s->u, &a->u, sizeof(s->u));
    s->len = a->len;
    s->big = big;
    return 0;
}

/* An addr_t again, zeroed beyond what was kept. */
const addr_t *addr_small_get(const struct addr_small *s, addr_t *tmp)
{
    if (s->big != NULL)
        return s->big;
    memset(tmp, 0, sizeof(*tmp));
    memcpy(&tmp->u, &s->u, sizeof(s->u));
    tmp->len = s->len;
    return tmp;
}

/* The heap copy, if any, freed. */
void addr_small_free(struct addr_small *s)
{
    free(s->big);
    memset(s, 0, sizeof(*s));
}

/* The client identity: the IP address bytes, v4-mapped ones as v4. */
size_t addr_source_key(const addr_t *a, uint8_t key[16])
{
    const struct in6_addr *ip6 = &a->u.in6.sin6_addr;
    switch (a->u.sa.sa_family) {
    case AF_INET:
        memcpy(key, &a->u.in.sin_addr, 4);
        return 4;
    case AF_INET6:
        if (IN6_IS_ADDR_V4MAPPED(ip6)) {
            memcpy(key, ip6->s6_addr + 12, 4);
            return 4;
        }
        memcpy(key, ip6->s6_addr, 16);
        return 16;
    default:
        return 0;
    }
}

/* Clears the bits of net past the first `bits`; whether any was set. */
static bool clear_host_bits(uint8_t *net, size_t size, unsigned bits)
{
    bool had = false;
    for (size_t i = 0; i < size; i++, bits = (bits > 8 ? bits - 8 : 0)) {
        uint8_t mask = (uint8_t)(0xff00u >> (bits < 8 ? bits : 8));
        had |= (net[i] & ~mask) != 0;
        net[i] &= mask;
    }
    return had;
}

/* Parses the digits after '/' of a CIDR into *bits, at most max. */
static int parse_prefix(const char *text, const char *digits, unsigned max,
                        unsigned *bits, char *err, size_t errlen)
{
    if (digits[0] == '\0')
        return fail(err, errlen, "missing prefix after '/' in \"%s\"", text);
    if (!all_of(digits, "0123456789"))
        return fail(err, errlen, "invalid prefix \"/%s\" in \"%s\"; expected /0-%u",
                    digits, text, max);
    unsigned value = 0;
    for (const char *p = digits; *p != '\0' && value <= max; p++)
        value = value * 10 + (unsigned)(*p - '0');
    if (value > max)
        return fail(err, errlen, "prefix \"/%s\" out of range 0-%u", digits, max);
    *bits = value;
    return 0;
}

/*
 * A v6 range inside ::ffff:0:0/96 is refused with its v4 form: cidr_match
 * reads v4-mapped clients as v4, so such a range would match nothing.
 */
int cidr_parse(const char *text, struct cidr *out, char *err, size_t errlen)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (text == NULL || text[0] == '\0')
        return fail(err, errlen,
                    "empty CIDR; expected an address or a range like 10.0.0.0/8");
    const char *slash = strchr(text, '/');
    size_t n = slash != NULL ? (size_t)(slash - text) : strlen(text);
    char ip[INET6_ADDRSTRLEN];
    struct cidr c = {0};
    if (n < sizeof(ip)) {
        memcpy(ip, text, n);
        ip[n] = '\0';
        if (inet_pton(AF_INET, ip, c.net) == 1)
            c.family = AF_INET;
        else if (inet_pton(AF_INET6, ip, c.net) == 1)
            c.family = AF_INET6;
    }
    if (c.family == 0)
        return fail(
            err, errlen,
            "expected an address or a range like 10.0.0.0/8 or 2001:db8::/32, got \"%s\"",
            text);
    unsigned max = c.family == AF_INET ? 32 : 128;
    c.bits = max;
    if (slash != NULL && parse_prefix(text, slash + 1, max, &c.bits, err, errlen) != 0)
        return -1;
    char fixed[INET6_ADDRSTRLEN + 4];
    if (clear_host_bits(c.net, max / 8, c.bits)) {
        cidr_format(&c, fixed, sizeof(fixed));
        return fail(err, errlen, "host bits set in %s: did you mean %s?", text, fixed);
    }
    if (c.family == AF_INET6 && c.bits >= 96 &&
        memcmp(c.net, mapped, sizeof(mapped)) == 0) {
        struct cidr v4 = {.family = AF_INET, .bits = c.bits - 96};
        memcpy(v4.net, c.net + 12, 4);
        cidr_format(&v4, fixed, sizeof(fixed));
        return fail(err, errlen,
                    "%s is a v4-mapped range, which matches no client; write it as %s",
                    text, fixed);
    }
    *out = c;
    return 0;
}

/* Compares the first c->bits of the source key with the network. */
bool cidr_match(const struct cidr *c, const addr_t *a)
{
    uint8_t key[16];
    size_t n = addr_source_key(a, key);
    if (n == 0 || n != (c->family == AF_INET ? 4u : 16u) ||
        (c->family != AF_INET && c->family != AF_INET6) || c->bits > 8 * n)
        return false;
    unsigned whole = c->bits / 8;
    unsigned rest = c->bits % 8;
    if (memcmp(key, c->net, whole) != 0)
        return false;
    return rest == 0 || ((key[whole] ^ c->net[whole]) & (uint8_t)(0xff00u >> rest)) == 0;
}

/* Deny first, then allow, the same rule for every listener. */
bool cidr_allows(const struct cidr *allow, size_t nallow, const struct cidr *deny,
                 size_t ndeny, const addr_t *a)
{
    if (a->u.sa.sa_family == AF_UNIX)
        return true;
    for (size_t i = 0; i < ndeny; i++)
        if (cidr_match(&deny[i], a))
            return false;
    if (nallow == 0)
        return true;
    for (size_t i = 0; i < nallow; i++)
        if (cidr_match(&allow[i], a))
            return true;
    return false;
}

/* The text of a range, always with its prefix length. */
void cidr_format(const struct cidr *c, char *buf, size_t len)
{
    if (len == 0)
        return;
    char ip[INET6_ADDRSTRLEN];
    if (inet_ntop(c->family, c->net, ip, sizeof(ip)) == NULL)
        snprintf(buf, len, "(address family %d)", c->family);
    else
        snprintf(buf, len, "%s/%u", ip, c->bits);
}

const char *addr_unix_path_problem(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return NULL; /* nothing there (or nothing to say yet) */
    if (S_ISSOCK(st.st_mode))
        return NULL;
    if (S_ISDIR(st.st_mode))
        return "a directory";
    if (S_ISLNK(st.st_mode))
        return "a symbolic link";
    if (S_ISFIFO(st.st_mode))
        return "a FIFO";
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
        return "a device";
    return "a regular file";
}
