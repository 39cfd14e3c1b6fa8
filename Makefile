# hexcast — local setup, tests and tools. Needs only Python 3.11 and make.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
PORT ?= 8000
PYTEST_ARGS ?=
# make package / make deploy: which stage of .chalice/config.json; DRY_RUN=1 only prints the deploy plan.
STAGE ?= dev
DRY_RUN ?=
# make package / make deploy: PYC=0 leaves the .pyc out of the zip (compiled by CPython 3.13, fetched by tools/py313.py).
PYC ?= 1

# `import app`, `import chalicelib` and `import tools` work from the repository root.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: help venv typecheck test serve demo bench soak hostile fuzz package deploy clean
.DEFAULT_GOAL := help

## help: list the targets (also what plain `make` does)
help:
	@echo "hexcast — make <target>:"
	@sed -n 's/^## \([a-z][a-z-]*\): \(.*\)/\1\t\2/p' $(MAKEFILE_LIST) | \
	  awk -F '\t' '{ printf "  %-9s %s\n", $$1, $$2 }'

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

## typecheck: mypy over chalicelib/ and tools/ (mypy.ini); part of make test
typecheck: venv
	$(VENV)/bin/mypy

## test: the type checker, then the test suite and the doctests (PYTEST_ARGS="-k pump" to narrow it)
test: typecheck
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

## soak: fault injection at full counts (20,000-device storm, 100,000 pings; RELIABILITY.md), a few minutes; runs hostile first
soak: venv hostile
	$(PY) -m benchmarks.soak

## hostile: hostile input at full counts (12,000 generated requests + the full catalogue, every route; RELIABILITY.md), ~10 minutes
hostile: venv
	$(PY) -m tools.hostile

## fuzz: schemathesis from the OpenAPI document against the local stack (bounded: MAX_EXAMPLES per operation, default 25)
fuzz: venv
	$(PY) -m tools.fuzz --max-examples $(or $(MAX_EXAMPLES),25)

## package: dist/$(STAGE)/sam.json (one template that creates everything) + deployment.zip, checked by cfn-lint
package: venv
	$(PY) -m deploy.package --stage $(STAGE) $(if $(filter 1,$(PYC)),--compile)
	$(VENV)/bin/cfn-lint dist/$(STAGE)/sam.json dist/$(STAGE)/resources.json
	@echo "package: cfn-lint passed"

## deploy: the resource stack, then chalice deploy --stage $(STAGE) (idempotent; DRY_RUN=1 prints the plan)
deploy: venv
	DRY_RUN=$(DRY_RUN) HEXCAST_PYC=$(PYC) $(PY) -m deploy.deploy --stage $(STAGE)

## clean: remove the virtualenv, caches and generated output
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis dist out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
