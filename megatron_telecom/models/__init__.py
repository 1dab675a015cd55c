"""Architecture presets -> megatron-core TransformerConfig + layer spec + GPTModel."""
