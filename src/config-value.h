/*
 * One setting of the parsed configuration file: the state of a load, the
 * line a setting is written on, its value read as a type, and the message
 * that refuses it.
 *
 * libconfig 1.5 gets two things wrong that are set right here, with what
 * config_scan() saw in the text: the line of a list's element, and integer
 * literals it cuts to 32 bits (read whole, or refused).
 *
 * Every function that can refuse a setting returns 0 or a negative errno
 * with the message written: -EINVAL when the file is wrong, -ENOMEM when
 * memory ran out.  Messages read "NAME:LINE: SCOPE.KEY: what is wrong", one
 * line of valid UTF-8 (config_load() in config.h).
 */
#ifndef ECHOD_CONFIG_VALUE_H
#define ECHOD_CONFIG_VALUE_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config-scan.h"

/* A value quoted in a message is cut after this many bytes; each byte may
 * take four once escaped. */
#define VALUE_QUOTE_MAX 64
#define VALUE_QUOTE_BUF (VALUE_QUOTE_MAX * 4 + 8)

struct check_taken;
struct value_info;

/* One load of a file: what it reads, where its message goes, what it knows
 * of the text besides libconfig. */
struct config_loader {
    const char *path; /* the file read */
    const char *name; /* the file as messages name it */
    char *err;
    size_t errlen;
    struct config_scan scan;
    struct value_info *info;   /* value_note_lines() */
    struct check_taken *taken; /* listen addresses so far (config-check.c) */
    size_t ntaken, taken_cap;
};

/* One name of a choice and the value it stands for. */
struct value_choice {
    const char *name;
    int value;
};

/*
 * Writes "NAME[:LINE]: [SCOPE[.KEY]: ]message" into ld's buffer (the line
 * is left out when 0, the setting when scope is "" and key NULL); returns
 * -EINVAL.
 */
__attribute__((format(printf, 5, 6))) int value_refuse(struct config_loader *ld, int line,
                                                       const char *scope, const char *key,
                                                       const char *fmt, ...);

/* Writes the one message for a failed allocation; returns -ENOMEM. */
int value_out_of_memory(struct config_loader *ld);

/* Writes s into buf double-quoted, with C escapes for quotes, backslashes,
 * control bytes and bytes that are not UTF-8, cut after VALUE_QUOTE_MAX
 * bytes (before a character that would cross it) with "..." after;
 * returns buf. */
const char *value_quote(char buf[VALUE_QUOTE_BUF], const char *s);

/*
 * Notes the line each setting under root starts on, for value_line(), and
 * the list each list is in the scan, for the wide literals: an element of a
 * list gets the line the scan saw it start on rather than the line of the
 * token after it that libconfig 1.5 records.  0 or -ENOMEM (message
 * written).  ld->info holds what was noted until the load ends.
 */
int value_note_lines(struct config_loader *ld, config_setting_t *root);

/* The line a setting starts on. */
int value_line(const config_setting_t *s);

/* Whether a setting is a list or an array. */
bool value_is_sequence(const config_setting_t *s);

/* What a setting holds, for "expected X, got Y": its value when it is a
 * scalar (an integer as written), its kind otherwise; in buf or static. */
const char *value_describe(struct config_loader *ld, const config_setting_t *s,
                           char buf[VALUE_QUOTE_BUF]);

/* Refuses a wide literal that no setting claimed: a safety net, as every
 * integer setting reads through the functions below. */
int value_check_wide_claimed(struct config_loader *ld);

/* Milliseconds in s seconds (0 to a few days), rounded up, so that a
 * positive time never becomes 0. */
int64_t value_ms(double s);

/*
 * The typed readers of the setting `key` of the group g, named "SCOPE.KEY"
 * in messages.  Each leaves *out as it is when the setting is absent.
 */

/* An integer, lo..hi ("out of range LO-HI UNIT"). */
int value_count(struct config_loader *ld, const config_setting_t *g, const char *scope,
                const char *key, long long lo, long long hi, const char *unit,
                unsigned *out);

/* A number of seconds, integer or not, kept as milliseconds: finite, at
 * least 0 (more than 0 when `positive`) and at most max. */
int value_seconds(struct config_loader *ld, const config_setting_t *g, const char *scope,
                  const char *key, double max, bool positive, int64_t *ms);

/* true or false. */
int value_bool(struct config_loader *ld, const config_setting_t *g, const char *scope,
               const char *key, bool *out);

/* A string, copied over *out (the old one freed). */
int value_string(struct config_loader *ld, const config_setting_t *g, const char *scope,
                 const char *key, char **out);

/* One of the names of choices[] (ended by a NULL name): its value. */
int value_choice(struct config_loader *ld, const config_setting_t *g, const char *scope,
                 const char *key, const struct value_choice *choices, int *out);

/* A list (or array) of strings, left to the caller in *out; NULL when
 * absent. */
int value_strings(struct config_loader *ld, const config_setting_t *g, const char *scope,
                  const char *key, const config_setting_t **out);

#endif
