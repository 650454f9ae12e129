"""Tasks of the soak test; importable by every start method."""

import os
import time


def task(i):
    """The outcome of task *i* is a function of *i* (see expected())."""
    if i % 100 == 0:
        raise ValueError(i)
    if i % 4999 == 1:
        time.sleep(10)            # scheduled with a timeout
    if i % 5003 == 2:
        os._exit(3)
    return i * 2
