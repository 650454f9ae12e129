"""Benchmark workloads, one per fresh interpreter.

Run by ``benchmarks/run.py``; by hand::

    python benchmarks/workloads.py WORKLOAD IMPL [--quick]
    python benchmarks/workloads.py --list

IMPL is one of ``ours`` and ``upstream`` (both ``import pebble``; which
package that finds is decided by PYTHONPATH), ``futures``
(concurrent.futures) or ``multiprocessing`` (multiprocessing.Pool).

The last line printed on stdout is a JSON object::

    {"workload": ..., "impl": ..., "status": "ok" | "n/a",
     "value": float, "unit": str, "detail": {...}}

"n/a" means the implementation lacks a feature the workload needs (an
ImportError, AttributeError or NotImplementedError raised while setting the
workload up).  Any wrong result raises, and the process exits non-zero.
"""

import asyncio
import concurrent.futures
import json
import os
import resource
import signal
import statistics
import sys
import tempfile
import time

PEBBLE_IMPLS = ("ours", "upstream")
ALL_IMPLS = ("ours", "upstream", "futures", "multiprocessing")

# The implementation under test is needed at import time: the decorated
# functions below must exist at module level, also in workers started with
# "spawn" or "forkserver", which re-import this module (they inherit the
# environment variable).
if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] != "--list":
    os.environ["PEBBLE_BENCH_IMPL"] = sys.argv[2]
_IMPL = os.environ.get("PEBBLE_BENCH_IMPL")

pebble = None
_PEBBLE_IMPORT_ERROR = None
if _IMPL in PEBBLE_IMPLS:
    try:
        import pebble
    except (ImportError, AttributeError, NotImplementedError) as error:
        pebble = None
        _PEBBLE_IMPORT_ERROR = error


# concurrent.futures.TimeoutError is the builtin only from Python 3.11 on.
TIMEOUT_ERRORS = (TimeoutError, concurrent.futures.TimeoutError)


class NotApplicable(Exception):
    """The implementation lacks something this workload needs."""


class setup_phase:
    """Context manager: a missing feature during setup means "n/a"."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is not None and issubclass(
                kind, (ImportError, AttributeError, NotImplementedError)):
            raise NotApplicable("%s: %s" % (kind.__name__, value)) from value
        return False


def check(condition, message):
    if not condition:
        raise AssertionError("wrong result: " + message)


def need_pebble():
    with setup_phase():
        if pebble is None:
            raise _PEBBLE_IMPORT_ERROR or ImportError("pebble not imported")
    return pebble


# ---------------------------------------------------------------------------
# Task functions (module level so that they pickle)
# ---------------------------------------------------------------------------

def ident(x):
    return x


def sleeper(seconds):
    time.sleep(seconds)
    return seconds


def suicide(path):
    """Record the moment of death on CLOCK_MONOTONIC, then SIGKILL self."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, repr(time.monotonic()).encode())
    finally:
        os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # not reached


BIG_SIZE = 8 << 20


def big(i):
    data = bytearray(BIG_SIZE)
    data[0] = data[-1] = i % 256
    return data


def check_big(data, i):
    check(len(data) == BIG_SIZE, "big result has %d bytes" % len(data))
    check(data[0] == i % 256 and data[-1] == i % 256,
          "big result %d carries the wrong mark" % i)


# Decorated at module level so that the "spawn"/"forkserver" start methods
# can find them again by name.  A decorator the implementation lacks leaves
# the reason in _DECORATED instead, and only its workload is "n/a".
_DECORATED = {}


def _decorate(name, module, decorator, function, **options):
    if pebble is None:
        _DECORATED[name] = _PEBBLE_IMPORT_ERROR or ImportError("no pebble")
        return function
    try:
        __import__("pebble." + module)
        make = getattr(getattr(pebble, module), decorator)
        wrapped = make(**options)(function) if options else make(function)
    except (ImportError, AttributeError, NotImplementedError) as error:
        _DECORATED[name] = error
        return function
    _DECORATED[name] = None
    return wrapped


def decorated(name):
    """The decorated function ``name``, or NotApplicable."""
    with setup_phase():
        if _DECORATED.get(name) is not None:
            raise _DECORATED[name]
    return globals()[name]


def thread_ident(x):
    return x


def process_ident(x):
    return x


def async_process_ident(x):
    return x


def process_sleeper(seconds):
    time.sleep(seconds)
    return seconds


if _IMPL in PEBBLE_IMPLS:
    thread_ident = _decorate(
        "thread_ident", "concurrent", "thread", thread_ident)
    process_ident = _decorate(
        "process_ident", "concurrent", "process", process_ident)
    async_process_ident = _decorate(
        "async_process_ident", "asynchronous", "process",
        async_process_ident)
    process_sleeper = _decorate(
        "process_sleeper", "concurrent", "process", process_sleeper,
        timeout=0.05)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def process_pool(impl, workers, **kwargs):
    """A process pool of the requested implementation (built in setup)."""
    with setup_phase():
        if impl in PEBBLE_IMPLS:
            return need_pebble().ProcessPool(max_workers=workers, **kwargs)
        if impl == "futures":
            from concurrent.futures import ProcessPoolExecutor
            return ProcessPoolExecutor(workers, **kwargs)
        if impl == "multiprocessing":
            import multiprocessing
            return multiprocessing.Pool(workers, **kwargs)
    raise ValueError(impl)


def close_pool(impl, pool):
    if impl in PEBBLE_IMPLS:
        pool.close()
        pool.join()
    elif impl in ("futures", "futures-thread"):
        pool.shutdown(wait=True)
    else:
        pool.close()
        pool.join()


def submit(impl, pool, fn, *args):
    """Schedule one task; returns an object with a blocking result getter."""
    if impl in PEBBLE_IMPLS:
        return pool.schedule(fn, args=args)
    if impl == "futures":
        return pool.submit(fn, *args)
    return pool.apply_async(fn, args)


def result_of(impl, handle, timeout=None):
    if impl == "multiprocessing":
        return handle.get(timeout)
    return handle.result(timeout)


def warm_up(impl, pool, workers):
    handles = [submit(impl, pool, ident, i) for i in range(4 * workers)]
    check([result_of(impl, h) for h in handles] == list(range(4 * workers)),
          "warm-up results")


def rate(count, seconds):
    return count / seconds


# ---------------------------------------------------------------------------
# Thread side
# ---------------------------------------------------------------------------

def thread_tiny(impl, quick):
    n = 20_000 if quick else 100_000
    with setup_phase():
        if impl in PEBBLE_IMPLS:
            pool = need_pebble().ThreadPool(max_workers=4)
            go = lambda i: pool.schedule(ident, args=(i,))  # noqa: E731
        else:
            from concurrent.futures import ThreadPoolExecutor
            pool = ThreadPoolExecutor(4)
            go = lambda i: pool.submit(ident, i)  # noqa: E731
    try:
        check([go(i).result() for i in range(100)] == list(range(100)),
              "warm-up")
        start = time.perf_counter()
        futures = [go(i) for i in range(n)]
        results = [f.result() for f in futures]
        elapsed = time.perf_counter() - start
    finally:
        close_pool("futures-thread" if impl == "futures" else impl, pool)
    check(results == list(range(n)), "thread_tiny results")
    return rate(n, elapsed), "tasks/s", {"n": n}


def thread_rtt(impl, quick):
    n = 1000 if quick else 5000
    with setup_phase():
        if impl in PEBBLE_IMPLS:
            pool = need_pebble().ThreadPool(max_workers=1)
            go = lambda i: pool.schedule(ident, args=(i,))  # noqa: E731
        else:
            from concurrent.futures import ThreadPoolExecutor
            pool = ThreadPoolExecutor(1)
            go = lambda i: pool.submit(ident, i)  # noqa: E731
    try:
        for i in range(200):
            check(go(i).result() == i, "warm-up")
        total = 0
        start = time.perf_counter()
        for i in range(n):
            total += go(i).result()
        elapsed = time.perf_counter() - start
    finally:
        close_pool("futures-thread" if impl == "futures" else impl, pool)
    check(total == n * (n - 1) // 2, "thread_rtt results")
    return elapsed / n * 1e6, "µs", {"n": n}


def sequential_calls(call, n, warmup, label):
    """Seconds per call of ``call(i).result()``, after *warmup* calls."""
    for i in range(warmup):
        check(call(i).result() == i, "warm-up")
    total = 0
    start = time.perf_counter()
    for i in range(n):
        total += call(i).result()
    elapsed = time.perf_counter() - start
    check(total == n * (n - 1) // 2, label + " results")
    return elapsed / n


def thread_decorator(impl, quick):
    n = 500 if quick else 2000
    per_call = sequential_calls(decorated("thread_ident"), n, 20, "thread_decorator")
    return per_call * 1e6, "µs", {"n": n}


def thread_map(impl, quick):
    n = 20_000 if quick else 100_000
    detail = {"n": n}
    with setup_phase():
        if impl in PEBBLE_IMPLS:
            pool = need_pebble().ThreadPool(max_workers=4)
            run = lambda: pool.map(ident, range(n), chunksize=100).result()  # noqa: E731,E501
            kind = impl
        elif impl == "futures":
            from concurrent.futures import ThreadPoolExecutor
            pool = ThreadPoolExecutor(4)
            run = lambda: pool.map(ident, range(n), chunksize=100)  # noqa: E731
            kind = "futures-thread"
            detail["note"] = "ThreadPoolExecutor.map ignores chunksize"
        else:
            from multiprocessing.pool import ThreadPool
            pool = ThreadPool(4)
            run = lambda: pool.map(ident, range(n), chunksize=100)  # noqa: E731
            kind = impl
    try:
        start = time.perf_counter()
        count = 0
        for value in run():
            if value != count:
                check(False, "thread_map item %d is %r" % (count, value))
            count += 1
        elapsed = time.perf_counter() - start
    finally:
        close_pool(kind, pool)
    check(count == n, "thread_map yielded %d items" % count)
    return rate(n, elapsed), "items/s", detail


# ---------------------------------------------------------------------------
# Process side
# ---------------------------------------------------------------------------

def proc_rtt(impl, quick):
    n = 500 if quick else 2000
    pool = process_pool(impl, 1)
    try:
        for i in range(100):
            check(result_of(impl, submit(impl, pool, ident, i)) == i,
                  "warm-up")
        total = 0
        start = time.perf_counter()
        for i in range(n):
            total += result_of(impl, submit(impl, pool, ident, i))
        elapsed = time.perf_counter() - start
    finally:
        close_pool(impl, pool)
    check(total == n * (n - 1) // 2, "proc_rtt results")
    return elapsed / n * 1e6, "µs", {"n": n}


def proc_tiny(impl, quick):
    n = 5_000 if quick else 20_000
    pool = process_pool(impl, 2)
    try:
        warm_up(impl, pool, 2)
        start = time.perf_counter()
        handles = [submit(impl, pool, ident, i) for i in range(n)]
        results = [result_of(impl, h) for h in handles]
        elapsed = time.perf_counter() - start
    finally:
        close_pool(impl, pool)
    check(results == list(range(n)), "proc_tiny results")
    return rate(n, elapsed), "tasks/s", {"n": n}


def _process_map(impl, pool, n, chunksize):
    """Iterator over map(ident, range(n)) for any implementation."""
    if impl in PEBBLE_IMPLS:
        return iter(pool.map(ident, range(n), chunksize=chunksize).result())
    if impl == "futures":
        return pool.map(ident, range(n), chunksize=chunksize)
    return None


def proc_map(impl, quick):
    n = 100_000 if quick else 500_000
    pool = process_pool(impl, 2)
    try:
        warm_up(impl, pool, 2)
        start = time.perf_counter()
        if impl == "multiprocessing":
            it = pool.map(ident, range(n), chunksize=1000)
        else:
            it = _process_map(impl, pool, n, 1000)
        expected = 0
        for value in it:
            if value != expected:
                check(False, "proc_map item %d is %r" % (expected, value))
            expected += 1
        elapsed = time.perf_counter() - start
    finally:
        close_pool(impl, pool)
    check(expected == n, "proc_map yielded %d items" % expected)
    return rate(n, elapsed), "items/s", {"n": n}


def proc_timeout(impl, quick):
    n = 5 if quick else 20
    timeout = 0.05
    lateness = []
    pebble = need_pebble()
    with setup_phase():
        pool = pebble.ProcessPool(max_workers=1)
    try:
        for _ in range(n):
            # An idle, started worker before each measurement, so that the
            # previous timeout's worker replacement is not counted.
            check(pool.schedule(ident, args=(1,)).result() == 1, "warm-up")
            start = time.perf_counter()
            future = pool.schedule(sleeper, args=(10,), timeout=timeout)
            try:
                future.result()
            except TIMEOUT_ERRORS:
                lateness.append(time.perf_counter() - (start + timeout))
            else:
                check(False, "task did not time out")
    finally:
        pool.close()
        pool.join()
    return (statistics.median(lateness) * 1e3, "ms",
            {"n": n, "min": min(lateness) * 1e3, "max": max(lateness) * 1e3})


def proc_crash(impl, quick, method=None):
    import multiprocessing
    n = 5 if quick else 20
    pebble = need_pebble()
    with setup_phase():
        expired = pebble.ProcessExpired
        context = multiprocessing.get_context(method) if method else None
        pool = pebble.ProcessPool(max_workers=1, context=context)
    delays = []
    directory = tempfile.mkdtemp(prefix="pebble-bench-")
    path = os.path.join(directory, "death")
    try:
        for _ in range(n):
            check(pool.schedule(ident, args=(1,)).result() == 1, "warm-up")
            if os.path.exists(path):
                os.unlink(path)
            future = pool.schedule(suicide, args=(path,))
            try:
                future.result()
            except expired as error:
                noticed = time.monotonic()
                code = getattr(error, "exitcode", None)
                check(code in (None, -signal.SIGKILL),
                      "ProcessExpired exitcode %r" % (code,))
            else:
                check(False, "no ProcessExpired")
            with open(path) as f:
                died = float(f.read())
            delays.append(noticed - died)
    finally:
        pool.close()
        pool.join()
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(directory)
    return (statistics.median(delays) * 1e3, "ms",
            {"n": n, "min": min(delays) * 1e3, "max": max(delays) * 1e3})


def proc_crash_spawn(impl, quick):
    return proc_crash(impl, quick, "spawn")


def proc_crash_forkserver(impl, quick):
    return proc_crash(impl, quick, "forkserver")


def proc_maxtasks1(impl, quick):
    n = 60 if quick else 300
    detail = {"n": n}
    with setup_phase():
        if impl in PEBBLE_IMPLS:
            pool = process_pool(impl, 2, max_tasks=1)
        elif impl == "futures":
            if sys.version_info < (3, 11):
                raise NotImplementedError("max_tasks_per_child needs 3.11")
            pool = process_pool(impl, 2, max_tasks_per_child=1)
            method = pool._mp_context.get_start_method()
            detail["note"] = ("start method %s (fork is refused with "
                              "max_tasks_per_child)" % method)
        else:
            pool = process_pool(impl, 2, maxtasksperchild=1)
    try:
        start = time.perf_counter()
        handles = [submit(impl, pool, ident, i) for i in range(n)]
        results = [result_of(impl, h) for h in handles]
        elapsed = time.perf_counter() - start
    finally:
        close_pool(impl, pool)
    check(results == list(range(n)), "proc_maxtasks1 results")
    return rate(n, elapsed), "tasks/s", detail


_BALLAST = []


def big_parent(quick):
    """Make this process hold 1 GiB (256 MiB with --quick) of touched memory."""
    size = (256 if quick else 1024) << 20
    with setup_phase():
        _BALLAST.append(b"x" * size)
    return size >> 20


def _maxtasks1(impl, quick, method, ballast):
    import multiprocessing
    n = 40 if quick else 200
    detail = {"n": n, "method": method}
    if ballast:
        detail["parent_mib"] = big_parent(quick)
    context = multiprocessing.get_context(method)
    with setup_phase():
        if impl in PEBBLE_IMPLS:
            pool = process_pool(impl, 2, max_tasks=1, context=context)
        elif impl == "futures":
            if sys.version_info < (3, 11):
                raise NotImplementedError("max_tasks_per_child needs 3.11")
            if method == "fork":
                raise NotImplementedError("max_tasks_per_child refuses fork")
            pool = process_pool(impl, 2, max_tasks_per_child=1, mp_context=context)
        else:
            pool = context.Pool(2, maxtasksperchild=1)
    try:
        start = time.perf_counter()
        handles = [submit(impl, pool, ident, i) for i in range(n)]
        results = [result_of(impl, h) for h in handles]
        elapsed = time.perf_counter() - start
    finally:
        close_pool(impl, pool)
    check(results == list(range(n)), "maxtasks1 results")
    return rate(n, elapsed), "tasks/s", detail


def proc_maxtasks1_fork_big(impl, quick):
    return _maxtasks1(impl, quick, "fork", True)


def proc_maxtasks1_forkserver(impl, quick):
    return _maxtasks1(impl, quick, "forkserver", False)


def proc_maxtasks1_forkserver_big(impl, quick):
    return _maxtasks1(impl, quick, "forkserver", True)


def proc_asyncio(impl, quick):
    n = 500 if quick else 2000
    pool = process_pool(impl, 2)

    async def main():
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        if impl in PEBBLE_IMPLS:
            aws = [asyncio.wrap_future(pool.schedule(ident, args=(i,)))
                   for i in range(n)]
        else:
            aws = [loop.run_in_executor(pool, ident, i) for i in range(n)]
        results = await asyncio.gather(*aws)
        return time.perf_counter() - start, results

    try:
        warm_up(impl, pool, 2)
        elapsed, results = asyncio.run(main())
    finally:
        close_pool(impl, pool)
    check(list(results) == list(range(n)), "proc_asyncio results")
    return rate(n, elapsed), "futures/s", {"n": n}


def proc_bigresult(impl, quick):
    n = 10 if quick else 50
    pool = process_pool(impl, 2)
    try:
        warm_up(impl, pool, 2)
        start = time.perf_counter()
        handles = [submit(impl, pool, big, i) for i in range(n)]
        for i in range(n):
            check_big(result_of(impl, handles[i]), i)
            handles[i] = None  # let the 8 MiB go
        elapsed = time.perf_counter() - start
    finally:
        close_pool(impl, pool)
    return rate(n * BIG_SIZE / (1 << 20), elapsed), "MiB/s", {"n": n}


def proc_map_memory(impl, quick):
    n = 1_000_000 if quick else 5_000_000
    pool = process_pool(impl, 2)
    try:
        warm_up(impl, pool, 2)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        if impl == "multiprocessing":
            it = pool.imap(ident, range(n), chunksize=100)
        else:
            it = _process_map(impl, pool, n, 100)
        expected = 0
        for value in it:
            if value != expected:
                check(False, "proc_map_memory item %d is %r"
                      % (expected, value))
            expected += 1
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        close_pool(impl, pool)
    check(expected == n, "proc_map_memory yielded %d items" % expected)
    # ru_maxrss is in KiB on Linux.
    detail = {"n": n, "rss_before_MiB": before / 1024, "seconds": elapsed,
              "items_per_s": n / elapsed}
    if impl == "multiprocessing":
        detail["note"] = "Pool.imap"
    return peak / 1024, "MiB", detail


# ---------------------------------------------------------------------------
# Map beyond upstream: buffersize, ordered=False
# ---------------------------------------------------------------------------

MAP_BIG = 10_000_000


def _rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _map_big(impl, quick, buffersize):
    """Peak RSS growth of the parent over its idle pool, mapping range(n)."""
    n = 1_000_000 if quick else MAP_BIG
    if buffersize is not None and impl != "ours":
        raise NotApplicable("no bounded map")
    pool = process_pool(impl, 2)
    try:
        warm_up(impl, pool, 2)
        idle = _rss_mib()
        start = time.perf_counter()
        if impl == "multiprocessing":
            it = pool.imap(ident, range(n), chunksize=100)
        elif impl == "futures":
            it = pool.map(ident, range(n), chunksize=100)
        else:
            options = {} if buffersize is None else {"buffersize": buffersize}
            it = iter(pool.map(ident, range(n), chunksize=100, **options).result())
        expected = 0
        for value in it:
            if value != expected:
                check(False, "item %d is %r" % (expected, value))
            expected += 1
        elapsed = time.perf_counter() - start
        peak = _rss_mib()
    finally:
        close_pool(impl, pool)
    check(expected == n, "yielded %d items" % expected)
    detail = {"n": n, "idle_MiB": idle, "peak_MiB": peak, "seconds": elapsed,
              "items_per_s": n / elapsed}
    if impl == "multiprocessing":
        detail["note"] = "Pool.imap"
    return peak - idle, "MiB", detail


def map_rss_eager(impl, quick):
    return _map_big(impl, quick, None)


def map_rss_buffered(impl, quick):
    return _map_big(impl, quick, 16)


def map_first_result(impl, quick):
    """Seconds from the map call to the first result, over range(10M), chunksize 100."""
    n = 1_000_000 if quick else MAP_BIG
    pool = process_pool(impl, 2)
    try:
        warm_up(impl, pool, 2)
        start = time.perf_counter()
        if impl == "multiprocessing":
            first = next(pool.imap(ident, range(n), chunksize=100))
        elif impl == "futures":
            first = next(pool.map(ident, range(n), chunksize=100))
        elif impl == "ours":
            future = pool.map(ident, range(n), chunksize=100, buffersize=16)
            first = next(future.result())
        else:
            future = pool.map(ident, range(n), chunksize=100)
            first = next(future.result())
        elapsed = time.perf_counter() - start
        check(first == 0, "first result is %r" % (first,))
    finally:
        if impl in PEBBLE_IMPLS:
            pool.stop()
            pool.join()
        elif impl == "futures":
            pool.shutdown(wait=True, cancel_futures=True)
        else:
            pool.terminate()
            pool.join()
    detail = {"n": n}
    if impl == "ours":
        detail["note"] = "buffersize=16"
    elif impl == "multiprocessing":
        detail["note"] = "Pool.imap"
    return elapsed * 1e3, "ms", detail


VARIED_SLOW, VARIED_FAST = 0.1, 0.001


def varied_cost(i):
    """Every tenth element costs 100 times the others."""
    time.sleep(VARIED_SLOW if i % 10 == 0 else VARIED_FAST)
    return i


def _varied(impl, quick, ordered, buffersize=None):
    """Mean latency from the map call to each result, costs varying 100x."""
    n = 100 if quick else 400
    pool = process_pool(impl, 2)
    try:
        warm_up(impl, pool, 2)
        start = time.perf_counter()
        if impl in PEBBLE_IMPLS:
            options = {}
            if not ordered or buffersize is not None:
                if impl != "ours":
                    raise NotApplicable("map is ordered and unbounded")
                options = {"ordered": ordered, "buffersize": buffersize}
            it = iter(pool.map(varied_cost, range(n), **options).result())
        elif impl == "futures":
            if ordered:
                it = pool.map(varied_cost, range(n))
            else:
                it = (f.result() for f in concurrent.futures.as_completed(
                    [pool.submit(varied_cost, i) for i in range(n)]))
        else:
            it = (pool.imap if ordered else pool.imap_unordered)(varied_cost, range(n))
        latencies, seen = [], []
        for value in it:
            latencies.append(time.perf_counter() - start)
            seen.append(value)
        elapsed = time.perf_counter() - start
    finally:
        close_pool(impl, pool)
    check(sorted(seen) == list(range(n)), "results")
    check(not ordered or seen == list(range(n)), "order")
    detail = {"n": n, "seconds": elapsed, "items_per_s": n / elapsed}
    notes = {"futures": "as_completed" if not ordered else "Executor.map",
             "multiprocessing": "imap_unordered" if not ordered else "imap"}
    if impl in notes:
        detail["note"] = notes[impl]
    return statistics.mean(latencies) * 1e3, "ms", detail


def map_varied_ordered(impl, quick):
    return _varied(impl, quick, True)


def map_varied_unordered(impl, quick):
    return _varied(impl, quick, False)


def map_varied_buffered_ordered(impl, quick):
    return _varied(impl, quick, True, 8)


def map_varied_buffered_unordered(impl, quick):
    return _varied(impl, quick, False, 8)


# ---------------------------------------------------------------------------
# Decorators
# ---------------------------------------------------------------------------

def proc_decorator(impl, quick):
    n = 30 if quick else 200
    per_call = sequential_calls(decorated("process_ident"), n, 3, "proc_decorator")
    return per_call * 1e3, "ms/call", {"n": n}


def proc_decorator_big(impl, quick):
    n = 10 if quick else 50
    detail = {"n": n, "parent_mib": big_parent(quick)}
    per_call = sequential_calls(decorated("process_ident"), n, 2, "proc_decorator_big")
    return per_call * 1e3, "ms/call", detail


def _bare_fork_calls(n):
    """Seconds per os.fork() whose child writes a byte the parent reads, then reaps."""
    start = time.perf_counter()
    for _ in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, b"x")
            os._exit(0)
        os.close(w)
        check(os.read(r, 1) == b"x", "fork floor byte")
        os.close(r)
        os.waitpid(pid, 0)
    return (time.perf_counter() - start) / n


def fork_floor(impl, quick):
    n = 30 if quick else 200
    check(decorated("process_ident")(1).result() == 1, "warm-up")
    return _bare_fork_calls(n) * 1e3, "ms/call", {"n": n}


def fork_floor_big(impl, quick):
    n = 10 if quick else 50
    detail = {"n": n, "parent_mib": big_parent(quick)}
    check(decorated("process_ident")(1).result() == 1, "warm-up")
    return _bare_fork_calls(n) * 1e3, "ms/call", detail


def proc_async_decorator(impl, quick):
    n = 15 if quick else 100
    async_process_ident = decorated("async_process_ident")

    async def main():
        for i in range(3):
            check(await async_process_ident(i) == i, "warm-up")
        total = 0
        start = time.perf_counter()
        for i in range(n):
            total += await async_process_ident(i)
        return time.perf_counter() - start, total

    elapsed, total = asyncio.run(main())
    check(total == n * (n - 1) // 2, "proc_async_decorator results")
    return elapsed / n * 1e3, "ms/call", {"n": n}


def proc_decorator_timeout(impl, quick):
    n = 5 if quick else 20
    timeout = 0.05
    process_sleeper = decorated("process_sleeper")
    check(decorated("process_ident")(1).result() == 1, "warm-up")
    lateness = []
    for _ in range(n):
        start = time.perf_counter()
        future = process_sleeper(10)
        try:
            future.result()
        except TIMEOUT_ERRORS:
            lateness.append(time.perf_counter() - (start + timeout))
        else:
            check(False, "task did not time out")
    return (statistics.median(lateness) * 1e3, "ms",
            {"n": n, "min": min(lateness) * 1e3, "max": max(lateness) * 1e3})


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

HIGHER, LOWER = "higher", "lower"
PEBBLE_ONLY = PEBBLE_IMPLS
WITH_FUTURES = PEBBLE_IMPLS + ("futures",)
OURS_ONLY = ("ours",)


class Workload:
    """function(impl, quick) -> (value, unit, detail), and how to read it.

    ``title`` may contain ``{n}``, the size the run reported in its detail.

    ``better`` says whether a higher or a lower value is better;
    ``max_repeat`` caps the default number of repeats of long workloads
    whose single run already averages over many operations.
    """

    def __init__(self, function, group, better, impls, title,
                 max_repeat=None):
        self.function = function
        self.group = group
        self.better = better
        self.impls = impls
        self.title = title
        self.max_repeat = max_repeat


WORKLOADS = {w.function.__name__: w for w in [
    Workload(thread_tiny, "thread", HIGHER, WITH_FUTURES,
             "ThreadPool(4): {n} tiny tasks"),
    Workload(thread_rtt, "thread", LOWER, WITH_FUTURES,
             "ThreadPool(1): round trip, {n} in sequence"),
    Workload(thread_decorator, "thread", LOWER, PEBBLE_ONLY,
             "@concurrent.thread call + result, {n} in sequence"),
    Workload(thread_map, "thread", HIGHER, ALL_IMPLS,
             "ThreadPool(4).map: {n} items, chunksize 100"),
    Workload(proc_rtt, "process", LOWER, ALL_IMPLS,
             "ProcessPool(1): round trip, {n} in sequence"),
    Workload(proc_tiny, "process", HIGHER, ALL_IMPLS,
             "ProcessPool(2): {n} tiny tasks"),
    Workload(proc_map, "process", HIGHER, ALL_IMPLS,
             "ProcessPool(2).map: {n} items, chunksize 1000"),
    Workload(proc_timeout, "process", LOWER, PEBBLE_ONLY,
             "ProcessPool(1), timeout=0.05: lateness of TimeoutError, median of {n}"),
    Workload(proc_crash, "process", LOWER, PEBBLE_ONLY,
             "SIGKILLed worker: death to ProcessExpired, median of {n}"),
    Workload(proc_crash_spawn, "process", LOWER, PEBBLE_ONLY,
             "SIGKILLed worker, spawn: death to ProcessExpired, median of {n}"),
    Workload(proc_crash_forkserver, "process", LOWER, PEBBLE_ONLY,
             "SIGKILLed worker, forkserver: death to ProcessExpired, median of {n}"),
    Workload(proc_maxtasks1, "process", HIGHER, ALL_IMPLS,
             "ProcessPool(2, max_tasks=1): {n} tiny tasks", max_repeat=3),
    Workload(proc_maxtasks1_fork_big, "process", HIGHER, ALL_IMPLS,
             "ProcessPool(2, max_tasks=1), fork, parent holding 1 GiB: {n} tiny tasks",
             max_repeat=3),
    Workload(proc_maxtasks1_forkserver, "process", HIGHER, ALL_IMPLS,
             "ProcessPool(2, max_tasks=1), forkserver: {n} tiny tasks", max_repeat=3),
    Workload(proc_maxtasks1_forkserver_big, "process", HIGHER, ALL_IMPLS,
             "ProcessPool(2, max_tasks=1), forkserver, parent holding 1 GiB: {n} tiny tasks",
             max_repeat=3),
    Workload(proc_asyncio, "process", HIGHER, WITH_FUTURES,
             "ProcessPool(2): asyncio gather of {n} futures"),
    Workload(proc_bigresult, "process", HIGHER, ALL_IMPLS,
             "ProcessPool(2): {n} results of 8 MiB"),
    Workload(proc_map_memory, "process", LOWER, ALL_IMPLS,
             "ProcessPool(2).map over {n} items, chunksize 100: parent peak RSS",
             max_repeat=3),
    Workload(map_rss_eager, "map", LOWER, ALL_IMPLS,
             "ProcessPool(2).map over range({n}), chunksize 100: parent peak RSS "
             "over the idle pool", max_repeat=3),
    Workload(map_rss_buffered, "map", LOWER, OURS_ONLY,
             "ProcessPool(2).map over range({n}), chunksize 100, buffersize=16: "
             "parent peak RSS over the idle pool", max_repeat=3),
    Workload(map_first_result, "map", LOWER, ALL_IMPLS,
             "ProcessPool(2).map over range({n}), chunksize 100: time to the first "
             "result", max_repeat=3),
    Workload(map_varied_ordered, "map", LOWER, ALL_IMPLS,
             "ProcessPool(2).map, {n} items costing 1 or 100 ms, ordered: "
             "mean latency of a result"),
    Workload(map_varied_unordered, "map", LOWER, ALL_IMPLS,
             "ProcessPool(2).map, {n} items costing 1 or 100 ms, ordered=False: "
             "mean latency of a result"),
    Workload(map_varied_buffered_ordered, "map", LOWER, OURS_ONLY,
             "ProcessPool(2).map, {n} items costing 1 or 100 ms, buffersize=8, "
             "ordered: mean latency of a result"),
    Workload(map_varied_buffered_unordered, "map", LOWER, OURS_ONLY,
             "ProcessPool(2).map, {n} items costing 1 or 100 ms, buffersize=8, "
             "ordered=False: mean latency of a result"),
    Workload(proc_decorator, "decorators", LOWER, PEBBLE_ONLY,
             "@concurrent.process call + result, {n} in sequence"),
    Workload(proc_decorator_big, "decorators", LOWER, PEBBLE_ONLY,
             "@concurrent.process call + result, parent holding 1 GiB, {n} in sequence",
             max_repeat=3),
    Workload(fork_floor, "decorators", LOWER, PEBBLE_ONLY,
             "os.fork() child sending one byte, beside a warm decorator: the floor "
             "of a call that forks, {n} in sequence"),
    Workload(fork_floor_big, "decorators", LOWER, PEBBLE_ONLY,
             "os.fork() child sending one byte, parent holding 1 GiB: the floor of "
             "a call that forks, {n} in sequence", max_repeat=3),
    Workload(proc_async_decorator, "decorators", LOWER, PEBBLE_ONLY,
             "@asynchronous.process awaited, {n} in sequence", max_repeat=3),
    Workload(proc_decorator_timeout, "decorators", LOWER, PEBBLE_ONLY,
             "@concurrent.process(timeout=0.05): lateness of TimeoutError, median of {n}"),
]}


def describe():
    return {name: {"group": w.group, "better": w.better,
                   "impls": list(w.impls), "title": w.title,
                   "max_repeat": w.max_repeat}
            for name, w in WORKLOADS.items()}


def pebble_origin():
    if pebble is None:
        return None
    return {"file": os.path.dirname(getattr(pebble, "__file__", "") or ""),
            "version": getattr(pebble, "__version__", None)}


def main(argv):
    if argv[1:2] == ["--list"]:
        print(json.dumps(describe()))
        return 0
    if len(argv) < 3 or argv[1] not in WORKLOADS or argv[2] not in ALL_IMPLS:
        sys.stderr.write("usage: workloads.py WORKLOAD IMPL [--quick]\n"
                         "workloads: %s\nimpls: %s\n"
                         % (" ".join(WORKLOADS), " ".join(ALL_IMPLS)))
        return 2
    name, impl, quick = argv[1], argv[2], "--quick" in argv[3:]
    workload = WORKLOADS[name]
    record = {"workload": name, "impl": impl, "quick": quick}
    if impl not in workload.impls:
        record.update(status="skip", reason="not applicable")
    else:
        if impl in PEBBLE_IMPLS:
            record["pebble"] = pebble_origin()
        try:
            value, unit, detail = workload.function(impl, quick)
        except NotApplicable as reason:
            record.update(status="n/a", reason=str(reason))
        else:
            record.update(status="ok", value=value, unit=unit, detail=detail)
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
