"""Stage `base`: the model SFT and GRPO start from -> models/base/.

    fincorp base                (or: dvc repro base)

model.source: local (profile cpu) — nothing can be downloaded, so the stage builds a stand-in for a
pretrained LLM, offline:
  1. a byte-level BPE tokenizer trained on the pipeline's own text, one token per digit, with a
     Qwen-style chat template (<|im_start|>role ... <|im_end|>, {% generation %} markers);
  2. a tiny Qwen3ForCausalLM (sizes under base:), randomly initialised from `seed`;
  3. full fine-tuning with TRL's SFTTrainer (completion-only loss) on a "general credit knowledge"
     corpus: applications from the same generator with a different seed (never the train/test rows),
     labelled by rules.prior_decide — reject dangerous burn, reward exceptional loyalty, else a standard
     loan; never MANUAL_REVIEW. Balanced across its three labels. This is the CPU stand-in for an
     LLM's world knowledge: it knows the output format and ordinary credit intuition, not FinCorp's
     thresholds and not the hidden rule. base.num_train_epochs (fractions allowed), base.prior.label_noise
     and base.prior.manual_review_share make that prior weaker, for the prior-strength study;
     base.prior.vip_manual_review_share gives it a weak version of the hidden rule (the control study).

model.source: hub (GPU profiles) — resolve `model.name` at `model.revision` through the HF cache
(or a local folder), check that config and tokenizer load, and write only meta.json (resolved commit,
dtype, parameter count). The weights stay in the HF cache, not in DVC's.

meta.json is a DVC output and holds only what code and params determine; the run's wall time, peak
memory and hardware go to `telemetry_out` (telemetry/base.json from the CLI; git-ignored, not a DVC output).
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fincorp.generate import ALL_BACKGROUNDS, draw_application, draw_balanced
from fincorp.jsonl import write_json
from fincorp.model import versions, write_telemetry
from fincorp.params import Params, load_params, to_dict
from fincorp.prompt import SYSTEM_PROMPT, answer_text, prompt_messages, render_application
from fincorp.rules import (A_PLUS_TIER, LABELS, MANUAL_REVIEW, REJECT_RISK, STANDARD_LOAN, VIP_BACKGROUNDS,
                           prior_decide)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen's ChatML layout. {% generation %} marks the assistant's tokens so that
# return_assistant_tokens_mask / assistant_only_loss work (Qwen3's stock template lacks it).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}{{- message['content'] + '<|im_end|>' -}}{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def prior_corpus(n: int, seed: int, near_share: float, reject_burn_pct: float, a_plus_nps: int,
                 label_noise: float = 0.0, manual_review_share: float = 0.0,
                 vip_manual_review_share: float = 0.0) -> list[dict]:
    """n applications labelled by the general-credit prior, n/3 per prior label; pure given the seed.

    Founders are drawn from every background, VIPs included: the prior sees Ex-Google founders and
    judges them on their financials, as a pretrained model would.

    The prior-strength knobs weaken it, row by row, from a second RNG stream (so 0/0 gives exactly the
    clean corpus): with probability `manual_review_share` a row is relabelled MANUAL_REVIEW (a prior
    that sometimes escalates, for any founder), else with probability `label_noise` it gets a uniformly
    random label among the four. Either way the row keeps its application: only the label lies.

    `vip_manual_review_share` (the positive control for GRPO): each row with a VIP founder (Ex-Google,
    Ex-Facebook) is relabelled MANUAL_REVIEW with this probability, from a third RNG stream that draws
    for VIP rows only (0 gives exactly the corpus without it). That is the hidden rule's right
    association, made weak: a base that sometimes escalates VIPs and no one else.
    """
    if n <= 0 or n % 3:
        raise ValueError(f"n must be a positive multiple of 3, got {n}")
    rng = random.Random(seed)
    rows = draw_balanced(
        rng,
        {label: n // 3 for label in (REJECT_RISK, A_PLUS_TIER, STANDARD_LOAN)},
        lambda r: draw_application(r, r.choice(ALL_BACKGROUNDS), near_share),
        lambda app: prior_decide(app, reject_burn_pct, a_plus_nps),
    )
    rng.shuffle(rows)
    noise = random.Random(f"prior-noise-{seed}")
    for row in rows:
        u = noise.random()
        if u < manual_review_share:
            row["label"] = MANUAL_REVIEW
        elif u < manual_review_share + label_noise:
            row["label"] = noise.choice(LABELS)
    vip = random.Random(f"prior-vip-{seed}")
    for row in rows:
        if row["founder_background"] in VIP_BACKGROUNDS and vip.random() < vip_manual_review_share:
            row["label"] = MANUAL_REVIEW
    return [{**row, "id": f"PRE-{i:05d}"} for i, row in enumerate(rows, start=1)]


def tokenizer_corpus(burn_display: str) -> list[str]:
    """Text the BPE learns its merges from: the system prompt, labels, answers, field names."""
    rng = random.Random(0)
    texts = [SYSTEM_PROMPT, *LABELS, *(answer_text(label) for label in LABELS)]
    for founder in ALL_BACKGROUNDS:
        texts.append(render_application(draw_application(rng, founder, 0.25), burn_display))
    return texts * 20


def build_tokenizer(vocab_size: int, burn_display: str):
    """Byte-level BPE with one token per digit, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Digits split first so numbers are read digit by digit (a tiny model compares them far better).
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(burn_display), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_input_names=["input_ids", "attention_mask"],
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_local(p: Params, out: Path, work: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import Qwen3Config, Qwen3ForCausalLM, set_seed
    from trl import SFTConfig, SFTTrainer

    b = p.base
    set_seed(b.seed)
    tokenizer = build_tokenizer(b.vocab_size, p.prompt.burn_display)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=b.hidden_size,
        intermediate_size=b.intermediate_size,
        num_hidden_layers=b.num_hidden_layers,
        num_attention_heads=b.num_attention_heads,
        num_key_value_heads=b.num_key_value_heads,
        head_dim=b.head_dim,
        max_position_embeddings=b.max_length,
        tie_word_embeddings=b.tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(b.seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    corpus = prior_corpus(b.prior.n, b.prior.seed, p.generate.near_threshold_share,
                          b.prior.reject_burn_pct, b.prior.a_plus_nps, b.prior.label_noise,
                          b.prior.manual_review_share, b.prior.vip_manual_review_share)
    dataset = Dataset.from_list([
        {"prompt": prompt_messages(row, p.prompt.burn_display),
         "completion": [{"role": "assistant", "content": answer_text(row["label"])}]}
        for row in corpus
    ])
    args = SFTConfig(
        output_dir=str(work),
        learning_rate=b.lr,
        num_train_epochs=b.num_train_epochs,
        per_device_train_batch_size=b.per_device_train_batch_size,
        gradient_accumulation_steps=b.gradient_accumulation_steps,
        lr_scheduler_type=b.lr_scheduler_type,
        warmup_steps=b.warmup_steps,
        max_length=b.max_length,
        completion_only_loss=True,
        seed=b.seed,
        data_seed=b.seed,
        save_strategy="no",
        report_to="none",
        logging_steps=20,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not sys.stderr.isatty(),  # a progress bar on a terminal, log lines elsewhere
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    result = trainer.train()
    trainer.model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {
        "num_parameters": sum(t.numel() for t in model.parameters()),
        "pretrain_rows": len(corpus),
        "pretrain_loss": round(result.training_loss, 6),
        "pretrain_steps": result.global_step,
        "vocab_size": len(tokenizer),
    }


def resolve_hub(p: Params) -> dict[str, Any]:
    """Resolve a hub id (through the HF cache) or a local folder; load config and tokenizer to check them."""
    from transformers import AutoConfig, AutoTokenizer

    m = p.model
    folder = Path(m.name)
    if folder.is_dir():
        path = folder.resolve()
        # An HF-cache snapshot folder is named after its commit; anything else cannot prove a revision.
        commit = path.name if path.parent.name == "snapshots" else ""
        if m.revision and m.revision != commit:
            raise FileNotFoundError(
                f"model.revision {m.revision!r} does not match the local folder {m.name} "
                f"({'commit ' + commit if commit else 'not an HF cache snapshot, so it has no revision'}); "
                f"set model.revision to {commit!r}"
            )
    elif "/" in m.name and not m.name.startswith((".", "/")):
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(
            m.name, revision=m.revision or None,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "*.tiktoken"],
        ))
        commit = path.name
    else:
        raise FileNotFoundError(f"model.name {m.name!r}: no such folder, and not a hub id (owner/name)")
    if not any(path.glob("*.safetensors")):
        raise FileNotFoundError(f"{path}: no *.safetensors weights (only safetensors are loaded)")
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():  # count parameters without loading 28 GB
        n_params = sum(t.numel() for t in AutoModelForCausalLM.from_config(config).parameters())
    return {"path": str(path), "resolved_commit": commit, "num_parameters": n_params,
            "architecture": (config.architectures or ["?"])[0]}


def run(params_path: str, out: str, telemetry_out: str | None = None) -> None:
    p = load_params(params_path)
    out_dir = Path(out)
    start = time.time()
    # Build into a temp folder and move it into place at the end: an interrupted run leaves nothing
    # that DVC could mistake for an output.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".base-", dir=out_dir.parent))
    try:
        if p.model.source == "local":
            with tempfile.TemporaryDirectory(prefix="fincorp-base-") as work:
                info = build_local(p, tmp, Path(work))
        else:
            info = resolve_hub(p)
        write_json(tmp / "meta.json", {
            "source": p.model.source,
            "name": p.model.name,
            "revision": p.model.revision,
            "dtype": p.model.dtype,
            **info,
            "params": to_dict(p.base) if p.model.source == "local" else to_dict(p.model),
            "seed": p.base.seed,
            "versions": versions(),
        })
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if telemetry_out is not None:
        write_telemetry(telemetry_out, "base", start)
