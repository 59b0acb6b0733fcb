# The README's two commands: `make demo` and `make test`. Both run the idempotent set-up first.
PY := .venv/bin/python

.PHONY: setup demo test quick benchmark
setup:
	bash scripts/setup.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q

quick: setup
	$(PY) -m pytest -q -m "not slow"

benchmark: setup
	$(PY) tools/benchmark.py
