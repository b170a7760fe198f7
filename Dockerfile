# syntax=docker/dockerfile:1
# The GPU image: CUDA devel base, CPython 3.11 in /opt/venv, dependencies from requirements-gpu.lock.
#
#   docker build -t fincorp:gpu .
#   docker run --gpus all -e HF_TOKEN -v "$PWD":/work -v hf-cache:/hf-cache fincorp:gpu
#
# The repository is mounted at /work (code, .git, DVC cache and outputs stay on the host, and DVC needs
# .git); the image holds only the environment. Full instructions, memory and time budget: docs/GPU.md.
# Variant with vLLM (other torch/transformers; see requirements-gpu-vllm.in):
#   docker build --build-arg LOCK=requirements-gpu-vllm.lock \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04 -t fincorp:gpu-vllm .

# CUDA 13.0, as torch 2.13.0's PyPI wheel; "devel" for nvcc (DeepSpeed and Triton compile kernels at run
# time). Host driver >= 580. For a byte-identical base, append the digest: ...ubuntu22.04@sha256:<digest>.
ARG BASE_IMAGE=nvidia/cuda:13.0.2-cudnn-devel-ubuntu22.04
FROM ${BASE_IMAGE}

ARG LOCK=requirements-gpu.lock
ARG UV_VERSION=0.13.9
ARG PYTHON_VERSION=3.11.18

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# git: DVC runs on it; build-essential: the host compiler for JIT-built CUDA/Triton kernels;
# python3-pip: only to install uv, which then installs CPython 3.11 and everything else.
# Versions come from the pinned base image's Ubuntu release, hence no apt pins (.hadolint.yaml).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential ca-certificates git python3-pip \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m pip install --no-cache-dir "uv==${UV_VERSION}"

ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN uv python install "${PYTHON_VERSION}" \
    && uv venv --python "${PYTHON_VERSION}" /opt/venv

# The lock alone, in its own layer: editing the code never reinstalls the dependencies.
COPY ${LOCK} /tmp/requirements.lock
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python -r /tmp/requirements.lock

# A non-root user, fincorp (uid 1000; USER below is numeric so that Kubernetes' runAsNonRoot can
# check it). HOME and the HF cache are world-writable (sticky, like /tmp) so the container also
# runs as the host user (`--user "$(id -u):$(id -g)"`, docs/GPU.md) when the mounted repository is
# not owned by uid 1000.
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
# runs. No build isolation: the build backend is the lock's setuptools, nothing is downloaded.
WORKDIR /work
COPY --chown=fincorp:fincorp . /work
RUN uv pip install --python /opt/venv/bin/python --no-cache --no-build-isolation --no-deps -e /work

USER 1000:1000
VOLUME ["/work", "/hf-cache"]

# The article's methodology; any other command replaces this one, e.g. `dvc repro` or
# `dvc exp run -S profile=paper-scripts`.
CMD ["dvc", "exp", "run", "-S", "profile=paper"]
