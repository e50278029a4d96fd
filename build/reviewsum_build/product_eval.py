"""ROUGE of the product-level overall summary on FewSum, next to two cheap baselines.

    python -m reviewsum_build.product_eval [--data-dir ../shared/data] [--split val]
        [--summaries-from ARTIFACTS_DIR] [--json OUT]

FewSum (Amazon: 12 validation products; Yelp: 30 validation businesses) gives 8 reviews per item and
3 human-written summaries of the whole item. Every system is scored with rouge_score F1 (English
words, Porter stemming) against each of the 3 references separately; the 3 scores are averaged per
item, then over items. Baselines on the same items:

- random single review: one review drawn per item, averaged over `RANDOM_SEEDS` seeds;
- first sentences: the first sentence of each review, concatenated, cut to 60 words.

Tune on `--split train` only (amazon_gold_train, yelp_gold_train); report `--split val`.
`--summaries-from` also runs the ONNX model on every review and passes its summaries to
`summarize_product` (they feed only the pros/cons, so the overall summary's scores do not change) and
adds a row for the model summaries themselves, concatenated and cut to 60 words.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reviewsum_server.product import EN, OVERALL_MAX_WORDS, ProductReview, split_sentences, summarize_product

SOURCES = ("amazon", "yelp")
REVIEWS_PER_ITEM = 8
REFERENCES_PER_ITEM = 3
RANDOM_SEEDS = (0, 1, 2, 3, 4)
METRICS = ("rouge1", "rouge2", "rougeL")


@dataclass(frozen=True)
class FewSumItem:
    group_id: str
    reviews: list[ProductReview]
    references: list[str]


def load_fewsum(data_dir: Path, source: str, split: str) -> list[FewSumItem]:
    """One FewSum gold file (TSV despite the .csv name). Yelp has no rating columns."""
    path = data_dir / "fewsum" / f"{source}_gold_{split}.csv"
    csv.field_size_limit(10**7)
    items: list[FewSumItem] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            reviews = [
                ProductReview(id=f"{row['group_id']}/{k}", text=row[f"rev{k}"], rating=_rating(row.get(f"rating{k}")))
                for k in range(1, REVIEWS_PER_ITEM + 1)
            ]
            references = [row[f"summ{k}"] for k in range(1, REFERENCES_PER_ITEM + 1)]
            items.append(FewSumItem(row["group_id"], reviews, references))
    return items


def _rating(value: str | None) -> int | None:
    return int(float(value)) if value and value.strip() else None


# --------------------------------------------------------------------------------------------------
# Systems: each maps an item to one summary


def random_review(seed: int) -> Callable[[FewSumItem], str]:
    rng = random.Random(seed)
    return lambda item: rng.choice(item.reviews).text


def first_sentences(item: FewSumItem, max_words: int = OVERALL_MAX_WORDS) -> str:
    firsts = [split_sentences(r.text, EN)[:1] for r in item.reviews]
    words = " ".join(s[0] for s in firsts if s).split()
    return " ".join(words[:max_words])


def ours(item: FewSumItem) -> str:
    return summarize_product(item.reviews, None).overall


# --------------------------------------------------------------------------------------------------
# Scoring


PerItem = dict[str, list[float]]  # metric -> F1 x100 of each item (mean over its references)


class ReferenceScorer:
    """rouge_score F1 of a summary against each reference of an item, averaged over the references."""

    def __init__(self) -> None:
        from rouge_score import rouge_scorer

        self._scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)

    def per_item(self, predictions: Sequence[str], items: Sequence[FewSumItem]) -> PerItem:
        out: PerItem = {m: [] for m in METRICS}
        for prediction, item in zip(predictions, items, strict=True):
            scores = [self._scorer.score(reference, prediction) for reference in item.references]
            for metric in METRICS:
                out[metric].append(100 * statistics.fmean(s[metric].fmeasure for s in scores))
        return out

    def system(self, system: Callable[[FewSumItem], str], items: Sequence[FewSumItem]) -> PerItem:
        return self.per_item([system(item) for item in items], items)

    def random_baseline(self, items: Sequence[FewSumItem]) -> PerItem:
        """Per item, the mean over `RANDOM_SEEDS` of a randomly drawn review's score."""
        runs = [self.system(random_review(seed), items) for seed in RANDOM_SEEDS]
        return {m: [statistics.fmean(r[m][k] for r in runs) for k in range(len(items))] for m in METRICS}


def averaged(per_item: PerItem) -> dict[str, float]:
    return {m: statistics.fmean(v) for m, v in per_item.items()}


def wins(ours: PerItem, baseline: PerItem) -> dict[str, int]:
    """On how many items ours scores strictly higher: a paired view that a mean over 12 items lacks."""
    return {m: sum(a > b for a, b in zip(ours[m], baseline[m], strict=True)) for m in METRICS}


def mean_words(predictions: Sequence[str]) -> float:
    return statistics.fmean(len(p.split()) for p in predictions)


# --------------------------------------------------------------------------------------------------
# Optional: per-review model summaries from the ONNX engine


def model_summaries(artifacts_dir: Path, items: Sequence[FewSumItem]) -> list[list[str]]:
    from reviewsum_engine import GenerationOptions, OnnxSummarizer

    summarizer = OnnxSummarizer(artifacts_dir)
    out: list[list[str]] = []
    for item in items:
        texts = [r.text for r in item.reviews]
        out.append([g.text for g in summarizer.summarize(texts, [GenerationOptions()] * len(texts))])
    return out


def joined_model_summaries(summaries: Sequence[str], max_words: int = OVERALL_MAX_WORDS) -> str:
    return " ".join(" ".join(summaries).split()[:max_words])


# --------------------------------------------------------------------------------------------------
# CLI


OURS = "ours: centroid extractive"
RANDOM = "random single review"
FIRST = "first sentences, 60 words"


def evaluate(data_dir: Path, split: str, artifacts_dir: Path | None) -> dict[str, dict[str, dict[str, float]]]:
    """{data set: {system: {metric: F1 x100}}}; ours also carries its mean length and paired wins."""
    scorer = ReferenceScorer()
    results: dict[str, dict[str, dict[str, float]]] = {}
    for source in SOURCES:
        items = load_fewsum(data_dir, source, split)
        overall = [ours(item) for item in items]
        per_item = {
            RANDOM: scorer.random_baseline(items),
            FIRST: scorer.system(first_sentences, items),
            OURS: scorer.per_item(overall, items),
        }
        if artifacts_dir is not None:
            summaries = model_summaries(artifacts_dir, items)
            joined = [joined_model_summaries(s) for s in summaries]
            per_item["model review summaries joined, 60 words"] = scorer.per_item(joined, items)
            _print_aspects(items[0], summaries[0])
        rows: dict[str, dict[str, float]] = {name: averaged(scores) for name, scores in per_item.items()}
        rows[OURS]["mean_words"] = mean_words(overall)
        for baseline in (RANDOM, FIRST):
            for metric, count in wins(per_item[OURS], per_item[baseline]).items():
                rows[OURS][f"wins_vs_{baseline}_{metric}"] = count
        results[f"{source} {split} ({len(items)} items)"] = rows
    return results


def _print_aspects(item: FewSumItem, summaries: Sequence[str]) -> None:
    result = summarize_product(item.reviews, summaries)
    print(f"# {item.group_id}: pros/cons from model summaries", file=sys.stderr)
    for label, aspects in (("pro", result.pros), ("con", result.cons)):
        for aspect in aspects:
            print(f"  {label} {aspect.review_count}x {aspect.phrase!r} {aspect.review_ids}", file=sys.stderr)


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        "ROUGE F1 x100 (rouge_score, English words, Porter stemming), each summary scored against each of "
        f"the {REFERENCES_PER_ITEM} references, averaged over references, then items; random review: "
        f"mean of {len(RANDOM_SEEDS)} seeds.",
        "",
        "| data set | system | R-1 | R-2 | R-L |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for data_set, rows in results.items():
        for system, scores in rows.items():
            cells = " | ".join(f"{scores[m]:.2f}" for m in METRICS)
            lines.append(f"| {data_set} | {system} | {cells} |")
    lines.append("")
    for data_set, rows in results.items():
        mine = rows[OURS]
        for baseline in (RANDOM, FIRST):
            counts = "/".join(str(int(mine[f"wins_vs_{baseline}_{m}"])) for m in METRICS)
            lines.append(f"{data_set}: ours above {baseline} on {counts} items (R-1/R-2/R-L)")
        lines.append(f"{data_set}: ours averages {mine['mean_words']:.1f} words")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--split", choices=("train", "val"), default="val")
    parser.add_argument("--summaries-from", type=Path, default=None, metavar="ARTIFACTS_DIR")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = parser.parse_args(argv)
    results = evaluate(args.data_dir, args.split, args.summaries_from)
    print(format_table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
