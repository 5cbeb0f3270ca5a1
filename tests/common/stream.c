/*
 * Streams of the pattern, checked byte for byte (see stream.h).
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "net.h"
#include "pattern.h"
#include "stream.h"

#define WINDOW (256 * KIB)
#define CHUNK (32 * KIB)

/* stream_start()'s: enough load, without taking the machine. */
#define STREAM_RATE (32 * MIB)
#define STALL_MS 5000

/* The streams stream_start() made and nobody finished yet. */
static struct stream *streams[16];
static size_t nstreams;

__attribute__((format(printf, 2, 3))) static void stream_fail(struct stream *s,
                                                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
}

/* Whether the stream is to half-close now. */
static bool finishing(struct stream *s, int64_t now)
{
    return atomic_load(&s->finish) || (s->finish_at != 0 && now >= s->finish_at) ||
           (s->finish_too != NULL && atomic_load(s->finish_too));
}

/* Takes n received bytes; false (with the message) when they are wrong. */
static bool stream_take(struct stream *s, const uint8_t *buf, uint64_t n, uint64_t sent,
                        uint64_t *verified)
{
    if (*verified + n > sent) {
        stream_fail(s, "received %llu bytes, more than the %llu sent",
                    (unsigned long long)(*verified + n), (unsigned long long)sent);
        return false;
    }
    if (memcmp(buf, pat(s->base + *verified), (size_t)n) != 0) {
        stream_fail(s, "bytes %llu..%llu differ from what was sent",
                    (unsigned long long)*verified, (unsigned long long)(*verified + n));
        return false;
    }
    *verified += n;
    atomic_store(&s->verified, *verified);
    if (s->total != NULL)
        atomic_fetch_add(s->total, n);
    return true;
}

void stream_pump(struct stream *s)
{
    uint8_t *buf = malloc(64 * KIB);
    int64_t t0 = ms_now(), last = t0;
    if (buf == NULL) {
        stream_fail(s, "out of memory");
        goto out;
    }
    bool shut = false;
    uint64_t sent = 0, verified = 0;
    /* Bounded by stall_ms without progress, and by the rounds. */
    for (long round = 0; round < 100000000L && !atomic_load(&s->quit); round++) {
        int64_t now = ms_now();
        if (s->give_up_at != 0 && now > s->give_up_at) {
            stream_fail(s, "not done %lld ms after it began", (long long)(now - t0));
            goto out;
        }
        if (!shut && finishing(s, now)) {
            if (shutdown(s->fd, SHUT_WR) < 0) {
                stream_fail(s, "shutdown: %s", strerror(errno));
                goto out;
            }
            shut = true;
        }
        bool throttled = s->rate > 0 &&
                         sent >= s->rate * (uint64_t)(now - t0) / 1000 + CHUNK;
        bool can_send = !shut && !throttled && sent - verified < WINDOW;
        struct pollfd pfd = {.fd = s->fd,
                             .events = (short)(POLLIN | (can_send ? POLLOUT : 0))};
        if (poll(&pfd, 1, throttled ? 5 : 50) < 0 && errno != EINTR) {
            stream_fail(s, "poll: %s", strerror(errno));
            goto out;
        }
        now = ms_now();
        bool progress = false;
        if (can_send) {
            size_t want = WINDOW - (size_t)(sent - verified);
            if (want > CHUNK)
                want = CHUNK;
            ssize_t n = send(s->fd, pat(s->base + sent), want,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent += (uint64_t)n;
                atomic_store(&s->sent, sent);
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                if (s->may_be_cut && (errno == EPIPE || errno == ECONNRESET)) {
                    s->cut = s->ok = true;
                    goto out;
                }
                stream_fail(s, "send after %llu bytes: %s", (unsigned long long)sent,
                            strerror(errno));
                goto out;
            }
        }
        ssize_t n = recv(s->fd, buf, 64 * KIB, MSG_DONTWAIT);
        if (n > 0) {
            if (!stream_take(s, buf, (uint64_t)n, sent, &verified))
                goto out;
            progress = true;
        } else if (n == 0) {
            if (shut && verified == sent) {
                s->ok = true;
                goto out;
            }
            if (s->may_be_cut) {
                s->cut = s->ok = true;
                goto out;
            }
            stream_fail(s, "EOF after %llu of %llu bytes back",
                        (unsigned long long)verified, (unsigned long long)sent);
            goto out;
        } else if (errno != EAGAIN && errno != EINTR) {
            if (s->may_be_cut && errno == ECONNRESET) {
                s->cut = s->ok = true;
                goto out;
            }
            stream_fail(s, "recv after %llu of %llu bytes: %s",
                        (unsigned long long)verified, (unsigned long long)sent,
                        strerror(errno));
            goto out;
        }
        /* Nothing in flight and not finishing: idle by choice. */
        if (progress || (sent == verified && !shut))
            last = now;
        else if (now - last > s->stall_ms) {
            stream_fail(s, "no progress for %d ms (%llu sent, %llu back%s)", s->stall_ms,
                        (unsigned long long)sent, (unsigned long long)verified,
                        shut ? ", half-closed" : "");
            goto out;
        }
    }
    if (!atomic_load(&s->quit))
        stream_fail(s, "ran out of rounds");
out:
    s->end_ms = ms_now();
    free(buf);
    atomic_store(&s->done, true);
}

/* stream_start()'s thread. */
static void *stream_thread(void *arg)
{
    stream_pump(arg);
    return NULL;
}

struct stream *stream_start(int port, uint64_t base, bool may_be_cut)
{
    return stream_start_rate(port, base, may_be_cut, STREAM_RATE);
}

struct stream *stream_start_rate(int port, uint64_t base, bool may_be_cut, uint64_t rate)
{
    CHECK(nstreams < ARRAY_LEN(streams));
    struct stream *s = calloc(1, sizeof(*s));
    CHECK(s != NULL);
    s->fd = client4(port);
    s->cport = local_port(s->fd);
    set_nonblocking(s->fd);
    s->base = base;
    s->may_be_cut = may_be_cut;
    s->rate = rate;
    s->stall_ms = STALL_MS;
    CHECK_EQ(pthread_create(&s->thread, NULL, stream_thread, s), 0);
    streams[nstreams++] = s;
    return s;
}

bool stream_advances(struct stream *s, uint64_t bytes, int ms)
{
    uint64_t want = atomic_load(&s->verified) + bytes;
    int64_t until = ms_now() + ms;
    for (int i = 0; i < 10000; i++) {
        if (atomic_load(&s->verified) >= want)
            return true;
        if (atomic_load(&s->done) || ms_now() >= until)
            return false;
        sleep_ms(1);
    }
    return false;
}

void stream_check(struct stream *s)
{
    if (atomic_load(&s->done) && !s->ok)
        test_fail("streamer from port %d: %s", s->cport, s->err);
}

/* Frees a stream whose thread is joined. */
static void stream_free(struct stream *s)
{
    for (size_t i = 0; i < nstreams; i++)
        if (streams[i] == s) {
            streams[i] = streams[--nstreams];
            break;
        }
    close(s->fd);
    free(s);
}

void stream_forget(struct stream *s)
{
    pthread_join(s->thread, NULL);
    stream_free(s);
}

uint64_t stream_finish(struct stream *s)
{
    atomic_store(&s->finish, true);
    int64_t until = ms_now() + STALL_MS + 2000;
    for (int i = 0; i < 100000 && !atomic_load(&s->done) && ms_now() < until; i++)
        sleep_ms(1);
    if (!atomic_load(&s->done))
        atomic_store(&s->quit, true);
    pthread_join(s->thread, NULL);
    if (!s->ok || s->cut)
        test_fail("streamer from port %d did not finish cleanly: %s", s->cport,
                  s->cut ? "cut by the daemon" : s->err);
    uint64_t sent = atomic_load(&s->sent);
    CHECK(atomic_load(&s->verified) == sent);
    stream_free(s);
    return sent;
}

void stream_abort_all(void)
{
    while (nstreams > 0) {
        struct stream *s = streams[nstreams - 1];
        atomic_store(&s->quit, true);
        stream_forget(s);
    }
}
