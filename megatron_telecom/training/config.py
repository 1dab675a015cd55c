"""The pretraining config tree: one keyword-only dataclass per component.

Field names are Megatron-LM's flag names with underscores (``--tensor-model-parallel-size`` ->
``tensor_model_parallel_size``); each field's docstring is its ``--help`` line. A YAML file and
the command line fill the same tree through ``megatron_telecom.arguments``; choice-valued fields
are ``Literal`` so a bad value fails while parsing. Each component receives only its own section.
A field named for what it holds keeps Megatron-LM's flag (``preset`` is ``--model``, ``algorithm``
is ``--optimizer``).

Where each kind of check lives (every entry point, not only this one):

1. One value's type and choices: the field's annotation (``int``, ``Literal[...]``), checked by
   ``megatron_telecom.arguments`` while parsing.
2. Rules between flags: beside the config. A one-section tool config checks them in its
   ``__post_init__`` (a config that exists is valid); this tree, whose rules cross sections,
   in ``training/arguments.validate_config``.
3. Rules that need the model, the world size or the machine: where that thing is built, as
   ``ValueError``: ``runtime/parallel_layout`` (sizes divide), ``models/backends`` and
   ``models/transformer_config`` (TE, FP8, recompute layers per stage), ``training/builders.
   resolve_preset`` (flags against the checkpoint's model), ``training/data`` (split sizes).

Every entry point's config is one dataclass tree in the module that runs it: this file for
``pretrain``, ``<Tool>Config`` beside ``run_<tool>`` for each ``tools/*.py`` (README, Layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from megatron_telecom.arguments import flag_name, flat_values
from megatron_telecom.data.tokenizers import TokenizerConfig
from megatron_telecom.models.options import (
    AttentionBackend,
    Fp8Options,
    LoraOptions,
    RecomputeOptions,
    TransformerImpl,
)
from megatron_telecom.training.stages import STAGE_NAMES


@dataclass(kw_only=True)
class ModelConfig:
    """What the model is: a preset from megatron_telecom.models plus Megatron-style overrides."""

    preset: str | None = flag_name("model", None)
    """Model preset name (megatron_telecom.models.presets.PRESETS); default: the --load checkpoint's model, else tiny."""
    num_layers: int | None = None
    """Override the preset's number of transformer layers."""
    hidden_size: int | None = None
    """Override the preset's hidden size."""
    ffn_hidden_size: int | None = None
    """Override the preset's MLP hidden size."""
    num_attention_heads: int | None = None
    """Override the preset's attention heads."""
    num_query_groups: int | None = None
    """Override the preset's GQA groups."""
    seq_length: int | None = None
    """Training sequence length (default: the preset's)."""
    make_vocab_size_divisible_by: int = 128
    """Pad the vocabulary to a multiple of this (x TP)."""
    hidden_dropout: float = 0.0
    """Dropout after attention/MLP (0 for continual pretraining)."""
    attention_dropout: float = 0.0
    """Dropout on attention probabilities."""
    bf16: bool = False
    """bf16 parameters and compute (fp32 main grads in the optimizer)."""
    use_cpu_initialization: bool = False
    """Initialise weights on the CPU (always so without CUDA): the same weights on a GPU as on a CPU, and at any TP."""
    transformer_impl: TransformerImpl | None = None
    """Transformer layer implementation; default: Transformer Engine when it imports (and CUDA is present)."""
    attention_backend: AttentionBackend = "auto"
    """Core attention: auto (TE's when TE is used, else sdpa), sdpa (torch fused kernels), local (megatron's DotProductAttention)."""
    fp8: Fp8Options = field(default_factory=Fp8Options)
    recompute: RecomputeOptions = field(default_factory=RecomputeOptions)
    lora: LoraOptions = field(default_factory=LoraOptions)
    """LoRA adapters on the frozen base, chosen at build time for any stage (docs/lora.md)."""


@dataclass(kw_only=True)
class ParallelConfig:
    """How the model is distributed: tensor, pipeline (optionally interleaved) and data parallel."""

    tensor_model_parallel_size: int = 1
    """Tensor parallel size (TP)."""
    pipeline_model_parallel_size: int = 1
    """Pipeline parallel size (PP)."""
    num_layers_per_virtual_pipeline_stage: int | None = None
    """Interleaved 1F1B: layers per virtual stage (alternative to the VPP size)."""
    virtual_pipeline_model_parallel_size: int | None = None
    """Interleaved 1F1B: model chunks per pipeline rank."""
    sequence_parallel: bool = False
    """Sequence parallelism (GPU with Transformer Engine only)."""
    use_distributed_optimizer: bool = False
    """Shard optimizer state over data parallel ranks."""
    overlap_grad_reduce: bool = False
    """Overlap the DP gradient reduce with backward."""
    overlap_param_gather: bool = False
    """Overlap the param all-gather (distributed optimizer)."""
    distributed_timeout_minutes: int = 10
    """Timeout of collective operations, in minutes."""


@dataclass(kw_only=True)
class OptimizerConfig:
    """Adam(W) via megatron-core's get_megatron_optimizer."""

    algorithm: Literal["adam"] = flag_name("optimizer", "adam")
    """Optimizer: adam (decoupled weight decay, i.e. AdamW)."""
    lr: float | None = None
    """Peak learning rate (required)."""
    min_lr: float = 0.0
    """Learning rate at the end of decay."""
    weight_decay: float = 0.01
    """Weight decay (not applied to biases and norms)."""
    adam_beta1: float = 0.9
    """Adam beta1."""
    adam_beta2: float = 0.999
    """Adam beta2."""
    adam_eps: float = 1e-8
    """Adam epsilon."""
    clip_grad: float = 1.0
    """Clip the global gradient norm to this (0 = off)."""


@dataclass(kw_only=True)
class SchedulerConfig:
    """Learning-rate schedule: megatron-core's OptimizerParamScheduler, in iterations."""

    lr_decay_style: Literal["constant", "linear", "cosine", "inverse-square-root", "WSD"] = "linear"
    """Learning-rate decay after warmup."""
    lr_warmup_iters: int = 0
    """Linear warmup iterations (re-warming in continual pretraining)."""
    lr_warmup_init: float = 0.0
    """Learning rate at the start of warmup."""
    lr_decay_iters: int | None = None
    """Iterations over which to decay (default: train_iters)."""
    lr_wsd_decay_style: Literal["exponential", "linear", "cosine", "minus_sqrt"] = "exponential"
    """WSD: shape of the final decay."""
    lr_wsd_decay_iters: int | None = None
    """WSD: iterations of the final decay phase."""
    override_opt_param_scheduler: bool = False
    """Use this run's schedule flags, ignoring the checkpoint's scheduler."""
    use_checkpoint_opt_param_scheduler: bool = False
    """Use the checkpoint's schedule values, ignoring this run's flags."""


@dataclass(kw_only=True)
class DataConfig:
    """Where the tokens come from: Megatron indexed datasets, blended by weight."""

    data_path: list[str] = field(default_factory=list)
    """Prefixes with optional weights: [W1] P1 [W2 P2 ...]."""
    data_recipe: str | None = None
    """Data recipe YAML (alternative to --data-path)."""
    sft_data_path: str | None = None
    """--stage sft: the --output-prefix of tools/preprocess_sft.py (packed tokens + loss mask)."""
    dpo_data_path: str | None = None
    """--stage dpo: the --output-prefix of tools/preprocess_dpo.py (pairs; reference log-probs beside it)."""
    split: str = "969,30,1"
    """train,valid,test split of each dataset's documents."""
    data_cache_path: str | None = None
    """Where dataset index caches are written (shared)."""
    num_workers: int = 0
    """DataLoader worker processes per rank."""
    reset_position_ids: bool = False
    """Restart position ids after each EOD."""
    reset_attention_mask: bool = False
    """Do not attend across EOD."""
    eod_mask_loss: bool = False
    """Mask the loss on EOD tokens."""


@dataclass(kw_only=True)
class CheckpointConfig:
    """Megatron-LM checkpoint layout with megatron-core dist_checkpointing (torch_dist)."""

    save: str | None = None
    """Checkpoint folder to save into (iter_NNNNNNN/ + tracker)."""
    load: str | None = None
    """Checkpoint folder to resume or start from (must hold a checkpoint unless it is the still-empty --save folder)."""
    save_interval: int | None = None
    """Save every N iterations (and at the end)."""
    finetune: bool = False
    """Load weights only: iteration, optimizer, scheduler, RNG restart."""
    no_load_optim: bool = False
    """Do not load optimizer state nor LR schedule (Megatron-LM): the schedule restarts at step 0 (warm-up again), iteration and data position carry on."""
    no_load_rng: bool = False
    """Do not load RNG state."""
    no_save_optim: bool = False
    """Do not save optimizer state."""
    no_save_rng: bool = False
    """Do not save RNG state."""
    ckpt_format: Literal["torch_dist"] = "torch_dist"
    """Checkpoint format (torch_dist only)."""
    most_recent_k: int | None = None
    """Keep only the K newest checkpoints in --save, plus the one this run resumed from (None: keep all; Megatron-LM's CheckpointConfig name)."""


@dataclass(kw_only=True)
class LoggingConfig:
    """What is reported, and where."""

    log_interval: int = 100
    """Print a log line every N iterations."""
    tensorboard_dir: str | None = None
    """TensorBoard folder (default: <save>/tensorboard)."""
    wandb_project: str | None = None
    """Weights & Biases project (wandb imported only if set)."""
    wandb_exp_name: str | None = None
    """Weights & Biases run name."""
    wandb_save_dir: str | None = None
    """Weights & Biases local folder."""
    log_metrics_file: str | None = None
    """Also append each iteration's metrics to this JSONL."""


@dataclass(kw_only=True)
class TrainingConfig:
    """Batch sizes, length of training, evaluation cadence, exits."""

    stage: Literal[STAGE_NAMES] = "pretrain"
    """pretrain: next-token loss on --data-path; sft: loss on assistant tokens of --sft-data-path (packed conversations, docs/sft.md); dpo: preference loss on the pairs of --dpo-data-path (docs/dpo.md)."""

    micro_batch_size: int = 1
    """Sequences per microbatch per data-parallel rank."""
    global_batch_size: int | None = None
    """Sequences per iteration (default: micro x DP)."""
    train_iters: int | None = None
    """Total training iterations (required)."""
    eval_interval: int = 1000
    """Evaluate on the valid split every N iterations (0 = never)."""
    eval_iters: int = 100
    """Iterations (global batches) per evaluation."""
    seed: int = 1234
    """Random seed (init, data order, dropout)."""
    exit_duration_in_mins: float | None = None
    """Save and exit after this many minutes."""
    exit_signal_handler: bool = True
    """On SIGTERM/SIGUSR1 save a checkpoint and exit 0."""
    max_requeues: int = 5
    """Under SLURM, requeue the job after such a stop at most N times."""


@dataclass(kw_only=True)
class DPOConfig:
    """--stage dpo: sigmoid DPO loss against stored reference log-probs (training/stages/dpo.py)."""

    dpo_beta: float = 0.1
    """DPO beta (TRL's default 0.1): how far the policy may move from the reference."""
    dpo_sft_loss_weight: float = 0.0
    """Weight of an added SFT loss on the chosen completions (RPO; TRL loss_weights of ["sigmoid", "sft"])."""
    compute_reference_logprobs: bool = False
    """Only compute the --load checkpoint's log-probs of every pair, store them with their fingerprint beside --dpo-data-path, and exit."""


@dataclass(kw_only=True)
class BenchmarkEvalConfig:
    """Telecom benchmarks and held-out perplexity scored during training (training/benchmark_eval.py)."""

    eval_benchmarks: list[str] = field(default_factory=list)
    """Benchmarks scored in memory, as NAME[=DATA]:SIZE (teleqna:200 oranbench:300 exam.jsonl:100), each a fixed stratified sample."""
    eval_perplexity_inputs: list[str] = field(default_factory=list)
    """Held-out JSONL ("text") or .txt files whose perplexity and bits per byte are scored in memory."""
    eval_benchmark_interval: int | None = None
    """Score them every N iterations (None: every --eval-interval; 0: never)."""
    eval_benchmark_mode: Literal["options", "letter"] = "options"
    """options: option texts as continuations; letter: option labels, MMLU-style."""
    eval_benchmark_shots: int = 0
    """Few-shot examples from the fixed per-category pool."""
    eval_perplexity_seq_length: int | None = None
    """Tokens per perplexity window (None: --seq-length)."""
    eval_tokens_per_batch: int = 2048
    """Padded tokens per scoring forward."""
    eval_log_samples: str | None = None
    """Folder for per-question log-likelihoods of each evaluation (iter_NNNNNNN/<benchmark>.jsonl; None: not written)."""


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
    benchmark_eval: BenchmarkEvalConfig = field(default_factory=BenchmarkEvalConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)

    def to_flat_dict(self) -> dict[str, Any]:
        """All fields by their flag name (what a checkpoint's ``args`` records)."""
        return flat_values(self)
