"""SFT on the one trainer (issue 19): packed batches are exact, the loss is the per-token mean.

Packing is exact: the per-token losses of packed sequences (block-diagonal causal attention,
RoPE restarting per conversation) equal those of the same conversations run one per sequence,
within 1e-5 in fp32, at TP=1, TP=2, PP=2 and PP=3 (PP=3: a middle stage that must get the mask).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from _convert_helpers import write_tiny_hf_model
from _dist_helpers import (
    kill_and_resume,
    run_ranks,
    run_script_for_record,
    run_subprocess,
    run_torchrun,
    subprocess_env,
    tiny_train_args,
    write_token_dataset,
)
from _sft_helpers import (
    PROBE,
    REPO,
    read_token_losses,
    sft_train_args,
    synthetic_conversations,
    write_sft_dataset,
)

from megatron_telecom.training.arguments import parse_config
from megatron_telecom.training.stages import sft

SEQ = 64


@pytest.fixture(scope="module")
def sft_datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft_train")
    found = synthetic_conversations()
    return {"found": found,
            "packed": write_sft_dataset(root / "packed", found, seq_length=SEQ),
            "unpacked": write_sft_dataset(root / "unpacked", found, seq_length=SEQ, packing="none")}


def _args(prefix, sequences: int, **flags) -> list[str]:
    """One global batch that holds every sequence once (mbs 1, 6 layers so PP=3 divides)."""
    return tiny_train_args(prefix, cache=prefix.parent, train_iters=1, **sft_train_args(
        prefix, num_layers=6, seq_length=SEQ, micro_batch_size=1, global_batch_size=sequences,
        **flags))


def _probe(nproc: int, args: list[str], out) -> dict[str, list[float]]:
    try:
        proc = run_ranks(nproc, [str(PROBE), str(out), *args], timeout=240)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"probe timed out: {(err.stderr or '')[-3000:]}") from err
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-5000:]
    return read_token_losses(out)


def test_sample_shifts_labels_inside_each_conversation_and_pads_as_its_own_document():
    tokens = np.array([10, 11, 12, 20, 21], dtype=np.uint16)
    mask = np.array([0, 1, 1, 0, 1], dtype=np.uint8)
    sample = sft.pad_sample(tokens, mask, np.array([3, 2]), seq_length=8, pad_token_id=0)
    assert sample["labels"][:4].tolist() == [11, 12, 20, 21]
    # token 12 (last of conversation 1) must not learn 20 (first of conversation 2)
    assert sample["loss_mask"].tolist() == [1, 1, 0, 1, 0, 0, 0, 0]
    assert sample["position_ids"].tolist() == [0, 1, 2, 0, 1, 0, 1, 2]
    assert sample["document_ids"].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    masked = sft.block_causal_mask(sample["document_ids"][None])[0, 0]
    assert not masked[4, 3] and masked[3, 2] and masked[3, 4] and masked[5, 4] and not masked[7, 5]


def test_thd_packed_seq_params_need_no_transformer_engine():
    ids = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2]])
    params = sft.packed_seq_params(ids)
    assert params.qkv_format == "thd"
    assert params.cu_seqlens_q.tolist() == [0, 3, 5, 8] and params.cu_seqlens_q.dtype == torch.int32
    assert params.max_seqlen_q == 3 and params.cu_seqlens_kv is params.cu_seqlens_q
    with pytest.raises(ValueError, match="--micro-batch-size 1"):
        sft.packed_seq_params(ids.repeat(2, 1))
    batch = {"tokens": ids, "position_ids": ids, "labels": ids, "document_ids": ids}
    te = sft.model_inputs(batch, use_transformer_engine=True)
    assert te["attention_mask"] is None and te["packed_seq_params"].cu_seqlens_kv.tolist() == [0, 3, 5, 8]
    local = sft.model_inputs(batch, use_transformer_engine=False)
    assert "packed_seq_params" not in local and local["attention_mask"].shape == (1, 1, 8, 8)


def test_sampling_is_a_seeded_function_of_the_sample_index(sft_datasets):
    make = lambda seed: sft.SFTDataset(str(sft_datasets["packed"]), seq_length=SEQ,  # noqa: E731
                                       num_samples=50, seed=seed, pad_token_id=0)
    a, b = make(1), make(1)
    n = a.num_sequences
    order = [a.sequence_index(i) for i in range(2 * n)]
    assert sorted(order[:n]) == list(range(n)) and sorted(order[n:]) == list(range(n))
    assert order == [b.sequence_index(i) for i in range(2 * n)]
    assert order != [make(2).sequence_index(i) for i in range(2 * n)]
    assert torch.equal(a[7]["tokens"], b[7]["tokens"]) and a[7]["tokens"].numel() == SEQ
    with pytest.raises(ValueError, match="--seq-length 32"):
        sft.SFTDataset(str(sft_datasets["packed"]), seq_length=32, num_samples=1, seed=0,
                       pad_token_id=0)


def test_sft_flags_are_checked(sft_datasets):
    base = _args(sft_datasets["packed"], 4)
    cfg = parse_config(base)
    assert cfg.training.stage == "sft" and cfg.data.sft_data_path == str(sft_datasets["packed"])
    with pytest.raises(ValueError, match="--eval-interval 0"):
        parse_config([*base, "--eval-interval", "10"])
    with pytest.raises(ValueError, match="drop --data-path"):
        parse_config([*base, "--data-path", "x"])
    with pytest.raises(ValueError, match="--stage sft only"):
        parse_config([*base, "--stage", "pretrain", "--data-path", "x"])


@pytest.fixture(scope="module")
def unpacked_losses(sft_datasets, tmp_path_factory):
    """{PP size: per-token losses of each conversation alone in its sequence, at TP=1}.

    megatron-core initialises the same weights at any TP (use_cpu_initialization), not at
    another PP, so the reference is taken at the layout's pipeline size.
    """
    cache: dict[int, dict[str, list[float]]] = {}

    def losses(pp: int) -> dict[str, list[float]]:
        if pp not in cache:
            out = tmp_path_factory.mktemp("sft_unpacked") / "losses.json"
            cache[pp] = _probe(pp, _args(sft_datasets["unpacked"], len(sft_datasets["found"].tokens),
                                         pipeline_model_parallel_size=pp), out)
        return cache[pp]

    return losses


@pytest.mark.torchrun
@pytest.mark.parametrize("nproc, layout", [(1, {}), (2, {"tensor_model_parallel_size": 2}),
                                           (2, {"pipeline_model_parallel_size": 2}),
                                           (3, {"pipeline_model_parallel_size": 3})],
                         ids=["tp1", "tp2", "pp2", "pp3"])
def test_packed_token_losses_equal_one_conversation_per_sequence(sft_datasets, unpacked_losses,
                                                                 tmp_path, nproc, layout):
    found = sft_datasets["found"]
    unpacked = unpacked_losses(layout.get("pipeline_model_parallel_size", 1))
    packed_sequences = sft.PackedSFTDataset(sft_datasets["packed"])
    assert len(packed_sequences) < len(found.tokens)  # several conversations share a sequence
    packed = _probe(nproc, _args(sft_datasets["packed"], len(packed_sequences), **layout),
                    tmp_path / "p.json")
    assert packed.keys() == unpacked.keys() and len(packed) == len(found.tokens)
    for key, losses in unpacked.items():
        assert len(losses) > 0
        np.testing.assert_allclose(packed[key], losses, rtol=0, atol=1e-5)


@pytest.mark.torchrun
@pytest.mark.slow  # 1-2 min on 2 shared cores
def test_sft_run_resumes_bitwise_after_sigkill(sft_datasets, tmp_path):
    """DP=2 with dropout: run B is SIGKILLed after a checkpoint and resumed; every loss after
    the resume equals run A's (uninterrupted) bit for bit."""
    iters = 12

    def args(name: str) -> list[str]:
        return tiny_train_args(sft_datasets["packed"], cache=tmp_path, train_iters=iters, **sft_train_args(
            sft_datasets["packed"], seq_length=SEQ, micro_batch_size=1, global_batch_size=4,
            save=tmp_path / name, save_interval=3, log_metrics_file=tmp_path / f"{name}.jsonl",
            hidden_dropout=0.1, attention_dropout=0.1))

    losses_a, losses_b = kill_and_resume(2, args, tmp_path, iters=iters, first_save=3)
    assert all(losses_b[i] == losses_a[i] for i in losses_b), (losses_a, losses_b)




@pytest.mark.torchrun
@pytest.mark.slow  # 1-2 min on 2 shared cores
def test_sft_checkpoint_loads_at_another_tp_and_pp(sft_datasets, tmp_path):
    """An SFT checkpoint saved at TP=1/PP=1 gives the same per-token losses at TP=2 and PP=2."""
    packed = sft_datasets["packed"]
    sequences = len(sft.PackedSFTDataset(packed))
    run_torchrun(1, _args(packed, 2, save=tmp_path / "ckpt"))
    losses = {name: _probe(2, _args(packed, sequences, load=tmp_path / "ckpt", finetune=True, **layout),
                           tmp_path / f"{name}.json")
              for name, layout in (("tp2", {"tensor_model_parallel_size": 2}),
                                   ("pp2", {"pipeline_model_parallel_size": 2}))}
    assert losses["tp2"].keys() == losses["pp2"].keys() and len(losses["tp2"]) == len(sft_datasets["found"].tokens)
    for key, tp_losses in losses["tp2"].items():
        np.testing.assert_allclose(losses["pp2"][key], tp_losses, rtol=0, atol=1e-5)


@pytest.mark.torchrun
@pytest.mark.slow  # 1-2 min on 2 shared cores
def test_export_of_an_sft_checkpoint_keeps_the_chat_template_and_lists_every_stage(tmp_path):
    """A tiny Llama with SmolLM2's tokenizer -> hf-to-mcore -> CPT -> SFT on the sample conversations
    (--load --finetune each) -> mcore-to-hf: the export's chat template is the source's, byte for
    byte, renders the same tokens, and the model card names every stage with its data."""
    from transformers import AutoTokenizer

    from megatron_telecom.bundled import resolve_hf_path
    from megatron_telecom.convert.hf_io import copy_tokenizer_files
    from megatron_telecom.data.sft import SFTPreprocessConfig, preprocess_sft
    from megatron_telecom.data.tokenizers import TokenizerConfig

    smollm2 = resolve_hf_path("bundled:smollm2-135m")
    source = write_tiny_hf_model(tmp_path / "source", "llama-gqa", vocab_size=49152)
    copied = copy_tokenizer_files(smollm2, source)
    assert "chat_template.jinja" in copied  # SmolLM2 ships its template as a file
    conversations = preprocess_sft(SFTPreprocessConfig(
        input=[str(REPO / "examples" / "data" / "telecom_sft_sample.jsonl")],
        output_prefix=str(tmp_path / "sft_data"), seq_length=512,
        tokenizer=TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(source)))).conversations
    tokens = write_token_dataset(tmp_path / "tokens")
    convert = [sys.executable, str(REPO / "tools" / "convert_checkpoint.py")]
    proc = run_subprocess([*convert, "hf-to-mcore", "--hf-path", str(source), "--save", str(tmp_path / "base")],
                          env=subprocess_env(), timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stage = {"model": None, "num_layers": None, "vocab_size": None, "finetune": True,
             "tokenizer_type": "HuggingFaceTokenizer", "tokenizer_model": str(source)}
    run_torchrun(1, tiny_train_args(tokens, cache=tmp_path / "cache", train_iters=2, **stage,
                                    load=tmp_path / "base", save=tmp_path / "cpt"))
    run_torchrun(1, tiny_train_args(tmp_path / "sft_data", cache=tmp_path, train_iters=3, **stage, **sft_train_args(
        tmp_path / "sft_data", seq_length=512, micro_batch_size=1, global_batch_size=2,
        load=tmp_path / "cpt", save=tmp_path / "sft")))
    proc = run_subprocess([*convert, "mcore-to-hf", "--load", str(tmp_path / "sft"), "--save", str(tmp_path / "hf")],
                          env=subprocess_env(), timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]

    export = tmp_path / "hf"
    for name in copied:  # chat_template.jinja, tokenizer.json, tokenizer_config.json as the source's
        assert (export / name).read_bytes() == (smollm2 / name).read_bytes(), name
    ours, theirs = AutoTokenizer.from_pretrained(str(export)), AutoTokenizer.from_pretrained(str(smollm2))
    assert ours.chat_template == theirs.chat_template and "<|im_start|>" in ours.chat_template
    chat = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is a UPF?"},
            {"role": "assistant", "content": "The user plane function."}, {"role": "user", "content": "And the SMF?"}]
    for messages, prompt in ((chat, True), (chat[:3], False), (chat[1:2], True)):
        rendered = ours.apply_chat_template(messages, tokenize=True, add_generation_prompt=prompt)["input_ids"]
        assert rendered == theirs.apply_chat_template(messages, tokenize=True, add_generation_prompt=prompt)["input_ids"]
        assert len(rendered) > 10

    card = (export / "README.md").read_text(encoding="utf-8")
    stages = card.split("## Training stages\n\n")[1].split("\n\n")[0].splitlines()
    assert stages[0] == f"1. base weights `{tmp_path / 'base' / 'release'}` (converted or initialised; no training recorded)", card
    assert stages[1].startswith(f"2. pretrain: `{tokens}`, 2 iterations"), card
    assert stages[2].startswith(f"3. sft: `{tmp_path / 'sft_data'}`: {conversations:,} conversations, "), card
    assert "3 iterations" in stages[2] and len(stages) == 3
    assert f"- base model: `{source}`" in card


def _rope_child(out_path: str) -> None:
    """Child process (CPU shim, one gloo rank): a model built with document positions against a plain one."""
    from megatron_telecom.atomic import atomic_write_json
    from megatron_telecom.models.backends import choose_backends, get_layer_spec
    from megatron_telecom.models.gpt import build_gpt_model
    from megatron_telecom.models.presets import get_preset
    from megatron_telecom.models.transformer_config import build_transformer_config
    from megatron_telecom.runtime.distributed import destroy_distributed, initialize_distributed

    initialize_distributed()
    preset = get_preset("tiny")
    backends = choose_backends(attention_backend="sdpa", packed_documents=True)
    config = build_transformer_config(preset, backends=backends)
    spec = get_layer_spec(config, backends)
    packed = build_gpt_model(preset, config, padded_vocab_size=512, seq_length=8, layer_spec=spec,
                             document_positions=backends.document_positions)
    plain = build_gpt_model(preset, config, padded_vocab_size=512, seq_length=8, layer_spec=spec)
    plain.load_state_dict(packed.state_dict())
    packed.eval(), plain.eval()
    sample = sft.pad_sample(np.array([5, 6, 7, 8, 9]), np.array([0, 1, 1, 0, 1]), np.array([3, 2]),
                            seq_length=8, pad_token_id=0)
    tokens, positions = sample["tokens"][None], sample["position_ids"][None]
    with torch.no_grad():
        together = packed(tokens, positions, sft.block_causal_mask(sample["document_ids"][None]))
        second_alone = plain(tokens[:, 3:5], torch.arange(2)[None], None)  # document 2 by itself
        table = packed.rotary_pos_emb.get_emb(8)[:, 0, 0]
        emb = packed._preprocess(input_ids=tokens, position_ids=positions)[1]
        plain_emb = plain._preprocess(input_ids=tokens, position_ids=positions)[1]
    atomic_write_json(out_path, {
        "class": type(packed).__name__, "document_positions": backends.document_positions,
        "shape": list(emb.shape),
        "restart": float((emb[:, 0, 0] - table[[0, 1, 2, 0, 1, 0, 1, 2]]).abs().max()),
        "second_document": float((together[0, 3:5] - second_alone[0]).abs().max()),
        "plain_restarts": float((plain_emb[:, 0, 0] - table[[0, 1, 2, 0, 1, 0, 1, 2]]).abs().max())})
    destroy_distributed()


def test_packed_documents_build_a_model_whose_rope_restarts_at_each_conversation(tmp_path):
    """Document positions are chosen at build time: RoPE restarts at each conversation, where
    megatron's own GPTModel takes 0..s-1, and a conversation packed behind another gets the logits
    it gets alone (with the block mask, RoPE's relative angles make that hold up to rounding)."""
    record = run_script_for_record(__file__, tmp_path / "rope.json")
    assert record["class"] == "DocumentPositionGPTModel" and record["document_positions"] is True
    assert record["shape"] == [8, 1, 1, 16]
    assert record["restart"] == 0.0
    assert record["second_document"] < 1e-5
    assert record["plain_restarts"] > 0.1


def test_document_positions_are_a_backend_choice_of_packed_stages():
    from megatron_telecom.models.backends import choose_backends

    assert choose_backends(attention_backend="sdpa", packed_documents=True).document_positions
    assert not choose_backends(attention_backend="sdpa").document_positions


if __name__ == "__main__":
    _rope_child(sys.argv[1])
