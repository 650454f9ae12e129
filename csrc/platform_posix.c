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
    int wake[2];        /* self-pipe for pb_loop_wake() */
    struct pollfd *fds; /* fds[0] is the wake pipe */
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
    short want =
        (short)(((events & PB_EV_READ) ? POLLIN : 0) | ((events & PB_EV_WRITE) ? POLLOUT : 0));
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
        events[out].events =
            ((re & POLLIN) ? PB_EV_READ : 0) | ((re & POLLOUT) ? PB_EV_WRITE : 0)
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

int
pb_set_child_subreaper(void)
{
    errno = ENOSYS;
    return -1;
}

int
pb_children(pid_t pid, pid_t **out)
{
    (void)pid;
    *out = NULL;
    return -1;
}

int
pb_process_table(pb_procinfo **out)
{
    /* No portable process table: trees are killed by process group only. */
    *out = NULL;
    return 0;
}

int
pb_pidfd_open(pid_t pid)
{
    errno = ENOSYS;
    return -1;
}

int
pb_pidfd_signal(int pidfd, int sig)
{
    errno = ENOSYS;
    return -1;
}

#endif /* !__linux__ || PEBBLE_FORCE_POSIX */
