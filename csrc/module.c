/* module.c - module definition, state and small shared helpers. */
#include "pebble.h"

#include <errno.h>
#include <math.h>
#include <time.h>

static struct PyModuleDef pebble_module;

#if PY_VERSION_HEX < 0x030B0000
/* PyType_GetModuleByDef arrived in 3.11: the first heap type of the MRO
 * whose module was made from *def*. Borrowed reference, or NULL with
 * TypeError set. */
static PyObject *
PyType_GetModuleByDef(PyTypeObject *type, PyModuleDef *def)
{
    PyObject *mro = type->tp_mro;
    Py_ssize_t n = mro != NULL ? PyTuple_GET_SIZE(mro) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!(t->tp_flags & Py_TPFLAGS_HEAPTYPE))
            continue;
        PyObject *module = ((PyHeapTypeObject *)t)->ht_module;
        if (module != NULL && PyModule_GetDef(module) == def)
            return module;
    }
    PyErr_Format(PyExc_TypeError, "'%s' has no module of pebble._pebble", type->tp_name);
    return NULL;
}
#endif

pebble_state *
pebble_state_from_type(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &pebble_module);
    assert(module != NULL);
    return (pebble_state *)PyModule_GetState(module);
}

int64_t
pebble_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int
pebble_timeout_ns(PyObject *timeout, int64_t *out)
{
    if (timeout == NULL || timeout == Py_None) {
        *out = -1;
        return 0;
    }
    double seconds = PyFloat_AsDouble(timeout);
    if (seconds == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(seconds) || seconds < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout must be a non-negative number");
        return -1;
    }
    /* Far-off deadlines are clamped to about 290 years. */
    if (seconds > 9.0e9)
        seconds = 9.0e9;
    *out = (int64_t)(seconds * 1e9);
    return 0;
}

PyDoc_STRVAR(pebble_monotonic_ns_doc,
"monotonic_ns()\n--\n\n"
"Return CLOCK_MONOTONIC in nanoseconds (the clock the pools use for deadlines).");

static PyObject *
pebble_monotonic_ns(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong(pebble_now_ns());
}

static PyMethodDef pebble_methods[] = {
    {"monotonic_ns", pebble_monotonic_ns, METH_NOARGS, pebble_monotonic_ns_doc},
    {"take",
     (PyCFunction)(void (*)(void))pebble_take,
     METH_FASTCALL,
     "take(iterator, n, /)\n--\n\nUp to n items of iterator and the Exception it raised, or None."},
    {NULL, NULL, 0, NULL},
};

static int
pebble_exec(PyObject *module)
{
    pebble_state *st = (pebble_state *)PyModule_GetState(module);
    PyObject *pickle = NULL;

#define INTERN(field, text)                           \
    do {                                              \
        st->field = PyUnicode_InternFromString(text); \
        if (st->field == NULL)                        \
            goto error;                               \
    } while (0)

    INTERN(str_set_running, "set_running_or_notify_cancel");
    INTERN(str_set_result, "set_result");
    INTERN(str_set_exception, "set_exception");
    INTERN(str_loads, "loads");
    INTERN(str_dumps, "dumps");
    INTERN(str_pebble_id, "_pebble_id");
#undef INTERN

    pickle = PyImport_ImportModule("pickle");
    if (pickle == NULL)
        goto error;
    st->pickle_loads = PyObject_GetAttrString(pickle, "loads");
    if (st->pickle_loads == NULL)
        goto error;
    st->pickle_dumps = PyObject_GetAttrString(pickle, "dumps");
    if (st->pickle_dumps == NULL)
        goto error;
    st->PickleBuffer_Type = PyObject_GetAttrString(pickle, "PickleBuffer");
    if (st->PickleBuffer_Type == NULL)
        goto error;
    Py_CLEAR(pickle);

    if (pb_fd_registry_init() < 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot install the fork handler");
        goto error;
    }
    if (pebble_threadcore_init(module, st) < 0)
        goto error;
    if (pebble_proccore_init(module, st) < 0)
        goto error;
    if (pebble_block_init(module, st) < 0)
        goto error;
    if (pebble_frame_init(module) < 0)
        goto error;
    if (pebble_worker_init(module) < 0)
        goto error;
    if (pebble_launcher_init(module) < 0)
        goto error;
    if (pebble_mapiter_init(module) < 0)
        goto error;
#ifdef PEBBLE_FORCE_POSIX
    if (PyModule_AddStringConstant(module, "PLATFORM", "posix") < 0)
        goto error;
#else
    if (PyModule_AddStringConstant(module, "PLATFORM", "linux") < 0)
        goto error;
#endif
    return 0;

error:
    Py_XDECREF(pickle);
    return -1;
}

static int
pebble_traverse(PyObject *module, visitproc visit, void *arg)
{
    pebble_state *st = (pebble_state *)PyModule_GetState(module);
    Py_VISIT(st->ThreadCore_Type);
    Py_VISIT(st->ProcCore_Type);
    Py_VISIT(st->Block_Type);
    Py_VISIT(st->pickle_loads);
    Py_VISIT(st->pickle_dumps);
    Py_VISIT(st->PickleBuffer_Type);
    return 0;
}

static int
pebble_clear(PyObject *module)
{
    pebble_state *st = (pebble_state *)PyModule_GetState(module);
    Py_CLEAR(st->ThreadCore_Type);
    Py_CLEAR(st->ProcCore_Type);
    Py_CLEAR(st->Block_Type);
    Py_CLEAR(st->str_set_running);
    Py_CLEAR(st->str_set_result);
    Py_CLEAR(st->str_set_exception);
    Py_CLEAR(st->str_loads);
    Py_CLEAR(st->str_dumps);
    Py_CLEAR(st->str_pebble_id);
    Py_CLEAR(st->pickle_loads);
    Py_CLEAR(st->pickle_dumps);
    Py_CLEAR(st->PickleBuffer_Type);
    return 0;
}

static void
pebble_free(void *module)
{
    pebble_clear((PyObject *)module);
}

/* Subinterpreters: the state is per module, and the process-wide pieces
 * (the fd registry and its fork handler) are C only, guarded by their own
 * lock, so interpreters that share the main GIL may each import the module.
 * A per-interpreter GIL is not supported: the I/O threads of every
 * interpreter would share that registry's fork handler, which is untested.
 * Free-threaded builds: the engines rely on the GIL to serialize Python
 * object access from their completer threads (see README). */
static PyModuleDef_Slot pebble_slots[] = {
    {Py_mod_exec, pebble_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(pebble_module_doc,
"Native engine of pebble: thread and process pool machinery.");

static struct PyModuleDef pebble_module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "pebble._pebble",
    .m_doc = pebble_module_doc,
    .m_size = sizeof(pebble_state),
    .m_methods = pebble_methods,
    .m_slots = pebble_slots,
    .m_traverse = pebble_traverse,
    .m_clear = pebble_clear,
    .m_free = pebble_free,
};

PyMODINIT_FUNC
PyInit__pebble(void)
{
    return PyModuleDef_Init(&pebble_module);
}
