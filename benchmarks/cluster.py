"""ClusterPool against raw Dask (``client.submit``) on one LocalCluster, with
ProcessPool on the same machine for scale.

Usage::

    python benchmarks/cluster.py [--workers N] [--threads N] [--tasks N] [--quick]

Needs ``pip install '.[dask]'``. Every row runs in this one process, on one
``distributed.LocalCluster`` (``--workers`` worker processes of ``--threads``
threads each; ClusterPool runs that many pebble processes per worker). Times
are medians over the samples; rates are tasks per second.

Rows:

``per-task overhead``
    one no-op task submitted and waited for, one at a time.
``10k tiny tasks``
    ``--tasks`` no-op tasks submitted at once, then all waited for.
``timeout lateness``
    a task sleeping 10 s with a 0.2 s timeout: time from the deadline to the
    error. Dask has no task timeout: ``result(timeout=)`` only stops waiting
    and the task runs on.
``cancel to killed``
    a running task is cancelled: time until its process is gone. A Dask
    cancel leaves a running task running (dask/distributed#3681); the row
    says whether the task still finished its sleep.
``map throughput``
    ``--tasks`` elements: ``map(chunksize=100)``, ``client.map`` over the
    elements for Dask.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def noop(x=0):
    return x


def sleep_and_mark(directory, seconds):
    with open(os.path.join(directory, "pid"), "w") as out:
        out.write(str(os.getpid()))
    time.sleep(seconds)
    with open(os.path.join(directory, "finished"), "w") as out:
        out.write("1")


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_file(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) or not open(path).read():
        if time.monotonic() > deadline:
            raise RuntimeError("%s never appeared" % path)
        time.sleep(0.001)


def per_task(submit, wait, samples):
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        wait(submit(noop, 1))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    samples = 20 if args.quick else 200
    late_samples = 3 if args.quick else 10
    tasks = 1000 if args.quick else args.tasks

    import distributed
    from concurrent.futures import TimeoutError
    from pebble import ProcessPool
    from pebble.cluster import ClusterPool

    cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=args.threads,
                                       processes=True, dashboard_address=":0")
    client = distributed.Client(cluster)
    pool = ClusterPool(client=client)
    local = ProcessPool(args.workers * args.threads)
    rows = []

    def row(name, unit, ours, dask, local_value, better):
        rows.append((name, unit, ours, dask, local_value, better))
        print("  %s done" % name, file=sys.stderr)

    # Warm up every path.
    pool.schedule(noop).result()
    client.submit(noop, pure=False).result()
    local.schedule(noop).result()

    row("per-task overhead", "ms",
        1000 * per_task(lambda f, x: pool.schedule(f, args=(x,)), lambda f: f.result(), samples),
        1000 * per_task(lambda f, x: client.submit(f, x, pure=False), lambda f: f.result(),
                        samples),
        1000 * per_task(lambda f, x: local.schedule(f, args=(x,)), lambda f: f.result(),
                        samples), "lower")

    def burst_ours():
        start = time.perf_counter()
        futures = [pool.schedule(noop, args=(i,)) for i in range(tasks)]
        assert [f.result() for f in futures] == list(range(tasks))
        return tasks / (time.perf_counter() - start)

    def burst_dask():
        start = time.perf_counter()
        futures = [client.submit(noop, i, pure=False) for i in range(tasks)]
        assert client.gather(futures) == list(range(tasks))
        return tasks / (time.perf_counter() - start)

    def burst_local():
        start = time.perf_counter()
        futures = [local.schedule(noop, args=(i,)) for i in range(tasks)]
        assert [f.result() for f in futures] == list(range(tasks))
        return tasks / (time.perf_counter() - start)

    row("%d tiny tasks" % tasks, "tasks/s", burst_ours(), burst_dask(), burst_local(), "higher")

    def lateness(schedule):
        late = []
        for _ in range(late_samples):
            with tempfile.TemporaryDirectory() as directory:
                future = schedule(directory)
                start = time.perf_counter()
                try:
                    future.result()
                except TimeoutError:
                    pass
                late.append(time.perf_counter() - start - 0.2)
        return 1000 * statistics.median(late)

    row("timeout lateness", "ms",
        lateness(lambda d: pool.schedule(sleep_and_mark, args=(d, 10), timeout=0.2)),
        "no task timeout",
        lateness(lambda d: local.schedule(sleep_and_mark, args=(d, 10), timeout=0.2)), "lower")

    def cancel_latency(schedule):
        latencies = []
        for _ in range(late_samples):
            with tempfile.TemporaryDirectory() as directory:
                future = schedule(directory)
                wait_file(os.path.join(directory, "pid"))
                pid = int(open(os.path.join(directory, "pid")).read())
                start = time.perf_counter()
                future.cancel()
                while pid_alive(pid):
                    time.sleep(0.0002)
                latencies.append(time.perf_counter() - start)
        return 1000 * statistics.median(latencies)

    def cancel_dask():
        with tempfile.TemporaryDirectory() as directory:
            future = client.submit(sleep_and_mark, directory, 1.0, pure=False)
            wait_file(os.path.join(directory, "pid"))
            future.cancel()
            time.sleep(2)
            ran_on = os.path.exists(os.path.join(directory, "finished"))
        return "never: the task ran on" if ran_on else "stopped"

    row("cancel to killed", "ms",
        cancel_latency(lambda d: pool.schedule(sleep_and_mark, args=(d, 30))),
        cancel_dask(),
        cancel_latency(lambda d: local.schedule(sleep_and_mark, args=(d, 30))), "lower")

    def map_ours():
        start = time.perf_counter()
        assert list(pool.map(noop, range(tasks), chunksize=100).result()) == list(range(tasks))
        return tasks / (time.perf_counter() - start)

    def map_dask():
        start = time.perf_counter()
        assert client.gather(client.map(noop, range(tasks), pure=False)) == list(range(tasks))
        return tasks / (time.perf_counter() - start)

    def map_local():
        start = time.perf_counter()
        assert list(local.map(noop, range(tasks), chunksize=100).result()) == list(range(tasks))
        return tasks / (time.perf_counter() - start)

    row("map throughput", "elements/s", map_ours(), map_dask(), map_local(), "higher")

    pool.stop()
    pool.join()
    local.stop()
    local.join()
    client.close()
    cluster.close()

    def show(value):
        return "%.3g" % value if isinstance(value, float) else value

    header = ("workload", "unit", "ClusterPool", "raw Dask", "ours / Dask", "ProcessPool")
    table = [header]
    for name, unit, ours, dask, local_value, better in rows:
        if isinstance(dask, float):
            ratio = (dask / ours) if better == "lower" else (ours / dask)
            ratio_text = "%.2fx %s" % (ratio, "(better)" if ratio >= 1 else "(worse)")
        else:
            ratio_text = "n/a"
        table.append((name, unit, show(ours), show(dask), ratio_text, show(local_value)))
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    print("LocalCluster: %d workers x %d threads, Python %s, %d cores"
          % (args.workers, args.threads, sys.version.split()[0], os.cpu_count()))
    for line in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
