"""The engine behind both pools' ``map``.

A :class:`MapRun` splits the input in chunks, schedules them (all at once,
or at most *buffersize* ahead of the consumer), counts completed elements
and hands the chunks to its :class:`MapIterator` in input order or in
completion order. :func:`run_chunk` computes one chunk (in a worker thread
or process), marking each failed element with a :class:`MapError`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future, TimeoutError
from functools import partial
from typing import (Any, Callable, Deque, Dict, Generic, Iterable, Iterator, List,
                    Optional, Sequence, Tuple, TypeVar)

from pebble._pebble import MapIterator, take
from pebble.progress import Progress

T = TypeVar("T")


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


def input_length(iterables: Sequence[Iterable[Any]]) -> Optional[int]:
    """The number of argument tuples zipped from *iterables*, if all have a length."""
    try:
        return min(len(iterable) for iterable in iterables)  # type: ignore[arg-type]
    except TypeError:
        return None


class MapRun(Generic[T]):
    """One map: its input, its scheduled chunks and its progress.

    *iterables* (at least one) and *chunksize* (an int >= 1) are validated
    by the caller. *submit* schedules one chunk (a tuple of argument tuples, or of single
    arguments when there is one iterable) and returns its future. With
    *buffersize* None the whole input is chunked and scheduled by the
    constructor; otherwise at most *buffersize* chunks are scheduled or
    waiting to be consumed besides the one being iterated, and the input is
    pulled as results are consumed.
    """

    def __init__(self, submit: Callable[[tuple], Future], iterables: Sequence[Iterable[Any]],
                 chunksize: int, buffersize: Optional[int] = None, ordered: bool = True,
                 deadline: Optional[float] = None, timeout: Optional[float] = None,
                 progress: Optional[Progress] = None):
        self._submit = submit
        self._buffersize = buffersize
        self._ordered = ordered
        self._deadline = deadline
        self._timeout = timeout
        self._progress = progress
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._pull_lock = threading.Lock()
        # Ordered: every scheduled, unconsumed chunk in input order.
        # Unordered: the scheduled chunks still running, and the finished
        # ones in completion order.
        self._queue: Deque[Tuple[Future, int]] = deque()
        self._running: Dict[Future, int] = {}
        # Without buffersize, every chunk future, as upstream's map exposes them.
        self._all: Optional[List[Future]] = [] if buffersize is None else None
        self._pending = 0  # scheduled chunks not done yet
        self._completed = 0  # elements of the chunks done
        self._chunks_done = 0
        self._scheduled = 0  # elements scheduled
        self._total = input_length(iterables)
        self._cancelled = False
        self._on_first: Optional[Callable[[], None]] = None
        # One iterable: its elements travel as they are, not as 1-tuples.
        elements = zip(*iterables, strict=False) if len(iterables) > 1 else iter(iterables[0])
        self._source: Optional[Iterator[tuple]] = _chunks(elements, chunksize)
        if buffersize is None:
            self._fill_eagerly()
        else:
            self._fill(buffersize)

    # -- scheduling -----------------------------------------------------------

    def _fill_eagerly(self) -> None:
        """Chunk and schedule the whole input; its errors propagate to the caller."""
        # _source stays set meanwhile: chunks finishing early do not end the map.
        source = self._source
        assert source is not None
        try:
            for chunk in source:
                self._add(self._submit(chunk), len(chunk))
        except BaseException:
            self._source = None
            self.cancel()
            raise
        self._source = None
        self._input_done()

    def _fill(self, count: int) -> None:
        """Pull and schedule up to *count* chunks; failures take the next position."""
        with self._pull_lock:
            if self._source is None:
                return
            while count > 0 and self._source is not None and not self._cancelled:
                count -= 1
                try:
                    chunk = next(self._source)
                except StopIteration:
                    self._source = None
                    break
                except Exception as error:  # the input iterable raised
                    self._source = None
                    self._add(_failed(error), 0)
                    break
                try:
                    future = self._submit(chunk)
                except Exception as error:  # the pool was closed or stopped meanwhile
                    self._source = None
                    future = _failed(error)
                self._add(future, len(chunk))
                if self._cancelled:  # cancel() may have missed it
                    future.cancel()
            if self._source is not None and not self._cancelled:
                return
            self._source = None
        self._input_done()

    def _add(self, future: Future, size: int) -> None:
        with self._lock:
            self._scheduled += size
            self._pending += 1
            if self._all is not None:
                self._all.append(future)
            if self._ordered:
                self._queue.append((future, size))
            else:
                self._running[future] = size
                self._ready.notify_all()
        future.add_done_callback(partial(self._chunk_done, size))

    def _chunk_done(self, size: int, future: Future) -> None:
        with self._lock:
            self._completed += size
            self._pending -= 1
            self._chunks_done += 1
            if not self._ordered and self._running.pop(future, None) is not None:
                self._queue.append((future, size))
                self._ready.notify()
            finished = self._source is None and self._pending == 0
            done, total = self._completed, self._total
            on_first, self._on_first = self._on_first, None
        if on_first is not None:
            on_first()
        if self._progress is not None:
            self._progress.update(done, total, finished)

    def _input_done(self) -> None:
        """The input is exhausted (or failed): the total is now known."""
        with self._lock:
            self._total = self._scheduled
            finished = self._pending == 0
            self._ready.notify_all()
            done, total = self._completed, self._total
            on_first = self._on_first if finished else None
            if finished:
                self._on_first = None
        if on_first is not None:
            on_first()
        if finished and self._progress is not None:
            self._progress.update(done, total, True)

    def notify_first(self, callback: Callable[[], None]) -> None:
        """Call *callback* once: when a chunk is done, or at once if nothing is pending."""
        with self._lock:
            if not (self._chunks_done or (self._source is None and self._pending == 0)):
                self._on_first = callback
                return
        callback()

    # -- state ------------------------------------------------------------------

    @property
    def completed(self) -> int:
        """Elements whose chunk is done (computed, failed, timed out or cancelled)."""
        return self._completed

    @property
    def total(self) -> Optional[int]:
        """The number of elements, None while unknown."""
        return self._total

    @property
    def futures(self) -> List[Future]:
        """The futures of the chunks: all of them, or with a buffersize those
        scheduled and not yet consumed."""
        with self._lock:
            if self._all is not None:
                return list(self._all)
            return [future for future, _ in self._queue] + list(self._running)

    def cancel(self) -> bool:
        """Stop pulling the input and cancel the chunks scheduled and not done.

        Return True if any chunk was cancelled or input was left unread.
        """
        with self._lock:
            self._cancelled = True
        cancelled = [future.cancel() for future in self.futures]
        unread = False
        if self._pull_lock.acquire(blocking=False):  # otherwise the puller stops
            try:
                unread = self._source is not None
                self._source = None
            finally:
                self._pull_lock.release()
            if unread:
                self._input_done()
        return unread or any(cancelled)

    def results(self) -> Iterator[T]:
        """The iterator over the results: errors are raised in place."""
        return MapIterator(self.next_values, MapError)

    # -- consumption --------------------------------------------------------------

    def next_chunk(self) -> Optional[Tuple[Future, int]]:
        """The next chunk to consume, or None when there is none left.

        In completion order, waits for a chunk to finish; a wait reaching the
        map's deadline returns a chunk still running. Consuming a chunk makes
        room for the next one of a bounded map.
        """
        while True:
            with self._lock:
                if self._ordered:
                    entry = self._queue.popleft() if self._queue else None
                else:
                    entry = self._next_finished()
            if entry is None:
                if self._source is None or self._cancelled:
                    return None
                # Another consumer took the last chunk and has not refilled yet.
                self._fill(1)
                continue
            if self._buffersize is not None and self._source is not None:
                try:
                    if self._deadline is not None and time.monotonic() >= self._deadline:
                        self._stop_pulling()
                    else:
                        self._fill(1)
                except BaseException:  # Ctrl-C while refilling: keep the chunk
                    with self._lock:
                        self._queue.appendleft(entry)
                    raise
            return entry

    def _next_finished(self) -> Optional[Tuple[Future, int]]:
        """Under the lock: the next finished chunk, waiting while some are running."""
        while not self._queue:
            if not self._running:
                return None
            if self._deadline is None:
                self._ready.wait()
            else:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    return self._running.popitem()
                self._ready.wait(remaining)
        return self._queue.popleft()

    def _stop_pulling(self) -> None:
        with self._pull_lock:
            if self._source is None:
                return
            self._source = None
        self._input_done()

    def next_values(self) -> Optional[Sequence[Any]]:
        """The values of the next chunk, None when there is none left.

        An error standing for the whole chunk comes as its only value.
        """
        entry = self.next_chunk()
        if entry is None:
            return None
        future = entry[0]
        try:
            timeout = None
            if self._deadline is not None:
                timeout = max(0.0, self._deadline - time.monotonic())
            return future.result(timeout=timeout)
        except TimeoutError as error:
            if not future.done():
                return (MapError(TimeoutError("Map timeout", self._timeout)),)
            if _raised_by(future, error):
                return (MapError(error),)
            try:  # done just as the deadline passed: its outcome stands
                return future.result(timeout=0)
            except BaseException as outcome:
                return (MapError(outcome),)
        except BaseException as error:
            if future.done() and _raised_by(future, error):
                return (MapError(error),)
            interrupted = error
        # The wait was interrupted (Ctrl-C), wherever it was: the chunk goes
        # back, so iterating again resumes with it.
        with self._lock:
            self._queue.appendleft(entry)
        raise interrupted


def _raised_by(future: Future, error: BaseException) -> bool:
    """Whether *error* is the chunk's own outcome rather than an interruption."""
    if future.cancelled():
        return isinstance(error, CancelledError)
    return future.exception(timeout=0) is error


def _chunks(elements: Iterator[Any], size: int) -> Iterator[tuple]:
    """Tuples of *size* elements; an input error comes after the partial chunk."""
    while True:
        chunk, error = take(elements, size)
        if chunk:
            yield chunk
        if error is not None:
            raise error
        if len(chunk) < size:
            return


def _failed(error: BaseException) -> Future:
    future: Future = Future()
    future.set_exception(error)
    return future
