"""ClusterPool on a real distributed.LocalCluster of two worker processes.

Directed tests of each guarantee, then a randomized checker: a hypothesis
state machine mixing tasks of every kind, cancels and SIGKILLs of busy Dask
workers, which checks that every future resolves with the outcome its task
deserves, that no task runs twice, that only tasks started on a killed node
are lost, and that no task process outlives the pool.
"""

import asyncio
import concurrent.futures
import copyreg
import functools
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

# Importing distributed installs tblib's reducers for every exception class
# of the process (copyreg), which changes how exceptions pickle in the
# rest of this test process, fork workers included: put the table back once
# it is imported. The Dask workers (other processes) keep theirs.
_dispatch = dict(copyreg.dispatch_table)
distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")
copyreg.dispatch_table.clear()
copyreg.dispatch_table.update(_dispatch)

from pebble import ProcessExpired  # noqa: E402
from pebble.cluster import ClusterPool, NodeLost  # noqa: E402

from proctools import pid_alive, wait_until  # noqa: E402

# The nodes cannot import this module: its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                       dashboard_address=":0")
    yield cluster
    nannies = [nanny.process.pid for nanny in cluster.workers.values()
               if getattr(nanny, "process", None) is not None and nanny.process.pid]
    try:
        cluster.close()
    except KeyError:
        # dask/distributed#5407: after workers were killed and replaced, the
        # cluster's own worker bookkeeping may raise at the very end of
        # close(), once its workers and scheduler are closed. Check that,
        # then end what close() had left: its status and its loop.
        assert cluster.scheduler.status.name == "closed", cluster.scheduler.status
        for callback in cluster.periodic_callbacks.values():
            callback.stop()
        cluster.status = distributed.core.Status.closed
        cluster._loop_runner.stop()
    for pid in nannies:
        assert wait_until(lambda pid=pid: not pid_alive(pid), 30), "worker %d outlived" % pid


@pytest.fixture(scope="module")
def client(cluster):
    client = distributed.Client(cluster)
    yield client
    client.close()


@pytest.fixture
def pool(client):
    client.wait_for_workers(2, timeout=60)
    pool = ClusterPool(client=client)
    yield pool
    pool.stop()
    pool.join(60)


# -- task functions (run on the nodes) ------------------------------------------------


def add(a, b=0):
    return a + b


class Failure(Exception):
    pass


def fail(message):
    raise Failure(message)


def record(directory, name, sleep=0.0, value=None):
    """Append 'pid ppid' to *directory*/*name*, then sleep and return *value*."""
    with open(os.path.join(directory, name), "a") as out:
        out.write("%d %d\n" % (os.getpid(), os.getppid()))
    time.sleep(sleep)
    return value


def ignore_sigterm_and_record(directory, name):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record(directory, name, 60)


def start_child_and_sleep(directory):
    child = subprocess.Popen(["sleep", "60"])
    with open(os.path.join(directory, "child"), "w") as out:
        out.write("%d\n" % child.pid)
    time.sleep(60)


def exit_with(code):
    os._exit(code)


def runs(directory, name):
    """The (pid, ppid) of each run recorded under *name*."""
    try:
        with open(os.path.join(directory, name)) as lines:
            return [tuple(int(n) for n in line.split()) for line in lines]
    except FileNotFoundError:
        return []


def wait_runs(directory, name, count=1, timeout=30):
    assert wait_until(lambda: len(runs(directory, name)) >= count, timeout), name
    return runs(directory, name)


# -- tests -------------------------------------------------------------------------------


def test_results_errors_and_tracebacks(pool):
    assert pool.schedule(add, args=(1, 2)).result(60) == 3
    assert pool.submit(add, None, 2, b=5).result(60) == 7
    future = pool.schedule(fail, args=("no",))
    with pytest.raises(Failure, match="no") as info:
        future.result(60)
    assert "in fail" in info.value.traceback
    assert "Failure: no" in info.value.traceback


def test_functions_made_here_travel_by_value(pool):
    offset = 40
    assert pool.schedule(lambda x: x + offset, args=(2,)).result(60) == 42

    def nested(x):
        return [x] * 2

    assert pool.schedule(nested, args=("a",)).result(60) == ["a", "a"]


def test_futures_work_with_wait_as_completed_and_asyncio(pool):
    futures = [pool.schedule(add, args=(i, 1)) for i in range(20)]
    done, not_done = concurrent.futures.wait(futures, timeout=60)
    assert not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures)) == \
        list(range(1, 21))

    async def main():
        loop = asyncio.get_running_loop()
        wrapped = await asyncio.wrap_future(pool.schedule(add, args=(2, 3)))
        # run_in_executor calls submit(function, *args): the first is the timeout.
        executed = await loop.run_in_executor(pool, functools.partial(add, 3, b=4), None)
        return wrapped, executed

    assert asyncio.run(main()) == (5, 7)


def test_timeout_kills_the_task_process(pool, tmp_path):
    start = time.monotonic()
    future = pool.schedule(record, args=(str(tmp_path), "t", 60), timeout=0.5)
    with pytest.raises(concurrent.futures.TimeoutError) as info:
        future.result(60)
    assert info.value.args == ("Task timeout", 0.5)
    assert time.monotonic() - start < 30
    (pid, _), = runs(tmp_path, "t")
    assert wait_until(lambda: not pid_alive(pid), 5)


def test_timeout_kills_a_task_ignoring_sigterm(pool, tmp_path):
    future = pool.schedule(ignore_sigterm_and_record, args=(str(tmp_path), "t"), timeout=1)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(60)
    (pid, _), = runs(tmp_path, "t")
    assert wait_until(lambda: not pid_alive(pid), 5)


def test_timeout_kills_the_task_subprocess(pool, tmp_path):
    future = pool.schedule(start_child_and_sleep, args=(str(tmp_path),), timeout=1)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(60)
    child = int((tmp_path / "child").read_text())
    assert wait_until(lambda: not pid_alive(child), 5)


def test_exit_code_and_pid_of_a_dead_process(pool):
    with pytest.raises(ProcessExpired) as info:
        pool.schedule(exit_with, args=(3,)).result(60)
    assert info.value.exitcode == 3
    assert isinstance(info.value.pid, int)
    assert not isinstance(info.value, NodeLost)
    assert pool.schedule(add, args=(1, 1)).result(60) == 2


def test_cancel_of_a_running_task_kills_its_process(pool, tmp_path):
    future = pool.schedule(record, args=(str(tmp_path), "r", 60))
    (pid, _), = wait_runs(tmp_path, "r")
    assert wait_until(future.running, 10)
    start = time.monotonic()
    assert future.cancel()
    assert future.cancelled()
    assert wait_until(lambda: not pid_alive(pid), 5)
    assert time.monotonic() - start < 5
    assert pool.schedule(add, args=(1, 1)).result(60) == 2


def test_cancel_of_a_queued_task_never_runs_it(pool, tmp_path):
    # Four slots (two nodes, two processes each): fill them, then queue more.
    blockers = [pool.schedule(record, args=(str(tmp_path), "b%d" % i, 60)) for i in range(4)]
    for i in range(4):
        wait_runs(tmp_path, "b%d" % i)
    queued = pool.schedule(record, args=(str(tmp_path), "q", 0))
    assert queued.cancel()
    for future in blockers:  # the slots free up: the cancelled task must not take one
        assert future.cancel()
    assert pool.schedule(add, args=(1, 1)).result(60) == 2
    time.sleep(0.5)
    assert runs(tmp_path, "q") == []


def echo_reversed(data):
    return data[::-1]


def test_large_arguments_and_results_travel(pool):
    data = os.urandom(1 << 20) * 48  # 48 MiB each way
    # The call travels in the task, through the scheduler: Dask warns about
    # tasks above distributed.admin.large-graph-warning-threshold (10 MB).
    with pytest.warns(UserWarning, match="large graph"):
        future = pool.schedule(echo_reversed, args=(data,))
    assert future.result(120) == data[::-1]
    assert pool.schedule(add, args=(1, 1)).result(60) == 2


def scheduler_keys(dask_scheduler):
    return list(dask_scheduler.tasks)


def resolved_and_forgotten(pool, client):
    """Run a task, drop its future; return its key once the cluster forgot it."""
    future = pool.schedule(add, args=(1, 2))
    assert future.result(60) == 3
    key = pool_key(pool, future)
    del future
    assert wait_until(lambda: key not in client.run_on_scheduler(scheduler_keys), 30)
    return key


def test_a_resolved_task_leaves_nothing_on_the_cluster(pool, client):
    # Its result is not kept in a node's memory once the future is dropped,
    # even when it was the last task the pool resolved.
    resolved_and_forgotten(pool, client)


def test_a_claimed_key_is_never_granted_again(pool, client):
    # A copy of a task that Dask had queued on another node may ask for its
    # claim late, after the task was resolved and its key forgotten: it
    # must be refused, or the task would run a second time.
    key = resolved_and_forgotten(pool, client)
    claim = getattr(client.scheduler, "pebble_claim_" + pool._token)
    status, _ = client.sync(claim, key=key, worker="tcp://127.0.0.1:1")
    assert status == "lost"


def test_spent_ids_are_kept_as_few_ranges():
    import random
    from pebble.cluster import _Spent
    spent, model = _Spent(), set()
    for task_id in range(1000):
        spent.add(task_id)
    assert len(spent) == 1 and 999 in spent and 1000 not in spent and -1 not in spent
    rng = random.Random(7)
    spent = _Spent()
    for _ in range(3000):
        task_id = rng.randrange(500)
        spent.add(task_id)
        model.add(task_id)
    assert [i for i in range(-5, 505) if i in spent] == sorted(model)
    runs = sum(1 for i in model if i - 1 not in model)
    assert len(spent) == runs
    assert all(start < end for start, end in zip(spent.starts, spent.ends, strict=True))
    assert all(end < start for end, start in zip(spent.ends[:-1], spent.starts[1:], strict=True))


def test_a_schedule_interrupted_by_ctrl_c_never_runs_its_task(pool, tmp_path, monkeypatch):
    blockers = [pool.schedule(record, args=(str(tmp_path), "b%d" % i, 60)) for i in range(4)]
    for i in range(4):
        wait_runs(tmp_path, "b%d" % i)
    loop = pool.client.loop
    add_callback = loop.add_callback

    def interrupted(callback, *args, **kwargs):
        # Ctrl-C right after the task was sent to the scheduler.
        if getattr(callback, "__func__", None) is ClusterPool._track:
            raise KeyboardInterrupt
        return add_callback(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "add_callback", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pool.schedule(record, args=(str(tmp_path), "q", 0))
    monkeypatch.setattr(loop, "add_callback", add_callback)
    for future in blockers:  # the slots free up: the interrupted task must not take one
        assert future.cancel()
    assert pool.schedule(add, args=(1, 1)).result(60) == 2
    time.sleep(0.5)
    assert runs(tmp_path, "q") == []
    assert not pool._pending


def test_map_with_chunks_timeouts_and_buffersize(pool, tmp_path):
    results = list(pool.map(add, range(50), range(50), chunksize=7).result(60))
    assert results == [2 * i for i in range(50)]
    bounded = pool.map(add, range(30), chunksize=4, buffersize=2).result(60)
    assert list(bounded) == list(range(30))
    unordered = pool.map(add, range(20), ordered=False).result(60)
    assert sorted(unordered) == list(range(20))

    def slow_at_three(x):
        if x == 3:
            time.sleep(30)
        return x

    iterator = pool.map(slow_at_three, range(6), chunksize=2, timeout=1).result(60)
    out = []
    while True:
        try:
            out.append(next(iterator))
        except StopIteration:
            break
        except concurrent.futures.TimeoutError:
            out.append("timeout")
    assert out == [0, 1, "timeout", 4, 5]


def test_a_killed_node_loses_only_its_running_tasks(client, tmp_path):
    client.wait_for_workers(2, timeout=60)
    pool = ClusterPool(client=client)
    try:
        workers = client.run(os.getpid)
        futures = [pool.schedule(record, args=(str(tmp_path), "t%d" % i, 1.0, i))
                   for i in range(16)]
        assert wait_until(lambda: sum(bool(runs(tmp_path, "t%d" % i)) for i in range(16)) >= 4,
                          30)
        running = {i: runs(tmp_path, "t%d" % i)[0] for i in range(16)
                   if runs(tmp_path, "t%d" % i)}
        victim_address, victim = next((a, p) for a, p in workers.items()
                                      if any(ppid == p for _, ppid in running.values()))
        os.kill(victim, signal.SIGKILL)
        lost, done = [], []
        for i, future in enumerate(futures):
            try:
                assert future.result(90) == i
                done.append(i)
            except NodeLost as error:
                assert error.node == victim_address
                assert error.exitcode is None
                lost.append(i)
        # Each task ran at most once; what was lost had started on the victim.
        for i in range(16):
            assert len(runs(tmp_path, "t%d" % i)) <= 1
        on_victim = {i for i in range(16)
                     if runs(tmp_path, "t%d" % i) and runs(tmp_path, "t%d" % i)[0][1] == victim}
        assert lost and set(lost) <= on_victim
        assert len(done) + len(lost) == 16
        for i in on_victim:
            pid = runs(tmp_path, "t%d" % i)[0][0]
            assert wait_until(lambda pid=pid: not pid_alive(pid), 10)
        assert pool.schedule(add, args=(1, 1)).result(60) == 2
    finally:
        pool.stop()
        pool.join(60)
        client.wait_for_workers(2, timeout=60)


def test_a_pool_starts_while_a_node_leaves(client, cluster):
    """A node that dies as the pool registers on the cluster (the scheduler
    still lists it) does not fail the start: the pool runs on the others."""
    for _ in range(2):
        settle_workers(client, cluster)
        victim = sorted(client.run(os.getpid).values())[0]
        os.kill(victim, signal.SIGKILL)
        ClusterChecker.last_kill = time.monotonic()
        pool = ClusterPool(client=client)
        try:
            assert [f.result(60) for f in [pool.schedule(add, args=(i, 1)) for i in range(4)]] \
                == [1, 2, 3, 4]
        finally:
            pool.stop()
            pool.join(60)
    settle_workers(client, cluster)


def pebble_plugins(dask_scheduler):
    """The names of ClusterPool plugins the scheduler holds, its own and its workers'."""
    names = list(dask_scheduler.plugins) + list(dask_scheduler.worker_plugins)
    return sorted(name for name in names if name.startswith("pebble-"))


def pebble_worker_plugins(dask_worker):
    return sorted(name for name in dask_worker.plugins if name.startswith("pebble-"))


def test_a_pool_that_cannot_start_leaves_nothing_on_the_cluster(client, monkeypatch):
    """A start that fails once the scheduler took part of it (the node plugin
    reached some nodes, then the call failed) takes all of it back."""
    import pebble.cluster
    client.wait_for_workers(2, timeout=60)
    before = client.run_on_scheduler(pebble_plugins), client.run(pebble_worker_plugins)
    register = pebble.cluster._register_on_nodes

    def register_then_fail(client, plugin):
        register(client, plugin)
        raise OSError("a node left")

    monkeypatch.setattr(pebble.cluster, "_register_on_nodes", register_then_fail)
    with pytest.raises(OSError, match="a node left"):
        ClusterPool(client=client)
    assert client.run_on_scheduler(pebble_plugins) == before[0]
    assert client.run(pebble_worker_plugins) == before[1]


def test_a_node_plugin_that_fails_to_set_up_raises_its_error(client):
    import pebble.cluster

    class Refusing(pebble.cluster._Node):
        def setup(self, worker):
            raise Failure("no pool here")

        async def teardown(self, worker):
            pass

    client.wait_for_workers(2, timeout=60)
    plugin = Refusing("refusing", None, 0, None, None)
    try:
        with pytest.raises(Failure, match="no pool here"):
            pebble.cluster._register_on_nodes(client, plugin)
    finally:
        client.unregister_worker_plugin(plugin.name)
    assert client.run_on_scheduler(pebble_plugins) == []


def test_stop_cancels_and_kills_everything(client, tmp_path):
    client.wait_for_workers(2, timeout=60)
    pool = ClusterPool(client=client)
    futures = [pool.schedule(record, args=(str(tmp_path), "s%d" % i, 60)) for i in range(10)]
    assert wait_until(lambda: sum(bool(runs(tmp_path, "s%d" % i)) for i in range(10)) >= 4, 30)
    pids = [runs(tmp_path, "s%d" % i)[0][0] for i in range(10) if runs(tmp_path, "s%d" % i)]
    start = time.monotonic()
    pool.stop()
    pool.join(30)
    assert time.monotonic() - start < 30
    assert all(future.cancelled() for future in futures)
    assert not pool.active
    for pid in pids:
        assert wait_until(lambda pid=pid: not pid_alive(pid), 10)
    with pytest.raises(RuntimeError):
        pool.schedule(add, args=(1, 1))


def test_close_and_join_wait_for_the_work(client):
    pool = ClusterPool(client=client)
    futures = [pool.schedule(add, args=(i, i)) for i in range(10)]
    pool.close()
    assert pool.active or all(f.done() for f in futures)
    pool.join(60)
    assert [f.result(0) for f in futures] == [2 * i for i in range(10)]
    assert not pool.active


def test_a_failing_initializer_breaks_the_pool(client):
    def initializer():
        raise Failure("init")

    pool = ClusterPool(client=client, initializer=initializer)
    try:
        with pytest.raises(Exception) as info:
            pool.schedule(add, args=(1, 1)).result(60)
        assert isinstance(info.value, concurrent.futures.process.BrokenProcessPool)
        with pytest.raises(RuntimeError):
            pool.schedule(add, args=(1, 1))
    finally:
        pool.stop()
        pool.join(60)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError):
        ClusterPool(123)
    with pytest.raises(ValueError):
        ClusterPool("tcp://127.0.0.1:1", client=object())
    with pytest.raises(TypeError):
        ClusterPool(client=object())
    with pytest.raises(TypeError):
        ClusterPool(max_workers="2")


def test_importing_pebble_imports_no_dask():
    code = "import sys, pebble; import pebble.concurrent; print('distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.strip() == "False", out.stderr


def test_the_embedded_cluster_closes_with_the_pool():
    with ClusterPool(n_workers=2, max_workers=1) as pool:
        assert pool.schedule(add, args=(2, 3)).result(60) == 5
        workers = list(pool.client.run(os.getpid).values())
        assert len(workers) == 2
    assert not pool.active
    for pid in workers:
        assert wait_until(lambda pid=pid: not pid_alive(pid), 10)
    with pytest.raises(ValueError):
        ClusterPool(n_workers=0)
    with pytest.raises(ValueError):
        ClusterPool("tcp://127.0.0.1:1", n_workers=2)


def test_embedded_cluster_and_interpreter_exit_with_a_live_pool(tmp_path):
    script = textwrap.dedent("""
        import os, sys, time
        from pebble.cluster import ClusterPool

        def record(path):
            with open(path, "w") as out:
                out.write(str(os.getpid()))
            time.sleep(60)

        if __name__ == "__main__":
            pool = ClusterPool(n_workers=2, max_workers=1)
            assert pool.schedule(pow, args=(2, 5)).result(60) == 32
            workers = pool.client.run(os.getpid)
            with open(sys.argv[2], "w") as out:
                out.write(" ".join(map(str, workers.values())))
            pool.schedule(record, args=(sys.argv[1],))
            while not os.path.exists(sys.argv[1]):
                time.sleep(0.05)
            # Leaves with the pool running.
    """)
    path = tmp_path / "script.py"
    path.write_text(script)
    marker, workers = tmp_path / "pid", tmp_path / "workers"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(path), str(marker), str(workers)], env=env,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start < 60
    task = int(marker.read_text())
    assert wait_until(lambda: not pid_alive(task), 10)
    for pid in map(int, workers.read_text().split()):
        assert wait_until(lambda pid=pid: not pid_alive(pid), 10)


# -- the randomized checker --------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (RuleBasedStateMachine, initialize, rule,  # noqa: E402
                                 run_state_machine_as_test)

#: What each kind of checked task does, and the timeout it is given.
KINDS = {"quick": None, "slow": None, "fail": None, "exit": None, "hang": 0.5}


def checked(directory, task_id, kind):
    """Record this run, then behave as *kind* says."""
    record(directory, "task%d" % task_id)
    if kind == "slow":
        time.sleep(1.0)
    elif kind == "fail":
        raise Failure(task_id)
    elif kind == "exit":
        os._exit(5)
    elif kind == "hang":
        time.sleep(60)
    return task_id


class ClusterChecker(RuleBasedStateMachine):
    """Two ClusterPools on one cluster under a random mix of tasks, cancels,
    stops and node kills."""

    client = None
    cluster = None
    last_kill = 0.0

    def __init__(self):
        super().__init__()
        import tempfile
        self.directory = tempfile.mkdtemp(prefix="pebble-cluster-checker-")
        self.tasks = []  # (id, kind, future, cancelled by us or by a stop)
        self.victims = set()  # pids of Dask workers killed
        self.pools = []  # two pools on one cluster, each replaced when stopped
        self.stopped = []

    @initialize()
    def start(self):
        settle_workers(self.client, self.cluster)
        self.pools = [ClusterPool(client=self.client), ClusterPool(client=self.client)]

    @rule(kind=st.sampled_from(sorted(KINDS)), count=st.integers(1, 6), slot=st.integers(0, 1))
    def schedule(self, kind, count, slot=0):
        for _ in range(count):
            task_id = len(self.tasks)
            future = self.pools[slot].schedule(checked, args=(self.directory, task_id, kind),
                                               timeout=KINDS[kind])
            self.tasks.append([task_id, kind, future, False, self.pools[slot]])

    @rule(slot=st.integers(0, 1))
    def stop(self, slot):
        """stop() mid-run: at once every task of the pool is resolved or
        cancelled, and join() leaves none of its processes; a new pool takes
        its place on the same cluster."""
        pool = self.pools[slot]
        mine = [task for task in self.tasks if task[4] is pool]
        pool.stop()
        for task in mine:
            assert task[2].done(), "task %d pending after stop()" % task[0]
            if task[2].cancelled():
                task[3] = True
        pool.join(60)
        self.stopped.append(pool)
        self.pools[slot] = ClusterPool(client=self.client)
        for task in mine:
            for pid, _ in runs(self.directory, "task%d" % task[0]):
                assert wait_until(lambda pid=pid: not pid_alive(pid), 10), \
                    "task %d: its process outlived stop() and join()" % task[0]

    @rule(pick=st.integers(0, 10 ** 6))
    def cancel(self, pick):
        if self.tasks:
            task = self.tasks[pick % len(self.tasks)]
            if task[2].cancel():
                task[3] = True

    def _busy_nodes(self, workers):
        return sorted({run[1] for task_id, _, future, *_ in self.tasks if not future.done()
                       for run in runs(self.directory, "task%d" % task_id)} & set(workers))

    @rule(pick=st.integers(0, 1))
    def kill_node(self, pick):
        """SIGKILL of a Dask worker that runs something (slow tasks are added
        if nothing runs): its started tasks are lost, the others run elsewhere."""
        if len(self.victims) >= 2:
            return
        if self.victims:
            settle_workers(self.client, self.cluster)  # the first one's replacement
        workers = sorted(self.client.run(os.getpid).values())
        if not self._busy_nodes(workers):
            self.schedule("slow", 2)
            wait_until(lambda: self._busy_nodes(workers), 10)
        busy = self._busy_nodes(workers) or workers
        victim = busy[pick % len(busy)]
        self.victims.add(victim)
        os.kill(victim, signal.SIGKILL)
        ClusterChecker.last_kill = time.monotonic()

    @rule(seconds=st.sampled_from([0.0, 0.1, 0.4]))
    def pause(self, seconds):
        time.sleep(seconds)

    def teardown(self):
        try:
            if not self.pools:
                return
            deadline = time.monotonic() + 90
            for task in self.tasks:
                task_id, kind, future, cancelled, _ = task
                remaining = max(0.1, deadline - time.monotonic())
                concurrent.futures.wait([future], timeout=remaining)
                assert future.done(), "task %d (%s) never resolved; on the scheduler: %s" % (
                    task_id, kind, scheduler_view(self.client, pool_key(task[4], future)))
                done = runs(self.directory, "task%d" % task_id)
                assert len(done) <= 1, "task %d ran %d times" % (task_id, len(done))
                if future.cancelled():
                    assert cancelled, "task %d cancelled by nobody" % task_id
                    continue
                error = future.exception()
                if isinstance(error, NodeLost):
                    # Lost only where its node is gone: killed here, or
                    # closed by the cluster (settle_workers may scale it).
                    assert not done or done[0][1] in self.victims or not pid_alive(done[0][1]), \
                        "task %d: NodeLost (%s) but it ran on the live node %d; killed: %s" % (
                            task_id, error.node, done[0][1], sorted(self.victims))
                elif kind in ("quick", "slow"):
                    assert error is None and future.result() == task_id, (task_id, error)
                elif kind == "fail":
                    assert isinstance(error, Failure), (task_id, error)
                elif kind == "exit":
                    assert isinstance(error, ProcessExpired) and error.exitcode == 5, \
                        (task_id, error)
                else:
                    assert isinstance(error, concurrent.futures.TimeoutError), (task_id, error)
            for pool in self.pools:
                pool.close()
                pool.join(60)
            for task_id, *_ in self.tasks:
                for pid, _ in runs(self.directory, "task%d" % task_id):
                    assert wait_until(lambda pid=pid: not pid_alive(pid), 10), \
                        "task %d: its process outlived the pool" % task_id
        finally:
            for pool in self.pools:
                pool.stop()
                pool.join(60)


def pool_key(pool, future):
    """The Dask key of *pool*'s task behind *future*."""
    return "pebble-%s-%d" % (pool._token, future._pebble_id)


def scheduler_view(client, key):
    """What the scheduler knows of *key*, for an assertion's message."""
    def view(dask_scheduler, key=key):
        claims = {name: plugin.claims.get(key) for name, plugin in dask_scheduler.plugins.items()
                  if hasattr(plugin, "claims")}
        task = dask_scheduler.tasks.get(key)
        where = None if task is None or task.processing_on is None \
            else task.processing_on.address
        return {"state": None if task is None else task.state, "processing_on": where,
                "claims": claims, "workers": sorted(dask_scheduler.workers)}
    try:
        return client.run_on_scheduler(view)
    except Exception as error:
        return repr(error)


def settle_workers(client, cluster):
    """Wait for both workers, and for a replaced one to have settled: a
    Dask worker killed while it starts makes its nanny give up."""
    try:
        client.wait_for_workers(2, timeout=60)
    except Exception:
        cluster.scale(2)  # a nanny gave up: start a new one
        client.wait_for_workers(2, timeout=60)
    time.sleep(max(0.0, ClusterChecker.last_kill + 3 - time.monotonic()))


@pytest.mark.timeout(900)
def test_cluster_under_a_random_mix_of_operations(client, cluster, soak):
    ClusterChecker.client, ClusterChecker.cluster = client, cluster
    examples = 60 if soak else 10
    run_state_machine_as_test(ClusterChecker, settings=settings(
        max_examples=examples, stateful_step_count=12, deadline=None, database=None,
        suppress_health_check=list(HealthCheck), print_blob=True))


def start_method():
    import multiprocessing
    return multiprocessing.get_start_method()


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="fork is the default before 3.14")
def test_nodes_fork_their_processes_by_default(pool, client):
    """Not the spawn a Dask worker inherits: a replacement process is a fork."""
    assert pool.schedule(start_method).result(60) == "fork"
    import multiprocessing
    other = ClusterPool(client=client, context=multiprocessing.get_context("forkserver"))
    try:
        assert other.schedule(start_method).result(60) == "forkserver"
    finally:
        other.stop()
        other.join(60)
