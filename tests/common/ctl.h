/*
 * The daemon's control side as a test meets it: runs of the built
 * mio-echodctl (as ourselves or as another user), with what it printed on
 * standard output and on standard error apart and its exit status; and a
 * plain client of a control socket that sends command lines and reads
 * their answers, each ended by its empty line.  Every wait is bounded;
 * the functions fail the test when they cannot do what they say.
 */
#ifndef TESTS_COMMON_CTL_H
#define TESTS_COMMON_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How long a run of mio-echodctl may take, in all, before it is killed. */
#define CTL_RUN_MS 10000

/* What a run of mio-echodctl gave. */
struct ctl_run {
    int status; /* exit status, 128 + signal, -1 when it had to be killed */
    char out[128 * 1024];
    char err[4 * 1024];
    int64_t ms; /* how long it ran */
};

/* The built mio-echodctl: $top_builddir/src/mio-echodctl. */
void ctl_program_path(char *buf, size_t len);

/* Copies the built program to dir/mio-echodctl, mode 0755, into `copy`, so
 * that another user can run it wherever the build tree is. */
void ctl_program_copy(const char *dir, char *copy, size_t len);

/* Becomes uid:gid with no other group; 0, or -1 (errno set).  For a
 * forked child only. */
int ctl_become(uid_t uid, gid_t gid);

/* The uid and gid of user `name` into *uid and *gid; false when there is
 * no such user. */
bool ctl_user_ids(const char *name, uid_t *uid, gid_t *gid);

/*
 * Runs `program` (NULL: the built one) with args (NULL-terminated, at
 * most 30) to its end, CTL_RUN_MS at most, with standard input from
 * /dev/null, standard output and error apart, and no other descriptor;
 * as as_uid:as_gid unless as_uid is (uid_t)-1.
 */
void ctl_run_argv(struct ctl_run *r, const char *program, uid_t as_uid, gid_t as_gid,
                  char *const args[]);

/* ctl_run_argv() of the built program as ourselves, with the arguments
 * given (NULL-terminated). */
void ctl_run(struct ctl_run *r, const char *arg, ...);

/* Fails unless the run exited with `status` and printed exactly `out` and
 * `err` (NULL: anything), showing what it did. */
void ctl_expect(const struct ctl_run *r, int status, const char *out, const char *err);

/* Fails unless `needle` is in the run's standard error. */
void ctl_expect_err_has(const struct ctl_run *r, const char *needle);

/* ---- a plain client of the control socket ---------------------------------- */

/* A blocking connection to the Unix stream socket at path, with 5 s send
 * and receive timeouts; -1 with errno when it cannot connect. */
int ctl_connect_to(const char *path);

/* ctl_connect_to(), failing the test when it cannot. */
int ctl_connect(const char *path);

/*
 * Reads one answer from fd, byte by byte so that nothing after it is
 * taken: its lines up to and with its empty line, within ms.  Returns it
 * (malloc'd, NUL-terminated, the empty line's LF included); fails the
 * test when the connection ends first or ms pass.
 */
char *ctl_read_answer(int fd, int ms);

/* Sends `line` and its LF on fd, then reads its answer (ctl_read_answer()
 * within 5 s). */
char *ctl_ask(int fd, const char *line);

/* ctl_ask() on a connection of its own to path, closed after. */
char *ctl_ask_path(const char *path, const char *line);

#endif
