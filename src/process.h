/* Process-level chores: dropping privileges, the pid file, daemonizing. */
#ifndef ECHOD_PROCESS_H
#define ECHOD_PROCESS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The uid and primary gid of `user`: 1; 0 for "" (nothing to do);
 * -ENOENT when there is no such user, another negative errno when it could
 * not be looked up.  getpwnam_r(): a reload looks users up while the
 * workers run. */
int process_user_lookup(const char *user, uid_t *uid, gid_t *gid);

/*
 * Whether uid:gid, with no group but gid, as process_drop_privileges()
 * leaves the daemon, may open `path` for reading: tried in a forked child that
 * becomes that user, which needs root.  1 yes; 0 no, with the reason (an
 * errno) in *why; -1 when it could not be tried (*why says why).
 */
int process_user_can_read(uid_t uid, gid_t gid, const char *path, int *why);

/* What process_drop_privileges() refuses, besides a failed call's -errno:
 * switching users needs root; the switch left a way back to root. */
#define PROCESS_NEEDS_ROOT (-EPERM)
#define PROCESS_NOT_DROPPED (-ENOTRECOVERABLE)

/*
 * Becomes uid:gid (a user's, from process_user_lookup(): its uid, its
 * primary gid and no other group) when running as root, and checks that
 * there is no way back.  Without root, the current user needs nothing and
 * another is PROCESS_NEEDS_ROOT.  0, PROCESS_NOT_DROPPED, or the -errno of
 * the call that failed.
 */
int process_drop_privileges(uid_t uid, gid_t gid);

/* Writes this process's pid to path ("" does nothing); 0 or -errno. */
int process_pidfile_write(const char *path);

/* Removes the pid file written by process_pidfile_write(), unless it holds
 * another process's pid now. */
void process_pidfile_remove(const char *path);

/*
 * Goes to the background: the parent waits until the child calls
 * process_ready() (and exits 0) or exits (and exits with its status).
 * Returns in the child only: 0, or -errno when it could not.
 */
int process_daemonize(void);

/* Tells a waiting parent that startup is complete; stderr then goes to
 * /dev/null unless the log still writes there. */
void process_ready(bool keep_stderr);

#endif
