/* worker.c - the loop of a worker process, worker_run().
 *
 * A worker reads frames from its task pipe, lets Python execute them and
 * writes the result frames back, GIL released around every blocking read
 * and write. Its process is started by the launcher (launcher.c).
 */
#include "frame.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

/* How many views export_views() takes from obj, or -1 with an exception set. */
static Py_ssize_t
count_views(PyObject *obj)
{
    if (obj == NULL || obj == Py_None)
        return 0;
    if (PyObject_CheckBuffer(obj))
        return 1;
    if (PyList_Check(obj) || PyTuple_Check(obj))
        return PySequence_Fast_GET_SIZE(obj);
    PyErr_SetString(PyExc_TypeError, "expected a buffer or a list of buffers");
    return -1;
}

/* Exports every item of seq (None: nothing) into views, which has room for
 * count_views(seq). Returns the count or -1 with an exception set; views
 * already taken stay in *views. */
static int
export_views(PyObject *seq_obj, Py_buffer *views, int *taken)
{
    if (seq_obj == NULL || seq_obj == Py_None)
        return 0;
    if (PyObject_CheckBuffer(seq_obj)) {
        if (PyObject_GetBuffer(seq_obj, &views[0], PyBUF_SIMPLE) < 0)
            return -1;
        (*taken)++;
        return 1;
    }
    PyObject *seq = PySequence_Fast(seq_obj, "expected a buffer or a sequence of buffers");
    if (seq == NULL)
        return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &views[i], PyBUF_SIMPLE) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        (*taken)++;
    }
    Py_DECREF(seq);
    return (int)count;
}

/* Sends a frame whose in-band pickle is data (a buffer or a list of
 * buffers) followed by the out-of-band buffers, holding c's write lock
 * (c may be NULL). 0 or -1 with an exception set. The GIL is released
 * while writing. */
static int
send_python_frame(pb_canceller *c, int fd, uint64_t id, uint32_t kind, PyObject *data,
                  PyObject *buffers, const uint64_t *skipped, int nskipped)
{
    Py_buffer local[64], *views = local;
    int taken = 0, rc = -1;
    Py_ssize_t nin = count_views(data), nout = count_views(buffers);
    if (nin < 0 || nout < 0)
        return -1;
    if (nin + nout > INT_MAX / 2) {
        PyErr_SetString(PyExc_OverflowError, "too many buffers in one result");
        return -1;
    }
    if (nin + nout > (Py_ssize_t)(sizeof(local) / sizeof(local[0]))) {
        views = PyMem_Malloc((size_t)(nin + nout) * sizeof(Py_buffer));
        if (views == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    int ninband = export_views(data, views, &taken);
    if (ninband < 0)
        goto done;
    int noob = export_views(buffers, views + ninband, &taken);
    if (noob < 0)
        goto done;
    int r, err = 0;
    Py_BEGIN_ALLOW_THREADS
    if (c != NULL)
        pb_canceller_lock_write(c);
    r = pb_frame_write(fd, id, kind, views, ninband, noob, skipped, nskipped);
    if (r < 0)
        err = errno;
    if (c != NULL)
        pb_canceller_unlock_write(c);
    Py_END_ALLOW_THREADS
    if (r < 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < taken; i++)
        PyBuffer_Release(&views[i]);
    if (views != local)
        PyMem_Free(views);
    return rc;
}

/* The worker's side of its task pipe: bytes are staged and cut into
 * frames; complete frames wait in a queue. Reading ahead lets the worker
 * see CANCEL frames for tasks queued behind the one it just ran. */
#define WSTAGE (64 * 1024)

typedef struct {
    pb_frame_hdr h;
    PyObject *payload; /* bytes */
} wframe;

typedef struct {
    int fd;
    int eof;
    char *stage;
    size_t soff, slen;  /* staged bytes are stage[soff:slen] */
    pb_frame_reader rd; /* the frame being read, into payload */
    PyObject *payload;  /* owns rd.data while a frame is read */
    wframe *q;          /* complete frames, oldest first */
    int qhead, qlen, qcap;
} wreader;

static void
wr_clear(wreader *r)
{
    while (r->qlen > 0) {
        Py_DECREF(r->q[r->qhead].payload);
        r->qhead = (r->qhead + 1) % r->qcap;
        r->qlen--;
    }
    Py_CLEAR(r->payload);
    PyMem_Free(r->q);
    PyMem_Free(r->stage);
}

/* The writable storage of a frame payload (bytes or bytearray). */
static inline char *
wr_data(PyObject *payload)
{
    return PyBytes_Check(payload) ? PyBytes_AS_STRING(payload) : PyByteArray_AS_STRING(payload);
}

/* Storage for a task frame's payload (pb_frame_alloc_fn). A frame with
 * out-of-band buffers lands in a bytearray, so the objects rebuilt over
 * them are writable, as the originals were. NULL (no exception set) when
 * it does not fit: the frame is skipped and reported by wr_parse(). */
static char *
wr_alloc(void *ctx, const pb_frame_hdr *h)
{
    wreader *r = ctx;
    r->payload = h->nbufs ? PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)h->len)
                          : PyBytes_FromStringAndSize(NULL, (Py_ssize_t)h->len);
    if (r->payload == NULL) {
        PyErr_Clear();
        return NULL;
    }
    return wr_data(r->payload);
}

/* Appends the frame just read. 0 or -1 with an exception set. */
static int
wr_push(wreader *r)
{
    if (r->qlen == r->qcap) {
        int cap = r->qcap ? r->qcap * 2 : 16;
        wframe *q = PyMem_Malloc((size_t)cap * sizeof(wframe));
        if (q == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (int i = 0; i < r->qlen; i++)
            q[i] = r->q[(r->qhead + i) % r->qcap];
        PyMem_Free(r->q);
        r->q = q;
        r->qcap = cap;
        r->qhead = 0;
    }
    wframe *f = &r->q[(r->qhead + r->qlen) % r->qcap];
    f->h = r->rd.hdr;
    f->payload = r->payload;
    r->payload = NULL;
    r->qlen++;
    return 0;
}

/* Cuts staged bytes into frames. 0 or -1 with an exception set. */
static int
wr_parse(wreader *r)
{
    for (;;) {
        char *payload;
        int rc = pb_frame_parse(&r->rd, r->stage, r->slen, &r->soff, wr_alloc, r, &payload);
        if (rc == PB_PARSE_MORE)
            break;
        if (rc == PB_PARSE_BAD) {
            PyErr_Format(PyExc_ValueError,
                         "corrupt frame header (length %llu, %u buffers)",
                         (unsigned long long)r->rd.hdr.len,
                         (unsigned int)r->rd.hdr.nbufs);
            return -1;
        }
        if (rc == PB_PARSE_NOMEM) {
            /* The frame did not fit in this process: its payload was
             * skipped, and a MemoryError stands in for it. */
            PyErr_Format(PyExc_MemoryError,
                         "a frame of %llu bytes could not be allocated in the worker",
                         (unsigned long long)r->rd.hdr.len);
            r->payload = PyErr_GetRaisedException_compat();
        }
        if (wr_push(r) < 0)
            return -1;
    }
    if (r->soff == r->slen)
        r->soff = r->slen = 0;
    return 0;
}

/* Reads what is available; with block set, waits until at least one frame
 * is complete (or EOF). The GIL is released around every system call.
 * 0 or -1 with an exception set. */
static int
wr_fill(wreader *r, int block)
{
    for (;;) {
        if (wr_parse(r) < 0)
            return -1;
        if (r->eof)
            return 0;
        int wait = block && r->qlen == 0;
        char *dst;
        size_t room;
        pb_frame_reader *rd = &r->rd;
        int direct = rd->have_hdr && rd->data != NULL && r->soff == r->slen
                     && rd->hdr.len - rd->got >= WSTAGE;
        if (direct) {
            /* A large payload goes straight into its bytes object. */
            dst = rd->data + rd->got;
            room = (size_t)rd->hdr.len - rd->got;
        }
        else {
            if (r->soff > 0) {
                memmove(r->stage, r->stage + r->soff, r->slen - r->soff);
                r->slen -= r->soff;
                r->soff = 0;
            }
            dst = r->stage + r->slen;
            room = WSTAGE - r->slen;
        }
        ssize_t n;
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        for (;;) {
            n = read(r->fd, dst, room);
            if (n >= 0)
                break;
            err = errno;
            if (err == EINTR)
                continue;
            if ((err == EAGAIN || err == EWOULDBLOCK) && wait) {
                struct pollfd pfd = {r->fd, POLLIN, 0};
                poll(&pfd, 1, -1);
                continue;
            }
            break;
        }
        Py_END_ALLOW_THREADS
        if (n > 0) {
            /* A payload read in full is completed by wr_parse(). */
            if (direct)
                rd->got += (size_t)n;
            else
                r->slen += (size_t)n;
            continue;
        }
        if (n == 0) {
            r->eof = 1;
            return 0;
        }
        if (err == EAGAIN || err == EWOULDBLOCK)
            return 0;
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
}

/* Cuts a task payload (a bytearray) with nbufs out-of-band buffers into
 * writable memoryviews: *data over its pickle, *buffers a list over each
 * buffer. 0, or -1 with an exception set. */
static int
wr_split(PyObject *payload, uint32_t nbufs, PyObject **data, PyObject **buffers)
{
    size_t n = (size_t)nbufs + 1;
    PyObject *whole = NULL;
    int rc = -1;
    *data = *buffers = NULL;
    pb_span *spans = PyMem_Malloc(n * sizeof(pb_span));
    if (spans == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (pb_frame_split(wr_data(payload), (size_t)Py_SIZE(payload), nbufs, spans) < 0) {
        PyErr_SetString(PyExc_ValueError, "corrupt task frame");
        goto done;
    }
    whole = PyMemoryView_FromObject(payload);
    if (whole == NULL)
        goto done;
    *data = PySequence_GetSlice(
        whole, (Py_ssize_t)spans[0].off, (Py_ssize_t)(spans[0].off + spans[0].len));
    *buffers = PyList_New((Py_ssize_t)nbufs);
    if (*data == NULL || *buffers == NULL)
        goto done;
    for (size_t i = 1; i < n; i++) {
        PyObject *b = PySequence_GetSlice(
            whole, (Py_ssize_t)spans[i].off, (Py_ssize_t)(spans[i].off + spans[i].len));
        if (b == NULL)
            goto done;
        PyList_SET_ITEM(*buffers, (Py_ssize_t)(i - 1), b);
    }
    rc = 0;
done:
    if (rc < 0) {
        Py_CLEAR(*data);
        Py_CLEAR(*buffers);
    }
    Py_XDECREF(whole);
    PyMem_Free(spans);
    return rc;
}

/* Drops the queued tasks named by queued CANCEL frames; stores their ids
 * in skipped (up to max) and returns how many. */
static int
wr_take_cancels(wreader *r, uint64_t *skipped, int max)
{
    int nskipped = 0;
    for (int i = 0; i < r->qlen; i++) {
        wframe *c = &r->q[(r->qhead + i) % r->qcap];
        if (c->h.kind != PB_FRAME_CANCEL)
            continue;
        for (int j = 0; j < i; j++) {
            wframe *t = &r->q[(r->qhead + j) % r->qcap];
            if (t->h.kind == PB_FRAME_TASK && t->h.id == c->h.id && nskipped < max) {
                /* Neutralised in place: the loop skips frames of kind 0. */
                t->h.kind = 0;
                skipped[nskipped++] = t->h.id;
                break;
            }
        }
        c->h.kind = 0;
    }
    return nskipped;
}

PyDoc_STRVAR(pebble_worker_run_doc,
"worker_run(task_fd, result_fd, cancel_fd, setup, execute, /)\n--\n\n"
"Serve the worker's channel until a STOP frame or EOF (return None) or a\n"
"failed initializer (return False); cancel_fd (-1: none) carries CANCEL\n"
"frames, answered while a task runs. setup(kind, payload) handles PREPARE\n"
"and INIT frames and returns None or the pickled error of the initializer;\n"
"execute(pickle[, buffers]) returns (kind, data, buffers) for a task; the\n"
"task's out-of-band pickle buffers come as a list of memoryviews.");

static PyObject *
pebble_worker_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    wreader r;
    PyObject *result = NULL;
    pb_canceller *c = NULL;
    uint64_t tasks_started = 0;
    memset(&r, 0, sizeof(r));
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "worker_run() takes exactly 5 arguments");
        return NULL;
    }
    int task_fd = PyLong_AsInt_compat(args[0]);
    int result_fd = PyLong_AsInt_compat(args[1]);
    int cancel_fd = PyLong_AsInt_compat(args[2]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *setup = args[3], *execute = args[4];
    if ((c = pb_canceller_start(result_fd, cancel_fd)) == NULL)
        return NULL;
    r.fd = task_fd;
    r.stage = PyMem_Malloc(WSTAGE);
    if (r.stage == NULL || pb_set_nonblock(task_fd) < 0) {
        if (r.stage == NULL)
            PyErr_NoMemory();
        else
            PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    for (;;) {
        if (r.qlen == 0) {
            if (wr_fill(&r, 1) < 0)
                goto done;
            if (r.qlen == 0) { /* EOF: the pool is gone */
                result = Py_NewRef(Py_None);
                goto done;
            }
        }
        wframe f = r.q[r.qhead];
        r.qhead = (r.qhead + 1) % r.qcap;
        r.qlen--;
        uint32_t kind = f.h.kind;
        if (kind == 0 || kind == PB_FRAME_CANCEL) {
            Py_DECREF(f.payload); /* dropped, or about a task already run */
            continue;
        }
        if (kind == PB_FRAME_STOP) {
            Py_DECREF(f.payload);
            result = Py_NewRef(Py_None);
            goto done;
        }
        if (PyExceptionInstance_Check(f.payload) && kind != PB_FRAME_TASK) {
            PyErr_SetRaisedException_compat(f.payload); /* setup cannot go on */
            goto done;
        }
        if (kind == PB_FRAME_PREPARE || kind == PB_FRAME_INIT) {
            PyObject *k = PyLong_FromLong(kind);
            PyObject *res = k ? PyObject_CallFunctionObjArgs(setup, k, f.payload, NULL) : NULL;
            Py_XDECREF(k);
            Py_DECREF(f.payload);
            if (res == NULL)
                goto done;
            if (res != Py_None) {
                int rc =
                    send_python_frame(c, result_fd, 0, PB_FRAME_INIT_ERROR, res, NULL, NULL, 0);
                Py_DECREF(res);
                if (rc == 0)
                    result = Py_NewRef(Py_False);
                goto done;
            }
            Py_DECREF(res);
            if (kind == PB_FRAME_INIT) {
                Py_buffer none;
                int rc, err = 0;
                memset(&none, 0, sizeof(none));
                none.buf = "";
                Py_BEGIN_ALLOW_THREADS
                pb_canceller_lock_write(c);
                rc = pb_frame_write(result_fd, 0, PB_FRAME_READY, &none, 1, 0, NULL, 0);
                if (rc < 0)
                    err = errno;
                pb_canceller_unlock_write(c);
                Py_END_ALLOW_THREADS
                if (rc < 0) {
                    errno = err;
                    PyErr_SetFromErrno(PyExc_OSError);
                    goto done;
                }
            }
            continue;
        }
        if (kind != PB_FRAME_TASK) {
            Py_DECREF(f.payload);
            PyErr_Format(PyExc_ValueError, "unexpected frame kind %u", kind);
            goto done;
        }
        if (tasks_started++ == 1)
            pb_canceller_listen(c);
        if (pb_canceller_take(c, f.h.id)) {
            Py_DECREF(f.payload); /* cancelled, and SKIPPED told already */
            continue;
        }
        PyObject *res = NULL;
        if (PyExceptionInstance_Check(f.payload)) {
            /* A task too large to receive fails with that error. */
            res = PyObject_CallOneArg(execute, f.payload);
        }
        else if (f.h.nbufs) {
            PyObject *data, *buffers;
            if (wr_split(f.payload, f.h.nbufs, &data, &buffers) == 0)
                res = PyObject_CallFunctionObjArgs(execute, data, buffers, NULL);
            Py_XDECREF(data);
            Py_XDECREF(buffers);
        }
        else {
            res = PyObject_CallOneArg(execute, f.payload);
        }
        Py_DECREF(f.payload);
        if (res == NULL)
            goto done;
        if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 3) {
            Py_DECREF(res);
            PyErr_SetString(PyExc_TypeError, "execute() must return (kind, data, buffers)");
            goto done;
        }
        long rkind = PyLong_AsLong(PyTuple_GET_ITEM(res, 0));
        if (rkind == -1 && PyErr_Occurred()) {
            Py_DECREF(res);
            goto done;
        }
        /* Before answering, see whether queued tasks were cancelled: their
         * SKIPPED reports must reach the pool before this result does. */
        uint64_t skipped[16];
        int nskipped = 0;
        if (wr_fill(&r, 0) < 0) {
            Py_DECREF(res);
            goto done;
        }
        nskipped = wr_take_cancels(&r, skipped, 16);
        int rc = send_python_frame(c,
                                   result_fd,
                                   f.h.id,
                                   (uint32_t)rkind,
                                   PyTuple_GET_ITEM(res, 1),
                                   PyTuple_GET_ITEM(res, 2),
                                   skipped,
                                   nskipped);
        Py_DECREF(res);
        if (rc < 0)
            goto done;
    }
done:
    wr_clear(&r);
    pb_canceller_stop(c);
    return result;
}

PyDoc_STRVAR(pebble_write_frame_doc,
"write_frame(fd, task_id, kind, data, buffers, /)\n--\n\n"
"Write one frame on the blocking descriptor fd: data is its in-band pickle\n"
"(a buffer or a list of them), buffers the out-of-band ones or None.");

static PyObject *
pebble_write_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "write_frame() takes exactly 5 arguments");
        return NULL;
    }
    int fd = PyLong_AsInt_compat(args[0]);
    unsigned long long id = PyLong_AsUnsignedLongLong(args[1]);
    int kind = PyLong_AsInt_compat(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (send_python_frame(NULL, fd, id, (uint32_t)kind, args[3], args[4], NULL, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef worker_methods[] = {
    {"write_frame",
     (PyCFunction)(void (*)(void))pebble_write_frame,
     METH_FASTCALL,
     pebble_write_frame_doc},
    {"worker_run",
     (PyCFunction)(void (*)(void))pebble_worker_run,
     METH_FASTCALL,
     pebble_worker_run_doc},
    {NULL, NULL, 0, NULL},
};

int
pebble_worker_init(PyObject *module)
{
    if (PyModule_AddFunctions(module, worker_methods) < 0)
        return -1;
#define ADD(name, value)                                      \
    do {                                                      \
        if (PyModule_AddIntConstant(module, name, value) < 0) \
            return -1;                                        \
    } while (0)
    ADD("FRAME_TASK", PB_FRAME_TASK);
    ADD("FRAME_PREPARE", PB_FRAME_PREPARE);
    ADD("FRAME_INIT", PB_FRAME_INIT);
    ADD("FRAME_RESULT", PB_FRAME_RESULT);
    ADD("FRAME_ERROR", PB_FRAME_ERROR);
#undef ADD
    return 0;
}
