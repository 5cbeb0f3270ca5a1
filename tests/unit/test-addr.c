/*
 * Address settings and CIDR ranges (src/addr.c): every accepted form, every
 * refusal with its exact message, round trips through addr_format and
 * cidr_format, overlaps, source keys and CIDR match tables.
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
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "seeds.h"

#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *)0)->sun_path)

/* Parses text, which must give exactly one address. */
static addr_t parse_one(const char *text, enum addr_use use)
{
    addr_t out[2];
    char err[256] = "";
    size_t n = 99;
    if (addr_parse(text, use, out, 2, &n, err, sizeof(err)) != 0)
        fail_msg("\"%s\" refused: %s", text, err);
    assert_int_equal(n, 1);
    return out[0];
}

/* Asserts that text is refused with exactly msg, leaving out untouched. */
static void expect_error(const char *text, enum addr_use use, const char *msg)
{
    addr_t out[2];
    memset(out, 0xa5, sizeof(out));
    addr_t before[2];
    memcpy(before, out, sizeof(out));
    char err[512] = "";
    size_t n = 99;
    if (addr_parse(text, use, out, 2, &n, err, sizeof(err)) != -1)
        fail_msg("\"%s\" accepted", text);
    assert_string_equal(err, msg);
    assert_int_equal(n, 0);
    assert_memory_equal(out, before, sizeof(out));
}

/* Asserts that text parses and formats back to exactly text. */
static void expect_round_trip(const char *text, enum addr_use use)
{
    addr_t a = parse_one(text, use);
    char buf[ADDR_STRLEN];
    addr_format(&a, buf, sizeof(buf));
    assert_string_equal(buf, text);
}

/* A v4 address from its text, for the tables. */
static addr_t v4(const char *ip, unsigned port)
{
    addr_t a;
    memset(&a, 0, sizeof(a));
    a.u.in.sin_family = AF_INET;
    a.u.in.sin_port = htons((in_port_t)port);
    assert_int_equal(inet_pton(AF_INET, ip, &a.u.in.sin_addr), 1);
    a.len = sizeof(a.u.in);
    return a;
}

/* A v6 address from its text, for the tables. */
static addr_t v6(const char *ip, unsigned port)
{
    addr_t a;
    memset(&a, 0, sizeof(a));
    a.u.in6.sin6_family = AF_INET6;
    a.u.in6.sin6_port = htons((in_port_t)port);
    assert_int_equal(inet_pton(AF_INET6, ip, &a.u.in6.sin6_addr), 1);
    a.len = sizeof(a.u.in6);
    return a;
}

/* A Unix socket address of path. */
static addr_t unix_addr(const char *path)
{
    addr_t a;
    memset(&a, 0, sizeof(a));
    a.u.un.sun_family = AF_UNIX;
    strcpy(a.u.un.sun_path, path);
    a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
    return a;
}

/* Whether two addresses made by the table helpers are equal. */
static bool equal(addr_t a, addr_t b)
{
    return addr_equal(&a, &b);
}

/* "A.B.C.D:port": the sockaddr_in, its length and the text back. */
static void test_v4(void **state)
{
    addr_t a = parse_one("127.0.0.1:7007", ADDR_LISTEN);
    addr_t b = parse_one("192.0.2.1:65535", ADDR_UPSTREAM);
    addr_t expected = v4("127.0.0.1", 7007);
    (void)state;
    assert_int_equal(a.u.sa.sa_family, AF_INET);
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(a.u.in.sin_port), 7007);
    assert_int_equal(ntohl(a.u.in.sin_addr.s_addr), 0x7f000001);
    assert_memory_equal(&a, &expected, sizeof(a));
    assert_int_equal(ntohs(b.u.in.sin_port), 65535);
    expect_round_trip("127.0.0.1:7007", ADDR_LISTEN);
    expect_round_trip("0.0.0.0:0", ADDR_LISTEN);
    expect_round_trip("255.255.255.255:1", ADDR_UPSTREAM);
    /* leading zeros in the port read as decimal */
    a = parse_one("10.0.0.1:0080", ADDR_UPSTREAM);
    assert_int_equal(ntohs(a.u.in.sin_port), 80);
}

/* Missing ports and addresses inet_pton refuses, resolver forms included. */
static void test_v4_errors(void **state)
{
    (void)state;
    expect_error("127.0.0.1", ADDR_LISTEN,
                 "missing port in \"127.0.0.1\"; expected host:port");
    expect_error("127.0.0.1:", ADDR_UPSTREAM,
                 "missing port in \"127.0.0.1:\"; expected host:port");
    expect_error("localhost", ADDR_UPSTREAM,
                 "missing port in \"localhost\"; expected host:port");
    expect_error("1.2.3.256:80", ADDR_LISTEN,
                 "invalid IPv4 address \"1.2.3.256\" in \"1.2.3.256:80\"");
    expect_error("01.2.3.4:80", ADDR_UPSTREAM,
                 "invalid IPv4 address \"01.2.3.4\" in \"01.2.3.4:80\"");
    expect_error("1.2.3:80", ADDR_UPSTREAM,
                 "invalid IPv4 address \"1.2.3\" in \"1.2.3:80\"");
    expect_error("1.2.3.4.5:80", ADDR_LISTEN,
                 "invalid IPv4 address \"1.2.3.4.5\" in \"1.2.3.4.5:80\"");
    expect_error("127.1:80", ADDR_UPSTREAM,
                 "invalid IPv4 address \"127.1\" in \"127.1:80\"");
    /* inet_aton's hexadecimal forms are not host names either */
    expect_error("0x7f.1:80", ADDR_UPSTREAM,
                 "invalid IPv4 address \"0x7f.1\" in \"0x7f.1:80\"");
    expect_error("0x7f000001:80", ADDR_UPSTREAM,
                 "invalid IPv4 address \"0x7f000001\" in \"0x7f000001:80\"");
}

/* Port bounds per use, and anything but plain decimal digits. */
static void test_ports(void **state)
{
    static const struct {
        const char *text;
        enum addr_use use;
        const char *msg;
    } cases[] = {
        {"1.2.3.4:70000", ADDR_LISTEN, "port \"70000\" out of range 0-65535"},
        {"1.2.3.4:65536", ADDR_LISTEN, "port \"65536\" out of range 0-65535"},
        {"1.2.3.4:70000", ADDR_UPSTREAM, "port \"70000\" out of range 1-65535"},
        {"1.2.3.4:0", ADDR_UPSTREAM, "port \"0\" out of range 1-65535"},
        {"1.2.3.4:000", ADDR_UPSTREAM, "port \"000\" out of range 1-65535"},
        {"1.2.3.4:99999999999999999999999", ADDR_LISTEN,
         "port \"99999999999999999999999\" out of range 0-65535"},
        {"1.2.3.4:+80", ADDR_LISTEN,
         "invalid port \"+80\" in \"1.2.3.4:+80\"; expected a decimal number"},
        {"1.2.3.4:-1", ADDR_LISTEN,
         "invalid port \"-1\" in \"1.2.3.4:-1\"; expected a decimal number"},
        {"1.2.3.4: 80", ADDR_LISTEN,
         "invalid port \" 80\" in \"1.2.3.4: 80\"; expected a decimal number"},
        {"1.2.3.4:80 ", ADDR_UPSTREAM,
         "invalid port \"80 \" in \"1.2.3.4:80 \"; expected a decimal number"},
        {"1.2.3.4:80x", ADDR_UPSTREAM,
         "invalid port \"80x\" in \"1.2.3.4:80x\"; expected a decimal number"},
        {"1.2.3.4:0x50", ADDR_UPSTREAM,
         "invalid port \"0x50\" in \"1.2.3.4:0x50\"; expected a decimal number"},
        {"1.2.3.4:http", ADDR_UPSTREAM,
         "invalid port \"http\" in \"1.2.3.4:http\"; expected a decimal number"},
        {"[::1]:65536", ADDR_UPSTREAM, "port \"65536\" out of range 1-65535"},
        {"[::1]:0", ADDR_UPSTREAM, "port \"0\" out of range 1-65535"},
        {"*:70000", ADDR_LISTEN, "port \"70000\" out of range 0-65535"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(cases[i].text, cases[i].use, cases[i].msg);
    addr_t a = parse_one("1.2.3.4:0", ADDR_LISTEN);
    assert_int_equal(a.u.in.sin_port, 0);
    a = parse_one("[::1]:0", ADDR_LISTEN);
    assert_int_equal(a.u.in6.sin6_port, 0);
    a = parse_one("1.2.3.4:1", ADDR_UPSTREAM);
    assert_int_equal(ntohs(a.u.in.sin_port), 1);
}

/* "[v6]:port": the sockaddr_in6, its length, canonical text back. */
static void test_v6(void **state)
{
    addr_t a = parse_one("[::1]:7007", ADDR_LISTEN);
    addr_t expected = v6("::1", 7007);
    (void)state;
    assert_int_equal(a.u.sa.sa_family, AF_INET6);
    assert_int_equal(a.len, sizeof(struct sockaddr_in6));
    assert_memory_equal(&a, &expected, sizeof(a));
    expect_round_trip("[::1]:7007", ADDR_UPSTREAM);
    expect_round_trip("[::]:0", ADDR_LISTEN);
    expect_round_trip("[2001:db8::1]:443", ADDR_UPSTREAM);
    expect_round_trip("[::ffff:192.0.2.1]:80", ADDR_UPSTREAM);
    /* formatting is canonical, not a copy of the text */
    a = parse_one("[2001:DB8:0:0:0:0:0:1]:443", ADDR_UPSTREAM);
    expected = v6("2001:db8::1", 443);
    assert_memory_equal(&a, &expected, sizeof(a));
}

/* "[fe80::1%lo]:port" sets the scope from the interface name. */
static void test_v6_scope(void **state)
{
    unsigned lo = if_nametoindex("lo");
    (void)state;
    if (lo == 0)
        skip();
    addr_t a = parse_one("[fe80::1%lo]:80", ADDR_UPSTREAM);
    assert_int_equal(a.u.in6.sin6_scope_id, lo);
    assert_int_equal(ntohs(a.u.in6.sin6_port), 80);
    expect_round_trip("[fe80::1%lo]:80", ADDR_LISTEN);
    expect_error("[fe80::1%nosuchif0]:80", ADDR_UPSTREAM,
                 "unknown interface \"nosuchif0\" in \"[fe80::1%nosuchif0]:80\"");
    expect_error("[fe80::1%]:80", ADDR_UPSTREAM,
                 "missing interface name after '%' in \"[fe80::1%]:80\"");
    /* 16 bytes: longer than any interface name; 15 bytes of it is not one */
    expect_error(
        "[fe80::1%lo0123456789abcd]:80", ADDR_LISTEN,
        "unknown interface \"lo0123456789abcd\" in \"[fe80::1%lo0123456789abcd]:80\"");
    expect_error("[fe80::1%averyveryverylongname]:80", ADDR_LISTEN,
                 "unknown interface \"averyveryverylongname\" in "
                 "\"[fe80::1%averyveryverylongname]:80\"");
}

/* Brackets missing or unbalanced, junk after them, bad addresses. */
static void test_v6_errors(void **state)
{
    (void)state;
    expect_error("::1:80", ADDR_UPSTREAM, "IPv6 addresses need brackets: [::1]:port");
    expect_error("2001:db8::1", ADDR_LISTEN, "IPv6 addresses need brackets: [::1]:port");
    expect_error("[::1]", ADDR_UPSTREAM, "missing port in \"[::1]\"; expected [v6]:port");
    expect_error("[::1]:", ADDR_UPSTREAM,
                 "missing port in \"[::1]:\"; expected [v6]:port");
    expect_error("[::1]80", ADDR_UPSTREAM,
                 "unexpected \"80\" after ']' in \"[::1]80\"; expected [v6]:port");
    expect_error("[::1:80", ADDR_LISTEN,
                 "missing ']' in \"[::1:80\"; expected [v6]:port");
    expect_error("[zz::1]:80", ADDR_UPSTREAM,
                 "invalid IPv6 address \"zz::1\" in \"[zz::1]:80\"");
    expect_error("[]:80", ADDR_UPSTREAM, "invalid IPv6 address \"\" in \"[]:80\"");
    /* 45 bytes would be a valid address */
    expect_error(
        "[0000:0000:0000:0000:0000:0000:192.168.100.2000]:80", ADDR_UPSTREAM,
        "invalid IPv6 address \"0000:0000:0000:0000:0000:0000:192.168.100.2000\" "
        "in \"[0000:0000:0000:0000:0000:0000:192.168.100.2000]:80\"");
    expect_error("[zz::1%lo]:80", ADDR_UPSTREAM,
                 "invalid IPv6 address \"zz::1\" in \"[zz::1%lo]:80\"");
    expect_error("[127.0.0.1]:80", ADDR_UPSTREAM,
                 "invalid IPv6 address \"127.0.0.1\" in \"[127.0.0.1]:80\"");
    expect_error(
        "[1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18:19:20:21:22]:80", ADDR_UPSTREAM,
        "invalid IPv6 address \"1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18:19:20:21:22\" "
        "in \"[1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18:19:20:21:22]:80\"");
}

/* "*:port" is 0.0.0.0 then [::], needs two slots, and is listen-only. */
static void test_wildcard(void **state)
{
    addr_t any4 = v4("0.0.0.0", 7007), any6 = v6("::", 7007);
    (void)state;
    addr_t out[3];
    char err[256] = "";
    size_t n = 0;
    assert_int_equal(addr_parse("*:7007", ADDR_LISTEN, out, 3, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(&out[0], &any4, sizeof(any4));
    assert_memory_equal(&out[1], &any6, sizeof(any6));
    char buf[ADDR_STRLEN];
    addr_format(&out[0], buf, sizeof(buf));
    assert_string_equal(buf, "0.0.0.0:7007");
    addr_format(&out[1], buf, sizeof(buf));
    assert_string_equal(buf, "[::]:7007");
    assert_int_equal(addr_parse("*:0", ADDR_LISTEN, out, 2, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);

    n = 99;
    assert_int_equal(addr_parse("*:7007", ADDR_LISTEN, out, 1, &n, err, sizeof(err)), -1);
    assert_string_equal(err, "no room for \"*:7007\": 2 needed, max 1");
    assert_int_equal(n, 0);
    n = 99;
    assert_int_equal(addr_parse("[::1]:1", ADDR_LISTEN, out, 0, &n, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "no room for \"[::1]:1\": 1 needed, max 0");
    assert_int_equal(n, 0);

    expect_error(
        "*:7007", ADDR_UPSTREAM,
        "\"*\" is for listen addresses only; an upstream needs a host: \"*:7007\"");
    expect_error("*", ADDR_LISTEN, "missing port in \"*\"; expected *:port");
    expect_error("*:", ADDR_LISTEN, "missing port in \"*:\"; expected *:port");
    expect_error("*x:80", ADDR_LISTEN,
                 "expected host:port, [v6]:port, *:port or unix:/path, got \"*x:80\"");
}

/* "unix:/path": absolute, up to sun_path with its NUL, len exact. */
static void test_unix(void **state)
{
    addr_t a = parse_one("unix:/run/echo.sock", ADDR_LISTEN);
    addr_t expected = unix_addr("/run/echo.sock");
    (void)state;
    assert_int_equal(a.u.sa.sa_family, AF_UNIX);
    assert_int_equal(a.len, offsetof(struct sockaddr_un, sun_path) +
                                strlen("/run/echo.sock") + 1);
    assert_memory_equal(&a, &expected, sizeof(a));
    expect_round_trip("unix:/run/echo.sock", ADDR_UPSTREAM);
    expect_round_trip("unix:/", ADDR_LISTEN);

    /* the longest path that fits sun_path with its NUL, and one more */
    char text[8 + SUN_PATH_SIZE];
    strcpy(text, "unix:/");
    size_t longest = SUN_PATH_SIZE - 1;
    memset(text + 6, 'a', longest - 1);
    text[5 + longest] = '\0';
    a = parse_one(text, ADDR_LISTEN);
    assert_int_equal(strlen(a.u.un.sun_path), longest);
    assert_int_equal(a.len, offsetof(struct sockaddr_un, sun_path) + longest + 1);
    expect_round_trip(text, ADDR_LISTEN);
    strcat(text, "b");
    char msg[512];
    snprintf(msg, sizeof(msg),
             "unix socket path is %zu bytes long; the limit is %zu: \"%s\"", longest + 1,
             longest, text);
    expect_error(text, ADDR_UPSTREAM, msg);

    expect_error("unix:run/echo.sock", ADDR_LISTEN,
                 "unix socket path must be absolute: \"unix:run/echo.sock\"");
    expect_error("unix:", ADDR_LISTEN, "unix socket path must be absolute: \"unix:\"");
    expect_error("/run/echo.sock", ADDR_LISTEN,
                 "expected host:port, [v6]:port, *:port or unix:/path; "
                 "a unix socket is written unix:/run/echo.sock");
}

/* Names: refused for listening, resolved (every result) for upstreams. */
static void test_host_names(void **state)
{
    (void)state;
    expect_error(
        "localhost:80", ADDR_LISTEN,
        "listen addresses must be numeric or *, not a host name: \"localhost:80\"");

    /* every address getaddrinfo gives, in its order, port included */
    struct addrinfo hints = {.ai_flags = AI_NUMERICSERV, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    assert_int_equal(getaddrinfo("localhost", "80", &hints, &res), 0);
    addr_t a, expected[ADDR_RESOLVE_MAX];
    size_t nexpected = 0;
    for (struct addrinfo *r = res; r != NULL && nexpected < ADDR_RESOLVE_MAX;
         r = r->ai_next) {
        memset(&a, 0, sizeof(a));
        memcpy(&a.u, r->ai_addr, r->ai_addrlen);
        a.len = r->ai_addrlen;
        bool seen = false;
        for (size_t i = 0; i < nexpected; i++)
            seen |= addr_equal(&expected[i], &a);
        if (!seen)
            expected[nexpected++] = a;
    }
    freeaddrinfo(res);
    char msg[512];
    addr_t got[ADDR_RESOLVE_MAX];
    size_t n = 0;
    assert_int_equal(addr_parse("localhost:80", ADDR_UPSTREAM, got, ADDR_RESOLVE_MAX, &n,
                                msg, sizeof(msg)),
                     0);
    assert_int_equal(n, nexpected);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(got[i].len, expected[i].len);
        assert_memory_equal(&got[i], &expected[i], sizeof(got[i]));
    }
    /* room for one: the first */
    assert_int_equal(addr_parse("localhost:80", ADDR_UPSTREAM, got, 1, &n, msg,
                                sizeof(msg)),
                     0);
    assert_int_equal(n, 1);
    assert_true(addr_equal(&got[0], &expected[0]));

    int rc = getaddrinfo("no-such-host.invalid", "80", &hints, &res);
    assert_int_not_equal(rc, 0);
    snprintf(msg, sizeof(msg), "cannot resolve \"no-such-host.invalid\": %s",
             gai_strerror(rc));
    expect_error("no-such-host.invalid:80", ADDR_UPSTREAM, msg);

    expect_error("bad_host!:80", ADDR_UPSTREAM,
                 "invalid host name \"bad_host!\" in \"bad_host!:80\"");
    expect_error("a b:80", ADDR_UPSTREAM, "invalid host name \"a b\" in \"a b:80\"");
    expect_error("", ADDR_UPSTREAM,
                 "expected host:port, [v6]:port, *:port or unix:/path, got \"\"");
    expect_error(":80", ADDR_LISTEN,
                 "expected host:port, [v6]:port, *:port or unix:/path, got \":80\"");
    expect_error(NULL, ADDR_LISTEN,
                 "expected host:port, [v6]:port, *:port or unix:/path, got \"\"");
}

/*
 * A resolver of our own for the names below, so that several addresses are
 * tested whatever this machine's hosts file says: this getaddrinfo() (the
 * program's own, so the one addr.c calls) answers them from a table, and
 * every other name (and numeric lookups) through the C library's;
 * freeaddrinfo() frees what it made and hands the rest on.
 */
typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                              struct addrinfo **);
typedef void (*freeaddrinfo_fn)(struct addrinfo *);

/* The table: a name and its answer, in order, duplicates included. */
static const struct {
    const char *name;
    const char *ips[24];
} fake_hosts[] = {
    {"two.test", {"::1", "127.0.0.1"}},
    {"dups.test",
     {"127.0.0.1", "::1", "127.0.0.1", "192.0.2.1", "::1", "[unix]", "192.0.2.1"}},
    {"many.test", {"192.0.2.1",  "192.0.2.2",  "192.0.2.3",  "192.0.2.4",  "192.0.2.5",
                   "192.0.2.6",  "192.0.2.7",  "192.0.2.8",  "192.0.2.9",  "192.0.2.10",
                   "192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14", "192.0.2.15",
                   "192.0.2.16", "192.0.2.17", "192.0.2.18", "192.0.2.19", "192.0.2.20"}},
    {"unix-only.test", {"[unix]"}},
};

/* An answer of ours: each node holds its own address. */
struct fake_ai {
    struct addrinfo ai;
    struct sockaddr_storage ss;
};

/* The answers of ours not freed yet, for freeaddrinfo() to tell them from
 * the C library's (the tests are one thread, and free what they get). */
static struct addrinfo *fake_answers[8];

/* One node for ip ("[unix]": a family addr.c must pass over) and port. */
static struct addrinfo *fake_node(const char *ip, unsigned port)
{
    struct fake_ai *f = calloc(1, sizeof(*f));
    struct sockaddr_in *in = (struct sockaddr_in *)&f->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&f->ss;
    if (f == NULL)
        abort();
    f->ai.ai_socktype = SOCK_STREAM;
    f->ai.ai_addr = (struct sockaddr *)&f->ss;
    if (strcmp(ip, "[unix]") == 0) {
        f->ai.ai_family = AF_UNIX;
        f->ss.ss_family = AF_UNIX;
        f->ai.ai_addrlen = sizeof(struct sockaddr_un);
    } else if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        f->ai.ai_family = in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        f->ai.ai_addrlen = sizeof(*in);
    } else if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
        f->ai.ai_family = in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        f->ai.ai_addrlen = sizeof(*in6);
    } else {
        abort();
    }
    return &f->ai;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res);
void freeaddrinfo(struct addrinfo *ai);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    getaddrinfo_fn real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    for (size_t i = 0;
         node != NULL && (hints == NULL || !(hints->ai_flags & AI_NUMERICHOST)) &&
         i < sizeof(fake_hosts) / sizeof(fake_hosts[0]);
         i++) {
        struct addrinfo **tail = res;
        if (strcmp(node, fake_hosts[i].name) != 0)
            continue;
        *res = NULL;
        for (size_t k = 0; k < 24 && fake_hosts[i].ips[k] != NULL; k++) {
            *tail = fake_node(fake_hosts[i].ips[k],
                              service != NULL ? (unsigned)atoi(service) : 0);
            tail = &(*tail)->ai_next;
        }
        for (size_t k = 0; k < sizeof(fake_answers) / sizeof(fake_answers[0]); k++)
            if (fake_answers[k] == NULL) {
                fake_answers[k] = *res;
                return 0;
            }
        abort(); /* a test did not free its answers */
    }
    return real != NULL ? real(node, service, hints, res) : EAI_SYSTEM;
}

void freeaddrinfo(struct addrinfo *ai)
{
    freeaddrinfo_fn real = (freeaddrinfo_fn)dlsym(RTLD_NEXT, "freeaddrinfo");
    size_t k = 0;
    while (k < sizeof(fake_answers) / sizeof(fake_answers[0]) && fake_answers[k] != ai)
        k++;
    if (ai == NULL || k == sizeof(fake_answers) / sizeof(fake_answers[0])) {
        if (real != NULL && ai != NULL)
            real(ai);
        return;
    }
    fake_answers[k] = NULL;
    while (ai != NULL) {
        struct addrinfo *next = ai->ai_next;
        free(ai);
        ai = next;
    }
}

/* Parses text as an upstream with room for max, expecting the addresses
 * ips[0..n) with `port`, in that order. */
static void expect_resolved(const char *text, size_t max, const char *const *ips,
                            size_t n, unsigned port)
{
    assert_true(max <= ADDR_RESOLVE_MAX + 2);
    addr_t out[ADDR_RESOLVE_MAX + 2];
    memset(out, 0xa5, sizeof(out));
    addr_t before[ADDR_RESOLVE_MAX + 2];
    memcpy(before, out, sizeof(out));
    char err[256] = "";
    size_t got = 99;
    if (addr_parse(text, ADDR_UPSTREAM, out, max, &got, err, sizeof(err)) != 0)
        fail_msg("\"%s\" refused: %s", text, err);
    assert_int_equal(got, n);
    char buf[ADDR_STRLEN], want[ADDR_STRLEN];
    for (size_t i = 0; i < n; i++) {
        if (strchr(ips[i], ':') != NULL)
            snprintf(want, sizeof(want), "[%s]:%u", ips[i], port);
        else
            snprintf(want, sizeof(want), "%s:%u", ips[i], port);
        addr_format(&out[i], buf, sizeof(buf));
        assert_string_equal(buf, want);
        assert_int_equal(out[i].len, out[i].u.sa.sa_family == AF_INET
                                         ? sizeof(struct sockaddr_in)
                                         : sizeof(struct sockaddr_in6));
    }
    /* nothing written past them */
    assert_memory_equal(&out[n], &before[n],
                        (sizeof(out[0])) * (ADDR_RESOLVE_MAX + 2 - n));
}

/* A name with several addresses gives them all, in the resolver's order,
 * each once, other families passed over, at most ADDR_RESOLVE_MAX and at
 * most the room given. */
static void test_host_name_every_address(void **state)
{
    static const char *const two[] = {"::1", "127.0.0.1"};
    static const char *const dups[] = {"127.0.0.1", "::1", "192.0.2.1"};
    static const char *const many[] = {"192.0.2.1",  "192.0.2.2",  "192.0.2.3",
                                       "192.0.2.4",  "192.0.2.5",  "192.0.2.6",
                                       "192.0.2.7",  "192.0.2.8",  "192.0.2.9",
                                       "192.0.2.10", "192.0.2.11", "192.0.2.12",
                                       "192.0.2.13", "192.0.2.14", "192.0.2.15",
                                       "192.0.2.16"};
    (void)state;
    assert_int_equal(ADDR_RESOLVE_MAX, 16);
    expect_resolved("two.test:6379", ADDR_RESOLVE_MAX, two, 2, 6379);
    expect_resolved("two.test:6379", 1, two, 1, 6379);
    expect_resolved("dups.test:80", ADDR_RESOLVE_MAX, dups, 3, 80);
    expect_resolved("many.test:443", ADDR_RESOLVE_MAX + 2, many, 16, 443);
    expect_resolved("many.test:443", 5, many, 5, 443);
    expect_error("unix-only.test:80", ADDR_UPSTREAM,
                 "cannot resolve \"unix-only.test\": no IPv4 or IPv6 address");
    addr_t out[2];
    size_t n;
    assert_int_equal(addr_parse("two.test:1", ADDR_UPSTREAM, out, 0, &n, NULL, 0), -1);
    assert_int_equal(n, 0);
}

/* This machine's "localhost", through the real resolver: both of its
 * addresses when its hosts file gives two (Debian's gives [::1] first). */
static void test_localhost_every_address(void **state)
{
    (void)state;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    assert_int_equal(getaddrinfo("localhost", NULL, &hints, &res), 0);
    size_t distinct = 0;
    bool v4 = false, v6 = false;
    for (struct addrinfo *r = res; r != NULL; r = r->ai_next) {
        if (r->ai_family == AF_INET && !v4)
            distinct++, v4 = true;
        if (r->ai_family == AF_INET6 && !v6)
            distinct++, v6 = true;
    }
    freeaddrinfo(res);
    if (!v4 || !v6) {
        print_message("localhost is only IPv%c in this machine's hosts file: "
                      "test_host_name_every_address covers several addresses\n",
                      v4 ? '4' : '6');
        skip();
    }
    addr_t out[ADDR_RESOLVE_MAX];
    char err[256] = "";
    size_t n = 0;
    assert_int_equal(addr_parse("localhost:7", ADDR_UPSTREAM, out, ADDR_RESOLVE_MAX, &n,
                                err, sizeof(err)),
                     0);
    assert_true(n >= distinct);
    v4 = v6 = false;
    for (size_t i = 0; i < n; i++) {
        v4 |= out[i].u.sa.sa_family == AF_INET;
        v6 |= out[i].u.sa.sa_family == AF_INET6;
    }
    assert_true(v4 && v6);
}

/* A name longer than DNS allows is refused before the resolver. */
static void test_host_name_too_long(void **state)
{
    (void)state;
    char text[300];
    memset(text, 'a', 254);
    strcpy(text + 254, ":80");
    char msg[512];
    snprintf(msg, sizeof(msg), "host name longer than 253 bytes in \"%s\"", text);
    expect_error(text, ADDR_UPSTREAM, msg);
}

/* Messages are cut to errlen, with their NUL; none is written into 0 bytes. */
static void test_error_truncation(void **state)
{
    (void)state;
    char err[8];
    memset(err, 'x', sizeof(err));
    addr_t out[2];
    size_t n;
    assert_int_equal(addr_parse("nonsense", ADDR_LISTEN, out, 2, &n, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "missing");
    memset(err, 'x', sizeof(err));
    assert_int_equal(addr_parse("nonsense", ADDR_LISTEN, out, 2, &n, err, 0), -1);
    assert_int_equal(err[0], 'x');
    assert_int_equal(addr_parse("nonsense", ADDR_LISTEN, out, 2, &n, NULL, 0), -1);
}

/* addr_format cuts to len, and copes with odd families and paths. */
static void test_format(void **state)
{
    addr_t a = v4("192.0.2.1", 80);
    (void)state;
    char small[6];
    memset(small, 'x', sizeof(small));
    addr_format(&a, small, sizeof(small));
    assert_string_equal(small, "192.0");
    small[0] = 'x';
    addr_format(&a, small, 0);
    assert_int_equal(small[0], 'x');

    memset(&a, 0, sizeof(a));
    a.u.sa.sa_family = AF_UNSPEC;
    char buf[ADDR_STRLEN];
    addr_format(&a, buf, sizeof(buf));
    assert_string_equal(buf, "(address family 0)");

    /* a scope whose interface is gone is written as its number */
    a = v6("fe80::1", 80);
    a.u.in6.sin6_scope_id = 0x7ffffff0;
    addr_format(&a, buf, sizeof(buf));
    assert_string_equal(buf, "[fe80::1%2147483632]:80");

    /* ADDR_STRLEN holds the longest of each kind */
    a = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    addr_format(&a, buf, sizeof(buf));
    assert_string_equal(buf, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
    memset(&a, 'p', sizeof(a));
    a.u.un.sun_family = AF_UNIX;
    a.u.un.sun_path[SUN_PATH_SIZE - 1] = '\0';
    a.len = sizeof(a.u.un);
    addr_format(&a, buf, sizeof(buf));
    assert_int_equal(strlen(buf), strlen("unix:") + SUN_PATH_SIZE - 1);

    /* a path the kernel reports unterminated in all of sun_path: read no
     * further than sun_path, even when len claims more */
    a.u.un.sun_path[SUN_PATH_SIZE - 1] = 'p';
    a.len = sizeof(a.u);
    char big[2 * ADDR_STRLEN];
    addr_format(&a, big, sizeof(big));
    assert_int_equal(strlen(big), strlen("unix:") + SUN_PATH_SIZE);
    assert_true(equal(a, a));
}

/* A Unix path may come from a peer and goes into log lines: every byte
 * but printable ASCII, the space and the backslash included, is written
 * \xNN, so no newline forges a line and no space a field. */
static void test_format_escapes_unix_paths(void **state)
{
    static const char path[] = "/t\nmio-echod: notice: forged\x1b[2J a\\b\xc3\xa9";
    (void)state;
    addr_t a;
    memset(&a, 0, sizeof(a));
    a.u.un.sun_family = AF_UNIX;
    memcpy(a.u.un.sun_path, path, sizeof(path));
    a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sizeof(path));
    char buf[ADDR_STRLEN];
    addr_format(&a, buf, sizeof(buf));
    assert_string_equal(buf, "unix:/t\\x0amio-echod:\\x20notice:\\x20forged\\x1b[2J"
                             "\\x20a\\x5cb\\xc3\\xa9");
    /* the longest path, every byte escaped, fits whole */
    memset(a.u.un.sun_path, '\n', sizeof(a.u.un.sun_path));
    a.len = sizeof(a.u.un);
    addr_format(&a, buf, sizeof(buf));
    assert_int_equal(strlen(buf), strlen("unix:") + 4 * sizeof(a.u.un.sun_path));
}

/* What an addr_small keeps of `a` formats and compares as `a` does. */
static void expect_small_round_trip(const addr_t *a, bool on_heap)
{
    struct addr_small s = {0};
    assert_int_equal(addr_small_set(&s, a), 0);
    assert_int_equal(s.big != NULL, on_heap);
    addr_t tmp;
    const addr_t *back = addr_small_get(&s, &tmp);
    assert_int_equal(back->len, a->len);
    assert_int_equal(back->u.sa.sa_family, a->u.sa.sa_family);
    char want[ADDR_STRLEN], got[ADDR_STRLEN];
    addr_format(a, want, sizeof(want));
    addr_format(back, got, sizeof(got));
    assert_string_equal(got, want);
    if (a->u.sa.sa_family != AF_UNIX || a->len > offsetof(struct sockaddr_un, sun_path))
        assert_true(addr_equal(back, a));
    addr_small_free(&s);
    assert_null(s.big);
}

/* A connection keeps its client in 40 bytes: IPv4, IPv6 with a scope and
 * an unnamed Unix client (len 0, only its family) inline, a Unix path too
 * long for the room on the heap; setting again replaces and frees. */
static void test_small(void **state)
{
    (void)state;
    assert_true(sizeof(struct addr_small) <= 40);
    addr_t a = v4("192.0.2.1", 80);
    expect_small_round_trip(&a, false);
    a = v6("fe80::1", 443);
    a.u.in6.sin6_scope_id = 1;
    expect_small_round_trip(&a, false);
    memset(&a, 0, sizeof(a));
    a.u.un.sun_family = AF_UNIX;
    a.len = 0;
    expect_small_round_trip(&a, false);
    static const char shortp[] = "/run/e.sock";
    memcpy(a.u.un.sun_path, shortp, sizeof(shortp));
    a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sizeof(shortp));
    expect_small_round_trip(&a, false);
    static const char longp[] = "/run/mio-echod/a-client-bound-to-a-long-path.sock";
    memcpy(a.u.un.sun_path, longp, sizeof(longp));
    a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sizeof(longp));
    expect_small_round_trip(&a, true);

    struct addr_small s = {0};
    assert_int_equal(addr_small_set(&s, &a), 0);
    addr_t b = v4("198.51.100.7", 9);
    assert_int_equal(addr_small_set(&s, &b), 0); /* the heap copy freed */
    addr_t tmp;
    assert_true(addr_equal(addr_small_get(&s, &tmp), &b));
    addr_small_free(&s);
}

/* What may not be replaced by a Unix socket is named; nothing, or a
 * socket, is not. */
static void test_unix_path_problem(void **state)
{
    (void)state;
    char dir[] = "/tmp/mio-addr-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/none", dir);
    assert_null(addr_unix_path_problem(path));
    assert_string_equal(addr_unix_path_problem(dir), "a directory");
    snprintf(path, sizeof(path), "%s/file", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_string_equal(addr_unix_path_problem(path), "a regular file");
    char link_path[80];
    snprintf(link_path, sizeof(link_path), "%s/link", dir);
    assert_int_equal(symlink(path, link_path), 0);
    assert_string_equal(addr_unix_path_problem(link_path), "a symbolic link");
    char fifo[80];
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_string_equal(addr_unix_path_problem(fifo), "a FIFO");
    char sock_path[80];
    snprintf(sock_path, sizeof(sock_path), "%s/sock", dir);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, sock_path, strlen(sock_path) + 1);
    assert_int_equal(bind(s, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_null(addr_unix_path_problem(sock_path));
    close(s);
    unlink(sock_path);
    unlink(fifo);
    unlink(link_path);
    unlink(path);
    rmdir(dir);
}

/* Family, address, port, scope and path all count; mapped is not v4. */
static void test_equal(void **state)
{
    addr_t s1 = v6("fe80::1", 80), s2 = v6("fe80::1", 80);
    (void)state;
    assert_true(equal(v4("10.0.0.1", 80), v4("10.0.0.1", 80)));
    assert_false(equal(v4("10.0.0.1", 80), v4("10.0.0.1", 81)));
    assert_false(equal(v4("10.0.0.1", 80), v4("10.0.0.2", 80)));
    assert_false(equal(v4("10.0.0.1", 80), v6("::ffff:10.0.0.1", 80)));
    assert_false(equal(v6("::ffff:10.0.0.1", 80), v4("10.0.0.1", 80)));
    assert_true(equal(v6("::ffff:10.0.0.1", 80), v6("::ffff:10.0.0.1", 80)));
    assert_true(equal(v6("::1", 80), v6("::1", 80)));
    assert_false(equal(v6("::1", 80), v6("::1", 81)));
    assert_false(equal(v6("::1", 80), v6("::2", 80)));
    s2.u.in6.sin6_scope_id = 2;
    assert_false(addr_equal(&s1, &s2));
    assert_true(equal(unix_addr("/a"), unix_addr("/a")));
    assert_false(equal(unix_addr("/a"), unix_addr("/ab")));
    assert_false(equal(unix_addr("/ab"), unix_addr("/a")));
    assert_false(equal(unix_addr("/a"), v4("10.0.0.1", 80)));
}

/* Which pairs of listen addresses clash, checked both ways round. */
static void test_overlaps(void **state)
{
    static const struct {
        const char *a, *b;
        bool overlap;
    } cases[] = {
        {"0.0.0.0:80", "127.0.0.1:80", true},
        {"0.0.0.0:80", "0.0.0.0:80", true},
        {"127.0.0.1:80", "127.0.0.1:80", true},
        {"0.0.0.0:80", "127.0.0.1:81", false},
        {"127.0.0.1:80", "127.0.0.2:80", false},
        {"0.0.0.0:80", "[::1]:80", false},
        {"0.0.0.0:80", "[::]:80", false},
        {"[::]:80", "127.0.0.1:80", false},
        {"[::]:80", "[::1]:80", true},
        {"[::]:80", "[::]:80", true},
        {"[::]:80", "[::ffff:127.0.0.1]:80", true},
        {"[::1]:80", "[::1]:80", true},
        {"[::1]:80", "[::2]:80", false},
        {"[::]:80", "[::1]:8080", false},
        /* port 0: the kernel picks a port for each */
        {"127.0.0.1:0", "127.0.0.1:0", false},
        {"0.0.0.0:0", "127.0.0.1:0", false},
        {"[::]:0", "[::]:0", false},
        {"unix:/run/a.sock", "unix:/run/a.sock", true},
        {"unix:/run/a.sock", "unix:/run/b.sock", false},
        {"unix:/run/a.sock", "0.0.0.0:80", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        addr_t a = parse_one(cases[i].a, ADDR_LISTEN);
        addr_t b = parse_one(cases[i].b, ADDR_LISTEN);
        if (addr_overlaps(&a, &b) != cases[i].overlap ||
            addr_overlaps(&b, &a) != cases[i].overlap)
            fail_msg("%s vs %s: expected %s", cases[i].a, cases[i].b,
                     cases[i].overlap ? "overlap" : "no overlap");
    }
}

/* Source keys: 4 bytes for v4 and v4-mapped, 16 for v6, none for Unix. */
static void test_source_key(void **state)
{
    static const uint8_t k4[4] = {192, 0, 2, 1};
    static const uint8_t k6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    (void)state;
    addr_t a = v4("192.0.2.1", 1000);
    uint8_t key[16];
    assert_int_equal(addr_source_key(&a, key), 4);
    assert_memory_equal(key, k4, 4);
    a = v6("::ffff:192.0.2.1", 2000);
    memset(key, 0, sizeof(key));
    assert_int_equal(addr_source_key(&a, key), 4);
    assert_memory_equal(key, k4, 4);
    a = v6("2001:db8::1", 3000);
    assert_int_equal(addr_source_key(&a, key), 16);
    assert_memory_equal(key, k6, 16);
    /* the port is not part of the identity */
    a = v6("2001:db8::1", 3001);
    uint8_t other[16];
    assert_int_equal(addr_source_key(&a, other), 16);
    assert_memory_equal(key, other, 16);
    /* the v4-compatible form ::a.b.c.d is a v6 address */
    a = v6("::192.0.2.1", 80);
    assert_int_equal(addr_source_key(&a, key), 16);
    a = unix_addr("/run/echo.sock");
    assert_int_equal(addr_source_key(&a, key), 0);
}

/* Parses a CIDR that must be valid. */
static struct cidr cidr_ok(const char *text)
{
    struct cidr c;
    char err[256] = "";
    if (cidr_parse(text, &c, err, sizeof(err)) != 0)
        fail_msg("CIDR \"%s\" refused: %s", text, err);
    return c;
}

/* Accepted ranges, their canonical text, and parse(format(c)) == c. */
static void test_cidr_parse(void **state)
{
    static const struct {
        const char *text, *formatted;
        int family;
        unsigned bits;
    } cases[] = {
        {"10.0.0.0/8", "10.0.0.0/8", AF_INET, 8},
        {"0.0.0.0/0", "0.0.0.0/0", AF_INET, 0},
        {"192.0.2.1", "192.0.2.1/32", AF_INET, 32},
        {"192.0.2.1/32", "192.0.2.1/32", AF_INET, 32},
        {"10.128.0.0/9", "10.128.0.0/9", AF_INET, 9},
        {"2001:db8::/32", "2001:db8::/32", AF_INET6, 32},
        {"2001:DB8::/32", "2001:db8::/32", AF_INET6, 32},
        {"::/0", "::/0", AF_INET6, 0},
        {"::1", "::1/128", AF_INET6, 128},
        {"::1/128", "::1/128", AF_INET6, 128},
        {"2001:db8:8000::/33", "2001:db8:8000::/33", AF_INET6, 33},
        {"10.0.0.0/008", "10.0.0.0/8", AF_INET, 8},
        /* ::ffff:0:0/95 reaches past the v4-mapped block */
        {"::fffe:0:0/95", "::fffe:0:0/95", AF_INET6, 95},
    };
    static const uint8_t net8[16] = {10};
    (void)state;
    char buf[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cidr c = cidr_ok(cases[i].text);
        assert_int_equal(c.family, cases[i].family);
        assert_int_equal(c.bits, cases[i].bits);
        cidr_format(&c, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].formatted);
        struct cidr again = cidr_ok(buf);
        assert_memory_equal(&again, &c, sizeof(c));
    }
    assert_memory_equal(cidr_ok("10.0.0.0/8").net, net8, 16);
}

/* Every refusal, with its message, leaving *out untouched. */
static void test_cidr_errors(void **state)
{
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"", "empty CIDR; expected an address or a range like 10.0.0.0/8"},
        {"junk",
         "expected an address or a range like 10.0.0.0/8 or 2001:db8::/32, got \"junk\""},
        {"/8",
         "expected an address or a range like 10.0.0.0/8 or 2001:db8::/32, got \"/8\""},
        {"10.0.0/8",
         "expected an address or a range like 10.0.0.0/8 or 2001:db8::/32, got \"10.0.0/8\""},
        {"010.0.0.0/8",
         "expected an address or a range like 10.0.0.0/8 or 2001:db8::/32, got \"010.0.0.0/8\""},
        {"[::1]/128",
         "expected an address or a range like 10.0.0.0/8 or 2001:db8::/32, got \"[::1]/128\""},
        {" 10.0.0.0/8",
         "expected an address or a range like 10.0.0.0/8 or 2001:db8::/32, got \" 10.0.0.0/8\""},
        /* its first 45 bytes would be a valid address */
        {"0000:0000:0000:0000:0000:0000:192.168.100.2000/128",
         "expected an address or a range like 10.0.0.0/8 or 2001:db8::/32, "
         "got \"0000:0000:0000:0000:0000:0000:192.168.100.2000/128\""},
        {"10.0.0.1/8", "host bits set in 10.0.0.1/8: did you mean 10.0.0.0/8?"},
        {"10.255.0.0/9", "host bits set in 10.255.0.0/9: did you mean 10.128.0.0/9?"},
        {"192.0.2.1/0", "host bits set in 192.0.2.1/0: did you mean 0.0.0.0/0?"},
        {"2001:db8::1/32",
         "host bits set in 2001:db8::1/32: did you mean 2001:db8::/32?"},
        {"10.0.0.0/33", "prefix \"/33\" out of range 0-32"},
        {"::/129", "prefix \"/129\" out of range 0-128"},
        {"10.0.0.0/99999999999", "prefix \"/99999999999\" out of range 0-32"},
        {"10.0.0.0/", "missing prefix after '/' in \"10.0.0.0/\""},
        {"10.0.0.0/8x", "invalid prefix \"/8x\" in \"10.0.0.0/8x\"; expected /0-32"},
        {"10.0.0.0/-1", "invalid prefix \"/-1\" in \"10.0.0.0/-1\"; expected /0-32"},
        {"10.0.0.0/+8", "invalid prefix \"/+8\" in \"10.0.0.0/+8\"; expected /0-32"},
        {"10.0.0.0/ 8", "invalid prefix \"/ 8\" in \"10.0.0.0/ 8\"; expected /0-32"},
        {"10.0.0.0/8/8", "invalid prefix \"/8/8\" in \"10.0.0.0/8/8\"; expected /0-32"},
        {"::/64 ", "invalid prefix \"/64 \" in \"::/64 \"; expected /0-128"},
        {"::ffff:10.0.0.0/104",
         "::ffff:10.0.0.0/104 is a v4-mapped range, which matches no client; write it as 10.0.0.0/8"},
        {"::ffff:192.0.2.1",
         "::ffff:192.0.2.1 is a v4-mapped range, which matches no client; write it as 192.0.2.1/32"},
        {"::ffff:0:0/96",
         "::ffff:0:0/96 is a v4-mapped range, which matches no client; write it as 0.0.0.0/0"},
    };
    (void)state;
    struct cidr c, before;
    char err[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&c, 0x5a, sizeof(c));
        before = c;
        err[0] = '\0';
        if (cidr_parse(cases[i].text, &c, err, sizeof(err)) != -1)
            fail_msg("CIDR \"%s\" accepted", cases[i].text);
        assert_string_equal(err, cases[i].msg);
        assert_memory_equal(&c, &before, sizeof(c));
    }
    assert_int_equal(cidr_parse(NULL, &c, err, sizeof(err)), -1);
    assert_string_equal(err, cases[0].msg);
}

/* Match tables: v4, v6, v4-mapped, /0, odd prefixes, host ranges, Unix. */
static void test_cidr_match(void **state)
{
    static const struct {
        const char *cidr, *addr; /* addr as addr_parse takes it */
        bool match;
    } cases[] = {
        {"10.0.0.0/8", "10.0.0.1:1", true},
        {"10.0.0.0/8", "10.255.255.255:1", true},
        {"10.0.0.0/8", "10.0.0.0:1", true},
        {"10.0.0.0/8", "11.0.0.0:1", false},
        {"10.0.0.0/8", "9.255.255.255:1", false},
        {"10.0.0.0/8", "[::ffff:10.1.2.3]:1", true},
        {"10.0.0.0/8", "[::ffff:11.1.2.3]:1", false},
        {"10.0.0.0/8", "[::a00:1]:1", false}, /* v4-compatible, not mapped */
        {"10.0.0.0/8", "[a00::]:1", false},
        {"10.0.0.0/8", "unix:/run/echo.sock", false},
        {"10.128.0.0/9", "10.128.0.1:1", true},
        {"10.128.0.0/9", "10.255.255.255:1", true},
        {"10.128.0.0/9", "10.127.255.255:1", false},
        {"0.0.0.0/0", "0.0.0.0:1", true},
        {"0.0.0.0/0", "255.255.255.255:1", true},
        {"0.0.0.0/0", "[::ffff:1.2.3.4]:1", true},
        {"0.0.0.0/0", "[::1]:1", false},
        {"0.0.0.0/0", "[::]:1", false},
        {"0.0.0.0/0", "unix:/run/echo.sock", false},
        {"192.0.2.1/32", "192.0.2.1:1", true},
        {"192.0.2.1", "192.0.2.1:65535", true},
        {"192.0.2.1/32", "192.0.2.2:1", false},
        {"192.0.2.1/32", "192.0.2.0:1", false},
        {"192.0.2.1/32", "[::ffff:192.0.2.1]:1", true},
        {"2001:db8::/32", "[2001:db8::1]:1", true},
        {"2001:db8::/32", "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:1", true},
        {"2001:db8::/32", "[2001:db9::]:1", false},
        {"2001:db8::/32", "[2001:db7:ffff::]:1", false},
        {"2001:db8::/32", "32.1.13.184:1", false}, /* the same leading bytes */
        {"2001:db8:8000::/33", "[2001:db8:8000::1]:1", true},
        {"2001:db8:8000::/33", "[2001:db8:7fff::1]:1", false},
        {"::/0", "[::1]:1", true},
        {"::/0", "[ffff::]:1", true},
        {"::/0", "[::ffff:1.2.3.4]:1", false},
        {"::/0", "1.2.3.4:1", false},
        {"::/0", "unix:/run/echo.sock", false},
        {"::1/128", "[::1]:1", true},
        {"::1", "[::1]:7", true},
        {"::1/128", "[::2]:1", false},
        {"::1/128", "[::]:1", false},
        {"::1/128", "127.0.0.1:1", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cidr c = cidr_ok(cases[i].cidr);
        addr_t a = parse_one(cases[i].addr, ADDR_UPSTREAM);
        if (cidr_match(&c, &a) != cases[i].match)
            fail_msg("%s in %s: expected %s", cases[i].addr, cases[i].cidr,
                     cases[i].match ? "a match" : "no match");
    }
}

/* cidr_allows: deny wins, an empty allow admits everyone deny does not
 * refuse, v4 ranges match v4-mapped clients, a Unix client is admitted. */
static void test_cidr_allows(void **state)
{
    const struct cidr allow[] = {cidr_ok("10.0.0.0/8"), cidr_ok("2001:db8::/32")};
    const struct cidr deny[] = {cidr_ok("10.1.0.0/16")};
    static const struct {
        const char *addr;
        bool both, allow_only, deny_only, neither;
    } cases[] = {
        {"10.0.0.1:1", true, true, true, true},
        {"10.1.2.3:1", false, true, false, true},
        {"[::ffff:10.1.2.3]:1", false, true, false, true},
        {"[::ffff:10.2.0.1]:1", true, true, true, true},
        {"192.0.2.1:1", false, false, true, true},
        {"[2001:db8::1]:1", true, true, true, true},
        {"[::1]:1", false, false, true, true},
        {"unix:/run/echo.sock", true, true, true, true},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        addr_t a = parse_one(cases[i].addr, ADDR_UPSTREAM);
        bool got[4] = {
            cidr_allows(allow, 2, deny, 1, &a),
            cidr_allows(allow, 2, NULL, 0, &a),
            cidr_allows(NULL, 0, deny, 1, &a),
            cidr_allows(NULL, 0, NULL, 0, &a),
        };
        bool want[4] = {cases[i].both, cases[i].allow_only, cases[i].deny_only,
                        cases[i].neither};
        for (int k = 0; k < 4; k++)
            if (got[k] != want[k])
                fail_msg("%s with %s: expected %s", cases[i].addr,
                         (const char *[]){"allow and deny", "allow only", "deny only",
                                          "no list"}[k],
                         want[k] ? "admitted" : "refused");
    }
}

/* cidr_format cuts to len and writes nothing into 0 bytes. */
static void test_cidr_format_small(void **state)
{
    struct cidr c = cidr_ok("10.0.0.0/8");
    (void)state;
    char buf[5];
    memset(buf, 'x', sizeof(buf));
    cidr_format(&c, buf, sizeof(buf));
    assert_string_equal(buf, "10.0");
    buf[0] = 'x';
    cidr_format(&c, buf, 0);
    assert_int_equal(buf[0], 'x');
}

/* ---- fuzzing seeds --------------------------------------------------- */

/* The seeds say what they are: *-addr-* are listen addresses (numeric, so
 * no resolver is involved), *-cidr-* are ranges; valid-* are accepted,
 * invalid-* refused. */
static void test_fuzz_seeds(void **state)
{
    DIR *d = open_corpus("addr");
    (void)state;
    size_t valid = 0, invalid = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool want_valid = strncmp(e->d_name, "valid-", 6) == 0;
        const char *kind = e->d_name + (want_valid ? 6 : 8);
        if (!want_valid && strncmp(e->d_name, "invalid-", 8) != 0)
            continue;
        char text[512];
        read_seed("addr", e->d_name, text, sizeof(text));
        char err[512] = "";
        addr_t out[2];
        struct cidr c;
        size_t n;
        int rc;
        if (strncmp(kind, "addr-", 5) == 0) {
            rc = addr_parse(text, ADDR_LISTEN, out, 2, &n, err, sizeof(err));
        } else {
            assert_memory_equal(kind, "cidr-", 5);
            rc = cidr_parse(text, &c, err, sizeof(err));
        }
        if (want_valid ? rc != 0 : rc != -1)
            fail_msg("%s: %s", e->d_name, want_valid ? err : "accepted");
        *(want_valid ? &valid : &invalid) += 1;
    }
    closedir(d);
    assert_true(valid >= 6);
    assert_true(invalid >= 8);
}

/* Runs every test of this file. */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4),
        cmocka_unit_test(test_v4_errors),
        cmocka_unit_test(test_ports),
        cmocka_unit_test(test_v6),
        cmocka_unit_test(test_v6_scope),
        cmocka_unit_test(test_v6_errors),
        cmocka_unit_test(test_wildcard),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_small),
        cmocka_unit_test(test_host_names),
        cmocka_unit_test(test_host_name_every_address),
        cmocka_unit_test(test_localhost_every_address),
        cmocka_unit_test(test_host_name_too_long),
        cmocka_unit_test(test_error_truncation),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_escapes_unix_paths),
        cmocka_unit_test(test_unix_path_problem),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_overlaps),
        cmocka_unit_test(test_source_key),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_errors),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_cidr_allows),
        cmocka_unit_test(test_cidr_format_small),
        cmocka_unit_test(test_fuzz_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
