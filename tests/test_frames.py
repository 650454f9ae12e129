"""The worker's side of the wire format: frames are checked before their
payload is allocated, and out-of-band buffers arrive as writable views."""

import os
import pickle
import struct

import pytest

from pebble import _pebble

HEADER = struct.Struct("QQII")  # id, len, kind, nbufs


def serve(data):
    """Run worker_run over a task pipe holding data; return what execute saw."""
    seen = []

    def execute(payload, buffers=None):
        seen.append((bytes(payload), buffers and [bytes(b) for b in buffers],
                     buffers and [b.readonly for b in buffers]))
        return _pebble.FRAME_RESULT, pickle.dumps(None), None

    task_r, task_w = os.pipe()
    result_r, result_w = os.pipe()
    cancel_r, cancel_w = os.pipe()
    try:
        os.write(task_w, data)
        os.close(task_w)
        task_w = -1
        _pebble.worker_run(task_r, result_w, cancel_r, lambda kind, payload: None, execute)
    finally:
        for fd in (task_r, task_w, result_r, result_w, cancel_w, cancel_r):
            if fd >= 0:
                os.close(fd)
    return seen


def frame(payload, nbufs=0, length=None, task_id=1):
    size = len(payload) if length is None else length
    return HEADER.pack(task_id, size, _pebble.FRAME_TASK, nbufs) + payload


def test_frame_with_out_of_band_buffers_is_split_into_writable_views():
    table = struct.pack("QQQ", 3, 2, 4)
    seen = serve(frame(table + b"abc" + b"de" + b"fghi", nbufs=2))
    assert seen == [(b"abc", [b"de", b"fghi"], [False, False])]


def test_frame_without_buffers_comes_whole():
    assert serve(frame(b"xyz")) == [(b"xyz", None, None)]


def test_absurd_length_is_refused_before_allocating():
    with pytest.raises(ValueError, match="corrupt frame header"):
        serve(frame(b"", length=1 << 62))


def test_length_shorter_than_its_buffer_table_is_refused():
    with pytest.raises(ValueError, match="corrupt frame header"):
        serve(frame(b"\0" * 8, nbufs=5))


def test_buffer_table_overrunning_the_payload_is_refused():
    table = struct.pack("QQ", 3, 100)
    with pytest.raises(ValueError, match="corrupt task frame"):
        serve(frame(table + b"abc", nbufs=1))
