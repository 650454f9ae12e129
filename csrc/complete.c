/* complete.c - the completer: results become futures' outcomes.
 *
 * The completer is the Python thread inside ProcCore.run(). It sleeps on
 * the pool's condition variable without the GIL and, woken with a batch of
 * finished tasks, takes the GIL once to unpickle their results and
 * resolve all their futures.
 */
#include "procpool.h"

#include <string.h>
#include <unistd.h>

/* Builds the Python value of a RESULT/ERROR payload. New reference, or
 * NULL with an exception set. */
static PyObject *
task_loads(pebble_state *st, PyTypeObject *block_type, pp_task *t)
{
    PyObject *block = NULL, *view = NULL, *buffers = NULL, *value = NULL;
    pb_span *spans = NULL;
    if (t->nbufs == 0) {
        view = block_view(block_type, t, &block, 0, t->len);
        if (view != NULL)
            value = PyObject_CallOneArg(st->pickle_loads, view);
        goto done;
    }
    size_t nspans = (size_t)t->nbufs + 1;
    spans = PyMem_Malloc(nspans * sizeof(pb_span));
    if (spans == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (pb_frame_split(t->data, t->len, t->nbufs, spans) < 0)
        goto corrupt;
    buffers = PyList_New(0);
    if (buffers == NULL)
        goto done;
    for (size_t i = 1; i < nspans; i++) {
        PyObject *b = block_view(block_type, t, &block, spans[i].off, spans[i].len);
        if (b == NULL || PyList_Append(buffers, b) < 0) {
            Py_XDECREF(b);
            goto done;
        }
        Py_DECREF(b);
    }
    view = block_view(block_type, t, &block, spans[0].off, spans[0].len);
    if (view == NULL)
        goto done;
    PyObject *args = PyTuple_Pack(1, view);
    PyObject *kwargs = Py_BuildValue("{sO}", "buffers", buffers);
    if (args != NULL && kwargs != NULL)
        value = PyObject_Call(st->pickle_loads, args, kwargs);
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    goto done;
corrupt:
    PyErr_SetString(PyExc_ValueError, "corrupt result frame");
done:
    PyMem_Free(spans);
    Py_XDECREF(view);
    Py_XDECREF(buffers);
    Py_XDECREF(block);
    return value;
}

/* Resolves t's future. Never fails: errors are reported as unraisable. */
static void
task_resolve(pebble_state *st, completer_ctx *cx, pp_task *t)
{
    PyObject *r;
    if (t->outcome == OUT_RESULT || t->outcome == OUT_ERROR) {
        PyObject *value = task_loads(st, cx->block_type, t);
        if (value == NULL) {
            /* The parent could not load it: a BrokenProcessPool kind of
             * error with that one as its cause (pebble.errors). */
            value = PyErr_GetRaisedException_compat();
            PyObject *errors = PyImport_ImportModule("pebble.errors");
            PyObject *wrapped =
                errors == NULL
                    ? NULL
                    : PyObject_CallMethod(
                        errors, "outcome_not_rebuilt", "Oi", value, t->outcome == OUT_RESULT);
            Py_XDECREF(errors);
            if (wrapped != NULL)
                Py_SETREF(value, wrapped);
            else
                PyErr_Clear();
            r = PyObject_CallMethodOneArg(t->future, st->str_set_exception, value);
        }
        else if (t->outcome == OUT_RESULT) {
            r = PyObject_CallMethodOneArg(t->future, st->str_set_result, value);
        }
        else {
            r = PyObject_CallMethodOneArg(t->future, st->str_set_exception, value);
        }
        Py_DECREF(value);
    }
    else {
        r = PyObject_CallFunction(cx->resolve,
                                  "OidiiK",
                                  t->future,
                                  t->outcome,
                                  t->timeout_ns >= 0 ? (double)t->timeout_ns / 1e9 : -1.0,
                                  t->exitcode,
                                  (int)t->pid,
                                  (unsigned long long)t->len);
    }
    if (r == NULL) {
        if (PyErr_ExceptionMatches(cx->invalid_state))
            PyErr_Clear(); /* cancelled meanwhile */
        else
            PyErr_WriteUnraisable(t->future);
    }
    Py_XDECREF(r);
}

/* The launcher process died: start another (GIL held) and hand its
 * control socket to the I/O thread, or tell it none could be started. */
static void
completer_relaunch(ProcCore *self, completer_ctx *cx)
{
    int fd = -1;
    PyObject *r = PyObject_CallNoArgs(cx->relaunch);
    if (r != NULL) {
        fd = PyLong_AsInt_compat(r);
        Py_DECREF(r);
    }
    if (fd < 0) {
        if (PyErr_Occurred())
            PyErr_WriteUnraisable(cx->relaunch);
        fd = -1;
    }
    pthread_mutex_lock(&self->mutex);
    if (self->finished && fd >= 0) {
        close(fd); /* EOF: the new launcher exits */
        fd = -1;
    }
    self->relaunch_fd = fd;
    self->relaunch = fd >= 0 ? RELAUNCH_READY : RELAUNCH_FAILED;
    pthread_mutex_unlock(&self->mutex);
    pb_loop_wake(self->loop);
}

/* Resolves the futures of finished tasks, batch after batch, until the
 * I/O thread has left and nothing is left to resolve. GIL held. */
void
pp_complete(ProcCore *self, pebble_state *st, completer_ctx *cx)
{
    for (;;) {
        pp_task *done, *started;
        int finished, relaunch;
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&self->mutex);
        while (self->done_head == NULL && self->started_head == NULL && !self->finished
               && self->relaunch != RELAUNCH_WANTED)
            pthread_cond_wait(&self->done_cond, &self->mutex);
        relaunch = self->relaunch == RELAUNCH_WANTED && !self->finished;
        if (relaunch)
            self->relaunch = RELAUNCH_STARTING;
        done = self->done_head;
        started = NULL;
        /* A task that started and ended within one batch needs no mark. */
        pp_task **tail = &started, *t = self->started_head;
        while (t != NULL) {
            pp_task *next = t->snext;
            if (t->state != T_DONE) {
                *tail = t;
                tail = &t->snext;
            }
            t = next;
        }
        *tail = NULL;
        self->done_head = self->done_tail = NULL;
        self->started_head = self->started_tail = NULL;
        self->completing = done != NULL;
        finished = self->finished;
        pthread_mutex_unlock(&self->mutex);
        Py_END_ALLOW_THREADS

        if (relaunch)
            completer_relaunch(self, cx);
        /* Mark running first: a task may start and end in one batch. */
        for (pp_task *t = started; t != NULL; t = t->snext) {
            PyObject *r = PyObject_CallMethod(t->future, "_pebble_start", NULL);
            if (r == NULL)
                PyErr_WriteUnraisable(t->future);
            Py_XDECREF(r);
        }
        while (done != NULL) {
            pp_task *next = done->next;
            if (done->outcome != OUT_CANCELLED)
                task_resolve(st, cx, done);
            task_free(done);
            done = next;
        }
        pthread_mutex_lock(&self->mutex);
        int wake = self->spawn_waits;
        self->completing = 0;
        self->spawn_waits = 0;
        pthread_mutex_unlock(&self->mutex);
        if (wake)
            pb_loop_wake(self->loop);
        if (finished) {
            pthread_mutex_lock(&self->mutex);
            int more = self->done_head != NULL || self->started_head != NULL;
            pthread_mutex_unlock(&self->mutex);
            if (!more)
                break;
        }
    }
}
