# One-line targets. Running a pipeline needs the runtime install (.venv + torch + the project); tests,
# lint, benchmarks and the example data add the dev extra. A fresh clone needs nothing but
# `make pipeline-local` or `make test`. The stamps depend on this file and pyproject.toml, so changing
# any pin (torch's below, or the project's) reinstalls.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev
AUTOML := $(VENV)/.installed-automl
TORCH  := torch==2.14.1 torchvision==0.29.1
CONFIG ?= config/digits.yaml
PARAMS ?=
UNTIL  ?=

export SAGEMAKER_SUPPRESS_V2_WARNING := 1

.PHONY: install install-dev install-automl mlflow-ui test lint data bench clean pipeline-local pipeline-graph pipeline-retry validate pipeline-definition pipeline-upsert pipeline-run golden image-build image-push

# pip's own progress (what it collects, downloads, installs) is shown: a fresh install takes minutes
$(STAMP): pyproject.toml Makefile
	@echo "==> [1/3] virtual environment $(VENV)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> [2/3] $(TORCH) (about a minute, from this machine's wheel cache when it has one)"
	$(PY) -m pip install --progress-bar on $(TORCH) | grep -v '^Requirement already satisfied' || true
	@echo "==> [3/3] the project and its dependencies (SageMaker SDK, boto3, pyarrow, optuna, matplotlib, ...)"
	$(PY) -m pip install --progress-bar on -e . | grep -v '^Requirement already satisfied' || true
	$(PY) -c "import torch, pipelines" && touch $(STAMP)
	@echo "==> installed; the next run starts at once"

$(DEV): $(STAMP)
	@echo "==> the dev extra: pytest, moto, ruff, mypy, scikit-learn, ..."
	$(PY) -m pip install --progress-bar on -e '.[dev]' | grep -v '^Requirement already satisfied' || true
	$(PY) -c "import pytest, moto, sklearn" && touch $(DEV)

# the automl extra (AutoGluon-tabular, LightGBM, CatBoost, XGBoost: about 600 MB), for specs with kind: automl
$(AUTOML): $(STAMP)
	@echo "==> the automl extra: AutoGluon-tabular 1.6.3 with LightGBM, CatBoost and XGBoost (a few minutes)"
	$(PY) -m pip install --progress-bar on -e '.[automl]' | grep -v '^Requirement already satisfied' || true
	$(PY) -c "import autogluon.tabular, lightgbm, catboost, xgboost" && touch $(AUTOML)

install: $(STAMP)

install-dev: $(DEV)

install-automl: $(AUTOML)

# a spec with an automl step needs the automl extra: installed on demand
NEEDS_AUTOML = $(if $(shell grep -qsE '^[[:space:]-]*kind:[[:space:]]*automl' $(CONFIG) && echo yes),$(AUTOML))

# the lint (ruff, mypy, the import-linter layers) is part of the tests
test: lint $(AUTOML)
	$(PY) -m pytest -q

lint: $(DEV)
	$(PY) -m ruff check pipelines steps tests bench
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

data: data/.stamp

data/.stamp: $(DEV) tests/tools/datasets.py
	$(PY) -m tests.tools.datasets --out data
	touch data/.stamp

pipeline-local: $(STAMP) data/.stamp $(NEEDS_AUTOML)
	$(PY) -m pipelines local run $(CONFIG) $(PARAMS) $(if $(UNTIL),--until $(UNTIL))

bench: $(DEV) $(AUTOML)
	$(PY) bench/run.py

validate: $(STAMP)
	$(PY) -m pipelines validate $(CONFIG)

# MLflow's UI over the local runs (make pipeline-local records every execution), on 127.0.0.1:5000
mlflow-ui: $(STAMP)
	$(PY) -m pipelines ui

pipeline-graph: $(STAMP)
	$(PY) -m pipelines graph $(CONFIG)

pipeline-definition: $(STAMP)
	$(PY) -m pipelines definition $(CONFIG)

pipeline-upsert: $(STAMP)
	$(PY) -m pipelines upsert $(CONFIG)

pipeline-run: $(STAMP)
	$(PY) -m pipelines run $(CONFIG) $(PARAMS) $(if $(NO_WAIT),--no-wait)

pipeline-retry: $(STAMP)
	@test -n "$(ARN)" || (echo "say which execution: make pipeline-retry ARN=arn:aws:sagemaker:...:pipeline/NAME/execution/ID"; exit 2)
	$(PY) -m pipelines retry $(ARN)

golden: $(DEV)
	$(PY) -m tests.tools.golden

image-build: $(STAMP)
	$(PY) -m pipelines image-build

image-push: $(STAMP)
	$(PY) -m pipelines image-push

clean:
	rm -rf build runs bench/out
