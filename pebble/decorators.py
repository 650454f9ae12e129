"""``pebble.decorators``, where Pebble keeps ``synchronized`` and ``sighandler``."""

from pebble.functions import sighandler, synchronized

__all__ = ["synchronized", "sighandler"]
