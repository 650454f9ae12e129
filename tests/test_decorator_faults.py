"""The fault matrix for process decorators, under every start method: each
fault reaches the call's future as the right exception, and the next call
works. (The pool side is tests/test_process_faults.py.)"""

import logging
import pickle
import signal
from concurrent.futures import TimeoutError

import pytest

import procfuncs as pf
from pebble import ProcessExpired, concurrent
from pebble.common import RemoteTraceback


def expired(code):
    def check(error):
        assert isinstance(error, ProcessExpired), repr(error)
        assert error.exitcode == code
        assert error.pid is not None
    return check


def raised(cls, remote=True):
    def check(error):
        assert isinstance(error, cls), repr(error)
        if remote:
            assert isinstance(error.__cause__, RemoteTraceback)
            assert "Traceback" in str(error.__cause__)
    return check


def unpicklable_result(error):
    assert isinstance(error, (TypeError, pickle.PicklingError, AttributeError)), repr(error)


def exception_text_kept(error):
    assert "could not be sent back" in str(error) or isinstance(error, pf.UnpicklableError)
    assert "UnpicklableError" in str(error.__cause__) or "UnpicklableError" in str(error)


ROWS = {
    "argument refuses pickling": (pf.consume, (pf.RefusesPickling(),), {},
                                  raised(pf.PickleRefused, remote=False)),
    "argument fails to load": (pf.consume, (pf.FailsUnpickling(),), {}, raised(ValueError)),
    "argument kills the loader": (pf.consume, (pf.KillsUnpickling(),), {}, expired(7)),
    "task raises": (pf.raise_custom, ("boom",), {}, raised(pf.CustomError)),
    "task raises SystemExit": (pf.raise_system_exit, (3,), {}, raised(SystemExit)),
    "task raises BaseException": (pf.raise_base_exception, ("x",), {},
                                  raised(pf.CustomBaseException)),
    "task raises a frozen error": (pf.raise_frozen, (4,), {}, raised(pf.FrozenError)),
    "os._exit(0)": (pf.exit_process, (0,), {}, expired(0)),
    "os._exit(5)": (pf.exit_process, (5,), {}, expired(5)),
    "SIGKILL": (pf.kill_self, (signal.SIGKILL,), {}, expired(-signal.SIGKILL)),
    "segfault": (pf.segfault, (), {}, expired(-signal.SIGSEGV)),
    "result refuses pickling": (pf.return_lock, (), {}, unpicklable_result),
    "result fails to load": (pf.return_fails_unpickling, ("no",), {}, raised(ValueError, False)),
    "exception cannot be pickled": (pf.raise_unpicklable, ("zap",), {}, exception_text_kept),
}


def assert_works(context):
    assert concurrent.process(context=context)(pf.add)(2, b=3).result(timeout=60) == 5


# Under fork the call runs in a fork of the caller: its arguments are not
# pickled, so these rows are no fault there (as on Pebble).
INHERITED = {"argument refuses pickling", "argument fails to load", "argument kills the loader"}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_fault(context, row):
    function, args, kwargs, check = ROWS[row]
    future = concurrent.process(context=context)(function)(*args, **kwargs)
    if row in INHERITED and context.get_start_method() == "fork":
        assert future.result(timeout=60) == "consumed"
    else:
        check(future.exception(timeout=60))
    assert_works(context)


def test_timeout_ignoring_sigterm(context):
    future = concurrent.process(timeout=0.2, context=context)(pf.ignore_sigterm_sleep)(30)
    error = future.exception(timeout=60)
    assert isinstance(error, TimeoutError) and error.args == ("Task timeout", 0.2)
    assert_works(context)


def test_done_callback_raising_is_logged(context, caplog):
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        future = concurrent.process(context=context)(pf.add)(1)
        future.add_done_callback(pf.callback_raises)
        assert future.result(timeout=60) == 1
        assert_works(context)
    assert any("exception calling callback" in r.getMessage() for r in caplog.records)
