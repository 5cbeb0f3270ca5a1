/*
 * One setting of the parsed configuration file: messages, the lines
 * libconfig 1.5 gets wrong, the integers it cuts, and the typed readers.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-value.h"
#include "utf8.h"

/* ---- messages ------------------------------------------------------------ */

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
            snprintf(esc, sizeof(esc), "\\x%02x", c);
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

int value_refuse(struct config_loader *ld, int line, const char *scope, const char *key,
                 const char *fmt, ...)
{
    if (ld->err == NULL || ld->errlen == 0)
        return -EINVAL;
    va_list ap;
    va_start(ap, fmt);
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char where[16] = "";
    if (line > 0)
        snprintf(where, sizeof(where), ":%d", line);
    char setting[160] = "";
    if (key != NULL)
        snprintf(setting, sizeof(setting), "%s%s%s: ", scope, scope[0] != '\0' ? "." : "",
                 key);
    else if (scope[0] != '\0')
        snprintf(setting, sizeof(setting), "%s: ", scope);
    char all[1536];
    snprintf(all, sizeof(all), "%s%s: %s%s", ld->name, where, setting, msg);
    clean_message(ld->err, ld->errlen, all);
    return -EINVAL;
}

int value_out_of_memory(struct config_loader *ld)
{
    value_refuse(ld, 0, "", NULL, "out of memory");
    return -ENOMEM;
}

const char *value_quote(char buf[VALUE_QUOTE_BUF], const char *s)
{
    size_t o = 0;
    buf[o++] = '"';
    size_t i = 0;
    while (i < VALUE_QUOTE_MAX && s[i] != '\0') {
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
        } else if (i + n > VALUE_QUOTE_MAX) {
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

/* ---- where a setting is written ------------------------------------------ */

/*
 * What the loader knows of a setting besides libconfig, attached to it as
 * its hook (config_setting_set_hook()) by value_note_lines() for the time
 * of the load.
 */
struct value_info {
    int line;  /* where it starts */
    long list; /* a list's number in the scan (config_scan.lists), else -1 */
};

int value_line(const config_setting_t *s)
{
    const struct value_info *info = config_setting_get_hook(s);
    return info != NULL ? info->line : (int)config_setting_source_line(s);
}

bool value_is_sequence(const config_setting_t *s)
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
static size_t note_settings(const struct config_loader *ld, config_setting_t *root,
                            struct value_info *info)
{
    struct walk *stack = NULL;
    size_t depth = 0, cap = 0, used = 0, lists = 0;
    config_setting_t *s = root;
    int line = (int)config_setting_source_line(root);
    for (;;) {
        const struct scan_list *l = NULL;
        if (value_is_sequence(s)) {
            if (lists < ld->scan.nlists &&
                ld->scan.lists[lists].count == (size_t)config_setting_length(s))
                l = &ld->scan.lists[lists];
            lists++;
        }
        if (info != NULL) {
            info[used] = (struct value_info){
                .line = line,
                .list = value_is_sequence(s) ? (long)lists - 1 : -1,
            };
            config_setting_set_hook(s, &info[used]);
        }
        used++;
        if (config_setting_is_aggregate(s)) {
            if (depth == cap) {
                size_t want = cap == 0 ? 16 : 2 * cap;
                struct walk *grown = realloc(stack, want * sizeof(*stack));
                if (grown == NULL) {
                    free(stack);
                    return 0;
                }
                stack = grown;
                cap = want;
            }
            stack[depth++] = (struct walk){.s = s, .l = l};
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

int value_note_lines(struct config_loader *ld, config_setting_t *root)
{
    size_t n = note_settings(ld, root, NULL);
    ld->info = n == 0 ? NULL : calloc(n, sizeof(*ld->info));
    if (ld->info == NULL || note_settings(ld, root, ld->info) != n)
        return value_out_of_memory(ld);
    return 0;
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
static struct wide_literal *wide_literal_of(struct config_loader *ld,
                                            const config_setting_t *s)
{
    const config_setting_t *parent = config_setting_parent(s);
    const struct value_info *pinfo = parent != NULL ? config_setting_get_hook(parent)
                                                    : NULL;
    const char *name = config_setting_name(s);
    int first = value_line(s);
    if (config_setting_type(s) != CONFIG_TYPE_INT)
        return NULL;
    int stored = config_setting_get_int(s);
    int i = config_setting_index(s);
    int last = INT_MAX;
    long list = -1, index = -1;
    if (parent != NULL && value_is_sequence(parent)) {
        if (pinfo == NULL)
            return NULL;
        list = pinfo->list;
        index = i;
        last = first;
    } else if (parent != NULL && i >= 0 && i + 1 < config_setting_length(parent)) {
        last = value_line(config_setting_get_elem(parent, (unsigned)i + 1));
    }
    struct wide_literal *best = NULL;
    for (size_t k = 0; k < ld->scan.nwide; k++) {
        struct wide_literal *w = &ld->scan.wide[k];
        if (w->claimed || w->stored != stored || w->line < first || w->line > last ||
            w->list != list || w->index != index)
            continue;
        if (list < 0 && (name == NULL || strlen(name) != w->name_len ||
                         memcmp(name, w->name, w->name_len) != 0))
            continue;
        if (best == NULL || w->line < best->line)
            best = w;
    }
    return best;
}

/* Every integer setting reads through integer(). */
int value_check_wide_claimed(struct config_loader *ld)
{
    for (size_t k = 0; k < ld->scan.nwide; k++)
        if (!ld->scan.wide[k].claimed)
            return value_refuse(ld, ld->scan.wide[k].line, "", NULL,
                                "integer %s out of range %d-%d", ld->scan.wide[k].text,
                                INT_MIN, INT_MAX);
    return 0;
}

/* ---- reading one setting ------------------------------------------------- */

/* An integer setting's value, and its text as written for messages; a
 * literal libconfig 1.5 cut to 32 bits is read whole. */
static long long integer(struct config_loader *ld, const config_setting_t *s,
                         char text[32])
{
    struct wide_literal *w = wide_literal_of(ld, s);
    if (w != NULL) {
        w->claimed = true;
        snprintf(text, 32, "%s", w->text);
        return w->value;
    }
    long long v;
    if (config_setting_type(s) == CONFIG_TYPE_INT64)
        v = config_setting_get_int64(s);
    else
        v = config_setting_get_int(s);
    snprintf(text, 32, "%lld", v);
    return v;
}

const char *value_describe(struct config_loader *ld, const config_setting_t *s,
                           char buf[VALUE_QUOTE_BUF])
{
    char num[32];
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        integer(ld, s, num);
        snprintf(buf, VALUE_QUOTE_BUF, "%s", num);
        return buf;
    case CONFIG_TYPE_FLOAT:
        snprintf(buf, VALUE_QUOTE_BUF, "%.15g", config_setting_get_float(s));
        /* 2.0 prints as "2"; buf then holds a sign and 15 digits at most,
         * so ".0" fits. */
        if (strpbrk(buf, ".en") == NULL)
            strcat(buf, ".0"); /* NOLINT(clang-analyzer-security.insecureAPI.strcpy) */
        return buf;
    case CONFIG_TYPE_STRING:
        return value_quote(buf, config_setting_get_string(s));
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

int value_count(struct config_loader *ld, const config_setting_t *g, const char *scope,
                const char *key, long long lo, long long hi, const char *unit,
                unsigned *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (s == NULL)
        return 0;
    char got[VALUE_QUOTE_BUF];
    if (!is_integer(s))
        return value_refuse(ld, value_line(s), scope, key, "expected an integer, got %s",
                            value_describe(ld, s, got));
    char text[32];
    long long v = integer(ld, s, text);
    if (v < lo || v > hi)
        return value_refuse(ld, value_line(s), scope, key,
                            "%s out of range %lld-%lld%s%s", text, lo, hi,
                            unit[0] != '\0' ? " " : "", unit);
    *out = (unsigned)v;
    return 0;
}

/* Nanoseconds first absorb the binary error of decimal fractions (1.1 s
 * is 1100 ms, not 1101). */
int64_t value_ms(double s)
{
    int64_t ns = (int64_t)(s * 1e9 + 0.5);
    int64_t ms = (ns + 999999) / 1000000;
    return ms == 0 && s > 0 ? 1 : ms;
}

int value_seconds(struct config_loader *ld, const config_setting_t *g, const char *scope,
                  const char *key, double max, bool positive, int64_t *ms)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (s == NULL)
        return 0;
    char got[VALUE_QUOTE_BUF], text[32];
    double v;
    if (is_integer(s)) {
        v = (double)integer(ld, s, text);
    } else if (config_setting_type(s) == CONFIG_TYPE_FLOAT) {
        v = config_setting_get_float(s);
        snprintf(text, sizeof(text), "%s", value_describe(ld, s, got));
    } else {
        return value_refuse(ld, value_line(s), scope, key,
                            "expected a number of seconds, got %s",
                            value_describe(ld, s, got));
    }
    if (!isfinite(v))
        return value_refuse(ld, value_line(s), scope, key,
                            "expected a finite number of seconds, got %s", text);
    if (positive && !(v > 0 && v <= max))
        return value_refuse(ld, value_line(s), scope, key,
                            "%s out of range: expected more than 0 and at most %g "
                            "seconds",
                            text, max);
    if (!(v >= 0 && v <= max))
        return value_refuse(ld, value_line(s), scope, key, "%s out of range 0-%g seconds",
                            text, max);
    *ms = value_ms(v);
    return 0;
}

int value_bool(struct config_loader *ld, const config_setting_t *g, const char *scope,
               const char *key, bool *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (s == NULL)
        return 0;
    char got[VALUE_QUOTE_BUF];
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return value_refuse(ld, value_line(s), scope, key,
                            "expected true or false, got %s", value_describe(ld, s, got));
    *out = config_setting_get_bool(s) != 0;
    return 0;
}

int value_string(struct config_loader *ld, const config_setting_t *g, const char *scope,
                 const char *key, char **out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (s == NULL)
        return 0;
    char got[VALUE_QUOTE_BUF];
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return value_refuse(ld, value_line(s), scope, key, "expected a string, got %s",
                            value_describe(ld, s, got));
    char *copy = strdup(config_setting_get_string(s));
    if (copy == NULL)
        return value_out_of_memory(ld);
    free(*out);
    *out = copy;
    return 0;
}

int value_choice(struct config_loader *ld, const config_setting_t *g, const char *scope,
                 const char *key, const struct value_choice *choices, int *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (s == NULL)
        return 0;
    if (config_setting_type(s) == CONFIG_TYPE_STRING) {
        for (const struct value_choice *c = choices; c->name != NULL; c++) {
            if (strcmp(config_setting_get_string(s), c->name) == 0) {
                *out = c->value;
                return 0;
            }
        }
    }
    int n = 0;
    while (choices[n].name != NULL)
        n++;
    char expected[160] = "";
    for (int i = 0; i < n; i++) {
        size_t used = strlen(expected);
        snprintf(expected + used, sizeof(expected) - used, "%s%s",
                 i == 0       ? ""
                 : i == n - 1 ? " or "
                              : ", ",
                 choices[i].name);
    }
    char got[VALUE_QUOTE_BUF];
    return value_refuse(ld, value_line(s), scope, key, "expected %s, got %s", expected,
                        value_describe(ld, s, got));
}

int value_strings(struct config_loader *ld, const config_setting_t *g, const char *scope,
                  const char *key, const config_setting_t **out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    *out = s;
    if (s == NULL)
        return 0;
    char got[VALUE_QUOTE_BUF];
    if (config_setting_type(s) == CONFIG_TYPE_STRING)
        return value_refuse(ld, value_line(s), scope, key,
                            "expected a list of strings, got %s (write [ %s ])",
                            value_describe(ld, s, got), got);
    if (!value_is_sequence(s))
        return value_refuse(ld, value_line(s), scope, key,
                            "expected a list of strings, got %s",
                            value_describe(ld, s, got));
    char elem[48];
    for (int i = 0; i < config_setting_length(s); i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            snprintf(elem, sizeof(elem), "%s.[%d]", key, i);
            return value_refuse(ld, value_line(e), scope, elem,
                                "expected a string, got %s", value_describe(ld, e, got));
        }
    }
    return 0;
}
