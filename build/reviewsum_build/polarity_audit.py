"""Hand-judged polarity agreement: blind batches for annotators, their judgements, and the score.

The classifier behind `evaluate`'s polarity column is right on about 94% of held-out reviews, so on
300 dev pairs its errors are as large as the differences it is asked to show. This command measures
the same thing by reading: annotators see each dev review with its distinct candidate summaries
(shuffled, under opaque ids, no system names) and say, per summary, whether it keeps the review's
polarity (build/data/polarity_audit/RUBRIC.md). Judgements are kept by (review key, summary text),
so a new model's evaluation needs only its new summaries judged.

    python -m reviewsum_build.polarity_audit batches runs/eval/s9 --out runs/audit/s9   # to annotate
    python -m reviewsum_build.polarity_audit collect runs/audit/s9 --annotator-prefix s9-
    python -m reviewsum_build.polarity_audit score runs/eval/s9 [--list SYSTEM] [--paired SYSTEM] \\
        [--classifier runs/sentiment/classifier.pkl]
    python -m reviewsum_build.polarity_audit variants runs/eval/s9 runs/eval/s10_ce [--system SYSTEM ...]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import secrets
import shutil
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from reviewsum_build import metrics
from reviewsum_build.polarity_report import disagreements, format_table, read_predictions

AUDIT_DIR = Path(__file__).resolve().parents[1] / "data" / "polarity_audit"
DEFAULT_JUDGEMENTS = AUDIT_DIR / "judgements.jsonl"
RUBRIC = AUDIT_DIR / "RUBRIC.md"
PROBLEMS = ("opposite", "aspect_reversed", "dropped_dominant_side", "garbled", "no_opinion", "other")
REVIEW_POLARITIES = ("positive", "negative", "mixed", "neutral")


@dataclass(frozen=True)
class Judgement:
    key: str
    summary: str
    annotator: str
    review_polarity: str
    keeps: bool
    problem: str | None
    why: str


def read_judgements(path: Path) -> list[Judgement]:
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Judgement(**json.loads(line)) for line in lines if line.strip()]


def by_pair(judgements: Iterable[Judgement]) -> dict[tuple[str, str], list[Judgement]]:
    out: dict[tuple[str, str], list[Judgement]] = defaultdict(list)
    for j in judgements:
        out[(j.key, j.summary)].append(j)
    return out


# --- batches ---------------------------------------------------------------------------------


def pairs_to_judge(
    rows: Sequence[dict], systems: Sequence[str], judged: dict[tuple[str, str], list[Judgement]], judges: int
) -> dict[str, list[str]]:
    """Per review key, its distinct summaries that have fewer than `judges` judgements."""
    todo: dict[str, list[str]] = {}
    for row in rows:
        summaries = []
        for system in systems:
            text = row[system]
            if text not in summaries and len(judged.get((row["key"], text), [])) < judges:
                summaries.append(text)
        if summaries:
            todo[row["key"]] = summaries
    return todo


def write_batches(
    rows: Sequence[dict], todo: dict[str, list[str]], out: Path, judges: int, per_batch: int, seed: int
) -> list[Path]:
    """Blind batch files: every review in `judges` different batches, summaries shuffled under opaque ids.

    The id -> (key, summary) map goes to `out/key.json`, which annotators must not be shown."""
    rng = random.Random(seed)
    reviews = {r["key"]: r["review"] for r in rows}
    sids = {(k, s): secrets.token_hex(4) for k, texts in todo.items() for s in texts}
    keys = list(todo)
    rng.shuffle(keys)
    groups = [keys[i : i + per_batch] for i in range(0, len(keys), per_batch)]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for copy in range(judges):
        for g, group in enumerate(groups):
            number = copy * len(groups) + g + 1
            order = list(group)
            rng.shuffle(order)
            path = out / f"batch_{number}.jsonl"
            with path.open("w", encoding="utf-8") as f:
                for n, key in enumerate(order):
                    texts = list(todo[key])
                    rng.shuffle(texts)
                    item = {
                        "item": f"{number}-{n:03d}",
                        "review": reviews[key],
                        "summaries": [{"sid": sids[(key, t)], "text": t} for t in texts],
                    }
                    f.write(json.dumps(item, ensure_ascii=False) + "\n")
            paths.append(path)
    key_map = {sid: {"key": k, "summary": s} for (k, s), sid in sids.items()}
    (out / "key.json").write_text(json.dumps(key_map, ensure_ascii=False, indent=0), encoding="utf-8")
    shutil.copy(RUBRIC, out / "RUBRIC.md")
    return paths


# --- collect ---------------------------------------------------------------------------------


def answers_to_judgements(batch: Path, answers: Path, key_map: dict, annotator: str) -> list[Judgement]:
    """One annotator's answers, checked against their batch: every item and summary id exactly once."""
    items = {}
    for line in batch.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        items[item["item"]] = {s["sid"] for s in item["summaries"]}
    found: list[Judgement] = []
    seen_items = set()
    for n, line in enumerate(answers.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{answers}:{n}"
        answer = json.loads(line)
        item = answer.get("item")
        if item not in items or item in seen_items:
            raise ValueError(f"{where}: item {item!r} is not in {batch.name} or is answered twice")
        seen_items.add(item)
        polarity = answer.get("review_polarity")
        if polarity not in REVIEW_POLARITIES:
            raise ValueError(f"{where}: review_polarity {polarity!r} is not one of {', '.join(REVIEW_POLARITIES)}")
        sids = [j.get("sid") for j in answer.get("judgements", [])]
        if sorted(sids) != sorted(items[item]):
            raise ValueError(f"{where}: judged ids {sorted(sids)} are not the item's {sorted(items[item])}")
        for j in answer["judgements"]:
            found.append(_judgement(j, key_map, annotator, polarity, where))
    missing = sorted(set(items) - seen_items)
    if missing:
        raise ValueError(f"{answers}: {len(missing)} items of {batch.name} unanswered, first {missing[0]}")
    return found


def _judgement(answer: dict, key_map: dict, annotator: str, polarity: str, where: str) -> Judgement:
    keeps, problem, why = answer.get("keeps"), answer.get("problem"), answer.get("why") or ""
    if not isinstance(keeps, bool):
        raise ValueError(f"{where}: sid {answer['sid']}: keeps must be true or false, got {keeps!r}")
    if keeps and problem is not None:
        raise ValueError(f"{where}: sid {answer['sid']}: a kept summary has problem {problem!r}")
    if not keeps and (problem not in PROBLEMS or not why.strip()):
        raise ValueError(f"{where}: sid {answer['sid']}: keeps=false needs a problem ({', '.join(PROBLEMS)}) and why")
    pair = key_map[answer["sid"]]
    return Judgement(pair["key"], pair["summary"], annotator, polarity, keeps, problem, why.strip())


def collect(batch_dir: Path, judgements_path: Path, annotator_prefix: str) -> int:
    """Append every answered batch's judgements; refuses the lot if any answers file is malformed."""
    key_map = json.loads((batch_dir / "key.json").read_text(encoding="utf-8"))
    new: list[Judgement] = []
    for batch in sorted(batch_dir.glob("batch_*.jsonl"), key=lambda p: int(p.stem.split("_")[1])):
        answers = batch_dir / batch.name.replace("batch_", "answers_")
        if not answers.is_file():
            raise ValueError(f"{answers}: missing (every batch needs its answers before collecting)")
        new += answers_to_judgements(batch, answers, key_map, f"{annotator_prefix}{batch.stem}")
    already = {(j.key, j.summary, j.annotator) for j in read_judgements(judgements_path)}
    clash = [j for j in new if (j.key, j.summary, j.annotator) in already]
    if clash:
        raise ValueError(
            f"{judgements_path}: already holds {len(clash)} of these judgements (annotator {clash[0].annotator})"
        )
    judgements_path.parent.mkdir(parents=True, exist_ok=True)
    with judgements_path.open("a", encoding="utf-8") as f:
        for j in new:
            f.write(json.dumps(asdict(j), ensure_ascii=False) + "\n")
    return len(new)


# --- score -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemScore:
    system: str
    judged: int  # summaries with at least one judgement
    unjudged: int
    kept_by_all: float  # % of judged summaries every annotator says keep polarity
    kept_by_any: float
    split: int  # summaries the annotators disagree on
    problems: dict[str, int]  # problem -> summaries with it (named by any annotator)


def score_system(rows: Sequence[dict], system: str, judged: dict[tuple[str, str], list[Judgement]]) -> SystemScore:
    verdicts = [judged.get((r["key"], r[system]), []) for r in rows]
    present = [v for v in verdicts if v]
    problems: dict[str, int] = defaultdict(int)
    for v in present:
        for problem in {j.problem for j in v if not j.keeps}:
            problems[problem] += 1
    n = max(1, len(present))
    return SystemScore(
        system=system,
        judged=len(present),
        unjudged=len(verdicts) - len(present),
        kept_by_all=100 * sum(all(j.keeps for j in v) for v in present) / n,
        kept_by_any=100 * sum(any(j.keeps for j in v) for v in present) / n,
        split=sum(len({j.keeps for j in v}) > 1 for v in present),
        problems=dict(sorted(problems.items(), key=lambda kv: -kv[1])),
    )


def score_table(scores: Sequence[SystemScore]) -> str:
    header = ["system", "judged", "kept by all annotators %", "kept by any %", "split", "problems (any annotator)"]
    lines = [
        [
            s.system,
            f"{s.judged}" + (f" ({s.unjudged} unjudged)" if s.unjudged else ""),
            f"{s.kept_by_all:.1f}",
            f"{s.kept_by_any:.1f}",
            str(s.split),
            ", ".join(f"{p} {c}" for p, c in s.problems.items()) or "-",
        ]
        for s in scores
    ]
    return format_table(header, lines)


def kept_by_all(rows: Sequence[dict], system: str, judged: dict[tuple[str, str], list[Judgement]]) -> list:
    """Per review: True/False (every annotator keeps it or not), None where nobody judged the summary."""
    verdicts = [judged.get((r["key"], r[system]), []) for r in rows]
    return [all(j.keeps for j in v) if v else None for v in verdicts]


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: how likely a split at least this uneven is between equal systems."""
    n, k = wins + losses, min(wins, losses)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0


def paired(rows: Sequence[dict], system: str, base: str, judged) -> tuple[int, int, float] | None:
    """(reviews only `system` keeps, reviews only `base` keeps, sign-test p); None unless both are judged."""
    a, b = kept_by_all(rows, system, judged), kept_by_all(rows, base, judged)
    if None in a or None in b:
        return None
    wins = sum(x and not y for x, y in zip(a, b, strict=True))
    losses = sum(y and not x for x, y in zip(a, b, strict=True))
    return wins, losses, sign_test(wins, losses)


def classifier_overlap(rows: Sequence[dict], system: str, judged, classifier) -> tuple[int, int, int]:
    """(summaries the classifier labels unlike their review, summaries some annotator fails, both)."""
    review_labels = classifier.predict([r["review"] for r in rows])
    flagged = set(disagreements(review_labels, classifier, [r[system] for r in rows]))
    failed = {i for i, r in enumerate(rows) if any(not j.keeps for j in judged.get((r["key"], r[system]), []))}
    return len(flagged), len(failed), len(flagged & failed)


LENGTH_BANDS = ((0, 30), (30, 60), (60, 100), (100, None))


def failures_by_length(rows: Sequence[dict], system: str, judged) -> list[tuple[str, int, int]]:
    """(review length band, reviews in it, summaries not kept by every annotator) for the judged reviews."""
    kept = kept_by_all(rows, system, judged)
    out = []
    for low, high in LENGTH_BANDS:
        band = [
            k for r, k in zip(rows, kept, strict=True) if k is not None and low <= len(r["review"]) < (high or 10**9)
        ]
        out.append((f"{low}-{high - 1}" if high else f"{low}+", len(band), sum(not k for k in band)))
    return out


def not_kept(rows: Sequence[dict], system: str, judged: dict[tuple[str, str], list[Judgement]]) -> list[str]:
    """Readable lines for every summary at least one annotator says does not keep polarity."""
    out = []
    for row in rows:
        verdicts = judged.get((row["key"], row[system]), [])
        if any(not j.keeps for j in verdicts):
            votes = "; ".join(f"{j.annotator}: {'keeps' if j.keeps else f'{j.problem}: {j.why}'}" for j in verdicts)
            out.append(f"- {row['key']} {row['review']}\n  -> {row[system]}\n  [{votes}]")
    return out


# --- variants --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantStudy:
    """How the hand verdicts of several model variants relate, review by review."""

    variants: list[str]
    reviews: int
    kept: dict[str, int]  # variant -> reviews whose summary every annotator keeps
    kept_by_every_variant: int
    failed_by_every_variant: int
    oracle: int  # reviews where at least one variant's summary is kept
    consensus_kept: int  # reviews whose consensus summary (metrics.mbr_choice over the variants) is kept
    consensus_vs_first: tuple[int, int, float]  # paired against the first variant: wins, losses, sign-test p
    first_failures: int
    first_failures_shared: int  # of those, failed by at least half of the variants


def merge_variants(eval_dirs: Sequence[Path], only: Sequence[str]) -> tuple[list[dict], list[str]]:
    """One row per dev review holding every model system of the evaluations (or only the named ones).

    A system name met again with different summaries (another run's `steps/step_00100`) is renamed
    `NAME (EVAL_DIR name)`; with the same summaries it is the same variant."""
    merged: dict[str, dict] = {}
    variants: list[str] = []
    for eval_dir in eval_dirs:
        rows, systems = read_predictions(eval_dir)
        if merged and {r["key"] for r in rows} != set(merged):
            raise SystemExit(f"{eval_dir}: not the same reviews as {eval_dirs[0]}")
        for row in rows:
            merged.setdefault(row["key"], {field: row[field] for field in ("key", "review")})
        for system in systems:
            if not system.startswith("model "):
                continue
            name = _variant_name(merged, rows, system, eval_dir)
            if name not in variants:
                variants.append(name)
                for row in rows:
                    merged[row["key"]][name] = row[system]
    unknown = [name for name in only if name not in variants]
    if unknown:
        raise SystemExit(f"--system {unknown[0]!r}: not among the model systems: {', '.join(variants)}")
    chosen = list(dict.fromkeys(only)) or variants
    if len(chosen) < 2:
        raise SystemExit(f"need at least two model variants, found {len(chosen)}")
    return list(merged.values()), chosen


def _variant_name(merged: dict[str, dict], rows: Sequence[dict], system: str, eval_dir: Path) -> str:
    if system not in merged[rows[0]["key"]] or all(merged[r["key"]][system] == r[system] for r in rows):
        return system
    return f"{system} ({eval_dir.name})"


def study_variants(rows: Sequence[dict], variants: Sequence[str], judged) -> VariantStudy:
    """Every variant's summaries must be judged (`batches` writes what is missing)."""
    kept = {v: kept_by_all(rows, v, judged) for v in variants}
    missing = {v: k.count(None) for v, k in kept.items() if None in k}
    if missing:
        counts = ", ".join(f"{v}: {n}" for v, n in missing.items())
        raise ValueError(f"unjudged summaries ({counts}); judge them first with `batches`")
    per_review = list(zip(*kept.values(), strict=True))
    # the consensus summary is one of the variants' own, so it is judged too
    with_consensus = [dict(r, consensus=metrics.mbr_choice([r[v] for v in variants])) for r in rows]
    first_failed = [verdicts for verdicts, f in zip(per_review, kept[variants[0]], strict=True) if not f]
    return VariantStudy(
        variants=list(variants),
        reviews=len(rows),
        kept={v: sum(k) for v, k in kept.items()},
        kept_by_every_variant=sum(all(verdicts) for verdicts in per_review),
        failed_by_every_variant=sum(not any(verdicts) for verdicts in per_review),
        oracle=sum(any(verdicts) for verdicts in per_review),
        consensus_kept=sum(kept_by_all(with_consensus, "consensus", judged)),
        consensus_vs_first=paired(with_consensus, "consensus", variants[0], judged),
        first_failures=len(first_failed),
        first_failures_shared=sum(2 * verdicts.count(False) >= len(variants) for verdicts in first_failed),
    )


def variant_report(study: VariantStudy) -> str:
    n, pct = study.reviews, lambda count: f"{100 * count / study.reviews:.1f}%"
    lines = [f"{len(study.variants)} model variants on {n} dev reviews, kept by every annotator:"]
    lines += [f"- {v}: {study.kept[v]} ({pct(study.kept[v])})" for v in study.variants]
    mixed = n - study.kept_by_every_variant - study.failed_by_every_variant
    wins, losses, p = study.consensus_vs_first
    lines += [
        f"kept by every variant: {study.kept_by_every_variant}; failed by every variant: "
        f"{study.failed_by_every_variant}; kept by some and failed by others: {mixed}",
        f"oracle (a kept summary exists among the variants): {study.oracle} ({pct(study.oracle)})",
        f"consensus pick (highest summed ROUGE-L against the variants' summaries, ties to the earlier variant): "
        f"{study.consensus_kept} ({pct(study.consensus_kept)}); against {study.variants[0]}: "
        f"only it keeps {wins}, only the other keeps {losses}, sign test p = {p:.2f}",
        f"{study.variants[0]}'s {study.first_failures} failures: {study.first_failures_shared} also fail in at "
        f"least half of the variants",
    ]
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("batches", help="write blind batches of the summaries not yet judged enough")
    b.add_argument("eval_dir", type=Path, help="an `evaluate --out` directory holding predictions.jsonl")
    b.add_argument("--out", type=Path, required=True, help="directory for batch_N.jsonl, key.json and the rubric")
    b.add_argument("--judges", type=int, default=2, help="independent annotators per summary")
    b.add_argument("--per-batch", type=int, default=75, help="reviews per batch")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--system", action="append", default=[], help="only this system's summaries (repeatable)")
    c = sub.add_parser("collect", help="add the answers_N.jsonl of a batch directory to the judgements")
    c.add_argument("batch_dir", type=Path)
    c.add_argument("--annotator-prefix", required=True, help="names this round's annotators, e.g. s9-")
    s = sub.add_parser("score", help="hand-judged polarity agreement of every system in an evaluation")
    s.add_argument("eval_dir", type=Path)
    s.add_argument("--list", dest="list_system", default=None, help="print this system's summaries judged not kept")
    s.add_argument(
        "--paired", dest="paired_base", default=None, help="compare every system with this one, review by review"
    )
    s.add_argument(
        "--classifier", type=Path, default=None, help="a pickled polarity classifier to set against the hand verdicts"
    )
    v = sub.add_parser("variants", help="how several model variants' hand verdicts overlap: oracle and consensus")
    v.add_argument("eval_dirs", type=Path, nargs="+", help="`evaluate --out` directories of the same dev reviews")
    v.add_argument("--system", action="append", default=[], help="only this model system (repeatable; first = base)")
    for sp in (b, c, s, v):
        sp.add_argument("--judgements", type=Path, default=DEFAULT_JUDGEMENTS)
    args = p.parse_args(argv)
    if args.command == "batches" and (args.judges < 1 or args.per_batch < 1):
        p.error("--judges and --per-batch must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "collect":
        try:
            added = collect(args.batch_dir, args.judgements, args.annotator_prefix)
        except (ValueError, KeyError) as e:
            raise SystemExit(f"collect: nothing added: {e}") from e
        print(f"added {added} judgements to {args.judgements}")
        return
    if args.command == "variants":
        rows, variants = merge_variants(args.eval_dirs, args.system)
        try:
            print(variant_report(study_variants(rows, variants, by_pair(read_judgements(args.judgements)))))
        except ValueError as e:
            raise SystemExit(f"variants: {e}") from e
        return
    rows, systems = read_predictions(args.eval_dir)
    judged = by_pair(read_judgements(args.judgements))
    if args.command == "batches":
        unknown = [name for name in args.system if name not in systems]
        if unknown:
            raise SystemExit(f"--system {unknown[0]!r}: not in {args.eval_dir}; systems: {', '.join(systems)}")
        todo = pairs_to_judge(rows, args.system or systems, judged, args.judges)
        if not todo:
            print("every summary already has enough judgements; nothing to write")
            return
        paths = write_batches(rows, todo, args.out, args.judges, args.per_batch, args.seed)
        count = sum(len(t) for t in todo.values())
        print(
            f"{count} summaries of {len(todo)} reviews, {args.judges} judges each: {len(paths)} batches in {args.out}"
        )
        print(f"give annotators RUBRIC.md and one batch each, never {args.out / 'key.json'}")
        return
    print_scores(args, rows, systems, judged)


def print_scores(args: argparse.Namespace, rows: list[dict], systems: list[str], judged) -> None:
    for option, name in (("--list", args.list_system), ("--paired", args.paired_base)):
        if name is not None and name not in systems:
            raise SystemExit(f"{option} {name!r}: not in {args.eval_dir}; systems: {', '.join(systems)}")
    print(f"{len(rows)} dev reviews; hand-judged polarity agreement ({args.judgements}):")
    print(score_table([score_system(rows, system, judged) for system in systems]))
    if args.paired_base is not None:
        print(f"\nagainst {args.paired_base}, review by review (kept by every annotator):")
        for system in systems:
            found = paired(rows, system, args.paired_base, judged) if system != args.paired_base else None
            if found is not None:
                print(
                    f"- {system}: only it keeps {found[0]}, only the other keeps {found[1]}, "
                    f"sign test p = {found[2]:.2f}"
                )
    if args.classifier is not None:
        from reviewsum_build import sentiment

        classifier = sentiment.load(args.classifier)
        print(f"\nclassifier {args.classifier} against the hand verdicts:")
        for system in systems:
            flagged, failed, both = classifier_overlap(rows, system, judged, classifier)
            print(f"- {system}: classifier flags {flagged}, annotators fail {failed}, both {both}")
    if args.list_system is not None:
        bands = ", ".join(
            f"{band} chars {bad}/{n}" for band, n, bad in failures_by_length(rows, args.list_system, judged)
        )
        print(f"\n{args.list_system}: not kept by every annotator, by review length: {bands}")
        lines = not_kept(rows, args.list_system, judged)
        print(f"{args.list_system}: {len(lines)} summaries judged not to keep polarity by at least one annotator")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
