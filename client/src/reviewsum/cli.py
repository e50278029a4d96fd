"""`reviewsum`: summarize reviews and check the service from the command line.

    reviewsum summarize "性能出色，通话顺畅，但电池续航时间较短。"
    reviewsum summarize --file reviews.jsonl --json      # {"id": ..., "text": ...} per line
    reviewsum health
    reviewsum info

Exit status: 0 on success; 1 on a service error (one line on stderr); 2 on bad
usage or unreadable input; `health` exits 1 when the service is not serving.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from reviewsum._channel import DEFAULT_ADDRESS, DEFAULT_TIMEOUT_S
from reviewsum.client import ReviewSumClient
from reviewsum.errors import ReviewSumError
from reviewsum.types import Language, ReviewInput, SummarizeOptions, Summary

EXIT_OK, EXIT_SERVICE_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_BATCH = 16
DEFAULT_PARALLEL = 4


class InputError(Exception):
    """A malformed input file: reported with its line number."""


def read_jsonl(path: Path) -> list[ReviewInput]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    reviews = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise InputError(f'{path}:{number}: expected an object with a string "text"')
        reviews.append(ReviewInput(text=row["text"], id=str(row.get("id", number))))
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


if __name__ == "__main__":
    sys.exit(main())
