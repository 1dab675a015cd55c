"""resize-vocab: a megatron checkpoint resized for an extended tokenizer, trained, exported.

Tiny Llamas (hidden 64, tied and untied) with SmolLM2's real 49,152-token tokenizer, extended by
``add_tokens`` (what the vocabulary tooling writes is another folder of the same contract: old ids
first, new ones appended, an optional ``vocab_extension.json``). The resized checkpoint is read
back through PyTorch's DCP reader, trained by the real trainer under torchrun at TP=1 and at
TP=2 x PP=2, exported and loaded by transformers.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from _convert_helpers import (
    copy_tokenizer,
    hf_logits,
    run_probe,
    write_text_dataset,
    write_tiny_hf_model,
)
from _dist_helpers import (
    REPO,
    checkpoint_tensors,
    run_subprocess,
    run_torchrun,
    subprocess_env,
    tiny_train_args,
)

pytestmark = [pytest.mark.torchrun]

TERMS = ["PDCCH", "gNB-CU-CP", "NG-RAN", "RRCReconfiguration", "SS/PBCH", "NR-ARFCN"]
OLD_VOCAB = 49152
PLAIN_TEXT = ("The user equipment measures the reference signal received power and reports it "
              "to the base station, which decides whether to hand the connection over.")
TERM_TEXT = "The gNB-CU-CP sends RRCReconfiguration over NG-RAN after the PDCCH order on SS/PBCH."
SAMPLE = REPO / "examples" / "data" / "telecom_sample.jsonl"
TOOL = [sys.executable, str(REPO / "tools" / "convert_checkpoint.py")]
EMBEDDING, OUTPUT = "embedding.word_embeddings.weight", "output_layer.weight"


def convert_tool(*args: object, ok: bool = True):  # noqa: ANN201
    proc = run_subprocess([*TOOL, *map(str, args)], env=subprocess_env(), timeout=600, cwd=REPO)
    assert (proc.returncode == 0) == ok, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _extended_tokenizer(old: Path, target: Path) -> Path:
    """SmolLM2's tokenizer + TERMS, with the sidecar the vocabulary tooling writes."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(old))
    base = tokenizer.get_vocab()
    tokenizer.add_tokens(TERMS)
    tokenizer.save_pretrained(str(target))
    added = [{"id": OLD_VOCAB + i, "token": term, "text": term,
              "pieces": [base[p] for p in AutoTokenizer.from_pretrained(str(old)).tokenize(term)]}
             for i, term in enumerate(TERMS)]
    (target / "vocab_extension.json").write_text(json.dumps(
        {"base": {"vocab_size": OLD_VOCAB}, "new": {"vocab_size": OLD_VOCAB + len(TERMS)},
         "added": added}), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def vocab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny tied/untied HF models, their conversions, the extended tokenizer, the resized
    checkpoints (padded for TP=2: 49,158 -> 49,408) and a dataset in the new tokenizer."""
    from megatron_telecom.bundled import resolve_hf_path

    root = tmp_path_factory.mktemp("vocab_checkpoint")
    smol = resolve_hf_path("bundled:smollm2-135m")
    paths = {"new_tokenizer": _extended_tokenizer(smol, root / "new-tokenizer"), "root": root}
    script = ["from megatron_telecom.convert.hf_to_mcore import convert_hf_to_mcore",
              "from megatron_telecom.convert.resize_vocab import resize_vocab"]
    for variant, hf_variant in (("untied", "llama-gqa"), ("tied", "tied")):
        hf = write_tiny_hf_model(root / f"{variant}-hf", hf_variant, vocab_size=OLD_VOCAB)
        copy_tokenizer(smol, hf)
        paths[f"{variant}_hf"], paths[f"{variant}_base"] = hf, root / f"{variant}-base"
        paths[variant] = root / f"{variant}-resized"
        script += [f"convert_hf_to_mcore({str(hf)!r}, {str(root / f'{variant}-base')!r})",
                   f"resize_vocab({str(root / f'{variant}-base')!r}, {str(paths[variant])!r}, "
                   f"tokenizer_type='HuggingFaceTokenizer', tokenizer_model="
                   f"{str(paths['new_tokenizer'])!r}, target_tensor_parallel_size=2)"]
    proc = run_subprocess([sys.executable, "-c", "\n".join(script)], env=subprocess_env(),
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    paths["data"] = write_text_dataset(root / "data" / "sample", paths["new_tokenizer"], SAMPLE)
    return paths


def _pieces(tokenizer_folder: Path) -> list[list[int]]:
    from transformers import AutoTokenizer

    old = AutoTokenizer.from_pretrained(str(tokenizer_folder))
    return [old(term, add_special_tokens=False)["input_ids"] for term in TERMS]


@pytest.mark.parametrize("variant", ["untied", "tied"])
def test_new_rows_are_the_mean_of_their_pieces_and_padding_is_zero(vocab, variant):
    old = checkpoint_tensors(vocab[f"{variant}_base"] / "release")
    new = checkpoint_tensors(vocab[variant] / "release")
    names = [EMBEDDING, OUTPUT] if variant == "untied" else [EMBEDDING]
    assert (OUTPUT in new) == (variant == "untied")
    for name in names:
        assert new[name].shape == (49408, 64)  # 49,158 padded to a multiple of 128 x TP 2
        assert torch.equal(new[name][:OLD_VOCAB], old[name][:OLD_VOCAB])
        for row, ids in enumerate(_pieces(vocab[f"{variant}_hf"]), start=OLD_VOCAB):
            assert len(ids) > 1
            torch.testing.assert_close(new[name][row], old[name][ids].mean(dim=0), rtol=0, atol=1e-7)
        assert not new[name][OLD_VOCAB + len(TERMS):].any()
    for key in set(old) - {EMBEDDING, OUTPUT}:
        assert torch.equal(new[key], old[key]), key
    common = torch.load(vocab[variant] / "release" / "common.pt", weights_only=True)
    assert common["model_config"]["vocab_size"] == OLD_VOCAB + len(TERMS)
    assert common["args"]["padded_vocab_size"] == 49408
    assert common["tokenizer"]["vocab_size"] == OLD_VOCAB + len(TERMS)
    assert (vocab[variant] / "tokenizer" / "vocab_extension.json").is_file()


def test_noisy_mean_adds_seeded_noise_scaled_by_the_old_rows_std(vocab):
    from megatron_telecom.convert.resize_vocab import new_rows

    old = checkpoint_tensors(vocab["untied_base"] / "release")[EMBEDDING][:OLD_VOCAB]
    pieces = _pieces(vocab["untied_hf"])
    mean = new_rows(old, pieces, init="mean", noise_scale=0.5, generator=torch.Generator())
    noisy = [new_rows(old, pieces, init="noisy-mean", noise_scale=0.5,
                      generator=torch.Generator().manual_seed(1234)) for _ in range(2)]
    assert torch.equal(noisy[0], noisy[1])  # seeded: the same rows again
    ratio = ((noisy[0] - mean) / old.std(dim=0)).std().item()
    assert 0.4 < ratio < 0.6, ratio


def test_step0_logits_tp2_pp2_training_export_generate_verify(vocab, tmp_path):
    """At step 0 the resized model's logits over the old vocabulary are the old model's (text
    without new terms); TP=2 x PP=2 gives the TP=1 logits; one CPT iteration at TP=2 x PP=2
    saves a checkpoint that records the tokenizer, exports with it, generates and verifies."""
    from transformers import AutoTokenizer

    new_tok = AutoTokenizer.from_pretrained(str(vocab["new_tokenizer"]))
    plain = new_tok(PLAIN_TEXT, add_special_tokens=False)["input_ids"][:16]
    terms = new_tok(TERM_TEXT, add_special_tokens=False)["input_ids"][:16]
    assert max(plain) < OLD_VOCAB and max(terms) >= OLD_VOCAB
    tokens = torch.tensor([plain, terms])
    flags = dict(model=None, num_layers=None, vocab_size=None, load=vocab["untied"], finetune=True,
                 tokenizer_type="HuggingFaceTokenizer", tokenizer_model=vocab["new_tokenizer"],
                 split="100,0,0", micro_batch_size=1, global_batch_size=2, lr=1e-4, min_lr=1e-5,
                 lr_warmup_iters=0)
    args = dict(cache=tmp_path / "cache", train_iters=1)
    one = run_probe(1, tmp_path / "tp1.pt", tokens, tiny_train_args(
        vocab["data"], make_vocab_size_divisible_by=256, **flags, **args))  # the same padding as TP=2
    old = hf_logits(vocab["untied_hf"], tokens[:1])
    assert (one["logits"][:1, :, :OLD_VOCAB] - old).abs().max().item() <= 1e-6
    trained = tmp_path / "trained"
    four = run_probe(4, tmp_path / "tp2pp2.pt", tokens, tiny_train_args(
        vocab["data"], tensor_model_parallel_size=2, pipeline_model_parallel_size=2, save=trained,
        **flags, **args))
    torch.testing.assert_close(four["logits"], one["logits"], rtol=0, atol=1e-5)
    assert torch.isfinite(four["first_iteration_loss"])
    common = torch.load(trained / "iter_0000001" / "common.pt", weights_only=True)
    assert common["tokenizer"]["vocab_size"] == OLD_VOCAB + len(TERMS)

    export = tmp_path / "export"
    convert_tool("mcore-to-hf", "--load", trained, "--save", export)
    from megatron_telecom.evaluation.generation import generate  # tools/generate.py's library
    from megatron_telecom.evaluation.model_source import load_model

    loaded = load_model(export)
    assert loaded.tokenizer("PDCCH")["input_ids"] == [OLD_VOCAB]
    assert loaded.model.config.vocab_size == OLD_VOCAB + len(TERMS)
    assert isinstance(generate(loaded, "The NG-RAN node", max_new_tokens=4, stream=None), str)
    proc = convert_tool("verify", "--hf-path", export, "--load", trained)
    assert "agreement 100.00%" in proc.stdout


def test_the_old_tokenizer_is_refused_in_one_line(vocab, tmp_path):
    from megatron_telecom.models.tokenizer_record import check_tokenizer_folder

    common = torch.load(vocab["untied"] / "release" / "common.pt", weights_only=True)
    check_tokenizer_folder(common, vocab["new_tokenizer"], where="resized")  # its own: accepted
    with pytest.raises(ValueError) as refused:  # verify and mcore-to-hf check their tokenizer so
        check_tokenizer_folder(common, vocab["untied_hf"], where="resized")
    assert "\n" not in str(refused.value) and "49158 ids" in str(refused.value)
    assert "49152 ids" in str(refused.value)
    proc = run_torchrun(1, tiny_train_args(
        vocab["data"], cache=tmp_path / "cache", train_iters=1, model=None, num_layers=None,
        vocab_size=None, lr_warmup_iters=0, load=vocab["tied"], finetune=True, tokenizer_type="HuggingFaceTokenizer",
        tokenizer_model=vocab["tied_hf"]), check=False)
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "was written for tokenizer" in line]
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint "), proc.stderr[-3000:]
    assert "49158 ids" in lines[0] and "49152 ids" in lines[0]


def test_a_tokenizer_that_is_not_an_extension_is_refused(vocab, tmp_path):
    bad = tmp_path / "bad-tokenizer"
    shutil.copytree(vocab["new_tokenizer"], bad)
    data = json.loads((bad / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["vocab"]["the"], data["model"]["vocab"]["and"] = (
        data["model"]["vocab"]["and"], data["model"]["vocab"]["the"])
    (bad / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    proc = convert_tool("resize-vocab", "--load", vocab["untied_base"], "--save", tmp_path / "out",
                        "--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", bad, ok=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is not an extension of" in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_a_sidecar_for_other_ids_is_refused(vocab, tmp_path):
    from megatron_telecom.convert.resize_vocab import added_pieces
    from megatron_telecom.data.tokenizers import build_tokenizer

    folder = tmp_path / "sidecar"
    shutil.copytree(vocab["new_tokenizer"], folder)
    record = json.loads((folder / "vocab_extension.json").read_text())
    record["added"] = record["added"][1:]
    (folder / "vocab_extension.json").write_text(json.dumps(record))
    old = build_tokenizer("HuggingFaceTokenizer", vocab["untied_hf"])
    assert len(added_pieces(old, build_tokenizer("HuggingFaceTokenizer", vocab["new_tokenizer"]))) == 6
    with pytest.raises(ValueError, match="belongs to another tokenizer"):
        added_pieces(old, build_tokenizer("HuggingFaceTokenizer", folder))
