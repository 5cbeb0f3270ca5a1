/*
 * The load a restart test puts on the daemon: two churn clients of 8 slots
 * over two ports (new connections as fast as they go, each exchange
 * verified) and four long streams of 2 MB/s, two on each port, verified to
 * the byte.  A restart under it must fail no connection and lose no byte.
 */
#ifndef TESTS_COMMON_LOAD_H
#define TESTS_COMMON_LOAD_H

#include <stdint.h>

#include "churn.h"
#include "stream.h"

struct load {
    int ports[2];
    struct churn ch[2];
    struct stream *s[4];
    unsigned long long before; /* connections done when load_mark() ran */
};

/* Starts the load on 127.0.0.1:p1 and :p2 (churn seeds from seed) and waits
 * until every stream carries; fails the test when one does not. */
void load_start(struct load *l, int p1, int p2, uint32_t seed);

/* Notes how many connections are done, for load_finish()'s "after". */
void load_mark(struct load *l);

/* Fails the test unless every stream carries 256 KiB more within 3 s. */
void load_streams_advance(struct load *l);

/* Lets the streams go on for a second more, finishes them and stops the
 * churn; prints the figures and fails the test on any error, or when
 * fewer than 100 connections were done since load_mark() (`what` names
 * the event, as "SIGUSR2"). */
void load_finish(struct load *l, const char *what);

#endif
