"""The futures of pebble: ProcessFuture, whose cancel() stops a running call, and
the map futures."""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures._base import (CANCELLED, CANCELLED_AND_NOTIFIED,
                                      FINISHED, PENDING, RUNNING)
from typing import (TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional,
                    Protocol, TypeVar)

__all__ = ["ProcessFuture", "MapFuture", "ProcessMapFuture"]

if TYPE_CHECKING:
    from typing_extensions import TypeVar as _TypeVar

    # A future built without saying what it resolves to holds Any.
    T = _TypeVar("T", default=Any)
else:
    T = TypeVar("T")


class MapSource(Protocol):
    """What a map future reads from its map (a ``MapRun`` or a list of chunk futures)."""

    @property
    def futures(self) -> List[Future[Any]]: ...

    @property
    def completed(self) -> int: ...

    @property
    def total(self) -> Optional[int]: ...

    def cancel(self) -> bool: ...


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

    def set_running_or_notify_cancel(self) -> bool:
        """As for any Future; a future that cancel() already notified gives False."""
        with self._condition:
            if self._state == CANCELLED_AND_NOTIFIED:
                return False
        return super().set_running_or_notify_cancel()

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

    _run: MapSource

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
            if self._state != PENDING or any(f.running() for f in self._run.futures):
                # A chunk that runs cannot be stopped: the map goes on, and
                # its results stay iterable beside the cancelled elements.
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
