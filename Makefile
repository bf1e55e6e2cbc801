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

test: $(STAMP)
	bash scripts/install-redis.sh  # CI only: redis-server for the throwaway test servers
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
