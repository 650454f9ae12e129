"""The decorator forms shared by ``concurrent`` and ``asynchronous``, written once."""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict


def decorate(kind: str, args: tuple, kwargs: Dict[str, Any],
             defaults: Dict[str, Any], validate: Callable[[Dict[str, Any]], Dict[str, Any]],
             wrap: Callable[[Callable[..., Any], Dict[str, Any]], Callable[..., Any]]) -> Any:
    """Implement the ways a decorator can be used.

    ``@kind``, ``@kind(**params)``, ``kind(function)``, ``kind(**params)(function)``
    and ``kind(function, **params)``.
    """
    if len(args) > 1 or (args and not callable(args[0])):
        raise TypeError("%s() takes a callable or keyword arguments only, got %r"
                        % (kind, args[0] if len(args) == 1 else args))
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise TypeError("%s() got unexpected keyword arguments: %s"
                        % (kind, ", ".join(sorted(unknown))))
    params = dict(defaults)
    params.update(kwargs)
    params = validate(params)
    if args:
        return wrap(args[0], params)

    def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(function):
            raise TypeError("%s() can only decorate a callable, not %s"
                            % (kind, type(function).__name__))
        return wrap(function, params)

    return decorator


def update_wrapper(wrapper: Callable[..., Any], function: Callable[..., Any]) -> Callable[..., Any]:
    """``functools.update_wrapper`` that also works for callable objects."""
    functools.update_wrapper(wrapper, function)
    if not hasattr(wrapper, "__wrapped__"):
        wrapper.__wrapped__ = function  # type: ignore[attr-defined]
    return wrapper
