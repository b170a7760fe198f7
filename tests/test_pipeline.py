"""The promise of the artifact: a fresh clone reproduces the committed reference run with `dvc repro`.

One fresh clone (of the committed HEAD) per session, the whole default pipeline run in it from
nothing (or, in CI, the clone `make image-test` reproduced inside the CPU image: FINCORP_REPRODUCED_CLONE), then DVC's own machinery exercised on it: a second repro is a
no-op, one GRPO param reruns only grpo/eval@grpo/report, `dvc exp run -S` and a queue work.
Run alone with `make reproduce`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def sh(args: list[str], cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, float | None]:
    """A fresh clone of HEAD with the default pipeline reproduced in it; returns (path, env, seconds), seconds
    None when the clone was reproduced elsewhere (FINCORP_REPRODUCED_CLONE)."""
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True).returncode:
        pytest.skip("not a git checkout with commits")
    root = tmp_path_factory.mktemp("clone")
    path = root / "fincorp"
    # CI reproduces the run once, inside the CPU image (`make image-test`, .ci/run), and hands that clone
    # over: these tests then check the container's reproduction and run DVC on it from this venv.
    reproduced = os.environ.get("FINCORP_REPRODUCED_CLONE")
    if reproduced:
        path = Path(reproduced)
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
        theirs = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True).stdout
        assert head and theirs == head, f"FINCORP_REPRODUCED_CLONE={path} is not a clone of this HEAD ({head.strip()})"
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(path / "src"),  # the clone's code, not this checkout's
           "DVC_SITE_CACHE_DIR": str(root / "dvc-site"), "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1",
           "GIT_AUTHOR_NAME": "fincorp-ci", "GIT_AUTHOR_EMAIL": "ci@fincorp.invalid",
           "GIT_COMMITTER_NAME": "fincorp-ci", "GIT_COMMITTER_EMAIL": "ci@fincorp.invalid"}
    seconds = None
    if not reproduced:
        sh(["git", "clone", "-q", str(REPO), str(path)], root, env)
        start = time.time()
        sh(["dvc", "repro"], path, env, timeout=1800)
        seconds = time.time() - start
    judge(path, env, root)
    return path, env, seconds


REPRODUCTION: dict = {}  # judge()'s findings, for test_fresh_clone_reproduces_the_reference_run_bit_for_bit


def judge(path: Path, env: dict, root: Path) -> None:
    """How the reproduction compares with the committed reference run (fincorp.reproduce). On a CPU whose
    floating point is not the reference machine's ("other-cpu": same code, params and data, other weights),
    a second fresh clone is reproduced here from nothing and compared byte for byte; then the reproduction
    is committed in the clone, so that the DVC tests below start from a clean tree, as on the reference
    machine."""
    from fincorp import reproduce

    REPRODUCTION.update(verdict=reproduce.compare(path), second_differs=None,
                        status=sh(["git", "status", "--porcelain"], path, env).stdout
                        + sh(["git", "diff", "--stat"], path, env).stdout)
    if REPRODUCTION["verdict"]["verdict"] != "other-cpu":
        return
    second = root / "second"
    env2 = {**env, "PYTHONPATH": str(second / "src"), "DVC_SITE_CACHE_DIR": str(root / "dvc-site-second")}
    sh(["git", "clone", "-q", str(REPO), str(second)], root, env2)
    sh(["dvc", "repro"], second, env2, timeout=1800)
    REPRODUCTION["second_differs"] = reproduce.same(path, second)
    sh(["git", "commit", "-qam", "the reproduction on this machine (another CPU than the reference run's)"], path, env)


def test_fresh_clone_reproduces_the_reference_run_bit_for_bit(clone):
    path, env, seconds = clone
    print(f"fresh-clone dvc repro: {seconds:.0f} s" if seconds is not None else "fresh clone reproduced in the image")
    # The whole tree: every tracked file (dvc.lock's hashes, logs, reports, figures) and nothing new that
    # git does not ignore; telemetry/ (wall times, memory) is the one place allowed to differ, and is ignored.
    verdict = REPRODUCTION["verdict"]
    assert verdict["verdict"] in ("reference", "other-cpu"), (
        f"the reproduction differs from the committed reference run: {verdict['message']}\n{REPRODUCTION['status']}")
    if verdict["verdict"] == "other-cpu":  # then two reproductions on this machine must be the same bytes
        print(f"reproduction: {verdict['message']}; a second fresh clone reproduced here: "
              f"{'the same bytes' if not REPRODUCTION['second_differs'] else REPRODUCTION['second_differs']}")
        assert REPRODUCTION["second_differs"] == [], "two fresh-clone reproductions on this machine differ"
    assert stale_stages(path, env) == set()
    assert (path / "telemetry" / "grpo.json").is_file()  # the timings went somewhere, not into an output


def test_sft_still_learns_the_hidden_rule_from_the_default_base(clone):
    """The trap: a base pre-trained too long can make the VIP rule unlearnable for LoRA SFT. The overall
    accuracy is the reference machine's: on another CPU SFT learned the VIP rule as fully but the A+ and
    standard tiers far less (benchmarks/reproduction-other-cpu.md), so there only the rule is required."""
    path, _, _ = clone
    metrics = json.loads((path / "eval/sft.json").read_text())
    assert metrics["vip_accuracy"]["value"] >= 0.8
    if REPRODUCTION["verdict"]["verdict"] == "reference":
        assert metrics["accuracy"]["value"] >= 0.85
    base = json.loads((path / "eval/baseline.json").read_text())
    assert 0.25 <= base["accuracy"]["value"] <= 0.45
    assert base["per_class"]["REJECT_RISK"]["value"] >= 0.8
    assert base["prediction_distribution"]["MANUAL_REVIEW"] <= 0.05
    assert base["invalid_rate"] <= 0.05


def test_second_repro_is_a_fast_no_op(clone):
    path, env, _ = clone
    start = time.time()
    out = sh(["dvc", "repro"], path, env).stdout
    seconds = time.time() - start
    print(f"no-op dvc repro: {seconds:.2f} s")
    assert "Data and pipelines are up to date." in out
    assert seconds < 5.0  # measured ~1.5 s here; generous for a loaded CI machine


def test_results_travel_between_machines_through_a_dvc_remote(clone, tmp_path):
    """A GPU host commits dvc.lock and `dvc push`es; a laptop clones and `dvc pull`s (local-folder remote)."""
    path, env, _ = clone
    store = tmp_path / "store"
    # --allow-empty: a reproduction equal to the committed run leaves nothing new to commit
    sh(["git", "commit", "--allow-empty", "-qam", "results of a run"], path, env)
    sh(["dvc", "remote", "add", "--local", "-d", "shared", str(store)], path, env)
    sh(["dvc", "push"], path, env)
    laptop = tmp_path / "laptop"
    sh(["git", "clone", "-q", str(path), str(laptop)], tmp_path, env)
    sh(["dvc", "remote", "add", "--local", "-d", "shared", str(store)], laptop, env)
    sh(["dvc", "pull"], laptop, env)
    for out in ("models/sft/adapter_model.safetensors", "models/grpo/adapter_model.safetensors",
                "models/base/model.safetensors", "data/test.jsonl"):
        assert (laptop / out).read_bytes() == (path / out).read_bytes()
    assert stale_stages(laptop, {**env, "PYTHONPATH": str(laptop / "src")}) == set()


def stale_stages(path: Path, env: dict) -> set[str]:
    return set(json.loads(sh(["dvc", "status", "--json"], path, env).stdout))


def test_one_grpo_param_reruns_only_the_rl_stages_their_evals_and_the_report(clone):
    """grpo and hybrid share the `grpo:` section: both rerun; sft, base and data do not. The report reads the
    section too (its recipe-and-budget table), so `dvc status` names it beside them."""
    path, env, _ = clone
    assert stale_stages(path, env) == set()
    params = OmegaConf.load(path / "params.yaml")
    params.grpo.lr = 5e-5
    params.grpo.num_train_epochs = 0.1  # a short run: what matters is which stages run
    OmegaConf.save(params, path / "params.yaml")
    try:
        # `dvc status` names the stages whose own deps changed ...
        assert stale_stages(path, env) == {"grpo", "hybrid", "report"}
        # ... and a real repro reruns it and exactly what depends on its outputs.
        out = sh(["dvc", "repro"], path, env).stdout
        ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
        assert ran == {"grpo", "hybrid", "eval@grpo", "eval@hybrid", "report"}, out[-3000:]
        assert "Stage 'sft' didn't change, skipping" in out
    finally:
        sh(["git", "checkout", "--", "."], path, env)
        sh(["dvc", "checkout", "-q"], path, env)
        assert stale_stages(path, env) == set()


def test_exp_run_with_the_committed_params_changes_nothing(clone):
    """An experiment whose params equal the committed ones restores every stage and leaves the tree clean."""
    path, env, _ = clone
    out = sh(["dvc", "exp", "run", "-n", "same-params"], path, env).stdout
    assert "Running stage" not in out, out[-3000:]
    assert sh(["git", "status", "--porcelain"], path, env).stdout == ""
    assert stale_stages(path, env) == set()


def test_exp_run_with_a_set_param_and_metrics_diff(clone):
    path, env, _ = clone
    sh(["dvc", "exp", "run", "-n", "ep0.25", "-S", "grpo.num_train_epochs=0.25"], path, env)
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], path, env).stdout)
    exps = [e for rev in shown for e in (rev.get("experiments") or []) for e in e.get("revs", [])]
    named = [e for e in exps if e.get("name") == "ep0.25"]
    assert named, f"experiment not listed: {[e.get('name') for e in exps]}"
    assert named[0]["data"]["params"]["params.yaml"]["data"]["grpo"]["num_train_epochs"] == 0.25
    diff = json.loads(sh(["dvc", "params", "diff", "--json"], path, env).stdout)
    assert diff["params.yaml"]["grpo.num_train_epochs"]["new"] == 0.25
    metrics = json.loads(sh(["dvc", "metrics", "diff", "--json"], path, env).stdout)
    assert set(metrics) <= {"reports/metrics.json"}  # empty when the shorter run scores the same
    assert not [k for k in metrics.get("reports/metrics.json", {}) if k.split(".")[0] in ("baseline", "sft")]
    # What users compare runs with (the README's command): the param and the metrics that changed, no
    # dependency hashes (every path: --drop '.*/'), at its natural width (COLUMNS=1000), on one screen.
    wide = {**env, "COLUMNS": "1000"}
    table = sh(["dvc", "exp", "show", "--only-changed", "--drop", ".*/", "--no-pager"], path, wide).stdout
    width = max(len(line.rstrip()) for line in table.splitlines())
    # 200 columns is the reference machine's table; on another CPU more of the RL metrics change with the
    # param (213 columns on one measured), and the structure below is what holds everywhere.
    if REPRODUCTION["verdict"]["verdict"] == "reference":
        assert width <= 200, f"dvc exp show --only-changed --drop '.*/' is {width} columns wide:\n{table}"
    header = next(line for line in table.splitlines() if "Experiment" in line).split()
    assert "grpo.num_train_epochs" in header and any(c.startswith(("grpo.", "hybrid.")) for c in header[2:-1]), header
    assert not [c for c in header if "/" in c or c.startswith(("baseline.", "sft."))], header
    # Without --drop, the changed dependencies are listed too (their hashes), but never telemetry.
    bare = sh(["dvc", "exp", "show", "--only-changed", "--no-pager", "--csv"], path, env).stdout.splitlines()[0]
    assert "grpo.num_train_epochs" in bare and "telemetry" not in bare and "logs/eval" not in bare, bare
    sh(["git", "checkout", "--", "."], path, env)
    sh(["dvc", "checkout", "-q"], path, env)


def readme_bash_block(heading: str) -> str:
    """The first ```bash block under `heading` in the README, as a reader copies it."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading):]
    start = section.index("```bash\n") + len("```bash\n")
    return section[start:section.index("```", start)]


def test_the_readmes_change_and_compare_commands_run_as_typed(clone):
    """The README's change-and-compare block, run verbatim by bash in the reproduced clone, with only what a
    reader has after `make repro`: a .venv in the checkout and a PATH without it. Without the block's first
    line (activate) its first dvc command is not found; with it, every command succeeds and the experiment's
    param shows in `dvc exp show`. The tree is restored afterwards."""
    import shutil

    path, env, _ = clone
    block = readme_bash_block("## Change, run, compare")
    assert block.startswith(". .venv/bin/activate"), block
    venv_bin = str(Path(sys.executable).parent)
    bare = {**env, "COLUMNS": "1000",
            "PATH": os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p and p != venv_bin)}
    link = path / ".venv"  # what `make repro` leaves in a reader's checkout
    link.symlink_to(Path(sys.executable).parent.parent)
    try:
        if shutil.which("dvc", path=bare["PATH"]) is None:
            rest = "\n".join(block.splitlines()[1:])
            missing = subprocess.run(["bash", "-e", "-c", rest], cwd=path, env=bare, capture_output=True, text=True)
            assert missing.returncode == 127 and "dvc: command not found" in missing.stderr, missing.stderr[-2000:]
        ran = subprocess.run(["bash", "-e", "-c", block], cwd=path, env=bare, capture_output=True, text=True,
                             timeout=1800)
        assert ran.returncode == 0, f"README block failed ({ran.returncode}):\n{ran.stdout[-4000:]}\n{ran.stderr[-4000:]}"
        changed = [line.split("-S ")[1].split()[0] for line in block.splitlines() if line.startswith("dvc exp run")]
        assert changed and all(c.split("=")[0] in ran.stdout for c in changed), ran.stdout[-4000:]
    finally:
        link.unlink()
        shutil.rmtree(path / "dvc_plots", ignore_errors=True)
        sh(["git", "checkout", "--", "."], path, env)
        sh(["dvc", "checkout", "-q"], path, env)
    assert sh(["git", "status", "--porcelain"], path, env).stdout == ""


def test_queued_experiments_run_with_dvc_queue_start(clone):
    path, env, _ = clone
    for lr in ("1e-5", "2e-5"):
        sh(["dvc", "exp", "run", "--queue", "-n", f"q{lr}", "-S", f"grpo.lr={lr}",
            "-S", "grpo.num_train_epochs=0.1"], path, env)
    sh(["dvc", "queue", "start", "-j", "1"], path, env)
    deadline = time.time() + 900
    while time.time() < deadline:
        status = sh(["dvc", "queue", "status"], path, env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    else:
        pytest.fail(f"queue did not finish:\n{status}")
    sh(["dvc", "queue", "stop"], path, env)
    assert status.count("Success") == 2, status
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], path, env).stdout)
    names = {e.get("name") for rev in shown for e in (rev.get("experiments") or []) for e in e.get("revs", [])}
    assert {"q1e-5", "q2e-5"} <= names
