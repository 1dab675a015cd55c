"""Where training stands: the resumable counters a checkpoint restores besides model,
optimizer, LR schedule and RNG (torchtitan's ``Stateful``: ``state_dict``/``load_state_dict``).

Names are Megatron-LM's; ``checkpointing.py`` stores them in Megatron-LM's places (iteration and
FLOPs at the top of the common state, consumed samples in its ``args``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(kw_only=True)
class TrainState:
    """The training position: iterations done, samples consumed, FLOPs spent."""

    iteration: int = 0
    """Iterations completed."""
    consumed_train_samples: int = 0
    """Training sequences consumed (the data position to resume from)."""
    num_floating_point_operations_so_far: float = 0.0
    """Model FLOPs of all iterations so far."""

    def state_dict(self) -> dict[str, Any]:
        """The counters by name."""
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the counters from ``state_dict()``'s keys (missing keys count from 0)."""
        self.iteration = int(state.get("iteration", 0))
        self.consumed_train_samples = int(state.get("consumed_train_samples", 0))
        self.num_floating_point_operations_so_far = float(
            state.get("num_floating_point_operations_so_far", 0.0))
        unknown = set(state) - {f.name for f in fields(self)}
        assert not unknown, f"unknown TrainState keys {sorted(unknown)}"
