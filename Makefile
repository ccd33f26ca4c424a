# Two commands set everything up on a fresh Debian machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEB_PACKAGES := mbpoll victoria-metrics collectd-core libmodbus-dev chromium chromium-driver poppler-utils libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core
DEMO_ARGS ?=

.PHONY: demo test lint typecheck venv debs node clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Debian packages the tests use as independent peers and real servers. Installed only when
# running as root; without root the tests that need them are skipped with the package's name
# (and fail under CI=true).
debs:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "not root: tests needing$$missing will be skipped"; fi; \
	fi

# node-opcua is the independent OPC-UA peer used by the collector tests. Node.js may come from Debian or be
# preinstalled with its own npm; Debian's npm is only installed when there is no npm at all.
node: debs
	@if ! command -v npm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian packages: nodejs npm"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; \
	  else echo "not root: tests needing nodejs npm will be skipped"; fi; \
	fi
	@if command -v npm >/dev/null 2>&1 && [ ! -d tests/node/node_modules/node-opcua ]; then \
	  cd tests/node && npm install --silent --no-audit --no-fund >/dev/null; fi

demo: venv
	$(VENV)/bin/aidc demo $(DEMO_ARGS)

test: venv debs node
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true

typecheck: venv
	$(VENV)/bin/mypy

bench: venv
	$(PY) bench/sim_year.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
