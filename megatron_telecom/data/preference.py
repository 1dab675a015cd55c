"""Preference JSONL (TRL's DPO formats) -> pairs of chosen / rejected sequences with loss masks.

Input rows, one JSON object per line (TRL's preference formats):
- conversational: ``{"prompt": [messages], "chosen": [messages], "rejected": [messages]}``;
  ``prompt + chosen`` and ``prompt + rejected`` are rendered with the tokenizer's chat template and
  the mask covers the completion (its answer and end-of-turn tokens, not the generation prompt),
  by rendering prefixes as SFT does (`megatron_telecom.data.chat_template`);
- standard: ``{"prompt": "text", "chosen": "text", "rejected": "text"}``: no template, EOS appended
  to each completion, mask on the completion (TRL's plain-text rule);
- implicit prompt: ``{"chosen": ..., "rejected": ...}`` without ``prompt``: the prompt is their
  common beginning (leading messages, or leading characters up to a space), as TRL's
  ``extract_prompt`` takes it.

Output, for ``--output-prefix P``: the SFT dataset layout (`megatron_telecom.data.sft`), one
indexed-dataset *document* per pair holding two *sequences*, chosen then rejected (prompt
included in both), so a pair is one training sample and its halves never part:
``P_tokens.bin/.idx``, ``P_loss_mask.bin/.idx`` and the provenance sidecar ``P.json``.

Truncation policy: none. A pair whose chosen + rejected sequences hold more than ``--seq-length``
tokens together is refused (``too_long``): TRL cuts such a pair at ``max_length``, which changes
the log-probabilities DPO compares. Raise ``--seq-length`` or shorten the pair upstream.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from megatron_telecom.arguments import flat_values
from megatron_telecom.atomic import atomic_write_json
from megatron_telecom.data.chat_template import ChatRenderer, Refused, Tokenized
from megatron_telecom.data.preprocess import SkippedRecords, run_or_refuse
from megatron_telecom.data.sft import (
    REFUSAL_REASONS as SFT_REFUSAL_REASONS,
)
from megatron_telecom.data.sft import (
    ChatPreprocessConfig,
    parse_record,
    read_rows,
    refusal_lines,
    validated_messages,
    write_packed,
)
from megatron_telecom.data.tokenizers import (
    tokenizer_identity,
)
from megatron_telecom.version import __version__

REFUSAL_REASONS = {
    **{k: SFT_REFUSAL_REASONS[k] for k in ("invalid_utf8", "invalid_json", "not_an_object", "unknown_role",
                                           "empty_content", "template_error", "prefix_broken")},
    "bad_format": "not prompt/chosen/rejected (or chosen/rejected) of strings or of messages",
    "identical_completions": "chosen equals rejected: the pair prefers nothing",
    "no_prompt": "no prompt (given or common to chosen and rejected): nothing the completions answer",
    "no_completion_tokens": "a completion rendered no trained token",
    "too_long": "chosen + rejected hold more tokens than --seq-length (never truncated)",
}
TRUNCATION_POLICY = "none: pairs whose chosen + rejected exceed --seq-length tokens are refused (too_long), never cut"
CHOSEN, REJECTED = 0, 1  # sequence order inside a pair's document


@dataclass(frozen=True, kw_only=True)
class DPOPreprocessConfig(ChatPreprocessConfig):
    """Flags of `tools/preprocess_dpo.py` (those of `tools/preprocess_sft.py`, without packing)."""

    input: list[str]
    """Input JSONL files or globs: TRL preference rows (prompt/chosen/rejected, strings or messages)."""
    seq_length: int
    """Tokens a pair may hold, chosen + rejected together; longer pairs are refused, never truncated."""


def _split_prompt(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """(prompt, chosen, rejected) of an implicit-prompt row: the common beginning is the prompt."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if isinstance(chosen, str) and 0 < n < min(len(chosen), len(rejected)) and chosen[n - 1] == " ":
        n -= 1  # the completions start with their space, as TRL's extract_prompt leaves them
    return chosen[:n], chosen[n:], rejected[n:]


def _completion(renderer: ChatRenderer, prompt: Any, completion: Any, what: str) -> Tokenized:
    """Tokens of prompt + completion, mask on the completion."""
    if isinstance(prompt, str):
        if not isinstance(completion, str):
            raise Refused("bad_format", f"a text prompt with a non-text {what}")
        if not completion.strip():
            raise Refused("empty_content", f"{what} is empty")
        return renderer.text_completion(prompt, completion)
    messages = validated_messages(completion, what)
    return renderer.conversation(prompt + messages, [(len(prompt), len(prompt) + len(messages))])


def tokenize_pair(renderer: ChatRenderer, line: bytes, seq_length: int) -> tuple[Tokenized, Tokenized]:
    """One preference row -> (chosen, rejected) sequences with their masks, or `Refused`."""
    record = parse_record(line)
    if "chosen" not in record or "rejected" not in record:
        raise Refused("bad_format", f"no 'chosen' and 'rejected' (keys: {sorted(record)[:8]})")
    chosen, rejected = record["chosen"], record["rejected"]
    if type(chosen) is not type(rejected) or not isinstance(chosen, (str, list)):
        raise Refused("bad_format", "chosen and rejected must both be text or both be message lists")
    prompt = record.get("prompt")
    if prompt is None:
        prompt, chosen, rejected = _split_prompt(chosen, rejected)
    if chosen == rejected:
        raise Refused("identical_completions", "chosen and rejected are the same")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise Refused("no_prompt" if "prompt" not in record else "empty_content", "the prompt is empty")
    elif not prompt:
        raise Refused("no_prompt", "chosen and rejected share no leading message")
    else:
        prompt = validated_messages(prompt, "prompt")
    pair = (_completion(renderer, prompt, chosen, "chosen"), _completion(renderer, prompt, rejected, "rejected"))
    for name, sequence in zip(("chosen", "rejected"), pair):
        if not sequence.loss_mask.any():
            raise Refused("no_completion_tokens", f"{name} rendered no trained token")
    total = len(pair[0].tokens) + len(pair[1].tokens)
    if total > seq_length:
        raise Refused("too_long", f"{len(pair[0].tokens)} + {len(pair[1].tokens)} tokens > --seq-length {seq_length}")
    return pair


@dataclass(frozen=True)
class DPOPreprocessResult:
    pairs: int
    tokens: int
    trained_tokens: int
    refused: SkippedRecords
    seconds: float


def preprocess_dpo(config: DPOPreprocessConfig) -> DPOPreprocessResult:
    """Read, render, mask and write the pairs; on any error (or Ctrl-C) no output file is left behind."""
    start = time.monotonic()
    rows = read_rows(config, tokenize_pair, what="pair")
    found = rows.found
    pairs = len(found.tokens) // 2
    write_packed(config.output_prefix, found, [[2 * i, 2 * i + 1] for i in range(pairs)], rows.dtype)
    result = DPOPreprocessResult(pairs=pairs, tokens=sum(len(t) for t in found.tokens),
                                 trained_tokens=int(sum(int(m.sum()) for m in found.masks)),
                                 refused=found.refused, seconds=time.monotonic() - start)
    refused = result.refused
    atomic_write_json(Path(f"{config.output_prefix}.json"), {
        "tool": "megatron-telecom tools/preprocess_dpo.py",
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "format": {"tokens": str(Path(f"{config.output_prefix}_tokens").resolve()),
                   "loss_mask": str(Path(f"{config.output_prefix}_loss_mask").resolve()),
                   "layout": "indexed-dataset document = one pair; its two sequences = chosen then rejected "
                             "(prompt included in both); loss_mask is uint8, 1 = trained label"},
        "inputs": [{"path": str(i.path.resolve()), "bytes": i.size, "sha256": i.sha256} for i in rows.inputs],
        "tokenizer": asdict(tokenizer_identity(rows.tokenizer)),
        "chat_template": rows.renderer.identity(),
        "flags": {k: v for k, v in flat_values(config).items() if k not in ("input", "output_prefix")},
        "pairs": result.pairs, "tokens": result.tokens, "trained_tokens": result.trained_tokens,
        "refused": {"total": refused.total, "by_reason": refused.counts, "examples": refused.examples},
        "truncation": TRUNCATION_POLICY,
    })
    return result


def summary(config: DPOPreprocessConfig, result: DPOPreprocessResult) -> str:
    """What the tool prints: pairs, tokens, truncation policy, refusals by reason."""
    p = config.output_prefix
    lines = [f"Done: {result.pairs:,} pairs, {result.tokens:,} tokens ({result.trained_tokens:,} trained) "
             f"in {result.seconds:.1f} s",
             f"  truncation: {TRUNCATION_POLICY}",
             f"  {p}_tokens.bin/.idx, {p}_loss_mask.bin/.idx, {p}.json"]
    return "\n".join(lines + refusal_lines(result.refused))


def run_preprocess_dpo(config: DPOPreprocessConfig) -> int:
    """`tools/preprocess_dpo.py`: preprocess and print the summary; a --strict refusal is exit code 1."""
    return run_or_refuse(lambda: summary(config, preprocess_dpo(config)))
