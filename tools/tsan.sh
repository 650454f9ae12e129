#!/usr/bin/env bash
# Build pebble with ThreadSanitizer into a private virtualenv and run the
# tests that exercise the C threads (the ThreadPool engine, the process
# pool's I/O and completer threads, forks of the parent while they run, and
# the randomized checker). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PEBBLE_TSAN_VENV:-/tmp/pebble-tsan}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q pytest pytest-timeout hypothesis tqdm mypy==2.4.1 setuptools wheel
# Build from a copy so no object file is shared with a normal build.
src="$(mktemp -d)"
git -C "$root" ls-files -co --exclude-standard | tar -C "$root" -cf - -T - | tar -C "$src" -xf -
PEBBLE_SANITIZE=thread PEBBLE_DEBUG=1 "$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps "$src"
rm -rf "$src"
libtsan="$(gcc -print-file-name=libtsan.so)"
cd "$root"
export PYTHONMALLOC=malloc
# Races inside the uninstrumented interpreter are not ours: report only
# those with a frame in the extension. Fork-mode workers are forks of this
# many-threaded process that start a thread of their own (the canceller):
# die_after_fork=0 lets them live, unchecked, instead of being killed.
# As in sanitize.sh, the tests crash workers and exhaust memory on purpose:
# handle_segv=0 and allocator_may_return_null=1.
export TSAN_OPTIONS="halt_on_error=0:exitcode=66:report_signal_unsafe=0:die_after_fork=0:handle_segv=0:allocator_may_return_null=1:suppressions=$root/tools/tsan.supp"
export LD_PRELOAD="$libtsan"
if [ "$#" -eq 0 ]; then
    set -- tests/test_thread_pool.py tests/test_process_pool.py tests/test_fork_safety.py \
        tests/test_checker.py -x
fi
exec "$venv/bin/pytest" -p no:cacheprovider "$@"
