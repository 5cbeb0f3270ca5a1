/* Keeping the listening sockets in systemd's file-descriptor store. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdstore.h"
#include "generation.h"
#include "log.h"
#include "service.h"

int fdstore_init(struct daemon *d)
{
    d->stored = calloc(d->npassed ? d->npassed : 1, sizeof(*d->stored));
    if (d->stored == NULL)
        return -ENOMEM;
    /* Without systemd (a SIGUSR2 upgrade passed them) no store holds them. */
    if (!service_notifies())
        return 0;
    for (size_t i = 0; i < d->npassed; i++)
        if (d->passed[i].stored) {
            struct stored_sock *s = &d->stored[d->nstored++];
            snprintf(s->name, sizeof(s->name), "%s", d->passed[i].name);
            s->fd = d->passed[i].fd;
        }
    return 0;
}

/* Whether g has socket fd as one of listener `name`'s own (not one a
 * .socket unit passed). */
static bool wanted(const struct generation *g, const char *name, int fd)
{
    for (size_t i = 0; i < g->nlisteners; i++) {
        const struct listener *l = &g->listeners[i];
        if (strcmp(l->cfg->name, name) != 0)
            continue;
        for (size_t k = 0; k < l->nsocks; k++)
            if (l->socks[k].fd == fd && !l->socks[k].passed)
                return true;
    }
    return false;
}

bool fdstore_holds(const struct daemon *d, int fd)
{
    for (size_t i = 0; fd >= 0 && i < d->nstored; i++)
        if (d->stored[i].fd == fd)
            return true;
    return false;
}

/* Removes listener `name`'s group from the store and from d's list. */
static void remove_group(struct daemon *d, const char *name)
{
    int err = service_store_remove(name);
    if (err < 0)
        log_warn("fd store: cannot remove the sockets of listener %s: %s", name,
                 log_strerror(-err));
    size_t kept = 0;
    for (size_t i = 0; i < d->nstored; i++)
        if (strcmp(d->stored[i].name, name) != 0)
            d->stored[kept++] = d->stored[i];
    d->nstored = kept;
}

/* Stores listener l's own sockets that the store does not hold yet. */
static void store_listener(struct daemon *d, const struct listener *l)
{
    int fds[l->nsocks ? l->nsocks : 1];
    size_t n = 0;
    for (size_t k = 0; k < l->nsocks; k++)
        if (l->socks[k].fd >= 0 && !l->socks[k].passed &&
            !fdstore_holds(d, l->socks[k].fd))
            fds[n++] = l->socks[k].fd;
    if (n == 0)
        return;
    struct stored_sock *more = realloc(d->stored, (d->nstored + n) * sizeof(*more));
    if (more == NULL) {
        log_warn("fd store: cannot store the sockets of listener %s: %s", l->cfg->name,
                 log_strerror(ENOMEM));
        return;
    }
    d->stored = more;
    int sent = service_store(l->cfg->name, fds, n);
    if (sent < 0)
        log_warn("fd store: cannot store the sockets of listener %s: %s", l->cfg->name,
                 log_strerror(-sent));
    if (sent <= 0)
        return;
    for (size_t k = 0; k < n; k++) {
        struct stored_sock *s = &d->stored[d->nstored++];
        snprintf(s->name, sizeof(s->name), "%s", l->cfg->name);
        s->fd = fds[k];
    }
    log_debug("fd store: stored %zu socket%s of listener %s", n, n == 1 ? "" : "s",
              l->cfg->name);
}

void fdstore_sync(struct daemon *d, const struct generation *g)
{
    /* Each group that holds a socket g does not want under that name goes. */
    for (size_t i = 0; i < d->nstored;) {
        if (wanted(g, d->stored[i].name, d->stored[i].fd)) {
            i++;
            continue;
        }
        char name[sizeof(d->stored[i].name)];
        snprintf(name, sizeof(name), "%s", d->stored[i].name);
        remove_group(d, name);
        i = 0; /* the list changed */
    }
    /* Sockets passed back from the store that no listener took. */
    for (size_t i = 0; i < d->npassed; i++) {
        struct passed_sock *p = &d->passed[i];
        if (p->stored && p->fd >= 0 && !p->taken) {
            char text[ADDR_STRLEN];
            addr_format(&p->addr, text, sizeof(text));
            log_notice("fd store: closing the stored socket of listener %s on %s: "
                       "the configuration no longer has it",
                       p->name, text);
            close(p->fd);
            p->fd = -1;
        }
    }
    if (!service_notifies())
        return;
    for (size_t i = 0; i < g->nlisteners; i++)
        store_listener(d, &g->listeners[i]);
}

void fdstore_free(struct daemon *d)
{
    free(d->stored);
    d->stored = NULL;
    d->nstored = 0;
}
