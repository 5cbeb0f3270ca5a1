/*
 * mio-echodctl: sends one command to mio-echod's control socket and prints
 * the answer (mio-echodctl(8)).
 *
 * The command is its arguments joined by single spaces, sent as one line,
 * after which the socket is shut down for writing.  The answer is lines of
 * text ended by one empty line; an answer whose first line starts with
 * "error: " says the command failed.  The exit status: 0 the command
 * succeeded, 1 it failed (the error line goes to standard error), 2 the
 * daemon could not be asked or did not answer in full (usage, no socket,
 * permission, timeout, an answer cut short).
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control-line.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

/* The exit statuses. */
enum { EXIT_DONE = 0, EXIT_FAILED = 1, EXIT_CANNOT = 2 };

/* -T's default and bounds, in seconds. */
#define TIMEOUT_DEFAULT 30.0
#define TIMEOUT_MAX 86400.0

/* The prefix of a failed command's answer. */
#define ERROR_PREFIX "error: "

/* Prints the usage summary on f. */
static void usage(FILE *f)
{
    fprintf(f, "usage: mio-echodctl [-S path] [-T seconds] command [args...]\n"
               "       mio-echodctl -h | -V\n"
               "Sends one command to mio-echod's control socket and prints the answer.\n"
               "  -S path     the control socket (default " CONTROL_DEFAULT_PATH ")\n"
               "  -T seconds  how long to wait for the whole answer (default 30)\n"
               "  -h          this help; -V the version\n"
               "Commands:\n"
               "  show listeners\n"
               "  show upstreams [LISTENER]\n"
               "  show connections [LISTENER]\n"
               "  show stats\n"
               "  disable upstream LISTENER ADDRESS\n"
               "  enable upstream LISTENER ADDRESS\n"
               "  drain upstream LISTENER ADDRESS\n"
               "  set weight LISTENER ADDRESS N\n"
               "  reload\n"
               "  drain\n"
               "  kill connection ID\n"
               "  help\n"
               "Exit status: 0 done, 1 the daemon answered an error, 2 it could not be "
               "asked.\n");
}

/* The text of errno value err. */
static const char *errtext(int err)
{
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): the program has one thread. */
    return strerror(err);
}

/* Milliseconds on CLOCK_MONOTONIC. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The milliseconds left until deadline, at least 0, at most INT_MAX-ish. */
static int ms_left(int64_t deadline)
{
    int64_t left = deadline - now_ms();
    if (left < 0)
        return 0;
    return left > 1000000000 ? 1000000000 : (int)left;
}

/* Reads -T's argument into *ms; -EINVAL unless it is a number of seconds
 * above 0 and at most TIMEOUT_MAX. */
static int parse_timeout(const char *text, int64_t *ms)
{
    char *end = NULL;
    errno = 0;
    double s = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(s) || s <= 0 ||
        s > TIMEOUT_MAX)
        return -EINVAL;
    *ms = (int64_t)(s * 1000.0 + 0.5);
    if (*ms < 1)
        *ms = 1;
    return 0;
}

/* Joins words[0..n) with single spaces and an LF into a malloc'd line;
 * its length, LF included, into *len.  NULL when there is no memory. */
static char *join_words(char *const *words, int n, size_t *len)
{
    size_t total = 1;
    for (int i = 0; i < n; i++)
        total += strlen(words[i]) + (i > 0 ? 1 : 0);
    char *line = malloc(total + 1);
    if (line == NULL)
        return NULL;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t k = strlen(words[i]);
        if (i > 0)
            line[at++] = ' ';
        memcpy(line + at, words[i], k);
        at += k;
    }
    line[at++] = '\n';
    line[at] = '\0';
    *len = at;
    return line;
}

/* Whether the daemon's reader takes byte c inside a line. */
static bool line_byte(unsigned char c)
{
    return (c >= 0x20 && c <= 0x7e) || c == '\t';
}

/* Checks the command words[0..n) before anything is sent: every byte one
 * the daemon takes, and the joined line one it reads whole as one line of
 * at least one word.  Returns true, or prints why not and returns false. */
static bool check_command(char *const *words, int n, const char *line, size_t len)
{
    for (int i = 0; i < n; i++)
        for (const unsigned char *c = (const unsigned char *)words[i]; *c != '\0'; c++)
            if (!line_byte(*c)) {
                fprintf(stderr,
                        "mio-echodctl: argument %d has a %s byte 0x%02x: a command is "
                        "printable ASCII, spaces and tabs only\n",
                        i + 1, *c >= 0x80 ? "non-ASCII" : "control", *c);
                return false;
            }
    if (len - 1 > CONTROL_LINE_MAX) {
        fprintf(stderr,
                "mio-echodctl: the command is %zu bytes long: the daemon reads at most "
                "%d\n",
                len - 1, CONTROL_LINE_MAX);
        return false;
    }
    /* The daemon's own reader has the last word. */
    static struct control_reader r;
    enum control_result res;
    control_reader_init(&r);
    size_t used = control_reader_feed(&r, line, len, &res);
    if (res == CONTROL_BAD) {
        fprintf(stderr, "mio-echodctl: the daemon would refuse this command: %s\n",
                r.why);
        return false;
    }
    if (res != CONTROL_LINE || used != len) {
        fprintf(stderr, "mio-echodctl: the command is not one line\n");
        return false;
    }
    if (r.argc == 0) {
        fprintf(stderr,
                "mio-echodctl: the command is blank; try \"mio-echodctl help\"\n");
        return false;
    }
    return true;
}

/* Waits up to the deadline for fd to be ready for `events`: 0, -ETIMEDOUT,
 * or a negative errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int left = ms_left(deadline);
        if (left == 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, left);
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

/* Connects a new non-blocking socket to the Unix socket at path by the
 * deadline: the descriptor, or a negative errno (-ETIMEDOUT when the
 * daemon does not take the connection in time: Linux answers EAGAIN while
 * the socket's backlog is full). */
static int connect_unix(const char *path, int64_t deadline)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    size_t plen = strlen(path);
    if (plen >= sizeof(sun.sun_path))
        return -ENAMETOOLONG;
    memcpy(sun.sun_path, path, plen + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    for (;;) {
        if (connect(fd, (const struct sockaddr *)&sun, sizeof(sun)) == 0)
            return fd;
        int err = errno;
        if (err == EAGAIN) {
            /* Backlog full: try again shortly. */
            if (ms_left(deadline) == 0) {
                close(fd);
                return -ETIMEDOUT;
            }
            (void)poll(NULL, 0, 10);
            continue;
        }
        if (err == EINPROGRESS || err == EINTR) {
            int w = wait_fd(fd, POLLOUT, deadline);
            int soerr = 0;
            socklen_t slen = sizeof(soerr);
            if (w == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) < 0)
                w = -errno;
            else if (w == 0 && soerr != 0)
                w = -soerr;
            if (w == 0)
                return fd;
            close(fd);
            return w;
        }
        close(fd);
        return -err;
    }
}

/* Sends line[0..len) on fd by the deadline: 0, or a negative errno. */
static int send_line(int fd, const char *line, size_t len, int64_t deadline)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(fd, POLLOUT, deadline);
            if (w < 0)
                return w;
            continue;
        }
        return n < 0 ? -errno : -EIO;
    }
    return 0;
}

/* An answer being read and printed. */
struct answer {
    FILE *out;          /* stdout; stderr for a failed command's answer */
    char head[8];       /* the first line's first bytes, until decided */
    size_t nhead;       /* bytes in head */
    bool decided;       /* whether it is known to be an error */
    bool error;         /* its first line starts with "error: " */
    bool at_line_start; /* the next byte starts a line */
    bool ended;         /* its empty line came */
    size_t bytes;       /* bytes received */
};

/* Prints answer bytes p[0..n) once the answer's kind is decided, up to
 * its end, the empty line, which is not printed. */
static void emit(struct answer *a, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && !a->ended) {
        if (a->at_line_start && p[i] == '\n') {
            a->ended = true;
            return;
        }
        const char *nl = memchr(p + i, '\n', n - i);
        size_t span = nl != NULL ? (size_t)(nl - (p + i)) + 1 : n - i;
        fwrite(p + i, 1, span, a->out);
        a->at_line_start = nl != NULL;
        i += span;
    }
}

/* Decides from the head whether the answer is an error, and prints the
 * head. */
static void decide(struct answer *a)
{
    size_t plen = strlen(ERROR_PREFIX);
    a->decided = true;
    a->error = a->nhead >= plen && memcmp(a->head, ERROR_PREFIX, plen) == 0;
    if (a->error) {
        a->out = stderr;
        fputs("mio-echodctl: ", stderr);
    }
    emit(a, a->head, a->nhead);
}

/* Takes answer bytes p[0..n). */
static void take(struct answer *a, const char *p, size_t n)
{
    a->bytes += n;
    size_t i = 0;
    while (!a->decided && i < n) {
        char c = p[i++];
        a->head[a->nhead++] = c;
        if (c == '\n' || a->nhead == strlen(ERROR_PREFIX))
            decide(a);
    }
    emit(a, p + i, n - i);
}

/* Reads the answer from fd until its empty line, the end of the stream or
 * the deadline, printing it: 0 once it ended, -EPIPE when the stream ended
 * first, -ETIMEDOUT, or another negative errno. */
static int read_answer(int fd, struct answer *a, int64_t deadline)
{
    char buf[16384];
    while (!a->ended) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            take(a, buf, (size_t)n);
            continue;
        }
        if (n == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int w = wait_fd(fd, POLLIN, deadline);
        if (w < 0)
            return w;
    }
    if (!a->decided && a->nhead > 0)
        decide(a);
    return a->ended ? 0 : -EPIPE;
}

/* The hint after a connect error: what to look at. */
static const char *connect_hint(int err)
{
    switch (err) {
    case ENOENT:
        return " (is the daemon running, with its control socket enabled?)";
    case ECONNREFUSED:
        return " (is the daemon running? nothing listens on this socket)";
    case EACCES:
    case EPERM:
        return " (is the daemon's control socket enabled, and may this user open it?)";
    default:
        return "";
    }
}

/* Ends the output of an answer cut short on a line of its own. */
static void end_partial_line(struct answer *a)
{
    if (a->decided && !a->at_line_start)
        fputc('\n', a->out);
}

/* Asks the daemon at path the command `line` and prints the answer:
 * the exit status. */
static int ask(const char *path, const char *line, size_t len, int64_t timeout_ms)
{
    double secs = (double)timeout_ms / 1000.0;
    int64_t deadline = now_ms() + timeout_ms;
    int fd = connect_unix(path, deadline);
    if (fd == -ETIMEDOUT) {
        fprintf(stderr,
                "mio-echodctl: cannot connect to %s: the daemon took no connection "
                "within %g s\n",
                path, secs);
        return EXIT_CANNOT;
    }
    if (fd < 0) {
        fprintf(stderr, "mio-echodctl: cannot connect to %s: %s%s\n", path, errtext(-fd),
                connect_hint(-fd));
        return EXIT_CANNOT;
    }
    int err = send_line(fd, line, len, deadline);
    if (err == -ETIMEDOUT) {
        fprintf(stderr, "mio-echodctl: %s took no command within %g s\n", path, secs);
        close(fd);
        return EXIT_CANNOT;
    }
    /* A daemon that closed while we sent may still have said why: read on. */
    if (err < 0 && err != -EPIPE && err != -ECONNRESET) {
        fprintf(stderr, "mio-echodctl: cannot send the command to %s: %s\n", path,
                errtext(-err));
        close(fd);
        return EXIT_CANNOT;
    }
    (void)shutdown(fd, SHUT_WR);

    struct answer a = {.out = stdout, .at_line_start = true};
    err = read_answer(fd, &a, deadline);
    close(fd);
    if (err < 0)
        end_partial_line(&a);
    if (err == -ETIMEDOUT) {
        if (a.bytes == 0)
            fprintf(stderr, "mio-echodctl: no answer from %s within %g s\n", path, secs);
        else
            fprintf(stderr, "mio-echodctl: the answer from %s did not end within %g s\n",
                    path, secs);
        return EXIT_CANNOT;
    }
    if (err == -EPIPE) {
        if (a.bytes == 0)
            fprintf(stderr, "mio-echodctl: %s closed the connection without answering\n",
                    path);
        else
            fprintf(stderr,
                    "mio-echodctl: the answer from %s ended without its empty line: it "
                    "may be incomplete\n",
                    path);
        return EXIT_CANNOT;
    }
    if (err < 0) {
        fprintf(stderr, "mio-echodctl: cannot read the answer from %s: %s\n", path,
                errtext(-err));
        return EXIT_CANNOT;
    }
    return a.error ? EXIT_FAILED : EXIT_DONE;
}

int main(int argc, char **argv)
{
    const char *path = CONTROL_DEFAULT_PATH;
    int64_t timeout_ms = (int64_t)(TIMEOUT_DEFAULT * 1000);
    int opt;
    /* "+": options end at the command, so that "set weight relay A -1"
     * reaches the daemon, which says what is wrong with it. */
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): one thread. */
    while ((opt = getopt(argc, argv, "+S:T:hV")) != -1) {
        switch (opt) {
        case 'S':
            path = optarg;
            break;
        case 'T':
            if (parse_timeout(optarg, &timeout_ms) < 0) {
                fprintf(stderr,
                        "mio-echodctl: -T: expected a number of seconds above 0, at most "
                        "%g, got \"%s\"\n",
                        TIMEOUT_MAX, optarg);
                return EXIT_CANNOT;
            }
            break;
        case 'h':
            usage(stdout);
            return EXIT_DONE;
        case 'V':
            printf("mio-echodctl %s\n", PACKAGE_VERSION);
            return EXIT_DONE;
        default:
            usage(stderr);
            return EXIT_CANNOT;
        }
    }
    if (optind == argc) {
        fprintf(stderr, "mio-echodctl: no command given\n");
        usage(stderr);
        return EXIT_CANNOT;
    }
    if (path[0] == '\0') {
        fprintf(stderr, "mio-echodctl: -S: empty path\n");
        return EXIT_CANNOT;
    }
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        fprintf(stderr, "mio-echodctl: -S: a socket path is at most %zu bytes: %s\n",
                sizeof(((struct sockaddr_un *)0)->sun_path) - 1, path);
        return EXIT_CANNOT;
    }

    size_t len = 0;
    char *line = join_words(argv + optind, argc - optind, &len);
    if (line == NULL) {
        fprintf(stderr, "mio-echodctl: out of memory\n");
        return EXIT_CANNOT;
    }
    if (!check_command(argv + optind, argc - optind, line, len)) {
        free(line);
        return EXIT_CANNOT;
    }
    int status = ask(path, line, len, timeout_ms);
    free(line);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "mio-echodctl: cannot write the answer: %s\n", errtext(errno));
        return EXIT_CANNOT;
    }
    return status;
}
