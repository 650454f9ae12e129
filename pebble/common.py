"""Futures, exceptions and helpers shared by the pools and the decorators."""

from __future__ import annotations

import math
import traceback
from concurrent.futures import Future
from concurrent.futures._base import (CANCELLED, CANCELLED_AND_NOTIFIED,
                                      FINISHED, PENDING, RUNNING)
from typing import (TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional, Tuple,
                    TypeVar, cast)

__all__ = ["ProcessExpired", "ProcessFuture", "MapFuture", "ProcessMapFuture",
           "RemoteTraceback", "RemoteException"]

if TYPE_CHECKING:
    from pebble.pool.mapping import MapRun
    from typing_extensions import TypeVar as _TypeVar

    # A future built without saying what it resolves to holds Any.
    T = _TypeVar("T", default=Any)
else:
    T = TypeVar("T")

# Pool states, shared by both pools.
CREATED, RUNNING_STATE, CLOSED, STOPPED, ERROR = range(5)


class ProcessExpired(OSError):
    """Raised by ``Future.result()`` when the process running the task died."""

    def __init__(self, msg: str, code: int = 0, pid: Optional[int] = None):
        super().__init__(msg)
        self.exitcode = code
        self.pid = pid

    def __reduce__(self) -> Tuple[Any, ...]:
        return type(self), (self.args[0] if self.args else "", self.exitcode, self.pid)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RemoteTraceback(Exception):
    """The traceback text of an error raised in another process."""

    def __init__(self, traceback_text: str):
        super().__init__(traceback_text)
        self.traceback = traceback_text

    def __str__(self) -> str:
        return self.traceback


class RemoteException:
    """Carries an exception and its traceback text across processes.

    Rebuilding it in the parent gives back the original exception with
    ``.traceback`` set and a :class:`RemoteTraceback` as ``__cause__``.
    """

    __slots__ = ("exception", "traceback")

    def __init__(self, exception: BaseException, traceback_text: str):
        self.exception = exception
        self.traceback = traceback_text

    def __reduce__(self) -> Tuple[Any, ...]:
        error = self.exception
        if type(error).__reduce__ is BaseException.__reduce__:
            parts = cast(Tuple[Any, ...], error.__reduce__())
            if len(parts) == 3:
                # Rebuilt field by field: BaseException.__setstate__ goes
                # through __setattr__, which frozen dataclass errors refuse.
                return rebuild_exception_state, parts + (self.traceback,)
        return rebuild_exception, (error, self.traceback)


def rebuild_exception(exception: BaseException, traceback_text: str) -> BaseException:
    """Attach the remote traceback to *exception* and return it."""
    try:
        exception.traceback = traceback_text  # type: ignore[attr-defined]
    except Exception:  # frozen exception types refuse new attributes
        try:
            object.__setattr__(exception, "traceback", traceback_text)
        except Exception:  # no __dict__ to hold it
            pass
    object.__setattr__(exception, "__cause__", RemoteTraceback(traceback_text))
    return exception


def rebuild_exception_state(cls: Callable[..., BaseException], args: tuple, state: dict,
                            traceback_text: str) -> BaseException:
    """Rebuild an exception from its default reduce parts, then attach its traceback."""
    exception = cls(*args)
    try:
        exception.__setstate__(state)
    except Exception:
        for name, value in state.items():
            object.__setattr__(exception, name, value)
    return rebuild_exception(exception, traceback_text)


def format_exception(error: BaseException) -> str:
    """Return the formatted traceback text of *error*."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


class ProcessFuture(Future[T]):
    """A :class:`concurrent.futures.Future` whose ``cancel()`` also stops a running call.

    When the call is running, the process executing it is stopped and the
    future is cancelled at once.
    """

    # Set by the pool that scheduled the call.
    _pebble_cancel: Callable[[int], Any]
    _pebble_id: int

    def cancel(self) -> bool:
        """Cancel the call, stopping its process if it is running.

        Return False if the call has already completed, True otherwise.
        """
        with self._condition:
            if self._state == FINISHED:
                return False
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        # The owning pool drops the call, or kills the worker running it.
        hook = self.__dict__.get("_pebble_cancel")
        if hook is not None:
            task_id = self.__dict__.get("_pebble_id")
            if task_id is not None:
                hook(task_id)
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def _pebble_start(self) -> bool:
        """Mark the call as running unless it was cancelled (used by the pools)."""
        with self._condition:
            if self._state == PENDING:
                self._state = RUNNING
                return True
            return False


class _FutureList:
    """Stands for the map of a map future built from a list of chunk futures."""

    def __init__(self, futures: Iterable[Future[Any]]):
        self.futures = list(futures)
        self.total = len(self.futures)

    @property
    def completed(self) -> int:
        return sum(1 for future in self.futures if future.done())

    def cancel(self) -> bool:
        return any([future.cancel() for future in self.futures])


class _MapState:
    """What both map futures expose about their map."""

    _run: "MapRun[Any] | _FutureList"

    def _set_run(self, run: Any) -> None:
        self._run = _FutureList(run) if isinstance(run, (list, tuple)) else run

    @property
    def futures(self) -> List[Future[Any]]:
        """The futures of the chunks the input was split into.

        With ``buffersize``, only those scheduled and not yet consumed.
        """
        return self._run.futures

    @property
    def completed(self) -> int:
        """How many elements are done: computed, failed, timed out or cancelled."""
        return self._run.completed

    @property
    def total(self) -> Optional[int]:
        """How many elements the map has, or None while the input is not exhausted."""
        return self._run.total


class MapFuture(_MapState, Future[Iterator[T]]):
    """The future returned by ``ThreadPool.map``.

    Its result is an iterator over the results of the mapped function.
    """

    def __init__(self, run: Any):
        super().__init__()
        self._set_run(run)

    def cancel(self) -> bool:
        """Cancel the elements still waiting to be computed.

        Returns True if any element was cancelled, False otherwise; the map
        itself is cancelled only in the first case.
        """
        with self._condition:
            if self._state != PENDING:
                return self._run.cancel()
            # Seen as done meanwhile, so the chunks' callbacks leave it alone.
            self._state = CANCELLED
            try:
                cancelled = self._run.cancel()
            finally:
                self._state = PENDING
        if cancelled:
            super().cancel()
        return cancelled


class ProcessMapFuture(_MapState, ProcessFuture[Iterator[T]]):
    """The future returned by ``ProcessPool.map``.

    Its result is an iterator over the results of the mapped function;
    ``cancel()`` also stops the chunks being computed.
    """

    def __init__(self, run: Any):
        super().__init__()
        self._set_run(run)

    def cancel(self) -> bool:
        """Cancel the elements not yet completed.

        Returns True if any element was cancelled, False otherwise.
        """
        super().cancel()
        return self._run.cancel()


class MapError:
    """Marks an element whose computation raised *error*."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error

    def __reduce__(self):
        return MapError, (self.error,)


def run_chunk(function: Callable[..., Any], chunk: Iterable[Any],
              wrap: Optional[Callable[[BaseException], Any]] = None,
              star: bool = True) -> List[Any]:
    """Run *function* over every element of *chunk*.

    With *star* the elements are argument tuples (``function(*args)``),
    otherwise single arguments. An element that raises yields a
    :class:`MapError` in its place (holding the error, or ``wrap(error)``)
    so that the rest of the chunk still runs.
    """
    results: List[Any] = []
    append = results.append
    if star:
        for args in chunk:
            try:
                append(function(*args))
            except Exception as error:
                append(MapError(wrap(error) if wrap is not None else error))
    else:
        for arg in chunk:
            try:
                append(function(arg))
            except Exception as error:
                append(MapError(wrap(error) if wrap is not None else error))
    return results


def check_chunksize(chunksize: Any) -> int:
    """Validate a map chunksize and return it as an int (floats are rounded up)."""
    if isinstance(chunksize, bool) or not isinstance(chunksize, (int, float)):
        raise TypeError("chunksize must be a number, not %s" % type(chunksize).__name__)
    if chunksize < 1 or (isinstance(chunksize, float) and not math.isfinite(chunksize)):
        raise ValueError("chunksize must be >= 1")
    return int(math.ceil(chunksize))


def check_timeout(timeout: Any, name: str = "timeout") -> Optional[float]:
    """Validate an optional timeout in seconds."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("%s must be a number or None, not %s" % (name, type(timeout).__name__))
    if timeout != timeout or timeout < 0:
        raise ValueError("%s must be a non-negative number" % name)
    return float(timeout)


def check_max_workers(max_workers: Any) -> int:
    """Validate a pool's worker count."""
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError("max_workers must be an int, not %s" % type(max_workers).__name__)
    if max_workers < 1:
        raise ValueError("max_workers must be >= 1")
    return max_workers


def check_max_tasks(max_tasks: Any) -> int:
    """Validate a pool's per-worker task limit (0 means no limit)."""
    if isinstance(max_tasks, bool) or not isinstance(max_tasks, int):
        raise TypeError("max_tasks must be an int, not %s" % type(max_tasks).__name__)
    if max_tasks < 0:
        raise ValueError("max_tasks must be >= 0")
    return max_tasks


def check_initializer(initializer: Any, initargs: Any) -> Tuple[Any, tuple]:
    """Validate a pool initializer and its arguments."""
    if initializer is not None and not callable(initializer):
        raise TypeError("initializer must be callable or None")
    if initargs is None:
        initargs = ()
    try:
        initargs = tuple(initargs)
    except TypeError:
        raise TypeError("initargs must be an iterable") from None
    return initializer, initargs


def check_call(function: Any, args: Any, kwargs: Any) -> Tuple[tuple, dict]:
    """Validate a scheduled call and normalize its arguments."""
    if not callable(function):
        raise TypeError("function must be callable, not %s" % type(function).__name__)
    if args is None:
        args = ()
    elif not isinstance(args, tuple):
        if isinstance(args, (str, bytes)) or not hasattr(args, "__iter__"):
            raise TypeError("args must be a sequence, not %s" % type(args).__name__)
        args = tuple(args)
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, dict):
        try:
            kwargs = dict(kwargs)
        except (TypeError, ValueError):
            raise TypeError("kwargs must be a mapping, not %s" % type(kwargs).__name__) from None
    return args, kwargs


__all__ += ["PENDING", "RUNNING", "FINISHED", "CANCELLED", "CANCELLED_AND_NOTIFIED"]
