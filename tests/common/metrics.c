/*
 * The daemon's metrics as a test reads them (see metrics.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "echod.h"
#include "files.h"
#include "metrics.h"
#include "net.h"
#include "proc.h"

char *metrics_scrape(struct echod *e, int ms)
{
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    int fd = client4(echod_metrics_port(e));
    send_all(fd, req, sizeof(req) - 1);
    size_t cap = 65536, len = 0;
    char *buf = xmalloc(cap + 1);
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 100000; i++) {
        if (ms_now() >= until)
            test_fail("GET /metrics: no end within %d ms", ms);
        if (len == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n > 0)
            len += (size_t)n;
        else if (n == 0)
            break;
        else if (errno != EINTR)
            test_fail("GET /metrics: recv: %s", strerror(errno));
    }
    close(fd);
    buf[len] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0 || body == NULL)
        test_fail("GET /metrics: \"%.100s\"", buf);
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

const char *metrics_find(const char *body, const char *key)
{
    char want[320];
    snprintf(want, sizeof(want), "\n%.300s ", key);
    const char *at = strncmp(body, want + 1, strlen(want + 1)) == 0 ? body - 1
                                                                    : strstr(body, want);
    return at != NULL ? at + strlen(want) : NULL;
}

long long metrics_sample(const char *body, const char *key)
{
    const char *value = metrics_find(body, key);
    return value != NULL ? strtoll(value, NULL, 10) : -1;
}

void metrics_lines(const char *body, const char *prefix, const char *key, char *out,
                   size_t len)
{
    size_t used = 0, plen = strlen(prefix);
    size_t flen = key != NULL ? strcspn(key, "{") : 0;
    out[0] = '\0';
    for (const char *p = body; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if ((strncmp(p, prefix, plen) == 0 || (flen > 0 && strncmp(p, key, flen) == 0)) &&
            used + n + 2 < len) {
            memcpy(out + used, p, n);
            used += n;
            out[used++] = '\n';
            out[used] = '\0';
        }
        p = end != NULL ? end + 1 : NULL;
    }
    if (used == 0)
        snprintf(out, len, "(no %s* sample at all)\n", prefix);
}

long long metrics_wait_between(struct echod *e, int ms, const char *prefix, long long lo,
                               long long hi, const char *fmt, ...)
{
    char key[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof(key), fmt, ap);
    va_end(ap);
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 1000; i++) {
        char *body = metrics_scrape(e, ms);
        long long v = metrics_sample(body, key);
        long long seen = v < 0 ? 0 : v;
        if (seen >= lo && seen <= hi) {
            free(body);
            return seen;
        }
        if (ms_now() >= until) {
            char lines[8192];
            metrics_lines(body, prefix, key, lines, sizeof(lines));
            free(body);
            if (lo == hi)
                test_fail("%s is %lld%s, expected %lld; the samples:\n%s", key, seen,
                          v < 0 ? " (absent)" : "", lo, lines);
            test_fail("%s is %lld%s, expected %lld..%lld; the samples:\n%s", key, seen,
                      v < 0 ? " (absent)" : "", lo, hi, lines);
        }
        free(body);
        sleep_ms(50);
    }
    test_fail("%s: no answer in range after 1000 scrapes", key);
}

double metrics_value(const char *body, const char *key)
{
    const char *value = metrics_find(body, key);
    return value != NULL ? strtod(value, NULL) : NAN;
}

/* One histogram being read: the samples of one label set. */
struct hist_read {
    char name[128];           /* the family */
    char labels[512];         /* its labels but le, as written */
    int buckets;              /* _bucket samples read */
    double le;                /* the last bucket's bound */
    unsigned long long count; /* the last bucket's count */
    double lo, hi;            /* the bounds _sum must be within */
    bool summed;              /* _sum read */
    double sum;
};

/* Splits the labels of a sample (between its braces, at `p`) into what
 * comes before and after its le pair, without it (into `rest`), and le's
 * value (into `le`, "" without one); fails on malformed labels. */
static void split_le(const char *line, const char *p, char *rest, size_t restlen,
                     char *le, size_t lelen)
{
    const char *end = strrchr(p, '}');
    if (end == NULL)
        test_fail("exposition: no } in \"%s\"", line);
    le[0] = '\0';
    size_t n = 0;
    rest[0] = '\0';
    for (const char *q = p; q < end;) {
        const char *eq = strchr(q, '=');
        if (eq == NULL || eq > end || eq[1] != '"')
            test_fail("exposition: malformed labels in \"%s\"", line);
        const char *v = eq + 2, *ve = v;
        while (ve < end && *ve != '"')
            ve += *ve == '\\' ? 2 : 1;
        if (ve >= end)
            test_fail("exposition: malformed labels in \"%s\"", line);
        const char *next = ve + 1 < end && ve[1] == ',' ? ve + 2 : ve + 1;
        if (eq - q == 2 && strncmp(q, "le", 2) == 0) {
            snprintf(le, lelen, "%.*s", (int)(ve - v), v);
        } else {
            int w = snprintf(rest + n, restlen - n, "%s%.*s", n > 0 ? "," : "",
                             (int)(ve + 1 - q), q);
            if (w > 0 && (size_t)w < restlen - n)
                n += (size_t)w;
        }
        q = next;
    }
}

/* Ends histogram h once its _count is read: checks what it adds up to. */
static void hist_count(struct hist_read *h, const char *line, unsigned long long count)
{
    if (!h->summed)
        test_fail("exposition: %s{%s}: _count before _sum: \"%s\"", h->name, h->labels,
                  line);
    if (count != h->count)
        test_fail("exposition: %s{%s}: _count %llu, its +Inf bucket %llu", h->name,
                  h->labels, count, h->count);
    double slack = 1e-6 * (double)(count + 1);
    if (h->sum < 0 || h->sum < h->lo - slack || h->sum > h->hi + slack)
        test_fail("exposition: %s{%s}: _sum %.6f where the buckets make %.6f..%.6f",
                  h->name, h->labels, h->sum, h->lo, h->hi);
}

int metrics_check_histograms(const char *body)
{
    char family[128] = "";
    struct hist_read h = {.buckets = 0};
    bool open = false; /* h has buckets, and no _count yet */
    int checked = 0;
    for (const char *line = body; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);
        char text[1024];
        snprintf(text, sizeof(text), "%.*s", (int)len, line);
        line += len + (nl != NULL);
        char type[32];
        if (strncmp(text, "# ", 2) == 0) {
            if (open)
                test_fail("exposition: %s{%s} ends without its _count", h.name, h.labels);
            char name[128];
            family[0] = '\0';
            if (sscanf(text, "# TYPE %127s %31s", name, type) == 2 &&
                strcmp(type, "histogram") == 0)
                snprintf(family, sizeof(family), "%s", name);
            continue;
        }
        if (family[0] == '\0')
            continue;
        size_t fl = strlen(family);
        const char *suffix = text + fl;
        if (strncmp(text, family, fl) != 0)
            test_fail("exposition: \"%s\" among the samples of histogram %s", text,
                      family);
        const char *brace = strchr(suffix, '{'), *space = strrchr(text, ' ');
        if (brace == NULL || space == NULL)
            test_fail("exposition: histogram sample without labels: \"%s\"", text);
        char rest[512], le[64];
        split_le(text, brace + 1, rest, sizeof(rest), le, sizeof(le));
        char *end;
        double v = strtod(space + 1, &end);
        if (end == space + 1 || *end != '\0' || v < 0)
            test_fail("exposition: bad value in \"%s\"", text);
        if (strncmp(suffix, "_bucket{", 8) == 0) {
            if (le[0] == '\0')
                test_fail("exposition: a bucket without le: \"%s\"", text);
            if (open && strcmp(rest, h.labels) != 0)
                test_fail("exposition: %s{%s}: a bucket of %s{%s} before its _count",
                          family, h.labels, family, rest);
            if (!open) {
                h = (struct hist_read){.le = -INFINITY};
                snprintf(h.name, sizeof(h.name), "%s", family);
                snprintf(h.labels, sizeof(h.labels), "%s", rest);
                open = true;
            }
            if (h.buckets > 0 && isinf(h.le))
                test_fail("exposition: %s{%s}: a bucket after +Inf", family, rest);
            double bound = strcmp(le, "+Inf") == 0 ? INFINITY : strtod(le, &end);
            if (!isinf(bound) && (*end != '\0' || end == le))
                test_fail("exposition: le=\"%s\" is not a number: \"%s\"", le, text);
            if (bound <= h.le)
                test_fail("exposition: %s{%s}: le %s after %g", family, rest, le, h.le);
            unsigned long long count = strtoull(space + 1, NULL, 10);
            if (count < h.count)
                test_fail("exposition: %s{%s}: le=\"%s\" has %llu, less than %llu below "
                          "it: not cumulative",
                          family, rest, le, count, h.count);
            unsigned long long in = count - h.count;
            h.lo += (double)in * (h.buckets > 0 ? h.le : 0);
            h.hi = in == 0 ? h.hi : isinf(bound) ? INFINITY : h.hi + (double)in * bound;
            h.le = bound;
            h.count = count;
            h.buckets++;
        } else if (!open || !isinf(h.le) || strcmp(rest, h.labels) != 0 ||
                   le[0] != '\0') {
            test_fail("exposition: \"%s\" where the +Inf bucket, _sum or _count of "
                      "%s{%s} was due",
                      text, family, h.labels);
        } else if (strncmp(suffix, "_sum{", 5) == 0 && !h.summed) {
            h.summed = true;
            h.sum = v;
        } else if (strncmp(suffix, "_count{", 7) == 0) {
            hist_count(&h, text, strtoull(space + 1, NULL, 10));
            open = false;
            checked++;
        } else {
            test_fail("exposition: \"%s\" among the samples of histogram %s", text,
                      family);
        }
    }
    if (open)
        test_fail("exposition: %s{%s} ends without its _count", h.name, h.labels);
    return checked;
}

bool metrics_promtool(const char *body)
{
    char promtool[PATH_MAX];
    if (proc_find_program("promtool", promtool, sizeof(promtool)) == NULL)
        return false;
    char path[PATH_MAX], cmd[3 * PATH_MAX];
    snprintf(path, sizeof(path), "%s/exposition.txt", test_tmpdir());
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(body, f) < 0 || fclose(f) != 0)
        test_fail("cannot write %s: %s", path, strerror(errno));
    snprintf(cmd, sizeof(cmd), "exec '%s' check metrics < '%s'", promtool, path);
    char *const argv[] = {"/bin/sh", "-c", cmd, NULL};
    struct proc *p = proc_start(argv);
    int code = proc_wait_exit(p, 30000);
    char *out = proc_output(p);
    if (code != 0 || out[strspn(out, " \n")] != '\0')
        test_fail("promtool check metrics: exit %d, said:\n%s\non the exposition:\n%s",
                  code, out, body);
    free(out);
    return true;
}
