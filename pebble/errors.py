"""The exceptions of pebble, and how a task's error crosses back from a worker."""

from __future__ import annotations

import traceback
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Optional, Tuple, cast

__all__ = ["ProcessExpired", "RemoteTraceback", "RemoteException", "OutcomeNotRebuilt"]


class ProcessExpired(OSError):
    """Raised by ``Future.result()`` when the process running the task died.

    ``exitcode`` is its exit code (negative: the signal that ended it), or
    None where it cannot be known: a forkserver worker that outlived its
    killed launcher is no child of the pool's any more.
    """

    def __init__(self, msg: str, code: Optional[int] = 0, pid: Optional[int] = None):
        super().__init__(msg)
        self.exitcode = code
        self.pid = pid

    def __reduce__(self) -> Tuple[Any, ...]:
        return type(self), (self.args[0] if self.args else "", self.exitcode, self.pid)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OutcomeNotRebuilt(BrokenProcessPool):
    """A task's result or exception could not be rebuilt in the parent.

    Pebble raises BrokenProcessPool here and breaks the pool; only this task
    fails here, the pool goes on. The error that rebuilding raised is the
    ``__cause__``.
    """

    def __init__(self, msg: str, cause: Optional[BaseException] = None):
        super().__init__(msg)
        if cause is not None:
            self.__cause__ = cause

    def __reduce__(self) -> Tuple[Any, ...]:
        return type(self), (self.args[0] if self.args else "", self.__cause__)


def outcome_not_rebuilt(error: BaseException, result: bool,
                        outcome: Optional[BaseException] = None) -> BaseException:
    """The error a future gets when its task's outcome fails to load with *error*.

    *outcome* is the exception that failed to travel, where it is known.
    """
    what = "result" if result else "exception"
    if outcome is not None:
        what = "%s (%s: %s)" % (what, type(outcome).__name__, outcome)
    return OutcomeNotRebuilt("The task's %s could not be rebuilt in the parent: %s: %s"
                             % (what, type(error).__name__, error), error)


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
    if isinstance(exception, OutcomeNotRebuilt) and exception.__cause__ is not None:
        exception.traceback = traceback_text  # type: ignore[attr-defined]
        return exception  # its cause is the error that matters
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


def attach_traceback(error: BaseException) -> BaseException:
    """Give *error* its traceback text as ``.traceback``, as errors from processes have it."""
    try:
        error.traceback = format_exception(error)  # type: ignore[attr-defined]
    except Exception:  # an exception type that refuses new attributes
        pass
    return error
