# Two entry points, each doing its own set-up idempotently:
#   make run    the main job on the default preset
#   make test   lint and format checks (ruff), then the test suite
# and the speed suite (pytest-benchmark, benchmarks/; about 4 minutes on 2 cores):
#   make bench  results/perf/speed.json (and a copy in .benchmarks/ for --benchmark-compare),
#               then docs/performance.md generated from it
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-16)

.PHONY: run test bench setup

setup: $(STAMP)

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: this version is a CPU build on the project's machines;
	# an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,official,logs]'
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(PY) -m bench run --arch gdn

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m pytest benchmarks --benchmark-enable --benchmark-autosave --benchmark-json=results/perf/speed.json
	$(PY) -m benchmarks.doc results/perf/speed.json
