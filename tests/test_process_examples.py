"""The documented ProcessPool examples, run as scripts essentially as written.

Sizes and timeouts are scaled down so that they run quickly; otherwise the
code is the documentation's. The examples use the default start method,
which the harness names: fork (Python 3.14 makes forkserver the default).
"""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from proctools import SANITIZED, TESTS_DIR, with_start_method

# Sanitizers reserve terabytes of address space for their shadow memory:
# a process limited to a few KiB of address space cannot run under them.
UNDER_SANITIZER = pytest.mark.skipif(SANITIZED,
                                     reason="RLIMIT_AS cannot hold a sanitizer's shadow memory")


def run_example(tmp_path, code, timeout=60):
    script = tmp_path / "example.py"
    script.write_text(with_start_method(code, "fork"))
    start = time.monotonic()
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=timeout, cwd=str(tmp_path),
                            env=dict(os.environ, PYTHONPATH=TESTS_DIR))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout, time.monotonic() - start


def test_pools_example(tmp_path):
    stdout, _ = run_example(tmp_path, """
        from concurrent.futures import TimeoutError
        from pebble import ProcessPool, ProcessExpired

        def function(n):
            return n

        with ProcessPool() as pool:
            future = pool.map(function, range(100), timeout=10)

            iterator = future.result()

            while True:
                try:
                    result = next(iterator)
                    print(result)
                except StopIteration:
                    break
                except TimeoutError as error:
                    print("function took longer than %d seconds" % error.args[1])
                except ProcessExpired as error:
                    print("%s. Exit code: %d" % (error, error.exitcode))
                except Exception as error:
                    print("function raised %s" % error)
                    print(error.traceback)  # Python's traceback of remote process
    """)
    assert stdout.split() == [str(n) for n in range(100)]


def test_pools_example_reports_every_outcome(tmp_path):
    """The same loop, fed a function that fails in each documented way."""
    stdout, _ = run_example(tmp_path, """
        import os, time
        from concurrent.futures import TimeoutError
        from pebble import ProcessPool, ProcessExpired

        def function(n):
            if n == 1:
                time.sleep(10)
            if n == 2:
                os._exit(3)
            if n == 3:
                raise ValueError("three")
            return n

        with ProcessPool() as pool:
            future = pool.map(function, range(5), timeout=0.5)

            iterator = future.result()

            while True:
                try:
                    result = next(iterator)
                    print(result)
                except StopIteration:
                    break
                except TimeoutError as error:
                    print("function took longer than %d seconds" % error.args[1])
                except ProcessExpired as error:
                    print("%s. Exit code: %d" % (error, error.exitcode))
                except Exception as error:
                    print("function raised %s" % error)
                    print(error.traceback)  # Python's traceback of remote process
    """)
    lines = stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1] == "function took longer than 0 seconds"
    assert lines[2].endswith(". Exit code: 3")
    assert lines[3] == "function raised three"
    assert lines[4] == "Traceback (most recent call last):"
    assert "ValueError: three" in stdout
    assert lines[-1] == "4"


def test_fibonacci_example(tmp_path):
    stdout, elapsed = run_example(tmp_path, """
        from pebble import ProcessPool
        from concurrent.futures import TimeoutError

        def fibonacci(n):
            if n == 0: return 0
            elif n == 1: return 1
            else: return fibonacci(n - 1) + fibonacci(n - 2)

        with ProcessPool() as pool:
            future = pool.map(fibonacci, range(40), timeout=0.2)

            try:
                for n in future.result():
                    print(n)
            except TimeoutError:
                print("TimeoutError: aborting remaining computations")
                future.cancel()
    """)
    lines = stdout.splitlines()
    assert lines[-1] == "TimeoutError: aborting remaining computations"
    numbers = [int(n) for n in lines[:-1]]
    assert len(numbers) >= 15
    a, b = 0, 1
    for n in numbers:
        assert n == a
        a, b = b, a + b
    assert elapsed < 10


def test_chunksize_example(tmp_path):
    stdout, _ = run_example(tmp_path, """
        from pebble import ProcessPool
        from multiprocessing import cpu_count
        from concurrent.futures import TimeoutError

        def function(n):
            return n

        elements = list(range(100000))

        cpus = cpu_count()
        size = len(elements)
        chunksize = size / cpus

        # the timeout will be assigned to each chunk
        # therefore, we need to consider its size
        timeout = 10 * chunksize

        with ProcessPool(max_workers=cpus) as pool:
            future = pool.map(function, elements, chunksize=chunksize, timeout=timeout)

            assert list(future.result()) == elements
        print(type(chunksize).__name__, "ok")
    """)
    assert stdout == "float ok\n"


RESOURCE_EXAMPLE = """
    import resource
    from pebble import ProcessPool

    MAX_MEM = 1024

    def initializer(limit):
        \"\"\"Set maximum amount of memory each worker process can allocate.\"\"\"
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

    def function():
        \"\"\"This function tries to allocate 1Mb worth of string.\"\"\"
        string = ''

        for _ in range(1024):
            string += 1024 * 'A'

    %s
"""


@UNDER_SANITIZER
def test_resource_limit_example(tmp_path):
    stdout, elapsed = run_example(tmp_path, RESOURCE_EXAMPLE % textwrap.dedent("""
    pool = ProcessPool(initializer=initializer, initargs=(MAX_MEM,))

    future = pool.schedule(function)

    assert isinstance(future.exception(), MemoryError)
    print("MemoryError")
    """).strip().replace("\n", "\n    "))
    assert stdout == "MemoryError\n"
    assert elapsed < 10


@UNDER_SANITIZER
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_resource_limit_example_fresh_interpreter(tmp_path, method):
    stdout, elapsed = run_example(tmp_path, RESOURCE_EXAMPLE % textwrap.dedent("""
    if __name__ == "__main__":
        import multiprocessing
        pool = ProcessPool(initializer=initializer, initargs=(MAX_MEM,),
                           context=multiprocessing.get_context("%s"))

        future = pool.schedule(function)

        assert isinstance(future.exception(), MemoryError)
        print("MemoryError")
    """ % method).strip().replace("\n", "\n    "))
    assert stdout == "MemoryError\n"
    assert elapsed < 10


@UNDER_SANITIZER
def test_resource_limit_holds_for_replacement_workers(tmp_path):
    """The limit set by the initializer binds every worker of a forkserver pool.

    (Under fork a replacement worker is forked by the pool's launcher thread
    and keeps that thread's malloc arena, whose reserved space the limit
    cannot take back: as on Pebble, only the first workers, forked from
    the main thread, are bound.)"""
    stdout, _ = run_example(tmp_path, RESOURCE_EXAMPLE % textwrap.dedent("""
    def allocate():
        return len(bytearray(20 * 1024 * 1024))

    if __name__ == "__main__":
        import multiprocessing
        context = multiprocessing.get_context("forkserver")
        with ProcessPool(max_workers=1, max_tasks=1, initializer=initializer,
                         initargs=(MAX_MEM,), context=context) as pool:
            # The first worker and its replacements alike.
            for _ in range(3):
                assert isinstance(pool.schedule(allocate).exception(), MemoryError)
        print("MemoryError")
    """).strip().replace("\n", "\n    "))
    assert stdout == "MemoryError\n"


# Every example of the documentation (the later version where they
# differ), pasted into one script as a user would: names are redefined as
# it goes, and each decorated call and pool sees the script's state of its
# moment. The resource-limit example comes first: its worker is a fork of
# the script, and a limit on the address space binds it only while the
# script's heap holds no megabyte of free memory, which the larger examples
# leave behind. The one line left out,
# ``signal.signal(signal.TERM, signal_handler)``, names no signal.
ALL_EXAMPLES = '''
import resource
from pebble import ProcessPool

MAX_MEM = 1024

def initializer(limit):
    """Set maximum amount of memory each worker process can allocate."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

def function():
    """This function tries to allocate 1Mb worth of string."""
    string = ''

    for _ in range(1024):
        string += 1024 * 'A'

pool = ProcessPool(initializer=initializer, initargs=(MAX_MEM,))
future = pool.schedule(function)

assert isinstance(future.exception(), MemoryError)

from pebble.concurrent import process
from pebble import ProcessPool
import time

@process
def cpu_intensive_task(n):
    total = 0
    for i in range(n):
        total += i ** 2
    return total

future = cpu_intensive_task(1000000)
result = future.result()
print(f"Result: {result}")

with ProcessPool() as pool:
    futures = []
    for i in range(5):
        future = pool.schedule(cpu_intensive_task, args=[100000 * (i + 1)])
        futures.append(future)

    results = [f.result() for f in futures]
    print(f"Results: {results}")

from pebble import concurrent

@concurrent.process
def function(arg, kwarg=0):
    return arg + kwarg

future = function(1, kwarg=1)

print(future.result())

from pebble import concurrent
from concurrent.futures import TimeoutError
from third_party_lib import unstable_function

@concurrent.process(timeout=10)
def function(arg, kwarg=0):
    unstable_function(arg, kwarg=kwarg)

future = function(1, kwarg=1)

try:
    results = future.result()
except TimeoutError as error:
    print("unstable_function took longer than %d seconds" % error.args[1])
except ProcessExpired as error:
    print("%s. Exit code: %d" % (error, error.exitcode))
except Exception as error:
    print("unstable_function raised %s" % error)
    print(error.traceback)  # Python's traceback of remote process

from concurrent.futures import TimeoutError
from pebble import ProcessPool, ProcessExpired

def function(n):
    return n

with ProcessPool() as pool:
    future = pool.map(function, range(100), timeout=10)

    iterator = future.result()

    while True:
        try:
            result = next(iterator)
        except StopIteration:
            break
        except TimeoutError as error:
            print("function took longer than %d seconds" % error.args[1])
        except ProcessExpired as error:
            print("%s. Exit code: %d" % (error, error.exitcode))
        except Exception as error:
            print("function raised %s" % error)
            print(error.traceback)  # Python's traceback of remote process

from pebble import ProcessPool
from concurrent.futures import TimeoutError

def fibonacci(n):
    if n == 0: return 0
    elif n == 1: return 1
    else: return fibonacci(n - 1) + fibonacci(n - 2)

with ProcessPool() as pool:
    future = pool.map(fibonacci, range(50), timeout=10)

    try:
        for n in future.result():
            print(n)
    except TimeoutError:
        print("TimeoutError: aborting remaining computations")
        future.cancel()

from pebble import ProcessPool
from multiprocessing import cpu_count
from concurrent.futures import TimeoutError

def function(n):
    return n

elements = list(range(1000000))

cpus = cpu_count()
size = len(elements)
chunksize = size / cpus

# the timeout will be proportional to the chunksize
timeout = 10 * chunksize

with ProcessPool(max_workers=cpus) as pool:
    future = pool.map(function, elements, chunksize=chunksize, timeout=timeout)

    assert list(future.result()) == elements

import signal
from pebble import sighandler

@sighandler((signal.SIGINT, signal.SIGTERM))
def signal_handler(signum, frame):
    print("Termination request received!")

import signal

def signal_handler(signum, frame):
    print("Termination request received!")

signal.signal(signal.SIGINT, signal_handler)
print("all examples ran")
'''


@UNDER_SANITIZER
def test_every_documented_example_in_one_script(tmp_path):
    stdout, _ = run_example(tmp_path, ALL_EXAMPLES, timeout=120)
    lines = stdout.splitlines()
    assert lines[0] == "Result: %d" % sum(i * i for i in range(1000000))
    assert lines[1] == "Results: %s" % [sum(i * i for i in range(100000 * (k + 1)))
                                        for k in range(5)]
    assert lines[2] == "2"
    assert "TimeoutError: aborting remaining computations" in lines
    assert lines[3:3 + 20] == [str(n) for n in [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144,
                                                 233, 377, 610, 987, 1597, 2584, 4181]]
    assert lines[-1] == "all examples ran"
