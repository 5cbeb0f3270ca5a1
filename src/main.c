/*
 * mio-echod: a TCP echo / relay daemon on libmio.
 *
 * Start-up order: options, configuration, log, bind every listener, drop
 * privileges, go to the background, pid file, workers.  Signals are never
 * handled in a handler: they stay blocked in every thread and the main
 * thread takes them with sigwaitinfo(), then tells the workers through
 * their wakers.
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "generation.h"
#include "fdstore.h"
#include "log.h"
#include "loop.h"
#include "admin.h"
#include "check.h"
#include "control.h"
#include "metrics.h"
#include "reload.h"
#include "resolver.h"
#include "mio.h"
#include "process.h"
#include "service.h"
#include "tls.h"
#include "upgrade.h"
#include "worker.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

/* Exit statuses, documented in mio-echod(8). */
enum { EXIT_OK = 0, EXIT_CONFIG = 1, EXIT_USAGE = 2, EXIT_RUNTIME = 3 };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mio-echod [-c file] [-t] [-f] [-v] [-V] [-h]\n"
            "  -c file  configuration file (default %s/mio-echod.conf)\n"
            "  -t       check the configuration and exit\n"
            "  -f       stay in the foreground, logging to stderr\n"
            "  -v       log debug messages too\n"
            "  -V       print the version and exit\n"
            "  -h       print this help and exit\n",
            SYSCONFDIR);
}

/* The signal's name, for the log. */
static const char *signame(int sig)
{
    return sig == SIGTERM   ? "SIGTERM"
           : sig == SIGINT  ? "SIGINT"
           : sig == SIGHUP  ? "SIGHUP"
           : sig == SIGUSR1 ? "SIGUSR1"
           : sig == SIGUSR2 ? "SIGUSR2"
                            : "signal";
}

/* Logs one line of counters per listener (SIGUSR1). */
static void log_counters(struct daemon *d)
{
    struct generation *g = atomic_load(&d->gen);
    log_notice("%u connections open", atomic_load(&d->active));
    for (size_t i = 0; i < g->nlisteners; i++) {
        struct listener_state *st = g->listeners[i].st;
        unsigned long long refused = 0;
        if (g->listeners[i].cfg->protocol == PROTOCOL_UDP) {
            for (int k = 0; k < UDP_DROP_N; k++)
                refused += atomic_load(&st->udp_dropped[k]);
            log_notice("listener %s: flows=%u total=%llu datagrams_in=%llu "
                       "datagrams_out=%llu dropped=%llu in=%llu out=%llu",
                       st->name, atomic_load(&st->active),
                       (unsigned long long)atomic_load(&st->accepted),
                       (unsigned long long)atomic_load(&st->dgrams_in),
                       (unsigned long long)atomic_load(&st->dgrams_out), refused,
                       (unsigned long long)atomic_load(&st->bytes_in),
                       (unsigned long long)atomic_load(&st->bytes_out));
            continue;
        }
        for (int k = 0; k < REFUSED_N; k++)
            refused += atomic_load(&st->refused[k]);
        log_notice("listener %s: open=%u accepted=%llu refused=%llu in=%llu out=%llu",
                   st->name, atomic_load(&st->active),
                   (unsigned long long)atomic_load(&st->accepted), refused,
                   (unsigned long long)atomic_load(&st->bytes_in),
                   (unsigned long long)atomic_load(&st->bytes_out));
    }
}

/* Whether a worker has taken the listeners out of its poll. */
static bool is_quiet(const struct worker *w, const void *arg)
{
    (void)arg;
    return atomic_load(&w->quiet);
}

/* Closes the listening sockets once every worker has taken them out of its
 * poll (waiting up to `ms` for that), so that no worker accepts on a
 * closed (or reused) descriptor and new clients are refused at once. */
static void close_listeners_when_quiet(struct daemon *d, bool *closed, int ms)
{
    if (*closed || !worker_wait_all(d, is_quiet, NULL, ms))
        return;
    generation_close_sockets(d, atomic_load(&d->gen), false);
    *closed = true;
}

/* Tells every worker to look at the daemon's state. */
static void wake_workers(struct daemon *d)
{
    for (unsigned i = 0; i < d->nworkers; i++)
        worker_wake(&d->workers[i]);
}

/* Tells systemd how many connections are open (STATUS=). */
static void notify_status(struct daemon *d)
{
    unsigned long long total = 0;
    struct generation *g = atomic_load(&d->gen);
    for (size_t i = 0; i < g->nlisteners; i++)
        total += atomic_load(&g->listeners[i].st->accepted);
    service_notify("STATUS=%s%u connections open, %llu served",
                   atomic_load(&d->stopping)   ? "stopping: "
                   : atomic_load(&d->draining) ? "draining: "
                                               : "",
                   atomic_load(&d->active), total);
}

/* Starts a drain (SIGTERM, SIGINT or the control socket's drain, named
 * `why`): /health says draining from now on, while the daemon accepts on
 * for drain_delay.  Returns when accepting is to stop (loop_clock_ms()). */
static int64_t start_drain(struct daemon *d, const char *why)
{
    int64_t delay = atomic_load(&d->gen)->cfg->drain_delay_ms;
    atomic_store(&d->draining, true);
    if (delay > 0) {
        service_notify("STOPPING=1\nSTATUS=draining: accepting for %lld ms more, "
                       "%u connections open",
                       (long long)delay, atomic_load(&d->active));
        log_notice("%s: draining: still accepting for %lld ms (drain_delay), "
                   "/health answers 503",
                   why, (long long)delay);
    }
    return loop_clock_ms() + delay;
}

/* Stops accepting (`why` says what ended the drain_delay) and gives the
 * open connections shutdown_timeout from now.  Returns that deadline. */
static int64_t stop_accepting(struct daemon *d, const char *why, bool *listeners_closed)
{
    /* Stop first, then say so: a client that connects after the line is
     * refused. */
    int64_t drain = atomic_load(&d->gen)->cfg->shutdown_timeout_ms;
    bool delayed = atomic_load(&d->gen)->cfg->drain_delay_ms > 0;
    atomic_store(&d->stopping, true);
    wake_workers(d);
    int64_t deadline = loop_clock_ms() + drain;
    close_listeners_when_quiet(d, listeners_closed, 1000);
    if (!delayed)
        service_notify("STOPPING=1");
    log_notice("%s: no longer accepting; draining %u connections for up to %lld ms", why,
               atomic_load(&d->active), (long long)drain);
    return deadline;
}

/* SIGUSR2: starts the new process (upgrade.h), unless one is starting
 * already, the daemon drains, or systemd supervises it (its fd store does
 * this on "systemctl restart", and it would take the new process for a
 * stray one). */
static void begin_upgrade(struct daemon *d, struct upgrade *up)
{
    char why[600];
    if (atomic_load(&d->draining)) {
        log_notice("SIGUSR2: draining, not starting a new process");
        return;
    }
    if (up->pid > 0) {
        log_notice("SIGUSR2: the new process (pid %ld) is still starting", (long)up->pid);
        return;
    }
    if (service_notifies()) {
        log_warn("SIGUSR2: under systemd, \"systemctl restart\" restarts without "
                 "refusing a client (the fd store keeps the sockets); not starting a "
                 "new process");
        return;
    }
    if (upgrade_start(d, up, metrics_listen_fd(), control_listen_fd(), why, sizeof(why)) <
        0) {
        log_err("SIGUSR2: cannot start a new process: %s; still serving", why);
        return;
    }
    log_notice("SIGUSR2: started a new process (pid %ld) with the listening sockets; "
               "serving until it is ready",
               (long)up->pid);
}

/* Follows the new process's start: true once it serves, this daemon having
 * handed the sockets over (it stops accepting next).  One that failed
 * leaves this daemon serving, and says why. */
static bool upgrade_done(struct daemon *d, struct upgrade *up)
{
    char why[1200];
    long pid = up->pid;
    int r = upgrade_poll(up, why, sizeof(why));
    if (r == 0)
        return false;
    if (r < 0) {
        log_err("SIGUSR2: the new process (pid %ld) failed: %s; still serving", pid, why);
        int e = process_pidfile_write(d->pidfile); /* it may have written its own */
        if (e < 0)
            log_warn("pidfile \"%s\": %s", d->pidfile, log_strerror(-e));
        return false;
    }
    log_notice("SIGUSR2: the new process (pid %ld) is ready; handing the sockets over",
               pid);
    atomic_store(&d->handed_over, true);
    metrics_handover();
    control_handover();
    atomic_store(&d->draining, true);
    return true;
}

/*
 * Takes signals until the workers have drained.  SIGTERM or SIGINT (or
 * CONTROL_DRAIN_SIGNAL, the control socket's drain) starts a drain: the
 * daemon says it is draining and accepts on for drain_delay, then stops
 * accepting and gives the connections shutdown_timeout.  A SIGTERM or
 * SIGINT during drain_delay stops accepting at once; one once accepting has
 * stopped closes every connection.
 */
static void signal_loop(struct daemon *d, const sigset_t *set)
{
    int64_t deadline = 0, status_at = 0, accept_until = 0;
    bool listeners_closed = false;
    struct upgrade up = {.fd = -1};
    for (;;) {
        /* A short tick while draining; STATUS= every few seconds. */
        struct timespec tick = {0, 50 * 1000000L}, slow = {5, 0};
        siginfo_t si;
        bool busy = atomic_load(&d->draining) || up.pid > 0;
        int sig = sigtimedwait(set, &si, busy ? &tick : &slow);
        if (loop_clock_ms() >= status_at) {
            notify_status(d);
            status_at = loop_clock_ms() + 5000;
        }
        if (sig == CONTROL_DRAIN_SIGNAL) {
            /* Only ever starts a drain: one already begun goes on. */
            if (!atomic_load(&d->draining))
                accept_until = start_drain(d, "drain");
            if (!atomic_load(&d->stopping) && loop_clock_ms() >= accept_until)
                deadline = stop_accepting(d, "drain", &listeners_closed);
        } else if (sig == SIGTERM || sig == SIGINT) {
            if (atomic_load(&d->stopping)) {
                log_notice("%s while stopping: closing every connection now",
                           signame(sig));
                atomic_store(&d->closing, true);
            } else if (atomic_load(&d->draining)) {
                deadline = stop_accepting(d, signame(sig), &listeners_closed);
            } else {
                accept_until = start_drain(d, signame(sig));
                if (loop_clock_ms() >= accept_until)
                    deadline = stop_accepting(d, signame(sig), &listeners_closed);
            }
            wake_workers(d);
        } else if (sig == SIGHUP) {
            /* Every reload the control socket asked for so far is served by
             * this one, which starts after they were asked. */
            unsigned long long asked = atomic_load(&d->reload_asked);
            char outcome[1024];
            bool ok = false;
            if (atomic_load(&d->draining)) {
                log_notice("SIGHUP: draining, not reloading");
                snprintf(outcome, sizeof(outcome),
                         "the daemon is draining: not reloading");
            } else {
                ok = reload_config(d, outcome, sizeof(outcome));
            }
            control_reloaded(asked, ok, outcome);
        } else if (sig == SIGUSR1) {
            log_counters(d);
        } else if (sig == SIGUSR2) {
            begin_upgrade(d, &up);
        } else if (sig == RESOLVER_SIGNAL && !atomic_load(&d->stopping)) {
            reload_addresses(d);
        }
        if (up.pid > 0 && upgrade_done(d, &up) && !atomic_load(&d->stopping))
            deadline = stop_accepting(d, "upgrade", &listeners_closed);
        if (!atomic_load(&d->draining))
            continue;
        if (!atomic_load(&d->stopping)) {
            if (loop_clock_ms() < accept_until)
                continue;
            deadline = stop_accepting(d, "drain_delay over", &listeners_closed);
        }
        close_listeners_when_quiet(d, &listeners_closed, 0);
        if (worker_wait_all(d, NULL, NULL, 0)) /* every worker returned */
            return;
        if (!atomic_load(&d->closing) && loop_clock_ms() >= deadline) {
            log_notice("shutdown_timeout: closing %u connections still open",
                       atomic_load(&d->active));
            atomic_store(&d->closing, true);
            wake_workers(d);
        }
    }
}

/* path made absolute against the current directory ("" stays ""). */
static char *absolute_path(const char *path)
{
    char cwd[4096];
    if (path[0] == '\0' || path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
        return strdup(path);
    size_t n = strlen(cwd) + strlen(path) + 2;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", cwd, path);
    return p;
}

/* Who must be able to read what, for the checks below. */
struct reader {
    const char *user;
    uid_t uid;
    gid_t gid;
};

/* -t: warns on stderr when r's user cannot read the file at path (named
 * `name`), as every reload will then fail.  Exactly, by a child that
 * becomes the user, when running as root; otherwise it says it could not
 * check, unless the user is the one running. */
static void check_readable_as(const struct reader *r, const char *path, const char *name)
{
    if (geteuid() != 0) {
        if (r->uid != geteuid())
            fprintf(stderr,
                    "mio-echod: warning: cannot check that user \"%s\" "
                    "may read %s (that needs root); a reload reads it as that "
                    "user\n",
                    r->user, name);
        return;
    }
    int why;
    int rc = process_user_can_read(r->uid, r->gid, path, &why);
    if (rc == 0)
        fprintf(stderr,
                "mio-echod: warning: reload will fail: %s is not "
                "readable by user \"%s\": %s\n",
                name, r->user, log_strerror(why));
    else if (rc < 0)
        fprintf(stderr,
                "mio-echod: warning: cannot check that user \"%s\" "
                "may read %s: %s\n",
                r->user, name, log_strerror(why));
}

/* check_readable_as() for a TLS file, named as its path. */
static void check_tls_file(const char *file, void *arg)
{
    check_readable_as(arg, file, file);
}

/* -t with `user` set: checks that user may read the configuration file
 * and the TLS files it names, which every reload reads again as that user. */
static void check_readable_by_user(const struct config *cfg, const char *path,
                                   const char *name)
{
    struct reader r = {.user = cfg->user};
    if (process_user_lookup(cfg->user, &r.uid, &r.gid) <= 0)
        return;
    check_readable_as(&r, path, name);
    config_tls_files(cfg, check_tls_file, &r);
}

/* Once privileges are dropped: warns when the file at path (named `name`)
 * cannot be read any more, as every reload will then fail. */
static void warn_unreadable(const char *path, const char *name, const char *user)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return;
    }
    log_warn("reload will fail: %s is not readable by user \"%s\": %s", name, user,
             log_strerror(errno));
}

/* warn_unreadable() for a TLS file, named as its path. */
static void warn_tls_file(const char *file, void *user)
{
    warn_unreadable(file, file, user);
}

/* The number of workers: as configured, or one per CPU. */
static unsigned worker_count(const struct config *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
}

/* What -V says of the version and of libmio's backends: the one poller =
 * "auto" takes (MIO_BACKEND's, if set), and those this system grants. */
static void print_version(void)
{
    char usable[64];
    config_pollers_usable(usable, sizeof(usable));
    printf("mio-echod %s (libmio, %s backend)\n", PACKAGE_VERSION, mio_backend_name());
    const char *env = getenv("MIO_BACKEND");
    printf("pollers: %s usable here; poller = \"auto\" takes %s%s\n", usable,
           mio_backend_name(),
           env != NULL && env[0] != '\0' ? " (from MIO_BACKEND)" : "");
}

/* What -V says of TLS: the library, and whether the kernel offers kTLS. */
static void print_tls(void)
{
    if (!tls_built()) {
        printf("TLS: built without TLS (no OpenSSL 3 found at build time)\n");
        return;
    }
    printf("TLS: %s\n", tls_library());
    if (tls_ktls_offered())
        printf("kTLS: offered by this kernel: OpenSSL hands it the record layer after "
               "the handshake\n");
    else
        printf("kTLS: not offered by this kernel (no \"tls\" in "
               "/proc/sys/net/ipv4/tcp_available_ulp): TLS is encrypted in user space\n");
}

/* Whether a listener of cfg has TLS (tls or upstream_tls). */
static bool uses_tls(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].tls.on || cfg->listeners[i].upstream_tls.on)
            return true;
    return false;
}

/* Starts the admin thread and what runs on it (metrics, health checks); false, with the
 * reason logged, when one cannot start. */
static bool start_admin(struct daemon *d)
{
    int e = admin_init(config_poller_backend(atomic_load(&d->gen)->cfg));
    if (e < 0) {
        log_err("admin thread: %s", log_strerror(-e));
        return false;
    }
    bool bound;
    if ((e = metrics_start(d, admin_loop(), &bound)) < 0) {
        log_err("metrics: cannot %s %s: %s", bound ? "start on" : "listen on",
                metrics_address(), log_strerror(-e));
        return false;
    }
    if ((e = control_start(d, admin_loop())) < 0) {
        log_err("control: cannot watch the socket: %s", log_strerror(-e));
        return false;
    }
    if ((e = check_start(d, admin_loop())) < 0) {
        log_err("health checks: cannot start: %s", log_strerror(-e));
        return false;
    }
    if ((e = resolver_start(d)) < 0) {
        log_err("resolve: cannot start a thread: %s", log_strerror(-e));
        return false;
    }
    if ((e = admin_start()) < 0) {
        log_err("admin thread: cannot start a thread: %s", log_strerror(-e));
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    const char *path = SYSCONFDIR "/mio-echod.conf";
    bool check = false, foreground = false, verbose = false;
    int opt;
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): before any thread exists. */
    while ((opt = getopt(argc, argv, "c:tfvVh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check = true;
            break;
        case 'f':
            foreground = true;
            break;
        case 'v':
            verbose = true;
            break;
        case 'V':
            print_version();
            print_tls();
            return EXIT_OK;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "mio-echod: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }

    /* Started by SIGUSR2 of a daemon that waits to hear how it went. */
    bool upgraded = upgrade_child_take();
    char err[1024];
    char *pidfile = NULL; /* removed at exit once written */
    /* The daemon leaves its directory when it goes to the background: a
     * reload must still find the file, by its absolute path.  Messages
     * name it as given. */
    char *abspath = realpath(path, NULL);
    const char *readpath = abspath != NULL ? abspath : path;
    struct config *cfg = config_load(readpath, path, err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "mio-echod: %s\n", err);
        upgrade_child_failed(err);
        free(abspath);
        return EXIT_CONFIG;
    }
    if (check) {
        check_readable_by_user(cfg, readpath, path);
        reload_warn_certificates(cfg, true);
        printf("mio-echod: %s: configuration OK\n", path);
        config_free(cfg);
        free(abspath);
        return EXIT_OK;
    }

    /* Writes to a closed socket fail with EPIPE; they never kill us. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, RESOLVER_SIGNAL);
    sigaddset(&set, CONTROL_DRAIN_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every worker */

    log_open(cfg->log_target, verbose ? LOG_DEBUG : cfg->log_level, foreground);
    log_set_format(cfg->log_format);
    if (uses_tls(cfg)) {
        log_info("TLS: %s; kernel TLS %s", tls_library(),
                 tls_ktls_offered() ? "offered: OpenSSL hands it the record layer"
                                    : "not offered by this kernel: TLS in user space");
        reload_warn_certificates(cfg, false);
    }
    struct daemon d = {.config_path = readpath,
                       .config_name = path,
                       .verbose = verbose,
                       .accept_mu = PTHREAD_MUTEX_INITIALIZER,
                       .gen_mu = PTHREAD_MUTEX_INITIALIZER};
    int status = EXIT_RUNTIME;
    /* Before the sockets are taken: that unsets LISTEN_FDS. */
    bool supervised = service_supervised() || upgraded;
    struct passed_sock bad;
    int e = service_take_sockets(&d.passed, &d.npassed, &bad);
    upgrade_adopt(&d); /* the stats and control sockets an upgrade passed */
    if (e == 0)
        e = upgrade_init(argv[0], readpath, foreground, verbose);
    if (e == -ENOTSOCK && bad.fd >= 0)
        log_err("socket passed by systemd as \"%s\" (fd %d) is neither a listening "
                "stream socket nor a datagram socket",
                bad.name, bad.fd);
    else if (e < 0 && bad.fd >= 0)
        log_err("socket passed by systemd as \"%s\": %s", bad.name, log_strerror(-e));
    else if (e < 0)
        log_err("sockets passed by systemd: %s", log_strerror(-e));
    if (e == 0)
        e = fdstore_init(&d);
    if (e < 0)
        goto out;
    struct generation_error ge;
    struct generation *gen = generation_open(&d, cfg, NULL, false, &ge);
    if (gen == NULL) {
        char why[2 * ADDR_STRLEN];
        generation_error_text(&ge, why, sizeof(why));
        log_err("%s", why);
        goto out;
    }
    cfg = NULL; /* the generation owns it */
    atomic_store(&d.gen, gen);
    fdstore_sync(&d, gen); /* before READY=1: a restart then gets them all */
    const struct config *conf = gen->cfg;
    uid_t uid;
    gid_t gid;
    int found = process_user_lookup(conf->user, &uid, &gid);
    if (found < 0)
        snprintf(err, sizeof(err), "user \"%s\": %s", conf->user,
                 found == -ENOENT ? "no such user" : log_strerror(-found));
    if (found > 0 && geteuid() == 0)
        generation_give_sockets(gen, uid, gid);
    const char *step;
    e = found >= 0 ? control_open(conf, uid, gid, found > 0 && geteuid() == 0, &step) : 0;
    if (e == -EADDRINUSE) {
        log_err("control: %s: another daemon answers there", conf->control_path);
        goto out;
    } else if (e < 0) {
        log_err("control: cannot %s %s: %s", step, conf->control_path, log_strerror(-e));
        goto out;
    }
    int dropped = found > 0 ? process_drop_privileges(uid, gid) : 0;
    if (dropped == PROCESS_NEEDS_ROOT)
        snprintf(err, sizeof(err),
                 "user \"%s\": switching users needs root "
                 "(running as uid %u)",
                 conf->user, (unsigned)geteuid());
    else if (dropped == PROCESS_NOT_DROPPED)
        snprintf(err, sizeof(err), "user \"%s\": privileges were not dropped",
                 conf->user);
    else if (dropped < 0)
        snprintf(err, sizeof(err), "user \"%s\": cannot drop privileges: %s", conf->user,
                 log_strerror(-dropped));
    if (found < 0 || dropped < 0) {
        log_err("%s", err);
        goto out;
    }
    if (found > 0) {
        warn_unreadable(readpath, path, conf->user);
        config_tls_files(conf, warn_tls_file, (void *)conf->user);
    }
    /* Resolved before going to the background, which leaves the
     * directory; kept apart from conf, which a reload may free. */
    pidfile = absolute_path(conf->pidfile);
    /* Under systemd the service manager supervises this very process. */
    e = !foreground && !supervised ? process_daemonize() : 0;
    if (e < 0) {
        log_err("cannot go to the background: %s", log_strerror(-e));
        goto out;
    }
    e = process_pidfile_write(pidfile);
    d.pidfile = pidfile;
    if (e < 0) {
        log_err("pidfile \"%s\": %s", pidfile, log_strerror(-e));
        free(pidfile);
        pidfile = NULL;
        d.pidfile = NULL;
        goto out;
    }

    d.nworkers = worker_count(conf);
    d.workers = calloc(d.nworkers, sizeof(*d.workers));
    if (d.workers == NULL)
        goto out;
    for (unsigned i = 0; i < d.nworkers; i++) {
        e = worker_init(&d.workers[i], &d, i);
        if (e < 0) {
            log_err("worker %u: %s", i, log_strerror(-e));
            d.nworkers = i + 1;
            goto out;
        }
    }
    unsigned started = 0;
    for (; started < d.nworkers; started++) {
        e = worker_start(&d.workers[started]);
        if (e < 0) {
            log_err("worker %u: cannot start a thread: %s", started, log_strerror(-e));
            break;
        }
    }
    bool started_all = started == d.nworkers;
    if (started_all && !start_admin(&d))
        started_all = false;
    if (started_all) {
        upgrade_close_unclaimed(); /* an address the configuration changed */
        log_notice("mio-echod %s started: %u worker%s, %s backend", PACKAGE_VERSION,
                   d.nworkers, d.nworkers == 1 ? "" : "s",
                   mio_poll_backend(d.workers[0].loop.poll));
        log_started();
        process_ready(conf->log_target == LOG_TARGET_STDERR);
        service_notify("READY=1\nSTATUS=0 connections open, listening");
        upgrade_child_ready();
        signal_loop(&d, &set);
        status = EXIT_OK;
    } else {
        atomic_store(&d.draining, true);
        atomic_store(&d.stopping, true);
        atomic_store(&d.closing, true);
    }
    for (unsigned i = 0; i < started; i++) {
        worker_wake(&d.workers[i]);
        pthread_join(d.workers[i].thread, NULL);
    }
    log_notice("stopped");
out:
    if (status != EXIT_OK) {
        log_last_error(err, sizeof(err));
        upgrade_child_failed(err);
    }
    resolver_stop();
    admin_stop();
    check_stop(); /* before metrics_stop(), whose loop_due() would run its timer */
    metrics_stop();
    control_stop();
    admin_free();
    if (d.workers != NULL)
        for (unsigned i = 0; i < d.nworkers; i++)
            worker_destroy(&d.workers[i]);
    free(d.workers);
    process_pidfile_remove(pidfile);
    free(pidfile);
    gen = atomic_load(&d.gen);
    if (gen != NULL) {
        generation_close_sockets(&d, gen, true);
        generation_unref(gen);
    }
    for (size_t i = 0; i < d.npassed; i++)
        close(d.passed[i].fd);
    free(d.passed);
    fdstore_free(&d);
    upgrade_free();
    config_free(cfg);
    free(abspath);
    return status;
}
