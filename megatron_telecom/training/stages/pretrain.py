"""Stage 1, continual pretraining: next-token loss on a blend of indexed datasets (--data-path / --data-recipe).

Samples are megatron-core GPTDataset sequences (``training/data.py``), one validation dataset per
blend member; the loss is the mean over the microbatch's masked tokens, reported as "lm loss"
(the schedule averages microbatch means).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch

from megatron_telecom.runtime.distributed import get_device
from megatron_telecom.training.stages import Stage

if TYPE_CHECKING:
    from megatron_telecom.training.config import PretrainConfig


class PretrainStage(Stage):
    """--stage pretrain."""

    name = "pretrain"

    @classmethod
    def validate(cls, cfg: PretrainConfig) -> None:
        if bool(cfg.data.data_path) == bool(cfg.data.data_recipe):
            raise ValueError("give exactly one of --data-path and --data-recipe")

    def datasets(self, *, layout: Any, tokenizer: Any, seq_length: int,
                 stored: Any) -> tuple[Any, dict[str, Any]]:
        from megatron_telecom.data.blends import resolve_blend
        from megatron_telecom.training.data import build_datasets

        cfg, t = self.cfg, self.cfg.training
        evaluates = t.eval_interval > 0 and t.eval_iters > 0
        return build_datasets(
            cfg.data, resolve_blend(cfg.data.data_path, cfg.data.data_recipe), seed=t.seed,
            seq_length=seq_length, tokenizer=tokenizer, tokenizer_cfg=cfg.tokenizer,
            train_samples=t.train_iters * layout.global_batch_size,
            valid_samples=t.eval_iters * layout.global_batch_size if evaluates else 0)

    def forward_step(self, *, use_transformer_engine: bool) -> Any:
        return forward_step


def loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Mean token loss of one microbatch (masked), also returned for reporting."""
    losses = output_tensor.float().view(-1)  # [b * s]
    mask = loss_mask.view(-1).float()
    loss = torch.sum(losses * mask) / mask.sum().clamp(min=1.0)
    return loss, {"lm loss": loss.detach().clone()}  # the schedule rescales `loss` in place


def forward_step(data_iterator: Any, model: Any) -> tuple[torch.Tensor, Any]:
    """One microbatch through one model chunk; megatron's schedules call this."""
    device = get_device()
    batch = {k: v.to(device, non_blocking=True) for k, v in next(data_iterator).items()}
    output = model(batch["tokens"], batch["position_ids"], batch.get("attention_mask"),
                   labels=batch["labels"])  # [b, s] per-token losses on the last stage
    return output, functools.partial(loss_func, batch["loss_mask"])


STAGE = PretrainStage
