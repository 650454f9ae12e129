"""ProcessPool: scheduling, results, errors, timeouts, cancel, map, lifecycle."""

import asyncio
import functools
import itertools
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import (FIRST_COMPLETED, CancelledError, Future,
                                TimeoutError, as_completed, wait)

import pytest

import procfuncs as pf
from pebble import ProcessExpired, ProcessFuture, ProcessMapFuture, ProcessPool
from pebble.common import RemoteTraceback
from proctools import default_start_method, pid_gone, wait_until


@pytest.fixture
def fork():
    return multiprocessing.get_context("fork")


def make_pool(*args, **kwargs):
    kwargs.setdefault("context", multiprocessing.get_context("fork"))
    return ProcessPool(*args, **kwargs)


@pytest.fixture
def pool():
    pool = make_pool(max_workers=2)
    yield pool
    pool.stop()
    pool.join(10)


@pytest.fixture
def pool1():
    pool = make_pool(max_workers=1)
    yield pool
    pool.stop()
    pool.join(10)


def wait_running(future, timeout=10):
    assert wait_until(future.running, timeout), "the task never started"


def assert_pool_works(pool):
    assert pool.schedule(pf.add, args=(20,), kwargs={"b": 22}).result(timeout=30) == 42


# -- scheduling and results --------------------------------------------------

def test_schedule_result(context):
    with ProcessPool(max_workers=2, context=context) as pool:
        future = pool.schedule(pf.add, args=(1,), kwargs={"b": 2})
        assert isinstance(future, ProcessFuture)
        assert future.result(timeout=30) == 3
        pids = {pool.schedule(pf.getpid).result(timeout=30) for _ in range(6)}
    assert os.getpid() not in pids


def test_schedule_many_results(pool):
    futures = [pool.schedule(pf.square, args=(i,)) for i in range(200)]
    assert [f.result(timeout=30) for f in futures] == [i * i for i in range(200)]


def test_schedule_defaults_and_iterables(pool):
    assert pool.schedule(pf.getpid).result(timeout=30) != os.getpid()
    assert pool.schedule(pf.add, args=[1, 2]).result(timeout=30) == 3
    assert pool.schedule(pf.add, args=(x for x in (1, 2))).result(timeout=30) == 3
    assert pool.schedule(pf.add, (5,), {"b": 6}).result(timeout=30) == 11


def test_large_argument_and_result(pool):
    data = os.urandom(3 * 1024 * 1024)
    assert pool.schedule(pf.identity, args=(data,)).result(timeout=30) == data
    assert len(pool.schedule(pf.big_result, args=(8 << 20,)).result(timeout=30)) == 8 << 20


def test_submit(pool):
    future = pool.submit(pf.add, None, 1, b=2)
    assert future.result(timeout=30) == 3
    # The timeout is positional only: a keyword named timeout reaches the function.
    assert pool.submit(pf.echo_kwargs, None, timeout=5).result(timeout=30) == {"timeout": 5}
    late = pool.submit(pf.sleep_return, 0.2, 5)
    with pytest.raises(TimeoutError):
        late.result(timeout=30)


def test_submit_requires_timeout(pool):
    with pytest.raises(TypeError):
        pool.submit(pf.getpid)


def test_submit_partial_with_asyncio(pool):
    async def main():
        loop = asyncio.get_running_loop()
        direct = await asyncio.wrap_future(pool.submit(functools.partial(pf.add, 1, b=2), None))
        via_executor = await loop.run_in_executor(pool, functools.partial(pf.add, 3, b=4), None)
        return direct, via_executor

    assert asyncio.run(main()) == (3, 7)


# -- errors -------------------------------------------------------------------

def test_exception_same_type_with_traceback(context):
    with ProcessPool(max_workers=1, context=context) as pool:
        future = pool.schedule(pf.raise_custom, args=("boom",))
        error = future.exception(timeout=30)
    assert type(error) is pf.CustomError
    assert error.args == ("boom",)
    assert "raise_custom" in error.traceback
    assert "procfuncs.py" in error.traceback
    assert "CustomError: boom" in error.traceback
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "raise_custom" in str(error.__cause__)
    with pytest.raises(pf.CustomError, match="boom"):
        future.result()


def test_builtin_exception(pool):
    future = pool.schedule(pf.raise_value_error, args=("bad value",))
    with pytest.raises(ValueError, match="bad value") as info:
        future.result(timeout=30)
    assert "raise_value_error" in info.value.traceback
    assert_pool_works(pool)


def test_error_does_not_affect_other_tasks(pool):
    futures = [pool.schedule(pf.raise_custom if i % 3 == 0 else pf.square,
                             args=("x" if i % 3 == 0 else i,)) for i in range(30)]
    for i, future in enumerate(futures):
        if i % 3 == 0:
            assert isinstance(future.exception(timeout=30), pf.CustomError)
        else:
            assert future.result(timeout=30) == i * i


# -- timeouts -----------------------------------------------------------------

def test_timeout(context):
    with ProcessPool(max_workers=1, context=context) as pool:
        before = pool.schedule(pf.getpid).result(timeout=30)
        start = time.monotonic()
        future = pool.schedule(pf.sleep_return, args=(10,), timeout=0.3)
        with pytest.raises(TimeoutError) as info:
            future.result(timeout=30)
        elapsed = time.monotonic() - start
        assert info.value.args == ("Task timeout", 0.3)
        assert 0.3 <= elapsed < 3
        after = pool.schedule(pf.getpid).result(timeout=30)
        assert after != before
        assert wait_until(lambda: pid_gone(before))


def test_timeout_int_and_fast_tasks_unaffected(pool):
    fast = pool.schedule(pf.add, args=(1, 1), timeout=5)
    slow = pool.schedule(pf.sleep_return, args=(10,), timeout=1)
    assert fast.result(timeout=30) == 2
    with pytest.raises(TimeoutError) as info:
        slow.result(timeout=30)
    assert info.value.args == ("Task timeout", 1)
    assert_pool_works(pool)


def test_timeout_callbacks_run(pool):
    seen = []
    done = threading.Event()

    def callback(future):
        seen.append(type(future.exception()))
        done.set()

    pool.schedule(pf.sleep_return, args=(10,), timeout=0.1).add_done_callback(callback)
    assert done.wait(10)
    assert seen == [TimeoutError]


# -- cancel ---------------------------------------------------------------------

def test_cancel_running(context):
    with ProcessPool(max_workers=1, context=context) as pool:
        future = pool.schedule(pf.sleep_pid, args=(30,))
        wait_running(future)
        (pid,) = pool._core.pids
        start = time.monotonic()
        assert future.cancel() is True
        with pytest.raises(CancelledError):
            future.result(timeout=5)
        assert time.monotonic() - start < 0.5
        assert future.cancelled()
        assert wait_until(lambda: pid_gone(pid), 5), "the cancelled task's worker survived"
        assert pool.schedule(pf.getpid).result(timeout=30) != pid


def test_cancel_running_calls_callback_once(pool1):
    calls = []
    future = pool1.schedule(pf.sleep_return, args=(30,))
    future.add_done_callback(calls.append)
    wait_running(future)
    assert future.cancel()
    assert future.cancel()  # already cancelled: still True, no second callback
    assert wait_until(lambda: calls == [future], 2)
    time.sleep(0.1)
    assert calls == [future]
    assert_pool_works(pool1)


def test_cancel_pending(pool1):
    blocker = pool1.schedule(pf.sleep_pid, args=(0.5,))
    wait_running(blocker)
    (pid,) = pool1._core.pids
    pending = pool1.schedule(pf.getpid)
    assert pending.cancel() is True
    assert pending.cancelled()
    with pytest.raises(CancelledError):
        pending.result(timeout=1)
    # The running task and its worker were left alone.
    assert blocker.result(timeout=30) == pid
    assert pool1.schedule(pf.getpid).result(timeout=30) == pid


def test_cancel_done_returns_false(pool):
    future = pool.schedule(pf.add, args=(1, 2))
    assert future.result(timeout=30) == 3
    assert future.cancel() is False
    assert not future.cancelled()


# -- worker lifecycle ---------------------------------------------------------

def test_max_tasks_restarts_workers(context):
    with ProcessPool(max_workers=1, max_tasks=2, context=context) as pool:
        pids = [pool.schedule(pf.getpid).result(timeout=30) for _ in range(4)]
    assert pids[0] == pids[1]
    assert pids[2] == pids[3]
    assert pids[0] != pids[2]


def test_max_tasks_replacement_does_not_wait_for_the_retiring_worker(context):
    """A worker done with its share is replaced at once, not once it has exited:
    the task queued behind its last one starts while it is still ending."""
    with ProcessPool(max_workers=1, max_tasks=1, context=context) as pool:
        pool.schedule(pf.getpid).result(timeout=30)  # the pool is up
        last = pool.schedule(pf.slow_exit_pid, args=(2,))
        behind = pool.schedule(pf.getpid)
        first = last.result(timeout=30)
        start = time.monotonic()
        second = behind.result(timeout=30)
        took = time.monotonic() - start
    assert second != first
    assert took < 1.5, "the next task waited %.2f s for the retiring worker's exit" % took


def test_max_tasks_many(pool):
    with make_pool(max_workers=2, max_tasks=3) as pool:
        futures = [pool.schedule(pf.getpid) for _ in range(30)]
        pids = [f.result(timeout=30) for f in futures]
    counts = {pid: pids.count(pid) for pid in set(pids)}
    assert len(counts) >= 10
    assert max(counts.values()) <= 3


def test_initializer(context):
    with ProcessPool(max_workers=2, initializer=pf.init_set, initargs=("hello",),
                     context=context) as pool:
        futures = [pool.schedule(pf.sleep_return, args=(0.05,)) for _ in range(4)]
        values = [pool.schedule(pf.get_init).result(timeout=30) for _ in range(4)]
        wait(futures)
    for value, pid in values:
        assert value == "hello"
        assert pid != os.getpid()


def test_initializer_runs_in_each_new_worker():
    with make_pool(max_workers=1, max_tasks=1, initializer=pf.init_set,
                   initargs=[7]) as pool:
        values = [pool.schedule(pf.get_init).result(timeout=30) for _ in range(3)]
    assert [v for v, _ in values] == [7, 7, 7]
    assert len({pid for _, pid in values}) == 3


def check_broken_pool(pool, future):
    error = future.exception(timeout=30)
    assert error is not None
    assert wait_until(lambda: not pool.active, 5)
    with pytest.raises(RuntimeError):
        pool.schedule(pf.getpid)
    with pytest.raises(RuntimeError):
        pool.map(pf.square, [1])
    pool.close()
    pool.join(10)
    return error


def schedule_three(pool, function):
    """Schedule three tasks; the pool may break before the second or third.

    A failing initializer runs at the pool's start, so its failure may be
    known before the next schedule(): that schedule raises RuntimeError.
    """
    futures = [pool.schedule(function, args=(0,))]
    for i in (1, 2):
        try:
            futures.append(pool.schedule(function, args=(i,)))
        except RuntimeError as error:
            assert error.__cause__ is not None
            break
    return futures


def test_initializer_raising_breaks_pool(context):
    pool = ProcessPool(max_workers=1, initializer=pf.init_raise, initargs=("init failed",),
                       context=context)
    futures = schedule_three(pool, pf.identity)
    error = check_broken_pool(pool, futures[0])
    assert isinstance(error, RuntimeError)
    assert "init failed" in str(error) or "init failed" in str(error.__cause__)
    assert all(f.done() and not f.cancelled() for f in futures)
    assert all(f.exception() is not None for f in futures)


def test_initializer_exiting_breaks_pool():
    pool = make_pool(max_workers=2, initializer=pf.init_exit, initargs=(4,))
    futures = schedule_three(pool, pf.identity)
    check_broken_pool(pool, futures[0])
    assert all(f.exception(timeout=10) is not None for f in futures)


def test_initializer_error_join_and_stop():
    pool = make_pool(max_workers=1, initializer=pf.init_raise, initargs=("x",))
    future = pool.schedule(pf.identity, args=(1,))
    assert future.exception(timeout=30) is not None
    pool.stop()
    pool.join(10)
    assert not pool.active


# -- crashes --------------------------------------------------------------------

CRASHES = [
    pytest.param(pf.exit_process, (0,), 0, id="exit0"),
    pytest.param(pf.exit_process, (3,), 3, id="exit3"),
    pytest.param(pf.kill_self, (signal.SIGKILL,), -signal.SIGKILL, id="sigkill"),
    pytest.param(pf.segfault, (), -signal.SIGSEGV, id="segfault"),
]


@pytest.mark.parametrize("function, args, exitcode", CRASHES)
def test_process_expired(function, args, exitcode):
    with make_pool(max_workers=2) as pool:
        bystander = pool.schedule(pf.sleep_return, args=(0.5, "alive"))
        wait_running(bystander)
        crash = pool.schedule(function, args=args)
        error = crash.exception(timeout=30)
        assert isinstance(error, ProcessExpired)
        assert isinstance(error, OSError)
        assert error.exitcode == exitcode
        assert isinstance(error.pid, int) and error.pid > 0
        assert error.pid != os.getpid()
        assert wait_until(lambda: pid_gone(error.pid))
        assert bystander.result(timeout=30) == "alive"
        assert_pool_works(pool)


def test_process_expired_pid_is_the_worker(context):
    with ProcessPool(max_workers=1, context=context) as pool:
        pid = pool.schedule(pf.getpid).result(timeout=30)
        error = pool.schedule(pf.exit_process, args=(3,)).exception(timeout=30)
        assert isinstance(error, ProcessExpired)
        assert (error.exitcode, error.pid) == (3, pid)
        assert pool.schedule(pf.getpid).result(timeout=30) != pid


# -- map ------------------------------------------------------------------------

def test_map(context):
    with ProcessPool(max_workers=2, context=context) as pool:
        future = pool.map(pf.square, range(50), chunksize=7)
        assert isinstance(future, ProcessMapFuture)
        assert list(future.result(timeout=30)) == [i * i for i in range(50)]


def test_map_order_and_chunksizes(pool):
    expected = [i * i for i in range(40)]
    for chunksize in (1, 2, 3, 39, 40, 100, 2.0, 2.5):
        assert list(pool.map(pf.square, range(40), chunksize=chunksize).result()) == expected


def test_map_float_chunksize_rounds_up(pool):
    future = pool.map(pf.square, range(10), chunksize=2.5)
    assert len(future.futures) == 4  # chunks of 3
    assert list(future.result()) == [i * i for i in range(10)]


def test_map_multiple_iterables(pool):
    future = pool.map(pf.add, range(10), itertools.count(100), chunksize=3)
    assert list(future.result()) == [i + 100 + i for i in range(10)]


def test_map_iterator_input(pool):
    assert list(pool.map(pf.square, iter(range(5))).result()) == [0, 1, 4, 9, 16]


def test_map_empty(pool):
    future = pool.map(pf.square, [])
    assert future.done()
    assert list(future.result()) == []


def collect(iterator):
    """Drain a map result iterator, keeping errors in place."""
    out = []
    while True:
        try:
            out.append(next(iterator))
        except StopIteration:
            return out
        except BaseException as error:
            out.append(error)


@pytest.mark.parametrize("chunksize", [1, 3])
def test_map_element_errors(pool, chunksize):
    future = pool.map(pf.fail_on, range(8), itertools.repeat({1, 4}), chunksize=chunksize)
    results = collect(future.result())
    assert len(results) == 8
    for i, value in enumerate(results):
        if i in (1, 4):
            assert isinstance(value, ValueError)
            assert "bad element %d" % i in str(value)
            assert "fail_on" in value.traceback
        else:
            assert value == i


def test_map_timeout_per_chunk(pool):
    start = time.monotonic()
    future = pool.map(pf.sleep_on, range(6), itertools.repeat({2}), itertools.repeat(10),
                      chunksize=1, timeout=0.5)
    results = collect(future.result())
    assert time.monotonic() - start < 5
    assert results[:2] == [0, 1]
    assert isinstance(results[2], TimeoutError)
    assert results[3:] == [3, 4, 5]
    assert_pool_works(pool)


def test_map_timeout_chunk_of_several(pool):
    future = pool.map(pf.sleep_on, range(6), itertools.repeat({4}), itertools.repeat(10),
                      chunksize=2, timeout=0.5)
    results = collect(future.result())
    assert results[:4] == [0, 1, 2, 3]
    assert isinstance(results[4], TimeoutError)
    assert len(results) == 5  # one error stands for the whole failed chunk


def test_map_process_expired_in_chunk(pool):
    future = pool.map(pf.exit_on, range(6), itertools.repeat({3}), chunksize=2)
    results = collect(future.result())
    assert results[:2] == [0, 1]
    assert isinstance(results[2], ProcessExpired)
    assert results[2].exitcode == 5
    assert results[3:] == [4, 5]
    assert_pool_works(pool)


def test_map_cancel(pool1):
    future = pool1.map(pf.sleep_return, itertools.repeat(0.2), range(20))
    wait_running(future.futures[0])
    start = time.monotonic()
    assert future.cancel() is True
    assert wait_until(lambda: all(f.done() for f in future.futures), 3)
    assert time.monotonic() - start < 1
    assert sum(f.cancelled() for f in future.futures) >= 19
    assert future.cancelled()
    assert_pool_works(pool1)


def test_map_cancel_from_iteration(pool1):
    future = pool1.map(pf.sleep_on, range(10), itertools.repeat({2}), itertools.repeat(10),
                       timeout=0.3)
    seen = []
    try:
        for value in future.result():
            seen.append(value)
    except TimeoutError:
        future.cancel()
    assert seen == [0, 1]
    assert wait_until(lambda: all(f.done() for f in future.futures), 3)
    assert all(f.cancelled() for f in future.futures[3:])


# -- lifecycle ------------------------------------------------------------------

def test_join_running_pool_raises():
    pool = make_pool(max_workers=1)
    with pytest.raises(RuntimeError):
        pool.join()
    pool.schedule(pf.getpid).result(timeout=30)
    with pytest.raises(RuntimeError):
        pool.join()
    pool.close()
    pool.join(10)


def test_join_timeout(pool1):
    future = pool1.schedule(pf.sleep_return, args=(2, "late"))
    wait_running(future)
    pool1.close()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        pool1.join(timeout=0.2)
    assert 0.15 < time.monotonic() - start < 1.5
    pool1.join(10)
    assert future.result() == "late"


def test_join_timeout_zero(pool1):
    pool1.schedule(pf.sleep_return, args=(1,))
    pool1.close()
    with pytest.raises(TimeoutError):
        pool1.join(0)


def test_close_completes_queued_work():
    pool = make_pool(max_workers=2)
    futures = [pool.schedule(pf.sleep_return, args=(0.02, i)) for i in range(20)]
    pool.close()
    with pytest.raises(RuntimeError):
        pool.schedule(pf.getpid)
    pool.join(30)
    assert [f.result(timeout=0) for f in futures] == list(range(20))


def test_stop_cancels_queued_and_running():
    pool = make_pool(max_workers=2)
    futures = [pool.schedule(pf.sleep_return, args=(10, i)) for i in range(8)]
    wait_running(futures[0])
    wait_running(futures[1])
    pids = pool._core.pids
    start = time.monotonic()
    pool.stop()
    pool.join(10)
    assert time.monotonic() - start < 3
    assert all(f.done() for f in futures)
    for future in futures:
        with pytest.raises(CancelledError):
            future.result(timeout=0)
    assert all(wait_until(lambda pid=pid: pid_gone(pid)) for pid in pids)
    with pytest.raises(RuntimeError):
        pool.schedule(pf.getpid)


def test_stop_unstarted_pool():
    pool = make_pool(max_workers=1)
    pool.stop()
    pool.join(1)
    assert not pool.active
    with pytest.raises(RuntimeError):
        pool.schedule(pf.getpid)


def test_close_unstarted_pool():
    pool = make_pool(max_workers=1)
    pool.close()
    pool.join(1)
    with pytest.raises(RuntimeError):
        pool.schedule(pf.getpid)


def test_close_then_stop():
    pool = make_pool(max_workers=1)
    futures = [pool.schedule(pf.sleep_return, args=(10,)) for _ in range(3)]
    wait_running(futures[0])
    pool.close()
    pool.stop()
    pool.join(10)
    assert all(f.cancelled() for f in futures)


def test_active():
    pool = make_pool(max_workers=1)
    assert pool.active
    future = pool.schedule(pf.sleep_return, args=(0.3,))
    assert pool.active
    pool.close()
    assert pool.active  # still finishing its work
    pool.join(10)
    assert future.done()
    assert not pool.active
    pool = make_pool(max_workers=1)
    pool.schedule(pf.getpid).result(timeout=30)
    pool.stop()
    assert not pool.active
    pool.join(10)
    assert not pool.active


def test_context_manager():
    with make_pool(max_workers=2) as pool:
        assert pool.active
        futures = [pool.schedule(pf.sleep_return, args=(0.05, i)) for i in range(6)]
    assert not pool.active
    assert [f.result(timeout=0) for f in futures] == list(range(6))
    with pytest.raises(RuntimeError):
        pool.schedule(pf.getpid)


def test_context_manager_exception_propagates():
    with pytest.raises(KeyError):
        with make_pool(max_workers=1) as pool:
            future = pool.schedule(pf.add, args=(1, 1))
            raise KeyError("inside")
    assert future.result(timeout=0) == 2
    assert not pool.active


def test_close_and_stop_are_idempotent():
    pool = make_pool(max_workers=1)
    pool.schedule(pf.getpid).result(timeout=30)
    pool.close()
    pool.close()
    pool.stop()
    pool.stop()
    pool.join(10)
    pool.join(10)


def test_join_from_callback_raises():
    pool = make_pool(max_workers=1)
    errors = []
    done = threading.Event()

    def callback(_future):
        try:
            pool.join()
        except BaseException as error:  # checked below
            errors.append(error)
        done.set()

    future = pool.schedule(pf.sleep_return, args=(0.2, 1))
    future.add_done_callback(callback)
    pool.close()
    assert done.wait(10)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    pool.join(10)
    assert future.result() == 1


def test_process_expired_pickles():
    import pickle
    error = pickle.loads(pickle.dumps(ProcessExpired("Abnormal termination", code=-9, pid=77)))
    assert isinstance(error, ProcessExpired) and isinstance(error, OSError)
    assert (str(error), error.exitcode, error.pid) == ("Abnormal termination", -9, 77)


def test_repr():
    pool = make_pool(max_workers=1)
    assert "ProcessPool" in repr(pool)
    pool.stop()
    pool.join()


# -- bad input ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error", [
    ({"max_workers": 0}, ValueError),
    ({"max_workers": -1}, ValueError),
    ({"max_workers": "2"}, TypeError),
    ({"max_workers": 1.5}, TypeError),
    ({"max_tasks": -1}, ValueError),
    ({"max_tasks": "1"}, TypeError),
    ({"initializer": 5}, TypeError),
    ({"initializer": pf.init_set, "initargs": 5}, TypeError),
    ({"context": object()}, TypeError),
    ({"context": "fork"}, TypeError),
])
def test_bad_constructor_arguments(kwargs, error):
    with pytest.raises(error):
        ProcessPool(**kwargs)


def test_context_module_accepted(cheap_start_method):
    """The multiprocessing module as context stands for its default start method."""
    with default_start_method(cheap_start_method):
        with ProcessPool(max_workers=1, context=multiprocessing) as pool:
            assert pool._method == cheap_start_method
            assert pool.schedule(pf.add, args=(1, 1)).result(timeout=30) == 2


@pytest.mark.parametrize("call, error", [
    (lambda p: p.schedule(5), TypeError),
    (lambda p: p.schedule(None), TypeError),
    (lambda p: p.schedule(pf.add, args=5), TypeError),
    (lambda p: p.schedule(pf.add, kwargs=5), TypeError),
    (lambda p: p.schedule(pf.add, args=(1,), timeout="1"), TypeError),
    (lambda p: p.schedule(pf.add, args=(1,), timeout=-1), ValueError),
    (lambda p: p.submit(5, None), TypeError),
    (lambda p: p.submit(pf.add, "soon", 1), TypeError),
    (lambda p: p.map(5, [1]), TypeError),
    (lambda p: p.map(pf.square), TypeError),
    (lambda p: p.map(pf.square, [1], chunksize=0), ValueError),
    (lambda p: p.map(pf.square, [1], chunksize=0.5), ValueError),
    (lambda p: p.map(pf.square, [1], chunksize=-3), ValueError),
    (lambda p: p.map(pf.square, [1], chunksize="2"), TypeError),
    (lambda p: p.map(pf.square, [1], chunksize=None), TypeError),
    (lambda p: p.map(pf.square, [1], timeout="1"), TypeError),
    (lambda p: p.map(pf.square, 5), TypeError),
])
def test_bad_call_arguments(pool, call, error):
    with pytest.raises(error):
        call(pool)
    assert_pool_works(pool)


def test_join_bad_timeout():
    pool = make_pool(max_workers=1)
    pool.close()
    with pytest.raises(TypeError):
        pool.join("1")
    pool.join()


@pytest.mark.parametrize("finish", ["close", "stop"])
def test_schedule_on_finished_pool(finish):
    pool = make_pool(max_workers=1)
    pool.schedule(pf.getpid).result(timeout=30)
    getattr(pool, finish)()
    with pytest.raises(RuntimeError):
        pool.schedule(pf.getpid)
    with pytest.raises(RuntimeError):
        pool.submit(pf.getpid, None)
    with pytest.raises(RuntimeError):
        pool.map(pf.square, [1, 2])
    pool.join(10)
    with pytest.raises(RuntimeError):
        pool.schedule(pf.getpid)


# -- concurrency and integration ----------------------------------------------

def test_many_threads(pool):
    results = {}
    errors = []

    def client(n):
        try:
            futures = [pool.schedule(pf.add, args=(n, i)) for i in range(50)]
            results[n] = [f.result(timeout=60) for f in futures]
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(n * 1000,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert results == {n * 1000: [n * 1000 + i for i in range(50)] for n in range(8)}


def test_many_threads_map_and_cancel(pool):
    errors = []

    def client(n):
        try:
            if n % 2:
                assert list(pool.map(pf.square, range(30), chunksize=4).result()) == \
                    [i * i for i in range(30)]
            else:
                future = pool.schedule(pf.sleep_return, args=(5,))
                future.cancel()
                with pytest.raises(CancelledError):
                    future.result(timeout=5)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert_pool_works(pool)


def test_pool_inside_worker(pool):
    assert pool.schedule(pf.nested_pool, args=([1, 2, 3],)).result(timeout=60) == [1, 4, 9]


def test_pool_inside_spawned_worker():
    with ProcessPool(max_workers=1, context=multiprocessing.get_context("spawn")) as pool:
        assert pool.schedule(pf.nested_pool, args=([4],)).result(timeout=60) == [16]


def test_futures_wait_and_as_completed(pool):
    futures = [pool.schedule(pf.sleep_return, args=(0.05 * (i % 3), i)) for i in range(9)]
    done, not_done = wait(futures, timeout=30)
    assert not not_done and len(done) == 9
    futures = [pool.schedule(pf.sleep_return, args=(0.3, 1)),
               pool.schedule(pf.add, args=(1, 1))]
    done, _ = wait(futures, timeout=30, return_when=FIRST_COMPLETED)
    assert futures[1] in done
    futures = [pool.schedule(pf.square, args=(i,)) for i in range(20)]
    assert sorted(f.result() for f in as_completed(futures, timeout=30)) == \
        [i * i for i in range(20)]


def test_wait_sees_cancel_of_running(pool):
    future = pool.schedule(pf.sleep_return, args=(30,))
    wait_running(future)
    threading.Timer(0.1, future.cancel).start()
    done, _ = wait([future], timeout=5)
    assert future in done and future.cancelled()


def test_asyncio_wrap_future(pool):
    async def main():
        futures = [asyncio.wrap_future(pool.schedule(pf.square, args=(i,))) for i in range(50)]
        results = await asyncio.gather(*futures)
        failing = asyncio.wrap_future(pool.schedule(pf.raise_custom, args=("async",)))
        with pytest.raises(pf.CustomError):
            await failing
        late = asyncio.wrap_future(pool.schedule(pf.sleep_return, args=(10,), timeout=0.2))
        # asyncio.wrap_future turns it into asyncio's own class on 3.10.
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):
            await asyncio.wait_for(late, 10)
        return results

    assert asyncio.run(main()) == [i * i for i in range(50)]


def test_done_callbacks(pool):
    results = []
    event = threading.Event()

    def callback(future):
        results.append(future.result())
        if len(results) == 10:
            event.set()

    for i in range(10):
        pool.schedule(pf.square, args=(i,)).add_done_callback(callback)
    assert event.wait(30)
    assert sorted(results) == [i * i for i in range(10)]


def test_future_states(pool1):
    future = pool1.schedule(pf.sleep_return, args=(0.3, "x"))
    queued = pool1.schedule(pf.add, args=(1, 1))
    wait_running(future)
    assert not queued.running() and not queued.done()
    assert future.result(timeout=30) == "x"
    assert queued.result(timeout=30) == 2
    assert isinstance(future, Future)


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_no_task_waits_behind_a_long_one_while_a_worker_idles(method):
    """Short tasks queued behind a task that turns out long are taken back
    for the idle worker: they finish long before it does."""
    import multiprocessing
    with ProcessPool(2, context=multiprocessing.get_context(method)) as pool:
        for _ in range(3):  # short tasks: the pool queues them behind running ones
            assert sum(pool.map(abs, range(400), chunksize=1).result(30)) == sum(range(400))
        start = time.monotonic()
        long = pool.schedule(time.sleep, args=(4,))
        shorts = [pool.schedule(abs, args=(-n,)) for n in range(40)]
        for n, future in enumerate(shorts):
            assert future.result(30) == n
        waited = time.monotonic() - start
        assert not long.done()
        assert waited < 2, "short tasks waited %.2f s behind a long one" % waited
        long.cancel()
