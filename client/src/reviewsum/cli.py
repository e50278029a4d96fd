"""`reviewsum`: summarize reviews and check the service from the command line.

    reviewsum summarize "性能出色，通话顺畅，但电池续航时间较短。"
    reviewsum summarize --file reviews.jsonl --json      # {"id": ..., "text": ...} per line
    reviewsum stream "屏幕效果非常棒，性价比高，但品控有待提升。"   # text appears as it is generated
    reviewsum product --file reviews.jsonl [--json]      # one product: {"id", "text", "rating"?} per line
    reviewsum bulk --file reviews.jsonl                  # JSON line per result, as they finish
    reviewsum health
    reviewsum info

Exit status: 0 on success; 1 on a service error (one line on stderr); 2 on bad
usage or unreadable input; `health` exits 1 when the service is not serving.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from reviewsum._channel import DEFAULT_ADDRESS, DEFAULT_TIMEOUT_S
from reviewsum.client import ReviewSumClient
from reviewsum.errors import ReviewSumError
from reviewsum.types import Language, ProductReviewInput, ProductSummary, ReviewInput, SummarizeOptions, Summary

EXIT_OK, EXIT_SERVICE_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_BATCH = 16
DEFAULT_PARALLEL = 4


class InputError(Exception):
    """A malformed input file: reported with its line number."""


def read_rows(path: Path) -> list[tuple[int, dict[str, object]]]:
    """(line number, object) for each non-blank line; every object has a string "text"."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise InputError(f'{path}:{number}: expected an object with a string "text"')
        rows.append((number, row))
    return rows


def read_jsonl(path: Path) -> list[ReviewInput]:
    return [ReviewInput(text=str(row["text"]), id=str(row.get("id", number))) for number, row in read_rows(path)]


def read_product_reviews(path: Path) -> list[ProductReviewInput]:
    reviews = []
    for number, row in read_rows(path):
        rating = row.get("rating")
        if rating is not None and not isinstance(rating, int):
            raise InputError(f'{path}:{number}: "rating" must be a whole number of stars')
        reviews.append(ProductReviewInput(text=str(row["text"]), id=str(row.get("id", number)), rating=rating))
    return reviews


def chunks(items: Sequence[ReviewInput], size: int) -> Iterator[Sequence[ReviewInput]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Progress:
    """A one-line counter on stderr, shown only on a terminal."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.enabled = stream.isatty() and total > DEFAULT_BATCH

    def advance(self, count: int) -> None:
        self.done += count
        if self.enabled:
            self.stream.write(f"\rsummarized {self.done}/{self.total}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def summarize_all(
    client: ReviewSumClient, reviews: Sequence[ReviewInput], options: SummarizeOptions, batch: int, parallel: int
) -> list[Summary]:
    """Batches run concurrently; results keep input order."""
    progress = Progress(len(reviews))

    def run(part: Sequence[ReviewInput]) -> list[Summary]:
        summaries = client.summarize(part, options=options).summaries
        progress.advance(len(part))
        return summaries

    try:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            return [s for part in pool.map(run, chunks(reviews, batch)) for s in part]
    finally:
        progress.close()


def options_from_args(args: argparse.Namespace) -> SummarizeOptions:
    return SummarizeOptions(
        beam_size=args.beam_size,
        max_summary_tokens=args.max_summary_tokens,
        language_hint=Language(args.language),
    )


def print_summaries(summaries: list[Summary], as_json: bool) -> None:
    for summary in summaries:
        if as_json:
            row = asdict(summary)
            row["finish_reason"] = summary.finish_reason.value
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(summary.summary)


def cmd_summarize(client: ReviewSumClient, args: argparse.Namespace) -> int:
    if (args.text is None) == (args.file is None):
        raise InputError("give either TEXT or --file, not both or neither")
    reviews = read_jsonl(args.file) if args.file is not None else [ReviewInput(text=args.text, id="1")]
    batch = args.batch_size
    if len(reviews) > 1:
        # Never send more per call than this gateway accepts.
        batch = min(batch, client.model_info().max_reviews_per_request)
    summaries = summarize_all(client, reviews, options_from_args(args), batch, args.parallel)
    print_summaries(summaries, args.json)
    return EXIT_OK


def cmd_stream(client: ReviewSumClient, args: argparse.Namespace) -> int:
    options = SummarizeOptions(max_summary_tokens=args.max_summary_tokens)
    for event in client.stream(args.text, options=options):
        print(event.text_delta, end="", flush=True)
    print()
    return EXIT_OK


def print_product(product: ProductSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(product), ensure_ascii=False))
        return
    print(product.overall_summary)
    for title, aspects in (("pros", product.pros), ("cons", product.cons)):
        print(f"{title}:")
        for aspect in aspects:
            print(f"  {aspect.phrase} ({aspect.review_count} reviews: {', '.join(aspect.review_ids)})")
    stars = ", ".join(f"{s}★ {n}" for s, n in sorted(product.rating_distribution.items()))
    print(f"ratings: {stars or 'none'}")
    print(f"positive {product.positive_share:.0%}, negative {product.negative_share:.0%} of {product.review_count}")


def cmd_product(client: ReviewSumClient, args: argparse.Namespace) -> int:
    reviews = read_product_reviews(args.file)
    product = client.summarize_product(reviews, product_id=args.product_id, max_aspects=args.max_aspects)
    print_product(product, args.json)
    return EXIT_OK


def cmd_bulk(client: ReviewSumClient, args: argparse.Namespace) -> int:
    failed = 0
    for result in client.summarize_bulk(read_jsonl(args.file)):
        row: dict[str, object] = {"id": result.id}
        if result.summary is not None:
            row["summary"] = result.summary.summary
        if result.error is not None:
            failed += 1
            row["error"] = asdict(result.error)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    return EXIT_OK if failed == 0 else EXIT_SERVICE_ERROR


def cmd_health(client: ReviewSumClient, args: argparse.Namespace) -> int:
    serving = client.health()
    print("SERVING" if serving else "NOT_SERVING")
    return EXIT_OK if serving else EXIT_SERVICE_ERROR


def cmd_info(client: ReviewSumClient, args: argparse.Namespace) -> int:
    print(json.dumps(asdict(client.model_info()), ensure_ascii=False, indent=2))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reviewsum", description="ReviewSum command-line client")
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help=f"gateway host:port (default {DEFAULT_ADDRESS})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per call (default 30)")
    parser.add_argument("--api-key", default=None, help="sent as 'authorization: Bearer KEY'")
    sub = parser.add_subparsers(dest="command", required=True)

    summarize = sub.add_parser("summarize", help="summarize one review, or a JSON-lines file of them")
    summarize.add_argument("text", nargs="?", help="the review text")
    summarize.add_argument("--file", type=Path, help='JSON lines, each {"id": ..., "text": ...}')
    summarize.add_argument("--json", action="store_true", help="print one JSON object per review")
    summarize.add_argument("--beam-size", type=int, default=None)
    summarize.add_argument("--max-summary-tokens", type=int, default=None)
    summarize.add_argument("--language", choices=[x.value for x in Language], default=Language.UNSPECIFIED.value)
    summarize.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        help="reviews per call, at most the server's limit (default 16)",
    )
    summarize.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, help="calls in flight (default 4)")
    summarize.set_defaults(handler=cmd_summarize)

    stream = sub.add_parser("stream", help="print one review's summary as it is generated")
    stream.add_argument("text", help="the review text")
    stream.add_argument("--max-summary-tokens", type=int, default=None)
    stream.set_defaults(handler=cmd_stream)

    product = sub.add_parser("product", help="summarize one product from a JSON-lines file of its reviews")
    product.add_argument("--file", type=Path, required=True, help='JSON lines, each {"id", "text", "rating"?}')
    product.add_argument("--product-id", default="")
    product.add_argument("--max-aspects", type=int, default=None, help="pros and cons to list (1-10, default 5)")
    product.add_argument("--json", action="store_true", help="print the result as one JSON object")
    product.set_defaults(handler=cmd_product)

    bulk = sub.add_parser("bulk", help="stream a JSON-lines file through the bulk API; one JSON line per result")
    bulk.add_argument("--file", type=Path, required=True, help='JSON lines, each {"id": ..., "text": ...}')
    bulk.set_defaults(handler=cmd_bulk)

    sub.add_parser("health", help="exit 0 only when the service is serving").set_defaults(handler=cmd_health)
    sub.add_parser("info", help="the served model and the limits").set_defaults(handler=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with ReviewSumClient(args.address, timeout=args.timeout, api_key=args.api_key) as client:
            return int(args.handler(client, args))
    except InputError as exc:
        print(f"reviewsum: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ReviewSumError as exc:
        print(f"reviewsum: {exc}", file=sys.stderr)
        return EXIT_SERVICE_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`reviewsum ... | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
