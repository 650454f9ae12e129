"""Module-level functions for the process decorator tests.

They live in an importable module so that spawn and forkserver workers can
find them by name; the decorated ones pickle by name as their wrapper. Plain
tasks come from ``procfuncs``.
"""

import multiprocessing
import os
import signal
import time

import procfuncs
from pebble import asynchronous, concurrent

# -- undecorated ---------------------------------------------------------------


def plain_sleep(seconds):
    time.sleep(seconds)
    return seconds


def write_pid(path):
    """Publish this process' pid in *path* atomically."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as out:
        out.write(str(os.getpid()))
    os.rename(tmp, path)


def plain_pid_then_sleep(path, seconds):
    write_pid(path)
    time.sleep(seconds)
    return "slept"


def cmdline():
    """This process' command line: tells how its start method made it."""
    with open("/proc/self/cmdline", "rb") as source:
        return source.read().decode(errors="replace")


def process_info():
    process = multiprocessing.current_process()
    return process.name, process.daemon, os.getpid()


class Multiplier:
    """A picklable callable object."""

    def __init__(self, factor):
        self.factor = factor

    def __call__(self, value):
        return (value * self.factor, os.getpid())


class ValueErrorWithNote(ValueError):
    pass


# -- @concurrent.process -------------------------------------------------------


@concurrent.process
def add(a, b=0):
    return a + b


@concurrent.process(timeout=10)
def add_with_timeout(a, b=0):
    return a + b


@concurrent.process()
def add_empty_parens(a, b=0):
    return a + b


@concurrent.process
def getpid():
    return os.getpid()


@concurrent.process
def pid_and_parent():
    return os.getpid(), os.getppid()


@concurrent.process
def fail(message):
    raise ValueErrorWithNote(message)


@concurrent.process
def sleep_then_return(seconds):
    time.sleep(seconds)
    return seconds


@concurrent.process(timeout=0.3)
def sleep_with_timeout(seconds):
    time.sleep(seconds)
    return seconds


@concurrent.process(timeout=0.3)
def timeout_pid_then_sleep(path, seconds):
    return plain_pid_then_sleep(path, seconds)


@concurrent.process(timeout=0.3)
def ignore_sigterm_pid_then_sleep(path, seconds):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return plain_pid_then_sleep(path, seconds)


@concurrent.process
def pid_then_sleep(path, seconds):
    return plain_pid_then_sleep(path, seconds)


@concurrent.process
def exit_with(code):
    os._exit(code)


@concurrent.process
def kill_self(signum):
    return procfuncs.kill_self(signum)


@concurrent.process
def identity(value):
    return value


@concurrent.process
def return_lock():
    return procfuncs.return_lock()


@concurrent.process
def default_info():
    return process_info()


@concurrent.process(name="pebble-deco-name")
def named_info():
    return process_info()


@concurrent.process(daemon=False)
def nondaemon_info():
    return process_info()


@concurrent.process(daemon=True)
def daemon_info():
    return process_info()


@concurrent.process(daemon=False)
def nondaemon_pid_then_sleep(path, seconds):
    return plain_pid_then_sleep(path, seconds)


# -- @asynchronous.process -----------------------------------------------------


@asynchronous.process
def async_add(a, b=0):
    return a + b


@asynchronous.process(timeout=10)
def async_add_with_timeout(a, b=0):
    return a + b


@asynchronous.process
def async_getpid():
    return os.getpid()


@asynchronous.process
def async_fail(message):
    raise ValueErrorWithNote(message)


@asynchronous.process
def async_pid_then_sleep(path, seconds):
    return plain_pid_then_sleep(path, seconds)


@asynchronous.process(timeout=0.3)
def async_timeout_pid_then_sleep(path, seconds):
    return plain_pid_then_sleep(path, seconds)


@asynchronous.process
def async_exit_with(code):
    os._exit(code)


@asynchronous.process(name="pebble-async-name")
def async_named_info():
    return process_info()


@concurrent.process(daemon=False)
def nondaemon_finish(path):
    """Sleep half a second, then leave *path* behind and return."""
    time.sleep(0.5)
    with open(path, "w") as out:
        out.write("finished")
    return "result-ok"


class Counter:
    """A picklable object with a decorated method."""

    def __init__(self, start):
        self.start = start

    @concurrent.process
    def plus(self, value):
        return self.start + value, os.getpid()

    @asynchronous.process
    def async_plus(self, value):
        return self.start + value


def refuse_to_load(message):
    raise RuntimeError(message)


class LoadsNowhere:
    """Pickles fine, but raises wherever it is unpickled."""

    def __reduce__(self):
        return refuse_to_load, ("cannot load me",)


def load_except_in(pid):
    if os.getpid() == pid:
        raise RuntimeError("cannot load me in %d" % pid)
    return "loaded"


class LoadsNotIn:
    """Pickles fine, but raises when unpickled in process *pid*."""

    def __init__(self, pid):
        self.pid = pid

    def __reduce__(self):
        return load_except_in, (self.pid,)


@concurrent.process
def make_loads_not_in(pid):
    return LoadsNotIn(pid)
