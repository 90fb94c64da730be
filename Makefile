# Every target sets up .venv itself; a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint fuzz bench clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian programs the tests talk to (redis-server, rpcbind, haproxy, chromium, ...).
system-deps:
	./.ci/system-deps.sh

run: $(STAMP)
	$(PY) -m muxserver

test: $(STAMP) system-deps
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check muxserver tests bench
	$(VENV)/bin/ruff format --check muxserver tests bench
	$(VENV)/bin/mypy

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q --timeout 1800 tests/handlers

# Benchmarks against asyncio, uvloop, Twisted, gevent, socketserver, redis and nginx
# (BENCH_ARGS=--quick for one short run), then the dispatch strategies against inline,
# then 100,000 idle clients held by --workers 6.
bench: $(STAMP)
	bash bench/install.sh
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/dispatch_bench.py
	$(PY) bench/idle_100k.py --json bench/results/raw/idle_100k.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .hypothesis
