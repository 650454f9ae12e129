/* lifecycle.c - a worker process's life, as the pool sees it.
 *
 * A worker is asked of the launcher, becomes alive when its channels
 * arrive, and leaves by retiring (asked to exit once idle), by being killed
 * (SIGTERM, then SIGKILL after a grace period) or by dying; the launcher
 * reports its exit. Whatever it was given and did not run goes back to the
 * pending queue. Called by the I/O thread with the mutex held.
 */
#include "procpool.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

void
proc_close_channels(ProcCore *self, pp_proc *p)
{
    if (p->task_fd >= 0) {
        pb_loop_watch(self->loop, p->task_fd, 0);
        pb_fd_close(p->task_fd);
        p->task_fd = -1;
    }
    if (p->result_fd >= 0) {
        pb_loop_watch(self->loop, p->result_fd, 0);
        pb_fd_close(p->result_fd);
        p->result_fd = -1;
    }
    if (p->cancel_fd >= 0) {
        pb_fd_close(p->cancel_fd);
        p->cancel_fd = -1;
    }
    free(p->stage);
    p->stage = NULL;
    p->slen = 0;
    free(p->rd.data);
    p->rd.data = NULL;
    p->rd.have_hdr = 0;
    p->wbusy = 0;
    p->wwatch = 0;
    p->wq_len = 0;
    p->woff = 0;
}

/* Tells an idle worker to exit by itself. Descriptors inherited by other
 * processes would hide EOF, so the request is an explicit frame. Returns
 * 0 when the worker still has frames to receive (try again later). */
int
proc_retire(ProcCore *self, pp_proc *p)
{
    pb_frame_hdr h;
    if (p->wq_len > 0)
        return 0;
    memset(&h, 0, sizeof(h));
    h.kind = PB_FRAME_STOP;
    if (p->task_fd >= 0) {
        /* The pipe is empty when the worker is idle: this never blocks. */
        ssize_t w;
        do {
            w = write(p->task_fd, &h, sizeof(h));
        } while (w < 0 && errno == EINTR);
        pb_loop_watch(self->loop, p->task_fd, 0);
        pb_fd_close(p->task_fd);
        p->task_fd = -1;
        p->wwatch = 0;
    }
    p->state = PROC_RETIRING;
    return 1;
}

/* Sends the tasks queued behind p's running task back to the pending
 * queue (they never started), or drops those cancelled meanwhile. */
void
proc_requeue_queued(ProcCore *self, pp_proc *p)
{
    for (int i = p->nqueued - 1; i >= 0; i--) {
        pp_task *t = p->queued[i];
        if (t->cancel_requested)
            task_finish(self, t, OUT_CANCELLED);
        else
            pend_push_front(self, t);
    }
    p->nqueued = 0;
}

/* Kills a worker: SIGTERM now, SIGKILL after the grace period. Its running
 * task, if any, must already be finished by the caller; tasks queued
 * behind it go back to the pending queue. */
void
proc_kill(ProcCore *self, pp_proc *p)
{
    proc_requeue_queued(self, p);
    if (p->state == PROC_DYING)
        return;
    if (p->state == PROC_STARTING) {
        /* Not known yet: kill it when SPAWNED arrives. */
        p->kill_at = 0;
        p->state = PROC_DYING;
        return;
    }
    proc_close_channels(self, p);
    p->task = NULL;
    p->state = PROC_DYING;
    proc_signal(self, p, SIGTERM);
    p->kill_at = pebble_now_ns() + KILL_GRACE_NS;
}

void
proc_signal(ProcCore *self, pp_proc *p, int sig)
{
    if (p->orphan != ORPHAN_WATCHED) {
        ctl_kill(self, p->pid, sig);
        return;
    }
    if (p->gone)
        return; /* its pid may be another's by now */
    if (self->trees) {
        /* No subreaper adopts what it leaves when it dies: below it,
         * nothing waits for the grace period. */
        pb_kill_descendants(p->pid, SIGKILL);
        kill(-p->pid, sig);
    }
    pb_pidfd_signal(p->pidfd, sig);
}

void
proc_remove(ProcCore *self, int i)
{
    pp_proc *p = &self->procs[i];
    if (p->pidfd >= 0) {
        pb_loop_watch(self->loop, p->pidfd, 0);
        pb_fd_close(p->pidfd);
        p->pidfd = -1;
    }
    proc_close_channels(self, &self->procs[i]);
    self->procs[i] = self->procs[--self->nprocs];
}

/* A new entry of the process table, in *state*, with no channel and a
 * generation of its own; NULL when the table cannot grow (the caller
 * retries on the next loop turn). */
pp_proc *
proc_new(ProcCore *self, int state)
{
    if (self->nprocs == self->procs_cap) {
        int cap = self->procs_cap ? self->procs_cap * 2 : 8;
        pp_proc *procs = realloc(self->procs, (size_t)cap * sizeof(*procs));
        if (procs == NULL)
            return NULL;
        self->procs = procs;
        self->procs_cap = cap;
    }
    pp_proc *p = &self->procs[self->nprocs++];
    memset(p, 0, sizeof(*p));
    p->state = state;
    p->gen = ++self->next_gen;
    p->task_fd = p->result_fd = p->cancel_fd = -1;
    p->kill_at = -1;
    p->ewma_ns = -1;
    p->pidfd = -1;
    return p;
}

/* Asks the launcher for a new worker. */
void
proc_spawn(ProcCore *self)
{
    if (self->ctl_eof)
        return;
    pp_proc *p = proc_new(self, PROC_STARTING);
    if (p == NULL)
        return;
    pb_ctl_msg m = {PB_CTL_SPAWN, 0, 0, 0, p->gen};
    ctl_post(self, m);
}

/* Puts the pool in the error state: every task fails, workers are killed. */
void
pool_break(ProcCore *self, int what, int err)
{
    if (self->state == S_ERROR)
        return;
    self->state = S_ERROR;
    if (self->error_what == FAIL_NONE) {
        self->error_what = what;
        self->error_errno = err;
    }
    while (self->pend_head)
        task_finish(self, self->pend_head, OUT_BROKEN);
    for (int i = 0; i < self->nprocs; i++) {
        pp_proc *p = &self->procs[i];
        if (p->task) {
            task_finish(self, p->task, OUT_BROKEN);
            p->task = NULL;
        }
        for (int j = 0; j < p->nqueued; j++)
            task_finish(self, p->queued[j], OUT_BROKEN);
        p->nqueued = 0;
        proc_kill(self, p);
    }
    while (self->pend_head)
        task_finish(self, self->pend_head, OUT_BROKEN);
}

/* True when not one byte of t's frame left p's task pipe: the worker
 * never saw the task. Only a dead worker's pipe can be asked. */
static int
proc_never_read(pp_proc *p, pp_task *t)
{
    int unread = 0;
    if (!t->delivered)
        return 1; /* a frame cut short cannot be run */
    if (p->task_fd < 0 || ioctl(p->task_fd, FIONREAD, &unread) < 0)
        return 0;
    uint64_t consumed = p->wwritten - (uint64_t)unread;
    uint64_t frame_start = t->frame_end - sizeof(pb_frame_hdr) - t->frame_len;
    return consumed <= frame_start;
}

/* A worker exited with the given wait status (-1: not known). */
void
proc_exited(ProcCore *self, pid_t pid, int status)
{
    int i;
    for (i = 0; i < self->nprocs; i++)
        if (self->procs[i].pid == pid && self->procs[i].state != PROC_STARTING)
            break;
    if (i == self->nprocs)
        return;
    pp_proc *p = &self->procs[i];
    /* Whatever it wrote before dying is still in the pipe. */
    proc_read(self, p);
    int code = status == -1          ? PB_EXIT_UNKNOWN
               : WIFSIGNALED(status) ? -WTERMSIG(status)
                                     : WEXITSTATUS(status);
    if (p->state == PROC_ALIVE && !p->ready && self->state != S_STOPPING
        && self->state != S_ERROR) {
        /* Died before it was ready: its task never started and goes back
         * to the queue. An initializer that exits breaks the pool, as one
         * that raises does; otherwise only repeated deaths (a worker that
         * cannot start at all) do. SIGKILL comes from outside (a killer,
         * the OOM killer), never from a failing start: it does not count. */
        if (p->task != NULL) {
            pend_push_front(self, p->task);
            p->task = NULL;
        }
        if (self->has_initializer
            || (code != -SIGKILL && ++self->startup_failures >= self->max_start_failures))
            pool_break(self, FAIL_STARTUP, code);
    }
    if (p->task && proc_never_read(p, p->task)) {
        /* It died (killed while idle, say) before reading its task. */
        pend_push_front(self, p->task);
        p->task = NULL;
    }
    if (p->task) {
        pp_task *t = p->task;
        p->task = NULL;
        t->exitcode = code;
        t->pid = pid;
        task_finish(self, t, OUT_EXPIRED);
    }
    proc_requeue_queued(self, p);
    proc_remove(self, i);
}

/* p's task pipe broke: the worker is gone or going. Tasks whose frames it
 * never received go back to the queue; the running one is settled by the
 * worker's EXITED report (its result may still be in the result pipe). */
void
proc_write_failed(ProcCore *self, pp_proc *p)
{
    p->wfail = 0;
    for (int i = p->nqueued - 1; i >= 0; i--) {
        pp_task *t = p->queued[i];
        if (!t->delivered) {
            memmove(&p->queued[i],
                    &p->queued[i + 1],
                    (size_t)(p->nqueued - i - 1) * sizeof(pp_task *));
            p->nqueued--;
            pend_push_front(self, t);
        }
    }
    if (p->task != NULL && !p->task->delivered) {
        pend_push_front(self, p->task);
        p->task = NULL;
    }
    if (p->wwatch)
        pb_loop_watch(self->loop, p->task_fd, 0);
    pb_fd_close(p->task_fd);
    p->task_fd = -1;
    p->wq_len = 0;
    p->woff = 0;
    p->wbusy = 0;
    p->wwatch = 0;
    if (p->state == PROC_ALIVE || p->state == PROC_RETIRING) {
        p->state = PROC_DYING;
        proc_signal(self, p, SIGKILL);
        p->kill_at = -1;
    }
}
