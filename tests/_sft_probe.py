"""Run as torchrun ranks by tests/test_training_sft.py: per-token losses of every trained token.

``tests/_sft_probe.py OUT.json <pretrain flags, --stage sft>`` (each rank, via ``run_ranks``)
builds the run as ``megatron_telecom.pretrain`` does, then pushes the first global batch through
megatron-core's forward-only schedule with the trainer's SFT forward step. The last pipeline
stage's TP/DP rank 0 writes {conversation tokens: losses at its loss-mask positions} to OUT.json.
"""

from __future__ import annotations

import json
import sys

import torch


def main() -> None:
    import torch.distributed as dist
    from megatron.core import parallel_state

    from megatron_telecom.training import trainer
    from megatron_telecom.training.arguments import parse_config

    out, argv = sys.argv[1], sys.argv[2:]
    run = trainer.setup(parse_config(argv))
    batches = [next(run.train_data) for _ in range(run.layout.num_microbatches)]
    captured: list[tuple[dict, torch.Tensor]] = []

    def forward_step(data_iterator, model):  # noqa: ANN001, ANN202
        batch = next(data_iterator)
        output, loss = run.forward_step(iter([batch]), model)

        def record(output_tensor):  # noqa: ANN001, ANN202
            captured.append((batch, output_tensor.detach().clone()))
            return loss(output_tensor)

        return output, record

    for chunk in run.model:
        chunk.eval()
    iterators = [iter(batches) for _ in run.model]
    run.forward_backward(forward_step_func=forward_step,
                         data_iterator=iterators[0] if len(iterators) == 1 else iterators,
                         model=run.model, num_microbatches=len(batches), seq_length=run.seq_length,
                         micro_batch_size=run.layout.micro_batch_size, forward_only=True)
    losses: dict[str, list[float]] = {}
    for batch, output in captured:
        for row in range(batch["tokens"].size(0)):
            ids = batch["document_ids"][row]
            for doc in ids.unique().tolist():
                where = ids == doc
                mask = batch["loss_mask"][row][where].bool()
                if mask.any():  # the padding document has no trained token
                    key = " ".join(map(str, batch["tokens"][row][where].tolist()))
                    losses[key] = output[row][where][mask].double().tolist()
    if (captured and parallel_state.get_tensor_model_parallel_rank() == 0
            and parallel_state.get_data_parallel_rank() == 0):
        with open(out, "w") as f:
            json.dump(losses, f)
    dist.barrier()


if __name__ == "__main__":
    main()
