#!/usr/bin/env bash
# `make image-test` (run by CI): build the CPU and the GPU image from the Dockerfile with podman and check
# both on this machine, which has no GPU. docs/container.md.
#
#   make image-test                          # what CI runs (root; the CPU pipeline dominates)
#   IMAGE_TEST_PIPELINE=0 make image-test    # everything but the whole pipeline: `dvc repro split` instead
#   make image-vllm                          # the vLLM variant alone (IMAGE_TEST_VARIANTS=gpu-vllm), not in CI
#
# 1. Installs podman, runc and debootstrap when missing (apt-get).
# 2. Bootstraps a Debian bookworm minbase image once, kept in podman's own image store ($BASE_IMAGE);
#    skipped when it exists (`podman rmi` it to rebuild). Both images start from it.
# 3. Builds each image from this checkout, timed, twice: the second build must come from cached
#    layers (seconds, and the same image when the checkout is clean).
# CPU image (requirements.lock, torch's CPU build):
# 4. A fresh clone of HEAD owned by uid 1000, mounted at /work: the image's default command
#    (`dvc repro`) as the image's user, then the result must equal the committed reference run
#    (`python -m fincorp.reproduce check`: `git status --porcelain` empty, or, on another CPU, only the
#    base's weights and what follows from them differ) and `dvc status` be clean; then the fast test tier
#    inside the container.
# 5. A fresh clone owned by the host user, run as the host user (`--user "$(id -u):$(id -g)"`):
#    `dvc exp run split` (hidden git commits with the image's git identity), same checks.
# GPU image (requirements-gpu.lock, PyPI's CUDA torch), everything that can be checked without a GPU:
# 6. On a fresh clone owned by uid 1000: torch is the lock's CUDA build, cuBLAS, cuDNN and NCCL load
#    from the nvidia-* wheels, trl/transformers/peft/accelerate/deepspeed are the lock's versions, gcc
#    and Python.h are there for Triton; the fast test tier (the CUDA build of torch runs on CPU); the
#    image's default command stops at once with one line, "... needs a CUDA GPU ...", and a non-zero
#    exit; `fincorp preflight --profile paper --gpu A100-80GB` prints its plan.
# 7. On a fresh clone owned by the host user, as the host user: the default command and the preflight
#    plan again, and `dvc exp run split` with the same checks as 5.
# 8. Its size, and where the bytes go: the ten largest installed packages.
# The vLLM variant (gpu-vllm, requirements-gpu-vllm.lock) gets 6-8 and TRL's colocate imports.
# Containers run with --network none: the CPU pipeline, the tests and the checks are offline.
#
# Environment (defaults in brackets):
#   IMAGE_TEST_VARIANTS  [cpu gpu]  the images to build and check, in this order: cpu, gpu, gpu-vllm
#   IMAGE_TEST_PIPELINE  [1]  0: `dvc repro split` (seconds) instead of the whole CPU pipeline (~11 min)
#   IMAGE_TEST_PYTEST    [-m "not slow"]  pytest arguments for the in-container test runs
#   IMAGE_TEST_COLD      [0]  1: remove the images and their cached layers first (`podman image prune`:
#                             every dangling image; the Debian base stays), to time cold builds
#   IMAGE_TEST_RM        [0]  1: remove the images at the end (and prune), to free the disk
#   WHEELHOUSE           [$PIP_FIND_LINKS]  folder of wheels mounted into the CPU build; must hold the CPU
#                             torch wheel unless TORCH_INDEX_URL is set
#   TORCH_INDEX_URL      []   PyTorch's CPU wheel index, where there is no wheelhouse
#   CA_BUNDLE            [/etc/ssl/certs/ca-certificates.crt]  the host's CA bundle, a build secret
#   CONTAINERS_CONF      [written to $IMAGE_TEST_CACHE]  podman's settings (see below)
#   IMAGE_TEST_CACHE     [~/.cache/fincorp-image-test]
#   IMAGE, GPU_IMAGE, VLLM_IMAGE  [localhost/fincorp:cpu, localhost/fincorp:gpu, localhost/fincorp:gpu-vllm]
#   BASE_IMAGE           [localhost/fincorp-base:bookworm]
#   IMAGE_TEST_RECORD    []   a path: each checked image's measurements are also written there as markdown,
#                             in its own section (the other images' sections stay); benchmarks/container.md
#                             is that file, committed
#   IMAGE_TEST_KEEP_CLONE []  a path: when every check passed, the uid-1000 clone (reproduced in the
#                             CPU container) is handed to the host user and moved there instead of deleted.
#                             .ci/run passes it to `make test` (FINCORP_REPRODUCED_CLONE), whose pipeline
#                             tests then check that reproduction instead of running the pipeline again.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VARIANTS=${IMAGE_TEST_VARIANTS:-cpu gpu}
BASE_IMAGE=${BASE_IMAGE:-localhost/fincorp-base:bookworm}
PIPELINE=${IMAGE_TEST_PIPELINE:-1}
PYTEST_ARGS=${IMAGE_TEST_PYTEST:-'-m "not slow"'}
COLD=${IMAGE_TEST_COLD:-0}
REMOVE=${IMAGE_TEST_RM:-0}
# This project's machines keep the CPU torch wheel in pip's find-links folder.
WHEELHOUSE=${WHEELHOUSE-${PIP_FIND_LINKS:-}}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
CACHE=${IMAGE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fincorp-image-test}
KEEP=${IMAGE_TEST_KEEP_CLONE:-}
RECORD=${IMAGE_TEST_RECORD:-}
declare -A IMAGES=([cpu]=${IMAGE:-localhost/fincorp:cpu} [gpu]=${GPU_IMAGE:-localhost/fincorp:gpu}
                   [gpu-vllm]=${VLLM_IMAGE:-localhost/fincorp:gpu-vllm})
declare -A LOCKS=([gpu]=requirements-gpu.lock [gpu-vllm]=requirements-gpu-vllm.lock)

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nimage-test FAILED: %s\n' "$*" >&2; exit 1; }
selected() { [[ " $VARIANTS " == *" $1 "* ]]; }

[ "$(id -u)" = 0 ] || die "run as root (CI does): rootful podman, debootstrap, and a clone chowned to uid 1000"
for v in $VARIANTS; do [ -n "${IMAGES[$v]:-}" ] || die "IMAGE_TEST_VARIANTS: unknown image '$v' (cpu, gpu, gpu-vllm)"; done
[ -z "$KEEP" ] || selected cpu || die "IMAGE_TEST_KEEP_CLONE needs the cpu image (IMAGE_TEST_VARIANTS)"

# ---- 1. tools ---------------------------------------------------------------------------------------
missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt-get)"
    command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} yourself"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
fi

# podman's settings for this script only (the user's own containers.conf is left alone): runc and
# cgroupfs (crun fails on these machines' cgroup layout) and no default ulimits (the sandbox refuses
# setrlimit).
if [ -z "${CONTAINERS_CONF:-}" ]; then
    mkdir -p "$CACHE"
    export CONTAINERS_CONF="$CACHE/containers.conf"
    cat > "$CONTAINERS_CONF" <<'EOF'
# written by fincorp's scripts/image_test.sh
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
fi
echo "podman $(podman --version | awk '{print $3}'), settings: $CONTAINERS_CONF; images: $VARIANTS"

TMP=$(mktemp -d /tmp/fincorp-image-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# ---- 2. base image ----------------------------------------------------------------------------------
base_s="present"
if podman image exists "$BASE_IMAGE"; then
    echo "base image $BASE_IMAGE: present"
else
    start=$SECONDS
    say "bootstrapping $BASE_IMAGE (debootstrap --variant=minbase bookworm, about a minute)"
    debootstrap --variant=minbase bookworm "$TMP/rootfs" > "$TMP/debootstrap.log" 2>&1 \
        || { tail -20 "$TMP/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
    rm -rf "$TMP"/rootfs/var/cache/apt/* "$TMP"/rootfs/var/lib/apt/lists/*
    tar -C "$TMP/rootfs" -c . | podman import -q - "$BASE_IMAGE" >/dev/null || die "podman import failed"
    rm -rf "$TMP/rootfs"
    base_s="bootstrapped in $((SECONDS - start)) s"
fi

# ---- 3. builds --------------------------------------------------------------------------------------
if [ -n "$(git -C "$ROOT" status --porcelain)" ]; then
    echo "note: building from a checkout with uncommitted changes; the runs below use its HEAD"
fi
if [ "$COLD" = 1 ]; then
    # Cold: drop the images and every cached layer (dangling once the images are gone), keep the Debian
    # base. Not --no-cache: that leaves the old layers in the cache, and the second build may pick those.
    say "removing the images and their cached layers (IMAGE_TEST_COLD=1)"
    for v in $VARIANTS; do podman rmi -f "${IMAGES[$v]}" >/dev/null 2>&1 || true; done
    podman image prune -f >/dev/null
fi

declare -A BUILD_S CACHED_S SIZE_MB
build() {  # build VARIANT: two timed builds, the second from cached layers
    local v=$1 image=${IMAGES[$1]} start id
    local args=(--format docker --network host -t "$image")
    [ -n "$CA_BUNDLE" ] && [ -f "$CA_BUNDLE" ] && args+=(--secret "id=ca,src=$CA_BUNDLE")
    if [ "$v" = cpu ]; then
        args+=(--build-arg VARIANT=cpu --build-arg CPU_BASE_IMAGE="$BASE_IMAGE")
        if [ -n "$WHEELHOUSE" ]; then
            [ -d "$WHEELHOUSE" ] || die "WHEELHOUSE=$WHEELHOUSE is not a folder"
            args+=(--build-context "wheelhouse=$WHEELHOUSE")
        fi
        [ -n "$TORCH_INDEX_URL" ] && args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
    else
        # What `docker build .` builds: VARIANT=gpu and a Debian bookworm base are the defaults. VARIANT is
        # passed all the same: podman 4.3 picks the stages to build from --build-arg values only, skips
        # gpu-env without it, then looks for an image named gpu-env in registries.
        args+=(--build-arg VARIANT=gpu --build-arg GPU_BASE_IMAGE="$BASE_IMAGE" --build-arg "LOCK=${LOCKS[$v]}")
    fi
    say "building $image"
    start=$SECONDS
    podman build "${args[@]}" "$ROOT" > "$TMP/build-$v.log" 2>&1 \
        || { tail -40 "$TMP/build-$v.log" >&2; die "podman build of $image failed (log above)"; }
    BUILD_S[$v]=$((SECONDS - start))
    id=$(podman image inspect --format '{{.Id}}' "$image")
    say "building $image again (cached layers)"
    start=$SECONDS
    podman build "${args[@]}" "$ROOT" > "$TMP/build-$v-cached.log" 2>&1 \
        || { tail -40 "$TMP/build-$v-cached.log" >&2; die "second podman build of $image failed (log above)"; }
    CACHED_S[$v]=$((SECONDS - start))
    if [ "$(podman image inspect --format '{{.Id}}' "$image")" != "$id" ] \
            && [ -z "$(git -C "$ROOT" status --porcelain)" ]; then
        die "the second build of a clean checkout gave another $image: some layer is not cached (see its history)"
    fi
    SIZE_MB[$v]=$(( $(podman image inspect --format '{{.Size}}' "$image") / 1000000 ))
    echo "$image: ${BUILD_S[$v]} s, cached ${CACHED_S[$v]} s, ${SIZE_MB[$v]} MB"
}
for v in $VARIANTS; do build "$v"; done

run() { local clone=$1; shift; podman run --rm --network none -v "$clone:/work" "$@"; }
# The in-container checks after a run: the committed run reproduced, DVC clean. ($@: dvc targets)
# fincorp.reproduce: every tracked file equals the committed run, or, on a CPU whose floating point is not
# the reference machine's, only the base's weights and what is computed from them differ (code, params and
# data as committed); `make test` then checks that reproduction against a second one on this machine.
# shellcheck disable=SC2016
check='set -e
if ! python -m fincorp.reproduce check .; then echo "differs from the committed run:"; git status --porcelain; git diff --stat; exit 1; fi
dvc status "$@"; dvc status -q "$@" || { echo "dvc status: not up to date"; exit 1; }'
pytest_args=()
eval "pytest_args=($PYTEST_ARGS)"  # word splitting with quotes: -m "not slow"
declare -A PIPELINE_S TESTS_S CHECK_S

# ---- 4 and 5. the CPU image on fresh clones ---------------------------------------------------------
if selected cpu; then
    image=${IMAGES[cpu]}
    git clone -q "$ROOT" "$TMP/uid1000"
    chown -R 1000:1000 "$TMP/uid1000"
    start=$SECONDS
    if [ "$PIPELINE" = 1 ]; then
        say "cpu, uid 1000: the image's default command (dvc repro, the whole pipeline)"
        run "$TMP/uid1000" "$image" || die "dvc repro failed in the container (uid 1000)"
        target=()
    else
        say "cpu, uid 1000: dvc repro split (IMAGE_TEST_PIPELINE=0)"
        run "$TMP/uid1000" "$image" dvc repro split || die "dvc repro split failed in the container (uid 1000)"
        target=(split)
    fi
    PIPELINE_S[cpu]=$((SECONDS - start))
    run "$TMP/uid1000" "$image" sh -c "$check" check "${target[@]}" \
        || die "uid 1000: the run in the container does not equal the committed run (above)"

    say "cpu, uid 1000: python -m pytest $PYTEST_ARGS"
    start=$SECONDS
    run "$TMP/uid1000" "$image" python -m pytest -q -p no:cacheprovider "${pytest_args[@]}" \
        || die "tests failed in the CPU container"
    TESTS_S[cpu]="$((SECONDS - start)) s"

    say "cpu, host user $(id -u):$(id -g): dvc exp run split"
    git clone -q "$ROOT" "$TMP/host-user"
    run "$TMP/host-user" --user "$(id -u):$(id -g)" "$image" dvc exp run split \
        || die "dvc exp run split failed in the container (host user)"
    run "$TMP/host-user" --user "$(id -u):$(id -g)" "$image" sh -c "$check" check split \
        || die "host user: the run in the container does not equal the committed run (above)"
fi

# ---- 6 to 8. the GPU images, without a GPU ----------------------------------------------------------
# What the lock promises, inside the image ($1: the lock, read from the mounted clone).
# shellcheck disable=SC2016
gpu_env_check='
import ctypes, glob, importlib.metadata as md, os, re, shutil, sys, sysconfig
pins = {}
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if "==" in line and not line.startswith("-"):
        name, version = line.split("==", 1)
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version.split(";", 1)[0].strip()
# CUDA libraries from the nvidia-* wheels, loaded before torch does (a missing or broken one fails here)
site = sysconfig.get_paths()["purelib"]
for lib in ("libcudart.so", "libcublasLt.so", "libcublas.so", "libcudnn.so", "libnccl.so"):
    found = sorted(glob.glob(f"{site}/nvidia/*/lib/{lib}.*"))
    assert found, f"{lib}: none under {site}/nvidia/*/lib"
    ctypes.CDLL(found[0], mode=ctypes.RTLD_GLOBAL)
    print("loaded", found[0].removeprefix(site + "/"))
import torch
runtime = next(v for k, v in pins.items() if re.fullmatch(r"nvidia-cuda-runtime(-cu\d+)?", k))
cuda = ".".join(runtime.split(".")[:2])  # the CUDA release the lock brings
assert torch.version.cuda == cuda, f"torch.version.cuda {torch.version.cuda}, the lock brings CUDA {cuda}"
assert torch.__version__.split("+")[0] == pins["torch"], (torch.__version__, pins["torch"])
assert not torch.cuda.is_available(), "a GPU is visible: these checks are for a machine without one"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda} (cuDNN {torch.backends.cudnn.version()}); no GPU here")
names = ["trl", "transformers", "peft", "accelerate", "deepspeed"] + (["vllm"] if "vllm" in pins else [])
for name in names:
    assert md.version(name) == pins[name], f"{name} {md.version(name)}, the lock pins {pins[name]}"
assert pins["trl"].startswith("0.27."), pins["trl"]
print(", ".join(f"{n} {pins[n]}" for n in names), "as locked")
include = sysconfig.get_paths()["include"]
assert shutil.which("gcc") and os.path.exists(f"{include}/Python.h"), "Triton needs gcc and Python.h"
print("gcc and", f"{include}/Python.h", "for Triton")
'
# The colocate path of TRL 0.27 (use_vllm, vllm_mode="colocate"): grpo_trainer imports vLLM's LLM and
# SamplingParams at import time when is_vllm_available(), and builds vllm.LLM in the trainer.
vllm_check='
from trl.import_utils import is_vllm_available
assert is_vllm_available()
import vllm
from vllm import LLM, SamplingParams
from vllm.sampling_params import StructuredOutputsParams
from trl import GRPOTrainer
import trl.trainer.grpo_trainer as g
assert g.LLM is LLM and g.SamplingParams is SamplingParams
print(f"vllm {vllm.__version__}: TRL GRPOTrainer colocate imports OK")
'
# Where the bytes go: installed size per distribution (the files its RECORD lists).
sizes_py='
import importlib.metadata as md, os, subprocess
rows = []
for d in md.distributions():
    paths = {os.path.realpath(d.locate_file(f)) for f in d.files or []}
    rows.append((sum(os.path.getsize(p) for p in paths if os.path.isfile(p)), d.metadata["Name"], d.version))
rows.sort(reverse=True)
total = sum(r[0] for r in rows)
du = subprocess.run(["du", "-s", "--block-size=1000000", "/usr", "/opt/venv"],
                    capture_output=True, text=True, check=True).stdout
print(f"site-packages {total / 1e6:.0f} MB in {len(rows)} distributions;",
      ", ".join(f"{path.strip()} {mb} MB" for mb, path in (line.split("\t") for line in du.splitlines())))
for size, name, version in rows[:10]:
    print(f"{size / 1e6:.0f} MB {name} {version}")
'
declare -A SITE_LINE TOP10 VLLM_LINE
no_gpu_checks() {  # no_gpu_checks VARIANT CLONE [podman run options]: default command and preflight plan
    local v=$1 clone=$2 image=${IMAGES[$1]} out rc
    shift 2
    say "$v, ${*:-uid 1000}: the default command without a GPU stops at once, with one line"
    set +e
    out=$(run "$clone" "$@" "$image" 2>&1); rc=$?
    set -e
    printf '%s\n' "$out"
    [ "$rc" != 0 ] || die "$image: the default command exited 0 without a GPU"
    [[ "$out" != *Traceback* ]] || die "$image: the default command printed a traceback"
    [[ "$out" == *"needs a CUDA GPU"* ]] || die "$image: the default command did not say it needs a CUDA GPU"
    [ "$(printf '%s\n' "$out" | grep -c .)" = 1 ] || die "$image: the default command printed more than one line"

    say "$v, ${*:-uid 1000}: fincorp preflight --profile paper --gpu A100-80GB"
    out=$(run "$clone" "$@" "$image" fincorp preflight --profile paper --gpu A100-80GB 2>&1) \
        || { printf '%s\n' "$out"; die "$image: preflight for an A100-80GB failed"; }
    printf '%s\n' "$out"
    [[ "$out" == *A100* && "$out" == *grpo* ]] || die "$image: the preflight plan names no A100 or no grpo"
}
gpu_checks() {  # gpu_checks VARIANT
    local v=$1 image=${IMAGES[$1]} lock=${LOCKS[$1]} out start checks_s
    local clone=$TMP/$v-uid1000 host=$TMP/$v-host-user as_host=(--user "$(id -u):$(id -g)")
    git clone -q "$ROOT" "$clone"
    chown -R 1000:1000 "$clone"
    git clone -q "$ROOT" "$host"

    start=$SECONDS
    say "$v, uid 1000: torch's CUDA build, the CUDA libraries, the locked versions"
    run "$clone" "$image" python -c "$gpu_env_check" "/work/$lock" || die "$image: the environment is not the lock's"
    if [ "$v" = gpu-vllm ]; then
        say "$v: TRL's vLLM colocate imports"
        VLLM_LINE[$v]=$(run "$clone" "$image" python -c "$vllm_check" 2>&1 | tail -1) \
            || die "$image: TRL's colocate imports failed: ${VLLM_LINE[$v]}"
        echo "${VLLM_LINE[$v]}"
    fi
    checks_s=$((SECONDS - start))

    if grep -q '^pytest==' "$ROOT/$lock"; then
        say "$v, uid 1000: python -m pytest $PYTEST_ARGS"
        start=$SECONDS
        run "$clone" "$image" python -m pytest -q -p no:cacheprovider "${pytest_args[@]}" \
            || die "tests failed in $image"
        TESTS_S[$v]="$((SECONDS - start)) s"
    else
        TESTS_S[$v]="not run: $lock has no pytest"
        echo "$v: no tests ($lock has no pytest)"
    fi

    start=$SECONDS
    no_gpu_checks "$v" "$clone"
    say "$v, host user $(id -u):$(id -g): dvc exp run split"
    run "$host" "${as_host[@]}" "$image" dvc exp run split || die "$image: dvc exp run split failed (host user)"
    run "$host" "${as_host[@]}" "$image" sh -c "$check" check split \
        || die "$image, host user: the split in the container does not equal the committed one (above)"
    no_gpu_checks "$v" "$host" "${as_host[@]}"
    CHECK_S[$v]=$((checks_s + SECONDS - start))

    out=$(run "$clone" "$image" python -c "$sizes_py") || die "$image: sizes"
    SITE_LINE[$v]=$(head -1 <<< "$out")
    TOP10[$v]=$(tail -n +2 <<< "$out")
    echo "$out"
}
for v in gpu gpu-vllm; do selected "$v" && gpu_checks "$v"; done

if [ -n "$KEEP" ]; then
    [ -e "$KEEP" ] && die "IMAGE_TEST_KEEP_CLONE=$KEEP exists: it is never overwritten"
    mkdir -p "$(dirname "$KEEP")"
    chown -R "$(id -u):$(id -g)" "$TMP/uid1000"  # git refuses a repository owned by another user
    mv "$TMP/uid1000" "$KEEP"
    echo "the reproduced clone: $KEEP"
fi
if [ "$REMOVE" = 1 ]; then
    for v in $VARIANTS; do podman rmi -f "${IMAGES[$v]}" >/dev/null; done
    podman image prune -f >/dev/null
    echo "removed: $(for v in $VARIANTS; do printf '%s ' "${IMAGES[$v]}"; done)(IMAGE_TEST_RM=1)"
fi

say "image-test passed"
cold=$([ "$COLD" = 1 ] && echo ", cold (no cached layers)" || true)
echo "base image $BASE_IMAGE: $base_s"
for v in $VARIANTS; do
    echo "$v: ${IMAGES[$v]}, ${SIZE_MB[$v]} MB; build ${BUILD_S[$v]} s$cold, cached ${CACHED_S[$v]} s;" \
         "tests ${TESTS_S[$v]}$([ "$v" = cpu ] && echo "; pipeline ${PIPELINE_S[cpu]} s" || echo "; checks ${CHECK_S[$v]} s")"
done

[ -n "$RECORD" ] || exit 0
# The record: a header and one section per image, between markers; a run rewrites the sections of the
# images it checked and keeps the others.
section() {  # section VARIANT: the markdown of one image's measurements
    local v=$1
    echo "<!-- $v:start -->"
    case $v in
        cpu) echo "## The CPU image (\`${IMAGES[cpu]}\`, requirements.lock)" ;;
        gpu) echo "## The GPU image (\`${IMAGES[gpu]}\`, requirements-gpu.lock), checked without a GPU" ;;
        gpu-vllm) echo "## The vLLM variant (\`${IMAGES[gpu-vllm]}\`, requirements-gpu-vllm.lock), built once, not in CI" ;;
    esac
    echo
    echo "Measured $(date -u +%Y-%m-%d) on commit $(git -C "$ROOT" rev-parse --short HEAD), Debian base: $base_s."
    echo
    echo "| what | measured |"
    echo "|---|---|"
    echo "| image build$cold | ${BUILD_S[$v]} s |"
    echo "| image build, cached layers | ${CACHED_S[$v]} s |"
    echo "| image size (podman image inspect) | ${SIZE_MB[$v]} MB |"
    if [ "$v" = cpu ]; then
        echo "| pipeline in the container, uid 1000 | ${PIPELINE_S[cpu]} s ($([ "$PIPELINE" = 1 ] && echo "dvc repro, whole pipeline" || echo "dvc repro split only")) |"
    else
        echo "| checks without a GPU: CUDA build, libraries, versions; default command, preflight plan, \`dvc exp run split\` (uid 1000 and host user) | ${CHECK_S[$v]} s |"
        [ "$v" = gpu-vllm ] && echo "| TRL's vLLM colocate imports | ${VLLM_LINE[$v]} |"
    fi
    echo "| tests in the container, uid 1000 | ${TESTS_S[$v]} (pytest $PYTEST_ARGS) |"
    if [ "$v" != cpu ]; then
        echo
        echo "Where the bytes go: ${SITE_LINE[$v]}; the ten largest (installed size, RECORD's files):"
        echo
        echo "| package | installed |"
        echo "|---|---|"
        while read -r mb _ name version; do echo "| $name $version | $mb MB |"; done <<< "${TOP10[$v]}"
    fi
    echo "<!-- $v:end -->"
}
mkdir -p "$(dirname "$RECORD")"
for v in $VARIANTS; do section "$v" > "$TMP/section-$v.md"; done
python3 - "$RECORD" "$TMP" "$(nproc) CPUs, $(uname -sr), podman $(podman --version | awk '{print $3}'), run as root" <<'EOF'
import pathlib, re, sys
record, tmp, machine = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
old = record.read_text(encoding="utf-8") if record.exists() else ""
parts = [f"# Benchmark: the images (`make image-test`)\n\nMachine: {machine}.\n"]
for v in ("cpu", "gpu", "gpu-vllm"):
    new = tmp / f"section-{v}.md"
    kept = re.search(rf"<!-- {v}:start -->.*?<!-- {v}:end -->\n", old, re.S)
    if new.exists():
        parts.append(new.read_text(encoding="utf-8"))
    elif kept:
        parts.append(kept.group(0))
parts.append("The same CPU pipeline on the host: benchmarks/cpu.md. Generated by "
             "`IMAGE_TEST_RECORD=benchmarks/container.md make image-test` (each image's section by the run "
             "that checked it; the vLLM variant's by `IMAGE_TEST_RECORD=benchmarks/container.md make image-vllm`).\n")
record.write_text("\n".join(parts), encoding="utf-8")
EOF
echo "recorded in $RECORD"
