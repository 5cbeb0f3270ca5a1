/*
 * The daemon's metrics as a test reads them: GET /metrics on the metrics
 * listener (stats.listen on 127.0.0.1, port 0), the value of one sample in
 * the exposition, and bounded waits for a sample to reach a value.  A test
 * of the endpoint itself (its headers, its format) reads the answer whole
 * instead (test-metrics).
 */
#ifndef TESTS_COMMON_METRICS_H
#define TESTS_COMMON_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct echod;

/* GET /metrics of daemon e: the body (malloc'd); fails the test on
 * anything but a 200, or when the answer does not end within ms. */
char *metrics_scrape(struct echod *e, int ms);

/* Where the value of sample `key` (its name and labels, written exactly)
 * starts in the exposition body, or NULL when there is no such sample. */
const char *metrics_find(const char *body, const char *key);

/* The value of sample `key` in body, -1 when absent. */
long long metrics_sample(const char *body, const char *key);

/* The lines of body that start with `prefix` or name the family of `key`
 * (its name before "{"; NULL: none) into out, for failure messages. */
void metrics_lines(const char *body, const char *prefix, const char *key, char *out,
                   size_t len);

/* The value of sample `key` in body as a number (an integer or a decimal,
 * as a histogram's _sum), NAN when absent. */
double metrics_value(const char *body, const char *key);

/*
 * Checks every histogram of the exposition (the families "# TYPE NAME
 * histogram" names), each label set of it one histogram: its NAME_bucket
 * samples together, le rising and ending at "+Inf", their counts
 * cumulative (never falling); then NAME_sum and NAME_count with the same
 * labels, _count equal to the +Inf bucket, and _sum what the buckets make
 * possible: at least each bucket's count times the bound below it, at most
 * each one's count times its own bound (no top when +Inf has more than
 * the last bound).  Fails the test at the first miss; returns how many
 * histograms it checked.
 */
int metrics_check_histograms(const char *body);

/*
 * Runs "promtool check metrics" (Debian's prometheus package) on body,
 * Prometheus's own reader of the format and its lint: true when it found
 * nothing to say; false when promtool is not installed; fails the test,
 * with promtool's words, when it rejects body or lints it.
 */
bool metrics_promtool(const char *body);

/*
 * Waits up to ms for the sample written by fmt to be in [lo, hi] (a
 * sample not there counts as 0), scraping every 50 ms; fails the test,
 * showing the samples metrics_lines() picks with `prefix`, when it is
 * not.  Returns the value.
 */
__attribute__((format(printf, 6, 7))) long long
metrics_wait_between(struct echod *e, int ms, const char *prefix, long long lo,
                     long long hi, const char *fmt, ...);

#endif
