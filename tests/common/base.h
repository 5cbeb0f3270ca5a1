/*
 * What every part of the test library needs: failing the test, a clock for
 * bounded waits, and memory that is there.
 *
 * The library is shared by the cmocka daemon tests and by the soak, which
 * is no cmocka program: "fail the test" is a hook the program sets.  The
 * daemon tests' hook is cmocka's fail_msg (tests/daemon/harness.c); the
 * soak's prints the message and exits.  Either way test_fail() does not
 * return.  Only the program's main thread may fail: the library's threads
 * (test servers, streams, churn) count what goes wrong instead.
 */
#ifndef TESTS_COMMON_BASE_H
#define TESTS_COMMON_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Sets what failing means: fn gets the message and must not return. */
void test_set_fail(void (*fn)(const char *msg));

/* Fails the test with the formatted message (through the hook). */
__attribute__((format(printf, 1, 2), noreturn)) void test_fail(const char *fmt, ...);

/* Fails the test, naming the place and the condition, unless cond holds. */
#define CHECK(cond) \
    ((cond) ? (void)0 : test_fail("%s:%d: check failed: %s", __FILE__, __LINE__, #cond))

/* Fails the test unless a == b (as long long), naming both values. */
#define CHECK_EQ(a, b)                                                                \
    do {                                                                              \
        long long a_ = (long long)(a), b_ = (long long)(b);                           \
        if (a_ != b_)                                                                 \
            test_fail("%s:%d: %s is %lld, not %lld (%s)", __FILE__, __LINE__, #a, a_, \
                      b_, #b);                                                        \
    } while (0)

/* Milliseconds on CLOCK_MONOTONIC; sleep_ms() sleeps ms (EINTR resumed). */
int64_t ms_now(void);
void sleep_ms(int ms);

/* An absolute CLOCK_MONOTONIC time ms from now (for a condition variable
 * made with that clock). */
struct timespec deadline_ts(int ms);

/* vsnprintf() into buf, failing the test unless the text is there whole
 * and not empty. */
__attribute__((format(printf, 3, 0))) void xvsnprintf(char *buf, size_t len,
                                                      const char *fmt, va_list ap);

/* malloc and realloc that abort when there is no memory. */
void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);

#endif
