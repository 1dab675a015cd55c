"""A real SLURM run of the curation pipeline on a private one-node cluster.

The cluster is conftest's `slurm_cluster` (its own munged, slurmctld and slurmd under a
temporary folder, see _slurm_helpers); it skips when the SLURM/munge binaries are absent or we are not root.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from _slurm_helpers import wait_queue_empty

ROOT = Path(__file__).resolve().parents[1]


def test_curation_on_a_real_slurm_cluster(slurm_cluster, curation_rfc_dir, tmp_path):
    env = slurm_cluster
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("rfc768", "rfc3311", "rfc3515"):
        shutil.copy(curation_rfc_dir / f"{name}.txt", inputs / f"{name}.txt")
    shutil.copy(curation_rfc_dir / "rfc3515.txt", inputs / "rfc3515-copy.txt")
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "tools" / "curate_corpus.py"), "--input", str(inputs),
               "--output-dir", str(out), "--executor", "slurm", "--partition", "debug",
               "--tasks", "2", "--workers", "-1", "--mem-per-cpu-gb", "1", "--time", "00:10:00",
               "--minhash-buckets", "2", "--job-name", "curtest",
               "--env-command", f"source {sys.prefix}/bin/activate; cd {ROOT}"]
    submitted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    assert "SLURM jobs submitted" in submitted.stdout
    wait_queue_empty(env)
    report_run = subprocess.run([*command, "--report-only"], env=env, capture_output=True,
                                text=True, timeout=120)
    assert report_run.returncode == 0, report_run.stderr[-3000:] + _slurm_logs(out)
    report = json.loads((out / "curation_stats.json").read_text())
    assert report["output"]["documents"] == 3, _slurm_logs(out)
    assert report["removed_by_reason"] == {"exact_duplicate": 1}
    docs = [json.loads(line) for shard in out.glob("*.jsonl") for line in shard.open()]
    assert sorted(d["doc_id"] for d in docs) == ["rfc3311", "rfc3515", "rfc768"]
    resubmit = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert resubmit.returncode == 0 and "Skipping launch" in resubmit.stderr  # all complete


def _slurm_logs(out: Path) -> str:
    logs = sorted((out / "_work" / "logs").glob("*/slurm_logs/*.out"))
    return "\n".join(f"== {p}\n{p.read_text()[-1500:]}" for p in logs[-4:])
