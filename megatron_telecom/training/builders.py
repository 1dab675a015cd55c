"""Build the parallel layout, model chunks, optimizer and LR scheduler with megatron-core.

Each builder takes only its own config section(s). Model: a preset from megatron_telecom.models -> TransformerConfig -> GPTModel chunks (one per
virtual pipeline stage), Float16Module for bf16, wrapped in megatron DDP. Optimizer:
get_megatron_optimizer (Adam with decoupled weight decay, grad clipping). Schedule:
OptimizerParamScheduler counted in samples, like Megatron-LM.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from megatron.core.distributed import (
    DistributedDataParallel,
    DistributedDataParallelConfig,
    finalize_model_grads,
)
from megatron.core.optimizer import OptimizerConfig as McoreOptimizerConfig
from megatron.core.optimizer import get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.transformer.module import Float16Module
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_telecom.models.backends import ModelBackends, get_layer_spec
from megatron_telecom.models.gpt import build_gpt_model_chunks
from megatron_telecom.models.presets import ModelPreset, architecture_fields, get_preset
from megatron_telecom.models.transformer_config import build_transformer_config, pad_vocab_size
from megatron_telecom.runtime.parallel_layout import ParallelLayout, compute_parallel_layout
from megatron_telecom.training.config import (
    ModelConfig,
    OptimizerConfig,
    ParallelConfig,
    SchedulerConfig,
    TrainingConfig,
)
from megatron_telecom.training.model_preparation import FullParameters

_PRESET_OVERRIDES = ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads",
                     "num_query_groups")


DEFAULT_PRESET = "tiny"


def resolve_preset(cfg: ModelConfig, recorded: ModelPreset | None = None,
                   where: str = "the checkpoint") -> ModelPreset:
    """The run's model: the named preset with --num-layers/--hidden-size/... overrides applied.

    ``recorded`` is the model a checkpoint to be loaded was saved with: it is adopted, and any
    flag that contradicts it is refused with every differing field and both values.
    """
    overrides = {k: getattr(cfg, k) for k in _PRESET_OVERRIDES if getattr(cfg, k) is not None}
    if cfg.preset is None and recorded is not None:
        asked = recorded
    else:
        asked = get_preset(cfg.preset or DEFAULT_PRESET)
    asked = dataclasses.replace(asked, **overrides) if overrides else asked
    if recorded is None:
        return asked
    theirs, ours = architecture_fields(recorded), architecture_fields(asked)
    differ = [f"{k}: checkpoint {theirs[k]!r}, flags {ours[k]!r}" for k in theirs if theirs[k] != ours[k]]
    if differ:
        given = " ".join([*(["--model"] if cfg.preset is not None else []),
                          *(f"--{k.replace('_', '-')}" for k in _PRESET_OVERRIDES
                            if getattr(cfg, k) is not None)])
        raise ValueError(f"{where} holds a {recorded.name} model that the flags {given} contradict: "
                         f"{'; '.join(differ)}. Drop those flags to adopt the checkpoint's model")
    return recorded


def parallel_layout(p: ParallelConfig, t: TrainingConfig, preset: ModelPreset,
                    world_size: int) -> ParallelLayout:
    """The run's checked parallel layout (every layout check, before the process group starts)."""
    return compute_parallel_layout(
        world_size=world_size, num_layers=preset.num_layers,
        num_attention_heads=preset.num_attention_heads, num_query_groups=preset.num_query_groups,
        tensor_model_parallel_size=p.tensor_model_parallel_size,
        pipeline_model_parallel_size=p.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=p.virtual_pipeline_model_parallel_size,
        num_layers_per_virtual_pipeline_stage=p.num_layers_per_virtual_pipeline_stage,
        sequence_parallel=p.sequence_parallel, micro_batch_size=t.micro_batch_size,
        global_batch_size=t.global_batch_size)


def transformer_config(m: ModelConfig, preset: ModelPreset, layout: ParallelLayout,
                       backends: ModelBackends) -> TransformerConfig:
    """megatron-core TransformerConfig for this run's layout, backends and precision options."""
    return build_transformer_config(
        preset,
        layout=layout,
        backends=backends,
        bf16=m.bf16,
        fp8=m.fp8,
        recompute=m.recompute,
        hidden_dropout=m.hidden_dropout,
        attention_dropout=m.attention_dropout,
        use_cpu_initialization=m.use_cpu_initialization or None,  # None: on CPU without CUDA
    )


def padded_vocab(m: ModelConfig, layout: ParallelLayout, vocab_size: int) -> int:
    """The tokenizer's vocabulary padded by --make-vocab-size-divisible-by x TP."""
    return pad_vocab_size(vocab_size, make_vocab_size_divisible_by=m.make_vocab_size_divisible_by,
                          tensor_model_parallel_size=layout.tensor_model_parallel_size)


def build_model(preset: ModelPreset, config: TransformerConfig, backends: ModelBackends, *,
                p: ParallelConfig, padded_vocab_size: int, seq_length: int,
                preparation: FullParameters | None = None, seed: int = 0) -> list[DistributedDataParallel]:
    """This rank's model chunks (the backends' layer spec and positions), prepared (LoRA adapters,
    ``training/model_preparation.py``), bf16-wrapped when the config says so, each in megatron DDP
    (which holds gradient buffers for the parameters that train only)."""
    chunks = build_gpt_model_chunks(preset, config, padded_vocab_size=padded_vocab_size,
                                    seq_length=seq_length, layer_spec=get_layer_spec(config, backends),
                                    document_positions=backends.document_positions)
    (preparation or FullParameters()).prepare(chunks, seed=seed)
    if config.bf16:
        chunks = [Float16Module(config, chunk) for chunk in chunks]
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=p.overlap_grad_reduce,
        overlap_param_gather=p.overlap_param_gather,
        use_distributed_optimizer=p.use_distributed_optimizer,
        # Megatron-LM's default: NaN/Inf gradients stop training even with --clip-grad 0, where
        # the optimizer computes no grad norm (the trainer turns this into NonFiniteLossError)
        check_for_nan_in_grad=True,
    )
    return [DistributedDataParallel(config=config, ddp_config=ddp_config, module=chunk,
                                    disable_bucketing=index > 0)
            for index, chunk in enumerate(chunks)]


def build_optimizer(o: OptimizerConfig, config: TransformerConfig, model: list, *,
                    use_distributed_optimizer: bool) -> Any:
    """megatron-core's optimizer (Adam/AdamW, fp32 main params for bf16, clipping)."""
    return get_megatron_optimizer(
        McoreOptimizerConfig(
            optimizer=o.algorithm, lr=o.lr, min_lr=o.min_lr, weight_decay=o.weight_decay,
            adam_beta1=o.adam_beta1, adam_beta2=o.adam_beta2, adam_eps=o.adam_eps,
            clip_grad=o.clip_grad, bf16=config.bf16, params_dtype=config.params_dtype,
            use_distributed_optimizer=use_distributed_optimizer),
        model)


def build_scheduler(s: SchedulerConfig, o: OptimizerConfig, optimizer: Any, *,
                    layout: ParallelLayout, train_iters: int) -> OptimizerParamScheduler:
    """Warmup + constant/linear/cosine/WSD decay, in samples (iterations x global batch)."""
    gbs = layout.global_batch_size
    wsd = s.lr_decay_style == "WSD"
    return OptimizerParamScheduler(
        optimizer,
        init_lr=s.lr_warmup_init,
        max_lr=o.lr,
        min_lr=o.min_lr,
        lr_warmup_steps=s.lr_warmup_iters * gbs,
        lr_decay_steps=(s.lr_decay_iters or train_iters) * gbs,
        lr_decay_style=s.lr_decay_style,
        start_wd=o.weight_decay,
        end_wd=o.weight_decay,
        wd_incr_steps=train_iters * gbs,
        wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=s.use_checkpoint_opt_param_scheduler,
        override_opt_param_scheduler=s.override_opt_param_scheduler,
        wsd_decay_steps=(s.lr_wsd_decay_iters or 0) * gbs if wsd else None,
        lr_wsd_decay_style=s.lr_wsd_decay_style if wsd else None,
    )


def wire_model_config(config: TransformerConfig, model: list, optimizer: Any,
                      p: ParallelConfig) -> None:
    """Hooks megatron-core's schedules call: grad finalisation, no_sync, loss scale, overlap."""
    config.finalize_model_grads_func = finalize_model_grads
    config.grad_scale_func = optimizer.scale_loss
    no_sync = [chunk.no_sync for chunk in model]
    config.no_sync_func = no_sync[0] if len(model) == 1 else no_sync
    if p.overlap_grad_reduce:
        grad_sync = [chunk.start_grad_sync for chunk in model]
        config.grad_sync_func = grad_sync[0] if len(model) == 1 else grad_sync
    if p.overlap_param_gather and p.use_distributed_optimizer:
        param_sync = [chunk.start_param_sync for chunk in model]
        config.param_sync_func = param_sync[0] if len(model) == 1 else param_sync
