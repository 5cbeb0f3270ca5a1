/*
 * The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy
 * specifies it: parsed from clients when a listener has accept_proxy, and
 * built for upstreams when it has send_proxy.
 */
#ifndef ECHOD_PROXY_H
#define ECHOD_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* The longest header accepted: v1 is at most 107 bytes; v2 is 16 bytes and
 * its TLVs, which are refused past this bound. */
#define PROXY_MAX_HEADER 1024

struct proxy_info {
    bool local; /* v2 LOCAL or v1 UNKNOWN: no addresses; use the peer's */
    addr_t src, dst;
};

/*
 * Parses a header at the start of buf[0..len), reading nothing past len.
 * Returns its length when it is complete and valid (the payload starts
 * there), 0 when more bytes are needed to decide, -1 when it is malformed,
 * too long or not a PROXY header at all, with *why saying which (a static
 * string).  A prefix that cannot begin a header is refused at once, without
 * waiting for more (a v1 address by its characters and length as it
 * arrives, and whole at the space after it).  *out is written only when a
 * header is returned.
 */
int proxy_parse(const uint8_t *buf, size_t len, struct proxy_info *out, const char **why);

/*
 * Parses the v2 header a datagram starts with (a UDP listener's
 * accept_proxy: each datagram carries one, of the DGRAM transport).  Its
 * length (the payload starts there), or -1 with *why saying why: not v2
 * (v1 has no datagram form), malformed, a stream transport, or longer than
 * the datagram.
 */
int proxy_parse_dgram(const uint8_t *buf, size_t len, struct proxy_info *out,
                      const char **why);

/* proxy_build()'s version for a v2 header of the DGRAM transport (\x12,
 * \x22), which a UDP relay sends before each datagram. */
#define PROXY_V2_DGRAM 0x102

/*
 * Writes a version 1 or 2 header for a connection from src to dst into buf;
 * returns its length, or -1 when buf is too small (nothing written) or the
 * version is neither 1 nor 2.  A v4-mapped v6 address is written as v4 when
 * the other one is v4; a v4 address beside a v6 one is written v4-mapped,
 * so both have one family.  Unix sockets give v1 "PROXY UNKNOWN" and v2
 * AF_UNIX; a Unix address beside an IP one gives "PROXY UNKNOWN" and v2
 * AF_UNSPEC.  v6 scopes are not sent.
 */
int proxy_build(int version, const addr_t *src, const addr_t *dst, uint8_t *buf,
                size_t len);

#endif
