/*
 * Log lines in JSON, checked by a real JSON parser: Python's json module,
 * through tests/common/json-fields.py, which prints each line's fields in
 * their order as KEY=VALUE separated by tabs (s:TEXT for a string, with
 * bytes outside printable ASCII and the backslash as \xNN; i:N for an
 * integer; f:N.NNN for a number with a fraction; null).
 */
#ifndef TESTS_COMMON_JSON_H
#define TESTS_COMMON_JSON_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Runs json-fields.py over lines[0..n) (each without its newline): returns
 * what it printed, one line per line (malloc'd), or NULL when python3
 * cannot be run (the caller skips).  Fails the test, with the parser's
 * words, when a line is not one JSON object.  Bounded: 10 s.
 */
char *json_fields(const char *const *lines, size_t n);

/*
 * Fails the test unless `fields` (a line of json_fields()' output, ending
 * at a newline or the end) has exactly the fields of `want`, in order, tab
 * separated; a field of `want` ending in '*' matches any value that starts
 * with what comes before the '*'.
 */
void json_expect_fields(const char *fields, const char *want);

/* The n-th (from 0) line of json_fields()' output, or NULL; the copy is
 * valid until the next call. */
const char *json_fields_line(const char *out, size_t n);

#endif
