"""Checkpoints and disk space: a save on a full disk, and --most-recent-k retention, on a real tmpfs.

One job in a private mount namespace (``unshare --mount``; ``--user --map-root-user`` when not root)
with a small tmpfs as --save, two ranks each run:
- run A (to iteration 5) saves iteration 1 (it fits) and fails saving iteration 2 (the disk is full);
- the tmpfs is grown to hold 4.5 checkpoints; run B resumes from iteration 1 with
  ``--most-recent-k 2 --save-interval 1`` to iteration 5: without retention its 5 checkpoints would not fit.
The two job tests are marked torchrun (left out of --fast); the rule and flag tests are plain unit tests.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from _dist_helpers import (
    run_subprocess,
    subprocess_env,
    tiny_train_args,
    torchrun_cmd,
    train_losses,
    write_token_dataset,
)

from megatron_telecom.models.checkpoint_format import TRACKER_FILENAME, read_tracker
from megatron_telecom.training.requeue import read_history
from megatron_telecom.training.retention import checkpoints_to_delete, remove_old_checkpoints

RUN_TIMEOUT_S = 300
NOT_MOUNTED = 97  # the script's exit code when the tmpfs cannot be mounted

SCRIPT = r"""
disk=$1 out=$2 a=$3 b=$4
mount -t tmpfs -o size=5m tmpfs "$disk" || exit 97
timeout 300 sh -c "$a" >"$out/a.out" 2>"$out/a.err"; echo $? >"$out/a.rc"
cp -a "$disk/ckpt" "$out/after_full"
checkpoint_kib=$(du -sk "$disk/ckpt/iter_0000001" | cut -f1)
mount -o remount,size=$((checkpoint_kib * 9 / 2))k "$disk" || exit 98
timeout 300 sh -c "$b" >"$out/b.out" 2>"$out/b.err"; echo $? >"$out/b.rc"
LC_ALL=C ls "$disk/ckpt" >"$out/b.ls"
"""


def _namespace() -> list[str]:
    private = ["--mount", "--propagation", "private"]
    return ["unshare", *private] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", *private]


@pytest.fixture(scope="module")
def space_runs(tmp_path_factory) -> Path:
    """Run A (full disk) then B (retention, resumed) in one namespace; their outputs under the returned folder."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: no private mount namespace for a small tmpfs")
    root = tmp_path_factory.mktemp("space")
    prefix = write_token_dataset(root / "tokens")
    disk, out = root / "disk", root / "out"
    disk.mkdir()
    out.mkdir()

    def job(name: str, iters: int, **flags: object) -> str:
        args = tiny_train_args(prefix, cache=root / "cache", train_iters=iters, save=disk / "ckpt", save_interval=1,
                               log_metrics_file=out / f"{name}.jsonl", **flags)
        return shlex.join(torchrun_cmd(2, "megatron_telecom.pretrain", args))

    try:
        proc = run_subprocess([*_namespace(), "sh", "-c", SCRIPT, "sh", str(disk), str(out), job("a", 5),
                               job("b", 5, most_recent_k=2)], env=subprocess_env(), timeout=2 * RUN_TIMEOUT_S + 60)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"namespace job timed out: {err.stderr}") from err
    if proc.returncode == NOT_MOUNTED or not (out / "a.rc").exists():
        pytest.skip(f"no private mount namespace with a tmpfs here (exit {proc.returncode}): {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    return out


def _log(out: Path, name: str) -> str:
    return (out / f"{name}.out").read_text() + (out / f"{name}.err").read_text()


@pytest.mark.torchrun
def test_full_disk_save_keeps_the_previous_checkpoint_and_ends_in_one_line(space_runs):
    out = space_runs
    err = (out / "a.err").read_text()
    assert (out / "a.rc").read_text().strip() == "1", _log(out, "a")[-4000:]  # torchrun: a worker exited 2
    assert "exitcode  : 2" in err, err[-4000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-4000:]
    found = re.fullmatch(r"error: disk full: saving (\S+) failed with (\S+ \S+) free of 5\.0 MiB on (\S+) "
                         r"\((\S+ \S+) after removing the partial folder\); latest_checkpointed_iteration\.txt "
                         r"still names iteration 1 \(\S+ MiB\): free space, --save elsewhere, or keep fewer "
                         r"checkpoints with --most-recent-k", errors[0])
    assert found, errors[0]
    saving, free, where, _ = found.groups()
    assert saving.endswith("/disk/ckpt/iter_0000002") and where.endswith("/disk/ckpt") and free.endswith(("B", "KiB"))
    assert "Traceback" not in "".join(line for line in err.splitlines() if line.startswith("[rank"))
    after = out / "after_full"
    assert read_tracker(after) == 1
    assert sorted(p.name for p in after.glob("iter_*")) == ["iter_0000001"]  # the partial folder is gone
    assert (after / "iter_0000001" / "metadata.json").is_file()
    assert read_history(after)[-1]["reason"].startswith("failed: disk full")


@pytest.mark.torchrun
def test_retention_keeps_the_last_k_and_the_resumed_from_one_and_resume_works(space_runs):
    out = space_runs
    assert (out / "b.rc").read_text().strip() == "0", _log(out, "b")[-6000:]
    assert (out / "b.ls").read_text().split() == ["iter_0000001", "iter_0000004", "iter_0000005", TRACKER_FILENAME,
                                                  "run_history.jsonl", "tensorboard"]
    log = (out / "b.out").read_text()
    assert "loaded checkpoint" in log and "iter_0000001" in log
    for deleted, at in ((2, 4), (3, 5)):  # each after the save that made it older than the 2 newest
        assert f"--most-recent-k 2: deleted the checkpoints of iterations {deleted}\n" \
               f"saved checkpoint at iteration {at:8d}" in log, log
    losses_a, losses_b = train_losses(out / "a.jsonl"), train_losses(out / "b.jsonl")
    assert sorted(losses_b) == [2, 3, 4, 5]
    assert losses_b[2] == losses_a[2]  # B redid iteration 2 from A's checkpoint 1 exactly


def test_retention_rule_on_a_folder(tmp_path):
    """The K newest up to the new one, the resumed-from one, never a newer leftover; crash leftovers go."""
    assert checkpoints_to_delete([1, 2, 3, 4, 5], newest=5, most_recent_k=2, keep=None) == [1, 2, 3]
    assert checkpoints_to_delete([1, 2, 3, 4, 5], newest=5, most_recent_k=2, keep=2) == [1, 3]
    assert checkpoints_to_delete([3, 4, 9], newest=4, most_recent_k=1, keep=None) == [3]
    assert checkpoints_to_delete([4], newest=4, most_recent_k=3, keep=None) == []
    for iteration in (2, 4, 6, 8, 12):
        (tmp_path / f"iter_{iteration:07d}").mkdir()
    (tmp_path / "iter_0000010.tmp").mkdir()  # a save in progress elsewhere: never touched
    (tmp_path / "iter_0000001.deleting").mkdir()  # a deletion a crash interrupted
    (tmp_path / TRACKER_FILENAME).write_text("8\n")
    (tmp_path / "run_history.jsonl").write_text('{"event": "start", "iteration": 0}\n'
                                                '{"event": "start", "iteration": 2}\n')
    assert remove_old_checkpoints(tmp_path, 8, 2) == [4]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "iter_0000002", "iter_0000006", "iter_0000008", "iter_0000010.tmp", "iter_0000012"]
    (tmp_path / TRACKER_FILENAME).write_text("6\n")
    with pytest.raises(AssertionError, match="tracker names the new checkpoint"):
        remove_old_checkpoints(tmp_path, 8, 2)


def test_most_recent_k_is_a_flag_and_a_yaml_key_and_needs_one_checkpoint(tmp_path):
    from megatron_telecom.training.arguments import parse_config

    argv = tiny_train_args(tmp_path / "tokens", cache=tmp_path, train_iters=2, save=tmp_path / "ckpt")
    assert parse_config([*argv, "--most-recent-k", "3"]).checkpoint.most_recent_k == 3
    (tmp_path / "run.yaml").write_text("most_recent_k: 2\n")
    assert parse_config(["--config", str(tmp_path / "run.yaml"), *argv]).checkpoint.most_recent_k == 2
    assert parse_config(argv).checkpoint.most_recent_k is None
    with pytest.raises(ValueError, match=r"--most-recent-k 0: keep at least 1 checkpoint"):
        parse_config([*argv, "--most-recent-k", "0"])
