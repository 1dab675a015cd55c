"""comparison.png: one legend outside the panels, so it covers no bar (it sat inside each panel before)."""

from __future__ import annotations

from megatron_telecom.evaluation.compare import comparison_figure

TELEQNA = ("Lexicon", "Research overview", "Research publications", "Standards overview",
           "Standards specifications", "overall")


def _runs() -> dict[str, dict[str, float]]:
    """Four runs (as the quickstart compares) with tall bars in every category, and both baselines."""
    runs = {}
    for i, label in enumerate(("base", "cpt", "sft", "dpo")):
        metrics = {f"perplexity/split/{name}/heldout.jsonl/perplexity": 20.0 + i for name in ("telecom", "general")}
        for category in TELEQNA:
            metrics |= {f"teleqna/options-0shot/{category}/acc": 0.9 - 0.05 * i,
                        f"teleqna/options-0shot/{category}/random": 0.25,
                        f"teleqna/options-0shot/{category}/majority": 0.4}
        runs[label] = metrics
    return runs


def test_the_legend_lies_outside_every_panel_and_names_runs_then_baselines():
    import matplotlib.pyplot as plt

    fig = comparison_figure(_runs())
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends
        assert [t.get_text() for t in legend.get_texts()] == ["base", "cpt", "sft", "dpo", "random", "majority"]
        box = legend.get_window_extent(renderer)
        assert [ax.get_title() for ax in fig.axes] == ["teleqna options-0shot accuracy", "perplexity"]
        for ax in fig.axes:
            assert ax.get_legend() is None
            assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()
            assert len(ax.patches) == 4 * len(ax.get_xticks())  # every run's bar is drawn
            assert not any(box.overlaps(bar.get_window_extent(renderer)) for bar in ax.patches)
        figure_box = fig.bbox
        assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 and box.y1 <= figure_box.y1  # not cut off
    finally:
        plt.close(fig)
