"""The thread decorators: pebble.concurrent.thread and pebble.asynchronous.thread."""

import asyncio
import threading
import time
from concurrent import futures as cf

import pytest

from pebble import ThreadPool, asynchronous, concurrent

WAIT = 5


def current():
    thread = threading.current_thread()
    return thread, thread.name, thread.daemon


class Adder:
    """A callable object."""

    def __init__(self, base):
        self.base = base

    def __call__(self, value):
        return self.base + value


class Boom(Exception):
    pass


# -- concurrent.thread ------------------------------------------------------


def test_bare_decorator():
    @concurrent.thread
    def function(arg, kwarg=0):
        return arg + kwarg

    future = function(1, kwarg=1)
    assert isinstance(future, cf.Future)
    assert future.result(WAIT) == 2


def test_decorator_with_arguments():
    @concurrent.thread(name="named-call", daemon=False)
    def function():
        return current()

    thread, name, daemon = function().result(WAIT)
    assert name == "named-call"
    assert daemon is False
    assert thread is not threading.current_thread()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_decorator_empty_call():
    @concurrent.thread()
    def function(value):
        return value * 2

    assert function(21).result(WAIT) == 42


def test_functional_form():
    def function(value):
        return value + 1

    decorated = concurrent.thread(function)
    assert decorated(1).result(WAIT) == 2
    assert concurrent.thread(name="x")(function)(2).result(WAIT) == 3


def test_callable_object():
    decorated = concurrent.thread(Adder(10))
    assert decorated(5).result(WAIT) == 15
    assert concurrent.thread(daemon=True)(Adder(1))(1).result(WAIT) == 2


def test_method():
    class Counter:
        def __init__(self):
            self.total = 1

        @concurrent.thread
        def add(self, value):
            self.total += value
            return self.total

    assert Counter().add(2).result(WAIT) == 3


def test_runs_in_another_thread():
    @concurrent.thread
    def function():
        return threading.get_ident()

    assert function().result(WAIT) != threading.get_ident()


def test_exception_propagates():
    @concurrent.thread
    def function():
        raise Boom("failed")

    future = function()
    with pytest.raises(Boom, match="failed"):
        future.result(WAIT)
    assert isinstance(future.exception(), Boom)
    assert future.exception().__traceback__ is not None


def test_base_exception_propagates():
    @concurrent.thread
    def function():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        function().result(WAIT)


def test_name_is_set_and_restored():
    @concurrent.thread(name="special")
    def named():
        return threading.current_thread().name

    @concurrent.thread
    def unnamed():
        return threading.current_thread().name

    for _ in range(5):
        assert named().result(WAIT) == "special"
        assert unnamed().result(WAIT) != "special"


def test_daemon_default_true():
    @concurrent.thread
    def function():
        return threading.current_thread().daemon

    assert function().result(WAIT) is True


def test_daemon_false_with_name():
    @concurrent.thread(name="keeper", daemon=False)
    def function():
        return current()

    thread, name, daemon = function().result(WAIT)
    assert (name, daemon) == ("keeper", False)
    thread.join(WAIT)


def test_many_concurrent_calls():
    barrier = threading.Barrier(20, timeout=WAIT)

    @concurrent.thread
    def function(value):
        barrier.wait()
        return value

    futures = [function(i) for i in range(20)]
    assert [f.result(WAIT) for f in futures] == list(range(20))


def test_idle_threads_do_not_pile_up():
    before = threading.active_count()
    release = threading.Event()

    @concurrent.thread
    def function():
        release.wait(WAIT)

    futures = [function() for _ in range(30)]
    release.set()
    cf.wait(futures, timeout=WAIT)
    # Idle threads beyond a small reserve leave on their own.
    deadline = time.monotonic() + WAIT
    while threading.active_count() > before + 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before + 8


def test_pool_argument():
    with ThreadPool(max_workers=1) as pool:
        worker = pool.schedule(threading.current_thread).result(WAIT)

        @concurrent.thread(pool=pool)
        def function(value):
            return threading.current_thread(), value

        future = function(3)
        assert isinstance(future, cf.Future)
        assert future.result(WAIT) == (worker, 3)


def test_pool_argument_exception():
    with ThreadPool(max_workers=1) as pool:
        @concurrent.thread(pool=pool)
        def function():
            raise Boom("pooled")

        with pytest.raises(Boom, match="pooled"):
            function().result(WAIT)


def test_pool_argument_closed_pool():
    pool = ThreadPool(max_workers=1)

    @concurrent.thread(pool=pool)
    def function():
        return 1

    pool.close()
    pool.join(WAIT)
    with pytest.raises(RuntimeError):
        function()


@pytest.mark.parametrize("decorator", [concurrent.thread, asynchronous.thread])
@pytest.mark.parametrize("pool", [object(), 3, "pool"])
def test_pool_must_be_thread_pool(decorator, pool):
    with pytest.raises(TypeError):
        decorator(pool=pool)


@pytest.mark.parametrize("decorator", [concurrent.thread, asynchronous.thread])
def test_pool_executor_refused(decorator):
    with cf.ThreadPoolExecutor(1) as executor:
        with pytest.raises(TypeError):
            decorator(pool=executor)


@pytest.mark.parametrize("decorator", [concurrent.thread, asynchronous.thread])
@pytest.mark.parametrize("kwargs", [
    {"name": 3},
    {"name": b"bytes"},
    {"daemon": "yes"},
])
def test_bad_parameters(decorator, kwargs):
    with pytest.raises(TypeError):
        decorator(**kwargs)


@pytest.mark.parametrize("decorator", [concurrent.thread, asynchronous.thread])
def test_bad_positional(decorator):
    with pytest.raises(TypeError):
        decorator(3)
    with pytest.raises(TypeError):
        decorator(len, len)
    with pytest.raises(TypeError):
        decorator(name="x")(3)


@pytest.mark.parametrize("decorator", [concurrent.thread, asynchronous.thread])
@pytest.mark.parametrize("form", ["bare", "called"])
def test_metadata_preserved(decorator, form):
    def function(value):
        """The docstring."""
        return value

    decorated = decorator(function) if form == "bare" else decorator(name="n")(function)
    assert decorated.__name__ == "function"
    assert decorated.__doc__ == "The docstring."
    assert decorated.__wrapped__ is function
    assert decorated.__module__ == __name__
    assert decorated.__qualname__ == function.__qualname__


@pytest.mark.parametrize("decorator", [concurrent.thread, asynchronous.thread])
def test_callable_object_wrapped(decorator):
    adder = Adder(1)
    assert decorator(adder).__wrapped__ is adder


# -- asynchronous.thread ----------------------------------------------------


def test_async_bare_decorator():
    @asynchronous.thread
    def function(arg, kwarg=0):
        return arg + kwarg, threading.get_ident()

    async def main():
        future = function(1, kwarg=1)
        assert isinstance(future, asyncio.Future)
        return await future

    value, ident = asyncio.run(main())
    assert value == 2
    assert ident != threading.get_ident()


def test_async_with_arguments():
    @asynchronous.thread(name="async-named", daemon=False)
    def function():
        return current()

    async def main():
        return await function()

    thread, name, daemon = asyncio.run(main())
    assert (name, daemon) == ("async-named", False)
    thread.join(WAIT)


def test_async_daemon_default():
    @asynchronous.thread
    def function():
        return threading.current_thread().daemon

    async def main():
        return await function()

    assert asyncio.run(main()) is True


def test_async_functional_form_and_callable_object():
    decorated = asynchronous.thread(Adder(2))

    async def main():
        return await decorated(3)

    assert asyncio.run(main()) == 5


def test_async_exception_propagates():
    @asynchronous.thread
    def function():
        raise Boom("async failure")

    async def main():
        with pytest.raises(Boom, match="async failure"):
            await function()
        return True

    assert asyncio.run(main())


def test_async_stop_iteration_is_wrapped():
    @asynchronous.thread
    def function():
        raise StopIteration

    async def main():
        with pytest.raises(RuntimeError) as info:
            await function()
        return info.value

    error = asyncio.run(main())
    assert isinstance(error.__cause__, StopIteration)


def test_async_gather_many():
    @asynchronous.thread
    def function(value):
        return value * 2

    async def main():
        return await asyncio.gather(*[function(i) for i in range(200)])

    assert asyncio.run(main()) == [2 * i for i in range(200)]


def test_async_gather_many_with_errors():
    @asynchronous.thread
    def function(value):
        if value % 7 == 0:
            raise Boom(value)
        return value

    async def main():
        return await asyncio.gather(*[function(i) for i in range(50)],
                                    return_exceptions=True)

    results = asyncio.run(main())
    for index, result in enumerate(results):
        if index % 7 == 0:
            assert isinstance(result, Boom) and result.args == (index,)
        else:
            assert result == index


def test_async_cancel_awaiting_task():
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    @asynchronous.thread
    def blocking():
        started.set()
        release.wait(WAIT)
        finished.set()
        return "late"

    @asynchronous.thread
    def quick(value):
        return value

    async def main():
        task = asyncio.ensure_future(blocking())
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The loop and the decorator keep working.
        values = await asyncio.gather(*[quick(i) for i in range(10)])
        release.set()
        return values

    assert asyncio.run(main()) == list(range(10))
    assert finished.wait(WAIT)
    # The late result meets a closed loop: nothing must blow up.
    time.sleep(0.05)

    async def again():
        return await quick("ok")

    assert asyncio.run(again()) == "ok"


def test_async_cancel_before_completion_is_quiet():
    errors = []
    release = threading.Event()

    @asynchronous.thread
    def blocking(value):
        release.wait(WAIT)
        return value

    async def main():
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: errors.append(context))
        futures = [blocking(i) for i in range(5)]
        for future in futures:
            future.cancel()
        release.set()
        # Let the late results reach the loop.
        await asyncio.sleep(0.1)
        return [future.cancelled() for future in futures]

    assert asyncio.run(main()) == [True] * 5
    assert errors == []


def test_async_wait_for_timeout():
    release = threading.Event()

    @asynchronous.thread
    def blocking():
        release.wait(WAIT)
        return 1

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(blocking(), 0.05)
        release.set()
        return await blocking()

    assert asyncio.run(main()) == 1


def test_async_pool_argument():
    with ThreadPool(max_workers=1) as pool:
        worker = pool.schedule(threading.current_thread).result(WAIT)

        @asynchronous.thread(pool=pool)
        def function(value):
            return threading.current_thread(), value

        @asynchronous.thread(pool=pool)
        def failing():
            raise Boom("pooled")

        async def main():
            future = function(4)
            assert isinstance(future, asyncio.Future)
            result = await future
            with pytest.raises(Boom):
                await failing()
            many = await asyncio.gather(*[function(i) for i in range(50)])
            return result, many

        result, many = asyncio.run(main())
        assert result == (worker, 4)
        assert [value for _, value in many] == list(range(50))
        assert {thread for thread, _ in many} == {worker}


def test_async_pool_argument_cancel():
    started = threading.Event()
    release = threading.Event()
    with ThreadPool(max_workers=1) as pool:
        @asynchronous.thread(pool=pool)
        def blocking():
            started.set()
            return release.wait(WAIT)

        @asynchronous.thread(pool=pool)
        def quick():
            return "quick"

        async def main():
            first = asyncio.ensure_future(blocking())
            queued = asyncio.ensure_future(blocking())
            while not started.is_set():
                await asyncio.sleep(0.001)
            queued.cancel()
            first.cancel()
            for task in (first, queued):
                with pytest.raises(asyncio.CancelledError):
                    await task
            release.set()
            return await quick()

        assert asyncio.run(main()) == "quick"


# -- the documented examples ---------------------------------------------------


def test_documented_concurrent_example():
    from pebble import concurrent

    @concurrent.thread
    def function(arg, kwarg=0):
        return arg + kwarg

    future = function(1, kwarg=1)

    assert future.result() == 2


def test_documented_imports_and_signature():
    from pebble.asynchronous import thread as async_thread
    from pebble.concurrent import thread

    @thread(name=None, daemon=True, pool=None)
    def decorated_function():
        return "sync"

    @async_thread(name=None, daemon=True, pool=None)
    def async_decorated_function():
        return "async"

    async def main():
        return await async_decorated_function()

    assert decorated_function().result() == "sync"
    assert asyncio.run(main()) == "async"


def test_documented_thread_name():
    @concurrent.thread(name="pebble-docs")
    def function():
        return threading.current_thread().name

    assert function().result() == "pebble-docs"
