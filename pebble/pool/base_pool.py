"""``pebble.pool.base_pool``, where Pebble keeps the pool states and map futures."""

from pebble.futures import MapFuture, ProcessMapFuture
from pebble.pool.base import PoolState as PoolStatus

__all__ = ["PoolStatus", "MapFuture", "ProcessMapFuture"]
