"""Decorators returning ``asyncio`` futures."""

from pebble.asynchronous.thread import thread

__all__ = ["thread"]
