# candlecast: make install | make run | make test (lint + dependency audit + the whole suite) | make lint (ruff + mypy)
# | make audit (pip-audit of the installed set; says NOT RUN, without failing, where its database is unreachable)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: install run test lint audit

$(STAMP): pyproject.toml
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: the local CPU build (an unpinned torch pulls a multi-GB CUDA build)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,connectors,ray]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/candlecast demo $(ARGS)

test: install lint audit
	$(VENV)/bin/python -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

audit: install
	$(PY) scripts/audit_deps.py
