"""Stage `report`: every model side by side, against the article, with paired tests -> reports/.

    fincorp report              (or: dvc repro report)

Reads what the other stages wrote: eval/<model>.json (the full eval record) and predictions/<model>.jsonl
(stage `eval`), the training curves dvclive wrote under logs/<stage>/plots/metrics/, the run records
(models/base/meta.json, models/<model>/run.json), dvc.lock and params.yaml. A model without an eval
record (grpo before it is trained) is left out and named as missing; a missing curve or record skips
that figure or row and says so. Nothing is ever guessed.

Writes
  reports/metrics.json  the one DVC metrics file (`dvc metrics diff`, `dvc exp show`): per model, the seven
                        scalars a person compares (summary_metrics), keyed <model>.<metric> so that
                        `dvc exp show` names each column by that key alone (grpo.acc, hybrid.vip)
  reports/results.md    generated, do not edit: the tables below, rendered from results.json
  reports/results.json  the same numbers (indent=2, sorted keys)
  reports/*.png         accuracy.png, confusion.png, sft_loss.png, grpo_reward.png, grpo_label_share.png,
                        hybrid_reward.png, hybrid_label_share.png
  reports/telemetry.md  only when telemetry/*.json exist (the stages' wall times, memory, throughput,
                        hardware, host, git commit): git-ignored, neither a DVC output nor a dependency,
                        removed when there is no telemetry. Nothing from telemetry reaches results.*

What is computed (all through fincorp.stats):
  - accuracy, VIP accuracy (the MANUAL_REVIEW items) and per-class recall with 95% Wilson intervals,
    as stage eval wrote them;
  - the article's numbers with the denominators its scripts actually used (SEED-NOTES: baseline 54/160,
    GRPO 26/60, SFT 53/60, VIP 1/14 and 12/14: the headline percentages come from different subsets),
    with Wilson intervals, and whether each overlaps ours. Descriptive only: our model and test set
    are not the article's;
  - for every pair of models, on all items and on the VIP items: McNemar's exact test (the models
    answer the same items, so only the items where exactly one is right carry information; an
    unpaired two-proportion test would ignore that) and a paired bootstrap 95% percentile interval
    of the accuracy difference (10,000 resamples of the per-item differences, seeded from `seed`);
  - provenance: profile, seeds, base model, the md5 of every stage's deps and outs in dvc.lock (they
    identify the code, params and data that made the numbers), library versions, and the deterministic
    facts of every stage's record (parameter count, steps, training loss).

Deterministic: results.md and results.json hold no timestamps, timings, host or git commit, so
identical inputs give identical bytes; PNGs are written without the Software tag. The report's own
dvc.lock entry is left out (it describes the previous run of this stage). Curves: dvclive writes the
per-step values the trainer logs to plots/metrics/<name>.tsv; plots/metrics/train/<name>.tsv holds only
the end-of-run summary (one row).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from ruamel.yaml import YAML

from fincorp.scoring import INVALID
from fincorp.jsonl import DataError, read_jsonl, write_json
from fincorp.params import load_params
from fincorp.rules import LABELS, MANUAL_REVIEW
from fincorp.stats import mcnemar_exact, paired_bootstrap_diff, wilson

MODELS = ("baseline", "sft", "grpo", "hybrid")  # hybrid: GRPO from the SFT adapter
BASELINE = "baseline"  # the base model itself: its record is models/base/meta.json, it has no run.json
SHARE_LABELS = (*LABELS, INVALID)
N_RESAMPLES = 10_000

# The article's numbers as (correct, n) with the denominators its published scripts used (SEED-NOTES.md).
# The article gives no VIP number for the baseline.
ARTICLE: dict[str, dict[str, tuple[int, int] | None]] = {
    "baseline": {"accuracy": (54, 160), "vip_accuracy": None},
    "sft": {"accuracy": (53, 60), "vip_accuracy": (12, 14)},
    "grpo": {"accuracy": (26, 60), "vip_accuracy": (1, 14)},
}

# Figure -> the dvclive TSVs (under logs/) it plots, each with the column holding the value.
CURVES: dict[str, tuple[tuple[str, str], ...]] = {
    "sft_loss.png": (("sft/plots/metrics/loss.tsv", "loss"),),
    "grpo_reward.png": (("grpo/plots/metrics/reward.tsv", "reward"),
                        ("grpo/plots/metrics/frac_reward_zero_std.tsv", "frac_reward_zero_std")),
    "grpo_label_share.png": tuple((f"grpo/plots/metrics/sampled_share/{label}.tsv", label)
                                  for label in SHARE_LABELS),
    "hybrid_reward.png": (("hybrid/plots/metrics/reward.tsv", "reward"),
                          ("hybrid/plots/metrics/frac_reward_zero_std.tsv", "frac_reward_zero_std")),
    "hybrid_label_share.png": tuple((f"hybrid/plots/metrics/sampled_share/{label}.tsv", label)
                                    for label in SHARE_LABELS),
}
CURVE_STAGE = {name: name.split("_")[0] for name in CURVES}  # the stage whose logs a figure plots
TRAINED = ("sft", "grpo", "hybrid")  # the models with a training run (a recipe, a budget, a learning curve)
VAL_CURVE = ("plots/metrics/val/accuracy.tsv", "accuracy")  # under logs/<stage>/: the validation slice
TOKENS = ("plots/metrics/num_tokens.tsv", "num_tokens")  # tokens the trainer processed, by step
# The article's recipes (its "Configuration" paragraph), beside ours in the budget table.
ARTICLE_RECIPES = {
    "sft": "lr 2e-5, 4 epochs, batch 2 x grad-acc 4",
    "grpo": "lr 1e-5, 4 epochs, 8 generations, grad-acc 8, max completion 150",
    "hybrid": "not run (recommended)",
}

# Keys copied from the run records (meta.json, run.json) into the provenance.
RECORD_KEYS = ("num_parameters", "global_step", "train_loss", "mean_frac_reward_zero_std", "vip_samples",
               "vip_manual_review_samples", "init_adapter", "versions")
# telemetry/<stage>.json keys with a column of their own in telemetry.md (the rest go under "details").
TELEMETRY_COLUMNS = ("stage", "wall_time_s", "peak_memory_mib", "host", "git_commit", "hardware")
PNG_METADATA = {"Software": None}  # no matplotlib version stamp: bytes depend on the data only
# reports/metrics.json's per-class keys: short, because `dvc exp show` makes each <model>.<key> a column.
CLASS_KEYS = {"A_PLUS_TIER": "a_plus", "STANDARD_LOAN": "standard", "REJECT_RISK": "reject"}


def run(params_path: str, models: Sequence[str] = MODELS, out_dir: str = "reports", eval_dir: str = "eval",
        predictions_dir: str = "predictions", logs_dir: str = "logs", lock: str = "dvc.lock",
        models_dir: str = "models", telemetry_dir: str = "telemetry") -> dict[str, Any]:
    p = load_params(params_path)
    eval_dir_, predictions_dir_, logs_dir_, models_dir_ = map(Path, (eval_dir, predictions_dir, logs_dir, models_dir))
    models = list(models)

    # Read.
    present = [m for m in models if (eval_dir_ / f"{m}.json").is_file()]
    missing = [m for m in models if m not in present]
    if not present:
        raise FileNotFoundError(f"{eval_dir}/: no eval record (metrics) for any of {', '.join(models)}; "
                                f"evaluate first (`dvc repro eval`)")
    metrics = {m: read_json(eval_dir_ / f"{m}.json") for m in present}
    prediction_paths = {m: predictions_dir_ / f"{m}.jsonl" for m in present}
    predictions = {m: read_jsonl(path) for m, path in prediction_paths.items()}
    curves = {name: {column: read_tsv(logs_dir_ / rel, column) for rel, column in files}
              for name, files in CURVES.items()}
    trained = [m for m in present if m in TRAINED]
    val_curves = {m: read_tsv(logs_dir_ / m / VAL_CURVE[0], VAL_CURVE[1]) for m in trained}
    tokens = {m: read_tsv(logs_dir_ / m / TOKENS[0], TOKENS[1]) for m in trained}
    record_paths = {"base": models_dir_ / "base" / "meta.json"}
    record_paths |= {m: models_dir_ / m / "run.json" for m in models if m != BASELINE}
    records = {stage: read_json(path) if path.is_file() else None for stage, path in record_paths.items()}
    lock_data = YAML(typ="safe", pure=True).load(Path(lock)) if Path(lock).is_file() else None
    telemetry = {path.stem: read_json(path) for path in sorted(Path(telemetry_dir).glob("*.json"))}

    # Compute.
    labels, correct = align_predictions(predictions, prediction_paths, metrics, eval_dir)
    comparison = article_comparison(metrics, models)
    figures: dict[str, Figure | str] = {
        "accuracy.png": plot_accuracy(comparison, models),
        "confusion.png": plot_confusion(metrics),
        "learning_curves.png": plot_learning_curves(val_curves, tokens, p.split.holdout_val),
    }
    for name, data in curves.items():
        absent = [str(logs_dir_ / rel) for rel, column in CURVES[name] if data[column] is None]
        empty = [str(logs_dir_ / rel) for rel, column in CURVES[name] if data[column] == ([], [])]
        if absent or empty:
            figures[name] = (f"not drawn: {', '.join(absent)} not found (run `dvc repro {CURVE_STAGE[name]}`)"
                             if absent else f"not drawn: {', '.join(empty)} has no rows")
        elif name == "sft_loss.png":
            figures[name] = plot_sft_loss(data["loss"])
        elif name.endswith("_reward.png"):
            figures[name] = plot_grpo_reward(data["reward"], data["frac_reward_zero_std"], CURVE_STAGE[name])
        else:
            figures[name] = plot_label_share(data, CURVE_STAGE[name])
    results = {
        "generated_by": "fincorp report",
        "models": models,
        "missing_models": {m: str(eval_dir_ / f"{m}.json") for m in missing},
        "metrics": metrics,
        "gold_distribution": gold_distribution(labels),
        "article": comparison,
        "paired": paired_tests(labels, correct, present, p.seed, N_RESAMPLES),
        "bootstrap": {"n_resamples": N_RESAMPLES, "confidence": 0.95, "seed": p.seed, "method": "percentile"},
        "figures": {name: fig if isinstance(fig, str) else "written" for name, fig in figures.items()},
        "budget": budget(p, trained, records, val_curves, tokens),
        "provenance": {
            "profile": p.profile,
            "holdout_val": p.split.holdout_val,
            "seeds": {"seed": p.seed, "generate.seed": p.generate.seed, "split.seed": p.split.seed},
            "model": {"source": p.model.source, "name": p.model.name, "revision": p.model.revision},
            "dvc_lock": {"file": str(lock), "entries": lock_entries(lock_data) if lock_data else None},
            "records": {stage: {"file": str(record_paths[stage]),
                                "record": None if r is None else {k: r[k] for k in RECORD_KEYS if k in r}}
                        for stage, r in records.items()},
        },
    }

    # Write.
    out = Path(out_dir)
    write_outputs(out, figures, results, render_markdown(results))
    write_json(out / "metrics.json", {m: summary_metrics(metrics[m]) for m in present})
    if telemetry:
        (out / "telemetry.md").write_text(render_telemetry(telemetry, telemetry_dir), encoding="utf-8", newline="\n")
    else:
        (out / "telemetry.md").unlink(missing_ok=True)  # never show an earlier run's timings as this one's
    print(f"report: {', '.join(present)} -> {out}/results.md"
          + (f" (missing: {', '.join(missing)})" if missing else "")
          + (f"; telemetry of {len(telemetry)} stage runs -> {out}/telemetry.md" if telemetry else ""))
    return results


def summary_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The scalars a person compares across runs, from one eval record (eval.compute_metrics): what
    reports/metrics.json holds per model. Pure.

    acc (all rows), vip (the MANUAL_REVIEW rows), a_plus, standard, reject (recall of each other class),
    invalid (share of unparseable answers), entropy (of the predicted-label distribution, bits).
    """
    return {"acc": record["accuracy"]["value"], "vip": record["vip_accuracy"]["value"],
            **{key: record["per_class"][label]["value"] for label, key in CLASS_KEYS.items()},
            "invalid": record["invalid_rate"], "entropy": record["prediction_entropy_bits"]}


def write_outputs(out: Path, figures: dict[str, Figure | str], results: dict[str, Any], markdown: str) -> None:
    """out/: each figure as a PNG (a figure given as a string was not drawn: any old file of that name is
    removed), results.json and results.md (written to a temp file, then moved into place)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        if isinstance(fig, str):
            (out / name).unlink(missing_ok=True)  # never leave a figure from an earlier run beside new numbers
        else:
            fig.savefig(out / name, dpi=120, bbox_inches="tight", metadata=PNG_METADATA)
    write_json(out / "results.json", results)
    tmp = out / "results.md.tmp"
    tmp.write_text(markdown, encoding="utf-8", newline="\n")
    tmp.replace(out / "results.md")


# --- reading ---------------------------------------------------------------------------------------

def read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); rerun the stage that writes it") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_tsv(path: Path, column: str) -> tuple[list[int], list[float]] | None:
    """(steps, values) of one dvclive TSV (columns step and `column`), or None if there is no such file."""
    if not path.is_file():
        return None
    steps, values = [], []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if not reader.fieldnames or "step" not in reader.fieldnames or column not in reader.fieldnames:
            raise DataError(f"{path}:1: expected the columns step and {column}, got {reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            try:
                steps.append(int(row["step"]))
                values.append(float(row[column]))
            except (TypeError, ValueError):
                raise DataError(f"{path}:{lineno}: expected an integer step and a number, got {row}") from None
    return steps, values


# --- computing (pure) --------------------------------------------------------------------------------

def align_predictions(predictions: dict[str, list[dict]], paths: dict[str, Path],
                      metrics: dict[str, dict], eval_dir: str = "eval") -> tuple[list[str], dict[str, list[bool]]]:
    """Gold labels and each model's per-item correctness, over the same items in id order.

    Paired tests compare the models item by item, so every predictions file must hold the same ids,
    once each, with the same gold label, and agree with its eval record; anything else is an error.
    """
    by_model: dict[str, dict[str, dict]] = {}
    for m, rows in predictions.items():
        seen: dict[str, int] = {}
        for lineno, row in enumerate(rows, start=1):
            for key in ("id", "label", "prediction", "correct"):
                if key not in row:
                    raise DataError(f"{paths[m]}:{lineno}: missing key {key!r}")
            if row["id"] in seen:
                raise DataError(f"{paths[m]}:{lineno}: id {row['id']} already on line {seen[row['id']]}")
            if row["correct"] != (row["prediction"] == row["label"]):
                raise DataError(f"{paths[m]}:{lineno}: correct={row['correct']} but prediction "
                                f"{row['prediction']!r} and label {row['label']!r}")
            seen[row["id"]] = lineno
        k = sum(bool(row["correct"]) for row in rows)
        if (len(rows), k) != (metrics[m]["n"], metrics[m]["accuracy"]["correct"]):
            raise DataError(f"{paths[m]}: {len(rows)} rows with {k} correct, but {eval_dir}/{m}.json says "
                            f"n={metrics[m]['n']} with {metrics[m]['accuracy']['correct']} correct; both come "
                            f"from `dvc repro eval@{m}`: rerun it")
        by_model[m] = {row["id"]: row for row in rows}
    first, *others = by_model
    ids = sorted(by_model[first])
    for m in others:
        only_first = sorted(set(by_model[first]) - set(by_model[m]))
        only_m = sorted(set(by_model[m]) - set(by_model[first]))
        if only_first or only_m:
            raise DataError(
                f"{paths[m]} and {paths[first]} cover different test items ({len(only_m)} ids only in {m}"
                f"{', e.g. ' + only_m[0] if only_m else ''}; {len(only_first)} only in {first}"
                f"{', e.g. ' + only_first[0] if only_first else ''}); paired tests need the same items: "
                f"rerun `dvc repro eval` so every model is scored on the same data/test.jsonl")
        for i in ids:
            if by_model[m][i]["label"] != by_model[first][i]["label"]:
                raise DataError(f"{paths[m]} and {paths[first]} disagree on the gold label of {i} "
                                f"({by_model[m][i]['label']} vs {by_model[first][i]['label']}); rerun `dvc repro eval`")
    labels = [by_model[first][i]["label"] for i in ids]
    return labels, {m: [bool(by_model[m][i]["correct"]) for i in ids] for m in by_model}


def proportion(k: int, n: int) -> dict[str, Any]:
    """k of n with its Wilson 95% interval, in the shape stage eval writes."""
    lo, hi = wilson(k, n)
    return {"value": k / n if n else 0.0, "correct": k, "n": n, "ci95_low": lo, "ci95_high": hi}


def article_comparison(metrics: dict[str, dict], models: Sequence[str]) -> list[dict[str, Any]]:
    """One row per model and metric: ours (None if not evaluated), the article's, whether the intervals overlap."""
    rows = []
    for m in models:
        for metric in ("accuracy", "vip_accuracy"):
            ours = metrics[m][metric] if m in metrics else None
            published = ARTICLE.get(m, {}).get(metric)
            article = proportion(*published) if published else None
            overlap = (None if ours is None or article is None else
                       max(ours["ci95_low"], article["ci95_low"]) <= min(ours["ci95_high"], article["ci95_high"]))
            rows.append({"model": m, "metric": metric, "ours": ours, "article": article, "overlap": overlap})
    return rows


def gold_distribution(labels: list[str]) -> dict[str, Any]:
    """Share of each gold label (the distribution a model that never collapses would match)."""
    shares = {c: sum(1 for g in labels if g == c) / len(labels) for c in SHARE_LABELS}
    return {"n": len(labels), "distribution": shares,
            "entropy_bits": -sum(q * math.log2(q) for q in shares.values() if q > 0)}


def paired_tests(labels: list[str], correct: dict[str, list[bool]], models: Sequence[str], seed: int,
                 n_resamples: int) -> list[dict[str, Any]]:
    """McNemar's exact test and a paired bootstrap of the accuracy difference, for every pair, all and VIP.

    For models listed in the order m1, m2, ... the pair is (later, earlier): the difference is
    later - earlier (sft - baseline), and McNemar's `only_a_correct` counts the later model.
    """
    subsets = {"all": [True] * len(labels), "VIP": [g == MANUAL_REVIEW for g in labels]}
    out = []
    for i, b in enumerate(models):
        for a in models[i + 1:]:
            for subset, keep in subsets.items():
                ca = [c for c, k in zip(correct[a], keep) if k]
                cb = [c for c, k in zip(correct[b], keep) if k]
                n = len(ca)
                out.append({
                    "model": a, "versus": b, "subset": subset, "n": n,
                    "accuracy": sum(ca) / n if n else None, "accuracy_versus": sum(cb) / n if n else None,
                    "mcnemar": mcnemar_exact(ca, cb) if n else None,
                    "bootstrap": paired_bootstrap_diff(ca, cb, seed=seed, n_resamples=n_resamples) if n else None,
                })
    return out


def lock_entries(lock: dict[str, Any]) -> list[dict[str, Any]]:
    """(stage, dep/out, path, md5) for every stage in dvc.lock but this one."""
    rows = []
    for stage, entry in (lock.get("stages") or {}).items():
        if stage == "report":
            continue
        for kind in ("deps", "outs"):
            for item in entry.get(kind) or []:
                rows.append({"stage": stage, "kind": kind[:-1], "path": item.get("path"), "md5": item.get("md5")})
    return rows


# --- figures (pure: each returns a matplotlib Figure, run() saves it) ----------------------------------

def budget(p: Any, trained: Sequence[str], records: dict[str, dict | None],
           val_curves: dict[str, tuple[list[int], list[float]] | None],
           tokens: dict[str, tuple[list[int], list[float]] | None]) -> list[dict[str, Any]]:
    """Recipe and training budget per trained model, side by side: what each method was given."""
    rows = []
    for m in trained:
        section = p.sft if m == "sft" else p.grpo
        per_step = section.per_device_train_batch_size * section.gradient_accumulation_steps * p.launch.num_processes
        generations = p.grpo.num_generations if m != "sft" else 1  # GRPO's batch counts completions
        record, curve, tok = records.get(m) or {}, val_curves.get(m), tokens.get(m)
        rows.append({
            "model": m, "lr": section.lr, "lr_scheduler_type": section.lr_scheduler_type,
            "warmup_steps": section.warmup_steps, "num_train_epochs": section.num_train_epochs,
            "temperature": p.grpo.temperature if m != "sft" else None,
            "optimizer_steps": record.get("global_step"), "prompts_per_step": per_step // generations,
            "samples_per_prompt": generations,
            "tokens_processed": tok[1][-1] if tok and tok[1] else None,
            "val_first": curve[1][0] if curve and curve[1] else None,
            "val_last": curve[1][-1] if curve and curve[1] else None,
            "article": ARTICLE_RECIPES[m],
        })
    return rows


def plot_learning_curves(val_curves: dict[str, tuple[list[int], list[float]] | None],
                         tokens: dict[str, tuple[list[int], list[float]] | None], held_out: bool) -> Figure | str:
    drawn = {m: c for m, c in val_curves.items() if c and c[0]}
    if not drawn:
        return "not drawn: no training stage logged a validation curve (logs/<stage>/plots/metrics/val/)"
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2, sharey=True)
    for i, (m, (steps, acc)) in enumerate(drawn.items()):
        y = [100 * a for a in acc]
        left.plot(steps, y, marker="o", ms=3, color=f"C{i}", label=m)
        tok = tokens.get(m)
        if tok and tok[0]:
            x = np.interp(steps, [0, *tok[0]], [0.0, *tok[1]]) / 1e6
            right.plot(x, y, marker="o", ms=3, color=f"C{i}", label=m)
    where = "held out" if held_out else "rows also in the training set: in-sample"
    left.set_ylabel(f"validation-slice accuracy, % ({where})")
    left.set_xlabel("optimizer step")
    right.set_xlabel("tokens processed (millions)")
    for ax in (left, right):
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_accuracy(comparison: list[dict[str, Any]], models: Sequence[str]) -> Figure:
    """Accuracy and VIP accuracy per model, ours beside the article's, with 95% Wilson error bars."""
    fig = Figure(figsize=(10, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    bars = (("ours", -0.2, "C0", "this run"), ("article", 0.2, "C1", "article (true denominator)"))
    titles = {"accuracy": "Accuracy, all test items", "vip_accuracy": "VIP accuracy (MANUAL_REVIEW items)"}
    for ax, metric in zip(axes, ("accuracy", "vip_accuracy")):
        for x, m in enumerate(models):
            row = next(r for r in comparison if r["model"] == m and r["metric"] == metric)
            for key, dx, color, _ in bars:
                a = row[key]
                if a is None:
                    ax.text(x + dx, 2, "not run" if key == "ours" else "n/a", ha="center", va="bottom",
                            rotation=90, fontsize=9, color="0.35")
                    continue
                v, lo, hi = (100 * a[k] for k in ("value", "ci95_low", "ci95_high"))
                ax.bar(x + dx, v, width=0.38, color=color)
                ax.errorbar(x + dx, v, yerr=[[v - lo], [hi - v]], fmt="none", ecolor="black", capsize=4, lw=1)
                ax.text(x + dx, hi + 1.5, f"{a['correct']}/{a['n']}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(models)), models)
        ax.set_title(titles[metric])
        ax.set_ylim(0, 120)
        ax.set_yticks(range(0, 101, 20))
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("% correct (95% Wilson interval)")
    axes[0].legend(handles=[Patch(color=c, label=label) for _, _, c, label in bars], loc="upper left", ncol=2,
                   fontsize=9, frameon=False)
    fig.tight_layout()
    return fig


def plot_confusion(metrics: dict[str, dict]) -> Figure:
    """One confusion matrix per model: gold rows, predicted columns (INVALID included), counts annotated."""
    fig = Figure(figsize=(4.6 * len(metrics), 4.4))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    top = max(max(row.values()) for mt in metrics.values() for row in mt["confusion"].values()) or 1  # one scale
    for ax, (m, mt) in zip(axes, metrics.items()):
        counts = [[mt["confusion"][g][c] for c in SHARE_LABELS] for g in LABELS]
        ax.imshow(counts, cmap="Blues", vmin=0, vmax=top)
        for i, r in enumerate(counts):
            for j, c in enumerate(r):
                ax.text(j, i, str(c), ha="center", va="center", fontsize=10,
                        color="white" if c > top / 2 else "black")
        ax.set_xticks(range(len(SHARE_LABELS)), SHARE_LABELS, rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(len(LABELS)), LABELS, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_title(f"{m}: accuracy {100 * mt['accuracy']['value']:.1f}% (n={mt['n']})", fontsize=10)
    axes[0].set_ylabel("gold")
    fig.tight_layout()
    return fig


def plot_sft_loss(loss: tuple[list[int], list[float]]) -> Figure:
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    ax.plot(*loss, marker=".", color="C0")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title("SFT training loss (logged every sft.logging_steps)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


STAGE_TITLE = {"grpo": "GRPO", "hybrid": "Hybrid (GRPO from the SFT adapter)"}


def plot_grpo_reward(reward: tuple[list[int], list[float]], zero_std: tuple[list[int], list[float]],
                     stage: str = "grpo") -> Figure:
    fig = Figure(figsize=(7, 6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(*reward, marker=".", color="C0")
    top.set_ylabel("mean reward")
    top.set_title(f"{STAGE_TITLE[stage]} reward per logged step")
    bottom.plot(*zero_std, marker=".", color="C3")
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_ylabel("frac_reward_zero_std")
    bottom.set_title("Share of groups with equal rewards (zero advantage: nothing to learn)")
    bottom.set_xlabel("optimizer step")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_label_share(shares: dict[str, tuple[list[int], list[float]]], stage: str = "grpo") -> Figure:
    """Stacked shares of the labels GRPO sampled per logged step (the five TSVs are logged together)."""
    steps = shares[SHARE_LABELS[0]][0]
    if any(shares[label][0] != steps for label in SHARE_LABELS):
        raise DataError(f"logs/{stage}/plots/metrics/sampled_share/*.tsv: the five files log different steps; "
                        f"rerun `dvc repro {stage}`")
    fig = Figure(figsize=(8, 4.2))
    ax = fig.subplots()
    ax.stackplot(steps, *(shares[label][1] for label in SHARE_LABELS), labels=SHARE_LABELS,
                 colors=[f"C{i}" for i in range(len(SHARE_LABELS))], alpha=0.85)
    ax.set_xlim(steps[0], steps[-1])
    ax.set_ylim(0, 1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("share of sampled completions")
    ax.set_title(f"{STAGE_TITLE[stage]}: labels the policy sampled (mode collapse: one or two bands take over)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()  # top band first, as stacked
    ax.legend(handles[::-1], labels[::-1], loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9,
              frameon=False)
    fig.tight_layout()
    return fig


# --- results.md (pure: rendered from results.json's content) -------------------------------------------

def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def acc_cell(a: dict[str, Any] | None, missing: str = "n/a") -> str:
    if a is None:
        return missing
    return f"{a['correct']}/{a['n']} = {pct(a['value'])}% [{pct(a['ci95_low'])}, {pct(a['ci95_high'])}]"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def render_markdown(results: dict[str, Any]) -> str:
    metrics, models = results["metrics"], results["models"]
    present = [m for m in models if m in metrics]
    prov = results["provenance"]
    yes_no = {True: "yes", False: "no", None: "n/a"}
    lines = ["# Results", "",
             "_Generated by `fincorp report`, do not edit: rerun `dvc repro report`. "
             "The same numbers are in results.json._", ""]
    lines.append(f"Models evaluated: {', '.join(present)}.")
    for m, path in results["missing_models"].items():
        lines.append(f"Missing: **{m}** has no metrics ({path} not found; run `dvc repro eval@{m}`), "
                     f"so it is left out below.")
    lines += ["", "Accuracy cells: correct/n = % [95% Wilson interval, %].", ""]

    lines += ["## 1. Headline", ""]
    lines += table(["model", "n", "accuracy", "VIP accuracy (MANUAL_REVIEW)", "invalid rate",
                    "prediction entropy (bits)"],
                   [[m, metrics[m]["n"], acc_cell(metrics[m]["accuracy"]), acc_cell(metrics[m]["vip_accuracy"]),
                     f"{pct(metrics[m]['invalid_rate'])}%", f"{metrics[m]['prediction_entropy_bits']:.2f}"]
                    for m in present])

    lines += ["", "## 2. Recipes and training budgets", "",
              "What each method was given, beside the article's recipes. The recipes are the winners of the "
              "validation search (reports/studies/tune/results.md: the same number of candidates and the same "
              "maximum epochs per method). GRPO's batch counts completions: prompts per step x samples per "
              "prompt. Validation: the 128-row slice of the train rows, greedy, first and last point of the "
              "learning curve" + (" (held out)." if results["provenance"]["holdout_val"] else
                                  "; the final recipes train on every train row, so these points are in-sample."),
              ""]
    lines += table(["model", "lr", "schedule", "epochs", "optimizer steps", "prompts per step",
                    "samples per prompt", "temperature", "tokens processed (M)", "validation first -> last",
                    "the article's recipe"],
                   [[b["model"], f"{b['lr']:g}", f"{b['lr_scheduler_type']}, {b['warmup_steps']} warmup",
                     f"{b['num_train_epochs']:g}", b["optimizer_steps"] if b["optimizer_steps"] is not None else "n/a",
                     b["prompts_per_step"], b["samples_per_prompt"],
                     "n/a" if b["temperature"] is None else f"{b['temperature']:g}",
                     "n/a" if b["tokens_processed"] is None else f"{b['tokens_processed'] / 1e6:.2f}",
                     "n/a" if b["val_last"] is None else f"{pct(b['val_first'])}% -> {pct(b['val_last'])}%",
                     b["article"]] for b in results["budget"]])

    lines += ["", "## 3. Against the article", "",
              "The article's percentages come from different subsets (SEED-NOTES): the baseline was scored on "
              "all 160 test rows, GRPO and SFT on the first 60 only, VIP accuracy on 14 rows. The intervals use "
              "those true denominators. Our model and test set are not the article's, so overlap is a "
              "descriptive check, not a replication test.", ""]
    by = {(r["model"], r["metric"]): r for r in results["article"]}
    lines += table(["model", "accuracy: ours", "accuracy: article", "overlap", "VIP: ours", "VIP: article",
                    "overlap"],
                   [[m, acc_cell(by[m, "accuracy"]["ours"], "not run"), acc_cell(by[m, "accuracy"]["article"]),
                     yes_no[by[m, "accuracy"]["overlap"]], acc_cell(by[m, "vip_accuracy"]["ours"], "not run"),
                     acc_cell(by[m, "vip_accuracy"]["article"]), yes_no[by[m, "vip_accuracy"]["overlap"]]]
                    for m in models])

    lines += ["", "## 4. Per-class accuracy (recall)", ""]
    lines += table(["model", *LABELS], [[m, *(acc_cell(metrics[m]["per_class"][c]) for c in LABELS)]
                                        for m in present])

    gold = results["gold_distribution"]
    lines += ["", "## 5. Prediction distribution (mode collapse)", "",
              "Share of answers per label; `gold` is the test set's own label distribution. "
              "Entropy: 0 bits = one answer for everything, 2 bits = the four labels equally often.", ""]
    lines += table(["model", *SHARE_LABELS, "entropy (bits)"],
                   [[m, *(f"{pct(metrics[m]['prediction_distribution'][c])}%" for c in SHARE_LABELS),
                     f"{metrics[m]['prediction_entropy_bits']:.2f}"] for m in present]
                   + [["gold", *(f"{pct(gold['distribution'][c])}%" for c in SHARE_LABELS),
                       f"{gold['entropy_bits']:.2f}"]])

    boot = results["bootstrap"]
    lines += ["", "## 6. Paired comparisons", "",
              f"A - B on the same items. McNemar's exact test counts only the discordant items (one model right, "
              f"the other wrong). Difference interval: paired bootstrap, {boot['n_resamples']} resamples, "
              f"{boot['method']} {int(100 * boot['confidence'])}% interval, seed {boot['seed']}.", ""]
    if results["paired"]:
        lines += table(["A - B", "subset", "n", "accuracy A", "accuracy B", "A - B, points [95% CI]",
                        "only A right", "only B right", "discordant", "McNemar exact p"],
                       [[f"{r['model']} - {r['versus']}", r["subset"], r["n"], *(
                           ["n/a"] * 7 if r["n"] == 0 else
                           [f"{pct(r['accuracy'])}%", f"{pct(r['accuracy_versus'])}%",
                            f"{100 * r['bootstrap']['diff']:+.1f} [{100 * r['bootstrap']['ci_low']:+.1f}, "
                            f"{100 * r['bootstrap']['ci_high']:+.1f}]",
                            r["mcnemar"]["only_a_correct"], r["mcnemar"]["only_b_correct"],
                            r["mcnemar"]["discordant"], f"{r['mcnemar']['p_value']:.4g}"])]
                        for r in results["paired"]])
    else:
        lines.append("Only one model evaluated: nothing to compare.")

    seeds, model = prov["seeds"], prov["model"]
    lines += ["", "## 7. Provenance", "",
              f"- profile: `{prov['profile']}`",
              f"- seeds: seed {seeds['seed']} (training, evaluation, bootstrap), generate.seed "
              f"{seeds['generate.seed']}, split.seed {seeds['split.seed']}",
              f"- base model: source `{model['source']}`, name `{model['name'] or '-'}`, "
              f"revision `{model['revision'] or '-'}`",
              "- code, params and data: the stage hashes below (from dvc.lock). Wall times, memory and "
              "hardware vary run to run and are not part of this report: `fincorp report` renders them into "
              "reports/telemetry.md (git-ignored) when the stages' telemetry/*.json are present.", "",
              "### Run records", ""]
    rec = prov["records"]
    rows = []
    for stage, r in rec.items():
        if r["record"] is None:
            rows.append([stage, r["file"], "not available"])
            continue
        d = r["record"]
        rows.append([stage, r["file"], ", ".join(f"{k}={d[k]}" for k in RECORD_KEYS if k in d and k != "versions")])
    lines += table(["stage", "record", "details"], rows)
    lines += ["", "### Library versions", ""]
    with_versions = [s for s, r in rec.items() if r["record"] and "versions" in r["record"]]
    libraries = sorted({lib for s in with_versions for lib in rec[s]["record"]["versions"]})
    lines += (table(["library", *with_versions],
                    [[lib, *(rec[s]["record"]["versions"].get(lib, "-") for s in with_versions)] for lib in libraries])
              if with_versions else ["not available"])
    lock = prov["dvc_lock"]
    lines += ["", f"### Stage hashes ({lock['file']}, md5 shortened to 8 characters)", ""]
    if lock["entries"] is None:
        lines.append(f"not available ({lock['file']} not found)")
    else:
        lines += table(["stage", "kind", "path", "md5"],
                       [[e["stage"], e["kind"], e["path"],
                         "-" if not e["md5"] else e["md5"][:8] + (" (dir)" if e["md5"].endswith(".dir") else "")]
                        for e in lock["entries"]])

    lines += ["", "## 8. Figures"]
    for name, status in results["figures"].items():
        lines += ["", f"### {name}", "", f"![{name}]({name})" if status == "written" else status]
    return "\n".join(lines) + "\n"


def render_telemetry(telemetry: dict[str, dict[str, Any]], source: str = "telemetry") -> str:
    """reports/telemetry.md from the telemetry records, keyed by file stem (base, sft, eval-grpo, ...). Pure."""
    lines = ["# Telemetry", "",
             f"_Generated by `fincorp report` from {source}/*.json, which each stage writes as it runs: the last "
             "run of each stage in this working folder. Git-ignored and not DVC-tracked: these numbers vary run to "
             "run, so they are kept out of results.md. The committed benchmark is benchmarks/cpu.md "
             "(`make benchmark`)._", ""]
    rows = []
    for name, t in telemetry.items():
        details = ", ".join(f"{k}={v}" for k, v in sorted(t.items()) if k not in TELEMETRY_COLUMNS and v is not None)
        rows.append([t.get("stage", name), f"{source}/{name}.json", t.get("wall_time_s", "-"),
                     t.get("peak_memory_mib", "-"), details, t.get("host", "-"), str(t.get("git_commit", "-"))[:12]])
    lines += table(["stage", "record", "wall time (s)", "peak memory (MiB)", "details", "host", "git commit"], rows)
    lines += ["", "Eval: `generate_seconds` is generation alone; the wall time includes loading the model.", "",
              "## Hardware", ""]
    hw = [[t.get("stage", name), ", ".join(f"{k}={v}" for k, v in sorted(t["hardware"].items()))]
          for name, t in telemetry.items() if isinstance(t.get("hardware"), dict)]
    lines += table(["stage", "hardware"], hw) if hw else ["not recorded"]
    return "\n".join(lines) + "\n"
