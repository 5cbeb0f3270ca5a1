/*
 * The server name (SNI) of a TLS ClientHello, read from the first bytes a
 * client sends without decrypting anything: a listener with sni_routes
 * peeks at them, picks upstreams by the name and relays the bytes as they
 * came.  Pure and bounded: no I/O, no allocation, nothing read past the
 * bytes given or past any length field's bound, time linear in them.
 */
#ifndef ECHOD_HELLO_H
#define ECHOD_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The ClientHello's handshake message body: at most this many bytes; a
 * larger one is refused. */
#define HELLO_MAX_MESSAGE 16384
/* The bytes of records looked at to find it, headers included: a
 * ClientHello split over records so small that it is not complete within
 * them is refused. */
#define HELLO_MAX_STREAM (HELLO_MAX_MESSAGE + 4096)

struct hello {
    bool has_sni;          /* a host_name in server_name */
    char server_name[256]; /* lowercased, NUL-terminated; "" without */
};

enum hello_result { HELLO_MORE = 0, HELLO_FOUND = 1, HELLO_NOT_TLS = -1, HELLO_BAD = -2 };

/*
 * Looks at buf[0..len), the first bytes a client sent, reading nothing past
 * len nor past HELLO_MAX_STREAM bytes.  Returns:
 *
 *   HELLO_FOUND    the whole ClientHello is in and valid: *out says
 *                  whether it names a server and which (the first
 *                  host_name of its server_name extension, lowercased,
 *                  one trailing dot dropped);
 *   HELLO_MORE     more bytes are needed to decide (never when len is
 *                  HELLO_MAX_STREAM or more);
 *   HELLO_NOT_TLS  the bytes cannot begin a TLS handshake record (a first
 *                  byte other than 22, or a second other than 3): decided
 *                  from the first byte that shows it;
 *   HELLO_BAD      a TLS handshake that is malformed, is not a
 *                  ClientHello, is larger than HELLO_MAX_MESSAGE, or is not
 *                  complete within HELLO_MAX_STREAM bytes of records.
 *
 * The ClientHello may be fragmented over several handshake records (each
 * of content type 22, version 0x0301 to 0x0304, 1 to 2^14 + 256 bytes);
 * every field of it is checked against its bounds, and the extensions, if
 * any, must fill it exactly.  A malformed byte is refused as soon as it is
 * in, a length as soon as all its bytes are, a host name once all of it
 * is.  Bytes after the ClientHello, in its last record or after it, are
 * not looked at.  *why (unless why is NULL) may be set whatever the
 * result, to a static string saying why on HELLO_NOT_TLS and HELLO_BAD;
 * *out is written only on HELLO_FOUND.
 */
enum hello_result hello_parse(const uint8_t *buf, size_t len, struct hello *out,
                              const char **why);

/* Whether server name `name` (lowercase) matches `pattern` from the
 * config: equal ignoring ASCII case, or pattern "*.suffix" and name ends
 * in ".suffix" with at least one byte before it (any number of labels). */
bool hello_name_matches(const char *pattern, const char *name);

/* Whether `pattern` is a valid sni_routes server_name: a DNS name, or
 * "*." and a DNS name (a DNS name as hello_parse accepts one: labels of
 * 1 to 63 letters, digits and '-', not starting or ending with '-', at
 * most 253 bytes, no trailing dot); for the config loader. */
bool hello_pattern_valid(const char *pattern);

#endif
