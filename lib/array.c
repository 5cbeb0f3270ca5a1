/*
 * The growth of the arrays the library keeps itself (the registrations of
 * the poll(2) and io_uring backends, poll(2)'s set, io_uring's side list):
 * by doubling, so that a registration allocates only when it passes every
 * size seen before.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"

/* Doubling, the sizes checked so that a huge `need` is -ENOMEM, not a wrap. */
int mio__array_grow(void *arrayp, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return -ENOMEM;
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / size)
        return -ENOMEM;
    void *p = realloc(*(void **)arrayp, ncap * size);
    if (p == NULL)
        return -ENOMEM;
    memset((char *)p + *cap * size, 0, (ncap - *cap) * size);
    *(void **)arrayp = p;
    *cap = ncap;
    return 0;
}
