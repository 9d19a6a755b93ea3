# Two commands: `make serve` (set up, index the bundled KB, serve it) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test setup setup-test system-deps lint bench

$(BIN)/tmskb: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

setup: $(BIN)/tmskb

setup-test: setup system-deps
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'

# The browser tests drive Debian's Chromium (never a downloaded browser); the Chinese pages need
# a CJK font (fonts-noto-cjk), or Chromium draws empty boxes.
system-deps:
	@if [ ! -x /usr/bin/chromium ] || [ -z "$$(fc-list :lang=zh-hk 2>/dev/null)" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-noto-cjk; \
	fi

serve: setup
	@$(BIN)/tmskb changes >/dev/null || echo "No change history (tmskb changes needs a git checkout); serving without it."
	$(BIN)/tmskb serve

test: setup-test
	$(BIN)/python -m pytest

lint: setup-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python bench/index_build.py
	$(BIN)/python bench/http_search.py
