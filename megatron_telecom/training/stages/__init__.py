"""Training stages behind one interface: the trainer picks one by ``--stage`` and never names it again.

A stage is one module of this package and one entry of ``STAGES``; the module's ``STAGE`` is a
``Stage`` subclass that gives:
- ``validate(cfg)``: the checks of its own flags (no process group), and ``own_flags``, the flags
  only it reads (another stage refuses them);
- ``needs``: what the model needs at build time (``ModelNeeds``: per-token loss normalisation,
  per-document positions of packed sequences, chosen with the backends);
- ``checkpoint_to_load(resumed)``: which checkpoint the run starts from;
- ``datasets(...)``: the train dataset and the validation datasets by name;
- ``forward_step(...)``: megatron's ``forward_step_func`` with the stage's loss, and
  ``metric_names``, what that loss reports per microbatch;
- ``prepare_batches(batches, ...)``: a step over a global batch before the schedule runs it;
- ``one_off_pass(run)``: an optional pass before training that is all this process does (DPO's
  reference log-probs); False when there is none.
The pretraining loop (``training/trainer.py``) and ``pretrain.py`` call only these. The stage
modules import megatron lazily or through the trainer's modules, so parsing flags stays light:
``stage_class`` imports one stage module only when its flags are checked or it runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from megatron_telecom.models.checkpoint_format import StoredCheckpoint
    from megatron_telecom.runtime.parallel_layout import ParallelLayout
    from megatron_telecom.training.checkpointing import CheckpointSource
    from megatron_telecom.training.config import PretrainConfig

STAGES: dict[str, str] = {
    "pretrain": "megatron_telecom.training.stages.pretrain",
    "sft": "megatron_telecom.training.stages.sft",
    "dpo": "megatron_telecom.training.stages.dpo",
}
"""--stage name -> the module whose ``STAGE`` is its class. Adding a stage: a module and a line here."""
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)

@dataclass(frozen=True, kw_only=True)
class ModelNeeds:
    """What a stage needs of the model when it is built."""

    per_token_loss: bool = False
    """The loss function returns (sum, count): megatron-core divides gradients by the global count."""
    packed_documents: bool = False
    """Samples pack documents whose positions restart at 0 (RoPE follows ``position_ids``)."""


class Stage:
    """Defaults of every stage: next-token loss reported as "lm loss", no one-off pass."""

    name: ClassVar[str]
    needs: ClassVar[ModelNeeds] = ModelNeeds()
    metric_names: ClassVar[tuple[str, ...]] = ("lm loss",)
    own_flags: ClassVar[tuple[str, ...]] = ()
    """Dotted config fields (``data.sft_data_path``) that only this stage reads."""

    def __init__(self, cfg: PretrainConfig) -> None:
        self.cfg = cfg

    @classmethod
    def validate(cls, cfg: PretrainConfig) -> None:
        """Checks of this stage's flags; ValueError says what to change."""

    def checkpoint_to_load(self, resumed: CheckpointSource | None) -> CheckpointSource | None:
        """The checkpoint to start from, given the resume/--load rule's choice."""
        return resumed

    def datasets(self, *, layout: ParallelLayout, tokenizer: Any, seq_length: int,
                 stored: StoredCheckpoint | None) -> tuple[Any, dict[str, Any]]:
        """(train dataset of train-iters x global-batch samples, {name: validation dataset})."""
        raise NotImplementedError

    def forward_step(self, *, use_transformer_engine: bool) -> Callable[[Any, Any], tuple[Any, Callable]]:
        """megatron's forward_step_func for this stage."""
        raise NotImplementedError

    def prepare_batches(self, batches: list[dict], *, global_batch_size: int) -> None:
        """Called with a global batch's microbatches before the schedule runs them."""

    def one_off_pass(self, run: Any) -> bool:
        """Run the stage's pass before training if the flags ask for it; True: this process is done."""
        return False


def stage_class(name: str) -> type[Stage]:
    """The ``Stage`` subclass registered as ``name``."""
    if name not in STAGES:
        raise ValueError(f"--stage {name!r}: choose one of {', '.join(STAGE_NAMES)}")
    return importlib.import_module(STAGES[name]).STAGE


def validate_stage_flags(cfg: PretrainConfig) -> None:
    """The chosen stage's checks, and no flag that only another stage reads."""
    chosen = stage_class(cfg.training.stage)
    chosen.validate(cfg)
    for name in STAGE_NAMES:
        if name == chosen.name:
            continue
        for field in stage_class(name).own_flags:
            section, key = field.split(".")
            if getattr(getattr(cfg, section), key):
                raise ValueError(f"--{key.replace('_', '-')} is read by --stage {name} only")


def build_stage(cfg: PretrainConfig) -> Stage:
    """The stage of ``--stage``, ready for the trainer."""
    return stage_class(cfg.training.stage)(cfg)
