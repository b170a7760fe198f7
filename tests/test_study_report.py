"""study_report.write on hand-made records for each study: exact numbers, n/a cells, files, errors.

Every metrics file is built with eval.compute_metrics on a synthetic test set: `vip` MANUAL_REVIEW
items and `other` STANDARD_LOAN items, the model right on the first k of each (wrong answers are
STANDARD_LOAN on VIP items and REJECT_RISK elsewhere), so every accuracy below is known by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from fincorp import study_report
from fincorp.eval import compute_metrics
from fincorp.rules import MANUAL_REVIEW, REJECT_RISK, STANDARD_LOAN
from fincorp.stats import wilson

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
T_975_2 = 4.302653  # scipy.stats.t.ppf(0.975, 2)
META = {"study": "x", "description": "A synthetic study.", "command": "fincorp study x",
        "baseline_commit": "abc123", "wall_time_s": 1234.5, "threads": "4"}


def metrics(model: str, vip: tuple[int, int], other: tuple[int, int], invalid: int = 0,
            log10_p_mr: float | None = None) -> dict[str, Any]:
    """vip = (right, n) on MANUAL_REVIEW items, other = (right, n) on STANDARD_LOAN items; `invalid` of
    the wrong non-VIP answers are unparseable."""
    (vk, vn), (ok, on) = vip, other
    labels = [MANUAL_REVIEW] * vn + [STANDARD_LOAN] * on
    preds: list[str | None] = ([MANUAL_REVIEW] * vk + [STANDARD_LOAN] * (vn - vk) + [STANDARD_LOAN] * ok
                               + [REJECT_RISK] * (on - ok - invalid) + [None] * invalid)
    m = {"model": model, **compute_metrics(labels, preds)}
    if log10_p_mr is not None:
        m["vip_label_probability"] = {MANUAL_REVIEW: {"mean": 10 ** log10_p_mr, "log10_mean": log10_p_mr}}
    return m


def record(run: str, metrics_: dict[str, dict], training: dict | None = None, overrides: dict | None = None,
           wall_time_s: float | None = 300.0, **params: Any) -> dict[str, Any]:
    return {"run": run, "experiment": f"study-{run}", "commit": "0123456789abcdef" * 2 + "01234567",
            "overrides": overrides or {}, "wall_time_s": wall_time_s, "metrics": metrics_,
            "training": training or {},
            "params": {"seed": 42, "generate.n": 800, "grpo.reward": "exact", **params}}


def grpo_training(zero_std: float | None = 0.9, mr: int | None = 0, samples: int | None = 1280) -> dict:
    return {"runtime_s": 80.0, "mean_frac_reward_zero_std": zero_std, "vip_samples": samples,
            "vip_manual_review_samples": mr}


def read_outputs(out: Path) -> tuple[dict[str, Any], str]:
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


# --- across_seeds -----------------------------------------------------------------------------------

def test_across_seeds_known_numbers():
    s = study_report.across_seeds([0.3, 0.35, 0.4])
    half = T_975_2 * 0.05 / math.sqrt(3)
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(0.35)
    assert s["sd"] == pytest.approx(0.05)
    assert s["ci95_low"] == pytest.approx(0.35 - half, abs=1e-7)
    assert s["ci95_high"] == pytest.approx(0.35 + half, abs=1e-7)
    assert (s["min"], s["max"]) == (0.3, 0.4)


def test_across_seeds_one_value_has_no_interval_and_none_is_skipped():
    s = study_report.across_seeds([None, 0.5])
    assert s == {"n": 1, "mean": 0.5, "sd": None, "ci95_low": None, "ci95_high": None, "min": 0.5, "max": 0.5}
    assert study_report.across_seeds([])["mean"] is None


def test_across_seeds_equal_values_give_zero_width():
    s = study_report.across_seeds([0.1, 0.1, 0.1, 0.1])
    assert s["sd"] == 0.0
    assert s["ci95_low"] == s["ci95_high"] == s["mean"] == 0.1


# --- seeds ------------------------------------------------------------------------------------------

def seeds_records() -> list[dict[str, Any]]:
    # accuracy on 20 items: baseline .25 every seed; sft .9/.85/.8; grpo .3/.35/.4
    plan = {42: ((10, 8), (0, 6)), 43: ((9, 8), (0, 7)), 44: ((10, 6), (1, 7))}
    out = []
    for seed, ((sv, so), (gv, go)) in plan.items():
        out.append(record(f"seed{seed}", {
            "baseline": metrics("baseline", (0, 10), (5, 10)),
            "sft": metrics("sft", (sv, 10), (so, 10)),
            "grpo": metrics("grpo", (gv, 10), (go, 10)),
        }, training={"grpo": grpo_training(zero_std=None if seed == 44 else (0.9 if seed == 42 else 0.8))},
            overrides={"seed": str(seed)}, seed=seed))
    return out


def test_seeds_study(tmp_path: Path):
    out = tmp_path / "seeds"
    results = study_report.write(out, "seeds", seeds_records(), META)
    data, md = read_outputs(out)
    assert data == results
    assert set(data) == {"study", "meta", "models", "runs", "summary", "differences", "per_seed", "figures"}
    assert data["models"] == ["baseline", "sft", "grpo"]
    assert data["meta"] == META
    assert [r["run"] for r in data["runs"]] == ["seed42", "seed43", "seed44"]

    grpo = data["summary"]["grpo"]["accuracy"]
    assert grpo["mean"] == pytest.approx(0.35) and grpo["sd"] == pytest.approx(0.05)
    assert grpo["ci95_high"] - grpo["mean"] == pytest.approx(T_975_2 * 0.05 / math.sqrt(3), abs=1e-7)
    base = data["summary"]["baseline"]["accuracy"]
    assert base["sd"] == 0.0 and base["ci95_low"] == base["ci95_high"] == pytest.approx(0.25)
    assert data["summary"]["sft"]["vip_accuracy"]["mean"] == pytest.approx(29 / 30)
    zero_std = data["summary"]["grpo"]["mean_frac_reward_zero_std"]
    assert zero_std["n"] == 2 and zero_std["mean"] == pytest.approx(0.85)
    assert "mean_frac_reward_zero_std" not in data["summary"]["sft"]

    diffs = {(d["a"], d["b"], d["metric"]): d for d in data["differences"]}
    assert set(diffs) == {("sft", "grpo", "accuracy"), ("sft", "grpo", "vip_accuracy"),
                          ("grpo", "baseline", "accuracy"), ("grpo", "baseline", "vip_accuracy")}  # no hybrid
    d = diffs["sft", "grpo", "accuracy"]
    assert d["per_run"] == pytest.approx({"seed42": 0.6, "seed43": 0.5, "seed44": 0.4})
    assert d["summary"]["mean"] == pytest.approx(0.5) and d["summary"]["sd"] == pytest.approx(0.1)
    assert d["summary"]["ci95_low"] == pytest.approx(0.5 - T_975_2 * 0.1 / math.sqrt(3), abs=1e-7)
    assert diffs["grpo", "baseline", "accuracy"]["summary"]["mean"] == pytest.approx(0.1)
    assert data["per_seed"][1] == {"run": "seed43", "seed": 43, "values": {
        "baseline": {"accuracy": 0.25, "vip_accuracy": 0.0}, "sft": {"accuracy": 0.85, "vip_accuracy": 0.9},
        "grpo": {"accuracy": 0.35, "vip_accuracy": 0.0}}}

    assert (out / "seeds.png").read_bytes().startswith(PNG_SIGNATURE)
    assert data["figures"] == {"seeds.png": "written"}
    assert "| grpo | accuracy | 3 | 35.0% | 5.0% | [22.6%, 47.4%] | 30.0% | 40.0% |" in md
    assert "| sft - grpo | accuracy | 3 | +50.0 pp | 10.0 pp | [+25.2 pp, +74.8 pp] | +40.0 pp | +60.0 pp |" in md
    assert "| grpo | mean_frac_reward_zero_std | 2 | 85.0% |" in md
    assert "| seed43 | 43 | 25.0% | 0.0% | 85.0% | 90.0% | 35.0% | 0.0% |" in md
    assert "A synthetic study." in md and "`fincorp study x`" in md and "`abc123`" in md
    assert "- study wall time (s): 1234.5" in md and "- threads: 4" in md


def test_seeds_single_run_renders_na(tmp_path: Path):
    results = study_report.write(tmp_path, "seeds", seeds_records()[:1], META)
    assert results["summary"]["grpo"]["accuracy"]["ci95_low"] is None
    md = (tmp_path / "results.md").read_text()
    assert "| grpo | accuracy | 1 | 30.0% | n/a | n/a | 30.0% | 30.0% |" in md


# --- reward -----------------------------------------------------------------------------------------

def reward_records() -> list[dict[str, Any]]:
    return [
        record("exact", {"grpo": metrics("grpo", (0, 10), (6, 10)), "hybrid": metrics("hybrid", (8, 10), (8, 10))},
               training={"grpo": grpo_training(0.9, 0, 1280), "hybrid": grpo_training(0.5, 640, 1280)},
               **{"grpo.reward": "exact"}),
        record("scripts", {"grpo": metrics("grpo", (2, 10), (6, 10), invalid=2)},
               training={"grpo": grpo_training(0.7, 128, 1280)}, wall_time_s=None, **{"grpo.reward": "scripts"}),
        record("partial", {"grpo": metrics("grpo", (1, 10), (7, 10))},
               training={"grpo": grpo_training(None, None, None)}, **{"grpo.reward": "partial"}),
    ]


def test_reward_study(tmp_path: Path):
    out = tmp_path / "reward"
    study_report.write(out, "reward", reward_records(), META)
    data, md = read_outputs(out)
    assert set(data) == {"study", "meta", "models", "runs", "rl_models", "rows", "figures"}
    assert data["rl_models"] == ["grpo", "hybrid"]
    assert [(r["run"], r["preset"]) for r in data["rows"]] == [("exact", "exact"), ("scripts", "scripts"),
                                                                ("partial", "partial")]
    scripts = data["rows"][1]["grpo"]
    assert scripts["accuracy"]["correct"] == 8 and scripts["vip_accuracy"]["value"] == 0.2
    assert scripts["vip_manual_review_share"] == 0.1 and scripts["invalid_rate"] == 0.1
    assert data["rows"][1]["hybrid"]["accuracy"] is None  # hybrid not run here
    assert data["rows"][2]["grpo"]["mean_frac_reward_zero_std"] is None
    assert (out / "reward.png").read_bytes().startswith(PNG_SIGNATURE)

    lo, hi = wilson(8, 20)
    assert f"| scripts | scripts | 8/20 = 40.0% [{100 * lo:.1f}, {100 * hi:.1f}] |" in md
    assert "| 70.0% | 128/1280 = 10.0% | 10.0% |" in md
    assert "| 640/1280 = 50.0% |" in md  # hybrid table
    assert "| partial | partial | 8/20 = 40.0%" in md and "| n/a | n/a | 0.0% |" in md
    assert "| scripts | n/a | n/a | n/a | n/a | n/a | n/a |" in md  # hybrid row of a run without hybrid
    assert "n/a (not timed: restored from cache" in md


# --- prior ------------------------------------------------------------------------------------------

def prior_record(run: str, share: str, log10_p: float | None, grpo_vip: int, mr: int,
                 lr: float = 1e-4) -> dict[str, Any]:
    return record(run, {"baseline": metrics("baseline", (0, 10), (5, 10), log10_p_mr=log10_p),
                        "grpo": metrics("grpo", (grpo_vip, 10), (6, 10),
                                        log10_p_mr=None if log10_p is None else log10_p + 1)},
                  training={"grpo": grpo_training(0.9, mr, 1000)},
                  overrides={"base.prior.manual_review_share": share}, **{"grpo.lr": lr})


def test_prior_study_sorts_by_base_probability_and_names_the_sharpest_prior_with_vip(tmp_path: Path):
    records = [prior_record("strong", "0.1", -2.0, 5, 300), prior_record("old", "0.2", None, 9, 500),
               prior_record("none", "0.0", -8.0, 0, 0), prior_record("weak", "0.01", -4.0, 2, 40)]
    out = tmp_path / "prior"
    study_report.write(out, "prior", records, META)
    data, md = read_outputs(out)
    assert set(data) == {"study", "meta", "models", "runs", "rows", "sharpest_prior_with_vip",
                         "with_base_probability", "not_plotted", "figures"}
    assert [r["run"] for r in data["rows"]] == ["none", "weak", "strong", "old"]
    [sharpest] = data["sharpest_prior_with_vip"]
    assert sharpest["grpo_lr"] == 1e-4 and sharpest["runs"] == 3 and sharpest["run"] == "weak"
    assert sharpest["log10_p_manual_review_vip"] == -4.0
    assert data["not_plotted"] == ["old"] and data["with_base_probability"] == 3
    weak = data["rows"][1]
    assert weak["overrides"] == "base.prior.manual_review_share=0.01"
    assert weak["grpo"]["vip_manual_review_share"] == 0.04
    assert weak["grpo"]["log10_p_manual_review_vip"] == -3.0
    assert (out / "prior.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "base log10 P(MANUAL_REVIEW | VIP) = -4.00 (run `weak`" in md
    assert "| weak | base.prior.manual_review_share=0.01 | 0.0001 | 0.0001 | -4.00 | 5/20 = 25.0%" in md
    assert "| 40/1000 = 4.0% | 0.001 | -3.00 |" in md
    assert "| old | base.prior.manual_review_share=0.2 | 0.0001 | n/a | n/a |" in md
    assert "Not plotted (no base P(MANUAL_REVIEW | VIP) in their baseline metrics): old." in md


def test_prior_study_never_reached(tmp_path: Path):
    records = [prior_record("a", "0.0", -8.0, 0, 0), prior_record("b", "0.01", -4.0, 0, 3),
               prior_record("a-fast", "0.0", -8.0, 0, 0, lr=1e-3), prior_record("b-fast", "0.01", -4.0, 1, 3, lr=1e-3)]
    records[1]["overrides"] = {}
    results = study_report.write(tmp_path, "prior", records, META)
    slow, fast = results["sharpest_prior_with_vip"]
    assert (slow["grpo_lr"], slow["runs"], slow["run"]) == (1e-4, 2, None)
    assert (fast["grpo_lr"], fast["runs"], fast["run"]) == (1e-3, 2, "b-fast")
    md = (tmp_path / "results.md").read_text()
    assert "- GRPO lr 0.0001: never reached VIP accuracy > 0 in its 2 runs." in md
    assert "- GRPO lr 0.001: the sharpest prior at which GRPO reached VIP accuracy > 0 is base log10" in md
    assert "| b | defaults | 0.0001 |" in md


def test_prior_without_any_probability_draws_no_figure(tmp_path: Path):
    (tmp_path / "prior.png").write_bytes(PNG_SIGNATURE)  # from an earlier study run
    results = study_report.write(tmp_path, "prior", [prior_record("old", "0.2", None, 1, 5)], META)
    assert results["figures"]["prior.png"].startswith("not drawn")
    assert not (tmp_path / "prior.png").exists()
    assert results["figures"]["prior.png"] in (tmp_path / "results.md").read_text()


# --- data -------------------------------------------------------------------------------------------

def data_records() -> list[dict[str, Any]]:
    return [
        record("n400", {"baseline": metrics("baseline", (0, 5), (5, 15)), "sft": metrics("sft", (3, 5), (7, 15))},
               training={"sft": {"runtime_s": 60.0}}, **{"generate.n": 400}),
        record("n800", {"baseline": metrics("baseline", (0, 10), (10, 30)), "sft": metrics("sft", (8, 10), (22, 30))},
               training={"sft": {"runtime_s": None}}, **{"generate.n": 800}),
        record("n1600", {"baseline": metrics("baseline", (1, 20), (20, 60))},
               training={"sft": {"runtime_s": 240.0}}, **{"generate.n": 1600}),
    ]


def test_data_study(tmp_path: Path):
    out = tmp_path / "data"
    study_report.write(out, "data", data_records(), META)
    data, md = read_outputs(out)
    assert set(data) == {"study", "meta", "models", "runs", "reference", "rows", "stages", "training", "changes",
                         "figures"}
    assert data["reference"] == "n400" and data["stages"] == ["sft"]
    assert [(r["model"], r["run"], r["generate_n"], r["n"]) for r in data["rows"]] == [
        ("baseline", "n400", 400, 20), ("baseline", "n800", 800, 40), ("baseline", "n1600", 1600, 80),
        ("sft", "n400", 400, 20), ("sft", "n800", 800, 40), ("sft", "n1600", 1600, None)]
    assert data["training"][1] == {"run": "n800", "generate_n": 800, "wall_time_s": 300.0,
                                   "runtime_s": {"sft": None}}

    changes = {(c["model"], c["metric"], c["run"]): c for c in data["changes"]}
    assert len(changes) == 8  # 2 models x 2 later runs x 2 metrics
    c = changes["sft", "accuracy", "n800"]
    assert c["reference"] == "n400" and c["value"] == 0.75 and c["reference_value"] == 0.5
    assert c["diff"] == pytest.approx(0.25)
    lo, hi = confint_proportions_2indep(30, 40, 10, 20, method="newcomb", compare="diff")
    assert (c["ci95_low"], c["ci95_high"]) == (pytest.approx(float(lo)), pytest.approx(float(hi)))
    (a_lo, a_hi), (r_lo, r_hi) = wilson(30, 40), wilson(10, 20)
    assert c["width_ratio"] == pytest.approx((a_hi - a_lo) / (r_hi - r_lo))
    assert changes["baseline", "vip_accuracy", "n1600"]["diff"] == pytest.approx(0.05)
    missing = changes["sft", "accuracy", "n1600"]
    assert missing["value"] is None and missing["diff"] is None and missing["width_ratio"] is None
    assert all(isinstance(v, float) for v in (c["ci95_low"], c["ci95_high"], c["width_ratio"]))

    assert (out / "data.png").read_bytes().startswith(PNG_SIGNATURE)
    assert f"| sft | accuracy | n800 | 75.0% | 50.0% | +25.0 pp [{100 * lo:+.1f} pp, {100 * hi:+.1f} pp] |" in md
    assert "| sft | n1600 | 1600 | n/a | n/a | n/a | n/a | n/a |" in md
    assert "| n800 | 800 | n/a | 300.0 |" in md
    assert "| sft | accuracy | n1600 | n/a | 50.0% | n/a | n/a |" in md


# --- errors, stale files, determinism ---------------------------------------------------------------

def test_unknown_study_empty_records_and_duplicate_runs_raise(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown study 'sizes'"):
        study_report.write(tmp_path, "sizes", data_records(), META)
    with pytest.raises(ValueError, match="no records"):
        study_report.write(tmp_path, "seeds", [], META)
    with pytest.raises(ValueError, match="unique"):
        study_report.write(tmp_path, "seeds", seeds_records()[:1] * 2, META)
    assert not (tmp_path / "results.json").exists()


def test_stale_png_removed_and_output_deterministic(tmp_path: Path):
    out = tmp_path / "study"
    out.mkdir()
    (out / "reward.png").write_bytes(PNG_SIGNATURE)  # an earlier study's figure
    study_report.write(out, "seeds", seeds_records(), META)
    first = {name: (out / name).read_bytes() for name in ("results.json", "results.md", "seeds.png")}
    assert sorted(p.name for p in out.glob("*.png")) == ["seeds.png"]
    study_report.write(out, "seeds", seeds_records(), META)
    assert {name: (out / name).read_bytes() for name in first} == first


def test_records_with_numpy_values_become_plain_json(tmp_path: Path):
    np = pytest.importorskip("numpy")
    records = reward_records()
    records[0]["training"]["grpo"]["mean_frac_reward_zero_std"] = np.float64(0.25)
    records[0]["training"]["grpo"]["vip_samples"] = np.int64(100)
    results = study_report.write(tmp_path, "reward", records, META)
    g = results["rows"][0]["grpo"]
    assert type(g["mean_frac_reward_zero_std"]) is float and type(g["vip_samples"]) is int
    assert json.loads((tmp_path / "results.json").read_text()) == results


# --- tune: candidate selection on synthetic records -------------------------------------------------

def candidate(run: str, acc: float | None, tokens: float | None) -> dict[str, Any]:
    return {"run": run, "num_tokens": tokens,
            "val_accuracy": None if acc is None else {"value": acc, "correct": round(acc * 128), "n": 128}}


def test_select_winner_best_validation_accuracy_then_fewer_tokens_then_name():
    assert study_report.select_winner([candidate("a", 0.5, 10.0), candidate("b", 0.75, 99.0)]) == "b"
    # A tie on accuracy: the cheaper run wins, whatever the order.
    tie = [candidate("lr3e-3", 0.96875, 3.0e5), candidate("lr1e-3", 0.96875, 2.0e5), candidate("x", 0.5, 1.0)]
    assert study_report.select_winner(tie) == "lr1e-3"
    assert study_report.select_winner(list(reversed(tie))) == "lr1e-3"
    # Same accuracy and tokens: the first name in sort order; unknown tokens lose a tie.
    assert study_report.select_winner([candidate("b", 0.5, 1.0), candidate("a", 0.5, 1.0)]) == "a"
    assert study_report.select_winner([candidate("a", 0.5, None), candidate("b", 0.5, 7.0)]) == "b"
    # No score, no win; nothing scored, no winner.
    assert study_report.select_winner([candidate("a", None, 1.0), candidate("b", 0.25, 9.0)]) == "b"
    assert study_report.select_winner([candidate("a", None, 1.0)]) is None


def tune_record(run: str, curve: list[tuple[int, float, float]], lr: float, epochs: float,
                temperature: float = 1.0, tokens: float = 1000.0) -> dict[str, Any]:
    method = run.split("-")[0]
    training = {method: {"steps": curve[-1][0], "num_tokens": tokens,
                         "val_curve": [{"step": s, "accuracy": a, "vip_accuracy": v} for s, a, v in curve],
                         "tokens_curve": [{"step": curve[-1][0], "num_tokens": tokens}]}}
    return record(run, {}, training, wall_time_s=60.0, **{"split.val_size": 128, f"{method}.lr": lr,
                                                           f"{method}.num_train_epochs": epochs,
                                                           "grpo.temperature": temperature})


def test_tune_report_lists_every_candidate_and_the_winner_per_method(tmp_path):
    records = [
        tune_record("sft-a", [(0, 0.25, 0.0), (40, 0.90625, 0.75), (80, 0.96875, 1.0)], 1e-3, 4, tokens=2e5),
        tune_record("sft-b", [(0, 0.25, 0.0), (40, 0.96875, 1.0)], 3e-3, 2, tokens=1e5),
        tune_record("grpo-a", [(0, 0.25, 0.0), (40, 0.5, 0.0), (80, 0.4375, 0.0)], 1e-4, 4, 1.5),
        tune_record("grpo-b", [(0, 0.25, 0.0), (80, 0.0, 0.0)], 1e-3, 4),
    ]
    out = tmp_path / "tune"
    results = study_report.write(out, "tune", records, META | {"study": "tune"})
    assert results["winners"] == {"sft": "sft-b", "grpo": "grpo-a"}  # sft: a tie, b processed fewer tokens
    a = results["methods"]["grpo"][0]
    assert a["val_accuracy"] == {"value": 56 / 128, "correct": 56, "n": 128,
                                 "ci95_low": wilson(56, 128)[0], "ci95_high": wilson(56, 128)[1]}
    assert a["best_val_accuracy"]["correct"] == 64 and a["best_step"] == 40  # the curve peaked before the end
    assert a["val_vip_accuracy"]["n"] == 32 and a["temperature"] == 1.5 and a["epochs"] == 4
    assert results["methods"]["sft"][0]["temperature"] is None
    saved, md = read_outputs(out)
    assert saved["winners"] == results["winners"]
    assert "- sft: `sft-b`" in md and "- grpo: `grpo-a`" in md
    assert "| grpo-a | 0.0001 | 4 | 1.5 | 80 | 0.00 | 56/128 = 43.8%" in md
    assert (out / "tune.png").read_bytes().startswith(PNG_SIGNATURE)
    assert study_report.tokens_at(40, [{"step": 80, "num_tokens": 1000.0}]) == 500.0
