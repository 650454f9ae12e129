"""Policy shared by both pools: states, argument checks, joining, map."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, InvalidStateError
from typing import Any, Callable, Iterable, List, Optional, TypeVar

from pebble.common import (CLOSED, CREATED, ERROR, RUNNING_STATE, STOPPED,
                           MapResults, check_chunksize, check_timeout,
                           iter_chunks, run_chunk)

_PoolT = TypeVar("_PoolT", bound="BasePool")
_FutureT = TypeVar("_FutureT", bound="Future[Any]")

_STATE_NAMES = {CREATED: "CREATED", RUNNING_STATE: "RUNNING", CLOSED: "CLOSED",
                STOPPED: "STOPPED", ERROR: "ERROR"}


class BasePool:
    """State machine and lifecycle shared by ThreadPool and ProcessPool."""

    def __init__(self) -> None:
        self._state = CREATED
        self._state_lock = threading.RLock()
        self._error: Optional[BaseException] = None

    # -- lifecycle -------------------------------------------------------

    def __enter__(self: _PoolT) -> _PoolT:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
        self.join()

    def __repr__(self) -> str:
        return "<%s %s>" % (type(self).__name__, _STATE_NAMES.get(self._state, "?"))

    def _check_pool_state(self) -> None:
        """Raise RuntimeError unless new work is accepted; start the pool lazily."""
        if self._state == RUNNING_STATE:
            return
        with self._state_lock:
            if self._state == ERROR:
                raise RuntimeError("Unexpected error within the Pool") from self._error
            if self._state == CREATED:
                self._start()
                self._state = RUNNING_STATE
            elif self._state != RUNNING_STATE:
                raise RuntimeError("The Pool is not active")

    def _start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Refuse new work; queued work still runs. Call join() afterwards."""
        with self._state_lock:
            if self._state in (CREATED, RUNNING_STATE):
                self._state = CLOSED
                self._close()

    def stop(self) -> None:
        """Stop the pool abruptly, cancelling queued work. Call join() afterwards."""
        with self._state_lock:
            if self._state != STOPPED:
                if self._state != ERROR:
                    self._state = STOPPED
                self._stop()

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait for the workers to exit; the pool must be closed or stopped first.

        Raises TimeoutError if workers are still running after *timeout*
        seconds, RuntimeError if the pool is still running.
        """
        timeout = check_timeout(timeout)
        if self._state in (CREATED, RUNNING_STATE):
            raise RuntimeError("The Pool is still running")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._join(deadline):
            raise TimeoutError("Workers are still running")

    def _close(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def _join(self, deadline: Optional[float]) -> bool:
        raise NotImplementedError

    # -- map ----------------------------------------------------------------

    def _map(self, map_future: _FutureT, futures: List[Future[Any]],
             results: MapResults[Any]) -> _FutureT:
        """Wire *map_future* to resolve with *results* once any chunk is done."""
        if not futures:
            map_future.set_result(results)
            return map_future

        def done_map(_: Future) -> None:
            if not map_future.done():
                try:
                    map_future.set_result(results)
                except InvalidStateError:
                    pass

        for future in futures:
            future.add_done_callback(done_map)
        return map_future


def schedule_chunks(schedule: Callable[..., Future], function: Callable[..., Any],
                    iterables: Iterable[Iterable[Any]], chunksize: Any,
                    chunk_runner: Callable[..., Any] = run_chunk,
                    **extra: Any) -> List[Future]:
    """Split *iterables* in chunks and schedule one call per chunk."""
    if not callable(function):
        raise TypeError("function must be callable, not %s" % type(function).__name__)
    if not iterables:
        raise TypeError("map() requires at least one iterable")
    chunksize = check_chunksize(chunksize)
    return [schedule(chunk_runner, args=(function, chunk), **extra)
            for chunk in iter_chunks(chunksize, tuple(iterables))]
