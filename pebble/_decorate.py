"""The decorator forms shared by ``concurrent`` and ``asynchronous``, written once."""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Dict, Set, Tuple

# (decorator, option) pairs already warned about.
_warned: Set[Tuple[str, str]] = set()


def warn_once(kind: str, option: str, why: str) -> None:
    """Warn, once per decorator and option, that an accepted option does nothing."""
    if (kind, option) not in _warned:
        _warned.add((kind, option))
        warnings.warn("%s(%s=...) has no effect: %s" % (kind, option, why),
                      RuntimeWarning, stacklevel=4)


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
    params = dict(defaults)
    for option, value in kwargs.items():
        if option in defaults:
            params[option] = value
        else:  # Pebble ignores what it does not know: so do we, saying so
            warn_once(kind, option, "it is not an option of %s()" % kind)
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
