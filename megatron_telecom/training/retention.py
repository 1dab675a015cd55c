"""``--most-recent-k K``: keep the last K checkpoints of --save, so a week-long run does not fill its disk.

Megatron-LM has no command-line flag for this. Its ``CheckpointConfig`` names the setting
``most_recent_k`` ("number of latest checkpoint to be saved"), so that is our flag and YAML key.
(Megatron-LM's ``--save-retain-interval`` is another rule: it keeps every N-th checkpoint.)

Rules (rank 0, inside ``checkpointing.save_checkpoint``):
- deletion starts only after the new checkpoint is complete and the tracker names it, so a crash
  never leaves the tracker naming a deleted folder;
- the K newest complete ``iter_*`` folders up to the new one stay (the new one is among them);
- so does the checkpoint this run resumed from (the last ``start`` of ``run_history.jsonl``), for
  as long as this run lasts: at most K + 1 folders. A later run resumes from a newer one, and
  then the old one goes;
- a folder to delete is first renamed to ``iter_*.deleting`` (atomic), then removed, so no
  half-deleted folder ever carries a checkpoint's name; a deletion a crash interrupted is finished
  by the next save;
- folders past the new iteration (left by an earlier run that got further) are left alone.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from megatron_telecom.models.checkpoint_format import checkpoint_dir, read_tracker
from megatron_telecom.training.requeue import read_history

CHECKPOINT_FOLDER = re.compile(r"iter_(\d{7,})")
DELETING = ".deleting"
"""Suffix of a checkpoint folder being deleted."""


def checkpoint_iterations(root: str | Path) -> list[int]:
    """Iterations of the complete ``iter_*`` folders of ``root``, oldest first (no .tmp/.deleting)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = (CHECKPOINT_FOLDER.fullmatch(p.name) for p in root.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def resumed_from(root: str | Path) -> int | None:
    """The iteration the current run started from (its ``start`` record; None: none recorded)."""
    starts = [e["iteration"] for e in read_history(root) if e.get("event") == "start"]
    return starts[-1] if starts else None


def checkpoints_to_delete(iterations: list[int], *, newest: int, most_recent_k: int,
                          keep: int | None) -> list[int]:
    """The iterations older than the ``most_recent_k`` newest up to ``newest``, except ``keep``."""
    candidates = sorted(i for i in iterations if i <= newest)
    return [i for i in candidates[:-most_recent_k] if i != keep]


def remove_old_checkpoints(root: str | Path, newest: int, most_recent_k: int) -> list[int]:
    """Delete what ``checkpoints_to_delete`` names (rank 0, after the tracker names ``newest``)."""
    root = Path(root)
    assert read_tracker(root) == newest, "retention runs only once the tracker names the new checkpoint"
    doomed = checkpoints_to_delete(checkpoint_iterations(root), newest=newest, most_recent_k=most_recent_k,
                                   keep=resumed_from(root))
    for iteration in doomed:
        folder = checkpoint_dir(root, iteration)
        folder.rename(folder.with_name(folder.name + DELETING))
    for leftover in sorted(root.glob(f"iter_*{DELETING}")):  # this save's, and any a crash interrupted
        shutil.rmtree(leftover)
    return doomed
