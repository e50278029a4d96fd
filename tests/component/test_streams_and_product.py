"""StreamSummarizeReview, StreamSummarizeReviews and SummarizeProduct on the real gateway (fake engine)."""

from __future__ import annotations

import pytest
from reviewsum import (
    NO_RETRIES,
    AsyncReviewSumClient,
    FinishReason,
    InvalidArgumentError,
    ProductReviewInput,
    ReviewInput,
    SummarizeOptions,
)
from reviewsum_server.app import create_server
from reviewsum_server.domain import EngineUnavailable

from tests.component.conftest import open_and_close_a_slow_stream, with_limits
from tests.component.fake_engine import FakeEngine


async def test_stream_pieces_add_up_to_the_summary_and_the_last_has_the_counts(
    client: AsyncReviewSumClient,
) -> None:
    events = [e async for e in client.stream("屏幕很好😀", request_id="s-1")]
    assert "".join(e.text_delta for e in events) == "摘要:屏幕很好😀"
    assert [e.finished for e in events] == [False] * (len(events) - 1) + [True]
    last = events[-1]
    assert last.finish_reason is FinishReason.STOP and last.input_tokens == 6 and last.summary_tokens == 5


async def test_stream_rejects_beam_search(client: AsyncReviewSumClient) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        _ = [e async for e in client.stream("好", options=SummarizeOptions(beam_size=2))]
    assert [v.field for v in info.value.field_violations] == ["options.beam_size"]


async def test_closing_a_stream_cancels_the_generation(client: AsyncReviewSumClient, engine: FakeEngine) -> None:
    await open_and_close_a_slow_stream(client, engine)
    assert engine.cancelled == 1


async def test_bulk_stream_answers_every_item_by_id_and_bad_items_do_not_stop_it(
    client: AsyncReviewSumClient, engine: FakeEngine
) -> None:
    engine.error = EngineUnavailable("model restarting")
    engine.fail_texts = {"坏掉的"}
    items = [ReviewInput(f"评论{i}", id=f"id{i}") for i in range(30)]
    items += [ReviewInput("   ", id="blank"), ReviewInput("评论0", id="id0"), ReviewInput("坏掉的", id="engine-fails")]
    results = [r async for r in client.summarize_bulk(items)]
    by_id: dict[str, list] = {}
    for result in results:
        by_id.setdefault(result.id, []).append(result)
    assert len(results) == 33
    assert all(by_id[f"id{i}"][0].summary.summary == f"摘要:评论{i}" for i in range(1, 30))
    assert by_id["blank"][0].error.code == "INVALID_ARGUMENT" and by_id["blank"][0].error.field == "text"
    assert sorted(r.error.field if r.error else "ok" for r in by_id["id0"]) == ["id", "ok"]
    assert by_id["engine-fails"][0].error.code == "UNAVAILABLE"


async def test_bulk_stream_keeps_at_most_its_window_in_progress() -> None:
    engine = FakeEngine(delay_s=0.02)
    gateway = await create_server(with_limits(bulk_window=3), engine)
    try:
        async with AsyncReviewSumClient(f"127.0.0.1:{gateway.port}", retry=NO_RETRIES) as client:

            async def produce():  # type: ignore[no-untyped-def]
                for i in range(40):
                    yield ReviewInput(f"评论{i}")

            results = [r async for r in client.summarize_bulk(produce())]
        assert sorted(int(r.id) for r in results) == list(range(40))
        assert engine.max_concurrent == 3
    finally:
        await gateway.stop(0)


async def test_product_summary_counts_ratings_and_shares(client: AsyncReviewSumClient) -> None:
    reviews = [
        ProductReviewInput("屏幕很好，电池续航短。", id="a", rating=4),
        ProductReviewInput("屏幕很好，性价比高。", id="b", rating=5),
        ProductReviewInput("电池续航短，发热严重。", id="c", rating=2),
        ProductReviewInput("还可以吧。", id="d"),
    ]
    product = await client.summarize_product(reviews, product_id="p-1", max_aspects=3)
    assert product.product_id == "p-1" and product.review_count == 4 and product.language == "zh"
    assert product.rating_distribution == {1: 0, 2: 1, 3: 0, 4: 1, 5: 1}
    assert product.positive_share == pytest.approx(0.5) and product.negative_share == pytest.approx(0.25)
    assert product.overall_summary
    assert len(product.pros) <= 3 and len(product.cons) <= 3
    for aspect in product.pros + product.cons:
        assert aspect.review_count >= 1 and set(aspect.review_ids) <= {"a", "b", "c", "d"}


async def test_product_request_validation_names_the_fields(client: AsyncReviewSumClient) -> None:
    reviews = [ProductReviewInput("好", rating=6), ProductReviewInput(" ")]
    with pytest.raises(InvalidArgumentError) as info:
        await client.summarize_product(reviews, max_aspects=20)
    assert {v.field for v in info.value.field_violations} == {"reviews[0].rating", "reviews[1].text", "max_aspects"}
