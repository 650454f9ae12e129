"""pebble: threading and multiprocessing eye-candy on a native engine."""

try:
    import pebble._pebble as _pebble  # noqa: F401 - fails early, with advice, if unbuilt
except ModuleNotFoundError as _error:  # pragma: no cover - depends on how pebble was built
    import os as _os

    _here = _os.path.dirname(_os.path.abspath(__file__))
    if _error.name != "pebble._pebble" or not _os.path.exists(
            _os.path.join(_here, _os.pardir, "setup.py")):
        raise
    raise ImportError(
        "pebble is imported from its source tree (%s), which holds no compiled "
        "extension for this Python: run 'python -m pip install .' in %s, "
        "or run from another directory" % (_here, _os.path.dirname(_here))
    ) from _error

from pebble import _process_call
from pebble import asynchronous as asynchronous
from pebble import concurrent as concurrent
from pebble._version import __version__ as __version__
from pebble.consts import CONSTS
from pebble.errors import ProcessExpired
from pebble.functions import sighandler, synchronized, waitforqueues, waitforthreads
from pebble.futures import MapFuture, ProcessFuture, ProcessMapFuture
from pebble.pool import ProcessPool, ThreadPool

_process_call.register_exit_hook()

__all__ = ["concurrent", "asynchronous", "waitforthreads", "waitforqueues",
           "synchronized", "sighandler", "ProcessFuture", "MapFuture", "ProcessMapFuture",
           "ProcessExpired", "ProcessPool", "ThreadPool", "CONSTS"]
