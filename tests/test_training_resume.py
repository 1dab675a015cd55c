"""Exact resume after SIGKILL (even during a save), SIGTERM preemption, time limit, NaN stop.

Run A trains 16 iterations uninterrupted. Run B is the same job, SIGKILLed while it is writing
a checkpoint; the tracker must still name the previous checkpoint, from which B resumes to 16.
B's losses after the resume must equal A's bit for bit and the final checkpoints (weights and
optimizer state) must be identical. Dropout is on, so the RNG state must be restored too.
"""

from __future__ import annotations

import re
import shutil
import signal

import pytest
import torch
from _dist_helpers import (
    checkpoint_tensors,
    freeze_job_when,
    kill_job,
    read_jsonl,
    run_torchrun,
    signal_job,
    start_ranks,
    start_torchrun,
    tiny_train_args,
    train_losses,
    wait_for,
    write_token_dataset,
)

from megatron_telecom.models.checkpoint_format import read_tracker

pytestmark = pytest.mark.torchrun

TRAIN_ITERS = 16
SAVE_INTERVAL = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_data")
    return write_token_dataset(root / "tokens"), root / "cache"


def _args(data, save, metrics, **flags):
    prefix, cache = data
    return tiny_train_args(prefix, cache=cache, train_iters=TRAIN_ITERS, save=save,
                           save_interval=SAVE_INTERVAL, log_metrics_file=metrics,
                           hidden_dropout=0.1, attention_dropout=0.1, **flags)


def _partial_save(save_dir):
    """The iter_*.tmp folder of a save in progress, if any."""
    return next(iter(save_dir.glob("iter_*.tmp")), None)


def test_sigkill_during_save_then_exact_resume(data, tmp_path):
    run_a = tmp_path / "a"
    run_torchrun(2, _args(data, run_a, tmp_path / "a.jsonl"))
    losses_a = train_losses(tmp_path / "a.jsonl")
    assert sorted(losses_a) == list(range(1, TRAIN_ITERS + 1))

    run_b = tmp_path / "b"
    for _attempt in range(3):  # the save may finish between seeing its folder and the SIGSTOP
        shutil.rmtree(run_b, ignore_errors=True)
        job = start_torchrun(2, _args(data, run_b, tmp_path / "b.jsonl"), tmp_path / "b.log")
        try:  # freeze every process the moment the second save is under way, then kill them
            freeze_job_when(
                job, lambda: (read_tracker(run_b) or 0) >= SAVE_INTERVAL and _partial_save(run_b),
                timeout=240, what="run B to be writing its second checkpoint")
        finally:
            kill_job(job, signal.SIGKILL)
        partial = _partial_save(run_b)
        if partial is not None:
            break
    assert partial is not None, "the kill did not land during a save (3 attempts)"
    tracked = read_tracker(run_b)
    assert isinstance(tracked, int) and tracked < int(partial.name[5:12]) <= TRAIN_ITERS
    assert not (run_b / partial.name[:-4]).exists()

    # resume from the checkpoint the tracker names; the partial save is cleaned up
    run_torchrun(2, _args(data, run_b, tmp_path / "b_resumed.jsonl", load=run_b))
    resumed = train_losses(tmp_path / "b_resumed.jsonl")
    assert sorted(resumed) == list(range(tracked + 1, TRAIN_ITERS + 1))
    for iteration, loss in resumed.items():
        assert loss == losses_a[iteration], (iteration, loss, losses_a[iteration])
    assert read_tracker(run_b) == TRAIN_ITERS and not list(run_b.glob("*.tmp"))

    final_a = checkpoint_tensors(run_a / f"iter_{TRAIN_ITERS:07d}")
    final_b = checkpoint_tensors(run_b / f"iter_{TRAIN_ITERS:07d}")
    assert final_a.keys() == final_b.keys()
    assert any(k.startswith("optimizer.") for k in final_a)
    for key, tensor in final_a.items():
        assert torch.equal(tensor, final_b[key]), key


def test_sigterm_saves_and_exits_zero(data, tmp_path):
    """SLURM preemption: every process of every task gets SIGTERM (DataLoader workers and the
    helper process megatron-core's first save leaves running too); they save together, exit 0."""
    save = tmp_path / "ckpt"
    prefix, cache = data
    args = tiny_train_args(prefix, cache=cache, train_iters=100_000, save=save, save_interval=2,
                           log_metrics_file=tmp_path / "m.jsonl", num_workers=1)
    procs = start_ranks(2, args, tmp_path)
    try:
        wait_for(lambda: (tmp_path / "m.jsonl").exists()
                 and len(read_jsonl(tmp_path / "m.jsonl")) >= 3 and read_tracker(save),
                 timeout=240, what="three training iterations and a checkpoint")
        for proc in procs:  # like SLURM: every process of the task, DataLoader workers too
            signal_job(proc, signal.SIGTERM)
        codes = [proc.wait(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    log = (tmp_path / "rank0.log").read_text()
    assert codes == [0, 0], log[-3000:]
    assert "DataLoader worker" not in log, log[-3000:]
    stopped = re.search(r"exiting at iteration (\d+) on signal SIGTERM", log)
    assert stopped, log[-3000:]
    assert read_tracker(save) == int(stopped.group(1)) >= 3
    assert (save / f"iter_{int(stopped.group(1)):07d}" / "metadata.json").is_file()


def test_failed_save_ends_the_run_with_its_error(data, tmp_path):
    """An exception mid-run (here a save: a file stands where its folder goes) ends the process
    with the error; it must not hang on the DataLoader workers, which ignore SIGTERM."""
    prefix, cache = data
    save = tmp_path / "ckpt"
    save.mkdir()
    (save / "iter_0000004.tmp").write_text("in the way")
    proc = run_torchrun(1, tiny_train_args(prefix, cache=cache, train_iters=8, save=save,
                                           save_interval=2, num_workers=1),
                        timeout=120, check=False)
    assert proc.returncode != 0
    assert f"FileExistsError: [Errno 17] File exists: '{save}/iter_0000004.tmp'" in proc.stderr, \
        proc.stderr[-3000:]
    assert read_tracker(save) == 2


def test_exit_duration_saves_and_exits_zero(data, tmp_path):
    """The limit counts from process start; --load naming the still-empty --save starts fresh."""
    prefix, cache = data
    save = tmp_path / "ckpt"
    proc = run_torchrun(1, tiny_train_args(prefix, cache=cache, train_iters=100_000, save=save,
                                           load=save, exit_duration_in_mins=1e-4))
    assert "exiting at iteration 1 on time limit" in proc.stdout
    assert read_tracker(save) == 1


def test_load_without_checkpoint_is_an_error(data, tmp_path):
    """An explicit --load (even with --finetune) must not silently train from random init."""
    prefix, cache = data
    (tmp_path / "empty").mkdir()
    proc = run_torchrun(1, tiny_train_args(prefix, cache=cache, train_iters=2, finetune=True,
                                           load=tmp_path / "empty", save=tmp_path / "ckpt"),
                        check=False)
    assert proc.returncode != 0
    assert f"--load {tmp_path / 'empty'} has no latest_checkpointed_iteration.txt" in proc.stderr
    assert read_tracker(tmp_path / "ckpt") is None


def test_nan_loss_stops_naming_the_iteration(data, tmp_path):
    """With --clip-grad 0 the optimizer computes no grad norm; DDP's NaN check still stops."""
    prefix, cache = data
    proc = run_torchrun(1, tiny_train_args(prefix, cache=cache, train_iters=50, lr=1e30,
                                           min_lr=0, clip_grad=0, save=tmp_path / "ckpt",
                                           save_interval=25),
                        check=False)
    assert proc.returncode != 0
    assert re.search(r"(lm loss|grad norm) is (nan|inf) at iteration \d+: stopping",
                     proc.stderr), proc.stderr[-3000:]
    assert read_tracker(tmp_path / "ckpt") is None  # nothing saved after the blow-up


def test_distributed_optimizer_bf16_on_cpu_refuses_optimizer_resume(data, tmp_path):
    """bf16 + distributed optimizer train and save on CPU; resuming its state is refused with
    advice (megatron-core 0.16.1 bug without TE/Apex). --no-load-optim continues the iteration
    count and data but, as in Megatron-LM, restarts the LR schedule (warm-up again)."""
    prefix, cache = data
    save = tmp_path / "ckpt"

    def args(train_iters, **flags):
        return tiny_train_args(prefix, cache=cache, train_iters=train_iters, bf16=True, save=save,
                               use_distributed_optimizer=True, log_metrics_file=tmp_path / "m.jsonl",
                               **flags)

    run_torchrun(2, args(4, save_interval=2))
    assert read_tracker(save) == 4
    refused = run_torchrun(2, args(6), check=False)
    assert refused.returncode != 0
    assert "add --no-load-optim" in refused.stderr
    resumed = run_torchrun(2, args(6, no_load_optim=True))
    assert "LR schedule not loaded: it restarts at step 0" in resumed.stdout
    records = read_jsonl(tmp_path / "m.jsonl")
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[4]["consumed_samples"] == 5 * 8  # the data position carries on
    # one warm-up iteration again: back at the 3e-3 peak, then decaying
    assert records[3]["learning_rate"] < 2e-3
    assert records[4]["learning_rate"] == pytest.approx(3e-3)
    assert records[5]["learning_rate"] < records[4]["learning_rate"]
    assert read_tracker(save) == 6
