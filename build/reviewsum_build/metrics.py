"""Summary metrics: ROUGE-1/2/L F1, length, absent-from-review rate.

Tokens: every CJK character is a token (Chinese ROUGE at the character level); runs of Latin
letters/digits are words, lower-cased and Porter-stemmed (English ROUGE at the word level with
stemming); punctuation and whitespace are dropped. `rouge_score`'s default tokenizer drops non-ASCII
text, so it is given this one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[A-Za-z0-9]+(?:'[a-z]+)?")

# Connectives the task's template adds between positives and negatives; not content.
TEMPLATE_WORDS = frozenset({"但"})


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem import porter

    return porter.PorterStemmer()


def tokens(text: str, stem: bool = True) -> list[str]:
    text = unicodedata.normalize("NFKC", text)
    out = []
    for tok in _TOKEN.findall(text):
        if tok.isascii():
            tok = tok.lower()
            if stem and len(tok) > 3:
                tok = _stemmer().stem(tok)
        out.append(tok)
    return out


class RougeTokenizer:
    """The `tokenize(text)` object `rouge_score.rouge_scorer.RougeScorer` accepts."""

    def tokenize(self, text: str) -> list[str]:
        return tokens(text)


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=RougeTokenizer())


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """F1 x 100 for one pair."""
    scores = _scorer().score(reference, prediction)
    return {k: 100 * v.fmeasure for k, v in scores.items()}


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean F1 x 100 over pairs."""
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for pred, ref in zip(predictions, references, strict=True):
        for k, v in rouge(pred, ref).items():
            totals[k] += v
    n = max(1, len(predictions))
    return {k: v / n for k, v in totals.items()}


def summary_length(text: str) -> int:
    """Characters for Chinese (CJK chars + Latin words), i.e. the number of tokens."""
    return len(tokens(text, stem=False))


def absent_rate(summaries: Sequence[str], reviews: Sequence[str], exempt: frozenset[str] = TEMPLATE_WORDS) -> float:
    """Share (x100) of summary tokens (characters / words) that do not occur in their review.

    Tokens in `exempt` (the template connective 但) are not counted at all.
    """
    absent = total = 0
    for summary, review in zip(summaries, reviews, strict=True):
        seen = set(tokens(review))
        for tok in tokens(summary):
            if tok in exempt:
                continue
            total += 1
            absent += tok not in seen
    return 100 * absent / max(1, total)


def absent_tokens(summary: str, review: str, exempt: frozenset[str] = TEMPLATE_WORDS) -> set[str]:
    """The summary's tokens (not in `exempt`) that its review lacks."""
    return set(tokens(summary)) - set(tokens(review)) - exempt


def with_absent(summaries: Sequence[str], reviews: Sequence[str], exempt: frozenset[str] = TEMPLATE_WORDS) -> int:
    """How many summaries have at least one token (not in `exempt`) that their review lacks."""
    return sum(bool(absent_tokens(s, r, exempt)) for s, r in zip(summaries, reviews, strict=True))


def spurious_but(summaries: Sequence[str], references: Sequence[str]) -> int:
    """How many summaries contrast with 但 where their reference has none."""
    return sum("但" in s and "但" not in r for s, r in zip(summaries, references, strict=True))


def mbr_choice(candidates: Sequence[str]) -> str:
    """The candidate with the highest summed ROUGE-L F1 against all candidates (minimum Bayes risk).

    Repeated candidates count once per occurrence, so beams that agree weigh more; ties go to the
    earlier, higher-ranked candidate."""
    unique = list(dict.fromkeys(candidates))
    return max(unique, key=lambda c: sum(rouge(c, other)["rougeL"] for other in candidates))
