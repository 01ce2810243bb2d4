# One-line targets. Running a pipeline needs the runtime install (.venv + torch + the project); tests,
# lint, benchmarks and the example data add the dev extra. A fresh clone needs nothing but
# `make pipeline-local` or `make test`. The stamps depend on this file and pyproject.toml, so changing
# any pin (torch's below, or the project's) reinstalls.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev
TORCH  := torch==2.14.1 torchvision==0.29.1
CONFIG ?= config/digits.yaml
PARAMS ?=
UNTIL  ?=

export SAGEMAKER_SUPPRESS_V2_WARNING := 1

.PHONY: install install-dev test lint data bench clean pipeline-local validate pipeline-definition pipeline-upsert pipeline-run golden image-build image-push

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

$(DEV): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(DEV)

install: $(STAMP)

install-dev: $(DEV)

test: $(DEV)
	$(PY) -m pytest -q

lint: $(DEV)
	$(PY) -m ruff check pipelines steps tests bench
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

data: data/.stamp

data/.stamp: $(DEV) tests/tools/datasets.py
	$(PY) -m tests.tools.datasets --out data
	touch data/.stamp

pipeline-local: $(STAMP) data/.stamp
	$(PY) -m pipelines local run $(CONFIG) $(PARAMS) $(if $(UNTIL),--until $(UNTIL))

bench: $(DEV)
	$(PY) bench/run.py

validate: $(STAMP)
	$(PY) -m pipelines validate $(CONFIG)

pipeline-definition: $(STAMP)
	$(PY) -m pipelines definition $(CONFIG)

pipeline-upsert: $(STAMP)
	$(PY) -m pipelines upsert $(CONFIG)

pipeline-run: $(STAMP)
	$(PY) -m pipelines run $(CONFIG) $(PARAMS) $(if $(NO_WAIT),--no-wait)

golden: $(DEV)
	$(PY) -m tests.tools.golden

image-build: $(STAMP)
	$(PY) -m pipelines image-build

image-push: $(STAMP)
	$(PY) -m pipelines image-push

clean:
	rm -rf build runs bench/out
