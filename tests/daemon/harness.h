/*
 * The integration tests' harness: starts the built mio-echod (the one on
 * the configured backend, or its poll(2) twin, chosen at build time by
 * ECHOD_PROGRAM) in the foreground with a generated configuration, reads
 * its log, and offers loopback clients and test upstreams.  Every wait is
 * bounded.
 */
#ifndef TESTS_DAEMON_HARNESS_H
#define TESTS_DAEMON_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <sys/types.h>

struct echod;

/*
 * Writes `conf` (a libconfig text; every "@DIR@" in it is replaced by a
 * fresh temporary directory, for Unix sockets and pid files) and runs
 * "mio-echod -f -c FILE" with stderr captured.  Waits (5 s at most) for the
 * "started" line; fails the test if the daemon exits first.  A `log = {...}`
 * group is not added: tests that parse the log write target = "stderr".
 */
struct echod *echod_start(const char *conf);

/* The port of the n-th address (from 0) of listener `name`, read from its
 * "listener NAME: listening on ADDR" line. */
int echod_port(struct echod *e, const char *name, int n);

/* Waits up to `ms` for a log line (from the start of the log) containing
 * `needle`; returns a copy owned by the harness, or NULL. */
const char *echod_wait_log(struct echod *e, const char *needle, int ms);

/* The n-th (from 0) log line so far containing `needle`, or NULL. */
const char *echod_log_line(struct echod *e, const char *needle, int n);

/* How many log lines so far contain `needle`. */
int echod_count_log(struct echod *e, const char *needle);

/* Sends `sig` to the daemon. */
void echod_signal(struct echod *e, int sig);

/* SIGTERM, then waits up to `ms` for the exit; returns the exit status
 * (or 128 + signal), -1 when it did not exit in time (then it is killed). */
int echod_stop(struct echod *e, int ms);

/* The daemon's pid, resident memory in KiB, and open descriptors. */
pid_t echod_pid(struct echod *e);
long echod_rss_kib(struct echod *e);
int echod_fd_count(struct echod *e);

/* Runs "mio-echod ARGS..." (NULL-terminated) to completion (5 s at most),
 * capturing stdout+stderr into out; returns the exit status. */
int echod_run(char *out, size_t outlen, const char *arg, ...);

/* Writes a configuration file into a temporary directory, returning its
 * path (owned by the harness until the test ends). */
const char *write_conf(const char *conf);

/* A blocking TCP connection to 127.0.0.1:port (or [::1] with v6) with
 * 5 s send/receive timeouts. */
int connect_to(int port);
int connect_to6(int port);

/* Sends all of buf; fails the test on error. */
void send_all(int fd, const void *buf, size_t len);

/* Receives exactly len bytes (fails on EOF, error or timeout). */
void recv_exact(int fd, void *buf, size_t len);

/* True when the peer closed (recv returns 0) within ms; false on data or
 * timeout. */
bool peer_closed_within(int fd, int ms);

/* Deterministic pseudo-random bytes. */
void fill_random(uint8_t *buf, size_t len, uint32_t seed);

int64_t ms_now(void);

#endif
