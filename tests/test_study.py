"""fincorp.study: which experiments each study runs, and how their numbers are read back from git.

The experiments here are hand-made commits under refs/exps/ in a throwaway git repository (what
`dvc exp run` leaves behind), so the collection code is tested without training anything.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fincorp import study
from fincorp.eval import compute_metrics
from fincorp.report import summary_metrics
from fincorp.jsonl import DataError
from fincorp.rules import LABELS, MANUAL_REVIEW


def sh(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit_files(repo: Path, files: dict[str, str], message: str) -> str:
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    sh(repo, "add", "-A")
    sh(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    return sh(repo, "rev-parse", "HEAD")


def metrics(k_vip: int) -> dict:
    gold = [label for label in LABELS for _ in range(5)]
    preds = [MANUAL_REVIEW if g == MANUAL_REVIEW and i < k_vip else "REJECT_RISK"
             for i, g in enumerate(gold)]
    return {"model": "grpo", **compute_metrics(gold, preds)}


@pytest.fixture
def repo(tmp_path, committed_params, monkeypatch):
    """A git repo whose HEAD is a baseline, with two experiments of the reward study on it."""
    root = tmp_path / "repo"
    root.mkdir()
    sh(root, "init", "-q")
    monkeypatch.chdir(root)
    base = commit_files(root, {"dvc.yaml": "stages: {}\n", "params.yaml": OmegaConf.to_yaml(committed_params)},
                        "baseline")
    exps = {}
    for preset, k_vip in (("exact", 0), ("partial", 2)):
        params = OmegaConf.create(committed_params)
        params.grpo.reward = preset
        # partial: eval/ holds the full record, reports/metrics.json the summary; exact: the older layout,
        # where metrics/ held the full record (experiments kept from before eval/ existed).
        layout = ({"eval/grpo.json": json.dumps(metrics(k_vip)),
                   "reports/metrics.json": json.dumps({"grpo": summary_metrics(metrics(k_vip))})}
                  if preset == "partial" else {"metrics/grpo.json": json.dumps(metrics(k_vip))})
        files = {"params.yaml": OmegaConf.to_yaml(params),
                 **layout,
                 "logs/grpo/metrics.json": json.dumps({"vip": {"samples": 40, "manual_review_samples": k_vip},
                                                       "train": {"runtime": 12.5}}),
                 "logs/grpo/plots/metrics/frac_reward_zero_std.tsv": "step\tfrac_reward_zero_std\n5\t1.0\n10\t0.5\n",
                 "logs/grpo/plots/metrics/num_tokens.tsv": "step\tnum_tokens\n5\t100.0\n10\t200.0\n",
                 "logs/grpo/plots/metrics/val/accuracy.tsv": "step\taccuracy\n0\t0.25\n10\t0.5\n",
                 "logs/grpo/plots/metrics/val/vip_accuracy.tsv": "step\tvip_accuracy\n0\t0.0\n10\t0.125\n"}
        sh(root, "checkout", "-q", "--detach", base)
        exps[preset] = commit_files(root, files, f"exp {preset}")
        sh(root, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/reward-{preset}", exps[preset])
        sh(root, "checkout", "-q", "-")
    sh(root, "checkout", "-q", "--detach", base)
    return root, base, exps


def test_every_study_names_valid_runs_and_stages():
    from ruamel.yaml import YAML

    stages = YAML(typ="safe").load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]
    names = set(stages) | {f"eval@{m}" for m in stages["eval"]["foreach"]}
    all_studies = study.studies(n_seeds=3, first_seed=7)
    assert list(all_studies["seeds"].runs) == ["seed7", "seed8", "seed9"]
    assert all_studies["seeds"].runs["seed8"] == {"seed": "8", "base.seed": "8"}
    assert all_studies["data"].runs["n8000"] == {"generate.n": "8000"}
    assert {r["grpo.reward"] for r in all_studies["reward"].runs.values()} == {"exact", "scripts", "partial"}
    assert all_studies["prior"].runs["default"] == {}
    for spec in all_studies.values():
        for run, overrides in spec.runs.items():
            assert set(spec.targets_of(run)) <= names
            assert set(spec.stages_of(run)) <= set(stages)
            assert set(overrides) <= set(study.PARAM_KEYS)
    # The recipe search: equal candidates and the same maximum epochs per method, held-out validation,
    # each candidate trains only its own method's stage.
    tune = all_studies["tune"]
    by_method = {m: [r for r in tune.runs if r.startswith(f"{m}-")] for m in ("sft", "grpo")}
    assert len(by_method["sft"]) == len(by_method["grpo"]) >= 6
    for m, runs in by_method.items():
        assert max(float(tune.runs[r][f"{m}.num_train_epochs"]) for r in runs) == study.TUNE_MAX_EPOCHS
        for r in runs:
            assert tune.runs[r]["split.holdout_val"] == "true" and tune.targets_of(r) == (m,)
    assert {float(tune.runs[r]["grpo.lr"]) for r in by_method["grpo"]} >= {1e-4, 1e-3}


def test_collect_reads_each_experiment_from_its_own_commit(repo):
    root, base, exps = repo
    spec = study.Study("d", {"exact": {"grpo.reward": "exact"}, "partial": {"grpo.reward": "partial"}},
                       ("eval@grpo",), ("grpo", "hybrid"), ("grpo",))
    records = study.collect("reward", spec, base, {"exact": 3.0}, threads="1")
    exact, partial = records
    assert exact["commit"] == exps["exact"] and partial["commit"] == exps["partial"]
    assert exact["params"]["grpo.reward"] == "exact" and partial["params"]["grpo.reward"] == "partial"
    assert exact["params"]["generate.n"] == 800
    assert exact["wall_time_s"] == 3.0 and partial["wall_time_s"] is None
    assert exact["threads"] == "1" and partial["threads"] is None  # timed now, with these torch threads
    assert list(partial["metrics"]) == ["grpo"]  # hybrid has no metrics file in the experiment
    assert partial["metrics"]["grpo"]["vip_accuracy"]["correct"] == 2  # from eval/grpo.json
    assert exact["metrics"]["grpo"] == metrics(0)  # from metrics/grpo.json, the older layout
    assert partial["training"]["grpo"] == {
        "runtime_s": 12.5, "mean_frac_reward_zero_std": 0.75, "vip_samples": 40, "vip_manual_review_samples": 2,
        "non_vip_samples": None, "non_vip_manual_review_samples": None, "steps": None, "num_tokens": None,
        "val_curve": [{"step": 0, "accuracy": 0.25, "vip_accuracy": 0.0},
                      {"step": 10, "accuracy": 0.5, "vip_accuracy": 0.125}],
        "tokens_curve": [{"step": 5, "num_tokens": 100.0}, {"step": 10, "num_tokens": 200.0}],
        "vip_manual_review_curve": []}


def test_find_experiment_prefers_the_current_baseline(repo):
    root, base, exps = repo
    other = "f" * 40
    sh(root, "update-ref", f"refs/exps/ff/{'f' * 38}/reward-exact", exps["partial"])
    assert study.find_experiment("reward-exact", base) == exps["exact"]
    assert study.find_experiment("reward-exact", other) in (exps["exact"], exps["partial"])
    assert study.find_experiment("reward-nosuch", base) is None


def test_collect_only_writes_the_report_and_a_missing_run_is_a_clear_error(repo, monkeypatch):
    root, base, exps = repo
    with pytest.raises(DataError, match="no experiment named reward-scripts: run `fincorp study reward`"):
        study.run("reward", collect_only=True, out_dir=str(root / "out"))
    sh(root, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/reward-scripts", exps["exact"])
    study.run("reward", collect_only=True, out_dir=str(root / "out"))
    results = json.loads((root / "out/reward/results.json").read_text())
    assert [r["run"] for r in results["runs"]] == ["exact", "scripts", "partial"]
    assert results["meta"]["command"] == "fincorp study reward" and results["meta"]["baseline_commit"] == base
    assert (root / "out/reward/results.md").is_file()


def test_unknown_study_and_too_few_seeds(repo):
    with pytest.raises(DataError, match="unknown study 'nosuch'"):
        study.run("nosuch", collect_only=True)
    with pytest.raises(DataError, match="--n must be at least 2"):
        study.run("seeds", n_seeds=1, collect_only=True)


def test_experiments_already_run_on_this_commit_are_kept(repo, monkeypatch, capsys):
    root, base, exps = repo
    spec = study.Study("d", {"exact": {"grpo.reward": "exact"}, "partial": {"grpo.reward": "partial"}},
                       ("eval@grpo",), ("grpo",), ("grpo",))

    def no_dvc(*args, **kwargs):
        raise AssertionError(f"dvc was called: {args}")

    monkeypatch.setattr(study.subprocess, "call", no_dvc)
    assert study.run_experiments("reward", spec, base, queue=False, force=False) == {}
    assert "keeping reward-exact (already run on this commit; --force reruns it)" in capsys.readouterr().out
    assert study.find_experiment("reward-exact", "f" * 40, exact=True) is None
    # A later report keeps the wall time an earlier one measured for the same experiment commit.
    earlier = {"runs": [{"run": "exact", "commit": exps["exact"], "wall_time_s": 321.0, "threads": "1"},
                        {"run": "partial", "commit": "0" * 40, "wall_time_s": 99.0, "threads": "1"}]}
    exact, partial = study.collect("reward", spec, base, {}, earlier, threads="torch default")
    assert exact["wall_time_s"] == 321.0 and partial["wall_time_s"] is None
    assert exact["threads"] == "1" and partial["threads"] is None  # a different experiment commit


def test_an_experiment_from_an_earlier_commit_is_kept_only_if_it_ran_the_same_code_and_params(
        repo, committed_params, monkeypatch, capsys):
    """A long study resumes across commits that change docs or reports, never across a change of the code its
    stages ran or of the params a run would now get."""
    import hashlib

    root, base, exps = repo
    code = "print('grpo')\n"
    lock = {"schema": "2.0", "stages": {"grpo": {"cmd": "fincorp grpo", "deps": [
        {"path": "src/fincorp/grpo.py", "hash": "md5", "md5": hashlib.md5(code.encode()).hexdigest(), "size": 14}]}}}
    params = OmegaConf.create(committed_params)
    params.grpo.reward = "partial"
    params.grpo.temperature = 1.0
    sh(root, "checkout", "-q", "--detach", base)
    old = commit_files(root, {"src/fincorp/grpo.py": code, "params.yaml": OmegaConf.to_yaml(committed_params)},
                       "an older baseline")
    exp = commit_files(root, {"dvc.lock": json.dumps(lock), "params.yaml": OmegaConf.to_yaml(params)}, "exp")
    sh(root, "update-ref", f"refs/exps/{old[:2]}/{old[2:]}/reward-partial", exp)
    sh(root, "checkout", "-q", "--detach", old)
    now = commit_files(root, {"README.md": "docs only\n"}, "a later commit: docs only")
    overrides = {"grpo.reward": "partial", "grpo.temperature": "1.0"}
    assert study.same_run(exp, overrides)
    assert not study.same_run(exp, {"grpo.reward": "partial", "grpo.temperature": "1.5"})  # other params
    spec = study.Study("d", {"partial": overrides}, ("grpo",), ("grpo",), ("grpo",))
    monkeypatch.setattr(study.subprocess, "call", lambda *a, **k: (_ for _ in ()).throw(AssertionError(a)))
    assert study.run_experiments("reward", spec, now, queue=False, force=False) == {}
    assert f"keeping reward-partial (run on {exp[:8]} with the same code and params)" in capsys.readouterr().out
    (root / "src/fincorp/grpo.py").write_text("print('changed')\n")  # the code a stage runs changed
    assert not study.same_run(exp, overrides)
    monkeypatch.setattr(study.subprocess, "call", lambda *a, **k: 0)
    assert list(study.run_experiments("reward", spec, now, queue=False, force=False)) == ["partial"]


def test_a_run_whose_experiment_is_not_here_keeps_the_earlier_reports_record(repo):
    """A clone has no refs/exps/: collect keeps the committed report's record of a run it cannot read again,
    marked, and only for the same overrides (a changed run is not passed off as the old one)."""
    root, base, exps = repo
    spec = study.Study("d", {"exact": {"grpo.reward": "exact"}, "scripts": {"grpo.reward": "scripts"}},
                       ("eval@grpo",), ("grpo",), ("grpo",))
    old = {"run": "scripts", "experiment": "reward-scripts", "commit": "a" * 40,
           "overrides": {"grpo.reward": "scripts"}, "metrics": {"grpo": metrics(3)}, "wall_time_s": 50.0}
    exact, scripts = study.collect("reward", spec, base, {}, {"runs": [old]})
    assert exact["commit"] == exps["exact"] and not exact.get("from_report")
    assert scripts == {**old, "from_report": True}
    changed = {**old, "overrides": {"grpo.reward": "scripts", "grpo.lr": "1e-4"}}
    with pytest.raises(DataError, match="no experiment named reward-scripts"):
        study.collect("reward", spec, base, {}, {"runs": [changed]})
    from fincorp import study_report

    report = study_report.render_markdown({**study_report.compute("reward", [exact, scripts], {}), "figures": {}})
    assert "1 runs marked * are kept from the earlier report" in report and "| scripts * |" in report
