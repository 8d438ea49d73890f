# Two commands from a fresh clone on Debian:
#   make demo   - runs the whole system on the embedded defaults (no servers needed)
#   make test   - installs what the tests need (Debian packages, Python deps) and runs them
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# chromium/chromium-driver: the dashboard's browser tests; a CJK font so its pages render;
# postgresql: initdb and postgres for the market database's tests (a cluster per run).
DEBIAN_TEST_PACKAGES := mosquitto influxdb postgresql chromium chromium-driver fonts-wqy-microhei

.PHONY: demo test lint typecheck check install debian-packages bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/stallwatch demo

# Installs only what is missing; needs root (CI and the dev machines run as root).
debian-packages:
	@missing=$$(for p in $(DEBIAN_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: debian-packages $(STAMP) lint typecheck
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: $(STAMP) debian-packages
	$(BIN)/python -m bench.ingest_bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
