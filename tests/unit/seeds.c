/* Reading the fuzzing seeds from the unit tests. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seeds.h"

/* The corpus directory, or one of its files when name is not NULL. */
static void seed_path(char *path, size_t len, const char *corpus, const char *name)
{
    const char *top = getenv("top_srcdir");
    snprintf(path, len, "%s/tests/fuzz-corpus/%s%s%s",
             top != NULL && top[0] != '\0' ? top : ".", corpus, name ? "/" : "",
             name ? name : "");
}

size_t read_seed(const char *corpus, const char *name, char *buf, size_t size)
{
    char path[PATH_MAX];
    seed_path(path, sizeof(path), corpus, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("%s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, size - 1, f);
    assert_true(feof(f));
    fclose(f);
    buf[n] = '\0';
    return n;
}

DIR *open_corpus(const char *corpus)
{
    char path[PATH_MAX];
    seed_path(path, sizeof(path), corpus, NULL);
    DIR *d = opendir(path);
    if (d == NULL)
        fail_msg("%s: %s", path, strerror(errno));
    return d;
}
