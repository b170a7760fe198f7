"""Stage `grpo`: reinforcement learning of a LoRA adapter with TRL's GRPOTrainer -> models/grpo/.

    fincorp grpo                (or: dvc repro grpo; sweep with dvc exp run -S grpo.lr=5e-6)

As in the article, RL starts from the base model (not from SFT). The data is prompt-only
(data/train.jsonl rendered by the shared prompt function); the gold label is a dataset column that
TRL passes to the reward function as a keyword argument. The reward preset is `grpo.reward`:
  exact    grpo.reward_correct if parse_decision(completion) == label, else grpo.reward_wrong
  scripts  the published scripts' shaped reward (scoring.scripts_reward)
  partial  1 right label, 0.5 right family, 0 other valid label, -1 invalid (scoring.partial_reward)
Both call scoring.parse_decision, the parser eval uses: one definition of "correct".

Logged through dvclive to logs/grpo/ (`dvc plots show`): TRL's reward mean/std,
frac_reward_zero_std (groups whose completions all got the same reward: zero advantage, nothing
learned), entropy and completion length; and ours: the share of each label (and invalid) among the
completions sampled since the last log, plus how many MANUAL_REVIEW answers were ever sampled for
VIP prompts (right) and for the other prompts (wrong). That is what "mode collapse onto two classes" looks like over time.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from fincorp.model import base_location, chat_kwargs, load_base_model, load_tokenizer
from fincorp.params import Params, load_params, to_dict
from fincorp.prefix import SharedPromptGenerate, completion_logits, use_gqa_sdpa
from fincorp.prompt import prompt_messages
from fincorp.rules import LABELS, MANUAL_REVIEW
from fincorp.scoring import INVALID, completion_text, exact_reward, parse_decision, partial_reward, scripts_reward
from fincorp.split import read_applications
from fincorp.train import (is_main_process, live_callback, lora_config, prepare_checkpoints, save_adapter,
                           trainer_args, validation_callback)


class CountingReward:
    """The chosen reward preset, also counting which label every sampled completion chose."""

    def __init__(self, p: Params):
        self.preset = p.grpo.reward
        self.correct, self.wrong = p.grpo.reward_correct, p.grpo.reward_wrong
        self.__name__ = f"{self.preset}_reward"  # TRL names the logged reward after this
        self.window: Counter = Counter()
        self.vip_samples = 0
        self.vip_manual_review = 0
        self.other_samples = 0  # prompts without a VIP founder: escalating them is wrong
        self.other_manual_review = 0
        self.gold_seen: Counter = Counter()  # gold labels received from TRL (the dataset's label column)

    def __call__(self, prompts: list, completions: list, label: list[str], **kwargs: Any) -> list[float]:
        self.gold_seen.update(label)
        for c, gold in zip(completions, label):
            pred = parse_decision(completion_text(c))
            self.window[pred or INVALID] += 1
            if gold == MANUAL_REVIEW:
                self.vip_samples += 1
                self.vip_manual_review += pred == MANUAL_REVIEW
            else:
                self.other_samples += 1
                self.other_manual_review += pred == MANUAL_REVIEW
        if self.preset == "exact":
            return exact_reward(prompts, completions, label, correct=self.correct, wrong=self.wrong)
        if self.preset == "partial":
            return partial_reward(prompts, completions, label)
        return scripts_reward(prompts, completions, label)


class LabelShareCallback(TrainerCallback):
    """Adds the label shares of the completions sampled since the last log to the trainer's logs."""

    def __init__(self, reward: CountingReward):
        self.reward = reward

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:  # the final summary log has no samples to report
            return
        total = sum(self.reward.window.values())
        if total:
            for label in (*LABELS, INVALID):
                logs[f"sampled_share/{label}"] = self.reward.window.get(label, 0) / total
        logs["vip/manual_review_samples"] = self.reward.vip_manual_review
        logs["vip/samples"] = self.reward.vip_samples
        logs["non_vip/manual_review_samples"] = self.reward.other_manual_review
        logs["non_vip/samples"] = self.reward.other_samples
        self.reward.window.clear()


def shuffle_groups(batch: dict, group: int) -> dict:
    """TRL's shuffle_sequence_dict at the level of prompt groups: the rows come as consecutive groups of
    `group` completions of one prompt (TRL's RepeatSampler); the groups are permuted, each kept whole."""
    import torch

    n = len(next(v for v in batch.values() if v is not None))
    order = (torch.randperm(n // group)[:, None] * group + torch.arange(group)).flatten()

    def permute(v):
        if v is None or (isinstance(v, torch.Tensor) and v.ndim == 0):
            return v
        return v[order] if isinstance(v, torch.Tensor) else [v[i] for i in order]

    return {k: permute(v) for k, v in batch.items()}


def trainer_class(share_prompt_prefix: bool):
    """TRL's GRPOTrainer; with grpo.share_prompt_prefix, one that runs each distinct prompt once when it
    generates and in the loss (prefix.py): the same computation as TRL's, without its 8 copies of every prompt."""
    from trl import GRPOTrainer

    if not share_prompt_prefix:
        return GRPOTrainer

    class SharedPromptGRPOTrainer(GRPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            use_gqa_sdpa(self.accelerator.unwrap_model(self.model))
            if not self.use_vllm:  # TRL generates through the unwrapped model's generate (this object on one device)
                self.accelerator.unwrap_model(self.model).generate = SharedPromptGenerate(
                    self.accelerator.unwrap_model(self.model), self.accelerator.unwrap_model(self.model).generate)

        def _prepare_inputs(self, generation_batch):
            """TRL's, with one change: the generation batch is shuffled by whole prompt groups, not by row, so
            a micro-batch holds per_device_train_batch_size / num_generations prompts with all their
            completions (2 of 16 rows' prompts to run instead of ~7). The gradient of a step is the same: every
            loss type TRL has sums micro-batch losses that are each normalised over the whole batch or per
            sequence; only the order in which rows are summed changes."""
            from trl.trainer.utils import split_tensor_dict

            if not self.model.training or self.num_iterations != 1:
                return super()._prepare_inputs(generation_batch)
            if self._step % self.args.steps_per_generation == 0 or self._buffered_inputs is None:
                batch = self._generate_and_score_completions(generation_batch)
                batch = shuffle_groups(batch, self.num_generations)
                self._buffered_inputs = split_tensor_dict(batch, self.args.steps_per_generation)
            return self._buffered_inputs[self._step % self.args.steps_per_generation]

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, **extra):
            if any(v is not None for v in extra.values()):  # images and the like: TRL's own path
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, **extra)
            import torch
            from trl.trainer.utils import entropy_from_logits, selective_log_softmax

            batch_size = batch_size or input_ids.size(0)
            logps, entropies = [], []
            for start in range(0, input_ids.size(0), batch_size):  # TRL's chunks, TRL's arithmetic after the logits
                ids = input_ids[start:start + batch_size]
                logits = completion_logits(model, ids, attention_mask[start:start + batch_size], logits_to_keep)
                logits = logits / self.temperature
                logps.append(selective_log_softmax(logits, ids[:, -logits_to_keep:]))
                if compute_entropy:
                    with torch.no_grad():
                        entropies.append(entropy_from_logits(logits))
            return torch.cat(logps, dim=0), torch.cat(entropies, dim=0) if compute_entropy else None

    return SharedPromptGRPOTrainer


def grpo_dataset(rows: list[dict], p: Params):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": prompt_messages(r, p.prompt.burn_display), "label": r["label"]}
                              for r in rows])


def build_trainer(p: Params, base_dir: str, rows: list[dict], ckpt_dir: Path, log_dir: Path | None,
                  resume: bool = False, init_adapter: str | None = None, val: str | None = None):
    """GRPOTrainer on the base model (also used by the tests): with a fresh LoRA adapter, or, given
    `init_adapter` (stage hybrid), continuing to train that adapter (loaded trainable; TRL then copies it
    as the KL reference when grpo.beta > 0, so the reference is the SFT policy, not the bare base)."""
    from transformers import set_seed
    from trl import GRPOConfig

    g = p.grpo
    set_seed(p.seed)
    tokenizer = load_tokenizer(p.model, base_dir, padding_side="left")
    model = load_base_model(p.model, base_dir)
    if init_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
    args = GRPOConfig(
        **trainer_args(g, p.seed, ckpt_dir),
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        beta=g.beta,
        loss_type=g.loss_type,
        scale_rewards=g.scale_rewards,
        use_vllm=g.use_vllm,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=g.vllm_gpu_memory_utilization,
        chat_template_kwargs=chat_kwargs(p.model),
    )
    reward = CountingReward(p)
    callbacks: list = [LabelShareCallback(reward)]
    if log_dir is not None and is_main_process():
        callbacks.append(live_callback(log_dir, resume))  # after LabelShareCallback: it logs the shares too
    if val is not None:  # learning curve: the validation slice every grpo.val_steps steps
        live = callbacks[-1].live if len(callbacks) > 1 else None
        callbacks.append(validation_callback(g, p, base_dir, val, live))
    trainer = trainer_class(g.share_prompt_prefix)(model=model, reward_funcs=[reward], args=args, train_dataset=grpo_dataset(rows, p),
                          processing_class=tokenizer,
                          peft_config=lora_config(g.lora) if init_adapter is None else None, callbacks=callbacks)
    return trainer, reward


def run(params_path: str, base_dir: str, train: str, out: str, log_dir: str, val: str,
        checkpoints: str = "checkpoints/grpo", init_adapter: str | None = None) -> None:
    p = load_params(params_path)
    rows = read_applications(train)
    read_applications(val)  # a bad validation file is an error before training starts
    base_location(p.model, base_dir)  # a missing or mismatched base is an error before anything starts
    if init_adapter is not None and not (Path(init_adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{init_adapter}: no LoRA adapter to start from (adapter_config.json missing); "
                                f"train it first with `dvc repro {Path(init_adapter).name}`")
    started = time.time()
    ckpt_dir = Path(checkpoints)
    # The starting adapter (stage hybrid) is part of what a checkpoint must match to be resumed.
    start = {"init": init_adapter} if init_adapter is not None else {}
    resume_from = prepare_checkpoints(ckpt_dir, params=to_dict(p), base=Path(base_dir) / "meta.json", train=train,
                                      **start)
    if resume_from is None and is_main_process():
        shutil.rmtree(log_dir, ignore_errors=True)
    trainer, reward = build_trainer(p, base_dir, rows, ckpt_dir, Path(log_dir), resume=resume_from is not None,
                                    init_adapter=init_adapter, val=val)
    result = trainer.train(resume_from_checkpoint=resume_from)
    history = [h for h in trainer.state.log_history if "frac_reward_zero_std" in h]
    save_adapter(
        trainer, out, ckpt_dir, to_dict(p.grpo) | {"seed": p.seed, "model": to_dict(p.model)}, started, result,
        resumed_from=resume_from, init_adapter=init_adapter,
        # Counted in this process only: after a resume they cover the resumed part of the run.
        vip_samples=reward.vip_samples,
        vip_manual_review_samples=reward.vip_manual_review,
        non_vip_samples=reward.other_samples,
        non_vip_manual_review_samples=reward.other_manual_review,
        mean_frac_reward_zero_std=(sum(h["frac_reward_zero_std"] for h in history) / len(history)
                                   if history else None),
    )
