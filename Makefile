# nvr: the two commands a newcomer needs are `make study` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PROFILE ?=
ACT := source $(VENV)/bin/activate &&
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONHASHSEED ?= 0

.PHONY: install study repro test test-fast smoke notebooks dvc bench clean-run

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh
	touch $@

## The main job: the whole study with `dvc repro` (offline default profile unless PROFILE=...).
study: install repro

repro:
ifneq ($(PROFILE),)
	cp $(PROFILE) params.yaml
	@echo "params.yaml now holds $(PROFILE) (git diff shows the change)"
endif
	$(ACT) dvc repro
	$(ACT) dvc metrics show

## Unit tests and the end-to-end test of the smoke profile.
test: install
	$(ACT) python -m pytest -q -ra

test-fast: install
	$(ACT) python -m pytest -q -m "not slow"

notebooks:
	$(ACT) python scripts/build_notebooks.py

## dvc.yaml is generated: stages, parameters and code dependencies (the import closure of each stage).
dvc:
	$(ACT) python scripts/build_dvc.py

## Every speed target in one table, all measured in one run (BENCH_ARGS=--quick: smaller sizes).
bench: install
	$(ACT) python benchmarks/bench_summary.py $(BENCH_ARGS)
