/*
 * Loading mio-echod's configuration: libconfig parses the file, then every
 * setting is checked and copied into struct config.  The first problem
 * found is reported as one line, and nothing of the file is kept.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "config-scan.h"
#include "pipe.h"
#include "log.h"
#include "process.h"

/* A bound on the file, so that a mistaken path (/dev/zero) cannot eat
 * memory. */
#define FILE_MAX (16 * 1024 * 1024)

/* Listener names appear in every log line of their connections. */
#define NAME_MAX_LEN 64
#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"

/* A value quoted in a message is cut after this many bytes; each byte may
 * take four once escaped. */
#define QUOTE_MAX 64
#define QUOTE_BUF (QUOTE_MAX * 4 + 8)

/* The longest key a typo is looked for in. */
#define KEY_MAX 32

const char *const config_known_keys[] = {
    "workers",
    "max_connections",
    "shutdown_timeout",
    "user",
    "pidfile",
    "log",
    "log.target",
    "log.level",
    "log.access",
    "listeners",
    "listeners.name",
    "listeners.listen",
    "listeners.mode",
    "listeners.buffer_size",
    "listeners.idle_timeout",
    "listeners.max_connections",
    "listeners.max_per_source",
    "listeners.allow",
    "listeners.deny",
    "listeners.accept_proxy",
    "listeners.proxy_timeout",
    "listeners.splice",
    "listeners.upstreams",
    "listeners.balance",
    "listeners.connect_timeout",
    "listeners.retries",
    "listeners.fail_timeout",
    "listeners.send_proxy",
    "stats",
    "stats.listen",
    "stats.allow",
    "stats.deny",
    NULL,
};

static const char *const proxy_only_keys[] = {
    "upstreams", "balance", "connect_timeout", "retries", "fail_timeout",
    "send_proxy", NULL,
};

static const char *const mode_names[] = { "echo", "proxy", NULL };
static const char *const balance_names[] = {
    "round-robin", "least-connections", "source-hash", NULL,
};
static const char *const send_proxy_names[] = { "none", "v1", "v2", NULL };
static const char *const target_names[] = { "auto", "stderr", "syslog", NULL };
static const char *const level_names[] = {
    "error", "warning", "notice", "info", "debug", NULL,
};
static const int level_values[] = {
    LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG,
};

/* A listen address already taken, for the overlap checks. */
struct taken {
    const addr_t *addr;
    const char *text;
    const char *listener;
    int line;
};

struct loader {
    const char *path; /* the file read */
    const char *name; /* the file as messages name it */
    char *err;
    size_t errlen;
    struct config_scan scan;
    struct taken *taken;
    size_t ntaken, taken_cap;
};

/*
 * The length of the valid UTF-8 sequence that s starts with (1 for ASCII,
 * including NUL), or 0 when its first byte starts none: no overlong forms,
 * no surrogates, nothing past U+10FFFF (RFC 3629).
 */
static size_t utf8_len(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;

    if (u[0] < 0x80)
        return 1;
    if (u[0] >= 0xc2 && u[0] <= 0xdf)
        n = 2;
    else if (u[0] >= 0xe0 && u[0] <= 0xef)
        n = 3;
    else if (u[0] >= 0xf0 && u[0] <= 0xf4)
        n = 4;
    else
        return 0;
    if (u[0] == 0xe0)
        lo = 0xa0;
    else if (u[0] == 0xed)
        hi = 0x9f;
    else if (u[0] == 0xf0)
        lo = 0x90;
    else if (u[0] == 0xf4)
        hi = 0x8f;
    if (u[1] < lo || u[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (u[i] < 0x80 || u[i] > 0xbf)
            return 0;
    return n;
}

/*
 * Copies the message s into out[0..len), cut to fit, so that it is one
 * line of valid UTF-8 whatever the text it quotes: control bytes become
 * "?", bytes that are not UTF-8 "\xNN"; a character or an escape is never
 * cut in two.
 */
static void clean_message(char *out, size_t len, const char *s)
{
    size_t o = 0;

    while (*s != '\0') {
        size_t n = utf8_len(s);
        unsigned char c = (unsigned char)*s;
        char esc[5];
        const char *put = s;
        size_t put_len = n;

        if (n == 0) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            put = esc;
            put_len = 4;
            n = 1;
        } else if (c < 0x20 || c == 0x7f) {
            put = "?";
        }
        if (o + put_len >= len)
            break;
        memcpy(out + o, put, put_len);
        o += put_len;
        s += n;
    }
    out[o] = '\0';
}

/*
 * Writes "FILE[:LINE]: [SCOPE[.KEY]: ]message" into the caller's buffer
 * (the line is left out when 0, the setting when scope is "" and key NULL)
 * and returns -1.
 */
__attribute__((format(printf, 5, 6)))
static int fail(struct loader *ld, int line, const char *scope, const char *key,
                const char *fmt, ...)
{
    char msg[1024], where[16] = "", setting[160] = "", all[1536];
    va_list ap;

    if (ld->err == NULL || ld->errlen == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(where, sizeof where, ":%d", line);
    if (key != NULL)
        snprintf(setting, sizeof setting, "%s%s%s: ", scope,
                 scope[0] != '\0' ? "." : "", key);
    else if (scope[0] != '\0')
        snprintf(setting, sizeof setting, "%s: ", scope);
    snprintf(all, sizeof all, "%s%s: %s%s", ld->name, where, setting, msg);
    clean_message(ld->err, ld->errlen, all);
    return -1;
}

/* The one message for a failed allocation. */
static int out_of_memory(struct loader *ld)
{
    return fail(ld, 0, "", NULL, "out of memory");
}

/* Writes s into buf double-quoted, with C escapes for quotes, backslashes,
 * control bytes and bytes that are not UTF-8, cut after QUOTE_MAX bytes
 * (before a character that would cross it); returns buf. */
static const char *quote(char buf[QUOTE_BUF], const char *s)
{
    size_t o = 0, i = 0;

    buf[o++] = '"';
    while (i < QUOTE_MAX && s[i] != '\0') {
        unsigned char c = (unsigned char)s[i];
        size_t n = utf8_len(s + i);
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else if (c == '\t') {
            buf[o++] = '\\';
            buf[o++] = 't';
        } else if (c < 0x20 || c == 0x7f || n == 0) {
            o += (size_t)snprintf(buf + o, 5, "\\x%02x", c);
        } else if (i + n > QUOTE_MAX) {
            break;
        } else {
            memcpy(buf + o, s + i, n);
            o += n;
            i += n;
            continue;
        }
        i++;
    }
    buf[o++] = '"';
    if (s[i] != '\0') {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

/*
 * What the loader knows of a setting besides libconfig, attached to it as
 * its hook (config_setting_set_hook()) by note_settings() for the time of
 * the load.
 */
struct setting_info {
    int line;  /* where it starts */
    long list; /* a list's number in the scan (config_scan.lists), else -1 */
};

/* The line a setting starts on. */
static int line_of(const config_setting_t *s)
{
    const struct setting_info *info = config_setting_get_hook(s);

    return info != NULL ? info->line : (int)config_setting_source_line(s);
}

/* Whether a setting is a list or an array. */
static bool is_sequence(const config_setting_t *s)
{
    return config_setting_is_list(s) || config_setting_is_array(s);
}

/* A group or list being walked by note_settings(). */
struct walk {
    config_setting_t *s;
    int next;                  /* its next member or element */
    const struct scan_list *l; /* a list's elements as the scan saw them */
};

/*
 * Walks root and every setting in it, depth first: the order in which the
 * scan numbers lists.  With info, fills info[0..) and hooks each entry to
 * its setting; an element of a list gets the line the scan saw it start
 * on, not the line of the token after it that libconfig 1.5 records,
 * unless the scan and libconfig disagree on the list (then libconfig's
 * line stays).  Without, only counts.  The number of settings, or 0 when
 * memory ran out.  No recursion: a file may nest lists deeply.
 */
static size_t note_settings(const struct loader *ld, config_setting_t *root,
                            struct setting_info *info)
{
    struct walk *stack = NULL;
    size_t depth = 0, cap = 0, used = 0, lists = 0;
    config_setting_t *s = root;
    int line = (int)config_setting_source_line(root);

    for (;;) {
        const struct scan_list *l = NULL;
        if (is_sequence(s)) {
            if (lists < ld->scan.nlists &&
                ld->scan.lists[lists].count == (size_t)config_setting_length(s))
                l = &ld->scan.lists[lists];
            lists++;
        }
        if (info != NULL) {
            info[used] = (struct setting_info){
                .line = line, .list = is_sequence(s) ? (long)lists - 1 : -1,
            };
            config_setting_set_hook(s, &info[used]);
        }
        used++;
        if (config_setting_is_aggregate(s)) {
            if (depth == cap) {
                size_t want = cap == 0 ? 16 : 2 * cap;
                struct walk *grown = realloc(stack, want * sizeof *stack);
                if (grown == NULL) {
                    free(stack);
                    return 0;
                }
                stack = grown;
                cap = want;
            }
            stack[depth++] = (struct walk){ .s = s, .l = l };
        }
        while (depth > 0 &&
               stack[depth - 1].next == config_setting_length(stack[depth - 1].s))
            depth--;
        if (depth == 0)
            break;
        struct walk *w = &stack[depth - 1];
        s = config_setting_get_elem(w->s, (unsigned)w->next);
        line = w->l != NULL ? ld->scan.elem_lines[w->l->first + (size_t)w->next]
                            : (int)config_setting_source_line(s);
        w->next++;
    }
    free(stack);
    return used;
}

/* Whether a setting holds an integer (libconfig has two types of them). */
static bool is_integer(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT ||
           config_setting_type(s) == CONFIG_TYPE_INT64;
}

/* ---- integer literals libconfig 1.5 cuts to 32 bits ---------------------- */

/*
 * The wide literal libconfig 1.5 cut into the integer setting s, if any:
 * for an element of a list, the one the scan saw as that element; for a
 * setting, the first unclaimed one written after s's name that libconfig
 * stored as s's value, between s's line and the next setting's.
 */
static struct wide_literal *wide_literal_of(struct loader *ld,
                                            const config_setting_t *s)
{
    const config_setting_t *parent = config_setting_parent(s);
    const struct setting_info *pinfo =
        parent != NULL ? config_setting_get_hook(parent) : NULL;
    const char *name = config_setting_name(s);
    struct wide_literal *best = NULL;
    int first = line_of(s), last = INT_MAX, stored, i;
    long list = -1, index = -1;

    if (config_setting_type(s) != CONFIG_TYPE_INT)
        return NULL;
    stored = config_setting_get_int(s);
    i = config_setting_index(s);
    if (parent != NULL && is_sequence(parent)) {
        if (pinfo == NULL)
            return NULL;
        list = pinfo->list;
        index = i;
        last = first;
    } else if (parent != NULL && i >= 0 && i + 1 < config_setting_length(parent)) {
        last = line_of(config_setting_get_elem(parent, (unsigned)i + 1));
    }
    for (size_t k = 0; k < ld->scan.nwide; k++) {
        struct wide_literal *w = &ld->scan.wide[k];
        if (w->claimed || w->stored != stored || w->line < first ||
            w->line > last || w->list != list || w->index != index)
            continue;
        if (list < 0 && (name == NULL || strlen(name) != w->name_len ||
                         memcmp(name, w->name, w->name_len) != 0))
            continue;
        if (best == NULL || w->line < best->line)
            best = w;
    }
    return best;
}

/* Refuses a wide literal no setting claimed: a safety net, as every integer
 * setting reads through integer_value(). */
static int check_wide_claimed(struct loader *ld)
{
    for (size_t k = 0; k < ld->scan.nwide; k++)
        if (!ld->scan.wide[k].claimed)
            return fail(ld, ld->scan.wide[k].line, "", NULL,
                        "integer %s out of range %d-%d", ld->scan.wide[k].text,
                        INT_MIN, INT_MAX);
    return 0;
}

/* ---- reading one setting ------------------------------------------------- */

/* An integer setting's value, and its text as written for messages; a
 * literal libconfig 1.5 cut to 32 bits is read whole. */
static long long integer_value(struct loader *ld, const config_setting_t *s,
                               char text[32])
{
    struct wide_literal *w = wide_literal_of(ld, s);
    long long v;

    if (w != NULL) {
        w->claimed = true;
        snprintf(text, 32, "%s", w->text);
        return w->value;
    }
    if (config_setting_type(s) == CONFIG_TYPE_INT64)
        v = config_setting_get_int64(s);
    else
        v = config_setting_get_int(s);
    snprintf(text, 32, "%lld", v);
    return v;
}

/* What a setting holds, for "expected X, got Y": its value when it is a
 * scalar, its kind otherwise. */
static const char *describe(struct loader *ld, const config_setting_t *s,
                            char buf[QUOTE_BUF])
{
    char num[32];

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        integer_value(ld, s, num);
        snprintf(buf, QUOTE_BUF, "%s", num);
        return buf;
    case CONFIG_TYPE_FLOAT:
        snprintf(buf, QUOTE_BUF, "%.15g", config_setting_get_float(s));
        /* 2.0 prints as "2"; buf then holds a sign and 15 digits at most,
         * so ".0" fits. */
        if (strpbrk(buf, ".en") == NULL)
            strcat(buf, ".0"); /* NOLINT(clang-analyzer-security.insecureAPI.strcpy) */
        return buf;
    case CONFIG_TYPE_STRING:
        return quote(buf, config_setting_get_string(s));
    case CONFIG_TYPE_BOOL:
        return config_setting_get_bool(s) ? "true" : "false";
    case CONFIG_TYPE_GROUP:
        return "a group { ... }";
    case CONFIG_TYPE_ARRAY:
        return "an array [ ... ]";
    case CONFIG_TYPE_LIST:
        return "a list ( ... )";
    default:
        return "nothing";
    }
}

/* Reads the integer setting `key` of g into *out when it is present,
 * refusing values outside lo..hi. */
static int get_count(struct loader *ld, const config_setting_t *g,
                     const char *scope, const char *key, long long lo,
                     long long hi, const char *unit, unsigned *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    char got[QUOTE_BUF], text[32];
    long long v;

    if (s == NULL)
        return 0;
    if (!is_integer(s))
        return fail(ld, line_of(s), scope, key, "expected an integer, got %s",
                    describe(ld, s, got));
    v = integer_value(ld, s, text);
    if (v < lo || v > hi)
        return fail(ld, line_of(s), scope, key, "%s out of range %lld-%lld%s%s",
                    text, lo, hi, unit[0] != '\0' ? " " : "", unit);
    *out = (unsigned)v;
    return 0;
}

/* Milliseconds in s seconds (0 to a few days), rounded up, so that a
 * positive time never becomes 0; nanoseconds first absorb the binary
 * error of decimal fractions (1.1 s is 1100 ms, not 1101). */
static int64_t seconds_to_ms(double s)
{
    int64_t ns = (int64_t)(s * 1e9 + 0.5);
    int64_t ms = (ns + 999999) / 1000000;

    return ms == 0 && s > 0 ? 1 : ms;
}

/*
 * Reads the seconds setting `key` of g (an integer or a float) into *ms
 * when it is present.  It must be finite, at least 0 (more than 0 when
 * `positive`) and at most max.
 */
static int get_seconds(struct loader *ld, const config_setting_t *g,
                       const char *scope, const char *key, double max,
                       bool positive, int64_t *ms)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    char got[QUOTE_BUF], text[32];
    double v;

    if (s == NULL)
        return 0;
    if (is_integer(s)) {
        v = (double)integer_value(ld, s, text);
    } else if (config_setting_type(s) == CONFIG_TYPE_FLOAT) {
        v = config_setting_get_float(s);
        snprintf(text, sizeof text, "%s", describe(ld, s, got));
    } else {
        return fail(ld, line_of(s), scope, key,
                    "expected a number of seconds, got %s", describe(ld, s, got));
    }
    if (!isfinite(v))
        return fail(ld, line_of(s), scope, key,
                    "expected a finite number of seconds, got %s", text);
    if (positive && !(v > 0 && v <= max))
        return fail(ld, line_of(s), scope, key,
                    "%s out of range: expected more than 0 and at most %g seconds",
                    text, max);
    if (!(v >= 0 && v <= max))
        return fail(ld, line_of(s), scope, key, "%s out of range 0-%g seconds",
                    text, max);
    *ms = seconds_to_ms(v);
    return 0;
}

/* Reads the boolean setting `key` of g into *out when it is present. */
static int get_bool(struct loader *ld, const config_setting_t *g,
                    const char *scope, const char *key, bool *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    char got[QUOTE_BUF];

    if (s == NULL)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return fail(ld, line_of(s), scope, key, "expected true or false, got %s",
                    describe(ld, s, got));
    *out = config_setting_get_bool(s) != 0;
    return 0;
}

/* Copies the string setting `key` of g over *out when it is present. */
static int get_string(struct loader *ld, const config_setting_t *g,
                      const char *scope, const char *key, char **out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    char got[QUOTE_BUF], *copy;

    if (s == NULL)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return fail(ld, line_of(s), scope, key, "expected a string, got %s",
                    describe(ld, s, got));
    copy = strdup(config_setting_get_string(s));
    if (copy == NULL)
        return out_of_memory(ld);
    free(*out);
    *out = copy;
    return 0;
}

/* Reads the setting `key` of g, one of names[], into *out (its index) when
 * it is present. */
static int get_choice(struct loader *ld, const config_setting_t *g,
                      const char *scope, const char *key,
                      const char *const names[], int *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    char expected[160] = "", got[QUOTE_BUF];
    int n = 0;

    if (s == NULL)
        return 0;
    if (config_setting_type(s) == CONFIG_TYPE_STRING) {
        for (int i = 0; names[i] != NULL; i++) {
            if (strcmp(config_setting_get_string(s), names[i]) == 0) {
                *out = i;
                return 0;
            }
        }
    }
    while (names[n] != NULL)
        n++;
    for (int i = 0; i < n; i++) {
        size_t used = strlen(expected);
        snprintf(expected + used, sizeof expected - used, "%s%s",
                 i == 0 ? "" : i == n - 1 ? " or " : ", ", names[i]);
    }
    return fail(ld, line_of(s), scope, key, "expected %s, got %s", expected,
                describe(ld, s, got));
}

/*
 * Checks that the setting `key` of g, when present, is a list (or array)
 * of strings; *out gets it, or NULL when it is absent.
 */
static int get_strings(struct loader *ld, const config_setting_t *g,
                       const char *scope, const char *key,
                       const config_setting_t **out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    char got[QUOTE_BUF], elem[48];

    *out = s;
    if (s == NULL)
        return 0;
    if (config_setting_type(s) == CONFIG_TYPE_STRING)
        return fail(ld, line_of(s), scope, key,
                    "expected a list of strings, got %s (write [ %s ])",
                    describe(ld, s, got), got);
    if (!is_sequence(s))
        return fail(ld, line_of(s), scope, key,
                    "expected a list of strings, got %s", describe(ld, s, got));
    for (int i = 0; i < config_setting_length(s); i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            snprintf(elem, sizeof elem, "%s.[%d]", key, i);
            return fail(ld, line_of(e), scope, elem, "expected a string, got %s",
                        describe(ld, e, got));
        }
    }
    return 0;
}

/* ---- unknown settings ---------------------------------------------------- */

/* The optimal string alignment distance between a and b (insertions,
 * deletions, substitutions, swaps of neighbours); SIZE_MAX past KEY_MAX. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t rows[3][KEY_MAX + 1], *prev2 = rows[0], *prev = rows[1], *cur = rows[2];

    if (la > KEY_MAX || lb > KEY_MAX)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t d = prev[j - 1] + cost;
            if (prev[j] + 1 < d)
                d = prev[j] + 1;
            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < d)
                d = prev2[j - 2] + 1;
            cur[j] = d;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

/* The key of config_known_keys[i] within `level` ("" for the top, "log."
 * or "listeners."), or NULL when it belongs to another level. */
static const char *key_at_level(size_t i, const char *level)
{
    const char *k = config_known_keys[i];
    size_t n = strlen(level);

    if (strncmp(k, level, n) != 0 || strchr(k + n, '.') != NULL)
        return NULL;
    return k + n;
}

/*
 * Checks that every setting of group g is a key of `level`.  An unknown
 * one is named with the nearest known key when it looks like a typo of
 * it, else with the list of known keys.
 */
static int check_keys(struct loader *ld, const config_setting_t *g,
                      const char *scope, const char *level)
{
    for (int m = 0; m < config_setting_length(g); m++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)m);
        const char *name = config_setting_name(s), *best = NULL, *k;
        size_t best_d = SIZE_MAX;
        char known[512] = "";
        bool found = false;

        for (size_t i = 0; config_known_keys[i] != NULL && !found; i++) {
            if ((k = key_at_level(i, level)) == NULL)
                continue;
            size_t d = edit_distance(name, k), used = strlen(known);
            found = d == 0;
            if (d < best_d) {
                best_d = d;
                best = k;
            }
            snprintf(known + used, sizeof known - used, "%s%s",
                     used > 0 ? ", " : "", k);
        }
        if (found)
            continue;
        if (best != NULL && best_d <= 2 && best_d + 1 < strlen(best))
            return fail(ld, line_of(s), scope, name,
                        "unknown setting (did you mean \"%s\"?)", best);
        return fail(ld, line_of(s), scope, name, "unknown setting (known: %s)",
                    known);
    }
    return 0;
}

/* ---- listeners ----------------------------------------------------------- */

/* Frees what a listener holds. */
static void free_listener(struct listener_config *lc)
{
    free(lc->name);
    for (size_t i = 0; i < lc->nlisten; i++)
        free(lc->listen[i].text);
    free(lc->listen);
    free(lc->allow);
    free(lc->deny);
    for (size_t i = 0; i < lc->nupstreams; i++) {
        free(lc->upstreams[i].text);
        free(lc->upstreams[i].addrs);
    }
    free(lc->upstreams);
}

/*
 * Checks the listener name setting s and copies it into lc; scope is the
 * listener's index path.  Names are unique among listeners[0..i).
 */
static int load_name(struct loader *ld, const config_setting_t *s,
                     const char *scope, const struct config *cfg, size_t i,
                     struct listener_config *lc)
{
    const char *name;
    char got[QUOTE_BUF];

    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return fail(ld, line_of(s), scope, "name", "expected a string, got %s",
                    describe(ld, s, got));
    name = config_setting_get_string(s);
    if (name[0] == '\0' || strlen(name) > NAME_MAX_LEN ||
        strspn(name, NAME_CHARS) != strlen(name))
        return fail(ld, line_of(s), scope, "name",
                    "expected 1-%d letters, digits, \"_\", \".\" or \"-\", got %s",
                    NAME_MAX_LEN, quote(got, name));
    /* listeners[0..i) were loaded, so each has a name; the analyzer does
     * not follow the variadic fail() and thinks it may return 0. */
    for (size_t j = 0; j < i; j++)
        /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): above */
        if (strcmp(cfg->listeners[j].name, name) == 0)
            return fail(ld, line_of(s), scope, "name",
                        "duplicate listener name \"%s\" (first at line %d)",
                        name, cfg->listeners[j].line);
    lc->name = strdup(name);
    return lc->name == NULL ? out_of_memory(ld) : 0;
}

/* Remembers a listen address for the overlap checks of the ones after it. */
static int take(struct loader *ld, const struct config_addr *a,
                const char *listener, int line)
{
    if (ld->ntaken == ld->taken_cap) {
        size_t cap = ld->taken_cap == 0 ? 8 : 2 * ld->taken_cap;
        struct taken *t = realloc(ld->taken, cap * sizeof *t);
        if (t == NULL)
            return out_of_memory(ld);
        ld->taken = t;
        ld->taken_cap = cap;
    }
    ld->taken[ld->ntaken++] = (struct taken){ &a->addr, a->text, listener, line };
    return 0;
}

/* Refuses the address a, written `text` at `line`, when it overlaps a
 * listen address taken before. */
static int refuse_taken(struct loader *ld, const addr_t *a, const char *text,
                        int line, const char *scope, const char *key)
{
    for (size_t t = 0; t < ld->ntaken; t++) {
        const struct taken *o = &ld->taken[t];
        if (!addr_overlaps(a, o->addr))
            continue;
        if (addr_equal(a, o->addr) && strcmp(text, o->text) == 0)
            return fail(ld, line, scope, key,
                        "%s is already used by listener \"%s\" (line %d)",
                        text, o->listener, o->line);
        return fail(ld, line, scope, key,
                    "%s overlaps %s of listener \"%s\" (line %d)", text,
                    o->text, o->listener, o->line);
    }
    return 0;
}

/*
 * Refuses the listen address a, written `text` at `line`, when it is a
 * v4-mapped IPv6 address (::ffff:a.b.c.d): the daemon's IPv6 sockets are
 * IPv6-only, so binding one fails ("Invalid argument"), and it would
 * stand for the IPv4 address that another listen address may hold.
 */
static int refuse_v4_mapped(struct loader *ld, const addr_t *a, const char *text,
                            int line, const char *scope, const char *key)
{
    char q[QUOTE_BUF], v4[INET_ADDRSTRLEN];

    if (a->u.sa.sa_family != AF_INET6 ||
        !IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr))
        return 0;
    inet_ntop(AF_INET, &a->u.in6.sin6_addr.s6_addr[12], v4, sizeof v4);
    return fail(ld, line, scope, key,
                "%s is a v4-mapped IPv6 address, which the daemon's IPv6-only "
                "sockets cannot listen on; write it as \"%s:%u\"",
                quote(q, text), v4, (unsigned)ntohs(a->u.in6.sin6_port));
}

/* Parses the listen addresses of lc, refusing any that overlaps an address
 * taken before, by this listener or another. */
static int load_listen(struct loader *ld, const config_setting_t *g,
                       const char *scope, struct listener_config *lc)
{
    const config_setting_t *list;
    char aerr[256], key[48], q[QUOTE_BUF];
    int n;

    if (get_strings(ld, g, scope, "listen", &list) != 0)
        return -1;
    if (list == NULL)
        return fail(ld, line_of(g), scope, "listen",
                    "missing; expected a list of addresses like [ \"127.0.0.1:7007\" ]");
    n = config_setting_length(list);
    if (n == 0)
        return fail(ld, line_of(list), scope, "listen",
                    "empty; expected at least one address");
    lc->listen = calloc(2 * (size_t)n, sizeof *lc->listen);
    if (lc->listen == NULL)
        return out_of_memory(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *text = config_setting_get_string(e);
        addr_t parsed[2];
        size_t count;

        snprintf(key, sizeof key, "listen.[%d]", i);
        if (addr_parse(text, ADDR_LISTEN, parsed, 2, &count, aerr, sizeof aerr) != 0)
            return fail(ld, line_of(e), scope, key, "invalid address %s: %s",
                        quote(q, text), aerr);
        const char *what = parsed[0].u.sa.sa_family == AF_UNIX
                               ? addr_unix_path_problem(parsed[0].u.un.sun_path)
                               : NULL;
        if (what != NULL)
            return fail(ld, line_of(e), scope, key,
                        "%s: %s is %s, not a socket; only a stale socket is "
                        "replaced: remove it or choose another path",
                        quote(q, text), parsed[0].u.un.sun_path, what);
        if (refuse_v4_mapped(ld, &parsed[0], text, line_of(e), scope, key) != 0)
            return -1;
        for (size_t k = 0; k < count; k++) {
            struct config_addr *a = &lc->listen[lc->nlisten];
            if (refuse_taken(ld, &parsed[k], text, line_of(e), scope, key) != 0)
                return -1;
            a->text = strdup(text);
            if (a->text == NULL)
                return out_of_memory(ld);
            a->addr = parsed[k];
            a->line = line_of(e);
            lc->nlisten++;
            if (take(ld, a, lc->name, line_of(e)) != 0)
                return -1;
        }
    }
    return 0;
}

/* Parses the CIDR list `key` ("allow" or "deny") of g into *out. */
static int load_cidrs(struct loader *ld, const config_setting_t *g,
                      const char *scope, const char *key, struct cidr **out,
                      size_t *nout)
{
    const config_setting_t *list;
    char cerr[256], elem[48], q[QUOTE_BUF];
    int n;

    if (get_strings(ld, g, scope, key, &list) != 0)
        return -1;
    if (list == NULL || (n = config_setting_length(list)) == 0)
        return 0;
    *out = calloc((size_t)n, sizeof **out);
    if (*out == NULL)
        return out_of_memory(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *text = config_setting_get_string(e);

        if (cidr_parse(text, &(*out)[i], cerr, sizeof cerr) != 0) {
            snprintf(elem, sizeof elem, "%s.[%d]", key, i);
            return fail(ld, line_of(e), scope, elem, "invalid CIDR %s: %s",
                        quote(q, text), cerr);
        }
        (*nout)++;
    }
    return 0;
}

/* Parses the upstreams of a proxy listener: at least one, each with every
 * address its name resolves to. */
static int load_upstreams(struct loader *ld, const config_setting_t *g,
                          const char *scope, struct listener_config *lc)
{
    const config_setting_t *list;
    char aerr[256], key[48], q[QUOTE_BUF];
    int n;

    if (get_strings(ld, g, scope, "upstreams", &list) != 0)
        return -1;
    n = list == NULL ? 0 : config_setting_length(list);
    if (n == 0)
        return fail(ld, line_of(list != NULL ? list : g), scope, "upstreams",
                    "proxy listener \"%s\" has no upstreams; expected a list like [ \"127.0.0.1:6379\" ]",
                    lc->name);
    lc->upstreams = calloc((size_t)n, sizeof *lc->upstreams);
    if (lc->upstreams == NULL)
        return out_of_memory(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *text = config_setting_get_string(e);
        struct config_addr *a = &lc->upstreams[i];
        addr_t parsed[ADDR_RESOLVE_MAX];
        size_t count;

        snprintf(key, sizeof key, "upstreams.[%d]", i);
        if (addr_parse(text, ADDR_UPSTREAM, parsed, ADDR_RESOLVE_MAX, &count,
                       aerr, sizeof aerr) != 0)
            return fail(ld, line_of(e), scope, key, "invalid address %s: %s",
                        quote(q, text), aerr);
        a->text = strdup(text);
        a->addrs = malloc(count * sizeof *a->addrs);
        lc->nupstreams++; /* free_listener() frees what was allocated */
        if (a->text == NULL || a->addrs == NULL)
            return out_of_memory(ld);
        memcpy(a->addrs, parsed, count * sizeof *a->addrs);
        a->naddrs = count;
        a->addr = parsed[0];
    }
    return 0;
}

/* Reads the settings only a proxy listener has, or refuses them on an echo
 * listener. */
static int load_proxy(struct loader *ld, const config_setting_t *g,
                      const char *scope, struct listener_config *lc)
{
    int balance = BALANCE_ROUND_ROBIN, send = SEND_PROXY_NONE;

    if (lc->mode == MODE_ECHO) {
        for (size_t i = 0; proxy_only_keys[i] != NULL; i++) {
            const config_setting_t *s = config_setting_get_member(g, proxy_only_keys[i]);
            if (s != NULL)
                return fail(ld, line_of(s), scope, proxy_only_keys[i],
                            "only for mode = \"proxy\"; this listener's mode is \"echo\"");
        }
        return 0;
    }
    if (load_upstreams(ld, g, scope, lc) != 0 ||
        get_choice(ld, g, scope, "balance", balance_names, &balance) != 0 ||
        get_seconds(ld, g, scope, "connect_timeout", 3600, true,
                    &lc->connect_timeout_ms) != 0 ||
        get_count(ld, g, scope, "retries", 0, 100, "", &lc->retries) != 0 ||
        get_seconds(ld, g, scope, "fail_timeout", 3600, false,
                    &lc->fail_timeout_ms) != 0 ||
        get_choice(ld, g, scope, "send_proxy", send_proxy_names, &send) != 0)
        return -1;
    lc->balance = (enum balance)balance;
    lc->send_proxy = (enum send_proxy)send;
    return 0;
}

/* Loads `proxy_timeout`, which only a listener with accept_proxy has. */
static int load_proxy_timeout(struct loader *ld, const config_setting_t *g,
                              const char *scope, struct listener_config *lc)
{
    const config_setting_t *s = config_setting_get_member(g, "proxy_timeout");

    lc->proxy_timeout_ms = 5000;
    if (s != NULL && !lc->accept_proxy)
        return fail(ld, line_of(s), scope, "proxy_timeout",
                    "only with accept_proxy = true; this listener reads no PROXY header");
    return get_seconds(ld, g, scope, "proxy_timeout", 3600, true,
                       &lc->proxy_timeout_ms);
}

/*
 * Loads `splice`: refused where the system has no splice(2).  On by default
 * for relays, where it halves the daemon's CPU per byte; off for echo, where
 * the client then reads the spliced pages back more slowly than copied ones
 * (bench/RESULTS.md: 1.4 against 2.4 GB/s on loopback).
 */
static int load_splice(struct loader *ld, const config_setting_t *g,
                       const char *scope, struct listener_config *lc)
{
    lc->splice = lc->mode == MODE_PROXY && pipe_splice_available();
    if (get_bool(ld, g, scope, "splice", &lc->splice) != 0)
        return -1;
    if (lc->splice && !pipe_splice_available())
        return fail(ld, line_of(config_setting_get_member(g, "splice")), scope,
                    "splice", "this system has no splice(2); set it to false");
    return 0;
}

/*
 * Loads listener i from the group g into cfg->listeners[i].  Messages name
 * it "listeners.[i]" (counted from 0, as libconfig paths do) until its name
 * is known, "listeners.NAME" after.
 */
static int load_listener(struct loader *ld, const config_setting_t *g,
                         struct config *cfg, size_t i)
{
    struct listener_config *lc = &cfg->listeners[i];
    const config_setting_t *name;
    char scope[16 + NAME_MAX_LEN], got[QUOTE_BUF];
    unsigned buffer_size = 16384;
    int mode = MODE_ECHO;

    snprintf(scope, sizeof scope, "listeners.[%zu]", i);
    if (!config_setting_is_group(g))
        return fail(ld, line_of(g), scope, NULL,
                    "expected a group { name = ...; listen = [ ... ]; }, got %s",
                    describe(ld, g, got));
    lc->line = line_of(g);
    name = config_setting_get_member(g, "name");
    lc->idle_timeout_ms = 300000;
    lc->connect_timeout_ms = 3000;
    lc->retries = 2;
    lc->fail_timeout_ms = 10000;
    if (name != NULL) {
        if (load_name(ld, name, scope, cfg, i, lc) != 0)
            return -1;
        snprintf(scope, sizeof scope, "listeners.%s", lc->name);
    }
    if (check_keys(ld, g, scope, "listeners.") != 0)
        return -1;
    if (name == NULL)
        return fail(ld, line_of(g), scope, "name",
                    "missing; every listener needs a name of letters, digits, \"_\", \".\" or \"-\"");
    if (get_choice(ld, g, scope, "mode", mode_names, &mode) != 0)
        return -1;
    lc->mode = (enum listener_mode)mode;
    if (load_proxy(ld, g, scope, lc) != 0 ||
        load_listen(ld, g, scope, lc) != 0 ||
        get_count(ld, g, scope, "buffer_size", 1024, 16777216, "bytes",
                  &buffer_size) != 0 ||
        get_seconds(ld, g, scope, "idle_timeout", 604800, false,
                    &lc->idle_timeout_ms) != 0 ||
        get_count(ld, g, scope, "max_connections", 0, 1000000, "",
                  &lc->max_connections) != 0 ||
        get_count(ld, g, scope, "max_per_source", 0, 1000000, "",
                  &lc->max_per_source) != 0 ||
        load_cidrs(ld, g, scope, "allow", &lc->allow, &lc->nallow) != 0 ||
        load_cidrs(ld, g, scope, "deny", &lc->deny, &lc->ndeny) != 0 ||
        get_bool(ld, g, scope, "accept_proxy", &lc->accept_proxy) != 0 ||
        load_proxy_timeout(ld, g, scope, lc) != 0 ||
        load_splice(ld, g, scope, lc) != 0)
        return -1;
    lc->buffer_size = buffer_size;
    return 0;
}

/* ---- relay loops --------------------------------------------------------- */

/* The port of an IP address. */
static unsigned port_of(const addr_t *a)
{
    return ntohs(a->u.sa.sa_family == AF_INET ? a->u.in.sin_port
                                              : a->u.in6.sin6_port);
}

/*
 * Whether connections to the upstream address `up` reach the listen
 * address l: equal to it, or on the port of a wildcard l with a loopback
 * (or wildcard) IP address.  A listen address on port 0 gets a fresh port,
 * which no upstream names.  Other addresses of this host on the port of a
 * wildcard l reach it too, but the load cannot know them.
 */
static bool reaches(const addr_t *up, const addr_t *l)
{
    addr_t t = addr_connect_target(up);

    if (t.u.sa.sa_family != l->u.sa.sa_family)
        return false;
    if (l->u.sa.sa_family == AF_UNIX)
        return addr_equal(&t, l);
    if (port_of(l) == 0 || port_of(&t) != port_of(l))
        return false;
    return addr_equal(&t, l) || (addr_is_wildcard(l) && addr_is_loopback(&t));
}

/* A step of a relay loop: listener `from` relays through its upstream `up`
 * to listener `to`, whose listen address `at` that upstream reaches. */
struct hop {
    size_t from, up, to, at;
};

/* The step from listener `from` through its upstream `up` (by any address
 * its name resolved to): false when that upstream reaches no listener. */
static bool hop_of(const struct config *cfg, size_t from, size_t up,
                   struct hop *h)
{
    const struct config_addr *u = &cfg->listeners[from].upstreams[up];
    size_t naddrs = u->naddrs > 0 ? u->naddrs : 1;

    for (size_t a = 0; a < naddrs; a++) {
        const addr_t *ua = u->naddrs > 0 ? &u->addrs[a] : &u->addr;
        for (size_t j = 0; j < cfg->nlisteners; j++) {
            const struct listener_config *lc = &cfg->listeners[j];
            for (size_t m = 0; m < lc->nlisten; m++) {
                if (reaches(ua, &lc->listen[m].addr)) {
                    *h = (struct hop){ .from = from, .up = up, .to = j, .at = m };
                    return true;
                }
            }
        }
    }
    return false;
}

/*
 * Refuses the loop hops[0..n), which goes around from the first listener
 * back to it, in the words of the first step's upstream (of the listener
 * in `list` first in the file, so that the message does not depend on
 * where the search started): "UPSTREAM is the listen address of listener
 * "B" (line N), whose upstreams.[K] ... : connections would loop".
 */
static int refuse_loop(struct loader *ld, const config_setting_t *list,
                       const struct config *cfg, const struct hop *hops,
                       size_t n)
{
    char msg[1024] = "", key[48];
    size_t first = 0, used = 0;

    for (size_t i = 1; i < n; i++)
        if (hops[i].from < hops[first].from)
            first = i;
    for (size_t i = 0; i < n && used < sizeof msg; i++) {
        const struct hop *h = &hops[(first + i) % n];
        const char *up = cfg->listeners[h->from].upstreams[h->up].text;
        const struct config_addr *at = &cfg->listeners[h->to].listen[h->at];
        int w;

        if (i > 0)
            used += (size_t)snprintf(msg + used, sizeof msg - used,
                                     ", whose upstreams.[%zu] ", h->up);
        if (used >= sizeof msg)
            break;
        if (strcmp(up, at->text) == 0)
            w = snprintf(msg + used, sizeof msg - used,
                         "%s is the listen address", up);
        else
            w = snprintf(msg + used, sizeof msg - used,
                         "%s reaches %s, the listen address", up, at->text);
        used += (size_t)w;
        if (used < sizeof msg)
            used += (size_t)snprintf(msg + used, sizeof msg - used,
                                     " of listener \"%s\" (line %d)",
                                     cfg->listeners[h->to].name, at->line);
    }
    const struct hop *h = &hops[first];
    const config_setting_t *ups = config_setting_get_member(
        config_setting_get_elem(list, (unsigned)h->from), "upstreams");
    char scope[16 + NAME_MAX_LEN];
    snprintf(scope, sizeof scope, "listeners.%s", cfg->listeners[h->from].name);
    snprintf(key, sizeof key, "upstreams.[%zu]", h->up);
    return fail(ld, line_of(config_setting_get_elem(ups, (unsigned)h->up)),
                scope, key, "%s: connections would loop", msg);
}

/*
 * Refuses a relay whose upstreams lead back to itself: one client would
 * make it connect to itself, again and again, until max_connections.  The
 * listeners and their upstreams make a graph, searched depth first without
 * recursion; a step into an echo listener ends a chain, which is fine.
 */
static int check_loops(struct loader *ld, const config_setting_t *list,
                       const struct config *cfg)
{
    size_t n = cfg->nlisteners;
    unsigned char *state = calloc(n, 1); /* 0 not seen, 1 on the path, 2 done */
    size_t *next = calloc(n, sizeof *next);  /* its next upstream to follow */
    size_t *depth = calloc(n, sizeof *depth); /* where it is on the path */
    size_t *on_path = calloc(n, sizeof *on_path);
    struct hop *path = calloc(n, sizeof *path); /* path[d]: from on_path[d] */
    int rc = 0;

    if (state == NULL || next == NULL || depth == NULL || on_path == NULL ||
        path == NULL) {
        rc = out_of_memory(ld);
        goto out;
    }
    for (size_t r = 0; r < n && rc == 0; r++) {
        size_t d = 0;
        if (state[r] != 0)
            continue;
        state[r] = 1;
        on_path[0] = r;
        for (;;) {
            size_t v = on_path[d];
            struct hop h;
            if (next[v] == cfg->listeners[v].nupstreams) {
                state[v] = 2;
                if (d == 0)
                    break;
                d--;
                continue;
            }
            if (!hop_of(cfg, v, next[v]++, &h) || state[h.to] == 2)
                continue;
            path[d] = h;
            if (state[h.to] == 1) {
                rc = refuse_loop(ld, list, cfg, &path[depth[h.to]],
                                 d + 1 - depth[h.to]);
                break;
            }
            state[h.to] = 1;
            depth[h.to] = ++d;
            on_path[d] = h.to;
        }
    }
out:
    free(state);
    free(next);
    free(depth);
    free(on_path);
    free(path);
    return rc;
}

/* Loads the listeners list: at least one listener. */
static int load_listeners(struct loader *ld, const config_setting_t *root,
                          struct config *cfg)
{
    const config_setting_t *list = config_setting_get_member(root, "listeners");
    char got[QUOTE_BUF];
    int n;

    if (list == NULL)
        return fail(ld, 0, "", "listeners", "no listeners: nothing to serve");
    if (!is_sequence(list))
        return fail(ld, line_of(list), "", "listeners",
                    "expected a list of groups ( { name = ...; listen = [ ... ]; }, ... ), got %s",
                    describe(ld, list, got));
    n = config_setting_length(list);
    if (n == 0)
        return fail(ld, line_of(list), "", "listeners",
                    "no listeners: nothing to serve");
    cfg->listeners = calloc((size_t)n, sizeof *cfg->listeners);
    if (cfg->listeners == NULL)
        return out_of_memory(ld);
    cfg->nlisteners = (size_t)n;
    for (int i = 0; i < n; i++)
        if (load_listener(ld, config_setting_get_elem(list, (unsigned)i), cfg,
                          (size_t)i) != 0)
            return -1;
    return check_loops(ld, list, cfg);
}

/* ---- the whole file ------------------------------------------------------ */

/* Loads the log group, when there is one. */
static int load_log(struct loader *ld, const config_setting_t *root,
                    struct config *cfg)
{
    const config_setting_t *g = config_setting_get_member(root, "log");
    int target = LOG_TARGET_AUTO, level = 3; /* level_names[3], "info" */
    char got[QUOTE_BUF];

    if (g == NULL)
        return 0;
    if (!config_setting_is_group(g))
        return fail(ld, line_of(g), "", "log",
                    "expected a group { target = ...; level = ...; access = ...; }, got %s",
                    describe(ld, g, got));
    if (check_keys(ld, g, "log", "log.") != 0 ||
        get_choice(ld, g, "log", "target", target_names, &target) != 0 ||
        get_choice(ld, g, "log", "level", level_names, &level) != 0 ||
        get_bool(ld, g, "log", "access", &cfg->log_access) != 0)
        return -1;
    cfg->log_target = (enum log_target)target;
    cfg->log_level = level_values[level];
    return 0;
}

/* Loads the stats group, when there is one: the one numeric TCP address
 * of the metrics listener, which no listener's address may overlap, and
 * its allow and deny lists. */
static int load_stats(struct loader *ld, const config_setting_t *root,
                      struct config *cfg)
{
    const config_setting_t *g = config_setting_get_member(root, "stats"), *s;
    char got[QUOTE_BUF], aerr[256];
    const char *text;
    addr_t parsed;
    size_t count;

    if (g == NULL)
        return 0;
    if (!config_setting_is_group(g))
        return fail(ld, line_of(g), "", "stats",
                    "expected a group { listen = \"127.0.0.1:9107\"; }, got %s",
                    describe(ld, g, got));
    if (check_keys(ld, g, "stats", "stats.") != 0)
        return -1;
    s = config_setting_get_member(g, "listen");
    if (s == NULL)
        return fail(ld, line_of(g), "stats", "listen",
                    "missing; expected one address like \"127.0.0.1:9107\"");
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return fail(ld, line_of(s), "stats", "listen",
                    "expected one address as a string like \"127.0.0.1:9107\", got %s",
                    describe(ld, s, got));
    text = config_setting_get_string(s);
    if (text[0] == '*')
        return fail(ld, line_of(s), "stats", "listen",
                    "%s: \"*\" is not allowed here, metrics are served on one "
                    "address; expected one like \"127.0.0.1:9107\" (or "
                    "\"0.0.0.0:9107\", \"[::]:9107\")", quote(got, text));
    if (strncmp(text, "unix:", 5) == 0)
        return fail(ld, line_of(s), "stats", "listen",
                    "%s: a Unix socket is not allowed here, metrics are served "
                    "over TCP; expected an address like \"127.0.0.1:9107\"",
                    quote(got, text));
    /* Neither "*" nor "unix:" is left: one numeric address. */
    if (addr_parse(text, ADDR_LISTEN, &parsed, 1, &count, aerr, sizeof aerr) != 0)
        return fail(ld, line_of(s), "stats", "listen", "invalid address %s: %s",
                    quote(got, text), aerr);
    if (refuse_v4_mapped(ld, &parsed, text, line_of(s), "stats", "listen") != 0 ||
        refuse_taken(ld, &parsed, text, line_of(s), "stats", "listen") != 0)
        return -1;
    cfg->stats.text = strdup(text);
    if (cfg->stats.text == NULL)
        return out_of_memory(ld);
    cfg->stats.addr = parsed;
    cfg->has_stats = true;
    if (load_cidrs(ld, g, "stats", "allow", &cfg->stats_allow, &cfg->nstats_allow) != 0 ||
        load_cidrs(ld, g, "stats", "deny", &cfg->stats_deny, &cfg->nstats_deny) != 0)
        return -1;
    return 0;
}

/* Refuses a user (the setting `user` of root) that does not exist: the
 * daemon could never switch to it. */
static int check_user(struct loader *ld, const config_setting_t *root,
                      const char *user)
{
    char q[QUOTE_BUF];
    uid_t uid;
    gid_t gid;
    int found = process_user_lookup(user, &uid, &gid);

    if (found >= 0)
        return 0;
    if (found == -ENOENT)
        return fail(ld, line_of(config_setting_get_member(root, "user")), "",
                    "user", "no such user %s", quote(q, user));
    return fail(ld, line_of(config_setting_get_member(root, "user")), "", "user",
                "cannot look up %s: %s", quote(q, user), log_strerror(-found));
}

/* Fills cfg from the parsed file; cfg holds the defaults of what is
 * absent. */
static int load_root(struct loader *ld, const config_setting_t *root,
                     struct config *cfg)
{
    cfg->max_connections = 10000;
    cfg->shutdown_timeout_ms = 10000;
    cfg->log_target = LOG_TARGET_AUTO;
    cfg->log_level = LOG_INFO;
    cfg->log_access = true;
    cfg->path = strdup(ld->path);
    cfg->user = strdup("");
    cfg->pidfile = strdup("");
    if (cfg->path == NULL || cfg->user == NULL || cfg->pidfile == NULL)
        return out_of_memory(ld);
    if (check_keys(ld, root, "", "") != 0 ||
        get_count(ld, root, "", "workers", 0, 256, "", &cfg->workers) != 0 ||
        get_count(ld, root, "", "max_connections", 0, 1000000, "",
                  &cfg->max_connections) != 0 ||
        get_seconds(ld, root, "", "shutdown_timeout", 3600, false,
                    &cfg->shutdown_timeout_ms) != 0 ||
        get_string(ld, root, "", "user", &cfg->user) != 0 ||
        check_user(ld, root, cfg->user) != 0 ||
        get_string(ld, root, "", "pidfile", &cfg->pidfile) != 0 ||
        load_log(ld, root, cfg) != 0 || load_listeners(ld, root, cfg) != 0 ||
        load_stats(ld, root, cfg) != 0)
        return -1;
    return check_wide_claimed(ld);
}

/*
 * Reads the whole file into a NUL-terminated buffer, once: libconfig
 * parses it from there, so a pipe works too.  NULL with the reason
 * reported.
 */
static char *read_source(struct loader *ld, size_t *len)
{
    char *buf = NULL, *grown;
    size_t cap = 0, n = 0;
    struct stat st;
    ssize_t got;
    int fd = open(ld->path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        fail(ld, 0, "", NULL, "cannot read: %s", log_strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        fail(ld, 0, "", NULL, "cannot read: %s", log_strerror(EISDIR));
        goto fail;
    }
    for (;;) {
        if (cap - n < 2) {
            cap = cap == 0 ? 8192 : 2 * cap;
            if (cap > FILE_MAX + 2) {
                fail(ld, 0, "", NULL, "cannot read: larger than %d MiB",
                     FILE_MAX >> 20);
                goto fail;
            }
            grown = realloc(buf, cap);
            if (grown == NULL) {
                out_of_memory(ld);
                goto fail;
            }
            buf = grown;
        }
        got = read(fd, buf + n, cap - n - 1);
        if (got == 0)
            break;
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            fail(ld, 0, "", NULL, "cannot read: %s", log_strerror(errno));
            goto fail;
        }
        n += (size_t)got;
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    close(fd);
    free(buf);
    return NULL;
}

/* Fills cfg from the file libconfig parsed, its settings' lines set right
 * first. */
static int load_parsed(struct loader *ld, config_t *parsed, struct config *cfg)
{
    config_setting_t *root = config_root_setting(parsed);
    size_t n = note_settings(ld, root, NULL);
    struct setting_info *info = n == 0 ? NULL : calloc(n, sizeof *info);
    int rc;

    if (info == NULL || note_settings(ld, root, info) != n) {
        free(info);
        return out_of_memory(ld);
    }
    rc = load_root(ld, root, cfg);
    free(info); /* the settings keep dangling hooks, never read again */
    return rc;
}

struct config *config_load(const char *path, const char *name, char *err,
                           size_t errlen)
{
    struct loader ld = { .path = path, .name = name != NULL ? name : path,
                         .err = err, .errlen = errlen };
    struct config *cfg = NULL;
    config_t parsed;
    size_t len;
    char *text;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    text = read_source(&ld, &len);
    if (text == NULL)
        return NULL;
    int scanned = config_scan(text, len, &ld.scan);
    if (scanned == -ENOMEM) {
        out_of_memory(&ld);
    } else if (scanned < 0) {
        fail(&ld, ld.scan.line, "", NULL, "%s", ld.scan.why);
    } else {
        config_init(&parsed);
        if (!config_read_string(&parsed, text)) {
            const char *file = config_error_file(&parsed);
            const char *why = config_error_text(&parsed);
            if (file != NULL)
                ld.name = file;
            if (strcmp(why, "syntax error") == 0) /* libconfig's usual text */
                fail(&ld, config_error_line(&parsed), "", NULL, "syntax error");
            else
                fail(&ld, config_error_line(&parsed), "", NULL,
                     "syntax error: %s", why);
        } else if ((cfg = calloc(1, sizeof *cfg)) == NULL) {
            out_of_memory(&ld);
        } else if (load_parsed(&ld, &parsed, cfg) != 0) {
            config_free(cfg);
            cfg = NULL;
        }
        config_destroy(&parsed);
    }
    free(text);
    config_scan_free(&ld.scan);
    free(ld.taken);
    return cfg;
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        free_listener(&cfg->listeners[i]);
    free(cfg->listeners);
    free(cfg->stats.text);
    free(cfg->stats_allow);
    free(cfg->stats_deny);
    free(cfg->path);
    free(cfg->user);
    free(cfg->pidfile);
    free(cfg);
}
