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
static bool literal_value(const char *text, size_t len, long long *value, int *stored)
{
    const char *p = text, *end = text + len;
    if (memchr(text, '.', len) != NULL || end[-1] == 'L')
        return false;
    bool negative = false;
    if (*p == '-' || *p == '+')
        negative = *p++ == '-';
    bool hex = false;
    if (end - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        hex = true;
        p += 2;
    } else if (memchr(p, 'e', (size_t)(end - p)) != NULL ||
               memchr(p, 'E', (size_t)(end - p)) != NULL) {
        return false;
    }
    while (end - p > 1 && *p == '0')
        p++;
    size_t n = (size_t)(end - p);
    char digits[24];
    unsigned long long v;
    if (n >= sizeof(digits) || n > (hex ? 16u : 19u)) {
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

/* A bracket open at the point of the scan. */
struct frame {
    bool list;     /* ( or [, else { */
    size_t number; /* a list's number, in the order lists open */
    size_t count;  /* its elements so far */
    bool expect;   /* the next token starts an element */
};

/* An element of a list, as met: elements of one list come in order, with
 * those of lists inside it in between. */
struct elem {
    size_t list;
    int line;
};

/* The scan's state besides what it reports. */
struct scanner {
    struct config_scan *out;
    struct frame *frames;
    size_t nframes, frames_cap;
    struct elem *elems;
    size_t nelems, elems_cap;
};

/* arr (of *cap items of `size` bytes, n used) with room for one more:
 * arr itself or a larger copy; NULL when out of memory (arr stays). */
static void *grow(void *arr, size_t *cap, size_t n, size_t size)
{
    size_t want = *cap == 0 ? 16 : 2 * *cap;
    if (n < *cap)
        return arr;
    void *grown = realloc(arr, want * size);
    if (grown != NULL)
        *cap = want;
    return grown;
}

/* The innermost list the scan is in, or NULL when it is in a group. */
static struct frame *in_list(struct scanner *sc)
{
    struct frame *top = sc->nframes > 0 ? &sc->frames[sc->nframes - 1] : NULL;
    return top != NULL && top->list ? top : NULL;
}

/* A token starts on `line`: it starts an element when it comes first after
 * a list's bracket or a comma.  0 or -ENOMEM. */
static int token(struct scanner *sc, int line)
{
    struct frame *f = in_list(sc);
    if (f == NULL || !f->expect)
        return 0;
    struct elem *elems = grow(sc->elems, &sc->elems_cap, sc->nelems, sizeof(*elems));
    if (elems == NULL)
        return -ENOMEM;
    sc->elems = elems;
    sc->elems[sc->nelems++] = (struct elem){.list = f->number, .line = line};
    f->count++;
    f->expect = false;
    return 0;
}

/* Opens a list (`list`) or a group.  0 or -ENOMEM. */
static int open_frame(struct scanner *sc, bool list)
{
    struct frame *frames = grow(sc->frames, &sc->frames_cap, sc->nframes,
                                sizeof(*frames));
    if (frames == NULL)
        return -ENOMEM;
    sc->frames = frames;
    sc->frames[sc->nframes++] = (struct frame){
        .list = list,
        .number = list ? sc->out->nlists++ : 0,
        .expect = list,
    };
    return 0;
}

/* Sorts the elements met into out->lists and out->elem_lines.  -ENOMEM. */
static int gather_lists(struct scanner *sc)
{
    struct config_scan *out = sc->out;
    if (out->nlists == 0)
        return 0;
    out->lists = calloc(out->nlists, sizeof(*out->lists));
    out->elem_lines = calloc(sc->nelems + 1, sizeof(*out->elem_lines));
    if (out->lists == NULL || out->elem_lines == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < sc->nelems; i++)
        out->lists[sc->elems[i].list].count++;
    size_t next = 0;
    for (size_t l = 0; l < out->nlists; l++) {
        out->lists[l].first = next;
        next += out->lists[l].count;
        out->lists[l].count = 0;
    }
    for (size_t i = 0; i < sc->nelems; i++) {
        struct scan_list *l = &out->lists[sc->elems[i].list];
        out->elem_lines[l->first + l->count++] = sc->elems[i].line;
    }
    return 0;
}

/* Records the literal text[0..len) on `line`, after the setting name
 * name[0..name_len), when libconfig 1.5 would cut it; -ENOMEM.  A literal
 * that is an element of a list is recorded as that element. */
static int note_literal(struct scanner *scan, const char *text, size_t len, int line,
                        const char *name, size_t name_len)
{
    struct config_scan *sc = scan->out;
    struct frame *f = in_list(scan);
    long long value;
    int stored;
    if (!literal_value(text, len, &value, &stored) ||
        (value >= INT_MIN && value <= INT_MAX))
        return 0;
    struct wide_literal *w = realloc(sc->wide, (sc->nwide + 1) * sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    sc->wide = w;
    w += sc->nwide++;
    *w = (struct wide_literal){.line = line,
                               .name = name,
                               .name_len = name_len,
                               .list = f != NULL ? (long)f->number : -1,
                               .index = f != NULL ? (long)f->count - 1 : -1,
                               .stored = stored,
                               .value = value};
    if (len < sizeof(w->text)) {
        memcpy(w->text, text, len);
        w->text[len] = '\0';
    } else {
        snprintf(w->text, sizeof(w->text), "%.*s...", (int)sizeof(w->text) - 4, text);
    }
    return 0;
}

/* Whether c may continue a libconfig name ("max_connections", "a-b*"). */
static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '*';
}

/* Sets where and why a file is refused; -EINVAL. */
static int refuse(struct config_scan *sc, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct config_scan *sc, int line, const char *fmt, ...)
{
    sc->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sc->why, sizeof(sc->why), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Walks text[0..end) as libconfig's scanner does; config_scan() says the
 * rest. */
static int scan(struct scanner *sc, const char *text, const char *end)
{
    const char *p = text, *start, *name = "";
    size_t name_len = 0;
    int line = 1;
    while (p < end) {
        char c = *p;
        if (c == '\n') {
            line++;
            p++;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            p++;
        } else if (c == '#' || (c == '/' && end - p > 1 && p[1] == '/')) {
            while (p < end && *p != '\n')
                p++;
        } else if (c == '/' && end - p > 1 && p[1] == '*') {
            for (p += 2; p < end && !(*p == '*' && end - p > 1 && p[1] == '/'); p++)
                line += *p == '\n';
            p = end - p > 2 ? p + 2 : end;
        } else if (c == ']' || c == ')' || c == '}' || c == ',') {
            /* The ends of elements, never the start of one. */
            struct frame *f = in_list(sc);
            if (c == ',' && f != NULL)
                f->expect = true;
            else if (c != ',' && sc->nframes > 0)
                sc->nframes--;
            p++;
        } else if (token(sc, line) != 0) {
            return -ENOMEM;
        } else if (c == '"') {
            for (p++; p < end && *p != '"'; p++) {
                if (*p == '\\' && end - p > 1)
                    p++;
                line += *p == '\n';
            }
            p += p < end;
        } else if (c == '@') {
            if (end - p >= 8 && memcmp(p, "@include", 8) == 0)
                return refuse(sc->out, line,
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
            while (p < end &&
                   (name_char(*p) || *p == '.' ||
                    ((*p == '+' || *p == '-') && (p[-1] == 'e' || p[-1] == 'E'))))
                p++;
            if (note_literal(sc, start, (size_t)(p - start), line, name, name_len) != 0)
                return -ENOMEM;
        } else {
            /* Other punctuation, counted by token() above. */
            if ((c == '[' || c == '(' || c == '{') && open_frame(sc, c != '{') != 0)
                return -ENOMEM;
            p++;
        }
    }
    return 0;
}

int config_scan(const char *text, size_t len, struct config_scan *out)
{
    const char *end = text + len, *nul = memchr(text, '\0', len);
    struct scanner sc = {.out = out};
    *out = (struct config_scan){.wide = NULL};
    if (nul != NULL) {
        int line = 1;
        for (const char *q = text; q < nul; q++)
            line += *q == '\n';
        return refuse(out, line, "syntax error: NUL byte");
    }
    size_t lines = 0;
    for (const char *q = text; q < end; q++)
        lines += *q == '\n';
    if (lines + (len > 0 && end[-1] != '\n') > LINES_MAX)
        return refuse(out, 0, "more than %d lines, past what libconfig can number",
                      LINES_MAX);
    int rc = scan(&sc, text, end);
    if (rc == 0)
        rc = gather_lists(&sc);
    free(sc.frames);
    free(sc.elems);
    return rc;
}

void config_scan_free(struct config_scan *sc)
{
    free(sc->wide);
    free(sc->lists);
    free(sc->elem_lines);
    *sc = (struct config_scan){.wide = NULL};
}
