/* platform_posix.c - plain-POSIX event loop: poll(), a wake-up pipe, and
 * SIGCHLD through a self-pipe with waitpid() for the launcher's children. */
#include "pebble.h"

#if !defined(__linux__) || defined(PEBBLE_FORCE_POSIX)

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

struct pb_loop {
    int wake[2];              /* self-pipe for pb_loop_wake() */
    struct pollfd *fds;       /* fds[0] is the wake pipe */
    int count, cap;
};

pb_loop *
pb_loop_new(void)
{
    pb_loop *loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return NULL;
    if (pb_pipe(loop->wake) < 0) {
        free(loop);
        return NULL;
    }
    pb_set_nonblock(loop->wake[0]);
    pb_set_nonblock(loop->wake[1]);
    pb_fd_register(loop->wake[0]);
    pb_fd_register(loop->wake[1]);
    loop->cap = 16;
    loop->fds = calloc((size_t)loop->cap, sizeof(struct pollfd));
    if (loop->fds == NULL) {
        pb_loop_free(loop, 1);
        return NULL;
    }
    loop->fds[0].fd = loop->wake[0];
    loop->fds[0].events = POLLIN;
    loop->count = 1;
    return loop;
}

void
pb_loop_free(pb_loop *loop, int close_fds)
{
    if (loop == NULL)
        return;
    int saved = errno;
    if (close_fds) {
        pb_fd_close(loop->wake[0]);
        pb_fd_close(loop->wake[1]);
    }
    free(loop->fds);
    free(loop);
    errno = saved;
}

int
pb_loop_watch(pb_loop *loop, int fd, int events)
{
    short want = (short)(((events & PB_EV_READ) ? POLLIN : 0) | ((events & PB_EV_WRITE) ? POLLOUT : 0));
    for (int i = 1; i < loop->count; i++) {
        if (loop->fds[i].fd == fd) {
            if (events == 0)
                loop->fds[i] = loop->fds[--loop->count];
            else
                loop->fds[i].events = want;
            return 0;
        }
    }
    if (events == 0)
        return 0;
    if (loop->count == loop->cap) {
        struct pollfd *fds = realloc(loop->fds, (size_t)loop->cap * 2 * sizeof(*fds));
        if (fds == NULL)
            return -1;
        loop->fds = fds;
        loop->cap *= 2;
    }
    loop->fds[loop->count].fd = fd;
    loop->fds[loop->count].events = want;
    loop->fds[loop->count].revents = 0;
    loop->count++;
    return 0;
}

int
pb_loop_wait(pb_loop *loop, int64_t deadline_ns, pb_event *events, int max)
{
    int n;
    for (;;) {
        int timeout_ms = -1;
        if (deadline_ns >= 0) {
            int64_t left = deadline_ns - pebble_now_ns();
            if (left <= 0)
                return 0;
            /* Round up: waking early would only loop again. */
            int64_t ms = (left + 999999) / 1000000;
            timeout_ms = ms > 86400000 ? 86400000 : (int)ms;
        }
        n = poll(loop->fds, (nfds_t)loop->count, timeout_ms);
        if (n >= 0)
            break;
        if (errno != EINTR)
            return -1;
    }
    int out = 0;
    if (loop->fds[0].revents) {
        char buf[256];
        while (read(loop->wake[0], buf, sizeof(buf)) > 0)
            ;
    }
    for (int i = 1; i < loop->count && out < max; i++) {
        short re = loop->fds[i].revents;
        if (!re)
            continue;
        events[out].fd = loop->fds[i].fd;
        events[out].events = ((re & POLLIN) ? PB_EV_READ : 0) | ((re & POLLOUT) ? PB_EV_WRITE : 0)
                             | ((re & (POLLERR | POLLHUP | POLLNVAL)) ? PB_EV_ERROR | PB_EV_READ : 0);
        out++;
    }
    return out;
}

void
pb_loop_wake(pb_loop *loop)
{
    char c = 0;
    ssize_t r = write(loop->wake[1], &c, 1);
    (void)r;
}

void
pb_set_parent_death_signal(pid_t expected_parent)
{
    /* Without a kernel hook the worker relies on EOF of its channel. */
    if (getppid() != expected_parent)
        _exit(70);
}

/* Children are tracked by pid; SIGCHLD writes to a self-pipe. */
struct pb_reaper {
    int pipe[2];
    pid_t *pids;
    int count, cap;
};

static int reaper_signal_fd = -1;

static void
reaper_on_sigchld(int signo)
{
    int saved = errno;
    char c = 0;
    if (reaper_signal_fd >= 0) {
        ssize_t r = write(reaper_signal_fd, &c, 1);
        (void)r;
    }
    errno = saved;
}

pb_reaper *
pb_reaper_new(void)
{
    pb_reaper *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    if (pb_pipe(r->pipe) < 0) {
        free(r);
        return NULL;
    }
    pb_set_nonblock(r->pipe[0]);
    pb_set_nonblock(r->pipe[1]);
    reaper_signal_fd = r->pipe[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = reaper_on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    return r;
}

void
pb_reaper_free(pb_reaper *r)
{
    if (r == NULL)
        return;
    signal(SIGCHLD, SIG_DFL);
    reaper_signal_fd = -1;
    close(r->pipe[0]);
    close(r->pipe[1]);
    free(r->pids);
    free(r);
}

int
pb_reaper_fd(pb_reaper *r)
{
    return r->pipe[0];
}

int
pb_reaper_add(pb_reaper *r, pid_t pid)
{
    if (r->count == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        pid_t *p = realloc(r->pids, (size_t)cap * sizeof(*p));
        if (p == NULL)
            return -1;
        r->pids = p;
        r->cap = cap;
    }
    r->pids[r->count++] = pid;
    /* The child may have exited before it was registered. */
    reaper_on_sigchld(SIGCHLD);
    return 0;
}

pid_t
pb_reaper_next(pb_reaper *r, int *status)
{
    char buf[64];
    while (read(r->pipe[0], buf, sizeof(buf)) > 0)
        ;
    for (int i = 0; i < r->count; i++) {
        pid_t pid = waitpid(r->pids[i], status, WNOHANG);
        if (pid == 0)
            continue;
        if (pid < 0 && errno == EINTR) {
            i--;
            continue;
        }
        if (pid < 0)
            *status = 0;
        pid = r->pids[i];
        r->pids[i] = r->pids[--r->count];
        /* More may be ready: keep the descriptor readable. */
        reaper_on_sigchld(SIGCHLD);
        return pid;
    }
    return 0;
}

int
pb_reaper_kill(pb_reaper *r, pid_t pid, int sig)
{
    for (int i = 0; i < r->count; i++) {
        if (r->pids[i] == pid)
            return kill(pid, sig);
    }
    errno = ESRCH;
    return -1;
}

void
pb_reaper_kill_all(pb_reaper *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < r->count; i++) {
        pid_t pid = r->pids[i];
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    r->count = 0;
}

#endif /* !__linux__ || PEBBLE_FORCE_POSIX */
