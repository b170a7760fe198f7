# The two commands a new user runs (README "Quickstart"):
#   make repro   set up .venv and run the whole pipeline on the embedded default (CPU, offline)
#   make test    set up .venv and run the test suite (what CI runs)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# torch is installed first and pinned by requirements.lock (-c), so no resolver swaps in another build.
# On Linux without a local CPU wheel, pass PyTorch's CPU index here to avoid a multi-GB CUDA download.
TORCH_INDEX ?=
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup repro test test-fast clean-venv

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_INDEX) -c requirements.lock torch
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test]'
	touch $@

setup: $(VENV)/.installed

repro: setup
	PATH="$(BIN):$$PATH" $(BIN)/dvc repro

test: setup
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest

test-fast: setup
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow"

clean-venv:
	rm -rf $(VENV)
