"""Helpers for the process pool tests: inspecting processes through /proc."""

import os
import subprocess
import sys
import time

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


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


def shm_entries():
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


def run_script(code, timeout=60, args=()):
    """Run *code* in a fresh interpreter with the tests importable; return the result.

    It runs in the tests directory so that the source tree, which has no
    compiled extension, does not shadow the installed package.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = TESTS_DIR + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code] + list(args), env=env, cwd=TESTS_DIR,
                          capture_output=True, text=True, timeout=timeout)
