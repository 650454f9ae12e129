"""Argument checks shared by the pools and the decorators."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple, Union


def check_chunksize(chunksize: Any) -> int:
    """Validate a map chunksize and return it as an int (floats are rounded up)."""
    if isinstance(chunksize, bool) or not isinstance(chunksize, (int, float)):
        raise TypeError("chunksize must be a number, not %s" % type(chunksize).__name__)
    if chunksize < 1 or (isinstance(chunksize, float) and not math.isfinite(chunksize)):
        raise ValueError("chunksize must be >= 1")
    return int(math.ceil(chunksize))



def check_buffersize(buffersize: Any) -> Optional[int]:
    """Validate a map buffersize (None means unbounded)."""
    if buffersize is None:
        return None
    if isinstance(buffersize, bool) or not isinstance(buffersize, int):
        raise TypeError("buffersize must be an int or None, not %s"
                        % type(buffersize).__name__)
    if buffersize < 1:
        raise ValueError("buffersize must be >= 1")
    return buffersize

def check_timeout(timeout: Any, name: str = "timeout",
                  kinds: Union[type, Tuple[type, ...]] = (int, float)) -> Optional[float]:
    """Validate an optional timeout in seconds: None, or a non-negative number.

    Returns it as a float (an infinite timeout stays infinite). What counts
    as a number is *kinds*; bools never do.
    """
    if timeout is None:
        return None
    number: Any = timeout  # compared below as it came, not as isinstance() narrows it
    if isinstance(number, bool) or not isinstance(number, kinds):
        raise TypeError("%s must be a number or None, not %s" % (name, type(timeout).__name__))
    if timeout != timeout or timeout < 0:
        raise ValueError("%s must be a non-negative number" % name)
    return float(timeout)


def check_max_workers(max_workers: Any) -> int:
    """Validate a pool's worker count."""
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError("max_workers must be an int, not %s" % type(max_workers).__name__)
    if max_workers < 1:
        raise ValueError("max_workers must be >= 1")
    return max_workers


def check_max_tasks(max_tasks: Any) -> int:
    """Validate a pool's per-worker task limit (0 means no limit)."""
    if isinstance(max_tasks, bool) or not isinstance(max_tasks, int):
        raise TypeError("max_tasks must be an int, not %s" % type(max_tasks).__name__)
    if max_tasks < 0:
        raise ValueError("max_tasks must be >= 0")
    return max_tasks


def check_initializer(initializer: Any, initargs: Any) -> Tuple[Any, tuple]:
    """Validate a pool initializer and its arguments."""
    if initializer is not None and not callable(initializer):
        raise TypeError("initializer must be callable or None")
    if initargs is None:
        initargs = ()
    try:
        initargs = tuple(initargs)
    except TypeError:
        raise TypeError("initargs must be an iterable") from None
    return initializer, initargs


def check_call(function: Any, args: Any, kwargs: Any) -> Tuple[tuple, dict]:
    """Validate a scheduled call and normalize its arguments."""
    if not callable(function):
        raise TypeError("function must be callable, not %s" % type(function).__name__)
    if args is None:
        args = ()
    elif not isinstance(args, tuple):
        if not hasattr(args, "__iter__"):
            raise TypeError("args must be a sequence, not %s" % type(args).__name__)
        args = tuple(args)
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, dict):
        try:
            kwargs = dict(kwargs)
        except (TypeError, ValueError):
            raise TypeError("kwargs must be a mapping, not %s" % type(kwargs).__name__) from None
    return args, kwargs


def check_name_daemon(params: Dict[str, Any]) -> None:
    """Validate the ``name`` and ``daemon`` decorator parameters."""
    if params["name"] is not None and not isinstance(params["name"], str):
        raise TypeError("name must be a string or None, not %s"
                        % type(params["name"]).__name__)
    if params["daemon"] is not None and not isinstance(params["daemon"], bool):
        raise TypeError("daemon must be a bool or None, not %s"
                        % type(params["daemon"]).__name__)
