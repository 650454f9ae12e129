/* platform_linux.c - event loop on epoll + eventfd + timerfd, children on pidfd. */
#include "pebble.h"

#if defined(__linux__) && !defined(PEBBLE_FORCE_POSIX)

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

struct pb_loop {
    int epfd;
    int wakefd;          /* eventfd written by pb_loop_wake() */
    int timerfd;         /* armed at the nearest deadline */
    int64_t armed;       /* deadline the timer is armed for, -1 none */
};

pb_loop *
pb_loop_new(void)
{
    pb_loop *loop = calloc(1, sizeof(*loop));
    struct epoll_event ev;
    if (loop == NULL)
        return NULL;
    loop->epfd = loop->wakefd = loop->timerfd = -1;
    loop->armed = -1;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    loop->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (loop->epfd < 0 || loop->wakefd < 0 || loop->timerfd < 0)
        goto error;
    pb_fd_register(loop->epfd);
    pb_fd_register(loop->wakefd);
    pb_fd_register(loop->timerfd);
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = loop->wakefd;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0)
        goto error;
    ev.data.fd = loop->timerfd;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->timerfd, &ev) < 0)
        goto error;
    return loop;
error:
    pb_loop_free(loop, 1);
    return NULL;
}

void
pb_loop_free(pb_loop *loop, int close_fds)
{
    if (loop == NULL)
        return;
    int saved = errno;
    if (close_fds) {
        pb_fd_close(loop->epfd);
        pb_fd_close(loop->wakefd);
        pb_fd_close(loop->timerfd);
    }
    free(loop);
    errno = saved;
}

int
pb_loop_watch(pb_loop *loop, int fd, int events)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.data.fd = fd;
    if (events == 0) {
        if (epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, &ev) < 0 && errno != ENOENT && errno != EBADF)
            return -1;
        return 0;
    }
    ev.events = ((events & PB_EV_READ) ? EPOLLIN : 0) | ((events & PB_EV_WRITE) ? EPOLLOUT : 0);
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
        return 0;
    if (errno != ENOENT)
        return -1;
    return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int
pb_loop_wait(pb_loop *loop, int64_t deadline_ns, pb_event *events, int max)
{
    struct epoll_event evs[64];
    if (deadline_ns != loop->armed) {
        struct itimerspec its;
        memset(&its, 0, sizeof(its));
        if (deadline_ns >= 0) {
            /* 0 would disarm the timer: a past deadline fires at once. */
            int64_t when = deadline_ns > 0 ? deadline_ns : 1;
            its.it_value.tv_sec = when / 1000000000LL;
            its.it_value.tv_nsec = when % 1000000000LL;
        }
        if (timerfd_settime(loop->timerfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
            return -1;
        loop->armed = deadline_ns;
    }
    if (max > 64)
        max = 64;
    int n;
    do {
        n = epoll_wait(loop->epfd, evs, max, -1);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    int out = 0;
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        if (fd == loop->wakefd) {
            uint64_t v;
            while (read(loop->wakefd, &v, sizeof(v)) > 0)
                ;
            continue;
        }
        if (fd == loop->timerfd) {
            uint64_t v;
            while (read(loop->timerfd, &v, sizeof(v)) > 0)
                ;
            loop->armed = -1;
            continue;
        }
        events[out].fd = fd;
        events[out].events = ((evs[i].events & EPOLLIN) ? PB_EV_READ : 0)
                             | ((evs[i].events & EPOLLOUT) ? PB_EV_WRITE : 0)
                             | ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? PB_EV_ERROR | PB_EV_READ : 0);
        out++;
    }
    return out;
}

void
pb_loop_wake(pb_loop *loop)
{
    uint64_t one = 1;
    ssize_t r = write(loop->wakefd, &one, sizeof(one));
    (void)r;
}

void
pb_set_parent_death_signal(pid_t expected_parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* The parent may have died before prctl took effect. */
    if (getppid() != expected_parent)
        _exit(70);
}

/* The launcher watches each child through a pidfd in a private epoll set,
 * whose own descriptor it polls. Where pidfd_open is refused (kernels
 * before 5.3, seccomp filters, valgrind) SIGCHLD writes to a self-pipe in
 * the same set instead; waitpid() per child settles both cases. */
typedef struct {
    pid_t pid;
    int pidfd;        /* -1 when pidfd_open was refused */
} pb_child;

struct pb_reaper {
    int epfd;
    int sigpipe[2];   /* SIGCHLD self-pipe */
    pb_child *children;
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
    struct epoll_event ev;
    if (r == NULL)
        return NULL;
    r->sigpipe[0] = r->sigpipe[1] = -1;
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (r->epfd < 0 || pipe2(r->sigpipe, O_CLOEXEC | O_NONBLOCK) < 0)
        goto error;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = r->sigpipe[0];
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->sigpipe[0], &ev) < 0)
        goto error;
    reaper_signal_fd = r->sigpipe[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = reaper_on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    return r;
error:
    if (r->epfd >= 0)
        close(r->epfd);
    if (r->sigpipe[0] >= 0) {
        close(r->sigpipe[0]);
        close(r->sigpipe[1]);
    }
    free(r);
    return NULL;
}

void
pb_reaper_free(pb_reaper *r)
{
    if (r == NULL)
        return;
    signal(SIGCHLD, SIG_DFL);
    reaper_signal_fd = -1;
    for (int i = 0; i < r->count; i++)
        if (r->children[i].pidfd >= 0)
            close(r->children[i].pidfd);
    close(r->epfd);
    close(r->sigpipe[0]);
    close(r->sigpipe[1]);
    free(r->children);
    free(r);
}

int
pb_reaper_fd(pb_reaper *r)
{
    return r->epfd;
}

int
pb_reaper_add(pb_reaper *r, pid_t pid)
{
    if (r->count == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        pb_child *c = realloc(r->children, (size_t)cap * sizeof(*c));
        if (c == NULL)
            return -1;
        r->children = c;
        r->cap = cap;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd >= 0) {
        struct epoll_event ev;
        fcntl(pidfd, F_SETFD, FD_CLOEXEC);
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.fd = pidfd;
        if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, pidfd, &ev) < 0) {
            close(pidfd);
            pidfd = -1;
        }
    }
    r->children[r->count].pid = pid;
    r->children[r->count].pidfd = pidfd;
    r->count++;
    /* The child may have exited before it was registered. */
    reaper_on_sigchld(SIGCHLD);
    return 0;
}

pid_t
pb_reaper_next(pb_reaper *r, int *status)
{
    char buf[64];
    while (read(r->sigpipe[0], buf, sizeof(buf)) > 0)
        ;
    for (int i = 0; i < r->count; i++) {
        pid_t pid = waitpid(r->children[i].pid, status, WNOHANG);
        if (pid == 0)
            continue;
        if (pid < 0 && errno == EINTR) {
            i--;
            continue;
        }
        if (pid < 0)
            *status = 0;  /* reaped elsewhere: the status is lost */
        pid = r->children[i].pid;
        if (r->children[i].pidfd >= 0) {
            epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->children[i].pidfd, NULL);
            close(r->children[i].pidfd);
        }
        r->children[i] = r->children[--r->count];
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
        if (r->children[i].pid != pid)
            continue;
        if (r->children[i].pidfd >= 0)
            return (int)syscall(SYS_pidfd_send_signal, r->children[i].pidfd, sig, NULL, 0);
        /* Not reaped yet (only this process reaps it): the pid is still its. */
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
        pid_t pid = r->children[i].pid;
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    r->count = 0;
}

#endif /* __linux__ && !PEBBLE_FORCE_POSIX */
