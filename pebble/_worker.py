"""Code that runs in the launcher and worker processes of a ProcessPool."""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.context as _mp_context
import multiprocessing.process as _mp_process
import multiprocessing.util as _mp_util
import os
import pickle
import signal
import sys
from typing import Any, List, Optional, Tuple

from pebble import _pebble
from pebble.errors import RemoteException, format_exception, outcome_not_rebuilt
from pebble.pool.mapping import run_chunk

# (initializer, initargs) inherited by forked workers.
_INIT: Optional[Tuple[Any, tuple]] = None


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _run_then_exit(body: Any, *args: Any) -> None:
    """Run body(*args) and end the process, never returning to the caller.

    Forked processes must not unwind into the parent's stack or run its
    atexit handlers: they leave with os._exit, 1 if body failed or
    returned False.
    """
    status = 0
    try:
        if body(*args) is False:
            status = 1
    except BrokenPipeError:
        status = 1  # the pool went away (stopped, or the parent died): nothing to say
    except BaseException:
        status = 1
        try:
            import traceback
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        _flush_std_streams()
        os._exit(status)


def _launch(ctl_fd: int, argv: Optional[List[str]], frames: List[Tuple[int, bytes]],
            init: Optional[Tuple[Any, tuple]], trees: bool,
            identity: Optional[Tuple[str, int]]) -> Any:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if identity is not None:
        # The launcher runs no code of the user's: it takes, once, the
        # identity every worker it forks presents, and a fork inherits it.
        become_worker(*identity, after_forkers=False)
    elif argv is None:
        prepare_child_stdin()
    channel = _pebble.launcher_run(ctl_fd, argv, frames, trees)
    if channel is not None:
        # A forked worker: serve its channel instead.
        if identity is not None:
            _after_fork_of_worker()
        return _serve_to_end(channel[0], channel[1], channel[2], init)
    return None


def become_worker(method: str, parent_pid: int, after_forkers: bool = True) -> None:
    """Make this process, to multiprocessing, a pool worker its parent started.

    *after_forkers* False leaves multiprocessing's after-fork handlers to
    the processes forked from this one (_after_fork_of_worker()).
    """
    context: Any = multiprocessing.get_context(method)
    become_process(context.Process(name=WORKER_NAME),
                   method, parent_pid, "MainProcess", after_forkers)


def _after_fork_of_worker() -> None:
    """In a fork of a process that became a worker: what each fork still runs."""
    _mp_util._finalizer_registry.clear()  # type: ignore[attr-defined]
    _mp_util._run_after_forkers()  # type: ignore[attr-defined]


#: ``current_process().name`` in a pool's worker, as on Pebble.
WORKER_NAME = "pebble_pool_worker"


def inproc_launcher_main(ctl_fd: int, init: Optional[Tuple[Any, tuple]], trees: bool,
                         stock: Optional[list] = None, argv: Optional[List[str]] = None,
                         frames: Optional[List[Tuple[int, bytes]]] = None) -> None:
    """Serve a pool as a thread of its own process.

    Under fork (*argv* None) each worker is a fork of this process at the
    moment it starts; in the worker this thread is the only one, and serves
    the worker's channel. *stock* lists the workers the pool forked as it
    started, handed out first. Under spawn each worker is the fresh
    interpreter *argv*, sent *frames* first.
    """
    if argv is None:
        prepare_child_stdin()
    channel = _pebble.launcher_run(ctl_fd, argv, frames or [(_pebble.FRAME_INIT, b"")],
                                   trees, True, stock)
    if channel is None:
        return
    forked_worker_main(channel, init, trees)


def forked_worker_main(channel: Tuple[int, int, int], init: Optional[Tuple[Any, tuple]],
                       trees: bool) -> None:
    """In a fork of a fork-mode pool's process: serve the worker's channel, exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    become_worker("fork", os.getppid())
    _run_then_exit(_serve_to_end, channel[0], channel[1], channel[2], init, trees)


def _serve_to_end(task_fd: int, result_fd: int, cancel_fd: int,
                  init: Optional[Tuple[Any, tuple]], trees: bool = False) -> Any:
    """Serve a worker channel, then end as a multiprocessing process ends.

    With *trees* (a worker forked in the pool's process, which no launcher
    watches) what its tasks left running ends with it.
    """
    try:
        return _serve(task_fd, result_fd, cancel_fd, init)
    finally:
        _exit_function()
        if trees:
            _pebble.kill_descendants(signal.SIGKILL)


def become_process(process: Any, method: str, parent_pid: int, parent_name: str,
                   after_forkers: bool = True) -> None:
    """Make this fork child, to multiprocessing, *process* started by its parent.

    As a ``multiprocessing.Process`` would: ``current_process()`` is
    *process*, ``parent_process()`` the parent, ``get_start_method()``
    *method*, standard input is closed, and (with *after_forkers*) what
    multiprocessing objects registered to run after a fork has run.
    """
    try:
        sentinel: Any = os.pidfd_open(parent_pid)  # readable once the parent is gone
    except (AttributeError, OSError):
        sentinel = None
    process._parent_pid = parent_pid
    process._parent_name = parent_name
    _mp_process._current_process = process  # type: ignore[attr-defined]
    _mp_process._parent_process = _mp_process._ParentProcess(  # type: ignore[attr-defined]
        parent_name, parent_pid, sentinel)
    _mp_process._children = set()  # type: ignore[attr-defined]
    _mp_process._process_counter = itertools.count(1)  # type: ignore[attr-defined]
    _mp_context._force_start_method(method)
    _close_stdin()
    _mp_util._finalizer_registry.clear()  # type: ignore[attr-defined]
    if after_forkers:
        _mp_util._run_after_forkers()  # type: ignore[attr-defined]


# The /dev/null standard input of the children this process forks, made
# once before its first fork: (stream, fd, (st_dev, st_ino)). A child
# takes it as it is rather than building an io stack of its own.
_child_stdin: Optional[Tuple[Any, int, Tuple[int, int]]] = None


def prepare_child_stdin() -> None:
    """Open, once, the standard input the children forked from here take."""
    global _child_stdin
    if _child_stdin is not None:
        return
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return
    try:
        stream = open(fd, encoding="utf-8", closefd=False)
        st = os.fstat(fd)
    except (OSError, ValueError):
        os.close(fd)
        return
    _child_stdin = (stream, fd, (st.st_dev, st.st_ino))


def _close_stdin() -> None:
    """Close standard input and read /dev/null instead, as multiprocessing does."""
    if sys.stdin is None:
        return
    prepared = _child_stdin
    if prepared is not None and not prepared[0].closed:
        try:
            st = os.fstat(prepared[1])
        except OSError:
            pass
        else:
            # Still the descriptor it was: the parent may have closed and reused it.
            if (st.st_dev, st.st_ino) == prepared[2]:
                if sys.stdin is not prepared[0]:  # a fork of a fork has it already
                    _close_quietly(sys.stdin)
                sys.stdin = prepared[0]
                return
    _close_quietly(sys.stdin)
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
        try:
            sys.stdin = open(fd, encoding="utf-8", closefd=False)
        except BaseException:
            os.close(fd)
            raise
    except (OSError, ValueError):
        pass


def _close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except (OSError, ValueError):
        pass


def _exit_function() -> None:
    """What a multiprocessing process runs as it ends: finalizers (queues flush)."""
    try:
        import multiprocessing.util as util
        util._exit_function()  # type: ignore[attr-defined]
    except BaseException:
        pass


def fork_call_main(result_fd: int, task_id: int, function: Any, args: tuple,
                   kwargs: dict, process: Any, parent_pid: int, parent_name: str,
                   trees: bool) -> None:
    """In the fork of a decorated call: run it, send its outcome, exit.

    With *trees* what the call left running ends with it.
    """
    def body() -> None:
        become_process(process, "fork", parent_pid, parent_name)
        kind, data, buffers = outcome(function, args, kwargs)
        try:
            _pebble.write_frame(result_fd, task_id, kind, data, buffers)
        finally:
            data = buffers = None
            _exit_function()
            if trees:
                _pebble.kill_descendants(signal.SIGKILL)
    _run_then_exit(body)


def _serve(task_fd: int, result_fd: int, cancel_fd: int,
           init: Optional[Tuple[Any, tuple]]) -> Any:
    global _INIT
    _INIT = init
    return _pebble.worker_run(task_fd, result_fd, cancel_fd, _setup, _execute)


def launcher_main(ctl_fd: int, argv: Optional[List[str]], frames: List[Tuple[int, bytes]],
                  init: Optional[Tuple[Any, tuple]], trees: bool = True,
                  identity: Optional[Tuple[str, int]] = None) -> None:
    """Serve the pool as its launcher; never returns.

    With *trees*, killing a worker kills the processes its tasks started.
    *identity* is the (start method, pool's pid) forked workers present to
    multiprocessing.
    """
    _run_then_exit(_launch, ctl_fd, argv, frames, init, trees, identity)


def spawn_main(launcher_pid: int, pool_pid: int, trees: bool = False) -> None:
    """Entry point of a worker started as a fresh interpreter (fds 3, 4 and 5).

    With *trees* (started by the pool's own process, which adopts no
    orphans) the worker keeps its tasks' orphans below it, and what its
    tasks left running ends with it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _pebble.set_parent_death_signal(launcher_pid)
    # Inherited through exec, so inheritable: programs the tasks run must not hold them.
    for fd in (3, 4, 5):
        os.set_inheritable(fd, False)
    if trees:
        _pebble.set_child_subreaper()
    become_worker("spawn", pool_pid)
    _run_then_exit(_serve_to_end, 3, 4, 5, None, trees)


def spawned_launcher_main(ctl_fd: int, boot_fd: int) -> None:
    """Entry point of a launcher started as a fresh interpreter (spawn, forkserver)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.set_inheritable(ctl_fd, False)
    parent = os.getppid()
    with os.fdopen(boot_fd, "rb") as boot:
        config = pickle.load(boot)
    _pebble.set_parent_death_signal(config["parent"])
    if config["parent"] != parent:
        os._exit(1)
    if config["method"] == "forkserver":
        # Import what workers share once, then fork them from here.
        _prepare(config["preparation"])
        for name in config.get("preload", ()):
            try:
                __import__(name)
            except ImportError:
                pass
        init = pickle.loads(config["init"]) if config["init"] else None
        launcher_main(ctl_fd, None, [(_pebble.FRAME_INIT, b"")], init, config["trees"],
                      ("forkserver", config["parent"]))
    else:
        argv = config["argv"] + ["0", str(config["parent"]), str(os.getpid())]
        frames = [(_pebble.FRAME_PREPARE, pickle.dumps(config["preparation"], 5)),
                  (_pebble.FRAME_INIT, config["init"])]
        launcher_main(ctl_fd, argv, frames, None, config["trees"])


def _prepare(data: dict) -> None:
    import multiprocessing.process
    import multiprocessing.spawn
    process = multiprocessing.process.current_process()
    process._inheriting = True  # type: ignore[attr-defined]
    try:
        multiprocessing.spawn.prepare(data)
    finally:
        process._inheriting = False  # type: ignore[attr-defined]


def _setup(kind: int, payload: bytes) -> Optional[bytes]:
    """Handle a PREPARE or INIT frame; return the pickled error of a failed initializer."""
    global _INIT
    if kind == _pebble.FRAME_PREPARE:
        _prepare(pickle.loads(payload))
        # The parent's data names its own start method: this process was spawned.
        import multiprocessing.context
        multiprocessing.context._force_start_method("spawn")
        return None
    if payload:
        _INIT = pickle.loads(payload)
    if _INIT is not None and _INIT[0] is not None:
        initializer, initargs = _INIT
        try:
            initializer(*initargs)
        except BaseException as error:
            return _dump_error(error)[1]
    return None


def _dump_error(error: BaseException) -> Tuple[int, bytes, None]:
    """The ERROR frame of *error*: itself if it travels, or what stands for it."""
    text = format_exception(error)
    try:
        data = pickle.dumps(RemoteException(error, text), 5)
    except BaseException as pickling_error:
        substitute: BaseException = pickle.PicklingError(
            "The exception raised could not be sent back: %s: %s (%s)"
            % (type(error).__name__, error, pickling_error))
        return _pebble.FRAME_ERROR, pickle.dumps(RemoteException(substitute, text), 5), None
    try:
        pickle.loads(data)  # it must also load in the parent
    except BaseException as loading_error:
        cause: BaseException = loading_error
        try:
            pickle.loads(pickle.dumps(cause, 5))
        except BaseException:  # the loading error does not travel either
            cause = RuntimeError("%s: %s" % (type(loading_error).__name__, loading_error))
        substitute = outcome_not_rebuilt(cause, False, error)
        data = pickle.dumps(RemoteException(substitute, text), 5)
    return _pebble.FRAME_ERROR, data, None


class _Chunks(list):
    """A file for the result pickler: large bytes objects arrive as they are,
    so they reach the pipe without being copied into the pickle."""

    __slots__ = ()
    write = list.append


_chunks = _Chunks()
_buffers: List[Any] = []
_pickler = pickle.Pickler(_chunks, 5, buffer_callback=_buffers.append)


def _execute(payload: Any, buffers: Optional[list] = None) -> Tuple[int, Any, Optional[list]]:
    """Run one task: payload is the pickled (function, args, kwargs), with its buffers.

    A task whose frame could not be received has the error instead.
    """
    if isinstance(payload, BaseException):
        return _dump_error(payload)
    try:
        if buffers is not None:
            function, args, kwargs = pickle.loads(payload, buffers=buffers)
        else:
            function, args, kwargs = pickle.loads(payload)
    except BaseException as error:
        return _dump_error(error)
    # A function decorated with concurrent.process pickles by name as its
    # wrapper: in a worker the original runs.
    return outcome(getattr(function, "__pebble_original__", function), args, kwargs)


def outcome(function: Any, args: tuple, kwargs: dict) -> Tuple[int, Any, Optional[list]]:
    """Run *function* and return the frame of its outcome: kind, pickle, buffers."""
    try:
        result = function(*args, **kwargs)
    except BaseException as error:
        return _dump_error(error)
    _chunks.clear()
    _buffers.clear()
    try:
        _pickler.dump(result)
    except BaseException as error:
        _pickler.clear_memo()
        _chunks.clear()
        _buffers.clear()
        return _dump_error(error)
    finally:
        result = None
    _pickler.clear_memo()
    # The pickler's own lists are emptied now: an idle worker must not keep
    # its last result alive through them.
    chunks, out_buffers = list(_chunks), list(_buffers) or None
    _chunks.clear()
    _buffers.clear()
    return _pebble.FRAME_RESULT, chunks, out_buffers


def _remote(error: BaseException) -> RemoteException:
    return RemoteException(error, format_exception(error))


def process_chunk(function: Any, chunk: tuple, star: bool = True) -> list:
    """Run *function* over a map chunk; failed elements carry their remote traceback."""
    return run_chunk(getattr(function, "__pebble_original__", function), chunk, _remote, star)
