/* threadpool.c - the ThreadPool engine: a task queue and a worker loop in C.
 *
 * Workers are Python threads that call ThreadCore.work(). A worker takes
 * tasks without releasing the GIL while the queue has any; once it is
 * empty it releases the GIL and sleeps on a condition variable that only
 * put(), close() and stop() signal.
 *
 * Lock order: the queue mutex is taken with or without the GIL, but the
 * GIL is never requested while the mutex is held.
 */
#include "pebble.h"

#include <errno.h>

/* One queued call. The references are owned by the queue. */
typedef struct {
    PyObject *future; /* concurrent.futures.Future */
    PyObject *fn;     /* the callable */
    PyObject *args;   /* tuple */
    PyObject *kwargs; /* dict or NULL */
} tc_task;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mutex;
    pthread_cond_t cond;    /* signalled on put(), close(), stop() */
    tc_task *ring;          /* circular buffer of queued tasks */
    Py_ssize_t cap;         /* slots in ring (a power of two) */
    Py_ssize_t head;        /* index of the oldest task */
    Py_ssize_t len;         /* tasks queued */
    Py_ssize_t nwaiting;    /* workers asleep on cond */
    Py_ssize_t max_idle;    /* workers idle beyond this many leave (-1: none leave) */
    int closed;             /* no more put(); workers leave once the queue drains */
    int stopped;            /* workers leave after their current task */
    unsigned long fork_gen; /* pb_fork_generation when made */
    int synced;             /* mutex and cond initialised */
} ThreadCore;

/* Returns 0, or -1 with MemoryError set. Called with the mutex held. */
static int
tc_grow(ThreadCore *self)
{
    Py_ssize_t newcap = self->cap ? self->cap * 2 : 64;
    tc_task *ring = PyMem_RawMalloc((size_t)newcap * sizeof(tc_task));
    if (ring == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->len; i++)
        ring[i] = self->ring[(self->head + i) & (self->cap - 1)];
    PyMem_RawFree(self->ring);
    self->ring = ring;
    self->cap = newcap;
    self->head = 0;
    return 0;
}

/* Pops the oldest task into *out. Returns 1 if one was there. Mutex held. */
static inline int
tc_pop(ThreadCore *self, tc_task *out)
{
    if (self->len == 0)
        return 0;
    *out = self->ring[self->head];
    self->head = (self->head + 1) & (self->cap - 1);
    self->len--;
    return 1;
}

/* Locks the mutex, GIL held. An engine inherited through fork is adopted
 * first: the workers asleep in it at the fork do not exist in the child.
 * Returns 1 with the mutex held, or 0 if the fork caught it held, in which
 * case the engine's state may be torn and is left alone. */
static int
tc_try_lock(ThreadCore *self)
{
    if (PEBBLE_LIKELY(self->fork_gen == pb_fork_generation)) {
        pthread_mutex_lock(&self->mutex);
        return 1;
    }
    if (pthread_mutex_trylock(&self->mutex) != 0)
        return 0;
    pthread_cond_init(&self->cond, NULL);
    self->nwaiting = 0;
    self->fork_gen = pb_fork_generation;
    return 1;
}

/* As tc_try_lock. 0, or -1 with RuntimeError set. */
static int
tc_lock(ThreadCore *self)
{
    if (tc_try_lock(self))
        return 0;
    PyErr_SetString(
        PyExc_RuntimeError,
        "this thread pool was busy when the process forked and cannot be used in the child");
    return -1;
}

static PyObject *
ThreadCore_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"max_idle", NULL};
    Py_ssize_t max_idle = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|n:ThreadCore", kwlist, &max_idle))
        return NULL;
    ThreadCore *self = (ThreadCore *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    if (pb_sync_init(&self->mutex, &self->cond) < 0) {
        Py_DECREF(self); /* synced 0: dealloc destroys neither */
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    self->synced = 1;
    self->max_idle = max_idle;
    self->fork_gen = pb_fork_generation;
    return (PyObject *)self;
}

static int
ThreadCore_traverse(ThreadCore *self, visitproc visit, void *arg)
{
    int rc = 0;
    Py_VISIT(Py_TYPE(self));
    /* Workers pop without the GIL: the ring is read under the mutex. In a
     * forked child whose parent held it, nothing is visited: references
     * not reported only keep their objects alive. */
    if (!tc_try_lock(self))
        return 0;
    for (Py_ssize_t i = 0; i < self->len && rc == 0; i++) {
        tc_task *t = &self->ring[(self->head + i) & (self->cap - 1)];
        if ((rc = visit(t->future, arg)) == 0 && (rc = visit(t->fn, arg)) == 0
            && (rc = visit(t->args, arg)) == 0 && t->kwargs != NULL)
            rc = visit(t->kwargs, arg);
    }
    pthread_mutex_unlock(&self->mutex);
    return rc;
}

static int
ThreadCore_clear(ThreadCore *self)
{
    /* Only reached with no worker inside work(): they hold a reference.
     * Dropping a reference may run Python code, so not under the mutex. */
    for (;;) {
        tc_task t;
        if (!tc_try_lock(self))
            break;
        int got = tc_pop(self, &t);
        pthread_mutex_unlock(&self->mutex);
        if (!got)
            break;
        Py_XDECREF(t.future);
        Py_XDECREF(t.fn);
        Py_XDECREF(t.args);
        Py_XDECREF(t.kwargs);
    }
    return 0;
}

static void
ThreadCore_dealloc(ThreadCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ThreadCore_clear(self);
    /* An engine that a fork caught mid-operation is leaked, not torn down. */
    if (self->fork_gen == pb_fork_generation) {
        PyMem_RawFree(self->ring);
        if (self->synced) {
            pthread_cond_destroy(&self->cond);
            pthread_mutex_destroy(&self->mutex);
        }
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

PyDoc_STRVAR(ThreadCore_put_doc,
"put($self, future, function, args, kwargs, /)\n--\n\n"
"Queue a call. Return True if an idle worker will take it, False if every\n"
"worker is busy. Raise RuntimeError once the engine is closed.");

static PyObject *
ThreadCore_put(ThreadCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "put() takes exactly 4 arguments");
        return NULL;
    }
    if (!PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "args must be a tuple");
        return NULL;
    }
    if (args[3] != Py_None && !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "kwargs must be a dict or None");
        return NULL;
    }
    int covered;
    if (tc_lock(self) < 0)
        return NULL;
    if (self->closed || self->stopped) {
        pthread_mutex_unlock(&self->mutex);
        PyErr_SetString(PyExc_RuntimeError, "The Pool is not active");
        return NULL;
    }
    if (self->len == self->cap && tc_grow(self) < 0) {
        pthread_mutex_unlock(&self->mutex);
        return NULL;
    }
    tc_task *t = &self->ring[(self->head + self->len) & (self->cap - 1)];
    t->future = Py_NewRef(args[0]);
    t->fn = Py_NewRef(args[1]);
    t->args = Py_NewRef(args[2]);
    t->kwargs = (args[3] == Py_None || PyDict_GET_SIZE(args[3]) == 0) ? NULL : Py_NewRef(args[3]);
    self->len++;
    covered = self->len <= self->nwaiting;
    if (self->nwaiting > 0)
        pthread_cond_signal(&self->cond);
    pthread_mutex_unlock(&self->mutex);
    return PyBool_FromLong(covered);
}

/* Gives a call's exception its traceback text (pebble.errors.attach_traceback),
 * as Pebble's thread errors have it. Best effort: never fails. GIL held. */
static void
tc_attach_traceback(PyObject *exc)
{
    PyObject *errors = PyImport_ImportModule("pebble.errors");
    PyObject *r = NULL;
    if (errors != NULL)
        r = PyObject_CallMethod(errors, "attach_traceback", "O", exc);
    if (r == NULL)
        PyErr_Clear();
    Py_XDECREF(r);
    Py_XDECREF(errors);
}

/* Runs one task and drops its references. Never fails: errors raised by
 * the future's own methods are reported as unraisable. GIL held. */
static void
tc_run(pebble_state *st, tc_task *t)
{
    PyObject *ok = PyObject_CallMethodNoArgs(t->future, st->str_set_running);
    if (ok == NULL) {
        PyErr_WriteUnraisable(t->future);
        goto done;
    }
    int run = PyObject_IsTrue(ok);
    Py_DECREF(ok);
    if (run <= 0) {
        if (run < 0)
            PyErr_WriteUnraisable(t->future);
        goto done;
    }
    PyObject *value = PyObject_Call(t->fn, t->args, t->kwargs);
    PyObject *r;
    if (value != NULL) {
        r = PyObject_CallMethodOneArg(t->future, st->str_set_result, value);
        Py_DECREF(value);
    }
    else {
        PyObject *exc = PyErr_GetRaisedException_compat();
        tc_attach_traceback(exc);
        r = PyObject_CallMethodOneArg(t->future, st->str_set_exception, exc);
        Py_DECREF(exc);
    }
    if (r == NULL)
        PyErr_WriteUnraisable(t->future);
    Py_XDECREF(r);
done:
    Py_DECREF(t->future);
    Py_DECREF(t->fn);
    Py_DECREF(t->args);
    Py_XDECREF(t->kwargs);
}

PyDoc_STRVAR(ThreadCore_work_doc,
"work($self, max_tasks=0, /)\n--\n\n"
"Run queued calls in the calling thread until the engine is closed and\n"
"drained or stopped (return False), max_tasks calls have run (return True),\n"
"or, with max_idle set, enough other workers are idle (return None).");

static PyObject *
ThreadCore_work(ThreadCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    pebble_state *st = pebble_state_from_type(Py_TYPE(self));
    Py_ssize_t max_tasks = 0, done = 0;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "work() takes at most 1 argument");
        return NULL;
    }
    if (nargs == 1) {
        max_tasks = PyLong_AsSsize_t(args[0]);
        if (max_tasks == -1 && PyErr_Occurred())
            return NULL;
    }
    /* The engine must outlive the loop even if the pool drops it. */
    Py_INCREF(self);
    PyObject *result = NULL;
    for (;;) {
        tc_task t;
        int got, idle_exit = 0;

        if (max_tasks > 0 && done >= max_tasks) {
            result = Py_True;
            break;
        }
        if (tc_lock(self) < 0)
            break;
        got = self->stopped ? 0 : tc_pop(self, &t);
        if (!got && !self->closed && !self->stopped) {
            /* Sleep without the GIL until there is work. */
            pthread_mutex_unlock(&self->mutex);
            Py_BEGIN_ALLOW_THREADS
            pthread_mutex_lock(&self->mutex);
            while (self->len == 0 && !self->closed && !self->stopped) {
                if (self->max_idle >= 0 && self->nwaiting >= self->max_idle) {
                    idle_exit = 1;
                    break;
                }
                self->nwaiting++;
                pthread_cond_wait(&self->cond, &self->mutex);
                self->nwaiting--;
            }
            got = self->stopped ? 0 : tc_pop(self, &t);
            pthread_mutex_unlock(&self->mutex);
            Py_END_ALLOW_THREADS
        }
        else {
            pthread_mutex_unlock(&self->mutex);
        }
        if (!got) {
            result = idle_exit ? Py_None : Py_False;
            break;
        }
        tc_run(st, &t);
        done++;
    }
    Py_DECREF(self);
    return Py_XNewRef(result);
}

/* Moves every queued task's future into a new list. GIL held. */
static PyObject *
tc_drain(ThreadCore *self)
{
    PyObject *futures = PyList_New(0);
    if (futures == NULL)
        return NULL;
    for (;;) {
        tc_task t;
        if (tc_lock(self) < 0) {
            Py_DECREF(futures);
            return NULL;
        }
        int got = tc_pop(self, &t);
        pthread_mutex_unlock(&self->mutex);
        if (!got)
            break;
        int rc = PyList_Append(futures, t.future);
        Py_DECREF(t.future);
        Py_DECREF(t.fn);
        Py_DECREF(t.args);
        Py_XDECREF(t.kwargs);
        if (rc < 0) {
            Py_DECREF(futures);
            return NULL;
        }
    }
    return futures;
}

PyDoc_STRVAR(ThreadCore_close_doc,
"close($self, /)\n--\n\n"
"Refuse new calls; workers leave once the queue is empty.");

static PyObject *
ThreadCore_close(ThreadCore *self, PyObject *Py_UNUSED(ignored))
{
    if (tc_lock(self) < 0)
        return NULL;
    self->closed = 1;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->mutex);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(ThreadCore_stop_doc,
"stop($self, /)\n--\n\n"
"Refuse new calls and drop the queued ones; workers leave after their\n"
"current call. Return the futures of the dropped calls.");

static PyObject *
ThreadCore_stop(ThreadCore *self, PyObject *Py_UNUSED(ignored))
{
    if (tc_lock(self) < 0)
        return NULL;
    self->stopped = 1;
    self->closed = 1;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->mutex);
    return tc_drain(self);
}

PyDoc_STRVAR(ThreadCore_drain_doc,
"drain($self, /)\n--\n\n"
"Remove every queued call and return their futures.");

static PyObject *
ThreadCore_drain(ThreadCore *self, PyObject *Py_UNUSED(ignored))
{
    return tc_drain(self);
}

static PyObject *
ThreadCore_get_pending(ThreadCore *self, void *Py_UNUSED(closure))
{
    if (tc_lock(self) < 0)
        return NULL;
    Py_ssize_t n = self->len;
    pthread_mutex_unlock(&self->mutex);
    return PyLong_FromSsize_t(n);
}

static PyObject *
ThreadCore_get_idle(ThreadCore *self, void *Py_UNUSED(closure))
{
    if (tc_lock(self) < 0)
        return NULL;
    Py_ssize_t n = self->nwaiting;
    pthread_mutex_unlock(&self->mutex);
    return PyLong_FromSsize_t(n);
}

static PyMethodDef ThreadCore_methods[] = {
    {"put", (PyCFunction)(void (*)(void))ThreadCore_put, METH_FASTCALL, ThreadCore_put_doc},
    {"work", (PyCFunction)(void (*)(void))ThreadCore_work, METH_FASTCALL, ThreadCore_work_doc},
    {"close", (PyCFunction)ThreadCore_close, METH_NOARGS, ThreadCore_close_doc},
    {"stop", (PyCFunction)ThreadCore_stop, METH_NOARGS, ThreadCore_stop_doc},
    {"drain", (PyCFunction)ThreadCore_drain, METH_NOARGS, ThreadCore_drain_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ThreadCore_getset[] = {
    {"pending", (getter)ThreadCore_get_pending, NULL, "Number of queued calls.", NULL},
    {"idle", (getter)ThreadCore_get_idle, NULL, "Number of workers waiting for work.", NULL},
    {NULL},
};

PyDoc_STRVAR(ThreadCore_doc,
"ThreadCore(max_idle=-1)\n--\n\n"
"Task queue and worker loop of a thread pool. With max_idle >= 0, a worker\n"
"that would wait while max_idle others already wait leaves instead.");

static PyType_Slot ThreadCore_slots[] = {
    {Py_tp_new, ThreadCore_new},
    {Py_tp_dealloc, ThreadCore_dealloc},
    {Py_tp_traverse, ThreadCore_traverse},
    {Py_tp_clear, ThreadCore_clear},
    {Py_tp_methods, ThreadCore_methods},
    {Py_tp_getset, ThreadCore_getset},
    {Py_tp_doc, (void *)ThreadCore_doc},
    {0, NULL},
};

static PyType_Spec ThreadCore_spec = {
    .name = "pebble._pebble.ThreadCore",
    .basicsize = sizeof(ThreadCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = ThreadCore_slots,
};

int
pebble_threadcore_init(PyObject *module, pebble_state *st)
{
    st->ThreadCore_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ThreadCore_spec, NULL);
    if (st->ThreadCore_Type == NULL)
        return -1;
    return PyModule_AddType(module, st->ThreadCore_Type);
}
