/* The load of a restart test: churn and streams (load.h). */
#include <stdio.h>
#include <string.h>

#include "base.h"
#include "load.h"

void load_start(struct load *l, int p1, int p2, uint32_t seed)
{
    memset(l, 0, sizeof(*l));
    l->ports[0] = p1;
    l->ports[1] = p2;
    for (int i = 0; i < 2; i++) {
        struct churn *ch = &l->ch[i];
        ch->ports = l->ports;
        ch->nports = 2;
        ch->slots = 8;
        ch->ms = 20000; /* stopped long before */
        ch->seed = seed + (uint32_t)i;
        ch->grace_ms = 5000;
        churn_start(ch);
    }
    for (int i = 0; i < 4; i++)
        l->s[i] = stream_start_rate(l->ports[i % 2], (uint64_t)i << 32, false, 2u << 20);
    load_streams_advance(l);
}

void load_mark(struct load *l)
{
    l->before = atomic_load(&l->ch[0].done) + atomic_load(&l->ch[1].done);
}

void load_streams_advance(struct load *l)
{
    for (int i = 0; i < 4; i++)
        if (!stream_advances(l->s[i], 256 << 10, 3000))
            test_fail("stream %d carried less than 256 KiB in 3 s", i);
}

void load_finish(struct load *l, const char *what)
{
    sleep_ms(1000);
    uint64_t bytes = 0;
    for (int i = 0; i < 4; i++)
        bytes += stream_finish(l->s[i]);
    for (int i = 0; i < 2; i++)
        churn_stop(&l->ch[i]);
    unsigned long long done = l->ch[0].done + l->ch[1].done,
                       errors = l->ch[0].errors + l->ch[1].errors;
    const char *err = l->ch[0].errors ? l->ch[0].err : l->ch[1].err;
    printf("%llu connections (%llu after %s), %llu errors%s%s; %llu stream bytes "
           "verified\n",
           done, done - l->before, what, errors, errors ? ": " : "", errors ? err : "",
           (unsigned long long)bytes);
    fflush(stdout);
    if (errors != 0)
        test_fail("%llu connections failed across %s: %s", errors, what, err);
    if (done - l->before <= 100)
        test_fail("only %llu connections after %s", done - l->before, what);
}
