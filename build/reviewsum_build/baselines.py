"""Cheap baselines a learned summarizer has to beat."""

from __future__ import annotations

import re

FIRST_CHARS = 17
CLAUSE_BUDGET = 18
_CLAUSE_END = re.compile(r"(?<=[，,。.！!？?；;~～、…])")


def full_review(text: str) -> str:
    return text


def first_chars(text: str, n: int = FIRST_CHARS) -> str:
    """The first `n` characters of the review."""
    return text.strip()[:n]


def clauses(text: str) -> list[str]:
    """Clauses with their closing punctuation, split after ，。！？；, and the like."""
    return [c for c in _CLAUSE_END.split(text.strip()) if c.strip()]


def first_clauses(text: str, budget: int = CLAUSE_BUDGET) -> str:
    """Whole leading clauses while the total stays within `budget` characters (the first clause cut
    to `budget` if it alone is longer); a trailing comma becomes `。`."""
    parts = clauses(text)
    if not parts:
        return ""
    out = parts[0][:budget]
    for clause in parts[1:]:
        if len(out) + len(clause) > budget:
            break
        out += clause
    out = out.strip()
    if out and out[-1] in "，,、；;":
        out = out[:-1] + "。"
    return out


def textrank(text: str, sentences: int = 1) -> str:
    """snownlp's TextRank summary: `SnowNLP(text).summary(1)`, joined with `，`."""
    from snownlp import SnowNLP

    try:
        picked = SnowNLP(text).summary(sentences)
    except (ZeroDivisionError, ValueError, IndexError):
        picked = []
    return "，".join(picked) if picked else text


BASELINES = {
    "full review": full_review,
    f"first {FIRST_CHARS} chars": first_chars,
    f"first clauses <= {CLAUSE_BUDGET} chars": first_clauses,
    "snownlp TextRank": textrank,
}
