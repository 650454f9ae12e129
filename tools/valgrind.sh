#!/usr/bin/env bash
# Run a representative subset of the suite under valgrind memcheck against
# a debug build (-O0 -g) of the extension. Extra arguments replace the
# default subset.
#
# The interpreter is not built for valgrind and reports its own noise; the
# run fails only on errors with a frame in the extension (csrc/), which are
# printed in full.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PEBBLE_VALGRIND_VENV:-/tmp/pebble-valgrind}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q pytest pytest-timeout hypothesis tqdm mypy==2.4.1 setuptools wheel
# Build from a copy so no object file is shared with a normal build.
src="$(mktemp -d)"
git -C "$root" ls-files -co --exclude-standard | tar -C "$root" -cf - -T - | tar -C "$src" -xf -
PEBBLE_DEBUG=1 "$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps "$src"
rm -rf "$src"
cd "$root"
export PYTHONMALLOC=malloc
if [ "$#" -eq 0 ]; then
    set -- tests/test_thread_pool.py tests/test_pipeline.py tests/test_process_pool.py \
        -k "not spawn and not forkserver" -x
fi
log="$(mktemp)"
status=0
valgrind --tool=memcheck --trace-children=no --leak-check=no --num-callers=30 \
    --log-file="$log" "$venv/bin/python" "$venv/bin/pytest" -p no:cacheprovider -o timeout=900 "$@" \
    || status=$?
python3 - "$log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r"\n==\d+== \n", text)
errors = [b for b in blocks if re.search(r"==\d+== (Invalid|Conditional|Use of|Syscall|Mismatched|Source and|Argument)", b)]
ours = [b for b in errors if "csrc/" in b]
for block in ours:
    print(block, end="\n\n")
print("memcheck: %d error blocks, %d in the extension" % (len(errors), len(ours)))
sys.exit(1 if ours else 0)
PY
ours=$?
rm -f "$log"
[ "$status" -eq 0 ] || exit "$status"
exit "$ours"
