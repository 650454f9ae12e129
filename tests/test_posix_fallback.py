"""The plain-POSIX platform layer (poll, pipes, SIGCHLD + waitpid), forced at
build time with PEBBLE_FORCE_POSIX=1, runs the same pool scenarios."""

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

SCENARIO = textwrap.dedent('''
    import multiprocessing, os, signal, sys, time
    from concurrent.futures import CancelledError, TimeoutError
    import pebble
    from pebble import ProcessPool, ProcessExpired, concurrent

    def double(x):
        return x * 2

    def fail():
        raise ValueError("boom")

    def sleep(seconds):
        time.sleep(seconds)
        return seconds

    def die(code):
        os._exit(code)

    @concurrent.process(timeout=5, context=multiprocessing.get_context("fork"))
    def decorated(x):
        return x + 1

    def children():
        me = str(os.getpid())
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry) as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if fields[1] == me:
                    found.append(int(entry))
        return found

    if __name__ == "__main__":
        assert pebble._pebble.PLATFORM == "posix", pebble._pebble.PLATFORM
        method = sys.argv[1]
        context = multiprocessing.get_context(method)
        with ProcessPool(2, max_tasks=3, context=context) as pool:
            assert pool.schedule(double, (21,)).result(30) == 42
            assert isinstance(pool.schedule(fail).exception(30), ValueError)
            start = time.monotonic()
            error = pool.schedule(sleep, (10,), timeout=0.2).exception(30)
            assert isinstance(error, TimeoutError) and error.args == ("Task timeout", 0.2), error
            assert time.monotonic() - start < 5
            error = pool.schedule(die, (3,)).exception(30)
            assert isinstance(error, ProcessExpired) and error.exitcode == 3, error
            running = pool.schedule(sleep, (10,))
            while not running.running():
                time.sleep(0.01)
            assert running.cancel()
            results = pool.map(double, range(100), chunksize=7).result()
            assert list(results) == [x * 2 for x in range(100)]
        pool = ProcessPool(1, context=context)
        queued = [pool.schedule(sleep, (10,)) for _ in range(3)]
        time.sleep(0.2)
        pool.stop()
        pool.join(10)
        for future in queued:
            try:
                future.result(0)
            except CancelledError:
                pass
            else:
                raise AssertionError("not cancelled")
        deadline = time.monotonic() + 5
        while children() and time.monotonic() < deadline:
            time.sleep(0.05)
        print("children left:", children())
        if method == "fork":
            assert decorated(1).result(30) == 2
        print("ok")
''')


@pytest.fixture(scope="module")
def posix_build(tmp_path_factory):
    if not (ROOT / "setup.py").exists():
        pytest.skip("needs the source tree to build the POSIX variant")
    out = tmp_path_factory.mktemp("posix")
    env = dict(os.environ, PEBBLE_FORCE_POSIX="1")
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(out / "lib"),
         "--build-temp", str(out / "tmp"), "--force"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    package = out / "lib" / "pebble"
    for source in (ROOT / "pebble").rglob("*.py"):
        target = package / source.relative_to(ROOT / "pebble")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    (out / "scenario.py").write_text(SCENARIO)
    return out


@pytest.mark.timeout(600)
def test_posix_platform_layer(posix_build, start_method):
    env = dict(os.environ, PYTHONPATH=str(posix_build / "lib"))
    done = subprocess.run([sys.executable, str(posix_build / "scenario.py"), start_method],
                          cwd=posix_build, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "children left: []" in done.stdout, done.stdout
    assert done.stdout.strip().endswith("ok")
