"""The discovery law (discovery.py) on synthetic curves, the study's grid, and the probe on the tiny model."""

from __future__ import annotations

import json
import math
import random

import pytest

from fincorp import discovery, study
from fincorp.rules import MANUAL_REVIEW


def curve_for(steps50: float | None, budget: int = 960, every: int = 10, stop_after: int | None = None):
    """A validation VIP-accuracy curve (32 VIP rows) that crosses 50% at steps50 and 90% at 1.5 x steps50,
    flat at 0 before; a running count of sampled MANUAL_REVIEW on VIP prompts growing 3 per logging step."""
    curve = []
    for step in range(0, budget + 1, every):
        if steps50 is None or step < steps50:
            v = 0.0
        elif step < 1.5 * steps50:
            v = 0.5
        else:
            v = 0.9375
        curve.append({"step": step, "accuracy": 0.25 + v / 4, "vip_accuracy": v})
        if stop_after is not None and step >= stop_after:
            break
    mr = [{"step": s, "count": 3.0 * s / 5} for s in range(5, curve[-1]["step"] + 1, 5)]
    return curve, mr


def test_discovery_point_is_the_first_point_at_or_above_the_level():
    curve, mr = curve_for(200)
    assert discovery.discovery_point(curve, mr, 0.5) == {"step": 200, "vip_manual_review_samples": 120.0}
    assert discovery.discovery_point(curve, mr, 0.9)["step"] == 300
    flat, mr0 = curve_for(None)
    assert discovery.discovery_point(flat, mr0, 0.5) is None  # not within the budget
    # a point between two logged counts takes the last one logged before it; step 0 has sampled nothing
    assert discovery.samples_at(12, [{"step": 5, "count": 1}, {"step": 10, "count": 4}, {"step": 15, "count": 9}]) == 4
    assert discovery.samples_at(0, []) == 0.0
    # 16/32 = exactly 50% counts (no float surprise)
    assert discovery.discovery_point([{"step": 0, "vip_accuracy": 16 / 32}], [], 0.5)["step"] == 0


def synthetic_points(a: float, b: float, noise: float, seed: int = 0):
    """Runs whose steps to 50% follow log10(steps) = a + b log10(E) + N(0, noise), 3 seeds x 5 bases, plus a
    base that samples nothing (never reaches it)."""
    rng = random.Random(seed)
    points = []
    for e in (0.2, 0.5, 1.0, 2.0, 5.0):
        for s in (42, 43, 44):
            steps50 = 10 ** (a + b * math.log10(e) + rng.gauss(0, noise))
            points.append({"run": f"e{e}-s{s}", "e_vip": e, "held_out": s == 44, "max_step": 960,
                           "steps": {"50%": round(steps50), "90%": round(1.5 * steps50)}})
    points.append({"run": "none-s42", "e_vip": 1e-12, "held_out": False, "max_step": 960,
                   "steps": {"50%": None, "90%": None}})
    points.append({"run": "there-s42", "e_vip": 9.0, "held_out": False, "max_step": 30,  # knew it before RL
                   "steps": {"50%": 0, "90%": 10}})
    return points


def test_fit_recovers_a_known_law_with_intervals_and_predicts_held_out_runs():
    points = synthetic_points(a=2.6, b=-1.0, noise=0.05)
    law = discovery.fit(points, 0.5)
    assert law["fitted"] and law["n"] == 15 and law["not_reached"] == ["none-s42"] and law["at_start"] == ["there-s42"]
    assert law["b_ci95"][0] < -1.0 < law["b_ci95"][1] and abs(law["b"] + 1.0) < 0.1
    assert law["a_ci95"][0] < 2.6 < law["a_ci95"][1]
    # The check: fit without seed 44, predict seed 44 (most inside a 95% prediction interval)
    seen = [p for p in points if not p["held_out"]]
    rows = discovery.check({"50%": discovery.fit(seen, 0.5)}, [p for p in points if p["held_out"]])
    assert len(rows) == 5 and sum(r["inside"] for r in rows) >= 4
    # A wrong law fails the check: predictions 10x off land outside
    wrong = dict(discovery.fit(seen, 0.5), a=3.6)
    assert sum(r["inside"] for r in discovery.check({"50%": wrong}, [p for p in points if p["held_out"]])) == 0


def test_fit_refuses_too_few_runs_and_predict_says_not_within_the_budget():
    few = discovery.fit(synthetic_points(2.6, -1.0, 0.05)[:2], 0.5)
    assert discovery.fit(synthetic_points(2.6, -1.0, 0.05), 0.9)["n"] == 16  # at 90% it had to learn
    assert not few["fitted"] and "a line needs 3 runs" in few["why"]
    assert discovery.predict_one(few, 1.0, 960)["steps"] is None
    law = discovery.fit(synthetic_points(2.6, -1.0, 0.05), 0.5)
    ok = discovery.predict_one(law, 1.0, 960)
    assert ok["within_budget"] and ok["low"] < ok["steps"] < ok["high"] and 300 < ok["steps"] < 500
    assert not ok["extrapolated"] and "prediction interval" in ok["text"]
    rare = discovery.predict_one(law, 1e-3, 960)  # 400 000 steps: far past any budget, and an extrapolation
    assert not rare["within_budget"] and rare["extrapolated"] and rare["text"].startswith("not within the budget")
    never = discovery.predict_one(dict(law, samples_min=50), 1e-11, 960)  # the default base: ~1e-8 samples
    assert not never["within_budget"] and "fewer than any run" in never["text"]
    zero = discovery.predict_one(law, 0.0, 960)
    assert zero["steps"] is None and "E = 0" in zero["text"]


def discovery_record(run: str, seed: int, temperature: float, p_vip: float, steps50: float | None,
                     stop: bool = True, p_other: float | None = None) -> dict:
    e = 64 * 0.25 * p_vip
    p_other = p_vip / 30 if p_other is None else p_other
    curve, mr = curve_for(steps50, stop_after=None if steps50 is None or not stop else 1.5 * steps50 + 20)
    probe = {"n_rows": 512, "prompts_per_step": 8, "by_temperature": {f"{temperature:g}": {
        "p_mr_vip": p_vip, "p_mr_other": p_other, "expected_vip_escalations_per_step": e,
        "expected_other_escalations_per_step": 64 * 0.75 * p_other}}}
    return {"run": run, "overrides": {}, "params": {"seed": seed, "grpo.temperature": temperature, "grpo.num_train_epochs": 15.0},
            "metrics": {"probe": probe},
            "training": {"grpo": {"val_curve": curve, "vip_manual_review_curve": mr, "steps": curve[-1]["step"],
                                  "runtime_s": 1.0, "vip_samples": 100, "vip_manual_review_samples": 5}}}


def test_the_study_report_fits_checks_draws_and_writes_the_law(tmp_path):
    from fincorp import study_report

    records, rng = [], random.Random(1)
    for base, p in (("vip-a", 0.05), ("vip-b", 0.1), ("vip-c", 0.3), ("vip-d", 0.6)):
        for seed in study.DISCOVERY_SEEDS:
            steps50 = 10 ** (2.8 - 1.0 * math.log10(16 * p) + rng.gauss(0, 0.05))
            records.append(discovery_record(f"{base}-t1.0-s{seed}", seed, 1.0, p, steps50))
    records.append(discovery_record("default-t1.5-s42", 42, 1.5, 1e-12, None))
    records.append({"run": "default-t1.5-s43", "overrides": {}, "not_run": True})
    # escalates any founder as often: E like the specific bases', never learns within the budget
    records.append(discovery_record("mr-t1.0-s42", 42, 1.0, 0.2, None, p_other=0.2))
    knob = discovery_record("knob-vip-0.28", 42, 1.0, 0.034, None, p_other=0.032)
    records.append(knob | {"overrides": {"split.holdout_val": "true", "base.prior.vip_manual_review_share": "0.28"},
                           "training": {}})  # probed only
    results = study_report.write(tmp_path, "discovery", records, {"baseline_commit": "abc", "command": "c"})
    assert [k["run"] for k in results["knob"]] == ["knob-vip-0.28"] and "knob-vip-0.28" not in {
        p["run"] for p in results["points"]}
    assert results["knob"][0]["by_temperature"]["1"]["p_mr_vip"] == 0.034
    f50 = results["fits"]["50%"]
    # validation every 10 steps rounds each crossing up: b comes out near, not exactly at, -1
    assert f50["fitted"] and f50["n"] == 12 and abs(f50["b"] + 1.0) < 0.15
    assert results["check_n"] == 4 * 2 and results["check_inside"] >= 6  # seed 44 held out, both levels
    assert results["not_run"] == ["default-t1.5-s43"]
    # every synthetic run is at temperature 1.0 (the default base's never reaches a level): one row per level,
    # over the fitted runs, centred on the fit
    rows = [r for r in results["residual_by_temperature"] if r["n"]]
    assert [(r["level"], r["temperature"], r["n"]) for r in rows] == [("50%", 1.0, 12), ("90%", 1.0, 9)]  # vip-a: 90% past 960
    assert all(abs(r["mean"]) < 1e-9 and r["ci95_low"] < 0 < r["ci95_high"] for r in rows)
    assert {(x["run"], x["level"]) for x in results["unexplained"]} == {("mr-t1.0-s42", "50%"), ("mr-t1.0-s42", "90%")}
    assert "mr-t1.0-s42" not in results["fits_e"]["50%"]["not_reached"]  # E < E_other: not in E's law
    outside = discovery.predict({"fits": results["fits"]}, 3.2, 64 * 0.75 * 0.2, 960)  # what the probe says of it
    assert all(v["outside_law"] and v["text"].startswith("outside the law") for v in outside.values())
    inside = discovery.predict({"fits": results["fits"]}, 3.2, 64 * 0.75 * 0.2 / 30, 960)
    assert all(v["steps"] is not None for v in inside.values())
    cell = next(c for c in results["cells"] if c["base"] == "vip-d")
    assert cell["n"] == 3 and cell["mean_curve"][-1] == pytest.approx(0.9375)  # stopped early: carried on
    law = json.loads((tmp_path / "law.json").read_text())
    assert law["fits"]["50%"]["b"] == pytest.approx(f50["b"]) and law["study_commit"] == "abc"
    assert (tmp_path / "discovery.png").is_file()
    md = (tmp_path / "results.md").read_text()
    assert "## The knob's fine steps" in md and "| knob-vip-0.28 | base.prior.vip_manual_review_share=0.28 | 1 | 0.034 |" in md
    assert "## The law" in md and "Not yet run (1" in md and "default-t1.5-s42" in md and "## Where E alone fails" in md


def test_the_grid_meets_the_issue_and_every_override_is_a_param():
    spec = study.studies()["discovery"]
    knob = {r: o for r, o in spec.runs.items() if r in study.DISCOVERY_KNOB}
    lr_checks = {r: o for r, o in spec.runs.items() if "grpo.lr" in o}
    hot = {r: o for r, o in spec.runs.items()
           if (r.rsplit("-t", 1)[0], o.get("grpo.temperature")) in study.DISCOVERY_HIGH_TEMPERATURE_CHECK}
    checks = {r: o for r, o in spec.runs.items() if r.rsplit("-t", 1)[0] in study.DISCOVERY_CHECK_TEMPERATURES.get(
        o.get("grpo.temperature"), ()) and r not in lr_checks}
    law_checks = {r: o for r, o in spec.runs.items()
                  if (r.rsplit("-t", 1)[0], o.get("grpo.temperature")) in (*study.DISCOVERY_TEMPERATURE_LAW_CHECK,
                                                                           *study.DISCOVERY_LOW_TEMPERATURE_CHECK)}
    runs = {r: o for r, o in spec.runs.items() if r not in knob and r not in checks and r not in law_checks
            and r not in lr_checks and r not in hot}
    bases = {r.rsplit("-t", 1)[0] for r in runs}
    assert sum(b.startswith("vip-") for b in bases) >= 4 and sum(b.startswith("mr-") for b in bases) >= 3
    for r, o in runs.items():
        assert o["split.holdout_val"] == "true" and o["grpo.stop_vip_accuracy"] == "0.9"
        assert int(o["grpo.num_train_epochs"]) * 64 >= 3 * 320  # 512 rows / 8 prompts per step
        base = r.rsplit("-t", 1)[0]
        assert o["grpo.temperature"] == ("1.5" if base == "default" else o["grpo.temperature"])
    assert {o["grpo.temperature"] for r, o in runs.items() if not r.startswith("default")} == {"1.0", "1.5"}
    assert {o["seed"] for o in runs.values()} == {str(s) for s in study.DISCOVERY_SEEDS}
    # VIP-specific bases first, seed by seed: a study cut short still has the law's runs and its held-out seed
    vip = [r for r in runs if r.startswith("vip-")]
    assert list(runs)[:len(vip)] == vip and vip[-1].endswith(f"-s{study.DISCOVERY_SEEDS[-1]}")
    assert spec.targets == ("probe", "grpo") and spec.partial
    # the temperature check: after the grid, VIP-specific bases only, below the grid's temperatures, 3 seeds each,
    # the recipe otherwise the grid's
    # then the checks of the law with temperature, each declared after the one before, then the knob
    order = list(spec.runs)
    assert order[len(runs):len(runs) + len(checks)] == list(checks) and len(checks) >= 6
    assert order[len(runs) + len(checks):len(runs) + len(checks) + len(law_checks)] == list(law_checks)
    assert all(r.startswith("vip-") and float(o["grpo.temperature"]) < 1.0 for r, o in checks.items())
    assert len(law_checks) == 3 * len(study.DISCOVERY_TEMPERATURE_LAW_CHECK + study.DISCOVERY_LOW_TEMPERATURE_CHECK)
    # the low-temperature check: below every temperature run before it
    assert all(float(t) < min(float(t) for t in study.DISCOVERY_CHECK_TEMPERATURES)
               for _, t in study.DISCOVERY_LOW_TEMPERATURE_CHECK)
    for group in (checks, law_checks, hot):
        assert {o["seed"] for o in group.values()} == {str(s) for s in study.DISCOVERY_SEEDS}
        assert all({k: v for k, v in o.items() if k not in ("grpo.temperature", "seed")}
                   == {k: v for k, v in runs[r.rsplit("-t", 1)[0] + "-t1.0-s42"].items()
                       if k not in ("grpo.temperature", "seed")} for r, o in group.items())
    # the learning-rate check: after the other checks, 3 seeds per lr, otherwise the run it scales
    assert len(lr_checks) == 3 * len(study.DISCOVERY_LR_CHECK) and {o["grpo.lr"] for o in lr_checks.values()} == {
        lr for *_, lr in study.DISCOVERY_LR_CHECK}
    assert order[len(order) - len(knob) - len(hot) - len(lr_checks):len(order) - len(knob) - len(hot)] == list(lr_checks)
    # the high-temperature check: after the learning-rate check, above every temperature before it
    assert order[len(order) - len(knob) - len(hot):len(order) - len(knob)] == list(hot)
    assert len(hot) == 3 * len(study.DISCOVERY_HIGH_TEMPERATURE_CHECK) and all(
        float(o["grpo.temperature"]) > 1.5 for o in hot.values())
    for r, o in lr_checks.items():
        same = f"{r.split('-lr')[0]}-s{o['seed']}"
        assert {k: v for k, v in o.items() if k != "grpo.lr"} == spec.runs[same]
    # the knob's fine steps: probed only, after the GRPO runs, on the same training rows
    assert list(spec.runs)[-len(knob):] == list(knob) and len(knob) >= 3
    assert all(spec.targets_of(r) == spec.stages_of(r) == ("probe",) and o["split.holdout_val"] == "true"
               and "base.prior.vip_manual_review_share" in o for r, o in knob.items())


def test_early_stop_needs_the_level_held_at_several_points():
    from fincorp.train import ValidationCallback

    cb = ValidationCallback([], [], None, 10, 16, 8, None, stop_vip_accuracy=0.9, stop_evals=3)
    for v in (0.0, 0.95, 0.95):
        cb.history.append({"vip_accuracy": v})
    assert not cb.should_stop()
    cb.history.append({"vip_accuracy": 0.9})
    assert cb.should_stop()
    cb.history.append({"vip_accuracy": None})
    assert not cb.should_stop()
    off = ValidationCallback([], [], None, 10, 16, 8, None)
    off.history = [{"vip_accuracy": 1.0}] * 5
    assert not off.should_stop()


def test_stop_params_are_checked(write_params):
    from fincorp.params import ParamsError, load_params

    with pytest.raises(ParamsError, match="grpo.stop_vip_accuracy"):
        load_params(write_params({"grpo.stop_vip_accuracy": 1.5}))
    with pytest.raises(ParamsError, match="grpo.stop_evals"):
        load_params(write_params({"grpo.stop_evals": 0}))


@pytest.mark.slow
def test_probe_matches_what_the_sampler_draws_on_the_tiny_model(tiny_workspace):
    """The probe's P_T(answer) (eval.answer_log_probs at temperature T) is how often sampling at T with TRL's
    settings (top_k 0, top_p 1) emits exactly that answer: checked on the completions the tiny base samples
    most often (its label answers are rare, so the test takes its commonest outputs as the answers)."""
    from collections import Counter

    import torch

    from fincorp.eval import answer_log_probs
    from fincorp.model import chat_kwargs, load_for_inference, load_tokenizer
    from fincorp.params import load_params
    from fincorp.prompt import prompt_messages
    from fincorp.split import read_applications

    p = load_params(tiny_workspace / "params.yaml")
    base = tiny_workspace / "models/base"
    tok = load_tokenizer(p.model, base)
    model = load_for_inference(p.model, base, None)
    row = read_applications(tiny_workspace / "data/train.jsonl")[0]
    prompt = tok.apply_chat_template(prompt_messages(row, "pct"), tokenize=False, add_generation_prompt=True,
                                     **chat_kwargs(p.model))
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    n, checked, wrong_t = 6000, {}, []
    for t in (1.0, 2.0):
        torch.manual_seed(0)
        out = model.generate(**ids, do_sample=True, temperature=t, top_k=0, top_p=1.0, max_new_tokens=16,
                             num_return_sequences=n, pad_token_id=tok.pad_token_id)[:, ids["input_ids"].shape[1]:]
        ended = Counter()
        for seq in out.tolist():
            if tok.eos_token_id in seq:
                ended[tuple(seq[:seq.index(tok.eos_token_id)])] += 1
        for seq, count in ended.most_common(3):
            text = tok.decode(list(seq))
            if tok(text, add_special_tokens=False)["input_ids"] != list(seq):
                continue  # a non-canonical tokenization: the probe counts the canonical one only
            prob = math.exp(answer_log_probs(model, tok, [prompt], text, 1, t)[0])
            freq = count / n
            band = 4 * math.sqrt(prob * (1 - prob) / n) + 1e-3
            assert abs(freq - prob) <= band, (t, text, freq, prob)
            checked[t] = max(checked.get(t, 0.0), prob)
            if t != 1.0:  # ignoring the temperature would fail this check
                wrong_t.append(abs(freq - math.exp(answer_log_probs(model, tok, [prompt], text, 1, 1.0)[0])) > band)
    assert checked.get(1.0, 0) > 0.01 and 2.0 in checked and any(wrong_t)


@pytest.mark.slow
def test_probe_command_measures_and_predicts(tiny_workspace, tmp_path):
    from click.testing import CliRunner

    from fincorp.cli import main

    law = {"fits": {"50%": discovery.fit(synthetic_points(2.6, -1.0, 0.05), 0.5),
                    "90%": discovery.fit(synthetic_points(2.8, -1.0, 0.05), 0.9)}}
    (tmp_path / "law.json").write_text(json.dumps(law))
    out = tmp_path / "probe.json"
    args = ["probe", "--params", str(tiny_workspace / "params.yaml"), "--base", str(tiny_workspace / "models/base"),
            "--train", str(tiny_workspace / "data/train.jsonl"), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--law", str(tmp_path / "law.json")])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    rows = read_rows(tiny_workspace)
    assert record["n_vip"] == sum(r["label"] == MANUAL_REVIEW for r in rows) and record["n_rows"] == len(rows)
    m = record["by_temperature"]["1"]
    assert 0 <= m["p_mr_vip"] <= 1 and 0 <= m["p_mr_other"] <= 1
    total = sum(v["mean"] for v in m["vip_label_probability"].values())
    assert total <= 1 + 1e-9  # four disjoint answers
    expected = record["prompts_per_step"] * record["num_generations"] * record["vip_share"] * m["p_mr_vip"]
    assert m["expected_vip_escalations_per_step"] == pytest.approx(expected)
    assert "law in E: steps to 50% validation VIP accuracy" in result.output
    first = out.read_bytes()
    assert CliRunner().invoke(main, args).exit_code == 0 and out.read_bytes() == first  # reproducible
    missing = CliRunner().invoke(main, [*args, "--law", str(tmp_path / "nope.json")])
    assert missing.exit_code != 0 and "no discovery law here" in missing.output


def read_rows(ws):
    from fincorp.split import read_applications

    return read_applications(ws / "data/train.jsonl")


def test_a_second_variable_specificity_is_fitted_when_the_runs_span_it():
    """Bases as specific as the VIP ones, and bases that escalate any founder (E / E_other 30x lower) and learn
    10x slower at the same E: E alone cannot fit both, E and E / E_other can."""
    rng = random.Random(3)
    points = []
    for e in (1.0, 2.0, 4.0):
        for s in (42, 43):
            for spec, slow in ((10.0, 0.0), (1 / 3, 1.0)):
                steps = 10 ** (2.0 - math.log10(e) + slow + rng.gauss(0, 0.03))
                points.append({"run": f"e{e}-r{spec:.2f}-s{s}", "e_vip": e, "e_other": e / spec, "held_out": False,
                               "max_step": 9600, "steps": {"50%": round(steps)}})
    alone = discovery.fit(points, 0.5)
    both = discovery.fit(points, 0.5, specificity=True)
    assert both["fitted"] and both["r2"] > 0.95 > alone["r2"]
    assert both["c_ci95"][0] < -1 / math.log10(30) < both["c_ci95"][1]  # 10x slower over 1.48 decades
    assert both["b_ci95"][0] < -1.0 < both["b_ci95"][1]
    fast = discovery.predict_one(both, 2.0, 9600, e_other=2.0 / 10)
    slow = discovery.predict_one(both, 2.0, 9600, e_other=2.0 * 3)
    assert 30 < fast["steps"] < 70 and 300 < slow["steps"] < 700
    assert discovery.predict_one(both, 2.0, 9600)["steps"] is None  # it needs E_other
    assert discovery.predict_one(both, 2.0, 9600, e_other=2.0 * 100)["outside_law"]  # less specific than any run
    narrow = discovery.fit([p for p in points if p["e_other"] < p["e_vip"]], 0.5, specificity=True)
    assert not narrow["fitted"] and "needs 3 of each" in narrow["why"]


def records_from_law(bases: dict[str, tuple[float, float]], law, seeds=(42, 43, 44), noise: float = 0.03,
                     rng_seed: int = 5) -> list[dict]:
    """Study records for bases {name: (P(MR | rule), P(MR | other))} whose steps to 50% follow law(E, E_other)."""
    rng, records = random.Random(rng_seed), []
    for base, (p_vip, p_other) in bases.items():
        for seed in seeds:
            steps = 10 ** (law(64 * 0.25 * p_vip, 64 * 0.75 * p_other) + rng.gauss(0, noise))
            records.append(discovery_record(f"{base}-t1.0-s{seed}", seed, 1.0, p_vip, steps, p_other=p_other))
    return records


def test_leave_one_base_out_predicts_each_base_without_its_own_runs(tmp_path):
    from fincorp import study_report

    # equally specific bases (a base less specific than every run left in the fit would get no number)
    bases = {f"vip-{x}": (p, p / 30) for x, p in zip("abcd", (0.05, 0.1, 0.2, 0.4))}
    records = records_from_law(bases, lambda e, o: 2.6 - math.log10(e))
    first = study_report.write(tmp_path / "a", "discovery", records, {})
    # the same study with vip-c's runs three times slower: its own left-out predictions cannot move
    slower = [r if not r["run"].startswith("vip-c") else discovery_record(
        r["run"], r["params"]["seed"], 1.0, 0.2, 3 * 10 ** (2.6 - math.log10(3.2)), p_other=0.2 / 30) for r in records]
    second = study_report.write(tmp_path / "b", "discovery", slower, {})

    def predicted(results, base):
        return [(row["run"], row["level"], row["predicted"]) for row in results["check_by_base"] if row["base"] == base]

    assert predicted(first, "vip-c") and predicted(first, "vip-c") == predicted(second, "vip-c")
    assert predicted(first, "vip-a") != predicted(second, "vip-a")  # vip-c's runs are in vip-a's fit
    assert first["fits"]["50%"]["b"] != second["fits"]["50%"]["b"]
    assert first["law_choice"] == {"50%": "E", "90%": "E"}  # no run below E = E_other: no second candidate
    assert "## Which law: leave one base out" in (tmp_path / "a/results.md").read_text()


def test_the_second_variable_becomes_the_law_only_where_it_predicts_unseen_bases_better(tmp_path):
    from fincorp import study_report

    # Truth with specificity: steps fall 10x per decade of E / E_other, bases spread over it on both sides.
    spread = {"vip-a": (0.05, 0.0006), "vip-b": (0.1, 0.01), "vip-c": (0.2, 0.0067), "vip-d": (0.4, 0.09),
              "mr-a": (0.1, 0.11), "mr-b": (0.3, 0.2)}
    both = study_report.write(tmp_path / "a", "discovery",
                              records_from_law(spread, lambda e, o: 2.3 - 0.5 * math.log10(e) - math.log10(e / o)), {})
    assert both["law_choice"]["50%"] == "E, E / E_other" and both["fits"]["50%"]["variables"][-1] == "log10_ratio"
    loo = {c["variables"]: c for c in both["leave_one_base_out"] if c["level"] == "50%"}
    assert loo["E, E / E_other"]["mean_abs_log10_error"] < loo["E"]["mean_abs_log10_error"]
    # Truth on E alone for the specific bases (whatever their E / E_other); escalating any founder is 10x slower
    # than E says. The second variable fits the slow bases but misleads on specific bases it did not see.
    alone = {"vip-a": (0.05, 0.0006), "vip-b": (0.1, 0.01), "vip-c": (0.2, 0.0067), "vip-d": (0.4, 0.09),
             "mr-a": (0.2, 0.3), "mr-b": (0.4, 0.5)}
    e_only = study_report.write(tmp_path / "b", "discovery", records_from_law(
        alone, lambda e, o: 1.9 - math.log10(e) + (1.0 if o > e else 0.0)), {})
    assert e_only["fits_specific"]["50%"]["fitted"] and e_only["law_choice"]["50%"] == "E"
    loo = {c["variables"]: c for c in e_only["leave_one_base_out"] if c["level"] == "50%"}
    assert loo["E"]["mean_abs_log10_error"] < loo["E, E / E_other"]["mean_abs_log10_error"]


def test_the_temperature_check_predicts_runs_at_its_temperatures_from_a_fit_without_them(tmp_path):
    from fincorp import study_report

    t = next(iter(study.DISCOVERY_CHECK_TEMPERATURES))
    base = study.DISCOVERY_CHECK_TEMPERATURES[t][0]
    records, rng = [], random.Random(2)
    for b, p in (("vip-a", 0.05), ("vip-b", 0.1), ("vip-c", 0.3), ("vip-d", 0.6)):
        for seed in study.DISCOVERY_SEEDS:
            records.append(discovery_record(f"{b}-t1.0-s{seed}", seed, 1.0, p,
                                            10 ** (2.8 - 1.0 * math.log10(16 * p) + rng.gauss(0, 0.05))))
    on_law = 10 ** (2.8 - 1.0 * math.log10(16 * 0.06))  # 662 steps, on the law
    records.append(discovery_record(f"{base}-t{t}-s42", 42, float(t), 0.06, on_law))
    records.append(discovery_record(f"{base}-t{t}-s43", 43, float(t), 0.06, on_law / 8))  # far faster than the law
    results = study_report.write(tmp_path, "discovery", records, {"baseline_commit": "abc", "command": "c"})
    rows = {(r["run"], r["level"]): r for r in results["temperature_check"]}
    assert rows[(f"{base}-t{t}-s42", "50%")]["inside"] and not rows[(f"{base}-t{t}-s43", "50%")]["inside"]
    # the law is fitted at the grid's temperatures only: the check's runs are predicted, never fitted
    assert results["temperature_fits"] == results["fits"]
    assert results["fits"]["50%"]["b"] == pytest.approx(
        discovery.fit([p for p in results["points"] if p["temperature"] == 1.0], 0.5)["b"])
    assert f"{base}-t{t}-s42" not in results["fits"]["50%"]["runs"] and results["law_runs"] == 12
    assert f"{base}-t{t}-s42" in results["fits_e_over_t"]["50%"]["runs"]  # the law with temperature sees them
    md = (tmp_path / "results.md").read_text()
    assert f"## Prediction check (temperature {float(t):g}, declared before it ran; fit without it)" in md


def test_the_law_with_temperature_reads_e_over_t_and_is_checked_on_its_declared_runs(tmp_path):
    """Runs whose steps follow E / T (a colder sampler moves further per rewarded sample): the law on E / T
    fits them with slope -1 and predicts its declared check; E alone, on the same runs, fits worse."""
    from fincorp import study_report

    def steps(p, t, noise=0.0):
        return 10 ** (2.8 - math.log10(16 * p / t) + noise)

    rng = random.Random(3)
    t_check = next(iter(study.DISCOVERY_CHECK_TEMPERATURES))
    check_base = study.DISCOVERY_CHECK_TEMPERATURES[t_check][0]
    (et_base, et_t), *_ = study.DISCOVERY_TEMPERATURE_LAW_CHECK
    records = []
    for b, p in (("vip-a", 0.1), ("vip-b", 0.2), ("vip-c", 0.4)):
        for temperature in (1.0, 1.5):
            for seed in study.DISCOVERY_SEEDS:
                records.append(discovery_record(f"{b}-t{temperature}-s{seed}", seed, temperature, p,
                                                steps(p, temperature, rng.gauss(0, 0.03))))
    for seed in study.DISCOVERY_SEEDS:
        records.append(discovery_record(f"{check_base}-t{t_check}-s{seed}", seed, float(t_check), 0.1,
                                        steps(0.1, float(t_check), rng.gauss(0, 0.03))))
    records.append(discovery_record(f"{et_base}-t{et_t}-s42", 42, float(et_t), 0.15, steps(0.15, float(et_t))))
    records.append(discovery_record(f"{et_base}-t{et_t}-s43", 43, float(et_t), 0.15, 8 * steps(0.15, float(et_t))))
    (lt_base, lt_t), *_ = study.DISCOVERY_LOW_TEMPERATURE_CHECK
    records.append(discovery_record(f"{lt_base}-t{lt_t}-s42", 42, float(lt_t), 0.03, steps(0.03, float(lt_t))))
    records.append(discovery_record(f"{lt_base}-t{lt_t}-s43", 43, float(lt_t), 0.03, 3 * steps(0.03, float(lt_t))))
    (hot_base, hot_t), *_ = study.DISCOVERY_HIGH_TEMPERATURE_CHECK
    records.append(discovery_record(f"{hot_base}-t{hot_t}-s42", 42, float(hot_t), 0.1, steps(0.1, float(hot_t))))
    results = study_report.write(tmp_path, "discovery", records, {"baseline_commit": "abc", "command": "c"})
    assert [r["inside"] for r in results["high_temperature_check"] if r["level"] == "50%"] == [True]
    assert all(f"{hot_base}-t{hot_t}-s42" not in results[k]["50%"]["runs"]
               for k in ("fits", "fits_e_over_t", "fits_e_over_t_refit"))
    et, e = results["fits_e_over_t"]["50%"], results["fits_e_same_runs"]["50%"]
    assert et["variables"] == ["log10_e_over_t"] and abs(et["b"] + 1.0) < 0.15 and et["r2"] > e["r2"]
    assert f"{et_base}-t{et_t}-s42" not in et["runs"]
    rows = {(r["run"], r["level"]): r for r in results["temperature_law_check"]}
    assert rows[(f"{et_base}-t{et_t}-s42", "50%")]["inside"]
    assert not rows[(f"{et_base}-t{et_t}-s43", "50%")]["inside"]
    # a law on E / T needs the temperature to predict
    assert "needs the sampling temperature" in discovery.predict_one(et, 2.0, 960)["text"]
    assert discovery.predict_one(et, 2.0, 960, temperature=0.5)["steps"] == pytest.approx(
        discovery.predict_one(et, 4.0, 960, temperature=1.0)["steps"])
    # the low-temperature check: predicted by the law in E / T refitted with the check before it, never fitted
    refit = results["fits_e_over_t_refit"]["50%"]
    assert f"{et_base}-t{et_t}-s42" in refit["runs"] and f"{lt_base}-t{lt_t}-s42" not in refit["runs"]
    rows = {(r["run"], r["level"]): r for r in results["low_temperature_check"]}
    assert rows[(f"{lt_base}-t{lt_t}-s42", "50%")]["inside"] and not rows[(f"{lt_base}-t{lt_t}-s43", "50%")]["inside"]
    # law.json: the law in E at the grid's temperatures, and the law in E / T on every specific run with the
    # record of its declared checks
    law = json.loads((tmp_path / "law.json").read_text())
    assert law["temperatures"] == [1.0, 1.5] and law["e_over_t"]["fits"] == results["fits_e_over_t_refit"]
    assert law["e_over_t"]["temperatures"] == sorted({1.0, 1.5, float(t_check), float(et_t)})
    declared = [*results["temperature_law_check"], *results["low_temperature_check"], *results["lr_check"],
                *results["high_temperature_check"]]
    assert law["e_over_t"]["checks"] == {"inside": sum(1 for c in declared if c["inside"]),
                                         "n": sum(1 for c in declared if c["inside"] is not None)}
    md = (tmp_path / "results.md").read_text()
    assert "## Temperature in the law: E / T" in md and "## Prediction check of the law with temperature" in md
    assert "## Prediction check at low temperature" in md


def test_the_learning_rate_check_scales_e_by_lr_and_is_in_no_fit(tmp_path):
    """Runs whose steps follow E x (lr / lr0) / T: the check, predicted by the law in E / T fitted at lr0 with E x
    lr / lr0 in place of E, holds where the runs follow it and fails where lr does nothing."""
    from fincorp import study_report

    def steps(p, t, k=1.0):
        return 10 ** (2.8 - math.log10(16 * p * k / t))

    rng, records = random.Random(4), []
    for b, p in (("vip-a", 0.1), ("vip-b", 0.2), ("vip-c", 0.4)):
        for temperature in (1.0, 1.5):
            for seed in study.DISCOVERY_SEEDS:
                records.append(discovery_record(f"{b}-t{temperature}-s{seed}", seed, temperature, p,
                                                steps(p, temperature) * 10 ** rng.gauss(0, 0.03)))
    (base, t, lr), *_ = study.DISCOVERY_LR_CHECK
    k = float(lr) / 1e-4
    follows = discovery_record(f"{base}-t{t}-lr{lr}-s42", 42, float(t), 0.1, steps(0.1, float(t), k))
    ignores = discovery_record(f"{base}-t{t}-lr{lr}-s43", 43, float(t), 0.1, steps(0.1, float(t)) * (1 if k < 1 else 3))
    for r in records + [follows, ignores]:
        r["params"]["grpo.lr"] = 1e-4
    follows["params"]["grpo.lr"] = ignores["params"]["grpo.lr"] = float(lr)
    results = study_report.write(tmp_path, "discovery", records + [follows, ignores], {"baseline_commit": "abc"})
    assert results["fitted_lr"] == [1e-4]
    assert all(follows["run"] not in f["runs"] for fits in ("fits", "fits_e_over_t", "fits_e_over_t_refit")
               for f in results[fits].values())
    rows = {(r["run"], r["level"]): r for r in results["lr_check"]}
    assert rows[(follows["run"], "50%")]["inside"] and rows[(follows["run"], "50%")]["e_vip"] == pytest.approx(16 * 0.1 * k)
    assert rows[(ignores["run"], "50%")]["inside"] is False
    assert "## Prediction check of the learning rate" in (tmp_path / "results.md").read_text()


def test_the_probe_predicts_with_the_law_in_e_only_at_its_temperatures_and_with_e_over_t_at_any():
    law_e = discovery.fit(synthetic_points(2.6, -1.0, 0.05), 0.5)
    points = [{**p, "temperature": t, "run": f"{p['run']}-t{t}", "e_vip": p["e_vip"] * t}
              for p in synthetic_points(2.6, -1.0, 0.05) for t in (0.5, 1.0)]
    law_et = discovery.fit(points, 0.5, over_temperature=True)
    law = {"fits": {"50%": law_e}, "temperatures": [1.0, 1.5],
           "e_over_t": {"fits": {"50%": law_et}, "temperatures": [0.5, 1.0], "checks": {"inside": 3, "n": 4}}}

    def lines(t, e=1.0):
        return discovery.prediction_lines(law, {"temperature": t, "expected_vip_escalations_per_step": e,
                                                "expected_other_escalations_per_step": e / 100}, 960)

    at_grid, below = lines(1.5), lines(0.5)
    assert at_grid[0].startswith("  law in E: steps to 50% validation VIP accuracy: ") and "steps" in at_grid[0]
    assert "no prediction at 0.5, a temperature it was not fitted at" in below[0]
    assert "temperatures 0.5 to 1; its declared checks put 3 of 4" in below[1]
    # E / T: the same E at half the temperature is predicted as twice the E at the same temperature
    assert below[2] == lines(1.0, 2.0)[2] and below[2] != lines(1.0)[2]
    # each law gives no number outside the temperatures it was fitted at
    assert "no prediction at 1.5, a temperature it was not fitted at" in at_grid[-1]
    assert all("no prediction at 0.1" in line for line in lines(0.1))
    # the learning rate: the law in E only at the fitted one; the law in E / T reads E x lr / lr0
    law |= {"lr": 1e-4}
    law["e_over_t"]["lr_checked"] = [5e-5, 1e-4, 2e-4]

    def at(lr, e=1.0, t=0.5):
        return discovery.prediction_lines(law, {"temperature": t, "expected_vip_escalations_per_step": e,
                                                "expected_other_escalations_per_step": e / 100}, 960, lr)

    assert at(1e-4) == below[:1] + [below[1].replace("; its", "; reads E x lr / 0.0001, checked at learning rates "
                                                              "5e-05, 0.0001, 0.0002; its")] + below[2:]
    assert at(2e-4, t=1.5)[0] == "  law in E (fitted at learning rate 0.0001): no prediction at learning rate 0.0002"
    assert at(2e-4)[2] == at(1e-4, e=2.0)[2] and "extrapolation" not in at(2e-4)[1]
    assert "1e-05 is an extrapolation" in at(1e-5)[1]
    # too few samples in the budget is about the samples GRPO draws, not the lr-scaled E
    law_et["samples_min"] = 100.0
    floor = 100.0 / 960
    assert "not within the budget" in at(1e-4, e=0.9 * floor)[2] and "not within the budget" in at(4e-4, e=0.9 * floor)[2]
    # a law file from before the law in E / T: the law in E alone, at any temperature
    old = discovery.prediction_lines({"fits": {"50%": law_e}}, {"temperature": 0.5, "expected_vip_escalations_per_step": 1.0,
                                                                  "expected_other_escalations_per_step": 0.01}, 960)
    assert len(old) == 1 and old[0].startswith("  law in E: steps to 50%")


def load_per_prompt_probe():
    import importlib.util

    from tests.conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("per_prompt_probe", REPO_ROOT / "scripts/per_prompt_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_samples_in_groups_that_all_agree_do_not_count():
    mixed = load_per_prompt_probe().in_mixed_groups
    assert mixed([1.0, 1.0], 8) == 0.0 and mixed([0.0], 8) == 0.0
    assert mixed([0.5], 2) == pytest.approx(0.25)  # MANUAL_REVIEW, and the other sample is not
    assert mixed([1e-3], 8) == pytest.approx(1e-3, rel=1e-6)  # a rare answer is almost always in a mixed group


@pytest.mark.slow
def test_the_per_prompt_probe_agrees_with_the_probe_on_the_tiny_model(tiny_workspace):
    from fincorp import probe
    from fincorp.params import load_params
    from fincorp.split import read_applications

    params = str(tiny_workspace / "params.yaml")
    out = load_per_prompt_probe().per_prompt(str(tiny_workspace / "models/base"),
                                             str(tiny_workspace / "data/train.jsonl"), params)
    record = probe.measure(load_params(params), tiny_workspace / "models/base",
                           read_applications(tiny_workspace / "data/train.jsonl"))
    at_1 = record["by_temperature"]["1"]
    assert out["1"]["p_mr_vip"] == pytest.approx(at_1["p_mr_vip"], rel=1e-9)
    assert out["1"]["e_vip"] == pytest.approx(at_1["expected_vip_escalations_per_step"], rel=1e-9)
    assert all(0 <= r["e_vip_in_mixed_groups"] <= r["e_vip"] and r["n_rule_prompts"] == record["n_vip"]
               for r in out.values())
