# DenseCLIP Lightning — `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# Use the active virtual environment if there is one, else .venv in the repository.
ifdef VIRTUAL_ENV
PY := python
else
PY := .venv/bin/python
endif
export HYDRA_FULL_ERROR ?= 0
PYTEST_WORKERS ?= 2

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

install: ## Create .venv (unless a venv is active) and install the project with its dev extra
ifndef VIRTUAL_ENV
	test -x .venv/bin/python || python3 -m venv .venv
endif
	$(PY) -m pip install -q -e '.[dev]'

test: ## Run the fast test suite (about 10 minutes on 2 CPU cores)
	$(PY) -m pytest -m "not slow" -n $(PYTEST_WORKERS) --durations=15

test-full: ## Run every test, slow ones included
	$(PY) -m pytest -n $(PYTEST_WORKERS) --durations=25

demo: ## DenseCLIP -> DenseCLIP+ on the embedded shapes world (CPU, under 10 minutes)
	$(PY) -m src.train experiment=shapes_demo

bench: ## Speed benchmarks; writes docs/benchmarks.json and docs/BENCHMARKS.md
	$(PY) scripts/bench.py
	$(PY) scripts/bench_student.py

bench-authors: ## Our heads beside the authors' code (needs their checkouts in /tmp/ext; ARGS=--quick): docs/BENCHMARKS.md
	$(PY) scripts/bench_vs_authors.py $(ARGS)

bench-gpu: ## GPU benchmark (CUDA; one line and exit 0 without): the gpu section of docs/benchmarks.json
	$(PY) scripts/bench_gpu.py

app: ## Serve the web page on http://127.0.0.1:7860 (python -m src.app; Ctrl-C stops)
	$(PY) -m src.app

lint: ## Check style with ruff
	$(PY) -m ruff check src tests scripts
	$(PY) -m ruff format --check src tests scripts

format: ## Format the code with ruff
	$(PY) -m ruff check --fix src tests scripts
	$(PY) -m ruff format src tests scripts

clean: ## Remove caches, logs and build outputs (not .venv)
	rm -rf logs outputs multirun .cache .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

.PHONY: help install test test-full demo bench bench-authors bench-gpu app lint format clean
