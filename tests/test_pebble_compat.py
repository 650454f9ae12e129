"""Pebble 5.2.3's public behaviour, point by point, as a user's code relies on it."""

import multiprocessing

import pytest

from pebble import ProcessPool, ThreadPool


def keyword_self(self=None, **kwargs):
    return self, kwargs


@pytest.fixture(params=["thread", "process"])
def pool(request):
    if request.param == "thread":
        pool = ThreadPool(2)
    else:
        pool = ProcessPool(2, context=multiprocessing.get_context("fork"))
    yield pool
    pool.stop()
    pool.join(10)


def test_thread_pool_submit_passes_self_on():
    with ThreadPool(1) as pool:
        assert pool.submit(keyword_self, self=3, other=4).result(10) == (3, {"other": 4})


def test_process_pool_submit_passes_self_on():
    with ProcessPool(1, context=multiprocessing.get_context("fork")) as pool:
        assert pool.submit(keyword_self, None, self=3).result(10) == (3, {})


def test_map_iterator_has_next(pool):
    results = pool.map(abs, [-1, -2, -3], chunksize=2).result()
    assert results.next() == 1
    assert next(results) == 2
    assert results.next() == 3
    with pytest.raises(StopIteration):
        results.next()
