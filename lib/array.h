/* Growing the arrays of the library's own tables (array.c). */
#ifndef MIO_ARRAY_H
#define MIO_ARRAY_H

#include <stddef.h>

/* Grows *arrayp, an array of *cap elements of `size` bytes (NULL and 0 at
 * first), to hold at least `need`, doubling from 16; the new elements are
 * zeroed and *cap updated.  0, or -ENOMEM with the array as it was. */
int mio__array_grow(void *arrayp, size_t *cap, size_t need, size_t size);

#endif /* MIO_ARRAY_H */
