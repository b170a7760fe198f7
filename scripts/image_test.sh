#!/usr/bin/env bash
# `make image-test` (run by CI): build the CPU image from the Dockerfile with podman and reproduce the
# committed run inside it. docs/container.md.
#
#   make image-test                          # what CI runs (root; the whole pipeline dominates)
#   IMAGE_TEST_PIPELINE=0 make image-test    # everything but the whole pipeline: `dvc repro split` instead
#
# 1. Installs podman, runc and debootstrap when missing (apt-get).
# 2. Bootstraps a Debian bookworm minbase image once, kept in podman's own image store ($BASE_IMAGE);
#    skipped when it exists (`podman rmi` it to rebuild).
# 3. Builds the CPU image from this checkout, timed, twice: the second build must come from cached
#    layers (seconds, and the same image when the checkout is clean).
# 4. A fresh clone of HEAD owned by uid 1000, mounted at /work: the image's default command
#    (`dvc repro`) as the image's user, then `git status --porcelain` must be empty (the result equals
#    the committed reference run) and `dvc status` clean; then the fast test tier inside the container.
# 5. A fresh clone owned by the host user, run as the host user (`--user "$(id -u):$(id -g)"`):
#    `dvc exp run split` (hidden git commits with the image's git identity), same checks.
# Containers run with --network none: the CPU pipeline and the tests are offline.
#
# Environment (defaults in brackets):
#   IMAGE_TEST_PIPELINE  [1]  0: `dvc repro split` (seconds) instead of the whole pipeline (~18 min)
#   IMAGE_TEST_PYTEST    [-m "not slow"]  pytest arguments for the in-container test run
#   IMAGE_TEST_COLD      [0]  1: remove the image and its cached layers first (`podman image prune`: every
#                             dangling image; the Debian base stays), to time a cold build
#   WHEELHOUSE           [$PIP_FIND_LINKS]  folder of wheels mounted into the build; must hold the CPU
#                             torch wheel unless TORCH_INDEX_URL is set
#   TORCH_INDEX_URL      []   PyTorch's CPU wheel index, where there is no wheelhouse
#   CA_BUNDLE            [/etc/ssl/certs/ca-certificates.crt]  the host's CA bundle, a build secret
#   CONTAINERS_CONF      [written to $IMAGE_TEST_CACHE]  podman's settings (see below)
#   IMAGE_TEST_CACHE     [~/.cache/fincorp-image-test]
#   IMAGE, BASE_IMAGE    [localhost/fincorp:cpu, localhost/fincorp-base:bookworm]
#   IMAGE_TEST_RECORD    []   a path: the measurements are also written there as markdown
#                             (benchmarks/container.md is that file, committed)
#   IMAGE_TEST_KEEP_CLONE []  a path: when every check passed, the uid-1000 clone (reproduced in the
#                             container) is handed to the host user and moved there instead of deleted.
#                             .ci/run passes it to `make test` (FINCORP_REPRODUCED_CLONE), whose pipeline
#                             tests then check that reproduction instead of running the pipeline again.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-localhost/fincorp:cpu}
BASE_IMAGE=${BASE_IMAGE:-localhost/fincorp-base:bookworm}
PIPELINE=${IMAGE_TEST_PIPELINE:-1}
PYTEST_ARGS=${IMAGE_TEST_PYTEST:-'-m "not slow"'}
COLD=${IMAGE_TEST_COLD:-0}
# This project's machines keep the CPU torch wheel in pip's find-links folder.
WHEELHOUSE=${WHEELHOUSE-${PIP_FIND_LINKS:-}}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
CACHE=${IMAGE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fincorp-image-test}
KEEP=${IMAGE_TEST_KEEP_CLONE:-}
RECORD=${IMAGE_TEST_RECORD:-}

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nimage-test FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (CI does): rootful podman, debootstrap, and a clone chowned to uid 1000"

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
echo "podman $(podman --version | awk '{print $3}'), settings: $CONTAINERS_CONF"

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

# ---- 3. build -------------------------------------------------------------------------------------
build_args=(--format docker --network host -t "$IMAGE"
            --build-arg VARIANT=cpu --build-arg CPU_BASE_IMAGE="$BASE_IMAGE")
if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || die "WHEELHOUSE=$WHEELHOUSE is not a folder"
    build_args+=(--build-context "wheelhouse=$WHEELHOUSE")
fi
[ -n "$TORCH_INDEX_URL" ] && build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
[ -n "$CA_BUNDLE" ] && [ -f "$CA_BUNDLE" ] && build_args+=(--secret "id=ca,src=$CA_BUNDLE")
if [ -n "$(git -C "$ROOT" status --porcelain)" ]; then
    echo "note: building from a checkout with uncommitted changes; the runs below use its HEAD"
fi

if [ "$COLD" = 1 ]; then
    # Cold: drop the image and every cached layer (dangling once the image is gone), keep the Debian base.
    # Not --no-cache: that leaves the old layers in the cache, and the second build may pick those.
    say "removing $IMAGE and its cached layers (IMAGE_TEST_COLD=1)"
    podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
    podman image prune -f >/dev/null
fi
say "building $IMAGE"
start=$SECONDS
podman build "${build_args[@]}" "$ROOT" > "$TMP/build1.log" 2>&1 \
    || { tail -40 "$TMP/build1.log" >&2; die "podman build failed (log above)"; }
build_s=$((SECONDS - start))
image_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")

say "building again (cached layers)"
start=$SECONDS
podman build "${build_args[@]}" "$ROOT" > "$TMP/build2.log" 2>&1 \
    || { tail -40 "$TMP/build2.log" >&2; die "second podman build failed (log above)"; }
cached_s=$((SECONDS - start))
if [ "$(podman image inspect --format '{{.Id}}' "$IMAGE")" != "$image_id" ] \
        && [ -z "$(git -C "$ROOT" status --porcelain)" ]; then
    die "the second build of a clean checkout gave another image: some layer is not cached (see $IMAGE's history)"
fi
size_mb=$(( $(podman image inspect --format '{{.Size}}' "$IMAGE") / 1000000 ))

# ---- 4 and 5. runs on fresh clones ----------------------------------------------------------------
run() { local clone=$1; shift; podman run --rm --network none -v "$clone:/work" "$@"; }
# The in-container checks after a run: the committed run reproduced, DVC clean. ($@: dvc targets)
# shellcheck disable=SC2016
check='set -e; diff=$(git status --porcelain)
if [ -n "$diff" ]; then echo "differs from the committed run:"; echo "$diff"; git diff --stat; exit 1; fi
echo "git status --porcelain: empty"
dvc status "$@"; dvc status -q "$@" || { echo "dvc status: not up to date"; exit 1; }'

git clone -q "$ROOT" "$TMP/uid1000"
chown -R 1000:1000 "$TMP/uid1000"
start=$SECONDS
if [ "$PIPELINE" = 1 ]; then
    say "uid 1000: the image's default command (dvc repro, the whole pipeline)"
    run "$TMP/uid1000" "$IMAGE" || die "dvc repro failed in the container (uid 1000)"
    target=()
else
    say "uid 1000: dvc repro split (IMAGE_TEST_PIPELINE=0)"
    run "$TMP/uid1000" "$IMAGE" dvc repro split || die "dvc repro split failed in the container (uid 1000)"
    target=(split)
fi
pipeline_s=$((SECONDS - start))
run "$TMP/uid1000" "$IMAGE" sh -c "$check" check "${target[@]}" \
    || die "uid 1000: the run in the container does not equal the committed run (above)"

say "uid 1000: python -m pytest $PYTEST_ARGS"
start=$SECONDS
pytest_args=()
eval "pytest_args=($PYTEST_ARGS)"  # word splitting with quotes: -m "not slow"
run "$TMP/uid1000" "$IMAGE" python -m pytest -q -p no:cacheprovider "${pytest_args[@]}" \
    || die "tests failed in the container"
tests_s=$((SECONDS - start))

say "host user $(id -u):$(id -g): dvc exp run split"
git clone -q "$ROOT" "$TMP/host-user"
run "$TMP/host-user" --user "$(id -u):$(id -g)" "$IMAGE" dvc exp run split \
    || die "dvc exp run split failed in the container (host user)"
run "$TMP/host-user" --user "$(id -u):$(id -g)" "$IMAGE" sh -c "$check" check split \
    || die "host user: the run in the container does not equal the committed run (above)"

if [ -n "$KEEP" ]; then
    [ -e "$KEEP" ] && die "IMAGE_TEST_KEEP_CLONE=$KEEP exists: it is never overwritten"
    mkdir -p "$(dirname "$KEEP")"
    chown -R "$(id -u):$(id -g)" "$TMP/uid1000"  # git refuses a repository owned by another user
    mv "$TMP/uid1000" "$KEEP"
    echo "the reproduced clone: $KEEP"
fi

say "image-test passed"
summary=$(cat <<EOF
base image          $BASE_IMAGE, $base_s
image               $IMAGE, $size_mb MB (podman image inspect)
build               ${build_s} s$([ "$COLD" = 1 ] && echo " (cold: no cached layers)")
build, cached       ${cached_s} s
pipeline (uid 1000) ${pipeline_s} s ($([ "$PIPELINE" = 1 ] && echo "dvc repro, whole pipeline" || echo "dvc repro split only"))
tests               ${tests_s} s (pytest $PYTEST_ARGS)
EOF
)
echo "$summary"
if [ -n "$RECORD" ]; then
    mkdir -p "$(dirname "$RECORD")"
    cat > "$RECORD" <<EOF
# Benchmark: the CPU image (\`make image-test\`)

Machine: $(nproc) CPUs, $(uname -sr), podman $(podman --version | awk '{print $3}'), run as root.

| what | measured |
|---|---|
| Debian base (debootstrap --variant=minbase bookworm) | $base_s |
| image build$([ "$COLD" = 1 ] && echo ", cold (no cached layers)") | ${build_s} s |
| image build, cached layers | ${cached_s} s |
| image size (podman image inspect) | $size_mb MB |
| pipeline in the container, uid 1000 | ${pipeline_s} s ($([ "$PIPELINE" = 1 ] && echo "dvc repro, whole pipeline" || echo "dvc repro split only")) |
| tests in the container | ${tests_s} s (pytest $PYTEST_ARGS) |

The same pipeline on the host: benchmarks/cpu.md. Generated by \`IMAGE_TEST_RECORD=benchmarks/container.md make image-test\`.
EOF
fi
