/* Logging to stderr or syslog, as text or JSON lines, and rate limits for
 * floods. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "utf8.h"

/* Room for a line with its prefix: an access line's longest fields (two
 * addresses of ADDR_STRLEN, a server name of 255 bytes, each byte of which
 * may take six in JSON) fit; what does not is cut. */
#define LOG_LINE_MAX 4096

/* What the messages of log_msg() are cut to before they are written. */
#define LOG_MESSAGE_MAX 2048

static atomic_int max_level = LOG_INFO;
static atomic_int line_format = LOG_FORMAT_TEXT;
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

void log_set_format(enum log_format format)
{
    atomic_store(&line_format, (int)format);
}

bool log_enabled(int level)
{
    return level <= atomic_load_explicit(&max_level, memory_order_relaxed);
}

static const char *const level_names[] = {"emerg",   "alert",  "crit", "error",
                                          "warning", "notice", "info", "debug"};

/* ---- lines ---------------------------------------------------------------- */

/*
 * A line being written into a buffer of fixed size.  The bytes that close
 * it (a cut JSON string's quote, the object's brace, the NUL) have room
 * kept after `end`: what does not fit before it is left out, a field or a
 * character at a time, never half of one.
 */
struct out {
    char *buf;
    size_t len, end;
    bool full; /* something was left out: nothing more goes in */
};

/* The room kept for the closing bytes. */
#define OUT_CLOSING 3

/* An empty line in buf[0..size), size > OUT_CLOSING. */
static struct out out_start(char *buf, size_t size)
{
    return (struct out){.buf = buf, .end = size - OUT_CLOSING};
}

/* Appends s[0..n), all or none; false (and full from now on) when it does
 * not fit. */
static bool out_put(struct out *o, const char *s, size_t n)
{
    if (o->full || n > o->end - o->len) {
        o->full = true;
        return false;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    return true;
}

/* Appends a closing byte: a cut string's quote or the object's brace,
 * each at most once a line, so that with the NUL they take no more than
 * the room kept. */
static void out_close(struct out *o, char c)
{
    o->buf[o->len++] = c;
}

/* Ends the line with its NUL; returns its length. */
static size_t out_end(struct out *o)
{
    o->buf[o->len] = '\0';
    return o->len;
}

/* Appends s, escaped for a text value or a JSON string, until a character
 * does not fit. */
static void out_escaped(struct out *o, const char *s, enum log_format format)
{
    while (*s != '\0') {
        unsigned char c = (unsigned char)*s;
        size_t n = utf8_len(s);
        char esc[8];
        const char *put = s;
        size_t put_len = n;
        bool byte = n == 0 || c < 0x20 || c == 0x7f; /* written by its value */
        if (format == LOG_FORMAT_TEXT && (byte || c == ' ')) {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            put = esc;
            put_len = 4;
        } else if (format == LOG_FORMAT_JSON && byte) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put = esc;
            put_len = 6;
        } else if (format == LOG_FORMAT_JSON && (c == '"' || c == '\\')) {
            esc[0] = '\\';
            esc[1] = (char)c;
            put = esc;
            put_len = 2;
        }
        if (!out_put(o, put, put_len))
            return;
        s += n == 0 ? 1 : n;
    }
}

/* Appends a JSON string: cut when it does not fit, but always closed. */
static void out_json_string(struct out *o, const char *s)
{
    out_escaped(o, s, LOG_FORMAT_JSON);
    if (!out_put(o, "\"", 1))
        out_close(o, '"');
}

/* Appends one field, or none of it when its key or its number does not
 * fit (a text is cut instead). */
static void out_field(struct out *o, enum log_format format, const struct log_field *f)
{
    if (o->full)
        return;
    size_t mark = o->len;
    bool json = format == LOG_FORMAT_JSON;
    char key[80];
    int k = json ? snprintf(key, sizeof(key), ",\"%s\":", f->key)
                 : snprintf(key, sizeof(key), " %s=", f->key);
    char num[48];
    int m = 0;
    if (f->kind == LOG_KIND_COUNT) {
        m = snprintf(num, sizeof(num), "%llu", (unsigned long long)f->v.count);
    } else if (f->kind == LOG_KIND_MS) {
        long long ms = f->v.ms > 0 ? (long long)f->v.ms : 0;
        m = snprintf(num, sizeof(num), "%lld.%03lld", ms / 1000, ms % 1000);
    } else if (f->v.text == NULL) {
        m = snprintf(num, sizeof(num), "%s", json ? "null" : "-");
    } else { /* a text: its key, then as much of it as fits */
        if (k > 0 && out_put(o, key, (size_t)k) && (!json || out_put(o, "\"", 1))) {
            if (json)
                out_json_string(o, f->v.text);
            else
                out_escaped(o, f->v.text, format);
            return;
        }
        o->len = mark;
        return;
    }
    if (k <= 0 || m <= 0 || !out_put(o, key, (size_t)k) || !out_put(o, num, (size_t)m))
        o->len = mark;
}

size_t log_format_access(enum log_format format, char *buf, size_t len,
                         const struct log_field *fields, size_t n)
{
    struct out o = out_start(buf, len);
    bool json = format == LOG_FORMAT_JSON;
    if (json)
        (void)out_put(&o, "{\"level\":\"info\",\"type\":\"access\"",
                      strlen("{\"level\":\"info\",\"type\":\"access\""));
    else
        (void)out_put(&o, "access", strlen("access"));
    for (size_t i = 0; i < n; i++)
        out_field(&o, format, &fields[i]);
    if (json)
        out_close(&o, '}');
    return out_end(&o);
}

size_t log_format_message(enum log_format format, int level, char *buf, size_t len,
                          const char *msg)
{
    struct out o = out_start(buf, len);
    if (format == LOG_FORMAT_TEXT) {
        size_t n = strlen(msg);
        if (n > o.end)
            n = o.end; /* as vsnprintf() cuts */
        (void)out_put(&o, msg, n);
        return out_end(&o);
    }
    char head[48];
    int k = snprintf(head, sizeof(head), "{\"level\":\"%s\",\"message\":\"",
                     level_names[level & 7]);
    if (k > 0 && out_put(&o, head, (size_t)k)) {
        out_json_string(&o, msg);
        out_close(&o, '}');
    }
    return out_end(&o);
}

/* ---- writing ---------------------------------------------------------------- */

/* What a line on stderr starts with: "<N>" for journald, else the level in
 * text ("mio-echod: info: "), nothing in JSON (the object has it). */
static size_t line_prefix(char *buf, size_t len, int level, enum log_format format)
{
    int n = 0;
    if (use_syslog)
        return 0;
    if (level_prefix)
        n = snprintf(buf, len, "<%d>", level);
    else if (format == LOG_FORMAT_TEXT)
        n = snprintf(buf, len, "mio-echod: %s: ", level_names[level & 7]);
    return n > 0 ? (size_t)n : 0;
}

/* Writes a line: line[0..len) is its prefix (line_prefix()) and its body,
 * NUL-terminated with room for one more byte, the newline. */
static void emit(int level, char *line, size_t len, enum log_format format)
{
    if (use_syslog) {
        syslog(level, "%s", line);
        if (level <= LOG_WARNING && atomic_load(&early_stderr)) {
            if (format == LOG_FORMAT_JSON)
                dprintf(STDERR_FILENO, "%s\n", line);
            else
                dprintf(STDERR_FILENO, "mio-echod: %s: %s\n",
                        level <= LOG_ERR ? "error" : "warning", line);
        }
        return;
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere left to report a failing stderr */
}

/* The last error message, for log_last_error(). */
static pthread_mutex_t last_error_mu = PTHREAD_MUTEX_INITIALIZER;
static char last_error[512];

void log_msg(int level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    enum log_format format = (enum log_format)atomic_load(&line_format);
    char msg[LOG_MESSAGE_MAX], line[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (level <= LOG_ERR) {
        pthread_mutex_lock(&last_error_mu);
        size_t n = strnlen(msg, sizeof(last_error) - 1); /* cut: it is a summary */
        memcpy(last_error, msg, n);
        last_error[n] = '\0';
        pthread_mutex_unlock(&last_error_mu);
    }
    size_t n = line_prefix(line, sizeof(line), level, format);
    n += log_format_message(format, level, line + n, sizeof(line) - n - 1, msg);
    emit(level, line, n, format);
}

void log_last_error(char *buf, size_t len)
{
    pthread_mutex_lock(&last_error_mu);
    snprintf(buf, len, "%s", last_error);
    pthread_mutex_unlock(&last_error_mu);
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
                uint64_t in, uint64_t out, int64_t ms, const struct log_field *extra,
                size_t nextra, const char *reason)
{
    if (!log_enabled(LOG_INFO))
        return;
    struct log_field fields[7 + LOG_ACCESS_EXTRA_MAX];
    size_t n = 0;
    fields[n++] = LOG_TEXT("listener", listener);
    fields[n++] = LOG_TEXT("client", client);
    fields[n++] = LOG_TEXT("upstream", upstream);
    fields[n++] = LOG_COUNT("in", in);
    fields[n++] = LOG_COUNT("out", out);
    fields[n++] = LOG_MS("duration", ms);
    for (size_t i = 0; i < nextra && i < LOG_ACCESS_EXTRA_MAX; i++)
        fields[n++] = extra[i];
    fields[n++] = LOG_TEXT("reason", reason);
    enum log_format format = (enum log_format)atomic_load(&line_format);
    char line[LOG_LINE_MAX];
    size_t len = line_prefix(line, sizeof(line), LOG_INFO, format);
    len += log_format_access(format, line + len, sizeof(line) - len - 1, fields, n);
    emit(LOG_INFO, line, len, format);
}
