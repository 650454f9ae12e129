/* forkcall.c - calls run in a fork of the caller, then watched by a pool.
 *
 * Under the fork start method a decorated call forks the calling process
 * at the call: the child runs the function it already has, with the
 * caller's state of that moment, and sends back only its outcome. The
 * parent hands the child to its engine as a worker already running that
 * one task: the I/O thread watches its result pipe and its deadline, and
 * the in-process launcher reaps and kills it. No lock of the engine is
 * held across the fork.
 */
#include "procpool.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char ProcCore_fork_call_doc[] =
    "fork_call($self, future, timeout, trees, main_thread, /)\n--\n\n"
    "Fork this process for one call of future's task. In the child return\n"
    "(0, result_fd, task_id): the caller runs the call, writes its outcome\n"
    "frame on result_fd and exits. In the parent return (pid, -1, task_id)\n"
    "once the engine watches the child; None when the pool takes no work.\n"
    "With trees true the child leads a process group of its own; main_thread\n"
    "says the caller is the main thread, whose end the child does not outlive.";

PyObject *
ProcCore_fork_call(ProcCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t timeout_ns;
    int rp[2] = {-1, -1}, trees, main_thread;
    pp_task *t = NULL;
    PyObject *result = NULL;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "fork_call() takes exactly 4 arguments");
        return NULL;
    }
    if (pebble_timeout_ns(args[1], &timeout_ns) < 0 || (trees = PyObject_IsTrue(args[2])) < 0
        || (main_thread = PyObject_IsTrue(args[3])) < 0)
        return NULL;
    if (self->fork_gen != pb_fork_generation)
        Py_RETURN_NONE;
    t = PyMem_RawCalloc(1, sizeof(*t));
    if (t == NULL)
        return PyErr_NoMemory();
    if (pb_pipe(rp) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    t->future = Py_NewRef(args[0]);
    t->timeout_ns = timeout_ns;
    t->state = T_SENT;
    t->delivered = 1;
    pthread_mutex_lock(&self->mutex);
    if (self->state != S_RUNNING || self->finished) {
        pthread_mutex_unlock(&self->mutex);
        result = Py_NewRef(Py_None);
        goto done;
    }
    t->id = self->next_id++;
    self->nforking++; /* the I/O thread waits for this child */
    pthread_mutex_unlock(&self->mutex);

    pid_t me = getpid();
    PyOS_BeforeFork();
    pid_t pid = fork();
    if (pid == 0) {
        if (trees)
            setpgid(0, 0); /* the processes it starts are killed with it */
        PyOS_AfterFork_Child();
        if (trees)
            pb_set_child_subreaper(); /* and their orphans stay below it */
        /* The forking thread may be any of the caller's: only the main
         * one lives as long as the process. */
        if (main_thread)
            pb_set_parent_death_signal(me);
        close(rp[0]);
        result = Py_BuildValue("(iiK)", 0, rp[1], (unsigned long long)t->id);
        rp[1] = -1;
        /* The parent owns the task; this copy is only forgotten. */
        t = NULL;
        rp[0] = -1;
        goto done;
    }
    int err = errno;
    if (pid > 0 && trees)
        setpgid(pid, pid); /* whichever of the two runs first */
    PyOS_AfterFork_Parent();
    close(rp[1]);
    rp[1] = -1;
    pthread_mutex_lock(&self->mutex);
    self->nforking--;
    if (pid < 0) {
        pthread_mutex_unlock(&self->mutex);
        pb_loop_wake(self->loop);
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    t->pid = pid;
    t->data = NULL;
    if (tt_insert(self, t) < 0) {
        /* Nothing can watch it: it must not run. */
        pthread_mutex_unlock(&self->mutex);
        kill(pid, SIGKILL);
        pid_t w;
        do {
            w = waitpid(pid, NULL, 0);
        } while (w < 0 && errno == EINTR);
        pb_loop_wake(self->loop);
        PyErr_NoMemory();
        goto done;
    }
    pb_fd_register(rp[0]);
    t->adopt_fd = rp[0];
    rp[0] = -1;
    /* The I/O thread makes it a worker (adopt_pending()). */
    t->next = NULL;
    if (self->adopt_tail)
        self->adopt_tail->next = t;
    else
        self->adopt_head = t;
    self->adopt_tail = t;
    uint64_t id = t->id;
    t = NULL;
    pthread_mutex_unlock(&self->mutex);
    pb_loop_wake(self->loop);
    /* Before the caller runs another bytecode, as submit() does. */
    pebble_state *st = pebble_state_from_type(Py_TYPE(self));
    PyObject *idobj = PyLong_FromUnsignedLongLong(id);
    if (idobj == NULL || PyObject_SetAttr(args[0], st->str_pebble_id, idobj) < 0) {
        Py_XDECREF(idobj);
        goto done;
    }
    result = Py_BuildValue("(iiO)", (int)pid, -1, idobj);
    Py_DECREF(idobj);
done:
    if (rp[0] >= 0)
        close(rp[0]);
    if (rp[1] >= 0)
        close(rp[1]);
    if (t != NULL)
        task_free(t);
    return result;
}

/* Makes each child forked by fork_call() a worker running its task. I/O
 * thread, mutex held. */
void
adopt_pending(ProcCore *self)
{
    while (self->adopt_head != NULL) {
        pp_proc *p = proc_new(self, PROC_ALIVE);
        if (p == NULL)
            return; /* retried on the next loop turn */
        pp_task *t = self->adopt_head;
        self->adopt_head = t->next;
        if (self->adopt_head == NULL)
            self->adopt_tail = NULL;
        t->next = NULL;
        p->pid = t->pid;
        p->result_fd = t->adopt_fd;
        t->adopt_fd = -1;
        p->ready = 1;
        p->adopted = 1;
        pb_set_nonblock(p->result_fd);
        pb_loop_watch(self->loop, p->result_fd, PB_EV_READ);
        pb_ctl_msg m = {PB_CTL_ADOPT, 0, p->pid, 0, p->gen};
        ctl_post(self, m);
        task_start(self, p, t);
        if (t->cancel_requested || self->state == S_STOPPING || self->state == S_ERROR) {
            /* Cancelled, or the pool stopped, before it was watched. */
            task_finish(self,
                        t,
                        t->cancel_requested      ? OUT_CANCELLED
                        : self->state == S_ERROR ? OUT_BROKEN
                                                 : OUT_STOPPED);
            p->task = NULL;
            proc_kill(self, p);
        }
    }
}
