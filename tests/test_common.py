"""Public names, exceptions and the future types shared by the pools."""

import pickle
import threading
from concurrent import futures as cf

import pytest

import pebble
from pebble import MapFuture, ProcessExpired, ProcessFuture, ProcessMapFuture

WAIT = 5


# -- the package ------------------------------------------------------------


def test_all_is_exactly_the_public_api():
    # Pebble 5.2.3's names, no more.
    assert sorted(pebble.__all__) == ["CONSTS", "MapFuture", "ProcessExpired", "ProcessFuture",
                                      "ProcessMapFuture", "ProcessPool", "ThreadPool",
                                      "asynchronous", "concurrent", "sighandler",
                                      "synchronized", "waitforqueues", "waitforthreads"]
    for name in pebble.__all__:
        assert hasattr(pebble, name)


def test_version_and_submodules():
    assert isinstance(pebble.__version__, str)
    assert pebble.__version__[0].isdigit()
    assert callable(pebble.concurrent.thread)
    assert callable(pebble.asynchronous.thread)
    from pebble.asynchronous import thread as async_thread
    from pebble.concurrent import thread
    assert thread is pebble.concurrent.thread
    assert async_thread is pebble.asynchronous.thread


def test_star_import():
    namespace = {}
    exec("from pebble import *", namespace)
    assert set(pebble.__all__) <= set(namespace)
    assert namespace["concurrent"] is pebble.concurrent


# -- ProcessExpired ---------------------------------------------------------


def test_process_expired_fields():
    error = ProcessExpired("Abnormal termination", code=-9, pid=1234)
    assert isinstance(error, OSError)
    assert error.exitcode == -9
    assert error.pid == 1234
    assert str(error) == "Abnormal termination"
    assert error.args[0] == "Abnormal termination"


def test_process_expired_positional_and_defaults():
    error = ProcessExpired("gone", 3, 42)
    assert (error.exitcode, error.pid) == (3, 42)
    error = ProcessExpired("gone")
    assert error.exitcode == 0
    assert error.pid is None
    assert str(error) == "gone"


def test_process_expired_raise_and_catch_as_oserror():
    with pytest.raises(OSError) as info:
        raise ProcessExpired("died", code=1, pid=7)
    assert info.value.exitcode == 1


def test_process_expired_documented_format():
    error = ProcessExpired("Abnormal termination", code=11, pid=5)
    assert "%s. Exit code: %d" % (error, error.exitcode) == \
        "Abnormal termination. Exit code: 11"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_process_expired_pickles(protocol):
    error = ProcessExpired("Abnormal termination", code=-15, pid=999)
    clone = pickle.loads(pickle.dumps(error, protocol))
    assert type(clone) is ProcessExpired
    assert (str(clone), clone.exitcode, clone.pid) == ("Abnormal termination", -15, 999)


# -- ProcessFuture ----------------------------------------------------------


def test_process_future_is_a_future():
    future = ProcessFuture()
    assert isinstance(future, cf.Future)
    assert not future.done()
    future.set_result(5)
    assert future.result(0) == 5


def test_process_future_cancel_pending():
    future = ProcessFuture()
    called = []
    future.add_done_callback(called.append)
    assert future.cancel() is True
    assert future.cancelled()
    assert future.done()
    assert called == [future]
    with pytest.raises(cf.CancelledError):
        future.result(0)
    with pytest.raises(cf.CancelledError):
        future.exception(0)
    # Cancelling again still reports success.
    assert future.cancel() is True


def test_process_future_cancel_running():
    future = ProcessFuture()
    assert future.set_running_or_notify_cancel() is True
    assert future.cancel() is True
    assert future.cancelled()
    with pytest.raises(cf.CancelledError):
        future.result(0)


@pytest.mark.parametrize("finish", ["result", "exception"])
def test_process_future_cancel_finished(finish):
    future = ProcessFuture()
    if finish == "result":
        future.set_result(1)
    else:
        future.set_exception(ValueError("x"))
    assert future.cancel() is False
    assert not future.cancelled()


def test_process_future_cancel_wakes_result_waiter():
    future = ProcessFuture()
    outcome = []

    def waiter():
        try:
            future.result(WAIT)
        except cf.CancelledError:
            outcome.append("cancelled")

    thread = threading.Thread(target=waiter)
    thread.start()
    future.cancel()
    thread.join(WAIT)
    assert outcome == ["cancelled"]


def test_process_future_cancel_wakes_wait():
    futures = [ProcessFuture() for _ in range(3)]
    result = []

    def waiter():
        result.append(cf.wait(futures, timeout=WAIT, return_when=cf.FIRST_COMPLETED))

    thread = threading.Thread(target=waiter)
    thread.start()
    futures[1].cancel()
    thread.join(WAIT)
    done, not_done = result[0]
    assert done == {futures[1]}
    assert not_done == {futures[0], futures[2]}


def test_process_future_cancel_wakes_as_completed():
    futures = [ProcessFuture() for _ in range(3)]
    seen = []

    def waiter():
        for future in cf.as_completed(futures, timeout=WAIT):
            seen.append(future)

    thread = threading.Thread(target=waiter)
    thread.start()
    futures[2].cancel()
    futures[0].set_result(0)
    futures[1].cancel()
    thread.join(WAIT)
    assert set(seen) == set(futures)
    assert len(seen) == 3


def test_process_future_already_cancelled_seen_by_wait():
    future = ProcessFuture()
    future.cancel()
    done, not_done = cf.wait([future], timeout=0)
    assert done == {future} and not not_done
    assert list(cf.as_completed([future], timeout=0)) == [future]


def test_process_future_cancel_calls_pool_hook():
    future = ProcessFuture()
    calls = []
    future._pebble_cancel = calls.append
    future._pebble_id = 17
    assert future.cancel() is True
    assert calls == [17]
    # A finished future does not call it.
    other = ProcessFuture()
    other._pebble_cancel = calls.append
    other._pebble_id = 18
    other.set_result(None)
    assert other.cancel() is False
    assert calls == [17]


# -- MapFuture / ProcessMapFuture ------------------------------------------


def test_map_future_types():
    assert issubclass(MapFuture, cf.Future)
    assert issubclass(ProcessMapFuture, ProcessFuture)
    assert issubclass(ProcessMapFuture, cf.Future)


def test_map_future_futures_property():
    chunks = [cf.Future() for _ in range(3)]
    future = MapFuture(chunks)
    assert future.futures == chunks
    process_chunks = [ProcessFuture() for _ in range(2)]
    assert ProcessMapFuture(process_chunks).futures == process_chunks


def test_map_future_cancel_pending_chunks():
    chunks = [cf.Future() for _ in range(3)]
    future = MapFuture(chunks)
    assert future.cancel() is True
    assert future.cancelled()
    assert all(chunk.cancelled() for chunk in chunks)


def test_map_future_cancel_only_queued_chunks():
    chunks = [cf.Future() for _ in range(3)]
    chunks[0].set_running_or_notify_cancel()
    chunks[1].set_result([1])
    future = MapFuture(chunks)
    assert future.cancel() is True
    assert not chunks[0].cancelled()
    assert not chunks[1].cancelled()
    assert chunks[2].cancelled()


def test_map_future_cancel_nothing_queued():
    chunks = [cf.Future() for _ in range(2)]
    for chunk in chunks:
        chunk.set_running_or_notify_cancel()
    future = MapFuture(chunks)
    assert future.cancel() is False
    assert not future.cancelled()
    assert not future.done()
    assert not any(chunk.cancelled() for chunk in chunks)


def test_map_future_cancel_all_done():
    chunks = [cf.Future() for _ in range(2)]
    for chunk in chunks:
        chunk.set_result([0])
    future = MapFuture(chunks)
    future.set_result(iter(()))
    assert future.cancel() is False
    assert not future.cancelled()


def test_map_future_cancel_empty():
    future = MapFuture([])
    future.set_result(iter(()))
    assert future.cancel() is False


def test_process_map_future_cancel_running_chunks():
    chunks = [ProcessFuture() for _ in range(3)]
    chunks[0].set_running_or_notify_cancel()
    future = ProcessMapFuture(chunks)
    assert future.cancel() is True
    assert future.cancelled()
    assert all(chunk.cancelled() for chunk in chunks)


def test_process_map_future_cancel_completed():
    chunks = [ProcessFuture() for _ in range(2)]
    for chunk in chunks:
        chunk.set_result([1])
    future = ProcessMapFuture(chunks)
    future.set_result(iter(()))
    assert future.cancel() is False
    assert not any(chunk.cancelled() for chunk in chunks)


def test_process_map_future_cancel_partly_completed():
    chunks = [ProcessFuture() for _ in range(2)]
    chunks[0].set_result([1])
    future = ProcessMapFuture(chunks)
    assert future.cancel() is True
    assert not chunks[0].cancelled()
    assert chunks[1].cancelled()
