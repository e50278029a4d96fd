"""Metrics and baselines: values, not just types."""

from __future__ import annotations

import pytest
from reviewsum_build import baselines, metrics


def test_rouge_of_identical_strings_is_100():
    assert metrics.rouge("屏幕效果棒，性价比高。", "屏幕效果棒，性价比高。") == {
        "rouge1": 100.0,
        "rouge2": 100.0,
        "rougeL": 100.0,
    }


def test_chinese_rouge_is_character_level_and_ignores_punctuation():
    # Same characters, different punctuation and spacing: still a perfect match.
    assert metrics.rouge("屏幕效果棒性价比高", "屏幕效果棒， 性价比高！")["rougeL"] == 100.0
    assert metrics.tokens("送货快，包装好。") == ["送", "货", "快", "包", "装", "好"]
    # 2 of 4 characters shared in order: P = R = 0.5.
    assert metrics.rouge("送货很慢", "送货快捷")["rouge1"] == pytest.approx(50.0)
    assert metrics.rouge("送货很慢", "送货快捷")["rouge2"] == pytest.approx(100 / 3)


def test_chinese_is_not_dropped_like_rouge_scores_default_tokenizer():
    assert metrics.rouge("质量很好", "价格便宜")["rouge1"] == 0.0
    assert metrics.rouge("质量很好", "质量一般")["rouge1"] == pytest.approx(50.0)


def test_english_rouge_is_word_level_with_stemming():
    assert metrics.rouge("The shoes run large.", "the shoe running large")["rouge1"] == 100.0
    assert metrics.rouge("Comfortable, but runs large", "comfortable but small")["rouge1"] == pytest.approx(
        100 * 2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3)
    )


def test_mixed_latin_words_inside_chinese_are_single_tokens():
    assert metrics.tokens("iPhone很好用") == ["iphon", "很", "好", "用"]


def test_mean_rouge_over_pairs():
    scores = metrics.rouge_scores(["好", "差"], ["好", "好"])
    assert scores["rouge1"] == pytest.approx(50.0)


def test_absent_rate_counts_summary_characters_missing_from_review():
    # 性能好贵 all occur in the review; 但 is the template connective and exempt by default.
    assert metrics.absent_rate(["性能好，但贵。"], ["性能很好，价格贵"]) == 0.0
    assert metrics.absent_rate(["性能好，但贵。"], ["性能很好，价格贵"], exempt=frozenset()) == pytest.approx(20.0)
    # 4 characters, 2 absent (差, 评).
    assert metrics.absent_rate(["质量差评"], ["质量一般"]) == pytest.approx(50.0)


def test_summaries_with_absent_characters_and_spurious_but_are_counted():
    summaries = ["性能好，但贵。", "质量差评", "送货快，但包装差。"]
    reviews = ["性能很好，价格贵", "质量一般", "送货快，包装差"]
    assert metrics.with_absent(summaries, reviews) == 1  # only 质量差评 (差, 评); 但 is exempt
    assert metrics.with_absent(summaries, reviews, exempt=frozenset()) == 3
    assert metrics.spurious_but(summaries, ["性能好，但贵。", "质量差。", "送货快，包装差。"]) == 1


def test_summary_length_counts_characters_without_punctuation():
    assert metrics.summary_length("送货快，包装好。") == 6


def test_first_chars_baseline_cuts_at_17():
    text = "这个酒店位置很好，离地铁站很近，但是房间太小了，隔音也不好。"
    assert baselines.first_chars(text) == text[:17]
    assert len(baselines.first_chars(text)) == 17


def test_first_clauses_baseline_keeps_whole_clauses_within_18_chars():
    text = "位置很好，离地铁站很近，但是房间太小了，隔音也不好。"
    # 位置很好，(5) + 离地铁站很近，(7) = 12; + 但是房间太小了，(8) = 20 > 18.
    assert baselines.first_clauses(text) == "位置很好，离地铁站很近。"
    long_first = "这是一个非常非常非常非常非常非常长的第一个分句，然后"
    assert baselines.first_clauses(long_first) == long_first[:18]
    assert baselines.first_clauses("挺好") == "挺好"


def test_textrank_baseline_returns_one_sentence_of_the_review():
    text = "房间很干净。服务员态度很好。早餐种类太少了。"
    summary = baselines.textrank(text)
    assert summary and summary in text.replace("。", "，") + text


def test_mbr_choice_is_the_candidate_closest_to_the_others():
    # 屏幕清晰 is shared by three of the four candidates; the one that also overlaps the fourth wins
    candidates = ["屏幕清晰。", "屏幕清晰，电池耐用。", "电池耐用。", "屏幕清晰，价格贵。"]
    assert metrics.mbr_choice(candidates) == "屏幕清晰，电池耐用。"
    # an outlier never wins against agreeing beams, and repeated beams weigh more than their count once
    assert metrics.mbr_choice(["差评。", "服务好。", "服务好。"]) == "服务好。"
    # a tie goes to the earlier, higher-ranked beam
    assert metrics.mbr_choice(["好。", "差。"]) == "好。"
