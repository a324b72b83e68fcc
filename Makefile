# Two commands: `make run` starts the service, `make test` runs every test CI runs.
# `make bench` measures latency, throughput, CPU and memory (docs/BENCHMARKS.md); `make soak` RSS over
# many requests. BENCH_ARGS / SOAK_N pass options: make bench BENCH_ARGS='--quick --json bench.json'.
# Both create or update the virtualenv in .venv from pyproject.toml first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: run test lint venv venv-test e2e-cluster bench soak asyncapi clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

venv: $(STAMP_RUN)
venv-test: $(STAMP_TEST)

run: venv
	$(BIN)/symbia-integrations serve

lint: venv-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The 3-node NATS cluster of deploy/nats-cluster/ with TLS, per-service permissions and replicated
# JetStream, two workers and an api under load while a worker and a node die (also part of `test`).
e2e-cluster: venv-test
	$(BIN)/python -m pytest tests/e2e/test_cluster.py $(PYTEST_ARGS)

SOAK_N ?= 100000

bench: venv-test
	$(BIN)/python -m bench $(BENCH_ARGS)

soak: venv-test
	$(BIN)/python -m bench --soak $(SOAK_N) $(BENCH_ARGS)

asyncapi: venv
	$(BIN)/python -m handlers.asyncapi > docs/asyncapi.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
