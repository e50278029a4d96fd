"""Evaluate summarizers on the Chinese dev set: the model (PyTorch and ONNX), the references, the baselines.

    python -m reviewsum_build.evaluate --data-dir ../shared/data --checkpoint runs/finetune/best \\
        --onnx runs/onnx/fp32 --onnx runs/onnx/int8 --latency-runs 50 --out runs/eval

Columns: ROUGE-1/2/L F1 against the hand-written references (character level for Chinese,
punctuation dropped; word level with stemming for English), mean summary length in characters,
the share of summary characters absent from the review (the template connective 但 exempt; `abs+但`
counts it too), and polarity agreement between review and summary under a char n-gram classifier
trained on the labelled corpora without the dev reviews; `hand%`: the share of summaries every
annotator judged to keep the review's polarity (`reviewsum_build.polarity_audit`), nan for a system
with summaries nobody has judged yet (the command to send them out is printed). Latency: greedy
decoding of one 60-character review with the ONNX engine, median of N runs after warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from reviewsum_build import baselines, metrics
from reviewsum_build.polarity_audit import DEFAULT_JUDGEMENTS
from reviewsum_build.sources import DEFAULT_DATA_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]
LATENCY_CHARS = 60


def score_row(name: str, reviews: Sequence[str], summaries: Sequence[str], references: Sequence[str], classifier):
    from reviewsum_build.sentiment import agreement

    rouge = metrics.rouge_scores(summaries, references)
    return {
        "system": name,
        "R1": rouge["rouge1"],
        "R2": rouge["rouge2"],
        "RL": rouge["rougeL"],
        "len": statistics.fmean(metrics.summary_length(s) for s in summaries),
        "absent%": metrics.absent_rate(summaries, reviews),
        "absent+但%": metrics.absent_rate(summaries, reviews, exempt=frozenset()),
        "polarity%": agreement(classifier, reviews, summaries) if classifier is not None else float("nan"),
        "with_absent": metrics.with_absent(summaries, reviews),
        "spurious_but": metrics.spurious_but(summaries, references),
    }


COLUMNS = ["R1", "R2", "RL", "len", "absent%", "absent+但%", "polarity%", "hand%"]


def add_hand_judged(rows: list[dict], outputs: dict[str, list[str]], dev_keys: Sequence[str], judgements: Path) -> None:
    """Each row's hand-judged polarity (kept by every annotator), nan unless all its summaries are judged."""
    from reviewsum_build import polarity_audit

    judged = polarity_audit.by_pair(polarity_audit.read_judgements(judgements))
    for row in rows:
        pairs = [{"key": k, "summary": s} for k, s in zip(dev_keys, outputs[row["system"]], strict=True)]
        score = polarity_audit.score_system(pairs, "summary", judged)
        row["hand%"] = score.kept_by_all if score.unjudged == 0 else float("nan")
        row["hand_unjudged"] = score.unjudged


def format_table(rows: list[dict]) -> str:
    cols = COLUMNS
    width = max(len(r["system"]) for r in rows) + 2
    lines = [f"{'system':<{width}}" + "".join(f"{c:>11}" for c in cols)]
    for r in rows:
        lines.append(f"{r['system']:<{width}}" + "".join(f"{r[c]:>11.1f}" for c in cols))
    return "\n".join(lines)


def onnx_parity(outputs: dict[str, list[str]]) -> list[tuple[str, str, int]]:
    """(ONNX row, PyTorch greedy row, reviews with identical text) for every such pair of rows.

    Against every PyTorch checkpoint, not only the first: with several checkpoints, the one an ONNX
    export came from is the row that must match it exactly."""
    onnx = [n for n in outputs if n.startswith("model ONNX")]
    torch = [n for n in outputs if n.startswith("model PyTorch") and n.endswith("greedy")]
    return [(o, t, sum(a == b for a, b in zip(outputs[o], outputs[t], strict=True))) for o in onnx for t in torch]


def markdown_table(rows: list[dict]) -> str:
    cols = COLUMNS
    out = ["| system | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in rows:
        out.append(f"| {r['system']} | " + " | ".join(f"{r[c]:.1f}" for c in cols) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------- model runners


def _load_for_generation(checkpoint: Path, num_beams: int):
    """The checkpoint's tokenizer and model, decoding as the served engine does (with `num_beams` beams)."""
    import torch
    from transformers import BartForConditionalGeneration

    from reviewsum_build.modeling import generation_config
    from reviewsum_build.tokenizer import load_tokenizer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    model = BartForConditionalGeneration.from_pretrained(checkpoint).eval()
    model.generation_config = generation_config(num_beams=num_beams)
    return load_tokenizer(checkpoint), model


def pytorch_summarize(checkpoint: Path, reviews: Sequence[str], num_beams: int = 1) -> list[str]:
    from reviewsum_build.modeling import MAX_SOURCE_TOKENS
    from reviewsum_build.train import encode_all, generate_ids

    tokenizer, model = _load_for_generation(checkpoint, num_beams)
    ids = generate_ids(model, encode_all(tokenizer, reviews, MAX_SOURCE_TOKENS))
    return [tokenizer.decode(x) for x in ids]


def pytorch_nbest(checkpoint: Path, reviews: Sequence[str], num_beams: int) -> list[list[str]]:
    """Every review's `num_beams` best beam-search summaries, best first."""
    from reviewsum_build.modeling import MAX_SOURCE_TOKENS
    from reviewsum_build.train import encode_all, generate_nbest_ids

    tokenizer, model = _load_for_generation(checkpoint, num_beams)
    nbest = generate_nbest_ids(model, encode_all(tokenizer, reviews, MAX_SOURCE_TOKENS), num_beams)
    return [[tokenizer.decode(ids) for ids in group] for group in nbest]


def onnx_summarizer(artifacts_dir: Path, threads: int | None = 2):
    from reviewsum_engine.summarizer import OnnxSummarizer

    return OnnxSummarizer(artifacts_dir, intra_op_threads=threads)


def onnx_summarize(artifacts_dir: Path, reviews: Sequence[str], num_beams: int = 1, batch_size: int = 16) -> list[str]:
    from reviewsum_engine.generation import GenerationOptions

    from reviewsum_build.modeling import MAX_NEW_TOKENS, NO_REPEAT_NGRAM_SIZE

    summarizer = onnx_summarizer(artifacts_dir)
    option = GenerationOptions(
        max_new_tokens=MAX_NEW_TOKENS, num_beams=num_beams, no_repeat_ngram_size=NO_REPEAT_NGRAM_SIZE
    )
    order = sorted(range(len(reviews)), key=lambda i: len(reviews[i]))
    out = [""] * len(reviews)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        results = summarizer.summarize([reviews[i] for i in idx], [option] * len(idx))
        for i, r in zip(idx, results, strict=True):
            out[i] = r.text
    return out


def latency_review(reviews: Sequence[str]) -> str:
    """The dev review whose length is closest to 60 characters (cut to 60), a fixed, realistic input."""
    best = min(reviews, key=lambda r: (abs(len(r) - LATENCY_CHARS), r))
    return best[:LATENCY_CHARS]


def measure(fn: Callable[[], object], runs: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))],
        "min_ms": times[0],
        "runs": runs,
    }


def onnx_latency(artifacts_dir: Path, text: str, runs: int, threads: int | None = 2) -> dict:
    from reviewsum_engine.generation import GenerationOptions

    summarizer = onnx_summarizer(artifacts_dir, threads)
    option = GenerationOptions(num_beams=1)
    result = summarizer.summarize([text], [option])[0]
    stats = measure(lambda: summarizer.summarize([text], [option]), runs)
    stats.update(output_tokens=result.output_tokens, input_tokens=result.input_tokens, summary=result.text)
    return stats


def pytorch_latency(checkpoint: Path, text: str, runs: int) -> dict:
    import torch
    from transformers import BartForConditionalGeneration

    from reviewsum_build.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(checkpoint)
    model = BartForConditionalGeneration.from_pretrained(checkpoint).eval()
    ids = torch.tensor([tokenizer.encode(text).ids])

    def run():
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids))

    return measure(run, runs)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--checkpoint", type=Path, action="append", default=[], help="PyTorch checkpoint(s)")
    parser.add_argument("--onnx", type=Path, action="append", default=[], help="ONNX artifacts dir(s)")
    parser.add_argument("--beams", type=int, default=1, help="also evaluate beam search with this many beams")
    parser.add_argument(
        "--mbr",
        type=int,
        default=0,
        help="also pick each review's summary among this many beams by consensus (minimum Bayes risk, ROUGE-L)",
    )
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N dev pairs")
    parser.add_argument(
        "--judgements",
        type=Path,
        default=DEFAULT_JUDGEMENTS,
        help="hand polarity judgements (default: the committed ones)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "eval")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    from reviewsum_build.annotation import load_pairs
    from reviewsum_build.sentiment import fingerprint, load_or_train

    data_dir = args.data_dir.resolve()
    pairs, skipped = load_pairs(data_dir)
    dev = [p for p in pairs if p.split == "dev"]
    if args.limit:
        dev = dev[: args.limit]
    if not dev:
        raise SystemExit("no dev pairs joined with their reviews (is --data-dir right?)")
    reviews = [p.review for p in dev]
    references = [p.summary for p in dev]
    print(f"dev: {len(dev)} pairs ({', '.join(sorted({p.language for p in dev}))}); skipped {skipped}")
    classifier = load_or_train(data_dir)
    judge = fingerprint(classifier, reviews)
    print(
        f"polarity judge: {judge['train_size']} training texts, held-out {judge['held_out_accuracy']}%, "
        f"scikit-learn {judge['sklearn_version'] or 'unrecorded'}; labels {judge['reviews_positive']} dev reviews "
        f"positive, digest {judge['review_labels_digest']} (compare polarity only between equal digests)"
    )

    outputs: dict[str, list[str]] = {"references": references}
    timings: dict[str, float] = {}
    for ckpt in args.checkpoint:
        beam_list = [1] + ([args.beams] if args.beams > 1 else [])
        for beams in beam_list:
            name = f"model PyTorch {ckpt.parent.name}/{ckpt.name} " + ("greedy" if beams == 1 else f"beam{beams}")
            t0 = time.perf_counter()
            outputs[name] = pytorch_summarize(ckpt, reviews, beams)
            timings[name] = time.perf_counter() - t0
        if args.mbr > 1:
            name = f"model PyTorch {ckpt.parent.name}/{ckpt.name} mbr{args.mbr}"
            t0 = time.perf_counter()
            outputs[name] = [metrics.mbr_choice(c) for c in pytorch_nbest(ckpt, reviews, args.mbr)]
            timings[name] = time.perf_counter() - t0
    for art in args.onnx:
        name = f"model ONNX {art.name} greedy"
        t0 = time.perf_counter()
        outputs[name] = onnx_summarize(art, reviews)
        timings[name] = time.perf_counter() - t0
    if not args.no_baselines:
        for name, fn in baselines.BASELINES.items():
            outputs[f"baseline: {name}"] = [fn(r) for r in reviews]

    rows = [score_row(name, reviews, preds, references, classifier) for name, preds in outputs.items()]
    add_hand_judged(rows, outputs, [p.key for p in dev], args.judgements)
    print()
    print(format_table(rows))
    unjudged = [r["system"] for r in rows if r["hand_unjudged"] and not r["system"].startswith("baseline")]
    if unjudged:
        print(
            f"hand%: {len(unjudged)} system(s) with summaries nobody has judged; to send them to annotators: "
            f"python -m reviewsum_build.polarity_audit batches {args.out} --out BATCH_DIR "
            + " ".join(f'--system "{name}"' for name in unjudged)
        )
    for row in rows:
        if row["system"].startswith("model"):
            print(
                f"{row['system']}: {row['with_absent']}/{len(dev)} summaries with a character absent from the "
                f"review (但 exempt), {row['spurious_but']}/{len(dev)} with 但 where the reference has none"
            )

    report: dict = {"dev_pairs": len(dev), "polarity_judge": judge, "rows": rows, "generation_seconds": timings}
    for onnx_name, torch_name, same in onnx_parity(outputs):
        report.setdefault("match_pytorch_greedy", {}).setdefault(onnx_name, {})[torch_name] = same / len(dev)
        print(f"{onnx_name}: identical to {torch_name} on {same}/{len(dev)} dev reviews")

    if args.latency_runs and (args.onnx or args.checkpoint):
        text = latency_review(reviews)
        report["latency_input_chars"] = len(text)
        for art in args.onnx:
            stats = onnx_latency(art, text, args.latency_runs)
            report.setdefault("latency", {})[f"ONNX {art.name}"] = stats
            print(
                f"latency ONNX {art.name}: median {stats['median_ms']:.1f} ms, p90 {stats['p90_ms']:.1f} ms "
                f"({len(text)}-char review, {stats['input_tokens']} in / {stats['output_tokens']} out tokens, "
                f"{args.latency_runs} runs, 2 threads)"
            )
        for ckpt in args.checkpoint[:1]:
            stats = pytorch_latency(ckpt, text, max(5, args.latency_runs // 3))
            report.setdefault("latency", {})[f"PyTorch {ckpt.name}"] = stats
            print(f"latency PyTorch generate {ckpt.name}: median {stats['median_ms']:.1f} ms")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    (args.out / "table.md").write_text(markdown_table(rows) + "\n", encoding="utf-8")
    with (args.out / "predictions.jsonl").open("w", encoding="utf-8") as f:  # under runs/: never committed
        for i, p in enumerate(dev):
            row = {"key": p.key, "category": p.category, "review": p.review}
            row.update({name: preds[i] for name, preds in outputs.items()})
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}/report.json, table.md, predictions.jsonl")


if __name__ == "__main__":
    main()
