"""DPO data (issue 20): TRL preference rows -> pairs of chosen/rejected sequences, refusals by reason."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from megatron_telecom.bundled import resolve_hf_path
from megatron_telecom.data.chat_template import ChatRenderer
from megatron_telecom.data.packed_sft import PackedSFTDataset
from megatron_telecom.data.preference import REFUSAL_REASONS, tokenize_pair

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data" / "telecom_dpo_sample.jsonl"
BUNDLED = "bundled:smollm2-135m"
TOKENIZER = ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", BUNDLED]


def main(argv: list[str]) -> int:
    """tools/preprocess_dpo.py's main, in this process."""
    spec = importlib.util.spec_from_file_location("_tool_preprocess_dpo", REPO / "tools" / "preprocess_dpo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


@pytest.fixture(scope="module")
def renderer() -> ChatRenderer:
    return ChatRenderer(resolve_hf_path(BUNDLED))


def _line(row: dict) -> bytes:
    return json.dumps(row).encode()


def _trained(renderer: ChatRenderer, sequence) -> str:
    return renderer.hf.decode([t for t, m in zip(sequence.tokens, sequence.loss_mask) if m])


def test_conversational_standard_and_implicit_prompt_rows_mask_the_completions(renderer):
    user = [{"role": "user", "content": "Which interface links gNB and AMF?"}]
    good, bad = [{"role": "assistant", "content": "N2."}], [{"role": "assistant", "content": "X2."}]
    chosen, rejected = tokenize_pair(renderer, _line({"prompt": user, "chosen": good, "rejected": bad}), 512)
    assert _trained(renderer, chosen) == "N2.<|im_end|>\n" and _trained(renderer, rejected) == "X2.<|im_end|>\n"
    start = int(chosen.loss_mask.argmax())
    assert start == int(rejected.loss_mask.argmax()) and chosen.tokens[:start] == rejected.tokens[:start]
    implicit = tokenize_pair(renderer, _line({"chosen": user + good, "rejected": user + bad}), 512)
    assert implicit[0].tokens == chosen.tokens and (implicit[1].loss_mask == rejected.loss_mask).all()
    text = tokenize_pair(renderer, _line({"prompt": "Q: N2 or X2?\nA:", "chosen": " N2", "rejected": " X2"}), 512)
    assert [_trained(renderer, s) for s in text] == [" N2<|im_end|>", " X2<|im_end|>"]  # EOS appended (TRL)
    implicit_text = tokenize_pair(renderer, _line({"chosen": "Q: N2 or X2?\nA: N2", "rejected": "Q: N2 or X2?\nA: X2"}), 512)
    assert [s.tokens for s in implicit_text] == [s.tokens for s in text]


def test_sample_pairs_are_all_accepted_with_provenance(tmp_path, capsys):
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 50
    prefix = tmp_path / "dpo"
    assert main(["--input", str(SAMPLE), "--output-prefix", str(prefix), "--seq-length", "512", *TOKENIZER]) == 0
    assert f"Done: {len(rows)} pairs" in capsys.readouterr().out
    pairs = PackedSFTDataset(prefix)
    assert len(pairs) == len(rows) and all(len(pairs[i].document_lengths) == 2 for i in range(len(pairs)))
    info = json.loads((tmp_path / "dpo.json").read_text())
    assert info["pairs"] == len(rows) and info["refused"]["total"] == 0 and info["truncation"].startswith("none")


def test_bad_rows_are_counted_by_reason_and_strict_stops_at_the_first(tmp_path, capsys):
    user = [{"role": "user", "content": "What is RSRP?"}]
    ok = {"prompt": user, "chosen": [{"role": "assistant", "content": "Reference signal power."}],
          "rejected": [{"role": "assistant", "content": "Total power."}]}
    bad = {
        "invalid_json": b"{not json",
        "identical_completions": _line({**ok, "rejected": ok["chosen"]}),
        "empty_content": _line({**ok, "chosen": [{"role": "assistant", "content": "  "}]}),
        "unknown_role": _line({**ok, "prompt": [{"role": "robot", "content": "hi"}]}),
        "bad_format": _line({"prompt": "text", "chosen": ok["chosen"], "rejected": "text"}),
        "no_prompt": _line({"chosen": ok["chosen"], "rejected": ok["rejected"]}),
        "too_long": _line({**ok, "chosen": [{"role": "assistant", "content": "power " * 300}]}),
    }
    assert set(bad) <= set(REFUSAL_REASONS)
    source = tmp_path / "rows.jsonl"
    source.write_bytes(b"\n".join([_line(ok), *bad.values(), _line(ok)]) + b"\n")
    assert main(["--input", str(source), "--output-prefix", str(tmp_path / "out"), "--seq-length", "256",
                 *TOKENIZER]) == 0
    info = json.loads((tmp_path / "out.json").read_text())
    assert info["pairs"] == 2 and info["refused"]["by_reason"] == {reason: 1 for reason in bad}
    capsys.readouterr()
    assert main(["--input", str(source), "--output-prefix", str(tmp_path / "strict"), "--seq-length", "256",
                 "--strict", *TOKENIZER]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and ":2: invalid_json" in err
    assert not list(tmp_path.glob("strict*"))
