/*
 * The configuration file's text, walked before libconfig parses it.
 *
 * libconfig 1.5 keeps only the low 32 bits of an integer literal written
 * without an L suffix, so 4294977296 would silently read as 10000.  The
 * scan notes every such literal with the setting name written before it,
 * so that the loader can refuse the setting that holds one.  It also
 * refuses what libconfig would mishandle or what mio-echod does not
 * support: NUL bytes, @include, and more lines than libconfig can number.
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
    int stored;       /* what libconfig keeps */
    long long value;  /* the literal's value, saturated */
    char text[32];    /* as written, for messages */
    bool claimed;     /* by the setting that reported it (the loader's) */
};

/* What a scan found. */
struct config_scan {
    struct wide_literal *wide; /* malloc'd, the caller frees it */
    size_t nwide;
    int line;                  /* where the file was refused (0: whole) */
    char why[96];              /* and why */
};

/*
 * Scans text[0..len) as libconfig's scanner does (comments, strings, names,
 * numbers).  0; -1 when the file must be refused (line and why say where
 * and what); -ENOMEM.  A file it cannot make sense of otherwise is left for
 * libconfig to report.  out->wide is set in every case.
 */
int config_scan(const char *text, size_t len, struct config_scan *out);

#endif
