/* Timeout arithmetic shared by the backends: the conversion to poll(2)'s
 * milliseconds and the monotonic clock that deadlines are measured on. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <limits.h>

#include "timeout.h"

int mio__timeout_ms(const struct timespec *ts)
{
    if (ts == NULL)
        return -1;
    /* Compare in seconds first so that the multiplication cannot overflow
     * (mio #1948: a timeout past 24.8 days wrapped negative). */
    if (ts->tv_sec >= INT_MAX / 1000)
        return INT_MAX;
    long long ms = (long long)ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

int64_t mio__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
