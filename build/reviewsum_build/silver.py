"""Silver pairs: a trained model's beam-search summaries of reviews nobody summarized by hand.

Sequence-level self-distillation: fine-tuning the served (greedy) model on its own beam-search
outputs for unlabeled in-domain reviews moves its greedy decodes towards the beam's. The pairs are
machine-written, so they are kept apart from the reference summaries: written under `runs/` (never
committed), marked `"teacher"` on every line, and mixed into fine-tuning only through
`train finetune --silver FILE`. Reviews are Chinese reviews of the annotatable length that are
neither dev reviews (by key or text) nor reviews with a reference summary. A summary with a
character or word absent from its review (the template 但 aside, as in the absent rate) is dropped
rather than taught (faithfulness filter).

    python -m reviewsum_build.silver --checkpoint runs/v3 --data-dir ../shared/data \\
        --out runs/silver/silver.jsonl --count 30000 --beams 4
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reviewsum_build import annotation, corpus, sources
from reviewsum_build.metrics import TEMPLATE_WORDS, absent_tokens, tokens
from reviewsum_build.sources import Review


@dataclass(frozen=True)
class SilverPair:
    key: str
    review: str
    summary: str


def unlabeled_reviews(data_dir: Path, references_dir: Path = annotation.REFERENCES_DIR) -> list[Review]:
    """Annotatable Chinese reviews with no reference summary and no tie to the dev set."""
    referenced = annotation.keys_in(references_dir) | annotation.keys_in(annotation.ANNOTATE_DIR)
    dev = corpus.dev_exclusion(data_dir, references_dir)
    reviews = list(annotation.chinese_reviews(data_dir))
    seen = {r.text for r in reviews if r.key in referenced}
    kept = []
    for review in reviews:
        if review.key in referenced or dev.excludes(review, review.text):
            continue
        if annotation.MIN_CHARS <= len(review.text) <= annotation.MAX_CHARS and review.text not in seen:
            seen.add(review.text)
            kept.append(review)
    return kept


def sample_reviews(reviews: Sequence[Review], count: int, seed: int) -> list[Review]:
    picked = list(reviews)
    random.Random(seed).shuffle(picked)
    return picked[:count]


def is_faithful(review: str, summary: str) -> bool:
    """Non-empty, and every token of the summary (as the absent rate counts them) occurs in the review."""
    return bool(set(tokens(summary)) - TEMPLATE_WORDS) and not absent_tokens(summary, review)


def read_silver(path: Path) -> list[SilverPair]:
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            pairs.append(SilverPair(row["key"], row["review"], row["summary"]))
    return pairs


def _done_keys(out: Path) -> set[str]:
    if not out.exists():
        return set()
    return {json.loads(line)["key"] for line in out.read_text(encoding="utf-8").splitlines() if line.strip()}


def _chunks(items: Sequence[Review], size: int) -> Iterable[Sequence[Review]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def write_silver(
    checkpoint: Path, reviews: Sequence[Review], out: Path, beams: int, chunk: int = 480
) -> dict[str, int]:
    """Summarize `reviews` with the checkpoint, appending faithful pairs to `out` (resumable by key)."""
    from tqdm import tqdm
    from transformers import BartForConditionalGeneration

    from reviewsum_build.modeling import MAX_SOURCE_TOKENS, generation_config
    from reviewsum_build.tokenizer import load_tokenizer
    from reviewsum_build.train import encode_all, generate_ids

    done = _done_keys(out)
    todo = [r for r in reviews if r.key not in done]
    tokenizer = load_tokenizer(checkpoint)
    model = BartForConditionalGeneration.from_pretrained(checkpoint).eval()
    model.generation_config = generation_config(num_beams=beams)
    counts = {"kept": 0, "unfaithful": 0, "already written": len(done)}
    out.parent.mkdir(parents=True, exist_ok=True)
    teacher = f"{checkpoint.name} beam {beams}"
    with out.open("a", encoding="utf-8") as f, tqdm(total=len(todo), desc="silver", unit="review") as bar:
        for part in _chunks(todo, chunk):
            ids = generate_ids(model, encode_all(tokenizer, [r.text for r in part], MAX_SOURCE_TOKENS))
            for review, summary_ids in zip(part, ids, strict=True):
                summary = tokenizer.decode(summary_ids).strip()
                faithful = is_faithful(review.text, summary)
                counts["kept" if faithful else "unfaithful"] += 1
                # Unfaithful ones are recorded too (summary empty) so a resumed run does not redo them.
                row = {"key": review.key, "review": review.text, "summary": summary if faithful else ""}
                f.write(json.dumps({**row, "teacher": teacher}, ensure_ascii=False) + "\n")
            f.flush()
            bar.update(len(part))
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="the teacher (a Hugging Face checkpoint)")
    parser.add_argument("--data-dir", type=Path, default=sources.DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    pool = unlabeled_reviews(args.data_dir.resolve())
    reviews = sample_reviews(pool, args.count, args.seed)
    print(f"{len(pool)} unlabeled reviews; summarizing {len(reviews)} with {args.checkpoint} (beam {args.beams})")
    counts = write_silver(args.checkpoint, reviews, args.out, args.beams)
    print(f"wrote {args.out}: {counts}")


if __name__ == "__main__":
    main()
