"""Progress reports of a map: to a callback, a tqdm bar, or a small bar of our own."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Optional, Tuple

__all__ = ["ProgressCallback", "Progress", "make_progress", "TextBar"]

#: Receives ``(done, total)``: elements completed so far, and the number of
#: elements when known (None otherwise).
ProgressCallback = Callable[[int, Optional[int]], Any]


class Progress:
    """Serializes progress reports of one map to a callback or a bar."""

    def __init__(self, callback: ProgressCallback, close: Optional[Callable[[], Any]] = None,
                 discard: Optional[Callable[[], Any]] = None):
        self._callback = callback
        self._close = close
        self._discard = discard
        self._lock = threading.Lock()
        self._last: Tuple[int, Optional[int]] = (-1, None)
        self._closed = False

    def discard(self) -> None:
        """Remove a bar whose map failed to start."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._discard is not None:
                    self._discard()

    def update(self, done: int, total: Optional[int], finished: bool) -> None:
        """Report *done* of *total*; *finished* closes a bar."""
        with self._lock:
            if self._closed:
                return
            if (done, total) != self._last:
                self._last = (done, total)
                self._callback(done, total)
            if finished and self._close is not None:
                self._closed = True
                self._close()


def make_progress(progress: Any, total: Optional[int]) -> Optional[Progress]:
    """Build the reporter asked for by a map's *progress* argument."""
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            from tqdm import tqdm  # type: ignore[import-untyped]
        except ImportError:
            bar = TextBar(total)
            return Progress(bar.update, bar.close, bar.discard)
        return _tqdm_progress(tqdm(total=total, unit="item", dynamic_ncols=True))
    if callable(progress):
        return Progress(progress)
    raise TypeError("progress must be True, False, None or a callable taking "
                    "(done, total), not %s" % type(progress).__name__)


def _tqdm_progress(bar: Any) -> Progress:
    def update(done: int, total: Optional[int]) -> None:
        if total is not None and bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)

    def discard() -> None:
        bar.leave = False
        bar.close()

    return Progress(update, bar.close, discard)


class TextBar:
    """A small progress bar on stderr.

    On a terminal it redraws one line at most every *interval* seconds; on
    anything else it writes a plain line at most every *log_interval*
    seconds, and a last one when the map is done.
    """

    WIDTH = 30

    def __init__(self, total: Optional[int] = None, stream: Any = None,
                 interval: float = 0.1, log_interval: float = 10.0):
        self._stream = stream if stream is not None else sys.stderr
        try:
            self._tty = bool(self._stream.isatty())
        except (AttributeError, ValueError):
            self._tty = False
        self._interval = interval if self._tty else log_interval
        self._start = time.monotonic()
        self._shown = self._start
        self._done = 0
        self._total = total
        if self._tty:
            self._write("\r" + self.render(0, total))

    def render(self, done: int, total: Optional[int]) -> str:
        """The bar's text for *done* of *total* elements."""
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = "%.1f/s" % (done / elapsed)
        clock = "%d:%02d" % divmod(int(elapsed), 60)
        if total:
            fraction = min(done / total, 1.0)
            filled = int(fraction * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            return "%3d%% [%s] %d/%d %s %s" % (fraction * 100, bar, done, total, clock, rate)
        return "%d done %s %s" % (done, clock, rate)

    def update(self, done: int, total: Optional[int]) -> None:
        """Record progress; redraw when the interval has passed."""
        self._done, self._total = done, total
        now = time.monotonic()
        if now - self._shown >= self._interval:
            self._shown = now
            self._show()

    def close(self) -> None:
        """Show the final state and end the line."""
        self._show()
        if self._tty:
            self._write("\n")

    def discard(self) -> None:
        """Erase the bar from a terminal; write nothing elsewhere."""
        if self._tty:
            self._write("\r" + " " * len(self.render(self._done, self._total)) + "\r")

    def _show(self) -> None:
        text = self.render(self._done, self._total)
        self._write("\r" + text if self._tty else text + "\n")

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: stay quiet
            pass
