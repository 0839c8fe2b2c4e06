# The two commands that matter: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# The web pages' front-end assets (GOV.UK Frontend) and axe-core for their tests; npm writes
# this file on every install, so it is the stamp.
WEB := api/web
WEB_INSTALLED := $(WEB)/node_modules/.package-lock.json

.PHONY: run test bench install lint asyncapi clean

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Tenancy needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(INSTALLED)

$(WEB_INSTALLED): $(WEB)/package.json $(WEB)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(WEB) && npm ci --no-audit --no-fund; \
	else \
		echo "npm not found: the web pages will be unstyled and their browser tests cannot run" \
			"(install Node.js and npm, then run make install again)" >&2; \
	fi

install: $(INSTALLED) $(WEB_INSTALLED)

## Start the embedded stack: PostgreSQL, the Kafka-compatible broker and the four workers.
run: $(INSTALLED) $(WEB_INSTALLED)
	$(PY) -m stack

## Run the whole test suite against a broker and database it starts itself.
test: $(INSTALLED) $(WEB_INSTALLED)
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
