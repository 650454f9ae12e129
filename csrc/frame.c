/* frame.c - encoding and decoding of the frames described in frame.h. */
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int
pb_frame_write(int fd, uint64_t id, uint32_t kind, Py_buffer *bufs, int ninband, int noob,
               const uint64_t *skipped, int nskipped)
{
    pb_frame_hdr h, skips[16];
    struct iovec local_iov[3 + PB_FRAME_LOCAL_VIEWS], *iov = local_iov;
    uint64_t local_lens[PB_FRAME_LOCAL_VIEWS + 1], *lens = local_lens;
    int n = 0, rc;
    if (nskipped > 16 || ninband < 0 || noob < 0) {
        errno = E2BIG;
        return -1;
    }
    if (ninband + noob > PB_FRAME_LOCAL_VIEWS) {
        /* A result of many large pieces: the tables go on the heap. */
        iov = malloc((size_t)(3 + ninband + noob) * sizeof(struct iovec));
        lens = malloc((size_t)(noob + 1) * sizeof(uint64_t));
        if (iov == NULL || lens == NULL) {
            free(iov);
            free(lens);
            errno = ENOMEM;
            return -1;
        }
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
    rc = pb_writev_all(fd, iov, n);
    if (iov != local_iov) {
        free(iov);
        free(lens);
    }
    return rc;
}

/* 0 when h can head a frame, -1 when its length is impossible. */
static int
pb_frame_check(const pb_frame_hdr *h)
{
    if (h->len > PB_FRAME_MAX_LEN)
        return -1;
    if (h->nbufs > 0 && h->len < ((uint64_t)h->nbufs + 1) * sizeof(uint64_t))
        return -1;
    return 0;
}

int
pb_frame_parse(pb_frame_reader *r, const char *buf, size_t len, size_t *off,
               pb_frame_alloc_fn alloc, void *ctx, char **payload)
{
    if (!r->have_hdr) {
        if (len - *off < sizeof(pb_frame_hdr))
            return PB_PARSE_MORE;
        memcpy(&r->hdr, buf + *off, sizeof(pb_frame_hdr));
        *off += sizeof(pb_frame_hdr);
        if (pb_frame_check(&r->hdr) < 0)
            return PB_PARSE_BAD;
        r->data = alloc(ctx, &r->hdr); /* without storage, the payload is skipped */
        r->have_hdr = 1;
        r->got = 0;
    }
    size_t take = len - *off;
    if (take > r->hdr.len - r->got)
        take = (size_t)(r->hdr.len - r->got);
    if (take > 0) {
        if (r->data != NULL)
            memcpy(r->data + r->got, buf + *off, take);
        r->got += take;
        *off += take;
    }
    if (r->got < r->hdr.len)
        return PB_PARSE_MORE;
    r->have_hdr = 0;
    *payload = r->data;
    if (r->data == NULL)
        return PB_PARSE_NOMEM;
    r->data = NULL;
    return PB_PARSE_FRAME;
}

int
pb_frame_split(const char *payload, size_t len, uint32_t nbufs, pb_span *spans)
{
    size_t n = (size_t)nbufs + 1, off = n * sizeof(uint64_t);
    if (len < off)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t size;
        memcpy(&size, payload + i * sizeof(uint64_t), sizeof(size));
        if (size > len - off)
            return -1;
        spans[i].off = off;
        spans[i].len = (size_t)size;
        off += (size_t)size;
    }
    return 0;
}
