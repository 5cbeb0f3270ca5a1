/*
 * UTF-8 (RFC 3629), for the text the daemon writes from bytes it did not
 * choose: configuration messages quote the file, log lines carry a
 * client's server name.
 */
#ifndef ECHOD_UTF8_H
#define ECHOD_UTF8_H

#include <stddef.h>

/*
 * The length of the valid UTF-8 sequence that s starts with (1 for ASCII,
 * including NUL), or 0 when its first byte starts none: no overlong forms,
 * no surrogates, nothing past U+10FFFF.  Reads no further than the first
 * byte that is wrong, so a NUL-terminated s is never read past its end.
 */
static inline size_t utf8_len(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80)
        return 1;
    size_t n;
    if (u[0] >= 0xc2 && u[0] <= 0xdf)
        n = 2;
    else if (u[0] >= 0xe0 && u[0] <= 0xef)
        n = 3;
    else if (u[0] >= 0xf0 && u[0] <= 0xf4)
        n = 4;
    else
        return 0;
    unsigned char lo = 0x80, hi = 0xbf;
    if (u[0] == 0xe0)
        lo = 0xa0;
    else if (u[0] == 0xed)
        hi = 0x9f;
    else if (u[0] == 0xf0)
        lo = 0x90;
    else if (u[0] == 0xf4)
        hi = 0x8f;
    if (u[1] < lo || u[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (u[i] < 0x80 || u[i] > 0xbf)
            return 0;
    return n;
}

#endif
