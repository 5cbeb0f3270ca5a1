/*
 * The tests' byte pattern (see pattern.h).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base.h"
#include "pattern.h"

static uint8_t *pattern;
static size_t period;

void fill_random(uint8_t *buf, size_t len, uint32_t seed)
{
    /* splitmix64: any seed, 0 included, gives a full-period stream. */
    uint64_t x = 0x9e3779b97f4a7c15ull * ((uint64_t)seed + 1);
    size_t i = 0;
    while (i < len) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        for (int k = 0; k < 8 && i < len; k++, i++)
            buf[i] = (uint8_t)(z >> (8 * k));
    }
}

bool pattern_init(size_t len, uint32_t seed)
{
    pattern_free();
    pattern = malloc(2 * len);
    if (pattern == NULL)
        return false;
    period = len;
    fill_random(pattern, len, seed);
    memcpy(pattern + len, pattern, len);
    return true;
}

void pattern_free(void)
{
    free(pattern);
    pattern = NULL;
    period = 0;
}

const uint8_t *pat(uint64_t pos)
{
    return pattern + pos % period;
}

size_t pattern_period(void)
{
    return period;
}

bool send_until_stalled(int fd, uint64_t base, uint64_t *sent, int max_ms)
{
    size_t chunk = period < 64 * KIB ? period : 64 * KIB;
    int64_t start = ms_now();
    while (*sent < 64 * MIB && ms_now() - start < max_ms) {
        ssize_t n = send(fd, pat(base + *sent), chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            *sent += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            test_fail("send: %s", strerror(errno));
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 500) == 0)
            return true;
    }
    return false;
}
