"""Training and validation loss curves (PNG) from the metrics JSONL the trainer appends to.

The file is `--log-metrics-file`: one record per iteration (`lm_loss`) and one per evaluation
(`validation`: loss per dataset of the blend, e.g. telecom vs general replay), and one per in-loop
benchmark evaluation (`benchmarks`: accuracy and baselines per benchmark; `heldout_perplexity`),
drawn in a second panel beside the loss. After a resume an iteration can appear twice; the last record wins, as in `training/metrics.py`.
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


def read_benchmark_curves(path: str | Path) -> dict[str, dict[int, float]]:
    """``{"<benchmark> acc" | "<benchmark> majority" | "<input> perplexity": value by iteration}``."""
    curves: dict[str, dict[int, float]] = {}
    for record in read_jsonl(path):
        for name, summary in record.get("benchmarks", {}).items():
            for key in ("acc", "acc_norm", "random", "majority"):
                if key in summary.get("overall", {}):
                    curves.setdefault(f"{name} {key}", {})[record["iteration"]] = summary["overall"][key]
        for name, figures in record.get("heldout_perplexity", {}).items():
            curves.setdefault(f"{Path(name).name} perplexity", {})[record["iteration"]] = figures["perplexity"]
    return curves


def _plot_benchmarks(ax, curves: dict[str, dict[int, float]]) -> None:
    """Accuracy (solid) with its baselines (dashed) on ``ax``, perplexity on a twin axis."""
    for name, points in sorted(curves.items()):
        if name.endswith(" perplexity"):
            continue
        style = "--" if name.endswith((" random", " majority")) else "-o"
        ax.plot(list(points), list(points.values()), style, label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("accuracy")
    ax.set_title("telecom benchmarks (in-loop)")
    ax.grid(alpha=0.3)
    perplexity = {n: p for n, p in curves.items() if n.endswith(" perplexity")}
    if perplexity:
        twin = ax.twinx()
        for name, points in sorted(perplexity.items()):
            twin.plot(list(points), list(points.values()), ":s", color="0.3", label=name)
        twin.set_ylabel("held-out perplexity")
        twin.legend(fontsize=7, loc="upper right")
    ax.legend(fontsize=7, loc="upper left")


def plot_loss_curves(metrics: str | Path, output: str | Path,
                     title: str = "") -> tuple[dict[int, float], dict[str, dict[int, float]]]:
    """Write a PNG of the training loss and each validation set's loss; return the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, valid = read_loss_curves(metrics)
    benchmarks = read_benchmark_curves(metrics)
    fig, axes = plt.subplots(1, 2 if benchmarks else 1, figsize=(13 if benchmarks else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    if benchmarks:
        _plot_benchmarks(axes[0][1], benchmarks)
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
    for name, points in sorted(read_benchmark_curves(config.metrics).items()):
        a, b = min(points), max(points)
        print(f"{name}: {points[a]:.4f} (iteration {a}) -> {points[b]:.4f} (iteration {b})")
    print(f"loss curves -> {config.output}")
