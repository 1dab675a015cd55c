"""Training data: blends of Megatron indexed datasets through megatron-core's builders.

The train split is megatron-core's BlendedMegatronDatasetBuilder + GPTDataset over the whole
blend; each dataset of the blend also gets its own valid split so validation is reported per
dataset (telecom vs. general replay). Samples are read in Megatron-LM's
MegatronPretrainingSampler order, so a resume at ``consumed_samples`` continues exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.blended_megatron_dataset_config import (
    convert_split_vector_to_split_matrix,
    parse_and_normalize_split,
)
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

from megatron_telecom.data import tokenizers as data_tokenizers
from megatron_telecom.data.blends import Blend
from megatron_telecom.data.indexed import read_index
from megatron_telecom.data.tokenizers import Tokenizer
from megatron_telecom.training.config import DataConfig, TokenizerConfig
from megatron_telecom.training.signals import ignore_exit_signals

SPLIT_NAMES = ("train", "valid", "test")


class DatasetTokenizer:
    """What megatron-core's GPTDataset reads from a tokenizer: vocab size, EOD, cache identity."""

    def __init__(self, tokenizer: Any, cfg: TokenizerConfig, prefixes: list[str] = ()) -> None:
        self.vocab_size: int = tokenizer.vocab_size
        self.eod: int = tokenizer.eod
        # Part of the dataset cache key (megatron hashes it into the index file names). The key
        # ignores file contents, so each .idx's size and mtime go in: a dataset rebuilt under the
        # same prefix gets fresh indices instead of stale ones.
        self.unique_identifiers = {"class": cfg.tokenizer_type,
                                   "tokenizer_path": str(cfg.tokenizer_model),
                                   "vocab_size": self.vocab_size, "eod": self.eod,
                                   "index_files": {p: _file_stamp(p + ".idx") for p in prefixes}}


def _file_stamp(path: str) -> list[int]:
    """[size, mtime_ns] of a file: changes whenever the file is rewritten."""
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns]


def build_tokenizer(cfg: TokenizerConfig) -> Tokenizer:
    """The tokenizer named by --tokenizer-type/--tokenizer-model (NullTokenizer: --vocab-size)."""
    return data_tokenizers.build_tokenizer(cfg.tokenizer_type, cfg.tokenizer_model, vocab_size=cfg.vocab_size)


def _dataset_config(cfg: DataConfig, blend: tuple, *, seed: int, seq_length: int,
                    tokenizer: Any) -> GPTDatasetConfig:
    return GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=blend,
        split=cfg.split,
        path_to_cache=cfg.data_cache_path,
        tokenizer=tokenizer,
        reset_position_ids=cfg.reset_position_ids,
        reset_attention_mask=cfg.reset_attention_mask,
        eod_mask_loss=cfg.eod_mask_loss,
        create_attention_mask=cfg.reset_attention_mask,  # else the causal mask is implicit
    )


def build_datasets(cfg: DataConfig, blend: Blend, *, seed: int, seq_length: int, tokenizer: Any,
                   tokenizer_cfg: TokenizerConfig, train_samples: int, valid_samples: int) -> tuple[Any, dict[str, Any]]:
    """(train dataset over the blend, {name: valid dataset} per dataset of the blend).

    Call on every rank: megatron-core builds on rank 0 first (writing the index cache under
    --data-cache-path), then the other ranks read it, with barriers in between.
    """
    check_splits_have_tokens(blend, cfg.split)
    tokenizer = DatasetTokenizer(tokenizer, tokenizer_cfg, blend.prefixes)

    def build(blend_tuple: tuple, sizes: list[int]) -> list[Any]:
        config = _dataset_config(cfg, blend_tuple, seed=seed, seq_length=seq_length,
                                 tokenizer=tokenizer)
        return BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config).build()

    train, _, _ = build((blend.prefixes, blend.weights), [train_samples, 0, 0])
    valid = {}
    if valid_samples > 0:
        for name, prefix in zip(blend.names, blend.prefixes, strict=True):
            dataset = build(([prefix], None), [0, valid_samples, 0])[1]
            if dataset is None or len(dataset) == 0:
                raise ValueError(f"dataset {name} has no documents in the valid split of "
                                 f"--split {cfg.split}; give it a larger valid share")
            valid[name] = dataset
    return train, valid


def check_splits_have_tokens(blend: Blend, split: str) -> None:
    """Refuse a split that gets no tokens of some dataset: megatron-core builds every split with
    a share, and GPTDataset._get_num_epochs loops forever on an empty one (small datasets)."""
    bounds = convert_split_vector_to_split_matrix(parse_and_normalize_split(split))
    for name, prefix in zip(blend.names, blend.prefixes, strict=True):
        lengths = read_index(prefix).sequence_lengths  # GPTDataset splits by sequence
        n = len(lengths)
        ranges = [None if b is None else (int(round(b[0] * n)), int(round(b[1] * n)))
                  for b in bounds]
        empty = [part for part, r in zip(SPLIT_NAMES, ranges, strict=True)
                 if r is not None and int(lengths[r[0]:r[1]].sum()) == 0]
        if empty:
            counts = ", ".join(f"{0 if r is None else r[1] - r[0]} {part}"
                               for part, r in zip(SPLIT_NAMES, ranges, strict=True))
            raise ValueError(
                f"--split {split} leaves the {' and '.join(empty)} split of dataset {name} "
                f"without tokens ({n} sequences: {counts}): give it more documents, or a "
                "split whose every non-zero share gets some, e.g. --split 8,1,1 (or 1,0,0 "
                "with --eval-interval 0)")


def microbatch_indices(*, total: int, consumed_samples: int, micro_batch_size: int,
                       data_parallel_rank: int, data_parallel_size: int) -> Iterator[list[int]]:
    """This DP rank's sample indices per microbatch (MegatronPretrainingSampler's order).

    Global microbatch k covers samples [consumed + k*mbs*dp, ... + mbs*dp); DP rank r takes
    the r-th slice of ``micro_batch_size`` of it. Starting at ``consumed_samples`` resumes exactly.
    """
    step = micro_batch_size * data_parallel_size
    for first in range(consumed_samples, total - step + 1, step):
        offset = first + data_parallel_rank * micro_batch_size
        yield list(range(offset, offset + micro_batch_size))


def batch_iterator(dataset: Any, *, consumed_samples: int, micro_batch_size: int,
                   data_parallel_rank: int, data_parallel_size: int,
                   num_workers: int = 0,
                   persistent_workers: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Microbatches (dicts of [b, s] tensors) of this DP rank, from ``consumed_samples`` on.

    Workers ignore SIGTERM/SIGUSR1 (the main process handles the stop). Use
    ``persistent_workers=False`` for one-shot iterators (evaluation) so no workers linger.
    """
    sampler = list(microbatch_indices(
        total=len(dataset), consumed_samples=consumed_samples, micro_batch_size=micro_batch_size,
        data_parallel_rank=data_parallel_rank, data_parallel_size=data_parallel_size))
    # An own generator: DataLoader would otherwise draw its worker seed from the global RNG,
    # which a resumed run restores from the checkpoint (and must not consume differently).
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                                         persistent_workers=persistent_workers and num_workers > 0,
                                         worker_init_fn=ignore_exit_signals,
                                         generator=torch.Generator().manual_seed(consumed_samples))
    return iter(loader)


def shutdown_workers(batches: Iterator) -> None:
    """End the worker processes of an iterator from ``batch_iterator`` (none without workers).

    Call it on every exit path: the workers ignore SIGTERM, so after an uncaught exception
    multiprocessing's exit handler (SIGTERM to daemon children, then join) would wait forever.
    """
    if isinstance(batches, torch.utils.data.dataloader._MultiProcessingDataLoaderIter):
        batches._shutdown_workers()  # what the iterator's own __del__ does
