"""prefix.py and the GRPO trainer that uses it (grpo.share_prompt_prefix): each distinct prompt runs once, and
what is computed stays TRL's (logits, log-probs, gradients, generated tokens, the step's loss)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fincorp.prefix import (GQA_SDPA, SharedPromptGenerate, completion_logits, distinct_prompts, use_gqa_sdpa)


def tiny_lora_model(seed: int = 0):
    """A random 2-layer Qwen3 with grouped key/value heads, and a LoRA on every projection whose B is not
    zero (PEFT's default init would make the adapter a no-op and hide a wrong gradient path)."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
                         attn_implementation="sdpa", pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = Qwen3ForCausalLM(config)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"], init_lora_weights=False)
    return get_peft_model(model, lora)


def left_padded_batch(group: int = 3):
    """Three prompts (two left-padded) x `group` completions each, rows of one prompt not adjacent, plus the
    completion tokens and their mask (one completion ends early)."""
    prompts = [[5, 6, 7, 8, 9, 10], [0, 0, 11, 12, 13, 14], [0, 0, 0, 15, 16, 17]]
    order = [i % len(prompts) for i in range(len(prompts) * group)]  # 0,1,2,0,1,2,...
    torch.manual_seed(1)
    completions = torch.randint(3, 50, (len(order), 4))
    ids = torch.cat([torch.tensor([prompts[i] for i in order]), completions], dim=1)
    mask = (ids != 0).long()
    mask[0, -1] = 0  # a completion shorter than the others: TRL masks the rest
    return ids, mask, 4


def test_distinct_prompts_maps_every_row_to_its_prompt():
    ids, mask, k = left_padded_batch()
    distinct, distinct_mask, inverse = distinct_prompts(ids[:, :-k], mask[:, :-k])
    assert distinct.shape[0] == 3
    assert torch.equal(distinct[inverse], ids[:, :-k]) and torch.equal(distinct_mask[inverse], mask[:, :-k])


def test_completion_logits_and_gradients_match_the_full_forward():
    """TRL's training forward is model(input_ids, attention_mask, logits_to_keep=k + 1).logits[:, :-1]: the
    shared-prompt path gives the same logits and the same LoRA gradients of a masked log-prob loss."""
    model = tiny_lora_model()
    model.train()
    ids, mask, k = left_padded_batch()

    def loss_and_grads(logits):
        logps = torch.log_softmax(logits, -1).gather(-1, ids[:, -k:, None]).squeeze(-1)
        loss = -(logps * mask[:, -k:]).sum()
        params = [p for n, p in model.named_parameters() if p.requires_grad]
        return logits.detach(), torch.autograd.grad(loss, params)

    full, full_grads = loss_and_grads(
        model(input_ids=ids, attention_mask=mask, logits_to_keep=k + 1, use_cache=False).logits[:, :-1])
    shared, shared_grads = loss_and_grads(completion_logits(model, ids, mask, k))
    assert shared.shape == full.shape == (ids.shape[0], k, 50)
    torch.testing.assert_close(shared, full, rtol=1e-5, atol=1e-5)
    assert len(full_grads) > 10 and all(g.abs().sum() > 0 for g in full_grads)
    for a, b in zip(shared_grads, full_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("do_sample", [False, True])
def test_shared_prompt_generate_gives_generates_tokens(do_sample):
    """Greedy and sampled (same seed: the prefill draws no random numbers) completions are token for token
    those of the model's own generate on the repeated prompts."""
    from transformers import GenerationConfig

    model = tiny_lora_model()
    ids, mask, k = left_padded_batch()
    prompt, prompt_mask = ids[:, :-k], mask[:, :-k]
    config = GenerationConfig(max_new_tokens=6, do_sample=do_sample, temperature=1.5 if do_sample else None,
                              top_k=None, top_p=None, pad_token_id=0, eos_token_id=2)
    outputs = []
    for generate in (model.generate, SharedPromptGenerate(model, model.generate)):
        torch.manual_seed(7)
        with torch.no_grad():
            outputs.append(generate(input_ids=prompt, attention_mask=prompt_mask, generation_config=config))
    assert torch.equal(outputs[0], outputs[1])
    assert outputs[0].shape[1] > prompt.shape[1]


def test_shared_prompt_generate_passes_batches_without_repeats_through():
    calls = []

    def generate(*args, **kwargs):
        calls.append(kwargs)
        return "plain"

    shared = SharedPromptGenerate(model=None, generate=generate)  # the model is never called
    ids = torch.tensor([[5, 6, 7], [0, 8, 9]])
    assert shared(input_ids=ids, attention_mask=(ids != 0).long()) == "plain"
    assert "past_key_values" not in calls[0]


def test_gqa_sdpa_forward_is_bit_identical_to_transformers_sdpa():
    model = tiny_lora_model()
    ids, mask, _ = left_padded_batch()
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        use_gqa_sdpa(model)
        assert model.config._attn_implementation == GQA_SDPA
        after = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(before, after)


def test_shuffle_groups_keeps_each_prompt_group_whole():
    from fincorp.grpo import shuffle_groups

    torch.manual_seed(3)
    rows = torch.arange(24)
    batch = {"ids": rows.view(24, 1) * 10, "names": [f"r{i}" for i in range(24)], "scalar": torch.tensor(5),
             "none": None}
    out = shuffle_groups(batch, 4)
    groups = out["ids"].view(6, 4) // 10
    assert all(torch.equal(g, torch.arange(g[0], g[0] + 4)) and g[0] % 4 == 0 for g in groups)
    assert sorted(out["ids"].flatten().tolist()) == (rows * 10).tolist()
    assert out["names"] == [f"r{int(i) // 10}" for i in out["ids"].flatten()]
    assert out["scalar"] == 5 and out["none"] is None
    assert not torch.equal(out["ids"].flatten(), rows * 10)  # seed 3 does permute


@pytest.mark.slow
def test_a_shared_prompt_grpo_step_equals_trls(tiny_workspace, tmp_path, monkeypatch):
    """One GRPO optimizer step with grpo.share_prompt_prefix and one without, from the same seed: the same
    completions (the shuffle comes after generation), the same loss and the same updated LoRA weights, up to
    float rounding; and the shared trainer really ran the shared paths."""
    from fincorp import prefix
    from fincorp.grpo import build_trainer
    from fincorp.params import load_params
    from fincorp.split import read_applications

    monkeypatch.chdir(tiny_workspace)
    p = load_params("params.yaml")
    rows = read_applications("data/train.jsonl")[:32]
    calls = {"logits": 0}
    real = prefix.completion_logits

    def counting(*a, **k):
        calls["logits"] += 1
        return real(*a, **k)

    monkeypatch.setattr("fincorp.grpo.completion_logits", counting)
    runs = {}
    for share in (False, True):
        q = dataclasses.replace(p, grpo=dataclasses.replace(p.grpo, share_prompt_prefix=share, temperature=0.7))
        trainer, reward = build_trainer(q, "models/base", rows, tmp_path / f"ckpt-{share}", None)
        trainer.args.max_steps, trainer.args.logging_steps, trainer.args.save_steps = 1, 1, 10**9
        assert isinstance(trainer.model.generate, SharedPromptGenerate) == share
        trainer.train()
        loss = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
        runs[share] = (loss, reward.window.copy(),
                       {n: t.detach().clone() for n, t in trainer.model.named_parameters() if "lora_" in n})
    assert calls["logits"] == p.grpo.gradient_accumulation_steps
    assert runs[True][1] == runs[False][1]  # the same sampled labels
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-4, abs=1e-6)
    for name, weight in runs[False][2].items():
        torch.testing.assert_close(runs[True][2][name], weight, rtol=1e-4, atol=1e-6)
