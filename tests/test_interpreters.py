"""The extension's declared stance on subinterpreters, where Python knows it:
supported in interpreters sharing the main GIL, refused with a per-interpreter GIL."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(sys.version_info < (3, 12),
                                reason="Py_mod_multiple_interpreters is new in 3.12")


def run(source: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(90)
def test_shared_gil_subinterpreter_runs_a_thread_pool():
    done = run('''
        import _testcapi
        code = """
        from pebble import ThreadPool
        with ThreadPool(2) as pool:
            assert pool.schedule(pow, (2, 5)).result(10) == 32
        """
        print("status", _testcapi.run_in_subinterp(code))
    ''')
    if "No module named '_testcapi'" in done.stderr:
        pytest.skip("this Python has no _testcapi")
    assert done.returncode == 0, done.stderr
    assert "status 0" in done.stdout, done.stdout + done.stderr


@pytest.mark.timeout(90)
def test_own_gil_subinterpreter_is_refused():
    done = run('''
        try:
            import _interpreters as interpreters
        except ImportError:
            import _xxsubinterpreters as interpreters
        interp = interpreters.create()
        try:
            result = interpreters.run_string(interp, "import pebble._pebble")
        except Exception as error:
            print("refused", error)
        else:
            print("refused" if result is not None else "imported", result)
    ''')
    if "No module named" in done.stderr:
        pytest.skip("this Python has no subinterpreter module")
    assert done.returncode == 0, done.stderr
    assert "refused" in done.stdout and "subinterpreters" in done.stdout, done.stdout
