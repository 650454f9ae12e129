"""Stand-in for the unstable third party library of the documentation examples.

``unstable_function(arg, kwarg=0)`` misbehaves as asked by *arg*: "hang"
sleeps past any timeout, "crash" exits abruptly with code 3, "raise" raises
RuntimeError; anything else returns ``arg + kwarg``.
"""

import os
import time


def unstable_function(arg, kwarg=0):
    if arg == "hang":
        time.sleep(60)
    elif arg == "crash":
        os._exit(3)
    elif arg == "raise":
        raise RuntimeError("unstable failure")
    return arg + kwarg
