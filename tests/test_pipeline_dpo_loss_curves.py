"""The DPO loss-curve PNG: a "DPO loss" axis and panels for rewards/accuracies and rewards/margins.

The metrics file holds the trainer's own records: the golden DPO run (tests/golden/losses/tiny_dpo.json,
recorded from `--log-metrics-file` of a real tiny DPO run), written back as its per-iteration JSONL.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from megatron_telecom.training.loss_curves import (
    loss_curves_figure,
    read_benchmark_curves,
    read_loss_curves,
    read_reward_curves,
)

REPO = Path(__file__).resolve().parents[1]
REWARDS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")


@pytest.fixture
def dpo_metrics(tmp_path) -> tuple[Path, dict[str, list[float]]]:
    """The golden DPO run's records as the trainer writes them (one JSON line per iteration)."""
    golden = json.loads((REPO / "tests" / "golden" / "losses" / "tiny_dpo.json").read_text())
    run = next(iter(golden["machines"].values()))
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(
        json.dumps({"iteration": i + 1, "lm_loss": loss, "grad_norm": 1.0, "learning_rate": 1e-3,
                    "consumed_samples": 4 * (i + 1), **{k: run[k][i] for k in REWARDS}}) + "\n"
        for i, loss in enumerate(run["lm_loss"])))
    return path, run


def test_dpo_figure_has_a_dpo_loss_axis_and_reward_panels(dpo_metrics):
    import matplotlib.pyplot as plt

    path, run = dpo_metrics
    train, valid = read_loss_curves(path)
    rewards = read_reward_curves(path)
    assert sorted(rewards) == sorted(REWARDS)
    fig = loss_curves_figure(train, valid, rewards, read_benchmark_curves(path))
    try:
        loss, accuracies, margins = fig.axes
        assert (loss.get_ylabel(), loss.get_title()) == ("DPO loss", "DPO loss")
        assert "nats" not in loss.get_ylabel()
        assert accuracies.get_title() == "rewards/accuracies" and margins.get_title() == "rewards/margins"
        lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
        assert list(lines["train DPO loss"].get_ydata()) == run["lm_loss"]
        assert list(lines["rewards/accuracies"].get_ydata()) == run["rewards/accuracies"]
        assert list(lines["rewards/margins"].get_ydata()) == run["rewards/margins"]
        assert list(lines["rewards/margins"].get_xdata()) == list(range(1, len(run["lm_loss"]) + 1))
        assert accuracies.get_ylim() == (-0.05, 1.05)
    finally:
        plt.close(fig)


def test_tool_writes_the_dpo_png_and_prints_the_rewards(dpo_metrics, tmp_path, capsys):
    path, run = dpo_metrics
    main = runpy.run_path(str(REPO / "tools" / "plot_loss_curves.py"))["main"]
    png = tmp_path / "dpo_loss_curves.png"
    assert main([str(path), "--output", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 30_000
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"train DPO loss {run['lm_loss'][0]:.3f} (iteration 1)")
    assert f"rewards/accuracies: 0.0000 (iteration 1) -> {run['rewards/accuracies'][-1]:.4f} (iteration 5)" in out


def test_a_pretraining_run_keeps_one_panel_in_nats_per_token(tmp_path):
    import matplotlib.pyplot as plt

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iteration": 1, "lm_loss": 4.0}\n{"iteration": 2, "lm_loss": 3.5}\n')
    assert read_reward_curves(path) == {}
    fig = loss_curves_figure(*read_loss_curves(path), {}, {})
    try:
        (ax,) = fig.axes
        assert (ax.get_ylabel(), ax.get_title()) == ("lm loss (nats/token)", "continual pretraining loss")
    finally:
        plt.close(fig)
