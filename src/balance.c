/* Weighted choices: smooth weighted round-robin, weighted rendezvous hashing. */
#include <math.h>
#include <string.h>

#include "balance.h"
#include "siphash.h"

size_t balance_swrr(const unsigned *weights, int64_t *current, const bool *eligible,
                    size_t n)
{
    size_t best = BALANCE_NONE;
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (eligible != NULL && !eligible[i])
            continue;
        current[i] += weights[i];
        total += weights[i];
        if (best == BALANCE_NONE || current[i] > current[best])
            best = i;
    }
    if (best != BALANCE_NONE)
        current[best] -= total;
    return best;
}

/* A hash as a number in (0, 1): never 0 nor 1, so that its log is finite
 * and not 0. */
static double unit_interval(uint64_t h)
{
    return ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* 2^53 */
}

size_t balance_rendezvous(const uint64_t key[2], const uint8_t *src, size_t len,
                          const uint64_t *ids, const unsigned *weights,
                          const bool *eligible, size_t n)
{
    uint8_t buf[16 + 8];
    if (len > 16)
        len = 16;
    memcpy(buf, src, len);
    size_t best = BALANCE_NONE;
    double best_score = 0;
    for (size_t i = 0; i < n; i++) {
        if (eligible != NULL && !eligible[i])
            continue;
        memcpy(buf + len, &ids[i], sizeof(ids[i]));
        double u = unit_interval(siphash24(key, buf, len + sizeof(ids[i])));
        double score = -(double)weights[i] / log(u);
        if (best == BALANCE_NONE || score > best_score) {
            best = i;
            best_score = score;
        }
    }
    return best;
}
