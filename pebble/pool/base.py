"""Policy shared by both pools: states, argument checks, joining, map."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FuturesTimeoutError
from enum import IntEnum
from functools import partial
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple, TypeVar

from pebble.pool.mapping import MapRun, input_length
from pebble.progress import make_progress
from pebble.validators import check_buffersize, check_chunksize, check_timeout

_PoolT = TypeVar("_PoolT", bound="BasePool")
_FutureT = TypeVar("_FutureT", bound="Future[Any]")


class PoolState(IntEnum):
    """Where a pool is in its life; ERROR means it broke and accepts no work."""

    CREATED = 0
    RUNNING = 1
    CLOSED = 2
    STOPPED = 3
    ERROR = 4


# The short names the pools use, importable from pebble.common as before.
CREATED = PoolState.CREATED
RUNNING_STATE = PoolState.RUNNING
CLOSED = PoolState.CLOSED
STOPPED = PoolState.STOPPED
ERROR = PoolState.ERROR


class BasePool:
    """State machine and lifecycle shared by ThreadPool and ProcessPool."""

    def __init__(self) -> None:
        self._state: PoolState = CREATED
        self._state_lock = threading.RLock()
        self._pid = os.getpid()  # a forked child inherits the object, not the workers
        self._error: Optional[BaseException] = None

    # -- lifecycle -------------------------------------------------------

    def __enter__(self: _PoolT) -> _PoolT:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
        self.join()

    def __repr__(self) -> str:
        return "<%s %s>" % (type(self).__name__, self._state.name)

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

    def _start_lazily(self) -> None:
        """Start the pool if nothing has yet (reading ``active`` starts it, as in Pebble)."""
        if self._state == CREATED:
            with self._state_lock:
                if self._state == CREATED:
                    self._start()
                    self._state = RUNNING_STATE

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
        if self._pid != os.getpid():
            return  # inherited through fork: its workers belong to the parent
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._join(deadline):
            raise FuturesTimeoutError("Workers are still running")

    def _close(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def _join(self, deadline: Optional[float]) -> bool:
        raise NotImplementedError

    # -- map ----------------------------------------------------------------

    def _map(self, future_type: Callable[[MapRun[Any]], _FutureT],
             submit_chunk: Callable[[Callable[..., Any], bool, Tuple[Any, ...]], Future[Any]],
             function: Callable[..., Any], iterables: Sequence[Iterable[Any]],
             chunksize: Any, buffersize: Any, ordered: Any, progress: Any,
             deadline: Optional[float] = None,
             timeout: Optional[float] = None) -> _FutureT:
        """Start a map; its future resolves with the results iterator once a chunk is done."""
        if not callable(function):
            raise TypeError("function must be callable, not %s" % type(function).__name__)
        if not iterables:
            raise TypeError("map() requires at least one iterable")
        chunksize = check_chunksize(chunksize)
        buffersize = check_buffersize(buffersize)
        if not isinstance(ordered, bool):
            raise TypeError("ordered must be a bool, not %s" % type(ordered).__name__)
        reporter = make_progress(progress, input_length(iterables))
        try:
            star = len(iterables) > 1
            run: MapRun[Any] = MapRun(partial(submit_chunk, function, star), iterables, chunksize,
                                 buffersize, ordered, deadline, timeout, reporter)
        except BaseException:
            if reporter is not None:
                reporter.discard()
            raise
        map_future = future_type(run)
        results = run.results()

        def resolve() -> None:
            if not map_future.done():
                try:
                    map_future.set_result(results)
                except InvalidStateError:  # cancelled meanwhile
                    pass

        run.notify_first(resolve)
        return map_future
