/* SipHash-2-4, written from the paper's description. */
#include <string.h>

#include "siphash.h"

/* x rotated left by b bits. */
static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

/* Loads 8 bytes as a little-endian word. */
static uint64_t load_le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* One SipRound over the state v. */
static inline void round4(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = rotl(v[1], 13) ^ v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17) ^ v[2];
    v[2] = rotl(v[2], 32);
}

uint64_t siphash24(const uint64_t k[2], const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint64_t v[4] = {k[0] ^ 0x736f6d6570736575ull, k[1] ^ 0x646f72616e646f6dull,
                     k[0] ^ 0x6c7967656e657261ull, k[1] ^ 0x7465646279746573ull};
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le(p + i);
        v[3] ^= m;
        round4(v);
        round4(v);
        v[0] ^= m;
    }
    uint8_t last[8] = {0};
    memcpy(last, p + whole, len - whole);
    last[7] = (uint8_t)len;
    uint64_t m = load_le(last);
    v[3] ^= m;
    round4(v);
    round4(v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for (int i = 0; i < 4; i++)
        round4(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}
