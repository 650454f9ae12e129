"""ThreadPool: the policy layer over the native ThreadCore engine."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import Future
from typing import (Any, Callable, Dict, Iterable, List, Optional, ParamSpec, Sequence, Set,
                    TypeVar, Union)

from pebble._pebble import ThreadCore
from pebble.errors import attach_traceback
from pebble.futures import MapFuture
from pebble.pool.base import CLOSED, CREATED, ERROR, RUNNING_STATE, BasePool
from pebble.pool.mapping import run_chunk
from pebble.progress import ProgressCallback
from pebble.validators import (check_call, check_initializer, check_max_tasks,
                               check_max_workers, check_timeout)

__all__ = ["ThreadPool"]

P = ParamSpec("P")
R = TypeVar("R")


class ThreadPool(BasePool):
    """A pool of worker threads.

    *max_workers* threads run the scheduled calls; with *max_tasks* > 0 each
    thread is replaced after that many calls. *initializer* is called with
    *initargs* in every new worker thread; if it raises, the pool enters an
    error state: scheduling raises RuntimeError and queued calls fail.
    """

    def __init__(self, max_workers: int = multiprocessing.cpu_count(),
                 max_tasks: int = 0,
                 initializer: Optional[Callable[..., Any]] = None,
                 initargs: Sequence[Any] = ()):
        super().__init__()
        self._max_workers = check_max_workers(max_workers)
        self._max_tasks = check_max_tasks(max_tasks)
        self._initializer, self._initargs = check_initializer(initializer, initargs)
        self._core = ThreadCore()
        self._workers: Set[threading.Thread] = set()
        self._workers_lock = threading.Lock()
        # Notified when a worker leaves. join() waits on it rather than in
        # Thread.join(), which Ctrl-C can leave believing a live thread ended.
        self._worker_left = threading.Condition(self._workers_lock)
        self._left: List[threading.Thread] = []  # left the pool, maybe still ending
        self._worker_count = 0

    # -- workers -------------------------------------------------------------

    def _start(self) -> None:
        for _ in range(self._max_workers):
            self._spawn_worker()

    def _spawn_worker(self) -> None:
        with self._workers_lock:
            self._worker_count += 1
            thread = threading.Thread(target=self._worker, daemon=True,
                                      name="ThreadPool-worker-%d" % self._worker_count)
            self._workers.add(thread)
            # Started under the lock: join() must never see it in the set unstarted.
            try:
                thread.start()
            except BaseException:
                self._workers.discard(thread)
                raise

    def _worker(self) -> None:
        try:
            if self._initializer is not None:
                try:
                    self._initializer(*self._initargs)
                except BaseException as error:
                    self._fail(error)
                    return
            if self._core.work(self._max_tasks):
                with self._state_lock:
                    if self._state in (RUNNING_STATE, CLOSED):
                        self._spawn_worker()
        finally:
            with self._workers_lock:
                me = threading.current_thread()
                self._workers.discard(me)
                self._left = [t for t in self._left if t.is_alive()]
                self._left.append(me)
                self._worker_left.notify_all()

    def _fail(self, error: BaseException) -> None:
        """Enter the error state: refuse work and fail every queued call."""
        with self._state_lock:
            if self._state == ERROR:
                return
            self._error = error
            self._state = ERROR
            futures = self._core.stop()
        failure = RuntimeError("The pool initializer raised %r" % (error,))
        failure.__cause__ = error
        for future in futures:
            if future.set_running_or_notify_cancel():
                future.set_exception(failure)

    # -- public API --------------------------------------------------------

    @property
    def active(self) -> bool:
        """True while the pool runs, or is closed with work still to finish."""
        self._start_lazily()
        if self._state in (CREATED, RUNNING_STATE):
            return True
        if self._state == CLOSED:
            with self._workers_lock:
                return bool(self._workers)
        return False

    def schedule(self, function: Callable[..., R], args: Iterable[Any] = (),
                 kwargs: Optional[Dict[str, Any]] = None) -> Future[R]:
        """Schedule *function(\\*args, \\*\\*kwargs)*; return its Future."""
        self._check_pool_state()
        args, kwargs = check_call(function, args, kwargs)
        future: Future[R] = Future()
        self._core.put(future, function, args, kwargs)
        return future

    def submit(self, function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Schedule *function(\\*args, \\*\\*kwargs)* (``Executor.submit`` style)."""
        return self.schedule(function, args=args, kwargs=kwargs)

    def map(self, function: Callable[..., R], *iterables: Iterable[Any],
            chunksize: int = 1, timeout: Optional[float] = None,
            buffersize: Optional[int] = None, ordered: bool = True,
            progress: Union[bool, ProgressCallback, None] = None) -> MapFuture[R]:
        """Compute *function* over the zipped *iterables* concurrently.

        Return a MapFuture whose result iterates over the results, raising
        each element's error at its place. With *timeout*, an element not
        ready *timeout* seconds after the call raises TimeoutError.

        *buffersize* keeps at most that many chunks scheduled or waiting to
        be consumed and pulls the input only as results are consumed (by
        default the whole input is scheduled at once). With *ordered* False
        results come in completion order. *progress* is True for a progress
        bar on stderr, or a callable receiving ``(done, total)``.
        """
        self._check_pool_state()
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._map(MapFuture, self._submit_chunk, function, iterables, chunksize,
                         buffersize, ordered, progress, deadline, timeout)

    def _submit_chunk(self, function: Callable[..., Any], star: bool,
                      chunk: tuple) -> Future[Any]:
        return self.schedule(run_chunk, args=(function, chunk, attach_traceback, star))

    # -- lifecycle hooks -----------------------------------------------------

    def _close(self) -> None:
        self._core.close()

    def _stop(self) -> None:
        for future in self._core.stop():
            future.cancel()
            # No worker will take it now: wake wait() and as_completed() ourselves.
            future.set_running_or_notify_cancel()

    def _join(self, deadline: Optional[float]) -> bool:
        with self._workers_lock:
            if threading.current_thread() in self._workers:
                raise RuntimeError("join() called from a worker of the pool")
            while self._workers:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._worker_left.wait(remaining)
            leaving = list(self._left)
            self._left.clear()
        # They have left the pool; these joins only see their threads end.
        for thread in leaving:
            thread.join()
        return True
