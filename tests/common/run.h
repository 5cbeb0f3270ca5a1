/*
 * Running mio-echod as a process: which binary, with which environment,
 * forked so that it dies with the test program; and runs of its command
 * line to completion.
 */
#ifndef TESTS_COMMON_RUN_H
#define TESTS_COMMON_RUN_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

/* The program under test, by default src/mio-echod: echod_set_program()
 * changes it (path relative to $top_builddir); echod_program_path() puts
 * $top_builddir/PATH into buf. */
void echod_set_program(const char *path);
void echod_program_path(char *buf, size_t len);

/*
 * For a test that forks a daemon itself.  echod_environment(): ours (a
 * malloc'd array of environ's strings) without JOURNAL_STREAM, which would
 * make the daemon log "<N>" prefixes instead of "mio-echod: LEVEL: ", nor
 * the variables starting with `drop` (when not NULL), and `spare` more
 * NULL slots at the end.  echod_child_setup(), in the child after fork()
 * (async-signal-safe): dies with `parent` (exits 127 when it is gone),
 * unblocks signals, SIGPIPE default, stdin from /dev/null, stdout and
 * stderr into outfd.
 */
char **echod_environment(const char *drop, size_t spare);
void echod_child_setup(pid_t parent, int outfd);

/*
 * Forks and execs argv with stdout and stderr into outfd and no other
 * descriptor open, SIGINT ignored, its soft RLIMIT_NOFILE `nofile` (0: ours);
 * the child dies with us.  Returns the pid (fails the test when fork
 * fails).
 */
pid_t echod_spawn(char *const argv[], char *const envp[], int outfd, rlim_t nofile);

/*
 * echod_spawn() passing n sockets the way systemd does: fds[i] becomes
 * descriptor 3 + i in the child, and listen_pid (an entry of envp, a
 * writable "LISTEN_PID=" with room for 20 digits) gets the child's own
 * pid after fork(); envp carries LISTEN_FDS and LISTEN_FDNAMES.
 */
pid_t echod_spawn_fds(char *const argv[], char *const envp[], int outfd, rlim_t nofile,
                      const int *fds, size_t n, char *listen_pid);

/* A wait status as a number: the exit status, or 128 + the signal that
 * ended the process; -1 for anything else (and for status < 0). */
int exit_code(int status);

/* Runs "mio-echod ARGS..." (NULL-terminated) to completion (5 s at most),
 * capturing stdout+stderr into out; returns the exit status. */
int echod_run(char *out, size_t outlen, const char *arg, ...);

/* "mio-echod -t -c FILE" on conf (written as write_conf() does) must
 * exit 1 naming "FILE:LINE: " and saying `says`; `what` names the case in
 * the failure message. */
void expect_conf_error(const char *what, const char *conf, int line, const char *says);

/* A case of expect_conf_errors(): expect_conf_error()'s arguments. */
struct conf_error {
    const char *what, *conf;
    int line;
    const char *says;
};

/* expect_conf_error() of each of the n cases. */
void expect_conf_errors(const struct conf_error *cases, size_t n);

#endif
