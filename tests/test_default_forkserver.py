"""Python 3.14 makes forkserver the default start method: the decorators and
pools used with no ``context=`` work under it, checked here on any Python by
making forkserver the default."""

import asyncio
from concurrent.futures import TimeoutError

import pytest

import decofuncs
import procfuncs as pf
from pebble import ProcessExpired, ProcessPool, concurrent
from proctools import default_start_method, run_script, with_start_method


@pytest.fixture(autouse=True)
def forkserver_by_default():
    with default_start_method("forkserver"):
        yield


def started_by_forkserver(command_line):
    """True for a process forked from a launcher interpreter (our forkserver)."""
    return "spawned_launcher_main(" in command_line


def test_concurrent_process():
    assert decofuncs.add(1, b=2).result(timeout=30) == 3
    assert started_by_forkserver(concurrent.process(decofuncs.cmdline)().result(timeout=30))


def test_concurrent_process_failures():
    assert isinstance(decofuncs.fail("boom").exception(timeout=30), ValueError)
    assert isinstance(decofuncs.exit_with(3).exception(timeout=30), ProcessExpired)
    assert isinstance(decofuncs.sleep_with_timeout(10).exception(timeout=30), TimeoutError)


def test_asynchronous_process():
    async def main():
        return await decofuncs.async_add(2, b=3), await decofuncs.async_getpid()

    total, pid = asyncio.run(main())
    assert total == 5
    assert pid > 0


def test_pool_schedule():
    with ProcessPool(max_workers=2) as pool:
        assert pool.schedule(pf.add, args=(1, 2)).result(timeout=30) == 3
        assert started_by_forkserver(pool.schedule(decofuncs.cmdline).result(timeout=30))
        error = pool.schedule(pf.raise_value_error, args=("bad",)).exception(timeout=30)
        assert isinstance(error, ValueError)
        assert pool.schedule(pf.sleep_return, args=(10,), timeout=0.2).exception(
            timeout=30).args == ("Task timeout", 0.2)


def test_pool_map():
    with ProcessPool(max_workers=2) as pool:
        future = pool.map(pf.square, range(20), chunksize=3)
        assert list(future.result()) == [x * x for x in range(20)]


SCRIPT = """\
import asyncio

from pebble import ProcessPool, asynchronous, concurrent


@concurrent.process
def double(x):
    return 2 * x


@asynchronous.process
def triple(x):
    return 3 * x


def square(x):
    return x * x


async def main():
    return await triple(3)


if __name__ == "__main__":
    print(double(21).result(30))
    print(asyncio.run(main()))
    with ProcessPool(2) as pool:
        print(pool.schedule(square, (7,)).result(30))
        print(list(pool.map(square, range(5)).result()))
"""


def test_script_with_forkserver_as_default(tmp_path):
    """A script as a user writes it, with functions of its own __main__."""
    completed = run_script(with_start_method(SCRIPT, "forkserver"), directory=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "42\n9\n49\n[0, 1, 4, 9, 16]\n"
