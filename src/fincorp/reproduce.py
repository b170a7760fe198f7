"""Did a fresh clone's `dvc repro` reproduce the committed reference run? (tests/test_pipeline.py, and the
CPU image's check in scripts/image_test.sh)

On CPU the pipeline is bit-for-bit deterministic for a machine and a thread count, not across CPUs: torch's
kernels (oneDNN, the vectorised ops) take the instruction set they find, and a different order of
floating-point additions gives other weights. generate and split are pure Python; `base` is the first stage
that computes in floating point. So a reproduction is one of:

- "reference": every tracked file equals the committed run (git status clean);
- "other-cpu": the code, params and data are the committed ones (every stage's command, params and input
  files other than stage outputs match the committed dvc.lock; the data stages' outputs too), and the
  first output that differs is the base's weights, with only what is computed from them differing after
  it: this machine adds in another order than the one that made the reference. Bit for bit then holds
  between two reproductions on this machine (`same`), which the callers check;
- "differs": anything else (a stale dvc.lock, an output that differs although everything it was computed
  from is equal, a changed file no stage writes, a new file git does not ignore): a real failure.

    python -m fincorp.reproduce check CLONE      # exit 0 for reference or other-cpu, 1 for differs
    python -m fincorp.reproduce same CLONE OTHER # exit 0 when two reproductions are the same bytes
    python -m fincorp.reproduce report CLONE     # the reference's test scores beside the clone's (markdown)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

FLOAT_ROOT = "base"  # the first stage that computes in floating point


def git(clone: Path, *args: str) -> str:
    from fincorp.study import git as run_git

    return run_git("-C", str(clone), *args)


def changed_paths(clone: Path) -> tuple[list[str], list[str]]:
    """(tracked files that differ from HEAD, files git does not ignore that are not tracked)."""
    tracked, untracked = [], []
    for line in git(clone, "status", "--porcelain", "--untracked-files=all").splitlines():
        (untracked if line.startswith("??") else tracked).append(line[3:].strip().strip('"'))
    return tracked, untracked


def stages_of(lock_text: str) -> dict[str, Any]:
    import yaml

    return (yaml.safe_load(lock_text) or {}).get("stages") or {}


def compare(clone: str | Path) -> dict[str, Any]:
    """The verdict on a reproduced clone (see the module docstring): {"verdict", "message", "stages"}."""
    clone = Path(clone)
    tracked, untracked = changed_paths(clone)
    if not tracked and not untracked:
        return {"verdict": "reference", "message": "every tracked file equals the committed reference run",
                "stages": []}
    committed = stages_of(git(clone, "show", "HEAD:dvc.lock"))
    now = stages_of((clone / "dvc.lock").read_text())
    outputs = {o["path"] for st in now.values() for o in st.get("outs") or []}

    def under(path: str, roots: set[str]) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def inputs(st: dict) -> dict[str, Any]:  # deps that no stage writes: code, params files
        return {d["path"]: d.get("md5") for d in st.get("deps") or [] if not under(d["path"], outputs)}

    def outs(st: dict) -> dict[str, Any]:
        return {o["path"]: o.get("md5") for o in st.get("outs") or []}

    problems = []
    if untracked:
        problems.append(f"new files git does not ignore: {', '.join(untracked[:10])}")
    if set(committed) != set(now):
        problems.append(f"the stages differ from the committed dvc.lock: {sorted(set(committed) ^ set(now))}")
    for name in sorted(set(committed) & set(now)):
        c, n = committed[name], now[name]
        if c.get("cmd") != n.get("cmd") or c.get("params") != n.get("params") or inputs(c) != inputs(n):
            problems.append(f"stage {name}: its command, params or code differ from the committed dvc.lock "
                            "(a stale lock: run `dvc repro` and commit dvc.lock)")
    if problems:
        return {"verdict": "differs", "message": "; ".join(problems), "stages": []}
    differing = sorted(n for n in now if outs(committed[n]) != outs(now[n]))
    # the stages computed from the base's weights, directly or through another such stage
    downstream, grew = {FLOAT_ROOT}, True
    while grew:
        roots = {o for s in downstream for o in outs(now[s])}
        more = {n for n, st in now.items() if any(under(d["path"], roots) for d in st.get("deps") or [])}
        grew = not more <= downstream
        downstream |= more
    written = {o for s in downstream for o in outs(now[s])} | {"dvc.lock"}
    if FLOAT_ROOT not in differing or any(n not in downstream for n in differing) or any(
            not under(p, written) for p in tracked):
        why = ([f"stage {FLOAT_ROOT}'s weights equal the reference's, so every output computed from them should too"]
               if FLOAT_ROOT not in differing else [])
        why += [f"stage {n} is not computed from the base and its outputs differ" for n in differing if n not in downstream]
        why += [f"{p} changed and no stage computed from the base writes it" for p in tracked if not under(p, written)]
        return {"verdict": "differs", "message": "; ".join(why) + f" (stages whose outputs differ: {differing})",
                "stages": differing}
    return {"verdict": "other-cpu", "stages": differing,
            "message": f"the code, params and data are the committed ones, and the first output that differs is "
                       f"the base's weights ({len(differing)} stages computed from them differ): this machine's "
                       "floating point is not the one that made the reference run (docs/reproducibility.md)"}


def same(clone: str | Path, other: str | Path) -> list[str]:
    """Files in which two reproductions of the same commit differ (empty: bit for bit the same, the
    DVC-cached outputs through their hashes in dvc.lock)."""
    a, b = Path(clone), Path(other)
    if git(a, "rev-parse", "HEAD") != git(b, "rev-parse", "HEAD"):
        return ["HEAD: the two clones are at different commits"]
    paths = sorted({"dvc.lock", *(p for side in (a, b) for p in sum(changed_paths(side), []))})
    return [p for p in paths if not ((a / p).is_file() and (b / p).is_file()
                                      and (a / p).read_bytes() == (b / p).read_bytes())]


MODELS = ("baseline", "sft", "grpo", "hybrid")


def scores(clone: Path, committed: bool) -> dict[str, dict[str, Any]]:
    """Each model's test accuracy and VIP accuracy in the clone's eval/ (or in its committed HEAD)."""
    import json

    out = {}
    for m in MODELS:
        text = git(clone, "show", f"HEAD:eval/{m}.json") if committed else (clone / f"eval/{m}.json").read_text()
        record = json.loads(text)
        out[m] = {k: record[k] for k in ("accuracy", "vip_accuracy")}
    return out


def report(clone: str | Path) -> str:
    """Markdown: the committed reference run's test scores beside a reproduction's (same commit, this machine)."""
    import platform

    import torch

    from fincorp.report import acc_cell

    clone = Path(clone)
    verdict = compare(clone)
    ref, here = scores(clone, True), scores(clone, False)

    flags = sorted({f for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
                    for f in line.split(":", 1)[1].split() if f.startswith(("avx512", "amx"))}) \
        if Path("/proc/cpuinfo").is_file() else []
    lines = ["# The reference run reproduced on another CPU", "",
             "_Generated by `python -m fincorp.reproduce report CLONE` on a fresh clone after `dvc repro`; "
             "do not edit._", "",
             f"- commit: `{git(clone, 'rev-parse', 'HEAD').strip()}`",
             f"- verdict: {verdict['verdict']}: {verdict['message']}",
             f"- this machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch CPU capability "
             f"{torch.backends.cpu.get_cpu_capability()}, CPU flags {' '.join(flags) or 'no AVX-512 or AMX'}", "",
             "Test set (160 rows, 40 VIP), greedy; 95% Wilson intervals. Same code, params, data and seeds.", "",
             "| model | accuracy, reference run | accuracy, this machine | VIP accuracy, reference run | "
             "VIP accuracy, this machine |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {acc_cell(ref[m]['accuracy'])} | {acc_cell(here[m]['accuracy'])} | "
              f"{acc_cell(ref[m]['vip_accuracy'])} | {acc_cell(here[m]['vip_accuracy'])} |" for m in MODELS]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "check":
        v = compare(argv[1])
        print(f"reproduction: {v['verdict']}: {v['message']}")
        return 0 if v["verdict"] in ("reference", "other-cpu") else 1
    if len(argv) == 2 and argv[0] == "report":
        print(report(argv[1]), end="")
        return 0
    if len(argv) == 3 and argv[0] == "same":
        diff = same(argv[1], argv[2])
        print("two reproductions on this machine: " + ("the same bytes" if not diff else f"differ in {diff}"))
        return 0 if not diff else 1
    print("\n".join(line.strip() for line in __doc__.strip().splitlines()[-3:]), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
