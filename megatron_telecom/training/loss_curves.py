"""Training and validation loss curves (PNG) from the metrics JSONL the trainer appends to.

The file is `--log-metrics-file`: one record per iteration (`lm_loss`) and one per evaluation
(`validation`: loss per dataset of the blend, e.g. telecom vs general replay), and one per in-loop
benchmark evaluation (`benchmarks`: accuracy and baselines per benchmark; `heldout_perplexity`),
drawn in a panel beside the loss. A DPO run's iteration records also hold TRL's reward metrics
(`rewards/accuracies`, `rewards/margins`, `rewards/chosen`, `rewards/rejected`): the loss axis is then
"DPO loss" (a sigmoid loss per pair, not nats per token) and the rewards get two panels of their own.
After a resume an iteration can appear twice; the last record wins, as in `training/metrics.py`.
`LossCurvesConfig` is the flag surface of `tools/plot_loss_curves.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from megatron_telecom.arguments import positional
from megatron_telecom.atomic import atomic_file
from megatron_telecom.jsonl import read_jsonl

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REWARD_PREFIX = "rewards/"
"""Per-iteration metrics of DPO (TRL's names) start with it; their presence marks a DPO run."""


@dataclass(kw_only=True)
class LossCurvesConfig:
    """Which metrics file to plot, and where."""

    metrics: str = positional()
    """The JSONL the trainer wrote with --log-metrics-file."""
    output: str
    """PNG to write."""
    title: str = ""
    """Plot title (empty: "continual pretraining loss", or "DPO loss" for a DPO run)."""


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


def read_reward_curves(path: str | Path) -> dict[str, dict[int, float]]:
    """``{"rewards/<name>": value by iteration}`` of a DPO run's metrics JSONL (empty for other stages)."""
    curves: dict[str, dict[int, float]] = {}
    for record in read_jsonl(path):
        if "lm_loss" in record:
            for name, value in record.items():
                if name.startswith(REWARD_PREFIX):
                    curves.setdefault(name, {})[record["iteration"]] = value
    return curves


def _plot(ax, points: dict[int, float], style: str = "-o", **kwargs) -> None:
    """One curve (iteration -> value) on ``ax``."""
    ax.plot(list(points), list(points.values()), style, **kwargs)


def _plot_rewards(accuracy_ax, margin_ax, rewards: dict[str, dict[int, float]]) -> None:
    """Reward accuracy with its 0.5 chance line; the margin beside the chosen and rejected rewards."""
    _plot(accuracy_ax, rewards.get("rewards/accuracies", {}), markersize=3, label="rewards/accuracies")
    accuracy_ax.axhline(0.5, color="0.5", linestyle="--", linewidth=1, label="chance (0.5)")
    accuracy_ax.set_ylim(-0.05, 1.05)
    accuracy_ax.set_ylabel("pairs with chosen reward > rejected")
    _plot(margin_ax, rewards.get("rewards/margins", {}), markersize=3, color="C3", label="rewards/margins")
    for name, color in (("rewards/chosen", "C2"), ("rewards/rejected", "C1")):
        _plot(margin_ax, rewards.get(name, {}), "--", color=color, linewidth=1, label=name)
    margin_ax.axhline(0.0, color="0.5", linewidth=0.8)
    margin_ax.set_ylabel("reward (beta x log-ratio to reference)")
    for ax, name in ((accuracy_ax, "rewards/accuracies"), (margin_ax, "rewards/margins")):
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


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


def loss_curves_figure(train: dict[int, float], valid: dict[str, dict[int, float]],
                       rewards: dict[str, dict[int, float]], benchmarks: dict[str, dict[int, float]],
                       title: str = "") -> Figure:
    """The matplotlib Figure: the loss, then DPO's two reward panels and the in-loop benchmarks when logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = 1 + 2 * bool(rewards) + bool(benchmarks)
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels if panels > 1 else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    if rewards:
        _plot_rewards(axes[0][1], axes[0][2], rewards)
    if benchmarks:
        _plot_benchmarks(axes[0][-1], benchmarks)
    loss = "DPO loss" if rewards else "lm loss"  # DPO's is a sigmoid loss per pair, not nats per token
    _plot(ax, train, "-", label=f"train {loss}", color="0.6", linewidth=1)
    for name, points in sorted(valid.items()):
        _plot(ax, points, label=f"validation: {name}")
    ax.set_xlabel("iteration")
    ax.set_ylabel(loss if rewards else "lm loss (nats/token)")
    ax.set_title(title or ("DPO loss" if rewards else "continual pretraining loss"))
    ax.grid(alpha=0.3)
    ax.legend()
    for panel in axes[0]:
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations, not 1.5
    fig.tight_layout()
    return fig


def plot_loss_curves(metrics: str | Path, output: str | Path,
                     title: str = "") -> tuple[dict[int, float], dict[str, dict[int, float]]]:
    """Write the PNG of the losses (and DPO's rewards, in-loop benchmarks); return (train, validation) curves."""
    import matplotlib.pyplot as plt

    train, valid = read_loss_curves(metrics)
    fig = loss_curves_figure(train, valid, read_reward_curves(metrics), read_benchmark_curves(metrics), title)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_file(output, "wb") as f:
            fig.savefig(f, format="png", dpi=120)
    finally:
        plt.close(fig)
    return train, valid


def report_loss_curves(config: LossCurvesConfig) -> None:
    """Plot, then print the first and last value of each curve."""
    train, valid = plot_loss_curves(config.metrics, config.output, config.title)
    rewards = read_reward_curves(config.metrics)
    first, last = min(train), max(train)
    print(f"train {'DPO' if rewards else 'lm'} loss {train[first]:.3f} (iteration {first}) -> "
          f"{train[last]:.3f} (iteration {last})")
    for name, points in sorted(valid.items()):
        a, b = min(points), max(points)
        print(f"validation {name}: {points[a]:.3f} (iteration {a}) -> {points[b]:.3f} (iteration {b})")
    for name, points in sorted({**rewards, **read_benchmark_curves(config.metrics)}.items()):
        a, b = min(points), max(points)
        print(f"{name}: {points[a]:.4f} (iteration {a}) -> {points[b]:.4f} (iteration {b})")
    print(f"loss curves -> {config.output}")
