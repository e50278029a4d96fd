"""`train finetune` end to end on the tiny model: reference pairs joined, silver pairs mixed in apart, best kept."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from reviewsum_build import sources

SHOP = [
    ("手机", "1", "屏幕很清楚，电池耐用，拍照也不错"),
    ("手机", "0", "发热严重，信号差，不推荐"),
    ("书籍", "1", "印刷精美，内容充实，值得一读"),
    ("书籍", "0", "纸张太薄，字迹模糊，有盗版嫌疑"),
    ("水果", "1", "苹果很甜，个头大，物流快"),
]


def _reference(text: str, key: str, summary: str) -> str:
    return json.dumps({"key": key, "digest": sources.text_digest(text), "summary": summary}, ensure_ascii=False)


def _data_and_references(root: Path) -> tuple[Path, Path]:
    data = root / "data"
    data.mkdir()
    with (data / "online_shopping_10_cats.train.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cat", "label", "review"])
        writer.writerows(SHOP)
    refs = root / "refs"
    refs.mkdir()
    train = [_reference(SHOP[i][2], f"shop:{i}", s) for i, s in ((0, "屏幕清楚，电池耐用。"), (2, "印刷精美。"))]
    (refs / "zh_train_1.jsonl").write_text("\n".join(train) + "\n", encoding="utf-8")
    dev = [_reference(SHOP[1][2], "shop:1", "发热严重，信号差。")]
    (refs / "zh_dev.jsonl").write_text("\n".join(dev) + "\n", encoding="utf-8")
    return data, refs


def test_finetune_mixes_silver_pairs_in_and_keeps_the_best_checkpoint(tiny_checkpoint: Path, tmp_path: Path):
    data, refs = _data_and_references(tmp_path)
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
