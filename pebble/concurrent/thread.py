"""``@concurrent.thread``: run a function in a thread, get a Future."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, ParamSpec, TypeVar, overload

from pebble import _decorators

if TYPE_CHECKING:
    from pebble.pool.thread import ThreadPool

__all__ = ["thread"]

P = ParamSpec("P")
R = TypeVar("R")

_DEFAULTS = {"name": None, "daemon": True, "pool": None}


def _validate(params: Dict[str, Any]) -> Dict[str, Any]:
    from pebble.pool.thread import ThreadPool
    _decorators.check_name_daemon(params)
    if params["pool"] is not None and not isinstance(params["pool"], ThreadPool):
        raise TypeError("pool must be a ThreadPool, not %s" % type(params["pool"]).__name__)
    return params


def _wrap(function: Callable[..., Any], params: Dict[str, Any]) -> Callable[..., Future[Any]]:
    name, daemon, pool = params["name"], params["daemon"], params["pool"]

    if pool is not None:
        def wrapper(*args: Any, **kwargs: Any) -> Future[Any]:
            return pool.schedule(function, args=args, kwargs=kwargs)
    else:
        launch = _decorators.thread_launcher

        def wrapper(*args: Any, **kwargs: Any) -> Future[Any]:
            future: Future[Any] = Future()
            launch().launch(future, function, args, kwargs, name, daemon)
            return future

    return _decorators.update_wrapper(wrapper, function)


@overload
def thread(function: Callable[P, R], /) -> Callable[P, Future[R]]: ...


@overload
def thread(*, name: Optional[str] = None, daemon: bool = True,
           pool: Optional[ThreadPool] = None
           ) -> Callable[[Callable[P, R]], Callable[P, Future[R]]]: ...


def thread(*args: Any, **kwargs: Any) -> Any:
    """Run the decorated function in a separate thread on each call.

    Usable as ``@thread``, ``@thread(name=None, daemon=True, pool=None)`` or
    ``thread(function)``. Each call returns a ``concurrent.futures.Future``.
    With *pool* (a ThreadPool) the call is scheduled on that pool.
    """
    return _decorators.decorate("thread", args, kwargs, _DEFAULTS, _validate, _wrap)
