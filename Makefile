# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
UV := $(PYTHON) -m uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
# Imports compile every module from source when bytecode is neither shipped nor written
# (PYTHONDONTWRITEBYTECODE is set on these machines): compile once at install instead.
export UV_COMPILE_BYTECODE := 1
# No usage statistics from BentoML or MLflow (docs/privacy.md); the CLI sets the same when unset.
export BENTOML_DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
RUN := $(UV) run --frozen --no-sync
WORKSPACE ?= $(CURDIR)
CUSTOMERS ?= 20000
SEED ?= 42
AS_OF ?= 2026-07-01

.PHONY: help setup redis demo test lint format serve bento bench load clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: .venv/.installed redis  ## Install uv (from PyPI), the locked dependencies with the machine's Python, and redis-server.

redis:  ## redis-server from Debian's packages (the online-store tests run against a real one).
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server from Debian's packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

.venv/.installed: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

demo: setup  ## Simulate a retailer, then run the main job on it (ingest, resolve, features, train, score).
	$(RUN) cdp simulate --customers $(CUSTOMERS) --seed $(SEED) --out $(WORKSPACE)/data/raw
	$(RUN) cdp run --raw $(WORKSPACE)/data/raw --as-of $(AS_OF) --workspace $(WORKSPACE)
	$(RUN) cdp evaluate identity --truth $(WORKSPACE)/data/raw --workspace $(WORKSPACE)
	$(RUN) cdp evaluate models --truth $(WORKSPACE)/data/raw --workspace $(WORKSPACE)
	$(RUN) cdp evaluate policy --truth $(WORKSPACE)/data/raw --workspace $(WORKSPACE)
	$(RUN) cdp export --segment win_back_today --format csv --workspace $(WORKSPACE)
	$(RUN) cdp report drift --workspace $(WORKSPACE)
	$(RUN) cdp status --workspace $(WORKSPACE)
	@echo
	@echo "Demo done. Next:"
	@echo "  scores:             $(WORKSPACE)/data/outputs/scores.parquet (summary in scores.json)"
	@echo "  segments:           $(RUN) cdp export --segment high_clv_at_risk|push_reachable|do_not_contact --format csv"
	@echo "  MLflow UI:          $(RUN) mlflow ui --backend-store-uri sqlite:///$(WORKSPACE)/mlruns/mlflow.db   (http://127.0.0.1:5000)"
	@echo "  Feast UI:           $(RUN) cdp features ui --workspace $(WORKSPACE)   (http://127.0.0.1:8888)"
	@echo "  the service:        CDP_SERVING__API_TOKEN=change-me make serve   (API docs at http://127.0.0.1:3000/docs)"
	@echo "  notebooks:          CDP_WORKSPACE=$(WORKSPACE) $(UV) run --with jupyterlab jupyter lab notebooks/"
	@echo "  explain a customer: $(RUN) cdp identity explain C000000001"
	@echo "  reports:            $(WORKSPACE)/data/reports/ (ingest, identity, model evaluation, policy, drift.html)"
	@echo "  all commands:       $(RUN) cdp --help"

test: setup  ## Lint, then run the whole test suite.
	$(RUN) ruff check .
	$(RUN) pytest -q

# Lint only: the code is formatted by hand (line length 100 as a guide, not a rule); `ruff format`
# would rewrite 103 of 143 files, so it is neither checked nor applied here.
lint:  ## ruff's lint rules (what `make test` runs first).
	$(RUN) ruff check .

format:  ## Apply ruff's automatic lint fixes (import order, modern syntax).
	$(RUN) ruff check --fix .

serve: setup  ## Start the recommendation service on the workspace (needs CDP_SERVING__API_TOKEN).
	$(RUN) cdp serve --workspace $(WORKSPACE) --port $${PORT:-3000}

bento: setup  ## Build a Bento of the service (requirements exported from uv.lock).
	$(UV) export --frozen --no-dev --no-hashes --no-emit-project --format requirements-txt -q > requirements-serving.txt
	$(RUN) bentoml build

bench: setup  ## Benchmarks (slow, minutes); JSON results in bench-results/.
	$(RUN) python -m tests.benchmarks.run --out bench-results

load: setup  ## Load and fault tests of the service (~5 min; LOAD_WORKSPACE=W to use a served workspace); JSON in bench-results/load.json.
	$(RUN) python -m tests.benchmarks.load $(if $(LOAD_WORKSPACE),--workspace $(LOAD_WORKSPACE)) --out bench-results/load.json

clean:  ## Remove the workspace's data and MLflow store (not the code).
	rm -rf data mlruns/* bench-results
