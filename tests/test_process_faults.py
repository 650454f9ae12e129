"""ProcessPool fault matrix: every way a task or worker can break.

Each case checks what the broken task's future gets and that the pool
still accepts and completes new work afterwards. The second half holds
regression tests for failures known from the original implementation.
"""

import logging
import multiprocessing
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import CancelledError, TimeoutError

import pytest

import procfuncs as pf
from pebble.pool.process import FORK_IN_PROCESS
from pebble import ProcessExpired, ProcessPool
from concurrent.futures.process import BrokenProcessPool
from pebble.common import RemoteTraceback
from proctools import (SANITIZED, TESTS_DIR, children, launchers, pid_alive, pid_gone, run_script,
                       shm_entries, wait_until)

FORK = multiprocessing.get_context("fork")


@pytest.fixture
def pool(context):
    """A pool of two workers under each start method: the fault matrix holds for all."""
    pool = ProcessPool(max_workers=2, context=context)
    yield pool
    pool.stop()
    pool.join(10)


@pytest.fixture
def pool1(context):
    pool = ProcessPool(max_workers=1, context=context)
    yield pool
    pool.stop()
    pool.join(10)


def assert_pool_works(pool):
    futures = [pool.schedule(pf.add, args=(i,), kwargs={"b": 1}) for i in range(4)]
    assert [f.result(timeout=30) for f in futures] == [1, 2, 3, 4]


def wait_running(future, timeout=10):
    assert wait_until(future.running, timeout), "the task never started"


def worker_pid(pool):
    return pool.schedule(pf.getpid).result(timeout=30)


# -- arguments --------------------------------------------------------------------

def test_argument_unpicklable_in_parent(pool):
    future = pool.schedule(pf.consume, args=(pf.RefusesPickling(),))
    error = future.exception(timeout=5)
    assert isinstance(error, pf.PickleRefused)
    assert str(error) == "refused to pickle"
    assert_pool_works(pool)


def test_argument_unpicklable_builtin(pool):
    future = pool.schedule(pf.consume, args=(threading.Lock(),))
    assert isinstance(future.exception(timeout=5), TypeError)
    future = pool.schedule(lambda: None)
    assert isinstance(future.exception(timeout=5), (pickle.PicklingError, AttributeError))
    assert_pool_works(pool)


def test_argument_unpickling_raises_in_worker(pool1):
    pid = worker_pid(pool1)
    future = pool1.schedule(pf.consume, args=(pf.FailsUnpickling("no loading"),))
    error = future.exception(timeout=30)
    assert type(error) is ValueError
    assert str(error) == "no loading"
    assert "load_fails" in error.traceback
    assert isinstance(error.__cause__, RemoteTraceback)
    # A task that fails to load costs no worker.
    assert worker_pid(pool1) == pid
    assert_pool_works(pool1)


def test_argument_unpickling_kills_worker(pool1):
    pid = worker_pid(pool1)
    future = pool1.schedule(pf.consume, args=(pf.KillsUnpickling(),))
    error = future.exception(timeout=30)
    assert isinstance(error, ProcessExpired)
    assert (error.exitcode, error.pid) == (7, pid)
    assert worker_pid(pool1) != pid
    assert_pool_works(pool1)


# -- the task raises ---------------------------------------------------------------

def test_task_raises_system_exit(pool1):
    pid = worker_pid(pool1)
    error = pool1.schedule(pf.raise_system_exit, args=(3,)).exception(timeout=30)
    assert type(error) is SystemExit
    assert error.code == 3
    assert "raise_system_exit" in error.traceback
    assert worker_pid(pool1) == pid
    assert_pool_works(pool1)


def test_task_raises_base_exception(pool):
    error = pool.schedule(pf.raise_base_exception, args=("deep",)).exception(timeout=30)
    assert type(error) is pf.CustomBaseException
    assert error.args == ("deep",)
    assert "raise_base_exception" in error.traceback
    assert isinstance(error.__cause__, RemoteTraceback)
    assert_pool_works(pool)


def test_task_raises_keyboard_interrupt(pool):
    error = pool.schedule(pf.raise_error, args=(KeyboardInterrupt,)).exception(timeout=30)
    assert type(error) is KeyboardInterrupt
    assert_pool_works(pool)


def test_task_raises_frozen_dataclass_error(pool):
    future = pool.schedule(pf.raise_frozen, args=(5,))
    error = future.exception(timeout=30)
    assert type(error) is pf.FrozenError
    assert error.code == 5
    assert "raise_frozen" in error.traceback
    assert isinstance(error.__cause__, RemoteTraceback)
    assert_pool_works(pool)


# -- results --------------------------------------------------------------------------

def test_result_unpicklable_in_worker(pool1):
    pid = worker_pid(pool1)
    error = pool1.schedule(pf.return_lock).exception(timeout=30)
    assert isinstance(error, TypeError)
    assert "lock" in str(error)
    # The text says where pickling the result failed.
    assert "_pickler.dump(result)" in error.traceback or "return_lock" in error.traceback
    error = pool1.schedule(pf.return_ghost).exception(timeout=30)
    assert isinstance(error, pickle.PicklingError)
    assert worker_pid(pool1) == pid
    assert_pool_works(pool1)


def test_result_unpicklable_in_parent(pool):
    futures = [pool.schedule(pf.return_fails_unpickling, args=("parent side",)),
               pool.schedule(pf.add, args=(1, 2))]
    error = futures[0].exception(timeout=30)
    # As on Pebble, a BrokenProcessPool with the loading error as its cause;
    # unlike Pebble, only this task fails and the pool goes on.
    assert isinstance(error, BrokenProcessPool)
    assert type(error.__cause__) is ValueError
    assert str(error.__cause__) == "parent side"
    assert "result" in str(error) and "parent side" in str(error)
    assert futures[1].result(timeout=30) == 3
    assert_pool_works(pool)


def test_exception_unpicklable(pool):
    error = pool.schedule(pf.raise_unpicklable, args=("with a lock",)).exception(timeout=30)
    assert isinstance(error, Exception)
    assert "UnpicklableError" in str(error)
    assert "with a lock" in str(error)
    assert "raise_unpicklable" in error.traceback
    assert "UnpicklableError: with a lock" in error.traceback
    assert_pool_works(pool)


def test_exception_that_cannot_be_rebuilt(pool):
    error = pool.schedule(pf.raise_two_arg).exception(timeout=30)
    assert isinstance(error, BrokenProcessPool)
    assert isinstance(error.__cause__, TypeError)
    assert "TwoArgError" in str(error)
    assert "left/right" in str(error)
    assert "raise_two_arg" in error.traceback
    assert_pool_works(pool)


@pytest.mark.parametrize("length, nbufs", [(1 << 50, 0), (8, 5)],
                         ids=["absurd length", "table longer than the frame"])
def test_corrupt_frame_fails_the_task_and_replaces_the_worker(pool1, length, nbufs):
    pid = worker_pid(pool1)
    start = time.monotonic()
    error = pool1.schedule(pf.send_frame_header, args=(length, nbufs)).exception(timeout=30)
    assert time.monotonic() - start < 5
    assert isinstance(error, ProcessExpired)
    assert "corrupt frame" in str(error)
    assert error.pid == pid
    assert wait_until(lambda: pid_gone(pid), 10)
    assert worker_pid(pool1) != pid
    assert_pool_works(pool1)


UNALLOCATABLE = """
import multiprocessing, os, resource, sys
sys.path.insert(0, {tests!r})
import procfuncs as pf
from pebble import ProcessPool

if __name__ == "__main__":
    pool = ProcessPool(1, context=multiprocessing.get_context({method!r}))
    pid = pool.schedule(os.getpid).result(30)
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (used + (300 << 20), resource.RLIM_INFINITY))
    error = pool.schedule(pf.return_with_soft_limit_raised, args=(600 << 20,)).exception(60)
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print(type(error).__name__, error)
    print("same worker" if pool.schedule(os.getpid).result(30) == pid else "new worker")
    print(pool.schedule(pf.add, args=(1, 2)).result(30))
    pool.close()
    pool.join(30)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_result_the_parent_cannot_allocate_is_a_memory_error(method):
    done = run_script(UNALLOCATABLE.format(tests=TESTS_DIR, method=method), timeout=120)
    output = done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("MemoryError"), output
    assert "could not be allocated" in lines[0]
    assert lines[1:] == ["same worker", "3"], output


def test_arguments_the_worker_cannot_allocate_are_a_memory_error(context):
    pool = ProcessPool(1, context=context, initializer=pf.init_limit_address_space,
                       initargs=(300 << 20,))
    try:
        pid = pool.schedule(os.getpid).result(30)
        error = pool.schedule(len, args=(bytearray(600 << 20),)).exception(60)
        assert isinstance(error, MemoryError)
        assert "could not be allocated in the worker" in str(error)
        assert pool.schedule(os.getpid).result(30) == pid  # the same worker goes on
        assert pool.schedule(pf.add, args=(1, 2)).result(30) == 3
    finally:
        pool.stop()
        pool.join(30)


# -- timeouts and cancel -------------------------------------------------------------

@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_timeout_ignoring_sigterm(method):
    with ProcessPool(max_workers=1, context=multiprocessing.get_context(method)) as pool:
        pid = worker_pid(pool)
        timeout = 0.3
        start = time.monotonic()
        future = pool.schedule(pf.ignore_sigterm_sleep, args=(30,), timeout=timeout)
        with pytest.raises(TimeoutError) as info:
            future.result(timeout=10)
        late = time.monotonic() - start - timeout
        assert info.value.args == ("Task timeout", timeout)
        assert -0.01 < late < 0.2, "timeout fired %.3f s late" % late
        assert wait_until(lambda: pid_gone(pid), 5), "the worker ignoring SIGTERM survived"
        assert worker_pid(pool) != pid
        assert_pool_works(pool)


def test_timeout_of_queued_task_counts_from_its_start(pool1):
    first = pool1.schedule(pf.sleep_return, args=(0.4, "first"))
    second = pool1.schedule(pf.sleep_return, args=(0.1, "second"), timeout=0.3)
    assert first.result(timeout=30) == "first"
    assert second.result(timeout=30) == "second"


def test_cancel_running_ignoring_sigterm(pool1):
    future = pool1.schedule(pf.ignore_sigterm_sleep, args=(30,))
    wait_running(future)
    (pid,) = pool1._core.pids
    assert future.cancel()
    with pytest.raises(CancelledError):
        future.result(timeout=1)
    assert wait_until(lambda: pid_gone(pid), 5)
    assert_pool_works(pool1)


# -- workers dying from outside -----------------------------------------------------------

def serving_pids(pool, count):
    """Pids of *count* workers that have each served a task.

    Only these are shot from outside in the tests below, which count the
    tasks a kill costs: one killed before it is ready costs none.
    """
    futures = [pool.schedule(pf.sleep_pid, args=(0.1,)) for _ in range(count)]
    pids = {f.result(timeout=30) for f in futures}
    assert len(pids) == count
    return sorted(pids)


def test_idle_worker_killed(pool):
    victim, survivor = serving_pids(pool, 2)
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: pid_gone(victim))
    futures = [pool.schedule(pf.sleep_pid, args=(0.01,)) for _ in range(20)]
    used = {f.result(timeout=30) for f in futures}
    assert victim not in used
    assert survivor in used
    assert wait_until(lambda: len(pool._core.pids) == 2 and victim not in pool._core.pids)
    assert_pool_works(pool)


def test_all_idle_workers_killed_with_work_queued(pool):
    for pid in serving_pids(pool, 2):
        os.kill(pid, signal.SIGKILL)
    futures = [pool.schedule(pf.square, args=(i,)) for i in range(20)]
    outcomes = []
    for i, future in enumerate(futures):
        try:
            outcomes.append(future.result(timeout=30) == i * i)
        except ProcessExpired:
            # Only a task handed to a worker already dead may be lost that way.
            outcomes.append(None)
    assert outcomes.count(True) >= 18
    assert_pool_works(pool)


def test_running_worker_killed_from_outside(pool1):
    (victim,) = serving_pids(pool1, 1)
    future = pool1.schedule(pf.sleep_pid, args=(30,))
    wait_running(future)
    os.kill(victim, signal.SIGKILL)
    error = future.exception(timeout=5)
    assert isinstance(error, ProcessExpired)
    assert (error.exitcode, error.pid) == (-signal.SIGKILL, victim)
    assert_pool_works(pool1)


# -- stop and join --------------------------------------------------------------

def test_stop_with_queued_and_running(cheap_context):
    pool = ProcessPool(max_workers=2, context=cheap_context)
    futures = [pool.schedule(pf.sleep_return, args=(30, i)) for i in range(10)]
    wait_running(futures[0])
    start = time.monotonic()
    pool.stop()
    pool.join(10)
    assert time.monotonic() - start < 3
    for future in futures:
        assert future.done()
        with pytest.raises(CancelledError):
            future.result(timeout=0)
    assert pool._core.pending == 0


def test_stop_while_pushing_huge_results():
    pool = ProcessPool(max_workers=2, context=FORK)
    size = 50 * 1024 * 1024
    futures = [pool.schedule(pf.big_result, args=(size,)) for _ in range(6)]
    assert len(futures[0].result(timeout=60)) == size
    start = time.monotonic()
    pool.stop()
    pool.join(10)
    assert time.monotonic() - start < 3
    assert all(f.done() for f in futures)
    for future in futures[1:]:
        if not future.cancelled():
            assert len(future.result(timeout=0)) == size


def test_join_while_pushing_huge_results():
    pool = ProcessPool(max_workers=2, context=FORK)
    size = 50 * 1024 * 1024
    futures = [pool.schedule(pf.big_result, args=(size,)) for _ in range(4)]
    pool.close()
    start = time.monotonic()
    pool.join(20)
    assert time.monotonic() - start < 10
    assert all(len(f.result(timeout=0)) == size for f in futures)


# -- callbacks --------------------------------------------------------------------

def test_done_callback_raising_is_logged(pool, caplog):
    caplog.set_level(logging.ERROR)
    called = threading.Event()

    def bad_callback(future):
        called.set()
        raise RuntimeError("callback failure")

    future = pool.schedule(pf.add, args=(1, 1))
    future.add_done_callback(bad_callback)
    assert future.result(timeout=30) == 2
    assert called.wait(5)
    assert wait_until(lambda: "callback failure" in caplog.text, 5)
    # Callbacks of other futures still run, and the pool goes on.
    seen = threading.Event()
    other = pool.schedule(pf.add, args=(2, 2))
    other.add_done_callback(lambda f: seen.set())
    assert other.result(timeout=30) == 4
    assert seen.wait(5)
    assert_pool_works(pool)


def test_done_callback_raising_on_error_outcomes(pool, caplog):
    caplog.set_level(logging.ERROR)
    futures = [pool.schedule(pf.exit_process, args=(1,)),
               pool.schedule(pf.sleep_return, args=(10,), timeout=0.1)]
    for future in futures:
        future.add_done_callback(pf.callback_raises)
    assert isinstance(futures[0].exception(timeout=30), ProcessExpired)
    assert isinstance(futures[1].exception(timeout=30), TimeoutError)
    assert wait_until(lambda: caplog.text.count("callback failure") >= 2, 5)
    assert_pool_works(pool)


# -- regressions of the original ----------------------------------------------------

def test_random_kills_with_large_arguments_never_deadlock():
    """A worker killed at any instant never wedges the pool (#163)."""
    pool = ProcessPool(max_workers=2, context=FORK)
    data = os.urandom(100 * 1024)
    stop = threading.Event()
    rng = random.Random(1234)
    kills = []
    # Only workers that have served a task are shot: one killed while
    # still starting costs no task, and would not count.
    served = set()

    def record(future):
        if not future.cancelled() and future.exception() is None:
            served.add(future.result()[2])

    def killer():
        while not stop.wait(rng.uniform(0.005, 0.03)):
            pids = [pid for pid in pool._core.pids if pid in served]
            if pids:
                victim = rng.choice(pids)
                try:
                    os.kill(victim, signal.SIGKILL)
                    kills.append(victim)
                except ProcessLookupError:
                    pass

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        futures = []
        for i in range(500):
            futures.append(pool.schedule(pf.big_argument, args=(data, i, 0.004)))
            futures[-1].add_done_callback(record)
        done = wait_until(lambda: all(f.done() for f in futures), 60, 0.05)
    finally:
        stop.set()
        thread.join()
    assert done, "%d futures never resolved" % sum(not f.done() for f in futures)
    ok = 0
    for i, future in enumerate(futures):
        error = future.exception(timeout=0)
        if error is None:
            assert future.result()[:2] == (i, len(data))
            ok += 1
        else:
            assert isinstance(error, ProcessExpired), repr(error)
            assert error.exitcode == -signal.SIGKILL
    expired = len(futures) - ok
    assert len(kills) >= 10 and expired >= 5 and ok > len(futures) // 2, (len(kills), expired)
    assert_pool_works(pool)
    pool.close()
    pool.join(10)


def test_worker_killed_while_starting():
    pool = ProcessPool(max_workers=1, context=multiprocessing.get_context("spawn"))
    try:
        future = pool.schedule(pf.square, args=(3,))
        # A spawned worker is listed as soon as it exists, long before it has
        # booted its interpreter.
        assert wait_until(lambda: pool._core.pids, 10, 0.001)
        os.kill(pool._core.pids[0], signal.SIGKILL)
        # The task never started: it runs on the replacement.
        assert future.result(timeout=30) == 9
        assert pool.schedule(pf.square, args=(4,)).result(timeout=30) == 16
    finally:
        pool.stop()
        pool.join(10)


@pytest.mark.timeout(120)
def test_workers_killed_while_starting_do_not_break_the_pool():
    """SIGKILL of worker after worker before any is ready (an outside killer,
    the OOM killer) loses nothing: the pool starts another each time."""
    with ProcessPool(1, context=multiprocessing.get_context("spawn")) as pool:
        future = pool.schedule(pf.add, args=(2, 3))
        killed = set()
        deadline = time.monotonic() + 60
        while len(killed) < 2 * 3 and time.monotonic() < deadline:
            fresh = set(pool._core.pids) - killed
            if not fresh:
                time.sleep(0.001)
                continue
            for pid in fresh:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        assert len(killed) == 2 * 3
        assert future.result(timeout=60) == 5
        assert pool.schedule(pf.add, args=(1, 1)).result(timeout=60) == 2


@pytest.mark.timeout(120)
def test_a_worker_that_cannot_start_breaks_the_pool(tmp_path):
    """A spawned worker whose main module fails to import exits each time
    it starts: the pool breaks instead of starting workers for ever."""
    result = run_script("""
        import multiprocessing
        if __name__ != "__main__":
            raise SystemExit(7)
        import procfuncs as pf
        from concurrent.futures.process import BrokenProcessPool
        from pebble import ProcessPool
        with ProcessPool(1, context=multiprocessing.get_context("spawn")) as pool:
            try:
                pool.schedule(pf.add, args=(2, 3)).result(timeout=60)
            except BrokenProcessPool as error:
                print("broken:", error)
        """, timeout=100, directory=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "broken: A worker process died while starting (exit code 1)" in result.stdout


def test_cancel_kill_race():
    """Cancelling while a task starts never leaves it running on a dead worker (#153)."""
    rng = random.Random(42)
    with ProcessPool(max_workers=1, context=FORK) as pool:
        futures = []
        for _ in range(1000):
            future = pool.schedule(pf.sleep_return, args=(5,))
            time.sleep(rng.uniform(0, 0.004))
            future.cancel()
            futures.append(future)
            futures.append(pool.schedule(pf.add, args=(1, 1)))
        assert wait_until(lambda: all(f.done() for f in futures), 120, 0.05)
        for cancelled, follower in zip(futures[::2], futures[1::2], strict=True):
            assert cancelled.cancelled()
            assert follower.result(timeout=0) == 2
        assert_pool_works(pool)


@pytest.mark.timeout(120)
def test_map_iteration_goes_on_when_the_launcher_dies():
    """A map survives its pool's launcher (#69): every element gives its value."""
    before = set(children())
    # A launcher process starts the workers under forkserver.
    pool = ProcessPool(max_workers=2, context=multiprocessing.get_context("forkserver"))
    future = pool.map(pf.sleep_return, [0.05] * 40, range(40), chunksize=2)
    wait_running(future.futures[0])
    (launcher,) = set(children()) - before
    os.kill(launcher, signal.SIGKILL)
    assert list(future.result(timeout=30)) == list(range(40))
    assert pool.active
    assert_pool_works(pool)
    pool.close()
    pool.join(30)
    assert wait_until(lambda: not (set(children()) - before), 5)


@pytest.mark.timeout(120)
def test_a_fork_made_as_a_launcher_starts_does_not_hide_its_death(monkeypatch):
    """A process forked from the pool's process while its launcher starts
    (by another thread) holds no end of the launcher's control socket: the
    launcher's death is still seen, and the launcher replaced."""
    import warnings
    sleepers = []
    real_spawn = os.posix_spawn

    def fork_then_spawn(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # forked from a thread
            pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        sleepers.append(pid)
        return real_spawn(*args, **kwargs)

    # Other launchers (decorated calls' own pool) are not this pool's.
    others = set(launchers())

    def ours():
        return set(launchers()) - others

    monkeypatch.setattr(os, "posix_spawn", fork_then_spawn)
    try:
        pool = ProcessPool(max_workers=1, context=multiprocessing.get_context("forkserver"))
        assert pool.schedule(pf.add, args=(1, 1)).result(60) == 2
        monkeypatch.undo()
        assert sleepers
        (launcher,) = ours()
        os.kill(launcher, signal.SIGKILL)
        assert wait_until(lambda: ours() - {launcher}, 30)
        assert_pool_works(pool)
        pool.close()
        pool.join(30)
    finally:
        monkeypatch.undo()
        for pid in sleepers:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


@pytest.mark.skipif(not FORK_IN_PROCESS, reason="needs pidfds")
@pytest.mark.timeout(120)
def test_a_dead_launcher_costs_nothing():
    """SIGKILL of a forkserver pool's launcher: its workers outlive it and
    finish what they were given, watched by the pool itself; a new launcher
    starts the next workers, and no task is lost."""
    before = set(children())
    pool = ProcessPool(max_workers=2, context=multiprocessing.get_context("forkserver"))
    assert pool.schedule(pf.add, args=(1, 1)).result(60) == 2
    (launcher,) = set(children()) - before
    running = [pool.schedule(pf.sleep_return, args=(0.5, i)) for i in range(2)]
    queued = [pool.schedule(pf.sleep_return, args=(0.01, i)) for i in range(20)]
    for future in running:
        wait_running(future)
    orphans = set(pool._core.pids)
    os.kill(launcher, signal.SIGKILL)
    assert [future.result(30) for future in running] == [0, 1]
    assert [future.result(30) for future in queued] == list(range(20))
    # Once done, the orphans leave; the workers of the new launcher go on.
    assert wait_until(lambda: all(pid_gone(pid) for pid in orphans), 10)
    assert not orphans & {pool.schedule(pf.getpid).result(30) for _ in range(4)}
    (replacement,) = set(children()) - before
    assert replacement != launcher
    assert_pool_works(pool)
    pool.close()
    pool.join(30)
    assert wait_until(lambda: not (set(children()) - before), 5)


@pytest.mark.skipif(not FORK_IN_PROCESS, reason="needs pidfds")
@pytest.mark.timeout(120)
def test_a_worker_that_outlived_its_launcher_is_still_killed_on_timeout(tmp_path):
    """The pool itself kills a worker whose launcher died, with what its
    task started (a child in a session of its own ignoring SIGTERM)."""
    before = set(children())
    pool = ProcessPool(max_workers=1, context=multiprocessing.get_context("forkserver"))
    worker = pool.schedule(pf.getpid).result(60)
    (launcher,) = set(children()) - before
    record = str(tmp_path / "child")
    stuck = pool.schedule(pf.start_child, args=(record, "session"), timeout=2.0)
    wait_running(stuck)
    assert wait_until(lambda: os.path.exists(record), 10)
    os.kill(launcher, signal.SIGKILL)
    with pytest.raises(TimeoutError):
        stuck.result(30)
    with open(record) as pid_file:
        child = int(pid_file.read())
    assert wait_until(lambda: pid_gone(worker) and pid_gone(child), 5)
    assert pool.schedule(pf.getpid).result(60) != worker
    pool.close()
    pool.join(30)
    assert wait_until(lambda: not (set(children()) - before), 5)


@pytest.mark.skipif(not FORK_IN_PROCESS, reason="a launcher process starts workers here")
@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.timeout(120)
def test_killing_any_process_of_the_pool_loses_at_most_its_task(method):
    """Each process of a fork or spawn pool is a worker: SIGKILL of one costs
    the task it ran and nothing more, and the pool goes on."""
    before = set(children())
    with ProcessPool(max_workers=2, context=multiprocessing.get_context(method)) as pool:
        assert pool.schedule(pf.add, args=(1, 1)).result(60) == 2
        running = [pool.schedule(pf.sleep_return, args=(30, i)) for i in range(2)]
        queued = [pool.schedule(pf.sleep_return, args=(0.01, i)) for i in range(20)]
        for future in running:
            wait_running(future)
        processes = set(children()) - before
        assert processes == set(pool._core.pids)  # no launcher process
        for pid in processes:
            os.kill(pid, signal.SIGKILL)
        for future in running:
            with pytest.raises(ProcessExpired):
                future.result(30)
        assert [future.result(60) for future in queued] == list(range(20))
        assert_pool_works(pool)
    assert wait_until(lambda: not (set(children()) - before), 10)


def test_map_iteration_after_initializer_breaks_pool():
    pool = ProcessPool(max_workers=2, initializer=pf.init_raise, initargs=("no",),
                       context=FORK)
    future = pool.map(pf.square, range(10), chunksize=2)
    start = time.monotonic()
    iterator = future.result(timeout=30)
    errors = 0
    while True:
        try:
            next(iterator)
        except StopIteration:
            break
        except Exception:
            errors += 1
    assert errors == 5
    assert time.monotonic() - start < 10
    pool.close()
    pool.join(10)


def test_map_submitting_while_initializer_breaks_pool():
    # The pool breaks while map is still taking chunks from its input: the
    # chunks it takes afterwards fail as the others do, map itself does not.
    def slow_input():
        for number in range(10):
            if number == 4:
                time.sleep(1)  # the initializer fails within milliseconds
            yield number

    pool = ProcessPool(max_workers=2, initializer=pf.init_raise, initargs=("no",),
                       context=FORK)
    future = pool.map(pf.square, slow_input(), chunksize=2)
    errors = []
    for _ in range(5):
        try:
            next(future.result(timeout=30))
        except StopIteration:
            break
        except Exception as error:
            errors.append(error)
    assert len(errors) == 5
    assert all(isinstance(error, BrokenProcessPool) for error in errors)
    with pytest.raises(RuntimeError):
        pool.schedule(pf.square, args=(1,))
    pool.close()
    pool.join(10)


def test_map_iteration_after_stop():
    pool = ProcessPool(max_workers=1, context=FORK)
    future = pool.map(pf.sleep_return, [10] * 6, range(6))
    wait_running(future.futures[0])
    pool.stop()
    pool.join(10)
    iterator = future.result(timeout=5)
    with pytest.raises(CancelledError):
        next(iterator)


def test_exit_zero_is_process_expired_promptly(pool):
    worker_pid(pool)  # the workers are up: only the detection is timed
    start = time.monotonic()
    error = pool.schedule(pf.exit_process, args=(0,)).exception(timeout=10)
    assert time.monotonic() - start < 1
    assert isinstance(error, ProcessExpired)
    assert error.exitcode == 0
    assert_pool_works(pool)


def test_crash_detected_promptly(pool):
    worker_pid(pool)
    start = time.monotonic()
    error = pool.schedule(pf.kill_self, args=(signal.SIGKILL,)).exception(timeout=10)
    assert isinstance(error, ProcessExpired)
    assert time.monotonic() - start < 0.1


def test_timeout_fires_promptly(pool):
    lateness = []
    for _ in range(5):
        worker_pid(pool)  # a worker is ready: the timeout starts at once
        start = time.monotonic()
        future = pool.schedule(pf.sleep_return, args=(10,), timeout=0.05)
        with pytest.raises(TimeoutError):
            future.result(timeout=10)
        lateness.append(time.monotonic() - start - 0.05)
    assert sorted(lateness)[2] < 0.02, lateness


def test_no_named_semaphores(context):
    before = shm_entries()
    with ProcessPool(max_workers=2, context=context) as pool:
        assert pool.schedule(pf.add, args=(1, 2)).result(timeout=30) == 3
        during = shm_entries()
        pool.schedule(pf.sleep_return, args=(0.2,), timeout=0.05)
    after = shm_entries()
    assert not {name for name in during - before if name.startswith("sem.")}
    assert after - before == set()


ORPHAN_SCRIPT = textwrap.dedent("""
    import multiprocessing, os, sys, time
    import procfuncs as pf
    from pebble import ProcessPool

    if __name__ == "__main__":
        context = multiprocessing.get_context(sys.argv[1])
        pools = [ProcessPool(max_workers=2, context=context) for _ in range(2)]
        futures = [pool.schedule(pf.ignore_sigterm_sleep, args=(60,))
                   for pool in pools for _ in range(2)]
        while len([pid for pool in pools for pid in pool._core.pids]) < 4 \\
                or not all(f.running() for f in futures):
            time.sleep(0.01)
        time.sleep(0.1)  # the tasks have set their SIGTERM handlers
        pids = [pid for pool in pools for pid in pool._core.pids]
        if sys.argv[2] == "sibling":
            # An unrelated child inherits every descriptor of this process.
            sibling = os.fork()
            if sibling == 0:
                time.sleep(60)
                os._exit(0)
            pids.append(sibling)
        print(" ".join(map(str, pids)), flush=True)
        time.sleep(60)
""")


@pytest.mark.parametrize("method, sibling", [
    ("fork", ""),
    ("spawn", ""),
    ("forkserver", ""),
    ("fork", "sibling"),
])
def test_no_orphans_when_parent_is_killed(method, sibling, tmp_path):
    """Workers and launchers never outlive a killed parent (#129/#76)."""
    script = tmp_path / "orphans.py"
    script.write_text(ORPHAN_SCRIPT)
    env = dict(os.environ, PYTHONPATH=TESTS_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, str(script), method, sibling or "-"],
                               stdout=subprocess.PIPE, env=env, cwd=TESTS_DIR, text=True)
    others = []
    try:
        line = process.stdout.readline()
        workers = [int(pid) for pid in line.split()]
        if sibling:
            others.append(workers.pop())
        assert len(workers) == 4, line
        launchers = [pid for pid in children(process.pid)
                     if pid not in others and pid not in workers]
        # Under fork and spawn the workers are the parent's own children: no launcher.
        assert len(launchers) == (0 if FORK_IN_PROCESS and method != "forkserver" else 2)
        assert all(pid_alive(pid) for pid in workers + launchers)
        process.kill()
        process.wait(10)
        start = time.monotonic()
        assert wait_until(lambda: not any(pid_alive(pid) for pid in workers + launchers), 5), \
            [pid for pid in workers + launchers if pid_alive(pid)]
        assert time.monotonic() - start < 1.5
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


STARTUP_STOP_SCRIPT = textwrap.dedent("""
    import multiprocessing, sys, time
    import procfuncs as pf
    from pebble import ProcessPool

    if __name__ == "__main__":
        context = multiprocessing.get_context("fork")
        for _ in range(60):
            pool = ProcessPool(max_workers=2, context=context)
            pool.schedule(pf.getpid)
            while len(pool._core.pids) < 2:
                time.sleep(0.0005)
            pool.stop()
            pool.join(10)
""")


def test_stop_while_workers_start_is_silent():
    """Workers whose channel is closed under them exit without a traceback."""
    result = run_script(STARTUP_STOP_SCRIPT, timeout=60)
    assert result.returncode == 0
    assert result.stderr == ""


def test_task_sent_to_a_worker_killed_while_idle_is_not_lost(cheap_context):
    """A task written to an idle worker that was just killed, before its death
    is reported, never started: it runs on the replacement, not ProcessExpired."""
    with ProcessPool(max_workers=1, context=cheap_context) as pool:
        for i in range(100):
            pool.schedule(pf.identity, args=(0,)).result(timeout=30)
            os.kill(pool._core.pids[0], signal.SIGKILL)
            assert pool.schedule(pf.identity, args=(i,)).result(timeout=30) == i


@pytest.mark.skipif(SANITIZED,
                    reason="hundreds of forks of a sanitized process: "
                           "its allocator is not fork-safe")
def test_burst_of_control_messages_is_not_lost():
    """Hundreds of spawn and kill requests at once overflow the launcher's
    socket buffer: they wait for it, none is dropped."""
    with ProcessPool(max_workers=300, context=FORK) as pool:
        futures = [pool.schedule(pf.identity, args=(i,)) for i in range(600)]
        assert [f.result(timeout=120) for f in futures] == list(range(600))
        pool.stop()
    pool.join(60)


@pytest.mark.parametrize("count", [100, 300, 2000])
def test_result_of_many_large_pieces_comes_back(pool, count):
    result = pool.schedule(pf.many_large_pieces, args=(count,)).result(timeout=60)
    assert len(result) == count
    assert all(len(piece) == 65536 and piece[0] == i % 251 for i, piece in enumerate(result))
    assert_pool_works(pool)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_cancel_of_a_queued_task_stops_it_even_when_it_starts(method):
    """The cancel reaches the worker after its last look at its queue, while
    it sends the running task's result: the cancelled task then starts, and
    must be stopped rather than left running."""
    pool = ProcessPool(max_workers=1, context=multiprocessing.get_context(method))
    try:
        for _ in range(20):  # short tasks: the next ones are queued in the worker
            pool.schedule(pf.getpid).result(timeout=30)
        for delay in [0.30 + 0.005 * i for i in range(30)]:
            first = pool.schedule(pf.sleep_then_big, args=(0.3, 30 * 1024 * 1024))
            endless = pool.schedule(pf.sleep_return, args=(3600,))
            time.sleep(delay)  # somewhere while the first makes or sends its result
            assert endless.cancel()
            assert len(first.result(timeout=60)) == 30 * 1024 * 1024
            assert endless.cancelled()
            # One worker: this runs only once the cancelled task is stopped.
            assert pool.schedule(pf.add, args=(1, 2)).result(timeout=10) == 3
        pool.close()
        pool.join(10)
    finally:
        pool.stop()
        pool.join(10)


@pytest.mark.timeout(120)
def test_max_tasks_holds_with_cancels_in_flight(tmp_path):
    """No worker runs more than max_tasks tasks, whatever cancels were queued for it."""
    import collections
    import random
    path = str(tmp_path / "runs")
    rng = random.Random(7)
    context = multiprocessing.get_context("fork")
    with ProcessPool(max_workers=2, max_tasks=2, context=context) as pool:
        futures = []
        for _ in range(300):
            future = pool.schedule(pf.record_pid, args=(path, rng.choice((0, 0, 0.001))))
            if rng.random() < 0.3:
                future.cancel()
            futures.append(future)
        for future in futures:
            try:
                future.result(timeout=60)
            except CancelledError:
                pass
    with open(path) as runs:
        per_worker = collections.Counter(runs.read().split())
    assert per_worker and max(per_worker.values()) <= 2, per_worker.most_common(3)


def test_ctrl_c_as_schedule_returns_cancels_the_task(tmp_path, monkeypatch):
    """A KeyboardInterrupt right after the engine took a task (here raised as
    the engine gives the future its id) leaves no task running unseen."""
    import pebble.pool.process as process_module

    class Interrupted(process_module.ProcessFuture):
        def __setattr__(self, name, value):
            super().__setattr__(name, value)
            if name == "_pebble_id":
                raise KeyboardInterrupt

    path = str(tmp_path / "runs")
    with ProcessPool(max_workers=1, context=multiprocessing.get_context("fork")) as pool:
        pool.schedule(pf.getpid).result(timeout=30)
        running = pool.schedule(pf.sleep_return, args=(0.5,))
        monkeypatch.setattr(process_module, "ProcessFuture", Interrupted)
        with pytest.raises(KeyboardInterrupt):
            pool.schedule(pf.record_pid, args=(path,))
        monkeypatch.undo()
        running.result(timeout=30)
        assert pool.schedule(pf.add, args=(1, 2)).result(timeout=30) == 3
    assert not os.path.exists(path)
