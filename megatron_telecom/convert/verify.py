"""Check a conversion: the HF model and the megatron checkpoint on the same tokens.

Both sides run in the same ``dtype`` (float32 by default; bfloat16 shows what training and
generation in bf16 will see, with a correspondingly looser tolerance); logits are compared in fp32.

Tokens are a fixed telecom paragraph through the HF folder's tokenizer (random ids seeded by
``seed`` when it has none), so the reported losses are those of real text. Logit differences
are taken over the real vocabulary (padding columns excluded); each side's loss is its own
next-token cross entropy, the megatron one over its padded vocabulary as training computes it.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from megatron_telecom.bundled import resolve_hf_path
from megatron_telecom.convert.mcore_to_hf import (
    checkpoint_folder,
    load_unsplit_model,
    read_checkpoint_model,
)
from megatron_telecom.convert.megatron_model import single_process_megatron
from megatron_telecom.models.tokenizer_record import check_tokenizer_folder

SAMPLE_TEXT = (
    "The 5G New Radio (NR) air interface defined by 3GPP in TS 38.211 uses OFDM with scalable "
    "numerology: the subcarrier spacing is 15 kHz times a power of two. The gNB schedules the "
    "physical downlink shared channel (PDSCH) and signals the allocation in downlink control "
    "information carried on the PDCCH. HARQ feedback and channel state information reports "
    "from the UE let the scheduler adapt the modulation and coding scheme to the radio link. "
)


@dataclass(frozen=True, kw_only=True)
class VerifyReport:
    """How closely the megatron checkpoint reproduces the HF model on one batch."""

    max_abs_diff: float
    mean_abs_diff: float
    hf_loss: float
    megatron_loss: float
    greedy_agreement: float
    tokens: int
    peak_memory_bytes: int
    """The process's peak RSS: verify loads whole models (HF, then megatron's), unlike the
    streaming converters, so its memory is stated apart from theirs."""

    def summary(self) -> str:
        """One line with every figure."""
        return (f"logits over {self.tokens} tokens: max |diff| {self.max_abs_diff:.3e}, mean "
                f"|diff| {self.mean_abs_diff:.3e}; loss HF {self.hf_loss:.6f} megatron "
                f"{self.megatron_loss:.6f}; greedy-token agreement {self.greedy_agreement:.2%}; "
                f"verify's peak memory {self.peak_memory_bytes / 1e9:.2f} GB (whole models, "
                "one at a time)")


def sample_tokens(hf_folder: Path, vocab_size: int, batch_size: int, seq_length: int,
                  seed: int) -> torch.Tensor:
    """[b, s] token ids: SAMPLE_TEXT tokenised (each row from another offset), or random ids."""
    generator = torch.Generator().manual_seed(seed)
    try:
        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(str(hf_folder))(SAMPLE_TEXT)["input_ids"]
    except (OSError, ValueError):
        ids = []
    if not ids:
        return torch.randint(0, vocab_size, (batch_size, seq_length), generator=generator)
    need = seq_length + batch_size
    stream = torch.tensor((ids * (need // len(ids) + 1))[:need])
    return torch.stack([stream[row: row + seq_length] for row in range(batch_size)])


def _next_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> float:
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                           tokens[:, 1:].reshape(-1)).item()


def verify(hf_path: str | Path, load: str | Path, *, batch_size: int = 2,
           seq_length: int = 128, seed: int = 1234, dtype: str = "float32") -> VerifyReport:
    """Run the HF model and the megatron checkpoint on the same batch, in ``dtype``, and compare."""
    from transformers import AutoModelForCausalLM

    hf_folder = resolve_hf_path(hf_path)
    _, folder = checkpoint_folder(load)
    preset, padded, stored = read_checkpoint_model(folder)
    check_tokenizer_folder(stored.common, hf_folder, where=f"checkpoint {folder}")
    if seq_length > preset.max_position_embeddings:
        raise ValueError(f"--seq-length {seq_length} exceeds the model's context "
                         f"{preset.max_position_embeddings}")
    tokens = sample_tokens(hf_folder, preset.vocab_size, batch_size, seq_length, seed)
    positions = torch.arange(seq_length).expand(batch_size, -1)
    with torch.no_grad():
        torch_dtype = getattr(torch, dtype)
        hf_model = AutoModelForCausalLM.from_pretrained(str(hf_folder), dtype=torch_dtype)
        hf_logits = hf_model.eval()(tokens).logits.float()
        del hf_model
        with single_process_megatron():
            model = load_unsplit_model(folder, preset, padded).to(torch_dtype)
            megatron_logits = model(tokens, positions, None).float()  # [b, s, padded vocab]
    if hf_logits.shape[-1] != preset.vocab_size:
        raise ValueError(f"{hf_folder} has {hf_logits.shape[-1]} output columns, the checkpoint "
                         f"{preset.vocab_size}: they are not the same model")
    diff = (hf_logits - megatron_logits[..., : preset.vocab_size]).abs()
    return VerifyReport(
        max_abs_diff=diff.max().item(), mean_abs_diff=diff.mean().item(),
        hf_loss=_next_token_loss(hf_logits, tokens),
        megatron_loss=_next_token_loss(megatron_logits, tokens),
        greedy_agreement=(hf_logits.argmax(-1) == megatron_logits.argmax(-1)).float().mean().item(),
        tokens=tokens.numel(),
        peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
    )
