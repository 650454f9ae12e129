/* reaper.c - the launcher's record of its children.
 *
 * SIGCHLD writes to a self-pipe that the launcher polls; waitpid() per
 * child collects the exits. Each child also gets a pidfd where the
 * platform has one, so signals never reach a recycled pid.
 *
 * Kill trees. With trees set, each worker leads a process group of its
 * own, which the processes its tasks start join, and the launcher is a
 * subreaper: the orphans among them are adopted by the launcher ("strays")
 * rather than by init. Killing a worker signals its group and every
 * process below it. When a killed worker is collected, its group is
 * SIGKILLed once more while its zombie still holds the group's id, and so
 * are the strays adopted since the kill began (a process that left the
 * group and lost its parent). At shutdown every stray is killed. Strays
 * are reaped as they exit.
 */
#include "pebble.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    pid_t pid;
    int pidfd;  /* -1 where pidfds are unavailable or refused */
    int killed; /* a kill of its tree began */
} pb_child;

struct pb_reaper {
    int inproc;     /* in the pool's own process: pidfds only, no SIGCHLD handler */
    int sigpipe[2]; /* written by the SIGCHLD handler; -1 in process */
    pb_child *children;
    int count, cap;
    int trees;     /* kill trees (see above) */
    pid_t *before; /* strays adopted before the last kill began */
    int nbefore;
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

/* A reaper living in the user's process, beside its own children: it
 * installs no SIGCHLD handler, never waits for a pid it did not register,
 * and is told of exits by each child's pidfd (pb_reaper_poll()). */
pb_reaper *
pb_reaper_new_inproc(void)
{
    pb_reaper *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->inproc = 1;
    r->sigpipe[0] = r->sigpipe[1] = -1;
    return r;
}

int
pb_reaper_poll(pb_reaper *r, struct pollfd *pfd, int max)
{
    int n = 0;
    for (int i = 0; i < r->count && n < max; i++) {
        pfd[n].fd = r->children[i].pidfd;
        pfd[n].events = POLLIN;
        pfd[n].revents = 0;
        n++;
    }
    return n;
}

int
pb_reaper_count(pb_reaper *r)
{
    return r->count;
}

void
pb_reaper_free(pb_reaper *r)
{
    if (r == NULL)
        return;
    if (!r->inproc) {
        signal(SIGCHLD, SIG_DFL);
        reaper_signal_fd = -1;
    }
    for (int i = 0; i < r->count; i++)
        if (r->children[i].pidfd >= 0)
            close(r->children[i].pidfd);
    if (!r->inproc) {
        close(r->sigpipe[0]);
        close(r->sigpipe[1]);
    }
    free(r->children);
    free(r->before);
    free(r);
}

void
pb_reaper_set_trees(pb_reaper *r, int trees)
{
    r->trees = trees;
    if (trees && !r->inproc)
        pb_set_child_subreaper(); /* never for the user's own process */
}

static int
is_child(pb_reaper *r, pid_t pid)
{
    for (int i = 0; i < r->count; i++)
        if (r->children[i].pid == pid)
            return 1;
    return 0;
}

static int
in_list(const pid_t *list, int n, pid_t pid)
{
    for (int i = 0; i < n; i++)
        if (list[i] == pid)
            return 1;
    return 0;
}

/* Sends sig to every process below root in the table, and with group set
 * to root's process group. */
static void
kill_below(const pb_procinfo *table, int n, pid_t root, int sig)
{
    /* A breadth-first walk; the table is small, so quadratic is fine. */
    pid_t *todo = malloc(((size_t)n + 1) * sizeof(pid_t));
    if (todo == NULL)
        return;
    int head = 0, tail = 0;
    todo[tail++] = root;
    while (head < tail) {
        pid_t parent = todo[head++];
        for (int i = 0; i < n && tail <= n; i++) {
            if (table[i].ppid == parent && table[i].pid != root) {
                kill(table[i].pid, sig);
                todo[tail++] = table[i].pid;
            }
        }
    }
    free(todo);
}

/* Children of this process that it did not start: adopted orphans. */
static int
strays(pb_reaper *r, const pb_procinfo *table, int n, pid_t **out)
{
    pid_t me = getpid();
    int count = 0;
    *out = malloc(((size_t)n + 1) * sizeof(pid_t));
    if (*out == NULL)
        return 0;
    for (int i = 0; i < n; i++)
        if (table[i].ppid == me && !is_child(r, table[i].pid))
            (*out)[count++] = table[i].pid;
    return count;
}

/* SIGKILLs the strays that belong to the group of leader (or, with
 * leader 0, all of them) or were adopted after r->before was taken. */
static void
kill_strays(pb_reaper *r, pid_t leader)
{
    pb_procinfo *table;
    int n = pb_process_table(&table);
    if (n <= 0)
        return;
    pid_t *found;
    int nfound = strays(r, table, n, &found);
    for (int i = 0; i < nfound; i++) {
        pid_t pgid = -1;
        for (int j = 0; j < n; j++)
            if (table[j].pid == found[i])
                pgid = table[j].pgid;
        if (leader == 0 || pgid == leader || !in_list(r->before, r->nbefore, found[i])) {
            kill(found[i], SIGKILL);
            kill_below(table, n, found[i], SIGKILL);
        }
    }
    free(found);
    free(table);
}

/* Collects the strays that exited. */
static void
reap_strays(pb_reaper *r)
{
#ifdef WNOWAIT
    for (;;) {
        siginfo_t info;
        memset(&info, 0, sizeof(info));
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 || info.si_pid == 0)
            return;
        if (is_child(r, info.si_pid))
            return; /* a worker: pb_reaper_next() reports it */
        while (waitpid(info.si_pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
#endif
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
    int pidfd = pb_pidfd_open(pid);
    if (pidfd < 0 && r->inproc)
        return -1; /* nothing else would tell of its exit */
    r->children[r->count].pid = pid;
    r->children[r->count].pidfd = pidfd;
    r->children[r->count].killed = 0;
    r->count++;
    /* The child may have exited before it was registered. */
    if (!r->inproc)
        reaper_on_sigchld(SIGCHLD);
    return 0;
}

pid_t
pb_reaper_next(pb_reaper *r, int *status)
{
    char buf[64];
    while (!r->inproc && read(r->sigpipe[0], buf, sizeof(buf)) > 0)
        ;
    for (int i = 0; i < r->count; i++) {
#ifdef WNOWAIT
        if (r->children[i].killed) {
            /* Its zombie holds the group's id: what is left of the group
             * can be killed without reaching anyone else. */
            siginfo_t info;
            memset(&info, 0, sizeof(info));
            if (waitid(P_PID, (id_t)r->children[i].pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0
                && info.si_pid == r->children[i].pid) {
                kill(-r->children[i].pid, SIGKILL);
                if (!r->inproc)
                    kill_strays(r, r->children[i].pid);
            }
        }
#endif
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
        if (!r->inproc)
            reaper_on_sigchld(SIGCHLD);
        return pid;
    }
    if (r->trees && !r->inproc)
        reap_strays(r);
    return 0;
}

/* Walks the children lists from root down: only the tree is read, not
 * every process of the system. 0, or -1 where children cannot be listed. */
static int
kill_tree_by_children(pid_t root, int sig)
{
    pid_t *todo = NULL, *kids;
    int head = 0, tail = 0, cap = 0, rc = 0;
    pid_t parent = root;
    for (;;) {
        int n = pb_children(parent, &kids);
        if (n < 0 && parent == root) {
            rc = -1;
            break;
        }
        for (int i = 0; i < n; i++) {
            kill(kids[i], sig);
            if (tail == cap) {
                int grown = cap ? cap * 2 : 32;
                pid_t *more = realloc(todo, (size_t)grown * sizeof(pid_t));
                if (more == NULL)
                    break;
                todo = more;
                cap = grown;
            }
            todo[tail++] = kids[i];
        }
        free(kids);
        if (head == tail || tail > 65536)
            break;
        parent = todo[head++];
    }
    free(todo);
    return rc;
}

void
pb_kill_descendants(pid_t root, int sig)
{
    if (kill_tree_by_children(root, sig) == 0)
        return;
    pb_procinfo *table;
    int n = pb_process_table(&table);
    if (n > 0)
        kill_below(table, n, root, sig);
    if (n >= 0)
        free(table);
}

int
pb_reaper_kill(pb_reaper *r, pid_t pid, int sig)
{
    for (int i = 0; i < r->count; i++) {
        if (r->children[i].pid != pid)
            continue;
        if (r->trees && r->inproc) {
            /* No subreaper adopts what the worker leaves when it dies:
             * below it, nothing waits for the grace period. */
            r->children[i].killed = 1;
            pb_kill_descendants(pid, SIGKILL);
            kill(-pid, sig);
        }
        else if (r->trees) {
            pb_procinfo *table;
            int n = pb_process_table(&table);
            if (!r->children[i].killed) {
                /* Strays adopted from here on may be this tree's. */
                free(r->before);
                r->before = NULL;
                r->nbefore = n > 0 ? strays(r, table, n, &r->before) : 0;
            }
            r->children[i].killed = 1;
            if (n > 0)
                kill_below(table, n, pid, sig);
            free(table);
            /* Its group: still its own while the worker is not reaped. */
            kill(-pid, sig);
        }
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
    pb_procinfo *table = NULL;
    int n = r->trees ? pb_process_table(&table) : 0;
    for (int i = 0; i < r->count; i++) {
        if (r->trees) {
            if (n > 0)
                kill_below(table, n, r->children[i].pid, SIGKILL);
            kill(-r->children[i].pid, SIGKILL);
        }
        kill(r->children[i].pid, SIGKILL);
        while (waitpid(r->children[i].pid, NULL, 0) < 0 && errno == EINTR)
            ;
        if (r->children[i].pidfd >= 0)
            close(r->children[i].pidfd);
    }
    r->count = 0;
    free(table);
    if (r->trees && !r->inproc) {
        /* Every orphan of the pool's tasks, and those the deaths adopt,
         * until none is left. */
        for (;;) {
            kill_strays(r, 0);
            pid_t gone = waitpid(-1, NULL, 0);
            if (gone < 0 && errno != EINTR)
                break;
        }
    }
}
