/*
 * The two weighted choices issue 14 asks of the balance modes, as pure
 * functions over arrays, so that upstream.c (which knows health, backups
 * and pools) and the tests share them:
 *
 * - smooth weighted round-robin (the one nginx uses): each pick adds every
 *   candidate's weight to its running score, takes the highest, and takes
 *   the total back from it; weights 5, 1, 1 give a a b a c a a, spread
 *   rather than five a's in a row;
 * - weighted rendezvous hashing (highest random weight) for source-hash:
 *   each candidate scores -weight / ln(u), u a keyed hash of (source,
 *   candidate) in (0, 1); the highest wins.  Removing a candidate moves
 *   only the sources that were on it, adding one takes about its share,
 *   where the modulo hash moved almost every source.
 */
#ifndef ECHOD_BALANCE_H
#define ECHOD_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sentinel: no candidate was eligible. */
#define BALANCE_NONE ((size_t)-1)

/*
 * Smooth weighted round-robin over n candidates: weights[i] >= 1,
 * current[i] the running scores (start at 0; the caller keeps them, and
 * serializes calls on one array), eligible[i] whether i may be picked now
 * (NULL: all).  Only eligible candidates take part, so a failed one's
 * share goes to the others.  The index picked, or BALANCE_NONE.
 */
size_t balance_swrr(const unsigned *weights, int64_t *current, const bool *eligible,
                    size_t n);

/*
 * Weighted rendezvous hashing of the source key src[0..len) (an address's
 * bytes) over n candidates named ids[i] (stable across configurations: a
 * hash of the upstream's text), under the SipHash key `key`.  eligible
 * may be NULL.  The index picked, or BALANCE_NONE.
 */
size_t balance_rendezvous(const uint64_t key[2], const uint8_t *src, size_t len,
                          const uint64_t *ids, const unsigned *weights,
                          const bool *eligible, size_t n);

#endif
