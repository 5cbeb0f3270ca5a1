/*
 * Certificates for the TLS tests (see certs.h): one shell script runs the
 * openssl command a dozen times in a temporary directory.  OpenSSL 3.0's
 * "req -x509 -CA" signs a leaf in one step; only the expired certificate
 * needs "openssl ca", the one command of 3.0 that takes a start and an
 * end date (x509 -not_before came in 3.4).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "certs.h"
#include "files.h"
#include "run.h"

/* How long the openssl commands may take together. */
#define MAKE_MS 20000

/* The sections the script's commands name: a CA's extensions, a server's,
 * a client's, and "openssl ca"'s own (a database in the directory). */
static const char ext_cnf[] =
    "[ req ]\n"
    "distinguished_name = dn\n"
    "[ dn ]\n"
    "[ ca ]\n"
    "basicConstraints = critical,CA:TRUE\n"
    "keyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[ server ]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "[ server_san ]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:localhost,DNS:a.example,IP:127.0.0.1\n"
    "[ client ]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = clientAuth\n"
    "[ ca_db ]\n"
    "dir = .\n"
    "database = index.txt\n"
    "new_certs_dir = .\n"
    "serial = serial\n"
    "default_md = sha256\n"
    "policy = policy\n"
    "unique_subject = no\n"
    "copy_extensions = none\n"
    "[ policy ]\n"
    "commonName = supplied\n";

/* $1 the directory, $2 the openssl command; then, with $3 set, only
 * "leaf $3..." (certs_issue()). */
static const char script[] =
    "set -e\n"
    "cd \"$1\"\n"
    "o=$2\n"
    "shift 2\n"
    "ec='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'\n"
    /* ca NAME CN SERIAL */
    "ca() {\n"
    "  \"$o\" req -x509 -config ext.cnf -extensions ca $ec -keyout \"$1.key\" \\\n"
    "    -out \"$1.pem\" -subj \"/CN=$2\" -set_serial \"$3\" -days 3650\n"
    "}\n"
    /* leaf NAME CN SECTION SAN SERIAL DAYS ISSUER */
    "leaf() {\n"
    "  \"$o\" req -x509 -config ext.cnf -extensions \"$3\" $ec -keyout \"$1.key\" \\\n"
    "    -out \"$1.pem\" -subj \"/CN=$2\" ${4:+-addext} ${4:+\"subjectAltName=$4\"} \\\n"
    "    -set_serial \"$5\" -days \"$6\" -CA \"$7.pem\" -CAkey \"$7.key\"\n"
    "}\n"
    "if [ $# -gt 0 ]; then leaf \"$@\"; exit 0; fi\n"
    "sans=DNS:localhost,DNS:a.example,IP:127.0.0.1\n"
    "ca ca mio-test-ca 1\n"
    "ca client-ca mio-test-client-ca 2\n"
    "leaf server mio-test-server server $sans 0x1001 365 ca\n"
    "cat server.pem ca.pem >server-chain.pem\n"
    "leaf b mio-test-b server 'DNS:*.b.example' 0x1002 365 ca\n"
    "leaf expiring mio-test-expiring server $sans 0x1004 10 ca\n"
    "leaf client mio-test-client client '' 0x2001 365 client-ca\n"
    "leaf stranger mio-test-stranger client '' 0x2002 365 ca\n"
    "\"$o\" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out wrong.key\n"
    "\"$o\" req -new -config ext.cnf $ec -keyout expired.key -out expired.csr \\\n"
    "  -subj /CN=mio-test-expired\n"
    ": >index.txt\n"
    "echo 1003 >serial\n"
    "\"$o\" ca -batch -config ext.cnf -name ca_db -extfile ext.cnf -extensions server_san \\\n"
    "  -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem -notext \\\n"
    "  -startdate 20200101000000Z -enddate 20200201000000Z\n";

static struct certs made;
static bool tried;
static char why[256]; /* certs_unavailable()'s answer */
static char openssl[PATH_MAX];

/* Finds the openssl command ($OPENSSL, or on $PATH) into openssl[];
 * false (and why[]) when there is none. */
static bool find_openssl(void)
{
    const char *env = getenv("OPENSSL");
    if (env != NULL && env[0] != '\0') {
        snprintf(openssl, sizeof(openssl), "%s", env);
        if (access(openssl, X_OK) == 0)
            return true;
        snprintf(why, sizeof(why), "$OPENSSL (%s) is not an executable", env);
        return false;
    }
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/bin:/bin";
    for (const char *p = path; *p != '\0';) {
        size_t n = strcspn(p, ":");
        snprintf(openssl, sizeof(openssl), "%.*s/openssl", (int)n, p);
        if (n > 0 && access(openssl, X_OK) == 0)
            return true;
        p += n + (p[n] == ':');
    }
    snprintf(why, sizeof(why), "no openssl command on $PATH (install openssl)");
    return false;
}

/* DIR/NAME into out (PATH_MAX); fails the test when it does not fit. */
static void path_in(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= PATH_MAX)
        test_fail("path too long: %s/%s", dir, name);
}

/* Runs the script in dir with `args` after it (NULL-terminated, at most
 * 8); fails the test, with what openssl said, unless it exits 0 within
 * MAKE_MS. */
static void run_script(const char *dir, const char *const *args)
{
    char logpath[PATH_MAX];
    path_in(logpath, dir, "openssl.log");
    int out = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0)
        test_fail("%s: %s", logpath, strerror(errno));
    char *argv[16] = {"/bin/sh", "-c", (char *)script, "sh", (char *)dir, openssl};
    size_t argc = 6;
    for (size_t i = 0; args != NULL && args[i] != NULL && argc < ARRAY_LEN(argv) - 1; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    extern char **environ;
    pid_t pid = echod_spawn(argv, environ, out, 0);
    close(out);
    int status = -1;
    int64_t until = ms_now() + MAKE_MS;
    for (int i = 0; i < MAKE_MS; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            test_fail("waitpid: %s", strerror(errno));
        if (ms_now() >= until) {
            kill(pid, SIGKILL);
            (void)waitpid(pid, &status, 0);
            test_fail("making certificates took over %d ms", MAKE_MS);
        }
        sleep_ms(1);
    }
    if (exit_code(status) == 0)
        return;
    char said[2048] = "";
    FILE *f = fopen(logpath, "r");
    if (f != NULL) {
        size_t n = fread(said, 1, sizeof(said) - 1, f);
        said[n] = '\0';
        fclose(f);
    }
    test_fail("making certificates with %s: exit %d: %s", openssl, exit_code(status),
              said);
}

/* Sets pair to DIR/NAME.pem and DIR/NAME.key. */
static void pair_in(struct cert_pair *pair, const char *dir, const char *name)
{
    char file[256];
    snprintf(file, sizeof(file), "%.250s.pem", name);
    path_in(pair->cert, dir, file);
    snprintf(file, sizeof(file), "%.250s.key", name);
    path_in(pair->key, dir, file);
}

const struct certs *certs_get(void)
{
    if (tried)
        return why[0] != '\0' ? NULL : &made;
    tried = true;
    if (!find_openssl())
        return NULL;
    struct certs *c = &made;
    const char *dir = test_tmpdir();
    if (strlen(dir) >= sizeof(c->dir) - 32)
        test_fail("temporary directory path too long: %s", dir);
    memcpy(c->dir, dir, strlen(dir) + 1);
    char cnf[PATH_MAX];
    path_in(cnf, c->dir, "ext.cnf");
    FILE *f = fopen(cnf, "w");
    if (f == NULL || fputs(ext_cnf, f) < 0 || fclose(f) != 0)
        test_fail("%s: cannot write it", cnf);
    run_script(c->dir, NULL);
    pair_in(&c->ca, c->dir, "ca");
    pair_in(&c->server, c->dir, "server");
    path_in(c->server_chain, c->dir, "server-chain.pem");
    pair_in(&c->b, c->dir, "b");
    pair_in(&c->expired, c->dir, "expired");
    pair_in(&c->expiring, c->dir, "expiring");
    pair_in(&c->client_ca, c->dir, "client-ca");
    pair_in(&c->client, c->dir, "client");
    pair_in(&c->stranger, c->dir, "stranger");
    path_in(c->wrong_key, c->dir, "wrong.key");
    return c;
}

const char *certs_unavailable(void)
{
    (void)certs_get();
    return why[0] != '\0' ? why : NULL;
}

void certs_issue(const char *name, const char *cn, const char *san, long serial, int days,
                 struct cert_pair *out)
{
    const struct certs *c = certs_get();
    if (c == NULL)
        test_fail("certs_issue: %s", why);
    char ser[32], d[16];
    snprintf(ser, sizeof(ser), "%ld", serial);
    snprintf(d, sizeof(d), "%d", days);
    const char *args[] = {name, cn, "server", san, ser, d, "ca", NULL};
    run_script(c->dir, args);
    pair_in(out, c->dir, name);
}

void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (in == NULL)
        test_fail("%s: %s", from, strerror(errno));
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", to);
    FILE *out = fopen(tmp, "wb");
    if (out == NULL)
        test_fail("%s: %s", tmp, strerror(errno));
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            test_fail("%s: short write", tmp);
    bool bad = ferror(in) != 0;
    fclose(in);
    if (fclose(out) != 0 || bad)
        test_fail("copying %s to %s failed", from, tmp);
    if (rename(tmp, to) != 0)
        test_fail("rename %s to %s: %s", tmp, to, strerror(errno));
}
