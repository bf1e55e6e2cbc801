# The two commands a newcomer needs: `make run` and `make test`.
# Both create .venv with python3 -m venv when it is missing and install margin with its dev extras.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint clean demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/margin serve --demo-key

demo: $(STAMP)
	$(BIN)/margin demo

# scripts/test-deps.sh installs Debian's chromium for the dashboard's browser tests in CI (CI=true) or with
# MARGIN_INSTALL_TEST_DEPS=1; otherwise those tests skip when chromium is missing.
test: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	bash scripts/install-test-servers.sh  # CI only: PostgreSQL and Redis binaries for the throwaway test servers
	bash scripts/test-deps.sh  # CI only: Debian's chromium for the dashboard's browser tests
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
