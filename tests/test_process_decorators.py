"""concurrent.process and asynchronous.process: one fresh process per call.

Most tests run under fork, spawn and forkserver by switching the default
start method (what ``context=None`` resolves to); a few pass ``context=`` or
``mp_context=`` explicitly. The decorated functions live in ``decofuncs`` so
that spawn and forkserver workers can import them.
"""

import asyncio
import concurrent.futures as futures
import multiprocessing
import os
import pickle
import re
import signal
import threading
import time

import pytest

import decofuncs
import pebble
import procfuncs as pf
from pebble import ProcessExpired, ProcessFuture, ProcessPool, asynchronous, concurrent
from pebble.common import RemoteTraceback
from proctools import (default_start_method, descendants, fd_count, proc_stat, run_script,
                       thread_count, wait_gone, wait_pid_file, wait_until, with_start_method)

TIMEOUT = 0.3  # the timeout of decofuncs' timed functions
LATENESS = 0.1  # how late a TimeoutError may be


# -- helpers -------------------------------------------------------------------


@pytest.fixture
def method(start_method):
    """Every start method, set as the default one for the test."""
    with default_start_method(start_method):
        yield start_method


@pytest.fixture
def cheap_method(cheap_start_method):
    """fork and forkserver, set as the default start method for the test."""
    with default_start_method(cheap_start_method):
        yield cheap_start_method


# The lines of the traceback a worker may print when stopped as it starts
# (several workers may print at once, so their lines can interleave).
WORKER_EPIPE_NOISE = re.compile(
    r"^(Traceback \(most recent call last\):"
    r"|  File \".*_worker\.py\", line \d+, in worker_main"
    r"|    if _pebble\.worker_run\(.*"
    r"|\s*\^+"
    r"|BrokenPipeError: \[Errno 32\] Broken pipe)\n", re.MULTILINE)


def unexpected_stderr(text):
    """*text* without the noise of test_stopping_right_after_calls_prints_nothing.

    A real error still shows: its own frames and message are kept.
    """
    return WORKER_EPIPE_NOISE.sub("", text)


def run_file(tmp_path, source, *args, timeout=60, start_method=None):
    """Run *source* as a script in *tmp_path*; return the result and how long it took.

    *start_method* becomes the script's default start method, for scripts
    that do not choose one themselves.
    """
    if start_method is not None:
        source = with_start_method(source, start_method)
    start = time.monotonic()
    completed = run_script(source, timeout, args, directory=tmp_path)
    return completed, time.monotonic() - start


# -- the ways to use the decorators ---------------------------------------------


def test_bare_decorator(method):
    future = decofuncs.add(1, b=2)
    assert isinstance(future, ProcessFuture)
    assert future.result(timeout=30) == 3


def test_decorator_with_arguments(method):
    assert decofuncs.add_with_timeout(2, b=3).result(timeout=30) == 5
    assert decofuncs.add_empty_parens(4, 5).result(timeout=30) == 9


def test_decorated_function_keeps_its_identity():
    assert decofuncs.add.__name__ == "add"
    assert decofuncs.add.__qualname__ == "add"
    assert decofuncs.add.__module__ == "decofuncs"
    assert decofuncs.add.__wrapped__(1, 2) == 3
    assert decofuncs.async_add.__name__ == "async_add"


def test_process_call_on_undecorated_function(method):
    wrapped = concurrent.process(pf.add)
    assert wrapped(2, b=3).result(timeout=30) == 5
    # The module-level function itself is untouched and still picklable.
    assert pf.add(2, 3) == 5
    assert pickle.loads(pickle.dumps(pf.add)) is pf.add


def test_process_call_with_arguments_on_callable_object(method):
    wrapped = concurrent.process(timeout=1)(decofuncs.Multiplier(3))
    value, pid = wrapped(4).result(timeout=30)
    assert value == 12
    assert pid != os.getpid()


def test_decorated_method(method):
    value, pid = decofuncs.Counter(5).plus(2).result(timeout=30)
    assert value == 7 and pid != os.getpid()

    async def main():
        return await decofuncs.Counter(5).async_plus(3)

    assert asyncio.run(main()) == 8


def test_asynchronous_forms(cheap_method):
    async def main():
        return (await decofuncs.async_add(1, b=2),
                await decofuncs.async_add_with_timeout(3, 4),
                await asynchronous.process(pf.add)(5, 6),
                await asynchronous.process(timeout=1)(decofuncs.Multiplier(2))(7))

    first, second, third, (fourth, pid) = asyncio.run(main())
    assert (first, second, third, fourth) == (3, 7, 11, 14)
    assert pid != os.getpid()


def started_by(command_line):
    """Which start method made a process, judged from its command line."""
    if command_line == decofuncs.cmdline():
        return "fork"  # a fork of this very process
    if "spawn_main(" in command_line:
        return "spawn"  # a fresh interpreter per worker
    if "spawned_launcher_main(" in command_line:
        return "forkserver"  # a fork of a fresh launcher interpreter
    return command_line


@pytest.mark.parametrize("keyword", ["context", "mp_context"])
@pytest.mark.parametrize("decorator", [concurrent.process, asynchronous.process])
def test_context_and_mp_context_choose_the_start_method(start_method, keyword, decorator):
    other = "spawn" if start_method == "fork" else "fork"
    with default_start_method(other):
        wrapped = decorator(**{keyword: multiprocessing.get_context(start_method)})(
            decofuncs.cmdline)
        if decorator is concurrent.process:
            command_line = wrapped().result(timeout=30)
        else:
            command_line = asyncio.run(_await(wrapped))
    assert started_by(command_line) == start_method


def test_default_context_follows_the_default_start_method(method):
    assert started_by(concurrent.process(decofuncs.cmdline)().result(timeout=30)) == method


async def _await(function, *args):
    return await function(*args)


def test_context_and_mp_context_together():
    context = multiprocessing.get_context("fork")
    wrapped = concurrent.process(context=context, mp_context=context)(pf.add)
    assert wrapped(1, 1).result(timeout=30) == 2
    with pytest.raises(TypeError):
        concurrent.process(context=context, mp_context=multiprocessing.get_context("spawn"))


def test_multiprocessing_module_as_context(cheap_method):
    """The multiprocessing module as context stands for its default start method."""
    assert concurrent.process(context=multiprocessing)(pf.add)(1, 2).result(
        timeout=30) == 3
    wrapped = concurrent.process(context=multiprocessing)(decofuncs.cmdline)
    assert started_by(wrapped().result(timeout=30)) == cheap_method


BAD_PARAMETERS = [
    {"timeout": "Foo"},
    {"timeout": [1]},
    {"name": 1},
    {"daemon": "x"},
    {"pool": object()},
    {"pool": pebble.ThreadPool},
    {"context": object()},
    {"mp_context": object()},
]


@pytest.mark.parametrize("decorator", [concurrent.process, asynchronous.process])
@pytest.mark.parametrize("params", BAD_PARAMETERS, ids=lambda p: "%s=%r" % next(iter(p.items())))
def test_bad_parameter_types_raise_type_error(decorator, params):
    with pytest.raises(TypeError):
        decorator(**params)


def test_thread_pool_is_not_a_process_pool():
    with pebble.ThreadPool(1) as pool:
        with pytest.raises(TypeError):
            concurrent.process(pool=pool)
        with pytest.raises(TypeError):
            asynchronous.process(pool=pool)


@pytest.mark.parametrize("decorator", [concurrent.process, asynchronous.process])
def test_positional_misuse_raises_type_error(decorator):
    with pytest.raises(TypeError):
        decorator(1)  # not a callable
    with pytest.raises(TypeError):
        decorator("name")
    with pytest.raises(TypeError):
        decorator(pf.add, pf.add)
    with pytest.raises(TypeError):
        decorator(timeout=1)(5)  # decorating a non-callable
    with pytest.raises(TypeError):
        decorator(timeout=1)(pf.add, pf.add)


# -- results and failures --------------------------------------------------------


def test_exception_carries_remote_traceback(method):
    error = decofuncs.fail("boom").exception(timeout=30)
    assert type(error) is decofuncs.ValueErrorWithNote
    assert error.args == ("boom",)
    assert "ValueErrorWithNote: boom" in error.traceback
    assert "in fail" in error.traceback
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "ValueErrorWithNote: boom" in str(error.__cause__)


def test_timeout(method, tmp_path):
    path = str(tmp_path / "pid")
    # A spawn worker boots an interpreter, which may take longer than 0.3 s here.
    timeout = 2.0 if method == "spawn" else TIMEOUT
    decofuncs.add(0, 0).result(timeout=30)  # the engine is up
    started = time.monotonic()
    future = concurrent.process(timeout=timeout)(decofuncs.plain_pid_then_sleep)(path, 30)
    error = future.exception(timeout=30)
    raised_wall, raised = time.time(), time.monotonic()
    assert isinstance(error, futures.TimeoutError)
    assert error.args == ("Task timeout", timeout)
    # Late against the moment the function started ...
    assert raised_wall - os.stat(path).st_mtime - timeout < LATENESS
    # ... and against the call (a spawn worker boots first: the clock starts
    # when it is ready).
    assert timeout <= raised - started
    if method != "spawn":
        assert raised - started < timeout + LATENESS
    wait_gone(wait_pid_file(path))


def test_timeout_of_module_level_decorated_function(cheap_method, tmp_path):
    path = str(tmp_path / "pid")
    decofuncs.add(0, 0).result(timeout=30)  # the engine is up
    started = time.monotonic()
    error = decofuncs.timeout_pid_then_sleep(path, 30).exception(timeout=30)
    raised_wall, raised = time.time(), time.monotonic()
    assert isinstance(error, futures.TimeoutError)
    assert error.args[1] == TIMEOUT
    # The deadline begins when the worker is ready to run the call.
    assert raised_wall - os.stat(path).st_mtime - TIMEOUT < LATENESS
    assert TIMEOUT <= raised - started < TIMEOUT + LATENESS
    wait_gone(wait_pid_file(path))


def test_spawn_timeout_counts_from_when_the_call_runs():
    with ProcessPool(1, max_tasks=1, context=multiprocessing.get_context("spawn")) as pool:
        quick = concurrent.process(pool=pool, timeout=0.02)(pf.getpid)
        assert quick().result(timeout=30) != os.getpid()


def test_timeout_of_process_ignoring_sigterm(cheap_method, tmp_path):
    path = str(tmp_path / "pid")
    started = time.monotonic()
    error = decofuncs.ignore_sigterm_pid_then_sleep(path, 30).exception(timeout=30)
    assert isinstance(error, futures.TimeoutError)
    assert time.monotonic() - started < TIMEOUT + LATENESS
    wait_gone(wait_pid_file(path), timeout=5)


def test_timeout_error_args_with_explicit_timeout(cheap_method):
    error = concurrent.process(timeout=0.05)(decofuncs.plain_sleep)(30).exception(timeout=30)
    assert isinstance(error, futures.TimeoutError)
    assert error.args == ("Task timeout", 0.05)


def test_call_finishing_before_its_timeout(cheap_method):
    assert concurrent.process(timeout=5)(decofuncs.plain_sleep)(0.05).result(timeout=30) == 0.05


def test_cancel_running_call_kills_its_process(method, tmp_path):
    path = str(tmp_path / "pid")
    future = decofuncs.pid_then_sleep(path, 30)
    pid = wait_pid_file(path)
    assert proc_stat(pid) is not None
    # The parent marks the future running just after handing the call over.
    assert wait_until(future.running, 1.0, 0.001)
    assert future.cancel() is True
    assert future.cancelled()
    with pytest.raises(futures.CancelledError):
        future.result(timeout=1)
    assert wait_gone(pid, timeout=2) < 1.0


def test_cancel_of_finished_call_returns_false(cheap_method):
    future = decofuncs.add(1, 1)
    assert future.result(timeout=30) == 2
    assert future.cancel() is False
    assert not future.cancelled()


@pytest.mark.parametrize("code", [0, 1, 7])
def test_os_exit_raises_process_expired(cheap_method, code):
    error = decofuncs.exit_with(code).exception(timeout=30)
    assert isinstance(error, ProcessExpired)
    assert error.exitcode == code
    assert isinstance(error.pid, int) and error.pid not in (0, os.getpid())
    wait_gone(error.pid)


def test_process_expired_under_every_method(method):
    error = decofuncs.exit_with(3).exception(timeout=30)
    assert isinstance(error, ProcessExpired)
    assert error.exitcode == 3
    assert error.pid != os.getpid()


def test_sigkill_raises_process_expired(method):
    error = decofuncs.kill_self(signal.SIGKILL).exception(timeout=30)
    assert isinstance(error, ProcessExpired)
    assert error.exitcode == -signal.SIGKILL
    assert isinstance(error.pid, int) and error.pid != os.getpid()
    wait_gone(error.pid)


@pytest.mark.parametrize("argument, text", [
    (lambda: 1, "lambda"),
    (threading.Lock(), "lock"),
], ids=["lambda", "lock"])
def test_unpicklable_argument(method, argument, text):
    started = time.monotonic()
    error = decofuncs.identity(argument).exception(timeout=10)
    assert time.monotonic() - started < 5
    assert isinstance(error, (pickle.PicklingError, TypeError, AttributeError))
    assert text in str(error)
    assert decofuncs.identity(5).result(timeout=30) == 5


def test_unpicklable_result(method):
    error = decofuncs.return_lock().exception(timeout=10)
    assert isinstance(error, (pickle.PicklingError, TypeError))
    assert "lock" in str(error)
    assert decofuncs.identity(6).result(timeout=30) == 6


def test_argument_failing_to_load_in_the_child(cheap_method):
    error = decofuncs.identity(decofuncs.LoadsNowhere()).exception(timeout=10)
    assert isinstance(error, RuntimeError)
    assert "cannot load me" in str(error)
    assert decofuncs.identity(7).result(timeout=30) == 7


def test_result_failing_to_load_in_the_parent(cheap_method):
    error = decofuncs.make_loads_not_in(os.getpid()).exception(timeout=10)
    assert isinstance(error, RuntimeError)
    assert "cannot load me" in str(error)
    assert decofuncs.identity(8).result(timeout=30) == 8


def test_name_sets_the_process_name(method):
    name, _, pid = decofuncs.named_info().result(timeout=30)
    assert name == "pebble-deco-name"
    assert pid != os.getpid()
    name, _, _ = concurrent.process(name="given-at-call")(decofuncs.process_info)().result(
        timeout=30)
    assert name == "given-at-call"
    # The name belongs to that call only.
    assert decofuncs.default_info().result(timeout=30)[0] not in ("pebble-deco-name",
                                                                   "given-at-call")


def test_daemon_flag_in_the_child(method):
    assert decofuncs.daemon_info().result(timeout=30)[1] is True
    assert decofuncs.default_info().result(timeout=30)[1] is True
    assert decofuncs.nondaemon_info().result(timeout=30)[1] is False


def test_every_call_runs_in_a_new_process(method):
    calls = 3 if method == "spawn" else 8
    sequential = [decofuncs.getpid().result(timeout=30) for _ in range(calls)]
    together = [f.result(timeout=30) for f in [decofuncs.getpid() for _ in range(calls)]]
    pids = sequential + together
    assert len(set(pids)) == len(pids)
    assert os.getpid() not in pids


def test_calls_run_concurrently(cheap_method):
    started = time.monotonic()
    pending = [concurrent.process(decofuncs.plain_sleep)(0.5) for _ in range(6)]
    assert [f.result(timeout=30) for f in pending] == [0.5] * 6
    assert time.monotonic() - started < 2.0


def test_pool_parameter_runs_in_that_pool(method):
    context = multiprocessing.get_context(method)
    with ProcessPool(max_workers=1, context=context) as pool:
        getpid = concurrent.process(pool=pool)(pf.getpid)
        first = getpid().result(timeout=30)
        second = getpid().result(timeout=30)
        # One long-lived worker: both calls ran in it, unlike the fresh-process engine.
        assert first == second != os.getpid()
        assert pool.schedule(pf.getpid).result(timeout=30) == first

        slow = concurrent.process(pool=pool, timeout=0.2)(decofuncs.plain_sleep)
        started = time.monotonic()
        error = slow(30).exception(timeout=30)
        assert isinstance(error, futures.TimeoutError)
        assert error.args[1] == 0.2
        assert time.monotonic() - started < 0.2 + LATENESS + (0.5 if method == "spawn" else 0)
        # The pool replaced the killed worker and still works.
        assert pool.schedule(pf.add, args=(1, 2)).result(timeout=30) == 3


def test_name_and_daemon_in_a_pool_last_for_that_call_only(cheap_method):
    with ProcessPool(max_workers=1, context=multiprocessing.get_context(cheap_method)) as pool:
        before = pool.schedule(decofuncs.process_info).result(timeout=30)
        call = concurrent.process(pool=pool, name="pool-call", daemon=not before[1])
        name, daemon, pid = call(decofuncs.process_info)().result(timeout=30)
        assert (name, daemon, pid) == ("pool-call", not before[1], before[2])
        # The pool's worker is back to what it was for the pool's own tasks.
        assert pool.schedule(decofuncs.process_info).result(timeout=30) == before


def test_asynchronous_pool_parameter(cheap_method):
    with ProcessPool(max_workers=1, context=multiprocessing.get_context(cheap_method)) as pool:
        getpid = asynchronous.process(pool=pool)(pf.getpid)
        slow = asynchronous.process(pool=pool, timeout=0.1)(decofuncs.plain_sleep)

        async def main():
            pids = [await getpid(), await getpid()]
            with pytest.raises(futures.TimeoutError) as info:
                await slow(30)
            return pids, info.value.args[1]

        (first, second), timeout = asyncio.run(main())
        assert first == second != os.getpid()
        assert timeout == 0.1


# -- asyncio ---------------------------------------------------------------------


def test_asynchronous_await(method):
    async def main():
        future = decofuncs.async_add(1, b=2)
        assert isinstance(future, asyncio.Future)
        assert future.get_loop() is asyncio.get_running_loop()
        return await future

    assert asyncio.run(main()) == 3


def test_asynchronous_gather(cheap_method):
    async def main():
        return await asyncio.gather(*[decofuncs.async_getpid() for _ in range(20)])

    pids = asyncio.run(main())
    assert len(set(pids)) == 20
    assert os.getpid() not in pids


def test_asynchronous_exception(cheap_method):
    async def main():
        with pytest.raises(decofuncs.ValueErrorWithNote) as info:
            await decofuncs.async_fail("async boom")
        return info.value

    error = asyncio.run(main())
    assert "async boom" in error.traceback
    assert isinstance(error.__cause__, RemoteTraceback)


def test_asynchronous_process_expired(cheap_method):
    async def main():
        with pytest.raises(ProcessExpired) as info:
            await decofuncs.async_exit_with(4)
        return info.value

    assert asyncio.run(main()).exitcode == 4


def test_asynchronous_name(cheap_method):
    async def main():
        return await decofuncs.async_named_info()

    assert asyncio.run(main())[0] == "pebble-async-name"


def test_asynchronous_timeout(cheap_method, tmp_path):
    path = str(tmp_path / "pid")

    async def main():
        await decofuncs.async_add(0, 0)  # the engine is up
        started = time.monotonic()
        with pytest.raises(futures.TimeoutError) as info:
            await decofuncs.async_timeout_pid_then_sleep(path, 30)
        return info.value, time.time(), time.monotonic() - started

    error, raised, elapsed = asyncio.run(main())
    assert error.args[1] == TIMEOUT
    assert raised - os.stat(path).st_mtime - TIMEOUT < LATENESS
    assert TIMEOUT <= elapsed < TIMEOUT + LATENESS
    wait_gone(wait_pid_file(path))


def test_asynchronous_timeout_spawn():
    with default_start_method("spawn"):
        slow = asynchronous.process(timeout=1.0)(decofuncs.plain_sleep)

        async def main():
            started = time.monotonic()
            with pytest.raises(futures.TimeoutError) as info:
                await slow(30)
            return info.value, time.monotonic() - started

        error, elapsed = asyncio.run(main())
    assert error.args == ("Task timeout", 1.0)
    assert 1.0 <= elapsed < 1.0 + LATENESS


def test_cancelling_the_awaiting_task_kills_the_child(method, tmp_path):
    path = str(tmp_path / "pid")

    async def main():
        task = asyncio.create_task(_await(decofuncs.async_pid_then_sleep, path, 30))
        pid = await asyncio.to_thread(wait_pid_file, path)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid

    pid = asyncio.run(main())
    assert wait_gone(pid, timeout=2) < 1.0


def test_cancelling_the_asyncio_future_kills_the_child(cheap_method, tmp_path):
    path = str(tmp_path / "pid")

    async def main():
        future = decofuncs.async_pid_then_sleep(path, 30)
        pid = await asyncio.to_thread(wait_pid_file, path)
        assert future.cancel()
        with pytest.raises(asyncio.CancelledError):
            await future
        return pid

    pid = asyncio.run(main())
    assert wait_gone(pid, timeout=2) < 1.0


def test_no_child_left_after_the_loop_closes(method, tmp_path):
    """asyncio.run cancels the tasks left running: their processes die with them."""
    paths = [str(tmp_path / ("pid%d" % i)) for i in range(2)]

    async def main():
        for path in paths:
            asyncio.ensure_future(_await(decofuncs.async_pid_then_sleep, path, 30))
        return [await asyncio.to_thread(wait_pid_file, path) for path in paths]

    pids = asyncio.run(main())
    for pid in pids:
        wait_gone(pid, timeout=2)


def test_asynchronous_completion_wakes_the_loop_promptly(cheap_method):
    """The result arrives through the loop, not by polling it on a tick."""
    async def main():
        await decofuncs.async_add(0, 0)  # start the engine
        delays = []
        for _ in range(10):
            started = time.monotonic()
            await decofuncs.async_add(1, 1)
            delays.append(time.monotonic() - started)
        return sorted(delays)[len(delays) // 2]

    assert asyncio.run(main()) < 0.05  # a polling tick would be 0.1 s


# -- the documentation examples --------------------------------------------------


SEED_CONCURRENT_EXAMPLE = """\
from pebble import concurrent

@concurrent.process
def function(arg, kwarg=0):
    return arg + kwarg

future = function(1, kwarg=1)

print(future.result())
"""

SEED_UNSTABLE_EXAMPLE = """\
from pebble import concurrent
from concurrent.futures import TimeoutError
from third_party_lib import unstable_function

@concurrent.process(timeout=10)
def function(arg, kwarg=0):
    unstable_function(arg, kwarg=kwarg)

future = function(1, kwarg=1)

try:
    results = future.result()
except TimeoutError as error:
    print("unstable_function took longer than %d seconds" % error.args[1])
except ProcessExpired as error:
    print("%s. Exit code: %d" % (error, error.exitcode))
except Exception as error:
    print("unstable_function raised %s" % error)
    print(error.traceback)  # Python's traceback of remote process
"""

SEED_BASIC_USAGE = """\
from pebble.concurrent import process
from pebble import ProcessPool
import time

# Using decorators for simple concurrent execution
@process
def cpu_intensive_task(n):
    # Simulate CPU-intensive work
    total = 0
    for i in range(n):
        total += i ** 2
    return total

# Call returns a Future
future = cpu_intensive_task(1000000)
result = future.result()  # Blocks until complete
print(f"Result: {result}")

# Using pools for managing multiple workers
with ProcessPool() as pool:
    # Schedule multiple tasks
    futures = []
    for i in range(5):
        future = pool.schedule(cpu_intensive_task, args=[100000 * (i + 1)])
        futures.append(future)

    # Collect results
    results = [f.result() for f in futures]
    print(f"Results: {results}")
"""


def test_seed_concurrent_example(tmp_path):
    completed, _ = run_file(tmp_path, SEED_CONCURRENT_EXAMPLE, start_method="fork")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "2\n"
    assert unexpected_stderr(completed.stderr) == ""


def test_seed_unstable_function_example_as_written(tmp_path):
    completed, _ = run_file(tmp_path, SEED_UNSTABLE_EXAMPLE, start_method="fork")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ""  # the call succeeded; results is None
    assert unexpected_stderr(completed.stderr) == ""


@pytest.mark.parametrize("arg, expected", [
    ("'hang'", "unstable_function took longer than 1 seconds\n"),
    ("'crash'", "Abnormal termination. Exit code: 3\n"),
    ("'raise'", "unstable_function raised unstable failure\nTraceback"),
])
def test_seed_unstable_function_example_failures(tmp_path, arg, expected):
    """The same example meeting each misbehaviour (with ProcessExpired imported,
    which the example uses without importing, and a 1 s timeout)."""
    source = ("from pebble import ProcessExpired\n" + SEED_UNSTABLE_EXAMPLE
              .replace("timeout=10", "timeout=1")
              .replace("function(1, kwarg=1)", "function(%s, kwarg=1)" % arg))
    completed, elapsed = run_file(tmp_path, source, start_method="fork")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith(expected), completed.stdout
    if arg == "'raise'":
        assert "RuntimeError: unstable failure" in completed.stdout
    assert elapsed < 5


def test_seed_basic_usage_example(tmp_path):
    completed, _ = run_file(tmp_path, SEED_BASIC_USAGE, start_method="fork")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ("Result: 333332833333500000\n"
                                "Results: [333328333350000, 2666646666700000, "
                                "8999955000050000, 21333253333400000, "
                                "41666541666750000]\n")


# -- leaks -----------------------------------------------------------------------


def _settled(measure, expected_at_most, timeout=2.0):
    """The lowest value *measure* reaches within *timeout* (stopping once low enough)."""
    best = measure()
    deadline = time.monotonic() + timeout
    while best > expected_at_most and time.monotonic() < deadline:
        time.sleep(0.01)
        best = min(best, measure())
    return best


def _zombies():
    return [pid for pid in descendants() if (proc_stat(pid) or ("?",))[0] == "Z"]


def test_no_leak_over_many_calls():
    with default_start_method("fork"):
        for _ in range(10):
            assert decofuncs.add(1, 1).result(timeout=30) == 2
        time.sleep(0.1)
        fds, threads = fd_count(), thread_count()
        pids = set()
        for _ in range(300):
            future = decofuncs.pid_and_parent()
            pid, _ = future.result(timeout=30)
            pids.add(pid)
        assert len(pids) == 300
        assert _settled(fd_count, fds) <= fds
        assert _settled(thread_count, threads) <= threads
        assert _settled(lambda: len(_zombies()), 0) == 0, _zombies()
        # All those processes are gone, not just reaped.
        alive = [pid for pid in pids if proc_stat(pid) is not None]
        assert _settled(lambda: len([p for p in alive if proc_stat(p) is not None]), 0) == 0


def test_no_leak_over_many_failing_calls():
    with default_start_method("fork"):
        decofuncs.add(1, 1).result(timeout=30)
        time.sleep(0.1)
        fds, threads = fd_count(), thread_count()
        for _ in range(100):
            assert isinstance(decofuncs.exit_with(1).exception(timeout=30), ProcessExpired)
            assert isinstance(decofuncs.fail("x").exception(timeout=30), ValueError)
        for _ in range(20):
            future = concurrent.process(timeout=0.01)(decofuncs.plain_sleep)(10)
            assert isinstance(future.exception(timeout=30), futures.TimeoutError)
        assert _settled(fd_count, fds) <= fds
        assert _settled(thread_count, threads) <= threads
        assert _settled(lambda: len(_zombies()), 0) == 0, _zombies()


def test_no_leak_over_many_async_calls():
    with default_start_method("fork"):
        async def main(count):
            for _ in range(count):
                assert await decofuncs.async_add(1, 1) == 2

        asyncio.run(main(5))
        time.sleep(0.1)
        fds, threads = fd_count(), thread_count()
        asyncio.run(main(100))
        assert _settled(fd_count, fds) <= fds
        assert _settled(thread_count, threads) <= threads
        assert _settled(lambda: len(_zombies()), 0) == 0, _zombies()


# -- interpreter exit ------------------------------------------------------------


NONDAEMON_SCRIPT = """\
import multiprocessing
import sys
import time

from pebble import concurrent


@concurrent.process(daemon=False)
def finish(path):
    time.sleep(0.5)
    with open(path, "w") as out:
        out.write("finished")
    return "result-ok"


def report(future):
    print("callback:", future.result(), flush=True)


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    finish(sys.argv[2]).add_done_callback(report)
    print("exiting", flush=True)
"""

DAEMON_SCRIPT = """\
import multiprocessing
import os
import sys
import time

from pebble import concurrent


@concurrent.process
def linger(path):
    tmp = path + ".tmp"
    with open(tmp, "w") as out:
        out.write(str(os.getpid()))
    os.rename(tmp, path)
    time.sleep(30)


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    future = linger(sys.argv[2])
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
    print("exiting", flush=True)
"""


NONDAEMON_IMPORTED_SCRIPT = """\
import multiprocessing
import sys

from decofuncs import nondaemon_finish


def report(future):
    print("callback:", future.result(), flush=True)


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    nondaemon_finish(sys.argv[2]).add_done_callback(report)
    print("exiting", flush=True)
"""

def _check_nondaemon_exit(tmp_path, script, start_method):
    marker = tmp_path / "finished"
    completed, elapsed = run_file(tmp_path, script, start_method, marker)
    assert completed.returncode == 0, completed.stderr
    assert unexpected_stderr(completed.stderr) == ""
    assert marker.exists()
    assert marker.read_text() == "finished"
    assert completed.stdout == "exiting\ncallback: result-ok\n"
    assert elapsed >= 0.5


def test_exit_waits_for_nondaemon_call(tmp_path, start_method):
    _check_nondaemon_exit(tmp_path, NONDAEMON_IMPORTED_SCRIPT, start_method)


def test_exit_waits_for_nondaemon_call_defined_in_main(tmp_path, start_method):
    # Interpreter exit races the call: it must never lose, so run it a few times.
    for _attempt in range(3):
        _check_nondaemon_exit(tmp_path, NONDAEMON_SCRIPT, start_method)
        (tmp_path / "finished").unlink()


def test_exit_does_not_wait_for_daemon_call(tmp_path, start_method):
    path = tmp_path / "pid"
    completed, elapsed = run_file(tmp_path, DAEMON_SCRIPT, start_method, path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "exiting\n"
    assert unexpected_stderr(completed.stderr) == ""
    assert elapsed < 5
    # Not our child: once orphaned it may linger as a zombie of init for a moment.
    wait_gone(int(path.read_text()), timeout=2, allow_zombie=True)


STOP_AFTER_CALLS_SCRIPT = """\
from pebble import ProcessPool, concurrent


def work(n):
    return n


if __name__ == "__main__":
    for i in range(150):
        pool = ProcessPool(2, max_tasks=1)
        call = concurrent.process(pool=pool)(work)
        for future in [call(i) for i in range(4)]:
            future.result()
        pool.stop()
        pool.join()
"""


def test_stopping_right_after_calls_prints_nothing(tmp_path):
    completed, _ = run_file(tmp_path, STOP_AFTER_CALLS_SCRIPT, start_method="fork")
    assert completed.returncode == 0
    assert completed.stderr == ""


# -- compatibility with calls forked from the caller -------------------------------


LATE_DEFINITION_SCRIPT = """\
from pebble import concurrent

@concurrent.process
def first():
    return 1

print(first().result())

@concurrent.process
def second():
    return 2

print(second().result())
"""


def test_fork_sees_main_functions_defined_after_the_first_call(tmp_path):
    completed, _ = run_file(tmp_path, LATE_DEFINITION_SCRIPT, start_method="fork")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "1\n2\n"


def test_fork_runs_local_functions():
    def local(value):
        return value * 2

    with default_start_method("fork"):
        assert concurrent.process(local)(21).result(timeout=30) == 42


def test_local_function_error_is_clear_and_harmless():
    """Where the call is not a fork of the caller, a local function cannot travel."""
    def local(value):
        return value * 2

    with default_start_method("forkserver"):
        error = concurrent.process(local)(21).exception(timeout=30)
        assert isinstance(error, (pickle.PicklingError, AttributeError, TypeError))
        assert "local" in str(error)
        assert decofuncs.add(1, 2).result(timeout=30) == 3
