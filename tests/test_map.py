"""map() beyond upstream: buffersize (bounded, lazy), ordered=False, progress."""

import io
import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import CancelledError, TimeoutError

import pytest

import procfuncs as pf
from pebble import MapFuture, ProcessMapFuture, ProcessPool, ThreadPool
from pebble.progress import TextBar
from proctools import SANITIZED, wait_until

WAIT = 30


@pytest.fixture(params=["thread", "process"])
def kind(request):
    return request.param


def make(kind, workers=2):
    if kind == "thread":
        return ThreadPool(max_workers=workers)
    return ProcessPool(max_workers=workers, context=multiprocessing.get_context("fork"))


@pytest.fixture
def pool(kind):
    pool = make(kind)
    yield pool
    pool.stop()
    pool.join(10)


class Counted:
    """An iterable counting how many elements were pulled from it."""

    def __init__(self, iterable):
        self._iterator = iter(iterable)
        self.pulled = 0
        self.lock = threading.Lock()

    def __iter__(self):
        return self

    def __next__(self):
        value = next(self._iterator)
        with self.lock:
            self.pulled += 1
        return value


def slow_input(count, every, pause=0.01):
    """range(count), pausing every *every* elements."""
    for value in range(count):
        if value % every == 0:
            time.sleep(pause)
        yield value


INPUT_BROKE = ValueError("input broke")


def failing_input(good, error=INPUT_BROKE):
    yield from range(good)
    raise error


# -- buffersize ---------------------------------------------------------------------


def test_default_map_consumes_input_at_once(pool):
    source = Counted(range(1000))
    future = pool.map(pf.square, source, chunksize=10)
    assert source.pulled == 1000
    assert list(future.result(WAIT)) == [x * x for x in range(1000)]


def test_default_map_survives_close_and_join_before_iteration(pool):
    future = pool.map(pf.square, range(200), chunksize=7)
    pool.close()
    pool.join(WAIT)
    assert list(future.result(0)) == [x * x for x in range(200)]


def test_buffersize_pulls_input_only_as_results_are_consumed(pool):
    source = Counted(itertools.count())
    future = pool.map(pf.square, source, chunksize=10, buffersize=3)
    assert source.pulled == 30
    results = future.result(WAIT)
    time.sleep(0.1)
    assert source.pulled == 30  # finished chunks do not pull more by themselves
    for i in range(1000):
        assert next(results) == i * i
        consumed_chunks = i // 10 + 1
        # The buffer, plus the chunk being iterated.
        assert source.pulled <= (consumed_chunks + 3) * 10
        assert len(future.futures) <= 3
    assert future.cancel() is True
    # Then it ends: the rest of the infinite input is dropped.
    assert len(list(_drain(results))) <= 40


def test_buffersize_results_match_eager(pool):
    eager = list(pool.map(pf.add, range(500), range(500, 1000), chunksize=7).result(WAIT))
    lazy = list(pool.map(pf.add, iter(range(500)), range(500, 1000),
                         chunksize=7, buffersize=2).result(WAIT))
    assert lazy == eager == [2 * x + 500 for x in range(500)]


@pytest.mark.parametrize("buffersize", [1, 2, 64])
def test_buffersize_sizes(pool, buffersize):
    future = pool.map(pf.square, (x for x in range(300)), chunksize=4, buffersize=buffersize)
    assert list(future.result(WAIT)) == [x * x for x in range(300)]
    assert future.completed == future.total == 300


def test_buffersize_empty_input_resolves_at_once(pool):
    future = pool.map(pf.square, iter(()), buffersize=4)
    assert list(future.result(WAIT)) == []
    assert future.total == 0


def test_buffersize_keeps_per_element_errors(pool):
    future = pool.map(pf.fail_on, range(20), itertools.repeat({3, 11}),
                      chunksize=4, buffersize=2)
    results, errors = [], []
    iterator = future.result(WAIT)
    while True:
        try:
            results.append(next(iterator))
        except StopIteration:
            break
        except ValueError as error:
            errors.append(str(error))
    assert results == [x for x in range(20) if x not in (3, 11)]
    assert errors == ["bad element 3", "bad element 11"]


def test_input_error_surfaces_at_its_position(pool):
    future = pool.map(pf.square, failing_input(25), chunksize=10, buffersize=2)
    iterator = future.result(WAIT)
    values = [next(iterator) for _ in range(25)]
    assert values == [x * x for x in range(25)]  # the partial chunk before the error runs
    with pytest.raises(ValueError, match="input broke"):
        next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)
    assert future.total == 25


def test_input_error_in_unordered_map(pool):
    future = pool.map(pf.square, failing_input(25), chunksize=10, buffersize=2,
                      ordered=False)
    outcome = list(_drain(future.result(WAIT)))
    errors = [item for item in outcome if isinstance(item, Exception)]
    assert [str(error) for error in errors] == ["input broke"]
    assert sorted(item for item in outcome if not isinstance(item, Exception)) == [
        x * x for x in range(25)]


def test_input_error_at_start(pool):
    future = pool.map(pf.square, failing_input(0, KeyError("first")), buffersize=2)
    iterator = future.result(WAIT)
    with pytest.raises(KeyError):
        next(iterator)
    assert list(iterator) == []


def test_eager_input_error_raises_from_map(pool):
    with pytest.raises(ValueError, match="input broke"):
        pool.map(pf.square, failing_input(5), chunksize=2)


def test_buffersize_map_timeout_per_chunk():
    with ProcessPool(max_workers=2, context=multiprocessing.get_context("fork")) as pool:
        future = pool.map(pf.sleep_on, range(12), itertools.repeat({5}),
                          itertools.repeat(10), chunksize=2, timeout=0.3, buffersize=2)
        iterator = future.result(WAIT)
        seen = []
        while True:
            try:
                seen.append(next(iterator))
            except StopIteration:
                break
            except TimeoutError as error:
                seen.append(("timeout", error.args[1]))
    # Elements 4 and 5 share the chunk that timed out: one error stands for it.
    assert seen == [0, 1, 2, 3, ("timeout", 0.3), 6, 7, 8, 9, 10, 11]


def test_thread_buffersize_timeout_stops_pulling():
    source = Counted(itertools.chain([0.0, 0.0], itertools.repeat(0.5)))
    with ThreadPool(max_workers=2) as pool:
        future = pool.map(time.sleep, source, chunksize=1, timeout=0.2, buffersize=2)
        iterator = future.result(WAIT)
        assert [next(iterator), next(iterator)] == [None, None]
        with pytest.raises(TimeoutError):
            next(iterator)
        pulled = source.pulled
        rest = []
        while True:  # the chunks already scheduled, then the end
            try:
                rest.append(next(iterator))
            except TimeoutError:
                rest.append("timeout")
            except StopIteration:
                break
        assert len(rest) <= 3
        assert source.pulled == pulled


def test_buffersize_cancel_before_iteration(pool):
    source = Counted(itertools.count())
    future = pool.map(pf.sleep_return, (0.05 for _ in source), chunksize=1, buffersize=4)
    assert future.cancel() is True
    time.sleep(0.2)
    pulled = source.pulled
    assert pulled <= 5
    assert source.pulled == pulled


def test_buffersize_cancel_midway_ends_iteration(pool):
    source = Counted(itertools.count())
    future = pool.map(pf.sleep_return, (0.01 for _ in source), chunksize=1, buffersize=4)
    iterator = future.result(WAIT)
    for _ in range(10):
        next(iterator)
    assert future.cancel() is True
    leftovers = 0
    for _ in range(100):
        try:
            next(iterator)
        except CancelledError:
            pass
        except StopIteration:
            break
        leftovers += 1
    else:
        pytest.fail("the cancelled map kept yielding")
    assert leftovers <= 5


def test_buffersize_pool_stop_ends_iteration(kind):
    pool = make(kind)
    try:
        future = pool.map(pf.sleep_return, (0.05 for _ in itertools.count()),
                          chunksize=1, buffersize=4)
        iterator = future.result(WAIT)
        next(iterator)
        pool.stop()
        pool.join(WAIT)
        errors = []
        for _ in range(50):
            try:
                next(iterator)
            except StopIteration:
                break
            except (CancelledError, RuntimeError) as error:
                errors.append(type(error))
        else:
            pytest.fail("iteration did not end after stop()")
        assert errors and errors[-1] is RuntimeError  # the next chunk could not be scheduled
    finally:
        pool.stop()
        pool.join(10)


def test_buffersize_close_before_iteration(pool):
    future = pool.map(pf.square, iter(range(100)), chunksize=10, buffersize=2)
    pool.close()
    pool.join(WAIT)
    iterator = future.result(WAIT)
    # The scheduled chunks ran; the rest could not be scheduled.
    values = [next(iterator) for _ in range(20)]
    assert values == [x * x for x in range(20)]
    with pytest.raises(RuntimeError, match="not active"):
        list(iterator)


def test_buffersize_process_pool_survives_crashes():
    with ProcessPool(max_workers=2, context=multiprocessing.get_context("fork")) as pool:
        future = pool.map(pf.exit_on, range(40), itertools.repeat({7, 30}),
                          chunksize=3, buffersize=2)
        outcome = []
        iterator = future.result(WAIT)
        while True:
            try:
                outcome.append(next(iterator))
            except StopIteration:
                break
            except Exception as error:
                outcome.append(type(error).__name__)
    assert outcome.count("ProcessExpired") == 2
    assert [x for x in outcome if isinstance(x, int)] == [
        x for x in range(40) if x // 3 not in (7 // 3, 30 // 3)]


@pytest.mark.parametrize("value", [0, -1])
def test_buffersize_must_be_positive(pool, value):
    with pytest.raises(ValueError):
        pool.map(pf.square, range(3), buffersize=value)


@pytest.mark.parametrize("value", ["4", 2.0, True])
def test_buffersize_must_be_an_int(pool, value):
    with pytest.raises(TypeError):
        pool.map(pf.square, range(3), buffersize=value)


def test_ordered_must_be_a_bool(pool):
    with pytest.raises(TypeError):
        pool.map(pf.square, range(3), ordered="no")


def test_progress_must_be_callable(pool):
    with pytest.raises(TypeError):
        pool.map(pf.square, range(3), progress=5)


def test_bad_map_arguments_leave_no_bar(pool, capfd):
    with pytest.raises(ValueError):
        pool.map(pf.square, range(3), chunksize=0, progress=True)
    with pytest.raises(ValueError):
        pool.map(pf.square, failing_input(3), progress=True)
    assert "3/" not in capfd.readouterr().err


def test_buffersize_on_closed_pool(pool):
    pool.close()
    with pytest.raises(RuntimeError):
        pool.map(pf.square, range(3), buffersize=2)


@pytest.mark.skipif(SANITIZED,
                    reason="a sanitizer's quarantine and shadow memory grow the RSS")
def test_buffersize_map_flat_memory(tests_dir_importable):
    """A large lazy map in a fresh interpreter keeps the parent's peak RSS flat."""
    script = textwrap.dedent("""
        import itertools, multiprocessing, resource
        from pebble import ProcessPool
        import procfuncs as pf
        if __name__ == "__main__":
            with ProcessPool(2, context=multiprocessing.get_context("fork")) as pool:
                list(pool.map(pf.identity, range(2000)).result())
                before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                count = 0
                for value in pool.map(pf.identity, range(1_500_000), chunksize=100,
                                      buffersize=16).result():
                    assert value == count
                    count += 1
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            assert count == 1_500_000
            print((peak - before) / 1024)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=90, cwd=tests_dir_importable)
    assert done.returncode == 0, done.stderr
    growth = float(done.stdout.split()[-1])
    assert growth < 20, "peak RSS grew by %.1f MiB" % growth


# -- ordered=False ---------------------------------------------------------------


def test_unordered_yields_in_completion_order(pool):
    delays = [0.6, 0.0, 0.0, 0.3]
    results = list(pool.map(pf.sleep_return, delays, range(4), ordered=False).result(WAIT))
    assert sorted(results[:2]) == [1, 2]
    assert sorted(results) == [0, 1, 2, 3]


def test_unordered_first_result_does_not_wait_for_slow_head(pool):
    future = pool.map(pf.sleep_return, [1.5] + [0.0] * 20, range(21), ordered=False)
    iterator = future.result(WAIT)
    start = time.monotonic()
    first = [next(iterator) for _ in range(20)]
    assert time.monotonic() - start < 1.0
    assert sorted(first) == list(range(1, 21))
    assert list(iterator) == [0]


@pytest.mark.parametrize("buffersize", [None, 3])
def test_unordered_gives_every_result_once(pool, buffersize):
    future = pool.map(pf.square, range(1000), chunksize=7, ordered=False,
                      buffersize=buffersize)
    assert sorted(future.result(WAIT)) == [x * x for x in range(1000)]


def test_unordered_with_buffersize_keeps_the_bound(pool):
    source = Counted(itertools.count())
    future = pool.map(pf.identity, source, chunksize=5, buffersize=2, ordered=False)
    iterator = future.result(WAIT)
    for consumed in range(1, 501):
        next(iterator)
        assert source.pulled <= ((consumed - 1) // 5 + 1 + 2) * 5 + 5
    future.cancel()


def test_unordered_errors_in_place(pool):
    future = pool.map(pf.fail_on, range(30), itertools.repeat({4, 17}), ordered=False)
    good, bad = [], 0
    iterator = future.result(WAIT)
    while True:
        try:
            good.append(next(iterator))
        except StopIteration:
            break
        except ValueError:
            bad += 1
    assert bad == 2
    assert sorted(good) == [x for x in range(30) if x not in (4, 17)]


def test_unordered_thread_timeout_from_the_call():
    with ThreadPool(max_workers=3) as pool:
        future = pool.map(time.sleep, [0.0, 2.0, 2.0, 0.0], ordered=False, timeout=0.3)
        outcome = []
        for _ in range(10):
            try:
                outcome.append(next(future.result(WAIT)))
            except TimeoutError:
                outcome.append("timeout")
            except StopIteration:
                break
        # The chunks finished in time come first; the late ones raise TimeoutError.
        assert outcome[:2] == [None, None]
        assert outcome[2:] == ["timeout", "timeout"]


def test_unordered_process_timeout_per_chunk():
    with ProcessPool(max_workers=2, context=multiprocessing.get_context("fork")) as pool:
        future = pool.map(pf.sleep_return, [10, 0, 0, 0], ordered=False, timeout=0.3)
        outcome = []
        iterator = future.result(WAIT)
        while True:
            try:
                outcome.append(next(iterator))
            except TimeoutError:
                outcome.append("timeout")
            except StopIteration:
                break
    assert outcome == [None, None, None, "timeout"]


def test_unordered_cancel(pool):
    future = pool.map(pf.sleep_return, [0.2] * 40, ordered=False)
    iterator = future.result(WAIT)
    next(iterator)
    assert future.cancel() is True
    outcome = {"value": 0, "cancelled": 0}
    for _ in range(100):
        try:
            next(iterator)
            outcome["value"] += 1
        except CancelledError:
            outcome["cancelled"] += 1
        except StopIteration:
            break
    assert outcome["cancelled"] > 0
    assert outcome["value"] + outcome["cancelled"] == 39


# -- progress ------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.calls = []
        self.threads = set()

    def __call__(self, done, total):
        self.calls.append((done, total))
        self.threads.add(threading.get_ident())


def check_reports(calls, total):
    dones = [done for done, _ in calls]
    assert dones == sorted(dones)
    assert calls[-1] == (total, total)


@pytest.mark.parametrize("buffersize", [None, 4])
def test_progress_callable_sized_input(pool, buffersize):
    recorder = Recorder()
    future = pool.map(pf.square, range(95), chunksize=10, progress=recorder,
                      buffersize=buffersize)
    list(future.result(WAIT))
    assert wait_until(lambda: recorder.calls and recorder.calls[-1][0] == 95, 5)
    check_reports(recorder.calls, 95)
    assert all(total == 95 for _, total in recorder.calls)
    assert len(recorder.calls) == 10  # one per chunk
    assert future.completed == 95 and future.total == 95


def test_progress_callable_unknown_total(pool):
    recorder = Recorder()
    future = pool.map(pf.square, (x for x in range(50)), chunksize=5, buffersize=2,
                      progress=recorder)
    list(future.result(WAIT))
    assert wait_until(lambda: recorder.calls and recorder.calls[-1][1] is not None, 5)
    assert recorder.calls[0][1] is None
    check_reports(recorder.calls, 50)


def test_progress_counts_errors_and_timeouts():
    recorder = Recorder()
    with ProcessPool(max_workers=2, context=multiprocessing.get_context("fork")) as pool:
        future = pool.map(pf.sleep_on, range(10), itertools.repeat({2}),
                          itertools.repeat(10), timeout=0.3, progress=recorder)
        assert sum(1 for _ in _drain(future.result(WAIT))) == 10
    check_reports(recorder.calls, 10)


def _drain(iterator):
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except Exception as error:
            yield error


def test_completed_without_progress(pool):
    future = pool.map(pf.sleep_on, range(6), itertools.repeat({5}),
                      itertools.repeat(0.5), chunksize=2)
    assert future.total == 6
    assert wait_until(lambda: future.completed == 4, WAIT)
    assert future.completed == 4
    list(future.result(WAIT))
    assert wait_until(lambda: future.completed == 6, WAIT)


def test_progress_callback_errors_do_not_break_the_map(pool, caplog):
    def broken(done, total):
        raise ZeroDivisionError("progress")

    future = pool.map(pf.square, range(10), chunksize=3, progress=broken)
    assert list(future.result(WAIT)) == [x * x for x in range(10)]


def test_progress_true_builtin_bar(pool, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm fails
    future = pool.map(pf.square, range(40), chunksize=4, progress=True)
    list(future.result(WAIT))
    err = stderr_until(capfd, "40/40")
    assert "100% [##############################] 40/40" in err
    assert "\r" not in err  # stderr is not a terminal here
    assert "item" not in err


def stderr_until(capfd, text, timeout=5.0):
    """What the test wrote to stderr, waiting until *text* shows up in it."""
    err = ""
    deadline = time.monotonic() + timeout
    while text not in err and time.monotonic() < deadline:
        err += capfd.readouterr().err
        time.sleep(0.02)
    return err


def test_builtin_bar_closes_once_at_the_end(pool, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    # A generator: the total is known only once the whole input is scheduled,
    # while the first chunks are already done.
    future = pool.map(pf.square, slow_input(200, every=10), chunksize=10, progress=True)
    list(future.result(WAIT))
    err = stderr_until(capfd, "200/200")
    assert err.count("\n") == 1, err
    assert "200/200" in err


def test_progress_true_uses_tqdm_when_installed(pool, capfd):
    pytest.importorskip("tqdm")
    future = pool.map(pf.square, range(40), chunksize=4, progress=True)
    list(future.result(WAIT))
    err = stderr_until(capfd, "40/40")
    assert "40/40" in err
    assert "item" in err  # tqdm's unit


def test_text_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = TextBar(10, stream=stream, interval=0.0)
    bar.update(5, 10)
    bar.close()
    text = stream.getvalue()
    assert text.startswith("\r  0% [")
    assert "\r 50% [###############---------------] 5/10" in text
    assert text.endswith("\n")
    assert text.count("\n") == 1


def test_text_bar_not_a_terminal_writes_plain_lines():
    stream = io.StringIO()
    bar = TextBar(None, stream=stream, log_interval=3600)
    for done in range(1, 100):
        bar.update(done, None)
    assert stream.getvalue() == ""  # nothing before the interval
    bar.update(100, 100)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    assert text.count("\n") == 1
    assert text.startswith("100% [") and "100/100" in text


def test_map_future_types(pool, kind):
    future = pool.map(pf.square, range(3), buffersize=1)
    assert isinstance(future, ProcessMapFuture if kind == "process" else MapFuture)
    assert list(future.result(WAIT)) == [0, 1, 4]


# -- the native helpers --------------------------------------------------------------


def test_take_keeps_items_read_before_an_error():
    from pebble._pebble import take

    assert take(iter(range(10)), 4) == ((0, 1, 2, 3), None)
    assert take(iter(range(2)), 4) == ((0, 1), None)
    assert take(iter(()), 4) == ((), None)
    items, error = take(failing_input(3), 10)
    assert items == (0, 1, 2)
    assert isinstance(error, ValueError) and error.__traceback__ is not None


def test_take_lets_keyboard_interrupt_through():
    from pebble._pebble import take

    def interrupted():
        yield 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        take(interrupted(), 5)


@pytest.mark.parametrize("args, error", [((range(3), 2), TypeError),
                                         ((iter(range(3)), -1), ValueError),
                                         ((iter(range(3)), "2"), TypeError),
                                         ((iter(range(3)),), TypeError)])
def test_take_rejects_bad_arguments(args, error):
    from pebble._pebble import take

    with pytest.raises(error):
        take(*args)


def test_map_iterator_walks_chunks_and_raises_in_place():
    from pebble._pebble import MapIterator
    from pebble.common import MapError

    def failing():
        raise KeyError("inner")

    try:
        failing()
    except KeyError as caught:
        error = caught
    chunks = iter([[1, 2], (3,), [], (x for x in (4, 5)), [MapError(error), 6]])
    iterator = MapIterator(lambda: next(chunks, None), MapError)
    assert iter(iterator) is iterator
    assert [next(iterator) for _ in range(5)] == [1, 2, 3, 4, 5]
    with pytest.raises(KeyError) as info:
        next(iterator)
    assert info.value is error
    assert "failing" in "".join(__import__("traceback").format_tb(info.value.__traceback__))
    assert list(iterator) == [6]
    assert list(iterator) == []


def test_map_iterator_propagates_fetch_errors():
    from pebble._pebble import MapIterator
    from pebble.common import MapError

    def fetch():
        raise OSError("fetch")

    with pytest.raises(OSError, match="fetch"):
        next(MapIterator(fetch, MapError))
    with pytest.raises(TypeError):
        MapIterator(5, MapError)
    with pytest.raises(TypeError):
        MapIterator(fetch, "not a type")
    with pytest.raises(TypeError, match="not an exception"):
        next(MapIterator(iter([[MapError(5)]]).__next__, MapError))


def test_map_iterator_is_collected_in_cycles():
    import gc
    import weakref

    from pebble._pebble import MapIterator
    from pebble.common import MapError

    class Holder:
        pass

    holder = Holder()
    # A default argument, not a closure: the iterator's callback keeps holder alive.
    holder.iterator = MapIterator(lambda holder=holder: [holder], MapError)
    assert next(holder.iterator) is holder
    ref = weakref.ref(holder)
    del holder
    gc.collect()
    assert ref() is None


def delayed_identity(x):
    time.sleep(0.3 if x % 4 == 0 else 0.0)
    return x


@pytest.mark.timeout(120)
@pytest.mark.parametrize("options", [{}, {"buffersize": 2}, {"ordered": False}],
                         ids=["eager", "bounded", "unordered"])
def test_ctrl_c_while_iterating_loses_nothing(pool, options):
    """KeyboardInterrupt while next() waits for a chunk; iterating again resumes there."""
    results = pool.map(delayed_identity, range(24), chunksize=2, **options).result()
    armed = [False]

    def interrupt(signum, frame):
        if armed[0]:  # only inside next(), never in the test's own bookkeeping
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    seen, interrupts = [], 0
    try:
        while True:
            timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            try:
                armed[0] = True
                value = next(results)
                armed[0] = False
            except KeyboardInterrupt:
                armed[0] = False
                interrupts += 1
                continue
            except StopIteration:
                break
            finally:
                armed[0] = False
                timer.cancel()
                timer.join()
            seen.append(value)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert interrupts > 0
    if options.get("ordered", True):
        assert seen == list(range(24))
    else:
        assert sorted(seen) == list(range(24))


def test_thread_map_cancel_keeps_the_running_chunk_results():
    with ThreadPool(1) as pool:
        started = threading.Event()

        def work(value):
            started.set()
            time.sleep(0.2)
            return value

        future = pool.map(work, [1, 2, 3], chunksize=1)
        assert started.wait(10)
        assert future.cancel()
        outcomes = []
        iterator = future.result(timeout=10)
        while True:
            try:
                outcomes.append(next(iterator))
            except StopIteration:
                break
            except CancelledError:
                outcomes.append("cancelled")
        assert outcomes == [1, "cancelled", "cancelled"]
