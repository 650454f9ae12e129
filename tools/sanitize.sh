#!/usr/bin/env bash
# Build pebble with AddressSanitizer + UndefinedBehaviorSanitizer into a
# private virtualenv and run the test suite (or the given pytest arguments)
# under it.
#
#   tools/sanitize.sh                 # whole suite
#   tools/sanitize.sh tests/test_process_pool.py -x
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PEBBLE_SANITIZE_VENV:-/tmp/pebble-asan}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q pytest pytest-timeout tqdm mypy==2.4.1 setuptools wheel
# Build from a copy so no object file is shared with a normal build.
src="$(mktemp -d)"
git -C "$root" ls-files -co --exclude-standard | tar -C "$root" -cf - -T - | tar -C "$src" -xf -
PEBBLE_SANITIZE=address,undefined PEBBLE_DEBUG=1 "$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps "$src"
rm -rf "$src"
libasan="$(gcc -print-file-name=libasan.so)"
cd "$root"
# CPython itself is not built with ASan: pymalloc is bypassed so every
# allocation goes through the sanitizer, and leaks at exit are not ours.
export PYTHONMALLOC=malloc
# handle_segv=0: the tests crash workers on purpose and expect SIGSEGV.
# allocator_may_return_null=1: tests exhaust memory on purpose and expect
# MemoryError, not an abort.
# GCC 12's libasan does not intercept fork(), so its allocator is not
# locked across it: a fork-mode pool started while another thread is inside
# malloc can leave its launcher deadlocked. Such a start shows up as a test
# timeout late in a full run (no sanitizer report); rerun that file alone.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=99:print_summary=1:handle_segv=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LD_PRELOAD="$libasan"
if [ "$#" -gt 0 ]; then
    exec "$venv/bin/pytest" -p no:cacheprovider "$@"
fi
# The whole suite, one interpreter per file: fewer threads alive at each
# fork (see above), and a failure names its file.
status=0
for file in tests/test_*.py; do
    echo "== $file"
    "$venv/bin/pytest" -p no:cacheprovider -q "$file" || status=1
done
exit "$status"
