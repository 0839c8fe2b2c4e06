# The two commands that matter: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test bench install lint asyncapi clean

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Tenancy needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(INSTALLED)

install: $(INSTALLED)

## Start the embedded stack: PostgreSQL, the Kafka-compatible broker and the four workers.
run: $(INSTALLED)
	$(PY) -m stack

## Run the whole test suite against a broker and database it starts itself.
test: $(INSTALLED)
	$(PY) -m pytest

## Measure the system against its raw floor; results go to .tenancy/bench/results.json.
bench: $(INSTALLED)
	$(PY) -m bench

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## Write the AsyncAPI document generated from the workers.
asyncapi: $(INSTALLED)
	$(VENV)/bin/tenancy asyncapi --output docs/asyncapi.yaml

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
