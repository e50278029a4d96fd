"""Checkpoint weight averaging: the mean is exact, weights are honoured, and mismatched models are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from reviewsum_build import average


def shifted_copy(checkpoint: Path, out: Path, shift: float) -> Path:
    """The checkpoint with `shift` added to every floating-point weight."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(checkpoint, out)
    state = load_file(out / average.WEIGHTS_FILE)
    moved = {k: (v + shift if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(moved, out / average.WEIGHTS_FILE, metadata={"format": "pt"})
    return out


def test_equal_average_of_shifted_copies_is_the_midpoint(tiny_checkpoint: Path, tmp_path: Path):
    import torch
    from safetensors.torch import load_file

    a = shifted_copy(tiny_checkpoint, tmp_path / "a", 0.0)
    b = shifted_copy(tiny_checkpoint, tmp_path / "b", 0.5)
    out = average.average_checkpoints([a, b], tmp_path / "avg")
    base, got = load_file(a / average.WEIGHTS_FILE), load_file(out / average.WEIGHTS_FILE)
    name = next(k for k, v in base.items() if v.is_floating_point())
    assert torch.allclose(got[name], base[name] + 0.25, atol=1e-6)
    assert json.loads((out / "averaged_from.json").read_text()) == [
        {"checkpoint": str(a), "weight": 0.5},
        {"checkpoint": str(b), "weight": 0.5},
    ]
    assert (out / "tokenizer.json").read_bytes() == (a / "tokenizer.json").read_bytes()


def test_weights_are_normalized_and_honoured(tiny_checkpoint: Path, tmp_path: Path):
    import torch
    from safetensors.torch import load_file

    a = shifted_copy(tiny_checkpoint, tmp_path / "a", 0.0)
    b = shifted_copy(tiny_checkpoint, tmp_path / "b", 1.0)
    out = average.average_checkpoints([a, b], tmp_path / "avg", weights=[3, 1])
    base, got = load_file(a / average.WEIGHTS_FILE), load_file(out / average.WEIGHTS_FILE)
    name = next(k for k, v in base.items() if v.is_floating_point())
    assert torch.allclose(got[name], base[name] + 0.25, atol=1e-6)


def test_averaged_checkpoint_loads_and_generates(tiny_checkpoint: Path, tmp_path: Path):
    import torch
    from transformers import BartForConditionalGeneration

    b = shifted_copy(tiny_checkpoint, tmp_path / "b", 0.01)
    out = average.average_checkpoints([tiny_checkpoint, b], tmp_path / "avg")
    model = BartForConditionalGeneration.from_pretrained(out)
    generated = model.generate(input_ids=torch.tensor([[0, 10, 11, 12, 2]]), max_new_tokens=4)
    assert generated.shape[0] == 1 and generated.shape[1] >= 2


def test_a_different_tokenizer_is_refused(tiny_checkpoint: Path, tmp_path: Path):
    b = shifted_copy(tiny_checkpoint, tmp_path / "b", 0.0)
    (b / "tokenizer.json").write_text((b / "tokenizer.json").read_text().replace('"<mask>"', '"<MASK>"'))
    with pytest.raises(SystemExit, match="different tokenizer"):
        average.average_checkpoints([tiny_checkpoint, b], tmp_path / "avg")


def test_a_different_architecture_is_refused(tiny_checkpoint: Path, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    b = shifted_copy(tiny_checkpoint, tmp_path / "b", 0.0)
    state = load_file(b / average.WEIGHTS_FILE)
    name = next(k for k, v in state.items() if v.dim() == 2)
    state[name] = state[name][:-1].contiguous()
    save_file(state, b / average.WEIGHTS_FILE, metadata={"format": "pt"})
    with pytest.raises(SystemExit, match="shape"):
        average.average_checkpoints([tiny_checkpoint, b], tmp_path / "avg")


@pytest.mark.parametrize(
    ("weights", "message"),
    [([1.0], "gives 1 weights for 2"), ([1.0, -1.0], "non-negative"), ([0.0, 0.0], "positive sum")],
)
def test_bad_weights_are_refused(weights: list[float], message: str):
    with pytest.raises(SystemExit, match=message):
        average.normalized_weights(2, weights)


def test_one_checkpoint_or_writing_over_an_input_is_refused(tiny_checkpoint: Path, tmp_path: Path):
    with pytest.raises(SystemExit, match="at least two"):
        average.average_checkpoints([tiny_checkpoint], tmp_path / "avg")
    b = shifted_copy(tiny_checkpoint, tmp_path / "b", 0.0)
    with pytest.raises(SystemExit, match="is one of the inputs"):
        average.average_checkpoints([tiny_checkpoint, b], b)
