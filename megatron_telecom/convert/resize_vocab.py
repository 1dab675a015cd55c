"""A megatron checkpoint resized for an extended tokenizer: new embedding (and output) rows.

The new tokenizer keeps the old ids ``0..V_old-1`` and appends ``V_old..V_new-1`` (a folder
``build_tokenizer`` loads with the base's ``--tokenizer-type``; ``tools/extend_tokenizer.py``
writes one). Each new row starts as the mean of the rows of the old tokenizer's pieces of the
new token's text (LLaMA-Factory's and torchtune's rule), in the input embedding and, when untied,
the output layer, each from its own rows. ``noisy-mean`` adds Gaussian noise, seeded, scaled per
dimension by the standard deviation of the old rows times ``noise_scale``, so that tokens with
the same pieces start apart. The vocabulary is padded for the target TP as Megatron-LM pads
(zero rows, as ``hf-to-mcore`` writes them); every other tensor is copied unchanged.

One process reads any TP/PP layout and streams, as the converters do (``convert/dist_ckpt.py``):
one tensor in memory at a time, the embedding twice (old rows read, new rows written). The
output is a ``release`` checkpoint in a staged folder renamed into place, recording the new
tokenizer (``models/tokenizer_record.py``, so the old one is refused), with the new tokenizer's
files in ``tokenizer/`` for training and ``mcore-to-hf``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from megatron_telecom.atomic import staged_folder
from megatron_telecom.convert import mapping
from megatron_telecom.convert.cli import InitMethod
from megatron_telecom.convert.hf_io import TOKENIZER_FILES, copy_tokenizer_files
from megatron_telecom.convert.mcore_to_hf import read_checkpoint_model
from megatron_telecom.convert.megatron_model import single_process_megatron
from megatron_telecom.models.checkpoint_format import (
    CONVERSION_KEY,
    TOKENIZER_DIRNAME,
    CheckpointArgs,
    checkpoint_dir,
    checkpoint_folder,
    common_state,
    write_tracker,
)
from megatron_telecom.models.tokenizer_record import check_tokenizer, tokenizer_record, vocabulary
from megatron_telecom.models.transformer_config import pad_vocab_size
from megatron_telecom.training.model_preparation import lora_record

if TYPE_CHECKING:
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

SIDECAR_FILENAME = "vocab_extension.json"  # written beside an extended tokenizer (tools/extend_tokenizer.py)
VOCAB_TENSORS = (mapping.EMBEDDING[0], mapping.OUTPUT_LAYER[0])


def _old_tokenizer_path(root: Path, args: CheckpointArgs, given: str | None) -> str:
    """--old-tokenizer-model, else the checkpoint's tokenizer/ folder, else its --tokenizer-model."""
    if given:
        return given
    if (root / TOKENIZER_DIRNAME).is_dir():
        return str(root / TOKENIZER_DIRNAME)
    if args.tokenizer_model:
        return args.tokenizer_model
    raise ValueError(f"{root} has no {TOKENIZER_DIRNAME}/ folder and records no --tokenizer-model: "
                     "give the tokenizer it was trained with as --old-tokenizer-model")


def check_extension(old: Any, new: Any) -> None:
    """The new vocabulary is the old one with tokens appended (one line naming the first difference)."""
    old_tokens, new_tokens = vocabulary(old), vocabulary(new)
    if old_tokens is None or new_tokens is None:
        raise ValueError("NullTokenizer has no tokens to extend: resize-vocab needs real tokenizers")
    if len(new_tokens) <= len(old_tokens):
        raise ValueError(f"{new.model_path} has {len(new_tokens)} tokens, the old tokenizer "
                         f"{old.model_path} {len(old_tokens)}: nothing to add")
    for index, (before, after) in enumerate(zip(old_tokens, new_tokens)):
        if before != after:
            raise ValueError(f"{new.model_path} is not an extension of {old.model_path}: id {index} "
                             f"is {after!r}, was {before!r} (the first {len(old_tokens)} tokens "
                             "must be the old ones, in order)")


def added_pieces(old: Any, new: Any) -> list[list[int]]:
    """For each added id ``V_old..V_new-1``: the old tokenizer's ids of its text.

    Computed as ``old.tokenize(new.detokenize([id]))``; a ``vocab_extension.json`` beside the new
    tokenizer, when present, must agree on the ids and tokens, and its ``pieces`` (taken from the
    exact surface text it recorded) are used.
    """
    pieces = [old.tokenize(new.detokenize([index])) for index in range(old.vocab_size, new.vocab_size)]
    sidecar = _tokenizer_folder(new) / SIDECAR_FILENAME
    if sidecar.is_file():
        pieces = _sidecar_pieces(sidecar, old, new, pieces)
    for index, ids in enumerate(pieces, start=old.vocab_size):
        if not ids or any(not 0 <= i < old.vocab_size for i in ids):
            raise ValueError(f"added token {index} ({new.detokenize([index])!r}) has no pieces in "
                             f"the old tokenizer's {old.vocab_size} ids: {ids}")
    return pieces


def _tokenizer_folder(tokenizer: Any) -> Path:
    """The folder of a tokenizer (a SentencePiece model's is the one holding it)."""
    path = Path(tokenizer.model_path)
    return path if path.is_dir() else path.parent


def _sidecar_pieces(sidecar: Path, old: Any, new: Any, computed: list[list[int]]) -> list[list[int]]:
    """The sidecar's pieces after checking it describes exactly these tokenizers' added ids."""
    record = json.loads(sidecar.read_text(encoding="utf-8"))
    added = sorted(record.get("added", record.get("tokens", [])), key=lambda t: t["id"])
    ids = [t["id"] for t in added]
    if ids != list(range(old.vocab_size, new.vocab_size)):
        raise ValueError(f"{sidecar} lists ids {ids[:3]}...{ids[-3:]}, the tokenizers add "
                         f"{old.vocab_size}..{new.vocab_size - 1}: it belongs to another tokenizer")
    base = record.get("base", {})
    if base.get("vocab_size") not in (None, old.vocab_size):
        raise ValueError(f"{sidecar} extends a {base['vocab_size']}-token base, not "
                         f"{old.model_path} ({old.vocab_size} tokens)")
    differ = sum(t["pieces"] != c for t, c in zip(added, computed))
    if differ:
        print(f"note: {differ} of {len(added)} added tokens have other pieces in {sidecar} than "
              "old.tokenize(new.detokenize([id])); the sidecar's (from the recorded text) are used",
              flush=True)
    return [list(t["pieces"]) for t in added]


def new_rows(old_rows: torch.Tensor, pieces: Sequence[Sequence[int]], *, init: InitMethod,
             noise_scale: float, generator: torch.Generator) -> torch.Tensor:
    """[added, hidden]: the mean of each added token's piece rows (+ noise for noisy-mean)."""
    rows = torch.stack([old_rows[list(ids)].mean(dim=0) for ids in pieces])
    if init == "noisy-mean":
        std = old_rows.std(dim=0)  # [hidden]
        noise = torch.randn(rows.shape, generator=generator, dtype=rows.dtype)
        rows = rows + noise * std * noise_scale
    return rows


def _producer(old_state: dict, new_state: dict, reader: Any, *, old_vocab: int, new_vocab: int,
              pieces: list[list[int]], init: InitMethod, noise_scale: float, seed: int
              ) -> Callable[[ShardedTensor], torch.Tensor]:
    """produce(sharded tensor of ``new_state``) -> its data, read from the old checkpoint: the
    vocabulary tensors resized, every other tensor as stored."""
    old_by_place = {}
    for name, value in old_state.items():
        for sharded in value if isinstance(value, list) else [value]:
            if hasattr(sharded, "global_offset"):
                old_by_place[sharded.key, sharded.global_offset] = (name, sharded)
    vocab_keys = {new_state[name].key: name for name in VOCAB_TENSORS if name in new_state}

    def produce(sharded: ShardedTensor) -> torch.Tensor:
        name = vocab_keys.get(sharded.key)
        if name is None:
            return reader.read(old_by_place[sharded.key, sharded.global_offset][1])
        old_rows = reader.read(old_state[name], rows=old_vocab)  # [V_old, hidden]
        out = torch.zeros(sharded.local_shape, dtype=sharded.dtype)  # [padded V_new, hidden]
        out[:old_vocab] = old_rows
        generator = torch.Generator().manual_seed(seed + VOCAB_TENSORS.index(name))
        out[old_vocab:new_vocab] = new_rows(old_rows, pieces, init=init, noise_scale=noise_scale,
                                            generator=generator)
        return out

    return produce


def resize_vocab(load: str | Path, save: str | Path, *, tokenizer_type: str, tokenizer_model: str,
                 old_tokenizer_model: str | None = None,
                 target_tensor_parallel_size: int | None = None,
                 make_vocab_size_divisible_by: int | None = None, init: InitMethod = "mean",
                 noise_scale: float = 0.1, seed: int = 1234) -> Path:
    """Write ``save``: the checkpoint at ``load`` (any TP/PP) with the vocabulary of
    ``tokenizer_model``; returns it. TP and the divisor default to the checkpoint's."""
    if init not in ("mean", "noisy-mean"):
        raise ValueError(f"--init {init}: choose mean or noisy-mean")
    start = time.monotonic()
    root, folder = checkpoint_folder(load)
    preset, old_padded, stored = read_checkpoint_model(folder)
    if lora_record(stored) is not None:
        raise ValueError(f"{folder} holds LoRA adapters only: resize the merged model "
                         "(lora-merge, then hf-to-mcore) or its base")
    old, new = _tokenizers(root, stored, preset.vocab_size, tokenizer_type, tokenizer_model,
                           old_tokenizer_model)
    pieces = added_pieces(old, new)
    args = stored.args
    tp = target_tensor_parallel_size or args.tensor_model_parallel_size
    divisor = make_vocab_size_divisible_by or args.make_vocab_size_divisible_by or 128
    new_padded = pad_vocab_size(new.vocab_size, make_vocab_size_divisible_by=divisor,
                                tensor_model_parallel_size=tp)
    new_preset = dataclasses.replace(preset, vocab_size=new.vocab_size)
    record = tokenizer_record(new)
    conversion = dict(stored.common.get(CONVERSION_KEY) or {})
    if "hf_config" in conversion:
        conversion["hf_config"] = {**conversion["hf_config"], "vocab_size": new.vocab_size}
    conversion["vocab_extension"] = {
        "source_checkpoint": str(folder.resolve()), "old_tokenizer": tokenizer_record(old),
        "new_tokenizer": record, "added": new.vocab_size - old.vocab_size, "init": init,
        "noise_scale": noise_scale if init == "noisy-mean" else None, "seed": seed}
    with staged_folder(save) as tmp:
        with single_process_megatron(), torch.no_grad():
            _write_weights(folder, checkpoint_dir(tmp, None), preset, new_preset,
                           old_padded=old_padded, new_padded=new_padded, pieces=pieces, init=init,
                           noise_scale=noise_scale, seed=seed, common=common_state(
                               args=CheckpointArgs(
                                   tensor_model_parallel_size=tp,
                                   pipeline_model_parallel_size=args.pipeline_model_parallel_size,
                                   padded_vocab_size=new_padded, make_vocab_size_divisible_by=divisor,
                                   tokenizer_type=tokenizer_type, no_save_optim=True, no_save_rng=True),
                               model_config=new_preset, conversion=conversion, tokenizer=record))
        write_tracker(tmp, "release")
        _copy_tokenizer(new, _tokenizer_folder(old), tmp / TOKENIZER_DIRNAME)
    print(f"resized {folder} from {old.vocab_size} to {new.vocab_size} tokens (padded "
          f"{old_padded} -> {new_padded} for TP {tp}); {len(pieces)} new rows by {init} of their "
          f"pieces; written to {save} in {time.monotonic() - start:.1f}s", flush=True)
    return Path(save)


def _tokenizers(root: Path, stored: Any, embedding_rows: int, tokenizer_type: str,
                tokenizer_model: str, old_tokenizer_model: str | None) -> tuple[Any, Any]:
    """(old, new) tokenizer, checked: the old one is the checkpoint's, the new one extends it."""
    from megatron_telecom.data.tokenizers import SENTENCEPIECE_TYPES, build_tokenizer

    old_path = _old_tokenizer_path(root, stored.args, old_tokenizer_model)
    if tokenizer_type in SENTENCEPIECE_TYPES and Path(old_path).is_dir():  # a converted tokenizer/
        old_path = str(Path(old_path) / "tokenizer.model")
    old, new = build_tokenizer(tokenizer_type, old_path), build_tokenizer(tokenizer_type, tokenizer_model)
    check_tokenizer(stored.common, old, where=f"checkpoint {stored.path}")
    if old.vocab_size != embedding_rows:
        raise ValueError(f"the old tokenizer {old.model_path} has {old.vocab_size} ids, the "
                         f"checkpoint's embedding {embedding_rows} rows: give the tokenizer it "
                         "was trained with as --old-tokenizer-model")
    check_extension(old, new)
    return old, new


def _write_weights(folder: Path, release: Path, preset: Any, new_preset: Any, *, old_padded: int,
                   new_padded: int, pieces: list[list[int]], init: InitMethod, noise_scale: float,
                   seed: int, common: dict[str, Any]) -> None:
    """Stream the resized model state of checkpoint ``folder`` into ``release`` (torch_dist)."""
    from megatron.core import dist_checkpointing

    from megatron_telecom.convert.dist_ckpt import (
        DistCheckpointReader,
        StreamingSaveStrategy,
        meta_sharded_state,
    )
    from megatron_telecom.models.sharded_state import check_shapes  # imports megatron

    old_state = meta_sharded_state(preset, old_padded)
    check_shapes(folder, old_state)
    new_state = meta_sharded_state(new_preset, new_padded)
    produce = _producer(old_state, new_state, DistCheckpointReader(folder),
                        old_vocab=preset.vocab_size, new_vocab=new_preset.vocab_size, pieces=pieces,
                        init=init, noise_scale=noise_scale, seed=seed)
    release.mkdir()
    dist_checkpointing.save({"model": new_state, **common}, str(release), StreamingSaveStrategy(produce))


def _copy_tokenizer(new: Any, old_folder: Path, target: Path) -> None:
    """The new tokenizer's files (and sidecar), plus the old folder's generation_config.json."""
    target.mkdir()
    source = Path(new.model_path)
    names = (*TOKENIZER_FILES, SIDECAR_FILENAME, "generation_config.json")
    if source.is_file():  # SentencePiece: the model file itself (and the sidecar beside it)
        names = (source.name, SIDECAR_FILENAME, "generation_config.json")
    copied = copy_tokenizer_files(_tokenizer_folder(new), target, names)
    if "generation_config.json" not in copied and old_folder.is_dir():
        copy_tokenizer_files(old_folder, target, ("generation_config.json",))
