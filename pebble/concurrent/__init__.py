"""Decorators returning ``concurrent.futures`` futures."""

from pebble.concurrent.process import process
from pebble.concurrent.thread import thread

__all__ = ["process", "thread"]
