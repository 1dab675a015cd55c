"""training/data.py: the sampler order, --data-path forms and recipes, the dataset cache key, loader workers."""

from __future__ import annotations

import json
import signal

import pytest
import torch

from megatron_telecom.data.blends import parse_data_path
from megatron_telecom.training.data import (
    batch_iterator,
    check_splits_have_tokens,
    microbatch_indices,
)


def test_sampler_order_resumes_exactly():
    """Megatron's MegatronPretrainingSampler: DP rank r takes slice r of each global microbatch."""
    kwargs = dict(total=20, micro_batch_size=2, data_parallel_size=2)
    rank0 = list(microbatch_indices(consumed_samples=0, data_parallel_rank=0, **kwargs))
    rank1 = list(microbatch_indices(consumed_samples=0, data_parallel_rank=1, **kwargs))
    assert rank0[:2] == [[0, 1], [4, 5]] and rank1[:2] == [[2, 3], [6, 7]]
    resumed = list(microbatch_indices(consumed_samples=8, data_parallel_rank=0, **kwargs))
    assert resumed == rank0[2:]


def test_data_path_forms(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.bin").write_bytes(b"")
        (tmp_path / f"{name}.idx").write_bytes(b"")
    blend = parse_data_path(["0.7", str(tmp_path / "a"), "0.3", str(tmp_path / "b")])
    assert blend.weights == [0.7, 0.3] and blend.names == ["a", "b"]
    assert parse_data_path([str(tmp_path / "a")]).weights is None
    with pytest.raises(ValueError, match="not found"):
        parse_data_path([str(tmp_path / "missing")])
    with pytest.raises(ValueError, match="pairs"):
        parse_data_path(["0.7", str(tmp_path / "a"), "0.3"])


def test_same_file_name_in_two_folders_gets_distinct_names(tmp_path):
    for folder in ("telecom", "general", "x/telecom"):
        (tmp_path / folder).mkdir(parents=True)
        for ext in (".bin", ".idx"):
            (tmp_path / folder / f"text{ext}").write_bytes(b"")
    blend = parse_data_path([str(tmp_path / "telecom/text"), str(tmp_path / "general/text")])
    assert blend.names == ["telecom/text", "general/text"]
    with pytest.raises(ValueError, match="more than once"):
        parse_data_path([str(tmp_path / "telecom/text"), str(tmp_path / "x/telecom/text")])
    with pytest.raises(ValueError, match="more than once"):
        parse_data_path([str(tmp_path / "telecom/text")] * 2)


def test_dataset_cache_key_changes_when_an_index_is_rewritten(tmp_path):
    """megatron's GPTDataset cache key ignores file contents: the .idx stamp must be in it."""
    from megatron_telecom.training.config import TokenizerConfig
    from megatron_telecom.training.data import DatasetTokenizer

    prefix = str(tmp_path / "d")
    (tmp_path / "d.idx").write_bytes(b"x" * 10)

    class Tok:
        vocab_size, eod = 512, 511

    def key():
        tok = DatasetTokenizer(Tok(), TokenizerConfig(tokenizer_type="NullTokenizer"), [prefix])
        # serialised as megatron's MegatronDataset does for its cache key
        return json.dumps({"tokenizer": tok}, default=lambda obj: obj.unique_identifiers)

    before = key()
    (tmp_path / "d.idx").write_bytes(b"y" * 12)  # rebuilt under the same prefix
    assert key() != before


def test_data_recipe_gives_named_weighted_blend(tmp_path):
    from _dist_helpers import write_token_dataset

    from megatron_telecom.data.blends import resolve_blend

    write_token_dataset(tmp_path / "rfc", num_docs=20)
    write_token_dataset(tmp_path / "wiki", num_docs=20, seed=1)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("datasets:\n  - {name: rfc, prefix: rfc, weight: 1}\n"
                      "replay:\n  share: 0.25\n  datasets:\n    - {name: wiki, prefix: wiki}\n")
    blend = resolve_blend([], str(recipe))
    assert blend.names == ["rfc", "wiki"]
    assert blend.prefixes == [str(tmp_path / "rfc"), str(tmp_path / "wiki")]
    assert blend.weights == pytest.approx([0.75, 0.25])


class _Pids(torch.utils.data.Dataset):
    """Each sample reports whether its worker ignores SIGTERM."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ignored = signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        return {"ignored": torch.tensor([int(ignored)])}


def test_dataloader_workers_ignore_exit_signals():
    batches = batch_iterator(_Pids(), consumed_samples=0, micro_batch_size=2,
                             data_parallel_rank=0, data_parallel_size=1, num_workers=1,
                             persistent_workers=False)
    assert [int(b["ignored"].sum()) for b in batches] == [2, 2]


@pytest.mark.timeout(120)  # the bug this guards against is an endless loop
def test_split_without_tokens_is_refused_before_megatron_builds(tmp_path):
    """10 documents at the default --split 969,30,1: the valid and test splits get none, which
    megatron-core's GPTDataset._get_num_epochs would loop on forever."""
    from _dist_helpers import write_token_dataset

    from megatron_telecom.training.config import DataConfig
    from megatron_telecom.training.data import build_datasets

    write_token_dataset(tmp_path / "rfc", num_docs=10)
    with pytest.raises(ValueError, match=r"--split 969,30,1 leaves the valid and test split of "
                                         r"dataset rfc without tokens \(10 sequences: 10 train, "
                                         r"0 valid, 0 test\)"):
        build_datasets(DataConfig(data_path=[str(tmp_path / "rfc")]),
                       parse_data_path([str(tmp_path / "rfc")]), seed=1, seq_length=32,
                       tokenizer=None, tokenizer_cfg=None, train_samples=4, valid_samples=2)
    check_splits_have_tokens(parse_data_path([str(tmp_path / "rfc")]), "8,1,1")  # 8 + 1 + 1
