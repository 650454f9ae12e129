"""``@concurrent.process``: run a function in a fresh process, get a ProcessFuture."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, ParamSpec, TypeVar, overload

from pebble import _decorators
from pebble.futures import ProcessFuture
from pebble.validators import check_timeout

if TYPE_CHECKING:
    from pebble.pool.process import ProcessPool

__all__ = ["process"]

P = ParamSpec("P")
R = TypeVar("R")

_DEFAULTS = {"name": None, "daemon": True, "timeout": None, "context": None,
             "mp_context": None, "pool": None}


def _validate(params: Dict[str, Any]) -> Dict[str, Any]:
    from pebble.pool.process import ProcessPool, get_start_method
    _decorators.check_name_daemon(params)
    params["timeout"] = check_timeout(params["timeout"])
    if params["mp_context"] is not None:
        if params["context"] is not None and params["context"] is not params["mp_context"]:
            raise TypeError("pass only one of context and mp_context")
        params["context"] = params["mp_context"]
    if params["context"] is not None:
        get_start_method(params["context"])  # TypeError/ValueError for anything else
    if params["pool"] is not None and not isinstance(params["pool"], ProcessPool):
        raise TypeError("pool must be a ProcessPool, not %s" % type(params["pool"]).__name__)
    return params


def _wrap(function: Callable[..., Any],
          params: Dict[str, Any]) -> Callable[..., ProcessFuture[Any]]:
    call = _decorators.ProcessCall(function, params)

    def wrapper(*args: Any, **kwargs: Any) -> ProcessFuture[Any]:
        return call.launch(wrapper, args, kwargs)

    wrapper.__pebble_original__ = function  # type: ignore[attr-defined]
    return _decorators.update_wrapper(wrapper, function)


@overload
def process(function: Callable[P, R], /) -> Callable[P, ProcessFuture[R]]: ...


@overload
def process(*, name: Optional[str] = None, daemon: bool = True,
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
    return _decorators.decorate("process", args, kwargs, _DEFAULTS, _validate, _wrap)
