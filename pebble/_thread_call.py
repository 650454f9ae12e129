"""Decorated thread calls: their parameters and the launcher running them."""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any, Callable, Dict, Optional

from pebble._pebble import ThreadCore
from pebble.validators import check_name_daemon

# Idle launcher threads kept warm for the next call.
MAX_IDLE_THREADS = 8

#: The parameters of ``@thread`` and their defaults.
THREAD_DEFAULTS: Dict[str, Any] = {"name": None, "daemon": True, "pool": None}


def check_thread_params(params: Dict[str, Any]) -> Dict[str, Any]:
    """Validate the parameters of a thread decorator."""
    from pebble.pool.thread import ThreadPool
    check_name_daemon(params)
    if params["pool"] is not None and not isinstance(params["pool"], ThreadPool):
        raise TypeError("pool must be a ThreadPool, not %s" % type(params["pool"]).__name__)
    return params


def named_call(name: str, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run *function* with the current thread renamed to *name* meanwhile."""
    thread = threading.current_thread()
    previous = thread.name
    thread.name = name
    try:
        return function(*args, **kwargs)
    finally:
        thread.name = previous


class ThreadLauncher:
    """Runs one-off calls on daemon threads kept warm between calls.

    A call goes to an idle thread when there is one, otherwise a new thread
    starts for it; at most ``MAX_IDLE_THREADS`` threads stay idle.
    """

    def __init__(self) -> None:
        self._core = ThreadCore(MAX_IDLE_THREADS)
        self._counter = itertools.count(1)

    def launch(self, future: Any, function: Callable[..., Any], args: tuple,
               kwargs: Dict[str, Any], name: Optional[str], daemon: Optional[bool]) -> None:
        """Run *function* in a thread, completing *future* (Future protocol)."""
        if daemon is None:  # as threading does: the caller's own flag
            daemon = threading.current_thread().daemon
        if name is not None:
            args = (name, function) + args
            function = named_call
        if not daemon:
            # Non-daemon calls keep the interpreter alive: a thread of their own.
            core = ThreadCore()
            core.put(future, function, args, kwargs)
            core.close()
            threading.Thread(target=core.work, name=name, daemon=False).start()
            return
        if not self._core.put(future, function, args, kwargs):
            threading.Thread(target=self._core.work, daemon=True,
                             name="pebble-thread-%d" % next(self._counter)).start()


_launcher = ThreadLauncher()


def thread_launcher() -> ThreadLauncher:
    """The process-wide launcher of decorated thread calls."""
    return _launcher


def _reset_after_fork() -> None:
    global _launcher
    _launcher = ThreadLauncher()


os.register_at_fork(after_in_child=_reset_after_fork)
