"""ThreadPool: scheduling, map, lifecycle, workers and bad input."""

import asyncio
import collections
import concurrent.futures
import threading
import time

import pytest

from pebble import MapFuture, ThreadPool

# Generous bound for waits that should end almost at once.
WAIT = 5


def identity(value):
    return value


def add(a, b=0):
    return a + b


def fail(message):
    raise ValueError(message)


def fail_on(bad):
    def function(value):
        if value in bad:
            raise ValueError(value)
        return value * 10
    return function


@pytest.fixture
def pool():
    pool = ThreadPool(max_workers=4)
    yield pool
    pool.stop()
    pool.join(WAIT)


# -- schedule / submit ------------------------------------------------------


def test_schedule_returns_result(pool):
    future = pool.schedule(add, args=(1,), kwargs={"b": 2})
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(WAIT) == 3


def test_schedule_accepts_list_args_and_no_kwargs(pool):
    assert pool.schedule(add, args=[4, 5]).result(WAIT) == 9
    assert pool.schedule(identity, [7]).result(WAIT) == 7


def test_schedule_propagates_exception(pool):
    future = pool.schedule(fail, args=("boom",))
    with pytest.raises(ValueError, match="boom"):
        future.result(WAIT)
    error = future.exception(WAIT)
    assert isinstance(error, ValueError)
    assert error.__traceback__ is not None


def test_schedule_propagates_base_exception(pool):
    def leave():
        raise SystemExit(3)

    future = pool.schedule(leave)
    with pytest.raises(SystemExit):
        future.result(WAIT)
    # The worker survives and keeps serving.
    assert pool.schedule(identity, args=(1,)).result(WAIT) == 1


def test_submit_positional_and_keyword(pool):
    future = pool.submit(add, 1, b=41)
    assert future.result(WAIT) == 42


def test_submit_exception(pool):
    with pytest.raises(ValueError, match="bad"):
        pool.submit(fail, "bad").result(WAIT)


def test_run_in_executor(pool):
    async def main():
        loop = asyncio.get_running_loop()
        first = await loop.run_in_executor(pool, pow, 2, 5)
        results = await asyncio.gather(
            *[loop.run_in_executor(pool, add, i, 1) for i in range(50)])
        return first, results

    first, results = asyncio.run(main())
    assert first == 32
    assert results == list(range(1, 51))


def test_run_in_executor_exception(pool):
    async def main():
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, fail, "inside")

    with pytest.raises(ValueError, match="inside"):
        asyncio.run(main())


def test_asyncio_wrap_future(pool):
    async def main():
        futures = [asyncio.wrap_future(pool.schedule(add, args=(i, i)))
                   for i in range(20)]
        return await asyncio.gather(*futures)

    assert asyncio.run(main()) == [2 * i for i in range(20)]


def test_concurrent_futures_wait_and_as_completed(pool):
    futures = [pool.schedule(add, args=(i, 1)) for i in range(30)]
    done, not_done = concurrent.futures.wait(futures, timeout=WAIT)
    assert not not_done
    assert done == set(futures)
    futures = [pool.schedule(add, args=(i, 1)) for i in range(30)]
    completed = list(concurrent.futures.as_completed(futures, timeout=WAIT))
    assert sorted(f.result() for f in completed) == list(range(1, 31))


def test_wait_first_exception(pool):
    release = threading.Event()
    slow = pool.schedule(release.wait, args=(WAIT,))
    bad = pool.schedule(fail, args=("x",))
    done, _ = concurrent.futures.wait(
        [slow, bad], timeout=WAIT, return_when=concurrent.futures.FIRST_EXCEPTION)
    release.set()
    assert bad in done


def test_many_threads_scheduling_concurrently(pool):
    results = {}
    start = threading.Barrier(16)

    def producer(index):
        start.wait()
        futures = [pool.schedule(add, args=(index, i)) for i in range(200)]
        results[index] = [f.result(WAIT) for f in futures]

    producers = [threading.Thread(target=producer, args=(i,)) for i in range(16)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join(WAIT * 2)
    assert len(results) == 16
    for index, values in results.items():
        assert values == [index + i for i in range(200)]


def test_tasks_run_concurrently():
    barrier = threading.Barrier(4, timeout=WAIT)
    with ThreadPool(max_workers=4) as pool:
        futures = [pool.schedule(barrier.wait) for _ in range(4)]
        assert sorted(f.result(WAIT) for f in futures) == [0, 1, 2, 3]


def test_done_callback_runs(pool):
    called = threading.Event()
    seen = []

    def callback(future):
        seen.append(future.result())
        called.set()

    pool.schedule(identity, args=(5,)).add_done_callback(callback)
    assert called.wait(WAIT)
    assert seen == [5]


# -- map --------------------------------------------------------------------


def test_map_results_in_order(pool):
    future = pool.map(identity, range(100))
    assert isinstance(future, MapFuture)
    assert list(future.result(WAIT)) == list(range(100))


def test_map_order_kept_when_later_elements_finish_first(pool):
    def delayed(value):
        time.sleep(0.05 if value == 0 else 0)
        return value

    assert list(pool.map(delayed, range(8)).result(WAIT)) == list(range(8))


@pytest.mark.parametrize("chunksize", [1, 2, 3, 7, 100, 2.0, 2.5])
def test_map_chunksize(pool, chunksize):
    future = pool.map(add, range(20), range(20), chunksize=chunksize)
    assert list(future.result(WAIT)) == [2 * i for i in range(20)]


def test_map_float_chunksize_splits_like_int(pool):
    future = pool.map(identity, range(10), chunksize=2.0)
    assert len(future.futures) == 5
    assert list(future.result(WAIT)) == list(range(10))


def test_map_multiple_iterables_stop_at_shortest(pool):
    future = pool.map(pow, [2, 3, 4], [1, 2, 3, 4, 5])
    assert list(future.result(WAIT)) == [2, 9, 64]


def test_map_accepts_generators(pool):
    future = pool.map(add, (i for i in range(5)), iter([10] * 5), chunksize=2)
    assert list(future.result(WAIT)) == [10, 11, 12, 13, 14]


@pytest.mark.parametrize("chunksize", [1, 3])
def test_map_errors_raised_in_place(pool, chunksize):
    future = pool.map(fail_on({2, 7}), range(10), chunksize=chunksize)
    iterator = future.result(WAIT)
    seen = []
    for index in range(10):
        if index in (2, 7):
            with pytest.raises(ValueError) as info:
                next(iterator)
            assert info.value.args == (index,)
            seen.append("error")
        else:
            seen.append(next(iterator))
    with pytest.raises(StopIteration):
        next(iterator)
    assert seen == [0, 10, "error", 30, 40, 50, 60, "error", 80, 90]


def test_map_empty_input(pool):
    future = pool.map(identity, [])
    assert future.done()
    assert list(future.result(WAIT)) == []
    assert list(pool.map(add, [], [1, 2]).result(WAIT)) == []


def test_map_timeout_per_element(pool):
    release = threading.Event()

    def slow(value):
        if value == 1:
            release.wait(WAIT)
        return value

    start = time.monotonic()
    future = pool.map(slow, range(3), timeout=0.2)
    iterator = future.result(WAIT)
    try:
        assert next(iterator) == 0
        with pytest.raises(concurrent.futures.TimeoutError):
            next(iterator)
        elapsed = time.monotonic() - start
        assert 0.15 <= elapsed < 2
        # Iteration continues after a timed out element.
        assert next(iterator) == 2
    finally:
        release.set()


def test_map_timeout_counts_from_the_map_call(pool):
    release = threading.Event()

    def slow(value):
        if value:
            release.wait(WAIT)
        return value

    future = pool.map(slow, [0, 1], timeout=0.2)
    time.sleep(0.3)
    iterator = future.result(WAIT)
    try:
        # Ready elements are still delivered after the deadline...
        assert next(iterator) == 0
        # ...and a late one fails at once: the deadline is already past.
        start = time.monotonic()
        with pytest.raises(concurrent.futures.TimeoutError):
            next(iterator)
        assert time.monotonic() - start < 0.15
    finally:
        release.set()


def test_map_without_timeout_waits(pool):
    def slow(value):
        time.sleep(0.2)
        return value

    assert list(pool.map(slow, range(2)).result(WAIT)) == [0, 1]


def test_map_future_cancel_pending_elements():
    started = threading.Event()
    release = threading.Event()

    def function(value):
        if value == 0:
            started.set()
            release.wait(WAIT)
        return value

    with ThreadPool(max_workers=1) as pool:
        future = pool.map(function, range(5))
        assert started.wait(WAIT)
        assert future.cancel() is True
        # As on Pebble: the running chunk cannot be stopped, so the map is
        # not cancelled, and its results stay iterable.
        assert not future.cancelled()
        chunks = future.futures
        assert not chunks[0].cancelled()
        assert all(chunk.cancelled() for chunk in chunks[1:])
        release.set()
        assert chunks[0].result(WAIT) == [0]
        iterator = future.result(WAIT)
        assert next(iterator) == 0
        with pytest.raises(concurrent.futures.CancelledError):
            next(iterator)


def test_map_future_cancel_when_all_running_returns_false():
    """cancel() returning False must leave the map running to completion."""
    started = threading.Barrier(3, timeout=WAIT)

    def function(value):
        started.wait()
        time.sleep(0.1)
        return value

    with ThreadPool(max_workers=2) as pool:
        future = pool.map(function, range(2))
        started.wait()
        assert future.cancel() is False
        assert not future.cancelled()
        assert list(future.result(WAIT)) == [0, 1]


def test_map_future_cancel_after_completion(pool):
    future = pool.map(identity, range(4))
    assert list(future.result(WAIT)) == [0, 1, 2, 3]
    concurrent.futures.wait(future.futures, timeout=WAIT)
    assert future.cancel() is False
    assert not future.cancelled()


def test_map_cancelled_elements_raise_in_iterator():
    release = threading.Event()

    def function(value):
        if value == 0:
            release.wait(WAIT)
        return value

    with ThreadPool(max_workers=1) as pool:
        future = pool.map(function, range(3))
        assert future.futures[2].cancel()
        release.set()
        iterator = future.result(WAIT)
        assert next(iterator) == 0
        assert next(iterator) == 1
        with pytest.raises(concurrent.futures.CancelledError):
            next(iterator)
        with pytest.raises(StopIteration):
            next(iterator)


def test_map_result_ready_as_soon_as_first_chunk():
    release = threading.Event()

    def function(value):
        if value:
            release.wait(WAIT)
        return value

    with ThreadPool(max_workers=2) as pool:
        future = pool.map(function, [0, 1])
        iterator = future.result(WAIT)
        assert next(iterator) == 0
        assert not future.futures[1].done()
        release.set()
        assert next(iterator) == 1


# -- lifecycle --------------------------------------------------------------


def test_close_runs_queued_work():
    pool = ThreadPool(max_workers=1)
    futures = [pool.schedule(time.sleep, args=(0.01,)) for _ in range(10)]
    pool.close()
    pool.join(WAIT)
    assert all(f.done() and f.exception() is None for f in futures)


def test_join_on_running_pool_raises():
    pool = ThreadPool(max_workers=1)
    with pytest.raises(RuntimeError):
        pool.join()
    pool.schedule(identity, args=(1,)).result(WAIT)
    with pytest.raises(RuntimeError):
        pool.join(0.1)
    pool.close()
    pool.join(WAIT)


def test_join_timeout():
    release = threading.Event()
    pool = ThreadPool(max_workers=1)
    future = pool.schedule(release.wait, args=(WAIT,))
    pool.close()
    start = time.monotonic()
    with pytest.raises(concurrent.futures.TimeoutError):
        pool.join(0.2)
    assert 0.15 <= time.monotonic() - start < 2
    with pytest.raises(concurrent.futures.TimeoutError):
        pool.join(0)
    release.set()
    pool.join(WAIT)
    assert future.result() is True


def test_stop_cancels_queued_and_finishes_running():
    started = threading.Event()
    release = threading.Event()

    def blocking():
        started.set()
        return release.wait(WAIT)

    pool = ThreadPool(max_workers=1)
    running = pool.schedule(blocking)
    assert started.wait(WAIT)
    queued = [pool.schedule(identity, args=(i,)) for i in range(5)]
    pool.stop()
    for future in queued:
        assert future.done()
        with pytest.raises(concurrent.futures.CancelledError):
            future.result(0)
    release.set()
    pool.join(WAIT)
    assert running.result(0) is True


def test_stop_wakes_waiters_of_queued_futures():
    started = threading.Event()
    release = threading.Event()

    def blocking():
        started.set()
        return release.wait(WAIT)

    pool = ThreadPool(max_workers=1)
    running = pool.schedule(blocking)
    assert started.wait(WAIT)
    queued = [pool.schedule(identity, args=(i,)) for i in range(3)]
    pool.stop()
    done, not_done = concurrent.futures.wait(queued, timeout=1)
    assert not not_done
    assert len(list(concurrent.futures.as_completed(queued, timeout=1))) == 3
    release.set()
    pool.join(WAIT)
    assert running.result(0) is True


def test_stop_resolves_map():
    started = threading.Event()
    release = threading.Event()

    def function(value):
        started.set()
        release.wait(WAIT)
        return value

    pool = ThreadPool(max_workers=1)
    future = pool.map(function, range(4))
    assert started.wait(WAIT)
    pool.stop()
    release.set()
    pool.join(WAIT)
    iterator = future.result(WAIT)
    assert next(iterator) == 0
    for _ in range(3):
        with pytest.raises(concurrent.futures.CancelledError):
            next(iterator)


def test_stop_idle_pool_and_unstarted_pool():
    pool = ThreadPool(max_workers=2)
    pool.schedule(identity, args=(1,)).result(WAIT)
    pool.stop()
    pool.join(WAIT)
    unstarted = ThreadPool()
    unstarted.stop()
    unstarted.join(WAIT)
    assert not unstarted.active


def test_close_and_stop_are_idempotent():
    pool = ThreadPool(max_workers=1)
    pool.close()
    pool.close()
    pool.stop()
    pool.stop()
    pool.join(WAIT)
    pool.join(WAIT)


@pytest.mark.parametrize("finish", ["close", "stop"])
def test_schedule_on_finished_pool_raises(finish):
    pool = ThreadPool(max_workers=1)
    getattr(pool, finish)()
    with pytest.raises(RuntimeError):
        pool.schedule(identity, args=(1,))
    with pytest.raises(RuntimeError):
        pool.submit(identity, 1)
    with pytest.raises(RuntimeError):
        pool.map(identity, [1])
    pool.join(WAIT)
    with pytest.raises(RuntimeError):
        pool.schedule(identity, args=(1,))


def test_active():
    release = threading.Event()
    pool = ThreadPool(max_workers=1)
    assert pool.active
    future = pool.schedule(release.wait, args=(WAIT,))
    assert pool.active
    pool.close()
    assert pool.active  # closed, still working
    release.set()
    pool.join(WAIT)
    assert future.result() is True
    assert not pool.active

    pool = ThreadPool(max_workers=1)
    pool.schedule(identity, args=(1,)).result(WAIT)
    pool.stop()
    assert not pool.active
    pool.join(WAIT)
    assert not pool.active


def test_context_manager():
    with ThreadPool(max_workers=2) as pool:
        assert isinstance(pool, ThreadPool)
        futures = [pool.schedule(time.sleep, args=(0.02,)) for _ in range(6)]
    assert all(f.done() for f in futures)
    assert not pool.active
    with pytest.raises(RuntimeError):
        pool.schedule(identity, args=(1,))


def test_context_manager_on_exception():
    with pytest.raises(KeyError):
        with ThreadPool(max_workers=1) as pool:
            future = pool.schedule(identity, args=(3,))
            raise KeyError("x")
    assert future.result(0) == 3
    assert not pool.active


def test_repr_mentions_class():
    pool = ThreadPool(max_workers=1)
    assert "ThreadPool" in repr(pool)
    pool.stop()
    pool.join(WAIT)


def test_no_thread_left_after_join():
    before = threading.active_count()
    for cycle in range(5):
        pool = ThreadPool(max_workers=4, max_tasks=3 if cycle % 2 else 0)
        futures = [pool.schedule(add, args=(i, cycle)) for i in range(40)]
        assert [f.result(WAIT) for f in futures] == [i + cycle for i in range(40)]
        if cycle % 3 == 2:
            pool.stop()
        else:
            pool.close()
        pool.join(WAIT)
    with ThreadPool(max_workers=3) as pool:
        list(pool.map(identity, range(30)).result(WAIT))
    assert threading.active_count() == before


# -- workers ----------------------------------------------------------------


def test_max_tasks_replaces_workers():
    threads = []
    lock = threading.Lock()

    def record(value):
        with lock:
            threads.append(threading.current_thread())
        return value

    with ThreadPool(max_workers=2, max_tasks=1) as pool:
        futures = [pool.schedule(record, args=(i,)) for i in range(10)]
        assert [f.result(WAIT) for f in futures] == list(range(10))
    counts = collections.Counter(threads)
    assert len(counts) == 10  # one fresh thread per task
    assert set(counts.values()) == {1}


def test_max_tasks_many_and_join_waits_for_all():
    """join() after close() must not return while replacement workers still run."""
    for _ in range(30):
        pool = ThreadPool(max_workers=2, max_tasks=1)
        futures = [pool.schedule(time.sleep, args=(0,)) for _ in range(20)]
        pool.close()
        pool.join(WAIT)
        assert all(f.done() for f in futures)


def test_max_tasks_larger_than_one():
    threads = collections.Counter()
    lock = threading.Lock()

    def record():
        with lock:
            threads[threading.current_thread()] += 1

    with ThreadPool(max_workers=1, max_tasks=3) as pool:
        for future in [pool.schedule(record) for _ in range(9)]:
            future.result(WAIT)
    assert sorted(threads.values()) == [3, 3, 3]


def test_initializer_runs_in_every_worker():
    initialized = []
    lock = threading.Lock()

    def initializer(tag):
        with lock:
            initialized.append((tag, threading.current_thread()))

    barrier = threading.Barrier(3, timeout=WAIT)

    def task():
        barrier.wait()
        return threading.current_thread()

    with ThreadPool(max_workers=3, initializer=initializer, initargs=("tag",)) as pool:
        workers = {f.result(WAIT) for f in [pool.schedule(task) for _ in range(3)]}
    assert len(workers) == 3
    assert {tag for tag, _ in initialized} == {"tag"}
    assert {thread for _, thread in initialized} == workers


def test_initializer_runs_for_replacement_workers():
    initialized = []
    tasks = []

    def initializer():
        initialized.append(threading.current_thread())

    def task():
        tasks.append(threading.current_thread())

    with ThreadPool(max_workers=1, max_tasks=1, initializer=initializer) as pool:
        for future in [pool.schedule(task) for _ in range(4)]:
            future.result(WAIT)
    assert tasks == initialized[:4]


def test_initializer_failure_fails_queued_work():
    release = threading.Event()

    def initializer():
        release.wait(WAIT)
        raise ValueError("init failed")

    pool = ThreadPool(max_workers=2, initializer=initializer)
    futures = [pool.schedule(identity, args=(i,)) for i in range(5)]
    release.set()
    done, not_done = concurrent.futures.wait(futures, timeout=WAIT)
    assert not not_done
    for future in futures:
        with pytest.raises(RuntimeError):
            future.result(0)
    with pytest.raises(RuntimeError):
        pool.schedule(identity, args=(1,))
    with pytest.raises(RuntimeError):
        pool.map(identity, [1])
    pool.stop()
    pool.join(WAIT)
    assert not pool.active


def test_initializer_failure_first_schedule():
    def initializer():
        raise ValueError("init failed")

    pool = ThreadPool(max_workers=1, initializer=initializer)
    futures = []
    deadline = time.monotonic() + WAIT
    with pytest.raises(RuntimeError):
        while time.monotonic() < deadline:
            futures.append(pool.schedule(identity, args=(1,)))
            time.sleep(0.001)
    for future in futures:
        with pytest.raises(RuntimeError):
            future.result(WAIT)
    pool.join(WAIT)


# -- bad input --------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error", [
    ({"max_workers": 0}, ValueError),
    ({"max_workers": -3}, ValueError),
    ({"max_workers": "2"}, TypeError),
    ({"max_workers": 2.0}, TypeError),
    ({"max_workers": None}, TypeError),
    ({"max_tasks": -1}, ValueError),
    ({"max_tasks": "1"}, TypeError),
    ({"max_tasks": 1.5}, TypeError),
    ({"initializer": 3}, TypeError),
    ({"initializer": identity, "initargs": 5}, TypeError),
])
def test_bad_constructor_arguments(kwargs, error):
    with pytest.raises(error):
        ThreadPool(**kwargs)


def test_schedule_bad_arguments(pool):
    with pytest.raises(TypeError):
        pool.schedule(42)
    with pytest.raises(TypeError):
        pool.schedule("identity")
    with pytest.raises(TypeError):
        pool.schedule(identity, args=5)
    with pytest.raises(TypeError):
        pool.schedule(identity, args=(), kwargs=[1, 2])
    with pytest.raises(TypeError):
        pool.submit(None)
    # The pool stays usable.
    assert pool.schedule(identity, args=(1,)).result(WAIT) == 1


@pytest.mark.parametrize("chunksize, error", [
    (0, ValueError),
    (-1, ValueError),
    (0.5, ValueError),
    (float("inf"), ValueError),
    (float("nan"), ValueError),
    ("2", TypeError),
    (None, TypeError),
    (True, TypeError),
])
def test_map_bad_chunksize(pool, chunksize, error):
    with pytest.raises(error):
        pool.map(identity, range(3), chunksize=chunksize)


def test_map_bad_arguments(pool):
    with pytest.raises(TypeError):
        pool.map(42, range(3))
    with pytest.raises(TypeError):
        pool.map(identity)
    with pytest.raises(TypeError):
        pool.map(identity, 5)
    with pytest.raises(TypeError):
        pool.map(identity, range(3), timeout="1")
    with pytest.raises(ValueError):
        pool.map(identity, range(3), timeout=-1)


def test_join_bad_timeout():
    pool = ThreadPool(max_workers=1)
    pool.close()
    with pytest.raises(TypeError):
        pool.join("1")
    with pytest.raises(ValueError):
        pool.join(-1)
    pool.join(WAIT)
