/* mapiter.c - the map's input chunker and its results iterator.
 *
 * take() cuts the zipped input into chunks and keeps the elements read
 * before an input error. MapIterator walks the values of one chunk after
 * another at C speed: it calls back into Python only to get the next chunk,
 * and raises in place the errors that stand for failed elements.
 */
#include "pebble.h"

/* take(iterator, n): (a tuple of up to n items of iterator, the Exception it
 * raised meanwhile or None). Items taken before the error are kept; errors
 * outside Exception (KeyboardInterrupt...) propagate. */
PyObject *
pebble_take(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *items = NULL, *tuple = NULL, *error = NULL, *result = NULL;
    Py_ssize_t n;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "take() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyIter_Check(args[0])) {
        PyErr_Format(
            PyExc_TypeError, "take() needs an iterator, not %.200s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    n = PyLong_AsSsize_t(args[1]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "take() needs n >= 0");
        return NULL;
    }
    items = PyList_New(0);
    if (items == NULL)
        return NULL;
    iternextfunc next = Py_TYPE(args[0])->tp_iternext;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = next(args[0]);
        if (item == NULL) {
            if (!PyErr_Occurred())
                break;
            if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
                PyErr_Clear();
                break;
            }
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                goto exit;
            error = PyErr_GetRaisedException_compat();
            break;
        }
        int rc = PyList_Append(items, item);
        Py_DECREF(item);
        if (rc < 0)
            goto exit;
    }
    tuple = PyList_AsTuple(items);
    if (tuple == NULL)
        goto exit;
    result = PyTuple_Pack(2, tuple, error != NULL ? error : Py_None);

exit:
    Py_XDECREF(items);
    Py_XDECREF(tuple);
    Py_XDECREF(error);
    return result;
}

/* ------------------------------------------------------------------ */
/* MapIterator                                                          */
/* ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *fetch;      /* () -> the next chunk's values, or None at the end */
    PyObject *error_type; /* values of this type stand for a failed element */
    PyObject *chunk;      /* list or tuple being walked, or NULL */
    Py_ssize_t pos;
} MapIterator;

static PyObject *
MapIterator_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *fetch, *error_type;
    static char *kwlist[] = {"fetch", "error_type", NULL};

    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "OO!:MapIterator", kwlist, &fetch, &PyType_Type, &error_type))
        return NULL;
    if (!PyCallable_Check(fetch)) {
        PyErr_SetString(PyExc_TypeError, "fetch must be callable");
        return NULL;
    }
    MapIterator *self = (MapIterator *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->fetch = Py_NewRef(fetch);
    self->error_type = Py_NewRef(error_type);
    self->chunk = NULL;
    self->pos = 0;
    return (PyObject *)self;
}

/* Raises the error carried by *marker*, with its own traceback. */
static PyObject *
mapiter_raise(PyObject *marker)
{
    PyObject *error = PyObject_GetAttrString(marker, "error");
    if (error == NULL)
        return NULL;
    if (!PyExceptionInstance_Check(error)) {
        PyErr_Format(PyExc_TypeError,
                     "a map error marker holds %.200s, not an exception",
                     Py_TYPE(error)->tp_name);
        Py_DECREF(error);
        return NULL;
    }
    PyObject *tb = PyException_GetTraceback(error);
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(error)), error, tb);
    return NULL;
}

static PyObject *
MapIterator_next(MapIterator *self)
{
    for (;;) {
        PyObject *chunk = self->chunk;
        if (chunk != NULL) {
            Py_ssize_t size =
                PyList_CheckExact(chunk) ? PyList_GET_SIZE(chunk) : PyTuple_GET_SIZE(chunk);
            if (self->pos < size) {
                PyObject *item = PyList_CheckExact(chunk) ? PyList_GET_ITEM(chunk, self->pos)
                                                          : PyTuple_GET_ITEM(chunk, self->pos);
                self->pos++;
                if (PEBBLE_UNLIKELY(Py_IS_TYPE(item, (PyTypeObject *)self->error_type))) {
                    Py_INCREF(item); /* the chunk may go while raising */
                    mapiter_raise(item);
                    Py_DECREF(item);
                    return NULL;
                }
                return Py_NewRef(item);
            }
            Py_CLEAR(self->chunk);
        }
        PyObject *next = PyObject_CallNoArgs(self->fetch);
        if (next == NULL)
            return NULL;
        if (next == Py_None) {
            Py_DECREF(next);
            return NULL; /* StopIteration */
        }
        if (!PyList_CheckExact(next) && !PyTuple_CheckExact(next)) {
            PyObject *values = PySequence_List(next);
            Py_DECREF(next);
            if (values == NULL)
                return NULL;
            next = values;
        }
        Py_XSETREF(self->chunk, next);
        self->pos = 0;
    }
}

static int
MapIterator_traverse(MapIterator *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->fetch);
    Py_VISIT(self->error_type);
    Py_VISIT(self->chunk);
    return 0;
}

static int
MapIterator_clear(MapIterator *self)
{
    Py_CLEAR(self->fetch);
    Py_CLEAR(self->error_type);
    Py_CLEAR(self->chunk);
    return 0;
}

static void
MapIterator_dealloc(MapIterator *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    MapIterator_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

PyDoc_STRVAR(MapIterator_next_doc,
"next($self, /)\n--\n\n"
"The next value, as next(iterator) would give it (Pebble's iterators have it).");

static PyObject *
MapIterator_next_method(MapIterator *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *value = MapIterator_next(self);
    if (value == NULL && !PyErr_Occurred())
        PyErr_SetNone(PyExc_StopIteration);
    return value;
}

static PyMethodDef MapIterator_methods[] = {
    {"next", (PyCFunction)MapIterator_next_method, METH_NOARGS, MapIterator_next_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(MapIterator_doc,
"MapIterator(fetch, error_type)\n--\n\n"
"Iterates over the values of the chunks returned by fetch() (a list or a\n"
"tuple each) until it returns None. A value of exactly error_type is raised\n"
"in place: its .error attribute, with that error's traceback.");

static PyType_Slot MapIterator_slots[] = {
    {Py_tp_new, MapIterator_new},
    {Py_tp_dealloc, MapIterator_dealloc},
    {Py_tp_traverse, MapIterator_traverse},
    {Py_tp_clear, MapIterator_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, MapIterator_next},
    {Py_tp_methods, MapIterator_methods},
    {Py_tp_doc, (void *)MapIterator_doc},
    {0, NULL},
};

static PyType_Spec MapIterator_spec = {
    .name = "pebble._pebble.MapIterator",
    .basicsize = sizeof(MapIterator),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = MapIterator_slots,
};

int
pebble_mapiter_init(PyObject *module)
{
    PyTypeObject *type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &MapIterator_spec, NULL);
    if (type == NULL)
        return -1;
    int rc = PyModule_AddType(module, type);
    Py_DECREF(type);
    return rc;
}
