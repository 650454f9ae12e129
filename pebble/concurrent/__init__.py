"""Decorators returning ``concurrent.futures`` futures."""

from pebble.concurrent.thread import thread

__all__ = ["thread"]
