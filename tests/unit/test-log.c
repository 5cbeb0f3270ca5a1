/* The log's lines: an access line in text and in JSON from one list of
 * fields, the escapes of each format, messages, and lines cut to fit. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include <cmocka.h>

#include "log.h"
#include "../utf8-valid.h"

/* ---- a checker of flat JSON objects, independent of log.c ----------------- */

/* Reads a JSON string at *p (RFC 8259: no raw control byte, only the
 * escapes it defines); moves *p past it. */
static bool json_string(const char **p)
{
    const char *s = *p;
    if (*s++ != '"')
        return false;
    while (*s != '"') {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20) /* the NUL too: the string never ended */
            return false;
        if (c != '\\') {
            s++;
            continue;
        }
        s++;
        if (*s == 'u') {
            for (int i = 1; i <= 4; i++)
                if (!isxdigit((unsigned char)s[i]))
                    return false;
            s += 5;
        } else if (*s != '\0' && strchr("\"\\/bfnrt", *s) != NULL) {
            s++;
        } else {
            return false;
        }
    }
    *p = s + 1;
    return true;
}

/* Reads a JSON number of the forms the log writes (digits, a fraction). */
static bool json_number(const char **p)
{
    const char *s = *p;
    if (!isdigit((unsigned char)*s) || (s[0] == '0' && isdigit((unsigned char)s[1])))
        return false;
    while (isdigit((unsigned char)*s))
        s++;
    if (*s == '.') {
        if (!isdigit((unsigned char)*++s))
            return false;
        while (isdigit((unsigned char)*s))
            s++;
    }
    *p = s;
    return true;
}

/* Whether s is one JSON object of strings, numbers and nulls, alone, and
 * valid UTF-8. */
static bool flat_json(const char *s)
{
    if (!valid_utf8(s) || *s++ != '{')
        return false;
    if (*s == '}')
        return s[1] == '\0';
    for (;;) {
        if (!json_string(&s) || *s++ != ':')
            return false;
        if (*s == '"') {
            if (!json_string(&s))
                return false;
        } else if (strncmp(s, "null", 4) == 0) {
            s += 4;
        } else if (!json_number(&s)) {
            return false;
        }
        if (*s == '}')
            return s[1] == '\0';
        if (*s++ != ',')
            return false;
    }
}

/* ---- lines ------------------------------------------------------------------ */

/* An access line's fields as log_access() lists them, with a TCP
 * connection's extra fields. */
static size_t tcp_fields(struct log_field *f, const char *upstream, uint64_t in,
                         uint64_t out, int64_t ms, const char *tls, const char *sni,
                         const char *reason)
{
    size_t n = 0;
    f[n++] = LOG_TEXT("listener", "echo");
    f[n++] = LOG_TEXT("client", "127.0.0.1:41234");
    f[n++] = LOG_TEXT("upstream", upstream);
    f[n++] = LOG_COUNT("in", in);
    f[n++] = LOG_COUNT("out", out);
    f[n++] = LOG_MS("duration", ms);
    f[n++] = LOG_TEXT("tls", tls);
    f[n++] = LOG_TEXT("sni", sni);
    f[n++] = LOG_TEXT("reason", reason);
    return n;
}

/* The same fields make the text line of old and its JSON object. */
static void both_formats(void **state)
{
    (void)state;
    struct log_field f[16];
    char buf[1024];
    size_t n = tcp_fields(f, NULL, 6, 6, 1, NULL, NULL, "done");
    size_t len = log_format_access(LOG_FORMAT_TEXT, buf, sizeof(buf), f, n);
    assert_string_equal(buf,
                        "access listener=echo client=127.0.0.1:41234 upstream=- in=6 "
                        "out=6 duration=0.001 tls=- sni=- reason=done");
    assert_int_equal(len, strlen(buf));
    len = log_format_access(LOG_FORMAT_JSON, buf, sizeof(buf), f, n);
    assert_string_equal(buf,
                        "{\"level\":\"info\",\"type\":\"access\",\"listener\":\"echo\","
                        "\"client\":\"127.0.0.1:41234\",\"upstream\":null,\"in\":6,"
                        "\"out\":6,\"duration\":0.001,\"tls\":null,\"sni\":null,"
                        "\"reason\":\"done\"}");
    assert_int_equal(len, strlen(buf));
    assert_true(flat_json(buf));

    n = tcp_fields(f, "127.0.0.1:6379", UINT64_MAX, 0, 3723456,
                   "TLSv1.3/TLS_AES_128_GCM_SHA256", "a.example", "interim");
    log_format_access(LOG_FORMAT_TEXT, buf, sizeof(buf), f, n);
    assert_string_equal(buf, "access listener=echo client=127.0.0.1:41234 "
                             "upstream=127.0.0.1:6379 in=18446744073709551615 out=0 "
                             "duration=3723.456 tls=TLSv1.3/TLS_AES_128_GCM_SHA256 "
                             "sni=a.example reason=interim");
    log_format_access(LOG_FORMAT_JSON, buf, sizeof(buf), f, n);
    assert_string_equal(buf,
                        "{\"level\":\"info\",\"type\":\"access\",\"listener\":\"echo\","
                        "\"client\":\"127.0.0.1:41234\",\"upstream\":\"127.0.0.1:6379\","
                        "\"in\":18446744073709551615,\"out\":0,\"duration\":3723.456,"
                        "\"tls\":\"TLSv1.3/TLS_AES_128_GCM_SHA256\","
                        "\"sni\":\"a.example\",\"reason\":\"interim\"}");
    assert_true(flat_json(buf));
}

/* A value's bytes as each format escapes them: a quote, a backslash,
 * control bytes, DEL, a space, UTF-8 kept, bytes that are not UTF-8 (a
 * stray byte, a sequence cut short, an overlong form). */
static void escapes(void **state)
{
    (void)state;
    const char *sni = "a\"b\\c\x01\n\x1f\x7f d\xc3\xa9\xe2\x82\xac\xff\xe2\x82\xc0\x80z";
    struct log_field f[] = {LOG_TEXT("sni", sni)};
    char buf[512];
    log_format_access(LOG_FORMAT_JSON, buf, sizeof(buf), f, 1);
    assert_string_equal(buf,
                        "{\"level\":\"info\",\"type\":\"access\",\"sni\":"
                        "\"a\\\"b\\\\c\\u0001\\u000a\\u001f\\u007f d\xc3\xa9\xe2\x82\xac"
                        "\\u00ff\\u00e2\\u0082\\u00c0\\u0080z\"}");
    assert_true(flat_json(buf));
    log_format_access(LOG_FORMAT_TEXT, buf, sizeof(buf), f, 1);
    assert_string_equal(buf,
                        "access sni=a\"b\\c\\x01\\x0a\\x1f\\x7f\\x20d\xc3\xa9\xe2\x82\xac"
                        "\\xff\\xe2\\x82\\xc0\\x80z");
    /* An empty text is a value, not an absent one. */
    f[0] = LOG_TEXT("sni", "");
    log_format_access(LOG_FORMAT_JSON, buf, sizeof(buf), f, 1);
    assert_string_equal(buf, "{\"level\":\"info\",\"type\":\"access\",\"sni\":\"\"}");
    log_format_access(LOG_FORMAT_TEXT, buf, sizeof(buf), f, 1);
    assert_string_equal(buf, "access sni=");
}

/* Messages: as they are in text, an object with the level in JSON. */
static void messages(void **state)
{
    (void)state;
    char buf[256];
    const char *msg = "listener a: \"x\\y\"\ttab \xc3\xa9\x80";
    size_t len = log_format_message(LOG_FORMAT_TEXT, LOG_WARNING, buf, sizeof(buf), msg);
    assert_string_equal(buf, msg);
    assert_int_equal(len, strlen(msg));
    log_format_message(LOG_FORMAT_JSON, LOG_WARNING, buf, sizeof(buf), msg);
    assert_string_equal(buf, "{\"level\":\"warning\",\"message\":\"listener a: "
                             "\\\"x\\\\y\\\"\\u0009tab \xc3\xa9\\u0080\"}");
    assert_true(flat_json(buf));
    const int levels[] = {LOG_ERR, LOG_NOTICE, LOG_INFO, LOG_DEBUG};
    const char *const names[] = {"error", "notice", "info", "debug"};
    for (size_t i = 0; i < 4; i++) {
        char want[64];
        snprintf(want, sizeof(want), "{\"level\":\"%s\",\"message\":\"m\"}", names[i]);
        log_format_message(LOG_FORMAT_JSON, levels[i], buf, sizeof(buf), "m");
        assert_string_equal(buf, want);
    }
}

/* Whether every "\x" in a text line is followed by two hex digits. */
static bool whole_text_escapes(const char *s)
{
    for (const char *p = strstr(s, "\\x"); p != NULL; p = strstr(p + 2, "\\x"))
        if (!isxdigit((unsigned char)p[2]) || !isxdigit((unsigned char)p[3]))
            return false;
    return true;
}

/* In a buffer of any size, a line is still one whole object (or a text
 * line without half an escape), valid UTF-8, with its fields whole or
 * absent; texts are cut between two characters. */
static void cut_to_fit(void **state)
{
    (void)state;
    char sni[256];
    for (size_t i = 0; i < sizeof(sni) - 1; i++)
        sni[i] = "\"\\\x01\xc3\xa9x"[i % 6]; /* a quote, a backslash, ... */
    sni[sizeof(sni) - 1] = '\0';
    struct log_field f[16];
    size_t n = tcp_fields(f, "127.0.0.1:6379", 123456, 654321, 2500, "TLSv1.3/X", sni,
                          "done");
    char full[4096], buf[4096];
    size_t whole = log_format_access(LOG_FORMAT_JSON, full, sizeof(full), f, n);
    assert_true(flat_json(full));
    for (size_t len = 64; len <= whole + 4; len++) {
        memset(buf, 0x55, sizeof(buf));
        size_t got = log_format_access(LOG_FORMAT_JSON, buf, len, f, n);
        assert_true(got < len);
        assert_int_equal(buf[got], '\0');
        assert_int_equal((unsigned char)buf[len], 0x55); /* nothing past the buffer */
        if (!flat_json(buf))
            fail_msg("not one JSON object in %zu bytes: %s", len, buf);
        if (len > whole)
            assert_string_equal(buf, full);
        /* Numbers whole or absent. */
        const char *in = strstr(buf, "\"in\":");
        if (in != NULL)
            assert_true(strncmp(in, "\"in\":123456,", 12) == 0 ||
                        strcmp(in, "\"in\":123456}") == 0);
        got = log_format_access(LOG_FORMAT_TEXT, buf, len, f, n);
        assert_true(got < len);
        assert_true(valid_utf8(buf));
        assert_true(whole_text_escapes(buf));
    }
    /* A message cut within its text is closed all the same. */
    for (size_t len = 64; len < 300; len++) {
        log_format_message(LOG_FORMAT_JSON, LOG_ERR, buf, len, sni);
        if (!flat_json(buf))
            fail_msg("not one JSON object in %zu bytes: %s", len, buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(both_formats),
        cmocka_unit_test(escapes),
        cmocka_unit_test(messages),
        cmocka_unit_test(cut_to_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
