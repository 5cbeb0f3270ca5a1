/*
 * Logging for mio-echod: to stderr (with "<N>" level prefixes when journald
 * reads it, so the journal keeps the levels) or to syslog; as text, or as
 * one JSON object a line (log.format).  Each line is written with one
 * write(2), so lines from several workers never mix.
 */
#ifndef ECHOD_LOG_H
#define ECHOD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#include "config.h"

/* Where lines go: LOG_TARGET_AUTO means stderr when `foreground` or when
 * journald reads stderr, syslog otherwise.  Lines above `level` (a syslog
 * level) are dropped. */
void log_open(enum log_target target, int level, bool foreground);

/* Says that start-up is over: from now on lines that go to syslog go
 * there only (before, warnings and errors also go to stderr). */
void log_started(void);

/* Changes the level (on reload, or -v). */
void log_set_level(int level);

/* Changes the format of every line written from now on (at start, and on
 * reload): text, or one JSON object a line. */
void log_set_format(enum log_format format);

/* Whether a line of `level` would be written. */
bool log_enabled(int level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * strerror() for any thread: strerror() may share one buffer between
 * threads (POSIX allows it; glibc's manual says MT-Unsafe), and the workers
 * log errors concurrently.  The text is valid until the calling thread's
 * next call, so one message takes at most one of these.
 */
const char *log_strerror(int err);

/* The last error logged ("" when none), so that a process that fails to
 * start can tell whoever started it why. */
void log_last_error(char *buf, size_t len);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)

/* What the value of an access line's field is. */
enum log_kind { LOG_KIND_TEXT, LOG_KIND_COUNT, LOG_KIND_MS };

/*
 * One field of an access line: both formats are written from it, text as
 * "KEY=VALUE", JSON as "KEY":VALUE.  A text is a JSON string; NULL is no
 * value ("-" in text, null in JSON).  A count is a number, a duration in
 * milliseconds a number of seconds to the millisecond ("1.250").
 */
struct log_field {
    const char *key;
    enum log_kind kind;
    union {
        const char *text;
        uint64_t count;
        int64_t ms;
    } v;
};

#define LOG_TEXT(k, s) \
    ((struct log_field){.key = (k), .kind = LOG_KIND_TEXT, .v.text = (s)})
#define LOG_COUNT(k, n) \
    ((struct log_field){.key = (k), .kind = LOG_KIND_COUNT, .v.count = (n)})
#define LOG_MS(k, n) ((struct log_field){.key = (k), .kind = LOG_KIND_MS, .v.ms = (n)})

/* The most fields a kind of client adds to its access lines. */
#define LOG_ACCESS_EXTRA_MAX 4

/*
 * Writes one access line at level info, with the fields listener, client,
 * upstream (NULL: none), in, out, duration (ms since the accept), then
 * `extra` (what the kind of client adds: TLS and SNI, or a UDP flow's
 * datagrams; at most LOG_ACCESS_EXTRA_MAX), and the reason last.  In text:
 * "access listener=L client=C ... reason=R"; in JSON:
 * {"level":"info","type":"access","listener":"L",...,"reason":"R"}.
 */
void log_access(const char *listener, const char *client, const char *upstream,
                uint64_t in, uint64_t out, int64_t ms, const struct log_field *extra,
                size_t nextra, const char *reason);

/*
 * The access line of fields[0..n) in `format`, without a newline, into
 * buf[0..len) (len at least 64), NUL-terminated; returns its length.  What
 * does not fit is left out a field at a time, or cut within a text between
 * two characters, so that the line is still one JSON object.  In text, a
 * byte of a value that is a space, a control byte, DEL or not UTF-8 is
 * written \xNN, so that a value can start no field and no line; in JSON,
 * a quote and a backslash are escaped, and control bytes, DEL and bytes
 * that are not UTF-8 are written \u00XX.
 */
size_t log_format_access(enum log_format format, char *buf, size_t len,
                         const struct log_field *fields, size_t n);

/* A message line of `level` in `format` as log_format_access() writes one:
 * in text the message itself, in JSON {"level":"L","message":"M"}. */
size_t log_format_message(enum log_format format, int level, char *buf, size_t len,
                          const char *msg);
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* A limit of `burst` lines per second for one kind of message, so that a
 * flood (refused clients, EMFILE) cannot fill the log.  Not shared between
 * threads: each worker keeps its own. */
struct ratelimit {
    int64_t window_ms; /* start of the current second */
    unsigned burst;    /* lines allowed per second */
    unsigned used;     /* lines written in this second */
    unsigned dropped;  /* lines dropped since the last one written */
};

/* True when a line may be written now; *dropped_out (may be NULL) gets the
 * number dropped before it, to be mentioned in that line. */
bool log_ratelimit(struct ratelimit *rl, int64_t now_ms, unsigned *dropped_out);

/* Writes a line at `level` when rl allows it; a line written after some
 * were dropped ends with " (N <dropped>)", e.g. dropped "more refused, not
 * logged". */
__attribute__((format(printf, 5, 6))) void log_limited(int level, struct ratelimit *rl,
                                                       int64_t now_ms,
                                                       const char *dropped,
                                                       const char *fmt, ...);

/* log_limited() for callers that take their own arguments. */
__attribute__((format(printf, 5, 0))) void log_vlimited(int level, struct ratelimit *rl,
                                                        int64_t now_ms,
                                                        const char *dropped,
                                                        const char *fmt, va_list ap);

#endif
