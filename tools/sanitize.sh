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
"$venv/bin/pip" install -q pytest pytest-timeout hypothesis tqdm mypy==2.4.1 setuptools wheel
# Build from a copy so no object file is shared with a normal build.
src="$(mktemp -d)"
git -C "$root" ls-files -co --exclude-standard | tar -C "$root" -cf - -T - | tar -C "$src" -xf -
# The compiler: $PEBBLE_SANITIZE_CC, else the newest clang from 18 on, else
# gcc. Since LLVM 18 the ASan runtime locks its allocator across fork(), as
# glibc's malloc does; GCC 12's libasan does not, so a fork made while
# another thread is inside malloc can leave the child deadlocked (a
# fork-mode pool then times out, with no sanitizer report).
cc="${PEBBLE_SANITIZE_CC:-}"
if [ -z "$cc" ]; then
    for candidate in clang-21 clang-20 clang-19 clang-18 clang; do
        if command -v "$candidate" > /dev/null \
            && [ "$("$candidate" -dumpversion | cut -d. -f1)" -ge 18 ]; then
            cc="$candidate"
            break
        fi
    done
fi
cc="${cc:-gcc}"
if "$cc" --version | grep -q clang; then
    libasan="$("$cc" -print-file-name=libclang_rt.asan-x86_64.so)"
    [ -f "$libasan" ] || libasan="$("$cc" -print-file-name=libclang_rt.asan.so)"
else
    libasan="$("$cc" -print-file-name=libasan.so)"
fi
[ -f "$libasan" ] || { echo "no ASan runtime for $cc" >&2; exit 1; }
echo "sanitize.sh: building with $cc, runtime $libasan"
CC="$cc" LDSHARED="$cc -shared" PEBBLE_SANITIZE=address,undefined PEBBLE_DEBUG=1 \
    "$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps "$src"
rm -rf "$src"
cd "$root"
# CPython itself is not built with ASan: pymalloc is bypassed so every
# allocation goes through the sanitizer, and leaks at exit are not ours.
export PYTHONMALLOC=malloc
# handle_segv=0: the tests crash workers on purpose and expect SIGSEGV.
# allocator_may_return_null=1: tests exhaust memory on purpose and expect
# MemoryError, not an abort.
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
