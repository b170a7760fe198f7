"""Stage `hybrid`: GRPO starting from the SFT adapter ("SFT to teach, RL to refine") -> models/hybrid/.

    fincorp hybrid              (or: dvc repro hybrid)

The article recommends this pipeline but never ran it. Same recipe as stage grpo (the `grpo:` params
section: optimiser, group size, temperature, reward preset), one difference: instead of a fresh LoRA
adapter on the base, it keeps training the SFT adapter (models/sft, loaded trainable), so the result is
again one adapter on the base and stage eval scores it like any other. With grpo.beta > 0, TRL's KL
reference is a frozen copy of that SFT adapter. Logs to logs/hybrid/, checkpoints to checkpoints/hybrid/.
"""

from __future__ import annotations

from fincorp import grpo


def run(params_path: str, base_dir: str, train: str, out: str, log_dir: str, val: str, init_adapter: str,
        checkpoints: str = "checkpoints/hybrid") -> None:
    grpo.run(params_path, base_dir, train, out, log_dir, val, checkpoints=checkpoints, init_adapter=init_adapter)
