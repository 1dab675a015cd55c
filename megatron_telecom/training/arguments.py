"""Pretraining flags: ``--config X.yaml`` and Megatron-LM-named flags -> PretrainConfig, validated.

Parsing is ``megatron_telecom.arguments`` (shared by every entry point); this module adds the
checks that need no process group. Unknown flags, bad choices, missing required values and
inconsistent settings raise ValueError saying what to change.
"""

from __future__ import annotations

import re
import sys

from megatron_telecom import arguments
from megatron_telecom.training.config import PretrainConfig
from megatron_telecom.training.stages import validate_stage_flags

PROG = "python -m megatron_telecom.pretrain"


def parse_config(argv: list[str]) -> PretrainConfig:
    """The config tree from ``[--config X.yaml] [--flag value ...]`` (flags override YAML)."""
    cfg = arguments.parse_args(PretrainConfig, argv)
    validate_config(cfg)
    return cfg


def validate_config(cfg: PretrainConfig) -> None:
    """Checks that need no process group; ValueError says what to change."""
    t, o, s, c = cfg.training, cfg.optimizer, cfg.scheduler, cfg.checkpoint
    if t.train_iters is None or t.train_iters <= 0:
        raise ValueError("set --train-iters to the number of training iterations (> 0)")
    if o.lr is None:
        raise ValueError("set --lr (peak learning rate), e.g. --lr 3e-4")
    if not 0 <= o.min_lr <= o.lr:
        raise ValueError(f"--min-lr {o.min_lr} must lie in [0, --lr {o.lr}]")
    if s.lr_decay_style == "WSD" and not s.lr_wsd_decay_iters:
        raise ValueError("--lr-decay-style WSD needs --lr-wsd-decay-iters")
    decay_iters = s.lr_decay_iters or t.train_iters
    if s.lr_warmup_iters >= decay_iters:
        raise ValueError(f"--lr-warmup-iters {s.lr_warmup_iters} must be < --lr-decay-iters "
                         f"(or --train-iters) {decay_iters}")
    if s.override_opt_param_scheduler and s.use_checkpoint_opt_param_scheduler:
        raise ValueError("use only one of --override-opt_param-scheduler and "
                         "--use-checkpoint-opt_param-scheduler")
    validate_stage_flags(cfg)
    if cfg.tokenizer.tokenizer_type is None:
        raise ValueError("set --tokenizer-type (and --tokenizer-model)")
    if c.save_interval is not None and c.save_interval <= 0:
        raise ValueError("--save-interval must be > 0")
    if c.most_recent_k is not None and c.most_recent_k < 1:
        raise ValueError(f"--most-recent-k {c.most_recent_k}: keep at least 1 checkpoint (leave it out to keep all)")
    if t.eval_interval < 0 or t.eval_iters < 0 or cfg.logging.log_interval <= 0:
        raise ValueError("--eval-interval/--eval-iters must be >= 0 and --log-interval > 0")
    _validate_layout_and_outputs(cfg)


def _validate_layout_and_outputs(cfg: PretrainConfig) -> None:
    """Batch sizes, optimizer-sharding options, the valid split, and what needs --save."""
    t, p, c = cfg.training, cfg.parallel, cfg.checkpoint
    if t.max_requeues < 0:
        raise ValueError(f"--max-requeues {t.max_requeues}: give 0 (never requeue) or more")
    if p.overlap_param_gather and not p.use_distributed_optimizer:
        raise ValueError("--overlap-param-gather needs --use-distributed-optimizer (it overlaps "
                         "the distributed optimizer's parameter all-gather)")
    shares = [float(x) for x in re.split(r"[,/]", cfg.data.split) if x.strip()]
    if t.eval_interval > 0 and t.eval_iters > 0 and (len(shares) < 2 or shares[1] <= 0):
        raise ValueError(f"--split {cfg.data.split} leaves no valid split to evaluate on: give "
                         "it a valid share (e.g. --split 969,30,1) or add --eval-interval 0")
    if not c.save:
        unsaved = [flag for flag, value in (("--save-interval", c.save_interval),
                                            ("--exit-duration-in-mins", t.exit_duration_in_mins))
                   if value is not None]
        if unsaved:
            print(f"warning: {' and '.join(unsaved)} without --save: no checkpoint will be "
                  "written, so this run cannot be resumed", file=sys.stderr)


def help_text() -> str:
    """Every flag with its section, type, help line and default."""
    return arguments.help_text(PretrainConfig, PROG, "Continual pretraining on megatron-core.")
