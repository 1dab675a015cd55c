"""Training and validation loss curves (PNG) from the metrics JSONL the trainer appends to.

The file is `--log-metrics-file`: one record per iteration (`lm_loss`) and one per evaluation
(`validation`: loss per dataset of the blend, e.g. telecom vs general replay). After a resume an
iteration can appear twice; the last record wins, as in `training/metrics.py`.
`LossCurvesConfig` is the flag surface of `tools/plot_loss_curves.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from megatron_telecom.arguments import positional
from megatron_telecom.atomic import temporary_path
from megatron_telecom.jsonl import read_jsonl


@dataclass(kw_only=True)
class LossCurvesConfig:
    """Which metrics file to plot, and where."""

    metrics: str = positional()
    """The JSONL the trainer wrote with --log-metrics-file."""
    output: str
    """PNG to write."""
    title: str = ""
    """Plot title (empty: "continual pretraining loss")."""


def read_loss_curves(path: str | Path) -> tuple[dict[int, float], dict[str, dict[int, float]]]:
    """(training lm loss by iteration, {validation set: loss by iteration}) of a metrics JSONL."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"metrics file {path} does not exist (written by --log-metrics-file)")
    train: dict[int, float] = {}
    valid: dict[str, dict[int, float]] = {}
    for record in read_jsonl(path):
        if "lm_loss" in record:
            train[record["iteration"]] = record["lm_loss"]
        for name, loss in record.get("validation", {}).items():
            valid.setdefault(name, {})[record["iteration"]] = loss
    if not train:
        raise ValueError(f"{path} holds no training iterations")
    return train, valid


def plot_loss_curves(metrics: str | Path, output: str | Path,
                     title: str = "") -> tuple[dict[int, float], dict[str, dict[int, float]]]:
    """Write a PNG of the training loss and each validation set's loss; return the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, valid = read_loss_curves(metrics)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(list(train), list(train.values()), label="train lm loss", color="0.6", linewidth=1)
    for name, points in sorted(valid.items()):
        ax.plot(list(points), list(points.values()), marker="o", label=f"validation: {name}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("lm loss (nats/token)")
    ax.set_title(title or "continual pretraining loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(output)
    fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    tmp.replace(output)
    return train, valid


def report_loss_curves(config: LossCurvesConfig) -> None:
    """Plot, then print the first and last loss of each curve."""
    train, valid = plot_loss_curves(config.metrics, config.output, config.title)
    first, last = min(train), max(train)
    print(f"train lm loss {train[first]:.3f} (iteration {first}) -> {train[last]:.3f} (iteration {last})")
    for name, points in sorted(valid.items()):
        a, b = min(points), max(points)
        print(f"validation {name}: {points[a]:.3f} (iteration {a}) -> {points[b]:.3f} (iteration {b})")
    print(f"loss curves -> {config.output}")
