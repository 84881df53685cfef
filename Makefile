# Two commands on a fresh machine:
#   make demo   - install and run the demo (in-memory backend, no services needed)
#   make test   - install and run the whole test suite (starts Redis, installs Chromium if missing)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test lint docs docs-serve bench services

$(VENV)/.demo-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[demo]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
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
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/core.py
