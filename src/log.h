/*
 * Logging for mio-echod: to stderr (with "<N>" level prefixes when journald
 * reads it, so the journal keeps the levels) or to syslog.  Each line is
 * written with one write(2), so lines from several workers never mix.
 */
#ifndef ECHOD_LOG_H
#define ECHOD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
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

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)

/* Writes one access line at level info: "access listener=L client=C
 * upstream=U in=N out=N duration=S.mmm EXTRA reason=R", EXTRA being what
 * the kind of client adds (TLS and SNI, or a UDP flow's datagrams); the
 * reason comes last. */
void log_access(const char *listener, const char *client, const char *upstream,
                uint64_t in, uint64_t out, int64_t ms, const char *extra,
                const char *reason);
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
