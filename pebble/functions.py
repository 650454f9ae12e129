"""Synchronization utilities: synchronized, sighandler, waitforthreads,
waitforqueues.

Pure Python on purpose: these helpers sit on top of ``threading``,
``queue`` and ``signal`` and gain nothing from native code.

Neither wait function polls.  ``waitforthreads`` relies on one shared
watcher thread per waited-on thread, blocked in ``Thread.join``;
``waitforqueues`` hooks the ``not_empty`` condition of each queue so that
``put`` wakes the waiter directly.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import queue
import signal
import threading
import time
from typing import (Any, Callable, Dict, Iterable, List, Optional, Protocol,
                    Sequence, TypeVar, Union, cast, overload)

from pebble.validators import check_timeout

__all__ = ["synchronized", "sighandler", "waitforthreads", "waitforqueues"]

F = TypeVar("F", bound=Callable[..., Any])
Q = TypeVar("Q", bound=queue.Queue)


class LockLike(Protocol):
    """Anything with ``acquire``/``release``: Lock, RLock, Semaphore from
    ``threading`` or ``multiprocessing``."""

    def acquire(self, *args: Any, **kwargs: Any) -> Any: ...

    def release(self) -> Any: ...


# Shared by every function decorated without an explicit lock, so that
# only one of them runs at a time.
_DEFAULT_LOCK = threading.Lock()


# -- synchronized -----------------------------------------------------------

def _is_lock(obj: object) -> bool:
    return (callable(getattr(obj, "acquire", None))
            and callable(getattr(obj, "release", None)))


def _synchronize(function: F, lock: LockLike) -> F:
    if not callable(function):
        raise TypeError("synchronized can only decorate callables, got %r"
                        % (type(function).__name__,))

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        lock.acquire()
        try:
            return function(*args, **kwargs)
        finally:
            lock.release()

    return wrapper  # type: ignore[return-value]


@overload
def synchronized(lock: F) -> F: ...


@overload
def synchronized(lock: Optional[LockLike] = None) -> Callable[[F], F]: ...


def synchronized(lock: Any = None) -> Any:
    """Serialize the calls of the decorated function.

    Usable bare (``@synchronized``), with no argument
    (``@synchronized()``) or with a synchronization object
    (``@synchronized(lock)``): a Lock, RLock or Semaphore from
    ``threading`` or ``multiprocessing``, or any object with ``acquire``
    and ``release``.  The lock is held for the whole call and released
    even if the function raises.

    Without a lock, one module-wide ``threading.Lock`` is used: all the
    functions decorated that way exclude each other, not only themselves.

    Raises TypeError if *lock* is neither a lock nor a callable.
    """
    if lock is None:
        return functools.partial(_synchronize, lock=_DEFAULT_LOCK)
    if _is_lock(lock):
        return functools.partial(_synchronize, lock=lock)
    if callable(lock):
        return _synchronize(lock, _DEFAULT_LOCK)
    raise TypeError("synchronized expects a Lock, RLock or Semaphore "
                    "(an object with acquire() and release()) or a "
                    "callable, got %r" % (type(lock).__name__,))


# -- sighandler -------------------------------------------------------------

SignalsArg = Union[int, signal.Signals, Sequence[Union[int, signal.Signals]]]


def _check_signal(signum: object) -> int:
    # bool is an int subclass but never a meaningful signal number.
    if isinstance(signum, bool) or not isinstance(signum, int):
        raise TypeError("signals must be an int, a signal.Signals or a "
                        "list/tuple of them, got %r" % (type(signum).__name__,))
    return signum


def sighandler(signals: SignalsArg) -> Callable[[F], F]:
    """Install the decorated function as handler of *signals*.

    *signals* is one signal (int or ``signal.Signals``) or a list/tuple of
    them.  Equivalent to calling ``signal.signal(signum, function)`` for
    each; the function itself is returned, unchanged.  Every signal is
    validated before any handler is installed.

    Raises TypeError for any other type, ValueError for an empty
    list/tuple; ``signal.signal`` errors (invalid number, not the main
    thread) propagate.
    """
    if isinstance(signals, (list, tuple)):
        if not signals:
            raise ValueError("sighandler needs at least one signal")
        numbers_ = [_check_signal(s) for s in signals]
    else:
        numbers_ = [_check_signal(signals)]

    def decorator(function: F) -> F:
        if not callable(function):
            raise TypeError("sighandler can only decorate callables, got %r"
                            % (type(function).__name__,))
        for signum in numbers_:
            signal.signal(signum, function)
        return function

    return decorator


# -- argument checks shared by the wait functions ---------------------------

def _check_timeout(timeout: object) -> Optional[float]:
    """The timeout of a wait as a float, or None for no limit (an infinite one too)."""
    value = check_timeout(timeout, kinds=numbers.Real)
    return None if value is not None and math.isinf(value) else value


def _check_items(items: object, kind: type, what: str) -> list:
    try:
        result = list(items)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError("%s must be a list of %s objects, got %r"
                        % (what, kind.__qualname__,
                           type(items).__name__)) from None
    for item in result:
        if not isinstance(item, kind):
            raise TypeError("%s must contain %s.%s objects, got %r"
                            % (what, kind.__module__, kind.__qualname__,
                               type(item).__name__))
    return result


def _unique(items: list) -> list:
    seen = set()
    result = []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            result.append(item)
    return result


def _remaining(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else deadline - time.monotonic()


# -- waitforthreads ---------------------------------------------------------
#
# One daemon watcher per waited-on thread, shared by all the concurrent
# callers waiting on it.  It blocks in target.join() until the target ends
# or the latest deadline among its subscribers passes, then sets the
# subscribers' events.  So no watcher outlives the longest timeout it was
# asked to honour, and repeated calls with timeout=None reuse the watcher
# instead of piling up new ones.

_WATCHER_PREFIX = "pebble-waitforthreads"

# Marks a watcher that nobody needs any longer.
_DONE = object()


class _ThreadWatcher:
    """Watches one thread for the callers registered in *subscribers*.

    Every field is guarded by ``_watch_lock``.
    """

    def __init__(self, target: threading.Thread) -> None:
        self.target = target
        # event -> deadline (None: wait forever); a list per event would be
        # needed only if a caller subscribed twice, which _unique prevents.
        self.subscribers: Dict[threading.Event, Optional[float]] = {}
        self.thread = threading.Thread(
            target=self._run, daemon=True,
            name="%s(%s)" % (_WATCHER_PREFIX, target.name))

    def _wanted(self) -> Any:
        """The deadline to honour next: a float, None (forever) or _DONE."""
        if not self.subscribers:
            return _DONE
        deadlines = list(self.subscribers.values())
        if None in deadlines:
            return None
        latest = max(cast(List[float], deadlines))
        return latest if latest > time.monotonic() else _DONE

    def _run(self) -> None:
        while True:
            with _watch_lock:
                if not self.target.is_alive():
                    events = list(self.subscribers)
                    self._retire()
                    break
                deadline = self._wanted()
                if deadline is _DONE:
                    self._retire()
                    return
            self.target.join(None if deadline is None
                             else max(0.0, deadline - time.monotonic()))
        for event in events:
            event.set()

    def _retire(self) -> None:
        """Unregisters the watcher. Call with _watch_lock held."""
        if _watchers.get(self.target) is self:
            del _watchers[self.target]


_watch_lock = threading.Lock()
_watchers: Dict[threading.Thread, _ThreadWatcher] = {}


def _reset_watchers() -> None:
    # Watcher threads do not survive fork; drop their records in the child
    # and replace a lock that another thread may have held at fork time.
    global _watch_lock, _watchers
    _watch_lock = threading.Lock()
    _watchers = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_watchers)


def _subscribe(target: threading.Thread, event: threading.Event,
               deadline: Optional[float]) -> None:
    with _watch_lock:
        watcher = _watchers.get(target)
        start = watcher is None
        if start:
            watcher = _watchers[target] = _ThreadWatcher(target)
        watcher.subscribers[event] = deadline  # type: ignore[union-attr]
    if start:
        try:
            watcher.thread.start()  # type: ignore[union-attr]
        except BaseException:
            with _watch_lock:
                watcher._retire()  # type: ignore[union-attr]
            raise


def _unsubscribe(target: threading.Thread, event: threading.Event) -> None:
    with _watch_lock:
        watcher = _watchers.get(target)
        if watcher is not None:
            watcher.subscribers.pop(event, None)


def _wait_until_ready(event: threading.Event, ready: Callable[[], List[Any]],
                      deadline: Optional[float]) -> List[Any]:
    """Return ready() once it is non-empty or the deadline passes.

    The hooks set *event* whenever something may have become ready; it is
    cleared before each check, so a change after the check cannot be missed.
    """
    while True:
        event.clear()
        found = ready()
        remaining = _remaining(deadline)
        if found or (remaining is not None and remaining <= 0):
            return found
        event.wait(remaining)


def waitforthreads(threads: Iterable[threading.Thread],
                   timeout: Optional[float] = None) -> List[threading.Thread]:
    """Wait until at least one of *threads* is no longer alive.

    *threads* is a list of ``threading.Thread`` objects (an empty one gives ``[]`` at once).
    Returns the threads that are not alive, in the given order; if
    *timeout* (seconds) expires first, returns an empty list.  Returns at
    once if one of them has already ended.  A thread that was never
    started is not alive, hence ready.

    The returned threads are not joined on the caller's behalf: call
    ``join()`` to reclaim them as usual.

    Raises TypeError or ValueError for invalid arguments.
    """
    threads = _check_items(threads, threading.Thread, "threads")
    timeout = _check_timeout(timeout)

    def ready() -> List[threading.Thread]:
        return [t for t in threads if not t.is_alive()]

    done = ready()
    if done or timeout == 0 or not threads:  # nothing to wait for: as Pebble, []
        return done

    deadline = None if timeout is None else time.monotonic() + timeout
    event = threading.Event()
    targets: List[threading.Thread] = []
    try:
        for target in _unique(threads):
            _subscribe(target, event, deadline)
            targets.append(target)
        return _wait_until_ready(event, ready, deadline)
    finally:
        for target in targets:
            _unsubscribe(target, event)


# -- waitforqueues ----------------------------------------------------------
#
# Queue.put() calls self.not_empty.notify() with self.mutex held.  While
# someone waits, that bound method is shadowed on the Condition instance by
# a _NotifyHook that calls the original and then sets the waiters' events.
# The hook is installed, shared and removed under the queue's own mutex, so
# it cannot race a put() and needs no other lock.  Setting an Event never
# blocks on anything the waiter holds, so calling it with the queue's mutex
# held cannot deadlock.

class _NotifyHook:
    """Replaces ``Condition.notify`` of a queue's ``not_empty``.

    ``subscribers`` is guarded by the queue's mutex.
    """

    def __init__(self, condition: threading.Condition) -> None:
        # The notify in effect before the hook: an instance attribute
        # (someone else's wrapper) or the class method.
        self.shadowed = "notify" in vars(condition)
        self.original = condition.notify
        self.subscribers: List[threading.Event] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.original(*args, **kwargs)
        finally:
            for event in self.subscribers:
                event.set()

    def restore(self, condition: threading.Condition) -> None:
        # If another wrapper was installed on top of the hook it still
        # calls us; leave the hook in place, now a plain pass-through.
        if vars(condition).get("notify") is not self:
            return
        if self.shadowed:
            condition.notify = self.original  # type: ignore[method-assign]
        else:
            del condition.notify


def _hook(q: queue.Queue, event: threading.Event) -> None:
    with q.mutex:
        condition = q.not_empty
        hook = vars(condition).get("notify")
        if not isinstance(hook, _NotifyHook):
            hook = _NotifyHook(condition)
            condition.notify = hook  # type: ignore[method-assign]
        hook.subscribers.append(event)


def _unhook(q: queue.Queue, event: threading.Event) -> None:
    with q.mutex:
        condition = q.not_empty
        hook = vars(condition).get("notify")
        if not isinstance(hook, _NotifyHook):
            return
        hook.subscribers.remove(event)
        if not hook.subscribers:
            hook.restore(condition)


def waitforqueues(queues: Iterable[Q],
                  timeout: Optional[float] = None) -> List[Q]:
    """Wait until at least one of *queues* holds an item.

    *queues* is a list of ``queue.Queue`` objects (or of its
    subclasses, such as LifoQueue and PriorityQueue).  Returns the
    non-empty queues, in the given order; if *timeout* (seconds) expires
    first, returns an empty list.  Returns at once if one of them already
    holds an item.  No item is removed from the queues.

    ``queue.SimpleQueue`` and ``multiprocessing`` queues are not supported:
    they offer no notification to hook without polling.

    Raises TypeError or ValueError for invalid arguments.
    """
    queues = _check_items(queues, queue.Queue, "queues")
    timeout = _check_timeout(timeout)

    def ready() -> List[Q]:
        return [q for q in queues if not q.empty()]

    found = ready()
    if found or timeout == 0 or not queues:  # nothing to wait for: as Pebble, []
        return found

    deadline = None if timeout is None else time.monotonic() + timeout
    event = threading.Event()
    hooked: List[Q] = []
    try:
        for q in _unique(queues):
            _hook(q, event)
            hooked.append(q)
        return _wait_until_ready(event, ready, deadline)
    finally:
        for q in hooked:
            _unhook(q, event)
