# Two entry points; both build (or reuse) the pinned environment in ./.venv first.
#   make demo   the tour on embedded defaults
#   make test   the linter (ruff.toml), then the test suite (what CI runs)
PY := .venv/bin/python
# test workers: one per core, at most 4 (each holds torch, mmengine and the task packages)
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

.PHONY: env demo lint test bench
env:
	@bash tools/setup_env.sh

demo: env
	$(PY) tools/demo.py

lint: env
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest tests -n $(JOBS) --dist loadfile

bench: env
	$(PY) benchmarks/bench.py eager
