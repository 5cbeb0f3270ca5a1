/*
 * A check of the tests and the fuzz targets, independent of the code they
 * check: whether a message is valid UTF-8 (RFC 3629), as every message
 * that quotes the configuration file must be.
 */
#ifndef TESTS_UTF8_VALID_H
#define TESTS_UTF8_VALID_H

#include <stdbool.h>
#include <stddef.h>

/* Whether s is valid UTF-8 (RFC 3629). */
static inline bool valid_utf8(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;

    while (*u != '\0') {
        size_t n = *u < 0x80                  ? 1
                   : *u >= 0xc2 && *u <= 0xdf ? 2
                   : *u >= 0xe0 && *u <= 0xef ? 3
                   : *u >= 0xf0 && *u <= 0xf4 ? 4
                                              : 0;
        unsigned lo = *u == 0xe0 ? 0xa0 : *u == 0xf0 ? 0x90 : 0x80;
        unsigned hi = *u == 0xed ? 0x9f : *u == 0xf4 ? 0x8f : 0xbf;

        if (n == 0)
            return false;
        for (size_t i = 1; i < n; i++)
            if (u[i] < (i == 1 ? lo : 0x80) || u[i] > (i == 1 ? hi : 0xbf))
                return false;
        u += n;
    }
    return true;
}

#endif
