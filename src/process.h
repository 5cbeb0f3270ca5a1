/* Process-level chores: dropping privileges, the pid file, daemonizing. */
#ifndef ECHOD_PROCESS_H
#define ECHOD_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The uid and primary gid of `user`: 1; 0 for "" (nothing to do);
 * -ENOENT when there is no such user, another negative errno when it could
 * not be looked up.  getpwnam_r(): a reload looks users up while the
 * workers run. */
int user_lookup(const char *user, uid_t *uid, gid_t *gid);

/*
 * Whether uid:gid, with no group but gid, as drop_privileges() leaves the
 * daemon, may open `path` for reading: tried in a forked child that
 * becomes that user, which needs root.  1 yes; 0 no, with the reason (an
 * errno) in *why; -1 when it could not be tried (*why says why).
 */
int user_can_read(uid_t uid, gid_t gid, const char *path, int *why);

/*
 * Becomes `user`, found by user_lookup() (its uid, its primary gid and no
 * other group), when running as root; refuses to go on if any step fails
 * or root could be regained.  Without root, a user other than the current
 * one is an error.  0, or -1 with the reason in err.
 */
int drop_privileges(const char *user, uid_t uid, gid_t gid, char *err,
                    size_t errlen);

/* Writes this process's pid to path ("" does nothing); -1 with err. */
int pidfile_write(const char *path, char *err, size_t errlen);

/* Removes the pid file written by pidfile_write(). */
void pidfile_remove(const char *path);

/*
 * Goes to the background: the parent waits until the child calls
 * daemon_ready() (and exits 0) or exits (and exits with its status).
 * Returns in the child only; -1 when fork failed.
 */
int daemonize(void);

/* Tells a waiting parent that startup is complete; stderr then goes to
 * /dev/null unless the log still writes there. */
void daemon_ready(bool keep_stderr);

#endif
