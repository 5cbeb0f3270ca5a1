/*
 * The daemon's metrics as a test reads them (see metrics.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "echod.h"
#include "metrics.h"
#include "net.h"

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
