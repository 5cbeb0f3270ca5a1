/*
 * libFuzzer target: the control socket's command-line reader
 * (src/control-line.c).
 *
 * The input is the bytes a client sends (the seeds in
 * tests/fuzz-corpus/control/ are command lines as sent).  They are fed to
 * a reader three ways, line after line until a refusal: whole, in two
 * pieces split at a point the first byte chooses (its value, modulo the
 * length plus one), and one byte at a time, each piece a heap copy of
 * exactly its bytes so that ASan sees any read past it.  All three must
 * give the same lines, words and verdict.  Checked besides, at every feed:
 *
 *   - it takes at most what it is given; "need more" takes all of it; a
 *     line or a refusal takes at least one byte (progress);
 *   - a line ends at an LF taken; it has 0 to CONTROL_WORDS_MAX words,
 *     each non-empty, printable, without blanks, and they are the words
 *     a plain reference split of the same bytes finds, in a line of at
 *     most CONTROL_LINE_MAX bytes without its LF or CR LF;
 *   - a refusal has a reason, and the bytes up to it do break a rule;
 *   - once refused, the reader stays so and takes nothing.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control-line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...)                                                \
    do {                                                                \
        if (!(cond)) {                                                  \
            fprintf(stderr, "fuzz-control: check failed: %s: ", #cond); \
            fprintf(stderr, __VA_ARGS__);                               \
            fputc('\n', stderr);                                        \
            abort();                                                    \
        }                                                               \
    } while (0)

/* What the reader made of the input: a digest of every line's words (so
 * that the three ways compare without keeping them), the lines, the
 * bytes taken, the last verdict and the refusal's reason. */
struct verdict {
    uint64_t digest;
    size_t lines;
    size_t used;
    enum control_result result;
    const char *why;
};

/* Mixes bytes into a digest (FNV-1a). */
static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Whether c is a blank between words. */
static bool blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* The reference: checks r's words against a plain split of the line
 * data[start..end), which ends with its LF (and maybe a CR before). */
static void check_line(const struct control_reader *r, const uint8_t *data, size_t start,
                       size_t end)
{
    CHECK(end > start && data[end - 1] == '\n', "a line that does not end with LF");
    size_t stop = end - 1;
    if (stop > start && data[stop - 1] == '\r')
        stop--;
    CHECK(stop - start <= CONTROL_LINE_MAX, "a line of %zu bytes", stop - start);
    CHECK(r->argc >= 0 && r->argc <= CONTROL_WORDS_MAX, "argc %d", r->argc);
    int w = 0;
    size_t i = start;
    for (;;) {
        while (i < stop && blank(data[i]))
            i++;
        if (i == stop)
            break;
        size_t from = i;
        while (i < stop && !blank(data[i]))
            i++;
        CHECK(w < r->argc, "word %d beyond argc %d", w, r->argc);
        const char *word = r->argv[w];
        size_t k = strlen(word);
        CHECK(k == i - from && memcmp(word, data + from, k) == 0,
              "word %d is \"%s\", the line has %.*s", w, word, (int)(i - from),
              (const char *)data + from);
        for (size_t j = 0; j < k; j++)
            CHECK(word[j] > 0x20 && word[j] < 0x7f, "byte 0x%02x in word %d",
                  (unsigned char)word[j], w);
        w++;
    }
    CHECK(w == r->argc, "%d words, argc %d", w, r->argc);
    for (size_t j = start; j < stop; j++)
        CHECK((data[j] >= 0x20 && data[j] < 0x7f) || data[j] == '\t',
              "a line with byte 0x%02x", data[j]);
}

/* Whether the line data[start..at) (the byte at at - 1 decided) breaks a
 * rule: a byte refused, a lone CR, too long, too many words. */
static bool breaks_a_rule(const uint8_t *data, size_t start, size_t at)
{
    unsigned char c = data[at - 1];
    if (at - start >= 2 && data[at - 2] == '\r' && c != '\n')
        return true;
    if (c != '\t' && c != '\r' && c != '\n' && (c < 0x20 || c > 0x7e))
        return true;
    size_t len = 0, words = 0;
    for (size_t j = start; j < at; j++) {
        if (data[j] == '\r')
            continue;
        len++;
        if (!blank(data[j]) && (j == start || blank(data[j - 1])))
            words++;
    }
    return len > CONTROL_LINE_MAX || words > CONTROL_WORDS_MAX;
}

/* Feeds data[from..to) to r as one heap piece of exactly its bytes,
 * taking every line in it, until a refusal; adds to v.  `start` is where
 * the line being read began. */
static void feed(struct control_reader *r, const uint8_t *data, size_t from, size_t to,
                 size_t *start, struct verdict *v)
{
    size_t n = to - from;
    char *piece = malloc(n > 0 ? n : 1);
    if (piece == NULL)
        abort();
    memcpy(piece, data + from, n);
    size_t pos = 0;
    for (;;) {
        enum control_result res = CONTROL_BAD;
        size_t used = control_reader_feed(r, piece + pos, n - pos, &res);
        CHECK(used <= n - pos, "took %zu of %zu bytes", used, n - pos);
        pos += used;
        v->used += used;
        v->result = res;
        if (res == CONTROL_NEED_MORE) {
            CHECK(pos == n, "needs more, yet took %zu of %zu bytes", used,
                  n - pos + used);
            break;
        }
        CHECK(used > 0, "a verdict %d at no byte", res);
        if (res == CONTROL_BAD) {
            CHECK(r->why != NULL && r->why[0] != '\0', "refused without a reason");
            CHECK(breaks_a_rule(data, *start, from + pos),
                  "refused (%s) at byte %zu, which breaks no rule", r->why, from + pos);
            v->why = r->why;
            break;
        }
        CHECK(res == CONTROL_LINE, "result %d", res);
        check_line(r, data, *start, from + pos);
        v->lines++;
        v->digest = mix(v->digest, &r->argc, sizeof(r->argc));
        for (int w = 0; w < r->argc; w++)
            v->digest = mix(v->digest, r->argv[w], strlen(r->argv[w]) + 1);
        *start = from + pos;
        if (pos == n)
            break;
    }
    free(piece);
}

/* Reads the input in pieces ending at cuts[] (ascending, the last one
 * size), until a refusal. */
static void read_in_pieces(struct control_reader *r, const uint8_t *data,
                           const size_t *cuts, size_t ncuts, struct verdict *v)
{
    control_reader_init(r);
    memset(v, 0, sizeof(*v));
    v->digest = 14695981039346656037ULL;
    v->result = CONTROL_NEED_MORE;
    size_t from = 0, start = 0;
    for (size_t i = 0; i < ncuts && v->result != CONTROL_BAD; i++) {
        if (cuts[i] == from)
            continue; /* an empty piece says nothing of the line before */
        feed(r, data, from, cuts[i], &start, v);
        from = cuts[i];
    }
}

/* Whether two ways of reading came to the same. */
static void check_same(const char *how, const struct verdict *a, const struct verdict *b)
{
    CHECK(a->result == b->result, "%s: result %d, whole %d", how, b->result, a->result);
    CHECK(a->used == b->used, "%s: took %zu bytes, whole %zu", how, b->used, a->used);
    CHECK(a->lines == b->lines && a->digest == b->digest,
          "%s: %zu lines (digest %llx), whole %zu (%llx)", how, b->lines,
          (unsigned long long)b->digest, a->lines, (unsigned long long)a->digest);
    CHECK(a->why == b->why, "%s: refused for %s, whole for %s", how,
          b->why ? b->why : "-", a->why ? a->why : "-");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct control_reader whole, split, bytes;
    size_t cut = size > 0 ? data[0] % (size + 1) : 0;
    size_t cuts[2] = {cut, size};

    struct verdict vw;
    read_in_pieces(&whole, data, &size, 1, &vw);
    if (vw.result == CONTROL_BAD) {
        /* It stays so, and takes nothing more. */
        enum control_result res = CONTROL_LINE;
        size_t used = control_reader_feed(&whole, (const char *)data, size, &res);
        CHECK(res == CONTROL_BAD && used == 0,
              "a feed after a refusal gives %d after %zu", res, used);
    } else {
        CHECK(vw.used == size, "took %zu of %zu bytes without a refusal", vw.used, size);
    }

    struct verdict vs;
    read_in_pieces(&split, data, cuts, 2, &vs);
    check_same("split", &vw, &vs);

    struct verdict vb;
    control_reader_init(&bytes);
    memset(&vb, 0, sizeof(vb));
    vb.digest = 14695981039346656037ULL;
    vb.result = CONTROL_NEED_MORE;
    size_t start = 0;
    for (size_t i = 0; i < size && vb.result != CONTROL_BAD; i++)
        feed(&bytes, data, i, i + 1, &start, &vb);
    check_same("bytewise", &vw, &vb);
    return 0;
}
