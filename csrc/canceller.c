/* canceller.c - the canceller thread of a worker.
 *
 * It reads the worker's cancel pipe while the main thread runs tasks. A
 * CANCEL for a task the worker has not started is answered at once with
 * SKIPPED, and the main thread drops the task when it reaches it; a CANCEL
 * for a task started already is ignored (the pool stops a running task by
 * killing its worker). The SKIPPED is written under the state lock, which
 * the main thread takes before it runs each task, so the pool always hears
 * of a dropped task before any later result. The thread never touches
 * Python objects.
 */
#include "frame.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STARTED_RING 256 /* ids of the tasks started last, far more than a worker has queued */
#define MAX_DROPPED  256 /* cancels of tasks not reached yet */

struct pb_canceller {
    pthread_mutex_t state; /* started, dropped; held while a SKIPPED is written */
    pthread_mutex_t write; /* whole frames on result_fd; taken after state */
    int result_fd, cancel_fd;
    uint64_t started[STARTED_RING];
    int started_next;
    uint64_t dropped[MAX_DROPPED];
    int ndropped;
    int refs;      /* the main thread and the canceller thread; the last frees */
    int listening; /* the thread was started (main thread only) */
};

static void
canceller_release(pb_canceller *c)
{
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        pthread_mutex_destroy(&c->state);
        pthread_mutex_destroy(&c->write);
        free(c);
    }
}

static int
canceller_started(pb_canceller *c, uint64_t id)
{
    for (int i = 0; i < STARTED_RING; i++)
        if (c->started[i] == id && id != 0)
            return 1;
    return 0;
}

static void *
canceller_main(void *arg)
{
    pb_canceller *c = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the main thread */
    for (;;) {
        pb_frame_hdr h;
        size_t got = 0;
        while (got < sizeof(h)) {
            ssize_t n = read(c->cancel_fd, (char *)&h + got, sizeof(h) - got);
            if (n > 0)
                got += (size_t)n;
            else if (n < 0 && errno == EINTR)
                continue;
            else
                goto leave; /* EOF: the pool is gone */
        }
        if (h.kind != PB_FRAME_CANCEL || h.len != 0 || h.nbufs != 0)
            goto leave; /* not ours to read: stop listening */
        pthread_mutex_lock(&c->state);
        if (c->result_fd >= 0 && !canceller_started(c, h.id) && c->ndropped < MAX_DROPPED) {
            c->dropped[c->ndropped++] = h.id;
            Py_buffer none;
            memset(&none, 0, sizeof(none));
            none.buf = "";
            pthread_mutex_lock(&c->write);
            (void)pb_frame_write(c->result_fd, h.id, PB_FRAME_SKIPPED, &none, 1, 0, NULL, 0);
            pthread_mutex_unlock(&c->write);
        }
        pthread_mutex_unlock(&c->state);
    }
leave:
    canceller_release(c);
    return NULL;
}

pb_canceller *
pb_canceller_start(int result_fd, int cancel_fd)
{
    pb_canceller *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    pthread_mutex_init(&c->state, NULL);
    pthread_mutex_init(&c->write, NULL);
    c->result_fd = result_fd;
    c->cancel_fd = cancel_fd;
    c->refs = 1;
    return c;
}

void
pb_canceller_listen(pb_canceller *c)
{
    if (c->cancel_fd < 0 || c->listening)
        return;
    c->listening = 1;
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
    if (pthread_create(&thread, &attr, canceller_main, c) != 0)
        __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL); /* cancels stay in band */
    pthread_attr_destroy(&attr);
}

/* The main thread is done: the canceller writes nothing more. */
void
pb_canceller_stop(pb_canceller *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->state);
    c->result_fd = -1;
    pthread_mutex_unlock(&c->state);
    canceller_release(c);
}

/* Before the main thread runs task id: 1 if it was cancelled (drop it),
 * else 0 with the task recorded as started. GIL held; released to wait. */
int
pb_canceller_take(pb_canceller *c, uint64_t id)
{
    int drop = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&c->state);
    for (int i = 0; i < c->ndropped; i++) {
        if (c->dropped[i] == id) {
            c->dropped[i] = c->dropped[--c->ndropped];
            drop = 1;
            break;
        }
    }
    if (!drop) {
        c->started[c->started_next] = id;
        c->started_next = (c->started_next + 1) % STARTED_RING;
    }
    pthread_mutex_unlock(&c->state);
    Py_END_ALLOW_THREADS
    return drop;
}

void
pb_canceller_lock_write(pb_canceller *c)
{
    pthread_mutex_lock(&c->write);
}

void
pb_canceller_unlock_write(pb_canceller *c)
{
    pthread_mutex_unlock(&c->write);
}
