/* sched.c - scheduling policy of the process pool.
 *
 * Decides how many workers to keep and which worker runs which pending
 * task: idle workers first, then a few short tasks queued behind running
 * ones. Called by the I/O thread with the mutex held.
 */
#include "procpool.h"

/* Only tasks that recently took less than this are queued behind a
 * running one. A higher limit keeps workers busier on backlogs of short
 * tasks (no idle gap between a result and the next frame); a lower one
 * lets fewer tasks wait behind a long one while another worker frees up. */
#define PIPELINE_MAX_NS (500LL * 1000)

/* Output frames left free in a worker's queue when pipelining, so that
 * CANCEL frames for the tasks queued there still fit. */
#define WQ_RESERVE 2

/* A task queued behind a running one is taken back for an idle worker
 * once the running one has run this long with nothing else to do for the
 * idle one. Lower, short tasks wait less behind an unexpectedly long one;
 * higher, fewer tasks are taken back that their worker was about to run
 * anyway (the round trip of a CANCEL and its SKIPPED). */
#define STEAL_AFTER_NS (2LL * 1000 * 1000)

/* A worker's recent task duration is a moving average: the last task
 * counts for 1/DURATION_SCALE of it, so one slow task soon stops
 * pipelining and one fast task alone does not restart it. */
#define DURATION_SCALE 4

static int
live_workers(ProcCore *self)
{
    int n = 0;
    for (int i = 0; i < self->nprocs; i++)
        if (self->procs[i].state == PROC_STARTING || self->procs[i].state == PROC_ALIVE)
            n++;
    return n;
}

/* t became the task p runs: its timeout starts now, or when p is ready
 * (a fresh interpreter may take a while to start and run its initializer). */
void
task_start(ProcCore *self, pp_proc *p, pp_task *t)
{
    p->task = t;
    t->started_at = pebble_now_ns();
    t->deadline = t->timeout_ns >= 0 && p->ready ? t->started_at + t->timeout_ns : -1;
    if (p->ready)
        task_mark_started(self, t);
}

/* Queues t for the completer to mark its future running. */
void
task_mark_started(ProcCore *self, pp_task *t)
{
    if (!t->on_started) {
        t->on_started = 1;
        t->snext = NULL;
        if (self->started_tail)
            self->started_tail->snext = t;
        else
            self->started_head = t;
        self->started_tail = t;
    }
}

/* Sends t to p: it runs at once if p is idle, otherwise after p's queue. */
static void
proc_dispatch(ProcCore *self, pp_proc *p, pp_task *t)
{
    pend_unlink(self, t);
    t->state = T_SENT;
    t->delivered = 0;
    wq_push(p, PB_FRAME_TASK, t->id, t);
    if (p->task == NULL)
        task_start(self, p, t);
    else
        p->queued[p->nqueued++] = t;
}

/* An idle worker that could run a task now, or NULL. */
static pp_proc *
idle_worker(ProcCore *self)
{
    for (int i = 0; i < self->nprocs; i++) {
        pp_proc *p = &self->procs[i];
        if (p->state == PROC_ALIVE && p->ready && p->task == NULL && p->nqueued == 0 && !p->adopted
            && !(self->max_tasks && p->ntasks >= self->max_tasks))
            return p;
    }
    return NULL;
}

/* Whether p has queued tasks not yet asked back. */
static int
has_unstolen(pp_proc *p)
{
    for (int j = 0; j < p->nqueued; j++)
        if (!p->queued[j]->cancel_sent)
            return 1;
    return 0;
}

int64_t
sched_next_steal(ProcCore *self)
{
    int64_t next = -1, now = pebble_now_ns();
    if ((self->state != S_RUNNING && self->state != S_CLOSING) || self->pend_head != NULL
        || idle_worker(self) == NULL)
        return -1; /* nothing to steal for; a worker going idle runs the loop */
    for (int i = 0; i < self->nprocs; i++) {
        pp_proc *p = &self->procs[i];
        if (p->state != PROC_ALIVE || p->task == NULL || !has_unstolen(p))
            continue;
        int64_t at = p->task->started_at + STEAL_AFTER_NS;
        if (at <= now)
            at = now + STEAL_AFTER_NS; /* its frames found no room: try again later */
        if (next < 0 || at < next)
            next = at;
    }
    return next;
}

/* Takes back, for idle workers, the tasks queued behind a running task
 * that has run for STEAL_AFTER_NS: no task waits behind a long one while
 * another worker idles. The worker answers SKIPPED for those it had not
 * started, and they return to the pending queue. */
static void
steal_queued(ProcCore *self)
{
    if (self->pend_head != NULL || idle_worker(self) == NULL)
        return;
    int64_t now = pebble_now_ns();
    for (int i = 0; i < self->nprocs; i++) {
        pp_proc *p = &self->procs[i];
        if (p->state != PROC_ALIVE || p->task == NULL
            || now < p->task->started_at + STEAL_AFTER_NS)
            continue;
        for (int j = 0; j < p->nqueued; j++) {
            pp_task *t = p->queued[j];
            if (!t->cancel_sent && proc_send_cancel(p, t) == 0)
                t->steal = 1;
        }
    }
}

/* Keeps the worker count and hands pending tasks to idle workers. */
void
schedule_work(ProcCore *self)
{
    if (self->state == S_RUNNING || (self->state == S_CLOSING && self->pend_head != NULL)) {
        int want = self->max_workers;
        if (self->spare >= 0) {
            /* Elastic: a worker per task in flight, plus warm spares. */
            int busy = 0;
            for (int i = 0; i < self->nprocs; i++)
                busy += self->procs[i].task != NULL;
            int64_t w =
                (int64_t)busy + self->npending + (self->state == S_RUNNING ? self->spare : 0);
            want = w < self->max_workers ? (int)w : self->max_workers;
        }
        int n = live_workers(self);
        if (n < want && self->inproc && (self->done_head != NULL || self->completing))
            self->spawn_waits = 1; /* after the completer (see ProcCore.inproc) */
        else
            for (; n < want && !self->ctl_eof; n++)
                proc_spawn(self);
    }
    /* A child forked for one call leaves once it has answered; a worker
     * that outlived its launcher once it has run what it was given (its
     * exit status is no longer the pool's to learn). */
    for (int i = 0; i < self->nprocs; i++) {
        pp_proc *p = &self->procs[i];
        if ((p->adopted || p->orphan) && p->state == PROC_ALIVE && p->task == NULL
            && p->nqueued == 0)
            proc_retire(self, p);
    }
    /* A worker done with its max_tasks share leaves once nothing waits to
     * be written to it (its last result may have come with a CANCEL frame
     * still queued): never given one more task meanwhile. */
    if (self->max_tasks) {
        for (int i = 0; i < self->nprocs; i++) {
            pp_proc *p = &self->procs[i];
            if (p->state == PROC_ALIVE && p->task == NULL && p->nqueued == 0
                && p->ntasks >= self->max_tasks)
                proc_retire(self, p);
        }
    }
    /* Idle workers first, one task each: those ready to run it at once
     * before those still starting (a fresh interpreter takes a while). */
    for (int ready = 1; ready >= 0; ready--) {
        for (int i = 0; i < self->nprocs && self->pend_head; i++) {
            pp_proc *p = &self->procs[i];
            if (p->state != PROC_ALIVE || p->task != NULL || p->ready != ready || p->adopted
                || p->orphan)
                continue;
            if (self->max_tasks && p->ntasks >= self->max_tasks)
                continue; /* done with its share, retired below */
            proc_dispatch(self, p, self->pend_head);
        }
    }
    /* A backlog of short tasks is queued a few deep behind running ones, so
     * a worker never waits for the next task after sending a result. Long
     * tasks are not: a queued task would wait while another worker idles. */
    for (int depth = 1; depth <= QDEPTH && self->pend_head; depth++) {
        for (int i = 0; i < self->nprocs && self->pend_head; i++) {
            pp_proc *p = &self->procs[i];
            if (p->state != PROC_ALIVE || p->task == NULL || p->adopted || p->orphan
                || p->nqueued >= depth || p->ewma_ns < 0 || p->ewma_ns > PIPELINE_MAX_NS
                || self->spare >= 0
                || (self->max_tasks && p->ntasks + 1 + (uint64_t)p->nqueued >= self->max_tasks)
                || p->wq_len >= WQ_CAP - WQ_RESERVE)
                continue;
            proc_dispatch(self, p, self->pend_head);
        }
    }
    if (self->state == S_RUNNING || self->state == S_CLOSING)
        steal_queued(self);
    int stealing = 0;
    for (int i = 0; i < self->nprocs && !stealing; i++)
        for (int j = 0; j < self->procs[i].nqueued; j++)
            stealing |= self->procs[i].queued[j]->steal;
    if (self->state == S_CLOSING && self->pend_head == NULL && !stealing) {
        /* Drained: idle workers are told to exit (not while tasks taken
         * back for them are on their way). */
        for (int i = 0; i < self->nprocs; i++) {
            pp_proc *p = &self->procs[i];
            if (p->state == PROC_ALIVE && p->task == NULL && p->nqueued == 0)
                proc_retire(self, p);
        }
    }
    if (self->state == S_STOPPING) {
        for (int i = 0; i < self->nprocs; i++) {
            pp_proc *p = &self->procs[i];
            if (p->task) {
                task_finish(self, p->task, OUT_STOPPED);
                p->task = NULL;
            }
            for (int j = 0; j < p->nqueued; j++)
                task_finish(self, p->queued[j], OUT_STOPPED);
            p->nqueued = 0;
            if (p->state == PROC_ALIVE || p->state == PROC_RETIRING || p->state == PROC_STARTING)
                proc_kill(self, p);
        }
    }
}

/* Counts took (nanoseconds) into p's recent task duration. */
void
sched_note_duration(pp_proc *p, int64_t took)
{
    p->ewma_ns =
        p->ewma_ns < 0 ? took : (p->ewma_ns * (DURATION_SCALE - 1) + took) / DURATION_SCALE;
}
