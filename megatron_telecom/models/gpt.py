"""The GPTModel (or this rank's pipeline chunks of it) from a preset, a TransformerConfig
(``models/transformer_config.py``) and a layer spec (``models/backends.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from megatron_telecom.models.presets import ModelPreset

if TYPE_CHECKING:  # megatron is imported lazily so the CPU shim can be installed first
    from megatron.core.models.gpt import GPTModel
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.transformer_config import TransformerConfig


def build_gpt_model(
    preset: ModelPreset,
    config: TransformerConfig,
    *,
    padded_vocab_size: int,
    seq_length: int | None = None,
    pre_process: bool | None = None,
    post_process: bool | None = None,
    vp_stage: int | None = None,
    layer_spec: ModuleSpec,
    document_positions: bool = False,
) -> GPTModel:
    """One GPTModel (or one pipeline chunk of it) on the current device; not DDP-wrapped.

    ``pre_process``/``post_process`` default to whether this rank (and ``vp_stage``) holds the
    first/last pipeline stage; megatron's parallel_state must be initialised. ``layer_spec`` is
    ``backends.get_layer_spec(config, backends)``. ``document_positions``
    (``ModelBackends.document_positions``): RoPE at the ``position_ids`` the model is called with
    (``models/document_positions.py``), for packed documents on the local spec.
    """
    from megatron.core import parallel_state

    if document_positions:
        from megatron_telecom.models.document_positions import DocumentPositionGPTModel as GPTModel
    else:
        from megatron.core.models.gpt import GPTModel

    seq_length = preset.seq_length if seq_length is None else seq_length
    if seq_length > preset.max_position_embeddings:
        raise ValueError(
            f"--seq-length {seq_length} exceeds {preset.name}'s max_position_embeddings "
            f"{preset.max_position_embeddings}"
        )
    ignore_virtual = vp_stage is None
    if pre_process is None:
        pre_process = parallel_state.is_pipeline_first_stage(ignore_virtual, vp_stage)
    if post_process is None:
        post_process = parallel_state.is_pipeline_last_stage(ignore_virtual, vp_stage)
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec,
        vocab_size=padded_vocab_size,
        max_sequence_length=seq_length,
        pre_process=pre_process,
        post_process=post_process,
        share_embeddings_and_output_weights=not preset.untie_embeddings_and_output_weights,
        position_embedding_type="rope",
        rotary_base=preset.rotary_base,
        rope_scaling=False,  # applied below with all four llama3 parameters
        vp_stage=vp_stage,
    )
    if preset.rope_scaling:
        _apply_llama3_rope_scaling(model, preset)
    return model


def _apply_llama3_rope_scaling(model: GPTModel, preset: ModelPreset) -> None:
    """Llama-3.1 RoPE scaling with the preset's factor, frequency factors and original context.

    megatron-core 0.16.1's GPTModel passes only the factor (the other three fixed at Llama-3.1's
    1, 4 and 8192), so its own scaling function is applied here with all four.
    """
    rope = model.rotary_pos_emb
    rope.inv_freq = rope._apply_scaling(
        rope.inv_freq,
        factor=preset.rope_scaling_factor,
        low_freq_factor=preset.rope_scaling_low_freq_factor,
        high_freq_factor=preset.rope_scaling_high_freq_factor,
        original_max_position_embeddings=preset.rope_scaling_original_max_position_embeddings,
    )


def build_gpt_model_chunks(
    preset: ModelPreset,
    config: TransformerConfig,
    *,
    padded_vocab_size: int,
    seq_length: int | None = None,
    layer_spec: ModuleSpec,
    document_positions: bool = False,
) -> list[GPTModel]:
    """This rank's model chunks: one per virtual pipeline stage (one without interleaving).

    All chunks share ``layer_spec`` and ``document_positions``. On GPUs the chunks are
    moved to the current device.
    """
    vpp = config.virtual_pipeline_model_parallel_size
    stages: list[int | None] = list(range(vpp)) if vpp is not None else [None]
    chunks = [
        build_gpt_model(
            preset,
            config,
            padded_vocab_size=padded_vocab_size,
            seq_length=seq_length,
            vp_stage=stage,
            layer_spec=layer_spec,
            document_positions=document_positions,
        )
        for stage in stages
    ]
    if torch.cuda.is_available():
        chunks = [chunk.cuda(torch.cuda.current_device()) for chunk in chunks]
    return chunks
