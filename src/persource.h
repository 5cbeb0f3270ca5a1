/*
 * Connections per client address, for max_per_source: a small hash table
 * behind a mutex, touched only when a connection opens or closes.
 */
#ifndef ECHOD_PERSOURCE_H
#define ECHOD_PERSOURCE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct persource_entry;

struct persource {
    pthread_mutex_t lock;
    struct persource_entry **buckets;
    size_t nbuckets, count;
};

/* FNV-1a over a source key (addr_source_key()): for this table and for
 * source-hash balancing. */
uint32_t persource_hash(const uint8_t *key, size_t len);

int persource_init(struct persource *ps);
void persource_destroy(struct persource *ps);

/* Counts one more connection from key[0..len) unless that would pass
 * `limit`; false when refused (or out of memory). */
bool persource_acquire(struct persource *ps, const uint8_t *key, size_t len,
                       unsigned limit);

/* Counts one connection from key less. */
void persource_release(struct persource *ps, const uint8_t *key, size_t len);

#endif
