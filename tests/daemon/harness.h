/*
 * The integration tests' harness: starts the built mio-echod (the one on
 * the configured backend, or its poll(2) twin, chosen at build time by
 * ECHOD_PROGRAM) in the foreground with a generated configuration, reads
 * its log, and offers loopback clients and test upstreams.  Every wait is
 * bounded.
 */
#ifndef TESTS_DAEMON_HARNESS_H
#define TESTS_DAEMON_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdatomic.h>
#include <pthread.h>
#include <cmocka.h>

#include <stdbool.h>
#include <sys/types.h>

struct echod;

/*
 * Writes `conf` (a libconfig text; every "@DIR@" in it is replaced by a
 * fresh temporary directory, for Unix sockets and pid files) and runs
 * "mio-echod -f -c FILE" with stderr captured.  Waits (5 s at most) for the
 * "started" line; fails the test if the daemon exits first.  A `log = {...}`
 * group is not added: tests that parse the log write target = "stderr".
 */
struct echod *echod_start(const char *conf);

/* echod_start() with the daemon's soft RLIMIT_NOFILE set to `nofile`. */
struct echod *echod_start_nofile(const char *conf, long nofile);

/* The port of the n-th address (from 0) of listener `name`, read from its
 * "listener NAME: listening on ADDR" line. */
int echod_port(struct echod *e, const char *name, int n);

/* Waits up to `ms` for a log line (from the start of the log) containing
 * `needle`; returns a copy owned by the harness, or NULL. */
const char *echod_wait_log(struct echod *e, const char *needle, int ms);

/* The n-th (from 0) log line so far containing `needle`, or NULL. */
const char *echod_log_line(struct echod *e, const char *needle, int n);

/* How many log lines so far contain `needle`. */
int echod_count_log(struct echod *e, const char *needle);

/* Sends `sig` to the daemon. */
void echod_signal(struct echod *e, int sig);

/* SIGTERM, then waits up to `ms` for the exit; returns the exit status
 * (or 128 + signal), -1 when it did not exit in time (then it is killed). */
int echod_stop(struct echod *e, int ms);

/* The configuration file the daemon was started with ("-c FILE"). */
const char *echod_conf_path(struct echod *e);

/* The daemon's pid, resident memory in KiB, and open descriptors. */
pid_t echod_pid(struct echod *e);
long echod_rss_kib(struct echod *e);
int echod_fd_count(struct echod *e);

/* The daemon's open pipe descriptors (both ends count). */
int echod_pipe_count(struct echod *e);

/* A wait status as a number: the exit status, or 128 + the signal that
 * ended the process; -1 for anything else (and for status < 0). */
int exit_code(int status);

/* The program under test, $top_builddir/ECHOD_PROGRAM, into buf. */
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

/* Runs "mio-echod ARGS..." (NULL-terminated) to completion (5 s at most),
 * capturing stdout+stderr into out; returns the exit status. */
int echod_run(char *out, size_t outlen, const char *arg, ...);

/* "mio-echod -t -c FILE" on conf (written as write_conf() does) must
 * exit 1 naming "FILE:LINE: " and saying `says`; `what` names the case in
 * the failure message. */
void expect_conf_error(const char *what, const char *conf, int line, const char *says);

/* Writes a configuration file into a temporary directory, returning its
 * path (owned by the harness until the test ends). */
const char *write_conf(const char *conf);

/* A blocking TCP connection to 127.0.0.1:port (or [::1] with v6) with
 * 5 s send/receive timeouts. */
int connect_to(int port);
int connect_to6(int port);

/* Sends all of buf; fails the test on error. */
void send_all(int fd, const void *buf, size_t len);

/* Receives exactly len bytes (fails on EOF, error or timeout). */
void recv_exact(int fd, void *buf, size_t len);

/* True when the peer closed (recv returns 0) within ms; false on data or
 * timeout. */
bool peer_closed_within(int fd, int ms);

/* True when the peer aborted the connection (recv fails with ECONNRESET)
 * within ms, with no byte and no end of file before it. */
bool peer_reset_within(int fd, int ms);

/* Deterministic pseudo-random bytes. */
void fill_random(uint8_t *buf, size_t len, uint32_t seed);

/* Milliseconds on CLOCK_MONOTONIC; sleep_ms() sleeps ms (EINTR resumed). */
int64_t ms_now(void);
void sleep_ms(int ms);

/* ---- checks that fail the test ------------------------------------------ */

/* Waits 3 s at most for a log line containing the formatted needle, and
 * returns it (as echod_wait_log()); fails the test when none comes. */
__attribute__((format(printf, 2, 3)))
const char *echod_must_log(struct echod *e, const char *fmt, ...);

/* Stops the daemon (5 s at most) and expects a clean exit (status 0). */
void echod_stop_ok(struct echod *e);

/* Waits up to ms for the daemon's descriptor count to be `want`. */
bool echod_wait_fd_count(struct echod *e, int want, int ms);

/* 5 s send and receive timeouts on fd, as connect_to() sets. */
void set_timeouts(int fd);

/* connect_to() and connect_to6(), failing the test when they fail. */
int client4(int port);
int client6(int port);

/* A blocking connection to 127.0.0.1:port from the address src (loopback
 * answers for all of 127.0.0.0/8, so a client may be 127.0.0.2), with 5 s
 * timeouts; fails the test when it cannot bind or connect. */
int connect_from(const char *src, int port);

/* The port of fd's own end (IPv4 or IPv6): a client's port as the daemon
 * sees it. */
int local_port(int fd);

/* Sets O_NONBLOCK on fd. */
void set_nonblocking(int fd);

/* Sends msg (512 bytes at most) and expects exactly it back. */
void expect_echo(int fd, const char *msg);

/* Half-closes, expects the daemon's FIN within 3 s with nothing before it,
 * then closes. */
void finish(int fd);

/* ---- test upstreams and ports ------------------------------------------- */

/* Descriptors closed by close_all_tracked() (a test's teardown), so that a
 * failed test leaves none open; close_tracked() closes one now. */
void track_fd(int fd);
void close_tracked(int fd);
void close_all_tracked(void);

/* A listening socket on 127.0.0.1:0 with `backlog`; its port in *port. */
int listen_loopback(int backlog, int *port);

/* Accepts the daemon's connection to a test upstream listening on lfd
 * within 3 s, and gives it 5 s send/receive timeouts. */
int upstream_accept(int lfd);

/*
 * A test server: a thread serving 127.0.0.1:0 with a poll(2) loop of its
 * own, 10 ms at a time until tserver_stop(), with at most `max`
 * connections at once.  What a connection does is the test's, through the
 * callbacks, on an object conn_open() makes for it.  The thread counts
 * the connections accepted and open, and errors (a conn_open() that
 * returns NULL counts as one).  A test embeds it in its own server struct.
 */
struct tserver {
    size_t max;
    void *(*conn_open)(struct tserver *s, int fd);       /* NULL: failed */
    short (*conn_events)(struct tserver *s, void *conn); /* POLLIN/POLLOUT */
    bool (*conn_service)(struct tserver *s, void *conn); /* true: it is over */
    void (*conn_free)(struct tserver *s, void *conn);    /* its fd is closed after */
    int lfd, port;
    pthread_t thread;
    atomic_bool stop;
    atomic_int accepted; /* connections accepted so far */
    atomic_int open;     /* connections open now */
    atomic_int errors;   /* socket errors, as the test counts them */
};

/* Listens (with `backlog`) and starts the thread; max and the callbacks
 * must be set. */
void tserver_start(struct tserver *s, int backlog);

/* Stops the thread, then closes its connections and listening socket. */
void tserver_stop(struct tserver *s);

/* A port nobody listens on now: bound on 127.0.0.1:0 and let go (for the
 * configurations a reload must find again: "127.0.0.1:0" would be a new
 * port each time). */
int reserve_port(void);

/* A port that refuses connections: bound on 127.0.0.1 but not listening,
 * so a SYN to it is answered with a reset.  The socket stays bound (it is
 * tracked) rather than closed, so that no other socket, not even one of
 * the daemon's own outgoing connections, can take the port meanwhile. */
int refusing_port(void);

/* A port that never answers SYNs: a backlog-0 listener whose accept queue
 * is filled by connections nobody accepts (all tracked); Linux then drops
 * further SYNs, so a connect hangs until its timeout. */
int silent_port(void);

#endif
