"""Policy shared by both pools: states, argument checks, joining, map."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FuturesTimeoutError
from enum import IntEnum
from functools import partial
from typing import (Any, Callable, Dict, Iterable, Optional, ParamSpec, Sequence, Tuple, TypeVar,
                    Union)

from pebble import _worker
from pebble.futures import ProcessFuture, ProcessMapFuture
from pebble.pool.mapping import MapRun, input_length
from pebble.progress import ProgressCallback, make_progress
from pebble.validators import check_buffersize, check_chunksize, check_timeout

_PoolT = TypeVar("_PoolT", bound="BasePool")
_FutureT = TypeVar("_FutureT", bound="Future[Any]")
P = ParamSpec("P")
R = TypeVar("R")


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


def failed_future(error: BaseException) -> ProcessFuture[Any]:
    """A future holding the error raised while preparing its task."""
    future: ProcessFuture[Any] = ProcessFuture()
    future.set_exception(error)
    return future


def stop_all(pools: Iterable[BasePool], timeout: float) -> None:
    """Stop and join every pool in *pools*, ignoring their errors (at interpreter exit)."""
    for pool in list(pools):
        try:
            pool.stop()
            pool.join(timeout)
        except BaseException:
            pass


class TimedPool(BasePool):
    """A pool whose tasks take a timeout: ``submit()`` and ``map()`` over ``schedule()``."""

    def schedule(self, function: Callable[..., R], args: Iterable[Any] = (),
                 kwargs: Optional[Dict[str, Any]] = None,
                 timeout: Optional[float] = None) -> ProcessFuture[R]:
        raise NotImplementedError

    def _pool_error(self) -> Optional[BaseException]:
        """The error that broke the pool, if it broke."""
        return self._error

    def submit(self, function: Callable[P, R], timeout: Optional[float],
               /, *args: P.args, **kwargs: P.kwargs) -> ProcessFuture[R]:
        """Schedule *function(\\*args, \\*\\*kwargs)* with *timeout* (``Executor.submit`` style)."""
        return self.schedule(function, args=args, kwargs=kwargs, timeout=timeout)

    def map(self, function: Callable[..., R], *iterables: Iterable[Any],
            chunksize: int = 1, timeout: Optional[float] = None,
            buffersize: Optional[int] = None, ordered: bool = True,
            progress: Union[bool, ProgressCallback, None] = None) -> ProcessMapFuture[R]:
        """Compute *function* over the zipped *iterables* in the pool's processes.

        Return a ProcessMapFuture whose result iterates over the results,
        raising each element's error at its place. *timeout* applies to each
        chunk: a chunk running longer is stopped and raises TimeoutError
        when reached.

        *buffersize* keeps at most that many chunks scheduled or waiting to
        be consumed and pulls the input only as results are consumed (by
        default the whole input is scheduled at once). With *ordered* False
        results come in completion order. *progress* is True for a progress
        bar on stderr, or a callable receiving ``(done, total)``.
        """
        self._check_pool_state()
        timeout = check_timeout(timeout) or None  # 0 means no timeout, as in Pebble
        return self._map(ProcessMapFuture, partial(self._submit_chunk, timeout), function,
                         iterables, chunksize, buffersize, ordered, progress)

    def _submit_chunk(self, timeout: Optional[float], function: Callable[..., Any],
                      star: bool, chunk: tuple) -> ProcessFuture[Any]:
        args = (function, chunk) if star else (function, chunk, False)
        try:
            return self.schedule(_worker.process_chunk, args=args, timeout=timeout)
        except RuntimeError:
            # The pool broke while the map was still taking its input: the
            # chunks it takes afterwards fail with the pool's error, as the
            # chunks scheduled before the break do.
            error = self._pool_error()
            if error is None:
                raise
            return failed_future(error)
