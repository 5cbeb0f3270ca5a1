/*
 * Histograms of durations, as Prometheus has them: a count per bucket
 * (each an upper bound, "le"), and the sum of what was observed.  Written
 * as cumulative name_bucket{...,le="B"} samples, le="+Inf" last, then
 * name_sum (seconds) and name_count.
 *
 * Observing is two relaxed atomic adds (the value's bucket and the sum):
 * the threads that observe never wait for one another nor for a scrape.
 * A scrape reads each counter once, so one that runs while values are
 * observed may see a value in its bucket and not yet in _sum, or the
 * reverse; _count is always the total of the buckets (+Inf's value).
 */
#ifndef ECHOD_HISTOGRAM_H
#define ECHOD_HISTOGRAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HISTOGRAM_MAX_BUCKETS 16

/* The upper bounds of a histogram's buckets in microseconds, ascending;
 * +Inf is not among them. */
struct histogram_bounds {
    size_t n;
    uint64_t le_us[HISTOGRAM_MAX_BUCKETS];
};

/* The time from a connect's start to its upstream ready for the relay:
 * 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 s. */
extern const struct histogram_bounds histogram_connect_bounds;

/* How long a connection (or UDP flow) lived:
 * 0.01 0.1 0.5 1 5 10 60 300 1800 3600 s. */
extern const struct histogram_bounds histogram_duration_bounds;

struct histogram {
    const struct histogram_bounds *bounds;
    /* Values per bucket, not cumulative: [i] those above bound i - 1 and
     * up to bound i; [bounds->n] those above the last bound. */
    atomic_ullong counts[HISTOGRAM_MAX_BUCKETS + 1];
    atomic_ullong sum_us;
};

/* Sets up an empty histogram (zeroed memory, as calloc gives) with its
 * bounds. */
void histogram_init(struct histogram *h, const struct histogram_bounds *b);

/* Counts one value of us microseconds. */
void histogram_observe(struct histogram *h, uint64_t us);

/*
 * Writes h's samples as family `name`: name_bucket, name_sum, name_count,
 * each with the labels `labels` (pairs written as they go between the
 * braces, escaped, e.g. listener="a"; never empty), the buckets with le
 * after them.  A bound is written in seconds, shortest ("0.0005", "1",
 * "2.5"); the sum in seconds with six decimals.
 */
void histogram_write(FILE *f, const char *name, const char *labels,
                     const struct histogram *h);

#endif
