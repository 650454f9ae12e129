"""Pebble 5.2.3's public behaviour, point by point, as a user's code relies on it."""

import asyncio
import multiprocessing
import time

import pytest

import pebble
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


# -- decorators ------------------------------------------------------------------

def add(a, b=0):
    return a + b


def named(name, x=1):
    return name, x


@pytest.mark.parametrize("options", [{"timeout": 5},
                                     {"context": multiprocessing.get_context("fork")},
                                     {"name": "adder", "daemon": True}])
def test_concurrent_process_without_at(options):
    assert pebble.concurrent.process(add, **options)(1, 2).result(30) == 3


def test_concurrent_thread_without_at():
    assert pebble.concurrent.thread(add, name="adder")(1, 2).result(30) == 3


def test_asynchronous_without_at():
    async def main():
        one = await pebble.asynchronous.thread(add, name="adder")(1, 2)
        two = await pebble.asynchronous.process(add, timeout=5)(1, 2)
        return one, two

    assert asyncio.run(main()) == (3, 3)


def test_thread_decorator_with_a_name_passes_a_name_argument_on():
    call = pebble.concurrent.thread(name="worker")(named)
    assert call("n").result(10) == ("n", 1)
    assert call(name="n", x=2).result(10) == ("n", 2)


# -- errors from threads carry their traceback ----------------------------------

def boom():
    raise ValueError("boom")


def invert(x):
    return 1 / x


def test_thread_pool_errors_carry_traceback():
    with ThreadPool(1) as pool:
        error = pool.schedule(boom).exception(10)
        assert "ValueError: boom" in error.traceback and "in boom" in error.traceback
        results = pool.map(invert, [1, 0]).result()
        assert next(results) == 1
        with pytest.raises(ZeroDivisionError) as info:
            next(results)
        assert "in invert" in info.value.traceback


def test_thread_decorator_errors_carry_traceback():
    error = pebble.concurrent.thread(boom)().exception(10)
    assert "in boom" in error.traceback

    async def main():
        try:
            await pebble.asynchronous.thread(boom)()
        except ValueError as error:
            return error.traceback

    assert "in boom" in asyncio.run(main())


# -- arguments ---------------------------------------------------------------------

def test_timeout_zero_means_no_timeout():
    with ProcessPool(1, context=multiprocessing.get_context("fork")) as pool:
        assert pool.schedule(time.sleep, (0.2,), timeout=0).result(30) is None
        assert pool.submit(time.sleep, 0, 0.2).result(30) is None
        assert list(pool.map(time.sleep, [0.2], timeout=0).result()) == [None]


def test_args_may_be_any_iterable_even_a_string(pool):
    assert pool.schedule(add, args="ab").result(10) == "ab"


def test_hand_made_process_future_follows_the_future_protocol():
    future = pebble.ProcessFuture()
    assert future.cancel()
    assert future.set_running_or_notify_cancel() is False
    assert future.cancelled()
    running = pebble.ProcessFuture()
    assert running.set_running_or_notify_cancel() is True
    assert running.running()


# -- import paths ----------------------------------------------------------------

def test_import_paths_of_pebble():
    from pebble import CONSTS
    from pebble.common import CONSTS as common_consts
    from pebble.common import ProcessExpired, ProcessFuture
    from pebble.decorators import sighandler, synchronized
    from pebble.pool import MapFuture, ProcessMapFuture
    from pebble.pool.base_pool import PoolStatus

    assert common_consts is CONSTS
    assert (CONSTS.sleep_unit, CONSTS.term_timeout, CONSTS.channel_lock_timeout) == (0.1, 3, 60)
    assert synchronized is pebble.synchronized and sighandler is pebble.sighandler
    assert MapFuture is pebble.MapFuture and ProcessMapFuture is pebble.ProcessMapFuture
    assert ProcessExpired is pebble.ProcessExpired and ProcessFuture is pebble.ProcessFuture
    assert [(s.name, int(s)) for s in PoolStatus] == [
        ("CREATED", 0), ("RUNNING", 1), ("CLOSED", 2), ("STOPPED", 3), ("ERROR", 4)]


def test_setting_a_constant_warns_once_that_it_does_nothing():
    consts = type(pebble.CONSTS)()
    type(consts)._warned.discard("channel_lock_timeout")
    with pytest.warns(RuntimeWarning, match="no effect"):
        consts.channel_lock_timeout = 10
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        consts.channel_lock_timeout = 20  # once only
    assert consts.channel_lock_timeout == 20


# -- pool state ------------------------------------------------------------------

def init_fails():
    raise ValueError("init")


def init_exits():
    import os
    os._exit(5)


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_reading_active_starts_the_pool(kind):
    if kind == "thread":
        pool = ThreadPool(1, initializer=init_fails)
    else:
        pool = ProcessPool(1, initializer=init_fails, context=multiprocessing.get_context("fork"))
    try:
        # Starts the pool; whether the initializer has already failed by
        # the time the answer is made depends on timing.
        pool.active  # noqa: B018
        deadline = time.monotonic() + 10
        while pool.active and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(RuntimeError):
            pool.schedule(add, (1,))
    finally:
        pool.stop()
        pool.join(10)


@pytest.mark.parametrize("initializer", [init_fails, init_exits])
def test_broken_initializer_is_a_broken_process_pool(initializer):
    from concurrent.futures.process import BrokenProcessPool
    pool = ProcessPool(1, initializer=initializer, context=multiprocessing.get_context("fork"))
    try:
        error = pool.schedule(add, (1,)).exception(30)
        assert isinstance(error, BrokenProcessPool)
    finally:
        pool.stop()
        pool.join(10)


# -- options Pebble accepts --------------------------------------------------------

@pytest.mark.parametrize("decorator", [pebble.concurrent.process, pebble.concurrent.thread,
                                       pebble.asynchronous.process, pebble.asynchronous.thread])
def test_options_pebble_ignores_are_accepted_with_one_warning(decorator):
    option = "option_of_" + decorator.__module__.replace(".", "_")
    with pytest.warns(RuntimeWarning, match="no effect"):
        decorator(**{option: 1})(add)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decorator(**{option: 2})(add)  # warned once already


def test_thread_decorator_timeout_is_accepted_and_does_nothing():
    with pytest.warns(RuntimeWarning, match="timeout"):
        call = pebble.concurrent.thread(timeout=1)(add)
    assert call(1, 2).result(10) == 3


@pytest.mark.parametrize("decorator", [pebble.concurrent.process, pebble.concurrent.thread])
def test_daemon_none_takes_the_callers_flag(decorator):
    assert decorator(daemon=None)(add)(1, 2).result(30) == 3


# -- Ctrl-C ----------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["thread", "process"])
def test_join_again_after_ctrl_c_still_waits(kind):
    import os
    import signal
    import threading
    if kind == "thread":
        pool = ThreadPool(1)
    else:
        pool = ProcessPool(1, context=multiprocessing.get_context("fork"))
    future = pool.schedule(time.sleep, (3,))  # long enough for a loaded machine
    while not future.running():
        time.sleep(0.01)
    pool.close()
    # Python leaves SIGINT alone when it starts with it ignored (as in a
    # background job): Ctrl-C must mean KeyboardInterrupt here.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            pool.join()
        timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not future.done()
    pool.join()
    assert future.done() and future.result() is None
    assert not pool.active


# -- outcomes that cannot be rebuilt in the parent -------------------------------------

class TwoArgError(Exception):
    """Pickles, but its arguments do not match its __init__: it cannot load."""

    def __init__(self, first, second):
        super().__init__("%s/%s" % (first, second))


def raise_two_arg():
    raise TwoArgError("left", "right")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_exception_that_cannot_load_is_a_broken_process_pool_and_the_pool_goes_on(method):
    from concurrent.futures.process import BrokenProcessPool
    with ProcessPool(1, context=multiprocessing.get_context(method)) as pool:
        error = pool.schedule(raise_two_arg).exception(30)
        assert isinstance(error, BrokenProcessPool)
        assert isinstance(error.__cause__, TypeError)
        assert "left/right" in str(error)
        assert "raise_two_arg" in error.traceback
        assert pool.schedule(add, (1, 2)).result(30) == 3


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_decorated_call_raises_the_loading_error_itself(method):
    call = pebble.concurrent.process(raise_two_arg, context=multiprocessing.get_context(method))
    error = call().exception(30)
    assert type(error) is TypeError
    assert "raise_two_arg" in error.traceback
