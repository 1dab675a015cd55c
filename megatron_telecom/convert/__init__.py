"""Hugging Face <-> Megatron checkpoint conversion and the built-in base models."""
