"""Interpreter shutdown with pools still busy: prompt exit, no traceback,
no process left behind. Each scenario runs in its own interpreter."""

import subprocess
import sys
import textwrap
import time

import pytest

PRELUDE = textwrap.dedent('''
    import multiprocessing, os, sys, threading, time
    from pebble import ProcessPool, ThreadPool, concurrent

    def sleep(seconds):
        time.sleep(seconds)
        return seconds

    def report(pool):
        """Print the pids of the pool's workers and launcher for the test."""
        pids = list(pool._core.pids)
        me = str(os.getpid())
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry) as stat:
                        if stat.read().rsplit(")", 1)[1].split()[1] == me:
                            pids.append(int(entry))
                except OSError:
                    pass
        print("PIDS", " ".join(map(str, sorted(set(pids)))), flush=True)
''')

SCENARIOS = {
    "pool_open_tasks_running": '''
        if __name__ == "__main__":
            pool = ProcessPool(2, context=multiprocessing.get_context(sys.argv[1]))
            futures = [pool.schedule(sleep, (60,)) for _ in range(4)]
            while not futures[0].running():
                time.sleep(0.01)
            report(pool)
    ''',
    "pool_closed_not_joined": '''
        if __name__ == "__main__":
            pool = ProcessPool(2, context=multiprocessing.get_context(sys.argv[1]))
            pool.schedule(sleep, (0,)).result()
            report(pool)
            pool.close()
    ''',
    "callbacks_pending": '''
        def callback(future):
            time.sleep(0.2)

        if __name__ == "__main__":
            pool = ProcessPool(2, context=multiprocessing.get_context(sys.argv[1]))
            for _ in range(20):
                pool.schedule(sleep, (0,)).add_done_callback(callback)
            pool.schedule(sleep, (0,)).result()
            report(pool)
    ''',
    "exit_from_thread": '''
        def body():
            pool = ProcessPool(2, context=multiprocessing.get_context(sys.argv[1]))
            pool.schedule(sleep, (60,))
            pool.schedule(sleep, (0,)).result()
            report(pool)
            sys.exit(0)

        if __name__ == "__main__":
            thread = threading.Thread(target=body)
            thread.start()
            thread.join()
    ''',
    "thread_pool_busy": '''
        if __name__ == "__main__":
            pool = ThreadPool(2)
            for _ in range(4):
                pool.schedule(sleep, (0.2,))
            print("PIDS", flush=True)
    ''',
    "decorator_running": '''
        @concurrent.process
        def decorated():
            time.sleep(60)

        if __name__ == "__main__":
            multiprocessing.set_start_method(sys.argv[1])
            future = decorated()
            while not future.running():
                time.sleep(0.01)
            from pebble import _process_call
            report(next(iter(_process_call._engines.values())))
    ''',
}


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_exit_is_prompt_and_clean(name, cheap_start_method, tmp_path):
    script = tmp_path / "scenario.py"
    script.write_text(PRELUDE + textwrap.dedent(SCENARIOS[name]))
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(script), cheap_start_method], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert elapsed < 15, elapsed
    lines = [line for line in done.stdout.splitlines() if line.startswith("PIDS")]
    assert lines, done.stdout
    pids = [int(pid) for pid in lines[0].split()[1:]]
    deadline = time.monotonic() + 2
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if alive(pid)]


def test_parent_killed_leaves_no_worker(tmp_path):
    script = tmp_path / "victim.py"
    script.write_text(PRELUDE + textwrap.dedent('''
        if __name__ == "__main__":
            pool = ProcessPool(2, context=multiprocessing.get_context("fork"))
            futures = [pool.schedule(sleep, (60,)) for _ in range(2)]
            while not all(f.running() for f in futures):
                time.sleep(0.01)
            report(pool)
            time.sleep(60)
    '''))
    victim = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path,
                              stdout=subprocess.PIPE, text=True)
    try:
        line = victim.stdout.readline()
        pids = [int(pid) for pid in line.split()[1:]]
        assert len(pids) >= 2, line  # two workers (forks of the victim: no launcher)
        victim.kill()
        victim.wait(10)
        deadline = time.monotonic() + 1
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not [pid for pid in pids if alive(pid)]
    finally:
        victim.kill()
        victim.wait()
        victim.stdout.close()
