"""SummarizeProduct, the bulk stream and the summary stream through the real gateway and Triton (tiny model)."""

from __future__ import annotations

import time

import pytest
from reviewsum import FinishReason, InvalidArgumentError, ProductReviewInput, ReviewInput, ReviewSumClient
from reviewsum_engine import GenerationOptions, OnnxSummarizer

pytestmark = pytest.mark.integration

PRODUCT_REVIEWS = [
    ProductReviewInput("屏幕效果非常棒，性价比高，但品控有待提升。", id="a", rating=4),
    ProductReviewInput("屏幕清晰，运行流畅，电池也耐用。", id="b", rating=5),
    ProductReviewInput("电池续航太短，发热严重，不推荐。", id="c", rating=2),
    ProductReviewInput("物流很快，包装完好。", id="d"),
]


def test_product_summary_end_to_end(client: ReviewSumClient) -> None:
    product = client.summarize_product(PRODUCT_REVIEWS, product_id="phone-1")
    assert product.product_id == "phone-1" and product.review_count == 4 and product.language == "zh"
    assert product.rating_distribution == {1: 0, 2: 1, 3: 0, 4: 1, 5: 1}
    assert product.overall_summary
    assert product.positive_share + product.negative_share <= 1.0
    assert all(set(a.review_ids) <= {"a", "b", "c", "d"} for a in product.pros + product.cons)
    assert product.model == "summarizer/1"


def test_bulk_stream_matches_the_engine_and_reports_bad_items(client: ReviewSumClient, engine: OnnxSummarizer) -> None:
    texts = [f"第{i}条评论：送货很快，质量不错，但是价格有点贵。" for i in range(40)]
    items = [ReviewInput(text, id=f"r{i}") for i, text in enumerate(texts)] + [ReviewInput("  ", id="blank")]
    results = {r.id: r for r in client.summarize_bulk(items)}
    expected = engine.summarize(texts, [GenerationOptions()] * len(texts))
    assert set(results) == {f"r{i}" for i in range(40)} | {"blank"}
    assert [results[f"r{i}"].summary.summary for i in range(40)] == [g.text for g in expected]  # type: ignore[union-attr]
    assert results["blank"].error is not None and results["blank"].error.code == "INVALID_ARGUMENT"


def test_stream_text_equals_the_one_shot_summary(client: ReviewSumClient) -> None:
    text = "房间干净，服务员态度很好，就是隔音不太好。"
    one_shot = client.summarize([text]).summaries[0]
    events = list(client.stream(text))
    assert "".join(e.text_delta for e in events) == one_shot.summary
    last = events[-1]
    assert last.finished and last.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    assert (last.input_tokens, last.summary_tokens) == (one_shot.input_tokens, one_shot.summary_tokens)


def test_stream_validation_happens_before_triton(client: ReviewSumClient) -> None:
    with pytest.raises(InvalidArgumentError):
        list(client.stream("   "))


def test_abandoned_stream_leaves_the_service_healthy(client: ReviewSumClient) -> None:
    events = client.stream("轻薄便携，但性能稍弱，续航能力一般。" * 5)
    next(iter(events))
    events.close()  # cancels the call; Triton stops decoding that request
    time.sleep(0.2)
    assert client.health() is True
    assert client.summarize(["好评"]).summaries[0].summary
