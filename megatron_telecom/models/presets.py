"""Architecture presets: what each supported base model is (shapes, RoPE, norm), nothing more.

Values follow the models' published Hugging Face configs. How a model is split across devices
is the runtime's business, not a preset's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["PRESETS", "ModelPreset", "architecture_fields", "get_preset", "preset_from_dict"]

# ModelPreset fields that are not the architecture (a label, a run default, an init setting).
NON_ARCHITECTURE_FIELDS = ("name", "seq_length", "init_method_std", "hf_architecture")


@dataclass(frozen=True, kw_only=True)
class ModelPreset:
    """A Llama-family decoder: RMSNorm, SwiGLU MLP, RoPE, GQA, no biases, untied embeddings."""

    name: str
    """Preset name used on the command line (--model)."""
    num_layers: int
    """Transformer layers."""
    hidden_size: int
    """Model width."""
    ffn_hidden_size: int
    """Width of the SwiGLU MLP (size of each of the gate and up projections)."""
    num_attention_heads: int
    """Query heads."""
    num_query_groups: int
    """Key/value heads (GQA groups); equal to num_attention_heads for plain multi-head attention."""
    vocab_size: int
    """Vocabulary of the model's tokenizer, before padding."""
    seq_length: int
    """Default training sequence length (the base model's pretraining context)."""
    max_position_embeddings: int
    """Longest context the model supports."""
    rotary_base: float
    """RoPE theta."""
    rope_scaling: bool = False
    """Apply Llama-3.1 ("llama3") RoPE frequency scaling with the four parameters below."""
    rope_scaling_factor: float = 8.0
    """Llama-3.1 RoPE scaling factor (used when rope_scaling is set)."""
    rope_scaling_low_freq_factor: float = 1.0
    """Llama-3.1 RoPE scaling: wavelengths above original/low_freq_factor are fully scaled."""
    rope_scaling_high_freq_factor: float = 4.0
    """Llama-3.1 RoPE scaling: wavelengths below original/high_freq_factor are kept."""
    rope_scaling_original_max_position_embeddings: int = 8192
    """Llama-3.1 RoPE scaling: the context length the unscaled frequencies were trained for."""
    head_dim: int | None = None
    """Width of one attention head when it is not hidden_size / num_attention_heads."""
    norm_epsilon: float = 1e-5
    """RMSNorm epsilon."""
    init_method_std: float = 0.02
    """Std of the normal weight init (for training from scratch; ignored when loading weights)."""
    untie_embeddings_and_output_weights: bool = True
    """Separate input embedding and output projection (all supported models untie them)."""
    hf_architecture: str | None = None
    """Hugging Face architecture class the checkpoint converter maps to."""

    def __post_init__(self) -> None:
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"preset {self.name}: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_query_groups:
            raise ValueError(
                f"preset {self.name}: num_attention_heads {self.num_attention_heads} is not "
                f"divisible by num_query_groups {self.num_query_groups}"
            )
        if self.seq_length > self.max_position_embeddings:
            raise ValueError(
                f"preset {self.name}: seq_length {self.seq_length} exceeds "
                f"max_position_embeddings {self.max_position_embeddings}"
            )

    @property
    def kv_channels(self) -> int:
        """Width of one attention head."""
        return self.head_dim or self.hidden_size // self.num_attention_heads


_LLAMA2_7B = ModelPreset(
    name="llama2-7b",
    num_layers=32,
    hidden_size=4096,
    ffn_hidden_size=11008,
    num_attention_heads=32,
    num_query_groups=32,
    vocab_size=32000,
    seq_length=4096,
    max_position_embeddings=4096,
    rotary_base=10000,
    norm_epsilon=1e-5,
    hf_architecture="LlamaForCausalLM",
)
_LLAMA3_8B = ModelPreset(
    name="llama3-8b",
    num_layers=32,
    hidden_size=4096,
    ffn_hidden_size=14336,
    num_attention_heads=32,
    num_query_groups=8,
    vocab_size=128256,
    seq_length=8192,
    max_position_embeddings=8192,
    rotary_base=500000,
    norm_epsilon=1e-5,
    hf_architecture="LlamaForCausalLM",
)
# Llama 3.1 8B is Llama 3 8B with a 128K context reached by RoPE frequency scaling.
_LLAMA31_8B = replace(
    _LLAMA3_8B,
    name="llama3.1-8b",
    max_position_embeddings=131072,
    rope_scaling=True,
    rope_scaling_factor=8.0,
)
_MISTRAL_7B_V03 = ModelPreset(
    name="mistral-7b-v0.3",
    num_layers=32,
    hidden_size=4096,
    ffn_hidden_size=14336,
    num_attention_heads=32,
    num_query_groups=8,
    vocab_size=32768,
    seq_length=32768,
    max_position_embeddings=32768,
    rotary_base=1000000,
    norm_epsilon=1e-5,
    hf_architecture="MistralForCausalLM",
)

# Tiny CPU presets: the real models' structure at a size a 2-core CI box trains in seconds.
_TINY_SHAPE = dict(
    num_layers=2,
    hidden_size=64,
    ffn_hidden_size=176,
    num_attention_heads=4,
    num_query_groups=2,
    seq_length=128,
    max_position_embeddings=1024,
)
_TINY = ModelPreset(name="tiny", vocab_size=32000, rotary_base=10000, **_TINY_SHAPE)
_TINY_LLAMA3 = ModelPreset(
    name="tiny-llama3", vocab_size=128256, rotary_base=500000, rope_scaling=True, **_TINY_SHAPE
)
_TINY_MISTRAL = ModelPreset(name="tiny-mistral", vocab_size=32768, rotary_base=1000000, **_TINY_SHAPE)
_SMALL = ModelPreset(
    name="small",
    num_layers=4,
    hidden_size=512,
    ffn_hidden_size=1408,
    num_attention_heads=8,
    num_query_groups=4,
    vocab_size=32000,
    seq_length=256,
    max_position_embeddings=4096,
    rotary_base=10000,
)

PRESETS: dict[str, ModelPreset] = {
    preset.name: preset
    for preset in (
        _LLAMA2_7B,
        _LLAMA3_8B,
        _LLAMA31_8B,
        _MISTRAL_7B_V03,
        _TINY,
        _TINY_LLAMA3,
        _TINY_MISTRAL,
        _SMALL,
    )
}


def get_preset(name: str) -> ModelPreset:
    """Look a preset up by name; unknown names list the choices."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown model preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}"
        ) from None


def architecture_fields(preset: ModelPreset) -> dict[str, Any]:
    """The preset's fields that decide what the model computes (compared on --load)."""
    return {k: v for k, v in asdict(preset).items() if k not in NON_ARCHITECTURE_FIELDS}


def preset_from_dict(record: dict[str, Any], *, where: str) -> ModelPreset:
    """A preset from its ``asdict`` record (as a checkpoint stores it); unknown keys refused."""
    known = {f.name for f in fields(ModelPreset)}
    unknown = sorted(set(record) - known)
    if unknown:
        raise ValueError(f"{where}: model config has fields this version does not know: "
                         f"{', '.join(unknown)}; upgrade megatron-telecom")
    return ModelPreset(**record)
