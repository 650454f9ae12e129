"""Thread and process pools."""

from pebble.futures import MapFuture, ProcessMapFuture
from pebble.pool.process import ProcessPool
from pebble.pool.thread import ThreadPool

__all__ = ["ThreadPool", "ProcessPool", "MapFuture", "ProcessMapFuture"]
