/* A wake-up channel made of descriptors (wakefd.c), for the backends. */
#ifndef MIO_WAKEFD_H
#define MIO_WAKEFD_H

/* An eventfd (fds[0] == fds[1]) where the system has one, else a pipe; both
 * ends non-blocking and close-on-exec. */
int mio__wakefd_open(int fds[2]);
/* Makes fds[0] readable; async-signal-safe.  A full channel (EAGAIN) is
 * drained and written again, so that an edge-triggered reader sees a new
 * edge: callers need not retry. */
int mio__wakefd_signal(const int fds[2]);
/* Reads fds[0] empty; async-signal-safe. */
void mio__wakefd_drain(const int fds[2]);
void mio__wakefd_close(int fds[2]);

#endif /* MIO_WAKEFD_H */
