"""Fuzzing the channel's frame parser, the one both ends of a channel use.

Seeded random streams of valid, truncated, corrupt and absurd frames are
cut at random places. Every input ends in frames, a skipped frame too large
to allocate, a clear "bad" verdict or a request for more bytes: never a
crash, a hang or an allocation beyond the limit given. How the input is
cut never changes what is found.
"""

import random
import struct

import pytest

from pebble import _pebble

HEADER = struct.Struct("=QQII")  # id, len, kind, nbufs: csrc/frame.h
MAX_LEN = 1 << 40  # PB_FRAME_MAX_LEN


def frame(kind, task_id, pickle=b"", buffers=()):
    if not buffers:
        return HEADER.pack(task_id, len(pickle), kind, 0) + pickle
    table = struct.pack("=%dQ" % (len(buffers) + 1), len(pickle), *map(len, buffers))
    payload = table + pickle + b"".join(buffers)
    return HEADER.pack(task_id, len(payload), kind, len(buffers)) + payload


def scan(data, step, limit=1 << 20):
    return _pebble.frame_scan(data, step, limit)


def test_valid_frames_come_out_whole_however_the_stream_is_cut():
    stream = (frame(11, 1, b"abc") + frame(14, 2) + frame(12, 3, b"p", [b"xy", b"", b"z" * 100]))
    expected = [("frame", 11, 1, 3, 0, ()), ("frame", 14, 2, 0, 0, ()),
                ("frame", 12, 3, 4 * 8 + 1 + 102, 3, (2, 0, 100))]
    for step in (1, 2, 7, 24, 25, len(stream)):
        assert scan(stream, step) == expected


def test_truncated_stream_asks_for_more():
    stream = frame(11, 1, b"abcdef")
    for cut in range(1, len(stream)):
        assert scan(stream[:cut], 3) == [("more",)]


def test_absurd_length_is_bad_and_ends_the_stream():
    stream = HEADER.pack(1, MAX_LEN + 1, 11, 0) + frame(11, 2, b"never read")
    assert scan(stream, 5) == [("bad", MAX_LEN + 1, 0)]


def test_table_longer_than_the_frame_is_bad():
    assert scan(HEADER.pack(1, 8, 11, 5) + b"\0" * 8, 4) == [("bad", 8, 5)]


def test_lengths_in_the_table_past_the_frame_fail_the_split_only():
    table = struct.pack("=2Q", 1, 1000)
    stream = HEADER.pack(7, len(table) + 1, 11, 1) + table + b"p" + frame(14, 8)
    assert scan(stream, 3) == [("frame", 11, 7, 17, 1, None), ("frame", 14, 8, 0, 0, ())]


def test_frame_past_the_allocation_limit_is_skipped_and_the_stream_goes_on():
    stream = frame(11, 1, b"x" * 5000) + frame(11, 2, b"ok")
    for step in (1, 100, 4096, len(stream)):
        assert scan(stream, step, limit=4096) == [("nomem", 11, 1, 5000, 0),
                                                  ("frame", 11, 2, 2, 0, ())]


def random_stream(rng):
    pieces = []
    for _ in range(rng.randint(0, 6)):
        choice = rng.random()
        if choice < 0.5:
            buffers = [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(0, 4))]
            pieces.append(frame(rng.choice([1, 4, 5, 11, 12, 14, 99]), rng.getrandbits(64),
                                rng.randbytes(rng.randint(0, 200)), buffers))
        elif choice < 0.7:
            pieces.append(rng.randbytes(rng.randint(0, 64)))  # garbage
        elif choice < 0.85:  # an absurd or huge header
            pieces.append(HEADER.pack(rng.getrandbits(64),
                                      rng.choice([MAX_LEN, MAX_LEN + 1, 1 << 63, 1 << 35,
                                                  rng.getrandbits(64)]),
                                      11, rng.choice([0, 1, 1 << 31, (1 << 32) - 1])))
        else:  # a header whose table does not fit
            pieces.append(HEADER.pack(1, rng.randint(0, 40), 11, rng.randint(1, 10)))
    data = b"".join(pieces)
    if data and rng.random() < 0.5:  # flip some bytes
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        data = bytes(data)
    if data and rng.random() < 0.3:
        data = data[:rng.randrange(len(data))]
    return data


def check_verdicts(found, data, limit):
    assert isinstance(found, list)
    for index, item in enumerate(found):
        assert item[0] in ("frame", "nomem", "bad", "more")
        if item[0] in ("bad", "more"):
            assert index == len(found) - 1, "nothing follows the end of the stream"
        if item[0] == "frame":
            assert item[3] <= limit and item[3] <= len(data)
            split = item[5]
            if split is not None:
                assert len(split) == item[4] and sum(split) <= item[3]
        if item[0] == "nomem":
            assert item[3] > limit


@pytest.mark.parametrize("seed", range(4))
def test_random_streams(seed, soak):
    rng = random.Random(seed)
    executions = 0
    for _ in range(100000 if soak else 10000):
        data = random_stream(rng)
        limit = rng.choice([0, 64, 1 << 20])
        whole = scan(data, max(1, len(data)), limit)
        check_verdicts(whole, data, limit)
        for step in (1, rng.randint(1, 64)):
            assert scan(data, step, limit) == whole
        executions += 3
    assert executions > 0


@pytest.mark.timeout(120)
def test_garbage_from_tasks_fails_only_them():
    """Tasks writing random bytes into their worker's result pipe: each ends
    with a result, an error naming a corrupt frame, or its timeout (a frame
    cut short waits for its end); the pool goes on."""
    import multiprocessing
    from concurrent.futures import TimeoutError as FuturesTimeoutError

    import procfuncs as pf
    from pebble import ProcessExpired, ProcessPool
    with ProcessPool(2, context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.schedule(pf.send_garbage, args=(seed,), timeout=0.5)
                   for seed in range(24)]
        for seed, future in enumerate(futures):
            try:
                assert future.result(30) == seed
            except ProcessExpired as error:
                assert "corrupt frame" in str(error)
            except (TimeoutError, FuturesTimeoutError, MemoryError):
                pass
        assert pool.schedule(pf.add, args=(1, 2)).result(30) == 3
