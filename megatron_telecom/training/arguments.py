"""Fill the config tree from a YAML file and Megatron-LM-named command-line flags.

``--config run.yaml`` gives the base values (flat keys, Megatron flag names with dashes or
underscores); any ``--flag value`` after it overrides the YAML. Unknown flags, missing
required values and inconsistent settings raise ValueError saying what to change.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from megatron_telecom.training.config import (
    SECTIONS,
    PretrainConfig,
    field_owner,
)

# Megatron-LM spells a few flags with mixed dashes/underscores; normalising every '-' to '_'
# maps them onto our fields, e.g. --override-opt_param-scheduler.
LR_DECAY_STYLES = ("constant", "linear", "cosine", "inverse-square-root", "WSD")
WSD_DECAY_STYLES = ("exponential", "linear", "cosine", "minus_sqrt")


def normalize_key(key: str) -> str:
    """'--tensor-model-parallel-size' / 'tensor_model_parallel_size' -> the field name."""
    return key.lstrip("-").replace("-", "_")


def _field_types() -> dict[str, Any]:
    types_: dict[str, Any] = {}
    for cls in SECTIONS.values():
        types_.update(typing.get_type_hints(cls))
    return types_


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(underlying type, accepts None) for annotations like ``int | None``."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert a YAML or command-line value to the field's type (ValueError if it cannot)."""
    base, nullable = _base_type(tp)
    if value is None or (nullable and isinstance(value, str) and value.lower() in ("none", "null")):
        if nullable:
            return None
        raise ValueError(f"--{name.replace('_', '-')} needs a value, not null")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if typing.get_origin(base) is list:
            items = value.split() if isinstance(value, str) else list(value)
            return [str(v) for v in items]
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if base is int:
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        return base(value)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"--{name.replace('_', '-')}: cannot read {value!r} as {getattr(base, '__name__', base)}"
        ) from err


def parse_cli(argv: list[str], known: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """Split argv into (--config path, {field: raw value}); bool flags may stand alone."""
    config_path, values = None, {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            raise ValueError(f"unexpected argument {token!r}: flags look like --name value")
        name, _, inline = token.partition("=")
        key = normalize_key(name)
        args: list[str] = [inline] if inline else []
        i += 1
        while not inline and i < len(argv) and not argv[i].startswith("--"):
            args.append(argv[i])
            i += 1
        if key == "config":
            if len(args) != 1:
                raise ValueError("--config takes exactly one YAML file")
            config_path = args[0]
            continue
        key, args = _resolve_flag(key, args, known)
        base, _ = _base_type(known[key])
        if typing.get_origin(base) is list:
            values[key] = args
        elif len(args) != 1:
            raise ValueError(f"--{key.replace('_', '-')} takes one value, got {args}")
        else:
            values[key] = args[0]
    return config_path, values


def _resolve_flag(key: str, args: list[str], known: dict[str, Any]) -> tuple[str, list[str]]:
    """Handle bare bool flags (--bf16) and their negation (--no-exit-signal-handler)."""
    if key not in known and key.startswith("no_") and key[3:] in known and not args:
        if _base_type(known[key[3:]])[0] is bool:
            return key[3:], ["false"]
    if key not in known:
        raise ValueError(f"unknown flag --{key.replace('_', '-')} (see --help for the flags)")
    if _base_type(known[key])[0] is bool and not args:
        return key, ["true"]
    return key, args


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A flat mapping of flag names to values from a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config {path}: no such file")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of flag names to values")
    return {normalize_key(str(k)): v for k, v in data.items()}


def parse_config(argv: list[str]) -> PretrainConfig:
    """The config tree from ``[--config X.yaml] [--flag value ...]`` (flags override YAML)."""
    known = _field_types()
    config_path, cli = parse_cli(argv, known)
    flat = load_yaml(config_path) if config_path else {}
    for key in flat:
        if key not in known:
            raise ValueError(f"{config_path}: unknown key {key!r} (keys are Megatron flag names)")
    flat.update(cli)
    owners = field_owner()
    sections: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in flat.items():
        sections[owners[key]][key] = coerce(key, value, known[key])
    cfg = PretrainConfig(**{s: SECTIONS[s](**kw) for s, kw in sections.items()})
    validate_config(cfg)
    return cfg


def validate_config(cfg: PretrainConfig) -> None:
    """Checks that need no process group; ValueError says what to change."""
    t, o, s, d, c = cfg.training, cfg.optimizer, cfg.scheduler, cfg.data, cfg.checkpoint
    if t.train_iters is None or t.train_iters <= 0:
        raise ValueError("set --train-iters to the number of training iterations (> 0)")
    if o.lr is None:
        raise ValueError("set --lr (peak learning rate), e.g. --lr 3e-4")
    if o.optimizer != "adam":
        raise ValueError(f"--optimizer {o.optimizer}: only 'adam' (AdamW) is supported")
    if not 0 <= o.min_lr <= o.lr:
        raise ValueError(f"--min-lr {o.min_lr} must lie in [0, --lr {o.lr}]")
    if s.lr_decay_style not in LR_DECAY_STYLES:
        raise ValueError(f"--lr-decay-style {s.lr_decay_style}: choose one of {LR_DECAY_STYLES}")
    if s.lr_wsd_decay_style not in WSD_DECAY_STYLES:
        raise ValueError(f"--lr-wsd-decay-style: choose one of {WSD_DECAY_STYLES}")
    if s.lr_decay_style == "WSD" and not s.lr_wsd_decay_iters:
        raise ValueError("--lr-decay-style WSD needs --lr-wsd-decay-iters")
    decay_iters = s.lr_decay_iters or t.train_iters
    if s.lr_warmup_iters >= decay_iters:
        raise ValueError(f"--lr-warmup-iters {s.lr_warmup_iters} must be < --lr-decay-iters "
                         f"(or --train-iters) {decay_iters}")
    if s.override_opt_param_scheduler and s.use_checkpoint_opt_param_scheduler:
        raise ValueError("use only one of --override-opt_param-scheduler and "
                         "--use-checkpoint-opt_param-scheduler")
    if bool(d.data_path) == bool(d.data_recipe):
        raise ValueError("give exactly one of --data-path and --data-recipe")
    if cfg.tokenizer.tokenizer_type is None:
        raise ValueError("set --tokenizer-type (and --tokenizer-model)")
    if c.ckpt_format != "torch_dist":
        raise ValueError(f"--ckpt-format {c.ckpt_format}: only torch_dist is supported")
    if c.save_interval is not None and c.save_interval <= 0:
        raise ValueError("--save-interval must be > 0")
    if t.eval_interval < 0 or t.eval_iters < 0 or cfg.logging.log_interval <= 0:
        raise ValueError("--eval-interval/--eval-iters must be >= 0 and --log-interval > 0")
    _validate_layout_and_outputs(cfg)


def _validate_layout_and_outputs(cfg: PretrainConfig) -> None:
    """Batch sizes, optimizer-sharding options, the valid split, and what needs --save."""
    t, p, c = cfg.training, cfg.parallel, cfg.checkpoint
    if t.max_requeues < 0:
        raise ValueError(f"--max-requeues {t.max_requeues}: give 0 (never requeue) or more")
    if t.micro_batch_size <= 0 or (t.global_batch_size is not None and t.global_batch_size <= 0):
        raise ValueError("--micro-batch-size and --global-batch-size must be > 0")
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
    """Every flag with its section, default and help line."""
    lines = ["usage: python -m megatron_telecom.pretrain [--config X.yaml] [--flag value ...]", ""]
    for section, cls in SECTIONS.items():
        lines.append(f"{section}:")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"  --{f.name.replace('_', '-'):44s} {f.metadata.get('help', '')} "
                         f"[{default}]")
    return "\n".join(lines)
