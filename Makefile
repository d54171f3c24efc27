# `make check` runs exactly what CI runs (.ci/run calls it).
VENV ?= .venv
BIN := $(VENV)/bin
# Every optional extra, so that each integration the README promises is tested.
CHECK_EXTRAS := dev,bench,ray,timm,tensorboard,mlflow

.PHONY: setup setup-dev study quick test lint typecheck check bench format

setup:  ## the package and Fashion-MNIST: what a study needs
	@bash scripts/setup.sh

setup-dev:  ## everything: test tools, optional extras, peers, chromium
	@bash scripts/setup.sh $(CHECK_EXTRAS) browser

study: setup  ## the default study on Fashion-MNIST
	$(BIN)/stresslab run

quick: setup  ## a first look in under two minutes
	$(BIN)/stresslab run --preset quick

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup-dev
	$(BIN)/mypy

test: setup-dev
	$(BIN)/pytest

check: lint typecheck test

format: setup-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup-dev  ## side-by-side benchmarks against peer implementations
	$(BIN)/python benchmarks/run_all.py
