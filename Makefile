# The commands people run. Every target works from a fresh clone.
#   make build      install the package (and its in-tree copy of the extension)
#   make test       the test suite on this Python
#   make test-all   the suite on every supported Python present, each in a fresh venv (CI)
#   make sanitize   the suite under ASan + UBSan          make tsan      under TSan
#   make valgrind   a subset under valgrind               make bench     the side-by-side benchmarks
#   make lint       ruff and clang-format, checking only  make format    apply both

PYTHON ?= python3
LINT_TOOLS = ruff==0.17.6 clang-format==14.0.6
C_SOURCES = $(wildcard csrc/*.c csrc/*.h)
# clang-format from PyPI installs a script beside the interpreter's own.
SCRIPTS = $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_path('scripts'))")

.PHONY: build test test-all sanitize tsan valgrind bench lint-tools lint format

build:
	$(PYTHON) -m pip install .

test:
	$(PYTHON) -m pip install '.[test]' && $(PYTHON) -m pytest

test-all:
	bash .ci/run

sanitize:
	tools/sanitize.sh

tsan:
	tools/tsan.sh

valgrind:
	tools/valgrind.sh

bench: build
	$(PYTHON) benchmarks/run.py

lint-tools:
	$(PYTHON) -m pip install -q $(LINT_TOOLS)

lint: lint-tools
	$(PYTHON) -m ruff check .
	$(SCRIPTS)/clang-format --dry-run --Werror $(C_SOURCES)

format: lint-tools
	$(PYTHON) -m ruff check --fix .
	$(SCRIPTS)/clang-format -i $(C_SOURCES)
