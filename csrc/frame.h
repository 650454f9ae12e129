/* frame.h - the wire format of a worker's channel.
 *
 * Both pipes of a worker, the task pipe (parent -> worker) and the result
 * pipe (worker -> parent), carry a stream of frames in host byte order
 * (both ends are the same machine). A frame is
 *
 *     header    pb_frame_hdr: id, len, kind, nbufs (24 bytes)
 *     payload   len bytes
 *
 * When nbufs is 0 the payload is one pickle. When nbufs > 0 the pickle
 * has out-of-band buffers (protocol 5) and the payload is
 *
 *     table     nbufs + 1 uint64 lengths: the pickle's, then each buffer's
 *     pickle    table[0] bytes
 *     buffers   table[1] .. table[nbufs] bytes, one after the other
 *
 * so large buffers are written from where they are and read back as
 * slices of the received block. Frames not about a task have id 0.
 *
 * Readers check every header before allocating its payload: a length over
 * PB_FRAME_MAX_LEN, or too short for the frame's length table, is an error.
 */
#ifndef PEBBLE_FRAME_H
#define PEBBLE_FRAME_H

#include "pebble.h"

/* Frame kinds on a worker's channel. */
enum {
    PB_FRAME_TASK = 1,        /* parent -> worker: pickled (function, args, kwargs) */
    PB_FRAME_PREPARE = 2,     /* launcher -> spawned worker: pickled preparation data */
    PB_FRAME_INIT = 3,        /* launcher -> worker: pickled (initializer, initargs) */
    PB_FRAME_STOP = 4,        /* parent -> worker: exit cleanly */
    PB_FRAME_CANCEL = 5,      /* parent -> worker: drop task id if not started */
    PB_FRAME_READY = 10,      /* worker -> parent: started, initializer done */
    PB_FRAME_RESULT = 11,     /* worker -> parent: pickled result */
    PB_FRAME_ERROR = 12,      /* worker -> parent: pickled exception of the task */
    PB_FRAME_INIT_ERROR = 13, /* worker -> parent: the initializer failed */
    PB_FRAME_SKIPPED = 14,    /* worker -> parent: task id dropped, never run */
};

/* The header every frame starts with. */
typedef struct {
    uint64_t id;    /* task id, 0 for frames not about a task */
    uint64_t len;   /* payload bytes after the header */
    uint32_t kind;  /* PB_FRAME_* */
    uint32_t nbufs; /* out-of-band pickle buffers in the payload */
} pb_frame_hdr;

_Static_assert(sizeof(pb_frame_hdr) == 24, "the header has no padding");

/* Buffers (in-band pieces and out-of-band ones) of one frame that
 * pb_frame_write() describes on its stack; more go on the heap. */
#define PB_FRAME_LOCAL_VIEWS 64

/* Writes one frame to a blocking fd: SKIPPED frames for the nskipped ids
 * first (at most 16), then a frame whose pickle is the ninband buffers
 * bufs[0..ninband) and whose out-of-band buffers are the noob that follow.
 * 0 or -1 with errno set. No Python calls: callable without the GIL. */
PEBBLE_HIDDEN int pb_frame_write(int fd, uint64_t id, uint32_t kind, Py_buffer *bufs, int ninband,
                                 int noob, const uint64_t *skipped, int nskipped);

/* Longest payload a reader accepts: far above any pickle a pool moves, far
 * below what a corrupt header would ask to allocate. */
#define PB_FRAME_MAX_LEN (1ULL << 40)

/* A frame being cut out of a stream of bytes. Zero it to start. */
typedef struct {
    pb_frame_hdr hdr; /* the frame's header, once have_hdr */
    int have_hdr;     /* the header is in, the payload still coming */
    char *data;       /* storage for hdr.len payload bytes; NULL while skipping */
    size_t got;       /* payload bytes in data (or skipped) */
} pb_frame_reader;

/* Returns storage for the payload of the frame h heads, or NULL. */
typedef char *(*pb_frame_alloc_fn)(void *ctx, const pb_frame_hdr *h);

/* What pb_frame_parse() found. */
enum {
    PB_PARSE_BAD = -1,  /* a header with an impossible length: the stream is lost */
    PB_PARSE_MORE = 0,  /* every byte used, no frame complete */
    PB_PARSE_FRAME = 1, /* a frame is complete */
    PB_PARSE_NOMEM = 2, /* a frame is over, but alloc gave it no storage */
};

/* Feeds the bytes buf[*off:len] to r, advancing *off. On PB_PARSE_FRAME
 * r->hdr is the frame's header and *payload its storage, which the caller
 * now owns; call again for the next frame. Its payload may also be read
 * straight into r->data + r->got while r->data is set.
 *
 * A frame alloc gives no storage is read to its end and dropped, so the
 * stream survives a frame too large for this process: PB_PARSE_NOMEM
 * reports it, with r->hdr its header, once the last byte is in (the
 * sender then knows the reader took all of it). */
PEBBLE_HIDDEN int pb_frame_parse(pb_frame_reader *r, const char *buf, size_t len, size_t *off,
                                 pb_frame_alloc_fn alloc, void *ctx, char **payload);

/* A piece of a payload. */
typedef struct {
    size_t off, len;
} pb_span;

/* Reads the length table of a payload of len bytes with nbufs > 0
 * out-of-band buffers: spans[0] receives the pickle, spans[1..nbufs] the
 * buffers. 0, or -1 when the table does not fit the payload. */
PEBBLE_HIDDEN int pb_frame_split(const char *payload, size_t len, uint32_t nbufs, pb_span *spans);

#endif /* PEBBLE_FRAME_H */
