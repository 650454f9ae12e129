"""``python -m pebble``: the first thing a newcomer runs, from the checkout or elsewhere."""

import math
import pathlib
import subprocess
import sys

import pytest

from pebble.__main__ import format_figure, format_ratio, format_row

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("value, unit, expected", [
    (128000, "tasks/s", ("128k", "tasks/s")),
    (46500, "tasks/s", ("46.5k", "tasks/s")),
    (3870000, "items/s", ("3.87M", "items/s")),
    (950, "tasks/s", ("950", "tasks/s")),
    (40.1, "us", ("40.1", "us")),
    (2300, "us", ("2.30", "ms")),
    (0.31, "ms", ("310", "us")),
    (1500, "ms", ("1.50", "s")),
    (math.nan, "ms", ("-", "")),
])
def test_figures_read_without_exponents(value, unit, expected):
    assert format_figure(value, unit) == expected


def test_ratio_says_faster_or_slower():
    assert format_ratio(128000, 46500, "tasks/s") == "2.8x faster"
    assert format_ratio(40, 160, "us") == "4.0x faster"
    assert format_ratio(30, 15, "us") == "2.0x slower"
    assert format_ratio(1.0, math.nan, "ms") == ""


def test_rows_align_their_units():
    one = format_row("a", "tasks/s", 128000, 46500, "ThreadPoolExecutor")
    two = format_row("b", "tasks/s", 5460, 950, "ThreadPoolExecutor")
    assert one.index("tasks/s") == two.index("tasks/s")
    assert one.rindex("tasks/s") == two.rindex("tasks/s")
    assert "e+" not in one + two


@pytest.mark.timeout(300)
@pytest.mark.parametrize("where", ["checkout", "elsewhere"])
def test_main_job_runs(where, tmp_path):
    """The README's main job, in the checkout (first on sys.path there) and outside it."""
    cwd = ROOT if where == "checkout" else tmp_path
    if where == "checkout" and not (ROOT / "setup.py").exists():
        pytest.skip("not run from a source checkout")
    done = subprocess.run([sys.executable, "-m", "pebble", "--repeat", "1"], cwd=cwd,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ProcessPool round trip" in done.stdout
    assert "e+0" not in done.stdout
    assert "faster" in done.stdout or "slower" in done.stdout


@pytest.mark.timeout(60)
def test_checkout_without_a_build_says_what_to_run(tmp_path):
    """A source tree with no compiled extension fails with the command to run."""
    checkout = tmp_path / "checkout"
    (checkout / "pebble").mkdir(parents=True)
    (checkout / "setup.py").write_text("")
    for source in (ROOT / "pebble").glob("*.py"):
        (checkout / "pebble" / source.name).write_text(source.read_text())
    done = subprocess.run([sys.executable, "-c", "import pebble"], cwd=checkout,
                          capture_output=True, text=True, timeout=50)
    assert done.returncode != 0
    assert "python -m pip install ." in done.stderr, done.stderr
    assert str(checkout) in done.stderr
