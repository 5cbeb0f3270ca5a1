/* The admin thread and its loop. */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "admin.h"
#include "log.h"

static struct {
    bool made, started;
    struct loop loop;
    struct handler wake; /* the waker's: the loop looks at stop */
    atomic_bool stop;
    pthread_t thread;
} a;

/* The waker's event: tasks run after the batch; stop is looked at. */
static void woken(struct handler *h, struct loop *l, const mio_event_t *ev)
{
    (void)h;
    (void)l;
    (void)ev;
}

/* The thread: until admin_stop(). */
static void *run(void *arg)
{
    (void)arg;
    while (!atomic_load(&a.stop)) {
        loop_due(&a.loop);
        int err = loop_wait(&a.loop);
        if (err < 0) {
            log_err("admin thread: poll: %s; no longer serving metrics, the "
                    "control socket or health checks",
                    log_strerror(-err));
            break;
        }
    }
    return NULL;
}

int admin_init(const char *backend)
{
    a.wake.on_event = woken;
    atomic_store(&a.stop, false);
    int e = loop_init(&a.loop, 64, &a.wake, backend);
    if (e < 0) {
        loop_free(&a.loop);
        return e;
    }
    a.made = true;
    return 0;
}

struct loop *admin_loop(void)
{
    return &a.loop;
}

int admin_start(void)
{
    int e = pthread_create(&a.thread, NULL, run, NULL);
    if (e != 0)
        return -e;
    (void)pthread_setname_np(a.thread, "mio-echod admin");
    a.started = true;
    return 0;
}

void admin_stop(void)
{
    if (a.started) {
        atomic_store(&a.stop, true);
        loop_wake(&a.loop);
        pthread_join(a.thread, NULL);
        a.started = false;
    }
}

void admin_free(void)
{
    if (a.made) {
        loop_due(&a.loop); /* what the parts deferred */
        loop_free(&a.loop);
        a.made = false;
    }
}
