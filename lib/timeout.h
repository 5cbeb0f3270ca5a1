/* Timeout arithmetic shared by the backends (timeout.c). */
#ifndef MIO_TIMEOUT_H
#define MIO_TIMEOUT_H

#include <stdint.h>
#include <time.h>

/* Milliseconds for poll(2)/epoll_wait(2): -1 for NULL, rounded up so that a
 * sub-millisecond timeout never becomes a busy loop, saturated at INT_MAX. */
int mio__timeout_ms(const struct timespec *ts);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t mio__now_ns(void);

#endif /* MIO_TIMEOUT_H */
