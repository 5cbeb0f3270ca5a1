/* Reading the control socket's command lines byte by byte. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <string.h>

#include "control-line.h"

/* A number macro's value as a string literal, for the refusals. */
#define STR_(x) #x
#define STR(x) STR_(x)

void control_reader_init(struct control_reader *r)
{
    memset(r, 0, sizeof(*r));
}

/* Empties r for the next line. */
static void start_line(struct control_reader *r)
{
    r->argc = 0;
    r->len = 0;
    r->words = 0;
    r->in_word = false;
    r->cr = false;
    r->done = false;
}

/* Refuses the connection's input, saying why. */
static enum control_result refuse(struct control_reader *r, const char *why)
{
    r->bad = true;
    r->why = why;
    return CONTROL_BAD;
}

/* The line's LF: its words become public. */
static enum control_result end_line(struct control_reader *r)
{
    r->line[r->len] = '\0';
    r->argc = r->words;
    r->done = true;
    return CONTROL_LINE;
}

/* Takes one byte of a line. */
static enum control_result take_byte(struct control_reader *r, unsigned char c)
{
    if (r->cr) {
        if (c != '\n')
            return refuse(r, "CR not followed by LF in a command line");
        return end_line(r);
    }
    if (c == '\n')
        return end_line(r);
    if (c == '\r') {
        r->cr = true;
        return CONTROL_NEED_MORE;
    }
    if (c >= 0x80)
        return refuse(r, "non-ASCII byte in a command line");
    if ((c < 0x20 && c != '\t') || c == 0x7f)
        return refuse(r, "control character in a command line");
    if (r->len == CONTROL_LINE_MAX)
        return refuse(r, "command line longer than " STR(CONTROL_LINE_MAX) " bytes");
    if (c == ' ' || c == '\t') {
        /* A blank ends the word before it, as its NUL. */
        r->line[r->len++] = '\0';
        r->in_word = false;
        return CONTROL_NEED_MORE;
    }
    if (!r->in_word) {
        if (r->words == CONTROL_WORDS_MAX)
            return refuse(r,
                          "more than " STR(CONTROL_WORDS_MAX) " words in a command line");
        r->argv[r->words++] = &r->line[r->len];
        r->in_word = true;
    }
    r->line[r->len++] = (char)c;
    return CONTROL_NEED_MORE;
}

size_t control_reader_feed(struct control_reader *r, const char *p, size_t n,
                           enum control_result *res)
{
    if (r->bad) {
        *res = CONTROL_BAD;
        return 0;
    }
    if (r->done)
        start_line(r);
    for (size_t i = 0; i < n; i++) {
        enum control_result got = take_byte(r, (unsigned char)p[i]);
        if (got != CONTROL_NEED_MORE) {
            *res = got;
            return i + 1;
        }
    }
    *res = CONTROL_NEED_MORE;
    return n;
}
