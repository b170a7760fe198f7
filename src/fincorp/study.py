"""`fincorp study NAME`: a study is a set of DVC experiments, run and then reported -> reports/studies/NAME/.

    fincorp study seeds [--n 5]   the whole comparison under N training seeds (seed = 42, 43, ...)
    fincorp study reward          grpo.reward = exact, scripts, partial (stages grpo and hybrid)
    fincorp study prior           weaker and weaker base priors: the base's P(MANUAL_REVIEW | VIP prompt)
                                  against GRPO's final VIP accuracy
    fincorp study data            generate.n = 800 (the default) and 8000 (10x data)
    fincorp study control         the positive control for GRPO: a base whose prior escalates a share of VIP
                                  founders only, beside one that escalates any founder and the default
    fincorp study tune            the recipe search: 6 SFT and 6 GRPO candidates, trained on the train rows
                                  minus the validation slice (split.holdout_val=true), scored on the slice
    fincorp study discovery       when GRPO finds the hidden rule: bases x sampling temperatures x seeds, long
                                  GRPO runs scored on the validation slice every 10 steps; the law (discovery.py)

Each run is one DVC experiment, `dvc exp run --temp --name <study>-<run> -S key=value ... [stages]`: the
pipeline of the current commit (plus any uncommitted changes) in a temporary copy of the workspace,
with the study's params overridden through Hydra (conf/), and only the stages the study needs. Stages
whose inputs did not change are restored from DVC's run-cache (a study's default run costs nothing when
the reference run is committed), and the experiment stays listed in `dvc exp show`. The runs go one
after another: on 2 cores, one training run already uses both.

The numbers are then read back from each experiment's own git commit (`git show <commit>:<path>`): the
metrics files of the models the study looks at, the training logs (dvclive) of the stages it ran, and
the resolved params. study_report turns them into results.json, results.md and figures.

    fincorp study NAME --queue      only queue the runs (`dvc queue start -j N` runs them in parallel, on a
                                    machine with the cores for it; `dvc queue status` follows them)
    fincorp study NAME --collect    only write the report, from experiments that already ran
    fincorp study NAME --force      rerun experiments already run (by default they are kept, so an
                                    interrupted study resumes: those run on this commit, and those run on an
                                    earlier commit with the same stage code and params, same_run)

DVC's run-cache does not restore stages with uncached outputs (our dvclive logs and metrics files are
`cache: false`, so they diff in git), so a run whose params match an earlier experiment still retrains
sft/grpo/hybrid; only base (all outputs cached) comes back from the run-cache. A run whose params match
the committed workspace restores everything (nothing changed).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fincorp.jsonl import DataError

MODELS = ("baseline", "sft", "grpo", "hybrid")
RL_STAGES = ("grpo", "hybrid")
TRAINING_STAGES = ("sft", *RL_STAGES)  # the stages with dvclive training logs
# Resolved params copied into every run's record (the ones any study varies).
PARAM_KEYS = ("seed", "base.seed", "generate.n", "grpo.reward", "grpo.lr", "base.num_train_epochs", "base.prior.label_noise",
              "base.prior.manual_review_share", "base.prior.vip_manual_review_share", "split.val_size", "split.holdout_val", "sft.lr",
              "sft.num_train_epochs", "sft.lr_scheduler_type", "sft.warmup_steps", "grpo.num_train_epochs",
              "grpo.temperature", "grpo.num_generations", "grpo.lr_scheduler_type", "grpo.warmup_steps",
              "grpo.val_steps", "grpo.stop_vip_accuracy", "grpo.stop_evals")


@dataclass(frozen=True)
class Study:
    description: str
    runs: dict[str, dict[str, str]]  # run name -> -S overrides ({} = the committed params)
    targets: tuple[str, ...]  # dvc stages each run reproduces (with what they depend on)
    models: tuple[str, ...]  # whose metrics files the run produced, so the report may read them
    stages: tuple[str, ...]  # training stages whose logs the run produced
    # Per run, where runs differ: the stages it reproduces and whose logs it produced (else targets/stages).
    run_stages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # True: --collect reports the runs that finished and lists the others as not yet run (a long study
    # reported while it runs); False: every run must exist.
    partial: bool = False

    def targets_of(self, run: str) -> tuple[str, ...]:
        return self.run_stages.get(run, self.targets)

    def stages_of(self, run: str) -> tuple[str, ...]:
        return self.run_stages.get(run, self.stages)


# The recipe search (`fincorp study tune`): the same number of candidates per method and the same maximum
# number of epochs (4, the article's for both). Each is trained on the train rows minus the validation
# slice and scored on the slice. SFT keeps its scheduler (cosine, 10 warmup steps) and varies lr and
# epochs; GRPO keeps its scheduler (constant) and varies lr (from the old default 1e-4 up to 1e-3, where
# a policy on this base collapses into invalid output), epochs, and the sampling temperature.
TUNE_MAX_EPOCHS = 4
TUNE = {
    "sft": {"lr3e-4-ep4": ("3e-4", "4"), "lr1e-3-ep4": ("1e-3", "4"), "lr3e-3-ep4": ("3e-3", "4"),
            "lr1e-2-ep4": ("1e-2", "4"), "lr3e-3-ep2": ("3e-3", "2"), "lr3e-3-ep1": ("3e-3", "1")},
    "grpo": {"lr1e-4-ep1": ("1e-4", "1", "1.0"), "lr1e-4-ep4": ("1e-4", "4", "1.0"),
             "lr3e-4-ep4": ("3e-4", "4", "1.0"), "lr1e-3-ep4": ("1e-3", "4", "1.0"),
             "lr1e-4-ep4-t1.5": ("1e-4", "4", "1.5"), "lr3e-4-ep4-t1.5": ("3e-4", "4", "1.5")},
}


def tune_runs() -> dict[str, dict[str, str]]:
    runs = {}
    for name, (lr, epochs) in TUNE["sft"].items():
        runs[f"sft-{name}"] = {"split.holdout_val": "true", "sft.lr": lr, "sft.num_train_epochs": epochs}
    for name, (lr, epochs, temperature) in TUNE["grpo"].items():
        runs[f"grpo-{name}"] = {"split.holdout_val": "true", "grpo.lr": lr, "grpo.num_train_epochs": epochs,
                                "grpo.temperature": temperature}
    return runs


# The discovery study (`fincorp study discovery`, discovery.py): bases x sampling temperatures x seeds, each
# a GRPO run at the tuned recipe for 15 epochs of the 512 training rows (960 optimizer steps: 3x the
# tune's 4 epochs x 64 steps = 256, and 3x the reference run's 320), scored on the held-out validation
# slice every 10 steps, stopped once validation VIP accuracy has held >= 90% at 3 points in a row.
# Bases: the prior's knobs (base.py); the law reads each base's measured probabilities (stage probe),
# never the knob. VIP-specific escalation: vip_manual_review_share; random escalation (any founder):
# manual_review_share.
DISCOVERY_COMMON = {"split.holdout_val": "true", "grpo.num_train_epochs": "15", "grpo.val_steps": "10",
                    "grpo.stop_vip_accuracy": "0.9", "grpo.stop_evals": "3"}
DISCOVERY_BASES = {
    "default": {},
    "vip-0.3": {"base.prior.vip_manual_review_share": "0.3"},
    "vip-0.4": {"base.prior.vip_manual_review_share": "0.4"},
    "vip-0.5": {"base.prior.vip_manual_review_share": "0.5"},
    "vip-0.7": {"base.prior.vip_manual_review_share": "0.7"},
    "mr-0.01": {"base.prior.manual_review_share": "0.01"},
    "mr-0.05": {"base.prior.manual_review_share": "0.05"},
    "mr-0.2": {"base.prior.manual_review_share": "0.2"},
}
# The knob's fine steps, probed only (base + probe, no GRPO): where between VIP shares 0.27 and 0.3 the tiny
# base starts to tie MANUAL_REVIEW to the founder, and whether more pre-training epochs at a lower share
# do it. The report lists each one's measured P(MANUAL_REVIEW) on rule and on other prompts.
DISCOVERY_KNOB = {
    "knob-vip-0.27": {"base.prior.vip_manual_review_share": "0.27"},
    "knob-vip-0.28": {"base.prior.vip_manual_review_share": "0.28"},
    "knob-vip-0.29": {"base.prior.vip_manual_review_share": "0.29"},
    "knob-vip-0.15-ep3": {"base.prior.vip_manual_review_share": "0.15", "base.num_train_epochs": "3"},
}
DISCOVERY_TEMPERATURES = ("1.0", "1.5")
DISCOVERY_SEEDS = (42, 43, 44)
# Declared before any run: the fit never sees these seeds' runs; they check its predictions.
DISCOVERY_HELD_OUT_SEEDS = (44,)
# Declared before any of them ran, with the law's predictions for them (docs/studies.md): VIP-specific bases
# sampled at temperatures below 1, where they sample MANUAL_REVIEW on rule prompts far more rarely than any
# base of the grid at 1 or 1.5 (no prior of the knob gives a VIP-specific base below P(MR | rule) of about 0.1
# there). The law refitted without these temperatures predicts them: the temperature check.
DISCOVERY_CHECK_TEMPERATURES = {"0.7": ("vip-0.3",), "0.5": ("vip-0.3",), "0.3": ("vip-0.3",)}
# Declared after the temperature check and before these runs: the law with temperature (log10 steps on
# log10(E / T), fitted on every specific run before them) predicts another base below 1 and the VIP 0.3 base
# above the grid's temperatures.
DISCOVERY_TEMPERATURE_LAW_CHECK = (("vip-0.4", "0.5"), ("vip-0.3", "2.0"))
# Declared after that check and before these runs: the law in E / T, refitted on every specific run before them
# (that check's included), predicts the VIP 0.3 base sampled at 0.2 and 0.1, where E / T is 2.8 and 5.1 but
# most of P(MR | rule prompt) sits on the few rule prompts whose greedy answer is already MANUAL_REVIEW (a group
# of 8 identical rewards carries no GRPO advantage): the low-temperature check (docs/studies.md).
DISCOVERY_LOW_TEMPERATURE_CHECK = (("vip-0.3", "0.2"), ("vip-0.3", "0.1"))
# Declared with the low-temperature check running and none of its own runs: the learning rate. If a rewarded
# sample's push is what counts (1/T through the log-probabilities), twice the learning rate pushes twice as far:
# the law in E / T (the same refit as the low-temperature check's) predicts these runs with E x lr / lr0 in
# place of E, lr0 the grid's 1e-4. The VIP 0.3 base at 0.5, whose three runs at lr0 are the temperature check's.
DISCOVERY_LR_CHECK = (("vip-0.3", "0.5", "2e-4"), ("vip-0.3", "0.5", "5e-5"))
# Declared after the low-temperature and learning-rate checks and before these runs: the rule's end of the
# issue's range. Sampled hot, the VIP 0.4 base stays specific while P(MR | rule prompt) falls to 0.03 (1.75)
# and 0.003 (2.0), below any specific base GRPO has trained on; greedy validation at step 0 is the base's own,
# so there is something to discover. The same refit of the law in E / T predicts them (an extrapolation above
# the temperatures it was fitted at).
DISCOVERY_HIGH_TEMPERATURE_CHECK = (("vip-0.4", "1.75"), ("vip-0.4", "2.0"))


def discovery_runs() -> dict[str, dict[str, str]]:
    """Every run, in the order the study runs them (it resumes where it stopped): the VIP-specific bases
    first, seed by seed (they reach the rule fast and carry the law and its held-out check), then the
    random-escalation bases and the default, seed by seed (they may run the whole budget). The default base
    at the tuned temperature only: it never samples the answer at either."""
    runs = {}
    # second tier: the random-escalation bases from the most to the least escalating (the most informative
    # about specificity first), then the default (its probe: about 1e-11 expected escalations a step)
    tiers = ([b for b in DISCOVERY_BASES if b.startswith("vip-")],
             [*sorted((b for b in DISCOVERY_BASES if b.startswith("mr-")), key=lambda b: -float(b[3:])), "default"])
    for tier in tiers:
        for seed in DISCOVERY_SEEDS:
            for base in tier:
                for t in (("1.5",) if base == "default" else DISCOVERY_TEMPERATURES):
                    runs[f"{base}-t{t}-s{seed}"] = {**DISCOVERY_COMMON, **DISCOVERY_BASES[base],
                                                    "grpo.temperature": t, "seed": str(seed)}
    for seed in DISCOVERY_SEEDS:  # then the temperature check, seed by seed
        for t, bases in DISCOVERY_CHECK_TEMPERATURES.items():
            for base in bases:
                runs[f"{base}-t{t}-s{seed}"] = {**DISCOVERY_COMMON, **DISCOVERY_BASES[base], "grpo.temperature": t,
                                                "seed": str(seed)}
    for seed in DISCOVERY_SEEDS:  # then the check of the law with temperature, then the low-temperature check
        for base, t in (*DISCOVERY_TEMPERATURE_LAW_CHECK, *DISCOVERY_LOW_TEMPERATURE_CHECK):
            runs[f"{base}-t{t}-s{seed}"] = {**DISCOVERY_COMMON, **DISCOVERY_BASES[base], "grpo.temperature": t,
                                            "seed": str(seed)}
    for seed in DISCOVERY_SEEDS:  # then the learning-rate check
        for base, t, lr in DISCOVERY_LR_CHECK:
            runs[f"{base}-t{t}-lr{lr}-s{seed}"] = {**DISCOVERY_COMMON, **DISCOVERY_BASES[base], "grpo.temperature": t,
                                                   "grpo.lr": lr, "seed": str(seed)}
    for seed in DISCOVERY_SEEDS:  # then the high-temperature check
        for base, t in DISCOVERY_HIGH_TEMPERATURE_CHECK:
            runs[f"{base}-t{t}-s{seed}"] = {**DISCOVERY_COMMON, **DISCOVERY_BASES[base], "grpo.temperature": t,
                                            "seed": str(seed)}
    for knob, overrides in DISCOVERY_KNOB.items():  # last: probe only (stage probe, via run_stages)
        runs[knob] = {"split.holdout_val": "true", **overrides}
    return runs


def studies(n_seeds: int = 5, first_seed: int = 42) -> dict[str, Study]:
    return {
        "seeds": Study(
            f"The whole comparison (base, sft, grpo, hybrid, all evaluated) under {n_seeds} training seeds, "
            f"seed = {first_seed}..{first_seed + n_seeds - 1}; data and split keep their own seeds.",
            {f"seed{s}": {"seed": str(s), "base.seed": str(s)} for s in range(first_seed, first_seed + n_seeds)},
            ("report",), MODELS, TRAINING_STAGES),
        "reward": Study(
            "GRPO and hybrid under each reward preset: exact (+1/-1), scripts (the published scripts' shaped "
            "reward), partial (1 right label, 0.5 right family, 0 other valid label, -1 invalid).",
            {preset: {"grpo.reward": preset} for preset in ("exact", "scripts", "partial")},
            ("eval@grpo", "eval@hybrid"), RL_STAGES, RL_STAGES),
        "prior": Study(
            "How sure the base is of its prior (never MANUAL_REVIEW) against whether GRPO discovers the hidden "
            "rule: fractions of a pre-training epoch, label noise in the prior corpus (a random label among "
            "the four), and a prior that says MANUAL_REVIEW for a share of its rows; GRPO at the tuned recipe "
            "(the `grpo:` section) on every base.",
            {"default": {},
             "epochs-0.1": {"base.num_train_epochs": "0.1"},
             "noise-0.5": {"base.prior.label_noise": "0.5"},
             "mr-0.01": {"base.prior.manual_review_share": "0.01"},
             "mr-0.05": {"base.prior.manual_review_share": "0.05"},
             "mr-0.2": {"base.prior.manual_review_share": "0.2"}},
            ("eval@baseline", "eval@grpo"), ("baseline", "grpo"), ("grpo",)),
        "data": Study(
            "The same pipeline on 10x the data: generate.n = 8000 (6400 train / 1600 test) against the default "
            "800 (640 / 160), every training recipe unchanged (same epochs, so 10x the steps).",
            {"n800": {}, "n8000": {"generate.n": "8000"}},
            ("report",), MODELS, TRAINING_STAGES),
        "control": Study(
            "The positive control for the RL machinery, at the tuned GRPO recipe: bases whose prior says "
            "MANUAL_REVIEW for 30% or 50% of its VIP-founder rows (the hidden rule's association; at 30% the base "
            "gives MANUAL_REVIEW about a quarter of its probability on VIP prompts and under 1% on others, the "
            "weakest share at which it tells VIP founders apart: at 25% and below it does not), one whose prior "
            "says it for 20% of all rows (any founder), and the default. GRPO can only amplify what it samples: "
            "where the base samples MANUAL_REVIEW on VIP prompts more than on others, a working GRPO raises it.",
            {"default": {}, "vip-0.3": {"base.prior.vip_manual_review_share": "0.3"},
             "vip-0.5": {"base.prior.vip_manual_review_share": "0.5"},
             "mr-0.2": {"base.prior.manual_review_share": "0.2"}},
            ("eval@baseline", "eval@grpo"), ("baseline", "grpo"), ("grpo",)),
        "discovery": Study(
            "When does GRPO find the hidden rule? Bases that sample MANUAL_REVIEW on the rule's prompts more or less "
            "often (VIP-specific and random escalation in the prior) x sampling temperature 1.0 and 1.5 x seeds "
            f"{', '.join(map(str, DISCOVERY_SEEDS))}; GRPO at the tuned recipe for up to 960 optimizer steps on "
            "the train rows minus the validation slice, scored on the slice every 10 steps, stopped once "
            "validation VIP accuracy held >= 90% at 3 points in a row. The law: steps to 50% / 90% validation VIP "
            "accuracy against the expected MANUAL_REVIEW completions sampled per step on rule prompts (stage "
            f"probe). Seed {', '.join(map(str, DISCOVERY_HELD_OUT_SEEDS))} is held out of the fit and "
            "predicted. Then five checks, each declared before its runs: the VIP 0.3 base at temperatures "
            f"{', '.join(DISCOVERY_CHECK_TEMPERATURES)} (predicted by the law in E), "
            f"{', '.join(f'{b} at {t}' for b, t in DISCOVERY_TEMPERATURE_LAW_CHECK)} (predicted by the law in E / T, "
            "fitted on every specific run before them) and "
            f"{', '.join(f'{b} at {t}' for b, t in DISCOVERY_LOW_TEMPERATURE_CHECK)} (the law in E / T refitted "
            "with the second check's runs), and the learning rate: "
            f"{', '.join(f'{b} at {t} with lr {lr}' for b, t, lr in DISCOVERY_LR_CHECK)} (that law with E x lr / "
            f"1e-4 in place of E), and {', '.join(f'{b} at {t}' for b, t in DISCOVERY_HIGH_TEMPERATURE_CHECK)} (the "
            f"same law, above the temperatures it was fitted at). Last, {len(DISCOVERY_KNOB)} bases between the grid's VIP "
            "shares, probed only (the knob's "
            "fine steps). The test set is not read.",
            discovery_runs(), ("probe", "grpo"), ("probe",), ("grpo",),
            run_stages={knob: ("probe",) for knob in DISCOVERY_KNOB}, partial=True),
        "tune": Study(
            f"The recipe search: {len(TUNE['sft'])} SFT and {len(TUNE['grpo'])} GRPO candidates, at most "
            f"{TUNE_MAX_EPOCHS} epochs each, trained on the train rows minus the validation slice "
            "(split.holdout_val=true) and scored on the slice (greedy) every val_steps optimizer steps. Winner per "
            "method: the best final validation accuracy; ties go to the run that processed fewer tokens. The test "
            "set is not read.",
            tune_runs(), (), (), (),
            run_stages={run: (run.split("-")[0],) for run in tune_runs()}),
    }


def git(*args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if check and done.returncode:
        raise DataError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout if done.returncode == 0 else ""


def exp_name(study: str, run: str) -> str:
    return f"{study}-{run}"


def experiment_refs(name: str) -> list[tuple[str, str]]:
    """(ref, commit) of every experiment called `name`, on any baseline, newest first."""
    refs = git("for-each-ref", "--sort=-committerdate", "--format=%(refname) %(objectname)", "refs/exps/")
    return [(ref, commit) for ref, commit in (line.split() for line in refs.splitlines())
            if ref.endswith(f"/{name}")]


def find_experiment(name: str, baseline: str, exact: bool = False) -> str | None:
    """Commit of the experiment called `name`: the one based on `baseline` if any, else (unless `exact`)
    the newest of that name."""
    found = experiment_refs(name)
    for ref, commit in found:  # refs/exps/<baseline[:2]>/<baseline[2:]>/<name>
        parts = ref.split("/")
        if parts[2] + parts[3] == baseline:
            return commit
    return found[0][1] if found and not exact else None


def experiments_named(name: str) -> list[str]:
    """Commits of every experiment called `name`, on any baseline, newest first."""
    return [commit for _, commit in experiment_refs(name)]


def dvc_cmd(*args: str) -> list[str]:
    exe = shutil.which("dvc")
    if exe is None:
        raise FileNotFoundError("dvc is not on PATH: run inside the project's venv (make setup)")
    return [exe, *args]


def run_experiments(study: str, spec: Study, baseline: str, queue: bool, force: bool,
                    after_each: Any = None) -> dict[str, float | None]:
    """Run (or queue) every run of the study as a named DVC experiment; wall time per run.

    An experiment of the same name already based on this commit is kept (an interrupted study resumes
    where it stopped), and so is one based on an earlier commit whose stages ran the same code and params a
    run would now (same_run: a study of hours resumes across commits that change docs or reports), unless
    `force`: then it is removed and run again.
    """
    times: dict[str, float | None] = {}
    for run, overrides in spec.runs.items():
        name = exp_name(study, run)
        if not force and find_experiment(name, baseline, exact=True) is None:
            earlier = next((c for c in experiments_named(name) if same_run(c, overrides)), None)
            if earlier is not None:
                print(f"study {study}: keeping {name} (run on {earlier[:8]} with the same code and params)", flush=True)
                continue
        if find_experiment(name, baseline, exact=True) is not None:
            if not force:
                print(f"study {study}: keeping {name} (already run on this commit; --force reruns it)", flush=True)
                continue
            removed = subprocess.run(dvc_cmd("exp", "remove", name), capture_output=True, text=True, check=False)
            if removed.returncode:
                raise DataError(f"cannot replace experiment {name}: `dvc exp remove {name}` said: "
                                f"{removed.stderr.strip() or removed.stdout.strip()}")
        cmd = dvc_cmd("exp", "run", "--queue" if queue else "--temp", "--name", name,
                      *(a for k, v in overrides.items() for a in ("-S", f"{k}={v}")), *spec.targets_of(run))
        print(f"study {study}: {'queueing' if queue else 'running'} {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.time()
        code = subprocess.call(cmd)
        if code:
            raise DataError(f"experiment {name} failed (exit code {code}); see the log above")
        times[run] = None if queue else round(time.time() - start, 1)
        if after_each is not None:
            after_each(times)
    return times


def same_run(commit: str, overrides: dict[str, str]) -> bool:
    """Whether the experiment at `commit` ran what `dvc exp run -S overrides` would run now: every source file
    a stage of its dvc.lock depended on has the same md5 (DVC's content hash) in the workspace, and its
    params.yaml equals the workspace's params.yaml with the overrides applied."""
    import hashlib

    import yaml

    lock, params = read_at(commit, "dvc.lock"), read_at(commit, "params.yaml")
    if lock is None or params is None or not Path("params.yaml").is_file():
        return False
    for stage in (yaml.safe_load(lock).get("stages") or {}).values():
        for dep in stage.get("deps") or []:
            path = Path(dep["path"])
            if dep["path"].startswith("src/") and (
                    not path.is_file() or hashlib.md5(path.read_bytes()).hexdigest() != dep.get("md5")):
                return False
    now = OmegaConf.load("params.yaml")
    for key, value in overrides.items():
        OmegaConf.update(now, key, OmegaConf.from_dotlist([f"v={value}"]).v, force_add=True)
    return OmegaConf.to_container(now) == OmegaConf.to_container(OmegaConf.create(params))


def read_at(commit: str, path: str) -> str | None:
    out = subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True, text=True, check=False)
    return out.stdout if out.returncode == 0 else None


def json_at(commit: str, path: str) -> dict[str, Any] | None:
    text = read_at(commit, path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} in experiment commit {commit[:8]}:{e.lineno}: not valid JSON ({e.msg})") from None


def tsv_mean(text: str | None, column: str) -> float | None:
    if not text:
        return None
    values = [float(row[column]) for row in csv.DictReader(io.StringIO(text), delimiter="\t")]
    return sum(values) / len(values) if values else None


def tsv_rows(text: str | None, column: str) -> list[dict[str, float]]:
    if not text:
        return []
    return [{"step": int(row["step"]), column: float(row[column])}
            for row in csv.DictReader(io.StringIO(text), delimiter="\t")]


def training_record(commit: str, stage: str) -> dict[str, Any]:
    """What the stage's dvclive logs in the experiment say: steps, tokens, the validation curve, and for RL
    the zero-std share and VIP samples."""
    summary = json_at(commit, f"logs/{stage}/metrics.json") or {}
    metrics = f"logs/{stage}/plots/metrics"
    vip = {r["step"]: r["vip_accuracy"] for r in tsv_rows(read_at(commit, f"{metrics}/val/vip_accuracy.tsv"),
                                                            "vip_accuracy")}
    tokens = tsv_rows(read_at(commit, f"{metrics}/num_tokens.tsv"), "num_tokens")
    record: dict[str, Any] = {
        "runtime_s": (summary.get("train") or {}).get("runtime"),
        "steps": summary.get("step"), "num_tokens": summary.get("num_tokens"),
        "val_curve": [r | {"vip_accuracy": vip.get(r["step"])}
                      for r in tsv_rows(read_at(commit, f"{metrics}/val/accuracy.tsv"), "accuracy")],
        "tokens_curve": tokens,
    }
    if stage in RL_STAGES:
        vip = summary.get("vip") or {}
        other = summary.get("non_vip") or {}
        record |= {
            "non_vip_samples": other.get("samples"),
            "non_vip_manual_review_samples": other.get("manual_review_samples"),
            "mean_frac_reward_zero_std": tsv_mean(
                read_at(commit, f"logs/{stage}/plots/metrics/frac_reward_zero_std.tsv"), "frac_reward_zero_std"),
            "vip_samples": vip.get("samples"),
            "vip_manual_review_samples": vip.get("manual_review_samples"),
            # running count of MANUAL_REVIEW completions sampled on VIP prompts, at each logging step
            "vip_manual_review_curve": [{"step": r["step"], "count": r["manual_review_samples"]} for r in tsv_rows(
                read_at(commit, f"{metrics}/vip/manual_review_samples.tsv"), "manual_review_samples")],
        }
    return record


def collect(study: str, spec: Study, baseline: str, times: dict[str, float | None],
            earlier: dict[str, Any] | None = None, threads: str | None = None) -> list[dict[str, Any]]:
    """One record per run, read from its experiment's commit. A run not timed now keeps the wall time (and
    the torch threads it ran with) an earlier report (`earlier`, its results.json) measured for the same
    experiment commit; a run timed now ran with `threads`.

    A run whose experiment is not in this repository (DVC keeps experiments under refs/exps/, which a clone
    does not bring) keeps the earlier report's record of it, if that record ran the same overrides; the
    record says so (`from_report`). Its numbers were read from its experiment's commit when that was here."""
    before = {r["run"]: r for r in (earlier or {}).get("runs", [])}
    records = []
    for run, overrides in spec.runs.items():
        name = exp_name(study, run)
        commit = find_experiment(name, baseline)
        kept = before.get(run, {})
        if commit is None and kept.get("commit") and kept.get("overrides") == dict(overrides):
            records.append({**kept, "from_report": True})
            continue
        if commit is None and spec.partial:
            records.append({"run": run, "experiment": name, "commit": None, "overrides": dict(overrides),
                            "not_run": True})
            continue
        if commit is None:
            raise DataError(f"no experiment named {name}: run `fincorp study {study}` (or wait for the queue: "
                            f"`dvc queue status`)")
        params_text = read_at(commit, "params.yaml")
        if params_text is None:
            raise DataError(f"experiment {name} ({commit[:8]}) has no params.yaml")
        params = OmegaConf.create(params_text)
        records.append({
            "run": run,
            "experiment": name,
            "commit": commit,
            "overrides": dict(overrides),
            "params": {k: OmegaConf.select(params, k) for k in PARAM_KEYS},
            **({"wall_time_s": times[run], "threads": threads} if times.get(run) is not None else
               {k: before[run].get(k) if before.get(run, {}).get("commit") == commit else None
                for k in ("wall_time_s", "threads")}),
            # eval/<m>.json: the full eval record; experiments from before it existed kept it in metrics/.
            "metrics": {m: j for m in spec.models
                        if (j := json_at(commit, f"eval/{m}.json") or json_at(commit, f"metrics/{m}.json")) is not None},
            "training": {s: training_record(commit, s) for s in spec.stages_of(run) if s in TRAINING_STAGES},
        })
    return records


def run(study: str, n_seeds: int = 5, queue: bool = False, collect_only: bool = False, force: bool = False,
        out_dir: str = "reports/studies") -> None:
    all_studies = studies(n_seeds)
    if study not in all_studies:
        raise DataError(f"unknown study {study!r}; choose one of: {', '.join(all_studies)}")
    if n_seeds < 2:
        raise DataError(f"--n must be at least 2 (a spread needs two seeds), got {n_seeds}")
    if not Path("dvc.yaml").is_file():
        raise FileNotFoundError("dvc.yaml not found: run `fincorp study` from the project's root")
    spec = all_studies[study]
    baseline = git("rev-parse", "HEAD").strip()
    started = time.time()
    command = f"fincorp study {study}" + (f" --n {n_seeds}" if study == "seeds" else "")

    def report(times: dict[str, float | None], wall_time_s: float | None) -> None:
        previous = Path(out_dir) / study / "results.json"
        threads = os.environ.get("OMP_NUM_THREADS", "torch default")
        records = collect(study, spec, baseline, times,
                          json.loads(previous.read_text()) if previous.is_file() else None, threads)
        from fincorp import study_report

        meta = {"study": study, "description": spec.description, "command": command, "baseline_commit": baseline,
                "wall_time_s": wall_time_s, "threads": threads}
        study_report.write(Path(out_dir) / study, study, records, meta)
        print(f"study {study}: {len(records)} runs -> {Path(out_dir) / study}/results.md", flush=True)

    # A partial study (hours of runs) rewrites its report after every run: what finished is reported, with
    # its wall time, even if the study is stopped before the end.
    after_each = (lambda times: report(times, None)) if spec.partial and not queue else None
    times = {} if collect_only else run_experiments(study, spec, baseline, queue, force, after_each)
    if queue:
        print(f"study {study}: {len(spec.runs)} experiments queued; `dvc queue start -j N` runs them, then "
              f"`fincorp study {study} --collect` writes the report")
        return
    report(times, None if collect_only else round(time.time() - started, 1))
