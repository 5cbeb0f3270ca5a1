/*
 * Admission: whether a client may be served, decided at accept before any
 * byte is read (and once more for the source a PROXY header declares).
 * allow/deny, the daemon's and the listener's max_connections, and
 * max_per_source.
 *
 * What admission takes for a connection (a slot of each max_connections,
 * one of max_per_source for its source) is one ticket, given back by
 * admission_release() exactly once, whatever path the connection ends on:
 * a refused client never holds one, and a second release is a no-op.
 */
#ifndef ECHOD_ADMISSION_H
#define ECHOD_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "log.h"

struct daemon;
struct listener;
struct listener_state;

/* Why a client was refused, for the counters; REFUSED_N: it was not. */
enum refusal {
    REFUSED_ACL,             /* allow/deny */
    REFUSED_MAX_CONNECTIONS, /* the daemon's max_connections */
    REFUSED_LISTENER_MAX,    /* the listener's max_connections */
    REFUSED_PER_SOURCE,      /* max_per_source */
    REFUSED_PROXY_HEADER,    /* a bad PROXY header */
    REFUSED_NO_FD,           /* out of file descriptors */
    REFUSED_N
};

/* The names of the reasons, as metrics labels: "acl", "max_connections"... */
extern const char *const refusal_names[REFUSED_N];

/* What one admitted connection holds: its slots of the daemon's and its
 * listener's max_connections, and of max_per_source when srclen > 0. */
struct ticket {
    bool held;          /* the slots are taken: admission_release() gives them */
    uint8_t srclen;     /* bytes of srckey; 0: no source counted */
    uint8_t srckey[16]; /* addr_source_key() of the source counted */
};

/*
 * Admits a client of listener l connecting from peer: allow/deny, then the
 * daemon's and the listener's max_connections, then max_per_source for
 * peer (with accept_proxy too: until the header declares the source, the
 * peer is counted, so that one address cannot hold more unfinished
 * headers).  Fills *t and returns REFUSED_N when admitted; otherwise the
 * reason, with nothing taken.
 */
enum refusal admission_take(struct ticket *t, struct daemon *d, struct listener *l,
                            const addr_t *peer);

/*
 * Admits the source a PROXY header declared, as a direct client is: allow/
 * deny, then max_per_source, which counts it in place of the peer.
 * REFUSED_N, or the reason (what *t holds is unchanged but for the peer's
 * count, which is given back either way).
 */
enum refusal admission_declare(struct ticket *t, struct listener *l, const addr_t *src);

/* Gives back what *t holds, once: a second call does nothing. */
void admission_release(struct ticket *t, struct daemon *d, struct listener_state *st);

/* What the log says for a refusal: "denied by allow/deny"... */
const char *admission_refusal_text(enum refusal why);

/* Counts a refused client of l and logs why (with `detail`, may be NULL),
 * at most a few lines a second through rl; a line after a quiet spell says
 * how many were not logged. */
void admission_refused(struct ratelimit *rl, int64_t now_ms, struct listener *l,
                       const addr_t *src, enum refusal why, const char *detail);

#endif
