# One-line targets; every target that needs Python depends on the venv stamp, so a fresh clone
# needs nothing but `make test` (or `make pipeline-local`).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= config/digits.yaml
PARAMS ?=

export SAGEMAKER_SUPPRESS_V2_WARNING := 1

.PHONY: install test lint data bench clean pipeline-local validate pipeline-definition pipeline-upsert pipeline-run golden image-build image-push

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pipelines test

lint: $(STAMP)
	$(PY) -m pipelines lint

data: data/.stamp

data/.stamp: $(STAMP) pipelines/datasets.py
	$(PY) -m pipelines data --out data
	touch data/.stamp

pipeline-local: $(STAMP) data/.stamp
	$(PY) -m pipelines local run $(CONFIG) $(PARAMS)

bench: $(STAMP)
	$(PY) -m pipelines bench

validate: $(STAMP)
	$(PY) -m pipelines validate $(CONFIG)

pipeline-definition: $(STAMP)
	$(PY) -m pipelines definition $(CONFIG)

pipeline-upsert: $(STAMP)
	$(PY) -m pipelines upsert $(CONFIG)

pipeline-run: $(STAMP)
	$(PY) -m pipelines run $(CONFIG) $(PARAMS) $(if $(NO_WAIT),--no-wait)

golden: $(STAMP)
	$(PY) -m pipelines golden

image-build: $(STAMP)
	$(PY) -m pipelines image-build

image-push: $(STAMP)
	$(PY) -m pipelines image-push

clean:
	rm -rf build runs bench/out
