/*
 * What the configuration loader checks across settings, or against the
 * system, beyond what one value says: listen addresses that overlap,
 * v4-mapped listen addresses, relays whose upstreams lead back to
 * themselves, users that do not exist.  Each returns 0 or a negative errno
 * with the message written (config-value.h).
 */
#ifndef ECHOD_CONFIG_CHECK_H
#define ECHOD_CONFIG_CHECK_H

#include <libconfig.h>

#include "config.h"
#include "config-value.h"

/* Remembers a listen address of `listener` (written at `line`), UDP or
 * TCP, for the overlap checks of the ones after it. */
int check_take(struct config_loader *ld, const struct config_addr *a, bool udp,
               const char *listener, int line);

/* Refuses the address a, written `text` at `line` as the setting
 * SCOPE.KEY, when it overlaps a listen address of the same protocol taken
 * before (a TCP and a UDP listener may share a port). */
int check_overlap(struct config_loader *ld, const addr_t *a, bool udp, const char *text,
                  int line, const char *scope, const char *key);

/*
 * Refuses the listen address a, written `text` at `line`, when it is a
 * v4-mapped IPv6 address (::ffff:a.b.c.d): the daemon's IPv6 sockets are
 * IPv6-only, so binding one fails ("Invalid argument"), and it would
 * stand for the IPv4 address that another listen address may hold.
 */
int check_v4_mapped(struct config_loader *ld, const addr_t *a, const char *text, int line,
                    const char *scope, const char *key);

/*
 * Refuses a relay whose upstreams lead back to itself: one client would
 * make it connect to itself, again and again, until max_connections.  list
 * is the file's listeners setting, whose elements are cfg's listeners.
 */
int check_loops(struct config_loader *ld, const config_setting_t *list,
                const struct config *cfg);

/* Refuses a user (the setting `user` of root) that does not exist: the
 * daemon could never switch to it. */
int check_user(struct config_loader *ld, const config_setting_t *root, const char *user);

#endif
