/*
 * mio-echod's configuration, loaded from a libconfig file and validated
 * whole: a configuration either loads completely or not at all.
 */
#ifndef ECHOD_CONFIG_H
#define ECHOD_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "addr.h"

enum listener_mode { MODE_ECHO, MODE_PROXY };
enum listener_protocol { PROTOCOL_TCP, PROTOCOL_UDP };
enum balance { BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONNECTIONS, BALANCE_SOURCE_HASH };
enum send_proxy { SEND_PROXY_NONE, SEND_PROXY_V1, SEND_PROXY_V2 };
enum log_target { LOG_TARGET_AUTO, LOG_TARGET_STDERR, LOG_TARGET_SYSLOG };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };
enum tls_version { TLS_VERSION_1_2, TLS_VERSION_1_3 };
/* libmio's backend every loop runs on; the names are the table's. */
enum poller { POLLER_AUTO, POLLER_EPOLL, POLLER_KQUEUE, POLLER_POLL, POLLER_IO_URING };

struct tls_client;
struct tls_server;

/* One address of a listener or an upstream, with the text it came from. */
struct config_addr {
    char *text;  /* as written in the file, for messages */
    addr_t addr; /* an upstream's first address */
    int line;    /* where it is written (listen addresses) */
    /* Upstreams: every address its host name resolved to, in order, addrs[0]
     * being addr (one for a numeric address); NULL and 0 for the others. */
    addr_t *addrs;
    size_t naddrs;
    unsigned weight; /* upstreams: 1..256 (1 when written as a string) */
    bool backup;     /* upstreams: used only when no primary is up */
};

/* A certificate chain (PEM, leaf first) and its private key: absolute
 * paths, a relative one in the file having been taken from
 * $CREDENTIALS_DIRECTORY when set, else from the file's directory. */
struct tls_pair {
    char *certificate, *key;
    int line; /* where it is written, for messages */
};

/* A listener's `tls` group: TLS terminated on its clients' connections. */
struct tls_config {
    bool on;               /* the group is there */
    struct tls_pair pair;  /* the default certificate (certificate, key) */
    struct tls_pair *more; /* certificates: more pairs, chosen by SNI */
    size_t nmore;
    char *client_ca; /* "" = no client certificate asked */
    enum tls_version min_version;
    char *ciphers;      /* TLS 1.2 and below; "" = OpenSSL's default */
    char *ciphersuites; /* TLS 1.3; "" = OpenSSL's default */
    char **alpn;        /* protocols offered, in the order of preference */
    size_t nalpn;
    struct tls_server *server; /* built from the above when loaded (tls.h) */
};

/* A relay's `upstream_tls` group: TLS originated to its upstreams. */
struct upstream_tls_config {
    bool on;
    char *ca;                  /* "" = the system's default trust store */
    bool verify;               /* the upstream's certificate and name are checked */
    char *server_name;         /* SNI and the name verified; "" = the upstream's host */
    struct tls_pair pair;      /* a client certificate, when certificate is not "" */
    struct tls_client *client; /* built from the above when loaded (tls.h) */
};

/* One of a relay's `sni_routes`: the upstreams of the connections whose
 * ClientHello names a matching server. */
struct sni_route {
    char *server_name; /* "a.example" or "*.b.example", lowercase */
    struct config_addr *upstreams;
    size_t nupstreams;
    int line;
};

/* A relay's `health_check` group: active checks of its upstreams. */
struct health_check_config {
    int64_t interval_ms; /* between checks of one address; 0: no active checks */
    int64_t timeout_ms;  /* a check's connect, send and expect, all within it */
    unsigned rise, fall; /* consecutive results that mark an address up, down */
    char *send;          /* bytes sent once connected ("": none) */
    char *expect;        /* the answer must start with these ("": any, or none) */
};

/* A listener's name: at most this many bytes. */
#define CONFIG_NAME_MAX 64

struct listener_config {
    char *name;
    int line;                   /* where the listener's group starts, for messages */
    struct config_addr *listen; /* "*:port" is expanded into two */
    size_t nlisten;
    enum listener_protocol protocol;
    enum listener_mode mode;
    size_t buffer_size;       /* bytes per direction */
    int64_t idle_timeout_ms;  /* 0 = none */
    int64_t proxy_timeout_ms; /* the whole PROXY header within it */
    unsigned max_connections; /* 0 = no listener limit */
    unsigned max_per_source;  /* 0 = no limit */
    struct cidr *allow;
    size_t nallow;
    struct cidr *deny;
    size_t ndeny;
    bool accept_proxy;
    bool splice;     /* bulk data through a pipe (Linux splice(2)) */
    bool reuse_port; /* SO_REUSEPORT: share the port with other processes */
    /* proxy mode only */
    struct config_addr *upstreams;
    size_t nupstreams;
    enum balance balance;
    int64_t connect_timeout_ms;
    unsigned retries;
    int64_t fail_timeout_ms;
    enum send_proxy send_proxy;
    unsigned responses; /* UDP: a flow ends after this many replies; 0: never */
    struct upstream_tls_config upstream_tls;
    struct sni_route *sni_routes;
    size_t nsni_routes;
    struct health_check_config health_check;
    int64_t resolve_ms; /* between re-resolutions of upstream names; 0: only at load */
    /* both modes */
    struct tls_config tls;
};

struct config {
    atomic_int refs;          /* config_ref(); config_free() drops one */
    char *path;               /* the file read */
    unsigned workers;         /* 0 = one per CPU */
    unsigned max_connections; /* 0 = no limit */
    enum poller poller;
    int64_t shutdown_timeout_ms;
    /* How long the daemon accepts on after SIGTERM while reporting draining;
     * shutdown_timeout counts from its end. */
    int64_t drain_delay_ms;
    char *user;    /* "" = stay who we are */
    char *pidfile; /* "" = none */
    enum log_target log_target;
    int log_level; /* syslog's LOG_ERR .. LOG_DEBUG */
    enum log_format log_format;
    bool log_access;
    int64_t log_interval_ms; /* interim access lines; 0 = none */
    struct listener_config *listeners;
    size_t nlisteners;
    char *control_path;       /* the control socket; NULL or "": none */
    unsigned control_mode;    /* its permission bits */
    bool has_stats;           /* a stats group: serve metrics */
    struct config_addr stats; /* stats.listen: one numeric TCP address */
    struct cidr *stats_allow; /* stats.allow and stats.deny, as a listener's */
    size_t nstats_allow;
    struct cidr *stats_deny;
    size_t nstats_deny;
};

/*
 * Loads and validates the file at `path`, which messages call `name` (the
 * name the user gave it, while the daemon reads it by its absolute path;
 * NULL: path).  On error returns NULL and writes one line into err:
 * "NAME:LINE: SETTING: what is wrong, and what was expected", e.g.
 * "mio-echod.conf:12: listeners.relay.balance: expected round-robin,
 * least-connections or source-hash, got \"random\"".  A listener is named
 * by its name once that is known, by its index from 0 before
 * ("listeners.[1].name"); LINE is left out where there is none ("NAME:
 * cannot read: ...").  The message is valid UTF-8, control bytes and bytes
 * of the file that are not UTF-8 escaped.  err may be NULL when errlen
 * is 0.
 *
 * Besides the file's own rules, the load refuses what could never run:
 * a user that does not exist (looked up with getpwnam_r(), so a reload may
 * run while workers do), a v4-mapped IPv6 listen address, and a relay
 * whose upstreams lead back to itself through this configuration's
 * listeners.
 */
struct config *config_load(const char *path, const char *name, char *err, size_t errlen);

/* The libmio backend cfg's poller names, or NULL for "auto" (mio_poll_new()'s
 * choice). */
const char *config_poller_backend(const struct config *cfg);

/* Writes into buf the values of poller this system grants besides auto,
 * "epoll, poll, io_uring" say, making a poll on each. */
void config_pollers_usable(char *buf, size_t len);

/* Calls each() for every file cfg's TLS groups read (certificates, keys,
 * CA files), as an absolute path. */
void config_tls_files(const struct config *cfg, void (*each)(const char *file, void *arg),
                      void *arg);

/* Calls each() for every certificate of cfg's tls groups that expires
 * within `days` of now (or has expired: days_left < 0). */
void config_tls_expiry(const struct config *cfg, time_t now, int days,
                       void (*each)(const char *listener, const char *file,
                                    long days_left, void *arg),
                       void *arg);

/* Another reference to cfg, for a second holder (a generation opened
 * again with new upstream addresses shares its configuration). */
struct config *config_ref(struct config *cfg);

/* Drops a reference to cfg; the last frees it and everything it holds.
 * NULL is fine. */
void config_free(struct config *cfg);

#endif
