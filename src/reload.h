/* Reloading the configuration on SIGHUP, without dropping a connection. */
#ifndef ECHOD_RELOAD_H
#define ECHOD_RELOAD_H

#include <stdbool.h>

#include "config.h"
#include "daemon.h"

/* A certificate that expires within this many days is warned of. */
#define RELOAD_EXPIRY_DAYS 30

/* Warns of each certificate of cfg that expires within RELOAD_EXPIRY_DAYS
 * or has expired: in the log, or on stderr (for -t). */
void reload_warn_certificates(const struct config *cfg, bool to_stderr);

/*
 * Loads and checks the configuration file again.  If it fails, the daemon
 * keeps running the previous configuration, says why in the log and in
 * systemd's STATUS=, and writes why into err (for the control socket);
 * false then.  If it loads, its listeners open (an address that
 * stays keeps its socket), removed ones close, and changed settings apply
 * to new connections; established ones keep the settings they started
 * with and lose no byte.  Runs in the main thread.
 */
bool reload_config(struct daemon *d, char *err, size_t errlen);

/* Opens the configuration running again with the upstream addresses the
 * resolver has now (resolver.h); on failure the previous ones stay, and
 * the log says why.  Runs in the main thread. */
void reload_addresses(struct daemon *d);

#endif
