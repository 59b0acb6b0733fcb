# The README's two commands: `make demo` and `make test`. Both run the idempotent set-up first.
#   make test        the whole suite (what CI runs)
#   make test-quick  without the tests marked `slow` (runners, subprocess tools, every
#                    upsampler's full-model train step): about a minute on 2 cores
#   make lint        ruff (configured in pyproject.toml)
PY := .venv/bin/python

.PHONY: setup demo test test-quick quick lint benchmark
setup:
	bash scripts/setup.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q

test-quick: setup
	$(PY) -m pytest -q -m "not slow"

quick: test-quick

lint: setup
	$(PY) -m ruff check .

benchmark: setup
	$(PY) tools/benchmark.py
