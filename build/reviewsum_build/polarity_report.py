"""Polarity agreement of an evaluation's summaries under several judges, and the disagreements to read.

`evaluate` scores polarity with one judge, the project's cached classifier. A model trained with a
polarity reward (`scst --polarity-judge`) could learn that judge's quirks instead of the review's
polarity, so this command re-scores the summaries `evaluate` wrote (`OUT/predictions.jsonl`) under
every judge given, without generating again, and can list the reviews where a system's summary and
its review get different labels, for reading by hand.

    python -m reviewsum_build.polarity_report runs/eval/s8 --judge runs/sentiment/classifier.pkl \\
        --judge runs/sentiment/reward_judge.pkl --list "model PyTorch scst5/best greedy"
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from reviewsum_build import sentiment

FIXED_FIELDS = ("key", "category", "review")


def read_predictions(eval_dir: Path) -> tuple[list[dict], list[str]]:
    """The rows of `predictions.jsonl` and the systems in it (references, models, baselines)."""
    path = eval_dir / "predictions.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (run `python -m reviewsum_build.evaluate --out {eval_dir}` first)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{path}: no predictions")
    return rows, [name for name in rows[0] if name not in FIXED_FIELDS]


def disagreements(review_labels: Sequence[int], judge, summaries: Sequence[str]) -> list[int]:
    """Indices where the judge labels the summary differently from its review's label."""
    summary_labels = judge.predict(summaries)
    return [i for i, (a, b) in enumerate(zip(review_labels, summary_labels, strict=True)) if a != b]


def agreement_table(rows: list[dict], systems: Sequence[str], judges: dict[str, object]) -> list[list[str]]:
    """One line per system: its name and its polarity agreement (x100) under each judge."""
    reviews = [r["review"] for r in rows]
    review_labels = {name: judge.predict(reviews) for name, judge in judges.items()}  # once per judge
    table = []
    for system in systems:
        summaries = [r[system] for r in rows]
        cells = [
            f"{100 * (1 - len(disagreements(review_labels[name], judge, summaries)) / len(rows)):.1f}"
            for name, judge in judges.items()
        ]
        table.append([system, *cells])
    return table


def format_table(header: Sequence[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("eval_dir", type=Path, help="an `evaluate --out` directory holding predictions.jsonl")
    p.add_argument(
        "--judge",
        type=Path,
        action="append",
        default=[],
        help="a pickled classifier (repeatable); default: the evaluation's, runs/sentiment/classifier.pkl",
    )
    p.add_argument("--list", dest="list_system", default=None, help="print this system's disagreements (first judge)")
    args = p.parse_args(argv)
    args.judge = args.judge or [sentiment.DEFAULT_CACHE]
    missing = [str(j) for j in args.judge if not j.is_file()]
    if missing:
        p.error(f"--judge: no such file: {', '.join(missing)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows, systems = read_predictions(args.eval_dir)
    if args.list_system is not None and args.list_system not in systems:
        raise SystemExit(f"--list {args.list_system!r}: not in {args.eval_dir}; systems: {', '.join(systems)}")
    judges = {j.stem: sentiment.load(j) for j in args.judge}
    print(f"{len(rows)} dev reviews; polarity agreement % (summary and review get the same label):")
    print(format_table(["system", *judges], agreement_table(rows, systems, judges)))
    if args.list_system is not None:
        name, first = next(iter(judges.items()))
        labels = first.predict([r["review"] for r in rows])
        summaries = [r[args.list_system] for r in rows]
        found = disagreements(labels, first, summaries)
        print(f"\n{args.list_system}: {len(found)} disagreements under {name} (review label first)")
        for i in found:
            print(f"- {rows[i]['key']} [{labels[i]}] {rows[i]['review']}\n  -> {summaries[i]}")


if __name__ == "__main__":
    main()
