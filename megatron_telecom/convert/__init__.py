"""Hugging Face <-> Megatron weight mapping for the Llama/Mistral family."""
