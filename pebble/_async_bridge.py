"""The bridge from the engines' threads to asyncio futures."""

from __future__ import annotations

import asyncio
from typing import Any, Callable


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
