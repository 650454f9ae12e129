"""Shared test setup.

* The tests directory is importable here and in worker processes (spawn
  and forkserver workers import task functions by module name).
* ``--soak`` runs the long soak tests (marked ``soak``) at full size.
"""

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


def pytest_addoption(parser):
    parser.addoption("--soak", action="store_true", default=False,
                     help="run the soak test at full size (three million tasks)")


@pytest.fixture(scope="session")
def tests_dir_importable() -> str:
    """The tests directory, importable by this process and by spawned children."""
    _add_tests_dir_to_paths()
    return TESTS_DIR


@pytest.fixture(scope="session")
def soak(request) -> bool:
    """True when the full soak was asked for with --soak."""
    return request.config.getoption("--soak")
