"""Misuses of pebble's API that ``mypy --strict`` must reject.

Only type-checked, never run. Each line ending in ``# E: <text>`` must get
an error whose message contains <text>; no other line may get one.
"""

import asyncio
from typing import Iterator, List

from pebble import (ProcessFuture, ProcessPool, ThreadPool, asynchronous, concurrent,
                    sighandler, synchronized)


def add(a: int, b: int = 1) -> int:
    return a + b


def greet(name: str, *, punctuation: str = "!") -> str:
    return name + punctuation


thread_pool = ThreadPool()
process_pool = ProcessPool()


# -- decorated functions keep their parameters --------------------------------

@concurrent.thread
def thread_int(a: int) -> int:
    return a


@concurrent.process
def process_int(a: int) -> int:
    return a


@asynchronous.thread
def async_thread_int(a: int) -> int:
    return a


@asynchronous.process(timeout=1)
def async_process_int(a: int) -> int:
    return a


thread_int("one")  # E: Argument 1 to "thread_int" has incompatible type "str"; expected "int"
thread_int(1, 2)  # E: Too many arguments for "thread_int"
thread_int()  # E: Missing positional argument "a"
thread_int(b=1)  # E: Unexpected keyword argument "b"
process_int(None)  # E: Argument 1 to "process_int" has incompatible type "None"; expected "int"
async_thread_int("1")  # E: Argument 1 to "async_thread_int" has incompatible type "str"; expected "int"
async_process_int(1.5)  # E: Argument 1 to "async_process_int" has incompatible type "float"; expected "int"
concurrent.thread(add)("x")  # E: Argument 1 has incompatible type "str"; expected "int"
concurrent.process(greet)("x", punctuation=1)  # E: Argument "punctuation" has incompatible type "int"; expected "str"


# -- and their results' types -------------------------------------------------

thread_text: str = thread_int(1).result()  # E: expression has type "int", variable has type "str"
process_text: str = process_int(1).result()  # E: expression has type "int", variable has type "str"
wrong_future: "ProcessFuture[str]" = process_int(1)  # E: expression has type "ProcessFuture[int]"
not_a_process_future: "ProcessFuture[int]" = thread_int(1)  # E: expression has type "Future[int]"
process_int(1).result() + "x"  # E: Unsupported operand types for + ("int" and "str")


async def awaiting() -> None:
    text: str = await async_thread_int(1)  # E: expression has type "int", variable has type "str"
    more: str = await async_process_int(1)  # E: expression has type "int", variable has type "str"
    await thread_int(1)  # E: Incompatible types in "await" (actual type "Future[int]"
    await process_int(1)  # E: Incompatible types in "await" (actual type "ProcessFuture[int]"
    asyncio.run(async_thread_int(1))  # E: Argument 1 to "run" has incompatible type "Future[int]"


# -- decorator parameters -----------------------------------------------------

@concurrent.process(timeout="10")  # E: No overload variant of "process" matches argument type "str"
def bad_timeout() -> None:
    pass


@concurrent.thread(timeout=1)  # E: No overload variant of "thread" matches argument type "int"
def thread_timeout() -> None:
    pass


@concurrent.thread(pool=process_pool)  # E: No overload variant of "thread" matches argument type "ProcessPool"
def wrong_pool() -> None:
    pass


@concurrent.process(pool=thread_pool)  # E: No overload variant of "process" matches argument type "ThreadPool"
def wrong_process_pool() -> None:
    pass


@asynchronous.thread(daemon="yes")  # E: No overload variant of "thread" matches argument type "str"
def bad_daemon() -> None:
    pass


@asynchronous.process(name=1)  # E: No overload variant of "process" matches argument type "int"
def bad_name() -> None:
    pass


concurrent.thread(add, name=1)  # E: No overload variant of "thread" matches argument types "Callable[[int, int], int]", "int"
concurrent.process(1)  # E: No overload variant of "process" matches argument type "int"


# -- pools ----------------------------------------------------------------------

thread_pool.submit(add, "x")  # E: Argument 2 to "submit" of "ThreadPool" has incompatible type "str"; expected "int"
thread_pool.submit(greet, "x", punct="?")  # E: Unexpected keyword argument "punct"
thread_pool.submit(add)  # E: Missing positional argument "a"
thread_pool.schedule(add, args=(1,), timeout=1)  # E: Unexpected keyword argument "timeout"
process_pool.submit(add, 1.0, "x")  # E: Argument 3 to "submit" of "TimedPool" has incompatible type "str"; expected "int"
process_pool.submit(add, "1.0", 1)  # E: Argument 2 to "submit" of "TimedPool" has incompatible type "str"; expected "float | None"
process_pool.submit(add, 1.0, 1, c=3)  # E: Unexpected keyword argument "c"
scheduled: "ProcessFuture[str]" = process_pool.schedule(add, args=(1,))  # E: expected "Callable[..., str]"
thread_results: List[int] = thread_pool.map(add, [1]).result()  # E: expression has type "Iterator[int]", variable has type "list[int]"
process_results: Iterator[str] = process_pool.map(add, [1]).result()  # E: expression has type "Iterator[int]", variable has type "Iterator[str]"
thread_pool.map(add, [1], chunksize="2")  # E: Argument "chunksize" to "map" of "ThreadPool" has incompatible type "str"
thread_pool.map(add, [1], buffersize="2")  # E: Argument "buffersize" to "map" of "ThreadPool" has incompatible type "str"
process_pool.map(add, [1], ordered=None)  # E: Argument "ordered" to "map" of "TimedPool" has incompatible type "None"
process_pool.map(add, [1], progress=5)  # E: Argument "progress" to "map" of "TimedPool" has incompatible type "int"
thread_pool.map(add, [1], progress=lambda done: None)  # E: Argument "progress" to "map" of "ThreadPool" has incompatible type
total_elements: int = thread_pool.map(add, [1]).total  # E: expression has type "int | None", variable has type "int"

with ThreadPool() as pool:
    pool.submit(add, None, 1)  # E: Argument 2 to "submit" of "ThreadPool" has incompatible type "None"; expected "int"


# -- synchronized and sighandler ------------------------------------------------

@synchronized
def synchronized_int(a: int) -> int:
    return a


synchronized_int("x")  # E: Argument 1 to "synchronized_int" has incompatible type "str"; expected "int"
synchronized("lock")  # E: No overload variant of "synchronized" matches argument type "str"


@sighandler("SIGTERM")  # E: Argument 1 to "sighandler" has incompatible type "str"
def on_term(signum: int, frame: object) -> None:
    pass
