"""report.run on a hand-made set of three models: tables, article rows, paired tests, figures, errors.

The synthetic test set has 40 items, 10 per label. Answers are chosen so the paired tests have
known exact values:
  baseline  right on REJECT_RISK and STANDARD_LOAN only            20/40
  sft       baseline + every MANUAL_REVIEW item                    30/40  (10 discordant, all for sft)
  grpo      baseline + 3 MANUAL_REVIEW (7 invalid) - 1 STANDARD_LOAN 22/40 (3 for grpo, 1 for baseline)
McNemar exact p = 2 * P(Binomial(d, 1/2) <= min): 10 one way -> 2/2^10 = 0.001953125; 3 vs 1 -> 0.625;
8 one way (sft vs grpo) -> 2/2^8 = 0.0078125.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fincorp import report
from fincorp.eval import compute_metrics
from fincorp.jsonl import DataError, write_json, write_jsonl
from fincorp.rules import A_PLUS_TIER, LABELS, MANUAL_REVIEW, REJECT_RISK, STANDARD_LOAN
from fincorp.stats import wilson

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IDS = [f"APP-{i:04d}" for i in range(40)]
GOLD = [label for label in LABELS for _ in range(10)]  # ids 0-9 MANUAL_REVIEW, 10-19 REJECT_RISK, ...


def answers(model: str) -> list[str | None]:
    base = {MANUAL_REVIEW: STANDARD_LOAN, REJECT_RISK: REJECT_RISK, A_PLUS_TIER: STANDARD_LOAN,
            STANDARD_LOAN: STANDARD_LOAN}
    preds: list[str | None] = [base[g] for g in GOLD]
    if model == "sft":
        preds[:10] = [MANUAL_REVIEW] * 10
    if model == "grpo":
        preds[:10] = [MANUAL_REVIEW] * 3 + [None] * 7
        preds[39] = REJECT_RISK
    return preds


def write_project(root: Path, models=("baseline", "sft", "grpo")) -> dict[str, str]:
    """eval/, predictions/, logs/, models/, dvc.lock and params.yaml under root; run()'s path arguments.
    No telemetry/ (see write_telemetry)."""
    for m in models:
        preds = answers(m)
        write_json(root / "eval" / f"{m}.json", {"model": m, **compute_metrics(GOLD, preds)})
        write_jsonl(root / "predictions" / f"{m}.jsonl", [
            {"id": i, "label": g, "completion": json.dumps({"decision": p}), "prediction": p, "correct": p == g}
            for i, g, p in zip(IDS, GOLD, preds)])
    curves = root / "logs"
    (curves / "sft/plots/metrics").mkdir(parents=True)
    (curves / "sft/plots/metrics/loss.tsv").write_text(
        "step\tloss\n" + "".join(f"{s}\t{1.5 / s ** 0.5:.4f}\n" for s in range(10, 110, 10)))
    (curves / "grpo/plots/metrics/sampled_share").mkdir(parents=True)
    (curves / "grpo/plots/metrics/reward.tsv").write_text(
        "step\treward\n" + "".join(f"{s}\t{-0.5 + s / 100:.3f}\n" for s in range(5, 55, 5)))
    (curves / "grpo/plots/metrics/frac_reward_zero_std.tsv").write_text(
        "step\tfrac_reward_zero_std\n" + "".join(f"{s}\t{s / 60:.3f}\n" for s in range(5, 55, 5)))
    # Learning curves: the validation slice every 40 steps, and the tokens the trainer processed.
    for m, accs in (("sft", (0.25, 0.75, 0.96875)), ("grpo", (0.25, 0.3125, 0.375))):
        (curves / f"{m}/plots/metrics/val").mkdir(parents=True, exist_ok=True)
        (curves / f"{m}/plots/metrics/val/accuracy.tsv").write_text(
            "step\taccuracy\n" + "".join(f"{40 * i}\t{a}\n" for i, a in enumerate(accs)))
        (curves / f"{m}/plots/metrics/num_tokens.tsv").write_text(
            "step\tnum_tokens\n" + "".join(f"{s}\t{1000.0 * s}\n" for s in (40, 80)))
    for label, share in zip((*LABELS, "INVALID"), (0.1, 0.3, 0.15, 0.4, 0.05)):
        (curves / f"grpo/plots/metrics/sampled_share/{label}.tsv").write_text(
            f"step\t{label}\n" + "".join(f"{s}\t{share}\n" for s in range(5, 55, 5)))
    write_json(root / "models" / "base" / "meta.json",
               {"num_parameters": 744832, "source": "local", "versions": {"python": "3.11.7", "torch": "2.13.0+cpu"}})
    write_json(root / "models" / "sft" / "run.json",
               {"global_step": 640, "train_loss": 0.28, "params": {"lr": 0.003},
                "versions": {"python": "3.11.7", "trl": "0.27.2"}})
    (root / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n"
        "  split:\n    cmd: fincorp split\n"
        "    deps:\n    - path: data/applications.jsonl\n      hash: md5\n"
        "      md5: 0123456789abcdef0123456789abcdef\n      size: 10\n"
        "    outs:\n    - path: data/test.jsonl\n      hash: md5\n"
        "      md5: fedcba9876543210fedcba9876543210\n      size: 5\n"
        "  eval@sft:\n    cmd: fincorp eval sft\n"
        "    outs:\n    - path: models/sft\n      hash: md5\n"
        "      md5: 11112222333344445555666677778888.dir\n      size: 5\n      nfiles: 3\n"
        "  report:\n    cmd: fincorp report\n"
        "    outs:\n    - path: reports\n      hash: md5\n"
        "      md5: 99990000999900009999000099990000.dir\n")
    shutil.copy(Path(__file__).resolve().parents[1] / "params.yaml", root / "params.yaml")
    return {"params_path": str(root / "params.yaml"), "eval_dir": str(root / "eval"),
            "predictions_dir": str(root / "predictions"), "logs_dir": str(root / "logs"),
            "lock": str(root / "dvc.lock"), "models_dir": str(root / "models"), "telemetry_dir": str(root / "telemetry")}


def write_telemetry(root: Path) -> None:
    """telemetry/*.json as the stages write them (fincorp.model.write_telemetry), for two stages."""
    write_json(root / "telemetry" / "base.json",
               {"stage": "base", "wall_time_s": 76.4, "peak_memory_mib": 927.2, "host": "box", "git_commit": "f" * 40,
                "hardware": {"machine": "x86_64", "cpu_threads": 2}})
    write_json(root / "telemetry" / "eval-baseline.json",
               {"stage": "eval@baseline", "wall_time_s": 3.1, "generate_seconds": 0.7, "samples_per_second": 228.3,
                "peak_memory_mib": 566.3, "host": "box", "git_commit": "unknown",
                "hardware": {"machine": "x86_64", "cpu_threads": 2}})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict, str]:
    root = tmp_path_factory.mktemp("project")
    args = write_project(root)
    results = report.run(**args, out_dir=str(root / "reports"))
    return root / "reports", results, (root / "reports" / "results.md").read_text()


def cell(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def pair(results: dict, model: str, versus: str, subset: str) -> dict:
    return next(r for r in results["paired"]
                if (r["model"], r["versus"], r["subset"]) == (model, versus, subset))


def test_headline_rows(built):
    _, _, md = built
    assert md.startswith("# Results")
    assert "generated by `fincorp report`, do not edit" in md.lower()
    assert f"| baseline | 40 | {cell(20, 40)} | {cell(0, 10)} | 0.0% |" in md
    assert f"| sft | 40 | {cell(30, 40)} | {cell(10, 10)} | 0.0% |" in md
    assert f"| grpo | 40 | {cell(22, 40)} | {cell(3, 10)} | 17.5% |" in md


def test_metrics_json_is_the_dvc_metric(built):
    """reports/metrics.json: one entry per evaluated model, keyed <model>.<metric> for `dvc exp show`."""
    out, results, _ = built
    data = json.loads((out / "metrics.json").read_text())
    assert list(data) == ["baseline", "grpo", "sft"]  # hybrid not evaluated in this project; keys sorted
    assert data["grpo"] == {"acc": 22 / 40, "vip": 3 / 10, **{k: results["metrics"]["grpo"]["per_class"][label]["value"]
                                                             for label, k in report.CLASS_KEYS.items()},
                            "invalid": results["metrics"]["grpo"]["invalid_rate"],
                            "entropy": results["metrics"]["grpo"]["prediction_entropy_bits"]}


def test_article_rows_use_true_denominators(built):
    _, results, md = built
    assert cell(54, 160) == "54/160 = 33.8% [26.9, 41.4]"  # SEED-NOTES' interval
    assert f"| baseline | {cell(20, 40)} | {cell(54, 160)} | yes | {cell(0, 10)} | n/a | n/a |" in md
    for text in ("26/60 = 43.3% [31.6, 55.9]", "53/60 = 88.3% [77.8, 94.2]", "1/14 = 7.1% [1.3, 31.5]",
                 "12/14 = 85.7% [60.1, 96.0]"):
        assert text in md
    assert all(r["overlap"] is True for r in results["article"]
               if r["metric"] == "accuracy" and r["model"] in report.ARTICLE)
    # The article never ran the hybrid; here it is not evaluated either (no eval/hybrid.json).
    assert [r for r in results["article"] if r["model"] == "hybrid"] == [
        {"model": "hybrid", "metric": m, "ours": None, "article": None, "overlap": None}
        for m in ("accuracy", "vip_accuracy")]
    assert results["missing_models"] == {"hybrid": str(Path(results["missing_models"]["hybrid"]))}
    assert next(r for r in results["article"] if r["model"] == "baseline" and r["metric"] == "vip_accuracy") == {
        "model": "baseline", "metric": "vip_accuracy", "ours": results["metrics"]["baseline"]["vip_accuracy"],
        "article": None, "overlap": None}


def test_article_overlap():
    far = report.proportion(150, 160)  # [89.0, 96.6]: clear of the article's baseline [26.9, 41.4]
    rows = report.article_comparison({"baseline": {"accuracy": far, "vip_accuracy": far}}, ["baseline", "sft"])
    assert [(r["model"], r["metric"], r["overlap"]) for r in rows] == [
        ("baseline", "accuracy", False), ("baseline", "vip_accuracy", None),
        ("sft", "accuracy", None), ("sft", "vip_accuracy", None)]
    assert rows[2]["ours"] is None and rows[2]["article"]["correct"] == 53


def test_mcnemar_known_values(built):
    _, results, md = built
    sft_base = pair(results, "sft", "baseline", "all")
    assert sft_base["mcnemar"] == {"only_a_correct": 10, "only_b_correct": 0, "discordant": 10,
                                   "p_value": pytest.approx(0.001953125, abs=1e-12)}
    assert pair(results, "grpo", "baseline", "all")["mcnemar"]["p_value"] == pytest.approx(0.625, abs=1e-12)
    assert pair(results, "grpo", "sft", "all")["mcnemar"]["p_value"] == pytest.approx(0.0078125, abs=1e-12)
    assert pair(results, "sft", "baseline", "VIP")["mcnemar"]["p_value"] == pytest.approx(0.001953125, abs=1e-12)
    assert "| sft - baseline | all | 40 | 75.0% | 50.0% |" in md
    assert "| 10 | 0 | 10 | 0.001953 |" in md


def test_bootstrap_interval_contains_difference(built):
    _, results, _ = built
    for r in results["paired"]:
        b = r["bootstrap"]
        assert b["diff"] == pytest.approx(r["accuracy"] - r["accuracy_versus"])
        assert b["ci_low"] <= b["diff"] <= b["ci_high"]
    sft_base = pair(results, "sft", "baseline", "all")["bootstrap"]
    assert sft_base["diff"] == pytest.approx(0.25) and 0 < sft_base["ci_low"] < 0.25 < sft_base["ci_high"]
    # VIP: sft right on all 10, baseline on none: no variation, the interval is the point.
    assert pair(results, "sft", "baseline", "VIP")["bootstrap"] == {"diff": 1.0, "ci_low": 1.0, "ci_high": 1.0}


def test_figures_are_pngs_and_linked(built):
    out, results, md = built
    for name in ("accuracy.png", "confusion.png", "sft_loss.png", "grpo_reward.png", "grpo_label_share.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
        assert results["figures"][name] == "written"
        assert f"]({name})" in md


def test_recipe_and_budget_table_and_learning_curves(built):
    out, results, md = built
    sft, grpo = results["budget"][0], results["budget"][1]
    assert [b["model"] for b in results["budget"]] == ["sft", "grpo"]  # the trained models evaluated here
    assert sft["optimizer_steps"] == 640 and sft["tokens_processed"] == 80000.0
    assert (sft["val_first"], sft["val_last"]) == (0.25, 0.96875)
    assert sft["samples_per_prompt"] == 1 and grpo["samples_per_prompt"] == 8
    assert grpo["prompts_per_step"] == 16 * 4 // 8 and grpo["optimizer_steps"] is None  # no run.json here
    assert "## 2. Recipes and training budgets" in md
    assert "| sft | 0.003 | cosine, 10 warmup | 4 | 640 | 8 | 1 | n/a | 0.08 | 25.0% -> 96.9% |" in md
    assert "lr 1e-5, 4 epochs, 8 generations" in md
    assert results["figures"]["learning_curves.png"] == "written"
    assert (out / "learning_curves.png").read_bytes().startswith(PNG_SIGNATURE)


def test_distribution_and_per_class(built):
    _, _, md = built
    assert "| grpo | 7.5% | 27.5% | 0.0% | 47.5% | 17.5% |" in md
    assert "| gold | 25.0% | 25.0% | 25.0% | 25.0% | 0.0% | 2.00 |" in md
    assert f"| sft | {cell(10, 10)} | {cell(10, 10)} | {cell(0, 10)} | {cell(10, 10)} |" in md


def test_provenance(built):
    _, results, md = built
    assert "- profile: `cpu`" in md
    assert "seed 42 (training, evaluation, bootstrap), generate.seed 20251201, split.seed 20251202" in md
    assert "| split | dep | data/applications.jsonl | 01234567 |" in md
    assert "| eval@sft | out | models/sft | 11112222 (dir) |" in md
    assert "99990000" not in md  # the report's own (stale) lock entry is left out
    assert "/run.json | global_step=640, train_loss=0.28 |" in md
    assert "/meta.json | num_parameters=744832 |" in md
    assert "/grpo/run.json | not available |" in md
    assert "| trl | - | 0.27.2 |" in md
    assert "git_commit" not in results["provenance"] and "git commit" not in md


def test_telemetry_goes_to_its_own_page(tmp_path, built):
    """Telemetry is rendered into telemetry.md when present, never into results.*, and its page is removed
    when there is none (an earlier run's timings are never shown as this one's)."""
    out, _, _ = built
    args = write_project(tmp_path)
    write_telemetry(tmp_path)
    report.run(**args, out_dir=str(tmp_path / "reports"))
    page = (tmp_path / "reports" / "telemetry.md").read_text()
    assert page.startswith("# Telemetry")
    assert "| base | " in page and "/base.json | 76.4 | 927.2 |  | box | ffffffffffff |" in page
    assert "| eval@baseline | " in page and "| 3.1 | 566.3 | generate_seconds=0.7, samples_per_second=228.3 |" in page
    assert "| eval@baseline | cpu_threads=2, machine=x86_64 |" in page
    for name in ("results.md", "results.json"):  # byte-identical to the report built without telemetry
        assert ((tmp_path / "reports" / name).read_text().replace(str(tmp_path), "ROOT")
                == (out / name).read_text().replace(str(out.parent), "ROOT"))
    shutil.rmtree(tmp_path / "telemetry")
    report.run(**args, out_dir=str(tmp_path / "reports"))
    assert not (tmp_path / "reports" / "telemetry.md").exists()
    assert not (out / "telemetry.md").exists()


def test_deterministic(tmp_path, built):
    out, _, _ = built
    args = write_project(tmp_path)
    report.run(**args, out_dir=str(tmp_path / "again"))
    for name in ("results.md", "results.json"):
        first = (out / name).read_text().replace(str(out.parent), "ROOT")
        again = (tmp_path / "again" / name).read_text().replace(str(tmp_path), "ROOT")
        assert first == again
    assert (out / "accuracy.png").read_bytes() == (tmp_path / "again" / "accuracy.png").read_bytes()


def test_results_json_matches_markdown(built):
    out, results, _ = built
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert (out / "results.json").read_text() == json.dumps(results, indent=2, sort_keys=True) + "\n"


def test_missing_grpo_still_builds(tmp_path):
    args = write_project(tmp_path, models=("baseline", "sft"))
    shutil.rmtree(tmp_path / "logs" / "grpo")
    (tmp_path / "dvc.lock").unlink()
    results = report.run(**args, out_dir=str(tmp_path / "reports"))
    md = (tmp_path / "reports" / "results.md").read_text()
    assert "Missing: **grpo** has no metrics" in md
    assert "| grpo | not run | 26/60 = 43.3% [31.6, 55.9] | n/a |" in md
    assert [(r["model"], r["versus"]) for r in results["paired"]] == [("sft", "baseline")] * 2
    assert "### grpo_reward.png\n\nnot drawn:" in md and "run `dvc repro grpo`" in md
    assert not (tmp_path / "reports" / "grpo_reward.png").exists()
    assert (tmp_path / "reports" / "sft_loss.png").is_file()
    assert "not available (" in md  # dvc.lock


def test_stale_figure_removed(tmp_path):
    args = write_project(tmp_path)
    report.run(**args, out_dir=str(tmp_path / "reports"))
    assert (tmp_path / "reports" / "grpo_reward.png").is_file()
    (tmp_path / "logs" / "grpo" / "plots" / "metrics" / "reward.tsv").unlink()
    report.run(**args, out_dir=str(tmp_path / "reports"))
    assert not (tmp_path / "reports" / "grpo_reward.png").exists()


def test_mismatched_ids_is_an_error(tmp_path):
    args = write_project(tmp_path, models=("baseline", "sft"))
    path = tmp_path / "predictions" / "sft.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1] + [lines[-1].replace("APP-0039", "APP-9999")]) + "\n")
    with pytest.raises(DataError, match=r"cover different test items \(1 ids only in sft, e.g. APP-9999; "
                                        r"1 only in baseline, e.g. APP-0039\); paired tests need the same items"):
        report.run(**args, out_dir=str(tmp_path / "reports"))
    assert not (tmp_path / "reports").exists()


def test_predictions_disagreeing_with_metrics_is_an_error(tmp_path):
    args = write_project(tmp_path, models=("baseline", "sft"))
    path = tmp_path / "predictions" / "sft.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(DataError, match=r"39 rows with 29 correct, but .*eval/sft.json says n=40"):
        report.run(**args, out_dir=str(tmp_path / "reports"))


def test_no_metrics_at_all(tmp_path):
    args = write_project(tmp_path, models=("baseline",))
    (tmp_path / "eval" / "baseline.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no eval record \(metrics\) for any of baseline, sft, grpo"):
        report.run(**args, out_dir=str(tmp_path / "reports"))


def test_bad_tsv_names_file_and_line(tmp_path):
    path = tmp_path / "loss.tsv"
    path.write_text("step\tloss\n10\t0.5\n20\tabc\n")
    with pytest.raises(DataError, match=r"loss.tsv:3:"):
        report.read_tsv(path, "loss")
    assert report.read_tsv(tmp_path / "absent.tsv", "loss") is None
