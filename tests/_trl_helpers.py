"""TRL trainers that record their own loss (and metrics) of every step, unrounded (TRL's log rounds).

Other test files import this module read-only.
"""

from __future__ import annotations

from typing import Any


def recording(trainer_class: type, recorded: list[dict[str, float]], metric_names: tuple[str, ...] = ()) -> type:
    """``trainer_class`` whose ``compute_loss`` appends {"lm_loss": loss, metric: last value} to ``recorded``."""

    class Recording(trainer_class):
        def compute_loss(self, *args: Any, **kwargs: Any) -> Any:
            loss = super().compute_loss(*args, **kwargs)
            metrics = self._metrics["train"]
            recorded.append({"lm_loss": float((loss[0] if isinstance(loss, tuple) else loss).detach()),
                             **{name: metrics[name][-1] for name in metric_names}})
            return loss

    return Recording
