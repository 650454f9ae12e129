/* platform_linux.c - event loop on epoll + eventfd + timerfd, children on pidfd. */
#include "pebble.h"

#if defined(__linux__) && !defined(PEBBLE_FORCE_POSIX)

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
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
    int wakefd;    /* eventfd written by pb_loop_wake() */
    int timerfd;   /* armed at the nearest deadline */
    int64_t armed; /* deadline the timer is armed for, -1 none */
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
        events[out].events =
            ((evs[i].events & EPOLLIN) ? PB_EV_READ : 0)
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

int
pb_set_child_subreaper(void)
{
    return prctl(PR_SET_CHILD_SUBREAPER, 1) == 0 ? 0 : -1;
}

int
pb_process_table(pb_procinfo **out)
{
    *out = NULL;
    DIR *dir = opendir("/proc");
    if (dir == NULL)
        return 0;
    int count = 0, cap = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        char *end;
        long pid = strtol(entry->d_name, &end, 10);
        if (*end != '\0' || pid <= 0)
            continue;
        char path[64], line[512];
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue; /* it exited meanwhile */
        ssize_t n = read(fd, line, sizeof(line) - 1);
        close(fd);
        if (n <= 0)
            continue;
        line[n] = '\0';
        /* "pid (comm) state ppid pgrp ...": comm may hold anything. */
        char *close_paren = strrchr(line, ')');
        char state;
        int ppid, pgid;
        if (close_paren == NULL || sscanf(close_paren + 1, " %c %d %d", &state, &ppid, &pgid) != 3)
            continue;
        if (count == cap) {
            int grown = cap ? cap * 2 : 256;
            pb_procinfo *more = realloc(*out, (size_t)grown * sizeof(**out));
            if (more == NULL) {
                free(*out);
                *out = NULL;
                closedir(dir);
                return -1;
            }
            *out = more;
            cap = grown;
        }
        (*out)[count].pid = (pid_t)pid;
        (*out)[count].ppid = (pid_t)ppid;
        (*out)[count].pgid = (pid_t)pgid;
        count++;
    }
    closedir(dir);
    return count;
}

int
pb_children(pid_t pid, pid_t **out)
{
    *out = NULL;
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    if (dir == NULL)
        return errno == ENOENT ? 0 : -1; /* gone: no children */
    int count = 0, cap = 0, supported = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%.20s/children", (int)pid, entry->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        supported = 1;
        /* "pid pid ... ", read whole before parsing. */
        char local[512], *buf = local;
        size_t have = 0, size = sizeof(local);
        ssize_t n;
        while ((n = read(fd, buf + have, size - 1 - have)) > 0) {
            have += (size_t)n;
            if (have == size - 1) {
                char *grown = malloc(size * 2);
                if (grown == NULL)
                    break;
                memcpy(grown, buf, have);
                if (buf != local)
                    free(buf);
                buf = grown;
                size *= 2;
            }
        }
        buf[have] = '\0';
        for (char *q = buf, *end;; q = end) {
            long child = strtol(q, &end, 10);
            if (end == q)
                break;
            if (count == cap) {
                int grown = cap ? cap * 2 : 16;
                pid_t *more = realloc(*out, (size_t)grown * sizeof(pid_t));
                if (more == NULL)
                    break;
                *out = more;
                cap = grown;
            }
            (*out)[count++] = (pid_t)child;
        }
        if (buf != local)
            free(buf);
        close(fd);
    }
    closedir(dir);
    if (!supported && count == 0) {
        /* No children files (an old kernel): the caller walks the table. */
        return -1;
    }
    return count;
}

int
pb_pidfd_open(pid_t pid)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

int
pb_pidfd_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

#endif /* __linux__ && !PEBBLE_FORCE_POSIX */
