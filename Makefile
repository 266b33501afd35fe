# Two commands matter: `make run` (the whole service) and `make test` (the whole suite).
# Both work on a fresh clone with only Python 3.11: they build .venv and install what is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint format train bench chaos evaluate venv-serve venv-dev tools clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Serving needs no TensorFlow: the API and workers install their own lists only.
$(VENV)/.serve-installed: requirements/api.txt requirements/worker.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/api.txt -r requirements/worker.txt
	touch $@

$(VENV)/.dev-installed: requirements/*.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $@

venv-serve: $(VENV)/.serve-installed
venv-dev: $(VENV)/.dev-installed

tools:
	scripts/ensure-tools.sh

# Flower is opt-in (it turns the workers' task events on): `FLOWER=1 make run`.
run: venv-serve
	FLOWER=$${FLOWER:-0} scripts/run.sh

test: venv-dev tools
	$(BIN)/pytest

# The compose stack on a real Docker engine (tests/containers, README: "How the deployment is
# tested"): finds or starts an engine, SKIPs with the reason only where none can be had.
.PHONY: test-containers
test-containers: venv-dev
	scripts/test-containers.sh

lint: venv-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

train: venv-dev
	$(BIN)/python -m training train --promote

# Accuracy on realistic images (MNIST *test* digits) through a running service (`make run`).
URL ?= http://127.0.0.1:8000
evaluate: venv-dev
	test -f var/eval-test/labels.csv || $(BIN)/python -m evaluation generate --out var/eval-test --split test
	$(BIN)/python -m evaluation run --sets var/eval-test --url $(URL)

bench: venv-dev tools
	$(BIN)/python -m bench $(BENCH_ARGS)

# Fault suite (issue 18): the reliability tests, then faults under open-loop load with one
# table per case (accepted, done, failed, lost, stuck, slowest answer and refusal), ~3 min.
chaos: venv-dev tools
	$(BIN)/pytest tests/reliability -q
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) test-output .pytest_cache .ruff_cache
