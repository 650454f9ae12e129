/* launcher.c - the launcher process, launcher_run().
 *
 * The launcher starts workers on request (fork, or posix_spawn of a fresh
 * interpreter), hands the pool their channel ends over SCM_RIGHTS, reaps
 * them and reports how they exited. It kills them all when the pool's
 * control socket closes. It is a process of its own (forkserver, and where
 * pidfds are missing) or a thread of the pool's process (fork and spawn).
 */
#include "frame.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef struct {
    int ctl_fd;
    pb_reaper *reaper;
    char **argv;       /* spawn mode: the worker's command line */
    Py_buffer *frames; /* setup frames written into each new task pipe */
    uint32_t *kinds;
    int nframes;
    int trees;  /* each worker leads a process group; kills take the tree */
    int inproc; /* a thread of the pool's own process (fork and spawn) */
    pid_t pool; /* a process of its own: the pool's, which its workers watch */
    /* Workers the caller forked at the pool's start (prefork()), handed out
     * before any is forked here: pid and channel ends, -1 once taken. */
    struct {
        pid_t pid;
        int fds[3];
    } * stock;
    int nstock;
} launcher;

/* Hands the pool a worker from the stock for req: 1 if one was left. */
static int
launcher_take_stock(launcher *L, pb_ctl_msg *req)
{
    for (int i = 0; i < L->nstock; i++) {
        if (L->stock[i].pid <= 0)
            continue;
        pb_ctl_msg reply = {PB_CTL_SPAWNED, req->slot, L->stock[i].pid, 0, req->gen};
        int *fds = L->stock[i].fds;
        for (int k = 0; k < L->nframes; k++) {
            int r;
            Py_BEGIN_ALLOW_THREADS
            r = pb_frame_write(fds[0], 0, L->kinds[k], &L->frames[k], 1, 0, NULL, 0);
            Py_END_ALLOW_THREADS
            if (r < 0)
                break; /* it died already: EXITED will tell */
        }
        pb_ctl_send(L->ctl_fd, &reply, fds, 3);
        for (int k = 0; k < 3; k++)
            pb_fd_close(fds[k]);
        L->stock[i].pid = -1;
        return 1;
    }
    return 0;
}

/* A stocked worker that died before it was handed out is no news to the
 * pool: it is forgotten. 1 if pid was one. */
static int
launcher_drop_stock(launcher *L, pid_t pid)
{
    for (int i = 0; i < L->nstock; i++) {
        if (L->stock[i].pid == pid) {
            for (int k = 0; k < 3; k++)
                pb_fd_close(L->stock[i].fds[k]);
            L->stock[i].pid = -1;
            return 1;
        }
    }
    return 0;
}

/* The thread of exit_with(): ends the process once its pidfd is readable. */
static void *
exit_with_main(void *arg)
{
    struct pollfd pfd = {(int)(intptr_t)arg, POLLIN, 0};
    while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
        ;
    _exit(70);
    return NULL;
}

/* Ends this process when process pid ends, by a thread watching its pidfd:
 * 0, or -1 where it cannot be watched. */
static int
exit_with(pid_t pid)
{
    int fd = pb_pidfd_open(pid);
    if (fd < 0)
        return -1;
    pthread_attr_t attr;
    pthread_t thread;
    sigset_t all, old;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals belong to the main thread */
    int rc = pthread_create(&thread, &attr, exit_with_main, (void *)(intptr_t)fd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        close(fd);
        return -1;
    }
    return 0;
}

/* The common setup of a forked worker, in the child: a process group of
 * its own (trees), its tasks' orphans kept below it when no launcher
 * process adopts them, and an end with its parent. A worker of a launcher
 * process ends with the pool instead where it can (pool > 0): it outlives
 * a launcher that is killed, and goes on serving. */
static void
forked_worker_setup(int trees, int subreaper, pid_t watch_parent, pid_t pool)
{
    if (trees)
        setpgid(0, 0); /* a group of its own, as its tasks' children */
    PyOS_AfterFork_Child();
    if (watch_parent > 0 && (pool <= 0 || exit_with(pool) < 0))
        pb_set_parent_death_signal(watch_parent);
    if (trees && subreaper)
        pb_set_child_subreaper();
}

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
    /* The GIL is held: os.environ cannot change the environment meanwhile
     * (in process, the other threads are the caller's). */
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
            /* In process, the forking thread is the launcher's: it lives
             * as long as the pool. */
            forked_worker_setup(L->trees, L->inproc, me, L->pool);
            if (!L->inproc)
                close(L->ctl_fd); /* in process, registered: closed at the fork */
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
    if (pb_reaper_add(L->reaper, pid) < 0) {
        /* Nothing could tell of its exit: it must not run. */
        reply.arg = errno ? errno : EMFILE;
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        goto fail;
    }
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
    /* A launcher process sends a pidfd too: its workers outlive it, and
     * the pool then watches them itself. */
    int pidfd = L->pool > 0 ? pb_pidfd_open(pid) : -1;
    int fds[4] = {tp[1], rp[0], cp[1], pidfd};
    pb_ctl_send(L->ctl_fd, &reply, fds, pidfd >= 0 ? 4 : 3);
    close(tp[1]);
    close(rp[0]);
    close(cp[1]);
    if (pidfd >= 0)
        close(pidfd);
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
        if (launcher_drop_stock(L, pid))
            continue;
        pb_ctl_msg m = {PB_CTL_EXITED, 0, pid, status, 0};
        pb_ctl_send(L->ctl_fd, &m, NULL, 0);
    }
}

PyDoc_STRVAR(pebble_launcher_run_doc,
"launcher_run(ctl_fd, argv, frames, trees, inproc=False, stock=None, /)\n--\n\n"
"Serve the pool's control socket. argv is None to fork workers from this\n"
"process, or the command line of a fresh worker interpreter; frames is a\n"
"list of (kind, bytes) written to each new worker first. With trees true,\n"
"killing a worker kills the processes its tasks started too. With inproc\n"
"true this is a thread of the pool's own process: workers are its children\n"
"(forks of it at the moment they start, or fresh interpreters it spawns),\n"
"exits are learnt from pidfds, and no other child of the process is\n"
"touched; stock lists the workers prefork() made, handed out first.\n"
"Return None when the pool goes away,\n"
"or (task_fd, result_fd, cancel_fd) inside a forked worker.");

static PyObject *
pebble_launcher_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    launcher L;
    PyObject *result = NULL, *frames = NULL;
    memset(&L, 0, sizeof(L));
    struct pollfd *pfd = NULL;
    int pfd_cap = 0;
    if (nargs < 4 || nargs > 6) {
        PyErr_SetString(PyExc_TypeError, "launcher_run() takes 4 to 6 arguments");
        return NULL;
    }
    if (nargs >= 5 && (L.inproc = PyObject_IsTrue(args[4])) < 0)
        return NULL;
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
    if (!L.inproc && args[1] == Py_None)
        L.pool = getppid(); /* forked workers watch the pool, not this process */
    L.reaper = L.inproc ? pb_reaper_new_inproc() : pb_reaper_new();
    if (L.reaper == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    pb_reaper_set_trees(L.reaper, L.trees);
    if (L.inproc)
        pb_fd_register(L.ctl_fd); /* no other child of the process may hold it */
    if (nargs == 6 && args[5] != Py_None && L.inproc) {
        PyObject *seq = PySequence_Fast(args[5], "stock must be a sequence");
        if (seq == NULL)
            goto shutdown;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        L.stock = calloc((size_t)n + 1, sizeof(*L.stock));
        if (L.stock == NULL) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            goto shutdown;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            int pid, t, r, c;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iiii", &pid, &t, &r, &c)) {
                Py_DECREF(seq);
                goto shutdown;
            }
            L.stock[L.nstock].pid = pid;
            L.stock[L.nstock].fds[0] = t;
            L.stock[L.nstock].fds[1] = r;
            L.stock[L.nstock].fds[2] = c;
            L.nstock++;
            if (pb_reaper_add(L.reaper, pid) < 0)
                kill(pid, SIGKILL); /* reaped and dropped with the stock below */
        }
        Py_DECREF(seq);
    }

    for (;;) {
        /* The control socket, then the SIGCHLD pipe or (in process) one
         * pidfd per child. */
        int want = 2 + (L.inproc ? pb_reaper_count(L.reaper) : 0);
        if (want > pfd_cap) {
            struct pollfd *grown = realloc(pfd, (size_t)want * 2 * sizeof(*pfd));
            if (grown == NULL) {
                PyErr_NoMemory();
                goto shutdown;
            }
            pfd = grown;
            pfd_cap = want * 2;
        }
        pfd[0].fd = L.ctl_fd;
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        int npfd = 1;
        if (L.inproc) {
            npfd += pb_reaper_poll(L.reaper, pfd + 1, pfd_cap - 1);
        }
        else {
            pfd[1].fd = pb_reaper_fd(L.reaper);
            pfd[1].events = POLLIN;
            pfd[1].revents = 0;
            npfd = 2;
        }
        /* Everything but a fork runs without the GIL: in process, the
         * pool's completer must not wait behind a kill or a reap. */
        int n, exited = 0, r = 0, err = 0, got = 0;
        pb_ctl_msg m;
        Py_BEGIN_ALLOW_THREADS
        do {
            n = poll(pfd, (nfds_t)npfd, -1);
        } while (n < 0 && errno == EINTR);
        err = errno;
        if (n >= 0) {
            for (int i = 1; i < npfd; i++)
                exited |= pfd[i].revents != 0;
            if (exited)
                launcher_report_exits(&L);
            if (pfd[0].revents) {
                int fds[PB_CTL_MAX_FDS];
                r = pb_ctl_recv(L.ctl_fd, &m, fds);
                err = errno;
                pb_ctl_close_fds(fds);
                got = 1;
                if (r > 0 && m.op == PB_CTL_KILL) {
                    pb_reaper_kill(L.reaper, m.pid, m.arg);
                    got = 0;
                }
                else if (r > 0 && m.op == PB_CTL_ADOPT) {
                    got = 0;
                    if (L.inproc && pb_reaper_add(L.reaper, m.pid) < 0) {
                        /* Unwatched, it would never be reported: end it now. */
                        kill(m.pid, SIGKILL);
                        int status = 0;
                        while (waitpid(m.pid, &status, 0) < 0 && errno == EINTR)
                            ;
                        pb_ctl_msg e = {PB_CTL_EXITED, 0, m.pid, status, 0};
                        pb_ctl_send(L.ctl_fd, &e, NULL, 0);
                    }
                }
            }
        }
        Py_END_ALLOW_THREADS
        if (n < 0) {
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            goto shutdown;
        }
        if (!got)
            continue;
        if (r <= 0) {
            if (r < 0 && (err == EAGAIN || err == EINTR))
                continue;
            result = Py_NewRef(Py_None);
            goto shutdown;
        }
        if (m.op == PB_CTL_SPAWN && launcher_take_stock(&L, &m))
            continue;
        if (m.op == PB_CTL_SPAWN) {
            int child[3];
            if (launcher_spawn(&L, &m, child) == 1) {
                result = Py_BuildValue("(iii)", child[0], child[1], child[2]);
                goto done;
            }
        }
        else if (m.op == PB_CTL_EXIT) {
            result = Py_NewRef(Py_None);
            goto shutdown;
        }
    }

shutdown:
    /* The pool is gone: no worker may outlive it. */
    Py_BEGIN_ALLOW_THREADS
    pb_reaper_kill_all(L.reaper);
    Py_END_ALLOW_THREADS
    if (L.inproc)
        pb_fd_close(L.ctl_fd);
done:
    for (int i = 0; i < L.nstock; i++)
        if (L.stock[i].pid > 0)
            for (int k = 0; k < 3; k++)
                pb_fd_close(L.stock[i].fds[k]);
    free(L.stock);
    free(pfd);
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

PyDoc_STRVAR(pebble_prefork_doc,
"prefork(n, trees, main_thread, /)\n--\n\n"
"Fork n workers of a fork-mode pool from the calling thread, now. In the\n"
"parent return (False, [(pid, task_fd, result_fd, cancel_fd), ...]), the\n"
"pool's ends, for launcher_run()'s stock; in a worker (True, (task_fd,\n"
"result_fd, cancel_fd)). A worker outlives its forking thread only if that\n"
"is not the main thread.");

/* A worker prefork() made that no launcher will have: killed, reaped, and
 * its channels closed. */
static void
discard_preforked(pid_t pid, int task_fd, int result_fd, int cancel_fd)
{
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    pb_fd_close(task_fd);
    pb_fd_close(result_fd);
    pb_fd_close(cancel_fd);
}

static PyObject *
pebble_prefork(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *list = NULL, *result = NULL;
    int n, trees, main_thread;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "prefork() takes exactly 3 arguments");
        return NULL;
    }
    n = PyLong_AsInt_compat(args[0]);
    if ((n == -1 && PyErr_Occurred()) || (trees = PyObject_IsTrue(args[1])) < 0
        || (main_thread = PyObject_IsTrue(args[2])) < 0)
        return NULL;
    list = PyList_New(0);
    if (list == NULL)
        return NULL;
    pid_t me = getpid();
    for (int i = 0; i < n; i++) {
        int tp[2] = {-1, -1}, rp[2] = {-1, -1}, cp[2] = {-1, -1};
        pid_t pid = -1;
        int err = 0;
        if (pb_pipe(tp) < 0 || pb_pipe(rp) < 0 || pb_pipe(cp) < 0) {
            err = errno;
        }
        else {
            PyOS_BeforeFork();
            pid = fork();
            if (pid == 0) {
                forked_worker_setup(trees, 1, main_thread ? me : 0, 0);
                Py_CLEAR(list); /* the parent's: only closed here */
                close(tp[1]);
                close(rp[0]);
                close(cp[1]);
                return Py_BuildValue("(O(iii))", Py_True, tp[0], rp[1], cp[0]);
            }
            err = errno;
            if (pid > 0 && trees)
                setpgid(pid, pid);
            PyOS_AfterFork_Parent();
        }
        for (int k = 0; k < 2; k++) {
            if (tp[k] >= 0 && (pid < 0 || k == 0))
                close(tp[k]);
            if (rp[k] >= 0 && (pid < 0 || k == 1))
                close(rp[k]);
            if (cp[k] >= 0 && (pid < 0 || k == 0))
                close(cp[k]);
        }
        if (pid < 0)
            break; /* the launcher forks what is missing later */
        (void)err;
        pb_fd_register(tp[1]);
        pb_fd_register(rp[0]);
        pb_fd_register(cp[1]);
        PyObject *entry = Py_BuildValue("(iiii)", (int)pid, tp[1], rp[0], cp[1]);
        if (entry == NULL || PyList_Append(list, entry) < 0) {
            Py_XDECREF(entry);
            discard_preforked(pid, tp[1], rp[0], cp[1]);
            goto error;
        }
        Py_DECREF(entry);
    }
    result = Py_BuildValue("(OO)", Py_False, list);
error:
    if (result == NULL && list != NULL) {
        /* No stock without its launcher: they must not run. */
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
            int pid, t, r, c;
            if (PyArg_ParseTuple(PyList_GET_ITEM(list, i), "iiii", &pid, &t, &r, &c))
                discard_preforked(pid, t, r, c);
        }
    }
    Py_XDECREF(list);
    return result;
}

PyDoc_STRVAR(pebble_kill_descendants_doc,
"kill_descendants(sig, /)\n--\n\n"
"Send sig to every process below this one.");

static PyObject *
pebble_kill_descendants(PyObject *module, PyObject *arg)
{
    int sig = PyLong_AsInt_compat(arg);
    if (sig == -1 && PyErr_Occurred())
        return NULL;
    pb_kill_descendants(getpid(), sig);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(pebble_can_fork_in_process_doc,
"can_fork_in_process()\n--\n\n"
"True where this process can watch its own children by pidfd, without a\n"
"SIGCHLD handler: fork-mode workers and calls are then forks of it.");

static PyObject *
pebble_can_fork_in_process(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    int fd = pb_pidfd_open(getpid());
    if (fd < 0)
        Py_RETURN_FALSE;
    close(fd);
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(pebble_set_child_subreaper_doc,
"set_child_subreaper()\n--\n\n"
"Make this process the reaper of its orphaned descendants.");

static PyObject *
pebble_set_child_subreaper(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    if (pb_set_child_subreaper() < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(pebble_ctl_socketpair_doc,
"ctl_socketpair()\n--\n\n"
"A connected pair of SOCK_SEQPACKET sockets for a launcher's control\n"
"channel, as (fd, fd): numbered 10 or above, and closed in any process\n"
"forked from here, from their creation on. Close them with fd_close().");

static PyObject *
pebble_ctl_socketpair(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    int sv[2];
    if (pb_ctl_socketpair(sv) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *r = Py_BuildValue("(ii)", sv[0], sv[1]);
    if (r == NULL) {
        pb_fd_close(sv[0]);
        pb_fd_close(sv[1]);
    }
    return r;
}

PyDoc_STRVAR(pebble_fd_close_doc,
"fd_close(fd, /)\n--\n\n"
"Close a descriptor of ctl_socketpair() (or another the extension tracks).");

static PyObject *
pebble_fd_close(PyObject *module, PyObject *arg)
{
    int fd = PyLong_AsInt_compat(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    pb_fd_close(fd);
    Py_RETURN_NONE;
}

static PyMethodDef launcher_methods[] = {
    {"ctl_socketpair", (PyCFunction)pebble_ctl_socketpair, METH_NOARGS, pebble_ctl_socketpair_doc},
    {"fd_close", (PyCFunction)pebble_fd_close, METH_O, pebble_fd_close_doc},
    {"set_child_subreaper",
     (PyCFunction)pebble_set_child_subreaper,
     METH_NOARGS,
     pebble_set_child_subreaper_doc},
    {"prefork", (PyCFunction)(void (*)(void))pebble_prefork, METH_FASTCALL, pebble_prefork_doc},
    {"kill_descendants",
     (PyCFunction)pebble_kill_descendants,
     METH_O,
     pebble_kill_descendants_doc},
    {"can_fork_in_process",
     (PyCFunction)pebble_can_fork_in_process,
     METH_NOARGS,
     pebble_can_fork_in_process_doc},
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
