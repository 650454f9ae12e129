"""Typed use of pebble's public API: every line must pass ``mypy --strict``.

Only type-checked, never run: ``assert_type`` fails the check whenever the
type mypy infers differs from the one written.
"""

import asyncio
import multiprocessing
import queue
import signal
import threading
from concurrent.futures import Future, as_completed, wait
from types import FrameType
from typing import Any, Callable, Iterator, List, Optional, Tuple

from typing_extensions import assert_type

import pebble
from pebble import (MapFuture, ProcessExpired, ProcessFuture, ProcessMapFuture,
                    ProcessPool, ThreadPool, asynchronous, concurrent, sighandler,
                    synchronized, waitforqueues, waitforthreads)


def add(a: int, b: int = 1) -> int:
    return a + b


def greet(name: str, *, punctuation: str = "!") -> str:
    return name + punctuation


def nothing() -> None:
    pass


thread_pool = ThreadPool(max_workers=2, max_tasks=10, initializer=nothing)
process_pool = ProcessPool(max_workers=2, context=multiprocessing.get_context("spawn"))


# -- concurrent.thread --------------------------------------------------------

@concurrent.thread
def thread_bare(a: int, b: int = 1) -> int:
    return a + b


@concurrent.thread(name="worker", daemon=False)
def thread_named(text: str) -> List[str]:
    return text.split()


@concurrent.thread(pool=thread_pool)
def thread_pooled() -> None:
    pass


@concurrent.thread()
def thread_empty_call(*values: float) -> float:
    return sum(values)


thread_called = concurrent.thread(greet)

assert_type(thread_bare(1), "Future[int]")
assert_type(thread_bare(1, b=2).result(), int)
assert_type(thread_bare(a=1).result(timeout=1.5), int)
assert_type(thread_named("a b"), "Future[List[str]]")
assert_type(thread_pooled(), "Future[None]")
assert_type(thread_empty_call(1.0, 2, 3.5).result(), float)
assert_type(thread_called("pebble", punctuation="?"), "Future[str]")


# -- concurrent.process -------------------------------------------------------

@concurrent.process
def process_bare(a: int) -> float:
    return a / 2


@concurrent.process(name="worker", daemon=True, timeout=10,
                    context=multiprocessing.get_context("forkserver"))
def process_timed(data: bytes, *, repeat: int = 1) -> bytes:
    return data * repeat


@concurrent.process(timeout=2.5, mp_context=multiprocessing, pool=process_pool)
def process_pooled() -> Tuple[int, str]:
    return 1, "one"


process_called = concurrent.process(add)
assert_type(concurrent.process(add, timeout=5)(1, 2), "ProcessFuture[int]")
assert_type(concurrent.thread(add, name="adder")(1, 2), "Future[int]")
assert_type(asynchronous.process(add, context=multiprocessing)(1, 2), "asyncio.Future[int]")
assert_type(asynchronous.thread(add, daemon=False)(1, 2), "asyncio.Future[int]")

assert_type(process_bare(1), "ProcessFuture[float]")
assert_type(process_bare(1).result(), float)
assert_type(process_bare(1).cancel(), bool)
assert_type(process_timed(b"x", repeat=3).result(), bytes)
assert_type(process_pooled(), "ProcessFuture[Tuple[int, str]]")
assert_type(process_called(1, b=2), "ProcessFuture[int]")

# A ProcessFuture is a concurrent.futures.Future.
plain: "Future[float]" = process_bare(2)
done, pending = wait([process_bare(1), process_bare(2)], timeout=1)
for finished in as_completed([process_bare(3)]):
    assert_type(finished.result(), float)


def expired_code(future: "ProcessFuture[int]") -> Optional[int]:
    error = future.exception()
    if isinstance(error, ProcessExpired):
        assert_type(error.exitcode, Optional[int])
        return error.pid
    return None


# -- decorated methods --------------------------------------------------------

class Counter:
    def __init__(self) -> None:
        self.count = 0

    @concurrent.thread
    def bump(self, step: int) -> int:
        self.count += step
        return self.count

    @asynchronous.thread
    def bump_later(self, step: int) -> int:
        return self.count + step


assert_type(Counter().bump(2), "Future[int]")


# -- asynchronous.thread and asynchronous.process -----------------------------

@asynchronous.thread
def async_thread(a: int) -> str:
    return str(a)


@asynchronous.thread(name="worker", daemon=True, pool=thread_pool)
def async_thread_pooled(items: List[int]) -> int:
    return len(items)


@asynchronous.process
def async_process(data: bytes) -> bytes:
    return data[::-1]


@asynchronous.process(timeout=5, name="worker", daemon=False, context=None, pool=None)
def async_process_timed(a: int, b: int = 1) -> int:
    return a * b


async_thread_called = asynchronous.thread(add)
async_process_called = asynchronous.process(greet)


async def main() -> None:
    assert_type(async_thread(1), "asyncio.Future[str]")
    text = await async_thread(1)
    assert_type(text, str)
    assert_type(await async_thread_pooled([1, 2]), int)
    assert_type(await async_process(b"abc"), bytes)
    assert_type(await async_process_timed(2, b=3), int)
    assert_type(await async_thread_called(1), int)
    assert_type(await async_process_called("x", punctuation="."), str)
    assert_type(await Counter().bump_later(1), int)
    both = await asyncio.gather(async_thread(1), async_process(b"x"))
    assert_type(both, Tuple[str, bytes])
    task = asyncio.ensure_future(async_process_timed(1))
    assert_type(task, "asyncio.Future[int]")
    assert_type(await asyncio.wait_for(async_thread(2), timeout=1), str)


# -- ThreadPool ---------------------------------------------------------------

with ThreadPool(max_workers=4) as pool:
    assert_type(pool, ThreadPool)
    assert_type(pool.schedule(add, args=(1,)), "Future[int]")
    assert_type(pool.schedule(greet, args=["x"], kwargs={"punctuation": "?"}), "Future[str]")
    assert_type(pool.schedule(nothing), "Future[None]")
    assert_type(pool.submit(add, 1, b=2), "Future[int]")
    assert_type(pool.submit(greet, "x", punctuation="?").result(), str)
    mapped = pool.map(add, [1, 2], [3, 4], chunksize=2, timeout=None)
    assert_type(mapped, "MapFuture[int]")
    assert_type(mapped.result(), Iterator[int])
    assert_type(list(pool.map(str, range(3)).result()), List[str])
    for value in pool.map(add, range(3), timeout=1.5).result():
        assert_type(value, int)
    assert_type(mapped.cancel(), bool)
    lazy = pool.map(add, iter(range(9)), range(9), buffersize=2, ordered=False, progress=True)
    assert_type(lazy, "MapFuture[int]")
    assert_type(lazy.completed, int)
    assert_type(lazy.total, Optional[int])

    def on_progress(done: int, total: Optional[int]) -> None:
        pass

    assert_type(pool.map(str, range(3), progress=on_progress).result(), Iterator[str])
    assert_type(pool.active, bool)
    pool.close()
    pool.join(timeout=1)
thread_pool.stop()
thread_pool.join()


# -- ProcessPool --------------------------------------------------------------

with ProcessPool(max_workers=2, max_tasks=1, initializer=add, initargs=(1,),
                 context=multiprocessing) as ppool:
    assert_type(ppool, ProcessPool)
    scheduled = ppool.schedule(add, args=[1], kwargs={"b": 2}, timeout=5)
    assert_type(scheduled, "ProcessFuture[int]")
    assert_type(ppool.schedule(nothing).result(), None)
    assert_type(ppool.submit(add, None, 1), "ProcessFuture[int]")
    assert_type(ppool.submit(add, 2.5, 1, b=3).result(timeout=1), int)
    assert_type(ppool.submit(greet, 1, "x", punctuation="?"), "ProcessFuture[str]")
    process_mapped = ppool.map(add, range(3), range(3), chunksize=1, timeout=2.0)
    assert_type(process_mapped, "ProcessMapFuture[int]")
    assert_type(process_mapped.result(), Iterator[int])
    assert_type(list(process_mapped.result()), List[int])
    assert_type(process_mapped.cancel(), bool)
    streamed = ppool.map(greet, iter(["a", "b"]), chunksize=1, timeout=1.0, buffersize=4,
                         ordered=False, progress=lambda done, total: None)
    assert_type(streamed, "ProcessMapFuture[str]")
    assert_type(streamed.futures, "List[Future[Any]]")
    as_future: "ProcessFuture[Iterator[int]]" = process_mapped
    ppool.stop()
    ppool.join()


# -- synchronized, sighandler, waitforthreads, waitforqueues ------------------

lock = threading.RLock()


@synchronized
def synchronized_bare(a: int) -> int:
    return a


@synchronized()
def synchronized_default(a: str, *, upper: bool = False) -> str:
    return a.upper() if upper else a


@synchronized(lock)
def synchronized_lock(items: List[int]) -> Optional[int]:
    return items[0] if items else None


assert_type(synchronized_bare(1), int)
assert_type(synchronized_default("a", upper=True), str)
assert_type(synchronized_lock([1]), Optional[int])
assert_type(synchronized(multiprocessing.Semaphore())(add)(1, b=2), int)


@sighandler(signal.SIGUSR1)
def on_usr1(signum: int, frame: Optional[FrameType]) -> None:
    pass


@sighandler([signal.SIGINT, signal.SIGTERM])
def on_stop(signum: int, frame: Optional[FrameType]) -> None:
    pass


handler: Callable[[int, Optional[FrameType]], None] = on_stop
assert_type(on_usr1(signal.SIGUSR1, None), None)
assert_type(waitforthreads([threading.Thread()], timeout=1), List[threading.Thread])
numbers: "queue.Queue[int]" = queue.Queue()
assert_type(waitforqueues([numbers], timeout=0.5), "List[queue.Queue[int]]")
assert_type(pebble.__version__, str)
