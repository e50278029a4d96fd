"""Side-by-side benchmark: plain PyTorch generate() vs our ONNX engine vs Triton vs the gateway.

    .venv/bin/python loadtest/bench.py [--checkpoint DIR] [--artifacts DIR] [--concurrency 1,8,32]
                                       [--duration 20] [--sample 32] [--out results/bench]

One run, one model, the same real reviews (one review per request, greedy, 48 new tokens at most,
no_repeat_ngram_size 3: the API defaults) for every row:

  1 `hf`       transformers `BartForConditionalGeneration.generate()` from the HF checkpoint, one call per
               request, concurrent requests on a thread pool: what a user would otherwise write;
  2 `onnx`     our ONNX Runtime engine (`OnnxSummarizer`) in one process, one call per request, thread pool;
  3 `triton`   Triton over gRPC (`tritonclient.grpc.aio`), one request per review, dynamic batching on;
  4 `gateway`  the ReviewSum gateway over gRPC (`SummarizeReviews` with one review), in front of that Triton;
  3b/4b        the same two with dynamic batching off (a second repository whose summarizer config has
               no `dynamic_batching` block: `reviewsum_build.model_repository` has no switch for it, so
               this script removes the block from the rendered text).

First every row summarizes the whole sample once and the summaries (text and token count) must be
identical across rows; the run stops with exit status 1 and a list of differences if they are not.
Then each row runs a closed loop at each concurrency for --duration seconds (after --warmup seconds):
summaries/s, generated tokens/s, latency p50/p95/p99, CPU seconds per summary (rows 1-2: the process;
rows 3-4: tritonserver, its Python-backend stubs and the gateway; the load generator's own CPU is
reported apart), peak RSS (same processes), and the ratio to row 1 at the same concurrency. The gateway's
overhead over direct Triton is measured apart: the two are called alternately on the same reviews at
concurrency 1. Rows 1-2 run in child processes while no server runs; rows 3-4 while nothing else does.

Output: a table on stdout and `<out>/<UTC timestamp>/bench.json`, `table.md`, `bench.png` (summaries/s and
p95 against concurrency).

The model: --artifacts (default: the committed model_repository/summarizer/1/artifacts, else
runs/final/artifacts, else the tiny random-weight test model, built into .cache/tiny). Row 1 needs the
Hugging Face checkpoint the artifacts were exported from: --checkpoint DIR, by default the
`source_checkpoint` that `reviewsum_build.export` recorded in the artifacts' reviewsum.json (for the tiny
model, .cache/tiny/checkpoint, built by `reviewsum_build.tiny`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

LOADTEST_DIR = Path(__file__).resolve().parent
REPO_ROOT = LOADTEST_DIR.parent
MAX_NEW_TOKENS = 48
NO_REPEAT_NGRAM_SIZE = 3
ROW_TITLES = {
    "hf": "1 transformers generate()",
    "onnx": "2 ONNX engine in-process",
    "triton": "3 Triton gRPC",
    "gateway": "4 gateway gRPC",
    "triton-nobatch": "3b Triton gRPC, no dyn. batching",
    "gateway-nobatch": "4b gateway gRPC, no dyn. batching",
}
SAMPLE_INTERVAL_S = 0.05
REBUILT_CHECKPOINTS = REPO_ROOT / ".cache" / "rebuilt"


# ---------------------------------------------------------------- shared measurement


@dataclass
class Sampled:
    """Peak RSS of a set of processes, sampled in a background thread."""

    pids: Callable[[], list[int]]
    peak_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampled:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, rss_bytes(self.pids()))
            self._stop.wait(SAMPLE_INTERVAL_S)


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def level_result(
    row: str,
    concurrency: int,
    latencies_s: list[float],
    tokens: list[int],
    wall_s: float,
    cpu_s: float,
    client_cpu_s: float | None,
    peak_rss: int,
) -> dict[str, Any]:
    count = len(latencies_s)
    lat_ms = np.asarray(latencies_s) * 1000 if count else np.zeros(1)
    return {
        "row": row,
        "title": ROW_TITLES[row],
        "concurrency": concurrency,
        "summaries": count,
        "wall_s": round(wall_s, 3),
        "summaries_per_s": round(count / wall_s, 3) if wall_s > 0 else 0.0,
        "tokens_per_s": round(sum(tokens) / wall_s, 1) if wall_s > 0 else 0.0,
        "mean_tokens": round(sum(tokens) / count, 2) if count else 0.0,
        "latency_ms": {f"p{q}": round(float(np.percentile(lat_ms, q)), 2) for q in (50, 95, 99)},
        "cpu_s_per_summary": round(cpu_s / count, 4) if count else None,
        "client_cpu_s_per_summary": round(client_cpu_s / count, 4) if count and client_cpu_s is not None else None,
        "peak_rss_mib": round(peak_rss / 2**20, 1),
    }


# ---------------------------------------------------------------- rows 1 and 2: in a child process


class HfRow:
    """What a user would write: tokenizer + BartForConditionalGeneration.generate(), one call per request."""

    def __init__(self, checkpoint: Path, max_input_tokens: int) -> None:
        import torch
        import transformers

        self._torch = torch
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
        self._model = transformers.BartForConditionalGeneration.from_pretrained(checkpoint).eval()
        self._max_input_tokens = max_input_tokens
        self._eos = self._model.generation_config.eos_token_id
        self._lock = threading.Lock()  # a fast tokenizer is not safe to call from several threads at once

    def __call__(self, text: str) -> tuple[str, int]:
        with self._lock:
            encoded = self._tokenizer(text, return_tensors="pt", truncation=True, max_length=self._max_input_tokens)
        with self._torch.inference_mode():
            output = self._model.generate(
                input_ids=encoded["input_ids"],
                attention_mask=encoded["attention_mask"],
                max_new_tokens=MAX_NEW_TOKENS,
                num_beams=1,
                do_sample=False,
                no_repeat_ngram_size=NO_REPEAT_NGRAM_SIZE,
            )
        ids = output[0, 1:].tolist()  # without the decoder start token
        if self._eos in ids:
            ids = ids[: ids.index(self._eos) + 1]
        with self._lock:
            summary = self._tokenizer.decode(ids, skip_special_tokens=True)
        return summary, len(ids)


class OnnxRow:
    def __init__(self, artifacts: Path) -> None:
        from reviewsum_engine import GenerationOptions, OnnxSummarizer

        self._engine = OnnxSummarizer(artifacts)
        self._options = [GenerationOptions(max_new_tokens=MAX_NEW_TOKENS, no_repeat_ngram_size=NO_REPEAT_NGRAM_SIZE)]

    def __call__(self, text: str) -> tuple[str, int]:
        (generation,) = self._engine.summarize([text], self._options)
        return generation.text, generation.output_tokens


def closed_loop_threads(
    summarize: Callable[[str], tuple[str, int]], texts: list[str], concurrency: int, duration_s: float
) -> tuple[list[float], list[int], float]:
    """`concurrency` threads, each sending its next request when the previous one returns, until the deadline;
    requests started before it are finished and counted. Returns latencies, tokens and the wall time."""
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    tokens: list[int] = []
    started = time.perf_counter()
    deadline = started + duration_s

    def worker() -> None:
        while time.perf_counter() < deadline:
            with lock:
                text = texts[next(counter) % len(texts)]
            t0 = time.perf_counter()
            _, count = summarize(text)
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                tokens.append(count)

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return latencies, tokens, time.perf_counter() - started


def inprocess_main(argv: list[str]) -> None:
    """`bench.py _inprocess ROW ...`: parity summaries or measurements of row 1 or 2, as JSON in --result-file."""
    parser = argparse.ArgumentParser()
    parser.add_argument("row", choices=["hf", "onnx"])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--texts", type=Path, required=True)
    parser.add_argument("--parity", action="store_true")
    parser.add_argument("--levels", default="1")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--result-file", type=Path, required=True)
    args = parser.parse_args(argv)
    texts = json.loads(args.texts.read_text(encoding="utf-8"))
    me = [os.getpid()]
    with Sampled(lambda: me) as memory:
        if args.row == "hf":
            from reviewsum_engine import load_artifacts

            summarize: Callable[[str], tuple[str, int]] = HfRow(
                args.checkpoint, load_artifacts(args.artifacts).max_input_tokens
            )
        else:
            summarize = OnnxRow(args.artifacts)
        if args.parity:
            summaries = [summarize(text) for text in texts]
            args.result_file.write_text(json.dumps(summaries, ensure_ascii=False), encoding="utf-8")
            return
        results = []
        for concurrency in (int(c) for c in args.levels.split(",")):
            closed_loop_threads(summarize, texts, concurrency, args.warmup)
            memory.peak_bytes = rss_bytes(me)
            cpu_before = cpu_seconds(me)
            latencies, tokens, wall = closed_loop_threads(summarize, texts, concurrency, args.duration)
            cpu = cpu_seconds(me) - cpu_before
            results.append(level_result(args.row, concurrency, latencies, tokens, wall, cpu, None, memory.peak_bytes))
            print(
                f"  {ROW_TITLES[args.row]:<36} c={concurrency:<3} {results[-1]['summaries_per_s']:8.2f}/s", flush=True
            )
    args.result_file.write_text(json.dumps(results), encoding="utf-8")


def run_inprocess(row: str, setup: Setup, *extra: str) -> Any:
    command = [sys.executable, __file__, "_inprocess", row, "--artifacts", str(setup.artifacts)]
    command += ["--texts", str(setup.texts_file), *extra]
    if setup.checkpoint is not None:
        command += ["--checkpoint", str(setup.checkpoint)]
    result_file = setup.texts_file.with_name(f"{row}-result.json")
    command += ["--result-file", str(result_file)]
    completed = subprocess.run(command, cwd=REPO_ROOT)
    if completed.returncode != 0:
        raise SystemExit(f"row {row} failed (exit {completed.returncode}): {shlex.join(command)}")
    return json.loads(result_file.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- rows 3 and 4: servers and async clients


@dataclass
class Servers:
    triton: Any
    gateway: subprocess.Popen[bytes]
    gateway_address: str

    @property
    def triton_url(self) -> str:
        return self.triton.grpc_url

    def pids(self) -> list[int]:
        """tritonserver, its Python-backend stub processes and the gateway."""
        pids = [self.gateway.pid]
        try:
            root = psutil.Process(self.triton.process.pid)
            pids += [root.pid] + [child.pid for child in root.children(recursive=True)]
        except psutil.Error:
            pass
        return pids


@contextmanager
def running_servers(repository: Path, workdir: Path) -> Iterator[Servers]:
    sys.path.insert(0, str(REPO_ROOT))
    from tests.integration.services import running_triton, start_gateway, stop_process, wait_serving

    workdir.mkdir(parents=True, exist_ok=True)
    with running_triton(repository, workdir) as (triton, _):
        gateway, log, address = start_gateway(triton.grpc_url, workdir)
        try:
            wait_serving(address, gateway, log)
            yield Servers(triton, gateway, address)
        finally:
            stop_process(gateway)


def write_repositories(artifacts: Path, root: Path) -> dict[str, Path]:
    """Two repositories for the same artifacts: as rendered (dynamic batching on) and without `dynamic_batching`."""
    from reviewsum_build.model_repository import write_repository

    batching = write_repository(root / "batching", artifacts)
    no_batching = write_repository(root / "no-batching", artifacts)
    for config in no_batching.glob("*/config.pbtxt"):
        text = config.read_text(encoding="utf-8")
        edited = re.sub(r"^dynamic_batching \{\n(?:  .*\n)*\}\n", "", text, flags=re.MULTILINE)
        if "dynamic_batching" in edited:
            raise RuntimeError(f"could not remove dynamic_batching from {config}")
        config.write_text(edited, encoding="utf-8")
    return {"batching": batching, "no-batching": no_batching}


class TritonClient:
    def __init__(self, url: str) -> None:
        import tritonclient.grpc.aio as triton_aio
        from tritonclient.grpc import InferRequestedOutput

        self._client = triton_aio.InferenceServerClient(url)
        self._outputs = [InferRequestedOutput(name) for name in ("SUMMARY", "OUTPUT_TOKENS")]

    async def __call__(self, text: str) -> tuple[str, int]:
        from tritonclient.grpc import InferInput

        inputs = []
        for name, datatype, value in (
            ("TEXT", "BYTES", np.array([[text.encode("utf-8")]], dtype=np.object_)),
            ("MAX_NEW_TOKENS", "INT32", np.array([[MAX_NEW_TOKENS]], dtype=np.int32)),
            ("NUM_BEAMS", "INT32", np.array([[1]], dtype=np.int32)),
            ("LENGTH_PENALTY", "FP32", np.array([[1.0]], dtype=np.float32)),
            ("NO_REPEAT_NGRAM_SIZE", "INT32", np.array([[NO_REPEAT_NGRAM_SIZE]], dtype=np.int32)),
        ):
            tensor = InferInput(name, [1, 1], datatype)
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        result = await self._client.infer("summarizer", inputs, outputs=self._outputs, client_timeout=120.0)
        return result.as_numpy("SUMMARY")[0, 0].decode("utf-8"), int(result.as_numpy("OUTPUT_TOKENS")[0, 0])

    async def close(self) -> None:
        await self._client.close()


class GatewayClient:
    def __init__(self, address: str) -> None:
        import grpc
        from reviewsum.v1 import reviewsum_pb2 as pb
        from reviewsum.v1 import reviewsum_pb2_grpc as pb_grpc

        self._pb = pb
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = pb_grpc.ReviewSummarizerStub(self._channel)

    async def __call__(self, text: str) -> tuple[str, int]:
        pb = self._pb
        request = pb.SummarizeReviewsRequest(reviews=[pb.Review(id="0", text=text)])
        (summary,) = (await self._stub.SummarizeReviews(request, timeout=120.0)).summaries
        return summary.summary, summary.summary_tokens

    async def close(self) -> None:
        await self._channel.close()


async def closed_loop_async(
    call: Callable[[str], Any], texts: list[str], concurrency: int, duration_s: float
) -> tuple[list[float], list[int], float]:
    counter = itertools.count()
    latencies: list[float] = []
    tokens: list[int] = []
    started = time.perf_counter()
    deadline = started + duration_s

    async def worker() -> None:
        while time.perf_counter() < deadline:
            text = texts[next(counter) % len(texts)]
            t0 = time.perf_counter()
            _, count = await call(text)
            latencies.append(time.perf_counter() - t0)
            tokens.append(count)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, tokens, time.perf_counter() - started


async def measure_remote(row: str, call: Callable[[str], Any], servers: Servers, setup: Setup) -> list[dict[str, Any]]:
    results = []
    me = [os.getpid()]
    for concurrency in setup.levels:
        await closed_loop_async(call, setup.texts, concurrency, setup.warmup)
        server_pids = servers.pids()
        cpu_before, client_before = cpu_seconds(server_pids), cpu_seconds(me)
        with Sampled(lambda pids=server_pids: pids) as memory:
            latencies, tokens, wall = await closed_loop_async(call, setup.texts, concurrency, setup.duration)
        cpu, client_cpu = cpu_seconds(server_pids) - cpu_before, cpu_seconds(me) - client_before
        results.append(level_result(row, concurrency, latencies, tokens, wall, cpu, client_cpu, memory.peak_bytes))
        print(f"  {ROW_TITLES[row]:<36} c={concurrency:<3} {results[-1]['summaries_per_s']:8.2f}/s", flush=True)
    return results


async def gateway_overhead(servers: Servers, texts: list[str], passes: int) -> dict[str, Any]:
    """Triton and the gateway called alternately on the same review, one call at a time."""
    triton, gateway = TritonClient(servers.triton_url), GatewayClient(servers.gateway_address)
    direct, through, differences = [], [], []
    try:
        for text in texts * passes:
            t0 = time.perf_counter()
            await triton(text)
            t1 = time.perf_counter()
            await gateway(text)
            t2 = time.perf_counter()
            direct.append((t1 - t0) * 1000)
            through.append((t2 - t1) * 1000)
            differences.append(through[-1] - direct[-1])
    finally:
        await triton.close()
        await gateway.close()
    return {
        "pairs": len(differences),
        "triton_p50_ms": round(float(np.median(direct)), 3),
        "gateway_p50_ms": round(float(np.median(through)), 3),
        "overhead_p50_ms": round(float(np.median(differences)), 3),
        "overhead_p95_ms": round(float(np.percentile(differences, 95)), 3),
    }


async def remote_summaries(servers: Servers, texts: list[str]) -> dict[str, list[tuple[str, int]]]:
    triton, gateway = TritonClient(servers.triton_url), GatewayClient(servers.gateway_address)
    try:
        return {
            "triton": [await triton(text) for text in texts],
            "gateway": [await gateway(text) for text in texts],
        }
    finally:
        await triton.close()
        await gateway.close()


async def bench_servers(servers: Servers, setup: Setup, suffix: str) -> list[dict[str, Any]]:
    results = []
    for row, client in ((f"triton{suffix}", TritonClient(servers.triton_url)),
                        (f"gateway{suffix}", GatewayClient(servers.gateway_address))):  # fmt: skip
        try:
            results += await measure_remote(row, client, servers, setup)
        finally:
            await client.close()
    return results


# ---------------------------------------------------------------- the run


@dataclass
class Setup:
    artifacts: Path
    checkpoint: Path | None
    texts: list[str]
    texts_file: Path
    levels: list[int]
    duration: float
    warmup: float


def resolve_artifacts(given: Path | None) -> tuple[Path, str]:
    from reviewsum_server.run import CACHE, SHIPPED_ARTIFACTS, TRAINED_RUN_ARTIFACTS, has_artifacts

    if given is not None:
        return given.resolve(), f"given {given}"
    if has_artifacts(SHIPPED_ARTIFACTS):
        return SHIPPED_ARTIFACTS, "trained model shipped in model_repository/summarizer/1/artifacts"
    if has_artifacts(TRAINED_RUN_ARTIFACTS):
        return TRAINED_RUN_ARTIFACTS, "local training run runs/final/artifacts"
    from reviewsum_build.tiny import build_tiny_model

    tiny = CACHE / "tiny"
    if not has_artifacts(tiny / "artifacts") or not (tiny / "checkpoint").is_dir():
        print("no trained model: building the tiny random-weight test model", flush=True)
        build_tiny_model(tiny)
    return tiny / "artifacts", "UNTRAINED tiny random-weight test model (.cache/tiny)"


def resolve_checkpoint(given: Path | None, artifacts: Path) -> Path:
    """Row 1's Hugging Face checkpoint: given, else the one the artifacts were exported from, else rebuilt.

    Training runs are not committed, so on a fresh machine the recorded checkpoint is usually gone;
    `reviewsum_build.from_onnx` then rebuilds it from the artifacts' own weights (checked against them).
    """
    if given is not None:
        checkpoint = given
    else:
        recorded = json.loads((artifacts / "reviewsum.json").read_text(encoding="utf-8")).get("source_checkpoint")
        exists = bool(recorded) and (Path(recorded) / "config.json").is_file()
        checkpoint = Path(recorded) if exists else rebuilt_checkpoint(artifacts)
    if not (checkpoint / "config.json").is_file():
        raise SystemExit(
            f"row 1 needs the Hugging Face checkpoint the artifacts were exported from; {checkpoint} has none. "
            "Pass --checkpoint DIR (a BartForConditionalGeneration save with its tokenizer)."
        )
    return checkpoint.resolve()


def rebuilt_checkpoint(artifacts: Path) -> Path:
    from reviewsum_build.from_onnx import rebuild_checkpoint

    digest = hashlib.sha1((artifacts / "decoder_model_merged.onnx").read_bytes()).hexdigest()[:12]
    target = REBUILT_CHECKPOINTS / digest
    if not (target / "config.json").is_file():
        print(f"rebuilding the PyTorch checkpoint for row 1 from {artifacts}", flush=True)
        rebuild_checkpoint(artifacts, target)
    return target


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    import onnxruntime

    model_name = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    versions = {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__}
    versions["tritonclient"] = version("tritonclient")
    for name in ("torch", "transformers", "grpc"):
        with suppress(ImportError):
            versions[name] = __import__(name).__version__
    return {
        "cpu": model_name,
        "logical_cpus": os.cpu_count(),
        "physical_cpus": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
        "triton": "2.51 from the nvidia-pytriton 0.7.0 wheel, CPU, Python backend",
    }


def model_description(artifacts: Path, checkpoint: Path | None, origin: str) -> dict[str, Any]:
    metadata = json.loads((artifacts / "reviewsum.json").read_text(encoding="utf-8"))
    config = json.loads((artifacts / "config.json").read_text(encoding="utf-8"))
    keys = ("d_model", "encoder_layers", "decoder_layers", "vocab_size", "max_position_embeddings")
    return {
        "origin": origin,
        "artifacts": str(artifacts),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "name": metadata.get("model_name"),
        "version": metadata.get("model_version"),
        "quantization": metadata.get("quantization"),
        "config": {key: config.get(key) for key in keys},
    }


def compare(summaries: dict[str, list[tuple[str, int]]], texts: list[str]) -> list[str]:
    reference_row = next(iter(summaries))
    reference = summaries[reference_row]
    differences = []
    for row, rows in summaries.items():
        for index, ((text, count), (ref_text, ref_count)) in enumerate(zip(rows, reference, strict=True)):
            if (text, count) != (ref_text, ref_count):
                differences.append(
                    f"review {index} ({texts[index][:30]!r}): {reference_row} {ref_text!r} ({ref_count} tokens) "
                    f"!= {row} {text!r} ({count} tokens)"
                )
    return differences


def fail_on_differences(summaries: dict[str, list[tuple[str, int]]], texts: list[str]) -> None:
    differences = compare(summaries, texts)
    if differences:
        print("\nPARITY FAILED: the rows do not give identical greedy summaries:", file=sys.stderr)
        for line in differences[:40]:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(1)
    print(f"parity: {', '.join(summaries)} give identical summaries for all {len(texts)} reviews", flush=True)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    baseline = {r["concurrency"]: r["summaries_per_s"] for r in rows if r["row"] == "hf"}
    for result in rows:
        base = baseline.get(result["concurrency"])
        result["ratio_to_row1"] = round(result["summaries_per_s"] / base, 2) if base else None


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        "| row | conc. | summaries/s | tokens/s | p50 ms | p95 ms | p99 ms | CPU s/summary | peak RSS MiB | x row 1 |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {r['title']} | {r['concurrency']} | {r['summaries_per_s']:.2f} | {r['tokens_per_s']:.0f} | "
        f"{r['latency_ms']['p50']:.0f} | {r['latency_ms']['p95']:.0f} | {r['latency_ms']['p99']:.0f} | "
        f"{r['cpu_s_per_summary']:.3f} | {r['peak_rss_mib']:.0f} | "
        f"{'' if r.get('ratio_to_row1') is None else format(r['ratio_to_row1'], '.2f')} |"
        for r in rows
    ]
    return header + "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in ROW_TITLES:
        points = sorted((r["concurrency"], r) for r in rows if r["row"] == row)
        if not points:
            continue
        xs = [c for c, _ in points]
        style = "--" if row.endswith("nobatch") else "-"
        left.plot(xs, [r["summaries_per_s"] for _, r in points], style, marker="o", label=ROW_TITLES[row])
        right.plot(xs, [r["latency_ms"]["p95"] for _, r in points], style, marker="o", label=ROW_TITLES[row])
    levels = sorted({r["concurrency"] for r in rows})
    for axis, label in ((left, "summaries / s"), (right, "p95 latency, ms")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(level) for level in levels])
        axis.minorticks_off()
        axis.set_xlabel("concurrent requests")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
    right.set_yscale("log")
    right.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=None, help="ONNX artifacts directory to serve")
    parser.add_argument("--checkpoint", type=Path, default=None, help="HF checkpoint for row 1 (default: recorded)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels (default 1,8,32)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per row and level")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each level")
    parser.add_argument("--sample", type=int, default=32, help="distinct real reviews in the sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overhead-passes", type=int, default=6, help="passes over the sample for the overhead")
    parser.add_argument("--rows", default="hf,onnx,triton,gateway", help="rows to run (parity needs all four)")
    parser.add_argument("--no-batching-rows", action=argparse.BooleanOptionalAction, default=True,
                        help="also run rows 3 and 4 with dynamic batching off (default on)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "bench")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["_inprocess"]:
        inprocess_main(sys.argv[2:])
        return 0
    args = parse_args(argv)
    rows_wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = set(rows_wanted) - {"hf", "onnx", "triton", "gateway"}
    if unknown:
        raise SystemExit(f"--rows: unknown {sorted(unknown)}")
    sys.path.insert(0, str(LOADTEST_DIR))
    import review_texts

    artifacts, origin = resolve_artifacts(args.artifacts)
    checkpoint = resolve_checkpoint(args.checkpoint, artifacts) if "hf" in rows_wanted else None
    out = args.out / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    texts = review_texts.fixed_sample(review_texts.load_pool(), args.sample, seed=args.seed)
    report: dict[str, Any] = {
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv),
        "machine": machine(),
        "model": model_description(artifacts, checkpoint, origin),
        "settings": {
            "one_review_per_request": True,
            "greedy": True,
            "max_new_tokens": MAX_NEW_TOKENS,
            "no_repeat_ngram_size": NO_REPEAT_NGRAM_SIZE,
            "sample_reviews": len(texts),
            "sample_mean_chars": round(sum(map(len, texts)) / len(texts), 1),
            "concurrency": [int(c) for c in args.concurrency.split(",")],
            "duration_s": args.duration,
            "warmup_s": args.warmup,
        },
    }
    print(f"model: {origin} ({artifacts}); row 1 checkpoint: {checkpoint}\nresults: {out}", flush=True)
    with tempfile.TemporaryDirectory(prefix="reviewsum-bench-") as scratch:
        texts_file = Path(scratch) / "texts.json"
        texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        setup = Setup(artifacts, checkpoint, texts, texts_file, report["settings"]["concurrency"], args.duration,
                      args.warmup)  # fmt: skip
        repositories = write_repositories(artifacts, Path(scratch) / "repositories")
        results = run_all(setup, rows_wanted, repositories, Path(scratch), args, report)
    add_ratios(results)
    report["rows"] = results
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["goals"] = goals(results, report.get("gateway_overhead"), report.get("gateway_overhead_no_batching"))
    (out / "bench.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    rendered = table(results)
    (out / "table.md").write_text(rendered, encoding="utf-8")
    plot(results, out / "bench.png", f"ReviewSum, {report['model']['origin']}, {report['machine']['cpu']}")
    print("\n" + rendered)
    overheads = {k: report.get(k) for k in ("gateway_overhead", "gateway_overhead_no_batching")}
    print(json.dumps({**overheads, "goals": report["goals"]}, indent=2))
    print(f"\nwrote {out / 'bench.json'}, {out / 'table.md'}, {out / 'bench.png'}")
    return 0


def run_all(
    setup: Setup,
    rows_wanted: list[str],
    repositories: dict[str, Path],
    scratch: Path,
    args: argparse.Namespace,
    report: dict[str, Any],
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    level_args = ["--levels", ",".join(map(str, setup.levels)), "--duration", str(setup.duration)]
    level_args += ["--warmup", str(setup.warmup)]
    # 1. Parity, before any measurement: every row summarizes the whole sample once.
    summaries: dict[str, list[tuple[str, int]]] = {}
    for row in ("hf", "onnx"):
        if row in rows_wanted:
            summaries[row] = [tuple(item) for item in run_inprocess(row, setup, "--parity")]  # type: ignore[misc]
    with running_servers(repositories["batching"], scratch / "servers-batching") as servers:
        remote = asyncio.run(remote_summaries(servers, setup.texts))
        summaries.update({row: remote[row] for row in ("triton", "gateway") if row in rows_wanted})
        fail_on_differences(summaries, setup.texts)
        report["parity"] = {"rows": list(summaries), "reviews": len(setup.texts), "identical": True}
        # 2. Rows 3 and 4 while nothing else runs.
        if "triton" in rows_wanted and "gateway" in rows_wanted:
            report["gateway_overhead"] = asyncio.run(gateway_overhead(servers, setup.texts, args.overhead_passes))
            print(f"  gateway overhead: {report['gateway_overhead']}", flush=True)
        results += [r for r in asyncio.run(bench_servers(servers, setup, "")) if r["row"] in rows_wanted]
    # 3. Rows 1 and 2, each in its own process, with the servers stopped.
    for row in ("hf", "onnx"):
        if row in rows_wanted:
            results += run_inprocess(row, setup, *level_args)
    # 4. Dynamic batching off.
    if args.no_batching_rows:
        with running_servers(repositories["no-batching"], scratch / "servers-no-batching") as servers:
            remote = asyncio.run(remote_summaries(servers, setup.texts))
            fail_on_differences({**summaries, **{f"{k}-nobatch": v for k, v in remote.items()}}, setup.texts)
            if "triton" in rows_wanted and "gateway" in rows_wanted:
                overhead = asyncio.run(gateway_overhead(servers, setup.texts, args.overhead_passes))
                report["gateway_overhead_no_batching"] = overhead
                print(f"  gateway overhead, no dynamic batching: {overhead}", flush=True)
            nobatch = asyncio.run(bench_servers(servers, setup, "-nobatch"))
            results += [r for r in nobatch if r["row"].removesuffix("-nobatch") in rows_wanted]
    order = list(ROW_TITLES)
    return sorted(results, key=lambda r: (order.index(r["row"]), r["concurrency"]))


def goals(
    rows: list[dict[str, Any]], overhead: dict[str, Any] | None, overhead_no_batching: dict[str, Any] | None
) -> dict[str, Any]:
    by = {(r["row"], r["concurrency"]): r for r in rows}
    goal: dict[str, Any] = {}
    gateway, hf = by.get(("gateway", 32)), by.get(("hf", 32))
    if gateway and hf and hf["summaries_per_s"]:
        ratio = gateway["summaries_per_s"] / hf["summaries_per_s"]
        goal["gateway_c32_vs_row1"] = {"ratio": round(ratio, 2), "target": 4.0, "met": ratio >= 4.0}
    if overhead:
        goal["gateway_overhead_p50_ms"] = {
            "value": overhead["overhead_p50_ms"],
            "target": 2.0,
            "met": overhead["overhead_p50_ms"] < 2.0,
        }
    if overhead_no_batching:
        value = overhead_no_batching["overhead_p50_ms"]
        goal["gateway_overhead_p50_ms_no_batching"] = {"value": value, "target": 2.0, "met": value < 2.0}
    return goal


if __name__ == "__main__":
    sys.exit(main())
