"""Stage `sft`: supervised fine-tuning of a LoRA adapter with TRL's SFTTrainer -> models/sft/.

    fincorp sft                 (or: dvc repro sft)

Data: data/train.jsonl as a conversational prompt-completion dataset, the prompt rendered by the
shared prompt function (system + user), the completion the assistant's `{"decision": "<label>"}`.
Loss: on the completion tokens only (`sft.completion_only_loss: true`, what the article describes:
"every output token is guided"); false puts it on the whole sequence, as the published scripts did.
LoRA (peft) on `sft.lora.target_modules`; the base weights stay frozen.
Curves go to logs/sft/ through dvclive (`dvc plots show`), with the validation slice's accuracy every
`sft.val_steps` optimizer steps (val/accuracy, val/vip_accuracy). An interrupted run resumes from
checkpoints/sft/ when rerun with the same inputs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from fincorp.model import base_location, chat_kwargs, load_base_model, load_tokenizer
from fincorp.params import Params, load_params, to_dict
from fincorp.prompt import answer_text, prompt_messages
from fincorp.split import read_applications
from fincorp.train import (is_main_process, live_callback, lora_config, prepare_checkpoints, save_adapter,
                           trainer_args, validation_callback)


def sft_dataset(rows: list[dict], p: Params):
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": prompt_messages(r, p.prompt.burn_display),
         "completion": [{"role": "assistant", "content": answer_text(r["label"])}],
         "chat_template_kwargs": chat_kwargs(p.model)}
        for r in rows
    ])


def build_trainer(p: Params, base_dir: str, rows: list[dict], ckpt_dir: Path, log_dir: Path | None,
                  resume: bool = False, val: str | None = None):
    """SFTTrainer with a fresh LoRA adapter on the base model (also used by the tests); with `val`, a
    ValidationCallback scores that slice every sft.val_steps steps (learning curves)."""
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    s = p.sft
    set_seed(p.seed)
    tokenizer = load_tokenizer(p.model, base_dir, padding_side="right")
    model = load_base_model(p.model, base_dir)
    args = SFTConfig(
        **trainer_args(s, p.seed, ckpt_dir),
        weight_decay=s.weight_decay,
        max_length=s.max_length,
        completion_only_loss=s.completion_only_loss,
    )
    callbacks = [live_callback(log_dir, resume)] if log_dir is not None and is_main_process() else []
    if val is not None:
        callbacks.append(validation_callback(s, p, base_dir, val, callbacks[0].live if callbacks else None))
    return SFTTrainer(model=model, args=args, train_dataset=sft_dataset(rows, p), processing_class=tokenizer,
                      peft_config=lora_config(s.lora), callbacks=callbacks)


def run(params_path: str, base_dir: str, train: str, out: str, log_dir: str, val: str,
        checkpoints: str = "checkpoints/sft") -> None:
    p = load_params(params_path)
    rows = read_applications(train)
    read_applications(val)  # a bad validation file is an error before training starts
    base_location(p.model, base_dir)  # a missing or mismatched base is an error before anything starts
    started = time.time()
    ckpt_dir = Path(checkpoints)
    resume_from = prepare_checkpoints(ckpt_dir, params=to_dict(p), base=Path(base_dir) / "meta.json",
                                      train=train)
    if resume_from is None and is_main_process():
        shutil.rmtree(log_dir, ignore_errors=True)
    trainer = build_trainer(p, base_dir, rows, ckpt_dir, Path(log_dir), resume=resume_from is not None, val=val)
    result = trainer.train(resume_from_checkpoint=resume_from)
    save_adapter(trainer, out, ckpt_dir, to_dict(p.sft) | {"seed": p.seed, "model": to_dict(p.model)}, started,
                 result, resumed_from=resume_from)
