# Two commands set everything up on a fresh Debian machine: `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
JS_STAMP := tests/js/node_modules/.installed

.PHONY: up test test-fast test-postgres lint typecheck deps system bench clean

deps: system $(STAMP)

system:
	@./scripts/install-system.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11, 4), "Python >= 3.11.4 needed (tarfile filter=)"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,scale]'
	@touch $@

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

up: deps
	$(BIN)/shipyard up

test: deps $(JS_STAMP)
	$(BIN)/python -m pytest -q

test-fast: deps
	$(BIN)/python -m pytest -q -m "not slow and not js"

# Scale-out workers on PostgreSQL (docs/workers.md): needs the server at 127.0.0.1:5432.
test-postgres: deps
	$(BIN)/python -m pytest -q tests/executors/procrastinate tests/fleet

lint: deps
	$(BIN)/ruff check shipyard tests
	$(BIN)/ruff format --check shipyard tests
	$(BIN)/mypy

bench: deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .shipyard tests/js/node_modules
