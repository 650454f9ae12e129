"""Helpers for the process tests: the start methods, inspecting processes
through /proc, running scripts in a fresh interpreter."""

import contextlib
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

#: Every start method; the ``start_method`` and ``context`` fixtures go through them.
START_METHODS = ("fork", "spawn", "forkserver")
#: Tests making many calls or pools skip spawn: each of its workers starts an interpreter.
CHEAP_START_METHODS = ("fork", "forkserver")

#: True when a sanitizer runtime (GCC's libasan/libtsan or clang's
#: libclang_rt.asan/tsan) is preloaded: tools/sanitize.sh and tools/tsan.sh.
SANITIZED = any(name in os.environ.get("LD_PRELOAD", "")
                for name in ("libasan", "libtsan", "clang_rt.asan", "clang_rt.tsan"))
#: True under ThreadSanitizer (tools/tsan.sh). It does not support threads
#: started in a child of a many-threaded fork: such a child reports "dup
#: thread with used id" and exits with TSan's error status.
THREAD_SANITIZED = any(name in os.environ.get("LD_PRELOAD", "")
                       for name in ("libtsan", "clang_rt.tsan"))


@contextlib.contextmanager
def default_start_method(method):
    """Make *method* the default start method (what ``context=None`` means) meanwhile."""
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(method, force=True)
    try:
        yield method
    finally:
        multiprocessing.set_start_method(previous, force=True)


def wait_until(predicate, timeout=5.0, interval=0.005):
    """Poll *predicate* until it is true or *timeout* passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def proc_stat(pid):
    """(state, ppid) of *pid*, or None if it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def pid_alive(pid):
    """True if *pid* exists and is not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def pid_gone(pid):
    return not pid_alive(pid)


def wait_gone(pid, timeout=2.0, allow_zombie=False):
    """Wait until *pid* no longer runs (and is reaped, unless *allow_zombie*); return how long."""
    start = time.monotonic()
    while True:
        stat = proc_stat(pid)
        if stat is None or (allow_zombie and stat[0] in "ZX"):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError("process %d still there after %.1fs: state %s"
                                 % (pid, timeout, stat[0]))
        time.sleep(0.005)


def wait_pid_file(path, timeout=30.0):
    """Wait for a process to publish its pid in *path*; return the pid."""
    start = time.monotonic()
    while not os.path.exists(path):
        if time.monotonic() - start > timeout:
            raise AssertionError("%s never appeared" % path)
        time.sleep(0.005)
    with open(path) as source:
        return int(source.read())


def all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children(pid=None):
    """Pids whose parent is *pid* (default: this process), zombies included."""
    pid = os.getpid() if pid is None else pid
    found = []
    for child in all_pids():
        stat = proc_stat(child)
        if stat is not None and stat[1] == pid:
            found.append(child)
    return found


def launchers(pid=None):
    """The live children of *pid* (default: this process) that run a pool's
    launcher (forkserver)."""
    found = []
    for child in children(pid):
        try:
            with open("/proc/%d/cmdline" % child, "rb") as cmdline:
                if b"spawned_launcher_main" in cmdline.read() and pid_alive(child):
                    found.append(child)
        except OSError:
            pass
    return found


def descendants(pid=None):
    """All processes below *pid* (default: this process)."""
    pid = os.getpid() if pid is None else pid
    parents = {}
    for child in all_pids():
        stat = proc_stat(child)
        if stat is not None:
            parents.setdefault(stat[1], []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def zombies(pid=None):
    """Zombie children of *pid* (default: this process)."""
    return [child for child in children(pid) if (proc_stat(child) or ("?",))[0] == "Z"]


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def thread_count():
    return len(os.listdir("/proc/self/task"))


def shm_entries():
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


def with_start_method(code, method):
    """*code* (dedented) preceded by the lines making *method* its default start method."""
    return ("import multiprocessing\nmultiprocessing.set_start_method(%r, force=True)\n%s"
            % (method, textwrap.dedent(code)))


def run_script(code, timeout=60, args=(), directory=None):
    """Run *code* in a fresh interpreter with the tests importable; return the result.

    With *directory*, the code is written there as ``script.py`` and run
    from there (spawn workers re-import a main module only if it has a
    file). Otherwise it runs with ``-c`` in the tests directory, so that the
    source tree, which has no compiled extension, does not shadow the
    installed package.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = TESTS_DIR + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-c", code]
    cwd = TESTS_DIR
    if directory is not None:
        script = os.path.join(str(directory), "script.py")
        with open(script, "w") as out:
            out.write(textwrap.dedent(code))
        command, cwd = [sys.executable, script], str(directory)
    return subprocess.run(command + [str(arg) for arg in args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
