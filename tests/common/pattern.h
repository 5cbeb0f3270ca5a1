/*
 * The bytes the tests send: a pseudo-random pattern with a period, held
 * twice so that any position has a whole period after it in one piece.
 * Stream byte i from base is pat(base)[i]; different streams start at
 * different bases, so crossed streams do not go unseen.  One pattern per
 * program, made before the threads that read it start.
 */
#ifndef TESTS_COMMON_PATTERN_H
#define TESTS_COMMON_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deterministic pseudo-random bytes (splitmix64). */
void fill_random(uint8_t *buf, size_t len, uint32_t seed);

/* Makes the pattern: `period` bytes of fill_random(seed); false when
 * there is no memory. */
bool pattern_init(size_t period, uint32_t seed);
void pattern_free(void);

/* The pattern from position pos: pattern_period() bytes can be read. */
const uint8_t *pat(uint64_t pos);
size_t pattern_period(void);

/* Sends the pattern from base on fd (non-blocking) until the socket stays
 * unwritable for 500 ms, 64 MiB went, or max_ms passed; *sent counts the
 * bytes.  True when the sends stalled.  Fails the test on an error. */
bool send_until_stalled(int fd, uint64_t base, uint64_t *sent, int max_ms);

#endif
