"""The GPU image's recipe (Dockerfile, .dockerignore) and its locks, checked as text: no docker needed.

What must hold: a base image pinned by tag, the lock installed in its own layer before the code is
copied (a code edit never reinstalls torch), a non-root user, no token baked in, git usable on the
mounted repository; and requirements-gpu.lock at the same versions as requirements.lock wherever
both pin a package, torch's build aside. The vLLM variant differs where vLLM 0.12.0 forces it, and
only there (reasons below and in requirements-gpu-vllm.in).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# requirements-gpu-vllm.lock vs requirements.lock: every difference, with why (see the .in's header)
VLLM_LOCK_DIFFERS = {
    "torch": "vLLM 0.12.0 pins torch 2.9.0",
    "transformers": "vLLM 0.12.0 requires transformers<5",
    "huggingface-hub": "transformers 4.57 requires huggingface-hub<1.0",
    "datasets": "datasets>=5.1 requires huggingface-hub>=1.31",
    "fsspec": "datasets 5.0.1 caps fsspec",
    "numpy": "vLLM 0.12.0 pins numba 0.61.2, which requires numpy<2.3",
}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments and directives dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def pins(path: Path) -> dict[str, str]:
    """{normalized name: version} of every `name==version` line of a requirements file."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            out[re.sub(r"[-_.]+", "-", name).lower()] = version.split(";", 1)[0].strip()
    return out


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def args(steps) -> dict[str, str]:
    """ARG defaults, for resolving ${NAME} in FROM and COPY."""
    out = {}
    for word, rest in steps:
        if word == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            out[name] = value.strip('"')
    return out


def resolve(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def index(steps, word: str, pattern: str) -> int:
    hits = [i for i, (w, rest) in enumerate(steps) if w == word and re.search(pattern, rest)]
    assert hits, f"no {word} matching {pattern!r}"
    return hits[0]


def test_base_image_is_pinned_by_an_explicit_tag(steps, args):
    froms = [resolve(rest, args) for word, rest in steps if word == "FROM"]
    assert froms
    for image in froms:
        image = image.split()[0]
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name and tag, f"{image}: no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), f"{image}: pin a full version tag"
    assert froms[0].startswith("nvidia/cuda:13.0.2-")  # torch 2.13.0's PyPI wheel is built for CUDA 13.0


def test_lock_is_installed_in_its_own_layer_before_the_code_is_copied(steps, args):
    copy_lock = index(steps, "COPY", r"LOCK|requirements-gpu")
    src, dest = resolve(steps[copy_lock][1], args).split()[-2:]
    assert src == "requirements-gpu.lock"  # the default build uses the main lock
    install = index(steps, "RUN", r"install .*-r " + re.escape(dest))
    copy_code = index(steps, "COPY", r"(^|\s)\.\s")
    assert copy_lock < install < copy_code
    editable = index(steps, "RUN", r"install .*--no-deps.* -e ")
    assert copy_code < editable
    # nothing but the lock is copied before it is installed
    assert not any(w in ("COPY", "ADD") for w, _ in steps[copy_lock + 1:install])


def test_runs_as_a_non_root_user(steps):
    users = [rest.split(":")[0] for word, rest in steps if word == "USER"]
    assert users, "no USER: the container would run as root"
    assert users[-1] not in ("root", "0")
    assert re.search(r"useradd .*fincorp", " ".join(rest for w, rest in steps if w == "RUN"))


def test_no_token_is_baked_in(steps):
    secret = re.compile(r"\b(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|HF_API_TOKEN)\b")
    for word, rest in steps:
        if word in ("ARG", "ENV", "LABEL"):
            assert not secret.search(rest), f"{word} {rest}: pass the token with docker run -e HF_TOKEN"
        assert not re.search(r"(HF_TOKEN|HUGGING_FACE_HUB_TOKEN)\s*=\s*\S", rest), f"{word} {rest}"


def test_git_trusts_the_mounted_repository_and_paths_are_set(steps):
    runs = " ".join(rest for w, rest in steps if w == "RUN")
    assert "git config --system --add safe.directory /work" in runs
    envs = " ".join(rest for w, rest in steps if w == "ENV")
    assert re.search(r"HF_HOME[= ]/hf-cache", envs)
    volumes = " ".join(rest for w, rest in steps if w == "VOLUME")
    assert "/work" in volumes and "/hf-cache" in volumes
    assert [rest for w, rest in steps if w == "WORKDIR"][-1] == "/work"


def test_default_command_runs_the_pipeline(steps):
    cmd = [rest for w, rest in steps if w == "CMD"][-1]
    assert re.search(r'"dvc",\s*"(exp",\s*"run|repro)', cmd)
    assert "profile=paper" in cmd


def test_dockerignore_keeps_the_image_small():
    lines = {x.strip() for x in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    for pattern in (".venv", "models", "checkpoints", "logs", "data/*.jsonl", ".dvc/cache"):
        assert pattern in lines, pattern


def test_the_official_parser_agrees():
    """The BuildKit parser (pip package `dockerfile`), where installed: same instructions, same order."""
    dockerfile = pytest.importorskip("dockerfile")
    parsed = [c.cmd.upper() for c in dockerfile.parse_file(str(ROOT / "Dockerfile"))]
    assert parsed == [w for w, _ in instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))]


# ---- the locks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("lock", ["requirements-gpu.lock", "requirements-gpu-vllm.lock"])
def test_gpu_lock_pins_trl_0_27(lock):
    p = pins(ROOT / lock)
    assert p["trl"].startswith("0.27."), p["trl"]
    for name in ("torch", "transformers", "peft", "accelerate", "datasets", "dvc", "deepspeed"):
        assert name in p, f"{lock} does not pin {name}"


def test_gpu_lock_matches_the_cpu_lock():
    cpu, gpu = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-gpu.lock")
    differ = {n: (cpu[n], gpu[n]) for n in cpu.keys() & gpu.keys() if cpu[n] != gpu[n]}
    assert differ == {}, f"requirements-gpu.lock differs from requirements.lock: {differ}"
    assert gpu["torch"] == cpu["torch"]  # same release; the GPU one resolves to PyPI's CUDA build
    assert "vllm" not in gpu  # no vLLM in TRL 0.27's range runs with transformers 5 (requirements-gpu.in)


def test_vllm_lock_differs_only_where_documented():
    cpu, gpu = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-gpu-vllm.lock")
    differ = {n for n in cpu.keys() & gpu.keys() if cpu[n] != gpu[n]}
    assert differ == set(VLLM_LOCK_DIFFERS)
    major_minor_patch = tuple(int(x) for x in gpu["vllm"].split(".")[:3])
    assert (0, 10, 2) <= major_minor_patch <= (0, 12, 0)  # TRL 0.27's supported vLLM range
    assert gpu["transformers"].startswith("4.")


@pytest.mark.parametrize("name", ["requirements-gpu", "requirements-gpu-vllm"])
def test_lock_was_compiled_from_its_in_file(name):
    """Each top-level pin of the .in is in the lock, and the lock starts with the .in's header."""
    source = (ROOT / f"{name}.in").read_text(encoding="utf-8")
    lock_text = (ROOT / f"{name}.lock").read_text(encoding="utf-8")
    header = source.split("\n\n", 1)[0]
    assert lock_text.startswith(header)
    lock = pins(ROOT / f"{name}.lock")
    for pkg, version in pins(ROOT / f"{name}.in").items():
        assert lock.get(pkg) == version, f"{name}.lock has {pkg}=={lock.get(pkg)}, {name}.in pins {version}"
