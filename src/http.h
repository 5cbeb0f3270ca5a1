/*
 * A strict reader for the head of an HTTP/1.0 or HTTP/1.1 request, and the
 * head of the one response the metrics listener sends: no I/O and no
 * allocation, so that the caller feeds bytes as they arrive and the reader
 * says whether the head is complete, needs more, or is refused and with
 * which status.
 *
 * Accepted: "METHOD SP TARGET SP HTTP/1.x CRLF", then header lines
 * "Name: value CRLF" with token names, then CRLF.  Refused (400): bare LF,
 * CR without LF, more than one space, a line folded onto the one before
 * (obs-fold), space before the colon, control bytes, a request body
 * (Content-Length other than 0, or any Transfer-Encoding), HTTP/1.1
 * without Host, more than one Host.  A request line longer than
 * HTTP_LINE_MAX is 414, a head longer than HTTP_HEAD_MAX 431, a
 * well-formed version other than 1.0 and 1.1 505, a method other than GET
 * and HEAD 405.  The target is not judged: the caller answers 404 for one
 * it does not serve.
 */
#ifndef ECHOD_HTTP_H
#define ECHOD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* The whole request head, request line and blank line included. */
#define HTTP_HEAD_MAX 8192
/* The request line, without its CRLF. */
#define HTTP_LINE_MAX 2048
/* Header names kept for matching: longer ones are none of ours. */
#define HTTP_NAME_KEEP 24

enum http_result { HTTP_NEED_MORE, HTTP_COMPLETE, HTTP_BAD };

enum http_method { HTTP_METHOD_OTHER, HTTP_METHOD_GET, HTTP_METHOD_HEAD };

/* A request head being read.  The public part is valid as noted; the rest
 * is the reader's. */
struct http_reader {
    /* Once the method is read (HTTP_METHOD_OTHER before). */
    enum http_method method;
    /* Once HTTP_COMPLETE: the target as sent, and the 1 or 0 of HTTP/1.x. */
    char target[HTTP_LINE_MAX + 1];
    int minor;
    /* Once HTTP_BAD: 400, 405, 414, 431 or 505, and why (a static
     * phrase, for the body of the answer). */
    int status;
    const char *why;
    /* Bytes of the head taken so far: below HTTP_HEAD_MAX while more are
     * needed, so a caller that reads at most HTTP_HEAD_MAX - total bytes
     * never reads past the bound. */
    size_t total;

    int state;
    size_t line_len, target_len, version_len, method_len, name_len;
    char method_text[5];
    char version[8];
    char name[HTTP_NAME_KEEP];
    int field;        /* which header is being read */
    bool value_seen;  /* a non-blank byte of the value came */
    bool value_blank; /* blanks came after it */
    unsigned hosts;
};

/* Makes r ready for a new request. */
void http_reader_init(struct http_reader *r);

/*
 * Feeds buf[0..len) to r, reading nothing past len.  Returns HTTP_NEED_MORE
 * when all of it was taken and the head is not complete yet, HTTP_COMPLETE
 * when the head ended (the bytes after it are left alone), HTTP_BAD when it
 * is refused (at the first byte that makes it so).  *used gets the bytes
 * taken, the last one included.  Once complete or refused, r stays so and
 * takes nothing more.
 */
enum http_result http_read(struct http_reader *r, const void *buf, size_t len,
                           size_t *used);

/* The reason phrase of a status this code sends ("Not Found"), or
 * "Unknown". */
const char *http_status_text(int status);

/*
 * Writes the head of a response into buf: status line, Date (of `now`),
 * Content-Type, Content-Length, "Connection: close", and "Allow: GET, HEAD"
 * for 405.  Returns its length, or -1 when it does not fit (buf then holds
 * nothing useful).
 */
int http_response_head(char *buf, size_t size, int status, const char *content_type,
                       size_t content_length, time_t now);

#endif
