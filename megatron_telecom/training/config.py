"""The pretraining config tree: one keyword-only dataclass per component.

Field names are Megatron-LM's flag names with underscores (``--tensor-model-parallel-size`` ->
``tensor_model_parallel_size``), so a YAML file and the command line fill the same tree
(see ``arguments.py``). Each component receives only its own section.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def opt(default: Any, help: str) -> Any:
    """A config field with its one-line help (shown by ``--help``)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(kw_only=True)
class ModelConfig:
    """What the model is: a preset from megatron_telecom.models plus Megatron-style overrides."""

    model: str | None = opt(None, "model preset name (see megatron_telecom.models.presets."
                                  "PRESETS); default: the --load checkpoint's model, else tiny")
    num_layers: int | None = opt(None, "override the preset's number of transformer layers")
    hidden_size: int | None = opt(None, "override the preset's hidden size")
    ffn_hidden_size: int | None = opt(None, "override the preset's MLP hidden size")
    num_attention_heads: int | None = opt(None, "override the preset's attention heads")
    num_query_groups: int | None = opt(None, "override the preset's GQA groups")
    seq_length: int | None = opt(None, "training sequence length (default: the preset's)")
    make_vocab_size_divisible_by: int = opt(128, "pad the vocabulary to a multiple of this (x TP)")
    hidden_dropout: float = opt(0.0, "dropout after attention/MLP (0 for continual pretraining)")
    attention_dropout: float = opt(0.0, "dropout on attention probabilities")
    bf16: bool = opt(False, "bf16 parameters and compute (fp32 main grads in the optimizer)")
    use_cpu_initialization: bool = opt(
        False, "initialise weights on the CPU (always so without CUDA): the same weights on a GPU "
               "as on a CPU, and at any TP")
    transformer_impl: str | None = opt(None, "transformer_engine|local; default: TE when importable")
    attention_backend: str = opt("auto", "core attention: auto (TE's when TE is used, else sdpa)|"
                                 "sdpa (torch fused kernels)|local (megatron's DotProductAttention)")
    recompute_granularity: str | None = opt(None, "activation recompute: full|selective")
    recompute_method: str | None = opt(None, "full recompute: uniform|block")
    recompute_num_layers: int | None = opt(None, "layers per recompute unit (full recompute)")
    fp8_format: str | None = opt(None, "FP8 (Transformer Engine, Hopper+): e4m3|hybrid; off if unset")
    fp8_recipe: str = opt("delayed", "FP8 scaling recipe: delayed|tensorwise|mxfp8|blockwise")
    fp8_margin: int = opt(0, "FP8 scaling margin")
    fp8_amax_history_len: int = opt(1, "FP8 amax history length (delayed scaling)")
    fp8_amax_compute_algo: str = opt("most_recent", "FP8 amax algorithm: max|most_recent")


@dataclass(kw_only=True)
class ParallelConfig:
    """How the model is distributed: tensor, pipeline (optionally interleaved) and data parallel."""

    tensor_model_parallel_size: int = opt(1, "tensor parallel size (TP)")
    pipeline_model_parallel_size: int = opt(1, "pipeline parallel size (PP)")
    num_layers_per_virtual_pipeline_stage: int | None = opt(
        None, "interleaved 1F1B: layers per virtual stage (alternative to the VPP size)")
    virtual_pipeline_model_parallel_size: int | None = opt(
        None, "interleaved 1F1B: model chunks per pipeline rank")
    sequence_parallel: bool = opt(False, "sequence parallelism (GPU with Transformer Engine only)")
    use_distributed_optimizer: bool = opt(False, "shard optimizer state over data parallel ranks")
    overlap_grad_reduce: bool = opt(False, "overlap the DP gradient reduce with backward")
    overlap_param_gather: bool = opt(False, "overlap the param all-gather (distributed optimizer)")
    distributed_timeout_minutes: int = opt(10, "timeout of collective operations, in minutes")


@dataclass(kw_only=True)
class OptimizerConfig:
    """Adam(W) via megatron-core's get_megatron_optimizer."""

    optimizer: str = opt("adam", "optimizer: adam (decoupled weight decay, i.e. AdamW)")
    lr: float | None = opt(None, "peak learning rate (required)")
    min_lr: float = opt(0.0, "learning rate at the end of decay")
    weight_decay: float = opt(0.01, "weight decay (not applied to biases and norms)")
    adam_beta1: float = opt(0.9, "Adam beta1")
    adam_beta2: float = opt(0.999, "Adam beta2")
    adam_eps: float = opt(1e-8, "Adam epsilon")
    clip_grad: float = opt(1.0, "clip the global gradient norm to this (0 = off)")


@dataclass(kw_only=True)
class SchedulerConfig:
    """Learning-rate schedule: megatron-core's OptimizerParamScheduler, in iterations."""

    lr_decay_style: str = opt("linear", "constant|linear|cosine|inverse-square-root|WSD")
    lr_warmup_iters: int = opt(0, "linear warmup iterations (re-warming in continual pretraining)")
    lr_warmup_init: float = opt(0.0, "learning rate at the start of warmup")
    lr_decay_iters: int | None = opt(None, "iterations over which to decay (default: train_iters)")
    lr_wsd_decay_style: str = opt("exponential", "WSD final decay: exponential|linear|cosine")
    lr_wsd_decay_iters: int | None = opt(None, "WSD: iterations of the final decay phase")
    override_opt_param_scheduler: bool = opt(
        False, "use this run's schedule flags, ignoring the checkpoint's scheduler")
    use_checkpoint_opt_param_scheduler: bool = opt(
        False, "use the checkpoint's schedule values, ignoring this run's flags")


@dataclass(kw_only=True)
class DataConfig:
    """Where the tokens come from: Megatron indexed datasets, blended by weight."""

    data_path: list[str] = opt([], "prefixes with optional weights: [W1] P1 [W2 P2 ...]")
    data_recipe: str | None = opt(None, "data recipe YAML (alternative to --data-path)")
    split: str = opt("969,30,1", "train,valid,test split of each dataset's documents")
    data_cache_path: str | None = opt(None, "where dataset index caches are written (shared)")
    num_workers: int = opt(0, "DataLoader worker processes per rank")
    reset_position_ids: bool = opt(False, "restart position ids after each EOD")
    reset_attention_mask: bool = opt(False, "do not attend across EOD")
    eod_mask_loss: bool = opt(False, "mask the loss on EOD tokens")


@dataclass(kw_only=True)
class TokenizerConfig:
    """The tokenizer: gives the vocabulary size and the EOD token."""

    tokenizer_type: str | None = opt(None, "SentencePieceTokenizer|GPTSentencePieceTokenizer|"
                                     "Llama2Tokenizer|HuggingFaceTokenizer|NullTokenizer")
    tokenizer_model: str | None = opt(None, "tokenizer model file or directory")
    vocab_size: int | None = opt(None, "NullTokenizer only: vocabulary size (EOD = vocab_size)")


@dataclass(kw_only=True)
class CheckpointConfig:
    """Megatron-LM checkpoint layout with megatron-core dist_checkpointing (torch_dist)."""

    save: str | None = opt(None, "checkpoint folder to save into (iter_NNNNNNN/ + tracker)")
    load: str | None = opt(None, "checkpoint folder to resume or start from (must hold a "
                                 "checkpoint unless it is the still-empty --save folder)")
    save_interval: int | None = opt(None, "save every N iterations (and at the end)")
    finetune: bool = opt(False, "load weights only: iteration, optimizer, scheduler, RNG restart")
    no_load_optim: bool = opt(False, "do not load optimizer state nor LR schedule (Megatron-LM): "
                                     "the schedule restarts at step 0 (warm-up again), "
                                     "iteration and data position carry on")
    no_load_rng: bool = opt(False, "do not load RNG state")
    no_save_optim: bool = opt(False, "do not save optimizer state")
    no_save_rng: bool = opt(False, "do not save RNG state")
    ckpt_format: str = opt("torch_dist", "checkpoint format (torch_dist only)")


@dataclass(kw_only=True)
class LoggingConfig:
    """What is reported, and where."""

    log_interval: int = opt(100, "print a log line every N iterations")
    tensorboard_dir: str | None = opt(None, "TensorBoard folder (default: <save>/tensorboard)")
    wandb_project: str | None = opt(None, "Weights & Biases project (wandb imported only if set)")
    wandb_exp_name: str | None = opt(None, "Weights & Biases run name")
    wandb_save_dir: str | None = opt(None, "Weights & Biases local folder")
    log_metrics_file: str | None = opt(None, "also append each iteration's metrics to this JSONL")


@dataclass(kw_only=True)
class TrainingConfig:
    """Batch sizes, length of training, evaluation cadence, exits."""

    micro_batch_size: int = opt(1, "sequences per microbatch per data-parallel rank")
    global_batch_size: int | None = opt(None, "sequences per iteration (default: micro x DP)")
    train_iters: int | None = opt(None, "total training iterations (required)")
    eval_interval: int = opt(1000, "evaluate on the valid split every N iterations (0 = never)")
    eval_iters: int = opt(100, "iterations (global batches) per evaluation")
    seed: int = opt(1234, "random seed (init, data order, dropout)")
    exit_duration_in_mins: float | None = opt(None, "save and exit after this many minutes")
    exit_signal_handler: bool = opt(True, "on SIGTERM/SIGUSR1 save a checkpoint and exit 0")
    max_requeues: int = opt(5, "under SLURM, requeue the job after such a stop at most N times")


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "parallel": ParallelConfig,
    "optimizer": OptimizerConfig,
    "scheduler": SchedulerConfig,
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "checkpoint": CheckpointConfig,
    "logging": LoggingConfig,
    "training": TrainingConfig,
}


@dataclass(kw_only=True)
class PretrainConfig:
    """The whole run: one section per component."""

    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_flat_dict(self) -> dict[str, Any]:
        """All fields by their flag name (what a checkpoint's ``args`` records)."""
        flat: dict[str, Any] = {}
        for section in SECTIONS:
            flat.update(dataclasses.asdict(getattr(self, section)))
        return flat


def field_owner() -> dict[str, str]:
    """Flag name (underscored) -> section holding it."""
    owners: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f.name not in owners, f"duplicate config field {f.name}"
            owners[f.name] = section
    return owners
