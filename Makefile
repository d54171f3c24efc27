# `make check` runs exactly what CI runs (.ci/run calls it).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup study quick test lint typecheck check bench format

setup:
	@bash scripts/setup.sh

study: setup  ## the default study on Fashion-MNIST
	$(BIN)/stresslab run

quick: setup  ## a first look in under two minutes
	$(BIN)/stresslab run --preset quick

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

test: setup
	$(BIN)/pytest

check: lint typecheck test

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench:  ## side-by-side benchmarks against peer implementations (installs the peers)
	@bash scripts/setup.sh dev,bench
	$(BIN)/python benchmarks/run_all.py
