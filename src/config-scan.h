/*
 * The configuration file's text, walked before libconfig parses it.
 *
 * libconfig 1.5 keeps only the low 32 bits of an integer literal written
 * without an L suffix, so 4294977296 would silently read as 10000.  The
 * scan notes every such literal with the setting name written before it,
 * so that the loader can refuse the setting that holds one.  It also
 * refuses what libconfig would mishandle or what mio-echod does not
 * support: NUL bytes, @include, and more lines than libconfig can number.
 *
 * libconfig 1.5 gives an element of a list the line of the token after it
 * (its parser reduces the element once it has read that lookahead), so an
 * element written alone on its line, followed by comments, blank lines or
 * a "]" further down, would be reported on the wrong line.  The scan notes
 * the line each element of each list starts on, lists numbered in the
 * order their brackets open, which is the order of libconfig's settings
 * walked depth first.
 */
#ifndef ECHOD_CONFIG_SCAN_H
#define ECHOD_CONFIG_SCAN_H

#include <stdbool.h>
#include <stddef.h>

/* An integer literal libconfig 1.5 cuts to 32 bits. */
struct wide_literal {
    int line;
    const char *name; /* the setting name before it, in the scanned text */
    size_t name_len;
    long list;       /* the list it is an element of (config_scan.lists), */
    long index;      /* and which one; -1 for a setting's own value */
    int stored;      /* what libconfig keeps */
    long long value; /* the literal's value, saturated */
    char text[32];   /* as written, for messages */
    bool claimed;    /* by the setting that reported it (the loader's) */
};

/* One list ( ... ) or array [ ... ] of the file: where its elements start,
 * config_scan.elem_lines[first .. first + count). */
struct scan_list {
    size_t first;
    size_t count;
};

/* What a scan found; config_scan_free() frees it. */
struct config_scan {
    struct wide_literal *wide;
    size_t nwide;
    struct scan_list *lists; /* in the order their brackets open */
    size_t nlists;
    int *elem_lines; /* the line each element starts on */
    int line;        /* where the file was refused (0: whole) */
    char why[96];    /* and why */
};

/*
 * Scans text[0..len) as libconfig's scanner does (comments, strings, names,
 * numbers).  0; -EINVAL when the file must be refused (line and why say
 * where and what); -ENOMEM.  A file it cannot make sense of otherwise is left for
 * libconfig to report.  out is to be freed in every case.
 */
int config_scan(const char *text, size_t len, struct config_scan *out);

/* Frees what a scan found (not sc itself). */
void config_scan_free(struct config_scan *sc);

#endif
