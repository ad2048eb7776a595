# The two commands of the README: `make demo` (the main job end to end) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench check-arm64
setup:
	@scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/iotids demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m benchmarks

# arm64 under qemu-user (root, ~10 min the first time): not part of `make test`
check-arm64: setup
	scripts/check_arm64.sh
