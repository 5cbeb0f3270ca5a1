/* Reading the fuzzing seeds in tests/fuzz-corpus/ from the unit tests. */
#ifndef TESTS_UNIT_SEEDS_H
#define TESTS_UNIT_SEEDS_H

#include <dirent.h>
#include <stddef.h>

/* Reads the seed `name` of tests/fuzz-corpus/`corpus` into buf
 * (NUL-terminated) and returns its size; the directory is under
 * $top_srcdir, else ".".  Fails the test when it cannot, or when the seed
 * does not fit. */
size_t read_seed(const char *corpus, const char *name, char *buf, size_t size);

/* Opens tests/fuzz-corpus/`corpus`, or fails the test. */
DIR *open_corpus(const char *corpus);

#endif
