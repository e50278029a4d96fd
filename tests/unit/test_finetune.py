"""`train finetune` end to end on the tiny model: reference pairs joined, silver pairs mixed in apart, best kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.unit.fake_pairs import SHOP, data_and_references


def test_finetune_mixes_silver_pairs_in_and_keeps_the_best_checkpoint(tiny_checkpoint: Path, tmp_path: Path):
    data, refs = data_and_references(tmp_path)
    silver = tmp_path / "silver.jsonl"
    rows = [
        {"key": "shop:3", "review": SHOP[3][2], "summary": "纸张太薄，字迹模糊。", "teacher": "t"},
        {"key": "shop:4", "review": SHOP[4][2], "summary": "", "teacher": "t"},  # unfaithful: not taught
        {"key": "shop:1", "review": SHOP[1][2], "summary": "发热严重。", "teacher": "t"},  # a dev review: never
    ]
    silver.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    run = tmp_path / "run"
    command = [
        *(sys.executable, "-m", "reviewsum_build.train", "finetune", "--init", str(tiny_checkpoint)),
        *("--data-dir", str(data), "--references-dir", str(refs), "--silver", str(silver)),
        *("--corpus", str(tmp_path / "no-corpus.txt"), "--run-dir", str(run), "--epochs", "2", "--threads", "1"),
        *("--max-batch", "2", "--warmup", "1", "--patience", "5"),
    ]

    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "train pairs 2 (zh 2, en 0); dev 1" in done.stdout
    assert "silver pairs 1 from" in done.stdout
    assert "2 steps per epoch, 4 steps planned" in done.stdout  # 3 pairs, at most 2 per batch
    log = [json.loads(line) for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    dev_rows = [row for row in log if row.get("event") == "dev"]
    assert [row["epoch"] for row in dev_rows] == [0, 1]
    assert all(0.0 <= row["rougeL"] <= 100.0 for row in dev_rows)
    assert (run / "best" / "model.safetensors").exists() and (run / "final" / "model.safetensors").exists()
