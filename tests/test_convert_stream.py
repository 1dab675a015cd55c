"""Streaming conversion (issue 31): the same bits as the in-memory converter on odd configs, in
both directions, and a conversion whose memory is capped at half the model's bytes completes.

The in-memory path (``streaming=False``) is the converter as it was before streaming; it stays
only as this reference. Checkpoints are compared through PyTorch's own DCP reader, exports byte
for byte.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from _convert_helpers import write_tiny_hf_model
from _dist_helpers import REPO, run_subprocess, subprocess_env
from safetensors import safe_open
from safetensors.torch import load_file, save_file

# name -> (tiny variant, vocabulary, config.json edits, bf16 weights, target TP, target PP)
ODD_CONFIGS = {
    "gqa-untied-vocab-padding-tp2-pp2": ("llama-gqa", 300, {}, False, 2, 2),  # 300 -> 512 rows
    "tied": ("tied", 500, {}, False, 1, 1),  # 500 -> 512 rows
    "mistral-sliding-window": ("mistral", 512, {"sliding_window": 1024}, False, 1, 1),
    "llama3-bf16": ("llama3", 512, {}, True, 1, 1),
}
SMALL_SHARD_BYTES = 60_000  # several safetensors shards and an index
CONVERT_BOTH = """import json, sys
from megatron_telecom.convert.hf_to_mcore import convert_hf_to_mcore
from megatron_telecom.convert.mcore_to_hf import export_mcore_to_hf
for job in json.loads(sys.argv[1]):
    for name, streaming in (("in-memory", False), ("streaming", True)):
        mcore = f"{job['out']}/{name}/mcore"
        convert_hf_to_mcore(job["hf"], mcore, target_tensor_parallel_size=job["tp"],
                            target_pipeline_model_parallel_size=job["pp"], streaming=streaming)
        for dtype in job["dtypes"]:
            export_mcore_to_hf(mcore, f"{job['out']}/{name}/hf-{dtype}", dtype=dtype,
                               max_shard_bytes=job["shard"], streaming=streaming)
"""


def _odd_hf_model(folder: Path, variant: str, vocab: int, edits: dict, bf16: bool) -> Path:
    write_tiny_hf_model(folder, variant, vocab_size=vocab)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **edits}, indent=2))
    if bf16:
        weights = load_file(folder / "model.safetensors")
        save_file({k: v.to(torch.bfloat16) for k, v in weights.items()},
                  folder / "model.safetensors", metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def both_converters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each odd config converted and exported by both converters (one subprocess)."""
    base = tmp_path_factory.mktemp("convert_stream")
    jobs = []
    for name, (variant, vocab, edits, bf16, tp, pp) in ODD_CONFIGS.items():
        hf = _odd_hf_model(base / name / "source", variant, vocab, edits, bf16)
        jobs.append({"hf": str(hf), "out": str(base / name), "tp": tp, "pp": pp,
                     "shard": SMALL_SHARD_BYTES,
                     "dtypes": ["float32", "bfloat16"] if bf16 else ["float32"]})
    proc = run_subprocess([sys.executable, "-c", CONVERT_BOTH, json.dumps(jobs)],
                          env=subprocess_env(), timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return {name: base / name for name in ODD_CONFIGS}


def stored_checkpoint(folder: Path) -> tuple[dict, dict]:
    """(DCP metadata per key, every stored tensor and object) read by PyTorch's DCP reader."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint import load as dcp_load
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    state: dict = {}
    described = {}
    for key, item in metadata.items():
        if isinstance(item, TensorStorageMetadata):
            state[key] = torch.empty(item.size, dtype=item.properties.dtype)
            described[key] = (tuple(item.size), item.properties,
                              sorted((tuple(c.offsets), tuple(c.sizes)) for c in item.chunks))
        else:
            state[key] = io.BytesIO()
            described[key] = "object"
    dcp_load(state, storage_reader=FileSystemReader(str(folder)), no_dist=True)
    return described, state


@pytest.mark.parametrize("name", sorted(ODD_CONFIGS))
def test_streaming_checkpoint_is_the_in_memory_converters(name, both_converters):
    old, new = (both_converters[name] / kind / "mcore" for kind in ("in-memory", "streaming"))
    old_described, old_state = stored_checkpoint(old / "release")
    new_described, new_state = stored_checkpoint(new / "release")
    assert new_described == old_described  # keys, global shapes, dtypes, chunk layout
    for key, tensor in old_state.items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(new_state[key].view(torch.uint8), tensor.view(torch.uint8)), key
        else:
            assert new_state[key] == tensor, key  # megatron's _extra_state objects
    for filename in ("common.pt", "metadata.json"):
        assert (new / "release" / filename).read_bytes() == (old / "release" / filename).read_bytes()
    for path in (old / "tokenizer").iterdir():
        assert (new / "tokenizer" / path.name).read_bytes() == path.read_bytes()
    tracker = "latest_checkpointed_iteration.txt"
    assert (new / tracker).read_text() == (old / tracker).read_text() == "release\n"


@pytest.mark.parametrize("name", sorted(ODD_CONFIGS))
def test_streaming_export_is_byte_identical(name, both_converters):
    root = both_converters[name]
    exports = sorted(p.name for p in (root / "streaming").glob("hf-*"))
    assert exports == (["hf-bfloat16", "hf-float32"] if "bf16" in name else ["hf-float32"])
    for export in exports:
        old, new = root / "in-memory" / export, root / "streaming" / export
        files = sorted(p.name for p in old.iterdir())
        assert sorted(p.name for p in new.iterdir()) == files
        assert "model.safetensors.index.json" in files and len(files) > 6  # several shards
        for filename in files:
            expected = (old / filename).read_bytes()
            if filename == "README.md":  # names the checkpoint it came from
                expected = expected.replace(str(root / "in-memory").encode(),
                                            str(root / "streaming").encode())
            assert (new / filename).read_bytes() == expected, f"{export}/{filename}"
    source = load_file(root / "source" / "model.safetensors")  # a round trip, not only twice
    back = {}  # the same bits: the export in the source's dtype
    for shard in (root / "streaming" / exports[0]).glob("*.safetensors"):
        back.update(load_file(shard))
    assert sorted(back) == sorted(source)
    assert all(torch.equal(back[k].view(torch.uint8), v.view(torch.uint8)) for k, v in source.items())


# ---- memory capped by the kernel -----------------------------------------------------------

CAPPED_SHAPE = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=20,
                    num_attention_heads=8, num_key_value_heads=2, vocab_size=8192,
                    max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=False)
CAPPED_RUN = """import sys
from megatron_telecom.convert.hf_to_mcore import convert_hf_to_mcore
from megatron_telecom.convert.mcore_to_hf import export_mcore_to_hf
hf, mcore, back, streaming = sys.argv[1:]
convert_hf_to_mcore(hf, mcore, streaming=streaming == "1")
if back != "-":
    export_mcore_to_hf(mcore, back)
"""


def memory_cgroup_parent() -> tuple[Path, str]:
    """(folder under which this process may create a memory cgroup, its limit file name), or
    skip saying why. cgroup v2: ``memory.max``; v1: ``memory.limit_in_bytes`` (the same hard
    limit: reclaim, then the OOM killer). The new group is a child of this process's own, so
    every limit above still applies."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("a memory cgroup needs Linux and root")
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").is_file():
            folder = Path("/sys/fs/cgroup") / path.lstrip("/")
            if "memory" in (folder / "cgroup.subtree_control").read_text().split():
                return folder, "memory.max"
        if "memory" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            if (folder / "memory.limit_in_bytes").is_file():
                return folder, "memory.limit_in_bytes"
    pytest.skip("no memory cgroup controller this process may use (cgroup v2 without memory "
                "in subtree_control, or no v1 memory hierarchy)")


def run_memory_capped(argv: list[str], limit: int) -> tuple[int, str, str]:
    """(exit code, stderr, the group's peak) of ``argv`` run in a new memory cgroup of hard limit
    ``limit`` bytes, without swap; the group is removed after."""
    parent, limit_file = memory_cgroup_parent()
    group = parent / f"megatron-telecom-test-{os.getpid()}"
    try:
        group.mkdir()
    except OSError as err:
        pytest.skip(f"cannot create a cgroup under {parent}: {err}")
    try:
        for name, value in ((limit_file, str(limit)), ("memory.memsw.limit_in_bytes", str(limit)),
                            ("memory.swap.max", "0")):
            if (group / name).is_file():
                (group / name).write_text(value)
        # the shell joins the group, then becomes the command: only the command is capped
        proc = run_subprocess(["sh", "-c", 'echo $$ > "$0" && exec "$@"',
                               str(group / "cgroup.procs"), *argv],
                              env=subprocess_env(), timeout=600, cwd=REPO)
        peak_file = group / ("memory.peak" if limit_file == "memory.max"
                             else "memory.max_usage_in_bytes")
        peak = peak_file.read_text().strip() if peak_file.is_file() else "?"
    finally:
        group.rmdir()
    return proc.returncode, proc.stderr, f"{int(peak) / 1e9:.2f} GB" if peak.isdigit() else peak


def test_conversion_capped_at_half_the_model_bytes_completes(tmp_path):
    """Both directions in one process under a kernel limit of half the model's fp32 bytes (the
    group's page cache counts too, and is reclaimed); the in-memory converter is killed under
    the same limit, so the limit is real."""
    import transformers

    config = transformers.LlamaConfig(**CAPPED_SHAPE, architectures=["LlamaForCausalLM"])
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in transformers.LlamaForCausalLM(config).state_dict().items()}
    source = tmp_path / "hf"
    source.mkdir()
    config.save_pretrained(source)
    generator = torch.Generator().manual_seed(0)
    save_file({k: torch.randn(s, generator=generator) * 0.02 for k, s in shapes.items()},
              source / "model.safetensors", metadata={"format": "pt"})
    model_bytes = sum(4 * s.numel() for s in shapes.values())
    limit = model_bytes // 2
    convert = [sys.executable, "-c", CAPPED_RUN, str(source)]
    code, stderr, peak = run_memory_capped(
        [*convert, str(tmp_path / "mcore"), str(tmp_path / "back"), "1"], limit)
    print(f"model {model_bytes / 1e9:.2f} GB fp32, limit {limit / 1e9:.2f} GB: streaming both "
          f"directions exit {code}, the group's peak {peak} (page cache included)")
    assert code == 0, f"failed under a {limit / 1e9:.2f} GB limit (exit {code}): {stderr[-3000:]}"
    code, _, peak = run_memory_capped([*convert, str(tmp_path / "in-memory"), "-", "0"], limit)
    print(f"in-memory hf-to-mcore under the same limit: exit {code}, the group's peak {peak}")
    assert code != 0  # killed by the kernel: the limit holds
    with safe_open(str(source / "model.safetensors"), framework="pt") as before, \
            safe_open(str(tmp_path / "back" / "model.safetensors"), framework="pt") as after:
        assert sorted(after.keys()) == sorted(before.keys())
        for key in before.keys():
            assert torch.equal(after.get_tensor(key), before.get_tensor(key)), key
