# uniformer-bench — developer entry points.
#
#   make reproduce   # create .venv if missing, install pinned deps, run `snakemake --cores all reproduce_all`
#   make gate        # CI regression gate on the smoke results
#   make test        # full test suite (incl. the end-to-end smoke pipeline)
#   make test-fast   # tests without the e2e marker
#   make bench       # micro-benchmarks -> benchmarks/out/
#   make clean       # remove build/test/run artefacts (keeps .venv; `make distclean` removes it too)

PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PIP_INSTALL_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv test test-fast reproduce gate bench clean distclean

help:
	@echo "targets: venv test test-fast reproduce bench clean distclean"

# Create the virtualenv only when it is missing (also accepts one made by someone else).
$(VPY):
	$(PY) -m venv $(VENV)

# (Re)install only when pyproject.toml or requirements.lock is newer than the stamp.
# The venv is an order-only prerequisite: its mtime must not trigger a reinstall.
$(STAMP): pyproject.toml requirements.lock | $(VPY)
	$(VPY) -m pip install $(PIP_INSTALL_ARGS) -c requirements.lock -e .
	@touch $@

venv: $(STAMP)

# pytest-xdist: one worker per core (TEST_WORKERS), each with one intra-op thread (tests/conftest.py); a test
# file stays on one worker, so its module fixtures (one smoke training) are built once.
TEST_WORKERS ?= 2

test: venv
	$(VPY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: venv
	$(VPY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not e2e"

# The main job: every paper table reproduced so far, on the active profile (smoke by default).
reproduce: venv
	$(VENV)/bin/snakemake --cores all reproduce_all

# Every registered paper table (uniformer/tasks), asked from the package when the gate runs.
gate: venv
	@set -e; tables=$$($(VENV)/bin/uniformer tables); for t in $$tables; do \
		$(VENV)/bin/uniformer check $$t --baseline reports/baselines/$${t}_smoke.json; done

bench: venv
	$(VPY) benchmarks/bench_models.py

clean:
	rm -rf build/ dist/ *.egg-info .pytest_cache .snakemake/ benchmarks/out/ logs/
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
