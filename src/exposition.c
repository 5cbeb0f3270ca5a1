/*
 * The exposition: the daemon's counters in the Prometheus text format,
 * version 0.0.4 (see exposition.h).
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "exposition.h"
#include "worker.h"
#include "generation.h"
#include "histogram.h"
#include "loop.h"
#include "mio.h"

/* Writes a label value with the format's escapes: \\, \" and \n. */
static void put_label_value(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* Writes the # HELP and # TYPE lines of a family. */
static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Writes one sample with a listener label and, when `reason` is not NULL,
 * a reason label. */
static void listener_sample(FILE *f, const char *name, const char *listener,
                            const char *reason, unsigned long long value)
{
    fprintf(f, "%s{listener=\"", name);
    put_label_value(f, listener);
    if (reason != NULL) {
        fputs("\",reason=\"", f);
        put_label_value(f, reason);
    }
    fprintf(f, "\"} %llu\n", value);
}

/* A counter of a struct, as the tables below name it: where it is, and
 * which of the two kinds of counter the structs hold it is. */
struct counter {
    size_t offset;
    bool uint; /* an atomic_uint; else an atomic_ullong */
};

/* Whether `field` of struct T is an atomic_uint, not an atomic_ullong;
 * refused at compile time when it is neither. */
#define IS_UINT(T, field) \
    _Generic(&((struct T *)0)->field, atomic_uint * : true, atomic_ullong * : false)

/* The counter `field` of struct T. */
#define COUNTER(T, field)                            \
    {                                                \
        offsetof(struct T, field), IS_UINT(T, field) \
    }

/* The value of counter c of the struct at base. */
static unsigned long long counter_value(const void *base, struct counter c)
{
    const void *at = (const char *)base + c.offset;
    if (c.uint)
        return atomic_load((const atomic_uint *)at);
    return atomic_load((const atomic_ullong *)at);
}

/* Which listeners a family has samples of. */
enum of { OF_ALL, OF_STREAM, OF_UDP };

/* Whether listener l is one of `of`. */
static bool is_of(const struct listener *l, enum of of)
{
    return of == OF_ALL || (of == OF_UDP) == (l->cfg->protocol == PROTOCOL_UDP);
}

/* Whether generation g has a listener of `of`. */
static bool has_of(const struct generation *g, enum of of)
{
    for (size_t i = 0; i < g->nlisteners; i++)
        if (is_of(&g->listeners[i], of))
            return true;
    return false;
}

/* The families with one sample per listener (of some), in the order
 * written.  A UDP listener's flows are what admission counts as its
 * connections (st->active, st->accepted). */
static const struct {
    const char *name, *type, *help;
    struct counter value;
    enum of of;
} per_listener[] = {
    {"mio_echod_connections_open", "gauge", "Client connections open now.",
     COUNTER(listener_state, active), OF_STREAM},
    {"mio_echod_connections_total", "counter",
     "Client connections accepted, including those refused later over their "
     "PROXY header; clients refused at accept are not counted.",
     COUNTER(listener_state, accepted), OF_STREAM},
    {"mio_echod_bytes_received_total", "counter",
     "Bytes received from clients, counted when their connection (UDP: flow) closes.",
     COUNTER(listener_state, bytes_in), OF_ALL},
    {"mio_echod_bytes_sent_total", "counter",
     "Bytes sent to clients, counted when their connection (UDP: flow) closes.",
     COUNTER(listener_state, bytes_out), OF_ALL},
    {"mio_echod_udp_flows_open", "gauge", "UDP flows (client address and port) open now.",
     COUNTER(listener_state, active), OF_UDP},
    {"mio_echod_udp_flows_total", "counter", "UDP flows begun.",
     COUNTER(listener_state, accepted), OF_UDP},
    {"mio_echod_udp_datagrams_received_total", "counter",
     "Datagrams received from clients, dropped ones included.",
     COUNTER(listener_state, dgrams_in), OF_UDP},
    {"mio_echod_udp_datagrams_sent_total", "counter", "Datagrams sent to clients.",
     COUNTER(listener_state, dgrams_out), OF_UDP},
};

/* ---- per upstream address ------------------------------------------------ */

/* Whether listener l relays to upstreams (TCP or UDP). */
static bool is_relay(const struct listener *l)
{
    return l->cfg->mode == MODE_PROXY && l->nupstreams > 0;
}

/* Whether g has a relay listener. */
static bool has_relay(const struct generation *g)
{
    for (size_t i = 0; i < g->nlisteners; i++)
        if (is_relay(&g->listeners[i]))
            return true;
    return false;
}

/* The address of l's upstream k, or NULL when an upstream before it (of
 * l's own or of an sni_route) has that address already: each address of
 * a listener has one object (upstream.h), written once. */
static const struct upstream_addr *first_addr(const struct listener *l, size_t k)
{
    const struct upstream_addr *ua = l->upstreams[k].addrs[0];
    for (size_t j = 0; j < k; j++)
        if (l->upstreams[j].addrs[0] == ua)
            return NULL;
    return ua;
}

/* Writes the labels of upstream address ua of listener `listener`, and
 * the name of a state when not NULL. */
static void upstream_labels(FILE *f, const char *name, const char *listener,
                            const struct upstream_addr *ua, const char *state)
{
    fprintf(f, "%s{listener=\"", name);
    put_label_value(f, listener);
    fputs("\",upstream=\"", f);
    put_label_value(f, ua->name);
    if (state != NULL)
        fprintf(f, "\",state=\"%s", state);
    fputs("\"}", f);
}

/* The families with one sample per upstream address of each relay
 * listener, after mio_echod_upstream_state, in the order written. */
static const struct {
    const char *name, *type, *help;
    struct counter value;
} per_upstream[] = {
    {"mio_echod_upstream_connections_open", "gauge",
     "Connections relayed to the upstream address now, those connecting included "
     "(UDP: flows).",
     COUNTER(upstream_addr, active)},
    {"mio_echod_upstream_connects_total", "counter",
     "Connects to the upstream address begun, failed ones included (UDP: flows "
     "that chose it).",
     COUNTER(upstream_addr, connects)},
    {"mio_echod_upstream_connect_failures_total", "counter",
     "Connects to the upstream address that failed or timed out, a failed TLS "
     "handshake with upstream_tls included (UDP: ICMP port unreachable).",
     COUNTER(upstream_addr, connect_failures)},
    {"mio_echod_upstream_check_failures_total", "counter",
     "Active health checks of the upstream address that failed.",
     COUNTER(upstream_addr, check_failures)},
    {"mio_echod_upstream_bytes_sent_total", "counter",
     "Bytes from clients relayed to the upstream address, counted when their "
     "connection (UDP: flow) closes.",
     COUNTER(upstream_addr, bytes_out)},
    {"mio_echod_upstream_bytes_received_total", "counter",
     "Bytes from the upstream address relayed to clients, counted when their "
     "connection (UDP: flow) closes.",
     COUNTER(upstream_addr, bytes_in)},
};

/* The states of an upstream address, as upstream_state_name() names
 * them. */
static const char *const upstream_states[] = {"up", "down", "draining", "disabled"};

/* The upstream state of every address of g's relays, one sample per state,
 * 1 for the one it is in; then the families of per_upstream[]. */
static void expose_upstreams(FILE *f, const struct generation *g)
{
    if (!has_relay(g))
        return;
    int64_t now_ms = loop_clock_ms();
    family(f, "mio_echod_upstream_state", "gauge",
           "The state of the upstream address, one sample per state, 1 for the one it "
           "is in: up; down (active checks say so, or a connect failed within "
           "fail_timeout); draining or disabled (an operator's).");
    for (size_t i = 0; i < g->nlisteners; i++) {
        const struct listener *l = &g->listeners[i];
        for (size_t k = 0; k < l->nupstreams && is_relay(l); k++) {
            const struct upstream_addr *ua = first_addr(l, k);
            if (ua == NULL)
                continue;
            const char *now = upstream_state_name(ua, now_ms);
            for (size_t s = 0; s < sizeof(upstream_states) / sizeof(*upstream_states);
                 s++) {
                upstream_labels(f, "mio_echod_upstream_state", l->st->name, ua,
                                upstream_states[s]);
                fprintf(f, " %d\n", strcmp(now, upstream_states[s]) == 0);
            }
        }
    }
    for (size_t n = 0; n < sizeof(per_upstream) / sizeof(per_upstream[0]); n++) {
        family(f, per_upstream[n].name, per_upstream[n].type, per_upstream[n].help);
        for (size_t i = 0; i < g->nlisteners; i++) {
            const struct listener *l = &g->listeners[i];
            for (size_t k = 0; k < l->nupstreams && is_relay(l); k++) {
                const struct upstream_addr *ua = first_addr(l, k);
                if (ua == NULL)
                    continue;
                upstream_labels(f, per_upstream[n].name, l->st->name, ua, NULL);
                fprintf(f, " %llu\n", counter_value(ua, per_upstream[n].value));
            }
        }
    }
}

/* ---- histograms ------------------------------------------------------------ */

/* Whether listener l connects to upstreams over TCP (or a Unix socket). */
static bool is_stream_relay(const struct listener *l)
{
    return is_relay(l) && l->cfg->protocol != PROTOCOL_UDP;
}

/* Writes the histogram of listener st, as family `name`. */
static void listener_histogram(FILE *f, const char *name, const struct listener_state *st,
                               const struct histogram *h)
{
    /* listener="NAME", escaped: each byte of the name two at most. */
    char labels[sizeof(st->name) * 2 + 16] = "listener=\"";
    size_t n = strlen(labels);
    for (const char *p = st->name; *p != '\0'; p++) {
        char c = *p;
        if (c == '\\' || c == '"' || c == '\n') {
            labels[n++] = '\\';
            if (c == '\n')
                c = 'n';
        }
        labels[n++] = c;
    }
    labels[n++] = '"';
    labels[n] = '\0';
    histogram_write(f, name, labels, h);
}

/* The connect-time histogram of g's TCP relays, and the duration one of
 * all its listeners. */
static void expose_histograms(FILE *f, const struct generation *g)
{
    bool any = false;
    for (size_t i = 0; i < g->nlisteners; i++)
        any |= is_stream_relay(&g->listeners[i]);
    if (any)
        family(f, "mio_echod_upstream_connect_seconds", "histogram",
               "Time from the start of a connect to an upstream to its being ready for "
               "the relay: connected, and with upstream_tls the TLS handshake done; "
               "connects that failed are not in it.");
    for (size_t i = 0; i < g->nlisteners; i++)
        if (is_stream_relay(&g->listeners[i]))
            listener_histogram(f, "mio_echod_upstream_connect_seconds",
                               g->listeners[i].st, &g->listeners[i].st->connect_time);
    family(f, "mio_echod_connection_duration_seconds", "histogram",
           "How long client connections lived, from the accept to the close, to the "
           "millisecond (UDP: a flow, from its first datagram to its end, its "
           "idle_timeout included).");
    for (size_t i = 0; i < g->nlisteners; i++)
        listener_histogram(f, "mio_echod_connection_duration_seconds", g->listeners[i].st,
                           &g->listeners[i].st->duration);
}

/* Whether listener l makes TLS handshakes on `side`. */
static bool has_tls_side(const struct listener *l, enum tls_side side)
{
    return side == TLS_SIDE_CLIENT ? l->cfg->tls.on : l->cfg->upstream_tls.on;
}

/* One TLS sample of listener st on `side`, with its failure reason or
 * none. */
static void tls_sample(FILE *f, const char *name, const struct listener_state *st,
                       enum tls_side side, const char *reason, unsigned long long value)
{
    fprintf(f, "%s{listener=\"", name);
    put_label_value(f, st->name);
    fprintf(f, "\",side=\"%s", tls_side_name(side));
    if (reason != NULL)
        fprintf(f, "\",reason=\"%s", reason);
    fprintf(f, "\"} %llu\n", value);
}

/* The TLS handshakes of g's listeners that make them, and their failures
 * by reason; nothing when none does. */
static void expose_tls(FILE *f, const struct generation *g)
{
    bool any = false;
    for (size_t i = 0; i < g->nlisteners; i++)
        for (int side = 0; side < TLS_SIDE_N; side++)
            any |= has_tls_side(&g->listeners[i], (enum tls_side)side);
    if (!any)
        return;
    family(f, "mio_echod_tls_handshakes_total", "counter", "TLS handshakes completed.");
    for (size_t i = 0; i < g->nlisteners; i++)
        for (int side = 0; side < TLS_SIDE_N; side++)
            if (has_tls_side(&g->listeners[i], (enum tls_side)side))
                tls_sample(f, "mio_echod_tls_handshakes_total", g->listeners[i].st,
                           (enum tls_side)side, NULL,
                           atomic_load(&g->listeners[i].st->tls_handshakes[side]));
    family(f, "mio_echod_tls_handshake_failures_total", "counter",
           "TLS handshakes that failed or timed out, by reason.");
    for (size_t i = 0; i < g->nlisteners; i++)
        for (int side = 0; side < TLS_SIDE_N; side++)
            for (int r = 0; r < TLS_FAIL_N && has_tls_side(&g->listeners[i], side); r++)
                tls_sample(f, "mio_echod_tls_handshake_failures_total",
                           g->listeners[i].st, (enum tls_side)side,
                           tls_failure_name((enum tls_failure)r),
                           atomic_load(&g->listeners[i].st->tls_failures[side][r]));
}

void exposition_write(FILE *f, const struct daemon *d, const struct generation *g)
{
    for (size_t k = 0; k < sizeof(per_listener) / sizeof(per_listener[0]); k++) {
        if (!has_of(g, per_listener[k].of))
            continue;
        family(f, per_listener[k].name, per_listener[k].type, per_listener[k].help);
        for (size_t i = 0; i < g->nlisteners; i++) {
            struct listener_state *st = g->listeners[i].st;
            if (is_of(&g->listeners[i], per_listener[k].of))
                listener_sample(f, per_listener[k].name, st->name, NULL,
                                counter_value(st, per_listener[k].value));
        }
    }
    if (has_of(g, OF_STREAM))
        family(f, "mio_echod_refused_total", "counter",
               "Client connections refused before any byte was served, by reason.");
    for (size_t i = 0; i < g->nlisteners; i++) {
        struct listener_state *st = g->listeners[i].st;
        for (int r = 0; r < REFUSED_N && is_of(&g->listeners[i], OF_STREAM); r++)
            listener_sample(f, "mio_echod_refused_total", st->name, refusal_names[r],
                            atomic_load(&st->refused[r]));
    }
    if (has_of(g, OF_UDP))
        family(f, "mio_echod_udp_dropped_total", "counter",
               "Datagrams from clients dropped, by reason: a new flow refused (as "
               "mio_echod_refused_total's reasons), or truncated, send_error, shutdown, "
               "no_upstream, loop_port.");
    for (size_t i = 0; i < g->nlisteners; i++) {
        struct listener_state *st = g->listeners[i].st;
        for (int r = 0; r < UDP_DROP_N && is_of(&g->listeners[i], OF_UDP); r++)
            listener_sample(f, "mio_echod_udp_dropped_total", st->name,
                            udp_drop_name((enum udp_drop)r),
                            atomic_load(&st->udp_dropped[r]));
    }
    family(f, "mio_echod_upstream_failures_total", "counter",
           "Connect attempts to upstreams that failed or timed out.");
    for (size_t i = 0; i < g->nlisteners; i++) {
        struct listener_state *st = g->listeners[i].st;
        listener_sample(f, "mio_echod_upstream_failures_total", st->name, NULL,
                        atomic_load(&st->upstream_failures));
    }
    expose_upstreams(f, g);
    expose_histograms(f, g);
    expose_tls(f, g);
    family(f, "mio_echod_reloads_total", "counter",
           "Configuration reloads that took effect.");
    fprintf(f, "mio_echod_reloads_total %llu\n",
            (unsigned long long)atomic_load(&d->reloads));
    family(f, "mio_echod_reload_failures_total", "counter",
           "Configuration reloads that failed, leaving the previous one running.");
    fprintf(f, "mio_echod_reload_failures_total %llu\n",
            (unsigned long long)atomic_load(&d->reload_failures));
    family(f, "mio_echod_daemon_connections_open", "gauge",
           "Client connections and UDP flows open now, on every listener.");
    fprintf(f, "mio_echod_daemon_connections_open %u\n", atomic_load(&d->active));
    family(f, "mio_echod_draining", "gauge",
           "1 from the start of a drain, when /health answers 503; 0 while serving.");
    fprintf(f, "mio_echod_draining %d\n", atomic_load(&d->draining) ? 1 : 0);
    family(f, "mio_echod_workers", "gauge", "Worker threads.");
    fprintf(f, "mio_echod_workers %u\n", d->nworkers);
    family(f, "mio_echod_build_info", "gauge",
           "The version of mio-echod and the libmio backend it runs on; always 1.");
    fputs("mio_echod_build_info{version=\"", f);
    put_label_value(f, PACKAGE_VERSION);
    fputs("\",backend=\"", f);
    /* The workers' own, not mio_backend_name(), which probes each time. */
    bool polling = d->nworkers > 0 && d->workers != NULL &&
                   d->workers[0].loop.poll != NULL;
    put_label_value(f, polling ? mio_poll_backend(d->workers[0].loop.poll)
                               : mio_backend_name());
    fputs("\"} 1\n", f);
}
