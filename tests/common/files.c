/*
 * Files for the tests (see files.h): temporary directories removed at
 * exit, configuration files written and rewritten.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base.h"
#include "files.h"

static char **tmpdirs;
static size_t ntmpdirs, captmpdirs;
static char **paths; /* returned by write_conf() */
static size_t npaths, cappaths;
static bool atexit_done;

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    (void)remove(path);
    return 0;
}

void remove_tree(const char *dir)
{
    (void)nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Removes the temporary directories, and forgets the paths handed out. */
static void files_at_exit(void)
{
    for (size_t i = 0; i < ntmpdirs; i++) {
        remove_tree(tmpdirs[i]);
        free(tmpdirs[i]);
    }
    free(tmpdirs);
    tmpdirs = NULL;
    ntmpdirs = captmpdirs = 0;
    for (size_t i = 0; i < npaths; i++)
        free(paths[i]);
    free(paths);
    paths = NULL;
    npaths = cappaths = 0;
}

/* A fresh temporary directory, removed at exit; the path stays valid. */
const char *test_tmpdir(void)
{
    if (!atexit_done) {
        atexit_done = true;
        atexit(files_at_exit);
    }
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    size_t len = strlen(base) + 32;
    char *path = xmalloc(len);
    snprintf(path, len, "%s/mio-echod-test.XXXXXX", base);
    if (mkdtemp(path) == NULL) {
        int err = errno;
        free(path);
        test_fail("mkdtemp in %s: %s", base, strerror(err));
    }
    if (ntmpdirs == captmpdirs) {
        captmpdirs = captmpdirs ? 2 * captmpdirs : 16;
        tmpdirs = xrealloc(tmpdirs, captmpdirs * sizeof(*tmpdirs));
    }
    tmpdirs[ntmpdirs++] = path;
    return path;
}

/* Writes conf into dir/mio-echod.conf with "@DIR@" replaced by dir. */
void conf_write_in(const char *dir, const char *conf, char *path, size_t pathlen)
{
    snprintf(path, pathlen, "%s/mio-echod.conf", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        test_fail("cannot create %s: %s", path, strerror(errno));
    for (const char *p = conf; *p != '\0';) {
        const char *at = strstr(p, "@DIR@");
        if (at == NULL) {
            fputs(p, f);
            break;
        }
        fwrite(p, 1, (size_t)(at - p), f);
        fputs(dir, f);
        p = at + 5;
    }
    if (fclose(f) != 0)
        test_fail("cannot write %s: %s", path, strerror(errno));
}

char *read_all(FILE *f, size_t max)
{
    char *text = xmalloc(1);
    size_t len = 0;
    char buf[4096];
    size_t n;
    /* Bounded: each round adds a byte at least, or ends the loop. */
    while (f != NULL && len < max && (n = fread(buf, 1, sizeof(buf), f)) > 0) {
        text = xrealloc(text, len + n + 1);
        memcpy(text + len, buf, n);
        len += n;
    }
    text[len] = '\0';
    return text;
}

const char *write_conf(const char *conf)
{
    const char *dir = test_tmpdir();
    char path[PATH_MAX];
    conf_write_in(dir, conf, path, sizeof(path));
    if (npaths == cappaths) {
        cappaths = cappaths ? 2 * cappaths : 16;
        paths = xrealloc(paths, cappaths * sizeof(*paths));
    }
    char *copy = xmalloc(strlen(path) + 1);
    strcpy(copy, path);
    paths[npaths++] = copy; /* the file goes with its directory */
    return copy;
}

void conf_vrewrite(const char *path, const char *fmt, va_list ap)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        test_fail("cannot create %s: %s", tmp, strerror(errno));
    vfprintf(f, fmt, ap);
    CHECK_EQ(fclose(f), 0);
    CHECK_EQ(rename(tmp, path), 0);
}

void conf_rewrite(const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conf_vrewrite(path, fmt, ap);
    va_end(ap);
}
