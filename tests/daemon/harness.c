/*
 * The integration tests' harness (see harness.h): makes the test library
 * fail a test the cmocka way, names the daemon under test, and holds
 * what the test programs' main() and group setups share.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#ifndef ECHOD_PROGRAM
#define ECHOD_PROGRAM "src/mio-echod"
#endif

/* The library's failures, as cmocka's: the message, then the test ends. */
static void cmocka_fail(const char *msg)
{
    fail_msg("%s", msg);
}

/* Before main(): every test program of this directory uses both.  What a
 * service manager running the build (a package build in a container, a
 * notify-type unit) left in the environment is dropped: a daemon under test
 * would take itself for systemd's.  Tests that play systemd set it again. */
__attribute__((constructor)) static void harness_init(void)
{
    test_set_fail(cmocka_fail);
    echod_set_program(ECHOD_PROGRAM);
    static const char *const managers[] = {"NOTIFY_SOCKET", "LISTEN_FDS",
                                           "LISTEN_PID",    "LISTEN_FDNAMES",
                                           "WATCHDOG_USEC", "WATCHDOG_PID"};
    for (size_t i = 0; i < sizeof(managers) / sizeof(managers[0]); i++)
        unsetenv(managers[i]);
}

int teardown_all(void **state)
{
    (void)state;
    stream_abort_all();
    echod_stop_all(3000);
    up_stop_all();
    udp_stop_all();
    close_all_tracked();
    return 0;
}

int setup_ignore_sigpipe(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int setup_sigpipe_and_pattern(size_t period, uint32_t seed)
{
    signal(SIGPIPE, SIG_IGN);
    return pattern_init(period, seed) ? 0 : -1;
}

int teardown_pattern(void **state)
{
    (void)state;
    pattern_free();
    return 0;
}

void test_filter_from_env(const char *var)
{
    const char *only = getenv(var);
    if (only != NULL && only[0] != '\0')
        cmocka_set_test_filter(only);
}

void expect_connect_refused(int port, int ms)
{
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 10000; i++) {
        int fd = connect_to(port);
        if (fd < 0 && errno == ECONNREFUSED)
            return;
        if (fd < 0)
            fail_msg("connect to 127.0.0.1:%d: %s (expected refused)", port,
                     strerror(errno));
        close(fd);
        if (ms_now() >= until)
            break;
        sleep_ms(20);
    }
    fail_msg("127.0.0.1:%d still accepted connections %d ms later", port, ms);
}
