"""Study reports: several runs of the pipeline side by side -> reports/studies/<study>/.

    study_report.write("reports/studies/seeds", "seeds", records, meta)   (called by fincorp.study)

Input: one record per run (overrides, resolved params, metrics/<model>.json of each evaluated model,
training summaries; shape in study.py). Output: results.json (every number, the meta, and the records
under "runs"), results.md (rendered from results.json's content only) and one figure, <study>.png:

  seeds   same experiment, N training seeds: per model and headline number n, mean, sample sd (ddof=1),
          95% t-interval of the mean (t.ppf(0.975, n-1) * sd / sqrt(n); none when n < 2), min, max; the
          same summary of per-seed differences of the key contrasts (paired: a seed's models share a test set).
  reward  GRPO reward presets (grpo.reward): accuracy, VIP accuracy (Wilson), frac_reward_zero_std, share
          of VIP samples in which GRPO sampled MANUAL_REVIEW.
  prior   the base model's mean P(MANUAL_REVIEW | VIP prompt) against whether GRPO finds the hidden rule,
          per GRPO learning rate; rows sorted by the base log10 probability, sharpest prior first. Figure:
          GRPO's final VIP accuracy, and its P(MANUAL_REVIEW | VIP) after training against the base's.
  data    data sizes (generate.n): each run against records[0], difference with a Newcomb 95% interval
          (the test sets differ, so the proportions are independent, not paired) and the ratio of the
          Wilson interval widths (this run / reference).
  control the positive control: per prior setting, baseline and GRPO side by side: accuracy, VIP accuracy,
          P(MANUAL_REVIEW) on VIP and on other test prompts, and the MANUAL_REVIEW answers GRPO sampled on
          VIP and on other prompts. Figure: P(MANUAL_REVIEW | VIP) and | other, before and after GRPO.
  tune    the recipe search: per method (sft, grpo) every candidate's final validation accuracy and VIP
          accuracy (Wilson), its best point on the curve, optimizer steps, tokens processed and wall time;
          the winner (select_winner). Figure: every candidate's validation curve against steps and tokens.
  discovery the discovery law (discovery.py): steps to 50% / 90% validation VIP accuracy against the expected
          MANUAL_REVIEW completions sampled per step on rule prompts, fitted with intervals, checked on held-out
          seeds; also law.json, what `fincorp probe` predicts with. Figure: the phase diagram per temperature
          and steps-to-discovery against E.

A missing model, metric or training value is None in results.json and "n/a" in results.md: never a
crash, never a guess. Deterministic: no timestamps, PNGs without the Software tag.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy import stats as sps
from statsmodels.stats.proportion import confint_proportions_2indep

from fincorp import discovery
from fincorp.report import MODELS, acc_cell, pct, proportion, table, write_outputs
from fincorp.rules import MANUAL_REVIEW

STUDIES = ("seeds", "reward", "prior", "data", "tune", "control", "discovery")
RL_MODELS = ("grpo", "hybrid")  # trained with GRPO: they have frac_reward_zero_std and VIP sample counts
STAGES = ("sft", "grpo", "hybrid")
HEADLINE = ("accuracy", "vip_accuracy", "invalid_rate", "prediction_entropy_bits")
ZERO_STD = "mean_frac_reward_zero_std"
CONTRASTS = (("sft", "grpo"), ("hybrid", "sft"), ("hybrid", "grpo"), ("grpo", "baseline"))
PROPORTIONS = ("accuracy", "vip_accuracy")
NA = "n/a"


def write(out_dir: str | Path, study: str, records: list[dict], meta: dict) -> dict:
    """Compute, then write out_dir/results.json (the returned dict), results.md and <study>.png."""
    results = compute(study, records, meta)
    name = f"{study}.png"
    fig = STUDY[study][1](results)
    results["figures"] = {name: "written" if isinstance(fig, Figure) else fig}
    out = Path(out_dir)
    for stale in sorted(out.glob("*.png")):  # a figure from an earlier study, under another name
        stale.unlink()
    write_outputs(out, {name: fig}, results, render_markdown(results))
    if study == "discovery":
        from fincorp.jsonl import write_json

        write_json(out / "law.json", plain(discovery.law_file(results, meta)))
    return results


# --- computing (pure) --------------------------------------------------------------------------------

def compute(study: str, records: list[dict], meta: dict) -> dict[str, Any]:
    """The results dict of one study (everything but "figures")."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; expected one of: {', '.join(STUDIES)}")
    if not records:
        raise ValueError(f"study {study}: no records (did any run finish?)")
    names = [r["run"] for r in records]
    if len(set(names)) != len(names):
        raise ValueError(f"study {study}: run names must be unique, got {names}")
    records, meta = plain(records), plain(meta)
    models = [m for m in MODELS if any(metrics_of(r, m) is not None for r in records)]
    return {"study": study, "meta": meta, "models": models, "runs": records, **STUDY[study][0](records, models)}


def plain(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars become Python numbers, tuples lists, NaN/inf None (missing)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def metrics_of(record: dict, model: str) -> dict | None:
    return (record.get("metrics") or {}).get(model)


def headline(record: dict, model: str, key: str) -> float | None:
    """accuracy/vip_accuracy ["value"], or invalid_rate/prediction_entropy_bits; None if missing."""
    v = (metrics_of(record, model) or {}).get(key)
    if isinstance(v, dict):
        v = v.get("value")
    return None if v is None else float(v)


def model_numbers(record: dict, model: str) -> dict[str, Any]:
    """Every number the study tables use for one model of one run (None where the run lacks it)."""
    m = metrics_of(record, model) or {}
    t = (record.get("training") or {}).get(model) or {}
    prob = (m.get("vip_label_probability") or {}).get(MANUAL_REVIEW) or {}
    k, n = t.get("vip_manual_review_samples"), t.get("vip_samples")
    other = m.get("non_vip_manual_review_probability") or {}
    ko, no = t.get("non_vip_manual_review_samples"), t.get("non_vip_samples")
    return {
        "p_manual_review_non_vip": other.get("mean"), "non_vip_samples": no, "non_vip_manual_review_samples": ko,
        "non_vip_manual_review_share": None if ko is None or not no else ko / no,
        "n": m.get("n"), "accuracy": m.get("accuracy"), "vip_accuracy": m.get("vip_accuracy"),
        "invalid_rate": m.get("invalid_rate"), "prediction_entropy_bits": m.get("prediction_entropy_bits"),
        "manual_review_share": (m.get("prediction_distribution") or {}).get(MANUAL_REVIEW),
        "p_manual_review_vip": prob.get("mean"), "log10_p_manual_review_vip": prob.get("log10_mean"),
        "runtime_s": t.get("runtime_s"), ZERO_STD: t.get(ZERO_STD),
        "vip_samples": n, "vip_manual_review_samples": k,
        "vip_manual_review_share": None if k is None or not n else k / n,
    }


def across_seeds(values: Sequence[float | None]) -> dict[str, Any]:
    """n, mean, sample sd (ddof=1), 95% t-interval of the mean, min, max; None entries are skipped.

    sd and the interval are None when n < 2; sd == 0 gives an interval of width 0. statistics.mean
    and stdev compute exactly (fractions), so equal values give sd 0.0, not rounding noise.
    """
    xs = [float(v) for v in values if v is not None]
    out: dict[str, Any] = {"n": len(xs), "mean": None, "sd": None, "ci95_low": None, "ci95_high": None,
                           "min": None, "max": None}
    if not xs:
        return out
    mean = statistics.mean(xs)
    out |= {"mean": mean, "min": min(xs), "max": max(xs)}
    if len(xs) >= 2:
        sd = statistics.stdev(xs)
        half = float(sps.t.ppf(0.975, len(xs) - 1)) * sd / math.sqrt(len(xs))
        out |= {"sd": sd, "ci95_low": mean - half, "ci95_high": mean + half}
    return out


def seeds_results(records: list[dict], models: list[str]) -> dict[str, Any]:
    summary = {m: {k: across_seeds([headline(r, m, k) for r in records]) for k in HEADLINE} for m in models}
    for m in RL_MODELS:
        if m in summary:
            summary[m][ZERO_STD] = across_seeds([model_numbers(r, m)[ZERO_STD] for r in records])
    differences = []
    for a, b in CONTRASTS:
        if a not in models or b not in models:
            continue
        for k in PROPORTIONS:
            per_run = {}
            for r in records:
                va, vb = headline(r, a, k), headline(r, b, k)
                per_run[r["run"]] = None if va is None or vb is None else va - vb
            differences.append({"a": a, "b": b, "metric": k, "per_run": per_run,
                                "summary": across_seeds(list(per_run.values()))})
    per_seed = [{"run": r["run"], "seed": (r.get("params") or {}).get("seed"),
                 "values": {m: {k: headline(r, m, k) for k in PROPORTIONS} for m in models}} for r in records]
    return {"summary": summary, "differences": differences, "per_seed": per_seed}


def reward_results(records: list[dict], models: list[str]) -> dict[str, Any]:
    rl = ["grpo"] + (["hybrid"] if "hybrid" in models else [])  # GRPO's columns always (n/a if never run)
    rows = [{"run": r["run"], "preset": (r.get("params") or {}).get("grpo.reward"),
             **{m: model_numbers(r, m) for m in rl}} for r in records]
    return {"rl_models": rl, "rows": rows}


def prior_results(records: list[dict], models: list[str]) -> dict[str, Any]:
    def base(row: dict) -> float | None:
        return row["baseline"]["log10_p_manual_review_vip"]

    rows = [{"run": r["run"], "overrides": overrides_text(r.get("overrides")),
             "grpo_lr": (r.get("params") or {}).get("grpo.lr"),
             "baseline": model_numbers(r, "baseline"), "grpo": model_numbers(r, "grpo")} for r in records]
    # Sharpest prior (lowest P) first; stable: ties keep their order.
    rows.sort(key=lambda row: (base(row) is None, base(row) or 0.0))
    known = [row for row in rows if base(row) is not None]
    sharpest = []  # per GRPO learning rate: the sharpest prior at which GRPO still reached VIP accuracy > 0
    for lr in sorted({row["grpo_lr"] for row in known}, key=lambda v: (v is None, v or 0.0)):
        w = next((row for row in known if row["grpo_lr"] == lr
                  and (row["grpo"]["vip_accuracy"] or {}).get("value", 0.0) > 0), None)
        sharpest.append({"grpo_lr": lr, "runs": sum(row["grpo_lr"] == lr for row in known),
                         "run": None if w is None else w["run"],
                         "log10_p_manual_review_vip": None if w is None else base(w),
                         "grpo_vip_accuracy": None if w is None else w["grpo"]["vip_accuracy"]})
    return {"rows": rows, "with_base_probability": len(known),
            "not_plotted": [row["run"] for row in rows if base(row) is None],
            "sharpest_prior_with_vip": sharpest}


def overrides_text(overrides: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((overrides or {}).items())) or "defaults"


def data_results(records: list[dict], models: list[str]) -> dict[str, Any]:
    size = {r["run"]: (r.get("params") or {}).get("generate.n") for r in records}
    rows = [{"model": m, "run": r["run"], "generate_n": size[r["run"]], **model_numbers(r, m)}
            for m in models for r in records]
    stages = [s for s in STAGES if any(s in (r.get("training") or {}) for r in records)]
    training = [{"run": r["run"], "generate_n": size[r["run"]], "wall_time_s": r.get("wall_time_s"),
                 "runtime_s": {s: model_numbers(r, s)["runtime_s"] for s in stages}} for r in records]
    ref = records[0]
    changes = [{"model": m, "metric": k, "run": r["run"], "reference": ref["run"],
                **unpaired_change((metrics_of(r, m) or {}).get(k), (metrics_of(ref, m) or {}).get(k))}
               for m in models for r in records[1:] for k in PROPORTIONS]
    return {"reference": ref["run"], "rows": rows, "stages": stages, "training": training, "changes": changes}


def unpaired_change(a: dict | None, ref: dict | None) -> dict[str, Any]:
    """a - ref for two independent proportions: Newcomb 95% interval, ratio of Wilson widths (a / ref)."""
    out = {"value": None if a is None else a["value"], "reference_value": None if ref is None else ref["value"],
           "diff": None, "ci95_low": None, "ci95_high": None, "width_ratio": None}
    if a is None or ref is None or not a["n"] or not ref["n"]:
        return out
    lo, hi = confint_proportions_2indep(a["correct"], a["n"], ref["correct"], ref["n"], method="newcomb",
                                       compare="diff")
    ref_width = ref["ci95_high"] - ref["ci95_low"]
    return out | {"diff": a["value"] - ref["value"], "ci95_low": float(lo), "ci95_high": float(hi),
                  "width_ratio": (a["ci95_high"] - a["ci95_low"]) / ref_width if ref_width > 0 else None}


def logged_share(share: float | None, n: int | None) -> dict[str, Any] | None:
    """A logged share of n items (k/n exactly) as an accuracy cell with its Wilson interval."""
    return None if share is None or not n else proportion(round(share * n), n)


def select_winner(candidates: list[dict[str, Any]]) -> str | None:
    """The best final validation accuracy; ties go to the candidate that processed fewer tokens, then to
    the first name in sort order. Candidates without a validation score cannot win. Pure."""
    scored = [c for c in candidates if c.get("val_accuracy") is not None]
    if not scored:
        return None
    best = min(scored, key=lambda c: (-c["val_accuracy"]["value"],
                                      math.inf if c.get("num_tokens") is None else c["num_tokens"], c["run"]))
    return best["run"]


def tune_results(records: list[dict], models: list[str]) -> dict[str, Any]:
    methods: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        method = r["run"].split("-")[0]
        params = r.get("params") or {}
        t = (r.get("training") or {}).get(method) or {}
        curve = t.get("val_curve") or []
        n = params.get("split.val_size")
        vip_n = n // 4 if n else None  # the slice is stratified over four balanced classes
        best = max(curve, key=lambda point: (point["accuracy"], -point["step"])) if curve else None
        methods.setdefault(method, []).append({
            "run": r["run"], "lr": params.get(f"{method}.lr"), "epochs": params.get(f"{method}.num_train_epochs"),
            "temperature": params.get("grpo.temperature") if method == "grpo" else None,
            "steps": t.get("steps"), "num_tokens": t.get("num_tokens"), "wall_time_s": r.get("wall_time_s"),
            "val_accuracy": logged_share(curve[-1]["accuracy"], n) if curve else None,
            "val_vip_accuracy": logged_share(curve[-1]["vip_accuracy"], vip_n) if curve else None,
            "best_val_accuracy": logged_share(best["accuracy"], n) if best else None,
            "best_step": best["step"] if best else None,
            "curve": curve, "tokens_curve": t.get("tokens_curve") or []})
    winners = {m: select_winner(rows) for m, rows in methods.items()}
    for m, rows in methods.items():
        for row in rows:
            row["winner"] = row["run"] == winners[m]
    return {"methods": methods, "winners": winners}


def control_results(records: list[dict], models: list[str]) -> dict[str, Any]:
    rows = [{"run": r["run"], "overrides": overrides_text(r.get("overrides")),
             "baseline": model_numbers(r, "baseline"), "grpo": model_numbers(r, "grpo")} for r in records]
    return {"rows": rows}


# --- figures (pure: each returns a Figure, or the reason it is not drawn) --------------------------

def wilson_bar(ax: Any, x: float, a: dict | None, width: float, color: str) -> None:
    if a is None:
        ax.text(x, 2, NA, ha="center", va="bottom", rotation=90, fontsize=8, color="0.35")
        return
    v, lo, hi = (100 * a[k] for k in ("value", "ci95_low", "ci95_high"))
    ax.bar(x, v, width=width, color=color)
    ax.errorbar(x, v, yerr=[[v - lo], [hi - v]], fmt="none", ecolor="black", capsize=3, lw=1)


def percent_axes(ax: Any, ticks: Sequence[str], title: str, fixed: bool = True) -> None:
    ax.set_xticks(range(len(ticks)), ticks, fontsize=8)
    ax.set_title(title)
    if fixed:  # t-intervals of few seeds may reach past 0-100%: those axes scale to fit
        ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)


def plot_seeds(results: dict[str, Any]) -> Figure | str:
    models = results["models"]
    if not models:
        return "not drawn: no run has a metrics file"
    fig = Figure(figsize=(10, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(axes, PROPORTIONS, ("Accuracy", "VIP accuracy (MANUAL_REVIEW items)")):
        for x, m in enumerate(models):
            ys = [100 * row["values"][m][key] for row in results["per_seed"] if row["values"][m][key] is not None]
            ax.scatter(x - 0.12 + np.linspace(-0.08, 0.08, len(ys)), ys, s=18, color=f"C{x}", alpha=0.7)
            s = results["summary"][m][key]
            if s["mean"] is not None:
                mean = 100 * s["mean"]
                yerr = None if s["ci95_low"] is None else [[mean - 100 * s["ci95_low"]],
                                                           [100 * s["ci95_high"] - mean]]
                ax.errorbar(x + 0.15, mean, yerr=yerr, fmt="D", color="black", ms=5, capsize=5, lw=1)
        percent_axes(ax, models, title, fixed=False)
    axes[0].set_ylabel("% correct: seeds (dots), mean and 95% t-interval (black)")
    fig.tight_layout()
    return fig


def plot_reward(results: dict[str, Any]) -> Figure | str:
    if "grpo" not in results["models"]:
        return "not drawn: no run has GRPO metrics"
    series = [("grpo", "accuracy", "GRPO accuracy"), ("grpo", "vip_accuracy", "GRPO VIP accuracy"),
              ("grpo", ZERO_STD, "GRPO frac_reward_zero_std")]
    if "hybrid" in results["rl_models"]:
        series += [("hybrid", "accuracy", "hybrid accuracy"), ("hybrid", "vip_accuracy", "hybrid VIP accuracy")]
    rows = results["rows"]
    fig = Figure(figsize=(max(6.0, 2.2 * len(rows)), 4.5))
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, (m, key, label) in enumerate(series):
        for x, row in enumerate(rows):
            xi, v = x - 0.4 + width * (i + 0.5), row[m][key]
            if isinstance(v, dict) or v is None:
                wilson_bar(ax, xi, v, width, f"C{i}")
            else:
                ax.bar(xi, 100 * v, width=width, color=f"C{i}")
    percent_axes(ax, [str(row["preset"]) + ("" if row["run"] == row["preset"] else f"\n({row['run']})")
                      for row in rows], "GRPO reward presets")
    ax.set_ylabel("% (95% Wilson interval on accuracies)")
    ax.legend(handles=[Patch(color=f"C{i}", label=label) for i, (_, _, label) in enumerate(series)], fontsize=8,
              frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def plot_prior(results: dict[str, Any]) -> Figure | str:
    rows = [row for row in results["rows"] if row["baseline"]["log10_p_manual_review_vip"] is not None]
    if not rows:
        return "not drawn: no run has the base model's P(MANUAL_REVIEW | VIP prompt)"
    fig = Figure(figsize=(11, 4.5))
    left, right = fig.subplots(1, 2, sharex=True)
    lrs = sorted({row["grpo_lr"] for row in rows}, key=lambda v: (v is None, v or 0.0))
    color = {lr: f"C{i}" for i, lr in enumerate(lrs)}
    for row in rows:
        x, g, c = row["baseline"]["log10_p_manual_review_vip"], row["grpo"], color[row["grpo_lr"]]
        if g["vip_accuracy"] is not None:
            v, lo, hi = (100 * g["vip_accuracy"][k] for k in ("value", "ci95_low", "ci95_high"))
            left.errorbar(x, v, yerr=[[v - lo], [hi - v]], fmt="o", color=c, capsize=4, lw=1)
            left.annotate(row["run"], (x, v), textcoords="offset points", xytext=(5, 5), fontsize=8)
        if g["log10_p_manual_review_vip"] is not None:
            y = g["log10_p_manual_review_vip"]
            right.plot(x, y, "o", color=c)
            right.annotate(row["run"], (x, y), textcoords="offset points", xytext=(5, -10 if "lr" in row["run"] else 4),
                           fontsize=7)
    left.legend(handles=[Patch(color=color[lr], label=f"GRPO lr {num(lr, 'p')}") for lr in lrs], loc="upper left",
                fontsize=8, frameon=False)
    left.set_ylabel("GRPO final VIP accuracy, % (95% Wilson)")
    left.set_ylim(-3, 105)
    lo = min([row["baseline"]["log10_p_manual_review_vip"] for row in rows]
             + [row["grpo"]["log10_p_manual_review_vip"] for row in rows
                if row["grpo"]["log10_p_manual_review_vip"] is not None])
    right.plot([lo, 0], [lo, 0], "--", color="0.5", lw=1, label="no change (GRPO = base)")
    right.legend(loc="upper left", fontsize=8, frameon=False)
    right.set_ylabel("after GRPO: log10 mean P(MANUAL_REVIEW | VIP prompt)")
    right.set_title("below the line: GRPO made the right VIP answer rarer", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel("base model: log10 mean P(MANUAL_REVIEW | VIP prompt)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_data(results: dict[str, Any]) -> Figure | str:
    models = results["models"]
    if not models:
        return "not drawn: no run has a metrics file"
    runs = [t["run"] for t in results["training"]]
    by = {(row["model"], row["run"]): row for row in results["rows"]}
    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    width = 0.8 / len(runs)
    for ax, key, title in zip(axes, PROPORTIONS, ("Accuracy", "VIP accuracy (MANUAL_REVIEW items)")):
        for i, t in enumerate(results["training"]):
            for x, m in enumerate(models):
                wilson_bar(ax, x - 0.4 + width * (i + 0.5), by[m, t["run"]][key], width, f"C{i}")
        percent_axes(ax, models, title)
    axes[0].set_ylabel("% correct (95% Wilson interval)")
    axes[1].legend(handles=[Patch(color=f"C{i}", label=f"{t['run']} (generate.n={t['generate_n']})")
                            for i, t in enumerate(results["training"])],
                   fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def plot_control(results: dict[str, Any]) -> Figure | str:
    rows = [row for row in results["rows"] if row["baseline"]["p_manual_review_vip"] is not None]
    if not rows:
        return "not drawn: no run has the base model's P(MANUAL_REVIEW | VIP prompt)"
    fig = Figure(figsize=(10, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(axes, ("p_manual_review_vip", "p_manual_review_non_vip"),
                              ("VIP prompts (MANUAL_REVIEW is right)", "other prompts (MANUAL_REVIEW is wrong)")):
        for x, row in enumerate(rows):
            before, after = row["baseline"][key], row["grpo"][key]
            if before is not None and after is not None:
                ax.plot([x - 0.15, x + 0.15], [before, after], "-o", color=f"C{x}")
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_xticks(range(len(rows)), [row["run"] for row in rows])
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean P(MANUAL_REVIEW): base (left dot) -> after GRPO (right dot)")
    fig.tight_layout()
    return fig


def tokens_at(step: int, tokens_curve: list[dict[str, float]]) -> float | None:
    """Tokens processed by `step`, interpolated on the logged num_tokens series (0 at step 0)."""
    if not tokens_curve:
        return None
    xs = [0] + [p["step"] for p in tokens_curve]
    ys = [0.0] + [p["num_tokens"] for p in tokens_curve]
    return float(np.interp(step, xs, ys))


def plot_tune(results: dict[str, Any]) -> Figure | str:
    methods = {m: [row for row in rows if row["curve"]] for m, rows in results["methods"].items()}
    methods = {m: rows for m, rows in methods.items() if rows}
    if not methods:
        return "not drawn: no candidate has a validation curve"
    fig = Figure(figsize=(11, 3.8 * len(methods)))
    axes = np.atleast_2d(fig.subplots(len(methods), 2, squeeze=False))
    for (left, right), (m, rows) in zip(axes, methods.items()):
        for i, row in enumerate(rows):
            steps = [p["step"] for p in row["curve"]]
            acc = [100 * p["accuracy"] for p in row["curve"]]
            style = {"lw": 2.6 if row["winner"] else 1.2, "color": f"C{i}",
                     "label": row["run"] + (" (winner)" if row["winner"] else "")}
            left.plot(steps, acc, marker="o", ms=3, **style)
            tokens = [tokens_at(s, row["tokens_curve"]) for s in steps]
            if all(t is not None for t in tokens):
                right.plot([t / 1e6 for t in tokens], acc, marker="o", ms=3, **style)
        left.set_xlabel("optimizer step")
        right.set_xlabel("tokens processed (millions)")
        for ax in (left, right):
            ax.set_ylim(-3, 103)
            ax.grid(alpha=0.3)
            ax.set_ylabel(f"{m}: validation accuracy, %")
        right.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


# --- results.md (pure: rendered from results.json's content) -------------------------------------------

def num(x: float | None, unit: str, signed: bool = False) -> str:
    """% and pp scale a share by 100; bits and p are printed as they are."""
    if x is None:
        return NA
    sign = "+" if signed else ""
    return {"%": f"{100 * x:{sign}.1f}%", "pp": f"{100 * x:{sign}.1f} pp", "bits": f"{x:{sign}.3f}",
            "p": f"{x:.3g}", "log10": f"{x:.2f}", "s": f"{x:.1f}"}[unit]


def sampled(g: dict[str, Any], prompts: str = "vip") -> str:
    """MANUAL_REVIEW answers among GRPO's samples on `prompts` ("vip" or "non_vip"): k/n = share."""
    k, n = g[f"{prompts}_manual_review_samples"], g[f"{prompts}_samples"]
    return NA if k is None or n is None else f"{k}/{n}" + ("" if not n else f" = {pct(k / n)}%")


def summary_cells(s: dict[str, Any], unit: str, signed: bool = False) -> list[Any]:
    ci = NA if s["ci95_low"] is None else f"[{num(s['ci95_low'], unit, signed)}, {num(s['ci95_high'], unit, signed)}]"
    return [s["n"], num(s["mean"], unit, signed), num(s["sd"], unit), ci, num(s["min"], unit, signed),
            num(s["max"], unit, signed)]


def render_seeds(results: dict[str, Any]) -> list[str]:
    models, units = results["models"], {"prediction_entropy_bits": "bits"}
    lines = ["## Across seeds", "",
             "Mean, sample sd (ddof=1) and 95% t-interval of the mean over the seeds (n/a when n < 2; not "
             "clipped to 0-100%: with few seeds t is large).", ""]
    lines += table(["model", "metric", "n", "mean", "sd", "95% CI (t)", "min", "max"],
                   [[m, k, *summary_cells(s, units.get(k, "%"))]
                    for m in models for k, s in results["summary"][m].items()])
    lines += ["", "## Paired differences (per seed, then across seeds)", ""]
    lines += (table(["A - B", "metric", "n", "mean", "sd", "95% CI (t)", "min", "max"],
                    [[f"{d['a']} - {d['b']}", d["metric"], *summary_cells(d["summary"], "pp", signed=True)]
                     for d in results["differences"]]) if results["differences"] else ["No contrast has both models."])
    lines += ["", "## Every seed", ""]
    lines += table(["run", "seed", *(f"{m} {k}" for m in models for k in ("accuracy", "VIP"))],
                   [[row["run"], na(row["seed"]),
                     *(num(row["values"][m][k], "%") for m in models for k in PROPORTIONS)]
                    for row in results["per_seed"]])
    return lines


def render_reward(results: dict[str, Any]) -> list[str]:
    lines = []
    for m in results["rl_models"]:
        lines += [f"## {m} per reward preset", ""]
        lines += table(["run", "preset", "accuracy", "VIP accuracy", "frac_reward_zero_std",
                        "VIP samples with MANUAL_REVIEW", "invalid rate", "entropy (bits)"],
                       [[row["run"], row["preset"] or NA, acc_cell(row[m]["accuracy"]),
                         acc_cell(row[m]["vip_accuracy"]), num(row[m][ZERO_STD], "%"), sampled(row[m]),
                         num(row[m]["invalid_rate"], "%"), num(row[m]["prediction_entropy_bits"], "bits")]
                        for row in results["rows"]])
        lines.append("")
    return lines[:-1]


def render_prior(results: dict[str, Any]) -> list[str]:
    sentences = [(f"- GRPO lr {num(w['grpo_lr'], 'p')}: never reached VIP accuracy > 0 in its {w['runs']} runs."
                  if w["run"] is None else
                  f"- GRPO lr {num(w['grpo_lr'], 'p')}: the sharpest prior at which GRPO reached VIP accuracy > 0 is "
                  f"base log10 P(MANUAL_REVIEW | VIP) = {num(w['log10_p_manual_review_vip'], 'log10')} (run "
                  f"`{w['run']}`, GRPO VIP accuracy {acc_cell(w['grpo_vip_accuracy'])}).")
                 for w in results["sharpest_prior_with_vip"]]
    lines = ["## Base prior vs GRPO finding the hidden rule", "", *sentences, "",
             "Rows sorted by the base model's log10 mean P(MANUAL_REVIEW | VIP prompt), sharpest prior first. "
             "MR = MANUAL_REVIEW; P(MR) = the model's mean probability of answering MANUAL_REVIEW on the VIP "
             "test prompts (temperature 1), and the mean of its log10.", ""]
    lines += table(["run", "overrides", "GRPO lr", "base P(MR)", "base log10 P(MR)", "baseline accuracy",
                    "baseline MR share",
                    "GRPO VIP accuracy", "GRPO accuracy", "GRPO VIP samples with MR", "GRPO P(MR)",
                    "GRPO log10 P(MR)"],
                   [[row["run"], row["overrides"], num(row["grpo_lr"], "p"), num(b["p_manual_review_vip"], "p"),
                     num(b["log10_p_manual_review_vip"], "log10"), acc_cell(b["accuracy"]),
                     num(b["manual_review_share"], "%"), acc_cell(g["vip_accuracy"]), acc_cell(g["accuracy"]),
                     sampled(g), num(g["p_manual_review_vip"], "p"), num(g["log10_p_manual_review_vip"], "log10")]
                    for row in results["rows"] for b, g in [(row["baseline"], row["grpo"])]])
    if results["not_plotted"]:
        lines += ["", f"Not plotted (no base P(MANUAL_REVIEW | VIP) in their baseline metrics): "
                      f"{', '.join(results['not_plotted'])}."]
    return lines


def render_data(results: dict[str, Any]) -> list[str]:
    lines = ["## Per data size", ""]
    lines += table(["model", "run", "generate.n", "test n", "accuracy", "VIP accuracy", "invalid rate",
                    "entropy (bits)"],
                   [[row["model"], row["run"], na(row["generate_n"]),
                     na(row["n"]), acc_cell(row["accuracy"]),
                     acc_cell(row["vip_accuracy"]), num(row["invalid_rate"], "%"),
                     num(row["prediction_entropy_bits"], "bits")] for row in results["rows"]])
    lines += ["", "## Training time (s)", ""]
    lines += table(["run", "generate.n", *(f"{s} runtime_s" for s in results["stages"]), "run wall time"],
                   [[t["run"], na(t["generate_n"]),
                     *(num(t["runtime_s"][s], "s") for s in results["stages"]), wall(t["wall_time_s"])]
                    for t in results["training"]])
    lines += ["", f"## What changed against `{results['reference']}`", "",
              "Unpaired (the test sets differ): difference with a Newcomb 95% interval; width ratio = this run's "
              "Wilson interval width / the reference's.", ""]
    lines += (table(["model", "metric", "run", "value", "reference", "difference [95% CI]", "width ratio"],
                    [[c["model"], c["metric"], c["run"], num(c["value"], "%"), num(c["reference_value"], "%"),
                      NA if c["diff"] is None else
                      f"{num(c['diff'], 'pp', True)} [{num(c['ci95_low'], 'pp', True)}, "
                      f"{num(c['ci95_high'], 'pp', True)}]",
                      NA if c["width_ratio"] is None else f"{c['width_ratio']:.2f}"] for c in results["changes"]])
              if results["changes"] else ["Only one run: nothing to compare."])
    return lines


def render_control(results: dict[str, Any]) -> list[str]:
    lines = ["## Does GRPO amplify an association it samples?", "",
             "P(MR) = mean probability of answering exactly MANUAL_REVIEW at temperature 1 on the VIP test prompts "
             "(where it is right) and on the other test prompts (where it is wrong), before GRPO (the base) and "
             "after. Sampled MR: MANUAL_REVIEW answers among GRPO's training samples on VIP and on other prompts.",
             ""]
    lines += table(["run", "prior", "base VIP accuracy", "GRPO VIP accuracy", "base accuracy", "GRPO accuracy",
                    "P(MR | VIP) base -> GRPO", "P(MR | other) base -> GRPO", "sampled MR on VIP prompts",
                    "sampled MR on other prompts"],
                   [[row["run"], row["overrides"], acc_cell(b["vip_accuracy"]), acc_cell(g["vip_accuracy"]),
                     acc_cell(b["accuracy"]), acc_cell(g["accuracy"]),
                     f"{num(b['p_manual_review_vip'], 'p')} -> {num(g['p_manual_review_vip'], 'p')}",
                     f"{num(b['p_manual_review_non_vip'], 'p')} -> {num(g['p_manual_review_non_vip'], 'p')}",
                     sampled(g), sampled(g, "non_vip")]
                    for row in results["rows"] for b, g in [(row["baseline"], row["grpo"])]])
    return lines


def render_tune(results: dict[str, Any]) -> list[str]:
    lines = ["## Winners (the recipes params.yaml's cpu profile uses)", ""]
    lines += [f"- {m}: `{w}`" if w else f"- {m}: none (no candidate has a validation score)"
              for m, w in results["winners"].items()]
    for m, rows in results["methods"].items():
        lines += ["", f"## {m} candidates", "",
                  "Validation slice: final and best point of the curve (greedy decoding); VIP = its MANUAL_REVIEW "
                  "rows. Tokens: processed by the trainer (num_tokens). Wall time: the whole experiment.", ""]
        lines += table(["run", "lr", "epochs", *(["temperature"] if m == "grpo" else []), "steps", "tokens (M)",
                        "val accuracy (final)", "val VIP accuracy (final)", "best val accuracy (step)",
                        "wall time (s)", "winner"],
                       [[row["run"], num(row["lr"], "p"), na(row["epochs"]),
                         *([na(row["temperature"])] if m == "grpo" else []), na(row["steps"]),
                         NA if row["num_tokens"] is None else f"{row['num_tokens'] / 1e6:.2f}",
                         acc_cell(row["val_accuracy"]), acc_cell(row["val_vip_accuracy"]),
                         f"{acc_cell(row['best_val_accuracy'])} ({na(row['best_step'])})", wall(row["wall_time_s"]),
                         "yes" if row["winner"] else ""] for row in rows])
    return lines


def na(x: Any) -> Any:
    return NA if x is None else x


def wall(seconds: float | None) -> str:
    if seconds is None:
        return "n/a (not timed: restored from cache, or run before the study timed each run)"
    return f"{seconds:.1f}"


def render_markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [f"# Study: {results['study']}", "",
             "_Generated by fincorp.study_report, do not edit: rerun the command below. "
             "The same numbers are in results.json._", "",
             meta.get("description") or "", "",
             f"- rerun: `{meta.get('command') or NA}`",
             f"- baseline commit: `{meta.get('baseline_commit') or NA}`",
             f"- study wall time (s): {num(meta.get('wall_time_s'), 's')}",
             *(f"- {k}: {v}" for k, v in sorted(meta.items())
               if k not in ("study", "description", "command", "baseline_commit", "wall_time_s")),
             f"- runs: {len(results['runs'])}; models: {', '.join(results['models']) or 'none'}", "",
             "Accuracy cells: correct/n = % [95% Wilson interval, %]. Missing values: n/a.", ""]
    lines += STUDY[results["study"]][2](results)
    lines += ["", "## Runs", ""]
    kept = sum(bool(r.get("from_report")) for r in results["runs"])
    if kept:
        lines += [f"{kept} runs marked * are kept from the earlier report: their experiments are not in this "
                  "repository (a clone does not bring refs/exps/), so their numbers are the ones read from those "
                  "commits when they were here.", ""]
    lines += table(["run", "experiment", "commit", "overrides", "wall time (s)", "torch threads"],
                   [[r["run"] + (" *" if r.get("from_report") else ""), r.get("experiment") or NA,
                     (r.get("commit") or NA)[:12],
                     overrides_text(r.get("overrides")), "not run" if r.get("not_run") else wall(r.get("wall_time_s")),
                     r.get("threads") or NA] for r in results["runs"]])
    lines += ["", "## Figures"]
    for name, status in results["figures"].items():
        lines += ["", f"### {name}", "", f"![{name}]({name})" if status == "written" else status]
    return "\n".join(lines) + "\n"


# study -> (compute the study's part of results.json, draw its figure, render its sections of results.md)
STUDY = {"seeds": (seeds_results, plot_seeds, render_seeds), "reward": (reward_results, plot_reward, render_reward),
         "prior": (prior_results, plot_prior, render_prior), "data": (data_results, plot_data, render_data),
         "tune": (tune_results, plot_tune, render_tune),
         "control": (control_results, plot_control, render_control),
         "discovery": (discovery.results, discovery.plot, discovery.render)}
