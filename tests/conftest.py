"""Make the helper modules in tests/ importable here and in worker processes."""

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


@pytest.fixture(scope="session")
def tests_dir_importable() -> str:
    """The tests directory, importable by this process and by spawned children."""
    _add_tests_dir_to_paths()
    return TESTS_DIR
