"""``@asynchronous.process``: run a function in a fresh process, await an asyncio Future."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, ParamSpec, TypeVar, overload

from pebble._async_bridge import get_loop, to_asyncio
from pebble._decorate import decorate, update_wrapper
from pebble._process_call import PROCESS_DEFAULTS, ProcessCall, check_process_params

if TYPE_CHECKING:
    from pebble.pool.process import ProcessPool

__all__ = ["process"]

P = ParamSpec("P")
R = TypeVar("R")


def _wrap(function: Callable[..., Any],
          params: Dict[str, Any]) -> Callable[..., asyncio.Future[Any]]:
    call = ProcessCall(function, params)

    def wrapper(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        loop = get_loop()
        # Resolved through loop.call_soon_threadsafe; cancelling it kills the process.
        return to_asyncio(call.launch(wrapper, args, kwargs), loop)

    wrapper.__pebble_original__ = function  # type: ignore[attr-defined]
    return update_wrapper(wrapper, function)


@overload
def process(function: Callable[P, R], /, *, name: Optional[str] = None,
            daemon: Optional[bool] = True,
            timeout: Optional[float] = None, context: Any = None, mp_context: Any = None,
            pool: Optional[ProcessPool] = None
            ) -> Callable[P, asyncio.Future[R]]: ...


@overload
def process(*, name: Optional[str] = None, daemon: Optional[bool] = True,
            timeout: Optional[float] = None, context: Any = None, mp_context: Any = None,
            pool: Optional[ProcessPool] = None
            ) -> Callable[[Callable[P, R]], Callable[P, asyncio.Future[R]]]: ...


def process(*args: Any, **kwargs: Any) -> Any:
    """Run the decorated function in a fresh process; calls return asyncio Futures.

    Same parameters as ``pebble.concurrent.process``. Await the returned
    future in the running loop; cancelling the awaiting task kills the process.
    """
    return decorate("process", args, kwargs, PROCESS_DEFAULTS, check_process_params, _wrap)
