# The README's two commands are `make run` and `make test`; both build .venv themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline machines: use the shared MNIST copy beside the repo as the first mirror.
SHARED_MNIST := $(abspath ../shared/mnist)
# An empty DATA_MIRROR counts as unset (`?=` would keep it empty).
ifneq ($(wildcard $(SHARED_MNIST)/*.gz),)
ifeq ($(strip $(DATA_MIRROR)),)
export DATA_MIRROR := file://$(SHARED_MNIST)
endif
endif
# dvc runs each stage's `python` from PATH: make it the project's environment.
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export MPLBACKEND := Agg

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# requirements.lock pins every package (with hashes) for CPython 3.11 on x86_64 Linux, the
# machines CI and the team run; elsewhere the ranges of pyproject.toml are resolved instead.
LOCKED := $(shell $(PYTHON) -c 'import platform, sys; print(int(sys.version_info[:2] == (3, 11) and platform.machine() == "x86_64" and sys.platform == "linux"))' 2>/dev/null)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
ifeq ($(LOCKED),1)
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
else
	@echo "note: not CPython 3.11 on x86_64 Linux: installing from pyproject.toml ranges, not the lock"
	$(BIN)/pip install --quiet -e '.[dev]'
endif
	touch $(STAMP)

venv: $(STAMP) .dvc/plots/template.html ## create .venv and install the project with its dependencies

plots-template: .dvc/plots/template.html ## the offline page of `dvc plots show` (vega from npm)
.dvc/plots/template.html: src/mnist_softmax/devtools/plots_template.py | $(STAMP)
	$(BIN)/python -m mnist_softmax.devtools.plots_template $@

run: $(STAMP) .dvc/plots/template.html ## run the whole pipeline (dvc repro), ending with a run in MLflow
	$(BIN)/dvc repro

lock: $(STAMP) ## re-pin requirements.lock after a change of pyproject.toml's dependencies
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --generate-hashes --quiet -o requirements.lock

check-floors: $(STAMP) .dvc/plots/template.html ## run the test suite against the lowest versions pyproject.toml allows
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra test --extra team --resolution lowest-direct \
		--python-version 3.11 --quiet -o .venv-floors.txt
	$(PYTHON) -m venv .venv-floors
	$(BIN)/uv pip install --python .venv-floors/bin/python --quiet -r .venv-floors.txt
	$(BIN)/uv pip install --python .venv-floors/bin/python --quiet --no-deps -e .
	.venv-floors/bin/python -m pytest -q -p no:cacheprovider

browser: ## install Debian's chromium for the browser tests (when missing)
	@command -v chromium >/dev/null || apt-get install -y -q chromium \
		|| (apt-get update -q && apt-get install -y -q chromium)

test: $(STAMP) .dvc/plots/template.html browser ## lint (ruff) and run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

docs: $(STAMP) ## build the docs site into site/ (mkdocs, strict: a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: $(STAMP) ## preview the docs site on http://127.0.0.1:8000
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

ui: $(STAMP) ## start the MLflow UI on 127.0.0.1:5000 for the local store
	$(BIN)/mnist-softmax ui

# MODEL: any model URI, e.g. make serve MODEL=models:/mnist-softmax/3 PORT=5002
MODEL ?= models:/mnist-softmax@champion
PORT ?= 5001
serve: $(STAMP) ## serve the champion over HTTP on 127.0.0.1:5001 (POST /invocations)
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow/mlflow.db} \
		$(BIN)/mlflow models serve --env-manager local -m $(MODEL) -h 127.0.0.1 -p $(PORT) -w 1

compare: $(STAMP) ## print the last MLflow runs side by side
	$(BIN)/mnist-softmax compare

bench: $(STAMP) ## time the trainers against scikit-learn (table; also docs/tables/bench.md)
	$(BIN)/mnist-softmax bench --out docs/tables/bench.md

explore: $(STAMP) ## the interactive softmax page on the trained model, http://127.0.0.1:8050
	$(BIN)/mnist-softmax explore $(ARGS)

bench-conformal: $(STAMP) ## prediction sets: ours, MAPIE, sparsemax support (table; also docs/tables/bench-conformal.md; after make run)
	$(BIN)/mnist-softmax bench-conformal --out docs/tables/bench-conformal.md $(ARGS)

bench-sweep: $(STAMP) ## time fast/queued sweeps, dvc repro -f, a calibration change (table)
	$(BIN)/mnist-softmax bench-sweep --out docs/tables/bench-sweep.md $(ARGS)

bench-stages: $(STAMP) ## profile dvc repro -f per stage: start-up, imports, work, DVC (table)
	$(BIN)/mnist-softmax bench-stages --out docs/tables/bench-stages.md $(ARGS)

server-start: $(STAMP) ## start the team tracking server (S3 object server + PostgreSQL + MLflow basic-auth) on 127.0.0.1
	scripts/tracking-server start

server-env: ## print the S3 variables DVC needs for the object server (eval its output)
	@scripts/tracking-server s3-env

server-stop: ## stop the team tracking server
	scripts/tracking-server stop

server-status: ## show whether the team tracking server is up
	scripts/tracking-server status

cluster-start: $(STAMP) ## start a Dask scheduler + DASK_WORKERS (2) workers on 127.0.0.1:8786
	scripts/cluster start

cluster-stop: ## stop the Dask scheduler and its workers
	scripts/cluster stop

cluster-status: ## show the Dask scheduler's address and workers
	scripts/cluster status

sweep: $(STAMP) ## fast sweep, e.g. make sweep ARGS="-S 'optimizer.lr=0.05,0.1' -S 'model.l2=0,1e-3'"
	$(BIN)/mnist-softmax sweep $(ARGS)

clean: ## remove the virtual environment and caches (keeps data and MLflow runs)
	rm -rf $(VENV) .pytest_cache .ruff_cache site

.PHONY: help venv lock check-floors browser run test docs docs-serve ui serve compare bench bench-conformal bench-sweep bench-stages explore server-start server-stop server-status server-env cluster-start cluster-stop cluster-status sweep clean
