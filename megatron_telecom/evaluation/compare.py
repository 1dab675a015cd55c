"""Side-by-side comparison of results files: every metric with differences, and a PNG.

Each file is one run (e.g. base, then continually pretrained); differences are against the first.
Metrics are the union over the files; a run without a metric shows ``-``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from megatron_telecom.atomic import atomic_file, atomic_write_text
from megatron_telecom.evaluation.results import benchmark_sections, format_table, read_results

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PERPLEXITY_METRICS = ("perplexity", "bits_per_byte")
ACCURACY_METRICS = ("acc", "acc_norm", "random", "majority")
GENERATIVE_METRICS = ("exact_match", "f1", "rouge1", "rouge2", "rougeL", "bleu", "chrf")
"""Of generative runs (``open_eval``); ROUGE-L is the one their PNG panel draws per category."""
PANEL_METRICS = {"acc": "accuracy", "rougeL": "ROUGE-L"}
BASELINES = ("random", "majority")
"""Drawn as markers over each accuracy panel's bars, from the first run's sample."""


def flatten(results: dict) -> dict[str, float]:
    """``{metric name: value}`` of a results file, e.g. ``teleqna/options-0shot/Lexicon/acc``."""
    metrics = {}
    for name, r in results.get("perplexity", {}).items():
        for key in PERPLEXITY_METRICS:
            metrics[f"perplexity/{name}/{key}"] = r[key]
    for benchmark, runs in benchmark_sections(results).items():
        for run, r in runs.items():
            for group, m in [*r["categories"].items(), ("overall", r["overall"])]:
                for key in ACCURACY_METRICS + GENERATIVE_METRICS:
                    if key in m:
                        metrics[f"{benchmark}/{run}/{group}/{key}"] = m[key]
    return metrics


def comparison_table(runs: dict[str, dict[str, float]]) -> str:
    """Every metric of every run, with the difference of each run to the first."""
    labels = list(runs)
    names = list(dict.fromkeys(n for metrics in runs.values() for n in metrics))
    header = ["metric", *labels, *[f"{lab} - {labels[0]}" for lab in labels[1:]]]
    rows = []
    inputs = list(dict.fromkeys(n.split("/", 1)[1].rsplit("/", 1)[0] for n in names
                                if n.startswith("perplexity/")))
    short = dict(zip(inputs, _short_names(inputs), strict=True))  # as the PNG names them
    for name in names:
        values = [runs[lab].get(name) for lab in labels]
        cells = ["-" if v is None else f"{v:.4f}" for v in values]
        diffs = ["-" if v is None or values[0] is None else f"{v - values[0]:+.4f}" for v in values[1:]]
        head, _, key = name.rpartition("/")
        label = f"perplexity/{short[head[len('perplexity/'):]]}/{key}" if name.startswith("perplexity/") else name
        rows.append([label, *cells, *diffs])
    return format_table(header, rows)


def comparison_figure(runs: dict[str, dict[str, float]]) -> Figure:
    """The Figure: accuracy (multiple choice) or ROUGE-L (generative) per category, one panel per benchmark
    and run config, and perplexity per input."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {n for metrics in runs.values() for n in metrics}
    panels = sorted({(n.rsplit("/", 2)[0], n.rsplit("/", 1)[1]) for n in names
                     if not n.startswith("perplexity/") and n.rsplit("/", 1)[1] in PANEL_METRICS})
    panels += [("perplexity", "perplexity")] if any(n.startswith("perplexity/") for n in names) else []
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(6 * max(len(panels), 1), 4.8), squeeze=False,
                             layout="constrained")
    for ax, (panel, metric) in zip(axes[0], panels):
        suffix = "/" + metric
        keys = sorted(n for n in names if n.startswith(panel + "/") and n.endswith(suffix))
        groups = _short_names([k[len(panel) + 1: -len(suffix)] for k in keys])
        width = 0.8 / len(runs)
        for i, (label, metrics) in enumerate(runs.items()):
            ax.bar([g + i * width for g in range(len(keys))], [metrics.get(k, 0) for k in keys], width, label=label)
        if suffix == "/acc":  # the random-guess and majority-answer baselines of the first run's sample
            first = next(iter(runs.values()))
            for baseline, style in zip(BASELINES, ("k_", "r_")):
                ax.plot([g + 0.4 - width / 2 for g in range(len(keys))],
                        [first.get(k[: -len(suffix)] + "/" + baseline, float("nan")) for k in keys], style,
                        markersize=30, label=baseline)
        ax.set_xticks([g + 0.4 - width / 2 for g in range(len(keys))], groups, rotation=30, ha="right", fontsize=8)
        ax.set_title(panel.replace("/", " ") + (" " + PANEL_METRICS[metric] if metric in PANEL_METRICS else ""))
    # one legend for every panel, above them: inside an axes it covered the bars
    entries = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
    entries = dict(sorted(entries.items(), key=lambda e: e[0] in BASELINES))  # the runs first
    fig.legend(entries.values(), entries.keys(), loc="outside upper center", ncol=len(entries), fontsize=8)
    return fig


def plot(runs: dict[str, dict[str, float]], path: Path) -> None:
    """Write ``comparison_figure`` as a PNG."""
    import matplotlib.pyplot as plt

    fig = comparison_figure(runs)
    try:
        with atomic_file(path, "wb") as f:
            fig.savefig(f, format="png", dpi=120)
    finally:
        plt.close(fig)


def _short_names(paths: list[str]) -> list[str]:
    """The fewest trailing path parts that still tell the paths apart (telecom/heldout.jsonl)."""
    parts = [Path(p).parts for p in paths]
    for depth in range(1, max((len(x) for x in parts), default=1) + 1):
        names = ["/".join(x[-depth:]) for x in parts]
        if len(set(names)) == len(names):
            return names
    return list(paths)


def compare(paths: list[str], labels: list[str] | None, output_dir: str | Path) -> str:
    """Write ``comparison.txt`` and ``comparison.png`` under ``output_dir``; return the table."""
    labels = labels or [Path(p).stem for p in paths]
    if len(labels) != len(paths):
        raise ValueError(f"--labels: {len(labels)} labels for {len(paths)} results files; give one per file")
    if len(set(labels)) != len(labels):
        raise ValueError(f"--labels {' '.join(labels)}: labels must differ")
    runs = {label: flatten(read_results(p)) for label, p in zip(labels, paths)}
    table = comparison_table(runs)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / "comparison.txt", table + "\n")
    plot(runs, output_dir / "comparison.png")
    return table
