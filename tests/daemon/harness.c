/*
 * The integration tests' harness (see harness.h): makes the test library
 * fail a test the cmocka way, and names the daemon under test.
 */
#include "harness.h"

#ifndef ECHOD_PROGRAM
#define ECHOD_PROGRAM "src/mio-echod"
#endif

/* The library's failures, as cmocka's: the message, then the test ends. */
static void cmocka_fail(const char *msg)
{
    fail_msg("%s", msg);
}

/* Before main(): every test program of this directory uses both. */
__attribute__((constructor)) static void harness_init(void)
{
    test_set_fail(cmocka_fail);
    echod_set_program(ECHOD_PROGRAM);
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
