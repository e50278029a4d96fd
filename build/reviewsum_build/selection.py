"""How much of a chosen checkpoint's dev score is the choice: half-split selection and a paired bootstrap.

A run that evaluates many checkpoints on the same dev set and keeps the best one reports a score that
is partly luck. This command scores every given checkpoint on every dev review (greedy, as served),
then, over many random halvings of the dev set, picks the best checkpoint on one half and scores it on
the other: the mean is what "pick on dev" is worth on reviews the pick did not see. With `--against`,
it also gives a paired bootstrap interval for the first checkpoint's gain over that one.

    python -m reviewsum_build.selection runs/scst4/steps/step_* --against runs/v4 --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from reviewsum_build import metrics
from reviewsum_build.sources import DEFAULT_DATA_DIR


def half_split_selection(
    scores: Mapping[str, Sequence[float]], halvings: int = 1000, seed: int = 0
) -> tuple[float, Counter]:
    """Mean held-out score of the checkpoint picked on the other half, over `halvings` random halvings
    (each used both ways), and how often each checkpoint was picked."""
    names = sorted(scores)
    n = len(scores[names[0]])
    rng = random.Random(seed)
    held_out: list[float] = []
    picks: Counter = Counter()
    for _ in range(halvings):
        order = list(range(n))
        rng.shuffle(order)
        halves = (order[: n // 2], order[n // 2 :])
        for pick_on, score_on in (halves, halves[::-1]):
            best = max(names, key=lambda name: sum(scores[name][i] for i in pick_on))
            picks[best] += 1
            held_out.append(sum(scores[best][i] for i in score_on) / len(score_on))
    return sum(held_out) / len(held_out), picks


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], resamples: int = 5000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of a - b over the items and its 95% percentile interval from resampling the items."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return sum(diffs) / n, means[int(0.025 * resamples)], means[int(0.975 * resamples)]


def per_review_rouge_l(checkpoint: Path, dev: Sequence, threads: int) -> list[float]:
    """Greedy (served) ROUGE-L F1 x 100 of the checkpoint's summary of each dev review."""
    import torch
    from transformers import BartForConditionalGeneration

    from reviewsum_build.modeling import MAX_SOURCE_TOKENS, generation_config
    from reviewsum_build.tokenizer import load_tokenizer
    from reviewsum_build.train import encode_all, generate_ids

    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(checkpoint)
    model = BartForConditionalGeneration.from_pretrained(checkpoint).eval()
    model.generation_config = generation_config()
    src = encode_all(tokenizer, [p.review for p in dev], MAX_SOURCE_TOKENS)
    summaries = [tokenizer.decode(ids) for ids in generate_ids(model, src)]
    return [metrics.rouge(s, p.summary)["rougeL"] for s, p in zip(summaries, dev, strict=True)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", type=Path, nargs="+", help="the checkpoints one would choose among")
    p.add_argument("--against", type=Path, default=None, help="bootstrap the best checkpoint's gain over this one")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--references-dir", type=Path, default=None, help="default: build/data/references")
    p.add_argument("--halvings", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if len(args.checkpoints) < 2:
        p.error("give at least two checkpoints to choose among")
    return args


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    from reviewsum_build.train import train_and_dev_pairs

    args = parse_args(argv)
    _, dev, _ = train_and_dev_pairs(args.data_dir, args.references_dir)
    if not dev:
        raise SystemExit(f"no dev pairs found in {args.data_dir}")
    scores = {str(c): per_review_rouge_l(c, dev, args.threads) for c in tqdm(args.checkpoints, desc="checkpoints")}
    for name, values in scores.items():
        print(f"{name}: dev ROUGE-L {sum(values) / len(values):.2f}")
    estimate, picks = half_split_selection(scores, args.halvings)
    best = max(scores, key=lambda name: sum(scores[name]))
    print(f"best on all of dev: {best} ({sum(scores[best]) / len(dev):.2f})")
    print(f"picked on one half, scored on the other ({2 * args.halvings} halves): {estimate:.2f}")
    print("picks: " + ", ".join(f"{name} {count}" for name, count in picks.most_common()))
    if args.against is not None:
        baseline = per_review_rouge_l(args.against, dev, args.threads)
        gain, low, high = paired_bootstrap(scores[best], baseline)
        better = sum(x > y for x, y in zip(scores[best], baseline, strict=True))
        worse = sum(x < y for x, y in zip(scores[best], baseline, strict=True))
        print(
            f"{best} - {args.against}: {gain:+.2f} ROUGE-L, 95% bootstrap interval {low:+.2f} to {high:+.2f}; "
            f"better on {better}, worse on {worse}, equal on {len(dev) - better - worse} of {len(dev)} reviews"
        )


if __name__ == "__main__":
    main()
