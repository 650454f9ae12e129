"""Large arguments and results travel as pickle protocol 5 out-of-band
buffers (or as large frames) and come back intact, for every start method."""

import multiprocessing
import pickle

import pytest

import procfuncs as pf
from pebble import ProcessPool
from proctools import START_METHODS

MIB = 1 << 20


@pytest.fixture(scope="module", params=START_METHODS)
def pool(request):
    pool = ProcessPool(2, context=multiprocessing.get_context(request.param))
    yield pool
    pool.stop()
    pool.join(10)


def test_large_bytearray_argument_is_writable_in_the_worker(pool):
    data = bytearray(b"abcd") * (2 * MIB)
    assert pool.schedule(pf.poke, (data, 122)).result(60) == (8 * MIB, b"zbcd")
    assert data[:4] == b"abcd"   # the parent's copy is untouched


def test_several_out_of_band_arguments(pool):
    buffers = [bytearray([i]) * (MIB + i) for i in range(1, 6)]
    expected = [sum(memoryview(b)[::4096]) for b in buffers]
    assert pool.schedule(pf.checksum, buffers).result(60) == expected


def test_picklebuffer_argument(pool):
    data = bytearray(range(256)) * 4096
    assert pool.schedule(pf.checksum, (pickle.PickleBuffer(data),)).result(60) == \
        [sum(memoryview(data)[::4096])]


def test_non_contiguous_buffer_is_reported(pool):
    view = memoryview(bytearray(1024))[::2]
    error = pool.schedule(len, (pickle.PickleBuffer(view),)).exception(60)
    try:
        assert isinstance(error, (pickle.PicklingError, BufferError, ValueError)), repr(error)
        assert pool.schedule(len, (b"ok",)).result(60) == 2
    finally:
        # The error's traceback refers to this frame, which holds the view
        # a PickleBuffer exports: CPython 3.11 crashes when the collector
        # clears such a memoryview, so the cycle is broken here.
        del error


def test_large_results(pool):
    results = [pool.schedule(pf.make_bytearray, (8 * MIB, i)) for i in range(6)]
    for i, future in enumerate(results):
        value = future.result(60)
        assert isinstance(value, bytearray) and len(value) == 8 * MIB
        assert value[0] == value[-1] == i
        value[0] = 255   # writable
    assert pool.schedule(pf.make_bytes, (16 * MIB,)).result(60) == bytes(16 * MIB)
