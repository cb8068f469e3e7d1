# Two entry points; both build (or reuse) the pinned environment in ./.venv first.
#   make demo   the tour on embedded defaults
#   make test   the linter (ruff.toml), then the test suite (what CI runs)
PY := .venv/bin/python

.PHONY: env demo lint test bench
env:
	@bash tools/setup_env.sh

demo: env
	$(PY) tools/demo.py

lint: env
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest tests

bench: env
	$(PY) benchmarks/bench.py eager
