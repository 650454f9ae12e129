"""mypy over pebble: typed uses pass, misuses fail where marked, the package checks clean.

mypy runs from the repository root with site-packages hidden, so the
``pebble`` it checks against is the source tree (with ``_pebble.pyi`` and
``py.typed``), never an installed copy.
"""

import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
TYPING_DIR = Path(__file__).resolve().parent / "typing"
CONFIG = TYPING_DIR / "mypy.ini"
USAGE = TYPING_DIR / "typed_usage.py"
ERRORS = TYPING_DIR / "typed_errors.py"

# How the usage files are checked; the package itself gets the lighter PACKAGE.
STRICT = ("--strict", "--warn-unreachable")
PACKAGE = ("--check-untyped-defs", "--disallow-incomplete-defs", "--warn-unused-ignores",
           "--warn-redundant-casts", "--strict-equality", "--extra-checks")

# Errors of the package that are known and tolerated: (file, message fragment).
KNOWN_PACKAGE_ERRORS: set = set()

MESSAGE = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+): (?P<severity>error|note): "
                     r"(?P<message>.*)$")
EXPECTED = re.compile(r"#\s*E:\s*(?P<fragment>.+?)\s*$")
RESOLVED = re.compile(r"(?P<path>\S+__init__\.pyi?) \(pebble\)$")


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache shared by this module's runs, outside the repository."""
    return tmp_path_factory.mktemp("mypy-cache")


def run_mypy(cache: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    """Run mypy with the typing tests' configuration from the repository root."""
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.fail("mypy is not installed: install the test extra (pip install '.[test]')")
    env = {key: value for key, value in os.environ.items()
           if key not in ("MYPYPATH", "PYTHONPATH")}
    command = [sys.executable, "-m", "mypy", "--config-file", str(CONFIG),
               "--cache-dir", str(cache), "--no-color-output", "--no-pretty",
               "--no-error-summary", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=280)


def reported_errors(output: str) -> List[Tuple[Path, int, str]]:
    """The errors in mypy's *output*: (resolved path, line, message)."""
    errors = []
    for line in output.splitlines():
        match = MESSAGE.match(line)
        if match and match["severity"] == "error":
            errors.append(((ROOT / match["path"]).resolve(), int(match["line"]),
                           match["message"]))
    return errors


def expected_errors(path: Path) -> Dict[int, str]:
    """The fragments of the ``# E: <fragment>`` comments of *path*, by line."""
    marks = {}
    with path.open("rb") as source:
        for token in tokenize.tokenize(source.readline):
            if token.type == tokenize.COMMENT:
                match = EXPECTED.match(token.string)
                if match:
                    marks[token.start[0]] = match["fragment"]
    return marks


@pytest.mark.timeout(300)
@pytest.mark.parametrize("python_version", ["3.10", "3.11"])
def test_typed_usage_passes_strict_mypy(mypy_cache: Path, python_version: str) -> None:
    result = run_mypy(mypy_cache, *STRICT, "--python-version", python_version, "--verbose",
                      str(USAGE.relative_to(ROOT)))
    log = result.stderr.splitlines()
    report = "\n".join([result.stdout] + [line for line in log
                                          if not line.startswith(("LOG:", "TRACE:"))])
    assert result.returncode == 0, "mypy rejected typed_usage.py:\n" + report
    assert result.stdout.strip() == "", report
    resolved = {match["path"] for match in map(RESOLVED.search, log) if match}
    assert resolved, "mypy did not say where it found pebble:\n" + result.stderr[-5000:]
    assert {(ROOT / path).resolve() for path in resolved} == {ROOT / "pebble" / "__init__.py"}


@pytest.mark.timeout(300)
def test_typed_errors_fail_where_marked(mypy_cache: Path) -> None:
    result = run_mypy(mypy_cache, *STRICT, str(ERRORS.relative_to(ROOT)))
    assert result.returncode == 1, "mypy did not fail:\n" + result.stdout + result.stderr
    found: Dict[int, List[str]] = {}
    for path, line, message in reported_errors(result.stdout):
        assert path == ERRORS, "error outside typed_errors.py: %s:%d: %s" % (path, line, message)
        found.setdefault(line, []).append(message)
    expected = expected_errors(ERRORS)
    assert len(expected) >= 40
    problems = []
    for line, fragment in sorted(expected.items()):
        if not any(fragment in message for message in found.get(line, [])):
            problems.append("typed_errors.py:%d: expected an error containing %r, got %r"
                            % (line, fragment, found.get(line, [])))
    for line, messages in sorted(found.items()):
        if line not in expected:
            problems.append("typed_errors.py:%d: unexpected errors %r" % (line, messages))
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(300)
def test_package_passes_mypy(mypy_cache: Path) -> None:
    result = run_mypy(mypy_cache, *PACKAGE, "-p", "pebble")
    errors = reported_errors(result.stdout)
    assert result.returncode == (1 if errors else 0), result.stdout + result.stderr
    unexpected = ["%s:%d: %s" % (path.relative_to(ROOT), line, message)
                  for path, line, message in errors
                  if not any(path == ROOT / known_path and fragment in message
                             for known_path, fragment in KNOWN_PACKAGE_ERRORS)]
    assert not unexpected, "\n".join(unexpected)
