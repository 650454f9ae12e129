/* ioloop.c - the process pool's I/O thread.
 *
 * A plain pthread that never takes the GIL. It waits in the platform loop
 * (epoll or poll) for worker channels, the launcher's control socket,
 * wake-ups and the nearest deadline; it writes task frames, reads result
 * frames, fires timeouts and cancels, and hands finished tasks to the
 * completer. Pipe I/O runs without the mutex; everything else with it.
 */
#include "procpool.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Sends the queued control messages the socket takes now; the rest wait
 * for it to become writable (a launcher busy forking drains it later). */
static void
ctl_flush(ProcCore *self)
{
    while (self->ctlq_len > 0) {
        if (pb_ctl_send(self->ctl_fd, &self->ctlq[self->ctlq_head], NULL, 0) < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!self->ctl_wwatch
                    && pb_loop_watch(self->loop, self->ctl_fd, PB_EV_READ | PB_EV_WRITE) == 0)
                    self->ctl_wwatch = 1;
                return;
            }
            self->ctlq_len = 0; /* the launcher is gone: EOF follows */
            break;
        }
        self->ctlq_head = (self->ctlq_head + 1) % self->ctlq_cap;
        self->ctlq_len--;
    }
    if (self->ctl_wwatch) {
        pb_loop_watch(self->loop, self->ctl_fd, PB_EV_READ);
        self->ctl_wwatch = 0;
    }
}

/* Queues a control message for the launcher and sends what it can. */
void
ctl_post(ProcCore *self, pb_ctl_msg m)
{
    if (self->ctl_eof || self->ctl_fd < 0)
        return;
    if (self->ctlq_len == self->ctlq_cap) {
        int cap = self->ctlq_cap ? self->ctlq_cap * 2 : 64;
        pb_ctl_msg *q = malloc((size_t)cap * sizeof(*q));
        if (q == NULL)
            return; /* a lost KILL is escalated, a lost SPAWN retried */
        for (int i = 0; i < self->ctlq_len; i++)
            q[i] = self->ctlq[(self->ctlq_head + i) % self->ctlq_cap];
        free(self->ctlq);
        self->ctlq = q;
        self->ctlq_cap = cap;
        self->ctlq_head = 0;
    }
    self->ctlq[(self->ctlq_head + self->ctlq_len) % self->ctlq_cap] = m;
    self->ctlq_len++;
    ctl_flush(self);
}

void
ctl_kill(ProcCore *self, pid_t pid, int sig)
{
    pb_ctl_msg m = {PB_CTL_KILL, 0, pid, sig, 0};
    ctl_post(self, m);
}

/* Queues a frame for p. Returns 0, or -1 when its output queue is full. */
int
wq_push(pp_proc *p, uint32_t kind, uint64_t id, pp_task *t)
{
    if (p->wq_len == WQ_CAP)
        return -1;
    int i = (p->wq_head + p->wq_len) % WQ_CAP;
    memset(&p->wq[i].hdr, 0, sizeof(pb_frame_hdr));
    p->wq[i].hdr.id = id;
    p->wq[i].hdr.kind = kind;
    p->wq[i].hdr.len = t ? t->frame_len : 0;
    p->wq[i].hdr.nbufs = t ? (uint32_t)t->noob : 0;
    p->wq[i].task = t;
    p->wq_len++;
    p->wbusy = 1;
    p->wqueued += sizeof(pb_frame_hdr) + p->wq[i].hdr.len;
    if (t != NULL)
        t->frame_end = p->wqueued;
    return 0;
}

/* Writes as many queued frames as the pipe takes, in one writev. Called
 * without the mutex: only the I/O thread touches a worker's output, and a
 * sent task is never freed before this thread records its outcome. On a
 * broken channel it sets p->wfail. */
static void
proc_flush(ProcCore *self, pp_proc *p)
{
    if (!p->wbusy || p->task_fd < 0)
        return;
    while (p->wq_len > 0) {
        struct iovec iov[256];
        int n = 0;
        size_t skip = p->woff;
        for (int i = 0; i < p->wq_len && n < 256; i++) {
            int k = (p->wq_head + i) % WQ_CAP;
            pp_task *t = p->wq[k].task;
            /* A frame: header, then for a task its length table (with
             * out-of-band buffers), its pickle and those buffers. */
            int nseg = 1 + (t ? 1 + (t->noob ? 1 + t->noob : 0) : 0);
            for (int j = 0; j < nseg && n < 256; j++) {
                char *base;
                size_t len;
                if (j == 0) {
                    base = (char *)&p->wq[k].hdr;
                    len = sizeof(pb_frame_hdr);
                }
                else if (t->noob && j == 1) {
                    base = (char *)t->lens;
                    len = (size_t)(t->noob + 1) * sizeof(uint64_t);
                }
                else if (j == (t->noob ? 2 : 1)) {
                    base = PyBytes_AS_STRING(t->payload);
                    len = (size_t)PyBytes_GET_SIZE(t->payload);
                }
                else {
                    Py_buffer *v = &t->oob[j - 3];
                    base = v->buf;
                    len = (size_t)v->len;
                }
                if (skip >= len) {
                    skip -= len;
                    continue;
                }
                iov[n].iov_base = base + skip;
                iov[n].iov_len = len - skip;
                skip = 0;
                n++;
            }
        }
        ssize_t w = writev(p->task_fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!p->wwatch && pb_loop_watch(self->loop, p->task_fd, PB_EV_WRITE) == 0)
                    p->wwatch = 1;
                return;
            }
            p->wfail = 1;
            return;
        }
        p->wwritten += (uint64_t)w;
        size_t adv = p->woff + (size_t)w;
        while (p->wq_len > 0) {
            int k = p->wq_head;
            size_t flen = sizeof(pb_frame_hdr) + (size_t)p->wq[k].hdr.len;
            if (adv < flen)
                break;
            adv -= flen;
            if (p->wq[k].task)
                p->wq[k].task->delivered = 1;
            p->wq_head = (p->wq_head + 1) % WQ_CAP;
            p->wq_len--;
        }
        p->woff = adv;
    }
    p->wbusy = 0;
    if (p->wwatch) {
        pb_loop_watch(self->loop, p->task_fd, 0);
        p->wwatch = 0;
    }
}

/* Handles one complete frame from p. Takes ownership of data, which is
 * NULL for a frame whose payload could not be allocated. */
static void
proc_frame(ProcCore *self, pp_proc *p, pb_frame_hdr *h, char *data)
{
    switch (h->kind) {
    case PB_FRAME_READY:
        p->ready = 1;
        self->spawn_failures = 0;
        self->startup_failures = 0;
        free(data);
        if (p->task != NULL) {
            p->task->started_at = pebble_now_ns();
            if (p->task->timeout_ns >= 0)
                p->task->deadline = p->task->started_at + p->task->timeout_ns;
            task_mark_started(self, p->task);
        }
        return;
    case PB_FRAME_INIT_ERROR:
        if (self->error_data == NULL) {
            self->error_data = data;
            self->error_len = (size_t)h->len;
            data = NULL;
        }
        free(data);
        pool_break(self, FAIL_INITIALIZER, 0);
        return;
    case PB_FRAME_SKIPPED: {
        /* A queued task the worker dropped after its CANCEL frame: it never
         * ran. It is cancelled, or, taken back for an idle worker, goes
         * back to the pending queue. The worker may tell after the result
         * before it, which made it the running task here. */
        free(data);
        pp_task *t = NULL;
        if (p->task != NULL && p->task->id == h->id) {
            t = p->task;
            p->task = NULL;
            if (p->nqueued > 0) {
                pp_task *next = p->queued[0];
                memmove(
                    &p->queued[0], &p->queued[1], (size_t)(p->nqueued - 1) * sizeof(pp_task *));
                p->nqueued--;
                task_start(self, p, next);
            }
        }
        for (int i = 0; t == NULL && i < p->nqueued; i++) {
            if (p->queued[i]->id == h->id) {
                t = p->queued[i];
                memmove(&p->queued[i],
                        &p->queued[i + 1],
                        (size_t)(p->nqueued - i - 1) * sizeof(pp_task *));
                p->nqueued--;
            }
        }
        if (t == NULL)
            return;
        if (t->steal && !t->cancel_requested) {
            t->steal = 0;
            pend_push_front(self, t);
        }
        else {
            task_finish(self, t, OUT_CANCELLED);
        }
        return;
    }
    case PB_FRAME_RESULT:
    case PB_FRAME_ERROR:
        if (p->task == NULL || p->task->id != h->id) {
            free(data); /* a task finished already (timeout, cancel) */
            return;
        }
        pp_task *t = p->task;
        sched_note_duration(p, pebble_now_ns() - t->started_at);
        p->task = NULL;
        p->ntasks++;
        t->data = data;
        t->len = (size_t)h->len;
        t->nbufs = h->nbufs;
        /* Without data the frame could not be allocated (and is skipped). */
        task_finish(self,
                    t,
                    data == NULL                 ? OUT_NOMEM
                    : h->kind == PB_FRAME_RESULT ? OUT_RESULT
                                                 : OUT_ERROR);
        if (p->nqueued > 0) {
            pp_task *next = p->queued[0];
            memmove(&p->queued[0], &p->queued[1], (size_t)(p->nqueued - 1) * sizeof(pp_task *));
            p->nqueued--;
            task_start(self, p, next);
            if (next->cancel_requested) {
                /* Its SKIPPED report would have come before this result: the
                 * worker saw the cancel too late and runs it now. It is
                 * stopped as a running task is; those queued behind it have
                 * not started and go back to the queue. */
                task_finish(self, next, OUT_CANCELLED);
                p->task = NULL;
                proc_kill(self, p);
            }
        }
        else if (self->max_tasks && p->ntasks >= self->max_tasks && p->state == PROC_ALIVE) {
            proc_retire(self, p);
        }
        return;
    default:
        free(data);
        return;
    }
}

/* Reads what is available from p's result pipe into its buffers. Called
 * without the mutex (the buffers are the I/O thread's own). */
static void
proc_fill(pp_proc *p)
{
    if (p->result_fd < 0 || p->eof)
        return;
    if (p->stage == NULL && (p->stage = malloc(STAGE_SIZE)) == NULL)
        return;
    for (;;) {
        ssize_t r;
        pb_frame_reader *rd = &p->rd;
        if (rd->have_hdr && rd->data != NULL && p->slen == 0 && rd->got < rd->hdr.len) {
            /* A large payload is read straight into its own block. */
            r = read(p->result_fd, rd->data + rd->got, (size_t)(rd->hdr.len - rd->got));
            if (r > 0) {
                rd->got += (size_t)r;
                p->rdata_ready = 1;
                if (rd->got < rd->hdr.len)
                    continue;
                return;
            }
        }
        else {
            if (p->slen == STAGE_SIZE)
                return; /* parse first; the pipe stays readable */
            r = read(p->result_fd, p->stage + p->slen, STAGE_SIZE - p->slen);
            if (r > 0) {
                p->slen += (size_t)r;
                p->rdata_ready = 1;
                return;
            }
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        p->eof = 1;
        p->rdata_ready = 1;
        return;
    }
}

/* Storage for a result frame's payload (pb_frame_alloc_fn). */
static char *
proc_alloc(void *ctx, const pb_frame_hdr *h)
{
    return malloc(h->len ? (size_t)h->len : 1);
}

/* Turns buffered bytes into frames. Mutex held. */
static void
proc_parse(ProcCore *self, pp_proc *p)
{
    size_t off = 0;
    p->rdata_ready = 0;
    for (;;) {
        char *d;
        int rc = pb_frame_parse(&p->rd, p->stage, p->slen, &off, proc_alloc, NULL, &d);
        if (rc == PB_PARSE_MORE)
            break;
        if (rc == PB_PARSE_BAD) {
            /* A corrupt header: the rest of the stream cannot be read. The
             * running task fails now, naming it; the worker is killed and
             * the tasks queued behind go back to the queue. */
            off = p->slen;
            p->eof = 1;
            p->wfail = 1;
            if (p->task != NULL) {
                pp_task *t = p->task;
                p->task = NULL;
                t->len = (size_t)p->rd.hdr.len;
                t->nbufs = p->rd.hdr.nbufs;
                t->exitcode = -SIGKILL;
                t->pid = p->pid;
                task_finish(self, t, OUT_CORRUPT);
            }
            break;
        }
        pb_frame_hdr h = p->rd.hdr;
        proc_frame(self, p, &h, rc == PB_PARSE_NOMEM ? NULL : d);
        if (p->stage == NULL)
            return; /* the channel was closed meanwhile */
    }
    if (off > 0 && p->stage != NULL) {
        memmove(p->stage, p->stage + off, p->slen - off);
        p->slen -= off;
    }
    if (p->eof && p->result_fd >= 0)
        pb_loop_watch(self->loop, p->result_fd, 0);
}

/* Reads and parses everything available now. Mutex held (rare paths). */
void
proc_read(ProcCore *self, pp_proc *p)
{
    do {
        p->rdata_ready = 0;
        proc_fill(p);
        proc_parse(self, p);
    } while (p->rdata_ready && !p->eof && p->stage != NULL);
}

static pp_proc *
proc_by_fd(ProcCore *self, int fd)
{
    for (int i = 0; i < self->nprocs; i++)
        if (self->procs[i].task_fd == fd || self->procs[i].result_fd == fd
            || self->procs[i].pidfd == fd)
            return &self->procs[i];
    return NULL;
}

/* The launcher process died. Its workers outlive it where the pool holds
 * their pidfds: they go on serving, watched and signalled from here, and
 * nothing is lost. Elsewhere they die with it (their parent-death signal),
 * each settled once its result pipe is read to the end, so what it
 * finished is reported finished: its running task gets ProcessExpired,
 * the tasks queued behind it go back to the queue. The completer starts
 * a new launcher meanwhile. Mutex held. */
static void
launcher_lost(ProcCore *self)
{
    self->ctlq_head = self->ctlq_len = 0; /* all for the dead one */
    self->ctl_wwatch = 0;
    pb_fd_close(self->ctl_fd);
    self->ctl_fd = -1;
    for (int i = self->nprocs - 1; i >= 0; i--) {
        pp_proc *p = &self->procs[i];
        if (p->state == PROC_STARTING || p->pid <= 0) {
            /* Asked of the dead launcher, never started: asked again. */
            proc_requeue_queued(self, p);
            if (p->task != NULL) {
                pend_push_front(self, p->task);
                p->task = NULL;
            }
            proc_remove(self, i);
        }
        else if (p->pidfd >= 0 && !p->gone) {
            /* It outlives its launcher: it goes on serving. */
            p->orphan = ORPHAN_WATCHED;
            pb_loop_watch(self->loop, p->pidfd, PB_EV_READ);
        }
        else {
            p->orphan = ORPHAN_DYING;
        }
    }
    self->relaunch = RELAUNCH_WANTED;
    pthread_cond_signal(&self->done_cond);
}

/* Settles workers of a dead launcher that exited (their status is not
 * ours to know), or whose pipes are read to the end or closed by a kill
 * when they died with it (its parent-death signal). Mutex held. */
static void
settle_orphans(ProcCore *self)
{
    for (int i = self->nprocs - 1; i >= 0; i--) {
        pp_proc *p = &self->procs[i];
        if (p->orphan == ORPHAN_WATCHED && p->gone)
            proc_exited(self, p->pid, -1);
        else if (p->orphan == ORPHAN_DYING && (p->eof || p->result_fd < 0))
            proc_exited(self, p->pid, SIGKILL);
    }
}

/* Takes up the control socket of a new launcher, or gives up. Mutex held. */
static void
relaunch_done(ProcCore *self)
{
    if (self->relaunch == RELAUNCH_READY) {
        self->relaunch = RELAUNCH_NONE;
        if (self->state == S_RUNNING || self->state == S_CLOSING) {
            self->ctl_fd = self->relaunch_fd;
            pb_fd_register(self->ctl_fd);
            pb_set_nonblock(self->ctl_fd);
            self->ctl_eof = 0;
            pb_loop_watch(self->loop, self->ctl_fd, PB_EV_READ);
        }
        else {
            close(self->relaunch_fd); /* EOF: the new launcher exits */
        }
        self->relaunch_fd = -1;
    }
    else if (self->relaunch == RELAUNCH_FAILED) {
        self->relaunch = RELAUNCH_NONE;
        pool_break(self, FAIL_LAUNCHER, 0);
    }
}

static void
ctl_read(ProcCore *self)
{
    for (;;) {
        pb_ctl_msg m;
        int fds[PB_CTL_MAX_FDS];
        int r = pb_ctl_recv(self->ctl_fd, &m, fds);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            self->ctl_eof = 1;
            pb_loop_watch(self->loop, self->ctl_fd, 0);
            if (self->relaunchable && (self->state == S_RUNNING || self->state == S_CLOSING)) {
                launcher_lost(self);
                return;
            }
            /* Without the launcher no worker can be started or reaped. */
            for (int i = 0; i < self->nprocs; i++) {
                pp_proc *p = &self->procs[i];
                if (p->task) {
                    p->task->exitcode = 0;
                    p->task->pid = p->pid;
                    task_finish(self, p->task, OUT_EXPIRED);
                    p->task = NULL;
                }
                proc_requeue_queued(self, p);
            }
            while (self->nprocs)
                proc_remove(self, self->nprocs - 1);
            if (self->state == S_RUNNING || self->state == S_CLOSING)
                pool_break(self, FAIL_LAUNCHER, 0);
            return;
        }
        if (m.op == PB_CTL_SPAWNED) {
            pp_proc *p = NULL;
            for (int i = 0; i < self->nprocs; i++)
                if (self->procs[i].gen == m.gen)
                    p = &self->procs[i];
            if (p == NULL || fds[0] < 0 || fds[1] < 0 || fds[2] < 0) {
                pb_ctl_close_fds(fds);
                continue;
            }
            p->pid = m.pid;
            if (p->state == PROC_DYING) {
                pb_ctl_close_fds(fds);
                ctl_kill(self, p->pid, SIGKILL);
                p->kill_at = -1;
                continue;
            }
            p->task_fd = fds[0];
            p->result_fd = fds[1];
            p->cancel_fd = fds[2];
            p->pidfd = fds[3];
            pb_fd_register(p->pidfd);
            pb_fd_register(p->task_fd);
            pb_fd_register(p->result_fd);
            pb_fd_register(p->cancel_fd);
            pb_set_nonblock(p->task_fd);
            pb_set_nonblock(p->result_fd);
            pb_set_nonblock(p->cancel_fd);
            p->state = PROC_ALIVE;
            pb_loop_watch(self->loop, p->result_fd, PB_EV_READ);
        }
        else if (m.op == PB_CTL_SPAWN_FAILED) {
            for (int i = 0; i < self->nprocs; i++) {
                if (self->procs[i].gen == m.gen) {
                    proc_remove(self, i);
                    break;
                }
            }
            if (++self->spawn_failures >= self->max_start_failures)
                pool_break(self, FAIL_SPAWN, m.arg);
        }
        else if (m.op == PB_CTL_EXITED) {
            proc_exited(self, m.pid, m.arg);
        }
    }
}

int
proc_send_cancel(pp_proc *p, pp_task *t)
{
    pb_frame_hdr h = {t->id, 0, PB_FRAME_CANCEL, 0};
    ssize_t w = -1;
    if (p->cancel_fd >= 0) {
        /* One header: a pipe writes it whole or not at all. */
        do {
            w = write(p->cancel_fd, &h, sizeof(h));
        } while (w < 0 && errno == EINTR);
    }
    if (w != (ssize_t)sizeof(h) && wq_push(p, PB_FRAME_CANCEL, t->id, NULL) < 0)
        return -1;
    t->cancel_sent = 1;
    return 0;
}

/* Kills the workers running cancelled tasks; asks workers to drop the
 * cancelled tasks queued behind their running one. */
static void
handle_cancels(ProcCore *self)
{
    if (self->ncancel == 0)
        return;
    self->ncancel = 0;
    for (int i = 0; i < self->nprocs; i++) {
        pp_proc *p = &self->procs[i];
        if (p->task && p->task->cancel_requested) {
            task_finish(self, p->task, OUT_CANCELLED);
            p->task = NULL;
            proc_kill(self, p);
            continue;
        }
        for (int j = 0; j < p->nqueued; j++) {
            pp_task *t = p->queued[j];
            /* Without room for the frame the task is killed if it starts. */
            if (t->cancel_requested && !t->cancel_sent)
                proc_send_cancel(p, t);
        }
    }
}

/* Fires expired deadlines and returns the next one (-1: none). */
static int64_t
handle_deadlines(ProcCore *self)
{
    int64_t now = pebble_now_ns(), next = -1;
    for (int i = 0; i < self->nprocs; i++) {
        pp_proc *p = &self->procs[i];
        if (p->task && p->task->deadline >= 0) {
            if (p->task->deadline <= now) {
                task_finish(self, p->task, OUT_TIMEOUT);
                p->task = NULL;
                proc_kill(self, p);
            }
            else if (next < 0 || p->task->deadline < next) {
                next = p->task->deadline;
            }
        }
        if (p->state == PROC_DYING && p->kill_at > 0) {
            if (p->kill_at <= now) {
                proc_signal(self, p, SIGKILL);
                p->kill_at = -1;
            }
            else if (next < 0 || p->kill_at < next) {
                next = p->kill_at;
            }
        }
    }
    return next;
}

void *
io_main(void *arg)
{
    ProcCore *self = (ProcCore *)arg;
    pb_event events[64];
    sigset_t all;
    /* Signals belong to the main thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);

    pthread_mutex_lock(&self->mutex);
    if (self->ctl_fd >= 0)
        pb_loop_watch(self->loop, self->ctl_fd, PB_EV_READ);
    else
        self->ctl_eof = 1;
    for (;;) {
        relaunch_done(self);
        settle_orphans(self);
        adopt_pending(self);
        handle_cancels(self);
        if (self->state == S_STOPPING)
            while (self->pend_head)
                task_finish(self, self->pend_head, OUT_STOPPED);
        schedule_work(self);
        int64_t next = handle_deadlines(self), steal = sched_next_steal(self);
        if (steal >= 0 && (next < 0 || steal < next))
            next = steal;
        if (self->done_head || self->started_head)
            pthread_cond_signal(&self->done_cond);
        int forks = self->nforking > 0 || self->adopt_head != NULL;
        if (self->state != S_RUNNING && self->nprocs == 0 && self->pend_head == NULL && !forks)
            break;
        if (self->ctl_eof && self->nprocs == 0 && self->state != S_RUNNING && !forks
            && self->relaunch == RELAUNCH_NONE)
            break;
        int nprocs = self->nprocs;
        pthread_mutex_unlock(&self->mutex);

        /* Pipe I/O runs without the mutex: schedule() and cancel() never
         * wait behind a system call. Only this thread changes the procs. */
        for (int i = 0; i < nprocs; i++)
            if (self->procs[i].wbusy && !self->procs[i].wwatch)
                proc_flush(self, &self->procs[i]);
        int n = pb_loop_wait(self->loop, next, events, 64);
        int ctl_ready = 0;
        for (int i = 0; i < n; i++) {
            int fd = events[i].fd;
            if (fd == self->ctl_fd) {
                ctl_ready = 1;
                continue;
            }
            pp_proc *p = proc_by_fd(self, fd);
            if (p == NULL)
                continue;
            if (fd == p->task_fd)
                proc_flush(self, p);
            else if (fd == p->result_fd)
                proc_fill(p);
            else if (fd == p->pidfd && p->orphan == ORPHAN_WATCHED)
                p->gone = 1; /* settled, and unwatched, by settle_orphans() */
        }

        pthread_mutex_lock(&self->mutex);
        for (int i = 0; i < self->nprocs; i++) {
            pp_proc *p = &self->procs[i];
            if (p->rdata_ready)
                proc_parse(self, p);
            if (p->wfail)
                proc_write_failed(self, p);
        }
        if (ctl_ready) {
            ctl_flush(self);
            ctl_read(self);
        }
    }
    if (!self->ctl_eof) {
        pb_ctl_msg m = {PB_CTL_EXIT, 0, 0, 0, 0};
        ctl_post(self, m);
        /* Leaving: wait for the socket to take the rest, without the mutex
         * (callers of submit() or cancel() must not wait behind a stuck
         * launcher) and not past EXIT_FLUSH_MS: if the launcher takes
         * nothing, closing the socket ends it, and its workers, anyway. */
        int64_t until = pebble_now_ns() + EXIT_FLUSH_MS * 1000000LL;
        while (self->ctlq_len > 0) {
            int64_t left_ms = (until - pebble_now_ns()) / 1000000LL;
            if (left_ms <= 0)
                break;
            struct pollfd pfd = {self->ctl_fd, POLLOUT, 0};
            pthread_mutex_unlock(&self->mutex);
            int rc = poll(&pfd, 1, (int)left_ms);
            pthread_mutex_lock(&self->mutex);
            if (rc < 0 && errno != EINTR)
                break;
            if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))
                break;
            ctl_flush(self);
        }
    }
    self->finished = 1;
    pthread_cond_broadcast(&self->done_cond);
    pthread_mutex_unlock(&self->mutex);
    return NULL;
}
