"""Picking reviews to summarize by length band, and checking a written reference file against its batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reviewsum_build import annotation
from reviewsum_build.sources import Review

LONG_REVIEW = "物流很快，包装也很结实，但是衣服的颜色和图片差别很大，洗了一次就掉色，穿了两天线头全出来了，不会再买了。"
OTHER_REVIEW = "酒店位置很好，离地铁站只有五分钟，房间干净安静，早餐种类丰富，服务员态度热情，下次出差还会再来住。"
SHORT_REVIEW = "手机屏幕很清晰，电池也耐用。"


def _review(key: str, text: str, category: str = "衣服", label: int = 0) -> Review:
    return Review(key=key, source="test", category=category, text=text, label=label)


def _fake_reviews(monkeypatch: pytest.MonkeyPatch, reviews: list[Review]) -> None:
    monkeypatch.setattr(annotation, "chinese_reviews", lambda data_dir: iter(reviews))


def test_pick_more_keeps_only_the_length_band(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reviews = [_review(f"k{i}", text + "x" * i) for i, text in enumerate([SHORT_REVIEW, LONG_REVIEW] * 4)]
    _fake_reviews(monkeypatch, reviews)
    picked = annotation.pick_more_chinese(tmp_path, seed=1, per_category=100, exclude=set(), min_chars=40)
    assert sorted(r.key for r in picked) == ["k1", "k3", "k5", "k7"]
    assert all(len(r.text) >= 40 for r in picked)


def test_pick_more_band_still_excludes_written_reviews(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reviews = [_review("a", LONG_REVIEW), _review("b", LONG_REVIEW + "！"), _review("c", LONG_REVIEW)]
    _fake_reviews(monkeypatch, reviews)
    picked = annotation.pick_more_chinese(tmp_path, seed=1, per_category=100, exclude={"a"}, min_chars=40)
    # "c" has the text of an already written review, so only "b" is new
    assert [r.key for r in picked] == ["b"]


def test_pick_more_refuses_a_band_outside_the_annotatable_range(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="length band"):
        annotation.pick_more_chinese(tmp_path, seed=1, per_category=10, exclude=set(), min_chars=100, max_chars=50)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _batch(tmp_path: Path) -> tuple[Path, list[Review]]:
    reviews = [_review("a", LONG_REVIEW), _review("b", OTHER_REVIEW), _review("c", SHORT_REVIEW)]
    rows = [{"key": r.key, "digest": r.digest, "category": r.category, "text": r.text} for r in reviews]
    return _write_jsonl(tmp_path / "batch.jsonl", rows), reviews


def _written(tmp_path: Path, reviews: list[Review], summaries: list[str]) -> Path:
    rows = [{"key": r.key, "digest": r.digest, "summary": s} for r, s in zip(reviews, summaries, strict=True)]
    return _write_jsonl(tmp_path / "written.jsonl", rows)


GOOD = ["物流快，但掉色，做工差。", "位置好，房间干净，早餐丰富。", "屏幕清晰，电池耐用。"]


def test_check_accepts_an_aligned_file_and_reports_its_absent_rate(tmp_path: Path) -> None:
    batch, reviews = _batch(tmp_path)
    result = annotation.check_written_batch(batch, _written(tmp_path, reviews, GOOD))
    assert result.errors == []
    # 做 and 工 are the only characters (of 27, 但 exempt) that the reviews lack
    assert result.absent_percent == pytest.approx(100 * 2 / 27)
    assert result.warnings == []


def test_check_refuses_missing_lines_wrong_keys_and_unfinished_summaries(tmp_path: Path) -> None:
    batch, reviews = _batch(tmp_path)
    assert annotation.check_written_batch(batch, _written(tmp_path, reviews[:2], GOOD[:2])).errors == [
        "2 summaries for 3 reviews"
    ]
    swapped = [reviews[1], reviews[0], reviews[2]]
    errors = annotation.check_written_batch(batch, _written(tmp_path, swapped, GOOD)).errors
    assert [e.split(":")[0] for e in errors] == ["line 1", "line 2"]
    errors = annotation.check_written_batch(batch, _written(tmp_path, reviews, [GOOD[0], "", "屏幕清晰"])).errors
    assert errors == [
        "line 2: empty or missing summary",
        "line 3: a Chinese summary ends with 。, an English one with . ! or ?",
    ]


def test_check_accepts_an_english_summary_that_ends_like_a_sentence(tmp_path: Path) -> None:
    batch, reviews = _batch(tmp_path)
    english = [GOOD[0], GOOD[1], "Clear screen, long battery life."]
    assert annotation.check_written_batch(batch, _written(tmp_path, reviews, english)).errors == []
    unfinished = [GOOD[0], GOOD[1], "Clear screen, long battery life"]
    assert len(annotation.check_written_batch(batch, _written(tmp_path, reviews, unfinished)).errors) == 1


def test_check_warns_about_a_summary_that_belongs_to_the_next_review(tmp_path: Path) -> None:
    batch, reviews = _batch(tmp_path)
    shifted = [GOOD[1], GOOD[1], GOOD[2]]
    result = annotation.check_written_batch(batch, _written(tmp_path, reviews, shifted))
    assert result.errors == []
    assert "line 1: summary fits a neighbouring review better than its own" in result.warnings


def test_check_cli_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batch, reviews = _batch(tmp_path)
    written = _written(tmp_path, reviews, GOOD)
    assert annotation.report_check(annotation.check_written_batch(batch, written), written) == 0
    assert "ok; 0 warnings; 7.4% of summary characters absent" in capsys.readouterr().out
    bad = _written(tmp_path, reviews, [GOOD[0], GOOD[1], "屏幕清晰"])
    assert annotation.report_check(annotation.check_written_batch(batch, bad), bad) == 1
    assert "refused (1 errors)" in capsys.readouterr().out
