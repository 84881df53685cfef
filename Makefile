# Two commands on a fresh machine:
#   make demo   - install and run the demo at http://127.0.0.1:8000 (in-memory, no services)
#   make test   - install and run the whole test suite (starts Redis, installs Chromium if missing)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo quickstart test lint docs docs-serve bench services

# The repository's own dependencies are requirements files, not published extras.
$(VENV)/.demo-installed: pyproject.toml requirements/demo.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/demo.txt
	touch $@

$(VENV)/.dev-installed: pyproject.toml requirements/demo.txt requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/dev.txt
	touch $@ $(VENV)/.demo-installed

DEMO_HOST ?= 127.0.0.1
DEMO_PORT ?= 8000
DEMO_WORKERS ?= 1

demo: $(VENV)/.demo-installed
	@echo
	@echo "  wsregistry demo: open http://$(DEMO_HOST):$(DEMO_PORT)  (Ctrl+C to stop)"
	@echo "  several workers: WSREGISTRY_REDIS_URL=redis://127.0.0.1:6379/0 make demo DEMO_WORKERS=2"
	@echo
	@WSREGISTRY_DEMO_ORIGINS=$${WSREGISTRY_DEMO_ORIGINS:-http://$(DEMO_HOST):$(DEMO_PORT),http://localhost:$(DEMO_PORT)} \
	$(PY) -m uvicorn --app-dir examples demo.app:app --host $(DEMO_HOST) --port $(DEMO_PORT) \
		--workers $(DEMO_WORKERS)

quickstart: $(VENV)/.demo-installed
	$(PY) examples/quickstart.py

services:
	bash scripts/ensure-services.sh

test: $(VENV)/.dev-installed services
	$(PY) -m pytest

lint: $(VENV)/.dev-installed docs
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The documentation site (MkDocs Material + mkdocstrings); `lint` builds it so CI does too.
docs: $(VENV)/.dev-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: $(VENV)/.dev-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

bench: $(VENV)/.dev-installed
	$(PY) -m pip install -q -r requirements/bench.txt
	$(PY) benchmarks/core.py
	$(PY) -m benchmarks --quick
