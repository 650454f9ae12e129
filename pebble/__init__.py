"""pebble: threading and multiprocessing eye-candy on a native engine."""

from pebble import _process_call
from pebble import asynchronous as asynchronous
from pebble import concurrent as concurrent
from pebble._version import __version__ as __version__
from pebble.errors import ProcessExpired
from pebble.functions import sighandler, synchronized, waitforqueues, waitforthreads
from pebble.futures import MapFuture, ProcessFuture, ProcessMapFuture
from pebble.pool import ProcessPool, ThreadPool

_process_call.register_exit_hook()

__all__ = ["waitforthreads", "waitforqueues", "synchronized", "sighandler",
           "ProcessFuture", "MapFuture", "ProcessMapFuture", "ProcessExpired",
           "ProcessPool", "ThreadPool"]
