"""Build script for the ``pebble._pebble`` C extension.

Environment switches (no file edits needed):

* ``PEBBLE_DEBUG=1``            -O0 -g3, assertions on.
* ``PEBBLE_SANITIZE=address,undefined`` (or ``thread``) builds with sanitizers.
* ``PEBBLE_FORCE_POSIX=1``      uses the plain-POSIX platform layer
  (poll, pipe EOF, waitpid) instead of epoll/pidfd/timerfd.

A default build (none of the switches above) also leaves a copy of the
compiled extension in the source tree's ``pebble/``, as ``build_ext
--inplace`` would: ``python -m pebble`` and ``python -m pytest`` run in the
checkout put the checkout first on ``sys.path`` and then import that copy.
``PEBBLE_INPLACE=0`` turns the copy off.
"""

import os
import shutil
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))

SOURCES = [
    "csrc/module.c",
    "csrc/threadpool.c",
    "csrc/mapiter.c",
    "csrc/channel.c",
    "csrc/frame.c",
    "csrc/worker.c",
    "csrc/canceller.c",
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
    "csrc/forkcall.c",
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



class build_ext_and_copy(build_ext):
    """build_ext that also copies a default build into the source package."""

    def run(self) -> None:
        super().run()
        special = any(os.environ.get(name) for name in
                      ("PEBBLE_DEBUG", "PEBBLE_SANITIZE", "PEBBLE_FORCE_POSIX"))
        if self.inplace or special or os.environ.get("PEBBLE_INPLACE") == "0":
            return
        for ext in self.extensions:
            built = self.get_ext_fullpath(ext.name)
            target = os.path.join(HERE, self.get_ext_filename(ext.name))
            if os.path.abspath(built) != os.path.abspath(target) and os.path.isdir(
                    os.path.dirname(target)):
                try:
                    # A new file, renamed over the old: a running interpreter
                    # that mapped the old one keeps it intact.
                    shutil.copyfile(built, target + ".tmp")
                    os.replace(target + ".tmp", target)
                except OSError as error:
                    print("pebble: could not copy %s into the source tree: %s"
                          % (built, error), file=sys.stderr)


setup(
    cmdclass={"build_ext": build_ext_and_copy},
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
