# Two commands matter: `make run` (the whole service) and `make test` (the whole suite).
# Both work on a fresh clone with only Python 3.11: they build .venv and install what is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint lock format train bench bench-peers chaos soak evaluate review-budget fonts venv-serve venv-dev tools clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "Python 3.11 is required (pyproject.toml: >=3.11,<3.12); $(PYTHON) is $$($(PYTHON) -V 2>&1). Use PYTHON=python3.11." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installs come from the lockfiles (requirements/lock/): every package pinned, with hashes.
# Serving needs no TensorFlow: the API and workers install their own lists only.
$(VENV)/.serve-installed: requirements/lock/serve.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements/lock/serve.txt
	touch $@

$(VENV)/.dev-installed: requirements/lock/dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements/lock/dev.txt
	touch $@

# requirements/*.txt hold the direct pins (what the code imports, by hand); `make lock`
# resolves them into requirements/lock/ for Linux x86_64, Python 3.11. Run it after editing
# them and commit both (tests/deploy/test_lockfiles.py fails while they disagree).
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock"
lock: venv-dev
	$(UV_COMPILE) requirements/api.txt -o requirements/lock/api.txt
	$(UV_COMPILE) requirements/worker.txt -o requirements/lock/worker.txt
	$(UV_COMPILE) requirements/api.txt requirements/worker.txt -o requirements/lock/serve.txt
	$(UV_COMPILE) requirements/dev.txt -o requirements/lock/dev.txt

venv-serve: $(VENV)/.serve-installed
venv-dev: $(VENV)/.dev-installed

tools: venv-dev
	VENV_PYTHON=$(BIN)/python scripts/ensure-tools.sh

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
	$(BIN)/mypy

format: venv-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

fonts: venv-dev
	VENV_PYTHON=$(BIN)/python scripts/ensure-tools.sh fonts

train: venv-dev fonts
	$(BIN)/python -m training train --promote

# Accuracy through a running service (`make run`): realistic images of MNIST *test* digits,
# then the robustness sets (held-out handwriting fonts, test split). EVAL=--offline scores
# the same sets in-process with the workers' own code instead.
URL ?= http://127.0.0.1:8000
EVAL ?= --url $(URL)
evaluate: venv-dev fonts
	test -f var/eval-test/labels.csv || $(BIN)/python -m evaluation generate --out var/eval-test --split test
	test -f var/robust-test/labels.csv || $(BIN)/python -m evaluation robust --out var/robust-test --split test
	$(BIN)/python -m evaluation run --sets var/eval-test $(EVAL)
	$(BIN)/python -m evaluation run --sets var/robust-test $(EVAL)

# The review thresholds' trade-off on the robustness *dev* split (README: review budget).
review-budget: venv-dev fonts
	test -f var/robust-dev/labels.csv || $(BIN)/python -m evaluation robust --out var/robust-dev --split dev
	$(BIN)/python -m evaluation review-budget --sets var/robust-dev --plot docs/review-tradeoff.png

bench: venv-dev tools
	$(BIN)/python -m bench $(BENCH_ARGS)

# Triton (PyTriton, own venv under var/peers/) and this service side by side (issue 16)
PEERS_ARGS ?= --connections 16,64,256 --seconds 10
bench-peers: venv-dev tools
	$(BIN)/python -m bench.peers.triton $(PEERS_ARGS)

# Fault suite (issue 18): the reliability tests, then faults under open-loop load with one
# table per case (accepted, done, failed, lost, stuck, slowest answer and refusal), ~3 min.
chaos: venv-dev tools
	$(BIN)/pytest tests/reliability -q
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

# Redis memory under sustained traffic (issue 18): 100 sync req/s for 30 min on a throw-away
# stack, used_memory sampled, its slope extrapolated to a day; exit 1 if it grows or loses.
SOAK_ARGS ?= --rate 100 --minutes 30
soak: venv-dev tools
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) test-output .pytest_cache .ruff_cache
