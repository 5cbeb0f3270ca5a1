/* The control socket: its connections and its commands. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin.h"
#include "conn.h"
#include "flow.h"
#include "control-line.h"
#include "control.h"
#include "upgrade.h"
#include "generation.h"
#include "log.h"
#include "metrics.h"
#include "mio.h"
#include "udp.h"
#include "worker.h"

/* One client of the control socket. */
struct cconn {
    struct handler h;      /* its token */
    struct timer timer;    /* closes it after CONTROL_IDLE_MS without progress */
    struct deferred later; /* freed after the batch that closed it */
    int fd;
    uid_t uid; /* who it is (SO_PEERCRED), for the log */
    pid_t pid;
    struct control_reader rd;
    char in[2048]; /* read, not yet fed to the reader */
    size_t in_len, in_off;
    char *out; /* the answer being sent */
    size_t out_len, out_off;
    bool eof;     /* the client sent its FIN */
    bool closing; /* close once the answer is sent (a refused line) */
    bool dead;
    /* A command waiting: for a reload (its ticket), or for the workers. */
    unsigned long long reload_ticket;
    struct listing *listing;
    struct cconn *prev, *next;
};

/* One worker's part of a listing: run on its thread. */
struct part {
    struct loop_task task;
    struct listing *owner;
    struct worker *w;
    char *text; /* its lines (show connections) */
    size_t len;
    bool found; /* kill connection: it had the connection */
};

/* A question to every worker (show connections, kill connection), and
 * the answer gathered once each has answered. */
struct listing {
    struct loop_task back; /* to the admin loop, once every part is done */
    atomic_uint pending;   /* parts not done yet */
    struct cconn *client;  /* NULL once it went away */
    bool kill;
    uint64_t id;         /* kill: the connection */
    char listener[72];   /* show: only this listener's ("": all) */
    struct part parts[]; /* one per worker */
};

/* The socket and its clients, on the admin thread. */
static struct {
    struct daemon *d;
    struct loop *loop;
    int lfd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev; /* the socket file made, removed only if still it */
    ino_t ino;
    struct handler listen;
    struct cconn *conns;
    unsigned nconns;
    struct ratelimit rl;
} k = {.lfd = -1, .rl = {.burst = 5}};

/* Logs a problem of the control socket, a few lines a second at most. */
#define warn_limited(...)                                              \
    log_limited(LOG_WARNING, &k.rl, k.loop->now_ms, "more not logged", \
                "control: " __VA_ARGS__)

/* ---- the socket ---------------------------------------------------------- */

/* Whether a process accepts connections on the Unix socket at path. */
static bool someone_listens(const char *path)
{
    int fd = mio_unix_connect(path);
    if (fd < 0)
        return false;
    /* A non-blocking connect to a Unix socket completes or fails at once,
     * except on a full backlog (EAGAIN), which means a listener too. */
    close(fd);
    return true;
}

/* Makes the directory of path when it is missing (its last component),
 * given to uid:gid when `give`, so that the daemon, once it is that user,
 * can remove its socket at exit. */
static int make_directory_of(const char *path, uid_t uid, gid_t gid, bool give)
{
    char dir[sizeof(k.path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return 0;
    *slash = '\0';
    if (mkdir(dir, 0755) < 0)
        return errno == EEXIST ? 0 : -errno;
    if (give && chown(dir, uid, gid) < 0)
        return -errno;
    return 0;
}

/* Takes the control socket the previous process handed over (upgrade.h)
 * when it is bound to k.path, with the owner and mode cfg asks for: 0;
 * -ENOENT when there is none for this path (closed), or -errno. */
static int take_inherited(const struct config *cfg, uid_t uid, gid_t gid, bool give,
                          const char **what)
{
    int fd = upgrade_inherited(UPGRADE_CONTROL_NAME);
    if (fd < 0)
        return -ENOENT;
    struct sockaddr_un sun;
    socklen_t len = sizeof(sun);
    char bound[sizeof(sun.sun_path) + 1] = "";
    if (getsockname(fd, (struct sockaddr *)&sun, &len) == 0 &&
        len > offsetof(struct sockaddr_un, sun_path) && len <= sizeof(sun)) {
        size_t n = len - offsetof(struct sockaddr_un, sun_path);
        memcpy(bound, sun.sun_path, n);
        bound[n] = '\0';
    }
    struct stat st;
    if (strcmp(bound, k.path) != 0 || lstat(k.path, &st) < 0) {
        close(fd);
        return -ENOENT;
    }
    *what = "give to the daemon's user";
    if ((give && chown(k.path, uid, gid) < 0) ||
        (*what = "chmod", chmod(k.path, cfg->control_mode) < 0)) {
        int err = -errno;
        close(fd);
        return err;
    }
    k.dev = st.st_dev;
    k.ino = st.st_ino;
    k.lfd = fd;
    return 0;
}

int control_open(const struct config *cfg, uid_t uid, gid_t gid, bool give,
                 const char **what)
{
    *what = "bind";
    if (cfg->control_path == NULL || cfg->control_path[0] == '\0')
        return 0;
    /* Made absolute now: going to the background leaves the directory,
     * and the socket is removed at exit by this path. */
    char cwd[sizeof(k.path)] = "";
    if (cfg->control_path[0] != '/' && getcwd(cwd, sizeof(cwd)) == NULL)
        return -ENAMETOOLONG;
    int n = snprintf(k.path, sizeof(k.path), "%s%s%s", cwd, cwd[0] != '\0' ? "/" : "",
                     cfg->control_path);
    if (n < 0 || (size_t)n >= sizeof(k.path)) {
        k.path[0] = '\0';
        return -ENAMETOOLONG;
    }
    const char *path = k.path;
    struct stat st;
    if (take_inherited(cfg, uid, gid, give, what) == 0)
        return 0;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            *what = "replace the non-socket file";
            return -EEXIST;
        }
        if (someone_listens(path))
            return -EADDRINUSE;
        (void)unlink(path); /* stale: left by a daemon that is gone */
    } else {
        *what = "make the directory of";
        int e = make_directory_of(path, uid, gid, give);
        if (e < 0)
            return e;
        *what = "bind";
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, path, strlen(path) + 1);
    /* Nobody may connect before the mode is applied: it is made with no
     * permission at all, then given what the file says. */
    mode_t mask = umask(0777);
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(mask);
    int err = rc < 0 ? -errno : 0;
    if (err == 0 && give && chown(path, uid, gid) < 0) {
        *what = "give to the daemon's user";
        err = -errno;
    }
    if (err == 0 && chmod(path, cfg->control_mode) < 0) {
        *what = "chmod";
        err = -errno;
    }
    if (err == 0 && lstat(path, &st) == 0) {
        k.dev = st.st_dev;
        k.ino = st.st_ino;
    }
    if (err == 0 && listen(fd, CONTROL_MAX_CONNECTIONS) < 0) {
        *what = "listen on";
        err = -errno;
    }
    if (err < 0) {
        if (rc == 0)
            (void)unlink(path);
        close(fd);
        k.path[0] = '\0';
        return err;
    }
    k.lfd = fd;
    return 0;
}

/* ---- connections --------------------------------------------------------- */

static void pump(struct cconn *c);

/* Frees a connection closed in the last batch (the loop's release). */
static void release_conn(struct deferred *d)
{
    struct cconn *c = container_of(d, struct cconn, later);
    free(c->out);
    free(c);
}

/* Closes a connection; freed after the batch.  A listing it waits for
 * goes on without it. */
static void close_conn(struct cconn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    if (c->listing != NULL)
        c->listing->client = NULL;
    loop_timer_cancel(k.loop, &c->timer);
    loop_unwatch(k.loop, c->fd);
    close(c->fd);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        k.conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    k.nconns--;
    loop_defer(k.loop, &c->later, release_conn);
}

/* Its deadline: closed, with a reset when an answer was left untaken. */
static void deadline(struct timer *t)
{
    struct cconn *c = container_of(t, struct cconn, timer);
    if (c->out_off < c->out_len) {
        struct linger abort_close = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
    }
    log_debug("control: closing a client (uid %u) idle for %d ms", (unsigned)c->uid,
              CONTROL_IDLE_MS);
    close_conn(c);
}

/* Moves the deadline on: the client made progress. */
static void progress(struct cconn *c)
{
    (void)loop_timer_set(k.loop, &c->timer, k.loop->now_ms + CONTROL_IDLE_MS);
}

/* Sends what is left of the answer; true when it is all sent. */
static bool send_answer(struct cconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            progress(c);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            loop_rearm(k.loop, c->fd, MIO_WRITABLE);
            return false;
        } else {
            close_conn(c); /* the client went away */
            return false;
        }
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    return true;
}

/* Queues an answer (the text of an open_memstream), ended by its empty
 * line; NULL text: out of memory, said as an error. */
static void answer(struct cconn *c, char *text, size_t len)
{
    static const char oom[] = "error: out of memory\n\n";
    if (text == NULL) {
        c->out = strdup(oom);
        c->out_len = c->out != NULL ? sizeof(oom) - 1 : 0;
    } else {
        c->out = text;
        c->out_len = len;
    }
    c->out_off = 0;
}

/* Queues a one-line answer. */
__attribute__((format(printf, 2, 3))) static void answer_line(struct cconn *c,
                                                              const char *fmt, ...)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        fputs("\n\n", f);
        if (fclose(f) != 0) {
            free(text);
            text = NULL;
        }
    }
    answer(c, text, len);
}

static void run_command(struct cconn *c);

/* Reads what the client sent, into c->in; false when nothing more is
 * there now (re-armed), or it sent its FIN, or it failed (closed). */
static bool read_more(struct cconn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->in, sizeof(c->in), 0);
        if (n > 0) {
            c->in_len = (size_t)n;
            c->in_off = 0;
            progress(c);
            return true;
        }
        if (n == 0) {
            c->eof = true;
            return false;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            loop_rearm(k.loop, c->fd, MIO_READABLE);
        else
            close_conn(c);
        return false;
    }
}

/* Moves a connection on as far as it can go now: sends the answer in
 * progress, then takes the next command, until it must wait for the
 * client (to read or to send), the workers or a reload. */
static void pump(struct cconn *c)
{
    while (!c->dead) {
        if (c->out != NULL && !send_answer(c))
            return;
        if (c->closing) {
            (void)shutdown(c->fd, SHUT_WR);
            close_conn(c);
            return;
        }
        if (c->reload_ticket != 0 || c->listing != NULL)
            return;
        if (c->in_off < c->in_len) {
            enum control_result res;
            c->in_off += control_reader_feed(&c->rd, c->in + c->in_off,
                                             c->in_len - c->in_off, &res);
            if (res == CONTROL_BAD) {
                answer_line(c, "error: %s", c->rd.why);
                c->closing = true;
            } else if (res == CONTROL_LINE && c->rd.argc > 0) {
                run_command(c);
            }
            continue;
        }
        if (c->eof) {
            close_conn(c); /* every command it sent is answered */
            return;
        }
        if (!read_more(c) && !c->eof)
            return;
    }
}

/* A client's socket is ready. */
static void conn_ready(struct handler *h, struct loop *l, const mio_event_t *ev)
{
    (void)l;
    (void)ev;
    pump(container_of(h, struct cconn, h));
}

/* Takes a new client. */
static void open_conn(int fd)
{
    struct ucred cred = {.uid = (uid_t)-1};
    socklen_t len = sizeof(cred);
    (void)getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
    if (k.nconns >= CONTROL_MAX_CONNECTIONS) {
        /* Said, so that it knows why: a new socket's buffer takes it. */
        char busy[96];
        int n = snprintf(busy, sizeof(busy),
                         "error: too many control connections (%d open); try again "
                         "later\n\n",
                         CONTROL_MAX_CONNECTIONS);
        (void)send(fd, busy, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
        warn_limited("%d clients already; closing a new one (uid %u)",
                     CONTROL_MAX_CONNECTIONS, (unsigned)cred.uid);
        close(fd);
        return;
    }
    struct cconn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        warn_limited("out of memory for a client");
        close(fd);
        return;
    }
    c->fd = fd;
    c->uid = cred.uid;
    c->pid = cred.pid;
    c->h.on_event = conn_ready;
    c->timer.fire = deadline;
    control_reader_init(&c->rd);
    int err = loop_watch(k.loop, fd, &c->h, MIO_READABLE | MIO_WRITABLE);
    if (err == 0)
        err = loop_timer_set(k.loop, &c->timer, k.loop->now_ms + CONTROL_IDLE_MS);
    if (err < 0) {
        warn_limited("cannot watch a client: %s", log_strerror(-err));
        loop_unwatch(k.loop, fd);
        close(fd);
        free(c);
        return;
    }
    c->next = k.conns;
    if (k.conns != NULL)
        k.conns->prev = c;
    k.conns = c;
    k.nconns++;
    pump(c); /* a command may have come before it was watched */
}

/* The listening socket is readable: takes every waiting client. */
static void listen_ready(struct handler *h, struct loop *l, const mio_event_t *ev)
{
    (void)h;
    (void)l;
    (void)ev;
    for (;;) {
        int fd = accept4(k.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            open_conn(fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            warn_limited("cannot accept: %s", log_strerror(errno));
        loop_rearm(k.loop, k.lfd, MIO_READABLE);
        return;
    }
}

/* ---- what the workers answer ---------------------------------------------- */

/* Writes one line of show connections. */
static void list_one(FILE *f, const struct worker *w, uint64_t id,
                     const struct listener *l, const addr_t *peer,
                     const struct upstream_addr *up, int64_t start_ms, uint64_t in,
                     uint64_t out)
{
    char client[ADDR_STRLEN];
    addr_format(peer, client, sizeof(client));
    int64_t age = w->loop.now_ms - start_ms;
    fprintf(f, "%llu %s %s %s %lld.%lld %llu %llu\n", (unsigned long long)id,
            l->cfg->name, client, up != NULL ? up->name : "-", (long long)(age / 1000),
            (long long)(age % 1000 / 100), (unsigned long long)in,
            (unsigned long long)out);
}

/* Whether listener l is the one asked for ("": any). */
static bool asked_for(const struct listener *l, const char *listener)
{
    return listener[0] == '\0' || strcmp(l->cfg->name, listener) == 0;
}

/* Writes the lines of a worker's open connections and UDP flows (of one
 * listener). */
static void list_conns(struct worker *w, const char *listener, FILE *f)
{
    addr_t tmp;
    for (const struct conn *c = w->conns; c != NULL; c = c->next)
        if (!c->dead && asked_for(c->l, listener))
            list_one(f, w, c->id, c->l, addr_small_get(&c->peer, &tmp), c->up,
                     c->start_ms, c->in, c->out);
    for (const struct udp_port *p = w->ports; p != NULL; p = p->next)
        for (size_t b = 0; b < p->flows.nbuckets; b++)
            for (const struct flow *fl = p->flows.buckets[b]; fl != NULL; fl = fl->hnext)
                if (!fl->dead && asked_for(fl->l, listener))
                    list_one(f, w, fl->id, fl->l, &fl->peer, fl->up, fl->start_ms, fl->in,
                             fl->out);
}

/* Closes the connection or flow `id` of worker w; whether it had it. */
static bool kill_one(struct worker *w, uint64_t id)
{
    for (struct conn *c = w->conns; c != NULL; c = c->next)
        if (!c->dead && c->id == id) {
            conn_abort(c, "killed");
            return true;
        }
    for (struct udp_port *p = w->ports; p != NULL; p = p->next)
        for (size_t b = 0; b < p->flows.nbuckets; b++)
            for (struct flow *fl = p->flows.buckets[b]; fl != NULL; fl = fl->hnext)
                if (!fl->dead && fl->id == id) {
                    flow_close(fl, "killed");
                    return true;
                }
    return false;
}

static void listing_done(struct loop_task *t, struct loop *l);

/* A worker's part: done on the worker's thread. */
static void run_part(struct loop_task *t, struct loop *l)
{
    (void)l;
    struct part *p = container_of(t, struct part, task);
    struct listing *ls = p->owner;
    if (ls->kill) {
        p->found = kill_one(p->w, ls->id);
    } else {
        FILE *f = open_memstream(&p->text, &p->len);
        if (f != NULL) {
            list_conns(p->w, ls->listener, f);
            if (fclose(f) != 0) {
                free(p->text);
                p->text = NULL;
            }
        }
    }
    if (atomic_fetch_sub(&ls->pending, 1) == 1)
        loop_post(admin_loop(), &ls->back, listing_done);
}

/* Every worker has answered: the client gets the answer. */
static void listing_done(struct loop_task *t, struct loop *l)
{
    (void)l;
    struct listing *ls = container_of(t, struct listing, back);
    struct cconn *c = ls->client;
    unsigned n = k.d->nworkers;
    if (c != NULL && ls->kill) {
        bool found = false;
        for (unsigned i = 0; i < n; i++)
            found |= ls->parts[i].found;
        if (found)
            answer_line(c, "ok: connection %llu closed", (unsigned long long)ls->id);
        else
            answer_line(c, "error: no open connection %llu", (unsigned long long)ls->id);
    } else if (c != NULL) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (f != NULL) {
            fputs("# id listener client upstream age in out\n", f);
            for (unsigned i = 0; i < n; i++)
                if (ls->parts[i].text != NULL)
                    fwrite(ls->parts[i].text, 1, ls->parts[i].len, f);
            fputc('\n', f);
            if (fclose(f) != 0) {
                free(text);
                text = NULL;
            }
        }
        answer(c, text, len);
    }
    for (unsigned i = 0; i < n; i++)
        free(ls->parts[i].text);
    free(ls);
    if (c != NULL) {
        c->listing = NULL;
        pump(c);
    }
}

/* Asks every worker about its connections (kill: to close connection id;
 * else to list those of `listener`, "" for all); the answer comes when
 * they all have.  A worker that has returned (the daemon is stopping)
 * has none. */
static void ask_workers(struct cconn *c, bool kill, uint64_t id, const char *listener)
{
    unsigned n = k.d->nworkers;
    struct listing *ls = calloc(1, sizeof(*ls) + n * sizeof(struct part));
    if (ls == NULL) {
        answer(c, NULL, 0);
        return;
    }
    ls->client = c;
    ls->kill = kill;
    ls->id = id;
    snprintf(ls->listener, sizeof(ls->listener), "%s", listener);
    atomic_init(&ls->pending, n + 1); /* + 1: this thread's, below */
    c->listing = ls;
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = &k.d->workers[i];
        ls->parts[i].owner = ls;
        ls->parts[i].w = w;
        if (atomic_load(&w->done))
            atomic_fetch_sub(&ls->pending, 1);
        else
            loop_post(&w->loop, &ls->parts[i].task, run_part);
    }
    if (atomic_fetch_sub(&ls->pending, 1) == 1)
        loop_post(k.loop, &ls->back, listing_done);
}

/* ---- commands ------------------------------------------------------------ */

/* The listener of g named `name`, or NULL. */
static struct listener *find_listener(struct generation *g, const char *name)
{
    for (size_t i = 0; i < g->nlisteners; i++)
        if (strcmp(g->listeners[i].cfg->name, name) == 0)
            return &g->listeners[i];
    return NULL;
}

/* Whether the running configuration has a listener named `name`. */
static bool listener_exists(const char *name)
{
    struct generation *g = generation_current(k.d);
    bool found = find_listener(g, name) != NULL;
    generation_unref(g);
    return found;
}

/* Whether upstream k of l is the first of l's upstreams with its address
 * (an address is in several: its name's siblings, the sni_routes). */
static bool first_of_its_address(const struct listener *l, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (l->upstreams[j].addrs[0] == l->upstreams[i].addrs[0])
            return false;
    return true;
}

/* Why ua is not up, for people, into buf ("-" when it is). */
static void why_of(const struct upstream_addr *ua, int64_t now_ms, char *buf, size_t len)
{
    int admin = atomic_load(&ua->admin);
    int64_t until = atomic_load(&ua->failed_until_ms);
    if (admin == UPSTREAM_DISABLED || admin == UPSTREAM_DRAINING)
        snprintf(buf, len, "%s by uid %u",
                 admin == UPSTREAM_DISABLED ? "disabled" : "draining",
                 atomic_load(&ua->admin_uid));
    else if (atomic_load(&ua->down))
        snprintf(buf, len, "check: %s",
                 ua->check_why[0] != '\0' ? ua->check_why : "failed");
    else if (until > now_ms)
        snprintf(buf, len, "connect: %s; skipped for %lld.%lld s more",
                 log_strerror(atomic_load(&ua->last_error)),
                 (long long)((until - now_ms) / 1000),
                 (long long)((until - now_ms) % 1000 / 100));
    else
        snprintf(buf, len, "-");
}

/* show listeners */
static void show_listeners(FILE *f, struct generation *g)
{
    fputs("# listener protocol mode open accepted addresses\n", f);
    for (size_t i = 0; i < g->nlisteners; i++) {
        const struct listener *l = &g->listeners[i];
        fprintf(f, "%s %s %s %u %llu ", l->cfg->name,
                l->cfg->protocol == PROTOCOL_UDP ? "udp" : "tcp",
                l->cfg->mode == MODE_PROXY ? "proxy" : "echo",
                atomic_load(&l->st->active),
                (unsigned long long)atomic_load(&l->st->accepted));
        for (size_t s = 0; s < l->nsocks; s++)
            fprintf(f, "%s%s", s > 0 ? "," : "", l->socks[s].name);
        fputc('\n', f);
    }
}

/* show upstreams [LISTENER] */
/* Writes the line of upstream up of listener l; `gone` for an address
 * the running configuration no longer has. */
static void upstream_line(FILE *f, const struct listener *l, const struct upstream *up,
                          bool gone, int64_t now)
{
    const struct upstream_addr *ua = up->addrs[0];
    char last[32] = "-", why[160];
    if (ua->check_last_ms > 0)
        snprintf(last, sizeof(last), "%lld.%lld",
                 (long long)((now - ua->check_last_ms) / 1000),
                 (long long)((now - ua->check_last_ms) % 1000 / 100));
    if (gone)
        snprintf(why, sizeof(why),
                 "gone from the configuration; open connections finish");
    else
        why_of(ua, now, why, sizeof(why));
    fprintf(f, "%s %s %s %u %s %s %u %llu %llu %s %s\n", l->cfg->name, up->text, ua->name,
            upstream_weight(up), up->backup ? "yes" : "no",
            gone ? "draining" : upstream_state_name(ua, now), atomic_load(&ua->active),
            (unsigned long long)atomic_load(&ua->connects),
            (unsigned long long)atomic_load(&ua->connect_failures), last, why);
}

/* Whether listener l has address ua among its upstreams. */
static bool has_address(const struct listener *l, const struct upstream_addr *ua)
{
    for (size_t u = 0; l != NULL && u < l->nupstreams; u++)
        if (l->upstreams[u].addrs[0] == ua)
            return true;
    return false;
}

/* show upstreams' walk over the older generations alive. */
struct gone_walk {
    FILE *f;
    struct generation *current;
    const char *only;
    int64_t now;
    const struct upstream_addr *seen[64]; /* those written already */
    size_t nseen;
};

/* Writes the addresses of an older generation g that the current one no
 * longer has and that still hold connections: draining, until they end
 * (a reload removed them, or their name stopped resolving to them). */
static void list_gone(const struct generation *g, void *arg)
{
    struct gone_walk *w = arg;
    if (g == w->current)
        return;
    for (size_t i = 0; i < g->nlisteners; i++) {
        const struct listener *l = &g->listeners[i];
        if (w->only != NULL && strcmp(l->cfg->name, w->only) != 0)
            continue;
        const struct listener *now = find_listener(w->current, l->cfg->name);
        for (size_t u = 0; u < l->nupstreams; u++) {
            const struct upstream_addr *ua = l->upstreams[u].addrs[0];
            bool seen = false;
            for (size_t s = 0; s < w->nseen && !seen; s++)
                seen = w->seen[s] == ua;
            if (seen || atomic_load(&ua->active) == 0 || has_address(now, ua) ||
                w->nseen == sizeof(w->seen) / sizeof(w->seen[0]))
                continue;
            w->seen[w->nseen++] = ua;
            upstream_line(w->f, l, &l->upstreams[u], true, w->now);
        }
    }
}

/* show upstreams [LISTENER] */
static void show_upstreams(FILE *f, struct generation *g, const char *only)
{
    int64_t now = k.loop->now_ms;
    fputs("# listener upstream address weight backup state active connects failures "
          "last_check why\n",
          f);
    for (size_t i = 0; i < g->nlisteners; i++) {
        const struct listener *l = &g->listeners[i];
        if (only != NULL && strcmp(l->cfg->name, only) != 0)
            continue;
        for (size_t u = 0; u < l->nupstreams; u++)
            if (first_of_its_address(l, u))
                upstream_line(f, l, &l->upstreams[u], false, now);
    }
    struct gone_walk w = {.f = f, .current = g, .only = only, .now = now};
    generation_each(list_gone, &w);
}

/* What an operator does to an upstream address. */
enum steer { STEER_DISABLE, STEER_ENABLE, STEER_DRAIN, STEER_WEIGHT };

/* disable / enable / drain upstream L A, set weight L A N: applied to
 * every address of l that is A or whose upstream is written A. */
static void steer(struct cconn *c, FILE *f, struct listener *l, const char *address,
                  enum steer how, unsigned weight)
{
    static const char *const done[] = {"disabled", "enabled", "draining", "weight set"};
    size_t n = 0;
    const char *one = NULL;
    for (size_t u = 0; u < l->nupstreams; u++) {
        struct upstream *up = &l->upstreams[u];
        struct upstream_addr *ua = up->addrs[0];
        if (strcmp(ua->name, address) != 0 && strcmp(up->text, address) != 0)
            continue;
        if (!first_of_its_address(l, u))
            continue;
        if (how == STEER_WEIGHT)
            atomic_store(&ua->weight, weight);
        else
            atomic_store(&ua->admin, how == STEER_DISABLE ? UPSTREAM_DISABLED
                                     : how == STEER_DRAIN ? UPSTREAM_DRAINING
                                                          : UPSTREAM_ENABLED);
        atomic_store(&ua->admin_uid, (unsigned)c->uid);
        one = ua->name;
        n++;
    }
    if (n == 0) {
        fprintf(f, "error: listener %s has no upstream %s (see show upstreams %s)\n",
                l->cfg->name, address, l->cfg->name);
        return;
    }
    char count[48] = "";
    if (n > 1)
        snprintf(count, sizeof(count), " (%zu addresses)", n);
    char w[24] = "";
    if (how == STEER_WEIGHT)
        snprintf(w, sizeof(w), " to %u", weight);
    log_notice("control: uid %u: listener %s: upstream %s%s %s%s", (unsigned)c->uid,
               l->cfg->name, n > 1 ? address : one, count, done[how], w);
    fprintf(f, "ok: listener %s: upstream %s%s %s%s\n", l->cfg->name,
            n > 1 ? address : one, count, done[how], w);
}

/* Reads a decimal number of at most `max` from text; false when it is not
 * one. */
static bool parse_number(const char *text, unsigned long long max,
                         unsigned long long *out)
{
    if (text[0] < '0' || text[0] > '9' || strlen(text) > 20)
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0' || errno != 0 || v > max)
        return false;
    *out = v;
    return true;
}

static const char help_text[] = "show listeners\n"
                                "show upstreams [LISTENER]\n"
                                "show connections [LISTENER]\n"
                                "show stats\n"
                                "disable upstream LISTENER ADDRESS\n"
                                "enable upstream LISTENER ADDRESS\n"
                                "drain upstream LISTENER ADDRESS\n"
                                "set weight LISTENER ADDRESS 1..256\n"
                                "reload\n"
                                "drain\n"
                                "kill connection ID\n"
                                "help\n";

/* The commands that take no listener to steer, as help writes them: for
 * the error of one given with a missing or an extra word. */
static const struct {
    const char *w0, *w1; /* its first words (w1 NULL: one) */
    const char *form;
} forms_of_others[] = {{"show", "listeners", "show listeners"},
                       {"show", "upstreams", "show upstreams [LISTENER]"},
                       {"show", "connections", "show connections [LISTENER]"},
                       {"show", "stats", "show stats"},
                       {"reload", NULL, "reload"},
                       {"drain", NULL, "drain"},
                       {"help", NULL, "help"}};

/* Writes the error of a command that is none the daemon knows, or one it
 * knows with a word too many or too few. */
static void unknown_command(FILE *f, int argc, char **argv)
{
    for (size_t i = 0; i < sizeof(forms_of_others) / sizeof(forms_of_others[0]); i++) {
        const char *w1 = forms_of_others[i].w1;
        if (strcmp(argv[0], forms_of_others[i].w0) == 0 &&
            (w1 == NULL || (argc >= 2 && argv[1] != NULL && strcmp(argv[1], w1) == 0))) {
            fprintf(f, "error: expected \"%s\"\n", forms_of_others[i].form);
            return;
        }
    }
    fprintf(f, "error: unknown command \"%s%s%s\"; \"help\" lists them\n", argv[0],
            argc > 1 ? " " : "", argc > 1 ? argv[1] : "");
}

/* Whether the command's first two words are w0 w1. */
static bool is(int argc, char **argv, const char *w0, const char *w1)
{
    /* argv has argc words, which the analyzer does not know. */
    return argc >= 2 && argv[0] != NULL && argv[1] != NULL && strcmp(argv[0], w0) == 0 &&
           strcmp(argv[1], w1) == 0;
}

/* The commands that take a listener (and more): runs them into f, or
 * writes their error; false when argv is none of them. */
static bool run_steering(struct cconn *c, FILE *f, struct generation *g, int argc,
                         char **argv)
{
    static const struct {
        const char *w0, *w1;
        enum steer how;
    } forms[] = {{"disable", "upstream", STEER_DISABLE},
                 {"enable", "upstream", STEER_ENABLE},
                 {"drain", "upstream", STEER_DRAIN},
                 {"set", "weight", STEER_WEIGHT}};
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        if (!is(argc, argv, forms[i].w0, forms[i].w1))
            continue;
        int want = forms[i].how == STEER_WEIGHT ? 5 : 4;
        if (argc != want) {
            fprintf(f, "error: expected \"%s %s LISTENER ADDRESS%s\"\n", forms[i].w0,
                    forms[i].w1, forms[i].how == STEER_WEIGHT ? " N" : "");
            return true;
        }
        struct listener *l = find_listener(g, argv[2]);
        unsigned long long weight = 0;
        if (l == NULL)
            fprintf(f, "error: no listener %s (see show listeners)\n", argv[2]);
        else if (l->cfg->mode != MODE_PROXY)
            fprintf(f, "error: listener %s is an echo listener: it has no upstreams\n",
                    argv[2]);
        else if (forms[i].how == STEER_WEIGHT && !parse_number(argv[4], 256, &weight))
            fprintf(f, "error: weight: expected 1 to 256, got \"%s\"\n", argv[4]);
        else if (forms[i].how == STEER_WEIGHT && weight == 0)
            fprintf(f, "error: weight: expected 1 to 256, got 0 (drain upstream takes "
                       "it out)\n");
        else
            steer(c, f, l, argv[3], forms[i].how, (unsigned)weight);
        return true;
    }
    return false;
}

/* drain: starts the drain SIGTERM starts (through the main thread), or
 * says why not; answers what will happen. */
static void drain(struct cconn *c, FILE *f, const struct generation *g)
{
    bool no = false;
    if (atomic_load(&k.d->stopping))
        fputs("error: already stopping: no longer accepting\n", f);
    else if (atomic_load(&k.d->draining) ||
             !atomic_compare_exchange_strong(&k.d->drain_asked, &no, true))
        fputs("error: already draining\n", f);
    else {
        log_notice("control: uid %u: drain", (unsigned)c->uid);
        kill(getpid(), CONTROL_DRAIN_SIGNAL);
        unsigned open = atomic_load(&k.d->active);
        double delay = (double)g->cfg->drain_delay_ms / 1000;
        double timeout = (double)g->cfg->shutdown_timeout_ms / 1000;
        if (g->cfg->drain_delay_ms > 0)
            fprintf(f,
                    "ok: draining: accepting for %.3g s more, then %u connections get "
                    "up to %.3g s\n",
                    delay, open, timeout);
        else
            fprintf(
                f, "ok: draining: no longer accepting; %u connections get up to %.3g s\n",
                open, timeout);
    }
}

/* Runs the command the reader holds: answers it, or starts what it waits
 * for (the workers, a reload). */
static void run_command(struct cconn *c)
{
    int argc = c->rd.argc;
    char **argv = c->rd.argv;
    bool show = argc >= 1 && strcmp(argv[0], "show") == 0;
    const char *what = show && argc >= 2 ? argv[1] : NULL;
    if (show && what != NULL && strcmp(what, "connections") == 0 && argc <= 3) {
        if (argc == 3 && !listener_exists(argv[2]))
            answer_line(c, "error: no listener %s (see show listeners)", argv[2]);
        else
            ask_workers(c, false, 0, argc == 3 ? argv[2] : "");
        return;
    }
    if (is(argc, argv, "kill", "connection")) {
        unsigned long long id;
        if (argc != 3 || !parse_number(argv[2], UINT64_MAX, &id))
            answer_line(c, "error: expected \"kill connection ID\", ID a number from "
                           "show connections");
        else
            ask_workers(c, true, id, "");
        return;
    }
    if (argc == 1 && strcmp(argv[0], "reload") == 0) {
        c->reload_ticket = atomic_fetch_add(&k.d->reload_asked, 1) + 1;
        log_notice("control: uid %u: reload", (unsigned)c->uid);
        kill(getpid(), SIGHUP);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL) {
        answer(c, NULL, 0);
        return;
    }
    struct generation *g = generation_current(k.d);
    if (show && what != NULL && strcmp(what, "listeners") == 0 && argc == 2) {
        show_listeners(f, g);
    } else if (show && what != NULL && strcmp(what, "upstreams") == 0 && argc <= 3) {
        if (argc == 3 && find_listener(g, argv[2]) == NULL)
            fprintf(f, "error: no listener %s (see show listeners)\n", argv[2]);
        else
            show_upstreams(f, g, argc == 3 ? argv[2] : NULL);
    } else if (show && what != NULL && strcmp(what, "stats") == 0 && argc == 2) {
        size_t n;
        char *stats = metrics_render(k.d, false, &n);
        if (stats == NULL)
            fputs("error: out of memory\n", f);
        else
            fwrite(stats, 1, n, f);
        free(stats);
    } else if (argc == 1 && strcmp(argv[0], "help") == 0) {
        fputs(help_text, f);
    } else if (argc == 1 && strcmp(argv[0], "drain") == 0) {
        drain(c, f, g);
    } else if (!run_steering(c, f, g, argc, argv)) {
        unknown_command(f, argc, argv);
    }
    generation_unref(g);
    fputc('\n', f);
    if (fclose(f) != 0) {
        free(text);
        text = NULL;
    }
    answer(c, text, len);
}

/* ---- reloads -------------------------------------------------------------- */

/* How a reload went, on its way to the admin thread. */
struct outcome {
    struct loop_task task;
    unsigned long long asked;
    bool ok;
    char text[1024];
};

/* Answers the clients whose reload the outcome serves. */
static void reloaded(struct loop_task *t, struct loop *l)
{
    (void)l;
    struct outcome *o = container_of(t, struct outcome, task);
    struct cconn *next;
    for (struct cconn *c = k.conns; c != NULL; c = next) {
        next = c->next;
        if (c->reload_ticket == 0 || c->reload_ticket > o->asked)
            continue;
        c->reload_ticket = 0;
        answer_line(c, "%s: %s", o->ok ? "ok" : "error: reload failed", o->text);
        pump(c);
    }
    free(o);
}

void control_reloaded(unsigned long long asked, bool ok, const char *outcome)
{
    if (k.loop == NULL || asked == 0)
        return;
    struct outcome *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return; /* its clients time out; the log has the outcome */
    o->asked = asked;
    o->ok = ok;
    snprintf(o->text, sizeof(o->text), "%s", outcome);
    loop_post(k.loop, &o->task, reloaded);
}

/* ---- start and stop ------------------------------------------------------ */

int control_start(struct daemon *d, struct loop *loop)
{
    if (k.lfd < 0)
        return 0;
    k.d = d;
    k.loop = loop;
    k.listen.on_event = listen_ready;
    int e = loop_watch(loop, k.lfd, &k.listen, MIO_READABLE);
    if (e < 0)
        return e;
    log_info("control: listening on %s", k.path);
    return 0;
}

/* The socket's file is the new process's now: never removed. */
static atomic_bool handed_over;

int control_listen_fd(void)
{
    return k.lfd;
}

/* Stops accepting and closes the listening socket, leaving its file to
 * the new process, on the admin thread. */
static void unlisten(struct loop_task *t, struct loop *l)
{
    (void)t;
    if (k.lfd < 0)
        return;
    loop_unwatch(l, k.lfd);
    close(k.lfd);
    k.lfd = -1;
}

void control_handover(void)
{
    static struct loop_task task;
    atomic_store(&handed_over, true);
    if (k.loop != NULL && k.lfd >= 0)
        loop_post(k.loop, &task, unlisten);
}

void control_stop(void)
{
    while (k.conns != NULL) {
        close_conn(k.conns);
    }
    if (k.loop != NULL)
        loop_due(k.loop); /* frees them */
    if (k.lfd >= 0) {
        if (k.loop != NULL)
            loop_unwatch(k.loop, k.lfd);
        close(k.lfd);
        k.lfd = -1;
        struct stat st;
        if (k.path[0] != '\0' && !atomic_load(&handed_over) && lstat(k.path, &st) == 0 &&
            st.st_dev == k.dev && st.st_ino == k.ino && unlink(k.path) < 0)
            log_notice("control: cannot remove %s: %s (the next start replaces it)",
                       k.path, log_strerror(errno));
    }
    k.loop = NULL;
}
