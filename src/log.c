/* Logging to stderr or syslog, and rate limits for floods. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static atomic_int max_level = LOG_INFO;
static bool use_syslog;
static bool level_prefix; /* "<N>" for journald */
/* Until log_started(): warnings and errors go to stderr too when lines go
 * to syslog, so that a start that fails says why where it was started,
 * whether or not a syslog daemon listens. */
static atomic_bool early_stderr;

void log_open(enum log_target target, int level, bool foreground)
{
    /* journald sets JOURNAL_STREAM for the stdout/stderr it reads. */
    bool journal = getenv("JOURNAL_STREAM") != NULL;
    if (target == LOG_TARGET_AUTO)
        target = foreground || journal ? LOG_TARGET_STDERR : LOG_TARGET_SYSLOG;
    use_syslog = target == LOG_TARGET_SYSLOG;
    level_prefix = !use_syslog && journal;
    atomic_store(&early_stderr, use_syslog);
    if (use_syslog)
        openlog("mio-echod", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    log_set_level(level);
}

void log_started(void)
{
    atomic_store(&early_stderr, false);
}

void log_set_level(int level)
{
    atomic_store(&max_level, level);
}

bool log_enabled(int level)
{
    return level <= atomic_load_explicit(&max_level, memory_order_relaxed);
}

void log_msg(int level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    if (use_syslog) {
        vsnprintf(line, sizeof(line), fmt, ap);
        syslog(level, "%s", line);
        if (level <= LOG_WARNING && atomic_load(&early_stderr))
            dprintf(STDERR_FILENO, "mio-echod: %s: %s\n",
                    level <= LOG_ERR ? "error" : "warning", line);
    } else {
        static const char *const names[] = {"emerg",   "alert",  "crit", "error",
                                            "warning", "notice", "info", "debug"};
        int n = level_prefix
                    ? snprintf(line, sizeof(line), "<%d>", level)
                    : snprintf(line, sizeof(line), "mio-echod: %s: ", names[level & 7]);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
        size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
        if (len > sizeof(line) - 2)
            len = sizeof(line) - 2; /* truncated: keep the newline */
        line[len++] = '\n';
        ssize_t w = write(STDERR_FILENO, line, len);
        (void)w; /* nowhere left to report a failing stderr */
    }
    va_end(ap);
}

/* The result of the GNU strerror_r(), which returns the text (in buf, or
 * a constant string), and of the XSI one, which returns 0 or an error. */
static const char *gnu_strerror_text(const char *text, char *buf, size_t len, int err)
{
    (void)buf;
    (void)len;
    (void)err;
    return text;
}

static const char *xsi_strerror_text(int status, char *buf, size_t len, int err)
{
    if (status != 0)
        snprintf(buf, len, "error %d", err);
    return buf;
}

const char *log_strerror(int err)
{
    static _Thread_local char buf[128];
    /* Which strerror_r() the C library declares depends on it and on the
     * feature macros; _Generic picks the matching reader of its result. */
    return _Generic(strerror_r(err, buf, sizeof(buf)),
                    char *: gnu_strerror_text,
                    int: xsi_strerror_text)(strerror_r(err, buf, sizeof(buf)),
                                            buf, sizeof(buf), err);
}

void log_vlimited(int level, struct ratelimit *rl, int64_t now_ms, const char *dropped,
                  const char *fmt, va_list ap)
{
    unsigned n;
    if (!log_ratelimit(rl, now_ms, &n))
        return;
    char line[1024];
    vsnprintf(line, sizeof(line), fmt, ap);
    if (n > 0)
        log_msg(level, "%s (%u %s)", line, n, dropped);
    else
        log_msg(level, "%s", line);
}

void log_limited(int level, struct ratelimit *rl, int64_t now_ms, const char *dropped,
                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vlimited(level, rl, now_ms, dropped, fmt, ap);
    va_end(ap);
}

bool log_ratelimit(struct ratelimit *rl, int64_t now_ms, unsigned *dropped_out)
{
    if (now_ms - rl->window_ms >= 1000) {
        rl->window_ms = now_ms;
        rl->used = 0;
    }
    if (rl->used >= rl->burst) {
        rl->dropped++;
        return false;
    }
    rl->used++;
    if (dropped_out != NULL)
        *dropped_out = rl->dropped;
    rl->dropped = 0;
    return true;
}

void log_access(const char *listener, const char *client, const char *upstream,
                uint64_t in, uint64_t out, int64_t ms, const char *extra,
                const char *reason)
{
    log_info("access listener=%s client=%s upstream=%s in=%llu out=%llu "
             "duration=%lld.%03lld %s reason=%s",
             listener, client, upstream, (unsigned long long)in, (unsigned long long)out,
             (long long)(ms / 1000), (long long)(ms % 1000), extra, reason);
}
