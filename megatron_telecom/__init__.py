"""megatron-telecom: turn general LLMs into telecom LLMs by continual pretraining on megatron-core."""

from megatron_telecom.runtime.jit import install_jit_fuser_choice
from megatron_telecom.version import __version__

install_jit_fuser_choice()  # before anything imports megatron-core: see runtime/jit.py

__all__ = ["__version__"]
