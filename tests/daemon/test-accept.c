/*
 * How new clients reach the workers, end to end on the real daemon.
 *
 *   a new client wakes one worker, not every worker asleep (the listening
 *   socket is registered MIO_EXCLUSIVE: epoll's EPOLLEXCLUSIVE); long
 *   clients that arrive one by one at a quiet moment are spread over the
 *   workers (a worker over its share steps back in the listening socket's
 *   queue of waiters); the threads carry names (top -H, ps -L).
 *
 * Wake-ups are counted as the kernel does, in each thread's
 * voluntary_ctxt_switches (/proc/PID/task/TID/status): a sleep in the
 * poll that ended.  The first two tests hold on epoll only: the other
 * backends take MIO_EXCLUSIVE as a hint they ignore and wake every worker,
 * as the daemon did everywhere before (they are skipped there, saying so).
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* An echo listener "a" on 127.0.0.1:0 and `workers` workers. */
#define CONF_FMT                                                          \
    "workers = %d;\n"                                                     \
    "log = { target = \"stderr\"; level = \"info\"; access = false; };\n" \
    "listeners = ( { name = \"a\"; mode = \"echo\"; listen = [ \"127.0.0.1:0\" ]; } );\n"

enum { MAX_THREADS = 64 };

/* The daemon's threads, each with its name and its count of sleeps that
 * ended. */
struct threads {
    int n;
    int tid[MAX_THREADS];
    char name[MAX_THREADS][16];
    long wakes[MAX_THREADS];
};

/* One line of a file in /proc: the value after `key`, or -1. */
static long status_field(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[256];
    long v = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, key, klen) == 0) {
            v = strtol(line + klen, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Reads every thread of process `pid`. */
static struct threads threads_now(pid_t pid)
{
    struct threads t = {0};
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL && t.n < MAX_THREADS) {
        if (de->d_name[0] == '.')
            continue;
        char path[384];
        int k = t.n;
        t.tid[k] = atoi(de->d_name);
        snprintf(path, sizeof(path), "%s/%s/comm", dir, de->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue; /* gone meanwhile */
        if (fgets(t.name[k], sizeof(t.name[k]), f) == NULL)
            t.name[k][0] = '\0';
        fclose(f);
        t.name[k][strcspn(t.name[k], "\n")] = '\0';
        snprintf(path, sizeof(path), "%s/%s/status", dir, de->d_name);
        t.wakes[k] = status_field(path, "voluntary_ctxt_switches:");
        t.n++;
    }
    closedir(d);
    return t;
}

/* Whether thread k of t is a worker. */
static bool is_worker(const struct threads *t, int k)
{
    return strncmp(t->name[k], "mio-echod w", 11) == 0;
}

/* The wake-ups of worker thread k between `before` and `after`. */
static long worker_wakes(const struct threads *before, const struct threads *after, int k)
{
    for (int i = 0; i < before->n; i++)
        if (before->tid[i] == after->tid[k])
            return after->wakes[k] - before->wakes[i];
    return after->wakes[k];
}

/* Skips the test off epoll, where MIO_EXCLUSIVE wakes every worker. */
static void need_epoll(void)
{
    const char *b = getenv("MIO_BACKEND");
    if (b != NULL && b[0] != '\0' && strcmp(b, "epoll") != 0) {
        printf("skipped on %s: only epoll wakes one worker per client\n", b);
        skip();
    }
}

/* A short pause, so that every worker is asleep again. */
static void settle(void)
{
    nanosleep(&(struct timespec){0, 2000000}, NULL);
}

/* One client: connected, one byte echoed, closed. */
static void one_client(int port)
{
    int fd = client4(port);
    expect_echo(fd, "x");
    close(fd);
}

/* The worker threads are named "mio-echod wN", the others too. */
static void threads_are_named(void **state)
{
    (void)state;
    struct echod *e = echod_startf(CONF_FMT, 3);
    struct threads t = threads_now(echod_pid(e));
    int workers = 0;
    for (int k = 0; k < t.n; k++) {
        printf("thread %d: %s\n", t.tid[k], t.name[k]);
        workers += is_worker(&t, k);
    }
    assert_int_equal(workers, 3);
    echod_stop_ok(e);
}

/* With 8 workers asleep, each of 200 clients arriving one by one wakes
 * about one worker: the one that serves it (its accept, its byte, its
 * FIN), not the 7 others as well. */
static void a_new_client_wakes_one_worker(void **state)
{
    (void)state;
    need_epoll();
    enum { CLIENTS = 200 };
    struct echod *e = echod_startf(CONF_FMT, 8);
    int port = echod_port(e, "a", 0);
    for (int i = 0; i < 10; i++)
        one_client(port);
    settle();
    struct threads before = threads_now(echod_pid(e));
    for (int i = 0; i < CLIENTS; i++) {
        one_client(port);
        settle();
    }
    struct threads after = threads_now(echod_pid(e));
    long wakes = 0, busiest = 0;
    for (int k = 0; k < after.n; k++)
        if (is_worker(&after, k)) {
            long w = worker_wakes(&before, &after, k);
            wakes += w;
            busiest = w > busiest ? w : busiest;
        }
    printf("%d clients: %ld wake-ups of the 8 workers (%.2f a client), %ld of the "
           "busiest\n",
           CLIENTS, wakes, (double)wakes / CLIENTS, busiest);
    /* Each client's own worker wakes 1-3 times (accept, the byte, the
     * FIN); every worker woken by each client would be 7 more. */
    assert_true(wakes < CLIENTS * 9 / 2);
    echod_stop_ok(e);
}

/* 40 clients that stay, arriving one by one at a quiet moment, end up
 * spread over 2 workers, not all on the first one woken: each worker's
 * share is found by which one wakes when a client sends a byte. */
static void long_clients_spread_over_the_workers(void **state)
{
    (void)state;
    need_epoll();
    enum { CLIENTS = 40 };
    struct echod *e = echod_startf(CONF_FMT, 2);
    int port = echod_port(e, "a", 0);
    int fd[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fd[i] = client4(port);
        expect_echo(fd[i], "x");
        settle();
    }
    long served[2] = {0};
    for (int i = 0; i < CLIENTS; i++) {
        struct threads before = threads_now(echod_pid(e));
        expect_echo(fd[i], "y");
        settle();
        struct threads after = threads_now(echod_pid(e));
        int who = -1;
        long most = 0;
        for (int k = 0; k < after.n; k++) {
            long w = is_worker(&after, k) ? worker_wakes(&before, &after, k) : 0;
            if (w > most) {
                most = w;
                who = atoi(after.name[k] + 11);
            }
        }
        assert_true(who == 0 || who == 1);
        served[who]++;
    }
    printf("%d clients: %ld on worker 0, %ld on worker 1\n", CLIENTS, served[0],
           served[1]);
    for (int i = 0; i < CLIENTS; i++)
        close(fd[i]);
    assert_true(served[0] >= CLIENTS / 2 - 4 && served[1] >= CLIENTS / 2 - 4);
    echod_stop_ok(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(threads_are_named, teardown_all),
        cmocka_unit_test_teardown(a_new_client_wakes_one_worker, teardown_all),
        cmocka_unit_test_teardown(long_clients_spread_over_the_workers, teardown_all),
    };
    return cmocka_run_group_tests(tests, setup_ignore_sigpipe, NULL);
}
