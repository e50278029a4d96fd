"""The gateway's token limit: counted with the served tokenizer, skipped only where the count cannot pass it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from reviewsum_server.validation import TokenCounter, token_counter
from tokenizers import Tokenizer

SHIPPED_TOKENIZER = Path(__file__).resolve().parents[2] / "model_repository/summarizer/1/artifacts/tokenizer.json"
TRICKY = [
    "屏幕很好，电池续航短。",
    "   spaces   between   words   ",
    "emoji 😀🎉👍🏽 and ZWJ 👨‍👩‍👧",
    "e\u0301 combining marks \u0958 \u2126 \u212b",  # NFC changes these
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "\U0001d54f\U0001d550 math letters, \ufdfa ligature",
    "a" * 300,
    "。，！" * 100,
]


@pytest.fixture(scope="module", params=["shipped", "tiny"])
def counter(request: pytest.FixtureRequest, tiny_artifacts: Path) -> TokenCounter:
    path = SHIPPED_TOKENIZER if request.param == "shipped" else tiny_artifacts / "tokenizer.json"
    counted = token_counter(str(path))
    assert counted is not None
    return counted


def random_text(rng: random.Random) -> str:
    pools = ["好差屏幕电池快递", "abc XYZ ", "😀🎉", "\u0301\u0958", "，。！？ "]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 120)))


def test_texts_under_the_bound_really_are_under_every_limit(counter: TokenCounter) -> None:
    rng = random.Random(0)
    texts = TRICKY + [random_text(rng) for _ in range(2000)]
    for text in texts:
        tokens = counter(text)
        # may_exceed is False exactly when the bound says `limit` cannot be passed: check that at the edge.
        for limit in (tokens - 1, tokens, tokens + 5):
            if not counter.may_exceed(text, limit):
                assert tokens <= limit, (text, tokens, limit)


def test_short_reviews_skip_tokenization_and_long_ones_are_counted(counter: TokenCounter) -> None:
    assert not counter.may_exceed("屏幕很好，电池续航短。", 1024)
    assert counter.may_exceed("屏幕很好" * 100, 1024)


def test_other_normalizers_always_count(tmp_path: Path) -> None:
    spec = json.loads(SHIPPED_TOKENIZER.read_text(encoding="utf-8"))
    spec["normalizer"] = {"type": "NFKC"}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    counter = TokenCounter(Tokenizer.from_file(str(path)))
    assert counter.may_exceed("好", 1024)
