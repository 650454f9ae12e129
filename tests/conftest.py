"""Shared test setup: worker processes must be able to import the test helpers."""

import os
import sys

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

# Spawned and forkserver workers import task functions by module name.
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
_path = os.environ.get("PYTHONPATH", "")
if TESTS_DIR not in _path.split(os.pathsep):
    os.environ["PYTHONPATH"] = TESTS_DIR + (os.pathsep + _path if _path else "")
