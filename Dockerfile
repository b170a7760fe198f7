# syntax=docker/dockerfile:1
# Two images from one recipe; they differ only in their environment stage (base image, lock, where
# Python and torch come from, default command). Everything after `FROM ${VARIANT}-env` is shared.
#
# GPU (the default): Debian bookworm, its python3 (3.11), requirements-gpu.lock with PyPI's CUDA torch
# (CUDA's libraries come as nvidia-* wheels); checks the GPU with `fincorp preflight`, then runs the
# article's methodology. docs/GPU.md, docs/container.md.
#   docker build -t fincorp:gpu .
#   docker run --gpus all -e HF_TOKEN -v "$PWD":/work -v hf-cache:/hf-cache fincorp:gpu
#
# CPU: the same base, requirements.lock with torch's CPU build; runs `dvc repro`, the committed
# reference run. docs/container.md (torch's source, CA bundle, wheelhouse, offline rebuild).
#   docker build --build-arg VARIANT=cpu --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index> -t fincorp:cpu .
#   docker run --rm -v "$PWD":/work fincorp:cpu
#
# The repository is mounted at /work (code, .git, DVC cache and outputs stay on the host, and DVC needs
# .git); the image holds only the environment.
# GPU variant with vLLM (other torch/transformers, CUDA 12.8; see requirements-gpu-vllm.in):
#   docker build --build-arg LOCK=requirements-gpu-vllm.lock -t fincorp:gpu-vllm .

ARG VARIANT=gpu
# Debian 12, whose python3 is 3.11 (the host's `make setup` Python), for both environments. `make image-test`
# passes a base it bootstraps itself (debootstrap), the same release. For nvcc in the GPU image (DeepSpeed's
# JIT ops), a CUDA 13.0 devel base, as torch 2.13.0's PyPI wheel (host driver >= 580; untested here):
#   --build-arg GPU_BASE_IMAGE=nvidia/cuda:13.0.2-cudnn-devel-ubuntu22.04
ARG GPU_BASE_IMAGE=debian:bookworm-slim
ARG CPU_BASE_IMAGE=debian:bookworm-slim
ARG UV_VERSION=0.13.9

# The optional wheelhouse: a folder of wheels, given with `--build-context wheelhouse=DIR` and mounted
# read-only while the CPU lock installs, never copied into a layer. Without one, this empty stage.
FROM scratch AS wheelhouse

# ---- CPU environment ------------------------------------------------------------------------------
FROM ${CPU_BASE_IMAGE} AS cpu-env

ARG UV_VERSION
# Where pip finds torch's CPU build when the wheelhouse has none (PyPI's torch for Linux is the multi-GB
# CUDA build): PyTorch's CPU wheel index, passed by the builder. OFFLINE=1: the wheelhouse alone.
ARG TORCH_INDEX_URL=""
ARG OFFLINE=0
# The build backend for the editable install below; requirements-gpu.lock pins the same.
ARG SETUPTOOLS_VERSION=84.2.1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Versions come from the Debian release (bookworm), hence no apt pins (.hadolint.yaml).
# apt-get clean: debian:bookworm-slim deletes the downloaded packages by itself (docker-clean), a
# debootstrapped base (make image-test) keeps them in /var/cache/apt.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates git python3 python3-venv \
    && apt-get clean && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1
RUN python3 -m venv /opt/venv

# The lock alone, in its own layer: editing the code never reinstalls the dependencies. torch first
# and pinned by the lock (-c), as `make setup` does, so no resolver swaps in another build.
# The CA bundle (secret `ca`: for builders behind a TLS-intercepting proxy) and the wheelhouse are
# mounted for this step only.
COPY requirements.lock /tmp/requirements.lock
RUN --mount=type=secret,id=ca \
    --mount=type=bind,from=wheelhouse,target=/wheelhouse \
    set -- --find-links /wheelhouse; \
    if [ -s /run/secrets/ca ]; then set -- "$@" --cert /run/secrets/ca; fi; \
    if [ "${OFFLINE}" = 1 ]; then set -- "$@" --no-index; fi; \
    if [ -n "${TORCH_INDEX_URL}" ]; then set -- "$@" --extra-index-url "${TORCH_INDEX_URL}"; \
    elif ! ls /wheelhouse/torch-*.whl >/dev/null 2>&1; then \
        echo "No CPU torch: pass --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index>" \
             "or --build-context wheelhouse=<folder with the torch wheel> (docs/container.md)" >&2; \
        exit 1; \
    fi; \
    pip install --no-cache-dir "$@" -c /tmp/requirements.lock torch \
    && pip install --no-cache-dir "$@" -r /tmp/requirements.lock \
        "setuptools==${SETUPTOOLS_VERSION}" "uv==${UV_VERSION}" \
    && python -c "import torch; assert torch.version.cuda is None, torch.__version__"

CMD ["dvc", "repro"]

# ---- GPU environment ------------------------------------------------------------------------------
# By default the CPU image's Debian bookworm: its python3 is 3.11, and PyPI's torch wheel brings CUDA's
# runtime libraries as nvidia-* wheels (cuBLAS, cuDNN, NCCL, ...), so the base needs no CUDA; the host's
# driver (libcuda) comes in at run time with the NVIDIA Container Toolkit. With a CUDA "devel" base
# (GPU_BASE_IMAGE, for nvcc: DeepSpeed's JIT-compiled ops), whose Ubuntu 22.04 python3 is 3.10, uv
# installs CPython 3.11 instead.
FROM ${GPU_BASE_IMAGE} AS gpu-env

ARG LOCK=requirements-gpu.lock
ARG UV_VERSION
ARG PYTHON_VERSION=3.11.18

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# git: DVC runs on it; gcc, libc6-dev and Python's headers: Triton compiles a small C launcher for its
# kernels at run time. Where the release's python3 is not 3.11 (the CUDA base): g++ for DeepSpeed's JIT
# ops, and pip to install uv. Versions come from the base's release, hence no apt pins (.hadolint.yaml).
RUN apt-get update \
    && py=$(apt-cache policy python3 | sed -n 's/^ *Candidate: \([0-9]*\.[0-9]*\).*/\1/p') \
    && if [ "$py" = 3.11 ]; then extra=(python3-dev python3-venv); else extra=(g++ python3-pip); fi \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates gcc git libc6-dev "${extra[@]}" \
    && apt-get clean && rm -rf /var/lib/apt/lists/*

# Not offline, unlike the CPU stage: the GPU profiles download the model from the Hugging Face Hub.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# /opt/venv on Python 3.11: the release's python3 where it is 3.11 (Debian bookworm), else CPython from
# uv (python-build-standalone, downloaded; it ships its own headers). The CA bundle as in the lock step.
# (DL3013 reads pip's options in "$@" as an unpinned package.)
# hadolint ignore=DL3013
RUN --mount=type=secret,id=ca \
    if python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
        python3 -m venv /opt/venv; \
    else \
        set --; if [ -s /run/secrets/ca ]; then set -- --cert /run/secrets/ca; export SSL_CERT_FILE=/run/secrets/ca; fi; \
        export UV_PYTHON_INSTALL_DIR=/opt/python \
        && python3 -m pip install --no-cache-dir "$@" "uv==${UV_VERSION}" \
        && uv --no-cache python install "${PYTHON_VERSION}" \
        && "$(uv --no-cache python find "${PYTHON_VERSION}")" -m venv /opt/venv; \
    fi \
    && python -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'

# The lock alone, in its own layer: editing the code never reinstalls the dependencies. torch and the
# build backend first, pinned by the lock (-c): PyPI's torch for Linux is the CUDA build (13.0 for
# torch 2.13.0) and pulls the nvidia-* wheels. Then the lock without build isolation, because DeepSpeed
# is an sdist whose setup.py imports torch (to record its CUDA version), and sdists build as wheels
# (PEP 517) with the lock's setuptools; DS_BUILD_OPS=0: no op is compiled now, DeepSpeed JIT-compiles
# them with nvcc on first use (only a CUDA devel base has nvcc).
# The CA bundle (secret `ca`, as in the CPU stage) is mounted for this step only; no pip cache is kept.
COPY ${LOCK} /tmp/requirements.lock
RUN --mount=type=secret,id=ca \
    set --; if [ -s /run/secrets/ca ]; then set -- --cert /run/secrets/ca; fi; \
    pip install --no-cache-dir "$@" -c /tmp/requirements.lock torch setuptools \
    && DS_BUILD_OPS=0 pip install --no-cache-dir "$@" --no-build-isolation --use-pep517 \
        -r /tmp/requirements.lock "uv==${UV_VERSION}" \
    && pip check \
    && python -c "import torch; assert torch.version.cuda, torch.__version__; print('torch', torch.__version__)"

# Preflight first: without a CUDA GPU (or with one too small for the profile) it stops with one line
# before DVC starts anything; then the article's methodology. Any other command replaces both, e.g.
# `dvc exp run -S profile=paper-scripts`.
CMD ["sh", "-c", "fincorp preflight --profile paper && exec dvc exp run -S profile=paper"]

# ---- Shared: user, git, the code ------------------------------------------------------------------
# The environment stage chosen by VARIANT (cpu or gpu); its CMD is the image's default command.
# hadolint ignore=DL3006
FROM ${VARIANT}-env

# A non-root user, fincorp (uid 1000; USER below is numeric so that Kubernetes' runAsNonRoot can
# check it). HOME and the HF cache are world-writable (sticky, like /tmp) so the container also
# runs as the host user (`--user "$(id -u):$(id -g)"`) when the mounted repository is not owned
# by uid 1000.
# System git config: the mounted repository belongs to another uid (safe.directory), and `dvc exp run`
# makes hidden git commits, which need an identity (the repository's own config overrides this one).
RUN useradd --create-home --uid 1000 --shell /bin/bash fincorp \
    && mkdir -p /hf-cache /work \
    && chown fincorp:fincorp /hf-cache /work \
    && chmod 1777 /hf-cache /home/fincorp \
    && git config --system --add safe.directory /work \
    && git config --system user.name "fincorp container" \
    && git config --system user.email "fincorp@localhost"

# HF_TOKEN is never baked in: pass it at run time (`docker run -e HF_TOKEN ...`).
# (DL3064 reads the TOKEN in TOKENIZERS_PARALLELISM as a secret: it is not one.)
# hadolint ignore=DL3064
ENV HOME=/home/fincorp \
    HF_HOME=/hf-cache \
    DVC_NO_ANALYTICS=1 \
    TOKENIZERS_PARALLELISM=false \
    PYTHONUNBUFFERED=1

# The code: installed editable (a .pth naming /work/src), so the repository mounted over /work is what
# runs. No build isolation: the build backend is setuptools from the environment stage, nothing is
# downloaded.
WORKDIR /work
COPY --chown=fincorp:fincorp . /work
RUN uv pip install --python /opt/venv/bin/python --no-cache --no-build-isolation --no-deps -e /work

USER 1000:1000
VOLUME ["/work", "/hf-cache"]
