"""``@asynchronous.thread``: run a function in a thread, await an asyncio Future."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, ParamSpec, TypeVar, overload

from pebble._async_bridge import AsyncCompletion, get_loop, to_asyncio
from pebble._decorate import decorate, update_wrapper
from pebble._thread_call import THREAD_DEFAULTS, check_thread_params, thread_launcher

if TYPE_CHECKING:
    from pebble.pool.thread import ThreadPool

__all__ = ["thread"]

P = ParamSpec("P")
R = TypeVar("R")


def _wrap(function: Callable[..., Any],
          params: Dict[str, Any]) -> Callable[..., asyncio.Future[Any]]:
    name, daemon, pool = params["name"], params["daemon"], params["pool"]

    if pool is not None:
        def wrapper(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            loop = get_loop()
            return to_asyncio(pool.schedule(function, args=args, kwargs=kwargs), loop)
    else:
        launch = thread_launcher
        completion = AsyncCompletion

        def wrapper(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            loop = get_loop()
            future = loop.create_future()
            launch().launch(completion(loop, future), function, args, kwargs, name, daemon)
            return future

    return update_wrapper(wrapper, function)


@overload
def thread(function: Callable[P, R], /, *, name: Optional[str] = None,
           daemon: Optional[bool] = True,
           pool: Optional[ThreadPool] = None
           ) -> Callable[P, asyncio.Future[R]]: ...


@overload
def thread(*, name: Optional[str] = None, daemon: Optional[bool] = True,
           pool: Optional[ThreadPool] = None
           ) -> Callable[[Callable[P, R]], Callable[P, asyncio.Future[R]]]: ...


def thread(*args: Any, **kwargs: Any) -> Any:
    """Run the decorated function in a separate thread; calls return asyncio Futures.

    Usable as ``@thread``, ``@thread(name=None, daemon=True, pool=None)`` or
    ``thread(function)``. Await the returned future inside the event loop.
    """
    return decorate("thread", args, kwargs, THREAD_DEFAULTS, check_thread_params, _wrap)
