# Two commands set everything up on a fresh Debian machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the tests use as independent peers and real servers (and only those): mbpoll and victoria-metrics
# (collector and historian peers), prometheus (scrapes /metrics), chromium + chromium-driver (browser tests),
# poppler-utils (PDF report pages), pango and DejaVu fonts (WeasyPrint renders the PDF report).
DEB_PACKAGES := mbpoll snmp victoria-metrics prometheus chromium chromium-driver poppler-utils libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core
# Debian packages only the benchmarks use (the libmodbus C peer of bench/collect.py).
BENCH_DEB_PACKAGES := libmodbus-dev
# The C compiler for the Modbus poll's accelerator (collectors/_fastpoll.c, built by setup.py; without it the
# install succeeds and polls take the Python path); python3-dev only where $(PYTHON) has no Python.h.
BUILD_DEB_PACKAGES := gcc $(shell $(PYTHON) -c "import os, sysconfig; print('' if os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else 'python3-dev')" 2>/dev/null)
DEMO_ARGS ?=

.PHONY: demo test lint typecheck venv debs bench-debs node clean bench bench-forecast

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py collectors/_fastpoll.c
	$(call install_debs,$(BUILD_DEB_PACKAGES))
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Installs the missing packages of $(1) when running as root; without root the tests or benchmarks that need them
# are skipped with the package's name (and tests fail under CI=true).
define install_debs
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "not root: what needs$$missing will be skipped"; fi; \
	fi
endef

debs:
	$(call install_debs,$(DEB_PACKAGES))

bench-debs:
	$(call install_debs,$(BENCH_DEB_PACKAGES))

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
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=40

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true

typecheck: venv
	$(VENV)/bin/mypy

bench: venv bench-debs node
	$(PY) bench/sim_year.py

# Forecast benchmark against statsforecast (benchmark-only extra).
bench-forecast: venv
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/forecast.py
	$(PY) bench/pue_forecast.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
