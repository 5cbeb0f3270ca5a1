/* The configuration file's text, walked before libconfig parses it. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-scan.h"

/* libconfig 1.5 numbers lines in an unsigned short. */
#define LINES_MAX 65535

/* The low 32 bits of v, read as a signed int the way libconfig stores them. */
static int low32(unsigned long long v)
{
    long long low = (long long)(v & 0xffffffffu);
    return (int)(low > INT_MAX ? low - 0x100000000LL : low);
}

/*
 * Reads the integer literal text[0..len) as libconfig would: its value
 * (saturated) and what libconfig 1.5 stores of it; false for floats and
 * L-suffixed literals, which libconfig reads whole.
 */
static bool literal_value(const char *text, size_t len, long long *value,
                          int *stored)
{
    char digits[24];
    const char *p = text, *end = text + len;
    bool negative = false, hex = false;
    unsigned long long v;
    size_t n;

    if (memchr(text, '.', len) != NULL || end[-1] == 'L')
        return false;
    if (*p == '-' || *p == '+')
        negative = *p++ == '-';
    if (end - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        hex = true;
        p += 2;
    } else if (memchr(p, 'e', (size_t)(end - p)) != NULL ||
               memchr(p, 'E', (size_t)(end - p)) != NULL) {
        return false;
    }
    while (end - p > 1 && *p == '0')
        p++;
    n = (size_t)(end - p);
    if (n >= sizeof digits || n > (hex ? 16u : 19u)) {
        v = ULLONG_MAX;
    } else {
        memcpy(digits, p, n);
        digits[n] = '\0';
        errno = 0;
        v = strtoull(digits, NULL, hex ? 16 : 10);
        if (errno == ERANGE)
            v = ULLONG_MAX;
    }
    if (hex) {
        *value = v > LLONG_MAX ? LLONG_MAX : (long long)v;
        *stored = low32(v);
    } else if (negative) {
        *value = v > (unsigned long long)LLONG_MAX ? LLONG_MIN : -(long long)v;
        *stored = low32((unsigned long long)*value);
    } else {
        *value = v > LLONG_MAX ? LLONG_MAX : (long long)v;
        *stored = low32((unsigned long long)*value);
    }
    return true;
}

/* Records the literal text[0..len) on `line`, after the setting name
 * name[0..name_len), when libconfig 1.5 would cut it; -ENOMEM. */
static int note_literal(struct config_scan *sc, const char *text, size_t len,
                        int line, const char *name, size_t name_len)
{
    struct wide_literal *w;
    long long value;
    int stored;

    if (!literal_value(text, len, &value, &stored) ||
        (value >= INT_MIN && value <= INT_MAX))
        return 0;
    w = realloc(sc->wide, (sc->nwide + 1) * sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    sc->wide = w;
    w += sc->nwide++;
    *w = (struct wide_literal){ .line = line, .name = name, .name_len = name_len,
                                .stored = stored, .value = value };
    if (len < sizeof w->text) {
        memcpy(w->text, text, len);
        w->text[len] = '\0';
    } else {
        snprintf(w->text, sizeof w->text, "%.*s...", (int)sizeof w->text - 4,
                 text);
    }
    return 0;
}

/* Whether c may continue a libconfig name ("max_connections", "a-b*"). */
static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*';
}

/* Sets where and why a file is refused; -1. */
static int refuse(struct config_scan *sc, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct config_scan *sc, int line, const char *fmt, ...)
{
    va_list ap;
    sc->line = line;
    va_start(ap, fmt);
    vsnprintf(sc->why, sizeof sc->why, fmt, ap);
    va_end(ap);
    return -1;
}

int config_scan(const char *text, size_t len, struct config_scan *out)
{
    const char *p = text, *end = text + len, *start, *nul = memchr(text, '\0', len);
    const char *name = "";
    size_t name_len = 0, lines = 0;
    int line = 1;

    *out = (struct config_scan){ .wide = NULL };
    if (nul != NULL) {
        for (const char *q = p; q < nul; q++)
            line += *q == '\n';
        return refuse(out, line, "syntax error: NUL byte");
    }
    for (const char *q = p; q < end; q++)
        lines += *q == '\n';
    if (lines + (len > 0 && end[-1] != '\n') > LINES_MAX)
        return refuse(out, 0, "more than %d lines, past what libconfig can number",
                      LINES_MAX);
    while (p < end) {
        char c = *p;
        if (c == '\n') {
            line++;
            p++;
        } else if (c == '#' || (c == '/' && end - p > 1 && p[1] == '/')) {
            while (p < end && *p != '\n')
                p++;
        } else if (c == '/' && end - p > 1 && p[1] == '*') {
            for (p += 2; p < end && !(*p == '*' && end - p > 1 && p[1] == '/');
                 p++)
                line += *p == '\n';
            p = end - p > 2 ? p + 2 : end;
        } else if (c == '"') {
            for (p++; p < end && *p != '"'; p++) {
                if (*p == '\\' && end - p > 1)
                    p++;
                line += *p == '\n';
            }
            p += p < end;
        } else if (c == '@') {
            if (end - p >= 8 && memcmp(p, "@include", 8) == 0)
                return refuse(out, line,
                              "@include is not supported: the configuration is one file");
            p++;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '*') {
            for (name = p; p < end && name_char(*p); p++)
                ;
            name_len = (size_t)(p - name);
        } else if ((c >= '0' && c <= '9') ||
                   ((c == '-' || c == '+' || c == '.') && end - p > 1 &&
                    ((p[1] >= '0' && p[1] <= '9') || p[1] == '.'))) {
            start = p++;
            while (p < end && (name_char(*p) || *p == '.' ||
                               ((*p == '+' || *p == '-') &&
                                (p[-1] == 'e' || p[-1] == 'E'))))
                p++;
            if (note_literal(out, start, (size_t)(p - start), line, name,
                             name_len) != 0)
                return -ENOMEM;
        } else {
            p++;
        }
    }
    return 0;
}

