/*
 * A strict, bounded reader of the control socket's command lines: no I/O
 * and no allocation, so that the caller feeds bytes as they arrive and the
 * reader says when a line is complete, with its words, or refused, and why.
 * The daemon's control socket (control.c) and mio-echodctl, which checks a
 * command before it sends it, read lines by the same rules.
 *
 * A line is at most CONTROL_LINE_MAX bytes of printable ASCII (0x20..0x7e)
 * and tabs, ended by LF or CR LF.  Its words are separated by runs of
 * spaces and tabs; blanks at either end do not count; at most
 * CONTROL_WORDS_MAX words.  A blank line is a line of no word.  Refused: a
 * longer line, more words, any other byte (NUL, control bytes, DEL, bytes
 * from 0x80, a CR not followed by LF).  After a refusal the connection is
 * answered r->why and closed: the reader takes nothing more.
 */
#ifndef ECHOD_CONTROL_LINE_H
#define ECHOD_CONTROL_LINE_H

#include <stdbool.h>
#include <stddef.h>

/* Where the daemon's control socket is unless control.path says otherwise,
 * and where mio-echodctl looks unless -S says otherwise. */
#define CONTROL_DEFAULT_PATH "/run/mio-echod/control.sock"

/* Bytes of one command line, without its LF (or CR LF). */
#define CONTROL_LINE_MAX 1024
/* Words of one command line. */
#define CONTROL_WORDS_MAX 8

enum control_result { CONTROL_NEED_MORE, CONTROL_LINE, CONTROL_BAD };

/* A connection's command lines being read.  The public part is valid as
 * noted; the rest is the reader's.  argv points into the reader itself:
 * the struct must not be copied while they are used. */
struct control_reader {
    /* Once CONTROL_LINE, until the next feed: the line's words, each
     * NUL-terminated, non-empty, without blanks. */
    int argc;
    char *argv[CONTROL_WORDS_MAX];
    /* Once CONTROL_BAD: why (a static phrase, to answer the client). */
    const char *why;

    char line[CONTROL_LINE_MAX + 1]; /* the line so far, blanks as NULs */
    size_t len;                      /* bytes of the line so far */
    int words;                       /* words started so far */
    bool in_word;                    /* the last byte was part of a word */
    bool cr;                         /* the last byte was a CR */
    bool done;                       /* a line was returned: the next feed starts anew */
    bool bad;                        /* refused: takes nothing more */
};

/* Makes r ready for a new connection. */
void control_reader_init(struct control_reader *r);

/*
 * Takes bytes from p[0..n), up to and including the end of one line, and
 * returns how many it took; *res says what they made:
 *   CONTROL_NEED_MORE  all n were taken and the line goes on;
 *   CONTROL_LINE       a line ended at the last byte taken: r->argc and
 *                      r->argv hold its words (argc 0 for a blank line),
 *                      valid until the next feed; the bytes after it are
 *                      left for the next feed;
 *   CONTROL_BAD        the line is refused at the last byte taken: answer
 *                      r->why and close.  Later feeds take nothing and say
 *                      CONTROL_BAD again.
 * n may be 0 (nothing is taken).
 */
size_t control_reader_feed(struct control_reader *r, const char *p, size_t n,
                           enum control_result *res);

#endif
