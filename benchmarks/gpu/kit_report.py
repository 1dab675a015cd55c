"""The GPU kit's report: every figure in OUT/kit.json, the ones people read in OUT/summary.txt.

The summary opens with one table, a row per run of every step (stage, run, backend, tokens/s,
MFU, peak memory, its check against the CPU reference); each step's details follow.
"""

from __future__ import annotations

from pathlib import Path

from megatron_telecom.atomic import atomic_write_json, atomic_write_text

# the stage each step's skipped/failed row is listed under
STEP_STAGES = {"a_correctness": "CPT", "b_speed": "CPT", "c_attention": "CPT",
               "d_conversion": "convert", "e_fp8": "CPT", "f_sft": "SFT", "g_dpo": "DPO",
               "h_evaluation": "eval"}
TABLE_COLUMNS = ("stage", "run", "backend", "tokens/s", "MFU", "peak mem", "vs CPU reference")


def _num(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def max_rel_diff(values: list[float], reference: list[float]) -> float:
    """max |value - reference| / |reference| over two equally long, non-empty lists."""
    if len(values) != len(reference) or not values:
        raise AssertionError(f"cannot compare {len(values)} values with {len(reference)}")
    return max(abs(v - r) / abs(r) for v, r in zip(values, reference))


def versus(rel: float, tolerance: float, *, against: str = "CPU") -> str:
    """A check's table text: the relative difference, against what, and its tolerance."""
    prefix = "" if against == "CPU" else f"vs {against} "
    return f"{prefix}{rel:.1e} (tol {tolerance:g})"


def table_row(stage: str, run: str, backend: str, figures: dict | None = None, *,
              check: str = "-") -> dict:
    """One row of the summary table; ``figures`` gives tokens/s, MFU and peak memory."""
    figures = figures or {}
    return {"stage": stage, "run": run, "backend": backend,
            "tokens_per_s": figures.get("tokens_per_s"), "mfu_pct": figures.get("mfu_pct"),
            "peak_memory_gib": figures.get("peak_memory_gib"), "check": check}


def _table_rows(report: dict) -> list[dict]:
    """Every step's rows; a skipped or failed step gets one saying so."""
    rows = []
    for key, step in report["steps"].items():
        if step["status"] == "ok":
            rows += step.get("rows", [])
            continue
        why = step["reason"] if step["status"] == "skipped" else step["error"].splitlines()[0]
        rows.append(table_row(STEP_STAGES.get(key, key), key, "-",
                              check=f"{step['status']}: {why[:70]}"))
    return rows


def summary_table(report: dict) -> list[str]:
    """The table's lines: stage, run, backend, tokens/s, MFU, peak memory, check vs the CPU."""
    cells = [TABLE_COLUMNS] + [
        (r["stage"], r["run"], r["backend"], _num(r["tokens_per_s"], ",.0f"),
         _num(r["mfu_pct"], ".1f", "%"), _num(r["peak_memory_gib"], ".1f", " GiB"), r["check"])
        for r in _table_rows(report)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(TABLE_COLUMNS))]
    right = {3, 4, 5}  # numbers
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                      for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in cells]


def _speed_line(label: str, figures: dict) -> str:
    if "error" in figures:
        return f"  {label:<22s} failed: {figures['error']}"
    return (f"  {label:<22s} mbs {figures['micro_batch_size']:>3d}  "
            f"{_num(figures['tokens_per_s'], ',.0f')} tokens/s  "
            f"{_num(figures['tflops_per_device'], '.3g')} TFLOP/s  "
            f"MFU {_num(figures.get('mfu_pct'), '.1f', '%')}  "
            f"peak {_num(figures.get('peak_memory_gib'), '.1f', ' GiB')}")


def _details(key: str, step: dict) -> list[str]:
    """Readable lines for one successful step."""
    if key == "a_correctness":
        return [f"  device vs CPU fp32 losses: max rel diff {step['device_vs_cpu_max_rel_diff']:.2e}"
                f" (tolerance {step['device_vs_cpu_tolerance']:g}) over {step['iterations']} iters",
                f"  bf16 losses: {step['bf16_losses'][0]:.4f} -> {step['bf16_losses'][-1]:.4f}",
                f"  SIGKILL after checkpoint {step['killed_after_checkpoint']}, resumed losses "
                f"bitwise identical: {step['resume_bitwise_identical']}"]
    if key == "b_speed":
        return [f"  {step['parameters']:,} parameters, core attention "
                f"{step['core_attention']}, trainer overhead {step['overhead_pct']:.1f}%",
                _speed_line("trainer", {**step["trainer"],
                                        "peak_memory_gib": step["peak_memory_gib"]}),
                _speed_line("bare megatron-core", step["bare"])]
    if key == "c_attention":
        return [_speed_line(backend, figures) for backend, figures in step.items()
                if isinstance(figures, dict)]
    if key == "d_conversion":
        return [f"  {name}: exit {r['exit_code']} in {r['seconds']:.0f}s: "
                + " | ".join(r["output_tail"][-3:]) for name, r in step.items()
                if isinstance(r, dict)]
    if key == "e_fp8":
        return [f"  FP8 hybrid vs bf16: max rel loss diff {step['max_rel_loss_diff']:.4f} "
                f"(tolerance {step['tolerance']:g}), speed-up {step['speedup']:.2f}x"]
    return _stage_details(key, step)


def _losses(values: list[float]) -> str:
    return " ".join(f"{v:.6f}" for v in values)


def _stage_details(key: str, step: dict) -> list[str]:
    """Readable lines for the stage steps (kit_stages.py)."""
    if key == "f_sft":
        return [f"  {step['backend']}: device losses {_losses(step['device']['losses'])}",
                f"  {' ' * len(step['backend'])}  CPU losses    {_losses(step['cpu']['losses'])}"]
    if key == "g_dpo":
        ref = step["device"]["reference"]
        return [f"  {step['backend']}: reference pass {ref['pass_seconds']:.2f}s, log-probs max rel "
                f"diff {step['logps_max_rel_diff']:.1e}; DPO losses {_losses(step['device']['losses'])}"
                f" (first - ln 2 = {step['first_loss_minus_ln2']:.1e})"]
    if key == "h_evaluation":
        d, c = step["device"], step["cpu"]
        return [f"  exam ({step['options']} options): acc {d['exam']['overall']['acc']:.3f} "
                f"(CPU {c['exam']['overall']['acc']:.3f}); held-out perplexity "
                f"{d['perplexity']:.2f} (CPU {c['perplexity']:.2f}); "
                f"{d['scored_tokens']} tokens scored in {d['benchmark_seconds']:.2f}s"]
    return []


def summary_text(report: dict) -> str:
    """The readable summary of a kit report."""
    device = report["device"]
    lines = [f"GPU kit: {device['name']} (torch {device['torch']}, CUDA {device['cuda']}, "
             f"peak bf16 {_num(device['peak_bf16_tflops'], '.0f', ' TFLOP/s')}"
             f"{', CPU mode' if device['cpu_mode'] else ''}), {report['seconds']:.0f}s",
             f"command: {report['command']}", "", *summary_table(report), ""]
    for key, step in report["steps"].items():
        status = step["status"]
        head = f"{key}: {status} ({step['seconds']:.1f}s)"
        if status == "skipped":
            head += f": {step['reason']}"
        lines.append(head)
        if status == "failed":
            lines.append(f"  {step['error'][:2000]}")
        elif status == "ok":
            lines.extend(_details(key, step))
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict) -> None:
    """OUT/kit.json (all figures) and OUT/summary.txt, each written atomically."""
    atomic_write_json(out / "kit.json", report)
    atomic_write_text(out / "summary.txt", summary_text(report))
