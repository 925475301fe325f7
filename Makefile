# The two commands of the quick start: `make run` and `make test`. Both install what is missing first.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: deps lint test test-unit test-integration run bench bench-smoke fmt clean

deps:
	@bash scripts/bootstrap.sh

lint: deps
	ruff check .
	ruff format --check .
	mypy libs services tests bench
	lint-imports

fmt: deps
	ruff format .
	ruff check --fix .

# The whole suite: lint, types, layer contracts, then every test (pytest exits 5 when it collects nothing,
# which fails this target on purpose). The bytecode is written first: the suite starts hundreds of service
# processes, and where PYTHONDONTWRITEBYTECODE is set each would compile the project from source again.
test: lint
	$(PY) -m compileall -q libs services
	$(PY) -m pytest

test-unit: deps
	$(PY) -m pytest tests/unit

test-integration: deps
	$(PY) -m pytest -m integration

run: deps
	$(PY) -m flareport_cli dev

# The benchmark suite against real processes on loopback (< 15 min on 2 cores): writes bench/results/latest.json,
# docs/benchmarks.md and the plots under docs/img/.
bench: deps
	$(PY) bench/run_all.py

# A small run that only checks the harness works and produces numbers (also part of `make test`).
bench-smoke: deps
	$(PY) -m pytest tests/e2e/test_bench_smoke.py -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
