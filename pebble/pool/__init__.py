"""Thread and process pools."""

from pebble.pool.process import ProcessPool
from pebble.pool.thread import ThreadPool

__all__ = ["ProcessPool", "ThreadPool"]
