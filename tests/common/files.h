/*
 * Files for the tests: temporary directories, removed when the program
 * ends, and configuration files written into them or rewritten in place.
 */
#ifndef TESTS_COMMON_FILES_H
#define TESTS_COMMON_FILES_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* A fresh temporary directory, removed at exit; the path stays valid. */
const char *test_tmpdir(void);

/* Removes dir and everything in it (what can be removed). */
void remove_tree(const char *dir);

/* Writes conf into dir/mio-echod.conf with every "@DIR@" replaced by dir;
 * the file's path into path. */
void conf_write_in(const char *dir, const char *conf, char *path, size_t pathlen);

/* What stream f has, read to its end or `max` bytes (malloc'd,
 * NUL-terminated); "" when f is NULL. */
char *read_all(FILE *f, size_t max);

/* Writes a configuration file into a temporary directory, returning its
 * path (owned by the library until the program ends). */
const char *write_conf(const char *conf);

/* Replaces the file at path with the formatted text, in one rename(): the
 * daemon never reads half a file. */
__attribute__((format(printf, 2, 3))) void conf_rewrite(const char *path, const char *fmt,
                                                        ...);
__attribute__((format(printf, 2, 0))) void conf_vrewrite(const char *path,
                                                         const char *fmt, va_list ap);

#endif
