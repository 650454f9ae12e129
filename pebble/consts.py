"""``pebble.CONSTS``: the tuning constants Pebble exposes, kept for code that sets them.

In Pebble they tune its polling loops and its kill grace. Here nothing polls
and a killed worker gets a fixed grace between SIGTERM and SIGKILL, so the
values are kept but change nothing: setting one warns, once per name.
"""

from __future__ import annotations

import warnings
from typing import Any, Set


class Consts:
    """Pebble's internal constants, accepted for compatibility."""

    sleep_unit: float = 0.1
    """Pebble's polling period, in seconds. Nothing polls here."""
    term_timeout: float = 3
    """Pebble's grace between SIGTERM and SIGKILL, in seconds. Here it is 250 ms."""
    channel_lock_timeout: float = 60
    """Pebble's wait for its shared channel lock. Here no lock is shared."""

    _warned: Set[str] = set()

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in Consts._warned:
            Consts._warned.add(name)
            warnings.warn("pebble.CONSTS.%s has no effect: this pebble does not poll and "
                          "has no shared channel lock" % name, RuntimeWarning, stacklevel=2)
        object.__setattr__(self, name, value)


CONSTS = Consts()
