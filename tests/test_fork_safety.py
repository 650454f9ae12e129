"""Forking the parent while pools work: no lock of the extension reaches the
child held, and the child never touches the parent's pools. Each scenario
runs in its own interpreter, and a child that hangs is counted, then killed."""

import subprocess
import sys
import textwrap

import pytest

PRELUDE = textwrap.dedent('''
    import gc, multiprocessing, os, signal, sys, threading, time
    from pebble import ProcessPool, ThreadPool

    def tiny(x):
        return x

    def busy(pool, stop):
        """Keep the pool's engine threads taking their locks."""
        while not stop.is_set():
            futures = [pool.schedule(tiny, (i,)) for i in range(64)]
            for future in futures:
                future.result(30)

    def wait_child(pid, seconds=5.0):
        """The child's exit status, or None once it hung past *seconds* (then killed)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            time.sleep(0.002)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None

    def make_pool():
        if KIND == "process":
            return ProcessPool(2, context=multiprocessing.get_context("fork"))
        return ThreadPool(4)

    def start(pool):
        stop = threading.Event()
        feeders = [threading.Thread(target=busy, args=(pool, stop)) for _ in range(2)]
        for feeder in feeders:
            feeder.start()
        return stop, feeders

    def finish(pool, stop, feeders):
        stop.set()
        for feeder in feeders:
            feeder.join()
        pool.close()
        pool.join(30)
''')

SCENARIOS = {
    # The child collects garbage (traversing the inherited engines), then
    # leaves through os._exit or through a normal exit that runs atexit and
    # finalizes the inherited pools.
    "os_fork": '''
        pool = make_pool()
        stop, feeders = start(pool)
        hung = failed = 0
        for i in range(ROUNDS):
            pid = os.fork()
            if pid == 0:
                gc.collect()
                if i % 2:
                    os._exit(7)
                sys.exit(7)
            status = wait_child(pid)
            if status is None:
                hung += 1
            elif os.waitstatus_to_exitcode(status) != 7:
                failed += 1
        finish(pool, stop, feeders)
        print("hung", hung, "failed", failed)
    ''',
    "mp_process": '''
        def child():
            gc.collect()

        pool = make_pool()
        stop, feeders = start(pool)
        hung = failed = 0
        for _ in range(ROUNDS):
            process = multiprocessing.get_context("fork").Process(target=child)
            process.start()
            process.join(5)
            if process.exitcode is None:
                hung += 1
                process.kill()
                process.join()
            elif process.exitcode != 0:
                failed += 1
        finish(pool, stop, feeders)
        print("hung", hung, "failed", failed)
    ''',
    "second_pool": '''
        def collect(x):
            gc.collect()
            return x

        first = make_pool()
        stop, feeders = start(first)
        hung = failed = 0
        for i in range(ROUNDS):
            second = ProcessPool(1, context=multiprocessing.get_context("fork"))
            try:
                if second.schedule(collect, (i,)).result(10) != i:
                    failed += 1
            except Exception as error:
                print("error", type(error).__name__, error)
                hung += 1
            second.stop()
            second.join(10)
        finish(first, stop, feeders)
        print("hung", hung, "failed", failed)
    ''',
    # A decorated call is itself a fork of the caller, made while the pool
    # works; the call collects garbage in the child.
    "decorated_call": '''
        from pebble import concurrent

        def collect(x):
            gc.collect()
            return x

        call = concurrent.process(context=multiprocessing.get_context("fork"))(collect)
        pool = make_pool()
        stop, feeders = start(pool)
        hung = failed = 0
        for i in range(ROUNDS):
            try:
                if call(i).result(10) != i:
                    failed += 1
            except Exception as error:
                print("error", type(error).__name__, error)
                hung += 1
        finish(pool, stop, feeders)
        print("hung", hung, "failed", failed)
    ''',
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["process", "thread"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_fork_while_pool_works(scenario, kind):
    rounds = 50
    source = "%s\nKIND = %r\nROUNDS = %d\n%s" % (
        PRELUDE, kind, rounds, textwrap.dedent(SCENARIOS[scenario]))
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "hung 0 failed 0", done.stdout + done.stderr
