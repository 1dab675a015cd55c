"""The GPU kit's report: every figure in OUT/kit.json, the ones people read in OUT/summary.txt."""

from __future__ import annotations

from pathlib import Path

from megatron_telecom.atomic import atomic_write_json, atomic_write_text


def _num(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


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
    return []


def summary_text(report: dict) -> str:
    """The readable summary of a kit report."""
    device = report["device"]
    lines = [f"GPU kit: {device['name']} (torch {device['torch']}, CUDA {device['cuda']}, "
             f"peak bf16 {_num(device['peak_bf16_tflops'], '.0f', ' TFLOP/s')}"
             f"{', CPU mode' if device['cpu_mode'] else ''}), {report['seconds']:.0f}s",
             f"command: {report['command']}"]
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
