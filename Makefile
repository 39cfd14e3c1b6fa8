# hexcast — local setup, tests and tools. Needs only Python 3.11 and make.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
PORT ?= 8000
PYTEST_ARGS ?=

# `import app`, `import chalicelib` and `import tools` work from the repository root.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: venv test serve demo bench clean

## venv: create .venv and install requirements-dev.txt (again only when a requirements file changes)
venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@if [ ! -x $(PY) ]; then \
	  echo "make: creating $(VENV)"; \
	  python3.11 -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); python3 -m venv $(VENV); }; \
	  $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	    || echo "make: warning: $(VENV) uses Python $$($(PY) -V 2>&1); hexcast targets 3.11"; \
	fi
	@echo "make: installing requirements-dev.txt into $(VENV)"
	@$(PY) -m pip install --quiet --disable-pip-version-check --progress-bar off -r requirements-dev.txt
	@touch $@

## test: run the test suite (PYTEST_ARGS="-k pump" to narrow it)
test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

## serve: run the local stack in the foreground (PORT, HEXCAST_ADMIN_KEY, HEXCAST_APP_KEY)
serve: venv
	PORT=$(PORT) $(PY) -m tools.serve

## demo: start the local stack and replay the sample scenario
demo: venv
	$(PY) -m tools.demo

## bench: run the benchmarks beside their baselines
bench: venv
	$(PY) -m benchmarks.run

## clean: remove the virtualenv, caches and generated output
clean:
	rm -rf $(VENV) .pytest_cache .hypothesis dist out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
