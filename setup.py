"""Build script for the ``pebble._pebble`` C extension.

Environment switches (no file edits needed):

* ``PEBBLE_DEBUG=1``            -O0 -g3, assertions on.
* ``PEBBLE_SANITIZE=address,undefined`` (or ``thread``) builds with sanitizers.
* ``PEBBLE_FORCE_POSIX=1``      uses the plain-POSIX platform layer
  (poll, pipe EOF, waitpid) instead of epoll/pidfd/timerfd.
"""

import os
import sys

from setuptools import Extension, setup

SOURCES = [
    "csrc/module.c",
    "csrc/threadpool.c",
    "csrc/mapiter.c",
    "csrc/channel.c",
    "csrc/frame.c",
    "csrc/worker.c",
    "csrc/launcher.c",
    "csrc/procpool.c",
    "csrc/tasktable.c",
    "csrc/block.c",
    "csrc/complete.c",
    "csrc/sched.c",
    "csrc/lifecycle.c",
    "csrc/ioloop.c",
    "csrc/platform_linux.c",
    "csrc/platform_posix.c",
    "csrc/reaper.c",
]

extra_compile_args = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                      "-Wno-missing-field-initializers", "-fvisibility=hidden"]
extra_link_args = []
define_macros = [("_GNU_SOURCE", "1")]
undef_macros = []

if os.environ.get("PEBBLE_DEBUG") == "1":
    extra_compile_args += ["-O0", "-g3"]
    undef_macros.append("NDEBUG")
    define_macros.append(("PEBBLE_DEBUG", "1"))
else:
    extra_compile_args += ["-O2"]

sanitize = os.environ.get("PEBBLE_SANITIZE")
if sanitize:
    flags = ["-fsanitize=" + sanitize, "-fno-omit-frame-pointer", "-g"]
    if "undefined" in sanitize:
        flags.append("-fno-sanitize-recover=undefined")
    extra_compile_args += flags
    extra_link_args += flags

if os.environ.get("PEBBLE_FORCE_POSIX") == "1" or not sys.platform.startswith("linux"):
    define_macros.append(("PEBBLE_FORCE_POSIX", "1"))

setup(
    ext_modules=[
        Extension(
            "pebble._pebble",
            sources=SOURCES,
            depends=["csrc/pebble.h", "csrc/procpool.h", "csrc/frame.h"],
            define_macros=define_macros,
            undef_macros=undef_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ]
)
