"""SFT data: assistant-only masks by prefix rendering (equal to TRL's), packing, refusals, atomic output.

Everything runs on SmolLM2-135M's real tokenizer and chat template (``bundled:smollm2-135m``) and,
for the reference masks, on TRL's own `SFTTrainer` dataset preparation (a 1-layer model with
SmolLM2's vocabulary: TRL only needs a model object to build its datasets).
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from megatron_telecom.atomic import temporary_path
from megatron_telecom.bundled import resolve_hf_path
from megatron_telecom.data.chat_template import ChatRenderer
from megatron_telecom.data.packed_sft import PackedSFTDataset
from megatron_telecom.data.packing import pack
from megatron_telecom.data.sft import (
    REFUSAL_REASONS,
    SFTPreprocessConfig,
    preprocess_sft,
    tokenize_row,
)
from megatron_telecom.data.tokenizers import TokenizerConfig

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data" / "telecom_sft_sample.jsonl"
BUNDLED = "bundled:smollm2-135m"
SMOLLM2_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"

# SmolLM2's template with {% generation %} around each assistant answer and its end of turn: what
# TRL needs for assistant_only_loss (it refuses SmolLM2's own template, which has no such tags).
TAGGED_SMOLLM2 = (REPO / "tests" / "fixtures" / "smollm2_generation_tagged.jinja").read_text(encoding="utf-8")


def _msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def _line(row: dict) -> bytes:
    return json.dumps(row).encode()


def _sample_rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


def main(argv: list[str]) -> int:
    """tools/preprocess_sft.py's main, in this process (the tokenizer libraries are imported once)."""
    spec = importlib.util.spec_from_file_location("_tool_preprocess_sft", REPO / "tools" / "preprocess_sft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def _config(tmp_path: Path, inputs: list[Path], **overrides) -> SFTPreprocessConfig:
    values = dict(input=[str(p) for p in inputs], output_prefix=str(tmp_path / "out" / "sft"), seq_length=2048,
                  tokenizer=TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=BUNDLED))
    values.update(overrides)
    return SFTPreprocessConfig(**values)


@pytest.fixture(scope="module")
def sft_folder() -> Path:
    return resolve_hf_path(BUNDLED)


@pytest.fixture(scope="module")
def sft_renderer(sft_folder: Path) -> ChatRenderer:
    return ChatRenderer(sft_folder)


def _trained_text(renderer: ChatRenderer, tokens: list[int], mask: np.ndarray) -> str:
    return renderer.hf.decode([t for t, m in zip(tokens, mask) if m])


# ---- the mask on SmolLM2's real template ------------------------------------------------------


def test_single_turn_mask_covers_the_answer_not_the_default_system_prompt(sft_renderer):
    row = {"messages": [_msg("user", "What is a PRB?"), _msg("assistant", "Twelve subcarriers in one slot.")]}
    result = tokenize_row(sft_renderer, _line(row), 2048)
    hf = sft_renderer.hf
    assert result.tokens == hf.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
    text = hf.decode(result.tokens)
    assert text.startswith(SMOLLM2_SYSTEM)  # the template injected its default system prompt ...
    assert _trained_text(sft_renderer, result.tokens, result.loss_mask) == "Twelve subcarriers in one slot.<|im_end|>\n"
    context = hf.decode([t for t, m in zip(result.tokens, result.loss_mask) if not m])
    assert context == SMOLLM2_SYSTEM + "<|im_start|>user\nWhat is a PRB?<|im_end|>\n<|im_start|>assistant\n"


def test_multi_turn_mask_with_a_system_prompt_marks_each_answer(sft_renderer):
    messages = [_msg("system", "You are a telecom tutor."), _msg("user", "What is HARQ?"), _msg("assistant", "Hybrid ARQ."),
                _msg("user", "Why hybrid?"), _msg("assistant", "It combines FEC with retransmission.")]
    result = tokenize_row(sft_renderer, _line({"messages": messages}), 2048)
    hf = sft_renderer.hf
    assert "You are a helpful AI assistant" not in hf.decode(result.tokens)  # ours replaces the default
    runs = np.flatnonzero(np.diff(np.concatenate([[0], result.loss_mask, [0]])))  # [start, end) of each run of 1s
    answers = [hf.decode(result.tokens[a:b]) for a, b in zip(runs[::2], runs[1::2])]
    assert answers == ["Hybrid ARQ.<|im_end|>\n", "It combines FEC with retransmission.<|im_end|>\n"]
    for start in runs[::2]:
        assert hf.decode(result.tokens[:start]).endswith("<|im_start|>assistant\n")


def test_untagged_template_gives_hf_no_mask_but_ours_is_right(sft_renderer):
    """Megatron-Bridge #3359: without {% generation %} tags the library's assistant mask is empty
    (tools that fall back to all ones train on the prompts); prefix rendering does not need tags."""
    messages = [_msg("user", "Define SINR."), _msg("assistant", "Signal to interference plus noise ratio.")]
    hf_mask = sft_renderer.hf.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                  return_assistant_tokens_mask=True)["assistant_masks"]
    assert sum(hf_mask) == 0
    ours = tokenize_row(sft_renderer, _line({"messages": messages}), 2048)
    assert 0 < ours.loss_mask.sum() < len(ours.tokens)
    assert sft_renderer.identity()["has_generation_tags"] is False


# ---- equal to TRL ------------------------------------------------------------------------------


def _trl_prepared(folder: Path, rows: list[dict], tmp_path: Path, chat_template: str | None = None, **sft_args):
    """TRL SFTTrainer's own tokenized dataset (input_ids, labels) for ``rows``."""
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    args = SFTConfig(output_dir=str(tmp_path / "trl"), report_to="none", max_length=None, use_cpu=True, **sft_args)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    return [(ex["input_ids"], [int(label != -100) for label in ex["labels"]]) for ex in trainer.train_dataset]


def _assert_same_as_trl(renderer: ChatRenderer, rows: list[dict], trl: list) -> None:
    assert len(trl) == len(rows)
    for row, (trl_ids, trl_mask) in zip(rows, trl):
        ours = tokenize_row(renderer, _line(row), 4096)
        assert ours.tokens == trl_ids
        assert ours.loss_mask.tolist() == trl_mask, _trained_text(renderer, ours.tokens, ours.loss_mask)


def test_chat_mask_equals_trl_assistant_masks_with_a_tagged_template(sft_renderer, sft_folder, tmp_path):
    rows = [r for r in _sample_rows() if "messages" in r]
    rows = [r for r in rows if len(r["messages"]) > 3][:4] + [r for r in rows if r["messages"][0]["role"] == "system"][:3] \
        + [r for r in rows if len(r["messages"]) == 2][:3]
    kinds = {(len(r["messages"]) > 3, r["messages"][0]["role"] == "system") for r in rows}
    assert kinds == {(True, True), (True, False), (False, True), (False, False)}  # multi/single, system or not
    trl = _trl_prepared(sft_folder, rows, tmp_path, chat_template=TAGGED_SMOLLM2, assistant_only_loss=True)
    _assert_same_as_trl(sft_renderer, rows, trl)  # ours rendered SmolLM2's untagged template


@pytest.mark.parametrize("kind", ["conversational", "text"])
def test_prompt_completion_mask_equals_trl_completion_mask(sft_renderer, sft_folder, tmp_path, kind):
    rows = [r for r in _sample_rows() if "prompt" in r and isinstance(r["prompt"], str) == (kind == "text")]
    assert len(rows) >= 5
    trl = _trl_prepared(sft_folder, rows, tmp_path, completion_only_loss=True)
    _assert_same_as_trl(sft_renderer, rows, trl)


# ---- packing -----------------------------------------------------------------------------------


def test_best_fit_decreasing_places_each_document_in_the_tightest_bin():
    assert pack([5, 4, 3, 3, 2, 1], 8) == [[0, 2], [1, 3, 5], [4]]
    assert pack([5, 4, 3], 8, "none") == [[0], [1], [2]]
    rng = random.Random(7)
    lengths = [rng.randint(1, 100) for _ in range(2000)]
    bins = pack(lengths, 128)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    assert bins == pack(lengths, 128)
    assert sum(lengths) / (len(bins) * 128) > 0.99
    with pytest.raises(ValueError, match="1..128 tokens"):
        pack([129], 128)


def test_packed_output_keeps_boundaries_and_every_token(sft_renderer, tmp_path):
    config = _config(tmp_path, [SAMPLE], seq_length=512, strict=True)
    result = preprocess_sft(config)
    expected = sorted((tuple(r.tokens), tuple(r.loss_mask.tolist())) for r in
                      (tokenize_row(sft_renderer, _line(row), 512) for row in _sample_rows()))
    dataset = PackedSFTDataset(config.output_prefix)
    found = []
    for i in range(len(dataset)):
        seq = dataset[i]
        assert len(seq.tokens) <= 512 and seq.document_lengths.sum() == len(seq.tokens)
        bounds = np.concatenate([[0], np.cumsum(seq.document_lengths)])
        for a, b in zip(bounds[:-1], bounds[1:]):
            found.append((tuple(seq.tokens[a:b].tolist()), tuple(seq.loss_mask[a:b].tolist())))
    assert sorted(found) == expected  # every conversation whole, once: no token lost or moved
    assert result.packing.sequences == len(dataset) and result.packing.efficiency > 0.9

    from megatron.core.datasets.indexed_dataset import IndexedDataset

    for prefix, column in ((result.tokens_prefix, "tokens"), (result.loss_mask_prefix, "loss_mask")):
        megatron = IndexedDataset(prefix)  # megatron-core reads both: sequences = conversations
        assert np.array_equal(megatron.document_indices, dataset.tokens_index.document_indices)
        last = dataset[len(dataset) - 1]
        assert megatron[len(megatron) - 1].tolist() == getattr(last, column)[-last.document_lengths[-1]:].tolist()
    sidecar = json.loads(Path(config.output_prefix + ".json").read_text())
    assert sidecar["packing"]["algorithm"] == "bfd" and sidecar["packing"]["sequences"] == len(dataset)
    assert sidecar["truncation"].startswith("none") and sidecar["refused"]["total"] == 0
    assert sidecar["chat_template"]["sha256"] == sft_renderer.template_sha256
    assert sidecar["inputs"][0]["sha256"] and sidecar["conversations"] == len(expected)


# ---- refusals, --strict, atomic output ---------------------------------------------------------

# A test template with triggers for the refusals SmolLM2's template cannot produce.
REFUSAL_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] == 'RAISE' -%}{{ raise_exception('refused by the template') }}{%- endif -%}"
    "{%- if message['content'] == 'SILENT' -%}"
    "{%- elif message['content'] == 'ONLY WHEN LAST' and not loop.last -%}"
    "{%- elif message['content'].startswith('BARE') -%}{{ message['content'] }}"
    "{%- else -%}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{%- endif -%}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)
GOOD = {"messages": [_msg("user", "What is NR?"), _msg("assistant", "New Radio, the 5G air interface.")]}
REFUSAL_LINES = {  # reason -> the input line that triggers it
    "invalid_utf8": b'{"messages": "\xff"}',
    "invalid_json": b"{not json",
    "not_an_object": b"[1, 2]",
    "bad_format": _line({"text": "pretraining text, not a conversation"}),
    "unknown_role": _line({"messages": [_msg("robot", "beep"), _msg("assistant", "ok")]}),
    "empty_content": _line({"messages": [_msg("user", "   "), _msg("assistant", "ok")]}),
    "template_error": _line({"messages": [_msg("user", "RAISE"), _msg("assistant", "ok")]}),
    "assistant_first": _line({"messages": [_msg("assistant", "Hello."), _msg("user", "Hi.")]}),
    "prefix_broken": _line({"messages": [_msg("user", "ONLY WHEN LAST"), _msg("assistant", "ok")]}),
    "no_assistant_tokens": _line({"messages": [_msg("user", "Is anyone there?")]}),
    "mask_all_ones": _line({"messages": [_msg("user", "SILENT"), _msg("assistant", "BARE answer")]}),
    "too_long": _line({"messages": [_msg("user", "Explain. " * 40), _msg("assistant", "ok")]}),
}


@pytest.fixture
def refusal_inputs(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "rows.jsonl"
    data.write_bytes(b"\n".join([_line(GOOD), *REFUSAL_LINES.values(), _line(GOOD)]) + b"\n")
    template = tmp_path / "refusals.jinja"
    template.write_text(REFUSAL_TEMPLATE)
    return data, template


def test_every_refusal_reason_is_counted_with_its_line(tmp_path, refusal_inputs, capsys):
    assert set(REFUSAL_LINES) == set(REFUSAL_REASONS)
    data, template = refusal_inputs
    prefix = tmp_path / "out" / "sft"
    argv = ["--input", str(data), "--output-prefix", str(prefix), "--tokenizer-type", "HuggingFaceTokenizer",
            "--tokenizer-model", BUNDLED, "--seq-length", "64", "--chat-template", str(template)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    sidecar = json.loads(Path(f"{prefix}.json").read_text())
    assert sidecar["refused"]["by_reason"] == dict.fromkeys(REFUSAL_REASONS, 1)
    for number, reason in enumerate(REFUSAL_LINES, start=2):
        assert sidecar["refused"]["examples"][reason] == [f"{data}:{number}"]
        assert f"  {reason}: 1 (e.g. {data}:{number})" in out
    assert sidecar["conversations"] == 2 and sidecar["chat_template"]["source"] == str(template.resolve())
    assert len(PackedSFTDataset(prefix)) == 1


@pytest.mark.parametrize("reason", list(REFUSAL_LINES))
def test_strict_stops_at_the_first_refusal_with_one_line_and_writes_nothing(tmp_path, refusal_inputs, capsys, reason):
    _, template = refusal_inputs
    data = tmp_path / "one_bad_row.jsonl"
    data.write_bytes(b"\n".join([_line(GOOD), REFUSAL_LINES[reason], _line(GOOD)]) + b"\n")
    argv = ["--input", str(data), "--output-prefix", str(tmp_path / "out" / "sft"), "--tokenizer-type",
            "HuggingFaceTokenizer", "--tokenizer-model", BUNDLED, "--seq-length", "64", "--strict",
            "--chat-template", str(template)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: {data}:2: {reason}: ") and err.endswith("(--strict: nothing was written)")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_failed_write_leaves_neither_dataset(tmp_path):
    """The loss-mask index cannot be put in place (a folder holds its name): the token dataset
    already published in the same run is removed again, and no temporary file is left."""
    config = _config(tmp_path, [SAMPLE], seq_length=1024)
    out = Path(config.output_prefix).parent
    out.mkdir(parents=True)
    Path(config.output_prefix + "_loss_mask.idx").mkdir()
    with pytest.raises(OSError):
        preprocess_sft(config)
    assert sorted(p.name for p in out.iterdir()) == ["sft_loss_mask.idx"]


def test_a_writer_that_cannot_start_leaves_nothing(tmp_path):
    config = _config(tmp_path, [SAMPLE], seq_length=1024)
    blocker = temporary_path(Path(config.output_prefix + "_loss_mask.bin"))
    blocker.mkdir(parents=True)
    with pytest.raises(OSError):
        preprocess_sft(config)
    assert sorted(p.name for p in blocker.parent.iterdir()) == [blocker.name]


def test_the_sample_preprocesses_cleanly_and_is_varied(tmp_path, capsys):
    rows = _sample_rows()
    assert len(rows) >= 100
    chats = [r["messages"] for r in rows if "messages" in r]
    assert sum(len(m) > 3 for m in chats) >= 10 and sum(m[0]["role"] == "system" for m in chats) >= 10
    assert sum("prompt" in r for r in rows) >= 10
    prefix = tmp_path / "sample"
    argv = ["--input", str(SAMPLE), "--output-prefix", str(prefix), "--tokenizer-type", "HuggingFaceTokenizer",
            "--tokenizer-model", BUNDLED, "--seq-length", "1024", "--strict"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"Done: {len(rows)} conversations" in out and "efficiency" in out and "Refused" not in out


def test_a_tokenizer_without_chat_templates_is_refused_in_one_line(capsys):
    argv = ["--input", str(SAMPLE), "--output-prefix", "x", "--tokenizer-type", "SentencePieceTokenizer",
            "--tokenizer-model", "bundled:mistral-v1", "--seq-length", "1024"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "HuggingFaceTokenizer is required" in err


def _ngrams(text: str, n: int = 13) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _sample_texts(row: dict) -> list[str]:
    messages = row.get("messages") or (
        [{"content": row["prompt"]}, {"content": row["completion"]}] if isinstance(row["prompt"], str)
        else row["prompt"] + row["completion"])
    return [m["content"] for m in messages]


def test_the_sample_shares_no_13_gram_with_the_evaluation_sets():
    """The sample is ours, not built from TeleQnA or ORAN-Bench: no 13-word run (the usual
    contamination test) of any sample text appears in their questions or options."""
    data = REPO.parent / "shared" / "data"
    teleqna, oran = data / "teleqna" / "TeleQnA.zip", data / "oranbench"
    if not teleqna.is_file() or not oran.is_dir():
        pytest.skip(f"the evaluation sets are not in {data} (TeleQnA.zip and oranbench/)")
    from megatron_telecom.evaluation.teleqna import read_teleqna

    benchmark: set[tuple[str, ...]] = set()
    for question in read_teleqna(teleqna).questions:
        for text in (question.question, *question.options):
            benchmark |= _ngrams(text)
    for path in sorted(oran.glob("*.json")):
        for line in path.read_text(encoding="utf-8").splitlines():
            benchmark |= _ngrams(line)
    assert len(benchmark) > 100_000
    shared = {text[:60] for row in _sample_rows() for text in _sample_texts(row) if _ngrams(text) & benchmark}
    assert not shared


@pytest.mark.slow
def test_workers_write_the_same_bytes_and_refusals(tmp_path, refusal_inputs):
    """--workers 2 (spawned processes, input batches spread over them) == one process, byte for byte."""
    data, template = refusal_inputs
    inputs = [SAMPLE, data]
    outputs = []
    for workers in (1, 2):
        config = _config(tmp_path / f"w{workers}", inputs, seq_length=1024, workers=workers,
                         chat_template=str(template))
        result = preprocess_sft(config)
        files = [Path(f"{config.output_prefix}{suffix}") for suffix in
                 ("_tokens.bin", "_tokens.idx", "_loss_mask.bin", "_loss_mask.idx")]
        outputs.append(([f.read_bytes() for f in files], result.refused.counts, result.conversations))
    assert outputs[0] == outputs[1]
    # at 1024 tokens the too_long row fits: 2 good rows + it are accepted, every other reason refused
    assert outputs[0][2] == len(_sample_rows()) + 3
    assert outputs[0][1] == dict.fromkeys(set(REFUSAL_LINES) - {"too_long"}, 1)
