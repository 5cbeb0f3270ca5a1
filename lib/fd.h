/* Descriptor flags (fd.c): 0 or -errno, a descriptor for the dup. */
#ifndef MIO_FD_H
#define MIO_FD_H

int mio__fd_set_cloexec(int fd);
int mio__fd_set_nonblock(int fd);
/* A close-on-exec duplicate of `fd`, or -errno. */
int mio__fd_dup_cloexec(int fd);

#endif /* MIO_FD_H */
