"""Shared test setup.

* The tests directory is importable here and in worker processes (spawn
  and forkserver workers import task functions by module name).
* ``start_method`` and ``context`` run a test under each start method,
  named explicitly (never the interpreter's default, which changes with
  the Python version); ``cheap_start_method`` skips spawn.
* ``--soak`` runs the long soak tests (marked ``soak``) at full size.
"""

import multiprocessing
import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def _add_tests_dir_to_paths() -> None:
    if TESTS_DIR not in sys.path:
        sys.path.insert(0, TESTS_DIR)
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if TESTS_DIR not in entries:
        os.environ["PYTHONPATH"] = os.pathsep.join([TESTS_DIR] + entries)


# Before any test module imports a helper module, and before any worker starts.
_add_tests_dir_to_paths()

from proctools import CHEAP_START_METHODS, START_METHODS  # noqa: E402  (needs the path above)


def pytest_addoption(parser):
    parser.addoption("--soak", action="store_true", default=False,
                     help="run the soak tests at full size (three million tasks, "
                          "the randomized checker for --soak-minutes)")
    parser.addoption("--soak-minutes", type=float, default=30.0,
                     help="how long the randomized checker runs under --soak")


@pytest.fixture(scope="session")
def tests_dir_importable() -> str:
    """The tests directory, importable by this process and by spawned children."""
    _add_tests_dir_to_paths()
    return TESTS_DIR


@pytest.fixture(scope="session")
def soak(request) -> bool:
    """True when the full soak was asked for with --soak."""
    return request.config.getoption("--soak")


@pytest.fixture(params=START_METHODS)
def start_method(request) -> str:
    """Each start method, by name."""
    return request.param


@pytest.fixture(params=CHEAP_START_METHODS)
def cheap_start_method(request) -> str:
    """fork and forkserver, by name: for tests too costly to repeat under spawn."""
    return request.param


@pytest.fixture
def context(start_method):
    """The multiprocessing context of each start method."""
    return multiprocessing.get_context(start_method)


@pytest.fixture
def cheap_context(cheap_start_method):
    """The multiprocessing context of fork and forkserver."""
    return multiprocessing.get_context(cheap_start_method)
