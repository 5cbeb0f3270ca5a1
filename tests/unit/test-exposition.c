/* The pieces of the exposition: a histogram's buckets and its samples as
 * written (src/histogram.c), and metrics_render() with and without the
 * comment lines (src/metrics.c). */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "generation.h"
#include "histogram.h"
#include "metrics.h"

/* h's samples as histogram_write() writes them with label listener="x"
 * (malloc'd). */
static char *written(const struct histogram *h)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    assert_non_null(f);
    histogram_write(f, "t", "listener=\"x\"", h);
    assert_int_equal(fclose(f), 0);
    return buf;
}

/* A value on a bound is in that bound's bucket (le: less or equal), one
 * microsecond more in the next; past the last bound, +Inf only.  Buckets
 * are written cumulative, bounds shortest, the sum in seconds to the
 * microsecond, the count equal to +Inf. */
static void buckets_and_text(void **state)
{
    (void)state;
    struct histogram *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    histogram_init(h, &histogram_connect_bounds);
    static const uint64_t us[] = {0, 500, 501, 2500000, 5000000, 5000001};
    for (size_t i = 0; i < sizeof(us) / sizeof(us[0]); i++)
        histogram_observe(h, us[i]);
    char *text = written(h);
    assert_string_equal(text, "t_bucket{listener=\"x\",le=\"0.0005\"} 2\n"
                              "t_bucket{listener=\"x\",le=\"0.001\"} 3\n"
                              "t_bucket{listener=\"x\",le=\"0.0025\"} 3\n"
                              "t_bucket{listener=\"x\",le=\"0.005\"} 3\n"
                              "t_bucket{listener=\"x\",le=\"0.01\"} 3\n"
                              "t_bucket{listener=\"x\",le=\"0.025\"} 3\n"
                              "t_bucket{listener=\"x\",le=\"0.05\"} 3\n"
                              "t_bucket{listener=\"x\",le=\"0.1\"} 3\n"
                              "t_bucket{listener=\"x\",le=\"0.25\"} 3\n"
                              "t_bucket{listener=\"x\",le=\"0.5\"} 3\n"
                              "t_bucket{listener=\"x\",le=\"1\"} 3\n"
                              "t_bucket{listener=\"x\",le=\"2.5\"} 4\n"
                              "t_bucket{listener=\"x\",le=\"5\"} 5\n"
                              "t_bucket{listener=\"x\",le=\"+Inf\"} 6\n"
                              "t_sum{listener=\"x\"} 12.501002\n"
                              "t_count{listener=\"x\"} 6\n");
    free(text);
    free(h);
}

/* The duration histogram's bounds, as written, and an empty one. */
static void duration_bounds(void **state)
{
    (void)state;
    struct histogram *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    histogram_init(h, &histogram_duration_bounds);
    char *text = written(h);
    static const char *const les[] = {"0.01", "0.1", "0.5",  "1",    "5",   "10",
                                      "60",   "300", "1800", "3600", "+Inf"};
    const char *p = text;
    for (size_t i = 0; i < sizeof(les) / sizeof(les[0]); i++) {
        char want[64];
        snprintf(want, sizeof(want), "t_bucket{listener=\"x\",le=\"%s\"} 0\n", les[i]);
        assert_memory_equal(p, want, strlen(want));
        p += strlen(want);
    }
    assert_string_equal(p, "t_sum{listener=\"x\"} 0.000000\nt_count{listener=\"x\"} 0\n");
    free(text);
    free(h);
}

/* metrics_render() without comments is the text with them less its lines
 * that start with '#', and the samples are all there. */
static void render_with_and_without_comments(void **state)
{
    (void)state;
    static struct generation g;
    static struct daemon d;
    atomic_init(&g.refs, 1);
    atomic_init(&d.gen, &g);
    assert_int_equal(pthread_mutex_init(&d.gen_mu, NULL), 0);
    atomic_init(&d.reloads, 3);
    d.nworkers = 2;
    size_t with_len, without_len;
    char *with = metrics_render(&d, true, &with_len);
    char *without = metrics_render(&d, false, &without_len);
    assert_non_null(with);
    assert_non_null(without);
    assert_int_equal(strlen(with), with_len);
    assert_int_equal(strlen(without), without_len);
    assert_non_null(strstr(with, "# HELP mio_echod_reloads_total "));
    assert_non_null(strstr(with, "\nmio_echod_reloads_total 3\n"));
    char *want = malloc(with_len + 1);
    assert_non_null(want);
    size_t n = 0;
    for (const char *line = with; *line != '\0';) {
        size_t len = strcspn(line, "\n") + 1;
        if (line[0] != '#') {
            memcpy(want + n, line, len);
            n += len;
        }
        line += len;
    }
    want[n] = '\0';
    assert_string_equal(without, want);
    assert_non_null(strstr(without, "mio_echod_workers 2\n"));
    assert_int_equal(atomic_load(&g.refs), 1); /* its references given back */
    free(want);
    free(with);
    free(without);
    pthread_mutex_destroy(&d.gen_mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buckets_and_text),
        cmocka_unit_test(duration_bounds),
        cmocka_unit_test(render_with_and_without_comments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
