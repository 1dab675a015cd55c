"""megatron-telecom: turn general LLMs into telecom LLMs by continual pretraining on megatron-core."""

from megatron_telecom.version import __version__

__all__ = ["__version__"]
