"""Run as a script by tests/test_lora_smollm2.py: our megatron model's logits with a checkpoint's adapters.

``python tests/_lora_probe.py OUT.pt CHECKPOINT TOKENS.json`` loads the adapter checkpoint and its
recorded base into the unsplit megatron-core model (adapters live, not merged) and saves the fp32
logits of the token rows, the padded vocabulary cut off.
"""

from __future__ import annotations

import json
import sys

import torch


def main() -> None:
    from megatron_telecom.convert.lora import _unsplit_with_adapters, options_of
    from megatron_telecom.convert.mcore_to_hf import read_checkpoint_model
    from megatron_telecom.convert.megatron_model import single_process_megatron
    from megatron_telecom.models.checkpoint_format import checkpoint_folder
    from megatron_telecom.training.model_preparation import recorded_base

    out, load, tokens_path = sys.argv[1:4]
    _, folder = checkpoint_folder(load)
    preset, padded, stored = read_checkpoint_model(folder)
    tokens = torch.tensor(json.loads(open(tokens_path).read()))
    with single_process_megatron(), torch.no_grad():
        model = _unsplit_with_adapters(stored, preset, padded, options_of(stored), base=recorded_base(stored))
        positions = torch.arange(tokens.shape[1]).expand_as(tokens)
        logits = model(tokens, positions, None).float()[..., : preset.vocab_size]
    torch.save(logits, out)


if __name__ == "__main__":
    main()
