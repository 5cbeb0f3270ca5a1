/* SipHash-2-4 against the reference vectors of its authors' paper and
 * implementation (key 00..0f, messages 00..(n-1)). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "siphash.h"

/* The key 00 01 .. 0f as two little-endian words. */
static const uint64_t key[2] = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};

static void reference_vectors(void **state)
{
    (void)state;
    uint8_t msg[64];
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    /* Appendix A of the paper: the 15-byte message. */
    assert_int_equal(siphash24(key, msg, 15), 0xa129ca6149be45e5ull);
    /* vectors[0], [1], [7], [8] and [63] of the reference implementation
     * (one word, a partial word, a word and a byte, many words). */
    assert_int_equal(siphash24(key, msg, 0), 0x726fdb47dd0e0e31ull);
    assert_int_equal(siphash24(key, msg, 1), 0x74f839c593dc67fdull);
    assert_int_equal(siphash24(key, msg, 7), 0xab0200f58b01d137ull);
    assert_int_equal(siphash24(key, msg, 8), 0x93f5f5799a932462ull);
    assert_int_equal(siphash24(key, msg, 63), 0x958a324ceb064572ull);
}

/* Another key, another hash: what makes a flood of chosen sources miss. */
static void keyed(void **state)
{
    (void)state;
    const uint64_t other[2] = {1, 2};
    const uint8_t addr[6] = {127, 0, 0, 1, 0x1b, 0x5f};
    assert_true(siphash24(key, addr, sizeof(addr)) !=
                siphash24(other, addr, sizeof(addr)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reference_vectors),
        cmocka_unit_test(keyed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
