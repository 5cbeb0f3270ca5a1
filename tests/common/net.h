/*
 * Loopback sockets for the tests: blocking clients with 5 s timeouts,
 * exact sends and receives, how a peer ended a connection, test listeners
 * and ports that refuse or never answer.  Every wait is bounded; the
 * functions that fail the test say so.
 */
#ifndef TESTS_COMMON_NET_H
#define TESTS_COMMON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/un.h>

/* ---- clients ---------------------------------------------------------------- */

/* A blocking TCP connection to 127.0.0.1:port (or [::1] with v6) with
 * 5 s send/receive timeouts; -1 (errno set) when it fails. */
int connect_to(int port);
int connect_to6(int port);

/* connect_to() and connect_to6(), failing the test when they fail. */
int client4(int port);
int client6(int port);

/* A blocking connection to the Unix socket at path, with 5 s timeouts;
 * fails the test when it cannot connect. */
int client_unix(const char *path);

/* A blocking connection to 127.0.0.1:port from the address src (loopback
 * answers for all of 127.0.0.0/8, so a client may be 127.0.0.2), with 5 s
 * timeouts; fails the test when it cannot bind or connect. */
int connect_from(const char *src, int port);

/* A non-blocking connect to 127.0.0.1:port, under way; -1 on an error. */
int connect_start(int port);

/* A non-blocking connection to 127.0.0.1:port, established within ms;
 * -1 with errno (ETIMEDOUT when no answer came) otherwise. */
int connect_within(int port, int ms);

/* 5 s send and receive timeouts on fd, as connect_to() sets. */
void set_timeouts(int fd);

/* Sets O_NONBLOCK on fd. */
void set_nonblocking(int fd);

/* The address of the Unix socket at path; fails the test when path is
 * too long for one. */
struct sockaddr_un unix_addr(const char *path);

/* The port of fd's own end (IPv4 or IPv6): a client's port as the daemon
 * sees it. */
int local_port(int fd);

/* Sends all of buf; fails the test on error. */
void send_all(int fd, const void *buf, size_t len);

/* Receives exactly len bytes (fails on EOF, error or timeout). */
void recv_exact(int fd, void *buf, size_t len);

/* Sends msg (512 bytes at most) and expects exactly it back. */
void expect_echo(int fd, const char *msg);

/* Connects to the Unix socket at path, sends text and expects it back. */
void expect_unix_echo(const char *path, const char *text);

/* Half-closes, expects the daemon's FIN within 3 s with nothing before it,
 * then closes. */
void finish(int fd);

/* Closes with a reset (SO_LINGER 0). */
void close_reset(int fd);

/* ---- how the peer ended ------------------------------------------------------- */

/* True when the peer closed (recv returns 0) within ms; false on data or
 * timeout. */
bool peer_closed_within(int fd, int ms);

/* True when the peer aborted the connection (recv fails with ECONNRESET)
 * within ms, with no byte and no end of file before it. */
bool peer_reset_within(int fd, int ms);

enum end { END_NONE, END_EOF, END_RESET };

/* "EOF", "reset" or "nothing". */
const char *end_name(enum end how);

/* Waits up to ms for the peer to end the connection, reading and
 * discarding what comes before: END_EOF, END_RESET or END_NONE.  *drained
 * (when not NULL) counts the bytes read. */
enum end wait_end(int fd, int ms, size_t *drained);

/* ---- test listeners and ports --------------------------------------------------- */

/* Descriptors closed by close_all_tracked() (a test's teardown), so that a
 * failed test leaves none open; close_tracked() closes one now. */
void track_fd(int fd);
void close_tracked(int fd);
void close_all_tracked(void);

/* A listening socket on 127.0.0.1:0 with `backlog`; its port in *port. */
int listen_loopback(int backlog, int *port);

/* A listening socket on ip:port (an IPv4 literal: any of 127/8 is
 * loopback; port 0: the kernel picks) with `backlog` and SO_REUSEADDR; its
 * port in *bound.  Fails the test when it cannot bind. */
int listen_at(const char *ip, int port, int backlog, int *bound);

/* Accepts the daemon's connection to a test upstream listening on lfd
 * within 3 s, and gives it 5 s send/receive timeouts. */
int upstream_accept(int lfd);

/* Accepts one connection on lfd within ms (fails the test otherwise). */
int accept_within(int lfd, int ms);

/* A port free now for TCP and UDP on every IPv4 address, below the
 * kernel's ephemeral range so that no client socket takes it meanwhile
 * (for the configurations a reload must find again: "127.0.0.1:0" would
 * be a new port each time, and for a TCP and a UDP listener on one). */
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
