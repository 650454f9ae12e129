/* reaper.c - the launcher's record of its children.
 *
 * SIGCHLD writes to a self-pipe that the launcher polls; waitpid() per
 * child collects the exits. Each child also gets a pidfd where the
 * platform has one, so signals never reach a recycled pid.
 */
#include "pebble.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    pid_t pid;
    int pidfd; /* -1 where pidfds are unavailable or refused */
} pb_child;

struct pb_reaper {
    int sigpipe[2]; /* written by the SIGCHLD handler */
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
    if (r == NULL)
        return NULL;
    if (pb_pipe(r->sigpipe) < 0) {
        free(r);
        return NULL;
    }
    pb_set_nonblock(r->sigpipe[0]);
    pb_set_nonblock(r->sigpipe[1]);
    reaper_signal_fd = r->sigpipe[1];
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
    for (int i = 0; i < r->count; i++)
        if (r->children[i].pidfd >= 0)
            close(r->children[i].pidfd);
    close(r->sigpipe[0]);
    close(r->sigpipe[1]);
    free(r->children);
    free(r);
}

int
pb_reaper_fd(pb_reaper *r)
{
    return r->sigpipe[0];
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
    r->children[r->count].pid = pid;
    r->children[r->count].pidfd = pb_pidfd_open(pid);
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
            *status = 0; /* reaped elsewhere: the status is lost */
        pid = r->children[i].pid;
        if (r->children[i].pidfd >= 0)
            close(r->children[i].pidfd);
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
            return pb_pidfd_signal(r->children[i].pidfd, sig);
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
        kill(r->children[i].pid, SIGKILL);
        while (waitpid(r->children[i].pid, NULL, 0) < 0 && errno == EINTR)
            ;
        if (r->children[i].pidfd >= 0)
            close(r->children[i].pidfd);
    }
    r->count = 0;
}
