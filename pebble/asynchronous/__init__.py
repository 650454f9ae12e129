"""Decorators returning ``asyncio`` futures."""

from pebble.asynchronous.process import process
from pebble.asynchronous.thread import thread

__all__ = ["process", "thread"]
