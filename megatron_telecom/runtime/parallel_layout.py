"""The parallel layout of a run (TP, PP, VPP, DP, microbatches), computed and checked once.

``compute_parallel_layout`` holds every rule that ties the parallel sizes to each other, to
the world size, to the model's layers and heads and to the batch sizes (Megatron-LM's rules),
so a bad layout fails with one clear error before any process group starts. Distributed
bring-up, the TransformerConfig, the LR schedule and the data iterator then read the sizes from
the one ``ParallelLayout`` value.

Decisions: a virtual pipeline size of 1 means no interleaving (None), as in Megatron-LM; the
global batch defaults to micro batch x DP (one microbatch per iteration).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ParallelLayout", "compute_parallel_layout"]


@dataclass(frozen=True, kw_only=True)
class ParallelLayout:
    """How one run is split over its processes (Megatron-LM's names); build it with
    ``compute_parallel_layout``, which checks it."""

    world_size: int
    """Number of processes in the job."""
    tensor_model_parallel_size: int
    """TP: ranks sharing each layer's weights."""
    pipeline_model_parallel_size: int
    """PP: consecutive groups of layers on different ranks."""
    virtual_pipeline_model_parallel_size: int | None
    """Model chunks per pipeline rank (interleaved 1F1B); None when not interleaved."""
    sequence_parallel: bool
    """Activations outside attention/MLP split over the TP ranks along the sequence."""
    data_parallel_size: int
    """DP: model replicas, world_size / (TP x PP)."""
    micro_batch_size: int
    """Sequences per microbatch per data-parallel rank."""
    global_batch_size: int
    """Sequences per iteration over all data-parallel ranks."""
    num_microbatches: int
    """Microbatches each data-parallel rank runs per iteration."""


def _check_model_parallel(world_size: int, tp: int, pp: int) -> None:
    if tp < 1 or pp < 1:
        raise ValueError(f"tensor/pipeline model parallel sizes must be >= 1, got TP={tp} PP={pp}")
    if world_size % (tp * pp):
        raise ValueError(
            f"world size {world_size} is not divisible by TP x PP = {tp} x {pp}: change "
            "--tensor-model-parallel-size/--pipeline-model-parallel-size or the process count")


def _virtual_pipeline_size(num_layers: int, pp: int, vpp: int | None,
                           layers_per_virtual_stage: int | None) -> int | None:
    """Chunks per pipeline rank from --num-layers-per-virtual-pipeline-stage or the VPP size."""
    if layers_per_virtual_stage is not None:
        if vpp is not None:
            raise ValueError("give --num-layers-per-virtual-pipeline-stage or "
                             "--virtual-pipeline-model-parallel-size, not both")
        per_rank, rem = divmod(num_layers, pp)
        if layers_per_virtual_stage < 1 or rem or per_rank % layers_per_virtual_stage:
            raise ValueError(f"{num_layers} layers over PP={pp} do not split into stages of "
                             f"{layers_per_virtual_stage}")
        vpp = per_rank // layers_per_virtual_stage
    if vpp is not None and vpp < 1:
        raise ValueError(f"--virtual-pipeline-model-parallel-size {vpp} must be >= 1")
    if vpp is not None and vpp > 1 and pp < 2:
        raise ValueError("interleaved pipeline (virtual stages) needs "
                         "--pipeline-model-parallel-size >= 2")
    return vpp if vpp is not None and vpp > 1 else None


def _check_model_split(num_layers: int, num_attention_heads: int, num_query_groups: int,
                       tp: int, pp: int, vpp: int | None, sequence_parallel: bool) -> None:
    if num_layers % (pp * (vpp or 1)):
        raise ValueError(
            f"{num_layers} layers do not split into PP={pp} x VPP={vpp or 1} equal chunks; change "
            "--pipeline-model-parallel-size or --virtual-pipeline-model-parallel-size")
    if num_query_groups % tp or num_attention_heads % tp:
        raise ValueError(
            f"{num_attention_heads} heads / {num_query_groups} query groups do not split across "
            f"TP={tp}; choose a TP dividing both")
    if sequence_parallel and tp == 1:
        raise ValueError("--sequence-parallel needs --tensor-model-parallel-size > 1")


def compute_parallel_layout(
    *,
    world_size: int,
    num_layers: int,
    num_attention_heads: int,
    num_query_groups: int,
    tensor_model_parallel_size: int = 1,
    pipeline_model_parallel_size: int = 1,
    virtual_pipeline_model_parallel_size: int | None = None,
    num_layers_per_virtual_pipeline_stage: int | None = None,
    sequence_parallel: bool = False,
    micro_batch_size: int = 1,
    global_batch_size: int | None = None,
) -> ParallelLayout:
    """The checked layout of a model on ``world_size`` processes; ValueError says what to change.

    ``global_batch_size`` None means micro_batch_size x DP (one microbatch per iteration).
    """
    tp, pp = tensor_model_parallel_size, pipeline_model_parallel_size
    _check_model_parallel(world_size, tp, pp)
    vpp = _virtual_pipeline_size(num_layers, pp, virtual_pipeline_model_parallel_size,
                                 num_layers_per_virtual_pipeline_stage)
    _check_model_split(num_layers, num_attention_heads, num_query_groups, tp, pp, vpp,
                       sequence_parallel)
    dp = world_size // (tp * pp)
    if micro_batch_size < 1 or (global_batch_size is not None and global_batch_size < 1):
        raise ValueError("--micro-batch-size and --global-batch-size must be > 0")
    gbs = global_batch_size or micro_batch_size * dp
    if gbs % (micro_batch_size * dp):
        raise ValueError(f"--global-batch-size {gbs} must be a multiple of --micro-batch-size "
                         f"{micro_batch_size} x data-parallel size {dp}")
    return ParallelLayout(
        world_size=world_size, tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=vpp, sequence_parallel=sequence_parallel,
        data_parallel_size=dp, micro_batch_size=micro_batch_size, global_batch_size=gbs,
        num_microbatches=gbs // (micro_batch_size * dp))
