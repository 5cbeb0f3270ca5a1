/*
 * SipHash-2-4 (Aumasson and Bernstein): a keyed hash for tables whose keys
 * a remote peer chooses (a UDP flow's source address and port), so that
 * it cannot make them collide without knowing the key.
 */
#ifndef ECHOD_SIPHASH_H
#define ECHOD_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* The 64-bit SipHash-2-4 of buf[0..len) under the 128-bit key k. */
uint64_t siphash24(const uint64_t k[2], const void *buf, size_t len);

#endif
