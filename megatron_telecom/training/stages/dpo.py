"""Stage 3 (DPO) on the pretraining loop: preference pairs, stored reference log-probs, sigmoid loss.

``DPOStage`` is the trainer's stage for ``--stage dpo`` (``training/stages/__init__.py``); nothing
else of the loop changes (TP/PP/VPP/DP, checkpoints, exact resume, requeue, logging).

- **Samples.** A pair is one sample: ``tools/preprocess_dpo.py`` stores it as one packed sequence
  of two documents, chosen then rejected (prompt included in both), so SFT's sample building,
  block-diagonal attention / THD packing and per-document RoPE (`training/stages/sft.py`) serve it as
  they are, and a pair's halves are always in the same microbatch. The sample also carries the
  pair's index and its two reference log-probs.
- **Reference log-probs, computed once** (``--compute-reference-logprobs``, the stage's one-off
  pass): the same flags as the training run, the reference checkpoint as ``--load``; the model is built and loaded as for
  training, at any TP/PP, and megatron-core's forward-only schedule runs every pair once, in
  order. The per-pair sums of the completion tokens' log-probs (float64 sums of the fp32
  per-token values) go to ``<data>_reference_logps.npy`` ([pairs, 2]: chosen, rejected) with the
  fingerprint ``<data>_reference_logps.json`` (`fingerprint`). Training reads them and never
  holds a reference model; a missing or stale fingerprint is refused in one line naming what
  changed (`check_fingerprint`).
- **Loss** (TRL ``DPOTrainer``'s ``sigmoid``): ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))``
  per pair, with ``pi``/``ref`` the summed completion log-probs; ``--dpo-sft-loss-weight w`` adds
  ``w x`` the mean NLL over every chosen completion token of the global batch (RPO; TRL's
  ``loss_type=["sigmoid", "sft"], loss_weights=[1, w]``).
- **Normalisation.** ``loss_func`` returns (sum over the microbatch's pairs, number of pairs);
  with ``calculate_per_token_loss`` megatron-core sums both over microbatches, all-reduces the
  pair count over data-parallel ranks and divides the gradients by it: the loss is the mean over
  the pairs of the global batch, TRL's mean over its batch. The SFT term of a microbatch is
  scaled by (global pairs / global chosen tokens), both known before the schedule runs
  (`normalise_sft_term`), so summed and divided likewise it is the global per-token mean.
- **Metrics**, TRL's names, means over the global batch's pairs: ``rewards/chosen`` =
  ``beta (pi_c - ref_c)``, ``rewards/rejected``, ``rewards/accuracies`` (chosen > rejected),
  ``rewards/margins``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from megatron_telecom.atomic import atomic_file, atomic_write_json
from megatron_telecom.data.indexed import bin_path, idx_path
from megatron_telecom.data.tokenizers import tokenizer_identity
from megatron_telecom.models.checkpoint_format import StoredCheckpoint, open_checkpoint
from megatron_telecom.runtime.distributed import get_device
from megatron_telecom.training.stages import ModelNeeds, Stage, sft
from megatron_telecom.training.utils import print_rank_0

if TYPE_CHECKING:
    from megatron_telecom.training.checkpointing import CheckpointSource
    from megatron_telecom.training.config import PretrainConfig

METRICS = ("lm loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")
FORMAT_VERSION = 1
LOGPS_DTYPE = "float64"


@dataclass(frozen=True)
class DPORun:
    """What the DPO stage knows beyond the trainer's run: its pairs and the identities it checks."""

    pairs: int
    tokenizer: dict[str, Any]
    """`tokenizer_identity` of the run's tokenizer."""
    reference: dict[str, Any]
    """`checkpoint_identity` of the --load checkpoint (the reference, when computing log-probs)."""


def reference_paths(prefix: str | Path) -> tuple[Path, Path]:
    """(log-probs .npy, fingerprint .json) stored beside the DPO dataset ``prefix``."""
    return Path(f"{prefix}_reference_logps.npy"), Path(f"{prefix}_reference_logps.json")


class DPODataset(sft.SFTDataset):
    """SFT samples of pairs, plus ``pair_index`` and ``ref_logps`` ([2]: chosen, rejected).

    ``in_order``: sample i is pair i mod n (the reference pass); otherwise shuffled per epoch as SFT.
    """

    def __init__(self, prefix: str, *, seq_length: int, num_samples: int, seed: int, pad_token_id: int,
                 reference_logps: np.ndarray | None = None, in_order: bool = False) -> None:
        super().__init__(prefix, seq_length=seq_length, num_samples=num_samples, seed=seed,
                         pad_token_id=pad_token_id)
        index = self.packed.tokens_index
        if not np.all(np.diff(index.document_indices) == 2):
            raise ValueError(f"--dpo-data-path {prefix}: not a DPO dataset (every document must hold "
                             "two sequences, chosen then rejected: write it with tools/preprocess_dpo.py)")
        self.reference_logps, self.in_order = reference_logps, in_order

    def sequence_index(self, i: int) -> int:
        return i % self.num_sequences if self.in_order else super().sequence_index(i)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        sample = super().__getitem__(i)
        pair = self.sequence_index(i)
        sample["pair_index"] = torch.tensor(pair if i < self.num_sequences or not self.in_order else -1)
        ref = self.reference_logps[pair] if self.reference_logps is not None else np.zeros(2)
        sample["ref_logps"] = torch.tensor(ref, dtype=torch.float64)
        return sample


def sequence_logps(output_tensor: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[b, s] per-token losses -> [b, 2] float64 summed log-probs of the chosen and rejected labels."""
    token_logps = -output_tensor.float() * batch["loss_mask"]  # [b, s]
    halves = [(batch["document_ids"] == k) for k in (0, 1)]  # document 0 = chosen, 1 = rejected
    return torch.stack([(token_logps * half).double().sum(dim=1) for half in halves], dim=1)


def loss_func(batch: dict[str, torch.Tensor], output_tensor: torch.Tensor, *, beta: float,
              sft_loss_weight: float) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(sum of the pairs' DPO losses (+ the scaled SFT term), pairs, {metric: [sum, pairs]})."""
    logps = sequence_logps(output_tensor, batch)  # [b, 2]
    logratios = logps - batch["ref_logps"]
    chosen, rejected = beta * logratios[:, 0], beta * logratios[:, 1]
    per_pair = -F.logsigmoid(chosen - rejected)
    loss = per_pair.sum()
    if sft_loss_weight:
        chosen_nll = -logps[:, 0].sum()
        loss = loss + sft_loss_weight * batch["sft_scale"][0] * chosen_nll
    pairs = torch.tensor(float(per_pair.numel()), dtype=torch.float64, device=per_pair.device)
    rewards = {"lm loss": loss, "rewards/chosen": chosen.sum(), "rewards/rejected": rejected.sum(),
               "rewards/accuracies": (chosen > rejected).double().sum(),
               "rewards/margins": (chosen - rejected).sum()}
    reported = {name: torch.stack([value.detach().double(), pairs]) for name, value in rewards.items()}
    return loss.float(), pairs.to(torch.int), reported


def forward_step(data_iterator: Any, model: Any, *, use_transformer_engine: bool, beta: float,
                 sft_loss_weight: float) -> tuple[torch.Tensor, Any]:
    """One microbatch of pairs through one model chunk (megatron's forward_step_func)."""
    device = get_device()
    batch = {k: v.to(device, non_blocking=True) for k, v in next(data_iterator).items()}
    output = model(**sft.model_inputs(batch, use_transformer_engine=use_transformer_engine))
    return output, functools.partial(loss_func, batch, beta=beta, sft_loss_weight=sft_loss_weight)


def normalise_sft_term(batches: list[dict[str, torch.Tensor]], global_pairs: int) -> None:
    """Give every microbatch ``sft_scale`` = global pairs / global chosen tokens (one DP all-reduce)."""
    from megatron.core import parallel_state

    tokens = sum(float((b["loss_mask"] * (b["document_ids"] == 0)).sum()) for b in batches)
    total = torch.tensor([tokens], dtype=torch.float64, device=get_device())
    dist.all_reduce(total, group=parallel_state.get_data_parallel_group())
    scale = torch.tensor([global_pairs / max(float(total[0]), 1.0)], dtype=torch.float64)
    for b in batches:
        b["sft_scale"] = scale.expand(b["tokens"].size(0))


# --- reference log-probs and their fingerprint -------------------------------------------------


def dataset_sha256(prefix: str | Path) -> str:
    """SHA-256 over the DPO dataset's four files (tokens and loss mask, .bin and .idx)."""
    digest = hashlib.sha256()
    for part in ("tokens", "loss_mask"):
        for path in (bin_path(f"{prefix}_{part}"), idx_path(f"{prefix}_{part}")):
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def checkpoint_identity(stored: StoredCheckpoint | None, *, seed: int) -> dict[str, Any]:
    """What identifies the reference weights: folder, iteration and a hash of the common state."""
    if stored is None:
        return {"path": None, "iteration": 0, "sha256": None, "note": f"random initialisation, --seed {seed}"}
    common = json.dumps(stored.common, sort_keys=True, default=str)
    return {"path": str(stored.path.resolve()), "iteration": int(stored.common.get("iteration") or 0),
            "sha256": hashlib.sha256(common.encode()).hexdigest()}


def fingerprint(*, prefix: str, pairs: int, tokenizer: dict[str, Any], seq_length: int,
                reference: dict[str, Any]) -> dict[str, Any]:
    """The record that ties stored log-probs to what they were computed from."""
    return {"format_version": FORMAT_VERSION, "dtype": LOGPS_DTYPE, "pairs": pairs,
            "dataset": {"prefix": str(Path(prefix).resolve()), "sha256": dataset_sha256(prefix)},
            "tokenizer": tokenizer, "seq_length": seq_length, "reference": reference}


def check_fingerprint(prefix: str, *, pairs: int, tokenizer: dict[str, Any], seq_length: int,
                      reference: dict[str, Any] | None = None) -> np.ndarray:
    """The stored reference log-probs, or ValueError (one line) naming what is missing or changed.

    ``reference``: the identity the reference must have (None: the recorded checkpoint, if it is
    still there, must be unchanged).
    """
    logps_path, fp_path = reference_paths(prefix)
    compute = "recompute them: the training flags with --compute-reference-logprobs and --load REFERENCE"
    if not fp_path.is_file() or not logps_path.is_file():
        raise ValueError(f"no reference log-probs for --dpo-data-path {prefix} ({fp_path.name} missing): {compute}")
    stored = json.loads(fp_path.read_text(encoding="utf-8"))
    now = fingerprint(prefix=prefix, pairs=pairs, tokenizer=tokenizer, seq_length=seq_length,
                      reference=stored.get("reference", {}))
    recorded = stored.get("reference", {})
    if reference is not None:
        now["reference"] = reference
    elif recorded.get("path") and Path(recorded["path"]).is_dir():
        try:  # the reference checkpoint is still there: it must still be the same one
            now["reference"] = checkpoint_identity(open_checkpoint(Path(recorded["path"]).parent), seed=0)
        except ValueError:
            pass
    for key in ("format_version", "dtype", "dataset", "pairs", "tokenizer", "seq_length", "reference"):
        if stored.get(key) != now[key]:
            raise ValueError(f"stale reference log-probs {fp_path}: {key} changed "
                             f"({_short(stored.get(key))} -> {_short(now[key])}): {compute}")
    logps = np.load(logps_path)
    if logps.shape != (pairs, 2):
        raise ValueError(f"stale reference log-probs {logps_path}: shape {logps.shape}, expected ({pairs}, 2): {compute}")
    return logps


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def compute_reference_logps(run: Any) -> np.ndarray:
    """[pairs, 2] float64 summed log-probs of every pair under the loaded model, in pair order.

    The run's own forward step (``run.forward_step``), forward-only through megatron-core's
    schedule at the run's TP/PP/DP; each pair's sums come from the last pipeline stage (TP rank 0)
    that ran it, and one all-reduce gives every rank all of them.
    """
    from megatron.core import parallel_state

    pairs, layout = run.stage.known.pairs, run.layout
    table = torch.zeros(pairs, 2, dtype=torch.float64, device=get_device())
    captured: list[torch.Tensor] = []

    def step(data_iterator: Any, model: Any) -> tuple[torch.Tensor, Any]:
        batch = next(data_iterator)
        output, _ = run.forward_step(iter([batch]), model)

        def capture(output_tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
            on = {k: v.to(output_tensor.device) for k, v in batch.items()}
            logps = sequence_logps(output_tensor, on)
            captured.append(torch.cat([on["pair_index"].double()[:, None], logps], dim=1))
            return output_tensor.sum() * 0.0, torch.tensor(1), {}

        return output, capture

    for chunk in run.model:
        chunk.eval()
    with torch.no_grad():
        for _ in range(-(-pairs // layout.global_batch_size)):
            batches = [next(run.train_data) for _ in range(layout.num_microbatches)]
            iterators = [iter(batches) for _ in run.model]
            run.forward_backward(forward_step_func=step,
                                 data_iterator=iterators[0] if len(iterators) == 1 else iterators,
                                 model=run.model, num_microbatches=len(batches), seq_length=run.seq_length,
                                 micro_batch_size=layout.micro_batch_size, forward_only=True)
    if parallel_state.get_tensor_model_parallel_rank() == 0:
        for rows in captured:
            rows = rows[rows[:, 0] >= 0]  # wrapped-around samples that fill the last batch
            table[rows[:, 0].long()] = rows[:, 1:]
    dist.all_reduce(table)
    return table.cpu().numpy()


def write_reference_logps(run: Any) -> Path:
    """Compute the reference log-probs and store them with their fingerprint (rank 0, atomically)."""
    start = time.monotonic()
    prefix, known = run.cfg.data.dpo_data_path, run.stage.known
    logps_path, fp_path = reference_paths(prefix)
    try:  # computed once: a requeued job or a rerun keeps log-probs that are still current
        check_fingerprint(prefix, pairs=known.pairs, tokenizer=known.tokenizer, seq_length=run.seq_length,
                          reference=known.reference)
        print_rank_0(f"> reference log-probs {logps_path} are current (fingerprint matches): kept")
        return logps_path
    except ValueError:
        pass
    logps = compute_reference_logps(run)
    if dist.get_rank() == 0:
        record = fingerprint(prefix=prefix, pairs=len(logps), tokenizer=known.tokenizer,
                             seq_length=run.seq_length, reference=known.reference)
        record["computed"] = {"layout": {"tensor_model_parallel_size": run.layout.tensor_model_parallel_size,
                                         "pipeline_model_parallel_size": run.layout.pipeline_model_parallel_size,
                                         "data_parallel_size": run.layout.data_parallel_size},
                              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "seconds": round(time.monotonic() - start, 3)}
        with atomic_file(logps_path, "wb") as f:
            np.save(f, logps)
        atomic_write_json(fp_path, record)  # written last: a fingerprint always has its log-probs
        print(f"> reference log-probs of {len(logps):,} pairs -> {logps_path} ({fp_path.name})", flush=True)
    dist.barrier()
    return logps_path


class DPOStage(Stage):
    """--stage dpo: sigmoid DPO (+ RPO term) on --dpo-data-path's pairs, stored reference log-probs."""

    name = "dpo"
    needs = ModelNeeds(per_token_loss=True, packed_documents=True)  # normalised per pair
    metric_names = METRICS
    own_flags = ("data.dpo_data_path", "dpo.compute_reference_logprobs")

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__(cfg)
        self.known: DPORun | None = None
        """Set by ``datasets``: the pairs and the identities the reference log-probs are tied to."""

    @classmethod
    def validate(cls, cfg: PretrainConfig) -> None:
        sft.validate_finetuning(cfg, flag="--dpo-data-path", tool="preprocess_dpo")
        if cfg.dpo.dpo_beta <= 0:
            raise ValueError(f"--dpo-beta {cfg.dpo.dpo_beta}: give a positive beta (TRL's default is 0.1)")

    def checkpoint_to_load(self, resumed: CheckpointSource | None) -> CheckpointSource | None:
        if not self.cfg.dpo.compute_reference_logprobs:
            return resumed
        from megatron_telecom.training.checkpointing import CheckpointSource

        load = self.cfg.checkpoint.load  # the reference is --load's weights, never a resumed --save
        return CheckpointSource(path=load, finetune=True) if load else None

    def datasets(self, *, layout: Any, tokenizer: Any, seq_length: int,
                 stored: StoredCheckpoint | None) -> tuple[Any, dict[str, Any]]:
        cfg, t = self.cfg, self.cfg.training
        prefix, gbs = cfg.data.dpo_data_path, layout.global_batch_size
        self.known = DPORun(pairs=len(sft.PackedSFTDataset(prefix)),
                            tokenizer=asdict(tokenizer_identity(tokenizer)),
                            reference=checkpoint_identity(stored, seed=t.seed))
        if cfg.dpo.compute_reference_logprobs:  # every pair once, in order, from sample 0
            return DPODataset(prefix, seq_length=seq_length, seed=t.seed, pad_token_id=tokenizer.eod,
                              num_samples=-(-self.known.pairs // gbs) * gbs, in_order=True), {}
        reference = check_fingerprint(prefix, pairs=self.known.pairs, tokenizer=self.known.tokenizer,
                                      seq_length=seq_length)
        return DPODataset(prefix, seq_length=seq_length, seed=t.seed, pad_token_id=tokenizer.eod,
                          num_samples=t.train_iters * gbs, reference_logps=reference), {}

    def forward_step(self, *, use_transformer_engine: bool) -> Any:
        return functools.partial(forward_step, use_transformer_engine=use_transformer_engine,
                                 beta=self.cfg.dpo.dpo_beta, sft_loss_weight=self.cfg.dpo.dpo_sft_loss_weight)

    def prepare_batches(self, batches: list[dict], *, global_batch_size: int) -> None:
        if self.cfg.dpo.dpo_sft_loss_weight:
            normalise_sft_term(batches, global_batch_size)

    def one_off_pass(self, run: Any) -> bool:
        if not self.cfg.dpo.compute_reference_logprobs:
            return False
        write_reference_logps(run)
        return True


STAGE = DPOStage
