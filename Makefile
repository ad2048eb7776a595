# The two commands of the README: `make demo` (the main job end to end) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint bench check-arm64
setup:
	@scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/iotids demo

# Two workers (pytest-xdist): most of the suite's wall time is waiting on brokers and agent
# processes, so two run in about two thirds of the time even on two cores.
test: setup
	$(PY) -m pytest -q -n 2

# The inner loop: every test not marked slow (same assertions; CI still runs `make test`).
test-fast: setup
	$(PY) -m pytest -q -n 2 -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) -m benchmarks

# arm64 under qemu-user (root, ~10 min the first time): not part of `make test`
check-arm64: setup
	scripts/check_arm64.sh
