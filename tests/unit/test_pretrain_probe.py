"""The pretraining input-gain probe: it sees a model learn to read its input, and stops a run that does not."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from reviewsum_build import train
from reviewsum_build.tiny import TINY_CORPUS
from reviewsum_build.tokenizer import load_tokenizer


def _copy_train(model, tokenizer, steps: int) -> None:
    import torch

    ids = train.encode_all(tokenizer, TINY_CORPUS, 64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss, _ = train.seq2seq_loss(model, train.make_batch(ids, ids), 0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_input_gain_rises_as_a_model_learns_to_copy_its_input(tiny_checkpoint: Path):
    import torch
    from transformers import BartForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = load_tokenizer(tiny_checkpoint)
    model = BartForConditionalGeneration.from_pretrained(tiny_checkpoint)
    batch = train.probe_batch(TINY_CORPUS, tokenizer, 64, size=8)
    fresh = train.input_gain(model, batch)
    _copy_train(model, tokenizer, steps=40)
    learned = train.input_gain(model, batch)

    assert abs(fresh) < 0.3  # random weights: another text's source is as good as the right one
    assert learned > fresh + 0.3
    assert model.training  # the probe restores the training mode it found


def test_probe_batch_is_the_same_every_call(tiny_checkpoint: Path):
    tokenizer = load_tokenizer(tiny_checkpoint)
    a = train.probe_batch(TINY_CORPUS, tokenizer, 64, size=8, seed=3)
    b = train.probe_batch(TINY_CORPUS, tokenizer, 64, size=8, seed=3)
    assert a["input_ids"].tolist() == b["input_ids"].tolist()
    assert len(a["input_ids"]) == 8


def _args(**overrides) -> argparse.Namespace:
    return argparse.Namespace(**{"min_input_gain": 0.5, "input_gain_after": 100, **overrides})


def _log_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_low_input_gain_is_logged_but_tolerated_during_the_grace_steps(tmp_path: Path):
    train.check_input_gain(_args(), 0.1, step=99, log=train.RunLog(tmp_path))
    assert _log_rows(tmp_path) == [{"step": 99, "input_gain": 0.1}]


def test_low_input_gain_after_the_grace_steps_stops_the_run(tmp_path: Path):
    with pytest.raises(train.NotReadingInput, match="lower --lr"):
        train.check_input_gain(_args(), 0.1, step=100, log=train.RunLog(tmp_path))
    assert _log_rows(tmp_path)[-1]["reason"] == "not reading its input"


def test_zero_threshold_turns_the_check_off(tmp_path: Path):
    train.check_input_gain(_args(min_input_gain=0.0), -1.0, step=10_000, log=train.RunLog(tmp_path))
    train.check_input_gain(_args(), 0.6, step=10_000, log=train.RunLog(tmp_path))
    assert [row["input_gain"] for row in _log_rows(tmp_path)] == [-1.0, 0.6]


def _pretrain(tiny_checkpoint: Path, tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess, Path]:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TINY_CORPUS) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    command = [
        *(sys.executable, "-m", "reviewsum_build.train", "pretrain", "--init", str(tiny_checkpoint)),
        *("--corpus", str(corpus), "--run-dir", str(run), "--threads", "1", "--save-every", "2", "--max-batch", "8"),
        *options,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False), run


def test_pretrain_command_exits_with_the_reason_when_the_probe_fails(tiny_checkpoint: Path, tmp_path: Path):
    done, run = _pretrain(
        tiny_checkpoint, tmp_path, "--max-steps", "6", "--min-input-gain", "1000", "--input-gain-after", "4"
    )

    assert done.returncode != 0
    assert "pretraining stopped: step 4: input gain" in done.stderr
    rows = _log_rows(run)
    assert [row["step"] for row in rows if "input_gain" in row] == [2, 4, 4]
    assert rows[-1]["reason"] == "not reading its input"
    assert not (run / "final").exists()


def test_pretrain_command_probes_the_final_model_too(tiny_checkpoint: Path, tmp_path: Path):
    done, run = _pretrain(tiny_checkpoint, tmp_path, "--max-steps", "5", "--min-input-gain", "0")

    assert done.returncode == 0, done.stderr
    assert [row["step"] for row in _log_rows(run) if "input_gain" in row] == [2, 4, 5]
    assert (run / "final" / "model.safetensors").exists()
