/*
 * Choosing an upstream for a relayed connection (round-robin,
 * least-connections, source-hash), the address of it to connect to, the
 * guard against connecting to the daemon itself, and passive health: an
 * address that refused or timed out is skipped for fail_timeout.
 */
#ifndef ECHOD_UPSTREAM_H
#define ECHOD_UPSTREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

struct generation;
struct listener;
struct listen_sock;
struct worker;

/* What operators say of an upstream address (the control socket). */
enum upstream_admin {
    UPSTREAM_ENABLED,  /* in service */
    UPSTREAM_DRAINING, /* no new clients; open connections finish */
    UPSTREAM_DISABLED, /* no new clients (open connections finish too) */
};

/*
 * One address of an upstream of a listener, with its load, its health and
 * what operators set: one object per listener and address, shared by the
 * listener's own upstreams and its sni_routes', and carried over a reload
 * to the next generation while the listener there still names the address
 * (so that marks, counters and what an operator set stay until the address
 * leaves the configuration).  The last generation that holds it frees it.
 *
 * Workers read the atomics; the admin thread (admin.h) writes admin,
 * weight, down and the check fields, the latter read only there.
 */
struct upstream_addr {
    atomic_int refs; /* the upstreams (of every generation) holding it */
    addr_t addr;
    bool udp; /* a UDP server's (state apart from a TCP one's on that port) */
    char name[ADDR_STRLEN];
    atomic_uint active;              /* connections relayed to it now */
    _Atomic int64_t failed_until_ms; /* skipped until then after a failure */
    atomic_int last_error;           /* errno of its last failed connect */
    _Atomic int admin;               /* enum upstream_admin */
    atomic_uint admin_uid;           /* who set admin or weight last */
    atomic_uint weight;              /* 0: the configuration's; else set at run time */
    atomic_bool down;                /* active checks found it down */
    atomic_ullong connects, connect_failures, check_failures; /* connects: begun */
    atomic_ullong bytes_in, bytes_out; /* from and to it, of closed connections */
    /* The active checks' (check.c, on the admin thread only). */
    unsigned check_ok, check_fail; /* consecutive results */
    int64_t check_due_ms;          /* the next one starts then (0: soon) */
    int64_t check_last_ms;         /* the last one ended then (0: none yet) */
    bool check_running;
    char check_why[96]; /* why the last one failed ("" when it passed) */
};

/* Whether operators let new clients go to ua. */
static inline bool upstream_addr_admitted(const struct upstream_addr *ua)
{
    return atomic_load_explicit(&ua->admin, memory_order_relaxed) == UPSTREAM_ENABLED;
}

/* One upstream of a proxy listener: one address of one upstream as the
 * configuration names it (a name that resolves to several addresses makes
 * one of these per address, each of the name's weight), the unit the
 * balance modes choose among.  addrs[0] is that address; the name's other
 * addresses follow, in its order from there round: what a failed connect
 * moves on to before it uses up a retry. */
struct upstream {
    const char *text; /* as written in the file (the config's string) */
    unsigned weight;  /* 1..256, as configured (upstream_addr.weight rules) */
    bool backup;      /* chosen only when no primary is up */
    struct upstream_addr **addrs;
    size_t naddrs;
    /* Where its name's addresses are among the listener's (TLS sessions
     * are kept per place): address i of the name, in the name's order, is
     * at slot0 + i; addrs[k] is the name's address (turn + k) % naddrs. */
    size_t slot0, turn;
    size_t slots; /* the name's places: as many as it resolved to at load */
    /* Per address: the listening socket of this generation it reaches when
     * that leads back to this listener (a loop, never connected), or NULL. */
    const struct listen_sock **loop_at;
};

/* The upstreams a connection's attempts choose among: a relay's own
 * (`upstreams`), or those of one of its `sni_routes`; a range of the
 * listener's upstreams, with its round-robin cursor. */
struct upstream_pool {
    struct upstream *ups;    /* the first of them, in the listener's array */
    unsigned n;              /* at least 1 */
    const char *server_name; /* the route's pattern; NULL: the relay's own */
    atomic_uint *rr;         /* the cursor: the listener state's for its own
                                (kept over reloads), else own_rr */
    atomic_uint own_rr;
    struct pool_weights *w; /* what the weighted choices need (upstream.c) */
};

/* Sets up what p's weighted choices need, once its upstreams are filled,
 * taking round-robin's turn from `old` (the same pool of the listener in
 * the previous generation, or NULL) for the upstreams it has too, so that
 * a reload does not start the turn again; false when out of memory. */
bool upstream_pool_init(struct upstream_pool *p, const struct upstream_pool *old);

/* Frees what upstream_pool_init() made (NULL-safe on a pool it did not
 * reach). */
void upstream_pool_free(struct upstream_pool *p);

/* A client's choice of upstream over its attempts (a TCP connection's
 * connects, a UDP flow's moves after an upstream failed): the pool it
 * chooses among and where it is in it. */
struct upstream_choice {
    const struct upstream_pool *pool; /* the upstreams it chooses among */
    const struct upstream *target;    /* the upstream of this attempt */
    uint16_t tried;                   /* its addresses tried in this attempt (bit i: i) */
    uint16_t attempts;                /* upstreams tried (retries + 1 at most) */
    uint16_t cursor;                  /* where the next upstream pick starts */
    bool all_failed;                  /* the upstream of this attempt had no address
                                         unmarked: its addresses are all tried */
};

/* The pool for a connection whose client asked for server_name (SNI; NULL
 * without one): the first route whose name equals it, else the first whose
 * wildcard covers it, else the relay's own upstreams. */
const struct upstream_pool *upstream_route(const struct listener *l,
                                           const char *server_name);

/* A reference to the state of upstream address a (of a UDP server when
 * udp) for the listener named `listener`: the one that listener holds in g
 * (being built) or in `old`, so that load, marks and what operators set
 * stay with the address over a reload; else a new one (NULL when out of
 * memory). */
struct upstream_addr *upstream_addr_get(struct generation *g, struct generation *old,
                                        const char *listener, const addr_t *a, bool udp);

/* Drops a listener's reference to an upstream address; the last frees it.
 * Generations are freed by whichever thread drops their last reference. */
void upstream_addr_put(struct upstream_addr *ua);

/*
 * The address for the next connect of a client of l from `peer` (which
 * source-hash hashes) choosing by ch, or NULL when its attempts are
 * spent.  One attempt is one upstream: the first starts where the balance
 * mode says, among the upstreams with an address not marked failed; each
 * retry goes on from the one before to the next such upstream.  When every
 * upstream is marked failed they are tried anyway, in the same order,
 * rather than refusing the client.  Within an attempt the upstream's
 * addresses not marked failed are tried in order (all of them when the
 * whole upstream was marked failed): a failed connect moves on to its next
 * address before it uses up a retry.  An address that upstream_find_loops()
 * found to loop back to c's listener is never returned: it counts as a
 * failed connect of the listener, with a warning (not as a mark on the
 * address, which other listeners may use).  The address returned has the
 * connect counted (ua->connects), whatever becomes of it.
 */
struct upstream_addr *upstream_next(struct worker *w, struct listener *l,
                                    struct upstream_choice *ch, const addr_t *peer);

/*
 * Finds, once g's listeners are bound, the upstream addresses of g's
 * relays that would lead back to their own listener through the daemon's
 * own listening sockets (the same address; on the port of a wildcard one,
 * a loopback address or one of this host's interface addresses, read now)
 * and notes them in loop_at.  0 or -ENOMEM.
 */
int upstream_find_loops(struct generation *g);

/* Marks address ua of upstream `target` of listener l failed for l's
 * fail_timeout, counts the failure and logs why (rate-limited). */
void upstream_failed(struct worker *w, struct listener *l, const struct upstream *target,
                     struct upstream_addr *ua, int err);

/* Counts a connect to ua under way: one more connection relayed to it
 * (upstream_next() counted the connect). */
void upstream_connecting(struct upstream_addr *ua);

/* Counts a connection relayed to ua ending, `to` bytes sent to it and
 * `from` bytes received (0 and 0 for a connect that failed). */
void upstream_released(struct upstream_addr *ua, uint64_t to, uint64_t from);

/* Clears an address's failure after a connect to it succeeded. */
void upstream_succeeded(struct upstream_addr *ua);

/* The weight an upstream has now: the one an operator set for its
 * address, else the configuration's. */
unsigned upstream_weight(const struct upstream *up);

/* The state of ua for people: "up", "down" (checks or passive marks say
 * so at now_ms), "draining" or "disabled". */
const char *upstream_state_name(const struct upstream_addr *ua, int64_t now_ms);

/* Logs a warning about upstreams through the worker's rate limit; the line
 * that follows dropped ones says how many were not logged. */
__attribute__((format(printf, 2, 3))) void upstream_warn(struct worker *w,
                                                         const char *fmt, ...);

#endif
