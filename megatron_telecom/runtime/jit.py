"""megatron-core's JIT fuser, chosen before megatron-core imports: off where CUDA is absent.

megatron-core decorates its fused kernels (bias-GeLU/SwiGLU, bias-dropout-add, ...) with
``torch.compile`` when its modules import (``megatron.core.jit.jit_fuser``), which imports
TorchDynamo and Inductor's compiler: ~2 CPU-seconds of every trainer, converter or evaluator start
(a process that builds a torch optimizer still imports TorchDynamo itself, which leaves ~1.2 s
saved there). Without CUDA those kernels are never called (the fusions are off on CPU, see
models/transformer_config.py), so there the loader below runs megatron's own
``disable_jit_fuser()`` right after ``megatron.core.jit`` executes, before any kernel is decorated.
With CUDA nothing changes. Installed by ``megatron_telecom/__init__.py``; it imports nothing itself.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

JIT_MODULE = "megatron.core.jit"


class JitFuserChoice(importlib.abc.MetaPathFinder):
    """Finds ``megatron.core.jit`` as usual; its module, once executed, turns the fuser off on CPU."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != JIT_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            import torch  # megatron.core.jit has just imported it

            if not torch.cuda.is_available():
                module.disable_jit_fuser()

        spec.loader.exec_module = exec_module  # this spec's own loader object
        return spec


def install_jit_fuser_choice() -> None:
    """Put the finder first on ``sys.meta_path`` (once; no effect if megatron-core is imported)."""
    if not any(isinstance(finder, JitFuserChoice) for finder in sys.meta_path):
        sys.meta_path.insert(0, JitFuserChoice())
