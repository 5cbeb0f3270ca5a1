/*
 * The control socket's command-line reader (src/control-line.c): the words
 * of every line it accepts, and every refusal, with its reason and at the
 * byte that decides it, the same whether the bytes come at once, one by
 * one or split anywhere; the bounds exactly (1024 bytes, 8 words); and
 * that it stays refused.
 *
 * Every feed is from a heap copy of exactly the bytes given, so that
 * valgrind and ASan catch a read past n.  The fuzzing seeds in
 * tests/fuzz-corpus/control/ say what they are.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control-line.h"
#include "seeds.h"

#define MAX_LINES 16
/* A line's words as "argc:w1|w2|...". */
#define SHOWN_MAX (CONTROL_LINE_MAX + 16)

/* What the reader made of an input. */
struct outcome {
    int nlines;
    char lines[MAX_LINES][SHOWN_MAX];
    enum control_result last; /* of the last feed */
    size_t taken;             /* bytes taken in all */
    const char *why;          /* once refused */
};

/* Writes r's words as "argc:w1|w2" into out. */
static void show_words(const struct control_reader *r, char *out)
{
    size_t at = (size_t)snprintf(out, SHOWN_MAX, "%d:", r->argc);
    for (int i = 0; i < r->argc; i++) {
        assert_non_null(r->argv[i]);
        size_t k = strlen(r->argv[i]);
        assert_true(k > 0);
        assert_true(at + k + 2 < SHOWN_MAX);
        if (i > 0)
            out[at++] = '|';
        memcpy(out + at, r->argv[i], k);
        at += k;
    }
    out[at] = '\0';
}

/* Feeds in[0..len) in pieces of `chunk` bytes (0: whole), each from a heap
 * copy of exactly its bytes, taking every line until a refusal; the second
 * piece starts at `cut` when chunk is (size_t)-1. */
static void read_input(const char *in, size_t len, size_t chunk, size_t cut,
                       struct outcome *o)
{
    static struct control_reader r;
    control_reader_init(&r);
    memset(o, 0, sizeof(*o));
    o->last = CONTROL_NEED_MORE;
    size_t off = 0;
    while (off < len) {
        size_t n = len - off;
        if (chunk == (size_t)-1)
            n = off < cut ? cut - off : len - off;
        else if (chunk > 0 && n > chunk)
            n = chunk;
        char *piece = malloc(n);
        assert_non_null(piece);
        memcpy(piece, in + off, n);
        size_t pos = 0;
        /* Lines within the piece, each feed from where the last stopped. */
        for (int guard = 0; guard <= (int)n + 1; guard++) {
            enum control_result res;
            size_t took = control_reader_feed(&r, piece + pos, n - pos, &res);
            assert_true(took <= n - pos);
            o->last = res;
            o->taken += took;
            pos += took;
            if (res == CONTROL_NEED_MORE) {
                assert_int_equal(pos, n);
                break;
            }
            assert_true(took > 0);
            if (res == CONTROL_BAD) {
                o->why = r.why;
                free(piece);
                return;
            }
            assert_true(o->nlines < MAX_LINES);
            assert_int_equal(piece[pos - 1], '\n');
            show_words(&r, o->lines[o->nlines++]);
            if (pos == n)
                break;
        }
        free(piece);
        off += n;
    }
}

/* The outcome of in[0..len) fed whole; the test fails unless it is the
 * same fed in pieces of a few sizes and, for short inputs, in two pieces
 * cut at every place. */
static void read_every_way(const char *in, size_t len, struct outcome *o)
{
    static const size_t chunks[] = {1, 2, 3, 7, 64, 1000};
    static struct outcome other;
    read_input(in, len, 0, 0, o);
    size_t nchunks = sizeof(chunks) / sizeof(chunks[0]);
    size_t ncuts = len <= 300 && len > 1 ? len - 1 : 0;
    for (size_t i = 0; i < nchunks + ncuts; i++) {
        size_t chunk = i < nchunks ? chunks[i] : (size_t)-1;
        size_t cut = i < nchunks ? 0 : i - nchunks + 1;
        read_input(in, len, chunk, cut, &other);
        if (other.last != o->last || other.taken != o->taken ||
            other.nlines != o->nlines || other.why != o->why)
            fail_msg(
                "chunk %zu cut %zu: result %d taken %zu lines %d (%s); whole: %d %zu "
                "%d (%s)",
                chunk, cut, (int)other.last, other.taken, other.nlines,
                other.why ? other.why : "-", (int)o->last, o->taken, o->nlines,
                o->why ? o->why : "-");
        for (int k = 0; k < o->nlines; k++)
            assert_string_equal(other.lines[k], o->lines[k]);
    }
}

/* in (a C string) must read as exactly the lines given ("argc:w1|w2",
 * NULL-terminated), every byte taken, nothing pending. */
static void expect_lines(const char *in, ...)
{
    struct outcome o;
    size_t len = strlen(in);
    read_every_way(in, len, &o);
    if (o.last != CONTROL_LINE)
        fail_msg("\"%s\": last result %d (%s)", in, (int)o.last, o.why ? o.why : "-");
    assert_int_equal(o.taken, len);
    va_list ap;
    va_start(ap, in);
    int k = 0;
    for (const char *want = va_arg(ap, const char *); want != NULL;
         want = va_arg(ap, const char *), k++) {
        if (k >= o.nlines)
            fail_msg("\"%s\": %d lines, expected more (%s)", in, o.nlines, want);
        assert_string_equal(o.lines[k], want);
    }
    va_end(ap);
    assert_int_equal(o.nlines, k);
}

/* in[0..len) must be refused for `why` (a part of the reason) at byte
 * `at` (1-based: the bytes taken in all), after `lines` good lines. */
static void expect_bad(const char *in, size_t len, size_t at, int lines, const char *why)
{
    struct outcome o;
    read_every_way(in, len, &o);
    if (o.last != CONTROL_BAD)
        fail_msg("input of %zu bytes: result %d, expected refused (%s)", len, (int)o.last,
                 why);
    if (strstr(o.why, why) == NULL)
        fail_msg("refused for \"%s\", expected \"%s\"", o.why, why);
    assert_int_equal(o.taken, at);
    assert_int_equal(o.nlines, lines);
}

/* ---- lines and words --------------------------------------------------- */

static void plain_lines(void **state)
{
    (void)state;
    expect_lines("show listeners\n", "2:show|listeners", NULL);
    expect_lines("help\n", "1:help", NULL);
    expect_lines("set weight relay 10.0.0.1:6379 5\n",
                 "5:set|weight|relay|10.0.0.1:6379|5", NULL);
    expect_lines("disable upstream relay [::1]:7000\n",
                 "4:disable|upstream|relay|[::1]:7000", NULL);
    /* Any printable byte is part of a word: the server judges the words. */
    expect_lines("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ AZaz09\n",
                 "2:!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~|AZaz09", NULL);
}

static void blanks(void **state)
{
    (void)state;
    expect_lines("  show   upstreams\t\trelay  \n", "3:show|upstreams|relay", NULL);
    expect_lines("\tshow \t listeners\t\n", "2:show|listeners", NULL);
    expect_lines("show listeners \r\n", "2:show|listeners", NULL);
}

static void blank_lines(void **state)
{
    (void)state;
    expect_lines("\n", "0:", NULL);
    expect_lines("\r\n", "0:", NULL);
    expect_lines("   \t \n", "0:", NULL);
    expect_lines("\n\nhelp\n \n", "0:", "0:", "1:help", "0:", NULL);
}

static void crlf(void **state)
{
    (void)state;
    expect_lines("show stats\r\n", "2:show|stats", NULL);
    expect_lines("show stats\r\nreload\n", "2:show|stats", "1:reload", NULL);
}

/* One line at a time: the bytes after a line are left for the next feed,
 * and the words stay where they are until it. */
static void one_line_per_feed(void **state)
{
    (void)state;
    struct control_reader r;
    enum control_result res;
    const char in[] = "show listeners\nkill connection 17\npartial";
    control_reader_init(&r);
    size_t took = control_reader_feed(&r, in, sizeof(in) - 1, &res);
    assert_int_equal(res, CONTROL_LINE);
    assert_int_equal(took, 15);
    assert_int_equal(r.argc, 2);
    assert_string_equal(r.argv[0], "show");
    assert_string_equal(r.argv[1], "listeners");
    size_t took2 = control_reader_feed(&r, in + took, sizeof(in) - 1 - took, &res);
    assert_int_equal(res, CONTROL_LINE);
    assert_int_equal(took2, 19);
    assert_int_equal(r.argc, 3);
    assert_string_equal(r.argv[2], "17");
    took += took2;
    took2 = control_reader_feed(&r, in + took, sizeof(in) - 1 - took, &res);
    assert_int_equal(res, CONTROL_NEED_MORE);
    assert_int_equal(took2, 7);
    took2 = control_reader_feed(&r, " more\n", 6, &res);
    assert_int_equal(res, CONTROL_LINE);
    assert_int_equal(took2, 6);
    assert_int_equal(r.argc, 2);
    assert_string_equal(r.argv[0], "partial");
    assert_string_equal(r.argv[1], "more");
}

/* Nothing fed is nothing taken, before a line, within one, after one. */
static void empty_feeds(void **state)
{
    (void)state;
    struct control_reader r;
    enum control_result res = CONTROL_BAD;
    control_reader_init(&r);
    assert_int_equal(control_reader_feed(&r, "", 0, &res), 0);
    assert_int_equal(res, CONTROL_NEED_MORE);
    assert_int_equal(control_reader_feed(&r, "he", 2, &res), 2);
    assert_int_equal(control_reader_feed(&r, "", 0, &res), 0);
    assert_int_equal(res, CONTROL_NEED_MORE);
    assert_int_equal(control_reader_feed(&r, "lp\n", 3, &res), 3);
    assert_int_equal(res, CONTROL_LINE);
    assert_int_equal(r.argc, 1);
    assert_string_equal(r.argv[0], "help");
    assert_int_equal(control_reader_feed(&r, "", 0, &res), 0);
    assert_int_equal(res, CONTROL_NEED_MORE);
}

/* ---- the bounds ---------------------------------------------------------- */

/* Writes a line of `len` bytes into buf, two words of "x"s, then the
 * ending; returns its length with the ending. */
static size_t long_line(char *buf, size_t len, const char *ending)
{
    size_t k = strlen(ending);
    memset(buf, 'x', len);
    buf[3] = ' ';
    memcpy(buf + len, ending, k + 1);
    return len + k;
}

static void line_bound(void **state)
{
    (void)state;
    static char buf[3 * CONTROL_LINE_MAX];
    struct outcome o;

    /* 1024 bytes: a line, LF or CR LF. */
    size_t n = long_line(buf, CONTROL_LINE_MAX, "\n");
    read_every_way(buf, n, &o);
    assert_int_equal(o.last, CONTROL_LINE);
    assert_int_equal(o.taken, n);
    assert_int_equal(o.nlines, 1);
    assert_int_equal(strlen(o.lines[0]), 2 + CONTROL_LINE_MAX);
    n = long_line(buf, CONTROL_LINE_MAX, "\r\n");
    read_every_way(buf, n, &o);
    assert_int_equal(o.last, CONTROL_LINE);
    assert_int_equal(o.taken, n);

    /* 1025: refused at byte 1025, whatever comes after. */
    n = long_line(buf, CONTROL_LINE_MAX + 1, "\n");
    expect_bad(buf, n, CONTROL_LINE_MAX + 1, 0, "command line longer than 1024 bytes");
    n = long_line(buf, CONTROL_LINE_MAX + 1, "");
    expect_bad(buf, n, CONTROL_LINE_MAX + 1, 0, "command line longer than 1024 bytes");

    /* Blanks count: 1024 blanks are a blank line, 1025 too many. */
    memset(buf, ' ', CONTROL_LINE_MAX);
    buf[CONTROL_LINE_MAX] = '\n';
    read_every_way(buf, CONTROL_LINE_MAX + 1, &o);
    assert_int_equal(o.last, CONTROL_LINE);
    assert_string_equal(o.lines[0], "0:");
    memset(buf, '\t', CONTROL_LINE_MAX + 1);
    buf[CONTROL_LINE_MAX + 1] = '\n';
    expect_bad(buf, CONTROL_LINE_MAX + 2, CONTROL_LINE_MAX + 1, 0, "longer than 1024");

    /* The bound is per line: two lines of 1024 bytes each. */
    n = long_line(buf, CONTROL_LINE_MAX, "\n");
    n += long_line(buf + n, CONTROL_LINE_MAX, "\r\n");
    read_every_way(buf, n, &o);
    assert_int_equal(o.last, CONTROL_LINE);
    assert_int_equal(o.nlines, 2);
    assert_int_equal(o.taken, n);
}

static void word_bound(void **state)
{
    (void)state;
    expect_lines("1 2 3 4 5 6 7 8\n", "8:1|2|3|4|5|6|7|8", NULL);
    expect_lines(" a\tb  c d e f g h \t\r\n", "8:a|b|c|d|e|f|g|h", NULL);
    /* Refused at the ninth word's first byte. */
    const char nine[] = "1 2 3 4 5 6 7 8 9\n";
    expect_bad(nine, sizeof(nine) - 1, 17, 0, "more than 8 words in a command line");
    const char nine_long[] = "a b c d e f g h  ninth and more\n";
    expect_bad(nine_long, sizeof(nine_long) - 1, 18, 0, "more than 8 words");
    /* The count is per line. */
    expect_lines("1 2 3 4 5 6 7 8\n1 2 3 4 5 6 7 8\n", "8:1|2|3|4|5|6|7|8",
                 "8:1|2|3|4|5|6|7|8", NULL);
}

/* ---- refusals ------------------------------------------------------------ */

/* Every byte outside printable ASCII, TAB, CR and LF is refused where it
 * stands, at the start of a line, within a word, between words. */
static void bad_bytes(void **state)
{
    (void)state;
    char buf[32];
    for (int c = 0; c < 256; c++) {
        if ((c >= 0x20 && c <= 0x7e) || c == '\t' || c == '\n' || c == '\r')
            continue;
        const char *why = c >= 0x80 ? "non-ASCII byte in a command line"
                                    : "control character in a command line";
        static const char *const around[][2] = {{"", "help\n"},
                                                {"sh", "ow\n"},
                                                {"show ", " stats\n"}};
        for (size_t k = 0; k < sizeof(around) / sizeof(around[0]); k++) {
            size_t a = strlen(around[k][0]);
            memcpy(buf, around[k][0], a);
            buf[a] = (char)c;
            size_t b = strlen(around[k][1]);
            memcpy(buf + a + 1, around[k][1], b + 1);
            expect_bad(buf, a + 1 + b, a + 1, 0, why);
        }
    }
}

static void lone_cr(void **state)
{
    (void)state;
    const char *why = "CR not followed by LF in a command line";
    expect_bad("show\rlisteners\n", 15, 6, 0, why);
    expect_bad("show listeners\r\r\n", 17, 16, 0, why);
    expect_bad("\r \n", 3, 2, 0, why);
    expect_bad("help\r\0", 6, 6, 0, why);
    expect_bad("help\r\x80", 6, 6, 0, why);
    /* A CR last is not refused yet: its LF may come. */
    struct outcome o;
    read_every_way("help\r", 5, &o);
    assert_int_equal(o.last, CONTROL_NEED_MORE);
    assert_int_equal(o.taken, 5);
}

/* A refusal after good lines: those were read; the bad one stops all. */
static void bad_after_lines(void **state)
{
    (void)state;
    const char in[] = "show listeners\nhelp\nreload\x01\nshow stats\n";
    expect_bad(in, sizeof(in) - 1, 27, 2, "control character");
}

/* Once refused, it stays refused and takes nothing more. */
static void refused_stays_refused(void **state)
{
    (void)state;
    struct control_reader r;
    enum control_result res;
    control_reader_init(&r);
    assert_int_equal(control_reader_feed(&r, "a\x02 b\nhelp\n", 10, &res), 2);
    assert_int_equal(res, CONTROL_BAD);
    const char *why = r.why;
    assert_string_equal(why, "control character in a command line");
    for (int i = 0; i < 3; i++) {
        res = CONTROL_LINE;
        assert_int_equal(control_reader_feed(&r, "help\n", 5, &res), 0);
        assert_int_equal(res, CONTROL_BAD);
        assert_ptr_equal(r.why, why);
    }
    res = CONTROL_LINE;
    assert_int_equal(control_reader_feed(&r, "", 0, &res), 0);
    assert_int_equal(res, CONTROL_BAD);
    /* init makes it new. */
    control_reader_init(&r);
    assert_int_equal(control_reader_feed(&r, "help\n", 5, &res), 5);
    assert_int_equal(res, CONTROL_LINE);
}

/* ---- fuzzing seeds ------------------------------------------------------- */

/* The seeds say what they are: valid-* are whole lines, every byte taken;
 * invalid-* are refused, however they are fed. */
static void fuzz_seeds(void **state)
{
    DIR *d = open_corpus("control");
    (void)state;
    size_t valid = 0, invalid = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool want_valid = strncmp(e->d_name, "valid-", 6) == 0;
        static char data[8 * CONTROL_LINE_MAX];
        if (!want_valid && strncmp(e->d_name, "invalid-", 8) != 0)
            continue;
        size_t n = read_seed("control", e->d_name, data, sizeof(data));
        struct outcome o;
        read_every_way(data, n, &o);
        if (o.last != (want_valid ? CONTROL_LINE : CONTROL_BAD) ||
            (want_valid && o.taken != n))
            fail_msg("%s: result %d after %zu of %zu bytes (%s)", e->d_name, (int)o.last,
                     o.taken, n, o.why != NULL ? o.why : "-");
        *(want_valid ? &valid : &invalid) += 1;
    }
    closedir(d);
    assert_true(valid >= 8);
    assert_true(invalid >= 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_lines),       cmocka_unit_test(blanks),
        cmocka_unit_test(blank_lines),       cmocka_unit_test(crlf),
        cmocka_unit_test(one_line_per_feed), cmocka_unit_test(empty_feeds),
        cmocka_unit_test(line_bound),        cmocka_unit_test(word_bound),
        cmocka_unit_test(bad_bytes),         cmocka_unit_test(lone_cr),
        cmocka_unit_test(bad_after_lines),   cmocka_unit_test(refused_stays_refused),
        cmocka_unit_test(fuzz_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
