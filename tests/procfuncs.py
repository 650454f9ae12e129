"""Functions and types run inside ProcessPool workers by the tests.

They live in an importable module so that spawn and forkserver workers,
which start from a fresh interpreter, can find them by name.
"""

import ctypes
import dataclasses
import faulthandler
import os
import pickle
import signal
import threading
import time

# Set by the initializers below, read back by tasks.
INIT_VALUE = None


# -- plain tasks ---------------------------------------------------------

def identity(value):
    return value


def add(a, b=0):
    return a + b


def square(x):
    return x * x


def getpid():
    return os.getpid()


def sleep_return(seconds, value=None):
    time.sleep(seconds)
    return value


def sleep_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


def slow_exit_pid(seconds):
    """Return this worker's pid, and make its exit take *seconds* (a
    multiprocessing finalizer, run as the process ends)."""
    import multiprocessing.util
    multiprocessing.util.Finalize(None, time.sleep, args=(seconds,), exitpriority=0)
    return os.getpid()


def fibonacci(n):
    if n == 0:
        return 0
    elif n == 1:
        return 1
    else:
        return fibonacci(n - 1) + fibonacci(n - 2)


def big_result(size):
    return b"x" * size


def big_argument(data, tag, seconds=0):
    if seconds:
        time.sleep(seconds)
    return tag, len(data), os.getpid()


def ignore_sigterm_sleep(seconds):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(seconds)
    return "finished"


# -- large data (arguments and results travelling out of band) ------------

def poke(buffer, value):
    """Write into an argument received out of band; return its size and head."""
    buffer[0] = value
    return len(buffer), bytes(buffer[:4])


def make_bytearray(size, fill):
    return bytearray([fill]) * size


def make_bytes(size):
    return bytes(size)


def checksum(*buffers):
    return [sum(memoryview(b).cast("B")[::4096]) for b in buffers]


# -- failing tasks -------------------------------------------------------

class CustomError(Exception):
    pass


def raise_custom(message):
    raise CustomError(message)


def raise_value_error(message):
    raise ValueError(message)


def raise_system_exit(code):
    raise SystemExit(code)


class CustomBaseException(BaseException):
    pass


def raise_base_exception(message):
    raise CustomBaseException(message)


@dataclasses.dataclass(frozen=True)
class FrozenError(Exception):
    code: int


def raise_frozen(code):
    raise FrozenError(code)


class UnpicklableError(Exception):
    """An exception carrying a lock: it cannot be pickled."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable(message):
    raise UnpicklableError(message)


class TwoArgError(Exception):
    """Pickles fine but cannot be rebuilt: __init__ wants two arguments."""

    def __init__(self, first, second):
        super().__init__("%s/%s" % (first, second))


def raise_two_arg():
    raise TwoArgError("left", "right")


def exit_process(code):
    os._exit(code)


def kill_self(signum):
    os.kill(os.getpid(), signum)
    time.sleep(10)


def segfault():
    faulthandler.disable()  # no crash report on the test's stderr
    ctypes.string_at(0)


def fail_on(x, bad):
    if x in bad:
        raise ValueError("bad element %r" % (x,))
    return x


def sleep_on(x, slow, seconds=2.0):
    if x in slow:
        time.sleep(seconds)
    return x


def exit_on(x, bad):
    if x in bad:
        os._exit(5)
    return x


# -- pickling faults -----------------------------------------------------

class PickleRefused(Exception):
    pass


class RefusesPickling:
    """__reduce__ raises in the parent."""

    def __reduce__(self):
        raise PickleRefused("refused to pickle")


def load_fails(message):
    raise ValueError(message)


class FailsUnpickling:
    """Pickles fine; loading it raises ValueError."""

    def __init__(self, message="cannot load"):
        self.message = message

    def __reduce__(self):
        return load_fails, (self.message,)


class KillsUnpickling:
    """Pickles fine; loading it exits the loading process."""

    def __reduce__(self):
        return os._exit, (7,)


def return_lock():
    return threading.Lock()


def return_lambda():
    return lambda: None


def return_fails_unpickling(message):
    return FailsUnpickling(message)


def consume(value):
    return "consumed"


# -- initializers --------------------------------------------------------

def init_set(value):
    global INIT_VALUE
    INIT_VALUE = (value, os.getpid())


def get_init():
    return INIT_VALUE


def init_raise(message):
    raise CustomError(message)


def init_exit(code):
    os._exit(code)


# -- pools inside workers, calls from workers ----------------------------

def nested_pool(values):
    import multiprocessing

    from pebble import ProcessPool
    with ProcessPool(max_workers=1, context=multiprocessing.get_context("fork")) as pool:
        return [pool.schedule(square, args=(v,)).result() for v in values]


def callback_raises(_future):
    raise RuntimeError("callback failure")


def roundtrip_pickle(value):
    return pickle.loads(pickle.dumps(value))


def echo_kwargs(**kwargs):
    return kwargs


def raise_error(cls):
    raise cls()


def return_ghost():
    """An instance of a class that cannot be found by name."""
    return type("Ghost", (), {"__module__": __name__})()


# -- the soak test ---------------------------------------------------------

def soak_task(i):
    """The outcome of soak task *i* is a function of *i* (see test_soak.check())."""
    if i % 100 == 0:
        raise ValueError(i)
    if i % 4999 == 1:
        time.sleep(10)            # scheduled with a timeout
    if i % 5003 == 2:
        os._exit(3)
    return i * 2


def fds_seen_by_a_subprocess():
    """The pipes and sockets beyond stdio that a shell started by the task holds
    (close_fds off, as with os.system)."""
    import subprocess
    out = subprocess.check_output(["sh", "-c", "ls -l /proc/$$/fd"], close_fds=False, text=True)
    held = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[-2] == "->" and fields[-3].isdigit():
            fd, target = int(fields[-3]), fields[-1]
            if fd > 2 and target.startswith(("pipe:", "socket:")):
                held.append((fd, target))
    return held


def many_large_pieces(count, size=65536):
    """A result of *count* distinct large bytes and bytearray objects."""
    return [bytes([i % 251]) * size if i % 2 else bytearray([i % 251]) * size
            for i in range(count)]


def sleep_then_big(seconds, size):
    """Sleep, then return *size* bytes (slow to send: cancels land meanwhile)."""
    time.sleep(seconds)
    return b"x" * size


def record_pid(path, seconds=0.0):
    """Append this worker's pid to *path* (one line per run), then sleep."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"%d\n" % os.getpid())
    finally:
        os.close(fd)
    if seconds:
        time.sleep(seconds)
    return os.getpid()


# -- frames a worker should never send -------------------------------------

def _result_fd():
    """The worker's result pipe, found in the frame of the worker loop."""
    import sys
    frame = sys._getframe()
    while frame is not None and frame.f_code.co_name != "_serve":
        frame = frame.f_back
    return frame.f_locals["result_fd"]


def send_frame_header(length, nbufs=0, kind=11, task_id=0):
    """Write a bare frame header to the result pipe, then wait to be stopped."""
    import struct
    os.write(_result_fd(), struct.pack("=QQII", task_id, length, kind, nbufs))
    time.sleep(60)
    return "not stopped"


def return_with_soft_limit_raised(size):
    """Return *size* bytes, lifting this worker's address-space limit first."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    return bytearray(size)


def init_limit_address_space(headroom):
    """Initializer: leave this worker *headroom* bytes of address space."""
    import resource
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (used + headroom, resource.RLIM_INFINITY))


# -- the randomized checker's tasks ----------------------------------------

CHECKED_KINDS = ("quick", "slow", "raise", "exit", "huge", "unpicklable", "unloadable",
                 "stubborn")
HUGE = 3 << 20


def checked_task(kind, record_dir, task_id, seconds=0.0):
    """One task of the checker: records each execution, then behaves as *kind*."""
    fd = os.open(os.path.join(record_dir, str(task_id)), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(fd, b"%d\n" % os.getpid())
    os.close(fd)
    if kind == "slow":
        time.sleep(seconds)
    elif kind == "raise":
        raise CustomError(task_id)
    elif kind == "exit":
        os._exit(3)
    elif kind == "huge":
        return bytes(HUGE) + b"%d" % task_id
    elif kind == "unpicklable":
        return threading.Lock()
    elif kind == "unloadable":
        return FailsUnpickling("checker")
    elif kind == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
    return task_id * 2


def checked_element(record_dir, task_id):
    """One element of a checked map: recorded, then doubled."""
    return checked_task("quick", record_dir, task_id)


def send_garbage(seed):
    """Write seeded random bytes to the result pipe, then return."""
    import random
    rng = random.Random(seed)
    os.write(_result_fd(), rng.randbytes(rng.randint(1, 100)))
    return seed


# -- processes started by tasks --------------------------------------------

def start_child(record, how="plain", then_sleep=60.0):
    """Start a `sleep 60` child, write its pid to *record*, then sleep.

    *how*: "plain" (a child in the worker's group), "session" (a new session
    that ignores SIGTERM), or "orphan" (a new session whose parent exits at
    once, so it is adopted).
    """
    import subprocess
    if how == "orphan":
        subprocess.run(["sh", "-c", "setsid sleep 60 >/dev/null 2>&1 & echo $! > %s" % record],
                       check=True)
    else:
        child = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 60"],
                                 start_new_session=(how == "session"))
        with open(record + ".tmp", "w") as out:
            out.write(str(child.pid))
        os.rename(record + ".tmp", record)
    time.sleep(then_sleep)
    return "done"
