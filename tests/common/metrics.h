/*
 * The daemon's metrics as a test reads them: GET /metrics on the metrics
 * listener (stats.listen on 127.0.0.1, port 0), the value of one sample in
 * the exposition, and bounded waits for a sample to reach a value.  A test
 * of the endpoint itself (its headers, its format) reads the answer whole
 * instead (test-metrics).
 */
#ifndef TESTS_COMMON_METRICS_H
#define TESTS_COMMON_METRICS_H

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
