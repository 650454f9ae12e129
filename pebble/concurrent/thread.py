"""``@concurrent.thread``: run a function in a thread, get a Future."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, ParamSpec, TypeVar, overload

from pebble._decorate import decorate, update_wrapper
from pebble._thread_call import THREAD_DEFAULTS, check_thread_params, thread_launcher

if TYPE_CHECKING:
    from pebble.pool.thread import ThreadPool

__all__ = ["thread"]

P = ParamSpec("P")
R = TypeVar("R")


def _wrap(function: Callable[..., Any], params: Dict[str, Any]) -> Callable[..., Future[Any]]:
    name, daemon, pool = params["name"], params["daemon"], params["pool"]

    if pool is not None:
        def wrapper(*args: Any, **kwargs: Any) -> Future[Any]:
            return pool.schedule(function, args=args, kwargs=kwargs)
    else:
        launch = thread_launcher

        def wrapper(*args: Any, **kwargs: Any) -> Future[Any]:
            future: Future[Any] = Future()
            launch().launch(future, function, args, kwargs, name, daemon)
            return future

    return update_wrapper(wrapper, function)


@overload
def thread(function: Callable[P, R], /, *, name: Optional[str] = None,
           daemon: Optional[bool] = True,
           pool: Optional[ThreadPool] = None
           ) -> Callable[P, Future[R]]: ...


@overload
def thread(*, name: Optional[str] = None, daemon: Optional[bool] = True,
           pool: Optional[ThreadPool] = None
           ) -> Callable[[Callable[P, R]], Callable[P, Future[R]]]: ...


def thread(*args: Any, **kwargs: Any) -> Any:
    """Run the decorated function in a separate thread on each call.

    Usable as ``@thread``, ``@thread(name=None, daemon=True, pool=None)`` or
    ``thread(function)``. Each call returns a ``concurrent.futures.Future``.
    With *pool* (a ThreadPool) the call is scheduled on that pool.
    """
    return decorate("thread", args, kwargs, THREAD_DEFAULTS, check_thread_params, _wrap)
