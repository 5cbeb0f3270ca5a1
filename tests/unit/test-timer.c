/* The timer heap and the per-source counts. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "persource.h"
#include "timer.h"

/* Pops every timer due by `now` and returns how many, checking order. */
static int pop_due(struct timer_heap *h, int64_t now)
{
    int n = 0;
    int64_t last = INT64_MIN;
    struct timer *t;
    while ((t = timer_peek(h)) != NULL && t->deadline_ms <= now) {
        assert_true(t->deadline_ms >= last);
        last = t->deadline_ms;
        timer_cancel(h, t);
        assert_int_equal(t->slot, 0);
        n++;
    }
    return n;
}

static void timers_come_out_in_deadline_order(void **state)
{
    (void)state;
    enum { N = 5000 };
    struct timer_heap h = {0};
    struct timer *t = calloc(N, sizeof(*t));
    srand(7);
    for (int i = 0; i < N; i++)
        assert_int_equal(timer_set(&h, &t[i], rand() % 100000), 0);
    /* Move a third, cancel a third. */
    for (int i = 0; i < N; i += 3)
        assert_int_equal(timer_set(&h, &t[i], rand() % 100000), 0);
    int cancelled = 0;
    for (int i = 1; i < N; i += 3, cancelled++)
        timer_cancel(&h, &t[i]);
    timer_cancel(&h, &t[1]); /* twice: a no-op */
    assert_int_equal(h.n, N - cancelled);
    assert_int_equal(pop_due(&h, 50000) + pop_due(&h, 100000), N - cancelled);
    assert_null(timer_peek(&h));
    timer_heap_free(&h);
    free(t);
}

static void moving_a_timer_earlier_and_later(void **state)
{
    (void)state;
    struct timer_heap h = {0};
    struct timer a = {0}, b = {0}, c = {0};
    timer_set(&h, &a, 100);
    timer_set(&h, &b, 200);
    timer_set(&h, &c, 300);
    assert_ptr_equal(timer_peek(&h), &a);
    timer_set(&h, &c, 50);
    assert_ptr_equal(timer_peek(&h), &c);
    timer_set(&h, &c, 500);
    assert_ptr_equal(timer_peek(&h), &a);
    timer_cancel(&h, &a);
    assert_ptr_equal(timer_peek(&h), &b);
    assert_int_equal(pop_due(&h, 1000), 2);
    timer_heap_free(&h);
}

static void per_source_limit_counts_and_releases(void **state)
{
    (void)state;
    struct persource ps;
    assert_int_equal(persource_init(&ps), 0);
    const uint8_t a[4] = {127, 0, 0, 1}, b[4] = {127, 0, 0, 2};
    assert_true(persource_acquire(&ps, a, 4, 2));
    assert_true(persource_acquire(&ps, a, 4, 2));
    assert_false(persource_acquire(&ps, a, 4, 2));
    assert_true(persource_acquire(&ps, b, 4, 2));
    persource_release(&ps, a, 4);
    assert_true(persource_acquire(&ps, a, 4, 2));
    persource_release(&ps, a, 4);
    persource_release(&ps, a, 4);
    persource_release(&ps, b, 4);
    assert_int_equal(ps.count, 0);
    /* Many sources grow the table and stay exact. */
    for (uint32_t i = 0; i < 3000; i++) {
        uint8_t k[16] = {0};
        k[0] = (uint8_t)i;
        k[1] = (uint8_t)(i >> 8);
        assert_true(persource_acquire(&ps, k, 16, 1));
        assert_false(persource_acquire(&ps, k, 16, 1));
    }
    assert_int_equal(ps.count, 3000);
    for (uint32_t i = 0; i < 3000; i++) {
        uint8_t k[16] = {0};
        k[0] = (uint8_t)i;
        k[1] = (uint8_t)(i >> 8);
        persource_release(&ps, k, 16);
    }
    assert_int_equal(ps.count, 0);
    persource_destroy(&ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timers_come_out_in_deadline_order),
        cmocka_unit_test(moving_a_timer_earlier_and_later),
        cmocka_unit_test(per_source_limit_counts_and_releases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
