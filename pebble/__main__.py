"""``python -m pebble``: a quick side-by-side run of pebble against the standard library.

Each workload runs on this machine with pebble's pools and decorators and
with the closest standard-library tool, and the medians are printed as a
table. ``benchmarks/run.py`` in the source tree is the full harness (fresh
interpreter per run, upstream Pebble included).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import signal
import statistics
import sys
import time
from typing import Callable, List, Optional, Tuple

import pebble
from pebble import ProcessExpired, ProcessPool, ThreadPool, concurrent as pconcurrent


def tiny(x: int) -> int:
    """The smallest useful task."""
    return x


def sleeper(seconds: float) -> float:
    """A task that overruns its timeout."""
    time.sleep(seconds)
    return seconds


def suicide(path: str) -> None:
    """A task that notes the time (CLOCK_MONOTONIC is system-wide) and kills its worker."""
    with open(path, "w") as out:
        out.write(repr(time.monotonic()))
    os.kill(os.getpid(), signal.SIGKILL)


@pconcurrent.process
def decorated(x: int) -> int:
    """A function run in a fresh process per call."""
    return x


Measure = Callable[[], float]


def _median(run: Measure, repeat: int) -> float:
    return statistics.median(run() for _ in range(repeat))


def thread_tiny_pebble(n: int) -> Measure:
    def run() -> float:
        with ThreadPool(4) as pool:
            start = time.perf_counter()
            futures = [pool.schedule(tiny, (i,)) for i in range(n)]
            assert [f.result() for f in futures] == list(range(n))
            return n / (time.perf_counter() - start)
    return run


def thread_tiny_futures(n: int) -> Measure:
    def run() -> float:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            start = time.perf_counter()
            futures = [pool.submit(tiny, i) for i in range(n)]
            assert [f.result() for f in futures] == list(range(n))
            return n / (time.perf_counter() - start)
    return run


def round_trip(submit: Callable[[int], concurrent.futures.Future], n: int) -> float:
    submit(0).result()
    start = time.perf_counter()
    for i in range(n):
        assert submit(i).result() == i
    return (time.perf_counter() - start) / n * 1e6


def thread_rtt_pebble(n: int) -> Measure:
    def run() -> float:
        with ThreadPool(1) as pool:
            return round_trip(lambda i: pool.schedule(tiny, (i,)), n)
    return run


def thread_rtt_futures(n: int) -> Measure:
    def run() -> float:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return round_trip(lambda i: pool.submit(tiny, i), n)
    return run


def proc_rtt_pebble(n: int) -> Measure:
    def run() -> float:
        with ProcessPool(1) as pool:
            return round_trip(lambda i: pool.schedule(tiny, (i,)), n)
    return run


def proc_rtt_futures(n: int) -> Measure:
    def run() -> float:
        with concurrent.futures.ProcessPoolExecutor(1) as pool:
            return round_trip(lambda i: pool.submit(tiny, i), n)
    return run


def proc_tiny_pebble(n: int) -> Measure:
    def run() -> float:
        with ProcessPool(2) as pool:
            pool.schedule(tiny, (0,)).result()
            start = time.perf_counter()
            futures = [pool.schedule(tiny, (i,)) for i in range(n)]
            assert [f.result() for f in futures] == list(range(n))
            return n / (time.perf_counter() - start)
    return run


def proc_tiny_futures(n: int) -> Measure:
    def run() -> float:
        with concurrent.futures.ProcessPoolExecutor(2) as pool:
            pool.submit(tiny, 0).result()
            start = time.perf_counter()
            futures = [pool.submit(tiny, i) for i in range(n)]
            assert [f.result() for f in futures] == list(range(n))
            return n / (time.perf_counter() - start)
    return run


def proc_map_pebble(n: int) -> Measure:
    def run() -> float:
        with ProcessPool(2) as pool:
            start = time.perf_counter()
            total = sum(pool.map(tiny, range(n), chunksize=1000).result())
            assert total == n * (n - 1) // 2
            return n / (time.perf_counter() - start)
    return run


def proc_map_multiprocessing(n: int) -> Measure:
    def run() -> float:
        with multiprocessing.Pool(2) as pool:
            start = time.perf_counter()
            total = sum(pool.imap(tiny, range(n), chunksize=1000))
            assert total == n * (n - 1) // 2
            return n / (time.perf_counter() - start)
    return run


def timeout_lateness(n: int) -> Measure:
    def run() -> float:
        lateness: List[float] = []
        with ProcessPool(1) as pool:
            for _ in range(n):
                pool.schedule(tiny, (0,)).result()  # a worker is up and idle
                start = time.perf_counter()
                future = pool.schedule(sleeper, (10,), timeout=0.05)
                try:
                    future.result()
                except concurrent.futures.TimeoutError:
                    lateness.append((time.perf_counter() - start - 0.05) * 1e3)
        return statistics.median(lateness)
    return run


def crash_detection(n: int) -> Measure:
    def run() -> float:
        import tempfile
        latencies: List[float] = []
        with tempfile.TemporaryDirectory() as tmp, ProcessPool(1) as pool:
            path = os.path.join(tmp, "died")
            for _ in range(n):
                pool.schedule(tiny, (0,)).result()
                try:
                    pool.schedule(suicide, (path,)).result()
                except ProcessExpired:
                    detected = time.monotonic()
                with open(path) as died:
                    latencies.append((detected - float(died.read())) * 1e3)
        return statistics.median(latencies)
    return run


def decorator_call(n: int) -> Measure:
    def run() -> float:
        decorated(0).result()
        start = time.perf_counter()
        for i in range(n):
            assert decorated(i).result() == i
        return (time.perf_counter() - start) / n * 1e3
    return run


_SUFFIXES = ((1e9, "G"), (1e6, "M"), (1e3, "k"))


def format_figure(value: float, unit: str) -> Tuple[str, str]:
    """A figure as (number, unit) for the table: ``128k`` tasks/s, ``3.1`` ms.

    Rates get a k/M/G suffix and three significant digits; times move to the
    unit that keeps them between 1 and 1000 (us, ms, s).
    """
    if value != value:  # NaN: nothing measured
        return "-", ""
    if unit.endswith("/s"):
        for scale, suffix in _SUFFIXES:
            if value >= scale:
                return _digits(value / scale) + suffix, unit
        return _digits(value), unit
    seconds = value * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
    for scale, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if seconds >= scale or name == "us":
            return _digits(seconds / scale), name
    raise AssertionError("unreachable")


def _digits(value: float) -> str:
    """Three significant digits, without an exponent."""
    if value >= 100:
        return "%.0f" % value
    if value >= 10:
        return "%.1f" % value
    return "%.2f" % value


def format_ratio(ours: float, theirs: float, unit: str) -> str:
    """How much faster (or slower) pebble is: ``2.8x faster``."""
    if ours != ours or theirs != theirs or ours <= 0 or theirs <= 0:
        return ""
    speedup = ours / theirs if unit.endswith("/s") else theirs / ours
    if speedup >= 1:
        return "%.1fx faster" % speedup
    return "%.1fx slower" % (1 / speedup)


def format_row(name: str, unit: str, ours: float, theirs: float, label: str) -> str:
    """One line of the table, its numbers right-aligned and units aligned."""
    mine, mine_unit = format_figure(ours, unit)
    other, other_unit = format_figure(theirs, unit)
    return "%-42s %7s %-7s %7s %-7s  %-21s %s" % (
        name, mine, mine_unit, other, other_unit, label, format_ratio(ours, theirs, unit))


def main(argv: Optional[List[str]] = None) -> int:
    """Run the quick comparison and print the table."""
    parser = argparse.ArgumentParser(prog="python -m pebble", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per workload (median shown)")
    args = parser.parse_args(argv)
    rows: List[Tuple[str, str, Optional[Measure], Optional[Measure], str]] = [
        ("ThreadPool 20k tiny tasks, 4 threads", "tasks/s",
         thread_tiny_pebble(20000), thread_tiny_futures(20000), "ThreadPoolExecutor"),
        ("ThreadPool round trip", "us",
         thread_rtt_pebble(2000), thread_rtt_futures(2000), "ThreadPoolExecutor"),
        ("ProcessPool round trip, 1 worker", "us",
         proc_rtt_pebble(1000), proc_rtt_futures(1000), "ProcessPoolExecutor"),
        ("ProcessPool 10k tiny tasks, 2 workers", "tasks/s",
         proc_tiny_pebble(10000), proc_tiny_futures(10000), "ProcessPoolExecutor"),
        ("ProcessPool map 200k items, chunksize 1000", "items/s",
         proc_map_pebble(200000), proc_map_multiprocessing(200000), "multiprocessing.Pool"),
        ("timeout lateness (50 ms timeout)", "ms", timeout_lateness(5), None, ""),
        ("worker crash -> ProcessExpired", "ms", crash_detection(5), None, ""),
        ("@concurrent.process call + result", "ms", decorator_call(50), None, ""),
    ]
    print("pebble %s (%s engine), Python %s, %d CPUs"
          % (pebble.__version__, pebble._pebble.PLATFORM, sys.version.split()[0],
             os.cpu_count() or 1))
    print("Each workload runs with pebble and with the closest standard-library tool\n"
          "on this machine (median of %d runs). The last rows have no standard-library\n"
          "counterpart." % args.repeat)
    print()
    header = "%-42s %15s %15s  %-21s %s" % (
        "workload", "pebble", "stdlib", "compared with", "pebble is")
    print(header)
    print("-" * len(header))
    for name, unit, ours, theirs, label in rows:
        mine = _median(ours, args.repeat) if ours else float("nan")
        other = _median(theirs, args.repeat) if theirs else float("nan")
        print(format_row(name, unit, mine, other, label).rstrip())
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
