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

/* -- frame_scan(): the parser, driven from Python --------------------------
 *
 * Cuts bytes into frames exactly as both ends of a channel do, fed in
 * pieces of `step` bytes, so the parser can be fuzzed without a worker.
 * Storage is refused past `limit` bytes, as a process out of memory
 * would refuse it. Returns a list of tuples:
 *
 *     ("frame", kind, id, len, nbufs, split)  split: the buffers' lengths,
 *                                             or None if the table is bad
 *     ("nomem", kind, id, len, nbufs)         read to its end and dropped
 *     ("bad", len, nbufs)                     the stream is lost here
 *     ("more",)                               the input ended mid-frame
 */

typedef struct {
    uint64_t limit;
} scan_ctx;

static char *
scan_alloc(void *ctx, const pb_frame_hdr *h)
{
    if (h->len > ((scan_ctx *)ctx)->limit)
        return NULL;
    return malloc(h->len ? (size_t)h->len : 1);
}

static PyObject *
scan_split(const char *payload, const pb_frame_hdr *h)
{
    if (h->nbufs == 0)
        return PyTuple_New(0);
    pb_span *spans = malloc(((size_t)h->nbufs + 1) * sizeof(pb_span));
    if (spans == NULL)
        return PyErr_NoMemory();
    PyObject *out = NULL;
    if (pb_frame_split(payload, (size_t)h->len, h->nbufs, spans) < 0) {
        out = Py_NewRef(Py_None);
    }
    else if ((out = PyTuple_New(h->nbufs)) != NULL) {
        for (uint32_t i = 0; i < h->nbufs; i++) {
            PyObject *n = PyLong_FromSize_t(spans[i + 1].len);
            if (n == NULL) {
                Py_CLEAR(out);
                break;
            }
            PyTuple_SET_ITEM(out, i, n);
        }
    }
    free(spans);
    return out;
}

static PyObject *
pebble_frame_scan(PyObject *module, PyObject *args)
{
    Py_buffer in;
    Py_ssize_t step;
    unsigned long long limit;
    if (!PyArg_ParseTuple(args, "y*nK:frame_scan", &in, &step, &limit))
        return NULL;
    PyObject *found = NULL;
    pb_frame_reader r;
    memset(&r, 0, sizeof(r));
    scan_ctx ctx = {limit};
    if (step <= 0) {
        PyErr_SetString(PyExc_ValueError, "step must be positive");
        goto done;
    }
    if ((found = PyList_New(0)) == NULL)
        goto done;
    const char *buf = in.buf;
    size_t total = (size_t)in.len, fed = 0, off = 0;
    int lost = 0;
    for (;;) {
        /* The reader sees the bytes fed so far; unparsed ones stay staged. */
        char *payload = NULL;
        int rc = pb_frame_parse(&r, buf, fed, &off, scan_alloc, &ctx, &payload);
        PyObject *item = NULL;
        if (rc == PB_PARSE_MORE) {
            if (fed == total)
                break;
            fed = total - fed > (size_t)step ? fed + (size_t)step : total;
            continue;
        }
        if (rc == PB_PARSE_FRAME) {
            PyObject *split = scan_split(payload, &r.hdr);
            free(payload);
            if (split == NULL)
                goto fail;
            item = Py_BuildValue("(sIKKIN)",
                                 "frame",
                                 r.hdr.kind,
                                 (unsigned long long)r.hdr.id,
                                 (unsigned long long)r.hdr.len,
                                 r.hdr.nbufs,
                                 split);
        }
        else if (rc == PB_PARSE_NOMEM) {
            item = Py_BuildValue("(sIKKI)",
                                 "nomem",
                                 r.hdr.kind,
                                 (unsigned long long)r.hdr.id,
                                 (unsigned long long)r.hdr.len,
                                 r.hdr.nbufs);
        }
        else {
            item = Py_BuildValue("(sKI)", "bad", (unsigned long long)r.hdr.len, r.hdr.nbufs);
            lost = 1;
        }
        if (item == NULL || PyList_Append(found, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
        if (lost)
            break;
    }
    if (!lost && (r.have_hdr || off < total)) {
        PyObject *item = Py_BuildValue("(s)", "more");
        if (item == NULL || PyList_Append(found, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    goto done;
fail:
    Py_CLEAR(found);
done:
    free(r.data);
    PyBuffer_Release(&in);
    return found;
}

PyDoc_STRVAR(pebble_frame_scan_doc,
             "frame_scan(data, step, limit) -> list\n\n"
             "Cut data into channel frames as a worker channel's reader does, fed\n"
             "step bytes at a time, refusing storage past limit bytes.");

static PyMethodDef frame_methods[] = {
    {"frame_scan", pebble_frame_scan, METH_VARARGS, pebble_frame_scan_doc},
    {NULL, NULL, 0, NULL},
};

int
pebble_frame_init(PyObject *module)
{
    return PyModule_AddFunctions(module, frame_methods);
}
