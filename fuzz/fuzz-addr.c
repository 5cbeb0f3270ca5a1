/*
 * libFuzzer target: the address and CIDR parsers of src/addr.c.
 *
 * The input is the setting's text, up to its first NUL (the seeds in
 * tests/fuzz-corpus/addr/ are such texts, and the unit tests read them
 * whole, so no byte of the input is set aside as a parameter).  Each input
 * is parsed as a listen address, as an upstream (host names get a fixed
 * loopback answer: fuzz-resolver.h) and as a CIDR, and checked:
 *
 *   - a refusal leaves *n at 0, the output untouched and a message in err;
 *   - an accepted address formats to a text that parses back to the same
 *     address, with the same use, one address per text (a "*:port" gives
 *     two, 0.0.0.0 and [::]); it equals itself and overlaps itself unless
 *     its port is 0;
 *   - an accepted "*:port" is refused when there is room for one address;
 *   - an accepted CIDR formats to a text that parses back to the same range,
 *     matches its own network address and has no host bits set;
 *   - an accepted "[v6]:port" is accepted with the scope of interface 1
 *     (the loopback, whose name is looked up at start: "lo", "lo0") added,
 *     "[v6%lo]:port", and that round-trips too (no fuzzer would guess an
 *     interface name).
 *
 * Messages are written into heap buffers of exactly errlen bytes, and a
 * short one besides, so that ASan sees any write past errlen.
 */
#include <arpa/inet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "fuzz-resolver.h"

#define ERRLEN 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stops the run with a message: libFuzzer reports the input. */
#define CHECK(cond, ...)                                             \
    do {                                                             \
        if (!(cond)) {                                               \
            fprintf(stderr, "fuzz-addr: check failed: %s: ", #cond); \
            fprintf(stderr, __VA_ARGS__);                            \
            fputc('\n', stderr);                                     \
            abort();                                                 \
        }                                                            \
    } while (0)

static const char *use_name(enum addr_use use)
{
    return use == ADDR_LISTEN ? "listen" : "upstream";
}

/* "[v6]:port" with the loopback's scope: the same address with scope 1,
 * written back with the name. */
static void check_scope(const char *text, const addr_t *plain)
{
    static char lo[IF_NAMESIZE];
    static int looked;
    const char *close = strchr(text, ']');
    char *err = malloc(ERRLEN);
    if (err == NULL)
        abort();
    if (!looked++ && if_indextoname(1, lo) == NULL)
        lo[0] = '\0';
    if (lo[0] == '\0' || close == NULL ||
        memchr(text, '%', (size_t)(close - text)) != NULL) {
        free(err);
        return;
    }
    size_t len = strlen(text) + 1 + strlen(lo) + 1;
    char *scoped = malloc(len);
    if (scoped == NULL)
        abort();
    snprintf(scoped, len, "%.*s%%%s%s", (int)(close - text), text, lo, close);
    addr_t a;
    size_t n = 99;
    CHECK(addr_parse(scoped, ADDR_LISTEN, &a, 1, &n, err, ERRLEN) == 0 && n == 1,
          "\"%s\" is accepted, \"%s\" refused: %s", text, scoped, err);
    CHECK(a.u.in6.sin6_scope_id == 1, "\"%s\": scope %u", scoped,
          (unsigned)a.u.in6.sin6_scope_id);
    a.u.in6.sin6_scope_id = 0;
    CHECK(addr_equal(&a, plain), "\"%s\" is not \"%s\" with a scope", scoped, text);
    a.u.in6.sin6_scope_id = 1;
    char formatted[ADDR_STRLEN];
    addr_format(&a, formatted, sizeof(formatted));
    addr_t again;
    CHECK(addr_parse(formatted, ADDR_LISTEN, &again, 1, &n, err, ERRLEN) == 0 &&
              addr_equal(&a, &again),
          "\"%s\" formats as \"%s\", which does not parse back: %s", scoped, formatted,
          err);
    CHECK(!addr_equal(&a, plain), "a scope makes no difference to \"%s\"", text);
    free(scoped);
    free(err);
}

/* Parses text with `use` and checks what came of it. */
static void check_addr(const char *text, enum addr_use use)
{
    char *err = malloc(ERRLEN), *small = malloc(8);
    if (err == NULL || small == NULL)
        abort();
    addr_t out[3];
    memset(out, 0xa5, sizeof(out));
    addr_t before[3];
    memcpy(before, out, sizeof(out));
    err[0] = '\0';
    size_t n = 99;
    int rc = addr_parse(text, use, out, 2, &n, err, ERRLEN);
    if (rc != 0) {
        CHECK(rc == -1, "\"%s\" (%s): returned %d", text, use_name(use), rc);
        CHECK(n == 0, "\"%s\" (%s): refused with n = %zu", text, use_name(use), n);
        CHECK(memcmp(out, before, sizeof(out)) == 0,
              "\"%s\" (%s): refused, but out was written", text, use_name(use));
        CHECK(memchr(err, '\0', ERRLEN) != NULL && err[0] != '\0',
              "\"%s\" (%s): refused without a message", text, use_name(use));
        /* A short buffer gets a cut message, never more. */
        n = 99;
        CHECK(addr_parse(text, use, out, 2, &n, small, 8) == -1,
              "\"%s\" (%s): refused, then accepted", text, use_name(use));
        CHECK(memchr(small, '\0', 8) != NULL, "\"%s\": message not cut", text);
        free(err);
        free(small);
        return;
    }
    CHECK(n == 1 || (n == 2 && use == ADDR_LISTEN && text[0] == '*'),
          "\"%s\" (%s): accepted with n = %zu", text, use_name(use), n);
    CHECK(memcmp(&out[n], &before[n], sizeof(out) - n * sizeof(out[0])) == 0,
          "\"%s\" (%s): wrote past the %zu addresses it gave", text, use_name(use), n);
    if (n == 2) {
        addr_t one[1];
        size_t m = 99;
        CHECK(addr_parse(text, use, one, 1, &m, err, ERRLEN) == -1 && m == 0,
              "\"%s\": two addresses, yet accepted with room for one", text);
    }
    char formatted[ADDR_STRLEN];
    for (size_t i = 0; i < n; i++) {
        const addr_t *a = &out[i];
        int family = a->u.sa.sa_family;
        CHECK(family == AF_INET || family == AF_INET6 || family == AF_UNIX,
              "\"%s\": family %d", text, family);
        CHECK(family != AF_UNIX || strncmp(text, "unix:", 5) == 0,
              "\"%s\": a Unix address from a text without unix:", text);
        CHECK(a->len > 0 && a->len <= sizeof(a->u), "\"%s\": len %u", text,
              (unsigned)a->len);
        CHECK(addr_equal(a, a), "\"%s\": not equal to itself", text);
        if (family == AF_UNIX ||
            (family == AF_INET ? a->u.in.sin_port : a->u.in6.sin6_port) != 0)
            CHECK(addr_overlaps(a, a), "\"%s\": does not overlap itself", text);
        if (family == AF_INET || family == AF_INET6) {
            uint8_t key[16];
            size_t k = addr_source_key(a, key);
            CHECK(k == 4 || k == 16, "\"%s\": source key of %zu bytes", text, k);
        }
        addr_format(a, formatted, sizeof(formatted));
        CHECK(memchr(formatted, '\0', sizeof(formatted)) != NULL,
              "\"%s\": formatted without a NUL", text);
        /* What goes into log lines: printable ASCII only, no space. */
        for (const char *c = formatted; family == AF_UNIX && *c != '\0'; c++)
            CHECK(*c > 0x20 && *c < 0x7f, "\"%s\" formats as \"%s\", with byte 0x%02x",
                  text, formatted, (unsigned char)*c);
        /* A short buffer is cut, with its NUL. */
        addr_format(a, small, 8);
        CHECK(memchr(small, '\0', 8) != NULL, "\"%s\": format not cut", text);
        /* A Unix path with bytes written \xNN reads back as another. */
        if (family == AF_UNIX && strstr(formatted, "\\x") != NULL)
            continue;
        addr_t again[2];
        size_t m = 99;
        CHECK(addr_parse(formatted, use, again, 2, &m, err, ERRLEN) == 0,
              "\"%s\" (%s) formats as \"%s\", which is refused: %s", text, use_name(use),
              formatted, err);
        CHECK(m == 1, "\"%s\" formats as \"%s\", which gives %zu addresses", text,
              formatted, m);
        CHECK(addr_equal(a, &again[0]),
              "\"%s\" (%s) formats as \"%s\", which parses to another address", text,
              use_name(use), formatted);
        CHECK(a->len == again[0].len, "\"%s\" formats as \"%s\": len %u, then %u", text,
              formatted, (unsigned)a->len, (unsigned)again[0].len);
        if (use == ADDR_LISTEN && family == AF_INET6 && text[0] == '[' &&
            a->u.in6.sin6_scope_id == 0)
            check_scope(text, a);
    }
    free(err);
    free(small);
}

/* Parses text as a CIDR and checks what came of it. */
static void check_cidr(const char *text)
{
    char *err = malloc(ERRLEN);
    if (err == NULL)
        abort();
    struct cidr c;
    memset(&c, 0x5a, sizeof(c));
    struct cidr before = c;
    err[0] = '\0';
    int rc = cidr_parse(text, &c, err, ERRLEN);
    if (rc != 0) {
        CHECK(rc == -1, "\"%s\": cidr_parse returned %d", text, rc);
        CHECK(memcmp(&c, &before, sizeof(c)) == 0,
              "\"%s\": CIDR refused, but out was written", text);
        CHECK(memchr(err, '\0', ERRLEN) != NULL && err[0] != '\0',
              "\"%s\": CIDR refused without a message", text);
        free(err);
        return;
    }
    CHECK((c.family == AF_INET && c.bits <= 32) ||
              (c.family == AF_INET6 && c.bits <= 128),
          "\"%s\": family %d, /%u", text, c.family, c.bits);
    for (unsigned i = 0; i < 16; i++) {
        unsigned from = i * 8;
        uint8_t host = from >= c.bits       ? 0xff
                       : c.bits - from >= 8 ? 0
                                            : (uint8_t)(0xffu >> (c.bits - from));
        CHECK((c.net[i] & host) == 0, "\"%s\": host bits left in byte %u", text, i);
    }
    char formatted[INET6_ADDRSTRLEN + 8];
    cidr_format(&c, formatted, sizeof(formatted));
    struct cidr again;
    memset(&again, 0, sizeof(again));
    CHECK(cidr_parse(formatted, &again, err, ERRLEN) == 0,
          "\"%s\" formats as \"%s\", which is refused: %s", text, formatted, err);
    CHECK(again.family == c.family && again.bits == c.bits &&
              memcmp(again.net, c.net, sizeof(c.net)) == 0,
          "\"%s\" formats as \"%s\", which parses to another range", text, formatted);
    addr_t net;
    memset(&net, 0, sizeof(net));
    if (c.family == AF_INET) {
        net.u.in.sin_family = AF_INET;
        memcpy(&net.u.in.sin_addr, c.net, 4);
        net.len = sizeof(net.u.in);
    } else {
        net.u.in6.sin6_family = AF_INET6;
        memcpy(&net.u.in6.sin6_addr, c.net, 16);
        net.len = sizeof(net.u.in6);
    }
    CHECK(cidr_match(&c, &net), "\"%s\": does not match its own network", text);
    free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The text as a C string of exactly its length, on the heap. */
    const uint8_t *nul = memchr(data, '\0', size);
    size_t n = nul != NULL ? (size_t)(nul - data) : size;
    char *text = malloc(n + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, n);
    text[n] = '\0';
    check_addr(text, ADDR_LISTEN);
    check_addr(text, ADDR_UPSTREAM);
    check_cidr(text);
    free(text);
    return 0;
}
