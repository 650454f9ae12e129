/* block.c - the Block type: bytes received from a worker, owned.
 *
 * Results are unpickled straight from the malloc'd block the I/O thread
 * read them into; out-of-band buffers are slices of it.
 */
#include "procpool.h"

#include <stdlib.h>

/* A read-only buffer owning a malloc'd block: results are unpickled from
 * it and out-of-band buffers are slices of it, so nothing is copied and
 * the memory lives as long as any object refers to it. */
typedef struct {
    PyObject_HEAD
    char *data;
    Py_ssize_t len;
    Py_ssize_t exports;
} Block;

static int
Block_getbuffer(Block *self, Py_buffer *view, int flags)
{
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->data, self->len, 0, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void
Block_releasebuffer(Block *self, Py_buffer *view)
{
    self->exports--;
}

static void
Block_dealloc(Block *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    free(self->data);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyType_Slot Block_slots[] = {
    {Py_tp_dealloc, Block_dealloc},
    {Py_bf_getbuffer, Block_getbuffer},
    {Py_bf_releasebuffer, Block_releasebuffer},
    {Py_tp_doc, (void *)"A block of bytes received from a worker."},
    {0, NULL},
};

static PyType_Spec Block_spec = {
    .name = "pebble._pebble.Block",
    .basicsize = sizeof(Block),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Block_slots,
};

/* Wraps t->data in a Block (taking ownership) and returns a memoryview of
 * [off, off + len). New reference, or NULL with an exception set. */
PyObject *
block_view(PyTypeObject *block_type, pp_task *t, PyObject **block, size_t off, size_t len)
{
    if (*block == NULL) {
        Block *b = PyObject_New(Block, block_type);
        if (b == NULL)
            return NULL;
        b->data = t->data;
        b->len = (Py_ssize_t)t->len;
        b->exports = 0;
        t->data = NULL;
        *block = (PyObject *)b;
    }
    PyObject *whole = PyMemoryView_FromObject(*block);
    if (whole == NULL)
        return NULL;
    PyObject *part = PySequence_GetSlice(whole, (Py_ssize_t)off, (Py_ssize_t)(off + len));
    Py_DECREF(whole);
    return part;
}

int
pebble_block_init(PyObject *module, pebble_state *st)
{
    st->Block_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Block_spec, NULL);
    return st->Block_Type == NULL ? -1 : 0;
}
