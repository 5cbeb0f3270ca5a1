/* Histograms of durations (see histogram.h). */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include "histogram.h"

#define US_PER_S 1000000ULL

const struct histogram_bounds histogram_connect_bounds = {
    .n = 13,
    .le_us = {500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
              2500000, 5000000},
};

const struct histogram_bounds histogram_duration_bounds = {
    .n = 10,
    .le_us = {10000, 100000, 500000, 1000000, 5000000, 10000000, 60000000, 300000000,
              1800000000, 3600000000},
};

void histogram_init(struct histogram *h, const struct histogram_bounds *b)
{
    h->bounds = b;
}

void histogram_observe(struct histogram *h, uint64_t us)
{
    const struct histogram_bounds *b = h->bounds;
    size_t i = 0;
    while (i < b->n && us > b->le_us[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

/* Writes us microseconds as seconds, without the zeroes a decimal point
 * leaves at the end ("0.0005", "1", "2.5"). */
static void put_seconds(FILE *f, uint64_t us)
{
    unsigned long long s = us / US_PER_S, frac = us % US_PER_S;
    if (frac == 0) {
        fprintf(f, "%llu", s);
        return;
    }
    int digits = 6;
    for (; frac % 10 == 0; frac /= 10)
        digits--;
    fprintf(f, "%llu.%0*llu", s, digits, frac);
}

void histogram_write(FILE *f, const char *name, const char *labels,
                     const struct histogram *h)
{
    const struct histogram_bounds *b = h->bounds;
    unsigned long long total = 0;
    for (size_t i = 0; i <= b->n; i++) {
        total += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        fprintf(f, "%s_bucket{%s,le=\"", name, labels);
        if (i < b->n)
            put_seconds(f, b->le_us[i]);
        else
            fputs("+Inf", f);
        fprintf(f, "\"} %llu\n", total);
    }
    unsigned long long sum = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    fprintf(f, "%s_sum{%s} %llu.%06llu\n", name, labels, sum / US_PER_S, sum % US_PER_S);
    fprintf(f, "%s_count{%s} %llu\n", name, labels, total);
}
