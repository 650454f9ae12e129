"""``@concurrent.process``: run a function in a fresh process, get a ProcessFuture."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, ParamSpec, TypeVar, overload

from pebble._decorate import decorate, update_wrapper
from pebble._process_call import PROCESS_DEFAULTS, ProcessCall, check_process_params
from pebble.futures import ProcessFuture

if TYPE_CHECKING:
    from pebble.pool.process import ProcessPool

__all__ = ["process"]

P = ParamSpec("P")
R = TypeVar("R")


def _wrap(function: Callable[..., Any],
          params: Dict[str, Any]) -> Callable[..., ProcessFuture[Any]]:
    call = ProcessCall(function, params)

    def wrapper(*args: Any, **kwargs: Any) -> ProcessFuture[Any]:
        return call.launch(wrapper, args, kwargs)

    wrapper.__pebble_original__ = function  # type: ignore[attr-defined]
    return update_wrapper(wrapper, function)


@overload
def process(function: Callable[P, R], /, *, name: Optional[str] = None,
            daemon: Optional[bool] = True,
            timeout: Optional[float] = None, context: Any = None, mp_context: Any = None,
            pool: Optional[ProcessPool] = None
            ) -> Callable[P, ProcessFuture[R]]: ...


@overload
def process(*, name: Optional[str] = None, daemon: Optional[bool] = True,
            timeout: Optional[float] = None, context: Any = None, mp_context: Any = None,
            pool: Optional[ProcessPool] = None
            ) -> Callable[[Callable[P, R]], Callable[P, ProcessFuture[R]]]: ...


def process(*args: Any, **kwargs: Any) -> Any:
    """Run the decorated function in a fresh process on each call.

    Usable as ``@process``, ``@process(name=None, daemon=True, timeout=None,
    context=None, pool=None)`` or ``process(function)``; ``mp_context`` is
    accepted as an alias of ``context``. Each call returns a ProcessFuture:
    with *timeout* the process is stopped once it expires and the future
    raises TimeoutError; ``cancel()`` stops a running call; a process that
    dies raises ProcessExpired. With *pool* (a ProcessPool) the call runs in
    that pool instead.
    """
    return decorate("process", args, kwargs, PROCESS_DEFAULTS, check_process_params, _wrap)
