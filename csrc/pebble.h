/* pebble.h - shared declarations of the _pebble extension.
 *
 * The extension holds the mechanism of the pools: queues, waits, pipes,
 * process lifecycle and deadlines. Policy (argument checking, futures'
 * public behaviour, decorators) lives in the Python package.
 */
#ifndef PEBBLE_H
#define PEBBLE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#if defined(__GNUC__)
#define PEBBLE_HIDDEN      __attribute__((visibility("hidden")))
#define PEBBLE_LIKELY(x)   __builtin_expect(!!(x), 1)
#define PEBBLE_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define PEBBLE_HIDDEN
#define PEBBLE_LIKELY(x)   (x)
#define PEBBLE_UNLIKELY(x) (x)
#endif

/* ------------------------------------------------------------------ */
/* Module state                                                         */
/* ------------------------------------------------------------------ */

typedef struct {
    PyTypeObject *ThreadCore_Type; /* the ThreadPool engine */
    PyTypeObject *ProcCore_Type;   /* the ProcessPool engine */
    PyTypeObject *Block_Type;      /* received bytes, owned */
    /* Interned method names used on the hot paths. */
    PyObject *str_set_running;   /* "set_running_or_notify_cancel" */
    PyObject *str_set_result;    /* "set_result" */
    PyObject *str_set_exception; /* "set_exception" */
    PyObject *str_loads;         /* "loads" */
    PyObject *str_dumps;         /* "dumps" */
    PyObject *str_pebble_id;     /* "_pebble_id" */
    PyObject *pickle_loads;      /* pickle.loads */
    PyObject *pickle_dumps;      /* pickle.dumps */
    PyObject *PickleBuffer_Type; /* pickle.PickleBuffer */
} pebble_state;

/* Returns the module state of the module that defined *type* (borrowed). */
PEBBLE_HIDDEN pebble_state *pebble_state_from_type(PyTypeObject *type);

/* Takes the raised exception, normalized and with its traceback attached.
 * Returns a new reference. An exception must be set. */
static inline PyObject *
PyErr_GetRaisedException_compat(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Re-raises exc (stolen), as taken by PyErr_GetRaisedException_compat. */
static inline void
PyErr_SetRaisedException_compat(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* Converts a Python int to a C int. -1 with an exception set on error. */
static inline int
PyLong_AsInt_compat(PyObject *obj)
{
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v > INT32_MAX || v < INT32_MIN) {
        PyErr_SetString(PyExc_OverflowError, "value out of range for a C int");
        return -1;
    }
    return (int)v;
}

/* ------------------------------------------------------------------ */
/* Fork safety                                                          */
/* ------------------------------------------------------------------ */

/* Bumped in every forked child by the fork handler (channel.c). An engine
 * made under another generation belongs to an ancestor: none of its
 * threads exists here, and a thread may have held its mutex at the fork. */
PEBBLE_HIDDEN extern unsigned long pb_fork_generation;

/* Locks an engine's mutex. In the process that made the engine (made under
 * fork generation gen) it waits for it; in a forked child it takes it only
 * if no thread held it at the fork, since nothing there will release it.
 * Returns 1 with the mutex held, or 0: the engine's state may be torn and
 * must be left alone. */
static inline int
pb_engine_lock(pthread_mutex_t *mutex, unsigned long gen)
{
    if (PEBBLE_LIKELY(gen == pb_fork_generation)) {
        pthread_mutex_lock(mutex);
        return 1;
    }
    return pthread_mutex_trylock(mutex) == 0;
}

/* ------------------------------------------------------------------ */
/* Time                                                                 */
/* ------------------------------------------------------------------ */

/* CLOCK_MONOTONIC now, in nanoseconds. */
PEBBLE_HIDDEN int64_t pebble_now_ns(void);

/* Converts a Python timeout (None or seconds) to nanoseconds: -1 means
 * forever. 0 or -1 with an exception set. */
PEBBLE_HIDDEN int pebble_timeout_ns(PyObject *timeout, int64_t *out);

/* ------------------------------------------------------------------ */
/* Thread pool engine (threadpool.c)                                    */
/* ------------------------------------------------------------------ */

PEBBLE_HIDDEN int pebble_threadcore_init(PyObject *module, pebble_state *st);

/* ------------------------------------------------------------------ */
/* Process pool engine (procpool.c, channel.c, worker.c)                */
/* ------------------------------------------------------------------ */

PEBBLE_HIDDEN int pebble_proccore_init(PyObject *module, pebble_state *st);
/* block.c: the Block type results are unpickled from. */
PEBBLE_HIDDEN int pebble_block_init(PyObject *module, pebble_state *st);

/* mapiter.c: the MapIterator type and take(). */
PEBBLE_HIDDEN int pebble_mapiter_init(PyObject *module);
PEBBLE_HIDDEN PyObject *pebble_take(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* Control messages between the pool and its launcher process, sent on a
 * SOCK_SEQPACKET socket pair. SPAWNED carries the worker's task-write and
 * result-read descriptors as SCM_RIGHTS. */
enum {
    PB_CTL_SPAWN = 1,         /* pool -> launcher: start a worker for slot */
    PB_CTL_KILL = 2,          /* pool -> launcher: signal pid with arg */
    PB_CTL_EXIT = 3,          /* pool -> launcher: kill what is left and exit */
    PB_CTL_ADOPT = 4,         /* pool -> launcher: reap and kill pid, a child forked elsewhere */
    PB_CTL_SPAWNED = 11,      /* launcher -> pool: slot's worker is pid */
    PB_CTL_SPAWN_FAILED = 12, /* launcher -> pool: errno in arg */
    PB_CTL_EXITED = 13,       /* launcher -> pool: pid exited, wait status in arg */
};

typedef struct {
    int32_t op;
    int32_t slot;
    int32_t pid;
    int32_t arg;
    uint64_t gen; /* spawn generation, echoed back */
} pb_ctl_msg;

/* channel.c: blocking and non-blocking I/O helpers. */

/* Writes all of iov (retrying on EINTR and short writes) to a blocking fd.
 * Returns 0 or -1 with errno set. Async-signal-safe. */
PEBBLE_HIDDEN int pb_writev_all(int fd, struct iovec *iov, int iovcnt);
/* Reads exactly n bytes from a blocking fd. Returns 1, 0 on EOF before any
 * byte, -1 with errno set (EIO on EOF mid-way). */
PEBBLE_HIDDEN int pb_read_all(int fd, void *buf, size_t n);
/* Sends a control message with optional descriptors. 0 or -1 (errno). */
PEBBLE_HIDDEN int pb_ctl_send(int sock, const pb_ctl_msg *msg, const int *fds, int nfds);
/* Descriptors one control message carries at most: a worker's channel,
 * its task, result and cancel pipes. */
#define PB_CTL_MAX_FDS 4
/* Initialises a mutex and a condition, or neither: 0, or -1 with errno. */
PEBBLE_HIDDEN int pb_sync_init(pthread_mutex_t *mutex, pthread_cond_t *cond);
/* A control socket pair, both ends registered (closed in fork children)
 * and numbered 10 or above. 0, or -1 with errno set. */
PEBBLE_HIDDEN int pb_ctl_socketpair(int sv[2]);
/* Receives a control message and up to PB_CTL_MAX_FDS descriptors (the
 * rest of fds set to -1). Returns 1, 0 on EOF, -1 with errno set (EAGAIN
 * when empty). */
PEBBLE_HIDDEN int pb_ctl_recv(int sock, pb_ctl_msg *msg, int *fds);
/* Closes the descriptors pb_ctl_recv() stored in fds, and marks them -1. */
PEBBLE_HIDDEN void pb_ctl_close_fds(int *fds);
/* Descriptors the pools own in this process. A forked child closes them
 * all (pthread_atfork), so no other process keeps a pool's channels open. */
PEBBLE_HIDDEN int pb_fd_registry_init(void);
PEBBLE_HIDDEN void pb_fd_register(int fd);
/* Unregisters and closes fd. */
PEBBLE_HIDDEN void pb_fd_close(int fd);

/* Sets O_NONBLOCK on fd. 0 or -1. */
PEBBLE_HIDDEN int pb_set_nonblock(int fd);
/* Creates a pipe with O_CLOEXEC and tries to enlarge its buffer. */
PEBBLE_HIDDEN int pb_pipe(int fds[2]);

/* platform_*.c: the event loop the pool's I/O thread waits in. */
typedef struct pb_loop pb_loop;

enum { PB_EV_READ = 1, PB_EV_WRITE = 2, PB_EV_ERROR = 4 };

typedef struct {
    int fd;
    int events; /* PB_EV_* that happened */
} pb_event;

/* Returns a new loop with a wake-up channel, or NULL with errno set. */
PEBBLE_HIDDEN pb_loop *pb_loop_new(void);
/* Frees the loop; its descriptors are closed only when close_fds is set. */
PEBBLE_HIDDEN void pb_loop_free(pb_loop *loop, int close_fds);
/* Watches fd for the PB_EV_* in events (0 removes it). 0 or -1. */
PEBBLE_HIDDEN int pb_loop_watch(pb_loop *loop, int fd, int events);
/* Waits until an event, a wake-up or the monotonic deadline_ns (-1: none).
 * Fills up to max events; returns their count (0 on deadline or wake-up)
 * or -1 with errno set. Never returns early otherwise. */
PEBBLE_HIDDEN int pb_loop_wait(pb_loop *loop, int64_t deadline_ns, pb_event *events, int max);
/* Wakes the waiting thread. Async-signal-safe, callable from any thread. */
PEBBLE_HIDDEN void pb_loop_wake(pb_loop *loop);

/* Asks the kernel to kill the calling process when its parent dies (no-op
 * where unsupported; EOF on the channel covers those). */
PEBBLE_HIDDEN void pb_set_parent_death_signal(pid_t expected_parent);

/* A pidfd for pid (closed on exec), or -1 where there are none. */
PEBBLE_HIDDEN int pb_pidfd_open(pid_t pid);
/* Signals the process behind a pidfd. 0 or -1 with errno set. */
PEBBLE_HIDDEN int pb_pidfd_signal(int pidfd, int sig);

/* Makes the calling process adopt the orphans among its descendants
 * (PR_SET_CHILD_SUBREAPER). 0, or -1 where there is no such thing. */
PEBBLE_HIDDEN int pb_set_child_subreaper(void);

/* One entry of the process table. */
typedef struct {
    pid_t pid, ppid, pgid;
} pb_procinfo;

/* The processes of the system (*out, malloc, to free) and their count; 0
 * where the table cannot be read, -1 when out of memory. */
PEBBLE_HIDDEN int pb_process_table(pb_procinfo **out);
/* The children of pid (*out, malloc, to free) and their count; -1 where
 * they cannot be listed (walk pb_process_table() instead). */
PEBBLE_HIDDEN int pb_children(pid_t pid, pid_t **out);

/* reaper.c: the launcher's child tracking, with a descriptor that becomes
 * readable when a child may have exited. */
typedef struct pb_reaper pb_reaper;
PEBBLE_HIDDEN pb_reaper *pb_reaper_new(void);
/* One in the pool's own process (see reaper.c); NULL with errno set. */
PEBBLE_HIDDEN pb_reaper *pb_reaper_new_inproc(void);
struct pollfd;
/* In process: fills pfd with the children's pidfds (at most max); their
 * count. */
PEBBLE_HIDDEN int pb_reaper_poll(pb_reaper *r, struct pollfd *pfd, int max);
/* Sends sig to every process below root (walking parent links). */
PEBBLE_HIDDEN void pb_kill_descendants(pid_t root, int sig);
/* Registered children not reaped yet. */
PEBBLE_HIDDEN int pb_reaper_count(pb_reaper *r);
PEBBLE_HIDDEN void pb_reaper_free(pb_reaper *r);
PEBBLE_HIDDEN int pb_reaper_fd(pb_reaper *r);
/* Registers a new child. 0 or -1. */
PEBBLE_HIDDEN int pb_reaper_add(pb_reaper *r, pid_t pid);
/* Collects one exited child: returns its pid and stores the wait status,
 * 0 when none is ready, -1 on error. Call until it returns 0. */
PEBBLE_HIDDEN pid_t pb_reaper_next(pb_reaper *r, int *status);
/* Sends sig to a registered child that has not been reaped; with trees
 * set, to the processes it started too (see reaper.c). */
PEBBLE_HIDDEN int pb_reaper_kill(pb_reaper *r, pid_t pid, int sig);
/* SIGKILLs every registered child (with trees set, everything they
 * started, and every orphan adopted) and waits for each. */
PEBBLE_HIDDEN void pb_reaper_kill_all(pb_reaper *r);
/* Kill trees: each child leads its own process group, and the caller is a
 * subreaper. */
PEBBLE_HIDDEN void pb_reaper_set_trees(pb_reaper *r, int trees);

/* canceller.c: the thread of a worker that answers CANCEL frames while a
 * task runs. */
typedef struct pb_canceller pb_canceller;
/* Sets it up for cancel_fd (-1: none), answering on result_fd. NULL with a
 * Python exception set. */
PEBBLE_HIDDEN pb_canceller *pb_canceller_start(int result_fd, int cancel_fd);
/* Starts its thread, once. A worker does so when it starts its second
 * task: nothing is queued behind a worker's first (the pool has no
 * duration for it yet), and a thread costs a short-lived worker a good
 * part of a millisecond to start and take down. Cancels that came before
 * are read then; without a thread they travel in band. */
PEBBLE_HIDDEN void pb_canceller_listen(pb_canceller *c);
/* Before the main thread runs task id: 1 if it was cancelled (drop it),
 * else 0 with the task recorded as started. GIL held; released to wait. */
PEBBLE_HIDDEN int pb_canceller_take(pb_canceller *c, uint64_t id);
/* The main thread is done: nothing more is written. */
PEBBLE_HIDDEN void pb_canceller_stop(pb_canceller *c);
/* Whole frames on the result pipe: the main thread writes under this lock. */
PEBBLE_HIDDEN void pb_canceller_lock_write(pb_canceller *c);
PEBBLE_HIDDEN void pb_canceller_unlock_write(pb_canceller *c);

/* worker.c: worker_run() and the frame kinds Python sends. */
PEBBLE_HIDDEN int pebble_worker_init(PyObject *module);
PEBBLE_HIDDEN int pebble_frame_init(PyObject *module);
/* launcher.c: launcher_run() and set_parent_death_signal(). */
PEBBLE_HIDDEN int pebble_launcher_init(PyObject *module);

#endif /* PEBBLE_H */
