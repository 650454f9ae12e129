"""ClusterPool: the ProcessPool API over a Dask cluster.

Every Dask worker (a *node*) runs a pebble ProcessPool of its own, set up by a
Dask worker plugin; a task travels to a node as a Dask task, which hands it to
that node's pool. Timeouts, cancels and crashes are therefore handled on the
node by the engine, and a task runs at most once: before a node runs a task it
claims the task's key from a scheduler plugin, so a task that Dask reschedules
after its node was lost is reported lost (:class:`NodeLost`) instead of being
run again. Needs ``pip install 'pebble[dask]'``.
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import itertools
import multiprocessing
import pickle
import queue
import sys
import threading
import time
import uuid
import weakref
from concurrent.futures import CancelledError, InvalidStateError, TimeoutError
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

try:
    import cloudpickle
    import distributed
    from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin
    from distributed.protocol import deserialize
    from distributed.protocol.serialize import Serialized
except ImportError as _missing:  # pragma: no cover - depends on the install
    raise ImportError("pebble.cluster needs Dask's distributed: "
                      "pip install 'pebble[dask]'") from _missing

from pebble.errors import ProcessExpired, RemoteException, format_exception, outcome_not_rebuilt
from pebble.futures import ProcessFuture
from pebble.pool.base import (CLOSED, CREATED, ERROR, RUNNING_STATE, TimedPool, failed_future,
                              stop_all)
from pebble.pool.process import ProcessPool, get_start_method
from pebble.validators import (check_call, check_initializer, check_max_tasks,
                               check_max_workers, check_timeout)

__all__ = ["ClusterPool", "NodeLost"]

R = TypeVar("R")

_live_pools: "weakref.WeakSet[ClusterPool]" = weakref.WeakSet()


class NodeLost(ProcessExpired):
    """The node (Dask worker) running the task was lost: killed, or cut off.

    ``node`` is the address of that worker; ``exitcode`` and ``pid`` are
    None, nobody being left to tell them.
    """

    def __init__(self, msg: str, node: Optional[str] = None):
        super().__init__(msg, code=None, pid=None)
        self.node = node

    def __reduce__(self) -> Tuple[Any, ...]:
        return type(self), (self.args[0] if self.args else "", self.node)


# -- in the node's worker processes ------------------------------------------------


def _dump_error(error: BaseException) -> bytes:
    """*error* with its traceback text, pickled by value (cloudpickle)."""
    text = format_exception(error)
    try:
        return cloudpickle.dumps(RemoteException(error, text), 5)
    except BaseException as unpicklable:
        stand_in = RuntimeError("%s: %s (the exception could not be pickled: %s)"
                                % (type(error).__name__, error, unpicklable))
        return cloudpickle.dumps(RemoteException(stand_in, text), 5)


def _call(blob: bytes) -> Tuple[bool, bytes]:
    """Run the call pickled in *blob*; (True, result) or (False, error), pickled
    by value, so that classes of the caller's ``__main__`` come back too."""
    function, args, kwargs = pickle.loads(blob)
    try:
        result = function(*args, **kwargs)
    except BaseException as error:
        return False, _dump_error(error)
    try:
        return True, cloudpickle.dumps(result, 5)
    except BaseException as error:
        return False, _dump_error(error)


def _initialize(blob: bytes) -> None:
    """The node pools' initializer: the user's, pickled by value."""
    initializer, initargs = pickle.loads(blob)
    initializer(*initargs)


# -- on the nodes (Dask workers) -------------------------------------------------


def _default_method() -> str:
    """The start method a fresh program gets by default on this platform.

    A Dask worker's own default is spawn (it was started by spawn), whose
    replacement workers take a new interpreter each.
    """
    if sys.platform != "linux":
        return "spawn"
    return "forkserver" if sys.version_info >= (3, 14) else "fork"


class _Node(WorkerPlugin):
    """Runs a ProcessPool on a Dask worker for one ClusterPool."""

    idempotent = False

    def __init__(self, token: str, max_workers: Optional[int], max_tasks: int,
                 init: Optional[bytes], method: Optional[str]):
        self.name = "pebble-node-" + token
        self.token = token
        self.max_workers = max_workers
        self.max_tasks = max_tasks
        self.init = init
        self.method = method

    def setup(self, worker: Any) -> None:
        self.worker = worker
        size = self.max_workers or worker.state.nthreads
        self.pool = ProcessPool(size, self.max_tasks,
                                _initialize if self.init is not None else None,
                                (self.init,) if self.init is not None else (),
                                multiprocessing.get_context(self.method or _default_method()))
        self.slots = asyncio.Semaphore(size)
        self.running: Dict[str, ProcessFuture] = {}
        self.cancelled: set = set()
        worker.handlers["pebble_cancel_" + self.token] = self.cancel

    def cancel(self, keys: List[str]) -> None:
        """Stop these tasks if they run here (called by the scheduler plugin)."""
        for key in keys:
            self.cancelled.add(key)
            future = self.running.get(key)
            if future is not None:
                future.cancel()

    async def teardown(self, worker: Any) -> None:
        worker.handlers.pop("pebble_cancel_" + self.token, None)
        self.pool.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.pool.join, 30)


def _outcome(future: ProcessFuture) -> Tuple[str, Any]:
    """What the node tells the client about its finished pool future."""
    if future.cancelled():
        return "cancelled", None
    error = future.exception()
    if error is None:
        ok, blob = future.result()
        return ("ok" if ok else "error"), blob
    if isinstance(error, TimeoutError) and len(error.args) == 2:
        return "timeout", error.args[1]
    if isinstance(error, ProcessExpired):
        return "expired", (str(error), error.exitcode, error.pid)
    return "failed", _dump_error(error)


async def _run_on_node(token: str, key: str, blob: bytes, timeout: Optional[float]) -> Any:
    """The Dask task: claim *key*, run it in this node's pool, report its outcome."""
    worker = distributed.get_worker()
    node = worker.plugins.get("pebble-node-" + token)
    if node is None:
        return "failed", _dump_error(RuntimeError(
            "The node %s has no pool for this ClusterPool" % worker.address))
    async with node.slots:  # holding a process: the claim means it starts now
        claim = getattr(worker.scheduler, "pebble_claim_" + token)
        status, where = await claim(key=key, worker=worker.address)
        if status != "go":
            return status, where
        if key in node.cancelled:
            node.cancelled.discard(key)
            return "cancelled", None
        try:
            future = node.pool.schedule(_call, args=(blob,), timeout=timeout)
        except BaseException as error:
            return "failed", _dump_error(error)
        node.running[key] = future
        worker.log_event("pebble-running-" + token, key)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finish() -> None:
            if not done.done():
                done.set_result(None)

        def wake(_: Any) -> None:
            loop.call_soon_threadsafe(finish)

        future.add_done_callback(wake)
        try:
            await done
        except BaseException:  # the Dask task was cancelled: so is the call
            future.cancel()
            raise
        finally:
            node.running.pop(key, None)
            node.cancelled.discard(key)
        return _outcome(future)


# -- on the scheduler ---------------------------------------------------------------


class _Spent:
    """A set of task ids, kept as sorted disjoint ranges ``[start, end)``.

    Ids are spent roughly in the order they were given, so the ranges
    merge and the set stays small however many tasks a pool runs.
    """

    def __init__(self) -> None:
        self.starts: List[int] = []
        self.ends: List[int] = []

    def __len__(self) -> int:
        return len(self.starts)

    def __contains__(self, task_id: int) -> bool:
        at = bisect.bisect_right(self.starts, task_id) - 1
        return at >= 0 and task_id < self.ends[at]

    def add(self, task_id: int) -> None:
        at = bisect.bisect_right(self.starts, task_id) - 1
        if at >= 0 and task_id < self.ends[at]:
            return
        left = at >= 0 and self.ends[at] == task_id
        right = at + 1 < len(self.starts) and self.starts[at + 1] == task_id + 1
        if left and right:
            self.ends[at] = self.ends[at + 1]
            del self.starts[at + 1], self.ends[at + 1]
        elif left:
            self.ends[at] = task_id + 1
        elif right:
            self.starts[at + 1] = task_id
        else:
            self.starts.insert(at + 1, task_id)
            self.ends.insert(at + 1, task_id + 1)


class _Claims(SchedulerPlugin):
    """Grants each task key to the first node that asks; later askers learn
    that the node which took it was lost.

    A key the scheduler forgot is spent: a copy of its task that Dask had
    queued on another node may still ask for it, late, and is refused.
    """

    def __init__(self, token: str):
        self.name = "pebble-claims-" + token
        self.token = token
        self.prefix = "pebble-%s-" % token

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.claims: Dict[str, str] = {}
        self.cancelled: set = set()
        self.spent = _Spent()
        scheduler.handlers["pebble_claim_" + self.token] = self.claim
        scheduler.handlers["pebble_cancel_" + self.token] = self.cancel

    async def close(self) -> None:
        for name in ("pebble_claim_", "pebble_cancel_"):
            self.scheduler.handlers.pop(name + self.token, None)

    def _task_id(self, key: Any) -> Optional[int]:
        """The pool's id of *key*, None for a key that is not this pool's."""
        if isinstance(key, str) and key.startswith(self.prefix):
            tail = key[len(self.prefix):]
            if tail.isdigit():
                return int(tail)
        return None

    def _is_spent(self, key: str) -> bool:
        task_id = self._task_id(key)
        return task_id is None or task_id in self.spent

    def claim(self, key: str, worker: str) -> Tuple[str, Optional[str]]:
        if key in self.cancelled:
            return "cancelled", None
        holder = self.claims.get(key)
        if holder is not None:
            return "lost", holder
        if self._is_spent(key):
            return "lost", None
        self.claims[key] = worker
        return "go", None

    async def cancel(self, keys: List[str]) -> None:
        """Refuse these keys from now on, and stop those that run."""
        where: Dict[str, List[str]] = {}
        for key in keys:
            if self._is_spent(key):
                continue
            self.cancelled.add(key)
            holder = self.claims.get(key)
            if holder is not None and holder in self.scheduler.workers:
                where.setdefault(holder, []).append(key)
        calls = [getattr(self.scheduler.rpc(address), "pebble_cancel_" + self.token)(keys=held)
                 for address, held in where.items()]
        await asyncio.gather(*calls, return_exceptions=True)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "forgotten":
            task_id = self._task_id(key)
            if task_id is not None:
                self.spent.add(task_id)
                self.claims.pop(key, None)
                self.cancelled.discard(key)


# -- on the client -----------------------------------------------------------------

async def _add_node_plugin(dask_scheduler: Any, name: str, plugin: bytes) -> Dict[str, Any]:
    """On the scheduler: keep *plugin* for the nodes to come, and set it up
    on the nodes it lists now.

    A node that cannot be reached is leaving (killed, or closing), and the
    scheduler drops it as its connection closes: it is left out, where the
    scheduler's own registration would fail the whole call.
    """
    dask_scheduler.worker_plugins[name] = plugin
    responses = await dask_scheduler.broadcast(
        msg={"op": "plugin-add", "plugin": plugin, "name": name}, on_error="return")
    return {address: {key: _unwrapped(value) for key, value in response.items()}
            for address, response in responses.items()
            if not isinstance(response, BaseException)}


def _unwrapped(value: Any) -> Any:
    """A failed set-up's error and traceback, still in their wire form as the
    scheduler received them: their pickles, to be sent on to the client."""
    if isinstance(value, Serialized):
        return deserialize(value.header, value.frames)
    return value


def _register_on_nodes(client: Any, plugin: _Node) -> None:
    """Register *plugin* on every node, present and future; raise what its
    set-up raised on a node."""
    responses = client.run_on_scheduler(_add_node_plugin, name=plugin.name,
                                        plugin=distributed.protocol.pickle.dumps(plugin))
    for response in responses.values():
        if response.get("status") == "error":
            _, error, trace = distributed.core.clean_exception(response["exception"],
                                                               response["traceback"])
            raise error.with_traceback(trace)


def _settle(future: ProcessFuture, how: Callable[[Any], None], value: Any) -> None:
    """Resolve *future* unless it was cancelled meanwhile."""
    try:
        how(value)
    except InvalidStateError:
        pass


class ClusterPool(TimedPool):
    """A pool of processes on the nodes of a Dask cluster, with ProcessPool's API.

    *address* is a Dask scheduler's address, or *client* an existing
    ``distributed.Client``; with neither, a ``distributed.LocalCluster`` of
    *n_workers* workers is started on this machine and closed with the pool.
    *max_workers* (default: each Dask worker's thread count), *max_tasks*,
    *initializer*, *initargs* and *context* are those of the ProcessPool
    that each node runs; without *context* a node uses its platform's
    default start method (fork on Linux before Python 3.14).
    """

    def __init__(self, address: Optional[str] = None, *, client: Any = None,
                 n_workers: Optional[int] = None, max_workers: Optional[int] = None,
                 max_tasks: int = 0, initializer: Optional[Callable[..., Any]] = None,
                 initargs: Sequence[Any] = (), context: Any = None):
        super().__init__()
        if address is not None and client is not None:
            raise ValueError("give address or client, not both")
        if address is not None and not isinstance(address, str):
            raise TypeError("address must be a str, not %s" % type(address).__name__)
        if client is not None and not isinstance(client, distributed.Client):
            raise TypeError("client must be a distributed.Client, not %s"
                            % type(client).__name__)
        if n_workers is not None:
            if isinstance(n_workers, bool) or not isinstance(n_workers, int):
                raise TypeError("n_workers must be an int, not %s" % type(n_workers).__name__)
            if n_workers < 1:
                raise ValueError("n_workers must be at least 1")
            if address is not None or client is not None:
                raise ValueError("n_workers applies to the embedded cluster only")
        self._max_workers = None if max_workers is None else check_max_workers(max_workers)
        self._max_tasks = check_max_tasks(max_tasks)
        initializer, initargs = check_initializer(initializer, initargs)
        # None: the platform's default on each node.
        self._method = None if context is None else get_start_method(context)
        self._init = (cloudpickle.dumps((initializer, initargs), 5)
                      if initializer is not None else None)
        self._address = address
        self._n_workers = n_workers
        self._client: Any = client
        self._own_client = client is None
        self._cluster: Any = None
        self._token = uuid.uuid4().hex
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._pending: Dict[int, Tuple[ProcessFuture, Any]] = {}  # id: (future, Dask future)
        self._verdicts: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._resolver: Optional[threading.Thread] = None
        self._finished = False
        self._start_lazily()

    # -- set-up and tear-down ----------------------------------------------------

    def _start(self) -> None:
        try:
            if self._client is None:
                if self._address is None:
                    threads = self._max_workers
                    self._cluster = distributed.LocalCluster(
                        n_workers=self._n_workers, threads_per_worker=threads,
                        processes=True, dashboard_address=":0")
                    self._client = distributed.Client(self._cluster)
                else:
                    self._client = distributed.Client(self._address)
            client = self._client
            client.register_plugin(_Claims(self._token))
            client.subscribe_topic("pebble-running-" + self._token, self._on_running)
            _register_on_nodes(client, _Node(self._token, self._max_workers, self._max_tasks,
                                             self._init, self._method))
        except BaseException:
            if self._client is not None:
                self._leave_cluster()
            self._release_cluster()
            raise
        self._resolver = threading.Thread(target=self._resolve_loop, daemon=True,
                                          name="ClusterPool-resolver")
        self._resolver.start()
        _live_pools.add(self)

    def _release_cluster(self) -> None:
        """Close the client and cluster this pool made (and only those)."""
        if self._own_client and self._client is not None:
            try:
                self._client.close()
            except BaseException:
                pass
        if self._cluster is not None:
            try:
                self._cluster.close()
            except BaseException:
                pass

    def _leave_cluster(self) -> None:
        """Take this pool's plugins off the scheduler and the nodes (whichever
        were registered), and its topic off the client."""
        client = self._client
        try:
            client.unregister_worker_plugin("pebble-node-" + self._token)
        except BaseException:
            pass
        try:
            client.unsubscribe_topic("pebble-running-" + self._token)
        except BaseException:
            pass
        try:
            client.unregister_scheduler_plugin("pebble-claims-" + self._token)
        except BaseException:
            pass

    def _finish(self) -> None:
        """Remove the pool from the cluster: its node pools stop with their
        processes; close what the pool started."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        self._leave_cluster()
        self._verdicts.put(None)
        if self._resolver is not None and self._resolver is not threading.current_thread():
            self._resolver.join()
        self._release_cluster()
        _live_pools.discard(self)

    # -- verdicts ------------------------------------------------------------

    def _on_running(self, event: Tuple[float, Any]) -> None:
        self._verdicts.put(("running", event[1]))

    def _key(self, task_id: int) -> str:
        return "pebble-%s-%d" % (self._token, task_id)

    async def _track(self, task_id: int, dask_future: Any) -> None:
        """On the client's loop: wait for the task's Dask future."""
        try:
            outcome = await self._client.gather(dask_future, asynchronous=True)
        except BaseException as error:
            self._verdicts.put((task_id, "dask", error))
        else:
            self._verdicts.put((task_id, "node", outcome))

    def _resolve_loop(self) -> None:
        """Resolve the futures as verdicts come, outside the client's loop."""
        # Each verdict is taken in a call of its own, so that nothing of it
        # (the task's Dask future, which keeps its result on its node) stays
        # referenced while the loop waits for the next one.
        while self._take(self._verdicts.get()):
            pass

    def _take(self, verdict: Any) -> bool:
        """Act on one verdict; False for the sentinel that ends the loop."""
        if verdict is None:
            return False
        if verdict[0] == "running":
            task_id = int(verdict[1].rsplit("-", 1)[1])
            with self._lock:
                entry = self._pending.get(task_id)
            if entry is not None:
                entry[0]._pebble_start()
            return True
        task_id, source, value = verdict
        with self._lock:
            entry = self._pending.pop(task_id, None)
            if not self._pending:
                self._drained.notify_all()
        if entry is not None and not entry[0].done():
            self._resolve(entry[0], source, value)
        return True

    def _resolve(self, future: ProcessFuture, source: str, value: Any) -> None:
        if source == "dask":
            if isinstance(value, CancelledError) or isinstance(value, asyncio.CancelledError):
                future.cancel()
            elif isinstance(value, distributed.KilledWorker):
                worker = value.last_worker
                address = getattr(worker, "address", None)
                _settle(future, future.set_exception,
                        NodeLost("The node %s running the task was lost" % address, address))
            else:
                _settle(future, future.set_exception, value)
            return
        status, payload = value
        if status == "ok":
            try:
                result = pickle.loads(payload)
            except BaseException as unpickling:
                _settle(future, future.set_exception, outcome_not_rebuilt(unpickling, True))
            else:
                _settle(future, future.set_result, result)
        elif status in ("error", "failed"):
            try:
                remote: BaseException = pickle.loads(payload)
            except BaseException as unpickling:
                remote = outcome_not_rebuilt(unpickling, False)
            if status == "failed" and isinstance(remote, BrokenProcessPool):
                self._broken_node(remote)
            _settle(future, future.set_exception, remote)
        elif status == "timeout":
            _settle(future, future.set_exception, TimeoutError("Task timeout", payload))
        elif status == "expired":
            message, code, pid = payload
            _settle(future, future.set_exception, ProcessExpired(message, code=code, pid=pid))
        elif status == "lost":
            _settle(future, future.set_exception,
                    NodeLost("The node %s running the task was lost" % payload, payload))
        else:  # cancelled
            future.cancel()

    def _broken_node(self, error: BaseException) -> None:
        """A node's pool broke (its initializer failed): so does this pool."""
        with self._state_lock:
            if self._state in (RUNNING_STATE, CLOSED):
                self._state = ERROR
                self._error = error

    # -- cancelling --------------------------------------------------------------

    def _cancel(self, task_id: int) -> None:
        """ProcessFuture.cancel()'s hook: drop the task, or stop it on its node."""
        with self._lock:
            entry = self._pending.get(task_id)
        if entry is not None:
            self._cancel_tasks([task_id], [entry[1]])

    def _cancel_tasks(self, task_ids: List[int], dask_futures: List[Any]) -> None:
        client = self._client
        keys = [self._key(task_id) for task_id in task_ids]

        async def cancel() -> None:
            try:
                await getattr(client.scheduler, "pebble_cancel_" + self._token)(keys=keys)
            finally:
                await client.cancel(dask_futures, asynchronous=True)

        try:
            client.loop.add_callback(cancel)
        except BaseException:  # the client is closing: its tasks go with it
            pass

    # -- public API -------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """True while the pool runs, or is closed with work still to finish."""
        if self._state in (CREATED, RUNNING_STATE):
            return True
        if self._state == CLOSED:
            with self._lock:
                return bool(self._pending)
        return False

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` the pool submits through."""
        return self._client

    def schedule(self, function: Callable[..., R], args: Iterable[Any] = (),
                 kwargs: Optional[Dict[str, Any]] = None,
                 timeout: Optional[float] = None) -> ProcessFuture[R]:
        """Schedule *function(\\*args, \\*\\*kwargs)* on a node; return its ProcessFuture.

        With *timeout* (seconds) the process running the call on its node is
        stopped, with its process tree, once the timeout expires, and the
        future raises TimeoutError.
        """
        self._check_pool_state()
        args, kwargs = check_call(function, args, kwargs)
        timeout = check_timeout(timeout) or None  # 0 means no timeout, as in Pebble
        try:
            blob = cloudpickle.dumps((function, args, kwargs), 5)
        except BaseException as error:
            return failed_future(error)
        task_id = next(self._ids)
        future: ProcessFuture[R] = ProcessFuture()
        future._pebble_cancel = self._cancel
        key = self._key(task_id)
        dask_future = None
        try:
            dask_future = self._client.submit(_run_on_node, self._token, key, blob, timeout,
                                              key=key, pure=False)
            with self._lock:
                self._pending[task_id] = (future, dask_future)
            future._pebble_id = task_id
            self._client.loop.add_callback(self._track, task_id, dask_future)
        except BaseException:
            # Interrupted (Ctrl-C): the caller never sees this future, so
            # nor may the task run.
            if dask_future is not None:
                with self._lock:
                    self._pending.pop(task_id, None)
                self._cancel_tasks([task_id], [dask_future])
            raise
        return future

    # -- lifecycle hooks --------------------------------------------------------------

    def _close(self) -> None:
        pass  # join() waits for the tasks, then leaves the cluster

    def _stop(self) -> None:
        if self._client is None or self._finished:
            return
        # Cancelled here and now: join() need not wait for Dask to confirm,
        # as removing the pool from the cluster stops what still runs.
        with self._lock:
            entries = list(self._pending.items())
            self._pending.clear()
            self._drained.notify_all()
        for _, (future, _) in entries:
            future.__dict__.pop("_pebble_cancel", None)  # one call below cancels them all
            future.cancel()
        if entries:
            self._cancel_tasks([task_id for task_id, _ in entries],
                               [dask_future for _, (_, dask_future) in entries])

    def _join(self, deadline: Optional[float]) -> bool:
        if self._resolver is threading.current_thread():
            raise RuntimeError("join() called from a callback of the pool")
        with self._lock:
            while self._pending and not self._finished:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._drained.wait(remaining)
        self._finish()
        return True


# Stop every live ClusterPool at exit: nothing it started outlives the
# interpreter.
atexit.register(stop_all, _live_pools, 10)
