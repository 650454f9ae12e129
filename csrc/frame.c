/* frame.c - encoding of the frames described in frame.h. */
#include "frame.h"

#include <errno.h>
#include <string.h>

int
pb_frame_write(int fd, uint64_t id, uint32_t kind, Py_buffer *bufs, int ninband, int noob,
               const uint64_t *skipped, int nskipped)
{
    pb_frame_hdr h, skips[16];
    struct iovec iov[3 + PB_FRAME_MAX_VIEWS];
    uint64_t lens[PB_FRAME_MAX_VIEWS + 1];
    int n = 0;
    if (ninband + noob > PB_FRAME_MAX_VIEWS || nskipped > 16) {
        errno = E2BIG;
        return -1;
    }
    if (nskipped > 0) {
        /* SKIPPED reports go first, in the same write. */
        memset(skips, 0, sizeof(skips));
        for (int i = 0; i < nskipped; i++) {
            skips[i].id = skipped[i];
            skips[i].kind = PB_FRAME_SKIPPED;
        }
        iov[n].iov_base = skips;
        iov[n++].iov_len = (size_t)nskipped * sizeof(pb_frame_hdr);
    }
    memset(&h, 0, sizeof(h));
    h.id = id;
    h.kind = kind;
    h.nbufs = (uint32_t)noob;
    uint64_t inband = 0;
    for (int i = 0; i < ninband; i++)
        inband += (uint64_t)bufs[i].len;
    h.len = inband;
    if (noob > 0) {
        lens[0] = inband;
        for (int i = 0; i < noob; i++) {
            lens[i + 1] = (uint64_t)bufs[ninband + i].len;
            h.len += lens[i + 1];
        }
        h.len += (uint64_t)(noob + 1) * sizeof(uint64_t);
    }
    iov[n].iov_base = &h;
    iov[n++].iov_len = sizeof(h);
    if (noob > 0) {
        iov[n].iov_base = lens;
        iov[n++].iov_len = (size_t)(noob + 1) * sizeof(uint64_t);
    }
    for (int i = 0; i < ninband + noob; i++) {
        if (bufs[i].len == 0)
            continue;
        iov[n].iov_base = bufs[i].buf;
        iov[n++].iov_len = (size_t)bufs[i].len;
    }
    return pb_writev_all(fd, iov, n);
}
