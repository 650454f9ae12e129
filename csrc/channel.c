/* channel.c - framing and descriptor helpers shared by pool, launcher and worker.
 *
 * Everything here is async-signal-safe: it runs in the parent's I/O
 * thread without the GIL and in freshly forked children.
 */
#include "pebble.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int
pb_writev_all(int fd, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        ssize_t n = writev(fd, iov, iovcnt > IOV_MAX ? IOV_MAX : iovcnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

int
pb_read_all(int fd, void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(fd, (char *)buf + done, n - done);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            if (done == 0)
                return 0;
            errno = EIO;
            return -1;
        }
        done += (size_t)r;
    }
    return 1;
}

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static int *registry;
static int registry_len, registry_cap;

static void
registry_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
}

static void
registry_parent(void)
{
    pthread_mutex_unlock(&registry_lock);
}

unsigned long pb_fork_generation;

static void
registry_child(void)
{
    /* Only this thread exists in the child: nothing else can race. */
    pb_fork_generation++;
    for (int i = 0; i < registry_len; i++)
        close(registry[i]);
    registry_len = 0;
    pthread_mutex_unlock(&registry_lock);
}

int
pb_fd_registry_init(void)
{
    static int done;
    if (done)
        return 0;
    done = 1;
    return pthread_atfork(registry_prepare, registry_parent, registry_child) == 0 ? 0 : -1;
}

/* Adds fd once. registry_lock held. */
static void
registry_add(int fd)
{
    for (int i = 0; i < registry_len; i++)
        if (registry[i] == fd)
            return;
    if (registry_len == registry_cap) {
        int cap = registry_cap ? registry_cap * 2 : 64;
        int *r = realloc(registry, (size_t)cap * sizeof(int));
        if (r == NULL)
            return; /* best effort: the channel still works */
        registry = r;
        registry_cap = cap;
    }
    registry[registry_len++] = fd;
}

void
pb_fd_register(int fd)
{
    if (fd < 0)
        return;
    pthread_mutex_lock(&registry_lock);
    registry_add(fd);
    pthread_mutex_unlock(&registry_lock);
}

int
pb_sync_init(pthread_mutex_t *mutex, pthread_cond_t *cond)
{
    int rc = pthread_mutex_init(mutex, NULL);
    if (rc == 0 && (rc = pthread_cond_init(cond, NULL)) != 0)
        pthread_mutex_destroy(mutex);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

int
pb_ctl_socketpair(int sv[2])
{
    int rc = -1, err = 0;
    sv[0] = sv[1] = -1;
    /* The fork handlers take this lock: no fork can copy the pair before
     * it is registered, and closed in the child. */
    pthread_mutex_lock(&registry_lock);
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
        err = errno;
        goto done;
    }
    for (int k = 0; k < 2; k++) {
        /* Above 3, 4 and 5, which spawned processes are given. */
        sv[k] = fcntl(pair[k], F_DUPFD_CLOEXEC, 10);
        if (sv[k] < 0)
            err = errno;
        close(pair[k]);
    }
    if (sv[0] < 0 || sv[1] < 0) {
        for (int k = 0; k < 2; k++)
            if (sv[k] >= 0)
                close(sv[k]);
        sv[0] = sv[1] = -1;
        goto done;
    }
    registry_add(sv[0]);
    registry_add(sv[1]);
    rc = 0;
done:
    pthread_mutex_unlock(&registry_lock);
    errno = err;
    return rc;
}

void
pb_fd_close(int fd)
{
    if (fd < 0)
        return;
    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < registry_len; i++) {
        if (registry[i] == fd) {
            registry[i] = registry[--registry_len];
            break;
        }
    }
    close(fd);
    pthread_mutex_unlock(&registry_lock);
}

int
pb_set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

int
pb_pipe(int fds[2])
{
#ifdef O_CLOEXEC
#if defined(__linux__)
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
#else
    if (pipe(fds) < 0)
        return -1;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#endif
#endif
#ifdef F_SETPIPE_SZ
    /* Larger pipes mean fewer wake-ups for big payloads; best effort. */
    (void)fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
#endif
    return 0;
}

int
pb_ctl_send(int sock, const pb_ctl_msg *msg, const int *fds, int nfds)
{
    struct iovec iov = {(void *)msg, sizeof(*msg)};
    union {
        char buf[CMSG_SPACE(PB_CTL_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr mh;
    if (nfds > PB_CTL_MAX_FDS) {
        errno = EINVAL;
        return -1;
    }
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (nfds > 0) {
        memset(&control, 0, sizeof(control));
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
    }
    for (;;) {
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (n >= 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

void
pb_ctl_close_fds(int *fds)
{
    for (int i = 0; i < PB_CTL_MAX_FDS; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        fds[i] = -1;
    }
}

int
pb_ctl_recv(int sock, pb_ctl_msg *msg, int *fds)
{
    struct iovec iov = {msg, sizeof(*msg)};
    union {
        char buf[CMSG_SPACE(PB_CTL_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr mh;
    for (int i = 0; i < PB_CTL_MAX_FDS; i++)
        fds[i] = -1;
    for (;;) {
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof(control.buf);
#ifdef MSG_CMSG_CLOEXEC
        ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
#else
        ssize_t n = recvmsg(sock, &mh, 0);
#endif
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                int got[PB_CTL_MAX_FDS];
                if (count > PB_CTL_MAX_FDS)
                    count = PB_CTL_MAX_FDS; /* the buffer holds no more */
                memcpy(got, CMSG_DATA(cm), count * sizeof(int));
                for (size_t i = 0; i < count; i++) {
                    fds[i] = got[i];
#ifndef MSG_CMSG_CLOEXEC
                    fcntl(got[i], F_SETFD, FD_CLOEXEC);
#endif
                }
            }
        }
        if ((size_t)n != sizeof(*msg)) {
            pb_ctl_close_fds(fds);
            errno = EPROTO;
            return -1;
        }
        return 1;
    }
}
