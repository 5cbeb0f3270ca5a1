/* Privileges, pid file and daemonizing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* setresuid, pipe2: also when built without autoconf.h */
#endif
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "process.h"

static int ready_fd = -1; /* to the waiting parent, after process_daemonize() */

int process_user_lookup(const char *user, uid_t *uid, gid_t *gid)
{
    long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t len = hint > 0 ? (size_t)hint : 1024;
    if (user == NULL || user[0] == '\0')
        return 0;
    struct passwd pw, *found = NULL;
    char *buf = NULL;
    int rc;
    for (;;) {
        char *grown = realloc(buf, len);
        if (grown == NULL) {
            free(buf);
            return -ENOMEM;
        }
        buf = grown;
        rc = getpwnam_r(user, &pw, buf, len, &found);
        if (rc != ERANGE || len >= (size_t)1024 * 1024)
            break;
        len *= 2;
    }
    if (found != NULL) {
        *uid = pw.pw_uid;
        *gid = pw.pw_gid;
    }
    free(buf);
    if (found != NULL)
        return 1;
    /* Some NSS modules say "not found" with an error number. */
    return rc == 0 || rc == ENOENT || rc == ESRCH ? -ENOENT : -rc;
}

int process_user_can_read(uid_t uid, gid_t gid, const char *path, int *why)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        *why = errno;
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        *why = errno;
        close(p[0]);
        close(p[1]);
        return -1;
    }
    ssize_t n;
    if (pid == 0) {
        /* As process_drop_privileges() does; only async-signal-safe calls. */
        int res[2] = {0, 0}, fd = -1;
        if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 ||
            setresuid(uid, uid, uid) < 0) {
            res[1] = errno; /* res[0] = 0: not tried */
        } else {
            res[0] = 1;
            fd = open(path, O_RDONLY | O_CLOEXEC);
            res[1] = fd < 0 ? errno : 0;
        }
        n = write(p[1], res, sizeof(res));
        _exit(n == (ssize_t)sizeof(res) ? 0 : 1);
    }
    close(p[1]);
    int got[2] = {0, 0};
    while ((n = read(p[0], got, sizeof(got))) < 0 && errno == EINTR)
        ;
    close(p[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof(got) || got[0] == 0) {
        *why = n == (ssize_t)sizeof(got) ? got[1] : EIO;
        return -1;
    }
    *why = got[1];
    return got[1] == 0 ? 1 : 0;
}

int process_drop_privileges(uid_t uid, gid_t gid)
{
    if (geteuid() != 0)
        return uid == geteuid() ? 0 : PROCESS_NEEDS_ROOT;
    if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 ||
        setresuid(uid, uid, uid) < 0)
        return -errno;
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || ru != uid ||
        eu != uid || su != uid || rg != gid || eg != gid || sg != gid ||
        (uid != 0 && setuid(0) == 0))
        return PROCESS_NOT_DROPPED;
    return 0;
}

/* Writes our pid into the file at path, truncated: 0 or -errno. */
static int write_pid(const char *path, int flags)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
    if (fd < 0)
        return -errno;
    char line[32];
    int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
    int err = write(fd, line, (size_t)n) == n ? 0 : errno != 0 ? -errno : -EIO;
    if (close(fd) < 0 && err == 0)
        err = -errno;
    return err;
}

int process_pidfile_write(const char *path)
{
    if (path == NULL || path[0] == '\0')
        return 0;
    /* Beside it, then renamed over it: a reader never sees it empty, and a
     * process started by SIGUSR2 as the configuration's user replaces a
     * file root wrote, in a directory that user may write. */
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid());
    if (n > 0 && (size_t)n < sizeof(tmp)) {
        int err = write_pid(tmp, O_EXCL);
        if (err == 0 && rename(tmp, path) == 0)
            return 0;
        if (err != -EACCES && err != -EROFS && err != -EEXIST)
            (void)unlink(tmp);
    }
    /* A directory it may not write: the file itself, in place. */
    return write_pid(path, O_TRUNC);
}

void process_pidfile_remove(const char *path)
{
    if (path == NULL || path[0] == '\0')
        return;
    /* A process started by SIGUSR2 may have written its own pid there. */
    char line[32] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, line, sizeof(line) - 1);
    close(fd);
    if (n > 0 && strtol(line, NULL, 10) == (long)getpid())
        (void)unlink(path);
}

int process_daemonize(void)
{
    int p[2];
    if (pipe(p) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int err = -errno;
        close(p[0]);
        close(p[1]);
        return err;
    }
    if (pid > 0) {
        close(p[1]);
        char c;
        ssize_t n;
        while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR)
            ;
        if (n == 1)
            _exit(0);
        int status;
        if (waitpid(pid, &status, 0) == pid && WIFEXITED(status))
            _exit(WEXITSTATUS(status));
        _exit(3);
    }
    close(p[0]);
    ready_fd = p[1];
    (void)fcntl(ready_fd, F_SETFD, FD_CLOEXEC);
    setsid();
    if (chdir("/") < 0)
        return -errno;
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        if (null > STDOUT_FILENO)
            close(null);
    }
    return 0;
}

void process_ready(bool keep_stderr)
{
    if (ready_fd < 0)
        return;
    ssize_t n = write(ready_fd, "r", 1);
    (void)n;
    close(ready_fd);
    ready_fd = -1;
    if (keep_stderr)
        return;
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) { /* from now on errors go to the log only */
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
}
