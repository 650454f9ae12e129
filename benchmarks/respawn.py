"""Respawn cost: forking a replacement worker from the (large) parent versus
from pebble's small launcher process.

Usage::

    python benchmarks/respawn.py [--ballast-mib 1024] [--count 200]

Three figures per parent size (none, then ``--ballast-mib`` MiB of touched
memory allocated after the pool starts):

* ``os.fork() from parent``: fork + child ``os._exit(0)`` + ``waitpid`` in
  the parent, the cost a design that forks replacements from the parent pays
  (with the GIL held, blocking every other thread);
* ``pebble max_tasks=1``: one task per worker on a 1-worker ProcessPool, so
  every task needs a new worker forked by the launcher (task round trip
  included);
* ``pebble round trip``: the same pool without restarts, for reference.
"""

import argparse
import os
import statistics
import time

from pebble import ProcessPool


def tiny(x):
    return x


def fork_from_parent(count):
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def pebble_cycle(pool, count):
    pool.schedule(tiny, (0,)).result()
    start = time.perf_counter()
    for i in range(count):
        pool.schedule(tiny, (i,)).result()
    return (time.perf_counter() - start) / count * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ballast-mib", type=int, default=1024)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    restarting = ProcessPool(1, max_tasks=1)
    steady = ProcessPool(1)
    rows = []
    for label, ballast in (("small parent", 0), ("parent + %d MiB" % args.ballast_mib,
                                                 args.ballast_mib)):
        memory = bytearray(ballast << 20)
        for offset in range(0, len(memory), 4096):
            memory[offset] = 1
        rows.append((label, fork_from_parent(args.count), pebble_cycle(restarting, args.count),
                     pebble_cycle(steady, args.count)))
        del memory
    for pool in (restarting, steady):
        pool.close()
        pool.join()
    print("%-22s %24s %22s %20s" % ("", "os.fork() from parent", "pebble max_tasks=1",
                                    "pebble round trip"))
    for label, parent, launcher, steady_ms in rows:
        print("%-22s %21.2f ms %19.2f ms %17.3f ms" % (label, parent, launcher, steady_ms))


if __name__ == "__main__":
    main()
