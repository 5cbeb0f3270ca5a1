/*
 * The integration tests' harness: the test library (tests/common/) with
 * cmocka's way of failing a test.  The daemon under test is ECHOD_PROGRAM
 * (default src/mio-echod); tests/on-backend.sh runs a test program again
 * with MIO_BACKEND set, which the daemons it starts inherit.
 */
#ifndef TESTS_DAEMON_HARNESS_H
#define TESTS_DAEMON_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base.h"
#include "churn.h"
#include "ctl.h"
#include "echod.h"
#include "files.h"
#include "load.h"
#include "metrics.h"
#include "net.h"
#include "pattern.h"
#include "proc.h"
#include "run.h"
#include "stream.h"
#include "tserver.h"
#include "udp.h"
#include "upstream.h"

/*
 * Under AddressSanitizer or ThreadSanitizer (.ci/sanitizers builds the
 * tests and the daemon alike) the daemon's memory is the sanitizer's:
 * freed blocks wait in a quarantine, shadow memory grows.  Its RSS is then
 * printed, not checked; everything else is.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* A test's teardown: stops the streams, the daemons and the upstreams
 * (TCP and UDP) a failed test left running, and closes its tracked descriptors. */
int teardown_all(void **state);

/* A group setup: SIGPIPE ignored, so that a write to a socket the daemon
 * closed fails with EPIPE instead of ending the test program. */
int setup_ignore_sigpipe(void **state);

/* What a group setup of the tests that send the pattern does: SIGPIPE
 * ignored (as setup_ignore_sigpipe()) and pattern_init(period, seed).
 * 0, or -1 when there is no memory for the pattern. */
int setup_sigpipe_and_pattern(size_t period, uint32_t seed);

/* A group teardown: frees the pattern. */
int teardown_pattern(void **state);

/* Runs only the tests whose names match the glob in environment variable
 * `var` (such as UDP_TEST=glob), when it is set and not empty. */
void test_filter_from_env(const char *var);

/* Connecting to 127.0.0.1:port is refused within ms (a listener that just
 * went away may still take a connection in its last moments: such a
 * connection is closed and the attempt repeated); fails the test if not. */
void expect_connect_refused(int port, int ms);

#endif
