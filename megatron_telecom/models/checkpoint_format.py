"""The on-disk checkpoint format (Megatron-LM's layout), readable without importing megatron.

A checkpoint root (``--save``) holds ``latest_checkpointed_iteration.txt`` (an iteration, or
``release`` for a converted model) and one folder per checkpoint: ``iter_0000100/`` or
``release/``, each with torch_dist shards, ``metadata.json`` and ``common.pt``, the non-sharded
part. ``common.pt`` keeps Megatron-LM's keys: ``checkpoint_version``, ``iteration``,
``num_floating_point_operations_so_far`` and ``args`` (the run's flags; the ones read back are
``CheckpointArgs``), plus ours: ``model_config`` (the ModelPreset, so a load adopts the model),
``conversion`` (provenance of a converted checkpoint) and ``tokenizer`` (the tokenizer the
embedding rows belong to, checked on load: ``tokenizer_record.py``). The trainer (``training/
checkpointing.py``) and the converters (``convert/``) write and read it only through here.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from megatron_telecom.atomic import atomic_write_text
from megatron_telecom.models.presets import ModelPreset, preset_from_dict

TRACKER_FILENAME = "latest_checkpointed_iteration.txt"
COMMON_FILENAME = "common.pt"  # dist_checkpointing's non-sharded part
METADATA_FILENAME = "metadata.json"
CHECKPOINT_VERSION = 3.0
ARGS_KEY = "args"
MODEL_CONFIG_KEY = "model_config"  # the ModelPreset a checkpoint was built with, as a dict
CONVERSION_KEY = "conversion"  # provenance of a converted checkpoint
TOKENIZER_DIRNAME = "tokenizer"  # a converted checkpoint's tokenizer files travel here
TOKENIZER_KEY = "tokenizer"  # the tokenizer the embedding rows belong to (models/tokenizer_record.py)


@dataclass(frozen=True, kw_only=True)
class CheckpointArgs:
    """The keys of ``common.pt``'s ``args`` that are read back (Megatron-LM's names).

    A missing key takes the default: an older or Megatron-LM checkpoint without the
    ``no_save_*`` keys holds those parts; one without parallel sizes was saved at TP=PP=1.
    """

    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    padded_vocab_size: int | None = None
    make_vocab_size_divisible_by: int | None = None
    tokenizer_type: str | None = None
    tokenizer_model: str | None = None
    consumed_train_samples: int = 0
    no_save_optim: bool = False
    no_save_rng: bool = False
    seq_length: int | None = None
    data_path: list[str] | None = None
    data_recipe: str | None = None
    log_metrics_file: str | None = None
    load: str | None = None
    finetune: bool = False
    stage: str = "pretrain"
    sft_data_path: str | None = None
    dpo_data_path: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any] | argparse.Namespace | None) -> CheckpointArgs:
        """The known keys of an ``args`` record (ours a dict, Megatron-LM's a Namespace)."""
        record = vars(record) if isinstance(record, argparse.Namespace) else dict(record or {})
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known and v is not None})

    @property
    def parallel_sizes(self) -> tuple[int, int]:
        """(TP, PP) the checkpoint was saved at."""
        return int(self.tensor_model_parallel_size), int(self.pipeline_model_parallel_size)


def common_state(*, args: CheckpointArgs, run_flags: dict[str, Any] | None = None,
                 iteration: int = 0, num_floating_point_operations_so_far: float | None = None,
                 model_config: ModelPreset | None = None,
                 conversion: dict[str, Any] | None = None,
                 tokenizer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The non-sharded entries of a checkpoint, in Megatron-LM's places.

    ``args`` holds the run's flags (``run_flags``, all of them for the trainer) with the typed
    record on top; unset (None) typed fields are left out. ``tokenizer``: the record of the
    tokenizer the embedding rows belong to (``models/tokenizer_record.py``).
    """
    typed = {k: v for k, v in asdict(args).items() if v is not None}
    state: dict[str, Any] = {"checkpoint_version": CHECKPOINT_VERSION, "iteration": iteration}
    if num_floating_point_operations_so_far is not None:
        state["num_floating_point_operations_so_far"] = num_floating_point_operations_so_far
    state[ARGS_KEY] = {**(run_flags or {}), **typed}
    if model_config is not None:
        state[MODEL_CONFIG_KEY] = asdict(model_config)
    if conversion is not None:
        state[CONVERSION_KEY] = conversion
    if tokenizer is not None:
        state[TOKENIZER_KEY] = tokenizer
    return state


def checkpoint_dir(root: str | Path, iteration: int | None) -> Path:
    """``root/iter_0000100`` (Megatron-LM's name), or ``root/release`` for iteration None."""
    return Path(root) / ("release" if iteration is None else f"iter_{iteration:07d}")


def read_tracker(root: str | Path) -> int | None | str:
    """The latest iteration in ``root``; "release" for a converted model; None when absent."""
    path = Path(root) / TRACKER_FILENAME
    if not path.is_file():
        return None
    text = path.read_text().strip()
    if text == "release":
        return "release"
    try:
        return int(text)
    except ValueError as err:
        raise ValueError(f"{path}: expected an iteration number or 'release', got {text!r}") from err


def write_tracker(root: str | Path, iteration: int | str) -> None:
    """Atomically point the tracker at ``iteration`` or "release"."""
    atomic_write_text(Path(root) / TRACKER_FILENAME, f"{iteration}\n")


def latest_checkpoint(root: str | Path) -> tuple[Path, bool]:
    """(folder of the tracked checkpoint, is it a "release"); ValueError without a tracker."""
    tracked = read_tracker(root)
    if tracked is None:
        raise ValueError(f"--load {root} has no {TRACKER_FILENAME}: point --load at a folder "
                         "written by --save (or by the HF -> Megatron conversion), or drop --load "
                         "to train from random initialisation")
    release = tracked == "release"
    path = checkpoint_dir(root, None if release else tracked)
    if not path.is_dir():
        raise ValueError(f"{root}/{TRACKER_FILENAME} names {path.name}, which does not exist")
    return path, release


def read_common_state(path: str | Path) -> dict[str, Any]:
    """The non-sharded part of checkpoint folder ``path`` (``torch.load(weights_only=True)``)."""
    common = Path(path) / COMMON_FILENAME
    if not common.is_file():
        raise ValueError(f"{path} has no {COMMON_FILENAME}: not a torch_dist checkpoint folder")
    try:
        state = torch.load(common, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses pickled objects (e.g. Megatron-LM's args)
        raise ValueError(f"{common} cannot be read safely ({type(err).__name__}: "
                         f"{str(err).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{common}: expected a dict, got {type(state).__name__}")
    return state


def recorded_model(common: dict[str, Any], *, where: str) -> ModelPreset | None:
    """The model config recorded in a common state (None: not recorded)."""
    record = common.get(MODEL_CONFIG_KEY)
    return None if record is None else preset_from_dict(record, where=where)


@dataclass(frozen=True, kw_only=True)
class StoredCheckpoint:
    """One checkpoint folder and its common state, read once."""

    path: Path
    """The ``iter_*`` or ``release`` folder."""
    release: bool
    """A converted model (weights only; training starts at iteration 0)."""
    common: dict[str, Any]

    @property
    def args(self) -> CheckpointArgs:
        return CheckpointArgs.from_record(self.common.get(ARGS_KEY))

    @property
    def model(self) -> ModelPreset | None:
        return recorded_model(self.common, where=str(self.path))


def open_checkpoint(root: str | Path) -> StoredCheckpoint:
    """The tracked checkpoint under ``root`` with its common state (ValueError without one)."""
    path, release = latest_checkpoint(root)
    return StoredCheckpoint(path=path, release=release, common=read_common_state(path))


def is_megatron_checkpoint(path: str | Path) -> bool:
    """True for a --save folder (with a tracker) or one of its ``iter_*``/``release`` folders."""
    path = Path(path)
    return (path / TRACKER_FILENAME).is_file() or (
        (path / METADATA_FILENAME).is_file() and (path / COMMON_FILENAME).is_file())


def checkpoint_folder(load: str | Path) -> tuple[Path, Path]:
    """(root --save folder, the checkpoint folder to read) for a root or an ``iter_*`` folder."""
    load = Path(load)
    if (load / TRACKER_FILENAME).is_file():
        return load, latest_checkpoint(load)[0]
    if is_megatron_checkpoint(load):
        return load.parent, load
    raise ValueError(f"{load} is not a megatron checkpoint: give a --save folder (with "
                     f"{TRACKER_FILENAME}) or one of its iter_* folders")
