/*
 * libFuzzer target: the configuration loader (src/config.c with the other
 * src/config-*.c, src/addr.c and libconfig) on arbitrary text.
 *
 * config_load() reads a file, so the input is written into a memfd made
 * once (truncated for each input) and loaded through /proc/self/fd/N; where
 * memfd_create is missing, a temporary file made once is used, and removed
 * at exit.  Upstream host names get a fixed loopback answer, never DNS
 * (fuzz-resolver.h), and users come from a fixed table, never NSS (the
 * getpwnam_r() below).  The message goes into a heap buffer of exactly
 * errlen bytes.  Checked:
 *
 *   - a refusal returns NULL with one line of valid UTF-8, starting with
 *     the name the file is given (not its path);
 *   - a configuration loaded has at least one listener; each has a name
 *     and at least one listen address (all of them listen addresses: no
 *     Unix path without its NUL, no port 0 clash checks skipped), an echo
 *     listener no upstreams and no proxy setting, a proxy listener at
 *     least one upstream, none of them its own listen address; the stats
 *     address is one numeric TCP address;
 *   - the same text loads the same way twice (nothing is kept between
 *     loads);
 *   - config_free() always, and LeakSanitizer sees the rest.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz-resolver.h"
#include "../tests/utf8-valid.h"

#define ERRLEN 1024

/* What messages call the file. */
#define NAME "fuzz.conf"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/*
 * libconfig before 1.7.3 leaks a string literal that a syntax error makes
 * its parser drop ("a = [] \"x\";"): hyperrealm/libconfig#142, fixed by
 * #155; Debian 12 ships 1.5.  Only those allocations are let go: a string
 * built by the scanner (strbuf_append, or libconfig_yylex's calloc for "").
 * Nothing of ours allocates through them, and a config_t not destroyed
 * still shows by its settings, which the parser allocates.
 */
const char *__lsan_default_suppressions(void)
{
    return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

/*
 * The users there are, for the loader's check that `user` exists: "root"
 * and "nobody", answered here, so that a fuzzer neither reads the passwd
 * database on every input nor depends on it.  The program's own
 * getpwnam_r(), so it is the one src/process.c calls.
 */
int getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len,
               struct passwd **result);

int getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len,
               struct passwd **result)
{
    static const struct {
        const char *name;
        uid_t id;
    } users[] = {
        {"root", 0},
        {"nobody", 65534},
    };
    *result = NULL;
    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
        if (strcmp(name, users[i].name) != 0)
            continue;
        if (strlen(name) + 1 > len)
            return ERANGE;
        memcpy(buf, name, strlen(name) + 1);
        *pw = (struct passwd){.pw_name = buf,
                              .pw_passwd = buf + strlen(name),
                              .pw_uid = users[i].id,
                              .pw_gid = users[i].id,
                              .pw_gecos = buf + strlen(name),
                              .pw_dir = buf + strlen(name),
                              .pw_shell = buf + strlen(name)};
        *result = pw;
        return 0;
    }
    return 0;
}

#define CHECK(cond, ...)                                               \
    do {                                                               \
        if (!(cond)) {                                                 \
            fprintf(stderr, "fuzz-config: check failed: %s: ", #cond); \
            fprintf(stderr, __VA_ARGS__);                              \
            fputc('\n', stderr);                                       \
            abort();                                                   \
        }                                                              \
    } while (0)

static int fd = -1;
static char path[64];
static char temp_path[] = "/tmp/fuzz-config-XXXXXX";

static void remove_temp(void)
{
    unlink(temp_path);
}

/* Makes the file the inputs are written into, once. */
static void open_file(void)
{
#ifdef MFD_CLOEXEC
    fd = memfd_create("fuzz-config", MFD_CLOEXEC);
#endif
    if (fd < 0) {
        fd = mkstemp(temp_path);
        if (fd < 0) {
            perror("fuzz-config: mkstemp");
            abort();
        }
        atexit(remove_temp);
        snprintf(path, sizeof(path), "%s", temp_path);
    } else {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
}

/* Replaces the file's contents with data. */
static void write_file(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0) {
        perror("fuzz-config: ftruncate");
        abort();
    }
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            perror("fuzz-config: pwrite");
            abort();
        }
        done += (size_t)n;
    }
}

/* Whether the text of an address has its NUL and says what it is. */
static void check_addr(const struct config_addr *a, const char *what)
{
    int family = a->addr.u.sa.sa_family;
    CHECK(a->text != NULL, "%s without its text", what);
    CHECK(family == AF_INET || family == AF_INET6 || family == AF_UNIX,
          "%s \"%s\": family %d", what, a->text, family);
    CHECK((family == AF_UNIX) == (strncmp(a->text, "unix:", 5) == 0),
          "%s \"%s\": family %d", what, a->text, family);
}

static void check_config(const struct config *cfg)
{
    CHECK(cfg->path != NULL && strcmp(cfg->path, path) == 0, "path \"%s\"",
          cfg->path != NULL ? cfg->path : "(null)");
    CHECK(cfg->user != NULL && cfg->pidfile != NULL, "user or pidfile NULL");
    CHECK(cfg->workers <= 256, "workers %u", cfg->workers);
    CHECK(cfg->max_connections <= 1000000, "max_connections %u", cfg->max_connections);
    CHECK(cfg->shutdown_timeout_ms >= 0 && cfg->shutdown_timeout_ms <= 3600000,
          "shutdown_timeout %lld ms", (long long)cfg->shutdown_timeout_ms);
    CHECK(cfg->nlisteners >= 1 && cfg->listeners != NULL, "%zu listeners",
          cfg->nlisteners);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct listener_config *lc = &cfg->listeners[i];
        CHECK(lc->name != NULL && lc->name[0] != '\0', "listener %zu unnamed", i);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(cfg->listeners[j].name, lc->name) != 0,
                  "two listeners named \"%s\"", lc->name);
        CHECK(lc->nlisten >= 1, "listener \"%s\" has no address", lc->name);
        for (size_t k = 0; k < lc->nlisten; k++) {
            check_addr(&lc->listen[k], "listen address");
            /* No two addresses of the configuration overlap. */
            for (size_t j = 0; j <= i; j++) {
                const struct listener_config *o = &cfg->listeners[j];
                for (size_t m = 0; m < (j == i ? k : o->nlisten); m++)
                    CHECK(!addr_overlaps(&lc->listen[k].addr, &o->listen[m].addr),
                          "\"%s\" of \"%s\" overlaps \"%s\" of \"%s\"",
                          lc->listen[k].text, lc->name, o->listen[m].text, o->name);
            }
        }
        CHECK(lc->buffer_size >= 1024 && lc->buffer_size <= 16777216, "buffer_size %zu",
              lc->buffer_size);
        CHECK(lc->idle_timeout_ms >= 0, "idle_timeout %lld ms",
              (long long)lc->idle_timeout_ms);
        CHECK(lc->nallow == 0 || lc->allow != NULL, "allow");
        CHECK(lc->ndeny == 0 || lc->deny != NULL, "deny");
        for (size_t k = 0; k < lc->nallow; k++)
            CHECK(lc->allow[k].family == AF_INET || lc->allow[k].family == AF_INET6,
                  "allow family %d", lc->allow[k].family);
        for (size_t k = 0; k < lc->ndeny; k++)
            CHECK(lc->deny[k].family == AF_INET || lc->deny[k].family == AF_INET6,
                  "deny family %d", lc->deny[k].family);
        if (lc->mode == MODE_ECHO) {
            CHECK(lc->nupstreams == 0 && lc->send_proxy == SEND_PROXY_NONE &&
                      lc->balance == BALANCE_ROUND_ROBIN,
                  "echo listener \"%s\" with proxy settings", lc->name);
        } else {
            CHECK(lc->mode == MODE_PROXY, "mode %d", lc->mode);
            CHECK(lc->nupstreams >= 1, "proxy listener \"%s\" without upstreams",
                  lc->name);
            CHECK(lc->connect_timeout_ms > 0, "connect_timeout %lld ms",
                  (long long)lc->connect_timeout_ms);
            for (size_t k = 0; k < lc->nupstreams; k++) {
                const struct config_addr *u = &lc->upstreams[k];
                check_addr(u, "upstream");
                /* Its connect candidates: at least one, the first its addr. */
                CHECK(u->naddrs >= 1 && u->naddrs <= ADDR_RESOLVE_MAX &&
                          u->addrs != NULL && addr_equal(&u->addrs[0], &u->addr),
                      "upstream \"%s\": %zu addresses", u->text, u->naddrs);
                /* The simplest loop: to one of its own addresses. */
                for (size_t a = 0; a < u->naddrs; a++)
                    for (size_t m = 0; m < lc->nlisten; m++)
                        CHECK(!addr_equal(&u->addrs[a], &lc->listen[m].addr),
                              "relay \"%s\" has its own address %s as an upstream",
                              lc->name, lc->listen[m].text);
            }
        }
    }
    if (cfg->has_stats) {
        int family = cfg->stats.addr.u.sa.sa_family;
        check_addr(&cfg->stats, "stats.listen");
        CHECK(family == AF_INET || family == AF_INET6, "stats family %d", family);
    } else {
        CHECK(cfg->stats.text == NULL, "stats text without stats");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *err = malloc(ERRLEN), *again_err = malloc(ERRLEN);
    if (err == NULL || again_err == NULL)
        abort();
    if (fd < 0)
        open_file();
    write_file(data, size);
    struct config *cfg = config_load(path, NAME, err, ERRLEN);
    if (cfg == NULL) {
        size_t n = strnlen(err, ERRLEN);
        CHECK(n < ERRLEN && n > 0, "refused with a message of %zu bytes", n);
        CHECK(strncmp(err, NAME ":", strlen(NAME ":")) == 0,
              "message does not start with the name: %s", err);
        for (size_t i = 0; i < n; i++)
            CHECK((unsigned char)err[i] >= 0x20 && err[i] != 0x7f,
                  "control byte 0x%02x in the message: %s", (unsigned char)err[i], err);
        CHECK(valid_utf8(err), "not UTF-8: %s", err);
    } else {
        CHECK(err[0] == '\0', "loaded, with a message: %s", err);
        check_config(cfg);
    }
    /* Once more: the same verdict, the same message. */
    struct config *again = config_load(path, NAME, again_err, ERRLEN);
    CHECK((cfg == NULL) == (again == NULL), "loaded once, refused once: %s",
          cfg == NULL ? err : again_err);
    CHECK(strcmp(err, again_err) == 0, "two messages: \"%s\" then \"%s\"", err,
          again_err);
    config_free(again);
    config_free(cfg);
    free(err);
    free(again_err);
    return 0;
}
