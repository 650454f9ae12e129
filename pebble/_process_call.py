"""Decorated process calls: their parameters, the engines running them, and the
non-daemon calls the interpreter waits for at exit."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, Optional

from pebble.errors import OutcomeNotRebuilt
from pebble.futures import ProcessFuture
from pebble.validators import check_name_daemon, check_timeout

#: The parameters of ``@process`` and their defaults.
PROCESS_DEFAULTS: Dict[str, Any] = {"name": None, "daemon": True, "timeout": None,
                                    "context": None, "mp_context": None, "pool": None}


def check_process_params(params: Dict[str, Any]) -> Dict[str, Any]:
    """Validate the parameters of a process decorator; ``mp_context`` becomes ``context``."""
    from pebble.pool.process import ProcessPool, get_start_method
    check_name_daemon(params)
    params["timeout"] = check_timeout(params["timeout"])
    if params["mp_context"] is not None:
        if params["context"] is not None and params["context"] is not params["mp_context"]:
            raise TypeError("pass only one of context and mp_context")
        params["context"] = params["mp_context"]
    if params["context"] is not None:
        get_start_method(params["context"])  # TypeError/ValueError for anything else
    if params["pool"] is not None and not isinstance(params["pool"], ProcessPool):
        raise TypeError("pool must be a ProcessPool, not %s" % type(params["pool"]).__name__)
    return params


# One elastic engine per start method: a process per call, one spare kept warm.
_engines: Dict[str, Any] = {}
_engines_lock = threading.Lock()
_nondaemon: "set" = set()
_nondaemon_lock = threading.Lock()
MAX_PROCESSES = 4096


def process_engine(context: Any) -> Any:
    """The process-wide engine running decorated calls for *context*."""
    from pebble.pool.process import ProcessPool, get_start_method
    method = get_start_method(context)
    engine = _engines.get(method)
    if engine is None or not engine.active:
        with _engines_lock:
            engine = _engines.get(method)
            if engine is None or not engine.active:
                import multiprocessing
                engine = ProcessPool(MAX_PROCESSES, max_tasks=1,
                                     context=multiprocessing.get_context(method),
                                     _spare=1)
                _engines[method] = engine
    return engine


def fork_engine() -> Any:
    """The process-wide engine watching decorated calls forked from this process."""
    from pebble.pool.process import ProcessPool
    engine = _engines.get("fork-calls")
    if engine is None or not engine.active:
        with _engines_lock:
            engine = _engines.get("fork-calls")
            if engine is None or not engine.active:
                import multiprocessing
                engine = ProcessPool(MAX_PROCESSES, max_tasks=1,
                                     context=multiprocessing.get_context("fork"), _spare=0)
                _engines["fork-calls"] = engine
    return engine


def _reset_engines_after_fork() -> None:
    global _engines_lock, _nondaemon_lock
    _engines.clear()
    _nondaemon.clear()
    _engines_lock = threading.Lock()
    _nondaemon_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_engines_after_fork)


def run_decorated(target: Any, args: tuple, kwargs: Dict[str, Any],
                  name: Optional[str], daemon: bool) -> Any:
    """Worker side of a decorated call: unwrap the decorator and run the function.

    The process name and daemon flag apply to this call only: a ``pool=``
    worker goes on serving its pool as it was.
    """
    import multiprocessing
    function = getattr(target, "__pebble_original__", target)
    process = multiprocessing.current_process()
    previous_name, previous_daemon = process.name, process.daemon
    if name is not None:
        process.name = name
    _set_daemon(process, daemon)
    try:
        return function(*args, **kwargs)
    finally:
        process.name = previous_name
        _set_daemon(process, previous_daemon)


def _set_daemon(process: Any, daemon: bool) -> None:
    try:
        process.daemon = daemon
    except (AssertionError, ValueError):
        pass


class CallFuture(ProcessFuture):
    """The future of one decorated call.

    A pool reports an outcome that cannot be rebuilt in the parent as a
    BrokenProcessPool (OutcomeNotRebuilt); a decorated call, as on Pebble,
    raises the error that rebuilding it raised.
    """

    def set_exception(self, exception: Optional[BaseException]) -> None:
        if isinstance(exception, OutcomeNotRebuilt) and exception.__cause__ is not None:
            text = getattr(exception, "traceback", None)
            exception = exception.__cause__
            if text is not None and getattr(exception, "traceback", None) is None:
                try:
                    exception.traceback = text  # type: ignore[attr-defined]
                except Exception:  # frozen exception types refuse new attributes
                    pass
        super().set_exception(exception)


class ProcessCall:
    """The parameters of a process decorator and how to launch one call."""

    __slots__ = ("function", "name", "daemon", "timeout", "context", "pool")

    def __init__(self, function: Callable[..., Any], params: Dict[str, Any]):
        self.function = function
        self.name = params["name"]
        self.daemon = params["daemon"]
        self.timeout = params["timeout"]
        self.context = params["context"]
        self.pool = params["pool"]

    def launch(self, wrapper: Callable[..., Any], args: tuple, kwargs: Dict[str, Any]) -> Any:
        """Start one call; return its ProcessFuture."""
        daemon = self.daemon
        if daemon is None:  # as multiprocessing does: the caller's own flag
            import multiprocessing
            daemon = multiprocessing.current_process().daemon
        if self.pool is None and _forks_at_call(self.context):
            future = self._fork(args, kwargs, daemon)
        else:
            future = self._send(wrapper, args, kwargs, daemon)
        if not daemon:
            with _nondaemon_lock:
                _nondaemon.add(future)
            future.add_done_callback(_forget_nondaemon)
        return future

    def _fork(self, args: tuple, kwargs: Dict[str, Any], daemon: bool) -> Any:
        """The call runs in a fork of the caller made now, as on Pebble."""
        import multiprocessing
        maker = self.context if self.context is not None else multiprocessing
        process = maker.Process(name=self.name, daemon=daemon)
        return fork_engine()._fork_call(self.function, args, kwargs, process, self.timeout,
                                        CallFuture)

    def _send(self, wrapper: Callable[..., Any], args: tuple, kwargs: Dict[str, Any],
              daemon: bool) -> Any:
        """The call travels, pickled, to a process of an engine or of the given pool."""
        # A module-level decorated function pickles by name as the wrapper;
        # the worker unwraps it. Anything else pickles as itself.
        target = wrapper if _pickles_by_name(wrapper) else self.function
        pool = self.pool if self.pool is not None else process_engine(self.context)
        call = (target, args, kwargs, self.name, daemon)
        if self.pool is not None:  # the pool's own futures and rules
            return pool.schedule(run_decorated, args=call, timeout=self.timeout)
        return pool._schedule(run_decorated, call, None, self.timeout, CallFuture)


def _forks_at_call(context: Any) -> bool:
    from pebble.pool.process import FORK_IN_PROCESS, get_start_method
    return FORK_IN_PROCESS and get_start_method(context) == "fork"


def _forget_nondaemon(future: Any) -> None:
    with _nondaemon_lock:
        _nondaemon.discard(future)


def _pickles_by_name(wrapper: Callable[..., Any]) -> bool:
    import sys
    module = sys.modules.get(getattr(wrapper, "__module__", None) or "")
    if module is None:
        return False
    obj: Any = module
    for part in getattr(wrapper, "__qualname__", "").split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return obj is wrapper


def _wait_nondaemon_at_exit() -> None:
    """Non-daemon calls keep the interpreter alive until they finish."""
    import concurrent.futures
    with _nondaemon_lock:
        pending = list(_nondaemon)
    if pending:
        concurrent.futures.wait(pending)


def register_exit_hook() -> None:
    import atexit
    # Imported after pebble.pool.process, so this runs before pools are stopped.
    atexit.register(_wait_nondaemon_at_exit)
