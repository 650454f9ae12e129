/* procpool.c - the ProcessPool engine's Python type, ProcCore.
 *
 * Three parties share a ProcCore:
 *
 *  - Python threads calling submit()/cancel()/close()/stop(): they append
 *    to the pending queue under the mutex and wake the I/O thread.
 *  - The I/O thread (ioloop.c), a plain pthread that never takes the GIL.
 *    It waits for worker channels, the launcher's control socket, wake-ups
 *    and the nearest deadline; it dispatches tasks (sched.c), reads
 *    results, fires timeouts, kills and replaces workers (lifecycle.c).
 *  - The completer (complete.c), a Python thread inside ProcCore.run(): it
 *    sleeps on a condition variable without the GIL and, woken with a
 *    batch of finished tasks, takes the GIL once to resolve their futures.
 *
 * Workers are started by a launcher process (see launcher.c), so spawning
 * never needs the GIL and never blocks the I/O thread. Every worker has
 * its own task and result pipes: no lock is shared between processes.
 *
 * Lock order: the mutex may be taken with or without the GIL, but the GIL
 * is never requested while the mutex is held.
 */
#include "procpool.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static PyObject *
ProcCore_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {
        "max_workers", "max_tasks", "spare", "initializer", "start_failures", "inproc", NULL};
    int max_workers, spare, has_initializer, start_failures, inproc = 0;
    unsigned long long max_tasks;
    if (!PyArg_ParseTupleAndKeywords(args,
                                     kwargs,
                                     "iKipi|p:ProcCore",
                                     kwlist,
                                     &max_workers,
                                     &max_tasks,
                                     &spare,
                                     &has_initializer,
                                     &start_failures,
                                     &inproc))
        return NULL;
    ProcCore *self = (ProcCore *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->ctl_fd = -1;
    self->relaunch_fd = -1;
    self->owner = getpid();
    self->fork_gen = pb_fork_generation;
    self->max_workers = max_workers;
    self->max_tasks = max_tasks;
    self->spare = spare;
    self->has_initializer = has_initializer;
    self->max_start_failures = start_failures;
    self->inproc = inproc;
    self->next_id = 1;
    if (pb_sync_init(&self->mutex, &self->done_cond) < 0) {
        Py_DECREF(self); /* synced 0: dealloc destroys neither */
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    self->synced = 1;
    self->loop = pb_loop_new();
    if (self->loop == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* The engine was inherited through fork: its threads and workers belong
 * to an ancestor process, and its mutex may be held forever. */
#define PP_FOREIGN(self) ((self)->fork_gen != pb_fork_generation)

static int pp_cancel(ProcCore *self, uint64_t id);

static int
ProcCore_traverse(ProcCore *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    /* Queued futures may refer back to the engine (their cancel hook). In
     * a forked child whose parent's threads held the mutex, nothing is
     * visited: references not reported only keep their objects alive. */
    int rc = 0;
    if (!pb_engine_lock(&self->mutex, self->fork_gen))
        return 0;
    for (pp_task *t = self->pend_head; t && !rc; t = t->next)
        rc = visit(t->future, arg);
    for (pp_task *t = self->done_head; t && !rc; t = t->next)
        rc = visit(t->future, arg);
    for (pp_task *t = self->adopt_head; t && !rc; t = t->next)
        rc = visit(t->future, arg);
    for (int i = 0; i < self->nprocs && !rc; i++) {
        if (self->procs[i].task)
            rc = visit(self->procs[i].task->future, arg);
        for (int j = 0; j < self->procs[i].nqueued && !rc; j++)
            rc = visit(self->procs[i].queued[j]->future, arg);
    }
    pthread_mutex_unlock(&self->mutex);
    return rc;
}

static void
ProcCore_drop_tasks(ProcCore *self)
{
    pp_task *t;
    while ((t = self->pend_head) != NULL) {
        pend_unlink(self, t);
        task_free(t);
    }
    while ((t = self->done_head) != NULL) {
        self->done_head = t->next;
        task_free(t);
    }
    while ((t = self->adopt_head) != NULL) {
        self->adopt_head = t->next;
        task_free(t);
    }
    self->adopt_tail = NULL;
    self->done_tail = NULL;
    self->started_head = self->started_tail = NULL;
}

static int
ProcCore_clear(ProcCore *self)
{
    if (!self->io_started || self->finished)
        ProcCore_drop_tasks(self);
    return 0;
}

static void
ProcCore_dealloc(ProcCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    /* run() holds a reference until the I/O thread has been joined. In a
     * forked child, an engine whose mutex a parent's thread held at the
     * fork may be torn: it is leaked rather than walked. */
    int ours = !PP_FOREIGN(self);
    if (!ours && pthread_mutex_trylock(&self->mutex) != 0) {
        tp->tp_free((PyObject *)self);
        Py_DECREF(tp);
        return;
    }
    ProcCore_drop_tasks(self);
    /* In a forked child the descriptors were closed at fork and their
     * numbers may belong to other files by now. */
    for (int i = 0; i < self->nprocs; i++) {
        if (ours) {
            proc_close_channels(self, &self->procs[i]);
            pb_fd_close(self->procs[i].pidfd);
        }
        free(self->procs[i].stage);
        free(self->procs[i].rd.data);
    }
    free(self->procs);
    free(self->table);
    free(self->ctlq);
    free(self->error_data);
    if (ours)
        pb_fd_close(self->ctl_fd);
    pb_loop_free(self->loop, ours);
    /* A child's copy may have waiters that do not exist: never destroyed. */
    if (ours && self->synced) {
        pthread_cond_destroy(&self->done_cond);
        pthread_mutex_destroy(&self->mutex);
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

PyDoc_STRVAR(ProcCore_submit_doc,
"submit($self, future, payload, timeout, buffers=None, /)\n--\n\n"
"Queue a pickled task for future; timeout is None or seconds; buffers are\n"
"the pickle's out-of-band buffers, written to the worker as they are.\n"
"Return the task id, or None when the pool no longer accepts work.");

/* Exports the out-of-band buffers of t's pickle and lays out its frame.
 * 0 or -1 with an exception set (BufferError for non-contiguous ones). */
static int
task_take_buffers(pp_task *t, PyObject *buffers)
{
    PyObject *seq = PySequence_Fast(buffers, "buffers must be a sequence");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n == 0) {
        Py_DECREF(seq);
        return 0;
    }
    t->oob = PyMem_RawCalloc((size_t)n, sizeof(Py_buffer));
    t->lens = PyMem_RawCalloc((size_t)n + 1, sizeof(uint64_t));
    if (t->oob == NULL || t->lens == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    t->lens[0] = (uint64_t)PyBytes_GET_SIZE(t->payload);
    t->frame_len = (uint64_t)(n + 1) * sizeof(uint64_t) + t->lens[0];
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &t->oob[i], PyBUF_SIMPLE) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        t->noob++;
        t->lens[i + 1] = (uint64_t)t->oob[i].len;
        t->frame_len += t->lens[i + 1];
    }
    Py_DECREF(seq);
    return 0;
}

static PyObject *
ProcCore_submit(ProcCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t timeout_ns;
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "submit() takes 3 or 4 arguments");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "payload must be bytes");
        return NULL;
    }
    if (pebble_timeout_ns(args[2], &timeout_ns) < 0)
        return NULL;
    pp_task *t = PyMem_RawCalloc(1, sizeof(*t));
    if (t == NULL)
        return PyErr_NoMemory();
    t->future = Py_NewRef(args[0]);
    t->payload = Py_NewRef(args[1]);
    t->timeout_ns = timeout_ns;
    t->state = T_PENDING;
    t->frame_len = (uint64_t)PyBytes_GET_SIZE(args[1]);
    if (nargs == 4 && args[3] != Py_None && task_take_buffers(t, args[3]) < 0) {
        task_free(t);
        return NULL;
    }

    if (PP_FOREIGN(self)) {
        task_free(t);
        Py_RETURN_NONE; /* the parent's pool: refused here */
    }
    pthread_mutex_lock(&self->mutex);
    if (self->state != S_RUNNING) {
        pthread_mutex_unlock(&self->mutex);
        task_free(t);
        Py_RETURN_NONE; /* refused: the caller says why */
    }
    t->id = self->next_id++;
    if (tt_insert(self, t) < 0) {
        pthread_mutex_unlock(&self->mutex);
        task_free(t);
        return PyErr_NoMemory();
    }
    int wake = pend_push_back(self, t);
    uint64_t id = t->id;
    pthread_mutex_unlock(&self->mutex);
    if (wake)
        pb_loop_wake(self->loop);
    /* The future learns its task's id before the caller runs another
     * bytecode: a Ctrl-C there leaves a task that can still be cancelled. */
    pebble_state *st = pebble_state_from_type(Py_TYPE(self));
    PyObject *idobj = PyLong_FromUnsignedLongLong(id);
    if (idobj == NULL || PyObject_SetAttr(args[0], st->str_pebble_id, idobj) < 0) {
        pp_cancel(self, id);
        Py_XDECREF(idobj);
        return NULL;
    }
    return idobj;
}

PyDoc_STRVAR(ProcCore_cancel_doc,
"cancel($self, task_id, /)\n--\n\n"
"Drop a pending task or kill the worker running it. The future itself is\n"
"cancelled by the caller. Return True if the task was still known.");

static PyObject *
ProcCore_cancel(ProcCore *self, PyObject *arg)
{
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (id == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (PP_FOREIGN(self))
        Py_RETURN_FALSE;
    return PyBool_FromLong(pp_cancel(self, id));
}

/* Drops task id if pending, or has its worker killed if it was sent.
 * Returns 1 if the task was still known. Never fails. */
static int
pp_cancel(ProcCore *self, uint64_t id)
{
    int found = 0, wake = 0;
    pthread_mutex_lock(&self->mutex);
    pp_task *t = tt_find(self, id);
    if (t != NULL) {
        found = 1;
        if (t->state == T_PENDING) {
            task_finish(self, t, OUT_CANCELLED);
            pthread_cond_signal(&self->done_cond);
        }
        else if (t->state == T_SENT && !t->cancel_requested) {
            t->cancel_requested = 1;
            self->ncancel++;
            wake = 1;
        }
    }
    pthread_mutex_unlock(&self->mutex);
    if (wake)
        pb_loop_wake(self->loop);
    return found;
}

static PyObject *
set_state(ProcCore *self, int state)
{
    if (PP_FOREIGN(self))
        Py_RETURN_NONE;
    pthread_mutex_lock(&self->mutex);
    if (self->state == S_RUNNING || (state == S_STOPPING && self->state == S_CLOSING))
        self->state = state;
    /* Without an I/O thread nobody else will drop the queue. */
    if (!self->io_started && state == S_STOPPING)
        while (self->pend_head)
            task_finish(self, self->pend_head, OUT_STOPPED);
    pthread_mutex_unlock(&self->mutex);
    pb_loop_wake(self->loop);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(ProcCore_close_doc,
"close($self, /)\n--\n\nRefuse new tasks; workers exit once the queue is drained.");

static PyObject *
ProcCore_close(ProcCore *self, PyObject *Py_UNUSED(ignored))
{
    return set_state(self, S_CLOSING);
}

PyDoc_STRVAR(ProcCore_stop_doc,
"stop($self, /)\n--\n\nCancel queued and running tasks and kill the workers.");

static PyObject *
ProcCore_stop(ProcCore *self, PyObject *Py_UNUSED(ignored))
{
    return set_state(self, S_STOPPING);
}

PyDoc_STRVAR(ProcCore_run_doc,
"run($self, ctl_fd, resolve, relaunch=None, trees=False, /)\n--\n\n"
"Drive the pool: start the I/O thread on the launcher control socket\n"
"ctl_fd (owned from now on) and resolve futures in the calling thread until\n"
"the pool has finished. resolve(future, outcome, timeout, exitcode, pid)\n"
"handles the outcomes that carry no payload. relaunch(), if given, starts\n"
"a launcher process in place of one that died and returns its control\n"
"socket fd (owned by the pool from then on), or -1; the workers of the\n"
"dead one are then signalled from here, with their process trees if\n"
"trees is true.");

static PyObject *
ProcCore_run(ProcCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    pebble_state *st = pebble_state_from_type(Py_TYPE(self));
    completer_ctx cx = {NULL, NULL, st->Block_Type, NULL};
    PyObject *futures_mod = NULL, *result = NULL;
    if (nargs < 2 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "run() takes 2 to 4 arguments");
        return NULL;
    }
    int trees = nargs == 4 ? PyObject_IsTrue(args[3]) : 0;
    if (trees < 0)
        return NULL;
    if (nargs >= 3 && args[2] != Py_None) {
        if (!PyCallable_Check(args[2])) {
            PyErr_SetString(PyExc_TypeError, "relaunch must be callable");
            return NULL;
        }
        cx.relaunch = args[2];
    }
    int ctl_fd = PyLong_AsInt_compat(args[0]);
    if (ctl_fd == -1 && PyErr_Occurred())
        return NULL;
    if (self->io_started || PP_FOREIGN(self)) {
        PyErr_SetString(PyExc_RuntimeError, "run() called twice or in a forked child");
        return NULL;
    }
    futures_mod = PyImport_ImportModule("concurrent.futures");
    if (futures_mod == NULL)
        return NULL;
    cx.invalid_state = PyObject_GetAttrString(futures_mod, "InvalidStateError");
    Py_DECREF(futures_mod);
    if (cx.invalid_state == NULL)
        return NULL;
    cx.resolve = args[1];

    Py_INCREF(self);
    pthread_mutex_lock(&self->mutex);
    self->ctl_fd = ctl_fd;
    self->relaunchable = cx.relaunch != NULL;
    self->trees = trees;
    if (ctl_fd >= 0) {
        pb_fd_register(ctl_fd);
        pb_set_nonblock(ctl_fd);
    }
    int rc = pthread_create(&self->io_thread, NULL, io_main, self);
    if (rc == 0)
        self->io_started = 1;
    pthread_mutex_unlock(&self->mutex);
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        goto error;
    }

    pp_complete(self, st, &cx);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(self->io_thread, NULL);
    Py_END_ALLOW_THREADS
    /* EOF tells the launcher to exit. */
    pb_fd_close(self->ctl_fd);
    self->ctl_fd = -1;
    if (self->relaunch_fd >= 0) /* started as the pool finished */
        close(self->relaunch_fd);
    self->relaunch_fd = -1;
    result = Py_NewRef(Py_None);
error:
    Py_DECREF(self);
    Py_XDECREF(cx.invalid_state);
    return result;
}

static PyObject *
ProcCore_get_pids(ProcCore *self, void *Py_UNUSED(closure))
{
    PyObject *list = PyList_New(0);
    if (list == NULL || PP_FOREIGN(self))
        return list;
    pthread_mutex_lock(&self->mutex);
    int n = self->nprocs;
    pid_t pids[n > 0 ? n : 1];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (self->procs[i].state == PROC_ALIVE)
            pids[k++] = self->procs[i].pid;
    pthread_mutex_unlock(&self->mutex);
    for (int i = 0; i < k; i++) {
        PyObject *v = PyLong_FromLong(pids[i]);
        if (v == NULL || PyList_Append(list, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(v);
    }
    return list;
}

static PyObject *
ProcCore_get_error(ProcCore *self, void *Py_UNUSED(closure))
{
    PyObject *r;
    if (PP_FOREIGN(self))
        Py_RETURN_NONE;
    pthread_mutex_lock(&self->mutex);
    if (self->error_what == FAIL_NONE)
        r = Py_NewRef(Py_None);
    else
        r = Py_BuildValue("(iiy#)",
                          self->error_what,
                          self->error_errno,
                          self->error_data ? self->error_data : "",
                          (Py_ssize_t)(self->error_data ? self->error_len : 0));
    pthread_mutex_unlock(&self->mutex);
    return r;
}

static PyObject *
ProcCore_get_pending(ProcCore *self, void *Py_UNUSED(closure))
{
    if (PP_FOREIGN(self))
        return PyLong_FromLong(0);
    pthread_mutex_lock(&self->mutex);
    Py_ssize_t n = self->npending;
    pthread_mutex_unlock(&self->mutex);
    return PyLong_FromSsize_t(n);
}

static PyObject *
ProcCore_get_idle(ProcCore *self, void *Py_UNUSED(closure))
{
    if (PP_FOREIGN(self))
        return PyLong_FromLong(0);
    int n = 0;
    pthread_mutex_lock(&self->mutex);
    for (int i = 0; i < self->nprocs; i++) {
        pp_proc *p = &self->procs[i];
        n += p->state == PROC_ALIVE && p->ready && p->task == NULL && p->nqueued == 0;
    }
    pthread_mutex_unlock(&self->mutex);
    return PyLong_FromLong(n);
}

static PyObject *
ProcCore_get_finished(ProcCore *self, void *Py_UNUSED(closure))
{
    if (PP_FOREIGN(self))
        Py_RETURN_TRUE;
    pthread_mutex_lock(&self->mutex);
    int f = self->finished;
    pthread_mutex_unlock(&self->mutex);
    return PyBool_FromLong(f);
}

static PyMethodDef ProcCore_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))ProcCore_submit, METH_FASTCALL, ProcCore_submit_doc},
    {"cancel", (PyCFunction)ProcCore_cancel, METH_O, ProcCore_cancel_doc},
    {"fork_call",
     (PyCFunction)(void (*)(void))ProcCore_fork_call,
     METH_FASTCALL,
     ProcCore_fork_call_doc},
    {"close", (PyCFunction)ProcCore_close, METH_NOARGS, ProcCore_close_doc},
    {"stop", (PyCFunction)ProcCore_stop, METH_NOARGS, ProcCore_stop_doc},
    {"run", (PyCFunction)(void (*)(void))ProcCore_run, METH_FASTCALL, ProcCore_run_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ProcCore_getset[] = {
    {"pids", (getter)ProcCore_get_pids, NULL, "Process ids of the live workers.", NULL},
    {"pending", (getter)ProcCore_get_pending, NULL, "Number of tasks not yet dispatched.", NULL},
    {"idle", (getter)ProcCore_get_idle, NULL, "Number of ready workers with no task.", NULL},
    {"error",
     (getter)ProcCore_get_error,
     NULL,
     "None, or (FAIL_* what, code, payload) once the pool broke.",
     NULL},
    {"finished", (getter)ProcCore_get_finished, NULL, "True once the I/O thread has left.", NULL},
    {NULL},
};

PyDoc_STRVAR(ProcCore_doc,
"ProcCore(max_workers, max_tasks, spare, initializer, start_failures)\n--\n\n"
"Task queue, I/O thread and completion loop of a process pool. max_tasks\n"
"is 0 for no limit. With spare >= 0 the pool is elastic: it keeps one\n"
"worker per task in flight plus spare idle ones, up to max_workers.\n"
"initializer tells whether workers run one: a worker dying before it is\n"
"ready then breaks the pool; otherwise start_failures workers in a row\n"
"that cannot start or die before ready do.");

static PyType_Slot ProcCore_slots[] = {
    {Py_tp_new, ProcCore_new},
    {Py_tp_dealloc, ProcCore_dealloc},
    {Py_tp_traverse, ProcCore_traverse},
    {Py_tp_clear, ProcCore_clear},
    {Py_tp_methods, ProcCore_methods},
    {Py_tp_getset, ProcCore_getset},
    {Py_tp_doc, (void *)ProcCore_doc},
    {0, NULL},
};

static PyType_Spec ProcCore_spec = {
    .name = "pebble._pebble.ProcCore",
    .basicsize = sizeof(ProcCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = ProcCore_slots,
};

int
pebble_proccore_init(PyObject *module, pebble_state *st)
{
    st->ProcCore_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ProcCore_spec, NULL);
    if (st->ProcCore_Type == NULL)
        return -1;
    if (PyModule_AddType(module, st->ProcCore_Type) < 0)
        return -1;
#define ADD(name, value)                                      \
    do {                                                      \
        if (PyModule_AddIntConstant(module, name, value) < 0) \
            return -1;                                        \
    } while (0)
    ADD("OUT_RESULT", OUT_RESULT);
    ADD("OUT_ERROR", OUT_ERROR);
    ADD("OUT_TIMEOUT", OUT_TIMEOUT);
    ADD("OUT_EXPIRED", OUT_EXPIRED);
    ADD("OUT_CANCELLED", OUT_CANCELLED);
    ADD("OUT_STOPPED", OUT_STOPPED);
    ADD("OUT_BROKEN", OUT_BROKEN);
    ADD("OUT_NOMEM", OUT_NOMEM);
    ADD("OUT_CORRUPT", OUT_CORRUPT);
    ADD("FAIL_INITIALIZER", FAIL_INITIALIZER);
    ADD("FAIL_STARTUP", FAIL_STARTUP);
    ADD("FAIL_SPAWN", FAIL_SPAWN);
    ADD("FAIL_LAUNCHER", FAIL_LAUNCHER);
    ADD("EXIT_UNKNOWN", PB_EXIT_UNKNOWN);
#undef ADD
    return 0;
}
