# The README's two commands: `make demo` and `make test`. Both run the idempotent set-up first.
#   make test        the whole suite (what CI runs), on TEST_JOBS=2 pytest-xdist workers
#   make test-quick  without the tests marked `slow` (runners, subprocess tools, compiling,
#                    every upsampler's full-model train step), on QUICK_JOBS=2 workers
#                    (pytest-xdist, each file's tests on one worker; QUICK_JOBS=1: one process)
#   make lint        ruff (configured in pyproject.toml)
PY := .venv/bin/python
QUICK_JOBS ?= 2
TEST_JOBS ?= 2

.PHONY: setup demo test test-quick quick lint benchmark
setup:
	bash scripts/setup.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q $(if $(filter 1,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)

test-quick: setup
	$(PY) -m pytest -q -m "not slow" $(if $(filter 1,$(QUICK_JOBS)),,-n $(QUICK_JOBS) --dist loadfile)

quick: test-quick

lint: setup
	$(PY) -m ruff check .

benchmark: setup
	$(PY) tools/benchmark.py
