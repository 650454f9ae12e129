"""ProcessPool leaves nothing behind: fds, children, zombies, threads, /dev/shm."""

import gc
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
import weakref
from concurrent.futures import CancelledError, TimeoutError

import pytest

import procfuncs as pf
from pebble import ProcessExpired, ProcessPool
from proctools import (TESTS_DIR, children, fd_count, pid_gone, shm_entries, wait_until,
                       zombies)


def native_threads():
    return len(os.listdir("/proc/self/task"))


def snapshot():
    gc.collect()
    import threading
    return {
        "fds": fd_count(),
        "threads": threading.active_count(),
        "native threads": native_threads(),
        "children": sorted(children()),
        "zombies": zombies(),
        "shm": shm_entries(),
    }


def settled(baseline):
    """Wait for the process to come back to *baseline*; return the last snapshot."""
    last = {}

    def check():
        last.update(snapshot())
        return last == baseline

    wait_until(check, 5, 0.02)
    return last


def busy_cycle(context, how):
    """One pool lifetime exercising results, errors, a timeout, a crash and a cancel."""
    pool = ProcessPool(max_workers=2, max_tasks=3, context=context)
    futures = [pool.schedule(pf.square, args=(i,)) for i in range(6)]
    error = pool.schedule(pf.raise_custom, args=("x",))
    late = pool.schedule(pf.sleep_return, args=(10,), timeout=0.05)
    crash = pool.schedule(pf.exit_process, args=(2,))
    cancelled = pool.schedule(pf.sleep_return, args=(10,))
    assert list(pool.map(pf.square, range(10), chunksize=3).result()) == \
        [i * i for i in range(10)]
    assert [f.result(timeout=30) for f in futures] == [i * i for i in range(6)]
    assert isinstance(error.exception(timeout=30), pf.CustomError)
    assert isinstance(late.exception(timeout=30), TimeoutError)
    assert isinstance(crash.exception(timeout=30), ProcessExpired)
    cancelled.cancel()
    if how == "close":
        pool.close()
    else:
        pool.schedule(pf.sleep_return, args=(10,))
        pool.stop()
    pool.join(10)
    with pytest.raises(CancelledError):
        cancelled.result(timeout=0)
    return weakref.ref(pool)


def check_cycles(context, cycles):
    refs = [busy_cycle(context, "close")]  # warm up: imports, caches
    baseline = snapshot()
    assert baseline["zombies"] == []
    for i in range(cycles):
        refs.append(busy_cycle(context, "close" if i % 2 else "stop"))
    after = settled(baseline)
    assert after == baseline
    gc.collect()
    assert all(ref() is None for ref in refs), "pools were never freed"


def test_fork_cycles():
    check_cycles(multiprocessing.get_context("fork"), 20)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_fresh_interpreter_cycles(method):
    check_cycles(multiprocessing.get_context(method), 3)


def test_quick_cycles_and_unstarted_pools():
    context = multiprocessing.get_context("fork")
    ProcessPool(max_workers=1, context=context).schedule(pf.getpid).result(timeout=30)
    baseline = snapshot()
    for i in range(30):
        pool = ProcessPool(max_workers=2, context=context)
        if i % 3 == 0:
            pool.close()  # never started
        elif i % 3 == 1:
            with pool:
                pool.schedule(pf.getpid).result(timeout=30)
        else:
            pool.schedule(pf.sleep_return, args=(10,))
            pool.stop()
        pool.join(10)
        del pool
    assert settled(baseline) == baseline


def test_broken_pools_leak_nothing():
    context = multiprocessing.get_context("fork")
    baseline = snapshot()
    for _ in range(10):
        pool = ProcessPool(max_workers=2, initializer=pf.init_raise, initargs=("no",),
                           context=context)
        assert pool.schedule(pf.getpid).exception(timeout=30) is not None
        pool.close()
        pool.join(10)
        del pool
    assert settled(baseline) == baseline


def test_joined_pool_is_collected():
    context = multiprocessing.get_context("fork")
    pool = ProcessPool(max_workers=1, context=context)
    assert pool.schedule(pf.add, args=(1, 2)).result(timeout=30) == 3
    pool.stop()
    pool.join(10)
    ref = weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is None


def test_no_zombies_after_crashes():
    with ProcessPool(max_workers=2, context=multiprocessing.get_context("fork")) as pool:
        for code in range(10):
            assert isinstance(pool.schedule(pf.exit_process, args=(code,)).exception(timeout=30),
                              ProcessExpired)
        launchers = children()
        # Workers are children of the launcher, which reaps them at once.
        assert wait_until(lambda: all(zombies(pid) == [] for pid in launchers), 5)
    assert zombies() == []


EXIT_SCRIPT = textwrap.dedent("""
    import multiprocessing, sys, time
    import procfuncs as pf
    from pebble import ProcessPool

    if __name__ == "__main__":
        pool = ProcessPool(max_workers=2, context=multiprocessing.get_context(sys.argv[1]))
        assert pool.schedule(pf.add, args=(1, 2)).result() == 3
        if sys.argv[2] == "running":
            future = pool.schedule(pf.ignore_sigterm_sleep, args=(60,))
            while not future.running():
                time.sleep(0.01)
        while len(pool._core.pids) < 2:
            time.sleep(0.01)
        print(" ".join(map(str, pool._core.pids)), flush=True)
        # No close(), no join(): the interpreter exits with the pool alive.
""")


@pytest.mark.parametrize("method, state", [("fork", "idle"), ("fork", "running"),
                                           ("forkserver", "running")])
def test_interpreter_exit_with_live_pool(method, state, tmp_path):
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT)
    start = time.monotonic()
    result = subprocess.run([sys.executable, str(script), method, state], capture_output=True,
                            text=True, timeout=30, cwd=TESTS_DIR,
                            env=dict(os.environ, PYTHONPATH=TESTS_DIR))
    assert time.monotonic() - start < 10
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    workers = [int(pid) for pid in result.stdout.split()]
    assert len(workers) == 2
    assert wait_until(lambda: all(pid_gone(pid) for pid in workers), 5)


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS for %d" % pid)


def big_bytearray(size):
    return bytearray(size)  # pickled out of band


@pytest.mark.timeout(120)
@pytest.mark.parametrize("make", [pf.big_result, big_bytearray], ids=["bytes", "bytearray"])
def test_idle_worker_drops_its_last_result(make):
    size = 300 * 1024 * 1024
    with ProcessPool(1, context=multiprocessing.get_context("fork")) as pool:
        pid = pool.schedule(pf.getpid).result(30)
        baseline = rss_mib(pid)
        assert len(pool.schedule(make, (size,)).result(60)) == size
        # Nothing more is asked of the worker: its memory goes back all the same.
        assert wait_until(lambda: rss_mib(pid) < baseline + 64, timeout=10), \
            (baseline, rss_mib(pid))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_programs_run_by_a_task_hold_no_pool_channel(method):
    # Descriptors this test process itself lets children inherit are not the pool's.
    ours = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.get_inheritable(int(name)):
                ours.add(int(name))
        except OSError:
            pass
    with ProcessPool(1, context=multiprocessing.get_context(method)) as pool:
        held = pool.schedule(pf.fds_seen_by_a_subprocess).result(30)
    assert [(fd, target) for fd, target in held if fd not in ours] == []
