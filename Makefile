# Two commands: `make serve` (set up, index the bundled KB, serve it) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test setup setup-test lint bench

$(BIN)/tmskb: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

setup: $(BIN)/tmskb

setup-test: setup
	$(BIN)/pip install --quiet -e '.[test]'

serve: setup
	$(BIN)/tmskb serve

test: setup-test
	$(BIN)/python -m pytest

lint: setup-test
	$(BIN)/ruff check . && $(BIN)/mypy

bench: setup
	$(BIN)/python bench/index_build.py
