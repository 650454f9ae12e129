"""Plumbing shared by the ``concurrent`` and ``asynchronous`` decorators."""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import threading
from typing import Any, Callable, Dict, Optional

from pebble._pebble import ThreadCore

# Idle launcher threads kept warm for the next call.
MAX_IDLE_THREADS = 8


def decorate(kind: str, args: tuple, kwargs: Dict[str, Any],
             defaults: Dict[str, Any], validate: Callable[[Dict[str, Any]], Dict[str, Any]],
             wrap: Callable[[Callable[..., Any], Dict[str, Any]], Callable[..., Any]]) -> Any:
    """Implement the three ways a decorator can be used.

    ``@kind``, ``@kind(**params)`` and ``kind(function)`` / ``kind(**params)(function)``.
    """
    if args:
        if len(args) == 1 and not kwargs and callable(args[0]):
            return wrap(args[0], validate(dict(defaults)))
        raise TypeError("%s() takes a callable or keyword arguments only, got %r"
                        % (kind, args[0] if len(args) == 1 else args))
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise TypeError("%s() got unexpected keyword arguments: %s"
                        % (kind, ", ".join(sorted(unknown))))
    params = dict(defaults)
    params.update(kwargs)
    params = validate(params)

    def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(function):
            raise TypeError("%s() can only decorate a callable, not %s"
                            % (kind, type(function).__name__))
        return wrap(function, params)

    return decorator


def check_name_daemon(params: Dict[str, Any]) -> None:
    """Validate the ``name`` and ``daemon`` decorator parameters."""
    if params["name"] is not None and not isinstance(params["name"], str):
        raise TypeError("name must be a string or None, not %s"
                        % type(params["name"]).__name__)
    if not isinstance(params["daemon"], bool):
        raise TypeError("daemon must be a bool, not %s" % type(params["daemon"]).__name__)


def update_wrapper(wrapper: Callable[..., Any], function: Callable[..., Any]) -> Callable[..., Any]:
    """``functools.update_wrapper`` that also works for callable objects."""
    functools.update_wrapper(wrapper, function)
    if not hasattr(wrapper, "__wrapped__"):
        wrapper.__wrapped__ = function  # type: ignore[attr-defined]
    return wrapper


def named_call(name: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
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
               kwargs: Dict[str, Any], name: Optional[str], daemon: bool) -> None:
        """Run *function* in a thread, completing *future* (Future protocol)."""
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


class AsyncCompletion:
    """Completes an asyncio future from another thread through its loop.

    Offers the part of the Future protocol the engines use, so a call run
    by a worker thread resolves the asyncio future with
    ``loop.call_soon_threadsafe`` — no polling.
    """

    __slots__ = ("loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future):
        self.loop = loop
        self.future = future

    def set_running_or_notify_cancel(self) -> bool:
        return not self.future.cancelled()

    def set_result(self, value: Any) -> None:
        self._post(_set_result, value)

    def set_exception(self, error: BaseException) -> None:
        self._post(_set_exception, error)

    def _post(self, callback: Callable[[asyncio.Future, Any], None], value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, self.future, value)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _set_result(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        if isinstance(error, (StopIteration, StopAsyncIteration)):
            # asyncio futures refuse these: wrap them as generators do.
            wrapped = RuntimeError("%s raised" % type(error).__name__)
            wrapped.__cause__ = error
            error = wrapped
        future.set_exception(error)


def to_asyncio(source: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
    """An asyncio future of *loop* that takes the outcome of the concurrent *source*.

    The outcome is passed on as it is: ``asyncio.wrap_future`` would turn
    ``concurrent.futures.TimeoutError`` into asyncio's own class on Python
    3.10, where the two differ. Cancelling the asyncio future cancels *source*.
    """
    target = loop.create_future()

    def cancel_source(future: asyncio.Future) -> None:
        if future.cancelled():
            source.cancel()

    def copy(done: Any) -> None:
        try:
            loop.call_soon_threadsafe(_copy_outcome, target, done)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    target.add_done_callback(cancel_source)
    source.add_done_callback(copy)
    return target


def _copy_outcome(target: asyncio.Future, source: Any) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
        return
    error = source.exception()
    if error is not None:
        _set_exception(target, error)
    else:
        target.set_result(source.result())


def get_loop() -> asyncio.AbstractEventLoop:
    """The running event loop, or the current thread's loop outside of one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.get_event_loop_policy().get_event_loop()


# -- processes ---------------------------------------------------------------

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
        # A module-level decorated function pickles by name as the wrapper;
        # the worker unwraps it. Anything else pickles as itself.
        target = wrapper if _pickles_by_name(wrapper) else self.function
        pool = self.pool if self.pool is not None else process_engine(self.context)
        future = pool.schedule(run_decorated, args=(target, args, kwargs, self.name, self.daemon),
                               timeout=self.timeout)
        if not self.daemon:
            with _nondaemon_lock:
                _nondaemon.add(future)
            future.add_done_callback(_forget_nondaemon)
        return future


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
