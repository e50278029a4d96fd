"""A five-review fake data folder with two training references and one dev reference, for end-to-end
tests of the fine-tuning stages on the tiny model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from reviewsum_build import sources

SHOP = [
    ("手机", "1", "屏幕很清楚，电池耐用，拍照也不错"),
    ("手机", "0", "发热严重，信号差，不推荐"),
    ("书籍", "1", "印刷精美，内容充实，值得一读"),
    ("书籍", "0", "纸张太薄，字迹模糊，有盗版嫌疑"),
    ("水果", "1", "苹果很甜，个头大，物流快"),
]


def reference_line(text: str, key: str, summary: str) -> str:
    return json.dumps({"key": key, "digest": sources.text_digest(text), "summary": summary}, ensure_ascii=False)


def data_and_references(root: Path) -> tuple[Path, Path]:
    data = root / "data"
    data.mkdir()
    with (data / "online_shopping_10_cats.train.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cat", "label", "review"])
        writer.writerows(SHOP)
    refs = root / "refs"
    refs.mkdir()
    train = [reference_line(SHOP[i][2], f"shop:{i}", s) for i, s in ((0, "屏幕清楚，电池耐用。"), (2, "印刷精美。"))]
    (refs / "zh_train_1.jsonl").write_text("\n".join(train) + "\n", encoding="utf-8")
    dev = [reference_line(SHOP[1][2], "shop:1", "发热严重，信号差。")]
    (refs / "zh_dev.jsonl").write_text("\n".join(dev) + "\n", encoding="utf-8")
    return data, refs
