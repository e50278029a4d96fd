"""Rebuilding a PyTorch checkpoint from the served ONNX artifacts (what training continues from on a fresh machine)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from reviewsum_build.export import export_onnx
from reviewsum_build.from_onnx import rebuild_checkpoint, rebuild_model
from transformers import BartForConditionalGeneration


@pytest.fixture(scope="module")
def trained_like(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny model with every weight made distinct, as training leaves them, and its export.

    Fresh initialisation repeats tensors (zero biases, unit norms), and the export stores equal
    tensors once, under one name, so only trained-like weights can be rebuilt.
    """
    root = tmp_path_factory.mktemp("trained-like")
    model = BartForConditionalGeneration.from_pretrained(tiny_checkpoint)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
    checkpoint = root / "checkpoint"
    model.save_pretrained(checkpoint)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy2(tiny_checkpoint / name, checkpoint / name)
    artifacts = export_onnx(checkpoint, root / "artifacts", max_input_tokens=64, validate=False)
    return checkpoint, artifacts


def test_every_parameter_comes_back_equal_to_the_exported_checkpoint(trained_like: tuple[Path, Path]) -> None:
    checkpoint, artifacts = trained_like
    original = BartForConditionalGeneration.from_pretrained(checkpoint).state_dict()
    rebuilt = rebuild_model(artifacts).state_dict()
    assert set(rebuilt) == set(original)
    different = [name for name in original if not torch.equal(original[name], rebuilt[name])]
    assert different == []


def test_the_rebuilt_checkpoint_generates_what_the_original_does(
    trained_like: tuple[Path, Path], tmp_path: Path
) -> None:
    checkpoint, artifacts = trained_like
    out = rebuild_checkpoint(artifacts, tmp_path / "rebuilt")
    assert (out / "tokenizer.json").is_file() and (out / "generation_config.json").is_file()
    inputs = torch.tensor([[0, 17, 23, 99, 5, 2]])
    kwargs = {"max_new_tokens": 8, "num_beams": 1, "do_sample": False}
    original = BartForConditionalGeneration.from_pretrained(checkpoint).eval().generate(inputs, **kwargs)
    rebuilt = BartForConditionalGeneration.from_pretrained(out).eval().generate(inputs, **kwargs)
    assert torch.equal(original, rebuilt)


def test_an_export_with_merged_tensors_is_refused_with_the_names_missing(tiny_artifacts: Path) -> None:
    with pytest.raises(ValueError, match="missing"):
        rebuild_model(tiny_artifacts)
