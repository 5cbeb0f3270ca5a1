/* The weighted choices of src/balance.c: their sequences, shares and how
 * few sources move when an upstream leaves or joins. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "balance.h"

/* nginx's example: weights 5, 1, 1 give a a b a c a a, then again. */
static void swrr_spreads_the_heavy_one(void **state)
{
    (void)state;
    const unsigned w[3] = {5, 1, 1};
    int64_t cur[3] = {0};
    const char *want = "aabacaaaabacaa";
    for (size_t k = 0; want[k] != '\0'; k++)
        assert_int_equal(balance_swrr(w, cur, NULL, 3), (size_t)(want[k] - 'a'));
}

/* Over many picks each gets its weight's share exactly, each period; an
 * ineligible one gets nothing and its share goes to the others. */
static void swrr_shares_by_weight(void **state)
{
    (void)state;
    const unsigned w[4] = {3, 1, 2, 256};
    int64_t cur[4] = {0};
    unsigned got[4] = {0};
    const unsigned total = 3 + 1 + 2 + 256;
    for (unsigned k = 0; k < 10 * total; k++)
        got[balance_swrr(w, cur, NULL, 4)]++;
    for (int i = 0; i < 4; i++)
        assert_int_equal(got[i], 10 * w[i]);
    const bool eligible[4] = {true, true, true, false};
    memset(got, 0, sizeof(got));
    for (unsigned k = 0; k < 60; k++)
        got[balance_swrr(w, cur, eligible, 4)]++;
    assert_int_equal(got[3], 0);
    assert_int_equal(got[0], 30);
    assert_int_equal(got[1], 10);
    assert_int_equal(got[2], 20);
    const bool none[4] = {false, false, false, false};
    assert_int_equal(balance_swrr(w, cur, none, 4), BALANCE_NONE);
}

static const uint64_t key[2] = {0x0123456789abcdefull, 0xfedcba9876543210ull};

/* The upstream of source s (4 address bytes) among ids[0..n). */
static size_t pick(uint32_t s, const uint64_t *ids, const unsigned *w, const bool *ok,
                   size_t n)
{
    uint8_t src[4];
    memcpy(src, &s, 4);
    return balance_rendezvous(key, src, sizeof(src), ids, w, ok, n);
}

/* Removing one of 8 upstreams moves exactly the sources it had; adding a
 * ninth takes about 1/9 of them, from every other one. */
static void rendezvous_moves_few_sources(void **state)
{
    (void)state;
    enum { N = 8, SOURCES = 20000 };
    uint64_t ids[N + 1];
    unsigned w[N + 1];
    for (int i = 0; i <= N; i++) {
        ids[i] = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        w[i] = 1;
    }
    bool without3[N];
    for (int i = 0; i < N; i++)
        without3[i] = i != 3;
    unsigned on3 = 0, moved = 0, to_new = 0, share[N + 1] = {0};
    for (uint32_t s = 0; s < SOURCES; s++) {
        size_t before = pick(s, ids, w, NULL, N);
        share[before]++;
        size_t after = pick(s, ids, w, without3, N);
        on3 += before == 3;
        moved += before != after;
        if (before != 3)
            assert_int_equal(after, before); /* nobody else's source moves */
        size_t grown = pick(s, ids, w, NULL, N + 1);
        to_new += grown == N;
        if (grown != N)
            assert_int_equal(grown, before);
    }
    assert_int_equal(moved, on3);
    for (int i = 0; i < N; i++) /* each about 1/8: 2500, within 10 % */
        assert_true(share[i] > 2250 && share[i] < 2750);
    print_message("    removing 1 of %d moved %u of %u sources (1/N: %u); adding a "
                  "ninth took %u (1/9: %u)\n",
                  N, moved, SOURCES, SOURCES / N, to_new, SOURCES / (N + 1));
    assert_true(to_new > SOURCES / (N + 1) * 9 / 10 &&
                to_new < SOURCES / (N + 1) * 11 / 10);
}

/* Weights 1, 2, 5: shares within 5 % of 1/8, 2/8, 5/8. */
static void rendezvous_shares_by_weight(void **state)
{
    (void)state;
    enum { SOURCES = 40000 };
    const uint64_t ids[3] = {11, 22, 33};
    const unsigned w[3] = {1, 2, 5};
    unsigned got[3] = {0};
    for (uint32_t s = 0; s < SOURCES; s++)
        got[pick(s * 2654435761u, ids, w, NULL, 3)]++;
    for (int i = 0; i < 3; i++) {
        double want = SOURCES * (double)w[i] / 8.0, share = got[i];
        print_message("    weight %u: %u sources (%.0f expected)\n", w[i], got[i], want);
        assert_true(share > want * 0.95 && share < want * 1.05);
    }
    const bool none[3] = {false, false, false};
    assert_int_equal(pick(1, ids, w, none, 3), BALANCE_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(swrr_spreads_the_heavy_one),
        cmocka_unit_test(swrr_shares_by_weight),
        cmocka_unit_test(rendezvous_moves_few_sources),
        cmocka_unit_test(rendezvous_shares_by_weight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
