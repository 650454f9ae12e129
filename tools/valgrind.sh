#!/usr/bin/env bash
# Run a representative subset of the suite under valgrind memcheck against
# a debug build (-O0 -g) of the extension. Extra arguments replace the
# default subset. Exits non-zero if memcheck reports errors.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PEBBLE_VALGRIND_VENV:-/tmp/pebble-valgrind}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q pytest pytest-timeout setuptools wheel
# Build from a copy so no object file is shared with a normal build.
src="$(mktemp -d)"
git -C "$root" ls-files -co --exclude-standard | tar -C "$root" -cf - -T - | tar -C "$src" -xf -
PEBBLE_DEBUG=1 "$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps "$src"
rm -rf "$src"
cd "$root"
export PYTHONMALLOC=malloc
if [ "$#" -eq 0 ]; then
    set -- tests/test_thread_pool.py tests/test_process_pool.py -k "not spawn and not forkserver" -x
fi
exec valgrind --tool=memcheck --trace-children=no --error-exitcode=77 \
    --errors-for-leak-kinds=definite --leak-check=no \
    --suppressions="$root/tools/valgrind-python.supp" \
    "$venv/bin/python" -m pytest -p no:cacheprovider -o timeout=600 "$@"
