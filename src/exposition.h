/*
 * The exposition: the daemon's counters in the Prometheus text format,
 * version 0.0.4, each family's "# HELP" and "# TYPE" lines, then its
 * samples.  The families and their labels are listed in mio-echod(8),
 * METRICS, which a test holds to what is written here.
 */
#ifndef ECHOD_EXPOSITION_H
#define ECHOD_EXPOSITION_H

#include <stdio.h>

#include "daemon.h"

struct generation;

/* Writes the exposition of daemon d, whose current generation is g (the
 * caller holds a reference), to f. */
void exposition_write(FILE *f, const struct daemon *d, const struct generation *g);

#endif
