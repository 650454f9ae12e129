import multiprocessing
import os
import queue
import signal
import threading
import time

import pytest

from pebble.functions import (sighandler, synchronized, waitforqueues,
                              waitforthreads)

WATCHER_PREFIX = "pebble-waitforthreads"


# -- helpers ----------------------------------------------------------------

def max_overlap(function, nthreads=4, calls=5):
    """Runs *function* from several threads at once; returns the largest
    number of callers seen inside it at the same time.

    *function* receives the probe to call inside its critical section.
    """
    state = {"active": 0, "max": 0}
    guard = threading.Lock()
    barrier = threading.Barrier(nthreads, timeout=2)

    def probe():
        with guard:
            state["active"] += 1
            state["max"] = max(state["max"], state["active"])
        time.sleep(0.002)
        with guard:
            state["active"] -= 1

    def worker():
        barrier.wait()
        for _ in range(calls):
            function(probe)

    workers = [threading.Thread(target=worker) for _ in range(nthreads)]
    for worker_thread in workers:
        worker_thread.start()
    for worker_thread in workers:
        worker_thread.join(2)
    assert not any(w.is_alive() for w in workers)
    return state["max"]


def held_by_someone(lock):
    """True if another thread cannot acquire *lock* right now."""
    result = []

    def attempt():
        acquired = lock.acquire(False)
        if acquired:
            lock.release()
        result.append(not acquired)

    prober = threading.Thread(target=attempt)
    prober.start()
    prober.join(2)
    return result[0]


def watcher_threads():
    return [t for t in threading.enumerate()
            if t.name.startswith(WATCHER_PREFIX)]


def join_watchers(timeout=1.0):
    for watcher in watcher_threads():
        watcher.join(timeout)
    return watcher_threads()


def blocked_thread():
    """Starts a thread that runs until the returned event is set."""
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(5,))
    thread.start()
    return thread, release


@pytest.fixture
def blocked():
    started = []

    def factory():
        thread, release = blocked_thread()
        started.append((thread, release))
        return thread, release

    yield factory
    for thread, release in started:
        release.set()
        thread.join(2)
    assert join_watchers() == []


def is_hooked(q):
    return "notify" in vars(q.not_empty)


def wait_until(predicate, timeout=1.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


# -- synchronized -----------------------------------------------------------

def test_max_overlap_detects_races():
    # Control for the tests below: unsynchronized calls do overlap.
    assert max_overlap(lambda probe: probe()) > 1


def test_synchronized_bare_excludes_concurrent_calls():
    @synchronized
    def function(probe):
        probe()

    assert max_overlap(function) == 1


def test_synchronized_empty_call_excludes_concurrent_calls():
    @synchronized()
    def function(probe):
        probe()

    assert max_overlap(function) == 1


def test_synchronized_bare_functions_share_one_lock():
    entered_first = threading.Event()
    leave_first = threading.Event()
    entered_second = threading.Event()

    @synchronized
    def first():
        entered_first.set()
        leave_first.wait(2)

    @synchronized()
    def second():
        entered_second.set()

    one = threading.Thread(target=first)
    one.start()
    assert entered_first.wait(2)
    two = threading.Thread(target=second)
    two.start()
    try:
        assert not entered_second.wait(0.2)
    finally:
        leave_first.set()
    assert entered_second.wait(2)
    one.join(2)
    two.join(2)


def test_synchronized_preserves_metadata_and_result():
    def original(a, b=2):
        """Docstring."""
        return a + b

    decorated = synchronized(original)
    assert decorated.__name__ == "original"
    assert decorated.__doc__ == "Docstring."
    assert decorated.__wrapped__ is original
    assert decorated(1) == 3
    assert decorated(1, b=5) == 6

    with_lock = synchronized(threading.Lock())(original)
    assert with_lock.__name__ == "original"
    assert with_lock.__wrapped__ is original
    assert with_lock(a=4) == 6


def test_synchronized_works_on_methods():
    class Counter:
        def __init__(self):
            self.value = 0

        @synchronized
        def increment(self):
            self.value += 1
            return self.value

    counter = Counter()
    assert counter.increment() == 1
    assert Counter.increment.__name__ == "increment"


LOCK_FACTORIES = [
    pytest.param(threading.Lock, id="threading.Lock"),
    pytest.param(threading.RLock, id="threading.RLock"),
    pytest.param(lambda: threading.Semaphore(1), id="threading.Semaphore"),
    pytest.param(lambda: threading.BoundedSemaphore(1),
                 id="threading.BoundedSemaphore"),
    pytest.param(multiprocessing.Lock, id="multiprocessing.Lock"),
    pytest.param(multiprocessing.RLock, id="multiprocessing.RLock"),
    pytest.param(lambda: multiprocessing.Semaphore(1),
                 id="multiprocessing.Semaphore"),
]


@pytest.mark.parametrize("factory", LOCK_FACTORIES)
def test_synchronized_with_lock_excludes_concurrent_calls(factory):
    lock = factory()

    @synchronized(lock)
    def function(probe):
        probe()

    assert max_overlap(function) == 1


@pytest.mark.parametrize("factory", LOCK_FACTORIES)
def test_synchronized_holds_the_given_lock(factory):
    lock = factory()
    seen = []

    @synchronized(lock)
    def function():
        seen.append(held_by_someone(lock))

    assert not held_by_someone(lock)
    function()
    assert seen == [True]
    assert not held_by_someone(lock)


@pytest.mark.parametrize("factory", LOCK_FACTORIES)
def test_synchronized_releases_the_lock_on_exception(factory):
    lock = factory()

    @synchronized(lock)
    def function():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        function()
    assert not held_by_someone(lock)


def test_synchronized_bare_releases_the_lock_on_exception():
    @synchronized
    def failing():
        raise KeyError("boom")

    @synchronized
    def other():
        return "ran"

    with pytest.raises(KeyError):
        failing()
    assert other() == "ran"


def test_synchronized_rlock_allows_recursion():
    @synchronized(threading.RLock())
    def factorial(n):
        return 1 if n <= 1 else n * factorial(n - 1)

    assert factorial(5) == 120


def test_synchronized_uses_the_semaphore_count():
    # A Semaphore(2) lets two callers in together: they meet at the
    # barrier, which would time out under a one-at-a-time lock.
    barrier = threading.Barrier(2, timeout=1)
    outcomes = []

    @synchronized(threading.Semaphore(2))
    def function():
        try:
            barrier.wait()
            outcomes.append("met")
        except threading.BrokenBarrierError:
            outcomes.append("broken")

    workers = [threading.Thread(target=function) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(2)
    assert outcomes == ["met", "met"]


@pytest.mark.parametrize("argument", [1, "lock", 2.5, object()])
def test_synchronized_rejects_bad_arguments(argument):
    with pytest.raises(TypeError, match="synchronized"):
        synchronized(argument)


def test_synchronized_rejects_non_callable_target():
    with pytest.raises(TypeError, match="callables"):
        synchronized(threading.Lock())(42)


# -- sighandler -------------------------------------------------------------

@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def send(signum):
    os.kill(os.getpid(), signum)
    # Python handlers run in the main thread between bytecodes; make sure
    # one has been reached before asserting.
    time.sleep(0.01)


def test_sighandler_single_signal(restore_signals):
    received = []

    @sighandler(signal.SIGUSR1)
    def handler(signum, frame):
        received.append(signum)

    assert signal.getsignal(signal.SIGUSR1) is handler
    send(signal.SIGUSR1)
    assert received == [signal.SIGUSR1]


def test_sighandler_plain_int(restore_signals):
    received = []

    @sighandler(int(signal.SIGUSR2))
    def handler(signum, frame):
        received.append(signum)

    send(signal.SIGUSR2)
    assert received == [signal.SIGUSR2]


@pytest.mark.parametrize("container", [tuple, list])
def test_sighandler_several_signals(restore_signals, container):
    received = []

    @sighandler(container([signal.SIGUSR1, int(signal.SIGUSR2)]))
    def handler(signum, frame):
        received.append(signum)

    assert signal.getsignal(signal.SIGUSR1) is handler
    assert signal.getsignal(signal.SIGUSR2) is handler
    send(signal.SIGUSR1)
    send(signal.SIGUSR2)
    assert received == [signal.SIGUSR1, signal.SIGUSR2]


def test_sighandler_returns_the_function_itself(restore_signals):
    def handler(signum, frame):
        return "called"

    assert sighandler(signal.SIGUSR1)(handler) is handler
    assert handler(0, None) == "called"


@pytest.mark.parametrize("signals", [
    "SIGUSR1", 1.5, None, True, {signal.SIGUSR1},
    (signal.SIGUSR1, "SIGUSR2"),
])
def test_sighandler_rejects_bad_types(restore_signals, signals):
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(TypeError, match="signals"):
        sighandler(signals)
    assert signal.getsignal(signal.SIGUSR1) is before


def test_sighandler_rejects_empty_list():
    with pytest.raises(ValueError):
        sighandler([])


def test_sighandler_rejects_non_callable(restore_signals):
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(TypeError, match="callables"):
        sighandler(signal.SIGUSR1)("not a function")
    assert signal.getsignal(signal.SIGUSR1) is before


# -- argument validation for the wait functions ------------------------------

WAITERS = [
    pytest.param(waitforthreads, threading.Thread, id="waitforthreads"),
    pytest.param(waitforqueues, queue.Queue, id="waitforqueues"),
]


@pytest.mark.parametrize("waiter, kind", WAITERS)
def test_wait_on_nothing_returns_nothing_at_once(waiter, kind):
    start = time.monotonic()
    assert waiter([]) == []
    assert waiter([], timeout=5) == []
    assert time.monotonic() - start < 1


@pytest.mark.parametrize("waiter, kind", WAITERS)
@pytest.mark.parametrize("items", [5, None, [object()], "abc"])
def test_wait_rejects_bad_items(waiter, kind, items):
    with pytest.raises(TypeError):
        waiter(items, timeout=0)


@pytest.mark.parametrize("waiter, kind", WAITERS)
@pytest.mark.parametrize("timeout", ["1", [1], True, 1j])
def test_wait_rejects_bad_timeout_type(waiter, kind, timeout):
    with pytest.raises(TypeError, match="timeout"):
        waiter([kind()], timeout=timeout)


@pytest.mark.parametrize("waiter, kind", WAITERS)
@pytest.mark.parametrize("timeout", [-1, -0.001, float("nan")])
def test_wait_rejects_bad_timeout_value(waiter, kind, timeout):
    with pytest.raises(ValueError, match="timeout"):
        waiter([kind()], timeout=timeout)


# -- waitforthreads ----------------------------------------------------------

def test_waitforthreads_returns_finished_thread_at_once(blocked):
    finished = threading.Thread(target=lambda: None)
    finished.start()
    finished.join()
    running, _ = blocked()

    start = time.monotonic()
    assert waitforthreads([running, finished]) == [finished]
    assert time.monotonic() - start < 0.5
    assert watcher_threads() == []


def test_waitforthreads_unstarted_thread_is_ready():
    unstarted = threading.Thread(target=lambda: None)
    assert waitforthreads([unstarted], timeout=1) == [unstarted]


def test_waitforthreads_timeout_returns_empty_list(blocked):
    running, _ = blocked()
    start = time.monotonic()
    assert waitforthreads([running], timeout=0.2) == []
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 0.7
    assert running.is_alive()


def test_waitforthreads_zero_timeout_does_not_block(blocked):
    running, _ = blocked()
    start = time.monotonic()
    assert waitforthreads([running], timeout=0) == []
    assert time.monotonic() - start < 0.1
    assert watcher_threads() == []


@pytest.mark.parametrize("timeout", [None, 5])
def test_waitforthreads_wakes_when_a_thread_ends(blocked, timeout):
    first, release_first = blocked()
    second, _ = blocked()
    timer = threading.Timer(0.1, release_first.set)
    timer.start()

    start = time.monotonic()
    assert waitforthreads([first, second], timeout=timeout) == [first]
    assert time.monotonic() - start < 1.0
    timer.join()


def test_waitforthreads_returns_every_finished_thread(blocked):
    threads = [threading.Thread(target=lambda: None) for _ in range(3)]
    for thread in threads:
        thread.start()
        thread.join()
    running, _ = blocked()
    assert waitforthreads(threads + [running], timeout=1) == threads


def test_waitforthreads_accepts_tuples_and_duplicates(blocked):
    running, release = blocked()
    threading.Timer(0.1, release.set).start()
    assert waitforthreads((running, running), timeout=2) == [running, running]


def test_waitforthreads_does_not_poll(blocked):
    running, _ = blocked()
    calls = []
    original = running.is_alive

    def counting():
        calls.append(1)
        return original()

    running.is_alive = counting
    try:
        assert waitforthreads([running], timeout=0.4) == []
    finally:
        del running.is_alive
    # A polling loop would check the thread many times in 0.4 s; the
    # event-driven wait checks once before and once after blocking, plus
    # the watcher's checks around its join.
    assert len(calls) <= 5


def test_waitforthreads_watchers_do_not_outlive_the_timeout(blocked):
    running, _ = blocked()
    assert waitforthreads([running], timeout=0.1) == []
    assert join_watchers(timeout=0.5) == []
    assert running.is_alive()


def test_waitforthreads_watcher_ends_with_its_thread(blocked):
    first, release_first = blocked()
    second, release_second = blocked()
    release_first.set()
    assert waitforthreads([first, second]) == [first]
    # The watcher of the still running thread waits for it (timeout=None)
    # and goes away as soon as it ends.
    release_second.set()
    second.join(2)
    assert join_watchers() == []


def test_waitforthreads_concurrent_callers_share_a_watcher(blocked):
    running, release = blocked()
    results = []

    def waiter():
        results.append(waitforthreads([running], timeout=2))

    waiters = [threading.Thread(target=waiter) for _ in range(4)]
    for waiter_thread in waiters:
        waiter_thread.start()
    assert wait_until(lambda: len(watcher_threads()) == 1)
    time.sleep(0.05)
    assert len(watcher_threads()) == 1

    start = time.monotonic()
    release.set()
    for waiter_thread in waiters:
        waiter_thread.join(2)
    assert time.monotonic() - start < 1.0
    assert results == [[running]] * 4


def test_waitforthreads_short_and_long_waiters_on_one_thread(blocked):
    running, release = blocked()
    results = []
    long_waiter = threading.Thread(
        target=lambda: results.append(waitforthreads([running], timeout=3)))
    long_waiter.start()
    assert wait_until(lambda: len(watcher_threads()) == 1)

    # The short caller leaves; the shared watcher keeps serving the long one.
    assert waitforthreads([running], timeout=0.1) == []
    time.sleep(0.05)
    assert len(watcher_threads()) == 1

    start = time.monotonic()
    release.set()
    long_waiter.join(2)
    assert time.monotonic() - start < 1.0
    assert results == [[running]]


def test_waitforthreads_does_not_join_other_threads(blocked):
    first, release_first = blocked()
    second, _ = blocked()
    release_first.set()
    assert waitforthreads([first, second], timeout=2) == [first]
    assert second.is_alive()


# -- waitforqueues -----------------------------------------------------------

def test_waitforqueues_returns_non_empty_queue_at_once():
    empty, full = queue.Queue(), queue.Queue()
    full.put("item")
    start = time.monotonic()
    assert waitforqueues([empty, full]) == [full]
    assert time.monotonic() - start < 0.5
    assert full.get_nowait() == "item"
    assert not is_hooked(empty) and not is_hooked(full)


def test_waitforqueues_timeout_returns_empty_list():
    q = queue.Queue()
    start = time.monotonic()
    assert waitforqueues([q], timeout=0.2) == []
    assert 0.2 <= time.monotonic() - start < 0.7
    assert not is_hooked(q)


def test_waitforqueues_zero_timeout_does_not_block():
    q = queue.Queue()
    start = time.monotonic()
    assert waitforqueues([q], timeout=0) == []
    assert time.monotonic() - start < 0.1


@pytest.mark.parametrize("timeout", [None, 5])
def test_waitforqueues_wakes_on_put(timeout):
    first, second = queue.Queue(), queue.Queue()
    timer = threading.Timer(0.1, second.put, ("item",))
    timer.start()
    start = time.monotonic()
    assert waitforqueues([first, second], timeout=timeout) == [second]
    assert time.monotonic() - start < 1.0
    timer.join()
    assert second.get_nowait() == "item"


def test_waitforqueues_returns_every_non_empty_queue():
    queues = [queue.Queue() for _ in range(4)]
    queues[1].put(1)
    queues[3].put(3)
    assert waitforqueues(queues, timeout=1) == [queues[1], queues[3]]


@pytest.mark.parametrize("kind", [queue.LifoQueue, queue.PriorityQueue])
def test_waitforqueues_supports_queue_subclasses(kind):
    q = kind()
    threading.Timer(0.1, q.put, (1,)).start()
    start = time.monotonic()
    assert waitforqueues([q], timeout=2) == [q]
    assert time.monotonic() - start < 1.0
    assert not is_hooked(q)


def test_waitforqueues_rejects_simple_queue():
    with pytest.raises(TypeError, match="queue.Queue"):
        waitforqueues([queue.SimpleQueue()], timeout=0)


def test_waitforqueues_accepts_duplicates():
    q = queue.Queue()
    threading.Timer(0.1, q.put, (1,)).start()
    assert waitforqueues((q, q), timeout=2) == [q, q]
    assert not is_hooked(q)


def test_waitforqueues_restores_the_queue():
    q = queue.Queue()
    original = q.not_empty.notify
    assert waitforqueues([q], timeout=0.05) == []
    threading.Timer(0.05, q.put, (1,)).start()
    assert waitforqueues([q], timeout=2) == [q]

    assert not is_hooked(q)
    assert q.not_empty.notify == original
    # The queue still works, including a blocking get woken by a put.
    assert q.get_nowait() == 1
    threading.Timer(0.05, q.put, (2,)).start()
    assert q.get(timeout=2) == 2


def test_waitforqueues_keeps_a_foreign_notify_wrapper():
    q = queue.Queue()
    calls = []
    original = q.not_empty.notify

    def wrapper(*args):
        calls.append(args)
        return original(*args)

    q.not_empty.notify = wrapper
    threading.Timer(0.05, q.put, (1,)).start()
    assert waitforqueues([q], timeout=2) == [q]
    assert vars(q.not_empty)["notify"] is wrapper
    assert len(calls) == 1


def test_waitforqueues_restores_hooks_on_exception():
    class Failing(queue.Queue):
        checks = 0

        def empty(self):
            Failing.checks += 1
            if Failing.checks > 1:  # the first check is before hooking
                raise RuntimeError("broken queue")
            return super().empty()

    good, bad = queue.Queue(), Failing()
    with pytest.raises(RuntimeError, match="broken queue"):
        waitforqueues([good, bad], timeout=1)
    assert Failing.checks == 2
    assert not is_hooked(good)
    assert not is_hooked(bad)


def test_waitforqueues_does_not_poll():
    q = queue.Queue()
    calls = []
    original = q._qsize

    def counting():
        calls.append(1)
        return original()

    q._qsize = counting
    assert waitforqueues([q], timeout=0.4) == []
    # A polling loop would look at the queue many times in 0.4 s.
    assert len(calls) <= 3


def test_waitforqueues_concurrent_waiters_on_one_queue():
    q = queue.Queue()
    results = []
    waiters = [threading.Thread(
        target=lambda: results.append(waitforqueues([q], timeout=2)))
        for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    assert wait_until(lambda: is_hooked(q)
                      and len(q.not_empty.notify.subscribers) == 4)

    start = time.monotonic()
    q.put("item")
    for waiter in waiters:
        waiter.join(2)
    assert time.monotonic() - start < 1.0
    assert results == [[q]] * 4
    assert not is_hooked(q)
    assert q.get_nowait() == "item"


@pytest.mark.parametrize("first_leaves", ["short", "long"])
def test_waitforqueues_hook_survives_until_last_waiter(first_leaves):
    # Whichever waiter installed the hook, it stays until the last leaves.
    q = queue.Queue()
    results = []

    def long_waiter():
        results.append(waitforqueues([q], timeout=3))

    def subscribers():
        return len(q.not_empty.notify.subscribers) if is_hooked(q) else 0

    long_thread = threading.Thread(target=long_waiter)
    if first_leaves == "short":
        # The short waiter hooks first and leaves first.
        short = threading.Thread(
            target=lambda: results.append(waitforqueues([q], timeout=0.2)))
        short.start()
        assert wait_until(lambda: subscribers() == 1)
        long_thread.start()
        assert wait_until(lambda: subscribers() == 2)
        short.join(2)
    else:
        # The long waiter hooks first; a short one joins and leaves.
        long_thread.start()
        assert wait_until(lambda: subscribers() == 1)
        results.append(waitforqueues([q], timeout=0.1))
    assert results == [[]]
    assert subscribers() == 1

    start = time.monotonic()
    q.put("item")
    long_thread.join(2)
    assert time.monotonic() - start < 1.0
    assert results == [[], [q]]
    assert not is_hooked(q)


def test_waitforqueues_many_rounds_leave_no_hook():
    q = queue.Queue()
    for round_ in range(20):
        threading.Timer(0.001, q.put, (round_,)).start()
        assert waitforqueues([q], timeout=2) == [q]
        assert q.get(timeout=1) == round_
        assert not is_hooked(q)
