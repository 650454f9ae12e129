"""The randomized checker: pools driven by a random mix of operations.

A hypothesis state machine schedules tasks of every kind (quick, slow,
raising, exiting, huge, unpicklable, failing to load, ignoring SIGTERM),
maps, calls of ``@concurrent.process`` functions (each a fork of this
process made at the call), cancels at random moments, SIGKILLs random
workers and calls, forks the parent, stops pools and replaces them.
After every step and at the end it checks that every future resolved
exactly once with the outcome its task deserves, that no task ran twice,
that a forked child is never stuck, and that after ``join()`` no process
of the pool is left.

The default run has a budget of about a minute; ``--soak`` runs it for
``--soak-minutes`` (30 by default) and prints what it did.
"""

import gc
import os
import pickle
import signal
import tempfile
import time
from concurrent.futures import CancelledError
from concurrent.futures import wait as futures_wait
from concurrent.futures import TimeoutError as FuturesTimeoutError

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant,  # noqa: E402
                                 rule, run_state_machine_as_test)

import procfuncs as pf  # noqa: E402
from pebble import ProcessExpired, ProcessPool, concurrent  # noqa: E402
from pebble._process_call import fork_engine  # noqa: E402
from pebble.errors import OutcomeNotRebuilt  # noqa: E402
from proctools import (THREAD_SANITIZED, children, descendants, launchers, pid_alive,  # noqa: E402
                       wait_until)

TIMEOUT_ERRORS = (TimeoutError, FuturesTimeoutError)
#: How long the end of one run may take to settle everything.
SETTLE = 60
#: How long a task may stay pending while a worker of its pool is idle.
IDLE_BOUND = 2.0
#: The slot of tasks run by decorated calls rather than by a pool.
CALLS = 2
#: The checked task decorated once per timeout, without ``@``.
DECORATED = {timeout: concurrent.process(pf.checked_task, timeout=timeout)
             for timeout in (None, 0.2, 0.5, 5.0)}


class Task:
    """What the checker knows of one scheduled task or map element."""

    def __init__(self, task_id, kind, timeout, future, pool_slot):
        self.id = task_id
        self.kind = kind
        self.timeout = timeout
        self.future = future
        self.slot = pool_slot
        self.calls = 0  # done-callbacks seen
        self.may_cancel = False  # cancel() returned True, or its pool stopped
        self.may_expire = False  # a process of its pool was killed while it was pending
        self.may_lose_code = False  # pending when its launcher died: its worker's exit
        # status may be beyond the pool's knowledge
        self.checked = False
        future.add_done_callback(self._done)

    def _done(self, _future):
        self.calls += 1


class Element:
    """One element of a checked map, read back from its iterator at the end."""

    def __init__(self, task_id, map_run):
        self.id = task_id
        self.run = map_run


class MapRun:
    def __init__(self, future, ids, chunksize, timeout, pool_slot):
        self.future = future
        self.ids = ids
        self.chunksize = chunksize
        self.timeout = timeout
        self.slot = pool_slot
        self.may_cancel = False
        self.may_expire = False


def executions(record_dir, task_id):
    try:
        with open(os.path.join(record_dir, str(task_id))) as record:
            return len(record.read().split())
    except FileNotFoundError:
        return 0


class PoolChecker(RuleBasedStateMachine):
    """Two pools under a random mix of operations: a fork pool, and a
    forkserver or a spawn one (drawn for each run)."""

    def __init__(self):
        super().__init__()
        self.record_dir = tempfile.mkdtemp(prefix="pebble-checker-")
        self.pools = [None, None]
        self.methods = ["fork", "forkserver"]
        self.launchers = [None, None]
        self.old_pools = []
        self.tasks = []
        self.maps = []
        self.next_id = 0
        self.operations = 0
        self.children_before = set(children())
        # Launchers of other pools of this process (decorated calls' own).
        self.other_launchers = set(launchers())

    # -- pools -------------------------------------------------------------------

    def _start_pool(self, slot, max_tasks):
        import multiprocessing
        method = self.methods[slot]
        before = set(launchers())
        pool = ProcessPool(2 if slot == 0 else 1, max_tasks=max_tasks,
                           context=multiprocessing.get_context(method))
        assert pool.schedule(pf.add, args=(1, 1)).result(SETTLE) == 2
        self.pools[slot] = pool
        # Only a forkserver pool has a launcher process: under fork and
        # spawn the workers are this process's children. (A new child that
        # is no worker of the pool may be one retiring after max_tasks.)
        self.launchers[slot] = None
        if method == "forkserver":
            started = set(launchers()) - before - self.other_launchers
            assert len(started) == 1, "a forkserver pool started %d launchers" % len(started)
            self.launchers[slot] = started.pop()

    @initialize(max_tasks=st.sampled_from([0, 0, 1, 3]),
                second=st.sampled_from(["forkserver", "forkserver", "spawn"]))
    def start_pools(self, max_tasks, second):
        self.methods[1] = second
        for slot in range(2):
            self._start_pool(slot, max_tasks)

    def _new_id(self):
        self.next_id += 1
        return self.next_id

    # -- operations --------------------------------------------------------------

    @rule(slot=st.integers(0, 1), kind=st.sampled_from(pf.CHECKED_KINDS),
          seconds=st.floats(0.0, 0.3), timeout=st.sampled_from([None, None, 0.2, 0.5, 5.0]))
    def schedule(self, slot, kind, seconds, timeout):
        self.operations += 1
        if kind == "stubborn" and timeout is None:
            timeout = 0.3  # it never ends on its own
        task_id = self._new_id()
        future = self.pools[slot].schedule(pf.checked_task,
                                           args=(kind, self.record_dir, task_id, seconds),
                                           timeout=timeout)
        self.tasks.append(Task(task_id, kind, timeout, future, slot))

    @rule(slot=st.integers(0, 1), size=st.integers(0, 30), chunksize=st.integers(1, 7),
          timeout=st.sampled_from([None, 10.0]))
    def map(self, slot, size, chunksize, timeout):
        self.operations += 1
        ids = [self._new_id() for _ in range(size)]
        future = self.pools[slot].map(pf.checked_element, [self.record_dir] * size, ids,
                                      chunksize=chunksize, timeout=timeout)
        self.maps.append(MapRun(future, ids, chunksize, timeout, slot))

    @rule(pick=st.integers(0, 1 << 16))
    def cancel(self, pick):
        self.operations += 1
        pending = [task for task in self.tasks if not task.future.done()]
        if not pending:
            return
        task = pending[pick % len(pending)]
        if task.future.cancel():
            task.may_cancel = True

    @rule(kind=st.sampled_from(pf.CHECKED_KINDS), seconds=st.floats(0.0, 0.3),
          timeout=st.sampled_from([None, None, 0.2, 0.5, 5.0]))
    def decorated_call(self, kind, seconds, timeout):
        """A call of a decorated function: under fork, a fork made now."""
        self.operations += 1
        if kind == "stubborn" and timeout is None:
            timeout = 0.2
        task_id = self._new_id()
        future = DECORATED[timeout](kind, self.record_dir, task_id, seconds)
        self.tasks.append(Task(task_id, kind, timeout, future, CALLS))

    @rule(pick=st.integers(0, 1 << 16))
    def kill_call(self, pick):
        """SIGKILL of the process running a decorated call."""
        self._kill_one(fork_engine()._core, CALLS, pick)

    @rule(seconds=st.sampled_from([0.0, 0.01, 0.05, 0.2]))
    def wait(self, seconds):
        time.sleep(seconds)

    @rule(slot=st.integers(0, 1), pick=st.integers(0, 1 << 16))
    def kill_worker(self, slot, pick):
        self._kill_one(self.pools[slot]._core, slot, pick)

    def _kill_one(self, core, slot, pick):
        self.operations += 1
        pids = sorted(core.pids)
        if not pids:
            return
        self._mark_pending(slot, expire=True)
        try:
            os.kill(pids[pick % len(pids)], signal.SIGKILL)
        except ProcessLookupError:
            pass  # it had left already

    @rule(slot=st.integers(0, 1))
    def kill_launcher(self, slot):
        """SIGKILL of a pool's launcher process (forkserver; a fork or spawn
        pool has none): its workers outlive it, a new launcher is started,
        and nothing is lost."""
        self.operations += 1
        launcher = self.launchers[slot]
        if launcher is None:
            return
        for task in self.tasks:
            if task.slot == slot and not task.future.done():
                task.may_lose_code = True
        os.kill(launcher, signal.SIGKILL)
        assert wait_until(lambda: self._launcher() not in (None, launcher), SETTLE), \
            "no launcher replaced the one killed: %r, pool active %s" % (
                self._children_commands(), self.pools[slot].active)
        self.launchers[slot] = self._launcher()

    @staticmethod
    def _children_commands():
        commands = {}
        for pid in children():
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as cmdline:
                    commands[pid] = (cmdline.read()[-60:], pid_alive(pid))
            except OSError:
                pass
        return commands

    def _launcher(self):
        """The forkserver pool's launcher: its workers are the launcher's children."""
        found = [pid for pid in launchers() if pid not in self.other_launchers]
        return found[0] if len(found) == 1 else None

    @rule()
    def fork_parent(self):
        """A fork of the parent, while the pools work, is never stuck."""
        self.operations += 1
        pid = os.fork()
        if pid == 0:
            try:
                gc.collect()
                if THREAD_SANITIZED:        # no thread may start in this child
                    os._exit(0)
                pool = ProcessPool(1, context=__import__("multiprocessing").get_context("fork"))
                code = 0 if pool.schedule(pf.add, args=(2, 3)).result(20) == 5 else 1
                pool.stop()
                pool.join(20)
            except BaseException:
                code = 2
            os._exit(code)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError("a fork of the parent was stuck")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(status) == 0

    @rule(slot=st.integers(0, 1), max_tasks=st.sampled_from([0, 2]))
    def stop_and_replace(self, slot, max_tasks):
        self.operations += 1
        self._mark_pending(slot, cancel=True)
        pool = self.pools[slot]
        pool.stop()
        pool.join(SETTLE)
        self.old_pools.append(pool)
        self._start_pool(slot, max_tasks)

    @rule(slot=st.integers(0, 1), max_tasks=st.sampled_from([0, 3]))
    def close_join_and_replace(self, slot, max_tasks):
        self.operations += 1
        pool = self.pools[slot]
        pool.close()
        pool.join(SETTLE)
        for task in self.tasks:
            if task.slot == slot and not task.checked:
                assert task.future.done(), "join() returned with a task unresolved"
        self.old_pools.append(pool)
        self._start_pool(slot, max_tasks)

    def _mark_pending(self, slot, cancel=False, expire=False):
        for item in self.tasks + self.maps:
            if item.slot == slot and not item.future.done():
                item.may_cancel |= cancel
                item.may_expire |= expire
        for run in self.maps:
            if run.slot == slot:  # its chunks may still run after map() returned
                run.may_cancel |= cancel
                run.may_expire |= expire

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def no_task_waits_beside_an_idle_worker(self):
        """A task is not left pending while a worker of its pool is idle,
        beyond the time the pool takes to notice."""
        for pool in self.pools:
            if pool is None or not pool.active:
                continue
            core = pool._core
            assert wait_until(lambda core=core: not (core.pending and core.idle), IDLE_BOUND), \
                "%d tasks pending beside %d idle workers for %.1f s" % (
                    core.pending, core.idle, IDLE_BOUND)

    @invariant()
    def outcomes_are_deserved(self):
        for task in self.tasks:
            if not task.checked and task.future.done():
                self._check_task(task)

    def _check_task(self, task):
        runs = executions(self.record_dir, task.id)
        assert runs <= 1, "task %d (%s) ran %d times" % (task.id, task.kind, runs)
        assert wait_until(lambda: task.calls == 1, 5), \
            "task %d resolved %d times" % (task.id, task.calls)
        future = task.future
        if future.cancelled():
            assert task.may_cancel, "task %d cancelled unasked" % task.id
            task.checked = True
            return
        error = future.exception(0)
        task.checked = True
        if error is None:
            result = future.result(0)
            assert task.kind in ("quick", "slow", "huge"), (task.kind, result)
            if task.kind == "huge":
                assert len(result) >= pf.HUGE and result.endswith(b"%d" % task.id)
            else:
                assert result == task.id * 2
            assert runs == 1
            return
        if isinstance(error, TIMEOUT_ERRORS):
            assert task.timeout is not None, "task %d timed out without a timeout" % task.id
            assert error.args == ("Task timeout", task.timeout)
            return
        if isinstance(error, CancelledError):
            assert task.may_cancel
            return
        if isinstance(error, OutcomeNotRebuilt):
            assert task.kind == "unloadable", (task.kind, error)
            return
        if isinstance(error, ProcessExpired):
            if task.kind == "exit" and (error.exitcode == 3
                                        or (error.exitcode is None and task.may_lose_code)):
                return
            assert task.may_expire, "task %d (%s): %r, exit code %s" % (
                task.id, task.kind, error, error.exitcode)
            return
        if task.kind == "raise":
            assert isinstance(error, pf.CustomError) and error.args == (task.id,)
            return
        if task.kind == "unpicklable":
            assert isinstance(error, (TypeError, pickle.PicklingError)), error
            return
        if task.kind == "unloadable" and task.slot == CALLS:
            # A decorated call gives the error of loading its result, as on Pebble.
            assert isinstance(error, ValueError) and error.args == ("checker",), error
            return
        raise AssertionError("task %d (%s): unexpected %r" % (task.id, task.kind, error))

    def _check_map(self, run):
        try:
            iterator = run.future.result(SETTLE)
        except CancelledError:
            assert run.may_cancel
            return
        # A chunk gives its values, or (as on Pebble) its error once.
        for start in range(0, len(run.ids), run.chunksize):
            chunk = run.ids[start:start + run.chunksize]
            for task_id in chunk:
                runs = executions(self.record_dir, task_id)
                assert runs <= 1, "map element %d ran %d times" % (task_id, runs)
            for index, task_id in enumerate(chunk):
                try:
                    value = next(iterator)
                except StopIteration:
                    raise AssertionError("map ended early") from None
                except CancelledError:
                    assert run.may_cancel
                except ProcessExpired:
                    assert run.may_expire
                except TIMEOUT_ERRORS:
                    assert run.timeout is not None
                else:
                    assert value == task_id * 2
                    assert executions(self.record_dir, task_id) == 1
                    continue
                assert index == 0, "a chunk failed after giving values"
                break
        with pytest.raises(StopIteration):
            next(iterator)

    def teardown(self):
        try:
            for pool in self.pools:
                if pool is not None:
                    pool.close()
            for pool in self.pools + self.old_pools:
                if pool is not None:
                    pool.join(SETTLE)
            calls = [task.future for task in self.tasks if task.slot == CALLS]
            assert not futures_wait(calls, SETTLE).not_done, "a decorated call never ended"
            for task in self.tasks:
                assert task.future.done(), "task %d never resolved" % task.id
                if not task.checked:
                    self._check_task(task)
                assert task.calls == 1, "task %d resolved %d times" % (task.id, task.calls)
            for run in self.maps:
                self._check_map(run)
            left = set(children()) - self.children_before
            assert wait_until(lambda: not (set(children()) - self.children_before), 10), \
                "processes left after join(): %s" % sorted(left)
        finally:
            for pool in self.pools + self.old_pools:
                if pool is not None:
                    pool.stop()
                    pool.join(SETTLE)
            PoolChecker.totals["runs"] += 1
            PoolChecker.totals["operations"] += self.operations
            PoolChecker.totals["tasks"] += len(self.tasks) + sum(len(r.ids) for r in self.maps)

    totals = {"runs": 0, "operations": 0, "tasks": 0}


def _run_checker(budget, examples):
    """Run the machine again and again until *budget* seconds have passed."""
    deadline = time.monotonic() + budget
    batches = 0
    while True:
        run_state_machine_as_test(PoolChecker, settings=settings(
            max_examples=examples, stateful_step_count=25, deadline=None, database=None,
            suppress_health_check=list(HealthCheck), print_blob=True))
        batches += 1
        if time.monotonic() >= deadline:
            return batches


def _check_for(budget, examples):
    before_children = set(descendants())
    start = time.monotonic()
    before = dict(PoolChecker.totals)
    _run_checker(budget, examples)
    done = {key: PoolChecker.totals[key] - before[key] for key in before}
    print("checker: %(runs)d runs, %(operations)d operations, %(tasks)d tasks" % done,
          "in %.0f s" % (time.monotonic() - start))
    assert done["runs"] > 0
    # Nothing of the pools outlives them.
    assert wait_until(lambda: not [pid for pid in descendants() if pid_alive(pid)
                                   and pid not in before_children], 10)


@pytest.mark.timeout(900)
def test_pools_under_a_random_mix_of_operations():
    _check_for(45, 5)


@pytest.mark.soak
@pytest.mark.timeout(7 * 24 * 3600)  # bounded by --soak-minutes and SETTLE inside
def test_checker_soak(request, soak):
    if not soak:
        pytest.skip("the checker's soak runs with --soak")
    _check_for(request.config.getoption("--soak-minutes") * 60, 20)
