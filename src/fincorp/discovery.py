"""The discovery law (`fincorp study discovery`): when does GRPO find a rule it is never told?

Pure functions over the study's run records (study.py reads them from the experiments' commits):

    discovery_point(curve, mr_curve, level)  the first validation point with VIP accuracy >= level: its
                                             optimizer step and the MANUAL_REVIEW completions GRPO had
                                             sampled on VIP prompts by then (None: not within the budget)
    fit(points, level[, specificity])        log10(steps to level) = a + b * log10(E) [+ c * log10(E / E_other)],
                                             E (E_other) the MANUAL_REVIEW samples expected per step on rule
                                             (other) prompts; OLS over every run (seeds are replicates) that
                                             reached the level; coefficients with 95% intervals, and what a
                                             prediction interval needs
    predict(law, e_vip, e_other, budget)     steps to each level for a base the fit did not see, with its
                                             95% prediction interval, or "not within the budget"

The variable is measured, never the knob that made the base: E = prompts per step x share of rule
prompts x num_generations x P_T(MANUAL_REVIEW | rule prompt) at GRPO's sampling temperature T, from the
probe (probe.py) on the rows GRPO trains on. If GRPO needs about N rewarded escalations to move, steps
~ N / E, i.e. b = -1; the fit says whether the data agree.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

LEVELS = (0.5, 0.9)


VARIABLES = {("log10_e",): "E", ("log10_e", "log10_ratio"): "E, E / E_other", ("log10_e_over_t",): "E / T"}


def level_name(level: float) -> str:
    return f"{round(100 * level)}%"


def samples_at(step: int, mr_curve: Sequence[dict[str, float]]) -> float | None:
    """Cumulative MANUAL_REVIEW completions sampled on VIP prompts by `step`: the last logged value at or
    before it (the trainer logs the running count every logging_steps; 0 before any step)."""
    if step == 0:
        return 0.0
    before = [p for p in mr_curve if p["step"] <= step]
    return float(before[-1]["count"]) if before else None


def discovery_point(curve: Sequence[dict[str, Any]], mr_curve: Sequence[dict[str, float]],
                    level: float) -> dict[str, Any] | None:
    """The first validation point whose VIP accuracy is >= level, or None (not within the budget)."""
    for point in sorted(curve, key=lambda p: p["step"]):
        v = point.get("vip_accuracy")
        if v is not None and v >= level - 1e-12:
            return {"step": int(point["step"]), "vip_manual_review_samples": samples_at(int(point["step"]), mr_curve)}
    return None


def fit(points: Sequence[dict[str, Any]], level: float, specificity: bool = False,
        over_temperature: bool = False) -> dict[str, Any]:
    """OLS of log10(steps to `level`) on log10(E), the expected VIP escalations sampled per step, and with
    `specificity` also on log10(E / E_other), over the runs that reached it (each point: {"run", "e_vip",
    "e_other", "steps": {level name: int | None}}). E alone needs 3 runs at 2 distinct E; with specificity, 3
    runs on each side of E = E_other. With `over_temperature` the variable is log10(E / T), T the run's
    sampling temperature (each point's "temperature")."""
    import numpy as np
    import statsmodels.api as sm

    name = level_name(level)
    # A base already at the level before any RL step (greedy validation at step 0) has nothing to discover:
    # it is reported, not fitted (log10 0 has no place on the line).
    at_start = [p["run"] for p in points if p["steps"].get(name) == 0]
    reached = [p for p in points if p["steps"].get(name) and p["e_vip"] and p["e_vip"] > 0
               and (not specificity or ratio(p) is not None)]
    xs = [math.log10(p["e_vip"] / (p["temperature"] if over_temperature else 1.0)) for p in reached]
    out: dict[str, Any] = {"level": level, "name": name, "n": len(reached), "runs": [p["run"] for p in reached],
                           "not_reached": [p["run"] for p in points if p["steps"].get(name) is None],
                           "at_start": at_start, "variables": ["log10_e_over_t" if over_temperature else "log10_e",
                                                               *(["log10_ratio"] if specificity else [])]}
    distinct = len(set(round(x, 6) for x in xs))
    if len(reached) < 3 or distinct < 2:
        return out | {"fitted": False, "why": f"{len(reached)} runs reached {name}, at {distinct} distinct E: a "
                                              f"line needs 3 runs at 2 or more"}
    columns = [xs]
    if specificity:
        rs = [ratio(p) for p in reached]
        below, above = sum(r < 0 for r in rs), sum(r >= 0 for r in rs)
        if below < 3 or above < 3:
            return out | {"fitted": False, "why": f"of the {len(reached)} runs that reached {name}, {below} sample "
                                                  f"MANUAL_REVIEW less often where it is rewarded than where it is "
                                                  f"penalised (E < E_other) and {above} more: a second variable "
                                                  f"needs 3 of each"}
        columns.append(rs)
    y = np.array([math.log10(p["steps"][name]) for p in reached])
    res = sm.OLS(y, sm.add_constant(np.array(columns).T)).fit()
    ci = res.conf_int(0.05)
    coef = {k: float(v) for k, v in zip("abc", res.params)}
    return out | coef | {f"{k}_ci95": [float(ci[i][0]), float(ci[i][1])] for i, k in enumerate("abc"[:len(coef)])} | {
        "fitted": True,
        "cov": [[float(v) for v in row] for row in res.cov_params()],
        "scale": float(res.scale), "df_resid": float(res.df_resid), "r2": float(res.rsquared),
        "log10_e_range": [min(xs), max(xs)],
        # rewarded / penalised escalations per step (E / E_other) of the fitted runs: the law's domain
        "log10_ratio_range": ratio_range(reached),
        # the fewest rewarded escalations (MANUAL_REVIEW sampled on rule prompts) any fitted run had sampled
        # when it reached the level
        "samples_min": min((p["samples"][name] for p in reached if (p.get("samples") or {}).get(name)), default=None),
        "residuals": {p["run"]: float(r) for p, r in zip(reached, res.resid)},
    }


def log_error(row: dict[str, Any]) -> float | None:
    """|log10 measured - log10 predicted| of a check row, where the run reached the level after step 0 and
    the law gave a number."""
    m, pred = row.get("measured"), row.get("predicted")
    return abs(math.log10(m) - math.log10(pred)) if m and pred and pred > 0 else None


def ratio(p: dict[str, Any]) -> float | None:
    """log10(E / E_other): how much more often GRPO samples MANUAL_REVIEW where it is rewarded than where it
    is penalised, per step; None without both."""
    e, o = p.get("e_vip"), p.get("e_other")
    return math.log10(e / o) if e and o and e > 0 and o > 0 else None


def scaled_by_lr(p: dict[str, Any], lr0: float) -> dict[str, Any]:
    """A run as the law in E / T would see it if the learning rate acts like 1/T: E and E_other times lr / lr0."""
    k = p["lr"] / lr0
    return {**p, "e_vip": p["e_vip"] * k, "e_other": None if p.get("e_other") is None else p["e_other"] * k}


def is_specific(p: dict[str, Any]) -> bool:
    """A base that samples MANUAL_REVIEW at least as often where it is rewarded as where it is penalised
    (E >= E_other), or whose E_other is unknown."""
    r = ratio(p)
    return r is None or r >= 0


def ratio_range(points: Sequence[dict[str, Any]]) -> list[float] | None:
    rs = [r for p in points if (r := ratio(p)) is not None]
    return [min(rs), max(rs)] if rs else None


def predict_one(law: dict[str, Any], e_vip: float, budget: int, e_other: float | None = None,
                temperature: float | None = None, sampled: float | None = None) -> dict[str, Any]:
    """Steps to the law's level for a base with E = e_vip, with a 95% prediction interval. Given e_other, a
    base less specific (E / E_other) than every run the law was fitted on is outside the law: no number. A
    law on E / T needs the sampling temperature. `sampled`: the MANUAL_REVIEW completions per step GRPO
    actually samples on rule prompts, where e_vip is scaled (by the learning rate); default e_vip."""
    from scipy import stats

    name = law["name"]
    if not law.get("fitted"):
        return {"steps": None, "low": None, "high": None, "text": f"no prediction ({law.get('why')})"}
    if not e_vip or e_vip <= 0:
        return {"steps": None, "low": None, "high": None, "within_budget": False,
                "text": f"not within the budget: GRPO samples no MANUAL_REVIEW on rule prompts (E = 0)"}
    few, sampled = law.get("samples_min"), e_vip if sampled is None else sampled
    if few and sampled * budget < few:
        return {"steps": None, "low": None, "high": None, "within_budget": False,
                "text": f"not within the budget: GRPO would sample MANUAL_REVIEW on rule prompts {sampled * budget:.3g} "
                        f"times in its {budget} steps, fewer than any run of the study had sampled when it reached "
                        f"this level ({few:.0f})"}
    r, domain = ratio({"e_vip": e_vip, "e_other": e_other}), law.get("log10_ratio_range")
    if r is not None and domain is not None and r < domain[0] - 1e-9:
        return {"steps": None, "low": None, "high": None, "within_budget": None, "outside_law": True,
                "text": f"outside the law: E / E_other = {10 ** r:.3g} rewarded per penalised escalation, below "
                        f"every run it was fitted on ({10 ** domain[0]:.3g} and up); bases like it are in the "
                        f"study's report"}
    per_t = "log10_e_over_t" in law.get("variables", [])
    if per_t and not temperature:
        return {"steps": None, "low": None, "high": None, "within_budget": None,
                "text": "no prediction: this law needs the sampling temperature (its variable is E / T)"}
    x = math.log10(e_vip / temperature) if per_t else math.log10(e_vip)
    if "log10_ratio" in law.get("variables", []) and r is None:
        return {"steps": None, "low": None, "high": None, "within_budget": None,
                "text": "no prediction: this law needs E_other (MANUAL_REVIEW samples per step on the other prompts)"}
    v = [1.0, x, *([r] if "log10_ratio" in law.get("variables", []) else [])]
    mean = sum(c * vi for c, vi in zip((law["a"], law["b"], law.get("c")), v))
    var_mean = sum(v[i] * law["cov"][i][j] * v[j] for i in range(len(v)) for j in range(len(v)))
    half = float(stats.t.ppf(0.975, law["df_resid"])) * math.sqrt(var_mean + law["scale"])
    steps, low, high = (10 ** v for v in (mean, mean - half, mean + half))
    lo_e, hi_e = law["log10_e_range"]
    outside = x < lo_e - 1e-9 or x > hi_e + 1e-9
    var = "E / T" if per_t else "E"
    note = (f"; {var} = {10 ** x:.3g} is outside the fitted range [{10 ** lo_e:.3g}, {10 ** hi_e:.3g}]: an "
            "extrapolation" if outside else "")
    if low > budget:
        text = (f"not within the budget of {budget} steps (law: {steps:.3g} steps, 95% prediction interval "
                f"[{low:.3g}, {high:.3g}]){note}")
    else:
        text = f"{steps:.0f} steps, 95% prediction interval [{low:.0f}, {high:.0f}] (budget {budget}){note}"
    return {"steps": steps, "low": low, "high": high, "within_budget": low <= budget, "extrapolated": outside,
            "text": text}


def predict(law: dict[str, Any], e_vip: float, e_other: float, budget: int) -> dict[str, dict[str, Any]]:
    """Per level (law["fits"]): the prediction for a base with these expected escalations per step."""
    return {name: predict_one(f, e_vip, budget, e_other) for name, f in law["fits"].items()}


def prediction_lines(law: dict[str, Any], m: dict[str, Any], budget: int, lr: float | None = None) -> list[str]:
    """What `fincorp probe` prints from a law file (law_file) for its measurement `m` at GRPO's sampling
    temperature and learning rate `lr`: the law in E where both are among those it was fitted at (else no
    number: below temperature 1 it was 2 to 6 times too slow), then the law in E / T, which reads E x lr / lr0
    (lr0 the fitted runs' learning rate, as its learning-rate check did), with the record of its declared checks."""
    t, e, e_other = m["temperature"], m["expected_vip_escalations_per_step"], m["expected_other_escalations_per_step"]
    temps, lr0 = law.get("temperatures"), law.get("lr")
    k = lr / lr0 if lr and lr0 else 1.0
    lines = []
    if temps and not min(temps) - 1e-9 <= t <= max(temps) + 1e-9:
        lines.append(f"  law in E (fitted at temperature {' and '.join(f'{x:g}' for x in temps)}): no prediction at "
                     f"{t:g}, a temperature it was not fitted at (below 1 it put discovery 2 to 6 times too late)")
    elif abs(k - 1.0) > 1e-9:
        lines.append(f"  law in E (fitted at learning rate {lr0:g}): no prediction at learning rate {lr:g}")
    else:
        for level, pred in predict(law, e, e_other, budget).items():
            lines.append(f"  law in E: steps to {level} validation VIP accuracy: {pred['text']}")
    et = law.get("e_over_t")
    if et:
        lo, hi = min(et["temperatures"]), max(et["temperatures"])
        checks = et.get("checks") or {}
        checked = et.get("lr_checked") or []
        reads = (f"; reads E x lr / {lr0:g}, checked at learning rates {', '.join(f'{x:g}' for x in checked)}"
                 + ("" if min(checked, default=lr) - 1e-12 <= lr <= max(checked, default=lr) + 1e-12 else
                    f": {lr:g} is an extrapolation") if lr0 and lr else "")
        head = (f"  law in E / T (fitted at temperatures {lo:g} to {hi:g}{reads}; its declared checks put "
                f"{checks.get('inside', 'n/a')} of {checks.get('n', 'n/a')} predictions inside their 95% intervals)")
        if not lo - 1e-9 <= t <= hi + 1e-9:
            lines.append(f"{head}: no prediction at {t:g}, a temperature it was not fitted at (at 0.1 and 0.2 it put "
                         "discovery 2 to 6 times too early)")
        else:
            lines.append(f"{head}:")
            for level, f in et["fits"].items():
                lines.append(f"    steps to {level} validation VIP accuracy: "
                             f"{predict_one(f, e * k, budget, e_other * k, t, sampled=e)['text']}")
    return lines


def check(law_fits: dict[str, dict[str, Any]], held_out: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Predicted vs measured on runs the fit did not see: per run and level, inside the 95% prediction
    interval or not (a run that did not reach the level counts as inside when the interval's low end is
    past the steps it ran)."""
    rows = []
    for p in held_out:
        for name, f in law_fits.items():
            pred = predict_one(f, p["e_vip"], p.get("budget") or p["max_step"], p.get("e_other"), p.get("temperature"))
            measured = p["steps"].get(name)
            if measured == 0 or pred.get("outside_law"):  # there before RL, or outside the law's domain
                inside = None
            elif pred["steps"] is None:
                inside = None if not f.get("fitted") else measured is None
            elif measured is None:
                inside = pred["high"] > p["max_step"]
            else:
                inside = pred["low"] <= measured <= pred["high"]
            rows.append({"run": p["run"], "level": name, "variables": f.get("variables"), "e_vip": p["e_vip"],
                         "measured": measured,
                         "ran_steps": p["max_step"], "predicted": pred["steps"], "low": pred["low"],
                         "high": pred["high"], "inside": inside})
    return rows


# --- the study's report (study_report.STUDY["discovery"]: results, figure, markdown) -----------------

def run_point(record: dict[str, Any], held_out_seeds: Sequence[int]) -> dict[str, Any] | None:
    """One run's numbers for the law, or None if it lacks its probe or its training record."""
    params = record.get("params") or {}
    probe = (record.get("metrics") or {}).get("probe")
    t = (record.get("training") or {}).get("grpo")
    if probe is None or not t:
        return None
    temperature = float(params.get("grpo.temperature"))
    m = probe["by_temperature"].get(f"{temperature:g}")
    if m is None:
        return None
    curve = t.get("val_curve") or []
    mr_curve = t.get("vip_manual_review_curve") or []
    reached = {level_name(lv): discovery_point(curve, mr_curve, lv) for lv in LEVELS}
    seed = params.get("seed")
    return {
        "run": record["run"], "base": record["run"].rsplit("-t", 1)[0], "temperature": temperature, "seed": seed,
        "lr": None if params.get("grpo.lr") is None else float(params["grpo.lr"]),
        "held_out": seed in held_out_seeds,
        "p_mr_vip": m["p_mr_vip"], "p_mr_other": m["p_mr_other"],
        # the base itself, at temperature 1 (the probe measures there too): which base a run had
        "p_mr_vip_at_1": (probe["by_temperature"].get("1") or {}).get("p_mr_vip"),
        "p_mr_other_at_1": (probe["by_temperature"].get("1") or {}).get("p_mr_other"),
        "e_vip": m["expected_vip_escalations_per_step"], "e_other": m["expected_other_escalations_per_step"],
        "budget": math.ceil(math.ceil(probe["n_rows"] / probe["prompts_per_step"])
                            * float(params.get("grpo.num_train_epochs") or 0)), "max_step": t.get("steps") or (curve[-1]["step"] if curve else 0),
        "steps": {k: None if v is None else v["step"] for k, v in reached.items()},
        "samples": {k: None if v is None else v["vip_manual_review_samples"] for k, v in reached.items()},
        "final_val_vip_accuracy": curve[-1]["vip_accuracy"] if curve else None,
        "vip_samples": t.get("vip_samples"), "vip_manual_review_samples": t.get("vip_manual_review_samples"),
        "runtime_s": t.get("runtime_s"),
        "curve": [{"step": p["step"], "vip_accuracy": p["vip_accuracy"], "accuracy": p["accuracy"]} for p in curve],
    }


def knob_row(record: dict[str, Any]) -> dict[str, Any]:
    """A probe-only base of the study (the knob's fine steps): its prior and its measured probabilities."""
    probe = (record.get("metrics") or {}).get("probe") or {}
    return {"run": record["run"], "overrides": {k: v for k, v in record["overrides"].items() if k.startswith("base.")},
            "by_temperature": {t: {k: m[k] for k in ("p_mr_vip", "p_mr_other", "expected_vip_escalations_per_step",
                                                     "expected_other_escalations_per_step")}
                               for t, m in (probe.get("by_temperature") or {}).items()}}


def filled_curve(curve: Sequence[dict[str, Any]], grid: Sequence[int]) -> list[float | None]:
    """VIP accuracy on a step grid: the last validation point at or before each step; after a run stopped
    (early, having held >= the stop level) its last value carries on."""
    out = []
    for step in grid:
        before = [p for p in curve if p["step"] <= step and p["vip_accuracy"] is not None]
        out.append(before[-1]["vip_accuracy"] if before else None)
    return out


def results(records: list[dict], models: list[str]) -> dict[str, Any]:
    import numpy as np

    from fincorp.study import (DISCOVERY_CHECK_TEMPERATURES, DISCOVERY_HELD_OUT_SEEDS, DISCOVERY_KNOB,
                               DISCOVERY_HIGH_TEMPERATURE_CHECK, DISCOVERY_LOW_TEMPERATURE_CHECK,
                               DISCOVERY_LR_CHECK, DISCOVERY_SEEDS, DISCOVERY_TEMPERATURE_LAW_CHECK)
    from fincorp.study_report import across_seeds  # study_report imports this module

    not_run = [r["run"] for r in records if r.get("not_run")]
    knob = [knob_row(r) for r in records if r["run"] in DISCOVERY_KNOB and not r.get("not_run")]
    every_lr = [p for r in records if not r.get("not_run") and (p := run_point(r, DISCOVERY_HELD_OUT_SEEDS))]
    # The learning-rate check's runs are in no fit (every other run has the recipe's lr): they are checked below.
    lr_names = {f"{b}-t{t}-lr{lr}-s{s}" for b, t, lr in DISCOVERY_LR_CHECK for s in DISCOVERY_SEEDS}
    lr_points = [p for p in every_lr if p["run"] in lr_names]
    every = [p for p in every_lr if p["run"] not in lr_names]
    # The law is fitted at the grid's temperatures; the runs of the two declared checks below are not in it.
    t_runs = {(b, float(t)) for t, bases in DISCOVERY_CHECK_TEMPERATURES.items() for b in bases}
    t_points = [p for p in every if (p["base"], p["temperature"]) in t_runs]
    et_runs = {(b, float(t)) for b, t in DISCOVERY_TEMPERATURE_LAW_CHECK}
    et_points = [p for p in every if (p["base"], p["temperature"]) in et_runs]
    lt_runs = {(b, float(t)) for b, t in DISCOVERY_LOW_TEMPERATURE_CHECK}
    lt_points = [p for p in every if (p["base"], p["temperature"]) in lt_runs]
    hot_runs = {(b, float(t)) for b, t in DISCOVERY_HIGH_TEMPERATURE_CHECK}
    hot_points = [p for p in every if (p["base"], p["temperature"]) in hot_runs]
    later = lt_points + hot_points  # the refit's checks: in no fit
    points = [p for p in every if p not in t_points and p not in et_points and p not in later]
    # E alone describes the specific bases: those that sample MANUAL_REVIEW more often where it is rewarded
    # than where it is penalised (E >= E_other); the others are checked against it below.
    specific = [p for p in points if is_specific(p)]
    # Two candidate laws per level: E alone on the specific bases, and E with specificity on every run (it
    # needs 3 runs that reached the level on each side of E = E_other).
    candidates = {"E": lambda subset, lv: fit([p for p in subset if p in specific], lv),
                  "E, E / E_other": lambda subset, lv: fit(subset, lv, specificity=True)}
    fits_e = {level_name(lv): candidates["E"](points, lv) for lv in LEVELS}
    fits_specific = {level_name(lv): candidates["E, E / E_other"](points, lv) for lv in LEVELS}

    def refit(kind: str, subset: list[dict[str, Any]], lv: float) -> dict[str, Any]:
        """A candidate refitted on a subset of the runs; where the subset cannot carry the second variable
        (too few runs on one side of E = E_other), E alone (whose prediction covers the specific bases)."""
        f = candidates[kind](subset, lv)
        return f if f.get("fitted") or kind == "E" else candidates["E"](subset, lv)

    # Leave one base out: for each base a candidate was fitted on, the candidate refitted without any of that
    # base's runs (every seed and temperature) predicts them. The law per level is the candidate whose
    # predictions of the left-out specific bases are closer (mean |log10 measured - log10 predicted| over the
    # runs both predict): the second variable must earn its place on bases the fit did not see.
    loo: dict[str, dict[str, Any]] = {}
    for lv in LEVELS:
        name = level_name(lv)
        for kind, full in (("E", fits_e[name]), ("E, E / E_other", fits_specific[name])):
            rows = []
            if full.get("fitted"):
                for base in sorted({p["base"] for p in points if p["run"] in full["runs"]}):
                    rest = [p for p in points if p["base"] != base]
                    rows += [{"base": base, **row} for row in check({name: refit(kind, rest, lv)},
                                                                   [p for p in points if p["base"] == base])]
            loo[f"{name} {kind}"] = {"level": name, "variables": kind, "rows": rows}
    choice = {}
    for lv in LEVELS:
        name = level_name(lv)
        e_rows, s_rows = loo[f"{name} E"]["rows"], loo[f"{name} E, E / E_other"]["rows"]
        both = {r["run"] for r in e_rows if log_error(r) is not None} & {
            r["run"] for r in s_rows if log_error(r) is not None and r["variables"] == ["log10_e", "log10_ratio"]}
        for key, rows in ((f"{name} E", e_rows), (f"{name} E, E / E_other", s_rows)):
            errors = [log_error(r) for r in rows if r["run"] in both]
            loo[key] |= {"common_runs": len(both), "mean_abs_log10_error": sum(errors) / len(errors) if errors else None,
                         "inside": sum(1 for r in rows if r["inside"]),
                         "n": sum(1 for r in rows if r["inside"] is not None)}
        e_err, s_err = (loo[f"{name} {k}"]["mean_abs_log10_error"] for k in ("E", "E, E / E_other"))
        choice[name] = "E, E / E_other" if fits_specific[name].get("fitted") and s_err is not None and (
            e_err is None or s_err < e_err) else "E"
    fits = {name: fits_specific[name] if choice[name] != "E" else fits_e[name] for name in fits_e}
    by_base = [row for name in fits for row in loo[f"{name} {choice[name]}"]["rows"]]
    seen = [p for p in points if not p["held_out"]]
    held = [p for p in points if p["held_out"]]
    # the held-out seeds' check refits the law above (the same variables), without them
    check_fits = {level_name(lv): refit(choice[level_name(lv)], seen, lv) for lv in LEVELS}
    checked = check(check_fits, held)
    # The temperature check: the runs at the temperatures declared for it, predicted by the law (fitted on the
    # runs at the grid's temperatures only).
    temperature_fits = fits if t_points else {}
    t_checked = check(temperature_fits, t_points)
    # The law with temperature, found after the temperature check: log10(steps) on log10(E / T) over every
    # specific run but the runs of its own declared check, which it predicts.
    specific_every = [p for p in every if p not in et_points and p not in later and is_specific(p)]
    fits_et = {level_name(lv): fit(specific_every, lv, over_temperature=True) for lv in LEVELS}
    fits_e_same_runs = {level_name(lv): fit(specific_every, lv) for lv in LEVELS}
    et_checked = check(fits_et, et_points)
    residual_by_temperature_et = residuals_by_temperature(fits_et, specific_every)
    # The low-temperature check: the law in E / T refitted on every specific run before it (the check above
    # included) predicts it.
    specific_before_lt = [p for p in every if p not in later and is_specific(p)]
    fits_et_refit = {level_name(lv): fit(specific_before_lt, lv, over_temperature=True) for lv in LEVELS}
    lt_checked = check(fits_et_refit, lt_points)
    hot_checked = check(fits_et_refit, hot_points)
    # The learning-rate check: the same law, each run's E (and E_other) scaled by its lr over the fitted runs' lr.
    lr0 = {p["lr"] for p in specific_before_lt if p["lr"] is not None}
    lr_checked = ([{**row, "lr": p["lr"]} for p in lr_points for row in check(fits_et_refit, [scaled_by_lr(p, *lr0)])]
                  if len(lr0) == 1 else [])
    # The law on E alone, applied to every run it was not fitted on (E < E_other) and to every run that did not
    # reach a level: a run that took longer than the top of the 95% prediction interval (or never got there
    # within steps past it) is one E alone does not explain.
    unexplained = []
    for name, f in fits_e.items():
        if not f.get("fitted"):
            continue
        for p in every:
            measured = p["steps"].get(name)
            if p["run"] in f["runs"] or measured == 0:
                continue
            e_only = predict_one(f, p["e_vip"], p["max_step"])
            if e_only["high"] is not None and (measured or p["max_step"]) > e_only["high"]:
                unexplained.append({"run": p["run"], "level": name, "e_vip": p["e_vip"], "ratio": ratio(p),
                                    "measured": measured, "ran_steps": p["max_step"], "predicted": e_only["steps"],
                                    "high": e_only["high"]})
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for p in every:
        groups.setdefault((p["base"], p["temperature"]), []).append(p)
    budget = max((p["budget"] for p in every), default=0)
    grid = list(range(0, budget + 1, 10))
    cells = []
    for (base, temperature), ps in sorted(groups.items(), key=lambda kv: (kv[0][1], statistics_mean(
            [p["p_mr_vip"] for p in kv[1]]))):
        filled = [filled_curve(p["curve"], grid) for p in ps]
        mean_curve = [None if any(v is None for v in col) else float(np.mean(col)) for col in zip(*filled)]
        cells.append({
            "base": base, "temperature": temperature, "seeds": sorted(p["seed"] for p in ps), "n": len(ps),
            "p_mr_vip": statistics_mean([p["p_mr_vip"] for p in ps]),
            "p_mr_other": statistics_mean([p["p_mr_other"] for p in ps]),
            "p_mr_vip_at_1": statistics_mean([p.get("p_mr_vip_at_1") for p in ps]),
            "p_mr_other_at_1": statistics_mean([p.get("p_mr_other_at_1") for p in ps]),
            "e_vip": statistics_mean([p["e_vip"] for p in ps]),
            "steps": {k: [p["steps"][k] for p in ps] for k in fits},
            "samples": {k: [p["samples"][k] for p in ps] for k in fits},
            "mean_curve": mean_curve})
    # Rewarded escalations GRPO sampled before discovery: if the law is steps ~ N / E, N is about constant.
    # (every run, the checks' too: the count does not depend on the temperature the way steps do)
    n50 = [p["samples"]["50%"] for p in every if is_specific(p) and p["samples"]["50%"] is not None]
    n50_other = [p["samples"]["50%"] for p in every if not is_specific(p) and p["samples"]["50%"] is not None]
    # Does the law differ between sampling temperatures? The residuals of the one fit, per temperature.
    by_temperature = residuals_by_temperature(fits, points)
    return {"points": every, "law_runs": len(points), "knob": knob, "fits": fits, "fits_e": fits_e,
            "fits_specific": fits_specific, "check_fits": check_fits, "check": checked, "unexplained": unexplained,
            "fits_e_over_t": fits_et, "fits_e_same_runs": fits_e_same_runs, "temperature_law_check": et_checked,
            "fits_e_over_t_refit": fits_et_refit, "low_temperature_check": lt_checked,
            "lr_check": lr_checked, "lr_points": lr_points, "high_temperature_check": hot_checked,
            "fitted_lr": sorted(lr0),
            "residual_by_temperature_e_over_t": residual_by_temperature_et,
            "residual_by_temperature": by_temperature,
            "check_inside": sum(1 for c in checked if c["inside"]), "check_n": sum(1 for c in checked if c["inside"] is not None),
            "temperature_fits": temperature_fits, "temperature_check": t_checked,
            "law_choice": choice, "leave_one_base_out": list(loo.values()),
            "check_by_base": by_base, "check_by_base_inside": sum(1 for c in by_base if c["inside"]),
            "check_by_base_n": sum(1 for c in by_base if c["inside"] is not None),
            "cells": cells, "grid": grid, "not_run": not_run, "budget": budget,
            "samples_to_50": geometric_summary(n50), "samples_to_50_other": geometric_summary(n50_other)}


def residuals_by_temperature(fits: dict[str, dict[str, Any]], points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per fitted level and sampling temperature: the mean residual (log10 steps) of the runs fitted, with its
    t-interval over them."""
    from fincorp.study_report import across_seeds  # study_report imports this module

    return [{"level": name, "temperature": t,
             **across_seeds([f["residuals"][p["run"]] for p in points
                             if p["temperature"] == t and p["run"] in f["residuals"]])}
            for name, f in fits.items() if f.get("fitted") for t in sorted({p["temperature"] for p in points})]


def statistics_mean(xs: Sequence[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def geometric_summary(xs: Sequence[float]) -> dict[str, Any]:
    """n, geometric mean and its 95% t-interval (the t-interval of the log10 mean), min, max of positive
    counts."""
    from fincorp.study_report import across_seeds  # study_report imports this module

    xs = [x for x in xs if x and x > 0]
    m = across_seeds([math.log10(x) for x in xs])
    return {"n": len(xs), **{k: None if m[v] is None else 10 ** m[v] for k, v in
                             (("geometric_mean", "mean"), ("ci95_low", "ci95_low"), ("ci95_high", "ci95_high"))},
            "min": min(xs) if xs else None, "max": max(xs) if xs else None}


def law_file(results_: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """What `fincorp probe` predicts with (reports/studies/discovery/law.json)."""
    declared = [*results_["temperature_law_check"], *results_["low_temperature_check"], *results_["lr_check"],
                *results_["high_temperature_check"]]
    return {"form": "log10(steps to level) = a + b * log10(E) [+ c * log10(E / E_other)], E (E_other) = expected "
                    "MANUAL_REVIEW completions sampled per optimizer step on rule (other) prompts (probe); "
                    "`variables` per level says which",
            "fits": results_["fits"], "study_commit": meta.get("baseline_commit"), "command": meta.get("command"),
            "runs": results_["law_runs"],
            "temperatures": fitted_temperatures(results_["fits"], results_["points"]),
            "lr": results_["fitted_lr"][0] if len(results_["fitted_lr"]) == 1 else None,
            # log10(steps) = a + b * log10(E / T), T GRPO's sampling temperature: the refit the low-temperature
            # and learning-rate checks tested (every specific run before them), at the temperatures it was fitted
            # at; checks: its declared checks' predictions inside their 95% intervals
            "e_over_t": {"fits": results_["fits_e_over_t_refit"],
                         "temperatures": fitted_temperatures(results_["fits_e_over_t_refit"], results_["points"]),
                         "lr_checked": sorted({*results_["fitted_lr"], *(p["lr"] for p in results_["lr_points"])}),
                         "checks": {"inside": sum(1 for c in declared if c["inside"]),
                                    "n": sum(1 for c in declared if c["inside"] is not None)}}}


def fitted_temperatures(fits: dict[str, dict[str, Any]], points: Sequence[dict[str, Any]]) -> list[float]:
    return sorted({p["temperature"] for p in points if any(p["run"] in f.get("runs", []) for f in fits.values())})


def plot(results_: dict[str, Any]):
    """Left, the phase diagram: one row per base and sampling temperature, sorted by the base's measured
    P(MR | rule prompt) at that temperature, against the optimizer step, coloured by validation VIP accuracy
    (mean of seeds). Right: each run's steps to 90% against E / T, with the law in E / T (the refit)."""
    import numpy as np
    from matplotlib import colors
    from matplotlib.figure import Figure

    cells = sorted((c for c in results_["cells"] if any(v is not None for v in c["mean_curve"])),
                   key=lambda c: (c["p_mr_vip"] or 0.0, c["temperature"]))
    if not cells:
        return "not drawn: no run has a validation curve"
    fig = Figure(figsize=(15, 2.5 + 0.24 * len(cells)), layout="constrained")
    left, ax = fig.subplots(1, 2, width_ratios=(1.4, 1))
    grid = results_["grid"]
    z = np.array([[np.nan if v is None else 100 * v for v in c["mean_curve"]] for c in cells])
    # each validation point's value holds until the next one; a log-like step axis shows both the first tens of
    # steps (where specific bases move) and the whole budget
    edges = [*grid, grid[-1] + (grid[1] - grid[0] if len(grid) > 1 else 10)]
    image = left.pcolormesh(edges, np.arange(len(cells) + 1) - 0.5, z, cmap="viridis", norm=colors.Normalize(0, 100))
    left.set_xscale("symlog", linthresh=10)
    left.set_xlim(0, edges[-1])
    left.set_yticks(range(len(cells)), [f"{c['base']} at T {c['temperature']:g}: {c['p_mr_vip']:.2g}" for c in cells],
                    fontsize=7)
    left.set_xlabel("GRPO optimizer step (linear to 10, then log)")
    left.set_ylabel("base at sampling temperature T: measured P(MR | rule prompt) at T", fontsize=8)
    left.set_title("validation VIP accuracy, mean of seeds", fontsize=9)
    fig.colorbar(image, ax=left, label="validation VIP accuracy, %", fraction=0.04)
    temps = sorted({p["temperature"] for p in results_["points"]})
    for i, t in enumerate(temps):
        ps = [p for p in results_["points"] if p["temperature"] == t and p["e_vip"] and p["e_vip"] >= 1e-4]
        x = [p["e_vip"] / t for p in ps]
        reached = [(xi, p["steps"]["90%"]) for xi, p in zip(x, ps) if p["steps"]["90%"]]
        missed = [(xi, p["max_step"]) for xi, p in zip(x, ps) if p["steps"]["90%"] is None]
        if reached:
            ax.scatter(*zip(*reached), color=f"C{i}", s=26, label=f"T {t:g}")
        if missed:  # rarer E: the sampler never meets the answer; in the tables
            ax.scatter(*zip(*missed), marker="^", facecolors="none", edgecolors=f"C{i}", s=36,
                       label=None if reached else f"T {t:g}")
    f = (results_.get("fits_e_over_t_refit") or {}).get("90%") or {}
    if f.get("fitted"):
        xs = np.linspace(*f["log10_e_range"], 50)
        ax.plot(10 ** xs, 10 ** (f["a"] + f["b"] * xs), "k-", lw=1,
                label=f"law: log10 steps = {f['a']:.2f} {f['b']:+.2f} log10(E / T)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("E / T: expected sampled MANUAL_REVIEW on rule prompts per step (probe) / temperature", fontsize=8)
    ax.set_ylabel("steps to 90% validation VIP accuracy (triangle: not reached, steps run)", fontsize=8)
    ax.set_title("steps to discovery against the rewarded samples per step", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.3, which="both")
    return fig


def fit_table(fits: dict[str, dict[str, Any]]) -> list[str]:
    """One fit per level: runs, intercept and slope with their 95% intervals, R^2."""
    from fincorp.report import table

    return table(["level", "runs fitted", "a [95% CI]", "slope [95% CI]", "R^2"],
                 [[name, f["n"], *([f"{f[k]:.3f} [{f[k + '_ci95'][0]:.3f}, {f[k + '_ci95'][1]:.3f}]" for k in "ab"]
                                   + [f"{f['r2']:.2f}"] if f.get("fitted") else ["n/a", "n/a", f.get("why")])]
                  for name, f in fits.items()])


def residual_table(rows: list[dict[str, Any]]) -> list[str]:
    from fincorp.report import table

    return table(["level", "temperature", "runs", "mean residual [95% CI]", "as a factor on steps"],
                 [[r["level"], f"{r['temperature']:g}", r["n"],
                   "n/a" if r["mean"] is None else f"{r['mean']:+.3f}" + (
                       "" if r["ci95_low"] is None else f" [{r['ci95_low']:+.3f}, {r['ci95_high']:+.3f}]"),
                   "n/a" if r["mean"] is None else f"{10 ** r['mean']:.2f}"] for r in rows])


def render(results_: dict[str, Any]) -> list[str]:
    from fincorp.report import table

    def n(x: Any, fmt: str = ".3g") -> str:
        return "n/a" if x is None else format(x, fmt)

    def steps(x: Any) -> str:
        return "not reached" if x is None else str(x)

    def check_table(rows: list[dict[str, Any]]) -> list[str]:
        return table(["run", "level", "law's variables", "E", "measured steps", "predicted", "95% prediction interval",
                      "inside"],
                     [[c["run"], c["level"], VARIABLES.get(tuple(c.get("variables") or ()), "n/a"), n(c["e_vip"]),
                       steps(c["measured"]) + ("" if c["measured"] is not None else f" (ran {c['ran_steps']})"),
                       "not within the budget" if c["predicted"] is None and c["inside"] is not None
                       else n(c["predicted"], ".0f"),
                       "n/a" if c["low"] is None else f"[{c['low']:.0f}, {c['high']:.0f}]",
                       {True: "yes", False: "no", None: "n/a"}[c["inside"]]] for c in rows])

    def declared_check(rows: list[dict[str, Any]], column_e: str) -> list[str]:
        """A declared check's count inside its 95% prediction intervals and its table, or that it has not run."""
        if not rows:
            return ["Not yet run."]
        return [f"Inside the 95% prediction interval: {sum(1 for c in rows if c['inside'])} of "
                f"{sum(1 for c in rows if c['inside'] is not None)}. Column E: {column_e}.", "", *check_table(rows)]

    lines = ["## The law", "",
             "E = expected MANUAL_REVIEW completions GRPO samples per optimizer step on rule prompts (gold "
             "MANUAL_REVIEW): prompts per step x share of rule prompts x num_generations x P_T(MANUAL_REVIEW | rule "
             "prompt), measured by the probe on the run's base and training rows at the run's sampling temperature. "
             "Steps to a level: the first validation point (every 10 steps, 32 VIP rows of the held-out slice) with "
             "VIP accuracy at or above it. OLS of log10(steps) on log10(E) over every run that reached the level "
             "(seeds are replicates; 95% intervals from the t distribution), at the grid's sampling temperatures "
             "(the runs of the two temperature checks below are not in it).", ""]
    rows = []
    for kind, fits_ in ((VARIABLES[("log10_e",)], results_["fits_e"]),
                        (VARIABLES[("log10_e", "log10_ratio")], results_["fits_specific"])):
        for name, f in fits_.items():
            used = "yes" if results_["law_choice"][name] == kind else ""
            if f.get("fitted"):
                coef = [f"{f[k]:.3f} [{f[k + '_ci95'][0]:.3f}, {f[k + '_ci95'][1]:.3f}]" for k in "abc" if k in f]
                rows.append([name, kind, used, f["n"], *coef, *(["—"] if len(coef) == 2 else []), f"{f['r2']:.2f}",
                             f"{math.sqrt(f['scale']):.3f}", ", ".join(f["not_reached"]) or "none",
                             ", ".join(f["at_start"]) or "none"])
            else:
                rows.append([name, kind, used, f["n"], "n/a", "n/a", "n/a", "n/a", "n/a", f.get("why"),
                             ", ".join(f["at_start"]) or "none"])
    lines += table(["level", "variables", "the law", "runs fitted", "a [95% CI]", "b (log10 E) [95% CI]",
                    "c (log10 E / E_other) [95% CI]", "R^2", "residual sd (log10 steps)",
                    "runs that did not reach it", "runs already there at step 0 (not fitted)"], rows)
    s = results_["samples_to_50"]
    o = results_["samples_to_50_other"]
    lines += ["", f"MANUAL_REVIEW completions sampled on rule prompts before 50% validation VIP accuracy, specific "
              f"bases (E >= E_other): geometric mean {n(s['geometric_mean'])} [95% CI {n(s['ci95_low'])}, "
              f"{n(s['ci95_high'])}] over {s['n']} runs (min {n(s['min'])}, max {n(s['max'])}); the others: "
              f"{n(o['geometric_mean'])} over {o['n']} runs (min {n(o['min'])}, max {n(o['max'])}).", ""]
    lines += ["## One law for both grid temperatures?", "",
              "Residuals of the fit (log10 steps: measured minus law) by the run's sampling temperature; an interval "
              "away from 0 says the temperature matters beyond what it does to E.", ""]
    lines += (residual_table(results_["residual_by_temperature"])
              if results_["residual_by_temperature"] else ["No fit yet."])
    lines += ["", "## Where E alone fails", "",
              "The law on E alone is fitted on the specific bases (E >= E_other: MANUAL_REVIEW sampled more often per "
              "step where it is rewarded than where it is penalised). Listed: every other run, and every run that "
              "did not reach a level, that took longer than the top of that law's 95% prediction interval. "
              "`fincorp probe` gives no number for a base less specific than every run the law was fitted on.", ""]
    lines += (table(["run", "level", "E", "E / E_other", "steps to the level", "steps run",
                     "law on E alone (upper 95%)"],
                    [[u["run"], u["level"], n(u["e_vip"]), "n/a" if u["ratio"] is None else n(10 ** u["ratio"]),
                      steps(u["measured"]), u["ran_steps"], f"{u['predicted']:.0f} ({u['high']:.0f})"]
                     for u in results_["unexplained"]])
              if results_["unexplained"] else ["None: every run is consistent with E alone."])
    lines += ["", "## Prediction check (held-out seeds, fit without them)", "",
              f"Inside the 95% prediction interval: {results_['check_inside']} of {results_['check_n']} ("
              f"{sum(1 for c in results_['check'] if c['inside'] and c['predicted'] is None)} of them predicted "
              "\"not within the budget\", and not reached).", ""]
    lines += check_table(results_["check"])
    t_rows = results_.get("temperature_check") or []
    if t_rows:
        temps = sorted({f"{r['temperature']:g}" for r in results_["points"] if r["run"] in {c["run"] for c in t_rows}})
        lines += ["", f"## Prediction check (temperature {', '.join(temps)}, declared before it ran; fit without it)",
                  "",
                  "VIP-specific bases sampled below temperature 1, where they sample MANUAL_REVIEW on rule prompts more "
                  "rarely than any run at 1 or 1.5; predicted by the law (fitted at the grid's temperatures). "
                  f"Inside the 95% prediction interval: {sum(1 for c in t_rows if c['inside'])} of "
                  f"{sum(1 for c in t_rows if c['inside'] is not None)} ("
                  f"{sum(1 for c in t_rows if c['inside'] and c['predicted'] is None)} of them predicted \"not within "
                  "the budget\", and not reached).", ""]
        lines += check_table(t_rows)
    et = results_.get("fits_e_over_t") or {}
    if any(f.get("fitted") for f in et.values()):
        lines += ["", "## Temperature in the law: E / T (found after the temperature check)", "",
                  "log10(steps) on log10(E / T), T the sampling temperature, against log10(E) alone, both over every "
                  "specific run (E >= E_other) at every temperature but the runs of the check below. TRL scores "
                  "completions with log-probabilities of logits divided by T, so each sampled reward moves the logits "
                  "about 1/T as far: E / T is the rewarded push per step. This variable was chosen after the "
                  "temperature check's runs were seen; the check below was declared before its runs.", ""]
        rows = []
        for kind, fits_ in (("E / T", et), ("E", results_["fits_e_same_runs"])):
            for name, f in fits_.items():
                rows.append([name, kind, f["n"], *(
                    [f"{f[k]:.3f} [{f[k + '_ci95'][0]:.3f}, {f[k + '_ci95'][1]:.3f}]" for k in "ab"]
                    + [f"{f['r2']:.2f}", f"{math.sqrt(f['scale']):.3f}"] if f.get("fitted") else
                    ["n/a", "n/a", "n/a", f.get("why")])])
        lines += table(["level", "variable", "runs fitted", "a [95% CI]", "slope [95% CI]", "R^2",
                        "residual sd (log10 steps)"], rows)
        lines += ["", "Its residuals by sampling temperature:", ""]
        lines += residual_table(results_["residual_by_temperature_e_over_t"])
        et_rows = results_.get("temperature_law_check") or []
        lines += ["", "## Prediction check of the law with temperature (declared before its runs; fit without them)",
                  ""]
        lines += declared_check(et_rows, "the run's E (the law reads E / T)")
        lt_rows = results_.get("low_temperature_check") or []
        lines += ["", "## Prediction check at low temperature (declared before its runs; the law in E / T refitted on "
                  "every specific run before them)", "",
                  "The refit, which the learning-rate check below also uses, and `fincorp probe` predicts with at "
                  "the temperatures it was fitted at (law.json):", ""]
        lines += fit_table(results_.get("fits_e_over_t_refit") or {}) + [""]
        lines += declared_check(lt_rows, "the run's E (the law reads E / T)")
        hot_rows = results_.get("high_temperature_check") or []
        lines += ["", "## Prediction check at high temperature (declared before its runs; the same refit)", ""]
        lines += declared_check(hot_rows, "the run's E (the law reads E / T)")
        lr_rows = results_.get("lr_check") or []
        lines += ["", "## Prediction check of the learning rate (declared before its runs; the same law, E x lr / "
                  f"{', '.join(f'{x:g}' for x in results_.get('fitted_lr') or [])} in place of E)", ""]
        lines += declared_check(lr_rows, "the run's E x lr / lr0")

    lines += ["", "## Which law: leave one base out", "",
              "For each base a candidate law was fitted on, the candidate refitted without that base's runs (every "
              "seed and temperature) predicts them. Per level the law is the candidate with the smaller mean "
              "|log10 measured - log10 predicted| over the runs both predict (a base less specific than every run "
              "left in the fit gets no number). Runs already at a level at step 0 are not predicted.", ""]
    lines += table(["level", "variables", "runs predicted", "inside the 95% prediction interval",
                    "runs both predict", "mean abs log10 error there (as a factor)", "the law"],
                   [[c["level"], c["variables"], c["n"], c["inside"], c["common_runs"],
                     "n/a" if c["mean_abs_log10_error"] is None else
                     f"{c['mean_abs_log10_error']:.3f} ({10 ** c['mean_abs_log10_error']:.2f}x)",
                     "yes" if results_["law_choice"][c["level"]] == c["variables"] else ""]
                    for c in results_["leave_one_base_out"]])
    lines += ["", "The law's leave-one-base-out predictions, run by run:", ""]
    lines += check_table(results_["check_by_base"])
    lines += ["", "## Bases", "",
              "Per base and temperature: the probe's P(MANUAL_REVIEW) on rule and on other training prompts and E "
              "(one base per prior, shared by the seeds: base.seed 42; seed is GRPO's), and each seed's steps to "
              "50% / 90% validation VIP accuracy. The base at 1.0 says which base a run had: the temperature checks "
              "rebuilt their bases on another CPU than the grid's, and near the knob's threshold that gives another "
              "base from the same prior (docs/reproducibility.md).", ""]
    lines += table(["base", "temperature", "seeds", "P(MR \\| rule prompt)", "P(MR \\| other)", "the base at 1.0: P(MR \\| rule), "
                    "P(MR \\| other)", "E", "steps to 50%", "steps to 90%", "sampled MR on rule prompts by 50%"],
                   [[c["base"], f"{c['temperature']:g}", ", ".join(map(str, c["seeds"])), n(c["p_mr_vip"]),
                     n(c["p_mr_other"]), f"{n(c.get('p_mr_vip_at_1'))}, {n(c.get('p_mr_other_at_1'))}", n(c["e_vip"]),
                     ", ".join(steps(x) for x in c["steps"]["50%"]),
                     ", ".join(steps(x) for x in c["steps"]["90%"]),
                     ", ".join(n(x, ".0f") for x in c["samples"]["50%"])] for c in results_["cells"]])
    lines += ["", "## The knob's fine steps (probed, not trained with GRPO)", "",
              "Bases between the grid's shares, each one `fincorp base` + `fincorp probe` on the training rows: "
              "P(MANUAL_REVIEW) on rule and on other prompts at temperatures 1 and 1.5. A base is VIP-specific "
              "where the first is well above the second.", ""]
    lines += (table(["base", "prior", "temperature", "P(MR \\| rule prompt)", "P(MR \\| other)", "E", "E / E_other"],
                    [[k["run"], ", ".join(f"{a}={b}" for a, b in k["overrides"].items()), t, n(m["p_mr_vip"]),
                      n(m["p_mr_other"]), n(m["expected_vip_escalations_per_step"]),
                      n(m["expected_vip_escalations_per_step"] / m["expected_other_escalations_per_step"])
                      if m["expected_other_escalations_per_step"] else "n/a"]
                     for k in results_["knob"] for t, m in sorted(k["by_temperature"].items())])
              if results_["knob"] else ["None probed yet."])
    lines += ["", "## Runs (the law's points)", ""]
    lines += table(["run", "seed", "held out", "P(MR \\| rule)", "P(MR \\| other)", "E", "E other", "steps run",
                    "steps to 50%", "steps to 90%", "final val VIP", "sampled MR on rule prompts"],
                   [[p["run"], p["seed"], "yes" if p["held_out"] else "", n(p["p_mr_vip"]), n(p["p_mr_other"]),
                     n(p["e_vip"]), n(p["e_other"]), p["max_step"], steps(p["steps"]["50%"]),
                     steps(p["steps"]["90%"]), n(p["final_val_vip_accuracy"], ".2f"),
                     "n/a" if p["vip_samples"] is None else f"{p['vip_manual_review_samples']}/{p['vip_samples']}"]
                    for p in results_["points"]])
    if results_["not_run"]:
        lines += ["", f"Not yet run ({len(results_['not_run'])}; `fincorp study discovery` resumes): "
                      f"{', '.join(results_['not_run'])}."]
    return lines
