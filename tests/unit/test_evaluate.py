"""`evaluate`: the hand% column (hand-judged polarity, blank until every summary is judged), ONNX parity, MBR."""

from __future__ import annotations

import json
import math
from pathlib import Path

from reviewsum_build import evaluate


def _judgement(key: str, summary: str, annotator: str, keeps: bool) -> str:
    problem, why = (None, "") if keeps else ("opposite", "反了")
    fields = {"key": key, "summary": summary, "annotator": annotator, "review_polarity": "positive"}
    return json.dumps({**fields, "keeps": keeps, "problem": problem, "why": why}, ensure_ascii=False)


def test_hand_column_is_the_share_kept_by_every_annotator_and_nan_while_unjudged(tmp_path: Path):
    store = tmp_path / "judgements.jsonl"
    lines = [
        _judgement("a", "好。", "x", True),
        _judgement("a", "好。", "y", True),
        _judgement("b", "差。", "x", True),
        _judgement("b", "差。", "y", False),  # one annotator disagrees: not kept by all
        _judgement("b", "好。", "x", True),
    ]
    store.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outputs = {"references": ["好。", "好。"], "model m": ["好。", "差。"], "model n": ["好。", "没见过。"]}
    rows = [{"system": name} for name in outputs]
    evaluate.add_hand_judged(rows, outputs, ["a", "b"], store)
    assert rows[0]["hand%"] == 100.0 and rows[0]["hand_unjudged"] == 0
    assert rows[1]["hand%"] == 50.0 and rows[1]["hand_unjudged"] == 0
    assert math.isnan(rows[2]["hand%"]) and rows[2]["hand_unjudged"] == 1
    table = evaluate.markdown_table([{c: 1.0 for c in evaluate.COLUMNS} | r for r in rows])
    assert "| model m | 1.0 | 1.0 | 1.0 | 1.0 | 1.0 | 1.0 | 1.0 | 50.0 |" in table
    assert table.splitlines()[-1].endswith("| nan |")


def test_an_onnx_row_is_compared_with_every_pytorch_greedy_row():
    outputs = {
        "references": ["a", "b"],
        "model PyTorch runs/v4 greedy": ["x", "y"],
        "model PyTorch runs/v4 beam4": ["a", "b"],
        "model PyTorch runs/v5 greedy": ["a", "b"],
        "model ONNX artifacts greedy": ["a", "b"],
    }
    assert evaluate.onnx_parity(outputs) == [
        ("model ONNX artifacts greedy", "model PyTorch runs/v4 greedy", 0),
        ("model ONNX artifacts greedy", "model PyTorch runs/v5 greedy", 2),
    ]


def test_nbest_returns_every_beam_best_first(tiny_checkpoint: Path):
    reviews = ["这个手机很好用", "物流太慢了，包装也破了"]
    nbest = evaluate.pytorch_nbest(tiny_checkpoint, reviews, num_beams=3)
    assert [len(c) for c in nbest] == [3, 3]
    # the first of the n-best list is what plain beam search with the same width writes
    assert [c[0] for c in nbest] == evaluate.pytorch_summarize(tiny_checkpoint, reviews, num_beams=3)
