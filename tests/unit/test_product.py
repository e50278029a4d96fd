"""Product-level aggregation (`reviewsum_server.product`) and the FewSum evaluation's input handling."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from reviewsum_build.product_eval import first_sentences, load_fewsum
from reviewsum_server.product import (
    OVERALL_MAX_CHARS,
    OVERALL_MAX_WORDS,
    Aspect,
    ProductReview,
    detect_language,
    lexicon_score,
    split_sentences,
    summarize_product,
)

EN_REVIEWS = [
    ProductReview("r1", "Very comfortable shoes and they look stylish. They run large though.", 4),
    ProductReview("r2", "So comfortable! The price was great too.", 5),
    ProductReview("r3", "Comfortable at first, but they run large and I had to return them.", 2),
    ProductReview("r4", "Looks stylish but the sole broke after a week.", None),
]
EN_SUMMARIES = [
    "Comfortable and stylish, but runs large.",
    "Very comfortable, great price.",
    "Comfortable, but runs large.",
    "Stylish, but the sole broke.",
]

ZH_REVIEWS = [
    ProductReview("a", "送货快，包装完好，但是电池续航短，一天一充。", None),
    ProductReview("b", "送货很快，就是电池续航太短了。", None),
    ProductReview("c", "包装完好，没有破损。", None),
    ProductReview("d", "屏幕清晰，但续航短。", None),
]
ZH_SUMMARIES = ["送货快，包装完好，但电池续航短。", "送货很快，但电池续航太短。", "包装完好。", "屏幕清晰，但续航短。"]


def as_tuples(aspects: list[Aspect]) -> list[tuple[str, int, list[str]]]:
    return [(a.phrase, a.review_count, a.review_ids) for a in aspects]


# ---------------------------------------------------------------------------------------------------
# Pros and cons


def test_english_pros_and_cons_from_summaries_are_grouped_and_counted_by_review() -> None:
    result = summarize_product(EN_REVIEWS, EN_SUMMARIES)
    # "Comfortable" / "Very comfortable" are one aspect; "and" between two opinions splits them.
    assert as_tuples(result.pros) == [
        ("Comfortable", 3, ["r1", "r2", "r3"]),
        ("stylish", 2, ["r1", "r4"]),
        ("great price", 1, ["r2"]),
    ]
    assert as_tuples(result.cons) == [("runs large", 2, ["r1", "r3"]), ("the sole broke", 1, ["r4"])]
    assert result.language == "en"
    assert result.review_count == 4


def test_chinese_pros_and_cons_group_degree_variants_and_shorter_wording() -> None:
    result = summarize_product(ZH_REVIEWS, ZH_SUMMARIES)
    # 送货很快 = 送货快 once 很 is dropped; 续航短 is close enough to 电池续航短 (Dice 0.67) to join it.
    # Equal support: 包装完好 first, as both its bigrams recur across reviews (货快 is only in a).
    assert as_tuples(result.pros) == [
        ("包装完好", 2, ["a", "c"]),
        ("送货快", 2, ["a", "b"]),
        ("屏幕清晰", 1, ["d"]),
    ]
    assert as_tuples(result.cons) == [("续航短", 3, ["a", "b", "d"])]
    assert result.language == "zh"


def test_representative_ids_are_capped_at_three_and_counts_are_distinct_reviews() -> None:
    reviews = [ProductReview(f"r{i}", "手机很好。", 5) for i in range(6)]
    summaries = ["屏幕清晰，屏幕很清晰。"] * 6  # twice per review, still one supporting review each
    result = summarize_product(reviews, summaries)
    assert as_tuples(result.pros) == [("屏幕清晰", 6, ["r0", "r1", "r2"])]
    assert result.cons == []


def test_without_contrast_a_neutral_clause_takes_the_review_polarity() -> None:
    reviews = [ProductReview("p", "Five stars.", 5), ProductReview("n", "One star.", 1)]
    result = summarize_product(reviews, ["Arrived on time.", "Arrived on time."])
    assert as_tuples(result.pros) == [("Arrived on time", 1, ["p"])]
    assert as_tuples(result.cons) == [("Arrived on time", 1, ["n"])]


def test_without_summaries_phrases_come_from_review_clauses_with_an_opinion() -> None:
    result = summarize_product(EN_REVIEWS, None)
    pros = {a.phrase for a in result.pros}
    cons = {a.phrase for a in result.cons}
    assert "comfortable" in pros and "The price was great too" in pros  # "So" is a connective, dropped
    assert "the sole broke after a week" in cons
    # First-person clauses are about the reviewer, not the product.
    assert not any("I had" in p for p in pros | cons)


@pytest.mark.parametrize("summaries", [None, EN_SUMMARIES])
def test_every_phrase_is_taken_from_the_inputs(summaries: list[str] | None) -> None:
    result = summarize_product(EN_REVIEWS, summaries, max_aspects=10)
    sources = summaries if summaries is not None else [r.text for r in EN_REVIEWS]
    assert result.pros and result.cons
    for aspect in result.pros + result.cons:
        assert any(aspect.phrase in source for source in sources), aspect.phrase


def test_equal_support_is_ordered_by_words_other_reviews_share_not_input_order() -> None:
    reviews = [
        ProductReview("1", "Cute color. Strong zipper.", 5),
        ProductReview("2", "The zipper seems fine.", 4),
        ProductReview("3", "Zipper works.", 5),
    ]
    result = summarize_product(reviews, ["Cute color, strong zipper."] + [""] * 2)
    # All have one supporter; "zipper" is in all 3 reviews, "color" in one (weight 0).
    assert [a.phrase for a in result.pros] == ["strong zipper", "Zipper works", "The zipper seems fine", "Cute color"]


def test_sentence_adverbs_are_not_aspects_and_not_only_is_praise() -> None:
    review = ProductReview("x", "Unfortunately, the strap broke. Not only comfortable, but cute.", None)
    result = summarize_product([review], None)
    assert [a.phrase for a in result.cons] == ["the strap broke"]
    assert {a.phrase for a in result.pros} == {"Not only comfortable", "cute"}


def test_max_aspects_limits_the_lists() -> None:
    result = summarize_product(EN_REVIEWS, EN_SUMMARIES, max_aspects=1)
    assert [a.phrase for a in result.pros] == ["Comfortable"]
    assert [a.phrase for a in result.cons] == ["runs large"]


def test_a_summary_in_the_wrong_language_falls_back_to_the_review() -> None:
    review = ProductReview("x", "Great battery life.", 5)
    result = summarize_product([review], ["电池很好。"])
    assert as_tuples(result.pros) == [("Great battery life", 1, ["x"])]


def test_unreadable_model_output_is_not_shown_and_the_review_is_read_instead() -> None:
    result = summarize_product([ProductReview("x", "外观漂亮。", 5)], ["屏幕\ufffd清晰，电池\x16好。"])
    assert as_tuples(result.pros) == [("外观漂亮", 1, ["x"])]


# ---------------------------------------------------------------------------------------------------
# Ratings and polarity


def test_rating_distribution_and_shares_use_stars_then_the_lexicon() -> None:
    result = summarize_product(EN_REVIEWS, EN_SUMMARIES)
    assert result.rating_distribution == {1: 0, 2: 1, 3: 0, 4: 1, 5: 1}
    # r1, r2 positive by stars, r3 negative by stars, r4 negative by text ("broke" after "but").
    assert result.positive_share == pytest.approx(0.5)
    assert result.negative_share == pytest.approx(0.5)


def test_three_stars_is_neutral_and_unrated_reviews_are_not_in_the_distribution() -> None:
    reviews = [
        ProductReview("a", "It is ok.", 3),
        ProductReview("b", "Terrible, broke in a day.", None),
        ProductReview("c", "Works great, love it.", None),
        ProductReview("d", "Arrived on Monday.", None),
    ]
    result = summarize_product(reviews, None)
    assert result.rating_distribution == {1: 0, 2: 0, 3: 1, 4: 0, 5: 0}
    assert (result.positive_share, result.negative_share) == (0.25, 0.25)


def test_no_ratings_at_all_gives_an_all_zero_distribution() -> None:
    result = summarize_product(ZH_REVIEWS, None)
    assert result.rating_distribution == {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}
    # A complaint after 但/就是 weighs 1.5x: a has two praises (+2 - 1.5), b and d one (+1 - 1.5);
    # c's 没有破损 is a negated complaint, so praise.
    assert result.positive_share == pytest.approx(0.5)
    assert result.negative_share == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("text", "language", "sign"),
    [
        ("not bad at all", "en", 1),
        ("It isn't comfortable", "en", -1),
        ("质量不错", "zh", 1),
        ("质量不好", "zh", -1),
        ("没有问题", "zh", 1),
        ("用了一周没出现任何问题", "zh", 1),
        ("指示灯特别漂亮", "zh", 1),  # the 别 of 特别 is not a negator
        ("发短信很方便", "zh", 1),  # the 短 of 短信 is not "short"
        ("价格不贵", "zh", 1),
    ],
)
def test_lexicon_polarity_with_negation(text: str, language: str, sign: int) -> None:
    score = lexicon_score(text, language)
    assert (score > 0) - (score < 0) == sign


@pytest.mark.parametrize("rating", [0, 6])
def test_out_of_range_rating_is_rejected(rating: int) -> None:
    with pytest.raises(ValueError, match="not 1-5"):
        summarize_product([ProductReview("x", "ok", rating)], None)


def test_empty_input_and_mismatched_summaries_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one"):
        summarize_product([], None)
    with pytest.raises(ValueError, match="1 summaries for 4 reviews"):
        summarize_product(EN_REVIEWS, ["x"])


# ---------------------------------------------------------------------------------------------------
# Language and segmentation


@pytest.mark.parametrize(
    ("text", "language"),
    [("iPhone 15 的屏幕很好", "zh"), ("Great phone, 好", "en"), ("Nice", "en"), ("!!! 123", "")],
)
def test_language_is_detected_by_cjk_share(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_sentence_splitting() -> None:
    assert split_sentences("Deep pockets.I guess it works! Fine", "en") == [
        "Deep pockets.",
        "I guess it works!",
        "Fine",
    ]
    assert split_sentences("送货快。包装好！功能全.声音不错", "zh") == ["送货快。", "包装好！", "功能全.", "声音不错"]


def test_minority_language_reviews_count_but_do_not_feed_phrases_or_overall() -> None:
    reviews = [*ZH_REVIEWS, ProductReview("e", "Terrible phone, the screen is broken.", 1)]
    result = summarize_product(reviews, None)
    assert result.language == "zh" and result.review_count == 5
    assert result.rating_distribution[1] == 1
    assert all("e" not in a.review_ids for a in result.pros + result.cons)
    assert "Terrible" not in result.overall


# ---------------------------------------------------------------------------------------------------
# Overall summary


def _sentences_of(text: str, language: str) -> list[str]:
    return [s.rstrip("。.!?！？") for s in split_sentences(text, language)]


def test_single_review_yields_its_own_sentences_and_full_shares() -> None:
    review = ProductReview("only", "The fabric is soft and warm. Sizing runs true to the chart.", 5)
    result = summarize_product([review], None)
    assert result.review_count == 1
    assert (result.positive_share, result.negative_share) == (1.0, 0.0)
    assert result.rating_distribution == {1: 0, 2: 0, 3: 0, 4: 0, 5: 1}
    # Score order: 4 content words all in the centroid beat 3 (cosine grows with sqrt of the count).
    assert result.overall == "Sizing runs true to the chart. The fabric is soft and warm."


def test_overall_is_extractive_and_prefers_what_several_reviews_say() -> None:
    reviews = [
        ProductReview("1", "The battery lasts two days. My cousin bought one in Paris in the spring.", 5),
        ProductReview("2", "The battery easily lasts two days of use.", 5),
        ProductReview("3", "Battery lasts two days, screen is bright.", 4),
    ]
    result = summarize_product(reviews, None)
    first = _sentences_of(result.overall, "en")[0]
    assert "battery" in first.lower()
    assert "Paris" not in result.overall  # one reviewer's story shares no term with the others
    assert result.overall == "The battery lasts two days."  # the other two repeat it (Jaccard > 0.5)
    for sentence in _sentences_of(result.overall, "en"):
        assert any(sentence in r.text for r in reviews), sentence


def _long_en_reviews(n: int) -> list[ProductReview]:
    sentences = [
        "The shorts fit well, and the material feels durable.",
        "The mesh liner is too tight.",
        "Great price for such sharp swim trunks.",
        "The pockets are deep enough to keep keys and sunglasses.",
        "Stitching came loose after one trip to the beach.",
    ]
    return [
        ProductReview(f"r{i}", " ".join(sentences[(i + k) % len(sentences)] for k in range(4)), 1 + i % 5)
        for i in range(n)
    ]


def _long_zh_reviews(n: int) -> list[ProductReview]:
    texts = [
        "手机运行很流畅，拍照效果清晰，电池也很耐用，物流速度也快。",
        "屏幕显示效果很好，但是电池续航时间太短了，一天要充两次电。",
        "送货很快，包装完好，客服态度也很热情，整体来说非常满意。",
        "用了一个星期就死机了好几次，售后处理很慢，有点失望。",
    ]
    return [ProductReview(str(i), texts[i % len(texts)], None) for i in range(n)]


@pytest.mark.parametrize(
    ("reviews", "language", "limit"),
    [(_long_en_reviews(40), "en", OVERALL_MAX_WORDS), (_long_zh_reviews(40), "zh", OVERALL_MAX_CHARS)],
)
def test_overall_stays_within_the_length_budget(reviews: list[ProductReview], language: str, limit: int) -> None:
    overall = summarize_product(reviews, None).overall
    length = len(overall.split()) if language == "en" else len(overall)
    assert limit // 2 <= length <= limit, overall
    assert overall.endswith("。" if language == "zh" else ".")


def test_a_single_sentence_longer_than_the_budget_is_cut_to_it() -> None:
    text = " ".join(f"word{i}" for i in range(100))
    overall = summarize_product([ProductReview("x", text, 5)], None).overall
    assert overall == " ".join(f"word{i}" for i in range(OVERALL_MAX_WORDS)) + "."


def test_a_long_comma_only_chinese_review_is_chunked_not_dropped() -> None:
    clauses = ["屏幕显示效果非常清晰", "电池续航可以用两天", "拍照速度很快", "外壳手感细腻", "系统运行流畅"]
    text = "，".join(clauses * 2)  # 100 characters, no full stop
    overall = summarize_product([ProductReview("x", text, 5)], None).overall
    assert overall.endswith("。") and "屏幕显示效果非常清晰" in overall
    assert OVERALL_MAX_CHARS // 2 <= len(overall) <= OVERALL_MAX_CHARS


def test_500_reviews_are_aggregated_well_under_a_second() -> None:
    reviews = _long_en_reviews(500)
    started = time.perf_counter()
    result = summarize_product(reviews, None)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert result.review_count == 500
    assert result.rating_distribution == {1: 100, 2: 100, 3: 100, 4: 100, 5: 100}
    assert (result.positive_share, result.negative_share) == (0.4, 0.4)
    # Every review has 4 of the 5 sentences, so each sentence's opinion is in 400 reviews.
    assert max(a.review_count for a in result.pros) == 400
    assert max(a.review_count for a in result.cons) == 400

    zh = summarize_product(_long_zh_reviews(500), None)
    assert as_tuples(zh.pros)[0][1] == 125  # each template is every 4th review
    assert zh.language == "zh"


# ---------------------------------------------------------------------------------------------------
# FewSum evaluation inputs


def test_fewsum_loader_reads_tsv_with_and_without_ratings(tmp_path: Path) -> None:
    header = ["cat", "group_id", *[f"rev{k}" for k in range(1, 9)], "summ1", "summ2", "summ3"]
    row = ["shoes", "G1", *[f"Review {k} is fine. More text." for k in range(1, 9)], "S1", "S2", "S3"]
    (tmp_path / "fewsum").mkdir()
    (tmp_path / "fewsum" / "yelp_gold_val.csv").write_text("\t".join(header) + "\n" + "\t".join(row) + "\n")
    rated_header = header + [f"rating{k}" for k in range(1, 9)]
    rated_row = row + ["4.0"] * 8
    (tmp_path / "fewsum" / "amazon_gold_val.csv").write_text(
        "\t".join(rated_header) + "\n" + "\t".join(rated_row) + "\n"
    )
    (yelp,) = load_fewsum(tmp_path, "yelp", "val")
    (amazon,) = load_fewsum(tmp_path, "amazon", "val")
    assert yelp.references == ["S1", "S2", "S3"] and yelp.reviews[0].rating is None
    assert [r.rating for r in amazon.reviews] == [4] * 8 and amazon.reviews[7].id == "G1/8"
    assert first_sentences(yelp) == " ".join(f"Review {k} is fine." for k in range(1, 9))
    assert len(first_sentences(yelp, max_words=10).split()) == 10
