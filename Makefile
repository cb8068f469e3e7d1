# Two entry points; both build (or reuse) the pinned environment in ./.venv first.
#   make demo   the tour on embedded defaults
#   make test   the test suite (what CI runs)
PY := .venv/bin/python

.PHONY: env demo test bench
env:
	@bash tools/setup_env.sh

demo: env
	$(PY) tools/demo.py

test: env
	$(PY) -m pytest tests

bench: env
	$(PY) benchmarks/backbone_latency.py
