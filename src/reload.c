/* SIGHUP: the next generation of listeners. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "generation.h"
#include "fdstore.h"
#include "log.h"
#include "reload.h"
#include "resolver.h"
#include "service.h"
#include "worker.h"

/* Whether a worker watches generation `g` (after its batch). */
static bool watches(const struct worker *w, const void *g)
{
    return atomic_load(&w->watching) == g;
}

/* Warns about settings that only a restart applies. */
static void warn_restart_only(const struct config *old, const struct config *cfg)
{
    const char *changed[8];
    size_t n = 0;
    if (old->workers != cfg->workers)
        changed[n++] = "workers";
    if (old->poller != cfg->poller)
        changed[n++] = "poller";
    if (strcmp(old->user, cfg->user) != 0)
        changed[n++] = "user";
    if (strcmp(old->pidfile, cfg->pidfile) != 0)
        changed[n++] = "pidfile";
    if (old->log_target != cfg->log_target)
        changed[n++] = "log.target";
    if (old->has_stats != cfg->has_stats ||
        (old->has_stats && !addr_equal(&old->stats.addr, &cfg->stats.addr)))
        changed[n++] = "stats";
    const char *was = old->control_path != NULL ? old->control_path : "";
    const char *now = cfg->control_path != NULL ? cfg->control_path : "";
    if (strcmp(was, now) != 0)
        changed[n++] = "control.path";
    if (now[0] != '\0' && old->control_mode != cfg->control_mode)
        changed[n++] = "control.mode";
    for (size_t i = 0; i < n; i++)
        log_warn("reload: %s changed: it takes effect at the next restart", changed[i]);
}

/* One certificate expiring or expired, as config_tls_expiry() finds it. */
static void expiring(const char *listener, const char *file, long days_left, void *arg)
{
    bool to_stderr = *(const bool *)arg;
    char line[PATH_MAX + 160];
    if (days_left < 0)
        snprintf(line, sizeof(line), "listener %s: certificate %s expired %ld day%s ago",
                 listener, file, -days_left, days_left == -1 ? "" : "s");
    else
        snprintf(line, sizeof(line), "listener %s: certificate %s expires in %ld day%s",
                 listener, file, days_left, days_left == 1 ? "" : "s");
    if (to_stderr)
        fprintf(stderr, "mio-echod: warning: %s\n", line);
    else
        log_warn("%s", line);
}

void reload_warn_certificates(const struct config *cfg, bool to_stderr)
{
    config_tls_expiry(cfg, time(NULL), RELOAD_EXPIRY_DAYS, expiring, &to_stderr);
}

/* Makes g, opened from old, the daemon's generation: the workers move to
 * it, old's sockets that g did not take are closed. */
static void switch_to(struct daemon *d, struct generation *old, struct generation *g)
{
    fdstore_sync(d, g); /* before old's sockets close: they leave the store first */
    generation_publish(d, g);
    for (unsigned k = 0; k < d->nworkers; k++)
        worker_wake(&d->workers[k]);
    if (worker_wait_all(d, watches, g, 5000))
        generation_close_sockets(d, old, true);
    else /* closing what a worker may still accept on is worse than a leak */
        log_err("reload: a worker did not move to the new configuration; the "
                "removed listeners stay open until exit");
    generation_unref(old);
}

void reload_addresses(struct daemon *d)
{
    struct generation *old = atomic_load(&d->gen);
    struct config *cfg = config_ref(old->cfg);
    struct generation_error ge;
    struct generation *g = generation_open(d, cfg, old, true, &ge);
    if (g == NULL) {
        char why[2 * ADDR_STRLEN];
        generation_error_text(&ge, why, sizeof(why));
        log_err("resolve: upstream addresses changed, but %s; keeping the previous ones",
                why);
        config_free(cfg);
        return;
    }
    switch_to(d, old, g);
    log_info("resolve: relaying to the new upstream addresses");
}

bool reload_config(struct daemon *d, char *why_out, size_t why_len)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    service_notify("RELOADING=1\nMONOTONIC_USEC=%llu",
                   (unsigned long long)now.tv_sec * 1000000ULL +
                       (unsigned long long)now.tv_nsec / 1000);
    struct generation *old = atomic_load(&d->gen);
    char err[1024];
    struct config *cfg = config_load(d->config_path, d->config_name, err, sizeof(err));
    struct generation *g = NULL;
    if (cfg != NULL) {
        struct generation_error ge;
        g = generation_open(d, cfg, old, false, &ge);
        if (g == NULL) {
            char why[2 * ADDR_STRLEN];
            generation_error_text(&ge, why, sizeof(why));
            log_err("%s", why);
            config_free(cfg);
            snprintf(err, sizeof(err), "%s: %s", d->config_name, why);
        }
    }
    if (g == NULL) {
        atomic_fetch_add(&d->reload_failures, 1);
        log_err("reload failed: %s; still running the previous configuration", err);
        service_notify("READY=1\nSTATUS=reload failed: %s", err);
        snprintf(why_out, why_len, "%s", err);
        return false;
    }
    atomic_fetch_add(&d->reloads, 1);
    warn_restart_only(old->cfg, cfg);
    reload_warn_certificates(cfg, false);
    switch_to(d, old, g);
    resolver_reloaded();
    log_set_level(d->verbose ? LOG_DEBUG : cfg->log_level);
    log_set_format(cfg->log_format);
    log_notice("reloaded %s: %zu listener%s", d->config_name, g->nlisteners,
               g->nlisteners == 1 ? "" : "s");
    service_notify("READY=1\nSTATUS=reloaded; %u connections open",
                   atomic_load(&d->active));
    snprintf(why_out, why_len, "reloaded: %zu listener%s", g->nlisteners,
             g->nlisteners == 1 ? "" : "s");
    return true;
}
