"""The images' recipe (Dockerfile, .dockerignore) and the GPU locks, checked as text: no docker needed.

One Dockerfile, two environment stages (cpu-env, gpu-env) and one shared stage on top of the one
VARIANT picks (gpu by default). What must hold: both environments start from the same Debian bookworm
base by default (a CUDA base only as a build argument), each lock installed in its own layer before the
code is copied (a code edit never reinstalls torch) with no pip cache kept, a non-root user, no token
baked in, git usable on the mounted repository, the CA bundle (and the CPU build's wheelhouse) mounted
for the install steps and never copied, the GPU image's default command checking the GPU before DVC
starts; and requirements-gpu.lock at the same versions as requirements.lock wherever both pin a
package, torch's build aside. The vLLM variant differs where vLLM 0.12.0 forces it, and only there
(reasons below and in requirements-gpu-vllm.in). `make image-test` builds both images and runs them
for real (scripts/image_test.sh).
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


@pytest.fixture(scope="module")
def stages(steps) -> dict[str, list[tuple[str, str]]]:
    """{stage name: its instructions, FROM first}; the unnamed last stage is "final"."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, rest in steps:
        if word == "FROM":
            parts = rest.split()
            current = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else "final"
            assert current not in out, f"two stages named {current}"
            out[current] = []
        if current is not None:
            out[current].append((word, rest))
    return out


def resolve(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def index(steps, word: str, pattern: str) -> int:
    hits = [i for i, (w, rest) in enumerate(steps) if w == word and re.search(pattern, rest)]
    assert hits, f"no {word} matching {pattern!r}"
    return hits[0]


def test_gpu_is_the_default_and_the_shared_stage_comes_last(stages, args):
    assert list(stages)[-1] == "final"
    assert stages["final"][0] == ("FROM", "${VARIANT}-env")
    assert args["VARIANT"] == "gpu"  # `docker build .` gives the GPU image
    assert {"cpu-env", "gpu-env"} <= set(stages)


def test_both_environments_start_from_debian_bookworm_and_cuda_is_only_a_build_argument(stages, args):
    """`docker build .` needs no CUDA base: PyPI's torch wheel brings CUDA's libraries (nvidia-* wheels)."""
    cpu = resolve(stages["cpu-env"][0][1], args).split()[0]
    gpu = resolve(stages["gpu-env"][0][1], args).split()[0]
    assert gpu == cpu, f"the GPU stage starts from {gpu}, the CPU stage from {cpu}"
    name, _, tag = cpu.rpartition(":")
    # a Debian release by name: bookworm's python3 is 3.11, the Python of the locks
    assert name == "debian" and tag.startswith("bookworm"), cpu
    assert not any("nvidia/cuda" in value for value in args.values())
    # the CUDA base for nvcc (DeepSpeed's JIT ops) is documented as a build argument, at torch's CUDA
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"--build-arg GPU_BASE_IMAGE=nvidia/cuda:13\.0\.\d+-\w+-devel-ubuntu", text)


def test_the_gpu_stage_gets_python_3_11_on_either_base(stages):
    """Debian's python3 where it is 3.11; uv's CPython 3.11 on a base whose python3 is not (Ubuntu 22.04)."""
    runs = [rest for w, rest in stages["gpu-env"] if w == "RUN"]
    venv = next(r for r in runs if "/opt/venv" in r and "venv" in r)
    assert "sys.version_info[:2] != (3, 11)" in venv and "python3 -m venv /opt/venv" in venv
    assert 'uv --no-cache python install "${PYTHON_VERSION}"' in venv
    assert "assert sys.version_info[:2] == (3, 11)" in venv


def test_the_gpu_stage_installs_only_what_runs(stages):
    """git for DVC, a C compiler and Python's headers for Triton's launcher; no toolkit, no C++ on Debian."""
    apt = next(rest for w, rest in stages["gpu-env"] if w == "RUN" and "apt-get install" in rest)
    for package in ("ca-certificates", "gcc", "git", "libc6-dev", "python3-dev", "python3-venv"):
        assert re.search(rf"(\s|\(){re.escape(package)}(\s|\))", apt), package
    assert "build-essential" not in apt and "cuda" not in apt
    assert "extra=(g++ python3-pip)" in apt  # only where python3 is not 3.11: the CUDA base, for JIT ops
    assert "--no-install-recommends" in apt


@pytest.mark.parametrize("stage", ["cpu-env", "gpu-env"])
def test_apt_leaves_no_package_lists_or_downloads(stages, stage):
    """debian:bookworm-slim cleans apt's downloads by itself; the debootstrapped base of image-test does not."""
    apt = next(rest for w, rest in stages[stage] if w == "RUN" and "apt-get install" in rest)
    assert apt.endswith("&& apt-get clean && rm -rf /var/lib/apt/lists/*"), apt


@pytest.mark.parametrize("stage, lock", [("gpu-env", "requirements-gpu.lock"), ("cpu-env", "requirements.lock")])
def test_each_lock_is_installed_in_its_own_layer_before_the_code_is_copied(stages, args, stage, lock):
    env = stages[stage]
    copy_lock = index(env, "COPY", r"LOCK|requirements")
    src, dest = resolve(env[copy_lock][1], args).split()[-2:]
    assert src == lock  # the default build uses the main lock
    install = index(env, "RUN", r"install .*-r " + re.escape(dest))
    assert copy_lock < install
    # nothing but the lock is copied into an environment stage
    assert [rest for w, rest in env if w in ("COPY", "ADD")] == [env[copy_lock][1]]
    final = stages["final"]
    assert index(final, "COPY", r"(^|\s)\.\s") < index(final, "RUN", r"install .*--no-deps.* -e ")


def test_the_cpu_stage_installs_cpu_torch_first_pinned_by_the_lock(stages):
    run = stages["cpu-env"][index(stages["cpu-env"], "RUN", r"-r /tmp/requirements.lock")][1]
    assert run.index("-c /tmp/requirements.lock torch") < run.index("-r /tmp/requirements.lock")
    assert "torch.version.cuda is None" in run  # PyPI's CUDA build never slips in
    assert "--no-cache-dir" in run


def test_the_gpu_stage_installs_cuda_torch_first_then_the_lock_without_build_isolation(stages):
    """DeepSpeed is an sdist whose setup.py imports torch: torch and setuptools first (pinned by the lock),
    then the lock on them; no op compiled at build time; the result must be a CUDA build."""
    run = stages["gpu-env"][index(stages["gpu-env"], "RUN", r"-r /tmp/requirements.lock")][1]
    assert run.index("-c /tmp/requirements.lock torch setuptools") < run.index("-r /tmp/requirements.lock")
    assert "--no-build-isolation --use-pep517 -r /tmp/requirements.lock" in run and "DS_BUILD_OPS=0" in run
    assert "assert torch.version.cuda" in run  # PyPI's CUDA build, not a CPU one
    assert "pip check" in run


def test_no_package_cache_is_kept(steps):
    for word, rest in steps:
        if word != "RUN":
            continue
        assert "--mount=type=cache" not in rest, rest  # a cache mount would hide what the build downloads
        for install in re.findall(r"(?<!uv )\bpip install [^&;]*", rest):
            assert "--no-cache-dir" in install, install
        for install in re.findall(r"\buv (?:--no-cache )?(?:pip|python) install [^&;]*", rest):
            assert "--no-cache" in install, install


def test_the_build_backend_pin_matches_the_gpu_lock(args):
    """The editable install runs without build isolation, on the setuptools each environment holds."""
    assert args["SETUPTOOLS_VERSION"] == pins(ROOT / "requirements-gpu.lock")["setuptools"]


def test_ca_bundle_and_wheelhouse_are_mounted_for_one_step_never_copied(steps, stages):
    assert stages["wheelhouse"] == [("FROM", "scratch AS wheelhouse")]  # empty unless --build-context
    # every step that downloads packages mounts the CA bundle; only the CPU lock's also the wheelhouse
    downloads = [rest for w, rest in steps if w == "RUN" and re.search(r"pip install|uv .*python install", rest)
                 and "--no-deps -e /work" not in rest]
    assert len(downloads) == 3  # the CPU lock, the GPU stage's CPython (CUDA base), the GPU lock
    for rest in downloads:
        assert "--mount=type=secret,id=ca" in rest and "--cert /run/secrets/ca" in rest, rest
    wheelhouse = [rest for w, rest in steps if w == "RUN" and "from=wheelhouse" in rest]
    assert len(wheelhouse) == 1 and "--mount=type=bind,from=wheelhouse,target=/wheelhouse" in wheelhouse[0]
    assert wheelhouse[0] in [rest for w, rest in stages["cpu-env"] if w == "RUN"]
    for word, rest in steps:
        if word in ("COPY", "ADD"):
            assert not re.search(r"\.(crt|pem|whl)\b|wheelhouse|from=", rest), f"{word} {rest}"
        if word in ("ENV", "ARG"):
            assert not re.search(r"PIP_CERT|SSL_CERT|CA_BUNDLE|PIP_FIND_LINKS", rest), f"{word} {rest}"
    lines = {x.strip() for x in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    assert "wheelhouse" in lines  # a wheelhouse kept in the checkout never reaches `COPY . /work`


def test_runs_as_a_non_root_user(stages):
    final = stages["final"]
    users = [rest.split(":")[0] for word, rest in final if word == "USER"]
    assert users, "no USER: the container would run as root"
    assert users[-1] not in ("root", "0")
    assert re.search(r"useradd .*fincorp", " ".join(rest for w, rest in final if w == "RUN"))
    for stage in ("cpu-env", "gpu-env"):  # the shared stage's useradd and git config need root
        assert not any(w == "USER" for w, _ in stages[stage]), stage


def test_no_token_is_baked_in(steps):
    secret = re.compile(r"\b(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|HF_API_TOKEN)\b")
    for word, rest in steps:
        if word in ("ARG", "ENV", "LABEL"):
            assert not secret.search(rest), f"{word} {rest}: pass the token with docker run -e HF_TOKEN"
        assert not re.search(r"(HF_TOKEN|HUGGING_FACE_HUB_TOKEN)\s*=\s*\S", rest), f"{word} {rest}"


def test_git_trusts_the_mounted_repository_and_paths_are_set(stages):
    final = stages["final"]
    runs = " ".join(rest for w, rest in final if w == "RUN")
    assert "git config --system --add safe.directory /work" in runs
    envs = " ".join(rest for w, rest in final if w == "ENV")
    assert re.search(r"HF_HOME[= ]/hf-cache", envs)
    volumes = " ".join(rest for w, rest in final if w == "VOLUME")
    assert "/work" in volumes and "/hf-cache" in volumes
    assert [rest for w, rest in final if w == "WORKDIR"][-1] == "/work"


def test_default_command_runs_the_pipeline(steps, stages):
    """Each environment stage sets its CMD, which the shared stage inherits (it sets none). The GPU one
    runs `fincorp preflight` first and DVC only if it passed: without a GPU it stops with one line."""
    cmds = {name: [rest for w, rest in stage if w == "CMD"] for name, stage in stages.items()}
    assert cmds["cpu-env"] == ['["dvc", "repro"]']  # the committed reference run
    assert len(cmds["gpu-env"]) == 1
    assert re.fullmatch(r'\["sh", "-c", "fincorp preflight --profile paper && exec dvc exp run -S profile=paper"\]',
                        cmds["gpu-env"][0]), cmds["gpu-env"][0]
    assert cmds["final"] == []
    assert not any(w == "ENTRYPOINT" for w, _ in steps)  # an ENTRYPOINT would reset the inherited CMD


def test_the_gpu_image_is_not_offline(stages):
    """The CPU image runs offline; the GPU profiles download the model from the Hugging Face Hub."""
    assert "HF_HUB_OFFLINE=1" in " ".join(rest for w, rest in stages["cpu-env"] if w == "ENV")
    assert "HF_HUB_OFFLINE" not in " ".join(rest for w, rest in stages["gpu-env"] + stages["final"] if w == "ENV")


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
