"""Shared-prompt forward passes for GRPO (grpo.share_prompt_prefix).

GRPO samples grpo.num_generations completions of every prompt, and TRL runs the prompt through the model
once per completion: when generating (a prefill of 64 rows for 8 distinct prompts) and again in the loss
(every micro-batch row is prompt + completion, the prompt ~90% of its tokens here). Both functions below run
each distinct prompt once, copy its key/value cache to the rows that share it, and run only the completion
tokens on top. What is computed is the same function (same positions, masks, logits, log-probs and
gradients: the cache copy is an index that autograd sums back); float results differ from TRL's full-row
pass in the last bits, because the kernels see other shapes.

Neither works with gradient checkpointing (the model then returns no cache in training mode): params.py
refuses that combination.
"""

from __future__ import annotations

from typing import Any


def distinct_prompts(ids: Any, mask: Any) -> tuple[Any, Any, Any]:
    """(distinct ids, their masks, index of each row's distinct prompt): rows equal in ids and mask share one."""
    import torch

    width = ids.size(1)
    distinct, inverse = torch.unique(torch.cat([ids, mask.to(ids.dtype)], dim=1), dim=0, return_inverse=True)
    return distinct[:, :width], distinct[:, width:].to(mask.dtype), inverse


def completion_logits(model: Any, input_ids: Any, attention_mask: Any, logits_to_keep: int) -> Any:
    """Logits predicting the last `logits_to_keep` tokens of each row, (B, logits_to_keep, vocab): what TRL's
    `model(input_ids, attention_mask, logits_to_keep=k + 1).logits[:, :-1]` gives, with each distinct prompt
    (the first width - k columns) run once. Positions follow TRL's training forward (0..L-1 per row, from the
    cache position); gradients flow through both passes."""
    width = input_ids.size(1) - logits_to_keep
    ids, mask, inverse = distinct_prompts(input_ids[:, :width], attention_mask[:, :width])
    return logits_on_shared_prompts(model, ids, mask, inverse, input_ids[:, width:], attention_mask)


def logits_on_shared_prompts(model: Any, prompt_ids: Any, prompt_mask: Any, inverse: Any, completion_ids: Any,
                             attention_mask: Any) -> Any:
    """completion_logits once the distinct prompts are known: run them, copy their cache to the rows
    (`inverse`: each row's prompt), run the completions (B, k) on it (`attention_mask`: the rows' prompt +
    completion masks). preflight plans the same passes on fake tensors."""
    import torch

    prompt = model(input_ids=prompt_ids, attention_mask=prompt_mask, use_cache=True, logits_to_keep=1)
    cache = prompt.past_key_values
    cache.batch_select_indices(inverse)
    rest = model(input_ids=completion_ids, attention_mask=attention_mask, past_key_values=cache, use_cache=True,
                 logits_to_keep=completion_ids.size(1))
    return torch.cat([prompt.logits[inverse, -1:], rest.logits[:, :-1]], dim=1)


def prefill_shared_prompts(model: Any, prompt_ids: Any, prompt_mask: Any, inverse: Any) -> Any:
    """The key/value cache of each row's prompt but its last token, with each distinct prompt run once (no
    gradients): what generate's own prefill would hold after its first step, minus that step. Positions come
    from the mask, as generate computes them. None when the model returns no cache."""
    import torch

    positions = (prompt_mask.long().cumsum(-1) - 1).masked_fill(prompt_mask == 0, 0)
    with torch.no_grad():
        out = model(input_ids=prompt_ids[:, :-1], attention_mask=prompt_mask[:, :-1], position_ids=positions[:, :-1],
                    use_cache=True, logits_to_keep=1)
    if out.past_key_values is not None:
        out.past_key_values.batch_select_indices(inverse)
    return out.past_key_values


class SharedPromptGenerate:
    """A model's `generate` that prefills each distinct prompt once and copies its cache to the rows that repeat
    it (TRL's batch holds every prompt num_generations times); then the model's own generate samples from
    there, with the same positions (from the attention mask, as generate computes them) and the same random
    draws. Batches without repeats, or calls it cannot handle, go to `generate` unchanged."""

    def __init__(self, model: Any, generate: Any):
        self.model, self.generate = model, generate

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if args or ids is None or mask is None or kwargs.get("past_key_values") is not None or ids.size(1) < 2:
            return self.generate(*args, **kwargs)
        distinct, distinct_mask, inverse = distinct_prompts(ids, mask)
        if distinct.size(0) == ids.size(0):
            return self.generate(*args, **kwargs)
        # The last prompt token is left to generate, as in its own first step.
        cache = prefill_shared_prompts(self.model, distinct, distinct_mask, inverse)
        if cache is None:  # no cache (gradient checkpointing in training mode): nothing to share
            return self.generate(*args, **kwargs)
        return self.generate(*args, **kwargs, past_key_values=cache)


GQA_SDPA = "sdpa_gqa"


def gqa_sdpa_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                     scaling: float | None = None, is_causal: bool | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' sdpa attention without its copies of the key/value heads: on CPU, with a padding mask,
    transformers repeats every key/value head num_attention_heads / num_key_value_heads times (a copy of the
    whole cache at every decode step) where torch's kernel takes the grouped heads as they are (enable_gqa).
    The forward result is bit-identical; gradients of keys and values sum the head groups in another order."""
    import torch

    is_causal = query.shape[2] > 1 and attention_mask is None and (
        is_causal if is_causal is not None else getattr(module, "is_causal", True))
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=is_causal,
        enable_gqa=key.shape[1] != query.shape[1])
    return out.transpose(1, 2).contiguous(), None


def use_gqa_sdpa(model: Any) -> None:
    """Switch a loaded transformers model (or PEFT model) to gqa_sdpa_forward, registered as GQA_SDPA."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(GQA_SDPA, gqa_sdpa_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(GQA_SDPA, sdpa_mask)
    model.config._attn_implementation = GQA_SDPA
