"""LoRA adapters on megatron-core's tensor-parallel linears (PEFT's LoRA, exactly).

``add_lora_adapters`` gives each adapted linear of every decoder layer a sibling module
``<linear>_lora`` (``LoraAdapter``) and a forward hook that adds the adapter's output to the
linear's: the base weights keep their names and checkpoint keys, so a base checkpoint loads
unchanged. Each adapter holds one (A, B) pair per adapted projection:
- on a column-parallel linear (``linear_qkv``, ``linear_fc1``) A is replicated and B sharded like
  the output (by query groups for q/k/v, as [gate_i; up_i] for fused fc1);
- on a row-parallel linear (``linear_proj``, ``linear_fc2``) A is sharded like the input and B
  replicated.
The output is ``B A dropout(x) * alpha / rank``. Initialisation is PEFT's (A Kaiming-uniform with
a = sqrt(5) over the whole matrix, B zero), drawn from a generator seeded by the seed and the
parameter's global name, so every TP/PP layout starts from the same adapters and step 0 is the base.
The canonical variant has one pair per HF projection (q, k, v; gate, up); the fused one a single
pair over the fused linear, written to PEFT as A duplicated and B split by rows (``convert/lora.py``).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core import parallel_state, tensor_parallel
from megatron.core.transformer.mlp import apply_swiglu_sharded_factory
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.utils import make_sharded_tensors_for_checkpoint

from megatron_telecom.models.options import LORA_PARTS, LoraOptions

ADAPTER_SUFFIX = "_lora"
"""An adapter's module name: its linear's name plus this (``linear_qkv_lora``)."""
COLUMN_PARALLEL = ("linear_qkv", "linear_fc1")
PARENT = {"linear_qkv": "self_attention", "linear_proj": "self_attention",
          "linear_fc1": "mlp", "linear_fc2": "mlp"}


def is_adapter_key(name: str) -> bool:
    """Whether a state-dict or checkpoint key belongs to an adapter."""
    return any(f"{linear}{ADAPTER_SUFFIX}." in name for linear in PARENT)


def part_sizes(linear: str, parts: tuple[str, ...], config: Any) -> dict[str, int]:
    """Global output rows of each adapted projection ("" = the whole linear)."""
    d = config.kv_channels
    q, kv = config.num_attention_heads * d, config.num_query_groups * d
    rows = {"q": q, "k": kv, "v": kv, "gate": config.ffn_hidden_size, "up": config.ffn_hidden_size,
            "linear_qkv": q + 2 * kv, "linear_fc1": 2 * config.ffn_hidden_size,
            "linear_proj": config.hidden_size, "linear_fc2": config.hidden_size}
    return {part: rows[part or linear] for part in parts}


def in_features(linear: str, config: Any) -> int:
    """Global input width of ``linear``."""
    return {"linear_qkv": config.hidden_size, "linear_fc1": config.hidden_size,
            "linear_proj": config.num_attention_heads * config.kv_channels,
            "linear_fc2": config.ffn_hidden_size}[linear]


def _seeded(seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


class LoraAdapter(MegatronModule):
    """The (A, B) pairs of one adapted linear; ``forward(x)`` is what the linear's output gains."""

    def __init__(self, config: Any, *, linear: str, parts: tuple[str, ...], options: LoraOptions,
                 layer_number: int, seed: int) -> None:
        super().__init__(config)
        self.linear, self.parts, self.column = linear, parts, linear in COLUMN_PARALLEL
        self.scaling = options.scaling
        self.tp = parallel_state.get_tensor_model_parallel_world_size()
        tp_rank = parallel_state.get_tensor_model_parallel_rank()
        r, width = options.lora_rank, in_features(linear, config)
        self.dropout = torch.nn.Dropout(options.lora_dropout) if options.lora_dropout else None
        dtype = config.params_dtype
        for part, rows in part_sizes(linear, parts, config).items():
            a = torch.empty(r, width)
            torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5),
                                           generator=_seeded(seed, f"{layer_number}.{linear}.{part}"))
            if not self.column:
                a = a.chunk(self.tp, dim=1)[tp_rank]  # sharded like the input
            b_rows = rows // self.tp if self.column else rows
            self.register_parameter(self.name_of("A", part), torch.nn.Parameter(a.to(dtype).contiguous()))
            self.register_parameter(self.name_of("B", part), torch.nn.Parameter(torch.zeros(b_rows, r, dtype=dtype)))

    @staticmethod
    def name_of(matrix: str, part: str) -> str:
        """Parameter name: ``lora_A`` (whole linear) or ``lora_A_q`` (one projection)."""
        return f"lora_{matrix}" + (f"_{part}" if part else "")

    def pair(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, self.name_of("A", part)), getattr(self, self.name_of("B", part))

    def _dropped(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is None:
            return x
        if self.column or self.tp == 1:  # replicated input: the same mask on every TP rank
            return self.dropout(x)
        with tensor_parallel.get_cuda_rng_tracker().fork():  # a shard: its own mask
            return self.dropout(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [s, b, in (/ TP for row-parallel)]
        x = self._dropped(x)
        outputs = []
        for part in self.parts:
            a, b = self.pair(part)
            h = F.linear(x, a)  # [s, b, r]
            if self.column:  # replicated h feeds sharded B: its gradient sums over TP ranks
                h = tensor_parallel.copy_to_tensor_model_parallel_region(h)
            else:  # partial sums of the sharded input
                h = tensor_parallel.reduce_from_tensor_model_parallel_region(h)
            outputs.append(F.linear(h, b))
        return self._combine(outputs) * self.scaling

    def _combine(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """The projections' outputs in the linear's local layout (q/k/v interleaved per group)."""
        if len(outputs) == 1 and self.parts == ("",):
            return outputs[0]
        full = LORA_PARTS[self.linear]  # the projections' order in the fused output
        shape = outputs[0].shape[:-1]
        pieces = dict(zip(self.parts, outputs, strict=True))
        if self.linear == "linear_qkv":
            groups = self.config.num_query_groups // self.tp
            grouped = [pieces[p].reshape(*shape, groups, -1) if p in pieces
                       else outputs[0].new_zeros(*shape, groups, self._rows(p) // self.config.num_query_groups)
                       for p in full]
            return torch.cat(grouped, dim=-1).reshape(*shape, -1)
        return torch.cat([pieces[p] if p in pieces else outputs[0].new_zeros(*shape, self._rows(p) // self.tp)
                          for p in full], dim=-1)

    def _rows(self, part: str) -> int:
        return part_sizes(self.linear, (part,), self.config)[part]

    def hook(self, module: torch.nn.Module, args: tuple, output: tuple) -> tuple:
        """Forward hook on the adapted linear: (output + adapter(input), bias)."""
        return (output[0] + self(args[0]), *output[1:])

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (),
                           metadata: dict | None = None) -> dict:
        """A/B as sharded tensors: TP axis 0 of B (column) or 1 of A (row); fused fc1's B as
        [gate; up] halves like the fc1 weight, so every TP layout reads the same global tensors."""
        state = self.state_dict(prefix="", keep_vars=True)
        axis = {self.name_of("B", p): 0 for p in self.parts} if self.column else {
            self.name_of("A", p): 1 for p in self.parts}
        sharded = make_sharded_tensors_for_checkpoint(state, prefix, axis, sharded_offsets)
        if self.linear == "linear_fc1" and self.parts == ("",):
            key = f"{prefix}{self.name_of('B', '')}"
            sharded[key] = apply_swiglu_sharded_factory(sharded[key], sharded_offsets)
        return sharded


def add_lora_adapters(chunk: torch.nn.Module, options: LoraOptions, *, seed: int) -> None:
    """Give every decoder layer of ``chunk`` (a GPTModel) its adapters and freeze everything else."""
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear

    for param in chunk.parameters():
        param.requires_grad = False
    for layer in chunk.decoder.layers:
        for linear, parts in options.adapted().items():
            parent = getattr(layer, PARENT[linear])
            wrapped = getattr(parent, linear)
            if type(wrapped) not in (ColumnParallelLinear, RowParallelLinear):
                raise ValueError(f"LoRA adapters wrap megatron-core's local parallel linears, not "
                                 f"{type(wrapped).__name__}: add --transformer-impl local")
            adapter = LoraAdapter(layer.config, linear=linear, parts=parts, options=options,
                                  layer_number=layer.layer_number, seed=seed)
            parent.add_module(linear + ADAPTER_SUFFIX, adapter)
            getattr(parent, linear).register_forward_hook(adapter.hook)

