# The two commands of the README: `make demo` (the main job end to end) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench
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
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) -m benchmarks
