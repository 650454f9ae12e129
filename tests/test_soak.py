"""Soak: a stream of tasks mixing results, errors, timeouts, crashes, cancels
and workers killed from outside. Every future must resolve exactly once with
its own outcome, and descriptors, children, threads and memory stay flat.

The default run streams half a million tasks (under a minute here);
``pytest --soak`` streams three million.
"""

import multiprocessing
import os
import random
import signal
import threading
import time
from concurrent.futures import TimeoutError, wait

import pytest

from pebble import ProcessExpired, ProcessPool
from procfuncs import soak_task as task
from proctools import SANITIZED

BATCH = 5000


def fds():
    return len(os.listdir("/proc/self/fd"))


def rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def children():
    me = str(os.getpid())
    found = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as stat:
                    if stat.read().rsplit(")", 1)[1].split()[1] == me:
                        found += 1
            except OSError:
                pass
    return found


def check(i, future, killed):
    """Assert that future holds the outcome task(i) must have."""
    if future.cancelled():
        return "cancelled"
    error = future.exception()
    if isinstance(error, ProcessExpired) and error.exitcode == -signal.SIGKILL and killed:
        return "killed"
    if i % 100 == 0:
        assert isinstance(error, ValueError) and error.args == (i,), (i, error)
        return "error"
    if i % 4999 == 1:
        assert isinstance(error, TimeoutError) and error.args == ("Task timeout", 0.05), (i, error)
        return "timeout"
    if i % 5003 == 2:
        assert isinstance(error, ProcessExpired) and error.exitcode == 3, (i, error)
        return "crash"
    assert error is None, (i, error)
    assert future.result() == i * 2
    return "ok"


def run_soak(total, pool_size=2):
    rng = random.Random(7)
    counts = {}
    calls = {}
    lock = threading.Lock()

    def count_call(future):
        with lock:
            calls[id(future)] = calls.get(id(future), 0) + 1

    with ProcessPool(pool_size, context=multiprocessing.get_context("fork")) as pool:
        # Warm up, then take the baseline.
        wait([pool.schedule(task, (3,)) for _ in range(200)])
        base = (fds(), children(), threading.active_count(), rss_mib())
        start = time.monotonic()
        done = 0
        while done < total:
            size = min(BATCH, total - done)
            indexes = range(done, done + size)
            futures = [pool.schedule(task, (i,), timeout=0.05 if i % 4999 == 1 else None)
                       for i in indexes]
            for future in futures:
                future.add_done_callback(count_call)
            for future in futures[::53]:
                future.cancel()
            killed = rng.random() < 0.3
            if killed:
                pids = pool._core.pids
                if pids:
                    try:
                        os.kill(rng.choice(pids), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            finished, pending = wait(futures, timeout=120)
            assert not pending, "%d futures never resolved" % len(pending)
            for i, future in zip(indexes, futures, strict=True):
                outcome = check(i, future, killed)
                counts[outcome] = counts.get(outcome, 0) + 1
            with lock:
                assert all(calls.get(id(f)) == 1 for f in futures)
                calls.clear()
            done += size
        elapsed = time.monotonic() - start
        after = (fds(), children(), threading.active_count(), rss_mib())
    return counts, base, after, elapsed


def soak_report(counts, base, after, elapsed, total):
    return ("%d tasks in %.1f s: %s; fds %d->%d, children %d->%d, threads %d->%d, "
            "RSS %.1f->%.1f MiB" % (total, elapsed, counts, base[0], after[0], base[1], after[1],
                                    base[2], after[2], base[3], after[3]))


@pytest.mark.timeout(3600)
def test_soak(soak, capsys):
    total = 3_000_000 if soak else 500_000
    counts, base, after, elapsed = run_soak(total)
    with capsys.disabled():
        print("\nsoak:", soak_report(counts, base, after, elapsed, total))
    assert sum(counts.values()) == total
    for outcome in ("ok", "error", "timeout", "crash", "cancelled"):
        assert counts.get(outcome, 0) > 0, counts
    assert after[0] <= base[0] + 2          # descriptors
    assert after[1] <= base[1]              # children: workers and launcher only
    assert after[2] <= base[2]              # threads
    if not SANITIZED:                       # sanitizers' shadow memory
        assert after[3] <= base[3] + 64     # resident memory, MiB
