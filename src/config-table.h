/*
 * Every setting of the configuration file, described once: its key, the
 * kind of value it takes and the range of it, its default, where it is
 * kept in struct config (or struct listener_config, for "listeners.KEY"),
 * and a line of help.  The table drives the loading of the plain settings,
 * their defaults, the check for unknown keys with its "did you mean", and
 * the test that the man page and the shipped file show every setting.
 *
 * Adding a setting is one row here plus the code that uses its value; a
 * setting the kinds cannot say has a loader of its own, named in its row.
 */
#ifndef ECHOD_CONFIG_TABLE_H
#define ECHOD_CONFIG_TABLE_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "config-value.h"

enum setting_kind {
    SETTING_COUNT,     /* an integer, range.count, kept as unsigned */
    SETTING_BYTES,     /* an integer of bytes, range.count, kept as size_t */
    SETTING_SECONDS,   /* seconds, range.seconds, kept as int64_t milliseconds */
    SETTING_BOOL,      /* true or false, kept as bool */
    SETTING_STRING,    /* a string, kept as a char * of its own */
    SETTING_CHOICE,    /* one of range.choices, kept as an int-sized enum */
    SETTING_CIDRS,     /* a list of CIDRs, kept as struct cidr * and a size_t */
    SETTING_GROUP,     /* a group { ... } of the settings "KEY.NAME" */
    SETTING_GROUPS,    /* a list of groups ( { ... }, ... ): its own loader */
    SETTING_ADDRESS,   /* one address as a string: its own loader */
    SETTING_ADDRESSES, /* a list of addresses: its own loader */
    SETTING_STRINGS,   /* a list of strings: its own loader */
};

/* Only for a listener with mode = "proxy": refused on an echo listener. */
#define SETTING_PROXY_ONLY 1u
/* Loaded before the other settings of its level, which depend on it (a
 * listener's mode). */
#define SETTING_EARLY 2u
/* Names its group in messages (a listener's name): loaded by the group's
 * own code, first. */
#define SETTING_NAMES_GROUP 4u
/* Only for protocol = "tcp" (or only "udp"): refused on a listener of the
 * other protocol.  Checked apart from the flags above, which say when a
 * row is loaded. */
#define SETTING_TCP_ONLY 8u
#define SETTING_UDP_ONLY 16u

struct setting;

/*
 * A loader of its own, for what the kinds cannot say: called by
 * table_load() whether the setting is present or not, with the group g
 * the setting is looked for in, named `scope` in messages, and base the
 * struct its row's offset is in.  0 or a negative errno with the message
 * written (config-value.h).
 */
typedef int setting_loader(struct config_loader *ld, const config_setting_t *g,
                           const char *scope, const struct setting *row, void *base);

/* The value of a setting as the table writes it. */
union setting_value {
    long long count;  /* SETTING_COUNT, SETTING_BYTES */
    double seconds;   /* SETTING_SECONDS */
    bool yes;         /* SETTING_BOOL */
    const char *text; /* SETTING_STRING; NULL: none, it must be given */
    int choice;       /* SETTING_CHOICE: a value of range.choices */
};

struct setting {
    const char *key; /* "workers", "log.level", "listeners.idle_timeout" */
    enum setting_kind kind;
    unsigned flags;      /* SETTING_PROXY_ONLY, SETTING_EARLY, SETTING_NAMES_GROUP,
                            SETTING_TCP_ONLY, SETTING_UDP_ONLY */
    size_t offset;       /* of the value in its struct */
    size_t count_offset; /* SETTING_CIDRS: of the number of them */
    union {
        struct {
            long long lo, hi;
        } count;
        struct {
            double max;
            bool positive; /* more than 0, not at least 0 */
        } seconds;
        const struct value_choice *choices; /* ended by a NULL name */
        const char *shape; /* SETTING_GROUP: "{ a = ...; }", for messages */
    } range;
    union setting_value def;
    setting_loader *load; /* NULL: the kind's own reading */
    const char *help;
};

/* Every setting, in the order messages list them ("known: ..."); ended by
 * a NULL key. */
extern const struct setting table_settings[];

/* The setting with this key, or NULL. */
const struct setting *table_find(const char *key);

/* The name of a choice setting's value ("epoll" for poller = POLLER_EPOLL),
 * or NULL. */
const char *table_choice_name(const char *key, int value);

/*
 * The key of row within level ("" for the top, "log.", "listeners.",
 * "stats."): "level" for "log.level" in "log."; NULL when the row belongs
 * to another level.
 */
const char *table_key_in(const struct setting *row, const char *level);

/* Whether a row's value is kept in struct listener_config (else in struct
 * config). */
bool table_in_listener(const struct setting *row);

/* Sets every setting kept in base (a struct config, or a struct
 * listener_config when `listener`) to its default.  0 or -ENOMEM (message
 * written). */
int table_defaults(struct config_loader *ld, void *base, bool listener);

/*
 * Refuses a setting of the group g that is not a key of level; the message
 * names the key it looks like a typo of, or else the keys there are.
 */
int table_check_keys(struct config_loader *ld, const config_setting_t *g,
                     const char *scope, const char *level);

/* Loads the settings of level whose flags are exactly `flags`, in the
 * table's order, from the group g into base. */
int table_load(struct config_loader *ld, const config_setting_t *g, const char *scope,
               const char *level, void *base, unsigned flags);

/* Reads one setting as its kind says, into base when it is present; what a
 * loader of its own calls for the plain part of its work. */
int table_load_value(struct config_loader *ld, const config_setting_t *g,
                     const char *scope, const struct setting *row, void *base);

/* The loaders of their own the table names, in config.c. */
setting_loader config_load_user;
setting_loader config_load_poller;
setting_loader config_load_listeners;
setting_loader config_load_listen;
setting_loader config_load_upstreams;
setting_loader config_load_proxy_timeout;
setting_loader config_load_splice;
setting_loader config_load_reuse_port;
setting_loader config_load_stats_listen;
setting_loader config_load_control_path;
setting_loader config_load_resolve;
setting_loader config_load_control_mode;
/* Parses the upstream list `key` of g (config.c), as "upstreams" is. */
int config_upstream_list(struct config_loader *ld, const config_setting_t *g,
                         const char *scope, const char *key, const char *listener,
                         struct config_addr **out, size_t *n);

/* Frees n addresses and the array (config.c). */
void config_free_addrs(struct config_addr *a, size_t n);

/* Completes a listener's TLS settings once the table loaded them: the
 * groups' required keys, paths made absolute, the contexts built
 * (config-tls.c). */
int config_check_tls(struct config_loader *ld, const config_setting_t *g,
                     const char *scope, struct listener_config *lc);

/* Frees a listener's TLS settings and contexts (config-tls.c). */
void config_free_tls(struct listener_config *lc);

/* ... and in config-tls.c. */
setting_loader config_load_connect_timeout;
setting_loader config_load_tls_certificates;
setting_loader config_load_tls_alpn;
setting_loader config_load_sni_routes;

#endif
