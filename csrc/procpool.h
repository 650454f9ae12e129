/* procpool.h - private declarations of the ProcessPool engine.
 *
 * Shared by the files of the engine only: procpool.c (the Python type) and
 * the parts it is made of. A ProcCore and its tasks are guarded by its
 * mutex; a worker's pipe buffers belong to the I/O thread alone.
 */
#ifndef PEBBLE_PROCPOOL_H
#define PEBBLE_PROCPOOL_H

#include "frame.h"

/* How long a leaving I/O thread waits for the launcher to take its last
 * control messages. Longer only helps a launcher that is stopped or
 * starved; shorter makes such a pool's close() leave its workers to the
 * launcher's own exit (it kills them when the socket closes) sooner. */
#define EXIT_FLUSH_MS 2000

/* Time a killed worker gets between SIGTERM and SIGKILL. Longer lets a
 * task's cleanup handlers finish; shorter frees a worker slot sooner from
 * a task that ignores SIGTERM (its future is resolved at once either way). */
#define KILL_GRACE_NS (250LL * 1000000LL)

/* Bytes read from a result pipe at a time. Larger means fewer reads for
 * many small results, at that much memory per worker; the rest of a large
 * payload is read straight into its own block anyway. */
#define STAGE_SIZE (64 * 1024)

/* Tasks queued in a worker behind the one it runs. A deeper queue hides
 * more of the gap between a result and the next task; a shallower one
 * leaves more tasks pending, where any worker that frees up takes them and
 * cancel() needs no CANCEL frame. */
#define QDEPTH 4

/* Frames waiting to be written to one worker: its queued tasks plus the
 * CANCEL frames that may follow them. */
#define WQ_CAP 16

/* Task outcomes, decided by the I/O thread or by cancel()/stop(). */
enum {
    OUT_NONE = 0,
    OUT_RESULT,    /* data holds a RESULT frame payload */
    OUT_ERROR,     /* data holds an ERROR frame payload */
    OUT_TIMEOUT,   /* the deadline passed: TimeoutError */
    OUT_EXPIRED,   /* the worker died: ProcessExpired(exitcode, pid) */
    OUT_CANCELLED, /* cancelled through the future: nothing to do */
    OUT_STOPPED,   /* dropped by stop(): cancel the future */
    OUT_BROKEN,    /* the pool entered the error state */
    OUT_NOMEM,     /* its outcome's frame (len bytes) could not be allocated */
    OUT_CORRUPT,   /* its worker sent a corrupt frame (len) and was killed */
};

/* What broke the pool, exported as FAIL_*; Python words the error. */
enum {
    FAIL_NONE = 0,    /* the pool is sound */
    FAIL_INITIALIZER, /* the initializer raised: error_data is its pickled error */
    FAIL_STARTUP,     /* workers died before ready: error_errno is the exit code */
    FAIL_SPAWN,       /* workers could not be started: error_errno is the errno */
    FAIL_LAUNCHER,    /* the launcher process died */
};

/* Task states. */
enum { T_PENDING = 1, T_SENT, T_DONE };

/* One submitted call, from submit() until the completer frees it. */
typedef struct pp_task {
    uint64_t id;                 /* key in the task table, echoed by the worker */
    PyObject *future;            /* owned; touched only with the GIL */
    PyObject *payload;           /* owned bytes; its buffer is read by the I/O thread */
    Py_buffer *oob;              /* out-of-band pickle buffers, exported (GIL to release) */
    int noob;                    /* entries in oob */
    uint64_t *lens;              /* frame length table when noob > 0 */
    uint64_t frame_len;          /* payload bytes of its TASK frame */
    uint64_t frame_end;          /* stream offset, on its worker's task pipe, of its frame's end */
    int64_t timeout_ns;          /* -1: none */
    int64_t deadline;            /* set at dispatch */
    int state;                   /* T_* */
    int outcome;                 /* OUT_* once done */
    int cancel_requested;        /* cancel() while T_SENT: kill its worker */
    int on_started;              /* queued on the started list already */
    int delivered;               /* its frame was fully written to the worker */
    int cancel_sent;             /* a CANCEL frame went after it */
    int steal;                   /* that CANCEL takes it back for an idle worker */
    int64_t started_at;          /* when it became its worker's running task */
    struct pp_task *prev, *next; /* pending queue, then completion list */
    struct pp_task *snext;       /* started list (to mark futures running) */
    char *data;                  /* result payload (malloc), OUT_RESULT/OUT_ERROR */
    size_t len;                  /* bytes in data */
    uint32_t nbufs;              /* out-of-band buffers laid out in data */
    int exitcode;                /* OUT_EXPIRED */
    pid_t pid;                   /* OUT_EXPIRED: the worker that died; fork_call()'s child */
    int adopt_fd;                /* fork_call(): its child's result pipe, until adopted */
} pp_task;

/* Worker process states. */
enum {
    PROC_STARTING = 1, /* SPAWN sent, waiting for SPAWNED */
    PROC_ALIVE,        /* channels open */
    PROC_RETIRING,     /* task pipe closed after max_tasks: exits by itself */
    PROC_DYING,        /* killed: waiting for EXITED */
};

/* One worker process, from the SPAWN request until it is reaped. */
typedef struct pp_proc {
    int state;     /* PROC_* */
    uint64_t gen;  /* matches SPAWN with SPAWNED */
    pid_t pid;     /* known once SPAWNED arrived */
    int task_fd;   /* write end, non-blocking */
    int result_fd; /* read end, non-blocking */
    int cancel_fd; /* write end of its cancel pipe, non-blocking; -1 none */
    int ready;     /* READY received */
    int adopted;   /* forked by fork_call() for its one task */
    /* Its launcher died: ORPHAN_WATCHED it goes on, watched by pidfd and
     * signalled from here; ORPHAN_DYING it dies too, settled at EOF. */
    int orphan;
    int pidfd;               /* from a launcher process, -1 if none */
    int gone;                /* pidfd readable: it has exited */
    int eof;                 /* result pipe reached EOF */
    pp_task *task;           /* running (the head of its queue), or NULL */
    pp_task *queued[QDEPTH]; /* sent behind the running task, in order */
    int nqueued;             /* entries in queued */
    int64_t ewma_ns;         /* recent task duration, -1 unknown */
    uint64_t ntasks;         /* results received */
    int64_t kill_at;         /* SIGKILL escalation time, -1 none */
    /* Output: frames waiting to be written, the first one partly. */
    struct {
        pb_frame_hdr hdr;
        pp_task *task; /* payload source; NULL for control frames */
    } wq[WQ_CAP];
    int wq_head, wq_len; /* ring of WQ_CAP frames */
    size_t woff;         /* bytes of wq[wq_head] already written */
    uint64_t wqueued;    /* bytes ever queued on the task pipe */
    uint64_t wwritten;   /* bytes ever written to it */
    int wbusy;           /* frames are waiting to be written */
    int wwatch;          /* task_fd is watched for writability */
    int wfail;           /* the last write failed: channel broken */
    int rdata_ready;     /* stage or rdata got bytes to parse */
    /* Input: a staging buffer and the frame being assembled. */
    char *stage;
    size_t slen;        /* bytes in stage */
    pb_frame_reader rd; /* the frame being read, payload malloc'd */
} pp_proc;

/* Pool states. */
enum { S_RUNNING = 0, S_CLOSING, S_STOPPING, S_ERROR };

/* The engine of one ProcessPool. */
typedef struct {
    PyObject_HEAD
    pthread_mutex_t mutex;    /* guards everything below but the procs' pipe buffers */
    pthread_cond_t done_cond; /* completer: completions or finish */
    int synced;               /* mutex and done_cond initialised */
    int max_workers;          /* worker processes at most */
    uint64_t max_tasks;       /* tasks per worker before it retires, 0: no limit */
    int spare;                /* elastic mode (>= 0): busy + pending + spare workers */
    pid_t owner;              /* the process that created the engine */
    unsigned long fork_gen;   /* pb_fork_generation when created */
    int state;                /* S_* */
    int finished;             /* the I/O thread has left */
    int io_started;           /* run() created io_thread */
    pthread_t io_thread;
    pb_loop *loop; /* what the I/O thread waits in */
    int ctl_fd;    /* launcher control socket (non-blocking) */
    int ctl_eof;   /* the launcher is gone */
    /* Control messages the socket could not take yet, oldest first. */
    pb_ctl_msg *ctlq;
    int ctlq_head, ctlq_len, ctlq_cap; /* ring of ctlq_cap messages */
    int ctl_wwatch;                    /* ctl_fd is watched for writability */
    /* Pending queue (doubly linked, FIFO). */
    pp_task *pend_head, *pend_tail;
    Py_ssize_t npending; /* tasks in the pending queue */
    /* fork_call() children the I/O thread has not made workers yet, and
     * the forks under way (the I/O thread does not leave meanwhile). */
    pp_task *adopt_head, *adopt_tail;
    int nforking;
    /* Tasks waiting for the completer. */
    pp_task *done_head, *done_tail;
    /* Tasks whose futures the completer must mark running. */
    pp_task *started_head, *started_tail;
    /* Task table: id -> task while the task is pending or sent. */
    pp_task **table;
    size_t table_cap, table_len; /* slots (a power of two) and tasks in them */
    uint64_t next_id;            /* id of the next submitted task */
    uint64_t next_gen;           /* generation of the last SPAWN */
    int ncancel;                 /* cancel requests for sent tasks */
    /* Worker processes, including dying ones. */
    pp_proc *procs;
    int nprocs, procs_cap;
    int spawn_failures;     /* consecutive SPAWN_FAILED replies */
    int max_start_failures; /* the pool breaks after this many of either */
    int startup_failures;   /* consecutive workers dead before READY, SIGKILL aside */
    int has_initializer;    /* workers run an initializer at start */
    /* Workers are forked or spawned by a thread of this process that needs
     * the GIL: a replacement waits until the completer has resolved what
     * finished, so a timeout or a crash is reported before the fork. */
    int inproc;
    int completing;  /* the completer is resolving a batch */
    int spawn_waits; /* a spawn waits for it: wake the I/O thread after */
    /* A launcher process that dies is replaced (run() was given relaunch):
     * the completer starts the new one and hands its socket to the I/O
     * thread. */
    int relaunchable;
    int relaunch;    /* RELAUNCH_*: where a replacement stands */
    int relaunch_fd; /* its control socket, RELAUNCH_READY */
    int trees;       /* kills of orphans take their process trees */
    /* The error that broke the pool (an INIT_ERROR payload), or an errno. */
    char *error_data;
    size_t error_len;
    int error_errno; /* errno or exit code of that failure */
    int error_what;  /* FAIL_*: what failed */
} ProcCore;

/* ------------------------------------------------------------------ */
/* tasktable.c: task table, pending queue, completion list             */
/* ------------------------------------------------------------------ */

/* Adds t under t->id. 0 or -1 (out of memory). Mutex held. */
PEBBLE_HIDDEN int tt_insert(ProcCore *self, pp_task *t);
/* The pending or sent task with that id, or NULL. Mutex held. */
PEBBLE_HIDDEN pp_task *tt_find(ProcCore *self, uint64_t id);
/* Appends a new task to the pending queue; 1 if the queue was empty. */
PEBBLE_HIDDEN int pend_push_back(ProcCore *self, pp_task *t);
/* Takes t out of the pending queue. Mutex held. */
PEBBLE_HIDDEN void pend_unlink(ProcCore *self, pp_task *t);
/* Puts t back at the head of the pending queue (it never started). */
PEBBLE_HIDDEN void pend_push_front(ProcCore *self, pp_task *t);
/* Records t's OUT_* outcome and hands t to the completer (once). */
PEBBLE_HIDDEN void task_finish(ProcCore *self, pp_task *t, int outcome);
/* Releases t and everything it owns. GIL held. */
PEBBLE_HIDDEN void task_free(pp_task *t);

/* ------------------------------------------------------------------ */
/* block.c                                                              */
/* ------------------------------------------------------------------ */

/* Wraps t->data in *block (a new Block taking ownership of it, the first
 * time) and returns a memoryview of [off, off + len). New reference, or
 * NULL with an exception set. */
PEBBLE_HIDDEN PyObject *block_view(PyTypeObject *block_type, pp_task *t, PyObject **block,
                                   size_t off, size_t len);

/* ------------------------------------------------------------------ */
/* complete.c                                                           */
/* ------------------------------------------------------------------ */

/* What the completer needs besides the pool; references borrowed. */
typedef struct {
    PyObject *resolve;       /* Python: resolve(future, outcome, timeout, exitcode, pid) */
    PyObject *invalid_state; /* concurrent.futures.InvalidStateError */
    PyTypeObject *block_type;
    PyObject *relaunch; /* Python: relaunch() -> control socket fd, or NULL */
} completer_ctx;

/* The exit code of a worker whose status is not known (a dead launcher's). */
#include <limits.h>
#define PB_EXIT_UNKNOWN INT_MIN

/* pp_proc.orphan */
enum { ORPHAN_NONE, ORPHAN_WATCHED, ORPHAN_DYING };

/* ProcCore.relaunch */
enum { RELAUNCH_NONE, RELAUNCH_WANTED, RELAUNCH_STARTING, RELAUNCH_READY, RELAUNCH_FAILED };

/* Resolves finished tasks' futures until the I/O thread has left and
 * none is left. GIL held; released while waiting. */
PEBBLE_HIDDEN void pp_complete(ProcCore *self, pebble_state *st, completer_ctx *cx);

/* ------------------------------------------------------------------ */
/* ioloop.c: the I/O thread                                             */
/* ------------------------------------------------------------------ */

/* The I/O thread's body; arg is the ProcCore. Leaves once the pool has
 * stopped or drained and every worker is gone. */
PEBBLE_HIDDEN void *io_main(void *arg);

/* Queues a frame for p. Returns 0, or -1 when its output queue is full. */
PEBBLE_HIDDEN int wq_push(pp_proc *p, uint32_t kind, uint64_t id, pp_task *t);
/* Asks p to drop t, queued behind its running task, if it has not
 * started it: on the cancel pipe, else in band. 0, or -1 when neither
 * can take the frame now. */
PEBBLE_HIDDEN int proc_send_cancel(pp_proc *p, pp_task *t);
/* Reads and parses everything available now from p's result pipe. */
PEBBLE_HIDDEN void proc_read(ProcCore *self, pp_proc *p);
/* Queues a control message for the launcher and sends what it can. */
PEBBLE_HIDDEN void ctl_post(ProcCore *self, pb_ctl_msg m);
/* Asks the launcher to send sig to pid. */
PEBBLE_HIDDEN void ctl_kill(ProcCore *self, pid_t pid, int sig);

/* ------------------------------------------------------------------ */
/* lifecycle.c: worker processes (I/O thread, mutex held)              */
/* ------------------------------------------------------------------ */

/* A new entry of the process table in *state*; NULL if it cannot grow. */
PEBBLE_HIDDEN pp_proc *proc_new(ProcCore *self, int state);
/* Sends sig to a worker: through its launcher, or from here when that
 * launcher died. */
PEBBLE_HIDDEN void proc_signal(ProcCore *self, pp_proc *p, int sig);
/* Asks the launcher for a new worker. */
PEBBLE_HIDDEN void proc_spawn(ProcCore *self);
/* Tells an idle worker to exit by itself; 0 if it must be asked later. */
PEBBLE_HIDDEN int proc_retire(ProcCore *self, pp_proc *p);
/* Kills a worker whose running task is finished already (SIGTERM, then
 * SIGKILL); tasks queued behind it go back to the pending queue. */
PEBBLE_HIDDEN void proc_kill(ProcCore *self, pp_proc *p);
/* Closes p's pipes and drops its buffers. */
PEBBLE_HIDDEN void proc_close_channels(ProcCore *self, pp_proc *p);
/* Sends the tasks queued behind p's running task back to the pending
 * queue, or drops those cancelled meanwhile. */
PEBBLE_HIDDEN void proc_requeue_queued(ProcCore *self, pp_proc *p);
/* Forgets procs[i] (the last one takes its place). */
PEBBLE_HIDDEN void proc_remove(ProcCore *self, int i);
/* Puts the pool in the error state: every task fails, workers are killed. */
PEBBLE_HIDDEN void pool_break(ProcCore *self, int what, int err);
/* Settles what the worker pid was given; it exited with that wait status. */
PEBBLE_HIDDEN void proc_exited(ProcCore *self, pid_t pid, int status);
/* p's task pipe broke: requeues what it never received, kills it. */
PEBBLE_HIDDEN void proc_write_failed(ProcCore *self, pp_proc *p);

/* ------------------------------------------------------------------ */
/* forkcall.c: calls run in a fork of the caller                        */
/* ------------------------------------------------------------------ */

/* ProcCore.fork_call(), the Python method, and its docstring. */
PEBBLE_HIDDEN extern const char ProcCore_fork_call_doc[];
PEBBLE_HIDDEN PyObject *ProcCore_fork_call(ProcCore *self, PyObject *const *args,
                                           Py_ssize_t nargs);
/* Makes the children fork_call() started workers (I/O thread, mutex held). */
PEBBLE_HIDDEN void adopt_pending(ProcCore *self);

/* ------------------------------------------------------------------ */
/* sched.c: which worker runs what (I/O thread, mutex held)            */
/* ------------------------------------------------------------------ */

/* Keeps the worker count and hands pending tasks to workers. */
PEBBLE_HIDDEN void schedule_work(ProcCore *self);
/* When tasks queued behind a running one should be taken back for an
 * idle worker (-1: no such moment); schedule_work() does it then. */
PEBBLE_HIDDEN int64_t sched_next_steal(ProcCore *self);
/* t became the task p runs: its timeout starts now, or when p is ready. */
PEBBLE_HIDDEN void task_start(ProcCore *self, pp_proc *p, pp_task *t);
/* Queues t for the completer to mark its future running. */
PEBBLE_HIDDEN void task_mark_started(ProcCore *self, pp_task *t);
/* Counts a task that took that long into p's recent task duration. */
PEBBLE_HIDDEN void sched_note_duration(pp_proc *p, int64_t took_ns);

#endif /* PEBBLE_PROCPOOL_H */
