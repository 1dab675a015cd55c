"""Run as torchrun ranks by tests/test_convert_*.py: the trainer's own setup + first iteration.

``tests/_convert_probe.py OUT.pt TOKENS.pt|- <pretrain flags>`` (each rank, via ``run_ranks``)
builds the run exactly as ``megatron_telecom.pretrain`` does (so ``--load`` adopts the
checkpoint's model), computes the logits of TOKENS.pt through megatron-core's forward-only
schedule (gathered over TP, from the last pipeline stage), then runs the first training
iteration and records its lm loss and the batches it used. Rank 0 writes OUT.pt (tensors only).
"""

from __future__ import annotations

import sys

import torch


def _logits(run, tokens: torch.Tensor) -> torch.Tensor | None:  # noqa: ANN001
    """[b, s, padded vocab] logits of ``tokens`` on the last stage (None elsewhere)."""
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    batch = {"tokens": tokens, "position_ids": torch.arange(tokens.shape[1]).expand_as(tokens)}

    def forward_step(data_iterator, model):  # noqa: ANN001, ANN202
        data = next(data_iterator)
        output = model(data["tokens"], data["position_ids"], None)

        def collect(output_tensor):  # noqa: ANN001, ANN202
            full = gather_from_tensor_model_parallel_region(output_tensor)
            return torch.zeros(()), {"logits": full.detach().clone()}

        return output, collect

    for chunk in run.model:
        chunk.eval()
    iterators = [iter([batch]) for _ in run.model]
    results = run.forward_backward(
        forward_step_func=forward_step,
        data_iterator=iterators[0] if len(iterators) == 1 else iterators,
        model=run.model, num_microbatches=1, seq_length=tokens.shape[1],
        micro_batch_size=tokens.shape[0], forward_only=True)
    for chunk in run.model:
        chunk.train()
    return results[0]["logits"] if results else None


class _Recording:
    """Iterator wrapper keeping every batch handed out (the first iteration's data)."""

    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner, self.seen = inner, []

    def __iter__(self):  # noqa: ANN204
        return self

    def __next__(self) -> dict:
        batch = next(self.inner)
        self.seen.append({k: v.clone() for k, v in batch.items()})
        return batch


def main() -> None:
    import torch.distributed as dist
    from megatron.core import parallel_state

    from megatron_telecom.training import trainer
    from megatron_telecom.training.arguments import parse_config

    out, tokens_path, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    cfg = parse_config(argv)
    run = trainer.setup(cfg)
    record: dict[str, torch.Tensor] = {}
    if tokens_path != "-":
        logits = _logits(run, torch.load(tokens_path, weights_only=True))
        if (logits is not None and parallel_state.get_tensor_model_parallel_rank() == 0
                and parallel_state.get_data_parallel_rank() == 0):
            torch.save(logits, out + ".logits")  # written by the last stage's TP rank 0
    run.train_data = _Recording(run.train_data)
    loss, _, _ = trainer.train_step(run)
    record["first_iteration_loss"] = torch.tensor(loss, dtype=torch.float64)
    for key in ("tokens", "labels", "loss_mask"):
        record[key] = torch.stack([b[key] for b in run.train_data.seen])
    if cfg.checkpoint.save:
        run.state.iteration = 1
        trainer.save(run)
    if dist.get_rank() == 0:
        torch.save(record, out)
    dist.barrier()


if __name__ == "__main__":
    main()
