/* launcher.c - the launcher process, launcher_run().
 *
 * The launcher starts workers on request (fork, or posix_spawn of a fresh
 * interpreter), hands the pool their channel ends over SCM_RIGHTS, reaps
 * them and reports how they exited. It kills them all when the pool's
 * control socket closes.
 */
#include "frame.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

typedef struct {
    int ctl_fd;
    pb_reaper *reaper;
    char **argv;       /* spawn mode: the worker's command line */
    Py_buffer *frames; /* setup frames written into each new task pipe */
    uint32_t *kinds;
    int nframes;
    int trees; /* each worker leads a process group; kills take the tree */
} launcher;

static void
launcher_free_argv(char **argv)
{
    if (argv == NULL)
        return;
    for (char **a = argv; *a; a++)
        free(*a);
    free(argv);
}

/* Moves fd to a descriptor >= 10 so it cannot collide with 3, 4 and 5. */
static int
fd_high(int fd)
{
    return fcntl(fd, F_DUPFD_CLOEXEC, 10);
}

/* Starts a worker in spawn mode, its channel on fds 3 (tasks), 4 (results)
 * and 5 (cancels). Returns its pid or -1 with errno set. */
static pid_t
spawn_worker(launcher *L, int task_r, int result_w, int cancel_r)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    pid_t pid = -1;
    int hr = fd_high(task_r), hw = fd_high(result_w), hc = fd_high(cancel_r), rc;
    if (hr < 0 || hw < 0 || hc < 0) {
        rc = errno;
        goto done_fds;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, hr, 3);
    posix_spawn_file_actions_adddup2(&fa, hw, 4);
    posix_spawn_file_actions_adddup2(&fa, hc, 5);
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    short flags = POSIX_SPAWN_SETSIGMASK;
    if (L->trees) {
        posix_spawnattr_setpgroup(&attr, 0); /* a group of its own */
        flags |= POSIX_SPAWN_SETPGROUP;
    }
    posix_spawnattr_setflags(&attr, flags);
    rc = posix_spawn(&pid, L->argv[0], &fa, &attr, L->argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
done_fds:
    if (hr >= 0)
        close(hr);
    if (hw >= 0)
        close(hw);
    if (hc >= 0)
        close(hc);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return pid;
}

/* Handles a SPAWN request. In a forked worker *child_fds receives its
 * channel (task, result and cancel fds) and 1 is returned; otherwise 0,
 * or -1 with a Python error. */
static int
launcher_spawn(launcher *L, pb_ctl_msg *req, int child_fds[3])
{
    int tp[2] = {-1, -1}, rp[2] = {-1, -1}, cp[2] = {-1, -1};
    pb_ctl_msg reply = {PB_CTL_SPAWN_FAILED, req->slot, 0, 0, req->gen};
    pid_t pid;
    if (pb_pipe(tp) < 0 || pb_pipe(rp) < 0 || pb_pipe(cp) < 0) {
        reply.arg = errno;
        goto fail;
    }
    if (L->argv == NULL) {
        pid_t me = getpid();
        PyOS_BeforeFork();
        pid = fork();
        if (pid == 0) {
            if (L->trees)
                setpgid(0, 0); /* a group of its own, as its tasks' children */
            PyOS_AfterFork_Child();
            pb_set_parent_death_signal(me);
            close(L->ctl_fd);
            pb_reaper_free(L->reaper);
            L->reaper = NULL;
            close(tp[1]);
            close(rp[0]);
            close(cp[1]);
            child_fds[0] = tp[0];
            child_fds[1] = rp[1];
            child_fds[2] = cp[0];
            return 1;
        }
        int err = errno;
        if (pid > 0 && L->trees)
            setpgid(pid, pid); /* whichever of the two runs first */
        PyOS_AfterFork_Parent();
        errno = err;
    }
    else {
        pid = spawn_worker(L, tp[0], rp[1], cp[0]);
    }
    if (pid < 0) {
        reply.arg = errno;
        goto fail;
    }
    close(tp[0]);
    close(rp[1]);
    close(cp[0]);
    tp[0] = rp[1] = cp[0] = -1;
    pb_reaper_add(L->reaper, pid);
    /* The worker reads its setup frames before the first task. */
    for (int i = 0; i < L->nframes; i++) {
        int r;
        Py_BEGIN_ALLOW_THREADS
        r = pb_frame_write(tp[1], 0, L->kinds[i], &L->frames[i], 1, 0, NULL, 0);
        Py_END_ALLOW_THREADS
        if (r < 0)
            break; /* it died already: EXITED will tell */
    }
    reply.op = PB_CTL_SPAWNED;
    reply.pid = pid;
    int fds[3] = {tp[1], rp[0], cp[1]};
    pb_ctl_send(L->ctl_fd, &reply, fds, 3);
    close(tp[1]);
    close(rp[0]);
    close(cp[1]);
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (tp[i] >= 0)
            close(tp[i]);
        if (rp[i] >= 0)
            close(rp[i]);
        if (cp[i] >= 0)
            close(cp[i]);
    }
    pb_ctl_send(L->ctl_fd, &reply, NULL, 0);
    return 0;
}

static void
launcher_report_exits(launcher *L)
{
    int status;
    pid_t pid;
    while ((pid = pb_reaper_next(L->reaper, &status)) > 0) {
        pb_ctl_msg m = {PB_CTL_EXITED, 0, pid, status, 0};
        pb_ctl_send(L->ctl_fd, &m, NULL, 0);
    }
}

PyDoc_STRVAR(pebble_launcher_run_doc,
"launcher_run(ctl_fd, argv, frames, trees, /)\n--\n\n"
"Serve the pool's control socket. argv is None to fork workers from this\n"
"process, or the command line of a fresh worker interpreter; frames is a\n"
"list of (kind, bytes) written to each new worker first. With trees true,\n"
"killing a worker kills the processes its tasks started too. Return None\n"
"when the pool goes away, or (task_fd, result_fd, cancel_fd) inside a\n"
"forked worker.");

static PyObject *
pebble_launcher_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    launcher L;
    PyObject *result = NULL, *frames = NULL;
    memset(&L, 0, sizeof(L));
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "launcher_run() takes exactly 4 arguments");
        return NULL;
    }
    L.ctl_fd = PyLong_AsInt_compat(args[0]);
    if (L.ctl_fd == -1 && PyErr_Occurred())
        return NULL;
    if ((L.trees = PyObject_IsTrue(args[3])) < 0)
        return NULL;
    if (args[1] != Py_None) {
        PyObject *seq = PySequence_Fast(args[1], "argv must be a sequence of str");
        if (seq == NULL)
            return NULL;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        L.argv = calloc((size_t)n + 1, sizeof(char *));
        for (Py_ssize_t i = 0; L.argv && i < n; i++) {
            const char *s = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i));
            if (s == NULL || (L.argv[i] = strdup(s)) == NULL) {
                Py_DECREF(seq);
                if (!PyErr_Occurred())
                    PyErr_NoMemory();
                goto done;
            }
        }
        Py_DECREF(seq);
        if (L.argv == NULL || n == 0) {
            PyErr_SetString(PyExc_ValueError, "argv must not be empty");
            goto done;
        }
    }
    frames = PySequence_Fast(args[2], "frames must be a sequence");
    if (frames == NULL)
        goto done;
    L.nframes = (int)PySequence_Fast_GET_SIZE(frames);
    L.frames = calloc((size_t)L.nframes + 1, sizeof(Py_buffer));
    L.kinds = calloc((size_t)L.nframes + 1, sizeof(uint32_t));
    if (L.frames == NULL || L.kinds == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (int i = 0; i < L.nframes; i++) {
        int kind;
        Py_buffer view;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(frames, i), "iy*", &kind, &view)) {
            L.nframes = i;
            goto done;
        }
        L.kinds[i] = (uint32_t)kind;
        L.frames[i] = view;
    }
    L.reaper = pb_reaper_new();
    if (L.reaper == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    pb_reaper_set_trees(L.reaper, L.trees);

    for (;;) {
        struct pollfd pfd[2] = {
            {L.ctl_fd, POLLIN, 0},
            {pb_reaper_fd(L.reaper), POLLIN, 0},
        };
        int n;
        Py_BEGIN_ALLOW_THREADS
        do {
            n = poll(pfd, 2, -1);
        } while (n < 0 && errno == EINTR);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto shutdown;
        }
        if (pfd[1].revents)
            launcher_report_exits(&L);
        if (pfd[0].revents) {
            pb_ctl_msg m;
            int fds[PB_CTL_MAX_FDS];
            int r = pb_ctl_recv(L.ctl_fd, &m, fds);
            pb_ctl_close_fds(fds);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                result = Py_NewRef(Py_None);
                goto shutdown;
            }
            if (m.op == PB_CTL_SPAWN) {
                int child[3];
                int s = launcher_spawn(&L, &m, child);
                if (s == 1) {
                    result = Py_BuildValue("(iii)", child[0], child[1], child[2]);
                    goto done;
                }
            }
            else if (m.op == PB_CTL_KILL) {
                pb_reaper_kill(L.reaper, m.pid, m.arg);
            }
            else if (m.op == PB_CTL_EXIT) {
                result = Py_NewRef(Py_None);
                goto shutdown;
            }
        }
    }

shutdown:
    /* The pool is gone: no worker may outlive it. */
    pb_reaper_kill_all(L.reaper);
done:
    pb_reaper_free(L.reaper);
    for (int i = 0; i < L.nframes; i++)
        PyBuffer_Release(&L.frames[i]);
    free(L.frames);
    free(L.kinds);
    launcher_free_argv(L.argv);
    Py_XDECREF(frames);
    return result;
}

PyDoc_STRVAR(pebble_set_pdeathsig_doc,
"set_parent_death_signal(parent_pid, /)\n--\n\n"
"Have the kernel kill this process when its parent dies; exit at once if\n"
"parent_pid is no longer the parent.");

static PyObject *
pebble_set_pdeathsig(PyObject *module, PyObject *arg)
{
    int ppid = PyLong_AsInt_compat(arg);
    if (ppid == -1 && PyErr_Occurred())
        return NULL;
    pb_set_parent_death_signal((pid_t)ppid);
    Py_RETURN_NONE;
}

static PyMethodDef launcher_methods[] = {
    {"launcher_run",
     (PyCFunction)(void (*)(void))pebble_launcher_run,
     METH_FASTCALL,
     pebble_launcher_run_doc},
    {"set_parent_death_signal",
     (PyCFunction)pebble_set_pdeathsig,
     METH_O,
     pebble_set_pdeathsig_doc},
    {NULL, NULL, 0, NULL},
};

int
pebble_launcher_init(PyObject *module)
{
    return PyModule_AddFunctions(module, launcher_methods);
}
