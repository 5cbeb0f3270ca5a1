/* Reading an HTTP/1.x request head byte by byte; the head of a response. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <stdio.h>
#include <string.h>

#include "http.h"

/* Where the reader is in the head. */
enum {
    ST_METHOD,      /* the method token */
    ST_TARGET,      /* after the first space */
    ST_VERSION,     /* after the second space */
    ST_LINE_LF,     /* after the request line's CR */
    ST_FIELD_START, /* at the start of a header line or of the blank line */
    ST_NAME,        /* in a header name */
    ST_VALUE,       /* after the colon */
    ST_FIELD_LF,    /* after a header line's CR */
    ST_END_LF,      /* after the blank line's CR */
    ST_DONE,
    ST_BAD,
};

/* The header fields the reader looks into. */
enum { FIELD_OTHER, FIELD_HOST, FIELD_CONTENT_LENGTH, FIELD_TRANSFER_ENCODING };

/* The characters of a token besides letters and digits (RFC 9110 5.6.2). */
#define TOKEN_PUNCT "!#$%&'*+-.^_`|~"
/* The characters of a Host value besides letters and digits: a reg-name,
 * an IPv4 or a bracketed IPv6 address, and a port (RFC 3986). */
#define HOST_PUNCT "-._~%!$&'()*+,;=:[]"

void http_reader_init(struct http_reader *r)
{
    memset(r, 0, sizeof(*r));
    r->state = ST_METHOD;
    r->method = HTTP_METHOD_OTHER;
}

/* Whether c is an ASCII letter or digit. */
static bool alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Whether c may be part of a token (a method or a header name). */
static bool tchar(unsigned char c)
{
    return alnum(c) || (c != '\0' && strchr(TOKEN_PUNCT, c) != NULL);
}

/* Whether c is visible ASCII, the characters of a request target. */
static bool vchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

/* Whether c is a visible character of a field value (obs-text included). */
static bool field_vchar(unsigned char c)
{
    return vchar(c) || c >= 0x80;
}

/* Refuses the request with `status` and returns HTTP_BAD. */
static enum http_result refuse(struct http_reader *r, int status, const char *why)
{
    r->state = ST_BAD;
    r->status = status;
    r->why = why;
    return HTTP_BAD;
}

/* Names the method once its token has ended; case matters (RFC 9110 9.1). */
static void end_method(struct http_reader *r)
{
    if (r->method_len == 3 && memcmp(r->method_text, "GET", 3) == 0)
        r->method = HTTP_METHOD_GET;
    else if (r->method_len == 4 && memcmp(r->method_text, "HEAD", 4) == 0)
        r->method = HTTP_METHOD_HEAD;
    else
        r->method = HTTP_METHOD_OTHER;
}

/* Checks the version at the request line's CR: "HTTP/" DIGIT "." DIGIT. */
static enum http_result end_version(struct http_reader *r)
{
    const char *v = r->version;
    if (r->version_len != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
        v[6] != '.' || v[7] < '0' || v[7] > '9')
        return refuse(r, 400, "malformed HTTP version");
    r->state = ST_LINE_LF;
    return HTTP_NEED_MORE;
}

/* The request line's LF: the version must be one this reader speaks. */
static enum http_result end_request_line(struct http_reader *r)
{
    if (r->version[5] != '1' || (r->version[7] != '0' && r->version[7] != '1'))
        return refuse(r, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    r->minor = r->version[7] - '0';
    r->state = ST_FIELD_START;
    return HTTP_NEED_MORE;
}

/* One byte of the request line (before its CR). */
static enum http_result request_line_byte(struct http_reader *r, unsigned char c)
{
    if (c == '\n')
        return refuse(r, 400, "bare LF in the request line; lines end with CRLF");
    if (c == '\r' && r->state != ST_VERSION)
        return refuse(r, 400,
                      "request line ends early; expected METHOD /target HTTP/1.1");
    if (c == '\r')
        return end_version(r);
    if (r->line_len == HTTP_LINE_MAX)
        return refuse(r, 414, "request line longer than 2048 bytes");
    r->line_len++;
    switch (r->state) {
    case ST_METHOD:
        if (c == ' ') {
            if (r->method_len == 0)
                return refuse(r, 400, "request line starts with a space");
            end_method(r);
            r->state = ST_TARGET;
        } else if (!tchar(c)) {
            return refuse(r, 400, "invalid character in the method");
        } else if (r->method_len++ < sizeof(r->method_text)) {
            r->method_text[r->method_len - 1] = (char)c;
        }
        return HTTP_NEED_MORE;
    case ST_TARGET:
        if (c == ' ') {
            if (r->target_len == 0)
                return refuse(r, 400, "empty target; expected one space between parts");
            r->target[r->target_len] = '\0';
            r->state = ST_VERSION;
        } else if (!vchar(c)) {
            return refuse(r, 400, "invalid character in the target");
        } else {
            r->target[r->target_len++] = (char)c;
        }
        return HTTP_NEED_MORE;
    default: /* ST_VERSION */
        if (c == ' ' || !vchar(c) || r->version_len == sizeof(r->version))
            return refuse(r, 400, "malformed HTTP version");
        r->version[r->version_len++] = (char)c;
        return HTTP_NEED_MORE;
    }
}

/* Classifies a header name at its colon; refuses what may not come. */
static enum http_result end_name(struct http_reader *r)
{
    static const struct {
        const char *name;
        int field;
    } known[] = {
        {"host", FIELD_HOST},
        {"content-length", FIELD_CONTENT_LENGTH},
        {"transfer-encoding", FIELD_TRANSFER_ENCODING},
    };
    r->field = FIELD_OTHER;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (r->name_len == strlen(known[i].name) &&
            memcmp(r->name, known[i].name, r->name_len) == 0)
            r->field = known[i].field;
    if (r->field == FIELD_TRANSFER_ENCODING)
        return refuse(r, 400, "a request body is not allowed (Transfer-Encoding)");
    if (r->field == FIELD_HOST && r->hosts++ > 0)
        return refuse(r, 400, "more than one Host header");
    r->value_seen = r->value_blank = false;
    r->state = ST_VALUE;
    return HTTP_NEED_MORE;
}

/* One visible byte of a header value. */
static enum http_result value_byte(struct http_reader *r, unsigned char c)
{
    bool inner_blank = r->value_seen && r->value_blank;
    r->value_seen = true;
    r->value_blank = false;
    if (r->field == FIELD_HOST) {
        if (inner_blank || !(alnum(c) || strchr(HOST_PUNCT, c) != NULL))
            return refuse(r, 400, "invalid Host header");
    } else if (r->field == FIELD_CONTENT_LENGTH) {
        if (inner_blank || c < '0' || c > '9')
            return refuse(r, 400, "invalid Content-Length header");
        if (c != '0')
            return refuse(r, 400, "a request body is not allowed (Content-Length)");
    }
    return HTTP_NEED_MORE;
}

/* One byte of a header line, or of the blank line that ends the head.
 * It calls itself once, from ST_FIELD_START into ST_NAME, which does not. */
/* NOLINTNEXTLINE(misc-no-recursion): one level deep, as said above */
static enum http_result field_byte(struct http_reader *r, unsigned char c)
{
    switch (r->state) {
    case ST_FIELD_START:
        if (c == '\r') {
            r->state = ST_END_LF;
        } else if (c == ' ' || c == '\t') {
            return refuse(r, 400,
                          "line folding (obs-fold) or a blank before a header name");
        } else if (c == '\n') {
            return refuse(r, 400, "bare LF in the header; lines end with CRLF");
        } else if (c == ':') {
            return refuse(r, 400, "empty header name");
        } else if (!tchar(c)) {
            return refuse(r, 400, "invalid character in a header name");
        } else {
            r->name_len = 0;
            r->state = ST_NAME;
            return field_byte(r, c);
        }
        return HTTP_NEED_MORE;
    case ST_NAME:
        if (c == ':')
            return end_name(r);
        if (c == ' ' || c == '\t')
            return refuse(r, 400, "blank between a header name and its colon");
        if (c == '\r' || c == '\n')
            return refuse(r, 400, "header line without a colon");
        if (!tchar(c))
            return refuse(r, 400, "invalid character in a header name");
        if (r->name_len < sizeof(r->name))
            r->name[r->name_len] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        r->name_len++;
        return HTTP_NEED_MORE;
    case ST_VALUE:
        if (c == '\r') {
            if (r->field == FIELD_CONTENT_LENGTH && !r->value_seen)
                return refuse(r, 400, "invalid Content-Length header");
            r->state = ST_FIELD_LF;
        } else if (c == '\n') {
            return refuse(r, 400, "bare LF in the header; lines end with CRLF");
        } else if (c == ' ' || c == '\t') {
            r->value_blank = r->value_seen;
        } else if (!field_vchar(c)) {
            return refuse(r, 400, "control character in a header value");
        } else {
            return value_byte(r, c);
        }
        return HTTP_NEED_MORE;
    case ST_FIELD_LF:
        if (c != '\n')
            return refuse(r, 400, "CR without LF in the header");
        r->state = ST_FIELD_START;
        return HTTP_NEED_MORE;
    default: /* ST_END_LF */
        if (c != '\n')
            return refuse(r, 400, "CR without LF at the end of the header");
        if (r->minor == 1 && r->hosts == 0)
            return refuse(r, 400, "HTTP/1.1 request without a Host header");
        if (r->method == HTTP_METHOD_OTHER)
            return refuse(r, 405, "only GET and HEAD are allowed");
        r->state = ST_DONE;
        return HTTP_COMPLETE;
    }
}

/* Takes one byte of the head. */
static enum http_result read_byte(struct http_reader *r, unsigned char c)
{
    switch (r->state) {
    case ST_METHOD:
    case ST_TARGET:
    case ST_VERSION:
        return request_line_byte(r, c);
    case ST_LINE_LF:
        if (c != '\n')
            return refuse(r, 400, "CR without LF in the request line");
        return end_request_line(r);
    default:
        return field_byte(r, c);
    }
}

enum http_result http_read(struct http_reader *r, const void *buf, size_t len,
                           size_t *used)
{
    const unsigned char *p = buf;
    *used = 0;
    if (r->state == ST_DONE)
        return HTTP_COMPLETE;
    if (r->state == ST_BAD)
        return HTTP_BAD;
    size_t i = 0;
    while (i < len) {
        enum http_result res = read_byte(r, p[i++]);
        r->total++;
        if (res == HTTP_NEED_MORE && r->total == HTTP_HEAD_MAX)
            res = refuse(r, 431, "request header longer than 8192 bytes");
        if (res != HTTP_NEED_MORE) {
            *used = i;
            return res;
        }
    }
    *used = i;
    return HTTP_NEED_MORE;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

int http_response_head(char *buf, size_t size, int status, const char *content_type,
                       size_t content_length, time_t now)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
        tm.tm_mon < 0 || tm.tm_mon > 11)
        return -1;
    /* The Date is IMF-fixdate (RFC 9110 5.6.7), in English whatever the
     * locale. */
    int n = snprintf(buf, size,
                     "HTTP/1.1 %d %s\r\n"
                     "Date: %s, %02d %s %04lld %02d:%02d:%02d GMT\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "Connection: close\r\n"
                     "\r\n",
                     status, http_status_text(status), days[tm.tm_wday], tm.tm_mday,
                     months[tm.tm_mon], (long long)tm.tm_year + 1900, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, content_type, content_length,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "");
    return n < 0 || (size_t)n >= size ? -1 : n;
}
