"""ProcessPool: the policy layer over the native ProcCore engine."""

from __future__ import annotations

import atexit
import multiprocessing
import os
import pickle
import threading
import time
import weakref
from concurrent.futures import TimeoutError
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple, Type, TypeVar

from pebble import _pebble, _worker
from pebble._pebble import ProcCore
from pebble.errors import ProcessExpired
from pebble.futures import ProcessFuture
from pebble.pool.base import (CLOSED, CREATED, ERROR, RUNNING_STATE, TimedPool, failed_future,
                              stop_all)
from pebble.validators import (check_call, check_initializer, check_max_tasks,
                               check_max_workers, check_timeout)

__all__ = ["ProcessPool"]

R = TypeVar("R")

_live_pools: "weakref.WeakSet[ProcessPool]" = weakref.WeakSet()

# Workers in a row that cannot be started, or die before they are ready,
# after which the pool gives up and enters the error state. A SIGKILL comes
# from outside and does not count; fewer reports a worker that cannot start
# sooner.
_START_FAILURES = 3


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, 5)


def get_start_method(context: Any) -> str:
    """Return the start method named by a multiprocessing context or module."""
    if context is None or context is multiprocessing:
        return multiprocessing.get_start_method()
    method = getattr(context, "get_start_method", None)
    if method is None:
        raise TypeError("context must be a multiprocessing context or the "
                        "multiprocessing module, not %s" % type(context).__name__)
    name = method()
    if name not in ("fork", "spawn", "forkserver"):
        raise ValueError("unsupported start method %r" % name)
    return name


def _preparation_data() -> dict:
    import multiprocessing.process
    import multiprocessing.spawn
    if getattr(multiprocessing.process.current_process(), "_inheriting", False):
        raise RuntimeError(
            "An attempt has been made to start a new process before the current "
            "process has finished its bootstrapping phase. Use the "
            "'if __name__ == \"__main__\":' idiom in the main module.")
    data = multiprocessing.spawn.get_preparation_data(_worker.WORKER_NAME)
    # Sent over our own pipe, not multiprocessing's: plain bytes.
    if "authkey" in data:
        data["authkey"] = bytes(data["authkey"])
    return data


def _interpreter_command(code: str) -> list:
    """Command line running *code* in a fresh interpreter that imports this pebble."""
    import multiprocessing.spawn
    import multiprocessing.util
    root = os.path.dirname(os.path.dirname(os.path.abspath(_worker.__file__)))
    code = "import sys; sys.path.insert(0, %r); %s" % (root, code)
    return ([os.fsdecode(multiprocessing.spawn.get_executable())]
            + multiprocessing.util._args_from_interpreter_flags()  # type: ignore[attr-defined]
            + ["-c", code])


def _spawn_command() -> list:
    """The command line of a spawned worker, but for its last three arguments:
    whether it keeps its tasks' orphans, the pool's pid and its parent's pid."""
    return _interpreter_command(
        "from pebble._worker import spawn_main; import sys; "
        "spawn_main(int(sys.argv[-1]), int(sys.argv[-2]), sys.argv[-3] == '1')")


def start_launcher(method: str, initializer: Any, initargs: tuple,
                   preparation: Optional[dict], trees: bool = True) -> Tuple[int, int]:
    """Start the launcher process; return (control socket fd, launcher pid).

    *preparation* is the spawn preparation data (spawn and forkserver),
    taken by the caller while the main module is still intact.
    """
    # Closed in anything forked meanwhile: no other process may hold the
    # launcher's end, whose EOF tells the pool that the launcher died.
    ours, theirs = _pebble.ctl_socketpair()
    try:
        pid = _launcher_process(method, initializer, initargs, preparation, trees,
                                ours, theirs)
    except BaseException:
        _pebble.fd_close(ours)
        raise
    finally:
        _pebble.fd_close(theirs)
    return ours, pid


def _launcher_process(method: str, initializer: Any, initargs: tuple,
                      preparation: Optional[dict], trees: bool, ours: int, theirs: int) -> int:
    """Start the launcher on the control socket end *theirs*; its pid."""
    if method == "fork":
        parent = os.getpid()
        # Registered descriptors are closed in a fork: the launcher keeps a copy.
        kept = os.dup(theirs)
        try:
            pid = os.fork()
            if pid == 0:  # the launcher: never returns
                # Processes forked later may hold our control socket open,
                # so its EOF alone cannot tell that the parent died.
                _pebble.set_parent_death_signal(parent)
                _worker.launcher_main(kept, None, [(_pebble.FRAME_INIT, b"")],
                                      (initializer, initargs), trees, ("fork", parent))
        finally:
            os.close(kept)
        return pid
    config = {
        "method": method,
        "parent": os.getpid(),
        "trees": trees,
        "preparation": preparation,
        "init": _dumps((initializer, initargs)) if initializer is not None else b"",
        "argv": _spawn_command(),
    }
    if method == "forkserver":
        from multiprocessing import forkserver
        config["preload"] = list(getattr(forkserver._forkserver, "_preload_modules", ()))
    boot_r, boot_w = os.pipe()
    try:
        argv = _interpreter_command(
            "from pebble._worker import spawned_launcher_main; "
            "spawned_launcher_main(3, 4)")
        # Move the boot pipe out of the way of 3 and 4 before dup2 (the
        # control socket is numbered 10 or above).
        boot = os.dup(boot_r) if boot_r < 10 else boot_r
        actions = [(os.POSIX_SPAWN_DUP2, theirs, 3), (os.POSIX_SPAWN_DUP2, boot, 4)]
        try:
            pid = os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=actions)
        finally:
            if boot != boot_r:
                os.close(boot)
        os.close(boot_r)
        boot_r = -1
        with os.fdopen(boot_w, "wb") as out:
            boot_w = -1
            pickle.dump(config, out, 5)
    finally:
        if boot_r >= 0:
            os.close(boot_r)
        if boot_w >= 0:
            os.close(boot_w)
    return pid


def _can_fork_in_process() -> bool:
    """Whether the children of this process can be watched by pidfd: then a
    fork-mode pool forks its workers from the caller's process itself."""
    return _pebble.can_fork_in_process()


#: Fork-mode workers and decorated calls are forks of the caller itself.
FORK_IN_PROCESS = _can_fork_in_process()


def start_inproc_launcher(initializer: Any, initargs: tuple, trees: bool,
                          stock: Optional[list],
                          preparation: Optional[dict] = None) -> Tuple[int, threading.Thread]:
    """Start the launcher of a pool as a thread of this process; return
    (control socket fd, thread).

    Under fork *stock* lists workers already forked; under spawn
    *preparation* is the spawn preparation data, and each worker is a fresh
    interpreter, a child of this process.
    """
    argv = frames = None
    if preparation is not None:
        me = str(os.getpid())
        argv = _spawn_command() + ["1" if trees else "0", me, me]
        init = _dumps((initializer, initargs)) if initializer is not None else b""
        frames = [(_pebble.FRAME_PREPARE, pickle.dumps(preparation, 5)),
                  (_pebble.FRAME_INIT, init)]
    ours, theirs = _pebble.ctl_socketpair()
    try:
        thread = threading.Thread(target=_worker.inproc_launcher_main,
                                  args=(theirs, (initializer, initargs), trees,
                                        stock, argv, frames),
                                  name="ProcessPool-launcher", daemon=True)
        thread.start()
    except BaseException:
        _pebble.fd_close(ours)
        _pebble.fd_close(theirs)
        raise
    return ours, thread


def _reap(pid: int) -> Optional[int]:
    """Wait for child *pid*; its wait status, or None if it was not ours to wait for."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None


class ProcessPool(TimedPool):
    """A pool of worker processes with task timeouts and crash recovery.

    *max_workers* processes run the scheduled calls; with *max_tasks* > 0
    each worker is replaced after that many calls. *initializer* is called
    with *initargs* in every new worker; if it fails the pool enters an
    error state. *context* is a multiprocessing context (or the module
    itself) choosing the start method: fork, spawn or forkserver.

    A worker stopped by a timeout, a cancel or the end of the pool takes
    the processes its tasks started with it; *kill_tree* False leaves them
    alone.
    """

    def __init__(self, max_workers: int = multiprocessing.cpu_count(),
                 max_tasks: int = 0,
                 initializer: Optional[Callable[..., Any]] = None,
                 initargs: Sequence[Any] = (),
                 context: Any = multiprocessing, *, kill_tree: bool = True,
                 _spare: int = -1):
        super().__init__()
        if not isinstance(kill_tree, bool):
            raise TypeError("kill_tree must be a bool, not %s" % type(kill_tree).__name__)
        self._kill_tree = kill_tree
        self._max_workers = check_max_workers(max_workers)
        self._max_tasks = check_max_tasks(max_tasks)
        self._initializer, self._initargs = check_initializer(initializer, initargs)
        self._method = get_start_method(context)
        self._elastic = _spare >= 0
        self._core = ProcCore(self._max_workers, self._max_tasks, _spare,
                              self._initializer is not None, _START_FAILURES,
                              self._method in ("fork", "spawn") and FORK_IN_PROCESS)
        self._manager: Optional[threading.Thread] = None
        # Set when the manager is done. join() waits on it rather than in
        # Thread.join(), which Ctrl-C can leave believing a live thread ended.
        self._managed = threading.Event()
        self._broken: Optional[BaseException] = None

    # -- engine ------------------------------------------------------------

    def _start(self) -> None:
        # Taken here: at interpreter exit the manager thread may run after
        # __main__ lost the attributes spawned workers need to import it.
        preparation = _preparation_data() if self._method != "fork" else None
        early: Any = None
        if self._method == "fork" and FORK_IN_PROCESS:
            # Started here, not by the manager: at interpreter exit a thread
            # may no longer start a thread of its own.
            early = self._prefork()
            if not isinstance(early, BaseException):
                try:
                    early = start_inproc_launcher(self._initializer, self._initargs,
                                                  self._kill_tree, early)
                except BaseException as error:  # reported by the manager
                    early = error
        elif self._method == "spawn" and FORK_IN_PROCESS:
            # No launcher process: workers are this process's children.
            try:
                early = start_inproc_launcher(self._initializer, self._initargs,
                                              self._kill_tree, None, preparation)
            except BaseException as error:  # reported by the manager
                early = error
        elif (self._method == "fork"
                and threading.current_thread() is threading.main_thread()):
            # A process forked from another thread keeps that thread's malloc
            # arena, whose reserved address space defeats RLIMIT_AS limits
            # set by an initializer: fork from the main thread when we can.
            try:
                early = start_launcher(self._method, self._initializer, self._initargs, None,
                                       self._kill_tree)
            except BaseException as error:  # reported by the manager
                early = error
        self._manager = threading.Thread(target=self._manage, args=(early, preparation),
                                         name="ProcessPool-manager", daemon=True)
        self._manager.start()
        _live_pools.add(self)

    def _prefork(self) -> Any:
        """Fork the first workers here, in the caller's thread, as the pool starts.

        As on Pebble, they are forks of the caller at its first use of the
        pool; a worker forked from the main thread also shares its malloc
        arena, so limits an initializer sets (RLIMIT_AS) hold there.
        Replacements are forked later by the pool's launcher thread.
        """
        if self._elastic:
            return None
        _worker.prepare_child_stdin()
        try:
            is_child, forked = _pebble.prefork(
                self._max_workers, self._kill_tree,
                threading.current_thread() is threading.main_thread())
        except BaseException as error:  # reported by the manager
            return error
        if is_child:  # a worker: never returns
            _worker.forked_worker_main(forked, (self._initializer, self._initargs),
                                       self._kill_tree)
        return forked

    def _manage(self, early: Any, preparation: Optional[dict]) -> None:
        try:
            self._manage_engine(early, preparation)
        finally:
            self._managed.set()

    def _manage_engine(self, early: Any, preparation: Optional[dict]) -> None:
        try:
            if isinstance(early, BaseException):
                raise early
            launcher: Any
            ctl_fd, launcher = early or start_launcher(self._method, self._initializer,
                                                       self._initargs, preparation,
                                                       self._kill_tree)
        except BaseException as error:
            self._broken = error
            self._core.stop()
            self._core.run(-1, self._resolve)  # resolve what was queued
            return
        if isinstance(launcher, threading.Thread):
            try:
                self._core.run(ctl_fd, self._resolve)
            finally:
                launcher.join()
            return
        launchers = [launcher]

        def relaunch() -> int:
            """A launcher process in place of one killed; a launcher that
            ended by itself (it cannot start) breaks the pool."""
            status = _reap(launchers.pop())
            if status is None or not os.WIFSIGNALED(status):
                return -1
            try:
                ctl, pid = start_launcher(self._method, self._initializer, self._initargs,
                                          preparation, self._kill_tree)
            except BaseException as error:
                self._broken = BrokenProcessPool("A launcher process could not be started: %s"
                                                 % error)
                self._broken.__cause__ = error
                return -1
            launchers.append(pid)
            return ctl

        try:
            self._core.run(ctl_fd, self._resolve, relaunch, self._kill_tree)
        finally:
            for pid in launchers:
                _reap(pid)

    def _pool_error(self) -> Optional[BaseException]:
        """The error that broke the pool, if it broke."""
        if self._broken is not None:
            return self._broken
        state = self._core.error
        if state is None:
            return None
        what, code, payload = state
        if what == _pebble.FAIL_INITIALIZER and payload:
            try:
                cause = pickle.loads(payload)
            except BaseException as unpickling_error:
                cause = unpickling_error
            error = BrokenProcessPool("The pool initializer raised %s: %s"
                                      % (type(cause).__name__, cause))
            error.__cause__ = cause
        elif what == _pebble.FAIL_STARTUP:
            error = BrokenProcessPool("A worker process died while starting (exit code %d)"
                                      % code)
        elif what == _pebble.FAIL_SPAWN:
            error = BrokenProcessPool("Workers could not be started: %s" % os.strerror(code))
        else:
            error = BrokenProcessPool("The pool's launcher process died")
        self._broken = error
        return error

    def _sync_state(self) -> None:
        # Called from the completer thread too: the state changes under its lock.
        if self._state in (RUNNING_STATE, CLOSED) and self._pool_error() is not None:
            with self._state_lock:
                if self._state in (RUNNING_STATE, CLOSED):
                    self._state = ERROR
                    self._error = self._broken

    def _resolve(self, future: ProcessFuture, outcome: int, timeout: float,
                 exitcode: int, pid: int, size: int) -> None:
        """Resolve *future* for outcomes that carry no payload (I/O thread verdicts)."""
        if outcome == _pebble.OUT_TIMEOUT:
            future.set_exception(TimeoutError("Task timeout", timeout))
        elif outcome == _pebble.OUT_EXPIRED:
            code = None if exitcode == _pebble.EXIT_UNKNOWN else exitcode
            future.set_exception(ProcessExpired("Abnormal termination", code=code, pid=pid))
        elif outcome == _pebble.OUT_STOPPED:
            if self._broken is not None:
                future.set_exception(self._broken)
            else:
                future.cancel()
        elif outcome == _pebble.OUT_NOMEM:
            future.set_exception(MemoryError(
                "The task's outcome (%d bytes) could not be allocated in the parent" % size))
        elif outcome == _pebble.OUT_CORRUPT:
            future.set_exception(ProcessExpired(
                "The worker sent a corrupt frame (length %d) and was killed" % size,
                code=exitcode, pid=pid))
        elif outcome == _pebble.OUT_BROKEN:
            self._sync_state()
            error = self._pool_error() or RuntimeError("Unexpected error within the Pool")
            future.set_exception(error)

    # -- public API --------------------------------------------------------

    @property
    def active(self) -> bool:
        """True while the pool runs, or is closed with work still to finish."""
        self._start_lazily()
        self._sync_state()
        if self._state in (CREATED, RUNNING_STATE):
            return True
        if self._state == CLOSED:
            return self._manager is not None and not self._managed.is_set()
        return False

    def schedule(self, function: Callable[..., R], args: Iterable[Any] = (),
                 kwargs: Optional[Dict[str, Any]] = None,
                 timeout: Optional[float] = None) -> ProcessFuture[R]:
        """Schedule *function(\\*args, \\*\\*kwargs)* in a worker; return its ProcessFuture.

        With *timeout* (seconds) the worker running the call is stopped once
        it expires and the future raises TimeoutError.
        """
        return self._schedule(function, args, kwargs, timeout, ProcessFuture)

    def _schedule(self, function: Callable[..., R], args: Iterable[Any],
                  kwargs: Optional[Dict[str, Any]], timeout: Optional[float],
                  future_type: Type[ProcessFuture]) -> ProcessFuture[R]:
        """schedule(), resolving a *future_type* (a ProcessFuture subclass)."""
        self._check_pool_state()
        args, kwargs = check_call(function, args, kwargs)
        timeout = check_timeout(timeout) or None  # 0 means no timeout, as in Pebble
        buffers: list = []
        try:
            # Large buffers (bytearray, PickleBuffer, arrays) travel out of
            # band: written to the worker's pipe from where they are.
            payload = pickle.dumps((function, args, kwargs), 5, buffer_callback=buffers.append)
        except BaseException as error:
            # No local refers to the future: a cycle through the traceback
            # would leave memoryviews exported by the arguments to the
            # garbage collector, which cannot clear them safely.
            return failed_future(error)
        future = future_type()
        # The engine sets future._pebble_id as it takes the task, so that the
        # task stays cancellable whatever interrupts this frame afterwards.
        future._pebble_cancel = self._core.cancel
        try:
            try:
                task_id = self._core.submit(future, payload, timeout, buffers or None)
            except BufferError:  # a non-contiguous buffer: send it in band
                task_id = self._core.submit(future, _dumps((function, args, kwargs)), timeout)
            if task_id is None:  # the engine stopped taking work since the check above
                self._sync_state()
                broken = self._pool_error()
                if broken is not None:
                    # It broke meanwhile (an initializer failing at once):
                    # this task fails as those already queued did.
                    future.set_exception(broken)
                    return future
                raise RuntimeError("The Pool is not active")
        except BaseException:
            # Interrupted (Ctrl-C) once the engine took the task: the caller
            # will never see this future, so nor should the task run.
            future.cancel()
            raise
        return future

    def _fork_call(self, function: Callable[..., Any], args: tuple, kwargs: Dict[str, Any],
                   process: Any, timeout: Optional[float],
                   future_type: Type[ProcessFuture]) -> ProcessFuture:
        """Run one call in a fork of this process, made now; return its future.

        The function and its arguments are not pickled: the child has them.
        *process* is the ``multiprocessing.Process`` the child is to itself.
        """
        self._check_pool_state()
        timeout = check_timeout(timeout) or None
        future = future_type()
        future._pebble_cancel = self._core.cancel
        parent_pid, parent_name = os.getpid(), multiprocessing.current_process().name
        _worker.prepare_child_stdin()
        forked = self._core.fork_call(future, timeout, self._kill_tree,
                                      threading.current_thread() is threading.main_thread())
        if forked is None:
            self._sync_state()
            raise RuntimeError("The Pool is not active")
        pid, result_fd, task_id = forked
        if pid == 0:  # the child: never returns
            _worker.fork_call_main(result_fd, task_id, function, args, kwargs, process,
                                   parent_pid, parent_name, self._kill_tree)
        return future

    # -- lifecycle hooks -----------------------------------------------------

    def _close(self) -> None:
        self._core.close()

    def _stop(self) -> None:
        self._core.stop()

    def _join(self, deadline: Optional[float]) -> bool:
        manager = self._manager
        if manager is None:
            return True
        if manager is threading.current_thread():
            raise RuntimeError("join() called from a callback of the pool")
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._managed.wait(remaining):
            return False
        manager.join()  # it has finished its work: this only sees the thread end
        self._sync_state()
        return True


# Stop every live pool at exit so the interpreter exits promptly with no
# child left.
atexit.register(stop_all, _live_pools, 5)

# A forked child has no pool of its own until it starts one.
os.register_at_fork(after_in_child=_live_pools.clear)
