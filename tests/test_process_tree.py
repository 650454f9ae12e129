"""A stopped task takes the processes it started with it.

Timeouts, cancels and the end of the pool kill a worker's process group and
everything below it; the pool's launcher adopts the orphans among them and
kills those too. ``kill_tree=False`` leaves them alone.
"""

import os
import signal
import time
from concurrent.futures import TimeoutError

import pytest

import procfuncs as pf
from pebble import ProcessPool, concurrent
from proctools import CHEAP_START_METHODS, pid_alive, wait_until


def read_pid(path):
    def written():
        try:
            with open(path) as record:
                return int(record.read())
        except (FileNotFoundError, ValueError):
            return None
    pid = wait_until(written, 30)
    assert pid, "%s never written" % path
    return pid


def gone_soon(pid, seconds=5):
    return wait_until(lambda: not pid_alive(pid), seconds)


@pytest.fixture(params=CHEAP_START_METHODS)
def method(request):
    import multiprocessing
    return multiprocessing.get_context(request.param)


@pytest.mark.parametrize("how", ["plain", "session"])
def test_timeout_kills_what_the_task_started(method, tmp_path, how):
    record = str(tmp_path / "child")
    with ProcessPool(1, context=method) as pool:
        future = pool.schedule(pf.start_child, args=(record, how), timeout=1.5)
        child = read_pid(record)
        assert pid_alive(child)
        with pytest.raises(TimeoutError):
            future.result(30)
        assert gone_soon(child), "the task's child outlived its timeout"


def test_cancel_kills_what_the_task_started(method, tmp_path):
    record = str(tmp_path / "child")
    with ProcessPool(1, context=method) as pool:
        future = pool.schedule(pf.start_child, args=(record, "session"))
        child = read_pid(record)
        assert future.cancel()
        assert gone_soon(child), "the task's child outlived its cancel"
        assert pool.schedule(pf.add, args=(1, 2)).result(30) == 3


def test_stop_kills_what_the_tasks_started(method, tmp_path):
    records = [str(tmp_path / ("child%d" % i)) for i in range(2)]
    pool = ProcessPool(2, context=method)
    for record, how in zip(records, ["plain", "session"], strict=True):
        pool.schedule(pf.start_child, args=(record, how))
    children = [read_pid(record) for record in records]
    pool.stop()
    pool.join(30)
    for child in children:
        assert gone_soon(child), "a task's child outlived stop()"


def test_end_of_the_pool_kills_adopted_orphans(method, tmp_path):
    """An orphan in a session of its own escapes its worker's group; the
    launcher adopted it, and kills it when the pool ends."""
    record = str(tmp_path / "orphan")
    pool = ProcessPool(1, context=method)
    assert pool.schedule(pf.start_child, args=(record, "orphan", 0.0)).result(30) == "done"
    orphan = read_pid(record)
    assert pid_alive(orphan)
    pool.close()
    pool.join(30)
    assert gone_soon(orphan), "an orphan of a task outlived its pool"


def test_a_task_that_ends_keeps_its_children_while_the_pool_lives(tmp_path):
    record = str(tmp_path / "orphan")
    with ProcessPool(1, context=__import__("multiprocessing").get_context("fork")) as pool:
        pool.schedule(pf.start_child, args=(record, "orphan", 0.0)).result(30)
        orphan = read_pid(record)
        time.sleep(0.3)
        assert pool.schedule(pf.add, args=(1, 1)).result(30) == 2
        assert pid_alive(orphan)


def test_decorated_call_timeout_kills_what_it_started(tmp_path):
    record = str(tmp_path / "child")
    call = concurrent.process(timeout=1.5)(pf.start_child)
    future = call(record, "session")
    child = read_pid(record)
    with pytest.raises(TimeoutError):
        future.result(30)
    assert gone_soon(child)


def test_kill_tree_false_leaves_them_alone(method, tmp_path):
    record = str(tmp_path / "child")
    with ProcessPool(1, context=method, kill_tree=False) as pool:
        future = pool.schedule(pf.start_child, args=(record, "plain"), timeout=1.5)
        child = read_pid(record)
        with pytest.raises(TimeoutError):
            future.result(30)
        time.sleep(0.5)
        try:
            assert pid_alive(child)
        finally:
            os.kill(child, signal.SIGKILL)


def test_kill_tree_must_be_a_bool():
    with pytest.raises(TypeError):
        ProcessPool(1, kill_tree="yes")
