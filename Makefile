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

.PHONY: setup repro test test-fast reproduce benchmark ci-benchmark study preflight-tables lock-gpu gpu-image image-test image-vllm clean-venv

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

# Fresh-clone reproduction check: clone HEAD to a temp dir, `dvc repro` from nothing, compare every
# tracked file (git status) with the committed reference run (bit for bit), then exercise exp run and the queue.
reproduce: setup
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest tests/test_pipeline.py -v -s

# One study as DVC experiments -> reports/studies/$(STUDY)/ (docs/studies.md): seeds, reward, prior, data,
# tune or control.
#   make study STUDY=seeds ARGS="--n 5"
STUDY ?= seeds
ARGS ?=
study: setup
	PATH="$(BIN):$$PATH" $(BIN)/fincorp study $(STUDY) $(ARGS)

# Full-pipeline time, per-stage time and memory, no-op time, eval throughput, the GRPO step against its
# shape-aware floor and, alternated in the same run, against BENCH_BASELINE's step -> benchmarks/cpu.{json,md}
# (ade3b2a: the last commit before grpo.share_prompt_prefix). BENCH_BASELINE= skips the comparison.
BENCH_BASELINE ?= ade3b2a
benchmark: setup
	PATH="$(BIN):$$PATH" $(BIN)/python scripts/benchmark.py $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE))

# `fincorp preflight` for the GPU profiles on one A100 80GB and one H100 80GB (no GPU needed) ->
# docs/preflight/<profile>-<gpu>.md (and .json); the paper/A100 table also goes into docs/GPU.md, between
# its preflight markers.
PREFLIGHT_PROFILES := paper paper-scripts
PREFLIGHT_GPUS := A100-80GB H100-80GB
preflight-tables: setup
	for p in $(PREFLIGHT_PROFILES); do for g in $(PREFLIGHT_GPUS); do \
	  $(BIN)/fincorp preflight --profile $$p --gpu $$g --out docs/preflight/$$p-$$g.md > /dev/null || exit 1; \
	done; done
	$(BIN)/python -c 'from fincorp.preflight import splice; splice("docs/GPU.md", "docs/preflight/paper-A100-80GB.md")'

# GPU locks: resolve metadata only (downloads no wheels); needs uv (`pip install uv`).
# Each lock starts with its .in file's first comment block. Bump --exclude-newer with the pins.
UV ?= uv
UV_LOCK_FLAGS := -q --python-platform x86_64-unknown-linux-gnu --python-version 3.11 \
  --exclude-newer 2026-11-29T00:00:00Z --no-header

lock-gpu:
	for n in requirements-gpu requirements-gpu-vllm; do \
	  { sed '/^$$/q' $$n.in && $(UV) pip compile $(UV_LOCK_FLAGS) $$n.in; } > $$n.lock.tmp \
	    && mv $$n.lock.tmp $$n.lock || exit 1; \
	done

# The GPU image with Docker (docs/GPU.md); `make image-test` builds and checks the same with podman.
gpu-image:
	docker build -t fincorp:gpu .

# Both images built and run for real (what CI runs; root): podman builds the CPU and the GPU image from the
# Dockerfile; on fresh clones the CPU image reproduces the committed run and runs the fast tier, the GPU
# image is checked as far as a machine without a GPU can (its CUDA build, libraries and versions, the fast
# tier, the default command's one-line stop, the preflight plan). docs/container.md.
#   IMAGE_TEST_PIPELINE=0 make image-test   # `dvc repro split` instead of the whole CPU pipeline
#   IMAGE_TEST_VARIANTS=gpu make image-test # one image
image-test:
	scripts/image_test.sh

# The vLLM variant (requirements-gpu-vllm.lock), not in CI: built cold, checked like the GPU image plus TRL's
# vLLM colocate imports, then removed (about 12 GB). Add IMAGE_TEST_RECORD=benchmarks/container.md to record it.
image-vllm:
	IMAGE_TEST_VARIANTS=gpu-vllm IMAGE_TEST_COLD=1 IMAGE_TEST_RM=1 scripts/image_test.sh

# CI (.ci/run) on a fresh clone of HEAD, timed -> benchmarks/ci.md and benchmarks/container.md (run alone)
ci-benchmark:
	scripts/ci_benchmark.sh

clean-venv:
	rm -rf $(VENV)
