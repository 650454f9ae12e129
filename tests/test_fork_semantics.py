"""Under fork, a decorated call is a fork of the caller made at the call, and
a pool's worker a fork of the parent made when the worker starts: they see
the caller's state of that moment, and run what cannot be pickled. Under
every start method, multiprocessing's view of a worker is the one Pebble's
users rely on."""

import multiprocessing
import os
import socket
import sys
import threading

import pytest

import procfuncs as pf
from pebble import ProcessExpired, ProcessPool, concurrent
from pebble.pool.process import FORK_IN_PROCESS
from proctools import default_start_method, run_script

FORK = multiprocessing.get_context("fork")
pytestmark = pytest.mark.timeout(120)
#: Where pidfds are missing, fork-mode calls and workers come from a launcher
#: forked once (README, "Still different from Pebble").
forks_the_caller = pytest.mark.skipif(not FORK_IN_PROCESS,
                                      reason="fork-mode calls fork the caller only with pidfds")

LATE = 1


def read_late():
    return LATE


def mp_identity():
    process, parent = multiprocessing.current_process(), multiprocessing.parent_process()
    return {
        "name": process.name,
        "type": type(process).__name__,
        "daemon": process.daemon,
        "parent": None if parent is None else (parent.name, parent.pid),
        "method": multiprocessing.get_start_method(allow_none=True),
        "ppid": os.getppid(),
    }


# -- decorated calls fork the caller at the call ------------------------------------


@forks_the_caller
def test_a_call_sees_globals_changed_after_the_first_call():
    global LATE
    call = concurrent.process(context=FORK)(read_late)
    try:
        assert call().result(timeout=30) == 1
        LATE = 2
        assert call().result(timeout=30) == 2
    finally:
        LATE = 1


@forks_the_caller
def test_a_call_sees_cwd_environ_and_sys_path_of_the_moment(tmp_path):
    def look():
        return os.getcwd(), os.environ.get("PEBBLE_FORK_PROBE"), sys.path[-1], sys.argv[-1]

    call = concurrent.process(context=FORK)(look)
    call().result(timeout=30)  # a first call, before the changes
    cwd = os.getcwd()
    os.chdir(tmp_path)
    os.environ["PEBBLE_FORK_PROBE"] = "set"
    sys.path.append("/pebble/probe")
    sys.argv.append("--probe")
    try:
        assert call().result(timeout=30) == (str(tmp_path), "set", "/pebble/probe", "--probe")
    finally:
        os.chdir(cwd)
        del os.environ["PEBBLE_FORK_PROBE"]
        sys.path.remove("/pebble/probe")
        sys.argv.remove("--probe")


@forks_the_caller
def test_closures_lambdas_and_nested_functions_run():
    factor = 3

    def nested(value):
        return value * factor

    assert concurrent.process(context=FORK)(nested)(7).result(timeout=30) == 21
    assert concurrent.process(context=FORK)(lambda: factor + 1)().result(timeout=30) == 4

    @concurrent.process(context=FORK, timeout=10)
    def decorated_here(value):
        return value - factor

    assert decorated_here(10).result(timeout=30) == 7


class Holder:
    base = 40

    @classmethod
    @concurrent.process(context=FORK)
    def add(cls, value):
        return cls.base + value


@forks_the_caller
def test_classmethod_over_a_process_decorator():
    assert Holder.add(2).result(timeout=30) == 42


@forks_the_caller
def test_arguments_that_only_a_fork_can_pass():
    lock = threading.Lock()
    generator = (i * i for i in range(5))
    left, right = socket.socketpair()

    def use(lock, generator, sock):
        with lock:
            pass
        sock.sendall(b"hi")
        return list(generator)

    try:
        assert concurrent.process(context=FORK)(use)(lock, generator, right).result(
            timeout=30) == [0, 1, 4, 9, 16]
        assert left.recv(2) == b"hi"
    finally:
        left.close()
        right.close()


def put_then_return(queue, event, value):
    queue.put(value)
    event.set()
    with value_lock:
        pass
    return "done"


value_lock = None


@forks_the_caller
def test_multiprocessing_primitives_pass_and_a_queue_is_flushed():
    global value_lock
    queue, event, value_lock = FORK.Queue(), FORK.Event(), FORK.Lock()
    shared = FORK.Value("i", 0)

    def bump(shared):
        with shared.get_lock():
            shared.value += 5
        return shared.value

    try:
        assert concurrent.process(context=FORK)(put_then_return)(queue, event, "x").result(
            timeout=30) == "done"
        assert event.is_set()
        assert queue.get(timeout=10) == "x"
        assert concurrent.process(context=FORK)(bump)(shared).result(timeout=30) == 5
        assert shared.value == 5
    finally:
        value_lock = None
        queue.close()


@forks_the_caller
def test_output_redirected_after_the_first_call_is_inherited(tmp_path):
    script = f"""
import os, sys
from pebble import concurrent
import multiprocessing
ctx = multiprocessing.get_context("fork")

def speak(word):
    print(word, flush=True)
    return word

call = concurrent.process(context=ctx)(speak)
call("before").result(timeout=30)
fd = os.open({str(tmp_path / "out.txt")!r}, os.O_WRONLY | os.O_CREAT)
os.dup2(fd, 1)
call("after").result(timeout=30)
"""
    completed = run_script(script, 60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "before\n"
    assert (tmp_path / "out.txt").read_text() == "after\n"


@forks_the_caller
def test_a_call_from_another_thread_and_a_call_inside_a_call():
    def inner(value):
        return value + 1

    def outer(value):
        return concurrent.process(context=FORK)(inner)(value).result(timeout=30) * 10

    results = []
    thread = threading.Thread(
        target=lambda: results.append(concurrent.process(context=FORK)(outer)(1).result(
            timeout=30)))
    thread.start()
    thread.join(60)
    assert results == [20]


def test_faults_of_a_forked_call_are_reported():
    assert isinstance(concurrent.process(context=FORK)(pf.exit_process)(3).exception(
        timeout=30), ProcessExpired)
    error = concurrent.process(context=FORK, timeout=0.2)(pf.sleep_return)(30, 1).exception(
        timeout=30)
    assert isinstance(error, TimeoutError) or type(error).__name__ == "TimeoutError"
    future = concurrent.process(context=FORK)(pf.sleep_return)(30, 1)
    assert future.cancel()
    assert future.cancelled()
    assert concurrent.process(context=FORK)(pf.add)(1, b=2).result(timeout=30) == 3


@forks_the_caller
def test_identity_of_a_forked_call():
    identity = concurrent.process(context=FORK)(mp_identity)().result(timeout=30)
    assert identity["type"] == "ForkProcess" and identity["name"].startswith("ForkProcess-")
    assert identity["daemon"] is True
    assert identity["parent"] == ("MainProcess", os.getpid())
    assert identity["ppid"] == os.getpid()
    assert identity["method"] == "fork"
    named = concurrent.process(context=FORK, name="worker-7", daemon=False)(mp_identity)()
    identity = named.result(timeout=30)
    assert identity["name"] == "worker-7" and identity["daemon"] is False
    with default_start_method("fork"):
        identity = concurrent.process(mp_identity)().result(timeout=30)
    assert identity["type"] == "Process" and identity["name"].startswith("Process-")


@forks_the_caller
def test_main_process_check_in_a_call():
    def am_i_main():
        return multiprocessing.current_process().name == "MainProcess"

    assert concurrent.process(context=FORK)(am_i_main)().result(timeout=30) is False


# -- pool workers fork the parent when they start -----------------------------------


@forks_the_caller
def test_a_replacement_worker_has_the_parents_current_state():
    global LATE
    try:
        with ProcessPool(1, context=FORK) as pool:
            assert pool.schedule(read_late).result(timeout=30) == 1
            LATE = 2
            # The worker keeps the state it was forked with until replaced.
            assert pool.schedule(read_late).result(timeout=30) == 1
            assert isinstance(pool.schedule(pf.exit_process, args=(1,)).exception(timeout=30),
                              ProcessExpired)
            assert pool.schedule(read_late).result(timeout=30) == 2
    finally:
        LATE = 1


@pytest.mark.parametrize("method", [pytest.param("fork", marks=forks_the_caller),
                                    "spawn", "forkserver"])
def test_identity_of_a_pool_worker(method):
    with ProcessPool(1, context=multiprocessing.get_context(method)) as pool:
        identity = pool.schedule(mp_identity).result(timeout=60)
    assert identity["name"] == "pebble_pool_worker"
    assert identity["daemon"] is False
    assert identity["method"] == method
    assert identity["parent"] == ("MainProcess", os.getpid())
    assert identity["type"] == {"fork": "ForkProcess", "spawn": "SpawnProcess",
                                "forkserver": "ForkServerProcess"}[method]
    if method == "fork":
        assert identity["ppid"] == os.getpid()


@forks_the_caller
def test_a_pool_and_a_call_inside_a_worker():
    def nested_pool():
        with ProcessPool(1, context=FORK) as inner:
            pooled = inner.schedule(pf.add, args=(2, 3)).result(timeout=30)
        return pooled + concurrent.process(context=FORK)(pf.add)(1, b=1).result(timeout=30)

    assert concurrent.process(context=FORK)(nested_pool)().result(timeout=60) == 7


# -- standard input, as multiprocessing leaves it -----------------------------------


def input_and_parent():
    parent = multiprocessing.parent_process()
    return sys.stdin.read(), sys.stdin.closed, parent is not None and parent.is_alive()


@pytest.mark.parametrize("method", [pytest.param("fork", marks=forks_the_caller),
                                    "spawn", "forkserver"])
def test_every_worker_reads_no_input_and_sees_its_parent(method):
    # max_tasks=1: each result comes from a worker of its own.
    context = multiprocessing.get_context(method)
    with ProcessPool(2, max_tasks=1, context=context) as pool:
        seen = [pool.schedule(input_and_parent).result(timeout=60) for _ in range(4)]
        identities = [pool.schedule(mp_identity).result(timeout=60) for _ in range(2)]
    assert seen == [("", False, True)] * 4
    assert {i["name"] for i in identities} == {"pebble_pool_worker"}
    assert {i["parent"] for i in identities} == {("MainProcess", os.getpid())}


@forks_the_caller
def test_a_call_reads_no_input_though_the_parent_reused_a_descriptor(tmp_path):
    from pebble import _worker
    call = concurrent.process(context=FORK)(input_and_parent)
    assert call().result(timeout=30) == ("", False, True)
    prepared = _worker._child_stdin
    assert prepared is not None
    # The parent closes the descriptor its children's input was to read,
    # and the number now names a file of its own.
    path = tmp_path / "private"
    path.write_text("not the child's input")
    private = os.open(path, os.O_RDONLY)
    try:
        os.dup2(private, prepared[1])
        assert call().result(timeout=30) == ("", False, True)
    finally:
        os.close(private)
        os.close(prepared[1])
        _worker._child_stdin = None
    assert call().result(timeout=30) == ("", False, True)


def input_of_a_nested_call(close_first):
    if close_first:
        sys.stdin.close()
    return concurrent.process(context=FORK)(input_and_parent)().result(timeout=30)


@forks_the_caller
@pytest.mark.parametrize("close_first", [False, True])
def test_a_call_made_inside_a_call_reads_no_input(close_first):
    """The child's own input, taken from its parent, is not closed under its
    children, nor lent to them once the child closed it."""
    call = concurrent.process(context=FORK)(input_of_a_nested_call)
    assert call(close_first).result(timeout=60) == ("", False, True)
    with ProcessPool(1, context=FORK) as pool:
        assert pool.schedule(input_of_a_nested_call, args=(close_first,)).result(timeout=60) \
            == ("", False, True)
