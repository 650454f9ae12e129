"""The examples of README.rst run as written and print what they say."""

import pathlib
import re
import subprocess
import sys

import pytest

from proctools import with_start_method

README = pathlib.Path(__file__).resolve().parent.parent / "README.rst"


def code_blocks():
    text = README.read_text()
    blocks = []
    for match in re.finditer(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text):
        lines = [line[4:] for line in match.group(1).splitlines()]
        blocks.append("\n".join(lines).strip() + "\n")
    return blocks


def expected_outputs(code):
    """The values announced in ``print(...)  # value`` comments, in order."""
    return [m.group(1).strip() for m in re.finditer(r"print\(.*\)\s{4,}# (.+)$", code, re.M)]


@pytest.mark.parametrize("code", code_blocks())
def test_readme_example(code, start_method, tmp_path):
    if "pebble.cluster" in code:
        pytest.importorskip("distributed")  # the [dask] extra (in the test extra)
    script = tmp_path / "example.py"
    script.write_text(with_start_method(code, start_method))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    for value in expected_outputs(code):
        assert value in printed, (value, printed)


def test_readme_has_examples():
    assert len(code_blocks()) >= 3
