/*
 * Addresses as mio-echod's config writes them, and CIDR ranges for ACLs.
 *
 *   "127.0.0.1:7007"  "[::1]:7007"  "*:7007"  "unix:/run/echo.sock"
 *   upstreams may also name a host ("db.example:5432"), resolved when the
 *   configuration is loaded, to every address it has.
 */
#ifndef ECHOD_ADDR_H
#define ECHOD_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

/* A socket address of any family mio-echod uses. */
typedef struct {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
        struct sockaddr_storage ss;
    } u;
    socklen_t len;
} addr_t;

/*
 * An address kept in the room of an IPv6 one, 40 bytes where addr_t takes
 * 136: what a connection holds of its client for as long as it is open.
 * One longer than a sockaddr_in6 (a Unix client bound to a path of more
 * than 26 bytes, or such a one a PROXY header declared) is kept on the
 * heap.  Zeroed, it holds nothing to free.
 */
struct addr_small {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len;
    addr_t *big;
};

/* Long enough for any address addr_format() writes, with its NUL (a Unix
 * path's bytes may take four each, escaped). */
#define ADDR_STRLEN (sizeof("unix:") + 4 * sizeof(((struct sockaddr_un *)0)->sun_path))

/* How an address setting may be written. */
enum addr_use {
    ADDR_LISTEN,   /* "*:port" means 0.0.0.0 and [::]; no host names */
    ADDR_UPSTREAM, /* no "*"; host names resolved (every address) */
};

/* The most addresses kept of one host name: a sane bound on the connect
 * candidates of one upstream. */
#define ADDR_RESOLVE_MAX 16

/*
 * Parses one address setting into out[0..max), setting *n: 2 for "*:port"
 * when listening; for an upstream host name, every IPv4 and IPv6 address
 * getaddrinfo gives, in its order, duplicates left out, the first max (and
 * at most ADDR_RESOLVE_MAX); else 1.  Returns 0, or -1 with *n = 0, out
 * untouched and a message in err that says what was expected, e.g. "port
 * \"70000\" out of range 1-65535" or "expected host:port, [v6]:port, *:port
 * or unix:/path".  Port 0 is accepted for listening (the kernel picks one;
 * tests rely on it), refused for upstreams.  A v6 scope is written
 * "[fe80::1%eth0]:port".
 */
int addr_parse(const char *text, enum addr_use use, addr_t *out, size_t max, size_t *n,
               char *err, size_t errlen);

/* What is at `path` that a Unix socket must not replace: "a regular file",
 * "a directory", "a symbolic link", "a FIFO" or "a device"; NULL when there
 * is nothing there or a socket (a stale one may be replaced). */
const char *addr_unix_path_problem(const char *path);

/* The length of a Unix address's path, bounded by its len and sun_path
 * (the kernel may fill sun_path without a NUL). */
size_t addr_unix_path_len(const addr_t *a);

/* Writes "1.2.3.4:80", "[::1]:80" ("[fe80::1%eth0]:80" with a scope) or
 * "unix:/path" into buf, cut to fit len.  A Unix path is written with
 * every byte but printable ASCII (space included) and the backslash as
 * \xNN, since it may come from a peer and goes into log lines. */
void addr_format(const addr_t *a, char *buf, size_t len);

/* Same family, address and port (or path).  A v4-mapped v6 address is not
 * equal to its v4 form: they are different sockets. */
bool addr_equal(const addr_t *a, const addr_t *b);

/* The port of an IP address (host order); 0 for a Unix one. */
unsigned addr_port(const addr_t *a);

/* Fills a with an IP address of `family` (AF_INET or AF_INET6) from its
 * network-order bytes (4 or 16) and port. */
void addr_set_ip(addr_t *a, int family, const void *ip, in_port_t port_be);

/* Sets the port of an IP address (host order); a Unix one is left as is. */
void addr_set_port(addr_t *a, unsigned port);

/* The host of an address as written, "HOST:PORT" or "[V6]:PORT", into
 * buf: what TLS names and verifies.  0, or -EINVAL for a Unix address or
 * one without a port, -ENAMETOOLONG when buf is too small. */
int addr_text_host(const char *text, char *buf, size_t len);

/* Whether an upstream as written names a host (resolved), not an address. */
bool addr_text_is_name(const char *text);

/* Whether an IP address is the wildcard 0.0.0.0 or ::. */
bool addr_is_wildcard(const addr_t *a);

/* Whether an IP address is a loopback one (127.0.0.0/8 or ::1). */
bool addr_is_loopback(const addr_t *a);

/* The address a connect to `a` ends at: a v4-mapped IPv6 address is its
 * IPv4 one (the connect goes out over IPv4, never to an IPv6-only socket),
 * and Linux connects the wildcard address to loopback (0.0.0.0 to
 * 127.0.0.1, :: to ::1). */
addr_t addr_connect_target(const addr_t *a);

/* True when binding both would clash: equal, or the same port of one
 * family where one of the two is the wildcard address.  Port 0 never
 * clashes: the kernel gives each bind a port of its own. */
bool addr_overlaps(const addr_t *a, const addr_t *b);

/*
 * The client identity used for per-source limits and source-hash
 * balancing: the IP address without the port, with a v4-mapped v6 address
 * reduced to its v4 form, written into key (16 bytes) with its length (4 or
 * 16); 0 for a Unix socket, which has no source.
 */
size_t addr_source_key(const addr_t *a, uint8_t key[16]);

/* Keeps a copy of `a` in s, freeing what s held; 0, or -ENOMEM (then s
 * is unchanged). */
int addr_small_set(struct addr_small *s, const addr_t *a);

/* The address s keeps: tmp filled and returned, or the heap copy. */
const addr_t *addr_small_get(const struct addr_small *s, addr_t *tmp);

/* Frees what s holds and zeroes it. */
void addr_small_free(struct addr_small *s);

/* A CIDR range: "10.0.0.0/8", "2001:db8::/32", or one host "192.0.2.1". */
struct cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned bits;
    uint8_t net[16]; /* network bytes, host bits zero */
};

/* Parses a CIDR; -1 with a message in err ("prefix \"/33\" out of range
 * 0-32", "host bits set in 10.0.0.1/8: did you mean 10.0.0.0/8?").  A range
 * inside ::ffff:0:0/96 is refused with its v4 form, which is what matches
 * v4-mapped clients. */
int cidr_parse(const char *text, struct cidr *out, char *err, size_t errlen);

/* Whether the address is in the range.  A v4 range also matches the
 * v4-mapped v6 form of its addresses (::ffff:a.b.c.d), as a dual-stack
 * socket reports v4 clients; a v6 range matches v6 addresses only.  A Unix
 * socket address matches no range. */
bool cidr_match(const struct cidr *c, const addr_t *a);

/*
 * The allow/deny rule of listeners and of the stats listener: an address
 * matching a range of deny is refused, whatever allow says; otherwise an
 * empty allow admits it, a non-empty one only when it matches a range of
 * it (cidr_match(): v4 ranges match v4-mapped v6 clients too).  A Unix
 * socket address has no address to check and is always admitted.
 */
bool cidr_allows(const struct cidr *allow, size_t nallow, const struct cidr *deny,
                 size_t ndeny, const addr_t *a);

/* Writes the range as "10.0.0.0/8". */
void cidr_format(const struct cidr *c, char *buf, size_t len);

#endif
