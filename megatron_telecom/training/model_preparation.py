"""What is done to the model between building and training, chosen once at build time.

``FullParameters`` (the default) trains and checkpoints every weight. ``LoraPreparation``
(``--lora-rank``) adds LoRA adapters (``models/lora.py``), freezes the rest, so megatron DDP and
the optimizer hold gradient buffers and state for the adapters alone, and makes checkpoints
adapter-only: they hold the adapters, their optimizer state and the train state, and record the
base checkpoint (with its identity) that they apply to. Loading such a checkpoint first loads that
base's weights, then the adapters; a base that changed, or another base than ``--load`` names, is
refused in one line. The trainer and ``training/checkpointing.py`` call only this interface.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from megatron_telecom.models.checkpoint_format import StoredCheckpoint, open_checkpoint
from megatron_telecom.models.options import LoraOptions

LORA_KEY = "lora"
"""common.pt entry of an adapter-only checkpoint: {"options": LoraOptions, "base": identity}."""


def base_identity(stored: StoredCheckpoint) -> dict[str, Any]:
    """The identity of a base checkpoint: its --save folder, iteration and common-state hash."""
    from megatron_telecom.training.stages.dpo import checkpoint_identity

    return {**checkpoint_identity(stored, seed=0), "root": str(stored.path.parent.resolve())}


def lora_record(stored: StoredCheckpoint) -> dict[str, Any] | None:
    """The LoRA record of an adapter-only checkpoint (None for any other checkpoint)."""
    return stored.common.get(LORA_KEY)


def recorded_base(stored: StoredCheckpoint, *, base: str | Path | None = None) -> StoredCheckpoint:
    """The base checkpoint an adapter checkpoint applies to (``base``: another copy of it), checked
    against the recorded identity; ValueError in one line when it is gone or not the same."""
    record = lora_record(stored)
    assert record is not None, stored.path
    wanted = record["base"]
    root = Path(base) if base is not None else Path(wanted["root"])
    try:
        found = open_checkpoint(root)
    except ValueError as err:
        raise ValueError(f"{stored.path} holds LoRA adapters of the base {wanted['root']}, which cannot be "
                         f"opened ({err}): give the base checkpoint") from None
    have = base_identity(found)
    if have["sha256"] != wanted["sha256"] or have["iteration"] != wanted["iteration"]:
        raise ValueError(f"wrong base: {stored.path} holds LoRA adapters trained on {wanted['path']} "
                         f"(iteration {wanted['iteration']}, sha256 {wanted['sha256'][:12]}), but {found.path} "
                         f"is another checkpoint (iteration {have['iteration']}, sha256 {have['sha256'][:12]})")
    return found


class FullParameters:
    """Full-parameter training: the model as built; every weight trains and is checkpointed."""

    def prepare(self, chunks: list, *, seed: int) -> None:
        """Change the built model chunks (GPTModels, before DDP) for training."""

    def saved(self, key: str) -> bool:
        """Whether a checkpoint of this run holds the model state entry ``key``."""
        return True

    def record(self) -> dict[str, Any] | None:
        """What a checkpoint of this run records about the preparation (common.pt)."""
        return None

    def base_of(self, stored: StoredCheckpoint, *, weights_only: bool) -> StoredCheckpoint | None:
        """The checkpoint whose weights load before ``stored``'s own (None: ``stored`` holds them all);
        ``weights_only``: the run takes ``stored``'s weights without its optimizer state."""
        if lora_record(stored) is not None:
            raise ValueError(f"{stored.path} holds LoRA adapters only: train on with the same --lora-* flags, "
                             "or export it merged (tools/convert_checkpoint.py lora-merge) and --load that")
        return None

    def loaded_from(self, stored: StoredCheckpoint, key: str) -> bool:
        """Whether model state entry ``key`` is read from ``stored``."""
        return True

    def after_load(self, model: list, *, resumed_adapters: bool) -> None:
        """Called once the weights are loaded (``resumed_adapters``: the adapters came from a checkpoint)."""


class LoraPreparation(FullParameters):
    """LoRA adapters on a frozen base; adapter-only checkpoints that name their base."""

    def __init__(self, options: LoraOptions, *, load: str | None) -> None:
        self.options, self.load = options, load
        self.base: dict[str, Any] | None = None
        """Identity of the base checkpoint, set when the run's weights are loaded."""

    def prepare(self, chunks: list, *, seed: int) -> None:
        from megatron_telecom.models.lora import add_lora_adapters

        for chunk in chunks:
            add_lora_adapters(chunk, self.options, seed=seed)

    def saved(self, key: str) -> bool:
        from megatron_telecom.models.lora import is_adapter_key

        return is_adapter_key(key)

    def record(self) -> dict[str, Any] | None:
        if self.base is None:  # --load was the still-empty --save folder: random weights, no base
            raise ValueError(f"--load {self.load} held no checkpoint, so the adapters have no base to "
                             "record: --load a base checkpoint (with --finetune)")
        return {"options": asdict(self.options), "base": self.base}

    def _expected_base(self) -> StoredCheckpoint | None:
        """The base that --load names: itself, or the base of the adapter checkpoint it is."""
        if not self.load:
            return None
        stored = open_checkpoint(self.load)
        return recorded_base(stored) if lora_record(stored) is not None else stored

    def base_of(self, stored: StoredCheckpoint, *, weights_only: bool) -> StoredCheckpoint | None:
        if lora_record(stored) is None:  # a base (converted or trained): its weights, fresh adapters
            if not weights_only:
                raise ValueError(f"{stored.path} is a full-parameter checkpoint: add --finetune to train "
                                 "LoRA adapters on its weights")
            self.base = base_identity(stored)
            return None
        base = recorded_base(stored)
        expected = self._expected_base()
        if expected is not None and base_identity(expected)["sha256"] != base_identity(base)["sha256"]:
            raise ValueError(f"wrong base: {stored.path} holds LoRA adapters trained on {base.path}, "
                             f"but --load {self.load} names the base {expected.path}")
        theirs = LoraOptions(**{**lora_record(stored)["options"],
                                "lora_target_modules": tuple(lora_record(stored)["options"]["lora_target_modules"])})
        if (theirs.lora_rank, theirs.adapted(), theirs.lora_variant) != (
                self.options.lora_rank, self.options.adapted(), self.options.lora_variant):
            raise ValueError(f"{stored.path} holds LoRA adapters of rank {theirs.lora_rank} ({theirs.lora_variant}) "
                             f"on {','.join(theirs.lora_target_modules)}: give the same --lora-rank, "
                             "--lora-variant and --lora-target-modules")
        self.base = base_identity(base)
        return base

    def loaded_from(self, stored: StoredCheckpoint, key: str) -> bool:
        adapter = self.saved(key)
        return adapter if lora_record(stored) is not None else not adapter

    def after_load(self, model: list, *, resumed_adapters: bool) -> None:
        if self.options.lora_init_adapter and not resumed_adapters:
            from megatron_telecom.convert.lora import load_peft_adapter

            load_peft_adapter(model, self.options.lora_init_adapter, self.options)


def build_preparation(options: LoraOptions, *, load: str | None) -> FullParameters:
    """The run's model preparation: LoRA with --lora-rank, else full-parameter training."""
    if not options.enabled:
        return FullParameters()
    if options.lora_rank is not None and not load:
        raise ValueError("--lora-rank trains adapters on a base model: give --load BASE_CHECKPOINT "
                         "(e.g. a tools/convert_checkpoint.py hf-to-mcore output) with --finetune")
    return LoraPreparation(options, load=load)
