# One entry point for every workflow. Targets create and reuse .venv from the lock files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.lock pyproject.toml | cksum | cut -d' ' -f1)
UV_VERSION := 0.13.9
PORT ?= 3000

export PYTHONPATH := $(CURDIR)

.PHONY: help setup lock train serve test lint format

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements-dev.lock
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)  ## create .venv with the locked dependencies

lock: setup  ## re-resolve the lock files after editing pyproject.toml
	$(BIN)/uv pip compile pyproject.toml -q --no-header --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml -q --no-header --python-version 3.11 --group dev \
		-c requirements.lock -o requirements-dev.lock

train: setup  ## fit, evaluate and save a model into the BentoML store
	$(BIN)/python train.py

serve: setup  ## serve on http://127.0.0.1:$(PORT), training first if the store has no model
	@$(BIN)/bentoml models get credit_risk:latest >/dev/null 2>&1 || $(BIN)/python train.py
	$(BIN)/bentoml serve service:CreditRiskService --host 127.0.0.1 --port $(PORT)

lint: setup  ## ruff check, ruff format --check, mypy (strict on credit_risk/)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint  ## lint, then the whole test suite
	$(BIN)/pytest
